package service_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"sync"
	"testing"
	"time"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/payments"
	"beaconvend/cloud/payments/paytest"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

// coRig is a rig whose service has a fake card (a hold channel) and a
// fake WeChat Pay, with tap1's web checkout on.
type coRig struct {
	*rig
	card *paytest.Card
	wx   *paytest.Channel
	keys int
}

func newCoRig(t *testing.T, dsn string, opts service.Options, card *paytest.Card) *coRig {
	t.Helper()
	c := &coRig{card: card, wx: &paytest.Channel{ID: "wechatpay", Secret: []byte("wx")}}
	if c.card == nil {
		c.card = &paytest.Card{}
	}
	c.card.ID, c.card.Secret = "card", []byte("card-secret")
	opts.Channels = []*payments.Guarded{
		payments.Guard(c.card, payments.Limits{Max: 100000}, 1, nil),
		payments.Guard(c.wx, payments.Limits{Max: 100000}, 2, nil),
	}
	opts.PublicURL = "https://cloud.example"
	c.rig = newRig(t, dsn, store.Opts{}, opts)
	c.card.Now, c.wx.Now = c.clk.Now, c.clk.Now
	if err := c.st.SetWebCheckout(context.Background(), "wd-1", "tap1", true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.svc.WaitBackground)
	return c
}

// open opens a guest checkout of capUnits ml on tap1 through source.
func (c *coRig) open(t *testing.T, source string, capUnits uint64) phoneapi.Checkout {
	t.Helper()
	c.keys++
	v, err := c.svc.Checkout(context.Background(), service.Payer{}, fmt.Sprintf("guest-key-%016d", c.keys),
		phoneapi.CheckoutRequest{Device: "wd-1", Machine: "tap1", Cap: phoneapi.Cap{Units: capUnits}, Source: source})
	if err != nil {
		t.Fatalf("Checkout: %v", err)
	}
	if v.Token == "" || v.ID == "" || v.ReceiptURL == "" {
		t.Fatalf("checkout without token, id or receipt: %+v", v)
	}
	return v
}

