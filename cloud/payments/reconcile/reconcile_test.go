package reconcile_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/payments"
	"beaconvend/cloud/payments/reconcile"
	"beaconvend/cloud/store"
)

// cleanDay records day1's business on both sides: three paid orders (one
// at 00:00:00 and one at 23:59:59), a refund, fees on each row.
func cleanDay(f *fixture) payments.Statement {
	f.pay("o-first", cny(1000), at(day1, 0, 0, 0), true)
	f.pay("o-noon", cny(2550), at(day1, 12, 0, 0), true)
	f.pay("o-last", cny(199), at(day1, 23, 59, 59), true)
	f.refund("r-noon", "o-noon", cny(550), "succeeded", at(day1, 15, 0, 0))
	return stmt(day1,
		payRow("o-first", cny(1000), at(day1, 0, 0, 0), 6),
		payRow("o-noon", cny(2550), at(day1, 12, 0, 0), 15),
		refundRow("r-noon", "o-noon", cny(550), at(day1, 15, 0, 0), -3),
		payRow("o-last", cny(199), at(day1, 23, 59, 59), 1),
	)
}

func TestCleanDayAllMatched(t *testing.T) {
	forEachDB(t, func(t *testing.T, f *fixture) {
		st := cleanDay(f)
		r := reconcile.New(f.s, &reconcile.Opts{Fees: f.s, Now: f.clk.Now})
		rep, err := r.Reconcile(f.ctx, ch, newSource(st), day1)
		if err != nil {
			t.Fatalf("Reconcile: %v", err)
		}
		if got, want := kinds(rep.Outcomes), []string{"matched:o-first", "matched:o-noon", "matched:r-noon", "matched:o-last"}; !reflect.DeepEqual(got, want) {
			t.Fatalf("outcomes = %v, want %v", got, want)
		}
		run := rep.Run
		if run.Status != store.ReconBalanced || !run.TotalsOK || run.TotalsDetail != "" {
			t.Fatalf("run = %s totals ok %v (%s), want balanced with totals equal", run.Status, run.TotalsOK, run.TotalsDetail)
		}
		if run.StmtPayments != 3749 || run.OurPayments != 3749 || run.StmtRefunds != 550 || run.OurRefunds != 550 ||
			run.ClearingNet != 3199 || run.StmtFees != 19 || run.FeesPosted != 19 || run.Matched != 4 || run.Discrep != 0 {
			t.Fatalf("run totals = %+v", run)
		}
		f.checkLedger()
		fees, err := f.s.Balance(f.ctx, store.AccountKind("fees"), ch, "CNY")
		f.must(err)
		if fees.Minor != -19 {
			t.Fatalf("fees account = %d, want -19 (the provider kept 0.19)", fees.Minor)
		}
	})
}

func TestRerunIsIdempotent(t *testing.T) {
	forEachDB(t, func(t *testing.T, f *fixture) {
		st := cleanDay(f)
		f.pay("o-gone", cny(700), at(day1, 13, 0, 0), true) // a discrepancy, so the re-run has one to keep
		hooks := 0
		r := reconcile.New(f.s, &reconcile.Opts{Fees: f.s, Now: f.clk.Now, Hooks: reconcile.Hooks{
			MissingInTheirs: func(ctx context.Context, channel string, o reconcile.Outcome) error { hooks++; return nil },
		}})
		src := newSource(st)
		first, err := r.Reconcile(f.ctx, ch, src, day1)
		f.must(err)
		ledgerTx := f.count(`SELECT COUNT(*) FROM ledger_tx`)
		f.clk.Add(time.Hour)
		second, err := r.Reconcile(f.ctx, ch, src, day1)
		f.must(err)
		if !reflect.DeepEqual(kinds(first.Outcomes), kinds(second.Outcomes)) {
			t.Fatalf("re-run outcomes %v, first %v", kinds(second.Outcomes), kinds(first.Outcomes))
		}
		if n := f.count(`SELECT COUNT(*) FROM recon_runs`); n != 1 {
			t.Fatalf("%d runs stored after a re-run, want 1", n)
		}
		if n := f.count(`SELECT COUNT(*) FROM recon_outcomes`); n != len(first.Outcomes) {
			t.Fatalf("%d outcomes stored after a re-run, want %d", n, len(first.Outcomes))
		}
		if n := f.count(`SELECT COUNT(*) FROM ledger_tx`); n != ledgerTx {
			t.Fatalf("re-run wrote %d ledger transactions, want none (fees post once per key)", n-ledgerTx)
		}
		if second.Run.FeesPosted != 19 || !second.Run.FinishedAt.After(first.Run.FinishedAt) {
			t.Fatalf("re-run: fees posted %d (want 19), finished %v after %v", second.Run.FeesPosted, second.Run.FinishedAt, first.Run.FinishedAt)
		}
		if hooks != 2 {
			t.Fatalf("missing-in-theirs hook called %d times over two runs, want once per run", hooks)
		}
		f.checkLedger()
	})
}

