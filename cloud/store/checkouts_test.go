package store_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/store"
)

// checkout opens a guest checkout for capUnits ml of water on w1 (50 per
// 1000 ml) through channel in mode.
func (e *env) checkout(channel, mode, key string, capUnits uint64) store.Checkout {
	e.t.Helper()
	price := vend.Price{Minor: 50, Per: 1000}
	hold, err := price.Cost(capUnits)
	must(e.t, err)
	h := sha256.Sum256([]byte("token-" + key))
	c, created, err := e.s.CreateCheckout(e.ctx, store.NewCheckout{Scope: "guest", IdemKey: key, ReqHash: "h-" + key, Device: "dev-a",
		Machine: "w1", CapUnits: capUnits, Price: price, Currency: "EUR", Hold: hold, Channel: channel, OrderNo: "o-" + key,
		Mode: mode, TokenHash: hex.EncodeToString(h[:]), Receipt: "r-" + key, Expires: e.clk.Now().Add(15 * time.Minute)})
	must(e.t, err)
	if !created || c.State != phoneapi.CheckoutAwaitingPayment || !c.Guest || c.Hold != hold {
		e.t.Fatalf("CreateCheckout = %+v created %v", c, created)
	}
	return c
}

func (e *env) getCheckout(id string) store.Checkout {
	e.t.Helper()
	c, err := e.s.GetCheckout(e.ctx, id)
	must(e.t, err)
	return c
}

func (e *env) wantCheckout(id string, state phoneapi.CheckoutState) store.Checkout {
	e.t.Helper()
	c := e.getCheckout(id)
	if c.State != state {
		e.t.Fatalf("checkout %s is %s (%s), want %s", id, c.State, c.Reason, state)
	}
	return c
}

// startCheckout starts the checkout's session as the service does.
func (e *env) startCheckout(c store.Checkout) store.Session {
	e.t.Helper()
	ss, err := e.s.StartSession(e.ctx, store.StartInput{User: c.User, Device: c.Device, Machine: c.Machine, CapUnits: c.CapUnits,
		IdemKey: store.CheckoutKeyPrefix + c.ID, ExpectedPrice: &c.Price})
	must(e.t, err)
	if ss.Hold != c.Hold {
		e.t.Fatalf("session hold %d, checkout hold %d", ss.Hold, c.Hold)
	}
	_, err = e.s.LinkCheckoutSession(e.ctx, c.ID, ss.ID, e.clk.Now().Add(time.Hour))
	must(e.t, err)
	e.wantCheckout(c.ID, phoneapi.CheckoutInSession)
	must(e.t, e.s.Advance(e.ctx, ss.ID, store.Authorized, e.clk.Now()))
	return ss
}

func (e *env) settleUnits(ss store.Session, units uint64) {
	e.t.Helper()
	out := vend.OutcomeCompleted
	if units == 0 {
		out = vend.OutcomeNotStarted
	}
	u, raw := e.usage(ss, units, out)
	_, err := e.s.Settle(e.ctx, u, raw)
	must(e.t, err)
}

func (e *env) authorize(c store.Checkout, ev string) (store.Payment, bool) {
	e.t.Helper()
	p, credited, err := e.s.MarkAuthorized(e.ctx, store.HoldAuthorized{Channel: c.Channel, OrderNo: c.OrderNo, ProviderTxID: "pi_" + c.ID,
		Amount: eur(c.Hold), Expires: e.clk.Now().Add(7 * 24 * time.Hour), EventID: ev})
	must(e.t, err)
	return p, credited
}

