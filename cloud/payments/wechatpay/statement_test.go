package wechatpay_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"beaconvend/cloud/payments"
)

// today is the current day in WeChat Pay's time zone.
func today(offset int) payments.Day {
	t := time.Now().In(time.FixedZone("CST", 8*3600)).AddDate(0, 0, offset)
	return payments.Day{Year: t.Year(), Month: t.Month(), Day: t.Day()}
}

// fee is the peer's published rate, 0.6 % rounded half up to the fen.
func fee(minor int64) int64 { return (minor*6 + 500) / 1000 }

// billDay is the day the statement tests book their payments on: two
// days back, at noon in WeChat Pay's time zone, so that no test runs
// across a midnight.
func billDay() (payments.Day, time.Time) {
	d := today(-2)
	return d, time.Date(d.Year, d.Month, d.Day, 12, 0, 0, 0, time.FixedZone("CST", 8*3600))
}

// paid creates an order and pays it at noon of billDay, consuming its
// notification.
func (h *harness) paid(amount int64) (no, tx string) {
	h.t.Helper()
	no = h.create(amount)
	_, noon := billDay()
	p := h.PayAt(no, noon)
	if n := h.next(); n.err != nil {
		h.t.Fatalf("notification: %v", n.err)
	}
	return no, p.TransactionID
}

