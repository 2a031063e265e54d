package reconcile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/payments"
	"beaconvend/cloud/store"
)

// Errors.
var (
	// ErrStatement is a statement refused before any comparison: another
	// channel's or day's, a malformed row, or a summary that is not the
	// sum of its rows. Nothing is stored; the previous results of the day
	// stay.
	ErrStatement = vend.E(vend.Invalid, "channel.statement", "reconcile: statement refused")
	// ErrTooEarly is a day that has not ended, plus the grace window, in
	// the provider's time zone.
	ErrTooEarly = vend.E(vend.Conflict, "recon.too_early", "reconcile: the day is not over")
	// ErrUnavailable wraps a failure to get a statement (the provider has
	// not published it yet, or did not answer); try again later.
	ErrUnavailable = vend.E(vend.Transient, "recon.unavailable", "reconcile: statement not available")
	// ErrInput is a bad argument: an empty channel name, a missing source.
	ErrInput = vend.E(vend.Invalid, "request.field", "reconcile: invalid input")
)

// Source gives a channel's statement of a day; every payments.Channel is
// one. An error means the statement is not available now (not yet
// published, the provider did not answer, its digest did not verify):
// the job tries again later.
type Source interface {
	Statement(ctx context.Context, day payments.Day) (payments.Statement, error)
}

// FeePoster posts one statement row's fee to the channel's fees account,
// once per key (chanfee:<channel>:<day>:<row>): posting a key again
// changes nothing and reports false. amount is what the provider kept,
// in the statement's currency (fees → channel_clearing in the ledger);
// negative when the provider returned a fee (on a refund). The store's
// PostChannelFee is one.
type FeePoster interface {
	PostChannelFee(ctx context.Context, channel, key string, amount vend.Amount) (posted bool, err error)
}

// FeeBatchPoster is a FeePoster that also posts many fees of a channel
// at once, in few transactions, with the same guarantees per fee (each
// key once; a key posted with another amount is refused). When Opts.Fees
// is one, a run posts its statement's new fees in one call; the store's
// PostChannelFees is one.
type FeeBatchPoster interface {
	FeePoster
	PostChannelFees(ctx context.Context, channel string, fees []store.Fee) (posted int, err error)
}

// Hooks are the actions the service takes on a discrepancy. Each is
// called once per run for each open (unresolved) outcome of its kind,
// after the run is stored; a re-run calls them again, so they must be
// idempotent (the service's query-and-credit is, by the order's ledger
// key). An error is logged and returned by Reconcile joined with the
// others; the run stays stored.
type Hooks struct {
	// MissingInOurs gets a row the provider paid (or refunded) that we
	// never booked: query the order at the provider, then credit it, or
	// refund it to the payer.
	MissingInOurs func(ctx context.Context, channel string, o Outcome) error
	// MissingInTheirs gets a record we credited that the provider's
	// statement does not list: alert, and freeze the credited amount.
	MissingInTheirs func(ctx context.Context, channel string, o Outcome) error
}

// Opts configures a Reconciler. The zero value is usable.
type Opts struct {
	// Fees posts statement fees; without it no fee is posted, and a day
	// with fees does not balance (TotalsOK false, "fees not posted").
	Fees FeePoster
	// Hooks act on discrepancies.
	Hooks Hooks
	// Grace is how long after a day's end (in the provider's time zone)
	// the day may be reconciled, and how near a day boundary a record of
	// ours may lie and still belong to the neighbouring day's statement;
	// 0 means DefaultGrace.
	Grace time.Duration
	// Location is the provider's time zone; nil means China Standard
	// Time (UTC+8, no daylight saving), the zone of WeChat Pay's and
	// Alipay's statements.
	Location *time.Location
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Logger receives one line per run and hook failures; discard when nil.
	Logger *slog.Logger
	// Metrics, when set, are refreshed from the store after each run.
	Metrics *Metrics
}

// DefaultGrace is the default grace window: an order paid at 23:59:59
// whose notification arrives after midnight, or a record whose time is
// the notification's rather than the provider's, is still found in the
// neighbouring day's statement within it.
const DefaultGrace = time.Hour