// oneOfEach records day1 with one injected discrepancy of each kind on
// top of two clean rows.
func oneOfEach(f *fixture) payments.Statement {
	f.pay("o-ok", cny(1000), at(day1, 9, 0, 0), true)
	f.pay("o-dup", cny(300), at(day1, 9, 30, 0), true)
	f.pay("o-theirs", cny(800), at(day1, 10, 0, 0), true) // credited by us, not in the statement
	f.pay("o-amount", cny(1001), at(day1, 11, 0, 0), true)
	f.pay("o-currency", cny(500), at(day1, 12, 0, 0), true)
	f.pay("o-refunded", cny(900), at(day1, 8, 0, 0), true)
	f.refund("r-status", "o-refunded", cny(400), "pending", at(day1, 13, 0, 0))
	return stmt(day1,
		payRow("o-ok", cny(1000), at(day1, 9, 0, 0), 6),
		payRow("o-refunded", cny(900), at(day1, 8, 0, 0), 5),
		payRow("o-dup", cny(300), at(day1, 9, 30, 0), 2),
		payRow("o-ours", cny(1200), at(day1, 9, 45, 0), 7), // paid at the provider, unknown to us
		payRow("o-amount", cny(1000), at(day1, 11, 0, 0), 6),
		payRow("o-currency", vend.Amount{Minor: 500, Currency: "USD"}, at(day1, 12, 0, 0), 3),
		refundRow("r-status", "o-refunded", cny(400), at(day1, 13, 0, 0), -2),
		payRow("o-dup", cny(300), at(day1, 9, 30, 0), 2),
	)
}

