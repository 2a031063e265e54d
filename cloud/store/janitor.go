package store

import (
	"context"
	"fmt"
	"time"
)

// Retention: what the janitor (Prune, driven by the service's janitor)
// deletes, and after how long. Every window is measured on the cloud's
// clock from when the row was written.
//
//	table               kept for                 why that long
//	processed_messages  ProcessedWindow (72 h)   a device resends an unacked uplink until acked; after 72 h a
//	                                             resend is handled again, which is harmless (Advance is monotonic,
//	                                             usage settles once per session by its own key)
//	idempotency         IdemWindow (72 h)        the phone API promises a retried POST the first answer for 24 h;
//	                                             72 h leaves room for a phone that was off for a weekend
//	tokens              expiry + TokenGrace (1 h) an expired token is refused anyway; the row goes after a grace
//	console_sessions    expiry + TokenGrace (1 h) the same for operator console sessions, revoked ones included
//	step_up_tokens      expiry + TokenGrace (1 h) the same for step-up tokens, spent ones included
//	command_replies     ReplyWindow (24 h)       a start waits seconds for its reply; a retried start (same
//	                                             idempotency key) within the grant's life looks it up again
//	retired_sign_keys   RetiredKeyWindow (7 d)   then they verify nothing (UsageKeys) and go
//
// Deletes run in batches of at most Retention.Batch rows, each its own
// short transaction, so pruning never holds a lock long on a busy store.
type Retention struct {
	ProcessedWindow time.Duration // default 72 h
	IdemWindow      time.Duration // default 72 h
	TokenGrace      time.Duration // default 1 h
	ReplyWindow     time.Duration // default 24 h
	Batch           int           // rows per delete; default 1000
	MaxBatches      int           // per table per Prune call; default 100
}

// Retention defaults.
const (
	DefaultProcessedWindow = 72 * time.Hour
	DefaultIdemWindow      = 72 * time.Hour
	DefaultTokenGrace      = time.Hour
	DefaultReplyWindow     = 24 * time.Hour
	DefaultPruneBatch      = 1000
	DefaultPruneBatches    = 100
)

// WithDefaults returns r with every zero field set to its default.
func (r Retention) WithDefaults() Retention {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&r.ProcessedWindow, DefaultProcessedWindow)
	def(&r.IdemWindow, DefaultIdemWindow)
	def(&r.TokenGrace, DefaultTokenGrace)
	def(&r.ReplyWindow, DefaultReplyWindow)
	if r.Batch <= 0 {
		r.Batch = DefaultPruneBatch
	}
	if r.MaxBatches <= 0 {
		r.MaxBatches = DefaultPruneBatches
	}
	return r
}

// Pruned counts the rows one Prune deleted, by table.
type Pruned map[string]int64

// prunes are the janitor's deletes: table, the key columns a batch is
// chosen by, and the time column compared with the horizon.
var prunes = []struct {
	table, key, at string
	horizon        func(r Retention, now time.Time) time.Time
}{
	{"processed_messages", "device_id, message_id", "at_ms", func(r Retention, now time.Time) time.Time { return now.Add(-r.ProcessedWindow) }},
	{"idempotency", "user_id, idem_key", "created_ms", func(r Retention, now time.Time) time.Time { return now.Add(-r.IdemWindow) }},
	{"tokens", "hash", "expires_ms", func(r Retention, now time.Time) time.Time { return now.Add(-r.TokenGrace) }},
	{"console_sessions", "hash", "expires_ms", func(r Retention, now time.Time) time.Time { return now.Add(-r.TokenGrace) }},
	{"step_up_tokens", "hash", "expires_ms", func(r Retention, now time.Time) time.Time { return now.Add(-r.TokenGrace) }},
	{"command_replies", "device_id, command_id", "at_ms", func(r Retention, now time.Time) time.Time { return now.Add(-r.ReplyWindow) }},
	{"retired_sign_keys", "device_id, sign_key", "retired_ms", func(r Retention, now time.Time) time.Time { return now.Add(-RetiredKeyWindow) }},
	{"login_throttle", "scope, account", "updated_ms", func(r Retention, now time.Time) time.Time { return now.Add(-2 * ThrottleReset) }},
}

// Prune deletes what r says is past its window, in batches, and returns
// how many rows it deleted per table. When a table has more than
// Batch×MaxBatches rows to go, the rest goes with the next call. On an
// error it returns what it deleted so far with the error.
func (s *Store) Prune(ctx context.Context, r Retention) (Pruned, error) {
	r = r.WithDefaults()
	now := s.now()
	out := Pruned{}
	for _, p := range prunes {
		q := `DELETE FROM ` + p.table + ` WHERE (` + p.key + `) IN (SELECT ` + p.key + ` FROM ` + p.table +
			` WHERE ` + p.at + ` < $1 LIMIT $2)`
		if p.key == "hash" {
			q = `DELETE FROM ` + p.table + ` WHERE hash IN (SELECT hash FROM ` + p.table + ` WHERE expires_ms < $1 LIMIT $2)`
		}
		before := p.horizon(r, now).UnixMilli()
		for range r.MaxBatches {
			res, err := s.db.ExecContext(ctx, q, before, r.Batch)
			if err != nil {
				return out, fmt.Errorf("store: prune %s: %w", p.table, err)
			}
			n, _ := res.RowsAffected()
			out[p.table] += n
			if n < int64(r.Batch) {
				break
			}
		}
	}
	return out, nil
}
