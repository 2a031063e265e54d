package service

import (
	"context"
	"time"

	"beaconvend/cloud/store"
)

// JanitorOptions configure a [Janitor].
type JanitorOptions struct {
	// Retention is what is kept how long (store.Retention; its zero
	// fields take the documented defaults: 72 h of processed messages and
	// idempotency records, 24 h of command replies, expired tokens after
	// 1 h, retired keys after store.RetiredKeyWindow).
	Retention store.Retention
	// Interval between runs; 10 min when zero. Each run deletes at most
	// Retention.Batch × Retention.MaxBatches rows per table, so a backlog
	// goes down over several runs without long locks.
	Interval time.Duration
}

// Janitor keeps the cloud's bookkeeping tables bounded: it prunes what
// store.Prune says is past its retention window, on its own schedule,
// and counts what it deleted (beaconvend_janitor_pruned_total{table}). It
// touches nothing that moves money: sessions, ledger and usage reports are
// kept. Several instances may run one each; their deletes do not
// conflict. Make it with [Service.Janitor].
type Janitor struct {
	s    *Service
	opts JanitorOptions
}

// Janitor returns the service's janitor.
func (s *Service) Janitor(opts JanitorOptions) *Janitor {
	if opts.Interval <= 0 {
		opts.Interval = 10 * time.Minute
	}
	opts.Retention = opts.Retention.WithDefaults()
	return &Janitor{s: s, opts: opts}
}

// RunOnce prunes once and returns what it deleted per table.
func (j *Janitor) RunOnce(ctx context.Context) (store.Pruned, error) {
	got, err := j.s.st.Prune(ctx, j.opts.Retention)
	for table, n := range got {
		if n > 0 {
			j.s.Metrics.pruned.WithLabelValues(table).Add(float64(n))
		}
	}
	if err != nil {
		j.s.Metrics.janitorErrs.Inc()
	}
	return got, err
}

// Run prunes at once and then every Interval until ctx is done; it
// returns nil. A failed run is logged and counted, and the next one tries
// again.
func (j *Janitor) Run(ctx context.Context) error {
	t := time.NewTicker(j.opts.Interval)
	defer t.Stop()
	for {
		got, err := j.RunOnce(ctx)
		if err != nil && ctx.Err() == nil {
			j.s.log.Error("service: janitor", "err", err)
		} else if len(got) > 0 {
			j.s.log.Debug("service: janitor pruned", "rows", got)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