func TestOneDiscrepancyOfEachKind(t *testing.T) {
	forEachDB(t, func(t *testing.T, f *fixture) {
		st := oneOfEach(f)
		var ours, theirs []string
		r := reconcile.New(f.s, &reconcile.Opts{Fees: f.s, Now: f.clk.Now, Hooks: reconcile.Hooks{
			MissingInOurs: func(ctx context.Context, c string, o reconcile.Outcome) error {
				ours = append(ours, o.OrderNo)
				return nil
			},
			MissingInTheirs: func(ctx context.Context, c string, o reconcile.Outcome) error {
				theirs = append(theirs, o.OrderNo)
				return nil
			},
		}})
		rep, err := r.Reconcile(f.ctx, ch, newSource(st), day1)
		f.must(err)
		want := []string{"matched:o-ok", "matched:o-refunded", "matched:o-dup", "missing_in_ours:o-ours",
			"amount_mismatch:o-amount", "currency_mismatch:o-currency", "status_mismatch:r-status", "duplicate:o-dup",
			"missing_in_theirs:o-theirs"}
		if got := kinds(rep.Outcomes); !reflect.DeepEqual(got, want) {
			t.Fatalf("outcomes\n got %v\nwant %v", got, want)
		}
		for _, o := range rep.Outcomes {
			wantAction := map[string]string{"matched": "", "missing_in_ours": "query_and_credit", "missing_in_theirs": "freeze",
				"amount_mismatch": "review", "currency_mismatch": "review", "status_mismatch": "query_refund", "duplicate": "review"}[o.Kind]
			if o.Action != wantAction {
				t.Errorf("%s %s: action %q, want %q", o.Kind, o.OrderNo, o.Action, wantAction)
			}
		}
		counts := reconcile.KindCounts(rep.Outcomes)
		for _, k := range []reconcile.Kind{reconcile.MissingInOurs, reconcile.MissingInTheirs, reconcile.AmountMismatch,
			reconcile.StatusMismatch, reconcile.CurrencyMismatch, reconcile.Duplicate} {
			if counts[k] != 1 {
				t.Errorf("%s reported %d times, want exactly once", k, counts[k])
			}
		}
		if !slices.Equal(ours, []string{"o-ours"}) || !slices.Equal(theirs, []string{"o-theirs"}) {
			t.Fatalf("hooks: missing in ours %v, missing in theirs %v", ours, theirs)
		}
		run := rep.Run
		if run.Status != store.ReconDiscrepancies || run.TotalsOK || run.Discrep != 6 || run.Matched != 3 {
			t.Fatalf("run: %s, totals ok %v, %d discrepancies, %d matched", run.Status, run.TotalsOK, run.Discrep, run.Matched)
		}
		// Statement net 5200 - 400; the ledger moved 1000+900+300+800+1001+500 in, 400 out.
		if run.StmtPayments-run.StmtRefunds != 4800 || run.ClearingNet != 4101 || run.FeesPosted != run.StmtFees ||
			!strings.Contains(run.TotalsDetail, "statement net 48.00, clearing account moved 41.01") {
			t.Fatalf("totals: statement %d-%d, clearing %d, fees %d/%d, detail %q", run.StmtPayments, run.StmtRefunds,
				run.ClearingNet, run.FeesPosted, run.StmtFees, run.TotalsDetail)
		}
		open, err := f.s.ReconOpenDiscrepancies(f.ctx)
		f.must(err)
		if open[ch] != 6 {
			t.Fatalf("open discrepancies %v, want 6", open)
		}

		// An operator resolves the missing-in-theirs; a re-run keeps the
		// resolution and does not call its hook again.
		var seq int
		for _, o := range rep.Outcomes {
			if o.Kind == reconcile.MissingInTheirs {
				seq = o.Seq
			}
		}
		f.must(f.s.ResolveReconOutcome(f.ctx, ch, day1.String(), seq, "provider confirmed a late bill entry"))
		theirs = nil
		rep2, err := r.Reconcile(f.ctx, ch, newSource(st), day1)
		f.must(err)
		if len(theirs) != 0 || rep2.Outcomes[seq].Resolution != "provider confirmed a late bill entry" {
			t.Fatalf("after resolution: hook %v, outcome %+v", theirs, rep2.Outcomes[seq])
		}
		open, _ = f.s.ReconOpenDiscrepancies(f.ctx)
		if open[ch] != 5 {
			t.Fatalf("open discrepancies after one resolution %v, want 5", open)
		}
		f.checkLedger()
	})
}

func TestMissingInOursVariants(t *testing.T) {
	forEachDB(t, func(t *testing.T, f *fixture) {
		f.order("o-pending", cny(100), "pending", at(day1, 10, 0, 0))
		f.order("o-closed", cny(200), "closed", at(day1, 10, 0, 0))
		f.pay("o-uncredited", cny(300), at(day1, 11, 0, 0), false)
		f.pay("o-base", cny(900), at(day1, 8, 0, 0), true)
		st := stmt(day1,
			payRow("o-pending", cny(100), at(day1, 10, 1, 0), 0),
			payRow("o-closed", cny(200), at(day1, 10, 2, 0), 0),
			payRow("o-uncredited", cny(300), at(day1, 11, 0, 0), 0),
			refundRow("r-unknown", "o-base", cny(50), at(day1, 12, 0, 0), 0),
			payRow("o-base", cny(900), at(day1, 8, 0, 0), 0),
		)
		rep, err := reconcile.New(f.s, &reconcile.Opts{Now: f.clk.Now}).Reconcile(f.ctx, ch, newSource(st), day1)
		f.must(err)
		want := []string{"missing_in_ours:o-pending", "missing_in_ours:o-closed", "missing_in_ours:o-uncredited",
			"missing_in_ours:r-unknown", "matched:o-base"}
		if got := kinds(rep.Outcomes); !reflect.DeepEqual(got, want) {
			t.Fatalf("outcomes\n got %v\nwant %v", got, want)
		}
		if rep.Outcomes[0].OurStatus != "pending" || rep.Outcomes[3].Action != reconcile.ActionReview {
			t.Fatalf("outcomes: %+v", rep.Outcomes)
		}
	})
}