// wait polls the checkout until it is in state (the background steps run).
func (c *coRig) wait(t *testing.T, v phoneapi.Checkout, state phoneapi.CheckoutState) phoneapi.Checkout {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.svc.WaitBackground()
		cur, err := c.svc.GetCheckout(context.Background(), v.ID, service.CheckoutAccess{Token: v.Token})
		if err != nil {
			t.Fatal(err)
		}
		if cur.State == state {
			cur.Token = v.Token
			return cur
		}
		if time.Now().After(deadline) {
			t.Fatalf("checkout %s is %s (fail %q), want %s", v.ID, cur.State, cur.FailCode, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// session returns the checkout's session.
func (c *coRig) session(t *testing.T, v phoneapi.Checkout) store.Session {
	t.Helper()
	if v.Session == nil {
		t.Fatalf("checkout %s has no session", v.ID)
	}
	ss, err := c.st.GetSession(context.Background(), *v.Session)
	if err != nil {
		t.Fatal(err)
	}
	return ss
}

// report delivers the device's signed report of units for the session.
func (c *coRig) report(t *testing.T, ss store.Session, units uint64) {
	t.Helper()
	out := vend.OutcomeUserStop
	if units == 0 {
		out = vend.OutcomeNotStarted
	}
	if err := c.svc.Handle(context.Background(), "wd-1", mqttapi.LeafUsage, c.usage(t, ss, units, out)); err != nil {
		t.Fatal(err)
	}
}

// guestZero checks the ledger balances and the checkout's payer keeps nothing.
func (c *coRig) guestZero(t *testing.T, v phoneapi.Checkout) {
	t.Helper()
	ctx := context.Background()
	imb, err := c.st.LedgerImbalance(ctx)
	if err != nil || len(imb) != 0 {
		t.Fatalf("LedgerImbalance = %v, %v", imb, err)
	}
	if bad, err := c.st.CheckBalances(ctx); err != nil || len(bad) != 0 {
		t.Fatalf("CheckBalances = %+v, %v", bad, err)
	}
	co, err := c.st.GetCheckout(ctx, v.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []store.AccountKind{store.UserWallet, store.UserHolds} {
		if b, _ := c.st.Balance(ctx, k, co.User, "EUR"); b.Minor != 0 {
			t.Fatalf("guest %s %s = %d, want 0", co.User, k, b.Minor)
		}
	}
}

func TestCheckoutCardHoldCapturesTheMeteredAmount(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		c := newCoRig(t, dsn, service.Options{}, nil)
		c.answerOK()
		v := c.open(t, "card", 4000) // 2.00 authorized
		if v.Mode != phoneapi.HoldModeAuthorize || v.Hold.Minor != 200 {
			t.Fatalf("checkout %+v", v)
		}
		v = c.wait(t, v, phoneapi.CheckoutInSession)
		co, _ := c.st.GetCheckout(context.Background(), v.ID)
		if w, _ := c.st.Wallet(context.Background(), co.User, "EUR"); w.Minor != 0 {
			t.Fatalf("guest wallet %d in session, want 0 (all of it held)", w.Minor)
		}
		ss := c.session(t, v)
		if ss.Hold != 200 || ss.State != store.Authorized {
			t.Fatalf("session %s hold %d", ss.State, ss.Hold)
		}
		c.report(t, ss, 1500) // 0.75
		v = c.wait(t, v, phoneapi.CheckoutDone)
		if v.Captured.Minor != 75 || v.Returned.Minor != 125 || v.Units != 1500 {
			t.Fatalf("done %+v", v)
		}
		st, _ := c.card.Status(v.Order)
		if st.State != payments.PayPaid || st.Amount.Minor != 75 || c.card.Count("capture") != 1 || c.card.Count("cancel") != 0 {
			t.Fatalf("provider: %+v captures %d cancels %d", st, c.card.Count("capture"), c.card.Count("cancel"))
		}
		c.guestZero(t, v)
		// "authorized" arriving after the capture changes nothing.
		pe := &payEnv{t: t, ctx: context.Background(), svc: c.svc}
		old := payments.Status{OrderNo: v.Order, ProviderTxID: "pi_" + v.Order, State: payments.PayAuthorized, Amount: vend.Amount{Minor: 200, Currency: "EUR"}}
		if code := pe.notify(&c.card.Channel, payments.Notification{EventID: "late-auth", Kind: payments.NotifyPayment, Payment: old}); code != 200 {
			t.Fatalf("late authorized: %d", code)
		}
		c.svc.WaitBackground()
		if cur := c.wait(t, v, phoneapi.CheckoutDone); cur.Captured.Minor != 75 {
			t.Fatalf("after a late authorized: %+v", cur)
		}
		// The same report again, and the receipt link.
		c.report(t, ss, 1500)
		c.svc.WaitBackground()
		if c.card.Count("capture") != 1 {
			t.Fatalf("captured %d times", c.card.Count("capture"))
		}
		rc, err := c.svc.CheckoutReceipt(context.Background(), co.ReceiptToken)
		if err != nil || rc.Captured.Minor != 75 || rc.Token != "" || rc.ReceiptURL != "https://cloud.example/r/"+co.ReceiptToken {
			t.Fatalf("receipt %+v, %v", rc, err)
		}
		// Another's token reads nothing.
		if _, err := c.svc.GetCheckout(context.Background(), v.ID, service.CheckoutAccess{Token: "ct_forged"}); vend.CodeOf(err) != "checkout.not_found" {
			t.Fatalf("forged token: %v", err)
		}
	})
}

func TestCheckoutZeroUnitsCancelsTheHold(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		c := newCoRig(t, dsn, service.Options{}, nil)
		c.answerOK()
		v := c.wait(t, c.open(t, "card", 2000), phoneapi.CheckoutInSession)
		c.report(t, c.session(t, v), 0)
		v = c.wait(t, v, phoneapi.CheckoutDone)
		st, _ := c.card.Status(v.Order)
		if st.State != payments.PayClosed || c.card.Count("capture") != 0 || v.Captured.Minor != 0 || v.Returned.Minor != 100 {
			t.Fatalf("provider %+v, captures %d, view %+v", st, c.card.Count("capture"), v)
		}
		c.guestZero(t, v)
	})
}