func TestCheckoutCardHoldCapturesExactlyTheMeteredAmount(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		c := e.checkout("card", phoneapi.HoldModeAuthorize, "k1", 4000) // hold 200
		p, credited := e.authorize(c, "ev1")
		if !credited || p.State != store.PaymentAuthorized || e.wallet(c.User) != 200 {
			t.Fatalf("authorized: %+v credited %v wallet %d", p, credited, e.wallet(c.User))
		}
		e.checkLedger()
		// An authorized hold counts against the channel's daily limits.
		if n, err := e.s.PaymentTotal(e.ctx, "card", "", e.clk.Now().Add(-time.Hour)); err != nil || n != 200 {
			t.Fatalf("PaymentTotal = %d, %v; want the 200 authorized", n, err)
		}
		// The same notification, another one and a query's answer: nothing more.
		for _, ev := range []string{"ev1", "ev2", ""} {
			if _, credited := e.authorize(c, ev); credited {
				t.Fatalf("authorized again (%q) credited again", ev)
			}
		}
		e.wantCheckout(c.ID, phoneapi.CheckoutStarting)
		ss := e.startCheckout(c)
		e.settleUnits(ss, 1500) // 75 cents
		got := e.wantCheckout(c.ID, phoneapi.CheckoutSettling)
		if got.Captured != 75 || got.Returned != 125 || got.EndState != phoneapi.CheckoutDone || got.Session != ss.ID {
			t.Fatalf("settling checkout %+v", got)
		}
		if w := e.wallet(c.User); w != 0 {
			t.Fatalf("guest wallet %d after settlement, want 0 (the rest voided)", w)
		}
		e.checkLedger()
		// A capture of another amount is refused with an alert.
		_, _, err := e.s.MarkCaptured(e.ctx, store.Captured{Channel: "card", OrderNo: c.OrderNo, Amount: eur(200)})
		wantCode(t, err, store.ErrPaymentMismatch.Code)
		e.wantCheckout(c.ID, phoneapi.CheckoutSettling)
		p, changed, err := e.s.MarkCaptured(e.ctx, store.Captured{Channel: "card", OrderNo: c.OrderNo, Amount: eur(75), EventID: "ev3"})
		must(t, err)
		if !changed || p.State != store.PaymentPaid || p.Captured != 75 || p.Voided != 125 {
			t.Fatalf("captured: %+v changed %v", p, changed)
		}
		e.wantCheckout(c.ID, phoneapi.CheckoutDone)
		// Captured again (a retry's answer), then "authorized" after the capture: nothing changes.
		if _, changed, err := e.s.MarkCaptured(e.ctx, store.Captured{Channel: "card", OrderNo: c.OrderNo, Amount: eur(75)}); err != nil || changed {
			t.Fatalf("capture again: changed %v err %v", changed, err)
		}
		if _, credited := e.authorize(c, "ev4"); credited {
			t.Fatal("authorized after capture credited")
		}
		e.checkLedger()
		if rev := e.revenue(e.opA.ID); rev != 75 {
			t.Fatalf("revenue %d, want 75", rev)
		}
		// Reconciliation reads what the statement shows: the capture.
		rp, err := e.s.ReconPaymentsByOrder(e.ctx, "card", []string{c.OrderNo})
		must(t, err)
		if r := rp[c.OrderNo]; r.Amount.Minor != 75 || r.Cleared != 75 || r.State != "paid" {
			t.Fatalf("reconciliation record %+v, want 75 captured and cleared", r)
		}
		clr, err := e.s.Balance(e.ctx, store.ChannelClearing, "card", "EUR")
		must(t, err)
		if clr.Minor != -75 {
			t.Fatalf("card clearing %d, want -75", clr.Minor)
		}
	})
}

func TestCheckoutZeroUnitsReleasesTheWholeHold(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		c := e.checkout("card", phoneapi.HoldModeAuthorize, "k1", 2000)
		e.authorize(c, "")
		ss := e.startCheckout(c)
		e.settleUnits(ss, 0)
		got := e.wantCheckout(c.ID, phoneapi.CheckoutSettling)
		if got.Captured != 0 || got.Returned != 100 {
			t.Fatalf("settling %+v", got)
		}
		// A capture of 0 is never recorded; the cancel closes the order.
		p, changed, err := e.s.MarkReleased(e.ctx, "card", c.OrderNo)
		must(t, err)
		if !changed || p.State != store.PaymentClosed || p.Voided != 100 {
			t.Fatalf("released %+v changed %v", p, changed)
		}
		e.wantCheckout(c.ID, phoneapi.CheckoutDone)
		e.checkLedger()
		if w := e.wallet(c.User); w != 0 {
			t.Fatalf("wallet %d", w)
		}
		rp, err := e.s.ReconPaymentsByOrder(e.ctx, "card", []string{c.OrderNo})
		must(t, err)
		if r := rp[c.OrderNo]; r.Amount.Minor != 0 || r.Cleared != 0 {
			t.Fatalf("reconciliation record %+v, want nothing taken", r)
		}
	})
}