func TestStatementSummaryDisagreesIsRejected(t *testing.T) {
	forEachDB(t, func(t *testing.T, f *fixture) {
		good := cleanDay(f)
		r := reconcile.New(f.s, &reconcile.Opts{Fees: f.s, Now: f.clk.Now})
		before, err := r.Reconcile(f.ctx, ch, newSource(good), day1)
		f.must(err)
		bad := good
		bad.Payments++ // the summary row says 0.01 more than the rows
		ledgerTx := f.count(`SELECT COUNT(*) FROM ledger_tx`)
		_, err = r.Reconcile(f.ctx, ch, newSource(bad), day1)
		if vend.CodeOf(err) != "channel.statement" || !strings.HasPrefix(err.Error(), "reconcile: ") ||
			!strings.Contains(err.Error(), "summary says payments 37.50, the rows sum to 37.49") {
			t.Fatalf("Reconcile(bad summary) = %v, want a channel.statement error naming both totals", err)
		}
		after, outs, err := f.s.ReconRunOf(f.ctx, ch, day1.String())
		f.must(err)
		if after.FinishedAt != before.Run.FinishedAt || len(outs) != len(before.Outcomes) {
			t.Fatalf("a refused statement changed the stored run: %+v", after)
		}
		if n := f.count(`SELECT COUNT(*) FROM ledger_tx`); n != ledgerTx {
			t.Fatalf("a refused statement posted %d ledger transactions", n-ledgerTx)
		}
	})
}

func TestValidate(t *testing.T) {
	base := stmt(day1, payRow("o1", cny(100), at(day1, 1, 0, 0), 1), refundRow("r1", "o1", cny(40), at(day1, 2, 0, 0), 0))
	for _, tc := range []struct {
		name string
		edit func(st *payments.Statement)
		want string // "" for valid
	}{
		{"valid", func(st *payments.Statement) {}, ""},
		{"refunds summary", func(st *payments.Statement) { st.Refunds = 41 }, "summary says refunds 0.41, the rows sum to 0.40"},
		{"fees summary", func(st *payments.Statement) { st.Fees = 0 }, "summary says fees 0.00, the rows sum to 0.01"},
		{"channel", func(st *payments.Statement) { st.Channel = "alipay" }, `statement of channel "alipay", want "wechatpay"`},
		{"day", func(st *payments.Statement) { st.Day = day2 }, "statement of 2026-03-02, want 2026-03-01"},
		{"currency", func(st *payments.Statement) { st.Currency = "yuan" }, "statement currency"},
		{"zero amount", func(st *payments.Statement) { st.Rows[0].Amount.Minor = 0; st.Payments = 0 }, "row 0: amount 0 minor units"},
		{"no order", func(st *payments.Statement) { st.Rows[0].OrderNo = "" }, "row 0: payment without an order number"},
		{"no refund no", func(st *payments.Statement) { st.Rows[1].RefundNo, st.Rows[1].ProviderRefundID = "", "" }, "row 1: refund without a refund number"},
		{"kind", func(st *payments.Statement) { st.Rows[1].Kind = "chargeback" }, `row 1: kind "chargeback"`},
		{"overflow", func(st *payments.Statement) {
			st.Rows = append(st.Rows, payRow("o2", cny(1<<62), at(day1, 3, 0, 0), 0), payRow("o3", cny(1<<62), at(day1, 3, 0, 0), 0))
		}, "row 3: totals overflow"},
	} {
		st := base
		st.Rows = slices.Clone(base.Rows)
		tc.edit(&st)
		err := reconcile.Validate(st, ch, day1)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: Validate = %v, want nil", tc.name, err)
			}
			continue
		}
		if !errors.Is(err, reconcile.ErrStatement) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate = %v, want ErrStatement containing %q", tc.name, err, tc.want)
		}
	}
}

