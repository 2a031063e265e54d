package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/store"
)

func exec(e *env, q string, args ...any) error {
	_, err := e.s.DB().ExecContext(e.ctx, q, args...)
	return err
}

// reconPost writes one balanced ledger transaction under key.
func reconPost(e *env, kind, key string, from, to [2]string, amt vend.Amount) {
	e.t.Helper()
	c, err := e.s.DB().Conn(e.ctx)
	must(e.t, err)
	defer c.Close()
	tx, err := c.BeginTx(e.ctx, nil)
	must(e.t, err)
	defer tx.Rollback()
	acct := func(a [2]string) int64 {
		_, err := tx.ExecContext(e.ctx, `INSERT INTO accounts (kind, owner, currency, may_go_negative, created_ms) VALUES ($1, $2, $3, 1, 0)
			ON CONFLICT (kind, owner, currency) DO NOTHING`, a[0], a[1], string(amt.Currency))
		must(e.t, err)
		var id int64
		must(e.t, tx.QueryRowContext(e.ctx, `SELECT id FROM accounts WHERE kind = $1 AND owner = $2 AND currency = $3`, a[0], a[1], string(amt.Currency)).Scan(&id))
		return id
	}
	a, b := acct(from), acct(to)
	var id int64
	must(e.t, tx.QueryRowContext(e.ctx, `INSERT INTO ledger_tx (kind, idem_key, created_ms) VALUES ($1, $2, 0) RETURNING id`, kind, key).Scan(&id))
	for _, x := range [][2]int64{{a, -amt.Minor}, {b, amt.Minor}} {
		_, err := tx.ExecContext(e.ctx, `INSERT INTO entries (tx_id, account_id, amount, currency) VALUES ($1, $2, $3, $4)`, id, x[0], x[1], string(amt.Currency))
		must(e.t, err)
		_, err = tx.ExecContext(e.ctx, `UPDATE accounts SET balance = balance + $1 WHERE id = $2`, x[1], x[0])
		must(e.t, err)
	}
	must(e.t, tx.Commit())
}

func reconPay(e *env, channel, order, state string, minor int64, paid time.Time) {
	e.t.Helper()
	var paidMs any
	if !paid.IsZero() {
		paidMs = paid.UnixMilli()
	}
	must(e.t, exec(e, `INSERT INTO channel_payments (order_no, channel, user_id, amount_minor, currency, state, provider_tx_id,
		created_ms, expires_ms, paid_ms) VALUES ($1, $2, $3, $4, 'CNY', $5, $6, 0, 0, $7)`,
		order, channel, e.user.ID, minor, state, "tx-"+order, paidMs))
}