func TestCheckoutGuestPrepayStopsEarlyAndGetsTheRestBack(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		c := newCoRig(t, dsn, service.Options{}, nil)
		c.answerOK()
		v := c.open(t, "wechatpay", 4000)
		if v.State != phoneapi.CheckoutAwaitingPayment || v.CodeURL == "" || v.Mode != phoneapi.HoldModePrepay {
			t.Fatalf("checkout %+v", v)
		}
		st, err := c.wx.Pay(v.Order)
		if err != nil {
			t.Fatal(err)
		}
		// The notification twice: one credit.
		for i := 0; i < 2; i++ {
			pe := &payEnv{t: t, ctx: context.Background(), svc: c.svc}
			if code := pe.notify(c.wx, payments.Notification{EventID: "ev-paid", Kind: payments.NotifyPayment, Payment: st}); code != 200 {
				t.Fatalf("notify: %d", code)
			}
		}
		v = c.wait(t, v, phoneapi.CheckoutInSession)
		ss := c.session(t, v)
		if err := c.st.Advance(context.Background(), ss.ID, store.Running, c.clk.Now()); err != nil {
			t.Fatal(err)
		}
		tok := v.Token
		v, err = c.svc.StopCheckout(context.Background(), v.ID, service.CheckoutAccess{Token: v.Token})
		if err != nil {
			t.Fatal(err)
		}
		v.Token = tok
		c.pub.mu.Lock()
		last := c.pub.Sent[len(c.pub.Sent)-1]
		c.pub.mu.Unlock()
		if _, ok := last.(*mqttapi.Stop); !ok {
			t.Fatalf("stop sent %T", last)
		}
		c.report(t, ss, 600) // 0.30 of 2.00
		v = c.wait(t, v, phoneapi.CheckoutDone)
		if v.Captured.Minor != 30 || v.Returned.Minor != 170 || len(v.Refunds) != 1 || v.Refunds[0].Order != v.Order ||
			v.Refunds[0].Amount.Minor != 170 || v.Refunds[0].State != phoneapi.RefundState(store.RefundSucceeded) {
			t.Fatalf("done %+v", v)
		}
		c.guestZero(t, v)
		// A notification for the order after the session ended changes nothing.
		pe := &payEnv{t: t, ctx: context.Background(), svc: c.svc}
		if code := pe.notify(c.wx, payments.Notification{EventID: "ev-paid-again", Kind: payments.NotifyPayment, Payment: st}); code != 200 {
			t.Fatalf("late notify: %d", code)
		}
		c.svc.WaitBackground()
		c.guestZero(t, v)
		if c.wx.Count("refund") != 1 {
			t.Fatalf("%d refunds sent", c.wx.Count("refund"))
		}
	})
}

func TestCheckoutStartRefusedAfterPaymentReturnsEverything(t *testing.T) {
	for _, source := range []string{"wechatpay", "card"} {
		t.Run(source, func(t *testing.T) { testStartRefused(t, source) })
	}
}

func testStartRefused(t *testing.T, source string) {
	eachDB(t, func(t *testing.T, dsn string) {
		{
			c := newCoRig(t, dsn, service.Options{}, nil)
			c.pub.mu.Lock()
			c.pub.Fn = func(device string, cmd mqttapi.Message) {
				if _, ok := cmd.(*mqttapi.Authorize); ok {
					c.svc.Handle(context.Background(), device, mqttapi.LeafReply,
						mqttapi.NewReply(mqttapi.NewEnvelope(time.Now()), cmd.Head().ID, &vend.Error{Kind: vend.Conflict, Code: mqttapi.CodeMachineBusy, Msg: "door open"}))
				}
			}
			c.pub.mu.Unlock()
			v := c.open(t, source, 4000)
			if source == "wechatpay" {
				if _, err := c.wx.Pay(v.Order); err != nil {
					t.Fatal(err)
				}
				c.clk.Add(10 * time.Second) // late: the page's poll asks the channel
			}
			v = c.wait(t, v, phoneapi.CheckoutFailed)
			if v.FailCode != mqttapi.CodeMachineBusy || v.Captured.Minor != 0 || v.Returned.Minor != 200 {
				t.Fatalf("%s: failed %+v", source, v)
			}
			c.guestZero(t, v)
			if source == "card" {
				if st, _ := c.card.Status(v.Order); st.State != payments.PayClosed {
					t.Fatalf("card order %s", st.State)
				}
			} else if len(v.Refunds) != 1 || v.Refunds[0].Amount.Minor != 200 {
				t.Fatalf("refunds %+v", v.Refunds)
			}
		}
	})
}