func TestDayBoundsAndTooEarly(t *testing.T) {
	forEachDB(t, func(t *testing.T, f *fixture) {
		r := reconcile.New(f.s, &reconcile.Opts{Now: f.clk.Now})
		start, end := r.Bounds(day1)
		if !start.Equal(time.Date(2026, 2, 28, 16, 0, 0, 0, time.UTC)) || !end.Equal(time.Date(2026, 3, 1, 16, 0, 0, 0, time.UTC)) {
			t.Fatalf("Bounds(%s) = %v, %v: want 16:00 UTC the evening before to 16:00 UTC", day1, start, end)
		}
		f.clk.Set(at(day2, 0, 59, 59))
		_, err := r.Reconcile(f.ctx, ch, newSource(stmt(day1)), day1)
		if vend.CodeOf(err) != "recon.too_early" {
			t.Fatalf("Reconcile at 00:59:59 the next day = %v, want recon.too_early (grace 1 h)", err)
		}
		f.clk.Set(at(day2, 1, 0, 0))
		rep, err := r.Reconcile(f.ctx, ch, newSource(stmt(day1)), day1)
		if err != nil || rep.Run.Status != store.ReconBalanced {
			t.Fatalf("Reconcile of an empty day at 01:00 = %v, %v", rep.Run.Status, err)
		}
	})
}

// An order paid at 23:59:59 whose record carries the notification's
// arrival after midnight: it is day1's row, matched by day1's run, and
// day2's run finds it in day1's statement and leaves it to day1.
func TestMidnightRecordAfterBoundary(t *testing.T) {
	forEachDB(t, func(t *testing.T, f *fixture) {
		f.pay("o-late", cny(500), at(day2, 0, 0, 3), true) // paid 23:59:59, stamped on arrival
		f.pay("o-day2", cny(100), at(day2, 0, 0, 0), true) // paid exactly at midnight: day2's
		src := newSource(
			stmt(day1, payRow("o-late", cny(500), at(day1, 23, 59, 59), 0)),
			stmt(day2, payRow("o-day2", cny(100), at(day2, 0, 0, 0), 0)),
		)
		r := reconcile.New(f.s, &reconcile.Opts{Now: f.clk.Now})
		rep1, err := r.Reconcile(f.ctx, ch, src, day1)
		f.must(err)
		if got := kinds(rep1.Outcomes); !slices.Equal(got, []string{"matched:o-late"}) || rep1.Run.Status != store.ReconBalanced {
			t.Fatalf("day1: %v %s (%s)", got, rep1.Run.Status, rep1.Run.TotalsDetail)
		}
		rep2, err := r.Reconcile(f.ctx, ch, src, day2)
		f.must(err)
		if got := kinds(rep2.Outcomes); !slices.Equal(got, []string{"matched:o-day2"}) || rep2.Run.Status != store.ReconBalanced {
			t.Fatalf("day2: %v %s (%s)", got, rep2.Run.Status, rep2.Run.TotalsDetail)
		}
	})
}