func TestCheckoutReleaseRefusedWhileMoneyIsHeld(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		c := e.checkout("card", phoneapi.HoldModeAuthorize, "k1", 2000)
		e.authorize(c, "")
		// The provider says "cancelled" while the session may still run:
		// the cloud refuses to forget money it counts as held.
		_, _, err := e.s.MarkReleased(e.ctx, "card", c.OrderNo)
		wantCode(t, err, store.ErrPaymentState.Code)
		// Failing the start returns everything; then the release is taken.
		got, err := e.s.FailCheckout(e.ctx, c.ID, phoneapi.CheckoutFailed, "machine.busy", "the machine is busy")
		must(t, err)
		if got.State != phoneapi.CheckoutSettling || got.Returned != 100 {
			t.Fatalf("failed checkout %+v", got)
		}
		e.checkLedger()
		if _, _, err := e.s.MarkReleased(e.ctx, "card", c.OrderNo); err != nil {
			t.Fatal(err)
		}
		got = e.wantCheckout(c.ID, phoneapi.CheckoutFailed)
		if got.FailCode != "machine.busy" || e.wallet(c.User) != 0 {
			t.Fatalf("failed %+v wallet %d", got, e.wallet(c.User))
		}
	})
}

func TestCheckoutPrepayRefundsTheUnusedPartToTheSameOrder(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		// The payer has another paid top-up order: the refund must not go there.
		other := e.paidOrder("wechatpay", "top1", 500)
		c := e.checkout("wechatpay", phoneapi.HoldModePrepay, "k1", 4000) // 200
		if _, _, err := e.s.MarkPaid(e.ctx, store.Paid{Channel: "wechatpay", OrderNo: c.OrderNo, ProviderTxID: "wx1", Amount: eur(200), EventID: "e1"}); err != nil {
			t.Fatal(err)
		}
		e.wantCheckout(c.ID, phoneapi.CheckoutStarting)
		ss := e.startCheckout(c)
		e.settleUnits(ss, 600) // 30
		got := e.wantCheckout(c.ID, phoneapi.CheckoutSettling)
		if got.Captured != 30 || got.Returned != 170 {
			t.Fatalf("settling %+v", got)
		}
		fs, err := e.s.OrderRefunds(e.ctx, c.OrderNo)
		must(t, err)
		if len(fs) != 1 || fs[0].Amount.Minor != 170 || fs[0].State != store.RefundPending {
			t.Fatalf("refunds of the order %+v", fs)
		}
		if o, _ := e.s.OrderRefunds(e.ctx, other.OrderNo); len(o) != 0 {
			t.Fatalf("the top-up order got refunds %+v", o)
		}
		if w := e.wallet(c.User); w != 0 {
			t.Fatalf("guest wallet %d", w)
		}
		e.checkLedger()
		// Not done while the refund is pending.
		if got, _ := e.s.FinishCheckout(e.ctx, c.ID); got.State != phoneapi.CheckoutSettling {
			t.Fatalf("finished with a pending refund: %+v", got)
		}
		if _, _, err := e.s.ApplyRefund(e.ctx, store.RefundUpdate{Channel: "wechatpay", RefundNo: fs[0].RefundNo, State: store.RefundSucceeded}); err != nil {
			t.Fatal(err)
		}
		e.wantCheckout(c.ID, phoneapi.CheckoutSettling)
		if got, _ := e.s.FinishCheckout(e.ctx, c.ID); got.State != phoneapi.CheckoutDone {
			t.Fatalf("not done after the refund: %+v", got)
		}
		e.checkLedger()
	})
}

