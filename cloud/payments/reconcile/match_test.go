package reconcile_test

import (
	"fmt"
	"testing"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/payments"
	"beaconvend/cloud/payments/reconcile"
	"beaconvend/cloud/store"
)

// genCase turns fuzz bytes into a statement and records over a few order
// and refund numbers, so that rows repeat, records are missing, states,
// amounts, currencies and ledger postings disagree.
func genCase(data []byte) (payments.Statement, reconcile.Records) {
	next := func() byte {
		if len(data) == 0 {
			return 0
		}
		b := data[0]
		data = data[1:]
		return b
	}
	curs := []vend.Currency{"CNY", "CNY", "CNY", "USD"}
	recs := reconcile.Records{Payments: map[string]store.ReconPayment{}, Refunds: map[string]store.ReconRefund{}}
	for i := 0; i < 6; i++ {
		b := next()
		if b&1 == 0 {
			continue
		}
		no := fmt.Sprintf("o%d", i)
		p := store.ReconPayment{OrderNo: no, Amount: vend.Amount{Minor: int64(1 + b%4), Currency: curs[b>>4&3]},
			State: []string{"paid", "paid", "pending", "closed"}[b>>2&3], ProviderTxID: "tx-" + no}
		if p.State == "paid" && b&0x40 == 0 {
			p.Cleared = p.Amount.Minor
		}
		recs.Payments[no] = p
		if p.State == "paid" && b&0x80 == 0 {
			recs.DayPayments = append(recs.DayPayments, no)
		}
	}
	for i := 0; i < 4; i++ {
		b := next()
		if b&1 == 0 {
			continue
		}
		no := fmt.Sprintf("r%d", i)
		r := store.ReconRefund{RefundNo: no, OrderNo: fmt.Sprintf("o%d", b%6), Amount: vend.Amount{Minor: int64(1 + b%3), Currency: "CNY"},
			State: []string{"succeeded", "succeeded", "pending", "failed"}[b>>2&3], ProviderRefundID: "rid-" + no}
		if b&0x40 == 0 {
			r.Cleared = r.Amount.Minor
		}
		recs.Refunds[no] = r
		if r.State == "succeeded" && b&0x80 == 0 {
			recs.DayRefunds = append(recs.DayRefunds, no)
		}
	}
	if b := next(); b&1 == 1 && len(recs.DayPayments) > 0 {
		recs.DayPayments = append(recs.DayPayments, recs.DayPayments[0]) // a record listed twice stays one record
	}
	st := payments.Statement{Channel: ch, Day: day1, Currency: "CNY"}
	for n := int(next() % 12); n > 0; n-- {
		b := next()
		c := next()
		row := payments.StatementRow{Amount: vend.Amount{Minor: int64(1 + c%4), Currency: curs[c>>4&3]}, Status: []string{"SUCCESS", "SUCCESS", "REFUND", "CLOSED"}[c>>2&3]}
		if b&1 == 0 {
			row.Kind, row.OrderNo, row.ProviderTxID = payments.RowPayment, fmt.Sprintf("o%d", b>>1%7), fmt.Sprintf("tx-o%d", b>>1%7)
		} else {
			id := fmt.Sprintf("r%d", b>>1%5)
			row.Kind, row.OrderNo = payments.RowRefund, fmt.Sprintf("o%d", b>>4%6)
			switch b >> 6 {
			case 0:
				row.RefundNo = id
			case 1:
				row.ProviderRefundID = "rid-" + id // only the provider's refund ID
			default:
				row.RefundNo, row.ProviderRefundID = id, "rid-"+id
			}
		}
		st.Rows = append(st.Rows, row)
	}
	return st, recs
}

