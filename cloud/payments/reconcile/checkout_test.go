package reconcile_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"reflect"
	"testing"
	"time"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/payments/reconcile"
	"beaconvend/cloud/store"
)

// cardDay runs a day of sessions paid through the channel with the
// store's own checkout machinery: a card hold captured in part, a card
// hold released in full (nothing delivered), and a prepayment whose
// unused part is refunded to the same order. It returns the provider's
// statement of the day: what it captured, what it was paid and refunded.
func cardDay(t *testing.T, f *fixture) []string {
	t.Helper()
	op, err := f.s.CreateOperator(f.ctx, "op")
	f.must(err)
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	price := vend.Price{Minor: 100, Per: 1000} // 1.00 CNY a litre
	f.must(f.s.CreateDevice(f.ctx, store.Device{ID: "dev-1", OperatorID: op.ID, Name: "d", K: 5, SignKey: pub, MQTTHash: "x",
		Machines: []store.Machine{{ID: "tap1", Kind: vend.KindWater, Name: "t", Price: price, Currency: "CNY"}}}))
	keys, _ := signed.NewKeys(pub)
	var seq uint64
	// session runs one checkout of 5 l through to its settlement with units delivered.
	session := func(order, mode string, units uint64, hh int) store.Checkout {
		f.clk.Set(at(day1, hh, 0, 0))
		h := sha256.Sum256([]byte(order))
		c, _, err := f.s.CreateCheckout(f.ctx, store.NewCheckout{Scope: "guest", IdemKey: "k-" + order, ReqHash: "h", Device: "dev-1",
			Machine: "tap1", CapUnits: 5000, Price: price, Currency: "CNY", Hold: 500, Channel: ch, OrderNo: order, Mode: mode,
			TokenHash: hex.EncodeToString(h[:]), Receipt: "r-" + order, Expires: f.clk.Now().Add(15 * time.Minute)})
		f.must(err)
		if mode == phoneapi.HoldModeAuthorize {
			_, _, err = f.s.MarkAuthorized(f.ctx, store.HoldAuthorized{Channel: ch, OrderNo: order, ProviderTxID: "tx-" + order, Amount: cny(500),
				Expires: f.clk.Now().Add(7 * 24 * time.Hour)})
		} else {
			_, _, err = f.s.MarkPaid(f.ctx, store.Paid{Channel: ch, OrderNo: order, ProviderTxID: "tx-" + order, Amount: cny(500), PaidAt: f.clk.Now()})
		}
		f.must(err)
		ss, err := f.s.StartSession(f.ctx, store.StartInput{User: c.User, Device: "dev-1", Machine: "tap1", CapUnits: 5000,
			IdemKey: store.CheckoutKeyPrefix + c.ID, ExpectedPrice: &price})
		f.must(err)
		f.must(f.s.Advance(f.ctx, ss.ID, store.Authorized, f.clk.Now()))
		seq++
		cost, _ := price.Cost(units)
		out := vend.OutcomeUserStop
		if units == 0 {
			out = vend.OutcomeNotStarted
		}
		raw, err := signed.SignUsage(priv, signed.Usage{Device: "dev-1", Seq: seq, Session: ss.ID, Machine: "tap1", Unit: ss.Unit, Units: units,
			Price: price, Currency: "CNY", Amount: cost, StartedAt: f.clk.Now(), EndedAt: f.clk.Now().Add(time.Minute), MeterEnd: units, Outcome: out})
		f.must(err)
		u, err := signed.OpenUsage(raw, keys)
		f.must(err)
		_, err = f.s.Settle(f.ctx, u, raw)
		f.must(err)
		f.clk.Add(5 * time.Minute)
		return c
	}
	session("o-card", phoneapi.HoldModeAuthorize, 1250, 9) // captures 1.25 of 5.00
	_, _, err = f.s.MarkCaptured(f.ctx, store.Captured{Channel: ch, OrderNo: "o-card", Amount: cny(125), At: at(day1, 9, 5, 0)})
	f.must(err)
	session("o-zero", phoneapi.HoldModeAuthorize, 0, 11) // released in full: never on the statement
	_, _, err = f.s.MarkReleased(f.ctx, ch, "o-zero")
	f.must(err)
	session("o-qr", phoneapi.HoldModePrepay, 2000, 14) // 2.00 of 5.00, 3.00 refunded
	fs, err := f.s.OrderRefunds(f.ctx, "o-qr")
	f.must(err)
	if len(fs) != 1 || fs[0].Amount.Minor != 300 {
		t.Fatalf("refunds of o-qr %+v", fs)
	}
	_, _, err = f.s.ApplyRefund(f.ctx, store.RefundUpdate{Channel: ch, RefundNo: fs[0].RefundNo, State: store.RefundSucceeded,
		ProviderRefundID: "rid-" + fs[0].RefundNo, DoneAt: at(day1, 14, 10, 0)})
	f.must(err)
	for _, o := range []string{"o-card", "o-zero", "o-qr"} {
		c, err := f.s.CheckoutByOrder(f.ctx, o)
		f.must(err)
		if c, err = f.s.FinishCheckout(f.ctx, c.ID); err != nil || c.State != phoneapi.CheckoutDone {
			t.Fatalf("checkout of %s: %s, %v", o, c.State, err)
		}
	}
	f.checkLedger()
	f.clk.Set(at(day3, 10, 0, 0))
	return []string{fs[0].RefundNo}
}