func TestCheckout3DSNeverCompletedExpiresWithNothingCharged(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		c := newCoRig(t, dsn, service.Options{}, &paytest.Card{Require3DS: true})
		c.answerOK()
		v := c.open(t, "card", 2000)
		if v.State != phoneapi.CheckoutActionRequired || v.NextAction != "3ds" || v.ClientSecret == "" {
			t.Fatalf("checkout %+v", v)
		}
		c.clk.Add(16 * time.Minute) // past the order's TTL
		if _, err := c.svc.Sweep(context.Background()); err != nil {
			t.Fatal(err)
		}
		v = c.wait(t, v, phoneapi.CheckoutExpired)
		if st, _ := c.card.Status(v.Order); st.State != payments.PayClosed {
			t.Fatalf("card order %s", st.State)
		}
		// Authenticating now fails at the provider: the order is gone.
		if _, err := c.card.Authenticate(v.Order); err == nil {
			t.Fatal("3-D Secure completed on an expired order")
		}
		c.guestZero(t, v)
		if v.Captured.Minor != 0 || v.Returned.Minor != 0 {
			t.Fatalf("expired %+v", v)
		}
	})
}

func TestCheckout3DSCompletedStartsTheSession(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		c := newCoRig(t, dsn, service.Options{}, &paytest.Card{Require3DS: true})
		c.answerOK()
		v := c.open(t, "card", 2000)
		st, err := c.card.Authenticate(v.Order)
		if err != nil {
			t.Fatal(err)
		}
		pe := &payEnv{t: t, ctx: context.Background(), svc: c.svc}
		if code := pe.notify(&c.card.Channel, payments.Notification{EventID: "pi-auth", Kind: payments.NotifyPayment, Payment: st}); code != 200 {
			t.Fatalf("notify %d", code)
		}
		c.wait(t, v, phoneapi.CheckoutInSession)
	})
}

func TestCheckoutAuthorizationNearLapseSettlesInsideValidity(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		// An authorization valid 3 days; the settlement window (72 h) would
		// outlive it: the session is settled at 2 days (3 days − 24 h).
		c := newCoRig(t, dsn, service.Options{}, &paytest.Card{Validity: 72 * time.Hour})
		c.answerOK()
		ctx := context.Background()
		v := c.wait(t, c.open(t, "card", 2000), phoneapi.CheckoutInSession)
		ss := c.session(t, v)
		if err := c.st.Advance(ctx, ss.ID, store.Running, c.clk.Now()); err != nil {
			t.Fatal(err)
		}
		c.clk.Add(time.Hour) // no report: unreported
		if _, err := c.svc.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
		if cur, _ := c.st.GetSession(ctx, ss.ID); cur.State != store.Unreported {
			t.Fatalf("session %s", cur.State)
		}
		c.clk.Add(47 * time.Hour) // 48 h: the margin begins
		if _, err := c.svc.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
		v = c.wait(t, v, phoneapi.CheckoutDone)
		cur, _ := c.st.GetSession(ctx, ss.ID)
		if cur.State != store.Released || cur.Reason != service.ReasonAuthLapsing {
			t.Fatalf("session %s (%s)", cur.State, cur.Reason)
		}
		if st, _ := c.card.Status(v.Order); st.State != payments.PayClosed {
			t.Fatalf("card order %s, want cancelled before the lapse", st.State)
		}
		c.guestZero(t, v)
		// The report comes after all: a late capture the channel can no
		// longer take (the hold is cancelled) is owed by the payer and
		// alerted, the ledger balanced.
		c.report(t, ss, 1000)
		c.svc.WaitBackground()
		if ok, _ := c.st.HasChannelAlert(ctx, v.Order, "checkout.late_report"); !ok {
			t.Fatal("no alert for the late report")
		}
		co, _ := c.st.GetCheckout(ctx, v.ID)
		if recv, _ := c.st.Balance(ctx, store.UserReceivable, co.User, "EUR"); recv.Minor != -50 {
			t.Fatalf("receivable %d, want -50 (1 l owed)", recv.Minor)
		}
		if c.card.Count("capture") != 0 {
			t.Fatal("captured a cancelled hold")
		}
		if imb, _ := c.st.LedgerImbalance(ctx); len(imb) != 0 {
			t.Fatalf("imbalance %v", imb)
		}
	})
}

