package stripecard_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"beaconvend/cloud/payments"
	"beaconvend/cloud/payments/reconcile"
)

// TestStatementOfADay builds a day at the stand-in with top-ups, a hold
// captured in part, one captured in full, a cancelled hold, refunds (one
// of which fails) and transactions on the days around it, and checks
// every row and total exactly.
func TestStatementOfADay(t *testing.T) {
	s := newStandIn(t, nil)
	s.srv.Fee = func(a int64) int64 { return (a*14+50)/1000 + 25 } // 1.4 % + 0.25, rounded half up
	clock := time.Date(2026, 3, 13, 23, 59, 59, 0, time.UTC)
	s.srv.Now = func() time.Time { return clock }
	ctx := context.Background()
	pay := func(no string, minor int64) {
		t.Helper()
		a, err := s.Create(ctx, order(no, minor))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.srv.Confirm(a.ProviderRef); err != nil {
			t.Fatal(err)
		}
	}
	pay("DAY-BEFORE", 1000) // 2026-03-13 23:59:59 UTC: not in the day

	clock = time.Date(2026, 3, 14, 0, 0, 0, 0, time.UTC) // the day's first second
	pay("TOP-A", 2000)
	clock = clock.Add(time.Hour)
	authorized(t, s, "HOLD-A", 500)
	authorized(t, s, "HOLD-B", 300)
	authorized(t, s, "HOLD-Z", 400)
	clock = clock.Add(time.Hour)
	if _, err := s.Capture(ctx, "HOLD-A", amount(320)); err != nil { // partial: 1.80 released
		t.Fatal(err)
	}
	if _, err := s.Capture(ctx, "HOLD-B", amount(300)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Cancel(ctx, "HOLD-Z"); err != nil { // nothing delivered: no transaction
		t.Fatal(err)
	}
	clock = clock.Add(time.Hour)
	if _, err := s.Refund(ctx, payments.RefundRequest{OrderNo: "TOP-A", RefundNo: "RF-A", Amount: amount(750), Total: amount(2000)}); err != nil {
		t.Fatal(err)
	}
	rb, err := s.Refund(ctx, payments.RefundRequest{OrderNo: "HOLD-B", RefundNo: "RF-B", Amount: amount(100), Total: amount(300)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.srv.FailRefund(rb.ProviderRefundID); err != nil { // money back on the balance: a refund_failure, not a row
		t.Fatal(err)
	}
	// Enough top-ups to need a second page (the channel asks for 100 a page).
	clock = time.Date(2026, 3, 14, 12, 0, 0, 0, time.UTC)
	var many int64
	for i := 0; i < 101; i++ {
		pay(fmt.Sprintf("TOP-M%03d", i), int64(100+i))
		many += int64(100 + i)
	}
	clock = time.Date(2026, 3, 14, 23, 59, 59, 0, time.UTC) // the day's last second
	pay("TOP-LAST", 999)
	clock = time.Date(2026, 3, 15, 0, 0, 0, 0, time.UTC) // the next day
	pay("DAY-AFTER", 1000)

	day, _ := payments.ParseDay("2026-03-14")
	st, err := s.Statement(ctx, day)
	if err != nil {
		t.Fatal(err)
	}
	if n := s.srv.Calls("GET /v1/balance_transactions"); n != 2 {
		t.Fatalf("%d pages, want 2", n)
	}
	fee := s.srv.Fee
	byKey := map[string]payments.StatementRow{}
	for _, r := range st.Rows {
		k := string(r.Kind) + ":" + r.OrderNo + ":" + r.RefundNo
		if _, dup := byKey[k]; dup {
			t.Fatalf("row %s twice", k)
		}
		byKey[k] = r
	}
	want := []struct {
		key    string
		amount int64
		fee    int64
		status string
		at     time.Time
	}{
		{"payment:TOP-A:", 2000, fee(2000), "succeeded", time.Date(2026, 3, 14, 0, 0, 0, 0, time.UTC)},
		{"payment:HOLD-A:", 320, fee(320), "succeeded", time.Date(2026, 3, 14, 2, 0, 0, 0, time.UTC)},
		{"payment:HOLD-B:", 300, fee(300), "succeeded", time.Date(2026, 3, 14, 2, 0, 0, 0, time.UTC)},
		{"refund:TOP-A:RF-A", 750, 0, "succeeded", time.Date(2026, 3, 14, 3, 0, 0, 0, time.UTC)},
		{"refund:HOLD-B:RF-B", 100, 0, "failed", time.Date(2026, 3, 14, 3, 0, 0, 0, time.UTC)},
		{"payment:TOP-LAST:", 999, fee(999), "succeeded", time.Date(2026, 3, 14, 23, 59, 59, 0, time.UTC)},
	}
	for _, w := range want {
		r, ok := byKey[w.key]
		if !ok {
			t.Errorf("no row %s", w.key)
			continue
		}
		if r.Amount != amount(w.amount) || r.Fee != w.fee || r.Status != w.status || !r.At.Equal(w.at) {
			t.Errorf("row %s = %s fee %d %s at %s; want %s fee %d %s at %s", w.key, r.Amount, r.Fee, r.Status, r.At, amount(w.amount), w.fee, w.status, w.at)
		}
		if r.ProviderTxID == "" || (r.Kind == payments.RowRefund && r.ProviderRefundID == "") {
			t.Errorf("row %s without provider IDs: %+v", w.key, r)
		}
	}
	if len(st.Rows) != len(want)+101 {
		t.Fatalf("%d rows, want %d", len(st.Rows), len(want)+101)
	}
	var wantFees int64
	for _, w := range want {
		wantFees += w.fee
	}
	for i := 0; i < 101; i++ {
		wantFees += fee(int64(100 + i))
	}
	if st.Payments != 2000+320+300+999+many || st.Refunds != 750+100 || st.Fees != wantFees || st.Currency != eur || st.Channel != "stripe_card" || st.Day != day {
		t.Fatalf("totals payments %d refunds %d fees %d %s; want %d, %d, %d EUR", st.Payments, st.Refunds, st.Fees, st.Currency,
			2000+320+300+999+many, 850, wantFees)
	}

	// Reconciliation takes it as it is.
	if err := reconcile.Validate(st, "stripe_card", day); err != nil {
		t.Fatalf("reconcile.Validate: %v", err)
	}

	// A day without transactions is an empty statement.
	empty, err := s.Statement(ctx, payments.Day{Year: 2026, Month: 1, Day: 1})
	if err != nil || len(empty.Rows) != 0 || empty.Payments != 0 {
		t.Fatalf("empty day = %+v, %v", empty, err)
	}
	// Not a calendar day.
	if _, err := s.Statement(ctx, payments.Day{Year: 2026, Month: 2, Day: 30}); err == nil {
		t.Fatal("2026-02-30 accepted")
	}
}
