package janitor

import (
	"context"
	"io"
	"log/slog"
	"time"

	"beaconvend/controller/journal"
)

// Opts configures a Janitor. Zero fields take their defaults.
type Opts struct {
	// Every is the time between sweeps. Default 1 h.
	Every time.Duration
	// Retention is how long a settled session's record is kept after its
	// last write. Default 7 days.
	Retention time.Duration
	// SeenMargin is how long after its bound (grant expiry, or a
	// cancellation's keep-until time) a seen entry without a record is
	// kept, and a relay nonce after its ticket's expiry. Default 24 h.
	SeenMargin time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives sweep results and errors. Default: discard.
	Logger *slog.Logger
}

// Janitor prunes a journal on a schedule.
type Janitor struct {
	j    *journal.Journal
	opts Opts
}

// Result is what one sweep deleted.
type Result struct {
	Sessions int // settled session records deleted
	Seen     int // seen entries deleted
	Nonces   int // relay nonces deleted
}

// New returns a janitor for j.
func New(j *journal.Journal, opts Opts) *Janitor {
	if opts.Every <= 0 {
		opts.Every = time.Hour
	}
	if opts.Retention <= 0 {
		opts.Retention = 7 * 24 * time.Hour
	}
	if opts.SeenMargin <= 0 {
		opts.SeenMargin = 24 * time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Janitor{j: j, opts: opts}
}

// Sweep prunes once: settled sessions past Retention, then seen entries
// past their bound plus SeenMargin whose session has no record, then relay
// nonces past their ticket's expiry plus SeenMargin (a grant is refused as
// expired by then, judged with a skew far below the margin). Each is one
// commit, none when nothing is due. It returns what it deleted and the
// first error (journal errors: ErrClosed, ErrCorrupt, storage).
func (jn *Janitor) Sweep() (Result, error) {
	now := jn.opts.Now()
	var r Result
	var err error
	if r.Sessions, err = jn.j.Prune(now.Add(-jn.opts.Retention)); err != nil {
		return r, err
	}
	if r.Seen, err = jn.j.PruneSeen(now.Add(-jn.opts.SeenMargin)); err != nil {
		return r, err
	}
	r.Nonces, err = jn.j.PruneNonces(now.Add(-jn.opts.SeenMargin))
	return r, err
}

// Run sweeps at once and then every Opts.Every until ctx is done, logging
// what it deleted and any error (a failed sweep is retried at the next
// one). It returns ctx's error.
func (jn *Janitor) Run(ctx context.Context) error {
	t := time.NewTicker(jn.opts.Every)
	defer t.Stop()
	for {
		r, err := jn.Sweep()
		switch {
		case err != nil:
			jn.opts.Logger.Error("janitor: sweep", "err", err)
		case r.Sessions > 0 || r.Seen > 0 || r.Nonces > 0:
			jn.opts.Logger.Info("janitor: pruned the journal", "sessions", r.Sessions, "seen", r.Seen, "nonces", r.Nonces)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