// ChinaStandardTime is UTC+8, the time zone of WeChat Pay's and Alipay's
// statements (China has kept no daylight saving time since 1991).
var ChinaStandardTime = time.FixedZone("CST", 8*3600)

// Reconciler compares channel statements with our records and the ledger
// and stores the results. It is safe for concurrent use; reconciling one
// (channel, day) twice at once is safe too (the later save wins whole).
type Reconciler struct {
	st    *store.Store
	fees  FeePoster
	hooks Hooks
	grace time.Duration
	loc   *time.Location
	now   func() time.Time
	log   *slog.Logger
	m     *Metrics
}

// New returns a Reconciler over st.
func New(st *store.Store, opts *Opts) *Reconciler {
	if opts == nil {
		opts = &Opts{}
	}
	r := &Reconciler{st: st, fees: opts.Fees, hooks: opts.Hooks, grace: opts.Grace, loc: opts.Location,
		now: opts.Now, log: opts.Logger, m: opts.Metrics}
	if r.grace <= 0 {
		r.grace = DefaultGrace
	}
	if r.loc == nil {
		r.loc = ChinaStandardTime
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.log == nil {
		r.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return r
}

// Zoned is implemented by a statement source whose days are in a time
// zone of its own (Stripe's statement days are UTC days); a source
// without it, or whose Location is nil, uses Opts.Location.
type Zoned interface {
	Location() *time.Location
}

// in returns r in src's time zone: the same Reconciler when src has none
// of its own.
func (r *Reconciler) in(src Source) *Reconciler {
	z, ok := src.(Zoned)
	if !ok {
		return r
	}
	loc := z.Location()
	if loc == nil || loc == r.loc {
		return r
	}
	c := *r
	c.loc = loc
	return &c
}

// Bounds returns the day's first instant and the next day's first
// instant in the provider's time zone.
func (r *Reconciler) Bounds(day payments.Day) (start, end time.Time) {
	start = time.Date(day.Year, day.Month, day.Day, 0, 0, 0, 0, r.loc)
	return start, start.AddDate(0, 0, 1)
}

// Ready reports whether day may be reconciled now: its end plus the
// grace window has passed.
func (r *Reconciler) Ready(day payments.Day) bool {
	_, end := r.Bounds(day)
	return !r.now().Before(end.Add(r.grace))
}

// Report is a stored run and its outcomes.
type Report struct {
	Run      store.ReconRun
	Outcomes []Outcome
}

// Count returns how many outcomes are of kind k.
func (rp Report) Count(k Kind) int {
	n := 0
	for _, o := range rp.Outcomes {
		if Kind(o.Kind) == k {
			n++
		}
	}
	return n
}

// Reconcile downloads the channel's statement of day from src, checks it
// (Validate), compares it with our records of the day and the ledger,
// posts its fees, and stores the run, replacing the day's previous one.
// It is safe to run again: fees post once per key, the results are
// replaced atomically, and resolutions carry over. Errors: ErrTooEarly,
// ErrUnavailable (wrapping the source's error), ErrStatement (nothing
// stored), the store's; and, with the run stored, the hooks' errors.
func (r *Reconciler) Reconcile(ctx context.Context, channel string, src Source, day payments.Day) (Report, error) {
	if channel == "" || src == nil {
		return Report{}, vend.Errorf(ErrInput, "reconcile needs a channel name and its statement source")
	}
	r = r.in(src)
	if !r.Ready(day) {
		_, end := r.Bounds(day)
		return Report{}, vend.Errorf(ErrTooEarly, "%s %s: not before %s", channel, day, end.Add(r.grace).Format(time.RFC3339))
	}
	started := r.now()
	st, err := src.Statement(ctx, day)
	if err != nil {
		r.m.failed(channel, "unavailable")
		return Report{}, vend.Errorf(ErrUnavailable, "%s %s: %v", channel, day, err)
	}
	if err := Validate(st, channel, day); err != nil {
		r.m.failed(channel, "rejected")
		r.log.Warn("reconcile: statement refused", "channel", channel, "day", day.String(), "err", err)
		return Report{}, err
	}
	start, end := r.Bounds(day)
	recs, err := r.load(ctx, st, start, end)
	if err != nil {
		return Report{}, err
	}
	outs := Match(st, recs)
	outs = r.boundaries(ctx, channel, src, day, start, end, outs)
	if err := r.postFees(ctx, st); err != nil {
		return Report{}, err
	}
	run, err := r.totals(ctx, st, recs, outs)
	if err != nil {
		return Report{}, err
	}
	run.StartedAt, run.FinishedAt = started, r.now()
	for i := range outs {
		outs[i].Seq = i
	}
	if err := r.st.SaveReconRun(ctx, run, outs); err != nil {
		return Report{}, fmt.Errorf("reconcile: %s %s: %w", channel, day, err)
	}
	run, stored, err := r.st.ReconRunOf(ctx, channel, day.String())
	if err != nil {
		return Report{}, fmt.Errorf("reconcile: %s %s: %w", channel, day, err)
	}
	rep := Report{Run: run, Outcomes: stored}
	r.log.Info("reconcile: run", "channel", channel, "day", day.String(), "status", string(run.Status),
		"rows", run.StmtRows, "matched", run.Matched, "discrepancies", run.Discrep, "deferred", run.Deferred, "totals_ok", run.TotalsOK)
	if r.m != nil {
		if err := r.m.Refresh(ctx, r.st); err != nil {
			r.log.Warn("reconcile: metrics", "err", err)
		}
	}
	return rep, r.act(ctx, channel, stored)
}

// load reads our records of the day and every record a row names.
func (r *Reconciler) load(ctx context.Context, st payments.Statement, start, end time.Time) (Records, error) {
	recs := Records{Payments: map[string]store.ReconPayment{}, Refunds: map[string]store.ReconRefund{}}
	ps, err := r.st.ReconPaymentsPaid(ctx, st.Channel, start, end)
	if err != nil {
		return recs, err
	}
	for _, p := range ps {
		recs.Payments[p.OrderNo] = p
		recs.DayPayments = append(recs.DayPayments, p.OrderNo)
	}
	rs, err := r.st.ReconRefundsDone(ctx, st.Channel, start, end)
	if err != nil {
		return recs, err
	}
	for _, x := range rs {
		recs.Refunds[x.RefundNo] = x
		recs.DayRefunds = append(recs.DayRefunds, x.RefundNo)
	}
	var orders, refunds []string
	for _, row := range st.Rows {
		if row.Kind == payments.RowRefund {
			for _, id := range []string{row.RefundNo, row.ProviderRefundID} {
				if id != "" {
					refunds = append(refunds, id)
				}
			}
		} else if _, ok := recs.Payments[row.OrderNo]; !ok {
			orders = append(orders, row.OrderNo)
		}
	}
	more, err := r.st.ReconPaymentsByOrder(ctx, st.Channel, orders)
	if err != nil {
		return recs, err
	}
	for no, p := range more {
		recs.Payments[no] = p
	}
	moreR, err := r.st.ReconRefundsByNo(ctx, st.Channel, refunds)
	if err != nil {
		return recs, err
	}
	for no, x := range moreR {
		recs.Refunds[no] = x
	}
	return recs, nil
}

// boundaries looks up, for each MissingInTheirs record within the grace
// window of a day boundary, the neighbouring day's statement: a record
// it lists belongs to that day (and is reported there, by that day's
// run), so it leaves this day's outcomes; when that statement is not
// available yet the outcome becomes Deferred.
func (r *Reconciler) boundaries(ctx context.Context, channel string, src Source, day payments.Day, start, end time.Time, outs []Outcome) []Outcome {
	type nb struct {
		st  payments.Statement
		err error
	}
	cache := map[payments.Day]*nb{}
	neighbour := func(d payments.Day) *nb {
		if n, ok := cache[d]; ok {
			return n
		}
		n := &nb{}
		if !r.Ready(d) {
			n.err = fmt.Errorf("%s is not over", d)
		} else if n.st, n.err = src.Statement(ctx, d); n.err == nil {
			n.err = Validate(n.st, channel, d)
		}
		cache[d] = n
		return n
	}
	kept := outs[:0]
	for _, o := range outs {
		if o.Kind != MissingInTheirs {
			kept = append(kept, o)
			continue
		}
		var d payments.Day
		switch {
		case o.At.Before(start.Add(r.grace)):
			d = dayOf(start.Add(-time.Hour), r.loc)
		case !o.At.Before(end.Add(-r.grace)):
			d = dayOf(end, r.loc)
		default:
			kept = append(kept, o)
			continue
		}
		n := neighbour(d)
		if n.err != nil {
			o.Kind, o.Action = Deferred, ActionWait
			o.Detail = fmt.Sprintf("absent from this statement, within %s of the boundary; statement of %s not available: %v", r.grace, d, n.err)
			kept = append(kept, o)
			continue
		}
		if listed(n.st, o) {
			r.log.Info("reconcile: record belongs to the neighbouring day", "day", day.String(), "neighbour", d.String(),
				"order", o.OrderNo, "refund", o.RefundNo)
			continue
		}
		o.Detail += fmt.Sprintf(" (nor from the statement of %s)", d)
		kept = append(kept, o)
	}
	return kept
}

func listed(st payments.Statement, o Outcome) bool {
	for _, row := range st.Rows {
		if string(row.Kind) != o.RowKind {
			continue
		}
		if row.Kind == payments.RowPayment && row.OrderNo == o.OrderNo {
			return true
		}
		if row.Kind == payments.RowRefund && ((row.RefundNo != "" && row.RefundNo == o.RefundNo) ||
			(row.ProviderRefundID != "" && row.ProviderRefundID == o.ProviderID)) {
			return true
		}
	}
	return false
}

func dayOf(t time.Time, loc *time.Location) payments.Day {
	t = t.In(loc)
	return payments.Day{Year: t.Year(), Month: t.Month(), Day: t.Day()}
}

// FeeRowIDs returns the <row> part of each statement row's fee key: p-
// and the provider's transaction ID (else our order number) for a
// payment, r- and the provider's refund ID (else our refund number) for
// a refund, and -2, -3… for the second and later rows with the same ID,
// so a statement downloaded again posts under the same keys.
func FeeRowIDs(st payments.Statement) []string {
	ids := make([]string, len(st.Rows))
	n := map[string]int{}
	for i, row := range st.Rows {
		id := "p-" + firstOf(row.ProviderTxID, row.OrderNo)
		if row.Kind == payments.RowRefund {
			id = "r-" + firstOf(row.ProviderRefundID, row.RefundNo)
		}
		n[id]++
		if n[id] > 1 {
			id += "-" + strconv.Itoa(n[id])
		}
		ids[i] = id
	}
	return ids
}

func firstOf(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// feeKeys returns the ledger key of each row's fee (zero fees have none)
// and the fee by key.
func feeKeys(st payments.Statement) ([]string, map[string]int64) {
	var keys []string
	fees := map[string]int64{}
	for i, id := range FeeRowIDs(st) {
		if fee := st.Rows[i].Fee; fee != 0 {
			k := store.ChannelFeeKey(st.Channel, st.Day.String(), id)
			keys = append(keys, k)
			fees[k] = fee
		}
	}
	return keys, fees
}

// postFees posts the fees the ledger does not hold yet.
func (r *Reconciler) postFees(ctx context.Context, st payments.Statement) error {
	if r.fees == nil {
		return nil
	}
	keys, fees := feeKeys(st)
	posted, _, err := r.st.ChannelFees(ctx, st.Channel, st.Currency, keys)
	if err != nil {
		return err
	}
	if b, ok := r.fees.(FeeBatchPoster); ok {
		var todo []store.Fee
		for _, key := range keys {
			if !posted[key] {
				todo = append(todo, store.Fee{Key: key, Amount: vend.Amount{Minor: fees[key], Currency: st.Currency}})
			}
		}
		if len(todo) == 0 {
			return nil
		}
		if _, err := b.PostChannelFees(ctx, st.Channel, todo); err != nil {
			return fmt.Errorf("reconcile: %s %s: post %d fees: %w", st.Channel, st.Day, len(todo), err)
		}
		return nil
	}
	for _, key := range keys {
		if posted[key] {
			continue
		}
		if _, err := r.fees.PostChannelFee(ctx, st.Channel, key, vend.Amount{Minor: fees[key], Currency: st.Currency}); err != nil {
			return fmt.Errorf("reconcile: %s %s: post fee %s: %w", st.Channel, st.Day, key, err)
		}
	}
	return nil
}

// totals builds the run: counts, our totals and the clearing movement
// for the records the day's outcomes name (deferred ones excluded), and
// the fee postings.
func (r *Reconciler) totals(ctx context.Context, st payments.Statement, recs Records, outs []Outcome) (store.ReconRun, error) {
	run := store.ReconRun{Channel: st.Channel, Day: st.Day.String(), Currency: st.Currency,
		StmtPayments: st.Payments, StmtRefunds: st.Refunds, StmtFees: st.Fees, StmtRows: len(st.Rows)}
	seenP, seenR := map[string]bool{}, map[string]bool{}
	for _, o := range outs {
		switch Kind(o.Kind) {
		case Matched:
			run.Matched++
		case Deferred:
			run.Deferred++
			continue
		default:
			run.Discrep++
		}
		if o.OurAmount == nil {
			continue
		}
		if o.RowKind == string(payments.RowRefund) {
			rec, ok := recs.Refunds[o.RefundNo]
			if !ok || seenR[o.RefundNo] {
				continue
			}
			seenR[o.RefundNo] = true
			run.ClearingNet -= rec.Cleared
			if rec.State == "succeeded" {
				run.OurRefunds += rec.Amount.Minor
			}
		} else {
			rec, ok := recs.Payments[o.OrderNo]
			if !ok || seenP[o.OrderNo] {
				continue
			}
			seenP[o.OrderNo] = true
			run.ClearingNet += rec.Cleared
			if rec.State == "paid" {
				run.OurPayments += rec.Amount.Minor
			}
		}
	}
	keys, _ := feeKeys(st)
	_, posted, err := r.st.ChannelFees(ctx, st.Channel, st.Currency, keys)
	if err != nil {
		return run, err
	}
	run.FeesPosted = posted
	var off []string
	if net := st.Payments - st.Refunds; net != run.ClearingNet {
		off = append(off, fmt.Sprintf("statement net %s, clearing account moved %s", payments.FormatMinor(net), payments.FormatMinor(run.ClearingNet)))
	}
	if run.FeesPosted != st.Fees {
		if r.fees == nil && run.FeesPosted == 0 {
			off = append(off, fmt.Sprintf("fees %s not posted (no fee poster)", payments.FormatMinor(st.Fees)))
		} else {
			off = append(off, fmt.Sprintf("statement fees %s, fees account moved %s", payments.FormatMinor(st.Fees), payments.FormatMinor(run.FeesPosted)))
		}
	}
	run.TotalsOK = len(off) == 0
	run.TotalsDetail = strings.Join(off, "; ")
	switch {
	case run.Deferred > 0:
		run.Status = store.ReconProvisional
	case run.Discrep == 0 && run.TotalsOK:
		run.Status = store.ReconBalanced
	default:
		run.Status = store.ReconDiscrepancies
	}
	return run, nil
}

// act calls the hooks for the run's open discrepancies.
func (r *Reconciler) act(ctx context.Context, channel string, outs []Outcome) error {
	var errs []error
	for _, o := range outs {
		if !o.ResolvedAt.IsZero() {
			continue
		}
		var hook func(context.Context, string, Outcome) error
		switch Kind(o.Kind) {
		case MissingInOurs:
			hook = r.hooks.MissingInOurs
		case MissingInTheirs:
			hook = r.hooks.MissingInTheirs
		}
		if hook == nil {
			continue
		}
		if err := hook(ctx, channel, o); err != nil {
			r.log.Error("reconcile: hook", "channel", channel, "kind", o.Kind, "order", o.OrderNo, "refund", o.RefundNo, "err", err)
			errs = append(errs, fmt.Errorf("reconcile: %s %s %s: %w", channel, o.Kind, firstOf(o.RefundNo, o.OrderNo), err))
		}
	}
	return errors.Join(errs...)
}

// KindCounts returns the number of outcomes of each kind, every kind
// present (0 when none), in the order of Kinds.
func KindCounts(outs []Outcome) map[Kind]int {
	m := make(map[Kind]int, len(Kinds))
	for _, k := range Kinds {
		m[k] = 0
	}
	for _, o := range outs {
		m[Kind(o.Kind)]++
	}
	return m
}
