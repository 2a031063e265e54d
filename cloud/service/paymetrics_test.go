package service_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/payments"
	"beaconvend/cloud/payments/paytest"
)

// scrape returns every payment series the service's registry exposes (as
// the admin /metrics serves it), keyed name{label="value",...} with the
// labels sorted.
func (e *payEnv) scrape() map[string]float64 {
	e.t.Helper()
	fams, err := e.svc.Registry().Gather()
	if err != nil {
		e.t.Fatalf("Gather: %v", err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		if !strings.HasPrefix(f.GetName(), "beaconvend_payment_") {
			continue
		}
		for _, m := range f.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(ls)
			v := m.GetCounter().GetValue()
			if m.GetGauge() != nil {
				v = m.GetGauge().GetValue()
			}
			out[f.GetName()+"{"+strings.Join(ls, ",")+"}"] = v
		}
	}
	return out
}

// series names one series: name and label pairs in sorted label order.
func series(name string, kv ...string) string {
	var ls []string
	for i := 0; i+1 < len(kv); i += 2 {
		ls = append(ls, fmt.Sprintf("%s=%q", kv[i], kv[i+1]))
	}
	sort.Strings(ls)
	return name + "{" + strings.Join(ls, ",") + "}"
}

// expect checks that the scraped series read want, and that every other
// payment series that moved is listed in want (so a counter moving twice,
// or one that should not move, fails).
func (e *payEnv) expect(step string, want map[string]float64) {
	e.t.Helper()
	got := e.scrape()
	for k, v := range want {
		if got[k] != v {
			e.t.Errorf("%s: %s = %v, want %v", step, k, got[k], v)
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok && v != 0 {
			e.t.Errorf("%s: %s = %v, want 0", step, k, v)
		}
	}
}

const (
	mOrders   = "beaconvend_payment_orders_total"
	mAccepted = "beaconvend_payment_notifications_accepted_total"
	mRefused  = "beaconvend_payment_notifications_refused_total"
	mProvErrs = "beaconvend_payment_provider_errors_total"
	mBreaker  = "beaconvend_payment_breaker_open"
	mRefunds  = "beaconvend_payment_refunds_total"
	mAlerts   = "beaconvend_payment_channel_alerts_total"
)

func TestPaymentMetricsNotifications(t *testing.T) {
	forEachPayDB(t, func(t *testing.T, dsn string) {
		e := newPayEnv(t, dsn)
		want := map[string]float64{}
		e.expect("start", want)
		p, err := e.topUp("key-m001", "wechatpay", 1234)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.topUp("key-m001", "wechatpay", 1234); err != nil { // a retry: the same order
			t.Fatal(err)
		}
		want[series(mOrders, "channel", "wechatpay", "state", "created")] = 1
		e.expect("top-up and its retry", want)

		st, err := e.wx.Pay(p.Order)
		if err != nil {
			t.Fatal(err)
		}
		paid := payments.Notification{EventID: "EV-M1", Kind: payments.NotifyPayment, Payment: st}
		forger := &paytest.Channel{ID: "wechatpay", Secret: []byte("not-the-key")}
		if code := e.notify(forger, paid); code == http.StatusOK {
			t.Fatal("forged notification acknowledged")
		}
		want[series(mRefused, "channel", "wechatpay", "reason", "signature")] = 1
		e.expect("forged", want)

		tampered := paid
		tampered.EventID, tampered.Payment.Amount.Minor = "EV-MT", 999999
		if code := e.notify(e.wx, tampered); code == http.StatusOK {
			t.Fatal("mismatched amount acknowledged")
		}
		want[series(mRefused, "channel", "wechatpay", "reason", "mismatch")] = 1
		want[series(mAlerts, "channel", "wechatpay", "code", "payment.mismatch")] = 1
		e.expect("mismatch", want)

		for i := 0; i < 3; i++ { // the real one, then two duplicates
			if code := e.notify(e.wx, paid); code != http.StatusOK {
				t.Fatalf("notification %d answered %d", i, code)
			}
		}
		want[series(mAccepted, "channel", "wechatpay", "result", "applied")] = 1
		want[series(mAccepted, "channel", "wechatpay", "result", "duplicate")] = 2
		want[series(mOrders, "channel", "wechatpay", "state", "paid")] = 1
		e.expect("paid, then duplicates", want)
		if e.wallet() != 1234 {
			t.Fatalf("wallet %d, want 1234", e.wallet())
		}

		// Credited by the phone's query; the notification that follows
		// is news the records hold: paid stays 1.
		q, err := e.topUp("key-m002", "alipay", 500)
		if err != nil {
			t.Fatal(err)
		}
		qs, err := e.ali.Pay(q.Order)
		if err != nil {
			t.Fatal(err)
		}
		e.clk.Add(6 * time.Second)
		if got, err := e.svc.Payment(e.ctx, e.user, q.Order); err != nil || got.State != phoneapi.PaymentPaid {
			t.Fatalf("Payment = %+v, %v", got, err)
		}
		if _, err := e.svc.Payment(e.ctx, e.user, q.Order); err != nil {
			t.Fatal(err)
		}
		if code := e.notify(e.ali, payments.Notification{EventID: "EV-A1", Kind: payments.NotifyPayment, Payment: qs}); code != http.StatusOK {
			t.Fatalf("late notification answered %d", code)
		}
		want[series(mOrders, "channel", "alipay", "state", "created")] = 1
		want[series(mOrders, "channel", "alipay", "state", "paid")] = 1
		want[series(mAccepted, "channel", "alipay", "result", "duplicate")] = 1
		e.expect("paid by query, then notified", want)

		// A verified notification for an order the cloud never made is
		// acknowledged and alerted; a path naming no channel is refused
		// without the path's name as a label.
		ghost := paid
		ghost.EventID, ghost.Payment.OrderNo = "EV-G", "bv-never-made"
		if code := e.notify(e.wx, ghost); code != http.StatusOK {
			t.Fatalf("unknown order answered %d", code)
		}
		r := e.wx.NotifyRequest("https://cloud.example/v1/channels/nosuch/notify", paid)
		w := httptest.NewRecorder()
		_ = e.svc.HandleNotification(w, r, "nosuch")
		if w.Code != http.StatusNotFound {
			t.Fatalf("unknown channel answered %d", w.Code)
		}
		want[series(mAccepted, "channel", "wechatpay", "result", "unknown_order")] = 1
		want[series(mAlerts, "channel", "wechatpay", "code", "payment.not_found")] = 1
		want[series(mRefused, "channel", "", "reason", "unknown_channel")] = 1
		e.expect("unknown order and channel", want)
		e.balanced()
	})
}

func TestPaymentMetricsProviderErrorsAndBreaker(t *testing.T) {
	forEachPayDB(t, func(t *testing.T, dsn string) {
		e := newPayEnv(t, dsn) // wechatpay's breaker opens after 2 technical failures for a minute
		want := map[string]float64{}
		e.wx.Fail = func(op, _ string) error {
			if op == "create" {
				return vend.Errorf(payments.ErrProvider, "503")
			}
			return nil
		}
		if _, err := e.topUp("key-b001", "wechatpay", 100); err == nil {
			t.Fatal("create succeeded through a failing provider")
		}
		want[series(mOrders, "channel", "wechatpay", "state", "created")] = 1
		want[series(mProvErrs, "channel", "wechatpay", "op", "create", "kind", "technical")] = 1
		e.expect("one technical failure", want)

		if _, err := e.topUp("key-b001", "wechatpay", 100); err == nil { // the retry fails too: the breaker opens
			t.Fatal("create succeeded through a failing provider")
		}
		want[series(mProvErrs, "channel", "wechatpay", "op", "create", "kind", "technical")] = 2
		want[series(mBreaker, "channel", "wechatpay")] = 1
		e.expect("breaker opened", want)

		// While it rests, a retry is refused without reaching the provider.
		if _, err := e.topUp("key-b001", "wechatpay", 100); err == nil {
			t.Fatal("create let through an open breaker")
		}
		if n := e.wx.Count("create"); n != 2 {
			t.Fatalf("provider saw %d creates, want 2", n)
		}
		want[series(mProvErrs, "channel", "wechatpay", "op", "create", "kind", "unhealthy")] = 1
		e.expect("resting", want)

		// After the cool-down the probe succeeds: the breaker closes.
		e.wx.Fail = nil
		e.clk.Add(time.Minute)
		if _, err := e.topUp("key-b001", "wechatpay", 100); err != nil {
			t.Fatal(err)
		}
		want[series(mBreaker, "channel", "wechatpay")] = 0
		e.expect("closed again", want)

		// A business refusal fails the order and leaves the breaker closed.
		e.wx.Fail = func(op, _ string) error {
			if op == "create" {
				return vend.Errorf(payments.ErrRefused, "INVALID_REQUEST")
			}
			return nil
		}
		if _, err := e.topUp("key-b002", "wechatpay", 100); err == nil {
			t.Fatal("refused create succeeded")
		}
		for i := 0; i < 2; i++ { // retries return the failed order: nothing counted again
			if got, err := e.topUp("key-b002", "wechatpay", 100); err != nil || got.State != phoneapi.PaymentFailed {
				t.Fatalf("retry of a refused order = %+v, %v", got, err)
			}
		}
		want[series(mOrders, "channel", "wechatpay", "state", "created")] = 2
		want[series(mOrders, "channel", "wechatpay", "state", "failed")] = 1
		want[series(mProvErrs, "channel", "wechatpay", "op", "create", "kind", "refused")] = 1
		e.expect("refused", want)

		// The first order expires: the sweep closes it once.
		e.wx.Fail = nil
		e.clk.Add(15*time.Minute + time.Second)
		for i := 0; i < 2; i++ {
			if _, err := e.svc.SweepPayments(e.ctx); err != nil {
				t.Fatal(err)
			}
		}
		want[series(mOrders, "channel", "wechatpay", "state", "closed")] = 1
		e.expect("swept", want)
	})
}

func TestPaymentMetricsRefunds(t *testing.T) {
	forEachPayDB(t, func(t *testing.T, dsn string) {
		e := newPayEnv(t, dsn)
		p, _ := e.topUp("key-r001", "wechatpay", 1000)
		st, _ := e.wx.Pay(p.Order)
		if code := e.notify(e.wx, payments.Notification{EventID: "P1", Kind: payments.NotifyPayment, Payment: st}); code != http.StatusOK {
			t.Fatalf("payment notification answered %d", code)
		}
		want := map[string]float64{
			series(mOrders, "channel", "wechatpay", "state", "created"):    1,
			series(mOrders, "channel", "wechatpay", "state", "paid"):       1,
			series(mAccepted, "channel", "wechatpay", "result", "applied"): 1,
		}
		e.expect("paid", want)

		wd := func(key string, minor int64) phoneapi.Withdrawal {
			t.Helper()
			w, err := e.svc.Withdraw(e.ctx, e.user, key, phoneapi.WithdrawalRequest{Amount: vend.Amount{Minor: minor, Currency: "EUR"}})
			if err != nil {
				t.Fatal(err)
			}
			return w
		}
		wd("wd-r1", 300)
		wd("wd-r1", 300) // a retry: nothing sent again
		want[series(mRefunds, "channel", "wechatpay", "state", "sent")] = 1
		want[series(mRefunds, "channel", "wechatpay", "state", "succeeded")] = 1
		e.expect("refund at once", want)

		// A refund the provider settles later, as failed, notified twice.
		e.wx.RefundPending = true
		w := wd("wd-r2", 200)
		want[series(mRefunds, "channel", "wechatpay", "state", "sent")] = 2
		e.expect("refund pending", want)
		rs, err := e.wx.SettleRefund(w.Refunds[0].RefundNo, payments.RefundFailed)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 2; i++ {
			if code := e.notify(e.wx, payments.Notification{EventID: "R1", Kind: payments.NotifyRefund, Refund: rs}); code != http.StatusOK {
				t.Fatalf("refund notification %d answered %d", i, code)
			}
		}
		want[series(mRefunds, "channel", "wechatpay", "state", "failed")] = 1
		want[series(mAccepted, "channel", "wechatpay", "result", "applied")] = 2
		want[series(mAccepted, "channel", "wechatpay", "result", "duplicate")] = 1
		e.expect("refund failed", want)

		// A later event contradicting the recorded outcome is refused and alerted.
		rs.State = payments.RefundSucceeded
		if code := e.notify(e.wx, payments.Notification{EventID: "R2", Kind: payments.NotifyRefund, Refund: rs}); code == http.StatusOK {
			t.Fatal("contradicting refund notification acknowledged")
		}
		want[series(mRefused, "channel", "wechatpay", "reason", "mismatch")] = 1
		want[series(mAlerts, "channel", "wechatpay", "code", "refund.state")] = 1
		e.expect("refund clash", want)
		if e.wallet() != 700 {
			t.Fatalf("wallet %d, want 700", e.wallet())
		}
		e.balanced()
	})
}