// A day with card sessions reconciles with every row matched: a hold
// counts for what it captured (the statement's amount), not for what was
// authorized; a hold released in full is on neither side; a prepayment
// and its refund of the unused part match as any payment and refund.
func TestCardSessionsDayAllMatched(t *testing.T) {
	forEachDB(t, func(t *testing.T, f *fixture) {
		refunds := cardDay(t, f)
		st := stmt(day1,
			payRow("o-card", cny(125), at(day1, 9, 5, 0), 1),
			payRow("o-qr", cny(500), at(day1, 14, 0, 0), 3),
			refundRow(refunds[0], "o-qr", cny(300), at(day1, 14, 10, 0), -2),
		)
		r := reconcile.New(f.s, &reconcile.Opts{Fees: f.s, Now: f.clk.Now})
		rep, err := r.Reconcile(f.ctx, ch, newSource(st), day1)
		if err != nil {
			t.Fatalf("Reconcile: %v", err)
		}
		if got, want := kinds(rep.Outcomes), []string{"matched:o-card", "matched:o-qr", "matched:" + refunds[0]}; !reflect.DeepEqual(got, want) {
			t.Fatalf("outcomes = %v, want %v", got, want)
		}
		run := rep.Run
		if run.Status != store.ReconBalanced || !run.TotalsOK || run.OurPayments != 625 || run.StmtPayments != 625 || run.OurRefunds != 300 ||
			run.ClearingNet != 325 || run.Discrep != 0 {
			t.Fatalf("run = %+v", run)
		}
		f.checkLedger()
	})
}

// The same day with the hold booked at its authorized amount (as a
// reconciliation that ignored the void would read it) is an amount
// mismatch: the engine compares the captured amount.
func TestCardHoldCapturedOtherThanStatementIsAMismatch(t *testing.T) {
	forEachDB(t, func(t *testing.T, f *fixture) {
		refunds := cardDay(t, f)
		st := stmt(day1,
			payRow("o-card", cny(500), at(day1, 9, 5, 0), 1),
			payRow("o-qr", cny(500), at(day1, 14, 0, 0), 3),
			refundRow(refunds[0], "o-qr", cny(300), at(day1, 14, 10, 0), -2),
		)
		r := reconcile.New(f.s, &reconcile.Opts{Fees: f.s, Now: f.clk.Now})
		rep, err := r.Reconcile(f.ctx, ch, newSource(st), day1)
		if err != nil {
			t.Fatalf("Reconcile: %v", err)
		}
		if got := kinds(rep.Outcomes); got[0] != "amount_mismatch:o-card" {
			t.Fatalf("outcomes = %v, want the card hold's amount mismatch first", got)
		}
	})
}