func TestCheckoutAuthorizationLapsingWhileRunningAlerts(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		// Valid 1 h, margin 24 h: the margin has begun when the session starts.
		c := newCoRig(t, dsn, service.Options{}, &paytest.Card{Validity: time.Hour})
		c.answerOK()
		ctx := context.Background()
		v := c.wait(t, c.open(t, "card", 2000), phoneapi.CheckoutInSession)
		ss := c.session(t, v)
		if err := c.st.Advance(ctx, ss.ID, store.Running, c.clk.Now()); err != nil {
			t.Fatal(err)
		}
		if _, err := c.svc.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
		if ok, _ := c.st.HasChannelAlert(ctx, v.Order, "auth.lapsing"); !ok {
			t.Fatal("no auth.lapsing alert")
		}
		// It lapses; the report then comes: the capture is refused, the
		// checkout fails with an alert, never silently.
		if err := c.card.Lapse(v.Order); err != nil {
			t.Fatal(err)
		}
		c.report(t, ss, 1000)
		v = c.wait(t, v, phoneapi.CheckoutFailed)
		if v.FailCode != "auth.lapsed" {
			t.Fatalf("failed %+v", v)
		}
		if ok, _ := c.st.HasChannelAlert(ctx, v.Order, "auth.lapsed"); !ok {
			t.Fatal("no auth.lapsed alert")
		}
		if imb, _ := c.st.LedgerImbalance(ctx); len(imb) != 0 {
			t.Fatalf("imbalance %v", imb)
		}
	})
}

func TestCheckoutProcessDiesBetweenSteps(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		c := newCoRig(t, dsn, service.Options{}, nil)
		c.answerOK()
		ctx := context.Background()
		v := c.open(t, "wechatpay", 4000)
		st, _ := c.wx.Pay(v.Order)
		// The notification was recorded, then the process died before the start.
		if _, _, err := c.st.MarkPaid(ctx, store.Paid{Channel: "wechatpay", OrderNo: v.Order, ProviderTxID: st.ProviderTxID, Amount: st.Amount}); err != nil {
			t.Fatal(err)
		}
		co, _ := c.st.GetCheckout(ctx, v.ID)
		if co.State != phoneapi.CheckoutStarting {
			t.Fatalf("checkout %s", co.State)
		}
		if _, err := c.svc.Sweep(ctx); err != nil { // not due yet
			t.Fatal(err)
		}
		c.clk.Add(store.CheckoutStartBound + time.Second)
		if _, err := c.svc.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
		v = c.wait(t, v, phoneapi.CheckoutInSession)
		// The report is settled by the store, then the process died before
		// the refund was sent.
		ss := c.session(t, v)
		rep := c.usage(t, ss, 1000, vend.OutcomeUserStop)
		keys, _ := signed.NewKeys(c.dev.Public().(ed25519.PublicKey))
		u, err := signed.OpenUsage(rep.Report, keys)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.st.Settle(ctx, u, rep.Report); err != nil {
			t.Fatal(err)
		}
		if co, _ := c.st.GetCheckout(ctx, v.ID); co.State != phoneapi.CheckoutSettling || c.wx.Count("refund") != 0 {
			t.Fatalf("after the store's settlement: %s, %d refunds sent", co.State, c.wx.Count("refund"))
		}
		c.guestZero(t, v) // the refund is booked with the settlement
		if _, err := c.svc.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
		v = c.wait(t, v, phoneapi.CheckoutDone)
		if v.Captured.Minor != 50 || v.Returned.Minor != 150 || c.wx.Count("refund") < 1 {
			t.Fatalf("done %+v refunds sent %d", v, c.wx.Count("refund"))
		}
		c.guestZero(t, v)
	})
}