// checkMatch asserts Match's bookkeeping: each statement row has exactly
// one outcome, in order; each record of the day is either named by a row
// or has exactly one missing_in_theirs outcome; only the first row of an
// identity is judged, the rest are duplicates; matched means equal.
func checkMatch(t *testing.T, st payments.Statement, recs reconcile.Records, outs []reconcile.Outcome) {
	t.Helper()
	i := 0
	firstOf := map[string]int{}
	namedP, namedR := map[string]bool{}, map[string]bool{}
	for ; i < len(outs) && outs[i].StmtRow >= 0; i++ {
		o := outs[i]
		if o.StmtRow != i {
			t.Fatalf("outcome %d is of row %d: rows lost, reordered or counted twice: %+v", i, o.StmtRow, outs)
		}
		row := st.Rows[i]
		if o.RowKind != string(row.Kind) {
			t.Fatalf("row %d is a %s, its outcome a %s", i, row.Kind, o.RowKind)
		}
		id := string(row.Kind) + ":" + row.OrderNo
		if row.Kind == payments.RowRefund {
			switch {
			case o.OurAmount != nil:
				id = "refund:" + o.RefundNo // our record, named by either number
			case row.RefundNo != "":
				id = "refund:" + row.RefundNo
			default:
				id = "refund#" + row.ProviderRefundID
			}
		}
		if _, seen := firstOf[id]; seen != (o.Kind == reconcile.Duplicate) {
			t.Fatalf("row %d (%s): kind %s, but seen before = %v", i, id, o.Kind, seen)
		}
		if _, seen := firstOf[id]; !seen {
			firstOf[id] = i
		}
		if o.OurAmount != nil {
			if row.Kind == payments.RowRefund {
				namedR[o.RefundNo] = true
			} else {
				namedP[row.OrderNo] = true
			}
		}
		if o.Kind == reconcile.Matched && (o.OurAmount == nil || (rowDoneStatus(row.Status) && *o.OurAmount != row.Amount)) {
			t.Fatalf("row %d matched with ours %v, theirs %v", i, o.OurAmount, row.Amount)
		}
	}
	if i != len(st.Rows) {
		t.Fatalf("%d row outcomes for %d rows", i, len(st.Rows))
	}
	missing := map[string]int{}
	for _, o := range outs[i:] {
		if o.Kind != reconcile.MissingInTheirs || o.StmtRow != -1 || o.TheirAmount != nil {
			t.Fatalf("outcome after the rows is not a missing_in_theirs of ours: %+v", o)
		}
		ref := "payment:" + o.OrderNo
		if o.RowKind == string(payments.RowRefund) {
			ref = "refund:" + o.RefundNo
			if namedR[o.RefundNo] {
				t.Fatalf("refund %s is named by a row and reported missing", o.RefundNo)
			}
		} else if namedP[o.OrderNo] {
			t.Fatalf("order %s is named by a row and reported missing", o.OrderNo)
		}
		missing[ref]++
	}
	want := map[string]int{}
	for _, no := range recs.DayPayments {
		if !namedP[no] {
			want["payment:"+no] = 1
		}
	}
	for _, no := range recs.DayRefunds {
		if !namedR[no] {
			want["refund:"+no] = 1
		}
	}
	if fmt.Sprint(missing) != fmt.Sprint(want) {
		t.Fatalf("missing in theirs %v, want %v", missing, want)
	}
}

func rowDoneStatus(s string) bool { return s == "SUCCESS" || s == "REFUND" }

func FuzzMatch(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 8, 0, 0, 2, 0, 0, 0, 1, 0, 3, 0})
	f.Add([]byte{0x41, 0x85, 0x13, 0x07, 0xc3, 0x01, 0x01, 0x45, 0x03, 0x81, 0x01, 11, 2, 2, 2, 2, 3, 5, 0x43, 0, 0x83, 1, 4, 4, 1, 0x10, 6, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		st, recs := genCase(data)
		checkMatch(t, st, recs, reconcile.Match(st, recs))
	})
}

// TestMatchProperty runs the fuzz property over a fixed pseudo-random
// sample, so the plain test run covers it.
func TestMatchProperty(t *testing.T) {
	seed := uint64(0x9e3779b97f4a7c15)
	for n := 0; n < 5000; n++ {
		data := make([]byte, 48)
		for i := range data {
			seed ^= seed << 13
			seed ^= seed >> 7
			seed ^= seed << 17
			data[i] = byte(seed)
		}
		st, recs := genCase(data)
		checkMatch(t, st, recs, reconcile.Match(st, recs))
	}
}