// An order we stamped 23:59:30 that the provider lists on the next day:
// day1's run defers it while day2's statement is not out (provisional),
// and leaves it to day2 once it is; a record far from the boundary is
// missing at once.
func TestMidnightRowInNextStatement(t *testing.T) {
	forEachDB(t, func(t *testing.T, f *fixture) {
		f.pay("o-edge", cny(500), at(day1, 23, 59, 30), true)
		f.pay("o-noon", cny(100), at(day1, 12, 0, 0), true)
		src := newSource(stmt(day1, payRow("o-noon", cny(100), at(day1, 12, 0, 0), 0)))
		f.clk.Set(at(day2, 9, 0, 0)) // day2 is not over: its statement cannot exist
		r := reconcile.New(f.s, &reconcile.Opts{Now: f.clk.Now})
		rep, err := r.Reconcile(f.ctx, ch, src, day1)
		f.must(err)
		if got := kinds(rep.Outcomes); !slices.Equal(got, []string{"matched:o-noon", "deferred:o-edge"}) || rep.Run.Status != store.ReconProvisional {
			t.Fatalf("day1 before day2's statement: %v %s", got, rep.Run.Status)
		}
		if !rep.Run.TotalsOK {
			t.Fatalf("a deferred record counts in the totals: %s", rep.Run.TotalsDetail)
		}
		f.clk.Set(at(day3, 10, 0, 0))
		refused := stmt(day2, payRow("o-edge", cny(500), at(day2, 0, 0, 1), 0))
		refused.Payments = 1 // a neighbouring statement that is refused proves nothing either way
		src.publish(refused)
		rep, err = r.Reconcile(f.ctx, ch, src, day1)
		f.must(err)
		if got := kinds(rep.Outcomes); !slices.Equal(got, []string{"matched:o-noon", "deferred:o-edge"}) ||
			!strings.Contains(rep.Outcomes[1].Detail, "statement refused: summary says payments 0.01") {
			t.Fatalf("day1 with day2's statement refused: %v %q", got, rep.Outcomes[1].Detail)
		}
		src.publish(stmt(day2, payRow("o-edge", cny(500), at(day2, 0, 0, 1), 0)))
		rep, err = r.Reconcile(f.ctx, ch, src, day1)
		f.must(err)
		if got := kinds(rep.Outcomes); !slices.Equal(got, []string{"matched:o-noon"}) || rep.Run.Status != store.ReconBalanced {
			t.Fatalf("day1 after day2's statement: %v %s", got, rep.Run.Status)
		}
		rep, err = r.Reconcile(f.ctx, ch, src, day2)
		f.must(err)
		if got := kinds(rep.Outcomes); !slices.Equal(got, []string{"matched:o-edge"}) || rep.Run.Status != store.ReconBalanced {
			t.Fatalf("day2: %v %s", got, rep.Run.Status)
		}

		// Listed on neither day: missing in theirs, saying so.
		f.pay("o-edge2", cny(700), at(day1, 23, 30, 0), true)
		rep, err = r.Reconcile(f.ctx, ch, src, day1)
		f.must(err)
		if got := kinds(rep.Outcomes); !slices.Equal(got, []string{"matched:o-noon", "missing_in_theirs:o-edge2"}) ||
			!strings.Contains(rep.Outcomes[1].Detail, "nor from the statement of 2026-03-02") {
			t.Fatalf("day1 with a record on neither statement: %v %q", got, rep.Outcomes[len(rep.Outcomes)-1].Detail)
		}
	})
}

func TestCSV(t *testing.T) {
	forEachDB(t, func(t *testing.T, f *fixture) {
		st := oneOfEach(f)
		st.Rows[3].OrderNo = "=HYPERLINK(1)" // a provider row that would be a formula in a spreadsheet
		st.Rows[3].Status = "-SUCCESS"
		rep, err := reconcile.New(f.s, &reconcile.Opts{Now: f.clk.Now}).Reconcile(f.ctx, ch, newSource(st), day1)
		f.must(err)
		var b bytes.Buffer
		f.must(reconcile.WriteCSV(&b, rep.Run, rep.Outcomes, nil))
		recs, err := csv.NewReader(&b).ReadAll()
		f.must(err)
		if len(recs) != 1+len(rep.Outcomes) || !slices.Equal(recs[0], reconcile.CSVHeader) {
			t.Fatalf("csv: %d lines, header %v", len(recs), recs[0])
		}
		col := func(name string) int { return slices.Index(reconcile.CSVHeader, name) }
		byOrder := map[string][]string{}
		for _, r := range recs[1:] {
			byOrder[r[col("kind")]+":"+r[col("order_no")]] = r
		}
		am := byOrder["amount_mismatch:o-amount"]
		if am == nil || am[col("their_amount")] != "10.00" || am[col("our_amount")] != "10.01" || am[col("fee")] != "0.06" ||
			am[col("at")] != "2026-03-01T11:00:00+08:00" || am[col("day")] != "2026-03-01" {
			t.Fatalf("amount mismatch line = %v", am)
		}
		if mt := byOrder["missing_in_theirs:o-theirs"]; mt == nil || mt[col("their_amount")] != "" || mt[col("our_amount")] != "8.00" || mt[col("statement_row")] != "-1" {
			t.Fatalf("missing in theirs line = %v", mt)
		}
		if r := byOrder["status_mismatch:o-refunded"]; r == nil || r[col("fee")] != "-0.02" || r[col("refund_no")] != "r-status" {
			t.Fatalf("refund line = %v", r)
		}
		f0 := byOrder["missing_in_ours:'=HYPERLINK(1)"]
		if f0 == nil || f0[col("their_status")] != "'-SUCCESS" {
			t.Fatalf("formula cells not defused: %v", byOrder)
		}
	})
}