func TestReconReadsRecordsAndLedger(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		from := time.Date(2026, 3, 1, 0, 0, 0, 0, time.FixedZone("CST", 8*3600))
		to := from.AddDate(0, 0, 1)
		reconPay(e, "wechatpay", "o-from", "paid", 100, from)                      // the first instant: in
		reconPay(e, "wechatpay", "o-to", "paid", 200, to)                          // the next day's first instant: out
		reconPay(e, "wechatpay", "o-last", "paid", 300, to.Add(-time.Millisecond)) // in
		reconPay(e, "wechatpay", "o-pending", "pending", 400, time.Time{})
		reconPay(e, "alipay", "o-other", "paid", 500, from.Add(time.Hour))
		cny := func(m int64) vend.Amount { return vend.Amount{Minor: m, Currency: "CNY"} }
		reconPost(e, "topup", store.ChannelPaymentKey("wechatpay", "o-from"), [2]string{"channel_clearing", "wechatpay"}, [2]string{"user_wallet", e.user.ID}, cny(100))
		// A posting under the key but on another channel's clearing account is not this order's credit.
		reconPost(e, "topup", store.ChannelPaymentKey("wechatpay", "o-last"), [2]string{"channel_clearing", "alipay"}, [2]string{"user_wallet", e.user.ID}, cny(300))
		must(t, exec(e, `INSERT INTO channel_refunds (refund_no, order_no, channel, amount_minor, currency, purpose, state,
			provider_refund_id, created_ms, done_ms) VALUES ('r-1', 'o-from', 'wechatpay', 40, 'CNY', 'withdrawal', 'succeeded', 'rid-1', 0, $1)`,
			from.Add(2*time.Hour).UnixMilli()))
		reconPost(e, "chan_refund", store.ChannelRefundKey("wechatpay", "r-1"), [2]string{"user_wallet", e.user.ID}, [2]string{"channel_clearing", "wechatpay"}, cny(40))

		ps, err := e.s.ReconPaymentsPaid(e.ctx, "wechatpay", from, to)
		must(t, err)
		if len(ps) != 2 || ps[0].OrderNo != "o-from" || ps[1].OrderNo != "o-last" || ps[0].Cleared != 100 || ps[1].Cleared != 0 ||
			!ps[0].PaidAt.Equal(from) || ps[0].Amount != cny(100) || ps[0].ProviderTxID != "tx-o-from" {
			t.Fatalf("ReconPaymentsPaid = %+v", ps)
		}
		rs, err := e.s.ReconRefundsDone(e.ctx, "wechatpay", from, to)
		must(t, err)
		if len(rs) != 1 || rs[0].RefundNo != "r-1" || rs[0].Cleared != 40 || rs[0].OrderNo != "o-from" {
			t.Fatalf("ReconRefundsDone = %+v", rs)
		}
		var many []string
		for i := 0; i < 450; i++ {
			many = append(many, fmt.Sprintf("o-none-%d", i))
		}
		many = append(many, "o-pending", "o-other", "o-to")
		byOrder, err := e.s.ReconPaymentsByOrder(e.ctx, "wechatpay", many)
		must(t, err)
		if len(byOrder) != 2 || byOrder["o-pending"].State != "pending" || byOrder["o-to"].Amount.Minor != 200 {
			t.Fatalf("ReconPaymentsByOrder = %+v (another channel's order must be absent)", byOrder)
		}
		byNo, err := e.s.ReconRefundsByNo(e.ctx, "wechatpay", []string{"rid-1"})
		must(t, err)
		if byNo["r-1"].Amount.Minor != 40 {
			t.Fatalf("ReconRefundsByNo(provider id) = %+v", byNo)
		}

		reconPost(e, "chan_fee", store.ChannelFeeKey("wechatpay", "2026-03-01", "p-1"), [2]string{"fees", "wechatpay"}, [2]string{"channel_clearing", "wechatpay"}, cny(6))
		reconPost(e, "chan_fee", store.ChannelFeeKey("wechatpay", "2026-03-01", "r-1"), [2]string{"channel_clearing", "wechatpay"}, [2]string{"fees", "wechatpay"}, cny(2))
		reconPost(e, "chan_fee", store.ChannelFeeKey("wechatpay", "2026-03-02", "p-2"), [2]string{"fees", "wechatpay"}, [2]string{"channel_clearing", "wechatpay"}, cny(9))
		reconPost(e, "chan_fee", store.ChannelFeeKey("wechat", "2026-03-01", "p-3"), [2]string{"fees", "wechat"}, [2]string{"channel_clearing", "wechat"}, cny(11))
		keys := []string{store.ChannelFeeKey("wechatpay", "2026-03-01", "p-1"), store.ChannelFeeKey("wechatpay", "2026-03-01", "r-1"),
			store.ChannelFeeKey("wechatpay", "2026-03-01", "p-9")}
		for i := 0; i < 300; i++ {
			keys = append(keys, store.ChannelFeeKey("wechatpay", "2026-03-01", fmt.Sprintf("none-%d", i)))
		}
		keys = append(keys, store.ChannelFeeKey("wechat", "2026-03-01", "p-3")) // another channel's fee is not this one's
		posted, fees, err := e.s.ChannelFees(e.ctx, "wechatpay", "CNY", keys)
		must(t, err)
		if fees != 4 || len(posted) != 3 || !posted[keys[0]] || !posted[keys[1]] || posted[keys[2]] {
			t.Fatalf("ChannelFees = %v, %d; want the two keys of the day posted, 4 (6 kept, 2 returned)", posted, fees)
		}
		e.checkLedger()
	})
}

