package reconcile

import (
	"context"
	"errors"
	"sync"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/payments"
	"beaconvend/cloud/store"
)

// Job reconciles every enabled channel's days from T+1 on, on a loop:
// each pass looks at the last Lookback days of each channel that are
// over (end of day plus the grace window, provider's time zone) and
// reconciles those that have no stored run, or only a provisional one.
// A day whose statement is not available yet (or is refused, or whose
// run failed) is tried again after Retry. Every step is safe to repeat,
// so several cloud instances may run the job at once; they only repeat
// each other's work.
type Job struct {
	// Reconciler does the work; required.
	Reconciler *Reconciler
	// Channels returns the enabled channels by name; called at each pass,
	// so a channel enabled or disabled in configuration takes effect.
	Channels func() map[string]Source
	// Lookback is how many days before today each pass looks at; 0
	// means 7. A day older than that is left to the command.
	Lookback int
	// Interval is the time between passes; 0 means 10 minutes.
	Interval time.Duration
	// Retry is how long a day that failed waits before it is tried
	// again; 0 means 30 minutes.
	Retry time.Duration

	mu   sync.Mutex
	next map[string]time.Time // channel + " " + day → not before
}

// PassResult is what one pass did.
type PassResult struct {
	Runs   []Report // the runs stored this pass
	Failed []error  // the days that failed (each names its channel and day), to be retried
}

// Run runs passes until ctx ends, and returns ctx's error.
func (j *Job) Run(ctx context.Context) error {
	every := j.Interval
	if every <= 0 {
		every = 10 * time.Minute
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		j.Pass(ctx)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Pass runs one pass over every enabled channel, oldest day first, then
// refreshes the Reconciler's metrics from the store (so they are right
// after a restart, and follow resolutions made elsewhere).
func (j *Job) Pass(ctx context.Context) PassResult {
	var res PassResult
	r := j.Reconciler
	defer func() {
		if err := r.m.Refresh(ctx, r.st); err != nil {
			r.log.Warn("reconcile: metrics", "err", err)
		}
	}()
	look := j.Lookback
	if look <= 0 {
		look = 7
	}
	retry := j.Retry
	if retry <= 0 {
		retry = 30 * time.Minute
	}
	now := r.now()
	var chans map[string]Source
	if j.Channels != nil {
		chans = j.Channels()
	}
	for name, src := range chans {
		r := r.in(src)
		todayStart, _ := r.Bounds(dayOf(now, r.loc))
		for back := look; back >= 1; back-- {
			if ctx.Err() != nil {
				return res
			}
			day := dayOf(todayStart.AddDate(0, 0, -back), r.loc)
			if !r.Ready(day) {
				continue
			}
			key := name + " " + day.String()
			j.mu.Lock()
			wait := j.next[key]
			j.mu.Unlock()
			if now.Before(wait) {
				continue
			}
			run, _, err := r.st.ReconRunOf(ctx, name, day.String())
			if err == nil && run.Status != store.ReconProvisional {
				continue
			}
			if err != nil && !errors.Is(err, store.ErrReconNotFound) {
				res.Failed = append(res.Failed, err)
				continue
			}
			rep, err := r.Reconcile(ctx, name, src, day)
			if rep.Run.Channel != "" {
				res.Runs = append(res.Runs, rep) // stored; a hook error was logged and is retried with the day's next run
			}
			if err != nil && rep.Run.Channel == "" {
				res.Failed = append(res.Failed, err)
				j.mu.Lock()
				if j.next == nil {
					j.next = map[string]time.Time{}
				}
				j.next[key] = now.Add(retry)
				j.mu.Unlock()
				if vend.KindOf(err) == vend.Internal {
					r.log.Error("reconcile: job", "channel", name, "day", day.String(), "err", err)
				} else {
					r.log.Info("reconcile: job will retry", "channel", name, "day", day.String(), "after", retry, "err", err)
				}
			}
		}
	}
	return res
}

// SourcesOf maps channels by name, for Job.Channels.
func SourcesOf(chs ...payments.Channel) map[string]Source {
	m := make(map[string]Source, len(chs))
	for _, c := range chs {
		m[c.Name()] = c
	}
	return m
}