func TestCheckoutLatePaymentAfterExpiryIsReturned(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		c := e.checkout("wechatpay", phoneapi.HoldModePrepay, "k1", 2000)
		if _, changed, err := e.s.ClosePayment(e.ctx, c.OrderNo, false); err != nil || !changed {
			t.Fatalf("close: %v %v", changed, err)
		}
		e.wantCheckout(c.ID, phoneapi.CheckoutExpired)
		// The payer paid just before the close reached the provider.
		if _, credited, err := e.s.MarkPaid(e.ctx, store.Paid{Channel: "wechatpay", OrderNo: c.OrderNo, ProviderTxID: "wx", Amount: eur(100)}); err != nil || !credited {
			t.Fatalf("late paid: %v %v", credited, err)
		}
		got := e.wantCheckout(c.ID, phoneapi.CheckoutSettling)
		if got.EndState != phoneapi.CheckoutExpired || got.Returned != 100 {
			t.Fatalf("late payment %+v", got)
		}
		if w := e.wallet(c.User); w != 0 {
			t.Fatalf("wallet %d", w)
		}
		if ok, _ := e.s.HasChannelAlert(e.ctx, c.OrderNo, "checkout.late_payment"); !ok {
			t.Fatal("no alert for the late payment")
		}
		e.checkLedger()
	})
}

func TestCheckoutIdempotencyAndLookups(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		c := e.checkout("card", phoneapi.HoldModeAuthorize, "k1", 2000)
		h := sha256.Sum256([]byte("x"))
		in := store.NewCheckout{Scope: "guest", IdemKey: "k1", ReqHash: "h-k1", Device: "dev-a", Machine: "w1", CapUnits: 2000,
			Price: vend.Price{Minor: 50, Per: 1000}, Currency: "EUR", Hold: 100, Channel: "card", OrderNo: "o-other", Mode: phoneapi.HoldModeAuthorize,
			TokenHash: hex.EncodeToString(h[:]), Receipt: "r-other", Expires: e.clk.Now().Add(time.Minute)}
		again, created, err := e.s.CreateCheckout(e.ctx, in)
		must(t, err)
		if created || again.ID != c.ID {
			t.Fatalf("retry made %+v (created %v), want %s", again, created, c.ID)
		}
		in.ReqHash = "other"
		_, _, err = e.s.CreateCheckout(e.ctx, in)
		wantCode(t, err, store.ErrIdemConflict.Code)
		if n := e.count("users"); n != 2 {
			t.Fatalf("%d users, want the payer and one guest", n)
		}
		if k, _ := e.s.UserKind(e.ctx, c.User); k != "guest" {
			t.Fatalf("user kind %q", k)
		}
		if _, err := e.s.AuthenticateUser(e.ctx, c.User+"@guest.invalid", "!"); err == nil {
			t.Fatal("a guest signed in")
		}
		for _, f := range []func() (store.Checkout, error){
			func() (store.Checkout, error) { return e.s.CheckoutByOrder(e.ctx, c.OrderNo) },
			func() (store.Checkout, error) { return e.s.CheckoutByReceipt(e.ctx, c.ReceiptToken) },
			func() (store.Checkout, error) { return e.s.CheckoutByKey(e.ctx, "guest", "k1") },
		} {
			if got, err := f(); err != nil || got.ID != c.ID {
				t.Fatalf("lookup = %+v, %v", got, err)
			}
		}
		if _, err := e.s.CheckoutByReceipt(e.ctx, ""); !errors.Is(err, store.ErrCheckoutNotFound) {
			t.Fatalf("empty receipt token: %v", err)
		}
		// The top-up janitor leaves a checkout's order to its checkout.
		e.clk.Add(20 * time.Minute)
		if exp, err := e.s.ExpiredPayments(e.ctx, 10); err != nil || len(exp) != 0 {
			t.Fatalf("ExpiredPayments = %+v, %v; want none (a checkout's order)", exp, err)
		}
		due, err := e.s.DueCheckouts(e.ctx, 10)
		if err != nil || len(due) != 1 || due[0].ID != c.ID {
			t.Fatalf("DueCheckouts = %+v, %v", due, err)
		}
		// 3-D Secure, then the web checkout switch.
		got, err := e.s.SetCheckoutAction(e.ctx, c.ID, "pi_secret", "pi_123", "3ds")
		must(t, err)
		if got.State != phoneapi.CheckoutActionRequired {
			t.Fatalf("after 3ds: %s", got.State)
		}
		if ref, _ := e.s.PaymentRef(e.ctx, c.OrderNo); ref != "pi_123" {
			t.Fatalf("provider ref %q", ref)
		}
		must(t, e.s.SetWebCheckout(e.ctx, "dev-a", "w1", true))
		d, err := e.s.GetDevice(e.ctx, "dev-a")
		must(t, err)
		if !d.Machines[1].WebCheckout || d.Machines[0].WebCheckout || d.Machines[2].WebCheckout {
			t.Fatalf("web checkout flags %+v", d.Machines)
		}
		wantCode(t, e.s.SetWebCheckout(e.ctx, "dev-a", "nope", true), store.ErrMachineNotFound.Code)
	})
}

