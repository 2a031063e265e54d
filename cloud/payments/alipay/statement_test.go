package alipay_test

import (
	"testing"
	"time"

	"beaconvend/cloud/payments"
)

var billDay = payments.Day{Year: 2026, Month: 11, Day: 30}

// billRig pays two orders and refunds part of one on billDay, and leaves a
// third order scanned but unpaid.
type billRig struct {
	*rig
	p1, p2, unpaid string
	refund         payments.RefundStatus
}

func newBillRig(t *testing.T) *billRig {
	t.Helper()
	r := newRig(t)
	if err := r.p.SetClock(time.Date(2026, 11, 30, 2, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	b := &billRig{rig: r}
	b.p1 = r.create(t, 1000)
	b.p2 = r.create(t, 2550)
	b.unpaid = r.create(t, 300)
	r.pay(t, b.p1)
	r.pay(t, b.p2)
	r.p.MustControl("scan", map[string]any{"out_trade_no": b.unpaid}, nil)
	var err error
	b.refund, err = r.ch.Refund(ctx, payments.RefundRequest{OrderNo: b.p2, RefundNo: "R1", Amount: cny(550), Reason: "unused"})
	if err != nil {
		t.Fatal(err)
	}
	// Another day's payment must not show.
	r.p.MustControl("clock", map[string]any{"at": "2026-12-01T00:00:01+08:00"}, nil)
	r.pay(t, r.create(t, 777))
	return b
}

// rowsBy indexes a statement's rows by kind and order.
func rowsBy(st payments.Statement) map[string][]payments.StatementRow {
	m := map[string][]payments.StatementRow{}
	for _, row := range st.Rows {
		m[string(row.Kind)+":"+row.OrderNo] = append(m[string(row.Kind)+":"+row.OrderNo], row)
	}
	return m
}

func TestStatementCleanDay(t *testing.T) {
	b := newBillRig(t)
	st, err := b.ch.Statement(ctx, billDay)
	if err != nil {
		t.Fatal(err)
	}
	// Fees at 0.6 %, half up: 10.00 → 0.06, 25.50 → 0.15, the refund of
	// 5.50 returns 0.03.
	if st.Channel != "alipay" || st.Day != billDay || st.Currency != "CNY" || st.Payments != 3550 || st.Refunds != 550 || st.Fees != 6+15-3 || len(st.Rows) != 3 {
		t.Fatalf("statement = %+v", st)
	}
	m := rowsBy(st)
	p1, p2, rf := m["payment:"+b.p1], m["payment:"+b.p2], m["refund:"+b.p2]
	if len(p1) != 1 || p1[0].Amount != cny(1000) || p1[0].Fee != 6 || p1[0].ProviderTxID == "" || p1[0].At.IsZero() || p1[0].Status != "交易" {
		t.Fatalf("row of %s = %+v", b.p1, p1)
	}
	if len(p2) != 1 || p2[0].Amount != cny(2550) || p2[0].Fee != 15 {
		t.Fatalf("row of %s = %+v", b.p2, p2)
	}
	if len(rf) != 1 || rf[0].Amount != cny(550) || rf[0].Fee != -3 || rf[0].RefundNo != "R1" || rf[0].ProviderRefundID != b.refund.ProviderRefundID || rf[0].Status != "退款" {
		t.Fatalf("refund row = %+v; refund %+v", rf, b.refund)
	}
	if got := p1[0].At.Format("2006-01-02 15:04:05 -0700"); got != "2026-11-30 10:00:00 +0800" {
		t.Fatalf("row time %s", got)
	}
	// A day without business: an empty, balanced statement.
	empty, err := b.ch.Statement(ctx, payments.Day{Year: 2026, Month: 11, Day: 29})
	if err != nil || len(empty.Rows) != 0 || empty.Payments != 0 || empty.Refunds != 0 {
		t.Fatalf("empty day = %+v, %v", empty, err)
	}
}

func TestStatementInjectedDiscrepancies(t *testing.T) {
	for _, tc := range []struct {
		kind  string
		order func(b *billRig) string
		check func(t *testing.T, b *billRig, st payments.Statement)
	}{
		{"missing_in_ours", func(*billRig) string { return "NOTOURS1" }, func(t *testing.T, b *billRig, st payments.Statement) {
			if r := rowsBy(st)["payment:NOTOURS1"]; len(r) != 1 || r[0].Amount != cny(1234) || st.Payments != 3550+1234 {
				t.Fatalf("rows %+v, payments %d", st.Rows, st.Payments)
			}
		}},
		{"missing_in_theirs", func(b *billRig) string { return b.p1 }, func(t *testing.T, b *billRig, st payments.Statement) {
			if r := rowsBy(st)["payment:"+b.p1]; len(r) != 0 || st.Payments != 2550 || len(st.Rows) != 2 {
				t.Fatalf("rows %+v, payments %d", st.Rows, st.Payments)
			}
		}},
		{"amount", func(b *billRig) string { return b.p1 }, func(t *testing.T, b *billRig, st payments.Statement) {
			if r := rowsBy(st)["payment:"+b.p1]; len(r) != 1 || r[0].Amount != cny(1001) || st.Payments != 3551 {
				t.Fatalf("rows %+v, payments %d", st.Rows, st.Payments)
			}
		}},
		{"status", func(b *billRig) string { return b.unpaid }, func(t *testing.T, b *billRig, st payments.Statement) {
			if r := rowsBy(st)["payment:"+b.unpaid]; len(r) != 1 || r[0].Amount != cny(300) {
				t.Fatalf("rows %+v", st.Rows)
			}
			if o := b.p.Order(b.unpaid); o.Status != "WAIT_BUYER_PAY" {
				t.Fatalf("the peer's order is %s", o.Status)
			}
		}},
		{"duplicate", func(b *billRig) string { return b.p1 }, func(t *testing.T, b *billRig, st payments.Statement) {
			if r := rowsBy(st)["payment:"+b.p1]; len(r) != 2 || st.Payments != 4550 || st.Fees != 6+6+15-3 {
				t.Fatalf("rows %+v, payments %d", st.Rows, st.Payments)
			}
		}},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			b := newBillRig(t)
			if err := b.p.InjectBill(billDay, tc.kind, tc.order(b)); err != nil {
				t.Fatal(err)
			}
			st, err := b.ch.Statement(ctx, billDay)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, b, st)
		})
	}
}

func TestStatementSummaryMismatchIsRefused(t *testing.T) {
	b := newBillRig(t)
	b.p.MustControl("bill_inject", map[string]any{"day": billDay.String(), "kind": "summary"}, nil)
	_, err := b.ch.Statement(ctx, billDay)
	wantErr(t, "Statement(summary ≠ rows)", err, payments.ErrStatement, "交易合计")
}