func TestStatement(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	day, noon := billDay()
	if st, err := h.ch.Statement(ctx, day); err != nil || len(st.Rows) != 0 || st.Payments != 0 {
		t.Fatalf("Statement of a day without transactions = %+v, %v; want an empty statement", st, err)
	}
	amounts := []int64{1000, 2345, 1}
	txs := map[string]string{}
	var orders []string
	for _, a := range amounts {
		no, tx := h.paid(a)
		orders = append(orders, no)
		txs[no] = tx
	}
	r := payments.RefundRequest{OrderNo: orders[0], RefundNo: payments.NewOrderNo("R"), Amount: cny(300), Total: cny(1000), NotifyURL: h.notify}
	rs, err := h.ch.Refund(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	h.RefundSuccessAt(r.RefundNo, noon.Add(time.Hour))
	if n := h.next(); n.err != nil {
		t.Fatal(n.err)
	}

	st, err := h.ch.Statement(ctx, day)
	if err != nil {
		t.Fatalf("Statement = %v", err)
	}
	if st.Channel != "wechatpay" || st.Day != day || st.Currency != "CNY" {
		t.Fatalf("statement header = %+v", st)
	}
	if len(st.Rows) != 4 {
		t.Fatalf("%d rows, want 4: %+v", len(st.Rows), st.Rows)
	}
	var wantFees int64
	for i, no := range orders {
		row := findRow(t, st.Rows, payments.RowPayment, no)
		if row.Amount != cny(amounts[i]) || row.ProviderTxID != txs[no] || row.Status != "SUCCESS" || row.Fee != fee(amounts[i]) ||
			!row.At.Equal(noon) {
			t.Errorf("row of %s = %+v; want %d fen, fee %d", no, row, amounts[i], fee(amounts[i]))
		}
		wantFees += fee(amounts[i])
	}
	rr := findRow(t, st.Rows, payments.RowRefund, orders[0])
	if rr.RefundNo != r.RefundNo || rr.ProviderRefundID != rs.ProviderRefundID || rr.Amount != cny(300) || rr.Status != "SUCCESS" || rr.Fee != -fee(300) || !rr.At.Equal(noon.Add(time.Hour)) {
		t.Errorf("refund row = %+v", rr)
	}
	wantFees -= fee(300)
	if st.Payments != 1000+2345+1 || st.Refunds != 300 || st.Fees != wantFees {
		t.Errorf("totals = %d paid, %d refunded, %d fees; want 3346, 300, %d", st.Payments, st.Refunds, st.Fees, wantFees)
	}
	// The day after had nothing.
	if st, err := h.ch.Statement(ctx, today(-1)); err != nil || len(st.Rows) != 0 {
		t.Fatalf("yesterday = %+v, %v", st, err)
	}
}

func findRow(t *testing.T, rows []payments.StatementRow, kind payments.RowKind, orderNo string) payments.StatementRow {
	t.Helper()
	var found []payments.StatementRow
	for _, r := range rows {
		if r.Kind == kind && r.OrderNo == orderNo {
			found = append(found, r)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d %s rows of %s, want 1", len(found), kind, orderNo)
	}
	return found[0]
}

func TestStatementDiscrepancies(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	var no [6]string
	for i := range no {
		no[i], _ = h.paid(int64(100 * (i + 1)))
	}
	refundNo := payments.NewOrderNo("R")
	if _, err := h.ch.Refund(ctx, payments.RefundRequest{OrderNo: no[0], RefundNo: refundNo, Amount: cny(40), Total: cny(100)}); err != nil {
		t.Fatal(err)
	}
	day, noon := billDay()
	h.Control("refund-success", map[string]any{"out_refund_no": refundNo, "done_ms": noon.UnixMilli()}, nil) // no notify URL: nothing pushed
	for _, inj := range []map[string]any{
		{"kind": "missing_in_ours", "out_trade_no": "Tnotours000000000001", "total": 777},
		{"kind": "missing_in_theirs", "out_trade_no": no[1]},
		{"kind": "amount", "out_trade_no": no[2], "delta": 1},
		{"kind": "status", "out_trade_no": no[3], "status": "REVOKED"},
		{"kind": "status", "out_refund_no": refundNo, "status": "ABNORMAL"},
		{"kind": "currency", "out_trade_no": no[4], "currency": "USD"},
		{"kind": "duplicate", "out_trade_no": no[5]},
	} {
		if code := h.Control("bill", inj, nil); code != 200 {
			t.Fatalf("inject %v: http %d", inj, code)
		}
	}
	st, err := h.ch.Statement(ctx, day)
	if err != nil {
		t.Fatalf("Statement = %v", err)
	}
	count := map[string]int{}
	byOrder := map[string]payments.StatementRow{}
	for _, r := range st.Rows {
		count[r.OrderNo]++
		byOrder[r.OrderNo] = r
	}
	if r := byOrder["Tnotours000000000001"]; r.Amount != cny(777) || r.Kind != payments.RowPayment {
		t.Errorf("missing in ours: %+v", r)
	}
	if count[no[1]] != 0 {
		t.Errorf("missing in theirs: %d rows of %s", count[no[1]], no[1])
	}
	if r := byOrder[no[2]]; r.Amount != cny(301) {
		t.Errorf("amount mismatch: %+v, want 3.01", r)
	}
	if r := byOrder[no[4]]; r.Amount.Currency != "USD" || r.Amount.Minor != 500 {
		t.Errorf("currency mismatch: %+v", r)
	}
	if count[no[5]] != 2 {
		t.Errorf("duplicate: %d rows of %s", count[no[5]], no[5])
	}
	if r := byOrder[no[3]]; r.Kind != payments.RowPayment || r.Status != "REVOKED" || r.Amount != cny(400) {
		t.Errorf("payment status mismatch: %+v", r)
	}
	if r := findRow(t, st.Rows, payments.RowRefund, no[0]); r.RefundNo != refundNo || r.Status != "ABNORMAL" || r.Amount != cny(40) {
		t.Errorf("refund status mismatch: %+v", r)
	}
	// no[0] paid and refunded, no[1] dropped, no[5] twice, one stranger.
	if len(st.Rows) != 8 {
		t.Errorf("%d rows, want 8", len(st.Rows))
	}
	var sum int64
	for _, r := range st.Rows {
		if r.Kind == payments.RowPayment {
			sum += r.Amount.Minor
		}
	}
	if st.Payments != sum {
		t.Errorf("summary %d, payment rows %d", st.Payments, sum)
	}

	for _, inj := range []map[string]string{{"kind": "bad_summary"}, {"kind": "bad_hash"}, {"kind": "wrong_day", "out_trade_no": no[0]}} {
		kind := inj["kind"]
		h.Control("reset-bill", nil, nil)
		h.Control("bill", inj, nil)
		_, err := h.ch.Statement(ctx, day)
		if !errors.Is(err, payments.ErrStatement) {
			t.Errorf("%s: Statement = %v, want ErrStatement", kind, err)
		}
	}
	h.Control("reset-bill", nil, nil)
	if _, err := h.ch.Statement(ctx, day); err != nil {
		t.Errorf("after reset: %v", err)
	}
}