// A checkout cancelled while its start was on the way never starts a
// session (a signed-in payer's own wallet money is not taken instead),
// and a retried start of a started checkout finds its session.
func TestCheckoutCancelledNeverStarts(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		e.topUp(e.user.ID, 10000) // the payer has wallet money of their own
		price := vend.Price{Minor: 50, Per: 1000}
		h := sha256.Sum256([]byte("t"))
		c, _, err := e.s.CreateCheckout(e.ctx, store.NewCheckout{User: e.user.ID, Scope: e.user.ID, IdemKey: "k", ReqHash: "h", Device: "dev-a",
			Machine: "w1", CapUnits: 2000, Price: price, Currency: "EUR", Hold: 100, Channel: "wechatpay", OrderNo: "o-1",
			Mode: phoneapi.HoldModePrepay, TokenHash: hex.EncodeToString(h[:]), Receipt: "r", Expires: e.clk.Now().Add(time.Minute)})
		must(t, err)
		if c.Guest || c.User != e.user.ID {
			t.Fatalf("checkout of a signed-in payer %+v", c)
		}
		if _, _, err := e.s.MarkPaid(e.ctx, store.Paid{Channel: "wechatpay", OrderNo: "o-1", ProviderTxID: "wx", Amount: eur(100)}); err != nil {
			t.Fatal(err)
		}
		got, err := e.s.FailCheckout(e.ctx, c.ID, phoneapi.CheckoutCancelled, "", "the payer cancelled")
		must(t, err)
		if got.State != phoneapi.CheckoutSettling || got.EndState != phoneapi.CheckoutCancelled || got.Returned != 100 {
			t.Fatalf("cancelled %+v", got)
		}
		_, err = e.s.StartSession(e.ctx, store.StartInput{User: c.User, Device: "dev-a", Machine: "w1", CapUnits: 2000,
			IdemKey: store.CheckoutKeyPrefix + c.ID, ExpectedPrice: &price})
		wantCode(t, err, store.ErrCheckoutState.Code)
		if w := e.wallet(e.user.ID); w != 10000 {
			t.Fatalf("wallet %d, want the payer's own 10000 untouched", w)
		}
		e.checkLedger()
		// Another checkout that did start: a retried start finds the session.
		c2 := e.checkout("wechatpay", phoneapi.HoldModePrepay, "k2", 2000)
		if _, _, err := e.s.MarkPaid(e.ctx, store.Paid{Channel: "wechatpay", OrderNo: c2.OrderNo, ProviderTxID: "wx2", Amount: eur(100)}); err != nil {
			t.Fatal(err)
		}
		ss := e.startCheckout(c2)
		again, err := e.s.StartSession(e.ctx, store.StartInput{User: c2.User, Device: "dev-a", Machine: "w1", CapUnits: 2000,
			IdemKey: store.CheckoutKeyPrefix + c2.ID, ExpectedPrice: &c2.Price})
		if err != nil || again.ID != ss.ID || !again.Duplicate {
			t.Fatalf("retried start = %+v, %v", again, err)
		}
		_, err = e.s.FailCheckout(e.ctx, c2.ID, phoneapi.CheckoutCancelled, "", "too late")
		wantCode(t, err, store.ErrCheckoutState.Code)
	})
}