func TestCheckoutRequestChecks(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		c := newCoRig(t, dsn, service.Options{}, nil)
		c.answerOK()
		ctx := context.Background()
		req := phoneapi.CheckoutRequest{Device: "wd-1", Machine: "tap1", Cap: phoneapi.Cap{Units: 2000}, Source: "card"}
		if _, err := c.svc.Checkout(ctx, service.Payer{}, "short", req); vend.CodeOf(err) != "request.field" {
			t.Fatalf("short guest key: %v", err)
		}
		wrong := vend.Price{Minor: 40, Per: 1000}
		req2 := req
		req2.ExpectedPrice = &wrong
		if _, err := c.svc.Checkout(ctx, service.Payer{}, "guest-key-price-0001", req2); vend.CodeOf(err) != "price.changed" {
			t.Fatalf("expected price: %v", err)
		}
		if err := c.st.SetWebCheckout(ctx, "wd-1", "tap1", false); err != nil {
			t.Fatal(err)
		}
		if _, err := c.svc.Checkout(ctx, service.Payer{}, "guest-key-off-00001", req); vend.CodeOf(err) != "checkout.web_off" {
			t.Fatalf("web checkout off: %v", err)
		}
		if err := c.st.SetWebCheckout(ctx, "wd-1", "tap1", true); err != nil {
			t.Fatal(err)
		}
		// A signed-in user: the same key returns the same checkout and token.
		a, err := c.svc.Checkout(ctx, service.Payer{User: c.user}, "k1", req)
		if err != nil {
			t.Fatal(err)
		}
		b, err := c.svc.Checkout(ctx, service.Payer{User: c.user}, "k1", req)
		if err != nil || b.ID != a.ID || b.Token != a.Token {
			t.Fatalf("retry = %+v, %v", b, err)
		}
		req3 := req
		req3.Cap.Units = 3000
		if _, err := c.svc.Checkout(ctx, service.Payer{User: c.user}, "k1", req3); vend.CodeOf(err) != "idempotency.conflict" {
			t.Fatalf("other request, same key: %v", err)
		}
		if got, err := c.svc.GetCheckout(ctx, a.ID, service.CheckoutAccess{User: c.user}); err != nil || got.ID != a.ID {
			t.Fatalf("owner reads: %v", err)
		}
		// The machine is busy now: another checkout is refused at once.
		if _, err := c.svc.Checkout(ctx, service.Payer{}, "guest-key-busy-0001", req); vend.CodeOf(err) != "machine.busy" {
			t.Fatalf("busy machine: %v", err)
		}
		o, err := c.svc.MachineOffer(ctx, "wd-1", "tap1")
		if err != nil || o.State != "busy" || !o.WebCheckout || len(o.Sources) != 2 || o.Price != (vend.Price{Minor: 50, Per: 1000}) {
			t.Fatalf("offer %+v, %v", o, err)
		}
	})
}

func TestCheckoutCancelledBeforePayment(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		c := newCoRig(t, dsn, service.Options{}, nil)
		c.answerOK()
		ctx := context.Background()
		v := c.open(t, "wechatpay", 2000)
		w, err := c.svc.WatchCheckout(ctx, v.ID, service.CheckoutAccess{Token: v.Token})
		if err != nil {
			t.Fatal(err)
		}
		if first := <-w; first.State != phoneapi.CheckoutAwaitingPayment {
			t.Fatalf("first view %s", first.State)
		}
		v, err = c.svc.StopCheckout(ctx, v.ID, service.CheckoutAccess{Token: v.Token})
		if err != nil || v.State != phoneapi.CheckoutCancelled {
			t.Fatalf("stop = %+v, %v", v, err)
		}
		select {
		case got := <-w:
			if got.State != phoneapi.CheckoutCancelled {
				t.Fatalf("watch saw %s", got.State)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("watch saw no change")
		}
		if _, ok := <-w; ok {
			t.Fatal("watch not closed after the final state")
		}
		// Paying the closed order is refused by the provider.
		if _, err := c.wx.Pay(v.Order); err == nil {
			t.Fatal("paid a cancelled checkout's order")
		}
		c.guestZero(t, v)
	})
}

