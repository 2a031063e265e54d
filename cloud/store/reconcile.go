package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"beaconvend/app-protocol/vend"
)

// Reconciliation reads the channel_payments and channel_refunds records
// and the ledger's postings for them (it never writes them), and keeps
// its own results in recon_runs and recon_outcomes.

// ErrReconNotFound is a reconciliation run or outcome that does not exist.
var ErrReconNotFound = vend.E(vend.NotFound, "recon.not_found", "store: reconciliation not found")

// ReconPayment is one of our channel payment records as reconciliation
// reads it, with what the ledger moved for it.
type ReconPayment struct {
	OrderNo      string
	Channel      string
	UserID       string
	Amount       vend.Amount // a card hold's: what it captured (the amount less the part voided)
	State        string      // pending, authorized, paid, closed, failed
	ProviderTxID string
	PaidAt       time.Time // zero when not paid
	// Cleared is the movement of the channel's clearing account under the
	// order's ledger key chan:<channel>:<order>, in minor units as money
	// in: Amount.Minor once the payment was credited, 0 before; for a card
	// hold less its chan_void (key chanvoid:<channel>:<order>).
	Cleared int64
}

// ReconRefund is one of our channel refund records as reconciliation
// reads it, with what the ledger moved for it.
type ReconRefund struct {
	RefundNo         string
	OrderNo          string
	Channel          string
	Amount           vend.Amount
	State            string // pending, succeeded, failed
	ProviderRefundID string
	DoneAt           time.Time // zero while pending
	// Cleared is the movement of the channel's clearing account under the
	// refund's ledger key chanrefund:<channel>:<refund_no>, in minor units
	// as money out: Amount.Minor once the refund was booked.
	Cleared int64
}

// ChannelPaymentKey is the ledger idempotency key of an order's credit.
func ChannelPaymentKey(channel, orderNo string) string { return "chan:" + channel + ":" + orderNo }

// ChannelRefundKey is the ledger idempotency key of a refund's debit.
func ChannelRefundKey(channel, refundNo string) string {
	return "chanrefund:" + channel + ":" + refundNo
}

// ChannelFeeKey is the ledger idempotency key of one statement row's fee.
func ChannelFeeKey(channel, day, row string) string {
	return "chanfee:" + channel + ":" + day + ":" + row
}

// The ledger credit of each record is found through its transaction's
// idem_key (the unique index) and that transaction's entries, a shape
// no planner turns into a scan of the clearing account's entries (which
// PostgreSQL did for a freshly filled table without statistics).
//
// A card hold (capture mode manual) counts for what it captured: its
// amount less the part voided, and its credit less the chan_void posting
// (key chanvoid:<channel>:<order>), which is what the provider's
// statement shows.
const reconPaymentCols = `p.order_no, p.channel, p.user_id, p.amount_minor - p.voided_minor, p.currency, p.state,
	COALESCE(p.provider_tx_id, ''), COALESCE(p.paid_ms, 0),
	COALESCE((SELECT -SUM(e.amount) FROM entries e JOIN accounts a ON a.id = e.account_id
		WHERE e.tx_id = (SELECT t.id FROM ledger_tx t WHERE t.idem_key = 'chan:' || p.channel || ':' || p.order_no)
		AND a.kind = 'channel_clearing' AND a.owner = p.channel), 0)
	- COALESCE((SELECT SUM(e.amount) FROM entries e JOIN accounts a ON a.id = e.account_id
		WHERE e.tx_id = (SELECT t.id FROM ledger_tx t WHERE t.idem_key = 'chanvoid:' || p.channel || ':' || p.order_no)
		AND a.kind = 'channel_clearing' AND a.owner = p.channel), 0)`

const reconRefundCols = `r.refund_no, r.order_no, r.channel, r.amount_minor, r.currency, r.state,
	COALESCE(r.provider_refund_id, ''), COALESCE(r.done_ms, 0),
	COALESCE((SELECT SUM(e.amount) FROM entries e JOIN accounts a ON a.id = e.account_id
		WHERE e.tx_id = (SELECT t.id FROM ledger_tx t WHERE t.idem_key = 'chanrefund:' || r.channel || ':' || r.refund_no)
		AND a.kind = 'channel_clearing' AND a.owner = r.channel), 0)`