func sampleRun(day string, status store.ReconStatus) store.ReconRun {
	now := time.Date(2026, 3, 2, 2, 0, 0, 0, time.UTC)
	return store.ReconRun{Channel: "wechatpay", Day: day, Status: status, Currency: "CNY", StmtPayments: 100, StmtRows: 2,
		OurPayments: 100, ClearingNet: 100, TotalsOK: true, Matched: 1, Discrep: 1, StartedAt: now, FinishedAt: now.Add(time.Second)}
}

func TestSaveReconRunReplacesAtomically(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		amt := &vend.Amount{Minor: 100, Currency: "CNY"}
		first := []store.ReconOutcome{
			{Kind: "matched", RowKind: "payment", StmtRow: 0, OrderNo: "o1", TheirAmount: amt, OurAmount: amt},
			{Kind: "missing_in_theirs", RowKind: "payment", StmtRow: -1, OrderNo: "o2", OurAmount: amt, Action: "freeze"},
			{Kind: "duplicate", RowKind: "payment", StmtRow: 1, OrderNo: "o1", TheirAmount: amt, Action: "review"},
		}
		must(t, e.s.SaveReconRun(e.ctx, sampleRun("2026-03-01", store.ReconDiscrepancies), first))
		must(t, e.s.SaveReconRun(e.ctx, sampleRun("2026-03-02", store.ReconBalanced), first[:1]))
		err := e.s.ResolveReconOutcome(e.ctx, "wechatpay", "2026-03-01", 0, "fine")
		if !errors.Is(err, store.ErrReconNotFound) {
			t.Fatalf("resolving a matched outcome = %v, want ErrReconNotFound", err)
		}
		wantCode(t, e.s.ResolveReconOutcome(e.ctx, "wechatpay", "2026-03-01", 1, "  "), "store.input")
		must(t, e.s.ResolveReconOutcome(e.ctx, "wechatpay", "2026-03-01", 1, "the provider's bill was late"))

		// Re-run: the missing-in-theirs again (now at seq 0) keeps its resolution.
		second := []store.ReconOutcome{first[1], first[0]}
		run2 := sampleRun("2026-03-01", store.ReconDiscrepancies)
		run2.Matched, run2.FinishedAt = 1, run2.FinishedAt.Add(time.Hour)
		must(t, e.s.SaveReconRun(e.ctx, run2, second))
		run, outs, err := e.s.ReconRunOf(e.ctx, "wechatpay", "2026-03-01")
		must(t, err)
		if len(outs) != 2 || outs[0].Kind != "missing_in_theirs" || outs[0].Resolution != "the provider's bill was late" ||
			outs[0].ResolvedAt.IsZero() || outs[1].Resolution != "" || !run.FinishedAt.Equal(run2.FinishedAt) ||
			*outs[1].TheirAmount != *amt || outs[0].TheirAmount != nil || outs[0].StmtRow != -1 {
			t.Fatalf("after re-run: %+v %+v", run, outs)
		}

		// A save that fails half-way leaves the previous results whole.
		bad := append([]store.ReconOutcome{first[0]}, store.ReconOutcome{Kind: "bogus", RowKind: "payment"})
		run3 := sampleRun("2026-03-01", store.ReconBalanced)
		if err := e.s.SaveReconRun(e.ctx, run3, bad); err == nil {
			t.Fatal("SaveReconRun with an invalid outcome kind succeeded")
		}
		run, outs, err = e.s.ReconRunOf(e.ctx, "wechatpay", "2026-03-01")
		must(t, err)
		if run.Status != store.ReconDiscrepancies || len(outs) != 2 || outs[0].Resolution == "" {
			t.Fatalf("a failed save changed the stored run: %+v %+v", run, outs)
		}
		wantCode(t, e.s.SaveReconRun(e.ctx, store.ReconRun{Day: "2026-03-01"}, nil), "store.input")

		runs, err := e.s.ReconRuns(e.ctx, "wechatpay", 0)
		must(t, err)
		if len(runs) != 2 || runs[0].Day != "2026-03-02" || runs[1].Day != "2026-03-01" {
			t.Fatalf("ReconRuns = %+v", runs)
		}
		open, err := e.s.ReconOpenDiscrepancies(e.ctx)
		must(t, err)
		if len(open) != 0 {
			t.Fatalf("open discrepancies %v, want none (the only one is resolved)", open)
		}
		must(t, e.s.SaveReconRun(e.ctx, sampleRun("2026-02-28", store.ReconDiscrepancies), first))
		all, err := e.s.ReconOpenOutcomes(e.ctx, "", "")
		must(t, err)
		frozen, err := e.s.ReconOpenOutcomes(e.ctx, "wechatpay", "missing_in_theirs")
		must(t, err)
		if len(all) != 2 || all[0].Day != "2026-02-28" || all[0].Kind != "missing_in_theirs" || all[1].Kind != "duplicate" ||
			len(frozen) != 1 || frozen[0].OrderNo != "o2" || frozen[0].Action != "freeze" || *frozen[0].OurAmount != *amt || frozen[0].TheirAmount != nil {
			t.Fatalf("open outcomes %+v, frozen %+v", all, frozen)
		}
		if other, err := e.s.ReconOpenOutcomes(e.ctx, "alipay", ""); err != nil || len(other) != 0 {
			t.Fatalf("another channel's open outcomes = %v, %v", other, err)
		}
		if _, _, err := e.s.ReconRunOf(e.ctx, "alipay", "2026-03-01"); !errors.Is(err, store.ErrReconNotFound) {
			t.Fatalf("ReconRunOf(unknown) = %v", err)
		}
	})
}