// A hook that fails does not undo the stored run, and its error names
// the order; the next run calls it again.
func TestHookErrorKeepsRun(t *testing.T) {
	forEachDB(t, func(t *testing.T, f *fixture) {
		f.pay("o-gone", cny(700), at(day1, 13, 0, 0), true)
		calls := 0
		r := reconcile.New(f.s, &reconcile.Opts{Now: f.clk.Now, Hooks: reconcile.Hooks{
			MissingInTheirs: func(ctx context.Context, c string, o reconcile.Outcome) error {
				calls++
				return vend.Errorf(payments.ErrProvider, "alert sink down")
			},
		}})
		rep, err := r.Reconcile(f.ctx, ch, newSource(stmt(day1)), day1)
		if err == nil || !strings.Contains(err.Error(), "reconcile: wechatpay missing_in_theirs o-gone: payments: the provider did not answer properly: alert sink down") {
			t.Fatalf("Reconcile with a failing hook = %v", err)
		}
		if rep.Run.Status != store.ReconDiscrepancies || len(rep.Outcomes) != 1 {
			t.Fatalf("report with a failing hook: %+v", rep)
		}
		if _, outs, err := f.s.ReconRunOf(f.ctx, ch, day1.String()); err != nil || len(outs) != 1 {
			t.Fatalf("stored run: %v, %v", outs, err)
		}
		_, _ = r.Reconcile(f.ctx, ch, newSource(stmt(day1)), day1)
		if calls != 2 {
			t.Fatalf("hook called %d times over two runs, want 2", calls)
		}
	})
}

// utcSource is a channel whose statement days are UTC days (Stripe's).
type utcSource struct{ *source }

func (utcSource) Location() *time.Location { return time.UTC }

// A channel whose statements are UTC days is reconciled on UTC days: an
// order paid at 20:00 UTC on day1 (04:00 the next morning in China) is
// day1's, and day1 may be reconciled from 01:00 UTC the next day, not
// from 01:00 China time.
func TestSourceTimeZone(t *testing.T) {
	forEachDB(t, func(t *testing.T, f *fixture) {
		paid := time.Date(2026, 3, 1, 20, 0, 0, 0, time.UTC)
		f.pay("o-utc", cny(700), paid, true)
		src := utcSource{newSource(stmt(day1, payRow("o-utc", cny(700), paid, 0)))}
		r := reconcile.New(f.s, &reconcile.Opts{Now: f.clk.Now})
		f.clk.Set(time.Date(2026, 3, 2, 0, 59, 0, 0, time.UTC))
		if _, err := r.Reconcile(f.ctx, ch, src, day1); vend.CodeOf(err) != "recon.too_early" {
			t.Fatalf("Reconcile at 00:59 UTC the next day = %v, want recon.too_early (a UTC day plus 1 h grace)", err)
		}
		f.clk.Set(time.Date(2026, 3, 2, 1, 0, 0, 0, time.UTC))
		rep, err := r.Reconcile(f.ctx, ch, src, day1)
		f.must(err)
		if got := kinds(rep.Outcomes); !slices.Equal(got, []string{"matched:o-utc"}) || rep.Run.Status != store.ReconBalanced {
			t.Fatalf("UTC day1: %v %s (%s)", got, rep.Run.Status, rep.Run.TotalsDetail)
		}
	})
}