func scanReconPayments(rows *sql.Rows) ([]ReconPayment, error) {
	defer rows.Close()
	var out []ReconPayment
	for rows.Next() {
		var p ReconPayment
		var cur string
		var paid int64
		if err := rows.Scan(&p.OrderNo, &p.Channel, &p.UserID, &p.Amount.Minor, &cur, &p.State, &p.ProviderTxID, &paid, &p.Cleared); err != nil {
			return nil, err
		}
		p.Amount.Currency = vend.Currency(cur)
		if paid != 0 {
			p.PaidAt = time.UnixMilli(paid).UTC()
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

func scanReconRefunds(rows *sql.Rows) ([]ReconRefund, error) {
	defer rows.Close()
	var out []ReconRefund
	for rows.Next() {
		var r ReconRefund
		var cur string
		var done int64
		if err := rows.Scan(&r.RefundNo, &r.OrderNo, &r.Channel, &r.Amount.Minor, &cur, &r.State, &r.ProviderRefundID, &done, &r.Cleared); err != nil {
			return nil, err
		}
		r.Amount.Currency = vend.Currency(cur)
		if done != 0 {
			r.DoneAt = time.UnixMilli(done).UTC()
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// ReconPaymentsPaid returns the channel's paid orders whose paid time is
// in [from, to), oldest first.
func (s *Store) ReconPaymentsPaid(ctx context.Context, channel string, from, to time.Time) ([]ReconPayment, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+reconPaymentCols+` FROM channel_payments p
		WHERE p.channel = $1 AND p.state = 'paid' AND p.paid_ms >= $2 AND p.paid_ms < $3 ORDER BY p.paid_ms, p.order_no`,
		channel, from.UnixMilli(), to.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("store: reconciliation payments: %w", err)
	}
	out, err := scanReconPayments(rows)
	if err != nil {
		return nil, fmt.Errorf("store: reconciliation payments: %w", err)
	}
	return out, nil
}

// ReconRefundsDone returns the channel's succeeded refunds whose
// completion time is in [from, to), oldest first.
func (s *Store) ReconRefundsDone(ctx context.Context, channel string, from, to time.Time) ([]ReconRefund, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+reconRefundCols+` FROM channel_refunds r
		WHERE r.channel = $1 AND r.state = 'succeeded' AND r.done_ms >= $2 AND r.done_ms < $3 ORDER BY r.done_ms, r.refund_no`,
		channel, from.UnixMilli(), to.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("store: reconciliation refunds: %w", err)
	}
	out, err := scanReconRefunds(rows)
	if err != nil {
		return nil, fmt.Errorf("store: reconciliation refunds: %w", err)
	}
	return out, nil
}

const reconBatch = 200

// ReconPaymentsByOrder returns the channel's records of the given order
// numbers, in any state, by order number; unknown numbers are absent.
func (s *Store) ReconPaymentsByOrder(ctx context.Context, channel string, orderNos []string) (map[string]ReconPayment, error) {
	out := map[string]ReconPayment{}
	for len(orderNos) > 0 {
		n := min(len(orderNos), reconBatch)
		args := []any{channel}
		for _, o := range orderNos[:n] {
			args = append(args, o)
		}
		rows, err := s.db.QueryContext(ctx, `SELECT `+reconPaymentCols+` FROM channel_payments p
			WHERE p.channel = $1 AND p.order_no IN `+in(2, n), args...)
		if err != nil {
			return nil, fmt.Errorf("store: reconciliation payments by order: %w", err)
		}
		ps, err := scanReconPayments(rows)
		if err != nil {
			return nil, fmt.Errorf("store: reconciliation payments by order: %w", err)
		}
		for _, p := range ps {
			out[p.OrderNo] = p
		}
		orderNos = orderNos[n:]
	}
	return out, nil
}

// ReconRefundsByNo returns the channel's refund records whose refund
// number, or provider refund ID, is one of ids, in any state, by refund
// number.
func (s *Store) ReconRefundsByNo(ctx context.Context, channel string, ids []string) (map[string]ReconRefund, error) {
	out := map[string]ReconRefund{}
	for len(ids) > 0 {
		n := min(len(ids), reconBatch)
		args := []any{channel}
		for _, o := range ids[:n] {
			args = append(args, o)
		}
		set := in(2, n)
		rows, err := s.db.QueryContext(ctx, `SELECT `+reconRefundCols+` FROM channel_refunds r
			WHERE r.channel = $1 AND (r.refund_no IN `+set+` OR r.provider_refund_id IN `+set+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("store: reconciliation refunds by number: %w", err)
		}
		rs, err := scanReconRefunds(rows)
		if err != nil {
			return nil, fmt.Errorf("store: reconciliation refunds by number: %w", err)
		}
		for _, r := range rs {
			out[r.RefundNo] = r
		}
		ids = ids[n:]
	}
	return out, nil
}

// ChannelFees looks up fee postings by their ledger keys
// (chanfee:<channel>:<day>:<row>): which of keys the ledger holds, and
// the sum of what they moved out of the channel's fees account in cur, in
// minor units (a fee the provider kept counts positive, a returned one
// negative). Keys are looked up exactly (the unique index), in batches.
func (s *Store) ChannelFees(ctx context.Context, channel string, cur vend.Currency, keys []string) (posted map[string]bool, sum int64, err error) {
	posted = map[string]bool{}
	for len(keys) > 0 {
		n := min(len(keys), reconBatch)
		args := []any{channel, string(cur)}
		for _, k := range keys[:n] {
			args = append(args, k)
		}
		rows, err := s.db.QueryContext(ctx, `SELECT t.idem_key,
			COALESCE(SUM(CASE WHEN a.kind = 'fees' AND a.owner = $1 AND a.currency = $2 THEN -e.amount ELSE 0 END), 0)
			FROM ledger_tx t JOIN entries e ON e.tx_id = t.id JOIN accounts a ON a.id = e.account_id
			WHERE t.idem_key IN `+in(3, n)+` GROUP BY t.idem_key`, args...)
		if err != nil {
			return nil, 0, fmt.Errorf("store: channel fees: %w", err)
		}
		for rows.Next() {
			var k string
			var v int64
			if err := rows.Scan(&k, &v); err != nil {
				rows.Close()
				return nil, 0, fmt.Errorf("store: channel fees: %w", err)
			}
			posted[k] = true
			sum += v
		}
		if err := rows.Close(); err != nil {
			return nil, 0, fmt.Errorf("store: channel fees: %w", err)
		}
		keys = keys[n:]
	}
	return posted, sum, nil
}

// ReconStatus is the verdict of a reconciliation run.
type ReconStatus string

// The verdicts of a run.
const (
	ReconBalanced      ReconStatus = "balanced"      // every row matched and every total agreed
	ReconDiscrepancies ReconStatus = "discrepancies" // at least one outcome other than matched, or a total off
	ReconProvisional   ReconStatus = "provisional"   // a boundary record waits for the neighbouring day's statement
)

// ReconRun is one reconciliation of a channel's day. Money is in minor
// units of Currency.
type ReconRun struct {
	Channel      string
	Day          string // YYYY-MM-DD in the provider's time zone
	Status       ReconStatus
	Currency     vend.Currency
	StmtPayments int64 // the statement's summary: total paid
	StmtRefunds  int64 // total refunded
	StmtFees     int64 // total fees
	StmtRows     int
	OurPayments  int64  // our paid records attributed to the day
	OurRefunds   int64  // our succeeded refunds attributed to the day
	ClearingNet  int64  // the clearing account's movement for those records: money in − money out
	FeesPosted   int64  // the day's fee postings in the ledger
	TotalsOK     bool   // StmtPayments − StmtRefunds = ClearingNet and StmtFees = FeesPosted
	TotalsDetail string // what disagreed, when a total did not
	Matched      int
	Discrep      int // outcomes other than matched and deferred
	Deferred     int
	StartedAt    time.Time
	FinishedAt   time.Time
}

// ReconOutcome is the verdict on one statement row, or on one record of
// ours that no statement row names (StmtRow −1).
type ReconOutcome struct {
	Seq         int    // position in the run, from 0
	Kind        string // matched, missing_in_ours, missing_in_theirs, amount_mismatch, status_mismatch, currency_mismatch, duplicate, deferred
	RowKind     string // payment or refund
	StmtRow     int    // index of the statement row, −1 for a record of ours alone
	OrderNo     string
	RefundNo    string
	ProviderID  string // the provider's transaction or refund ID
	At          time.Time
	TheirAmount *vend.Amount // nil when the statement has no such row
	TheirStatus string
	OurAmount   *vend.Amount // nil when we have no such record
	OurStatus   string
	Fee         int64 // the row's fee, minor units
	Action      string
	Detail      string
	ResolvedAt  time.Time // zero while open
	Resolution  string
}

func (o ReconOutcome) identity() string {
	return o.Kind + "|" + o.RowKind + "|" + o.OrderNo + "|" + o.RefundNo + "|" + o.ProviderID
}

// SaveReconRun stores a run and its outcomes, replacing the day's
// previous run and outcomes in one transaction, so a re-run leaves exactly
// one set of results. An outcome an operator resolved keeps its
// resolution when the re-run reports the same outcome (same kind and
// references) again. Errors: ErrInput for a run without channel or day.
func (s *Store) SaveReconRun(ctx context.Context, run ReconRun, outcomes []ReconOutcome) error {
	if run.Channel == "" || run.Day == "" {
		return vend.Errorf(ErrInput, "reconciliation run needs a channel and a day")
	}
	return s.tx(ctx, "save reconciliation", func(tx *sql.Tx) error {
		// The run row first: on PostgreSQL the upsert locks it, so a
		// concurrent save of the same day waits here until this one
		// commits and then replaces its outcomes whole.
		if _, err := tx.ExecContext(ctx, `INSERT INTO recon_runs (channel, day, status, currency, stmt_payments, stmt_refunds,
			stmt_fees, stmt_rows, our_payments, our_refunds, clearing_net, fees_posted, totals_ok, totals_detail,
			matched, discrepancies, deferred, started_ms, finished_ms)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
			ON CONFLICT (channel, day) DO UPDATE SET status = excluded.status, currency = excluded.currency,
				stmt_payments = excluded.stmt_payments, stmt_refunds = excluded.stmt_refunds, stmt_fees = excluded.stmt_fees,
				stmt_rows = excluded.stmt_rows, our_payments = excluded.our_payments, our_refunds = excluded.our_refunds,
				clearing_net = excluded.clearing_net, fees_posted = excluded.fees_posted, totals_ok = excluded.totals_ok,
				totals_detail = excluded.totals_detail, matched = excluded.matched, discrepancies = excluded.discrepancies,
				deferred = excluded.deferred, started_ms = excluded.started_ms, finished_ms = excluded.finished_ms`,
			run.Channel, run.Day, string(run.Status), string(run.Currency), run.StmtPayments, run.StmtRefunds,
			run.StmtFees, run.StmtRows, run.OurPayments, run.OurRefunds, run.ClearingNet, run.FeesPosted, b2i(run.TotalsOK),
			run.TotalsDetail, run.Matched, run.Discrep, run.Deferred, run.StartedAt.UnixMilli(), run.FinishedAt.UnixMilli()); err != nil {
			return err
		}
		type res struct {
			ms     int64
			reason string
		}
		old := map[string]res{}
		rows, err := tx.QueryContext(ctx, `SELECT kind, row_kind, order_no, refund_no, provider_id, resolved_ms, resolution
			FROM recon_outcomes WHERE channel = $1 AND day = $2 AND resolved_ms IS NOT NULL`, run.Channel, run.Day)
		if err != nil {
			return err
		}
		for rows.Next() {
			var o ReconOutcome
			var r res
			if err := rows.Scan(&o.Kind, &o.RowKind, &o.OrderNo, &o.RefundNo, &o.ProviderID, &r.ms, &r.reason); err != nil {
				rows.Close()
				return err
			}
			old[o.identity()] = r
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM recon_outcomes WHERE channel = $1 AND day = $2`, run.Channel, run.Day); err != nil {
			return err
		}
		// Multi-row INSERTs, reconOutcomeBatch rows each: a day of
		// thousands of rows is a few round trips, not thousands.
		const cols = 21
		var vals []string
		var args []any
		flush := func() error {
			if len(vals) == 0 {
				return nil
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO recon_outcomes (channel, day, seq, kind, row_kind, stmt_row,
				order_no, refund_no, provider_id, at_ms, their_minor, their_currency, their_status, our_minor, our_currency,
				our_status, fee_minor, action, detail, resolved_ms, resolution) VALUES `+strings.Join(vals, ", "), args...)
			vals, args = vals[:0], args[:0]
			return err
		}
		for i, o := range outcomes {
			var their, ours *int64
			var theirCur, ourCur string
			if o.TheirAmount != nil {
				their, theirCur = &o.TheirAmount.Minor, string(o.TheirAmount.Currency)
			}
			if o.OurAmount != nil {
				ours, ourCur = &o.OurAmount.Minor, string(o.OurAmount.Currency)
			}
			var resolved *int64
			reason := ""
			if r, ok := old[o.identity()]; ok {
				resolved, reason = &r.ms, r.reason
			}
			var at int64
			if !o.At.IsZero() {
				at = o.At.UnixMilli()
			}
			vals = append(vals, in(len(args)+1, cols))
			args = append(args, run.Channel, run.Day, i, o.Kind, o.RowKind, o.StmtRow, o.OrderNo, o.RefundNo, o.ProviderID, at,
				their, theirCur, o.TheirStatus, ours, ourCur, o.OurStatus, o.Fee, o.Action, o.Detail, resolved, reason)
			if len(vals) == reconOutcomeBatch {
				if err := flush(); err != nil {
					return fmt.Errorf("outcomes up to %d: %w", i, err)
				}
			}
		}
		if err := flush(); err != nil {
			return fmt.Errorf("outcomes: %w", err)
		}
		return nil
	})
}

// reconOutcomeBatch is how many outcomes one INSERT writes (21
// parameters each, well below both databases' limits).
const reconOutcomeBatch = 100

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

const reconRunCols = `channel, day, status, currency, stmt_payments, stmt_refunds, stmt_fees, stmt_rows, our_payments,
	our_refunds, clearing_net, fees_posted, totals_ok, totals_detail, matched, discrepancies, deferred, started_ms, finished_ms`

func scanReconRun(sc interface{ Scan(...any) error }) (ReconRun, error) {
	var r ReconRun
	var status, cur string
	var ok int
	var started, finished int64
	err := sc.Scan(&r.Channel, &r.Day, &status, &cur, &r.StmtPayments, &r.StmtRefunds, &r.StmtFees, &r.StmtRows,
		&r.OurPayments, &r.OurRefunds, &r.ClearingNet, &r.FeesPosted, &ok, &r.TotalsDetail, &r.Matched, &r.Discrep,
		&r.Deferred, &started, &finished)
	r.Status, r.Currency, r.TotalsOK = ReconStatus(status), vend.Currency(cur), ok == 1
	r.StartedAt, r.FinishedAt = time.UnixMilli(started).UTC(), time.UnixMilli(finished).UTC()
	return r, err
}

// ReconRunOf returns the stored run of a channel's day and its outcomes
// in order. Errors: ErrReconNotFound.
func (s *Store) ReconRunOf(ctx context.Context, channel, day string) (ReconRun, []ReconOutcome, error) {
	run, err := scanReconRun(s.db.QueryRowContext(ctx, `SELECT `+reconRunCols+` FROM recon_runs WHERE channel = $1 AND day = $2`, channel, day))
	if errors.Is(err, sql.ErrNoRows) {
		return ReconRun{}, nil, vend.Errorf(ErrReconNotFound, "%s %s", channel, day)
	}
	if err != nil {
		return ReconRun{}, nil, fmt.Errorf("store: reconciliation run: %w", err)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT seq, kind, row_kind, stmt_row, order_no, refund_no, provider_id, at_ms,
		their_minor, their_currency, their_status, our_minor, our_currency, our_status, fee_minor, action, detail,
		COALESCE(resolved_ms, 0), resolution
		FROM recon_outcomes WHERE channel = $1 AND day = $2 ORDER BY seq`, channel, day)
	if err != nil {
		return ReconRun{}, nil, fmt.Errorf("store: reconciliation outcomes: %w", err)
	}
	defer rows.Close()
	var out []ReconOutcome
	for rows.Next() {
		var o ReconOutcome
		var at, resolved int64
		var their, ours sql.NullInt64
		var theirCur, ourCur string
		if err := rows.Scan(&o.Seq, &o.Kind, &o.RowKind, &o.StmtRow, &o.OrderNo, &o.RefundNo, &o.ProviderID, &at,
			&their, &theirCur, &o.TheirStatus, &ours, &ourCur, &o.OurStatus, &o.Fee, &o.Action, &o.Detail,
			&resolved, &o.Resolution); err != nil {
			return ReconRun{}, nil, fmt.Errorf("store: reconciliation outcomes: %w", err)
		}
		if at != 0 {
			o.At = time.UnixMilli(at).UTC()
		}
		if resolved != 0 {
			o.ResolvedAt = time.UnixMilli(resolved).UTC()
		}
		if their.Valid {
			o.TheirAmount = &vend.Amount{Minor: their.Int64, Currency: vend.Currency(theirCur)}
		}
		if ours.Valid {
			o.OurAmount = &vend.Amount{Minor: ours.Int64, Currency: vend.Currency(ourCur)}
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return ReconRun{}, nil, fmt.Errorf("store: reconciliation outcomes: %w", err)
	}
	return run, out, nil
}

// ReconRuns returns the stored runs of a channel (every channel when
// channel is ""), the newest day first, at most limit (all when limit <= 0).
func (s *Store) ReconRuns(ctx context.Context, channel string, limit int) ([]ReconRun, error) {
	q := `SELECT ` + reconRunCols + ` FROM recon_runs WHERE ($1 = '' OR channel = $1) ORDER BY day DESC, channel`
	if limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", limit)
	}
	rows, err := s.db.QueryContext(ctx, q, channel)
	if err != nil {
		return nil, fmt.Errorf("store: reconciliation runs: %w", err)
	}
	defer rows.Close()
	var out []ReconRun
	for rows.Next() {
		r, err := scanReconRun(rows)
		if err != nil {
			return nil, fmt.Errorf("store: reconciliation runs: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// ReconOpenDiscrepancies counts, per channel, the stored outcomes that
// are discrepancies (neither matched nor deferred) and not resolved.
func (s *Store) ReconOpenDiscrepancies(ctx context.Context) (map[string]int, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT channel, COUNT(*) FROM recon_outcomes
		WHERE resolved_ms IS NULL AND kind NOT IN ('matched', 'deferred') GROUP BY channel`)
	if err != nil {
		return nil, fmt.Errorf("store: open discrepancies: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var ch string
		var n int
		if err := rows.Scan(&ch, &n); err != nil {
			return nil, fmt.Errorf("store: open discrepancies: %w", err)
		}
		out[ch] = n
	}
	return out, rows.Err()
}

// ResolveReconOutcome marks one discrepancy of a run resolved with an
// operator's reason. Errors: ErrInput (empty reason), ErrReconNotFound.
func (s *Store) ResolveReconOutcome(ctx context.Context, channel, day string, seq int, reason string) error {
	reason = strings.TrimSpace(reason)
	if reason == "" || len(reason) > 500 {
		return vend.Errorf(ErrInput, "a resolution needs a reason (1-500 bytes)")
	}
	return s.tx(ctx, "resolve reconciliation outcome", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE recon_outcomes SET resolved_ms = $1, resolution = $2
			WHERE channel = $3 AND day = $4 AND seq = $5 AND kind NOT IN ('matched', 'deferred')`,
			s.nowMs(), reason, channel, day, seq)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n != 1 {
			return vend.Errorf(ErrReconNotFound, "no discrepancy %d in %s %s", seq, channel, day)
		}
		return nil
	})
}

// ReconOpenOutcome is an unresolved discrepancy with the day it was
// reported on.
type ReconOpenOutcome struct {
	Channel string
	Day     string
	ReconOutcome
}

// ReconOpenOutcomes returns the unresolved discrepancies of a channel
// (every channel when channel is ""), of one kind (every kind but matched
// and deferred when kind is ""), oldest day first: what an operator
// works through, and what the service checks before it lets money
// reported missing_in_theirs (action freeze) leave.
func (s *Store) ReconOpenOutcomes(ctx context.Context, channel, kind string) ([]ReconOpenOutcome, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT channel, day, seq, kind, row_kind, stmt_row, order_no, refund_no, provider_id,
		our_minor, our_currency, their_minor, their_currency, action, detail
		FROM recon_outcomes WHERE resolved_ms IS NULL AND kind NOT IN ('matched', 'deferred')
		AND ($1 = '' OR channel = $1) AND ($2 = '' OR kind = $2) ORDER BY day, channel, seq`, channel, kind)
	if err != nil {
		return nil, fmt.Errorf("store: open reconciliation outcomes: %w", err)
	}
	defer rows.Close()
	var out []ReconOpenOutcome
	for rows.Next() {
		var o ReconOpenOutcome
		var ours, theirs sql.NullInt64
		var ourCur, theirCur string
		if err := rows.Scan(&o.Channel, &o.Day, &o.Seq, &o.Kind, &o.RowKind, &o.StmtRow, &o.OrderNo, &o.RefundNo, &o.ProviderID,
			&ours, &ourCur, &theirs, &theirCur, &o.Action, &o.Detail); err != nil {
			return nil, fmt.Errorf("store: open reconciliation outcomes: %w", err)
		}
		if ours.Valid {
			o.OurAmount = &vend.Amount{Minor: ours.Int64, Currency: vend.Currency(ourCur)}
		}
		if theirs.Valid {
			o.TheirAmount = &vend.Amount{Minor: theirs.Int64, Currency: vend.Currency(theirCur)}
		}
		out = append(out, o)
	}
	return out, rows.Err()
}