// Two instances saving the same day at once leave one complete set.
func TestSaveReconRunConcurrent(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		amt := &vend.Amount{Minor: 1, Currency: "CNY"}
		mk := func(n int, tag string) []store.ReconOutcome {
			var o []store.ReconOutcome
			for i := 0; i < n; i++ {
				o = append(o, store.ReconOutcome{Kind: "matched", RowKind: "payment", StmtRow: i, OrderNo: fmt.Sprintf("%s-%d", tag, i), TheirAmount: amt, OurAmount: amt})
			}
			return o
		}
		errs := make(chan error, 8)
		for i := 0; i < 8; i++ {
			go func(i int) {
				errs <- e.s.SaveReconRun(context.Background(), sampleRun("2026-03-01", store.ReconBalanced), mk(150+i, fmt.Sprint(i)))
			}(i)
		}
		for i := 0; i < 8; i++ {
			must(t, <-errs)
		}
		_, outs, err := e.s.ReconRunOf(e.ctx, "wechatpay", "2026-03-01")
		must(t, err)
		tag, _, _ := strings.Cut(outs[0].OrderNo, "-")
		for _, o := range outs {
			if !strings.HasPrefix(o.OrderNo, tag+"-") {
				t.Fatalf("outcomes of two saves mixed: %s and %s", outs[0].OrderNo, o.OrderNo)
			}
		}
		var n int
		must(t, e.s.DB().QueryRowContext(e.ctx, `SELECT COUNT(*) FROM recon_outcomes`).Scan(&n))
		if n != len(outs) || n < 150 {
			t.Fatalf("%d outcomes stored, run has %d", n, len(outs))
		}
	})
}
