package service_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/internal/svctest"
	"beaconvend/cloud/payments"
	"beaconvend/cloud/payments/paytest"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

type payClock struct{ ns atomic.Int64 }

func (c *payClock) Now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *payClock) Add(d time.Duration) { c.ns.Add(int64(d)) }

// payEnv is a service with two fake QR channels on one store.
type payEnv struct {
	t    *testing.T
	ctx  context.Context
	clk  *payClock
	st   *store.Store
	svc  *service.Service
	wx   *paytest.Channel
	ali  *paytest.Channel
	gwx  *payments.Guarded
	user string
}

// forEachPayDB runs fn on SQLite and on PostgreSQL.
func forEachPayDB(t *testing.T, fn func(t *testing.T, dsn string)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, filepath.Join(t.TempDir(), "c.db")) })
	t.Run("postgres", func(t *testing.T) {
		if os.Getenv("VEND_PG_DSN") == "" {
			svctest.Missing(t, "PostgreSQL (VEND_PG_DSN) for the PostgreSQL half of the payment tests", "run `export \"$(scripts/pg.sh | tail -n1)\"`")
		}
		fn(t, svctest.PostgresDSN(t, "pay"))
	})
}

func newPayEnv(t *testing.T, dsn string) *payEnv {
	t.Helper()
	e := &payEnv{t: t, ctx: context.Background(), clk: &payClock{}}
	e.clk.ns.Store(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC).UnixNano())
	st, err := store.Open(e.ctx, dsn, &store.Opts{BcryptCost: 4, Now: e.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e.st = st
	u, err := st.CreateUser(e.ctx, "payer@example.com", "password-123")
	if err != nil {
		t.Fatal(err)
	}
	e.user = u.ID
	e.wx = &paytest.Channel{ID: "wechatpay", Secret: []byte("wx-secret"), Now: e.clk.Now}
	e.ali = &paytest.Channel{ID: "alipay", Kind: phoneapi.SourceAlipay, Secret: []byte("ali-secret"), Now: e.clk.Now}
	e.gwx = payments.Guard(e.wx, payments.Limits{Max: 100000}, 1, payments.NewBreaker(payments.BreakerOpts{Failures: 2, Cooldown: time.Minute, Now: e.clk.Now}))
	gali := payments.Guard(e.ali, payments.Limits{Max: 500000}, 2, nil)
	_, cloud, _ := ed25519.GenerateKey(rand.Reader)
	e.svc, err = service.New(e.ctx, service.Options{Store: st, Publisher: &FakePublisher{}, CloudKey: cloud, Now: e.clk.Now,
		Channels: []*payments.Guarded{e.gwx, gali}, PublicURL: "https://cloud.example"})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *payEnv) topUp(key, source string, minor int64) (phoneapi.Payment, error) {
	return e.svc.TopUp(e.ctx, e.user, key, phoneapi.TopUpRequest{Amount: vend.Amount{Minor: minor, Currency: "EUR"}, Source: source})
}

// notify delivers a signed notification over the service's handler and
// returns the HTTP status the provider sees.
func (e *payEnv) notify(ch *paytest.Channel, n payments.Notification) int {
	r := ch.NotifyRequest("https://cloud.example/v1/channels/"+ch.ID+"/notify", n)
	w := httptest.NewRecorder()
	_ = e.svc.HandleNotification(w, r, ch.ID)
	return w.Code
}

func (e *payEnv) wallet() int64 {
	e.t.Helper()
	w, err := e.svc.Wallet(e.ctx, e.user)
	if err != nil {
		e.t.Fatal(err)
	}
	return w.Available.Minor
}

func (e *payEnv) balanced() {
	e.t.Helper()
	imb, err := e.st.LedgerImbalance(e.ctx)
	if err != nil || len(imb) != 0 {
		e.t.Fatalf("LedgerImbalance = %v, %v", imb, err)
	}
	bad, err := e.st.CheckBalances(e.ctx)
	if err != nil || len(bad) != 0 {
		e.t.Fatalf("CheckBalances = %+v, %v", bad, err)
	}
}

func TestTopUpPaidByNotificationOnce(t *testing.T) {
	forEachPayDB(t, func(t *testing.T, dsn string) {
		e := newPayEnv(t, dsn)
		p, err := e.topUp("key-0001", "wechatpay", 1234)
		if err != nil || p.State != phoneapi.PaymentPending || p.CodeURL == "" || p.Source != "wechatpay" {
			t.Fatalf("TopUp = %+v, %v; want a pending order with a code_url", p, err)
		}
		if e.wallet() != 0 {
			t.Fatal("wallet credited before payment")
		}
		e.balanced()
		st, err := e.wx.Pay(p.Order)
		if err != nil {
			t.Fatal(err)
		}
		paid := payments.Notification{EventID: "EV-1", Kind: payments.NotifyPayment, Payment: st}
		// A forged notification (another key) changes nothing and is refused.
		forger := &paytest.Channel{ID: "wechatpay", Secret: []byte("not-the-key")}
		if code := e.notify(forger, paid); code == http.StatusOK {
			t.Fatal("forged notification acknowledged")
		}
		if e.wallet() != 0 {
			t.Fatal("forged notification credited")
		}
		// A tampered amount under the right key is refused by the
		// records (mismatch), alerted, never credited.
		tampered := paid
		tampered.EventID, tampered.Payment.Amount.Minor = "EV-T", 999999
		if code := e.notify(e.wx, tampered); code == http.StatusOK {
			t.Fatal("mismatched amount acknowledged as applied")
		}
		if e.wallet() != 0 {
			t.Fatal("mismatched amount credited")
		}
		for i := 0; i < 3; i++ { // the real one, then duplicates
			if code := e.notify(e.wx, paid); code != http.StatusOK {
				t.Fatalf("notification %d answered %d", i, code)
			}
			if e.wallet() != 1234 {
				t.Fatalf("after notification %d wallet %d, want 1234", i, e.wallet())
			}
			e.balanced()
		}
		got, err := e.svc.Payment(e.ctx, e.user, p.Order)
		if err != nil || got.State != phoneapi.PaymentPaid || got.ProviderTxID != st.ProviderTxID || got.CodeURL != "" {
			t.Fatalf("Payment = %+v, %v", got, err)
		}
		// A retry of the top-up with the same key returns the same order.
		again, err := e.topUp("key-0001", "wechatpay", 1234)
		if err != nil || again.Order != p.Order || e.wx.Count("create") != 1 {
			t.Fatalf("retry = %+v, %v; creates %d", again, err, e.wx.Count("create"))
		}
	})
}

func TestLateNotificationQueriedOnGet(t *testing.T) {
	forEachPayDB(t, func(t *testing.T, dsn string) {
		e := newPayEnv(t, dsn)
		p, err := e.topUp("key-0002", "alipay", 500)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.ali.Pay(p.Order); err != nil {
			t.Fatal(err)
		}
		// Young order: not asked yet.
		got, _ := e.svc.Payment(e.ctx, e.user, p.Order)
		if got.State != phoneapi.PaymentPending || e.ali.Count("query") != 0 {
			t.Fatalf("young order %+v, queries %d", got, e.ali.Count("query"))
		}
		e.clk.Add(6 * time.Second)
		// The phone asks concurrently; the notification arrives at the
		// same time: credited once.
		st, _ := e.ali.Query(e.ctx, p.Order)
		var wg sync.WaitGroup
		for i := 0; i < 6; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if i%2 == 0 {
					e.notify(e.ali, payments.Notification{EventID: "N", Kind: payments.NotifyPayment, Payment: st})
				} else if _, err := e.svc.Payment(e.ctx, e.user, p.Order); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if e.wallet() != 500 {
			t.Fatalf("wallet %d, want 500 once", e.wallet())
		}
		e.balanced()
	})
}

func TestRoutingOnlyBeforeTheOrderExists(t *testing.T) {
	forEachPayDB(t, func(t *testing.T, dsn string) {
		e := newPayEnv(t, dsn)
		// Auto picks wechatpay (priority 1); an amount over its max goes to alipay.
		p, err := e.topUp("key-0003", "auto", 100)
		if err != nil || p.Source != "wechatpay" {
			t.Fatalf("auto = %+v, %v", p, err)
		}
		p, err = e.topUp("key-0004", "auto", 200000)
		if err != nil || p.Source != "alipay" {
			t.Fatalf("auto over wechatpay's max = %+v, %v", p, err)
		}
		// Chosen wechatpay over its max: refused, naming alipay.
		_, err = e.topUp("key-0005", "wechatpay", 200000)
		var le *payments.LimitError
		if vend.CodeOf(err) != "source.limit" || !errorsAs(err, &le) || len(le.Alternatives) != 1 || le.Alternatives[0] != "alipay" {
			t.Fatalf("chosen over max = %v", err)
		}
		// wechatpay fails Create technically after the order is recorded:
		// the payer gets the error, never a silent alipay order.
		e.wx.Fail = func(op, _ string) error {
			if op == "create" {
				return vend.Errorf(payments.ErrProvider, "timeout")
			}
			return nil
		}
		aliCreates := e.ali.Count("create")
		_, err = e.topUp("key-0006", "auto", 300)
		if vend.CodeOf(err) != "channel.unavailable" || e.ali.Count("create") != aliCreates {
			t.Fatalf("failed create = %v, alipay creates %d → %d", err, aliCreates, e.ali.Count("create"))
		}
		// The retry with the same key stays on wechatpay, same order number.
		e.wx.Fail = nil
		p, err = e.topUp("key-0006", "auto", 300)
		if err != nil || p.Source != "wechatpay" {
			t.Fatalf("retry = %+v, %v", p, err)
		}
		// Now the breaker opens (two failures): a new order routes to alipay.
		e.wx.Fail = func(op, _ string) error { return vend.Errorf(payments.ErrProvider, "503") }
		_, _ = e.topUp("key-0007", "auto", 300)
		_, _ = e.topUp("key-0008", "auto", 300)
		if e.gwx.Healthy() {
			t.Fatal("breaker closed after two failures")
		}
		p, err = e.topUp("key-0009", "auto", 300)
		if err != nil || p.Source != "alipay" {
			t.Fatalf("with wechatpay unhealthy = %+v, %v", p, err)
		}
		// After the cool-down and a recovered provider, wechatpay again.
		e.wx.Fail = nil
		e.clk.Add(time.Minute)
		p, err = e.topUp("key-0010", "auto", 300)
		if err != nil || p.Source != "wechatpay" {
			t.Fatalf("after recovery = %+v, %v", p, err)
		}
		var n int
		if err := e.st.DB().QueryRowContext(e.ctx, `SELECT COUNT(*) FROM channel_payments`).Scan(&n); err != nil || n != 7 {
			t.Fatalf("%d orders recorded, want 7 (one per key that passed routing)", n)
		}
	})
}

func TestSweepClosesExpiredAndCreditsPaidAtClose(t *testing.T) {
	forEachPayDB(t, func(t *testing.T, dsn string) {
		e := newPayEnv(t, dsn)
		a, _ := e.topUp("key-0011", "wechatpay", 700)
		b, _ := e.topUp("key-0012", "wechatpay", 800)
		if _, err := e.wx.Pay(b.Order); err != nil { // paid, its notification lost
			t.Fatal(err)
		}
		if got, err := e.svc.SweepPayments(e.ctx); err != nil || got.Closed+got.Credited != 0 {
			t.Fatalf("sweep before the TTL = %+v, %v", got, err)
		}
		e.clk.Add(15*time.Minute + time.Second)
		got, err := e.svc.SweepPayments(e.ctx)
		if err != nil || got.Closed != 1 || got.Credited != 1 {
			t.Fatalf("sweep = %+v, %v; want one closed, one credited", got, err)
		}
		pa, _ := e.svc.Payment(e.ctx, e.user, a.Order)
		pb, _ := e.svc.Payment(e.ctx, e.user, b.Order)
		if pa.State != phoneapi.PaymentClosed || pb.State != phoneapi.PaymentPaid || e.wallet() != 800 {
			t.Fatalf("after sweep: %s %s wallet %d", pa.State, pb.State, e.wallet())
		}
		// The closed order can no longer be paid at the provider; a late
		// notification for the closed one would still be honoured, and
		// a second sweep changes nothing.
		if _, err := e.wx.Pay(a.Order); err == nil {
			t.Fatal("closed order paid")
		}
		if got, err := e.svc.SweepPayments(e.ctx); err != nil || got != (service.PaymentSweep{}) {
			t.Fatalf("second sweep = %+v, %v", got, err)
		}
		e.balanced()
	})
}

func TestWithdrawToOriginalChannels(t *testing.T) {
	forEachPayDB(t, func(t *testing.T, dsn string) {
		e := newPayEnv(t, dsn)
		pw, _ := e.topUp("key-0021", "wechatpay", 1000)
		stw, _ := e.wx.Pay(pw.Order)
		e.notify(e.wx, payments.Notification{EventID: "W1", Kind: payments.NotifyPayment, Payment: stw})
		e.clk.Add(time.Second)
		pa, _ := e.topUp("key-0022", "alipay", 500)
		sta, _ := e.ali.Pay(pa.Order)
		e.notify(e.ali, payments.Notification{EventID: "A1", Kind: payments.NotifyPayment, Payment: sta})
		if e.wallet() != 1500 {
			t.Fatalf("wallet %d", e.wallet())
		}
		wd, err := e.svc.Withdraw(e.ctx, e.user, "wd-0001", phoneapi.WithdrawalRequest{Amount: vend.Amount{Minor: 1200, Currency: "EUR"}})
		if err != nil || wd.State != phoneapi.WithdrawalSucceeded || len(wd.Refunds) != 2 ||
			wd.Refunds[0].Source != "wechatpay" || wd.Refunds[0].Amount.Minor != 1000 || wd.Refunds[0].ProviderRefundID == "" ||
			wd.Refunds[1].Source != "alipay" || wd.Refunds[1].Amount.Minor != 200 {
			t.Fatalf("Withdraw = %+v, %v", wd, err)
		}
		if e.wallet() != 300 {
			t.Fatalf("wallet %d, want 300", e.wallet())
		}
		e.balanced()
		got, _ := e.svc.Payment(e.ctx, e.user, pa.Order)
		if got.Refunded.Minor != 200 {
			t.Fatalf("receipt refunded %v, want 2.00", got.Refunded)
		}
		// The provider refuses the next refund: the money returns to the wallet.
		e.ali.Fail = func(op, _ string) error {
			if op == "refund" {
				return vend.Errorf(payments.ErrRefused, "NOT_ENOUGH")
			}
			return nil
		}
		wd2, err := e.svc.Withdraw(e.ctx, e.user, "wd-0002", phoneapi.WithdrawalRequest{Amount: vend.Amount{Minor: 300, Currency: "EUR"}})
		if err != nil || wd2.State != phoneapi.WithdrawalFailed || e.wallet() != 300 {
			t.Fatalf("refused withdrawal = %+v, %v; wallet %d", wd2, err, e.wallet())
		}
		e.balanced()
		// More than the paid orders can take back.
		_, err = e.svc.Withdraw(e.ctx, e.user, "wd-0003", phoneapi.WithdrawalRequest{Amount: vend.Amount{Minor: 301, Currency: "EUR"}})
		if vend.CodeOf(err) != "refund.exceeds_refundable" && vend.CodeOf(err) != "funds.insufficient" {
			t.Fatalf("over-withdrawal = %v", err)
		}
	})
}

func TestRefundPendingThenNotifiedOutOfOrder(t *testing.T) {
	forEachPayDB(t, func(t *testing.T, dsn string) {
		e := newPayEnv(t, dsn)
		e.wx.RefundPending = true
		p, _ := e.topUp("key-0031", "wechatpay", 1000)
		st, _ := e.wx.Pay(p.Order)
		// The payment is confirmed by a query (its notification is late).
		e.clk.Add(6 * time.Second)
		if got, _ := e.svc.Payment(e.ctx, e.user, p.Order); got.State != phoneapi.PaymentPaid {
			t.Fatalf("not paid after query: %+v", got)
		}
		wd, err := e.svc.Withdraw(e.ctx, e.user, "wd-0031", phoneapi.WithdrawalRequest{Amount: vend.Amount{Minor: 400, Currency: "EUR"}})
		if err != nil || wd.State != phoneapi.WithdrawalPending {
			t.Fatalf("Withdraw = %+v, %v", wd, err)
		}
		rs, _ := e.wx.SettleRefund(wd.Refunds[0].RefundNo, payments.RefundSucceeded)
		// The refund's notification comes before the payment's.
		if code := e.notify(e.wx, payments.Notification{EventID: "R1", Kind: payments.NotifyRefund, Refund: rs}); code != http.StatusOK {
			t.Fatalf("refund notification answered %d", code)
		}
		if code := e.notify(e.wx, payments.Notification{EventID: "P1", Kind: payments.NotifyPayment, Payment: st}); code != http.StatusOK {
			t.Fatalf("late payment notification answered %d", code)
		}
		if e.wallet() != 600 {
			t.Fatalf("wallet %d, want 600", e.wallet())
		}
		// A refund notification for a refund we never made is
		// acknowledged (verified) and alerted, changing nothing.
		forged := rs
		forged.RefundNo = "rf-unknown"
		if code := e.notify(e.wx, payments.Notification{EventID: "R2", Kind: payments.NotifyRefund, Refund: forged}); code != http.StatusOK {
			t.Fatalf("unknown refund answered %d", code)
		}
		al, _ := e.st.ChannelAlerts(e.ctx, "")
		if len(al) != 1 || al[0].Code != "refund.not_found" {
			t.Fatalf("alerts %+v", al)
		}
		e.balanced()
	})
}

func errorsAs(err error, le **payments.LimitError) bool {
	for err != nil {
		if x, ok := err.(*payments.LimitError); ok {
			*le = x
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

// The cloud recorded a refund but the channel never got it (timeout, or
// the process died between the two): the sweep finds it pending, learns
// the channel does not know it, and sends it again under the same number.
func TestSweepResendsRefundTheChannelNeverSaw(t *testing.T) {
	forEachPayDB(t, func(t *testing.T, dsn string) {
		e := newPayEnv(t, dsn)
		p, _ := e.topUp("key-0041", "alipay", 1000)
		st, _ := e.ali.Pay(p.Order)
		e.notify(e.ali, payments.Notification{EventID: "A41", Kind: payments.NotifyPayment, Payment: st})
		e.ali.Fail = func(op, _ string) error {
			if op == "refund" {
				return vend.Errorf(payments.ErrProvider, "timeout")
			}
			return nil
		}
		wd, err := e.svc.Withdraw(e.ctx, e.user, "wd-0041", phoneapi.WithdrawalRequest{Amount: vend.Amount{Minor: 600, Currency: "EUR"}})
		if err != nil || wd.State != phoneapi.WithdrawalPending || e.wallet() != 400 {
			t.Fatalf("Withdraw = %+v, %v; wallet %d", wd, err, e.wallet())
		}
		e.ali.Fail = nil
		if got, err := e.svc.SweepPayments(e.ctx); err != nil || got.Refunds != 0 {
			t.Fatalf("sweep before RefundRetry = %+v, %v", got, err)
		}
		e.clk.Add(time.Minute + time.Second)
		if got, err := e.svc.SweepPayments(e.ctx); err != nil || got.Refunds != 1 {
			t.Fatalf("sweep = %+v, %v; want the refund sent", got, err)
		}
		if rs, err := e.ali.QueryRefund(e.ctx, p.Order, wd.Refunds[0].RefundNo); err != nil || rs.State != payments.RefundSucceeded || rs.Amount.Minor != 600 {
			t.Fatalf("at the channel: %+v, %v", rs, err)
		}
		if got, err := e.svc.SweepPayments(e.ctx); err != nil || got.Refunds != 0 {
			t.Fatalf("second sweep = %+v, %v", got, err)
		}
		if e.wallet() != 400 || e.ali.Count("refund") != 2 {
			t.Fatalf("wallet %d, refund calls %d; want 400, 2", e.wallet(), e.ali.Count("refund"))
		}
		e.balanced()
	})
}

// A verified notification from one channel that names another channel's
// order (a provider answering about an order number it never had)
// changes nothing: the order stays open on its own channel.
func TestNotificationCannotCloseAnotherChannelsOrder(t *testing.T) {
	forEachPayDB(t, func(t *testing.T, dsn string) {
		e := newPayEnv(t, dsn)
		p, err := e.topUp("key-cross", "wechatpay", 500)
		if err != nil {
			t.Fatal(err)
		}
		code := e.notify(e.ali, payments.Notification{EventID: "ali-evt-1", Kind: payments.NotifyPayment,
			Payment: payments.Status{OrderNo: p.Order, State: payments.PayClosed}})
		got, err := e.st.GetPayment(e.ctx, p.Order)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != store.PaymentPending {
			t.Fatalf("alipay's notification about a wechatpay order (answered %d) left it %s, want pending", code, got.State)
		}
		st, err := e.wx.Pay(p.Order)
		if err != nil {
			t.Fatal(err)
		}
		if c := e.notify(e.wx, payments.Notification{EventID: "wx-evt-1", Kind: payments.NotifyPayment, Payment: st}); c/100 != 2 {
			t.Fatalf("wechatpay's own notification answered %d", c)
		}
		if e.wallet() != 500 {
			t.Fatalf("wallet %d after the real payment, want 500", e.wallet())
		}
		e.balanced()
	})
}