// A machine that never answers the grant: the session expires at its
// start-by bound and the checkout fails with everything returned.
func TestCheckoutDeviceNeverAnswersReturnsEverything(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		c := newCoRig(t, dsn, service.Options{}, nil) // no answers from the device
		v := c.wait(t, c.open(t, "card", 2000), phoneapi.CheckoutInSession)
		if ss := c.session(t, v); ss.State != store.Pending {
			t.Fatalf("session %s, want pending", ss.State)
		}
		c.clk.Add(31 * time.Second) // the 20 s start-by bound and the 10 s allowance
		if _, err := c.svc.Sweep(context.Background()); err != nil {
			t.Fatal(err)
		}
		v = c.wait(t, v, phoneapi.CheckoutFailed)
		if v.FailCode != store.ReasonUnacknowledged || v.Returned.Minor != 100 || v.SessionState != phoneapi.SessionState(store.Expired) {
			t.Fatalf("failed %+v", v)
		}
		if st, _ := c.card.Status(v.Order); st.State != payments.PayClosed || c.card.Count("capture") != 0 {
			t.Fatalf("card order %s, captures %d", st.State, c.card.Count("capture"))
		}
		c.guestZero(t, v)
	})
}

// Duplicate notifications, page polls and the sweep racing each other
// fund the checkout once and start one session.
func TestCheckoutRacingDeliveriesStartOnce(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		c := newCoRig(t, dsn, service.Options{}, nil)
		c.answerOK()
		ctx := context.Background()
		v := c.open(t, "wechatpay", 2000)
		st, err := c.wx.Pay(v.Order)
		if err != nil {
			t.Fatal(err)
		}
		c.clk.Add(6 * time.Second) // late enough for the polls to query
		pe := &payEnv{t: t, ctx: ctx, svc: c.svc}
		var wg sync.WaitGroup
		for i := 0; i < 4; i++ {
			wg.Add(3)
			go func() {
				defer wg.Done()
				pe.notify(c.wx, payments.Notification{EventID: fmt.Sprintf("ev-%d", i%2), Kind: payments.NotifyPayment, Payment: st})
			}()
			go func() {
				defer wg.Done()
				_, _ = c.svc.GetCheckout(ctx, v.ID, service.CheckoutAccess{Token: v.Token})
			}()
			go func() {
				defer wg.Done()
				_, _ = c.svc.Sweep(ctx)
			}()
		}
		wg.Wait()
		v = c.wait(t, v, phoneapi.CheckoutInSession)
		var n int
		if err := c.st.DB().QueryRowContext(ctx, `SELECT COUNT(*) FROM sessions WHERE idem_key = $1`, store.CheckoutKeyPrefix+v.ID).Scan(&n); err != nil || n != 1 {
			t.Fatalf("%d sessions (%v), want 1", n, err)
		}
		if err := c.st.DB().QueryRowContext(ctx, `SELECT COUNT(*) FROM ledger_tx WHERE idem_key = $1`, store.ChannelPaymentKey("wechatpay", v.Order)).Scan(&n); err != nil || n != 1 {
			t.Fatalf("%d credits (%v), want 1", n, err)
		}
		c.report(t, c.session(t, v), 2000)
		v = c.wait(t, v, phoneapi.CheckoutDone)
		if v.Captured.Minor != 100 || v.Returned.Minor != 0 || len(v.Refunds) != 0 {
			t.Fatalf("done %+v", v)
		}
		c.guestZero(t, v)
	})
}

// A payer who completed 3-D Secure whose notification never came: at the
// order's TTL the sweep asks the channel first and starts the session
// instead of cancelling a valid authorization.
func TestCheckout3DSCompletedNotificationLostStartsAtTTL(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		c := newCoRig(t, dsn, service.Options{PaymentLate: time.Hour}, &paytest.Card{Require3DS: true})
		c.answerOK()
		v := c.open(t, "card", 2000)
		if _, err := c.card.Authenticate(v.Order); err != nil {
			t.Fatal(err)
		}
		c.clk.Add(16 * time.Minute)
		if _, err := c.svc.Sweep(context.Background()); err != nil {
			t.Fatal(err)
		}
		c.wait(t, v, phoneapi.CheckoutInSession)
		if c.card.Count("cancel") != 0 {
			t.Fatal("a valid authorization was cancelled")
		}
	})
}
