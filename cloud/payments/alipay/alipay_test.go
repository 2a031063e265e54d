package alipay_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	sdk "github.com/smartwalle/alipay/v3"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/payments"
	"beaconvend/cloud/payments/alipay"
	"beaconvend/cloud/payments/alipay/alipaytest"
)

var ctx = context.Background()

func wantErr(t *testing.T, what string, err error, sentinel *vend.Error, sub string) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("%s = %v, want %s", what, err, sentinel.Code)
	}
	if sub != "" && !strings.Contains(err.Error(), sub) {
		t.Fatalf("%s = %v, want it to name %s", what, err, sub)
	}
	if !strings.HasPrefix(err.Error(), "payments: ") || !strings.Contains(err.Error(), "alipay: ") {
		t.Fatalf("%s = %q: error text must name the package", what, err)
	}
}

func TestPrecreatePayNotifyQuery(t *testing.T) {
	r := newRig(t)
	no := r.create(t, 1234)
	o := r.p.Order(no)
	if o == nil || o.Total != 1234 || o.Status != "WAIT_BUYER_PAY" || o.TimeExpire == "" || !strings.HasSuffix(o.NotifyURL, "/v1/channels/alipay/notify") {
		t.Fatalf("peer's order after Create = %+v", o)
	}
	// Not scanned yet: Alipay has no trade and answers ACQ.TRADE_NOT_EXIST.
	if st, err := r.ch.Query(ctx, no); err != nil || st.State != payments.PayPending {
		t.Fatalf("Query(unscanned) = %+v, %v; want pending", st, err)
	}
	r.p.MustControl("scan", map[string]any{"out_trade_no": no}, nil)
	if st, err := r.ch.Query(ctx, no); err != nil || st.State != payments.PayPending {
		t.Fatalf("Query(scanned) = %+v, %v; want pending", st, err)
	}
	res := r.pay(t, no)
	if res.Notify.Status != 200 || res.Notify.Body != "success" {
		t.Fatalf("the cloud answered the notification %d %q, want 200 success", res.Notify.Status, res.Notify.Body)
	}
	got, errs := r.rx.snapshot()
	if len(errs) != 0 || len(got) != 1 {
		t.Fatalf("notifications: %v, errors %v", got, errs)
	}
	n := got[0]
	if n.Kind != payments.NotifyPayment || n.EventID == "" || n.Payment.OrderNo != no || n.Payment.State != payments.PayPaid ||
		n.Payment.Amount != cny(1234) || n.Payment.ProviderTxID != res.TradeNo || n.Payment.PaidAt.IsZero() || n.Payment.Payer == "" {
		t.Fatalf("notification = %+v", n)
	}
	st, err := r.ch.Query(ctx, no)
	if err != nil || st.State != payments.PayPaid || st.Amount != cny(1234) || st.ProviderTxID != res.TradeNo || st.PaidAt.IsZero() {
		t.Fatalf("Query(paid) = %+v, %v", st, err)
	}
	if d := st.PaidAt.Sub(n.Payment.PaidAt); d != 0 {
		t.Errorf("Query paid_at %v, notification %v", st.PaidAt, n.Payment.PaidAt)
	}
	// A paid order number cannot be precreated again.
	_, err = r.ch.Create(ctx, payments.Order{No: no, Amount: cny(1234), Description: "x"})
	wantErr(t, "Create(paid order again)", err, payments.ErrRefused, "ACQ.TRADE_HAS_SUCCESS")
}

func TestCreateRetrySameOrder(t *testing.T) {
	r := newRig(t)
	no := payments.NewOrderNo("T")
	o := payments.Order{No: no, Amount: cny(500), Description: "top-up"}
	a1, err := r.ch.Create(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	a2, err := r.ch.Create(ctx, o)
	if err != nil || a2.CodeURL != a1.CodeURL {
		t.Fatalf("Create retried = %+v, %v; want the same code %q", a2, err, a1.CodeURL)
	}
	o.Amount = cny(501)
	_, err = r.ch.Create(ctx, o)
	wantErr(t, "Create(same order, other amount)", err, payments.ErrRefused, "ACQ.CONTEXT_INCONSISTENT")
	if vend.KindOf(err) != vend.Conflict {
		t.Fatalf("kind %s, want conflict", vend.KindOf(err))
	}
}

func TestCreateRejectsWhatAlipayCannotTake(t *testing.T) {
	r := newRig(t)
	for _, o := range []payments.Order{
		{No: "A1", Amount: vend.Amount{Minor: 100, Currency: "EUR"}},
		{No: "A2", Amount: cny(0)},
		{No: "A3", Amount: cny(-5)},
		{No: "", Amount: cny(100)},
		{No: strings.Repeat("x", 65), Amount: cny(100)},
		{No: "A4", Amount: cny(100_000_000_01)},
	} {
		_, err := r.ch.Create(ctx, o)
		if vend.KindOf(err) != vend.Invalid {
			t.Errorf("Create(%q, %v) = %v, want invalid", o.No, o.Amount, err)
		}
	}
	var n map[string]int
	r.p.MustControl("requests", nil, &n)
	if n["accepted"]+n["refused"] != 0 {
		t.Fatalf("the peer saw %v requests; bad orders must not reach Alipay", n)
	}
}

func TestClose(t *testing.T) {
	r := newRig(t)
	// Unscanned: Alipay has no trade to close, and the code cannot be paid
	// after its time_expire.
	r.p.MustControl("clock", map[string]any{"at": "2026-11-30T10:00:00+08:00"}, nil)
	a := payments.NewOrderNo("T")
	if _, err := r.ch.Create(ctx, payments.Order{No: a, Amount: cny(100), ExpiresAt: time.Date(2026, 11, 30, 2, 15, 0, 0, time.UTC)}); err != nil {
		t.Fatal(err)
	}
	if o := r.p.Order(a); o.TimeExpire != "2026-11-30 10:15:00" {
		t.Fatalf("time_expire sent = %q, want the order's ExpiresAt in Asia/Shanghai", o.TimeExpire)
	}
	if err := r.ch.Close(ctx, a); err != nil {
		t.Fatalf("Close(unscanned) = %v", err)
	}
	r.p.MustControl("clock", map[string]any{"at": "2026-11-30T10:15:00+08:00"}, nil)
	if err := r.p.Control("pay", map[string]any{"out_trade_no": a}, nil); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("the buyer paid an order after its time_expire: %v", err)
	}
	r.p.MustControl("clock", map[string]any{"at": nil}, nil)
	// Closed early and paid before the code expired: no money moved behind
	// the cloud's back; the payment is reported, to be credited.
	late := r.create(t, 150)
	if err := r.ch.Close(ctx, late); err != nil {
		t.Fatalf("Close(unscanned) = %v", err)
	}
	r.pay(t, late)
	if st, err := r.ch.Query(ctx, late); err != nil || st.State != payments.PayPaid || st.Amount != cny(150) {
		t.Fatalf("Query(paid after Close) = %+v, %v", st, err)
	}
	if o := r.p.Order(late); o.Refunded != 0 {
		t.Fatalf("the late payment was refunded behind the cloud's back: %+v", o)
	}
	// Scanned, waiting: closed; closing again is not an error.
	b := r.create(t, 200)
	r.p.MustControl("scan", map[string]any{"out_trade_no": b}, nil)
	if err := r.ch.Close(ctx, b); err != nil {
		t.Fatalf("Close(waiting) = %v", err)
	}
	if err := r.ch.Close(ctx, b); err != nil {
		t.Fatalf("Close(closed) = %v", err)
	}
	if st, err := r.ch.Query(ctx, b); err != nil || st.State != payments.PayClosed {
		t.Fatalf("Query(closed) = %+v, %v", st, err)
	}
	// Paid: conflict, and the payment stands.
	c := r.create(t, 300)
	r.pay(t, c)
	err := r.ch.Close(ctx, c)
	wantErr(t, "Close(paid)", err, payments.ErrRefused, "ACQ.TRADE_STATUS_ERROR")
	if vend.KindOf(err) != vend.Conflict {
		t.Fatalf("Close(paid) kind %s, want conflict", vend.KindOf(err))
	}
	if o := r.p.Order(c); o.Status != "TRADE_SUCCESS" || o.Refunded != 0 {
		t.Fatalf("peer's paid order after Close = %+v", o)
	}
}

func TestRefunds(t *testing.T) {
	r := newRig(t)
	no := r.create(t, 1000)
	r.pay(t, no)
	refund := func(rn string, minor int64) (payments.RefundStatus, error) {
		return r.ch.Refund(ctx, payments.RefundRequest{OrderNo: no, RefundNo: rn, Amount: cny(minor), Total: cny(1000), Reason: "unused"})
	}
	st, err := refund("R1", 300)
	if err != nil || st.State != payments.RefundSucceeded || st.Amount != cny(300) || st.RefundNo != "R1" || st.OrderNo != no || st.ProviderRefundID == "" || st.DoneAt.IsZero() {
		t.Fatalf("Refund(R1 3.00) = %+v, %v", st, err)
	}
	// The same refund number again moves no money.
	st2, err := refund("R1", 300)
	if err != nil || st2.State != payments.RefundSucceeded || st2.Amount != cny(300) || st2.ProviderRefundID != st.ProviderRefundID {
		t.Fatalf("Refund(R1 again) = %+v, %v", st2, err)
	}
	if o := r.p.Order(no); o.Refunded != 300 {
		t.Fatalf("peer refunded %d fen after a repeated refund, want 300", o.Refunded)
	}
	// Above what is refundable (7.00 left): Alipay's answer is signed, code
	// 40004, and the SDK returns it with a nil error.
	_, err = refund("R2", 701)
	wantErr(t, "Refund(7.01 of 7.00 left)", err, payments.ErrRefused, "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL")
	if q, err := r.ch.QueryRefund(ctx, no, "R2"); err != nil || q.State != payments.RefundFailed {
		t.Fatalf("QueryRefund(refused R2) = %+v, %v; want failed", q, err)
	}
	st3, err := refund("R3", 700)
	if err != nil || st3.State != payments.RefundSucceeded || st3.Amount != cny(700) {
		t.Fatalf("Refund(R3 rest) = %+v, %v", st3, err)
	}
	if o := r.p.Order(no); o.Refunded != 1000 || o.Status != "TRADE_CLOSED" {
		t.Fatalf("peer's order after a full refund = %+v", o)
	}
	// Refunded in full: still paid for the cloud (the refunds are their
	// own records).
	if q, err := r.ch.Query(ctx, no); err != nil || q.State != payments.PayPaid || q.Amount != cny(1000) {
		t.Fatalf("Query(refunded in full) = %+v, %v; want paid 10.00", q, err)
	}
	_, err = refund("R4", 1)
	wantErr(t, "Refund(closed trade)", err, payments.ErrRefused, "ACQ.TRADE_STATUS_ERROR")
	// Each refund was notified; the notification carries that refund's own
	// amount, not Alipay's running total.
	r.rx.wait(t, 3)
	got, errs := r.rx.snapshot()
	if len(errs) != 0 {
		t.Fatalf("refused notifications: %v", errs)
	}
	amounts := map[string]int64{}
	for _, n := range got[1:] {
		if n.Kind != payments.NotifyRefund || n.Refund.State != payments.RefundSucceeded || n.Refund.OrderNo != no {
			t.Fatalf("refund notification = %+v", n)
		}
		amounts[n.Refund.RefundNo] = n.Refund.Amount.Minor
	}
	if amounts["R1"] != 300 || amounts["R3"] != 700 || len(amounts) != 2 {
		t.Fatalf("refund notifications carry %v, want R1:300 R3:700", amounts)
	}
	// Accepted, but the refund query fails: pending, not failed (a failed
	// refund would invite the cloud to refund again).
	no2 := r.create(t, 500)
	r.pay(t, no2)
	// Two: the refund's notification makes a refund query of its own, in
	// whichever order.
	r.p.MustControl("fail", map[string]any{"method": "alipay.trade.fastpay.refund.query", "code": "20000", "sub_code": "ACQ.SYSTEM_ERROR", "count": 2}, nil)
	pst, err := r.ch.Refund(ctx, payments.RefundRequest{OrderNo: no2, RefundNo: "P1", Amount: cny(200)})
	if err != nil || pst.State != payments.RefundPending || pst.Amount != cny(200) || pst.ProviderRefundID == "" {
		t.Fatalf("Refund whose query failed = %+v, %v; want pending", pst, err)
	}
	r.rx.wait(t, 5) // the refund's notification, refused while the query fails
	if q, err := r.ch.QueryRefund(ctx, no2, "P1"); err != nil || q.State != payments.RefundSucceeded || q.Amount != cny(200) || q.ProviderRefundID != pst.ProviderRefundID {
		t.Fatalf("QueryRefund later = %+v, %v", q, err)
	}
	// Refund of an order Alipay does not know.
	_, err = r.ch.Refund(ctx, payments.RefundRequest{OrderNo: "NOPE", RefundNo: "R9", Amount: cny(1)})
	wantErr(t, "Refund(unknown order)", err, payments.ErrRefused, "ACQ.TRADE_NOT_EXIST")
}

// TestBusinessErrorHasNilSDKError shows the trap: the SDK returns a signed
// business failure with a nil error, and the channel still refuses.
func TestBusinessErrorHasNilSDKError(t *testing.T) {
	r := newRig(t)
	no := r.create(t, 100)
	r.pay(t, no)
	priv, err := os.ReadFile(r.p.Keys.AppPrivateKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := os.ReadFile(r.p.Keys.AlipayPublicKeyFile)
	c, err := sdk.New(alipaytest.AppID, string(priv), false, sdk.WithSandboxGateway(r.p.URL+"/gateway.do"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.LoadAliPayPublicKey(string(pub)); err != nil {
		t.Fatal(err)
	}
	rsp, err := c.TradeRefund(ctx, sdk.TradeRefund{OutTradeNo: no, RefundAmount: "1.01", OutRequestNo: "RX"})
	if err != nil || rsp.Code == sdk.CodeSuccess || rsp.SubCode != "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL" {
		t.Fatalf("SDK refund above the total = %+v, %v; expected a nil error with a failure code", rsp, err)
	}
	_, err = r.ch.Refund(ctx, payments.RefundRequest{OrderNo: no, RefundNo: "RX", Amount: cny(101)})
	wantErr(t, "channel Refund", err, payments.ErrRefused, "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL")

	// Injected into each call in turn: a business refusal is ErrRefused,
	// Alipay's own trouble is ErrProvider.
	for _, tc := range []struct {
		method, code, sub string
		want              *vend.Error
		call              func() error
	}{
		{"alipay.trade.query", "40004", "ACQ.INVALID_PARAMETER", payments.ErrRefused, func() error { _, err := r.ch.Query(ctx, no); return err }},
		{"alipay.trade.query", "20000", "ACQ.SYSTEM_ERROR", payments.ErrProvider, func() error { _, err := r.ch.Query(ctx, no); return err }},
		{"alipay.trade.precreate", "40004", "ACQ.ACCESS_FORBIDDEN", payments.ErrRefused, func() error {
			_, err := r.ch.Create(ctx, payments.Order{No: payments.NewOrderNo("T"), Amount: cny(1)})
			return err
		}},
		{"alipay.trade.close", "40005", "aop.ACQ.CALL_LIMITED", payments.ErrProvider, func() error { return r.ch.Close(ctx, no) }},
		{"alipay.trade.fastpay.refund.query", "40004", "ACQ.TRADE_NOT_EXIST", payments.ErrRefused, func() error {
			_, err := r.ch.QueryRefund(ctx, no, "RX")
			return err
		}},
		{"alipay.data.dataservice.bill.downloadurl.query", "40004", "isp.bill_not_exist", payments.ErrProvider, func() error {
			_, err := r.ch.Statement(ctx, payments.Day{Year: 2026, Month: 1, Day: 1})
			return err
		}},
	} {
		r.p.MustControl("fail", map[string]any{"method": tc.method, "code": tc.code, "sub_code": tc.sub}, nil)
		wantErr(t, tc.method+" "+tc.code, tc.call(), tc.want, tc.sub)
	}
}

func TestWrongAppKeyIsRefusedByAlipay(t *testing.T) {
	r := newRig(t)
	other := testKeysOther(t)
	ch, err := alipay.New(alipay.Config{AppID: alipaytest.AppID, AppPrivateKeyFile: other, AlipayPublicKeyFile: r.p.Keys.AlipayPublicKeyFile, GatewayURL: r.p.URL + "/gateway.do"})
	if err != nil {
		t.Fatal(err)
	}
	no := payments.NewOrderNo("T")
	_, err = ch.Create(ctx, payments.Order{No: no, Amount: cny(100)})
	wantErr(t, "Create signed with a wrong app key", err, payments.ErrProvider, "isv.invalid-signature")
	if o := r.p.Order(no); o != nil {
		t.Fatalf("the peer kept an order signed with a wrong key: %+v", o)
	}
	ch2, _ := alipay.New(alipay.Config{AppID: "2021999999999999", AppPrivateKeyFile: r.p.Keys.AppPrivateKeyFile, AlipayPublicKeyFile: r.p.Keys.AlipayPublicKeyFile, GatewayURL: r.p.URL + "/gateway.do"})
	_, err = ch2.Query(ctx, no)
	wantErr(t, "Query with an unknown app ID", err, payments.ErrProvider, "isv.invalid-app-id")
}

func TestWrongAlipayKeyIsRefusedByUs(t *testing.T) {
	r := newRig(t)
	no := r.create(t, 100)
	r.p.MustControl("alipay_key", map[string]any{"wrong": true}, nil)
	_, err := r.ch.Query(ctx, no)
	wantErr(t, "Query answered with a wrong Alipay key", err, payments.ErrProvider, "")
	_, err = r.ch.Create(ctx, payments.Order{No: payments.NewOrderNo("T"), Amount: cny(100)})
	wantErr(t, "Create answered with a wrong Alipay key", err, payments.ErrProvider, "")
	_, err = r.ch.Statement(ctx, payments.Day{Year: 2026, Month: 1, Day: 1})
	wantErr(t, "Statement answered with a wrong Alipay key", err, payments.ErrProvider, "")
	// A notification signed with the wrong key is refused and answered
	// "failure", so Alipay would send it again.
	res := r.pay(t, no)
	if res.Notify.Body != "failure" {
		t.Fatalf("the cloud answered %q to a notification with a wrong signature", res.Notify.Body)
	}
	got, errs := r.rx.snapshot()
	if len(got) != 0 || len(errs) != 1 || vend.KindOf(errs[0]) != vend.Unauthorized {
		t.Fatalf("notifications %v, errors %v; want one unauthorized", got, errs)
	}
	r.p.MustControl("alipay_key", map[string]any{"wrong": false}, nil)
	if st, err := r.ch.Query(ctx, no); err != nil || st.State != payments.PayPaid {
		t.Fatalf("Query after the right key is back = %+v, %v", st, err)
	}
}

func TestTamperedNotification(t *testing.T) {
	r := newRig(t)
	no := r.create(t, 100)
	r.pay(t, no)
	for _, tc := range []struct{ field, value string }{
		{"total_amount", "1000.00"},
		{"trade_status", "TRADE_SUCCESS "},
		{"out_trade_no", "T0000"},
		{"notify_id", "0000"},
		{"sign", "AAAA"},
		{"app_id", "2021999999999999"},
		{"sign_type", "RSA"},
		{"alipay_cert_sn", "0123456789abcdef"},
	} {
		var res alipaytest.NotifyResult
		r.p.MustControl("tamper", map[string]any{"out_trade_no": no, "field": tc.field, "value": tc.value}, &res)
		if res.Notify.Body != "failure" {
			t.Errorf("tampered %s: the cloud answered %q", tc.field, res.Notify.Body)
		}
	}
	got, errs := r.rx.snapshot()
	if len(got) != 1 || len(errs) != 8 {
		t.Fatalf("accepted %d, refused %d; want 1 and 8", len(got), len(errs))
	}
	for _, err := range errs {
		if vend.KindOf(err) != vend.Unauthorized || !errors.Is(err, payments.ErrNotification) {
			t.Errorf("refusal %v: want ErrNotification (unauthorized)", err)
		}
	}
}

func TestReplayedNotificationKeepsItsEventID(t *testing.T) {
	r := newRig(t)
	no := r.create(t, 100)
	r.pay(t, no)
	var res alipaytest.NotifyResult
	r.p.MustControl("replay", map[string]any{"out_trade_no": no}, &res)
	if res.Notify.Body != "success" {
		t.Fatalf("replay answered %q", res.Notify.Body)
	}
	got, errs := r.rx.snapshot()
	if len(got) != 2 || len(errs) != 0 {
		t.Fatalf("got %v, errors %v", got, errs)
	}
	if got[0].EventID == "" || got[0].EventID != got[1].EventID || got[0] != got[1] {
		t.Fatalf("a replayed notification decodes to %+v, first %+v: the event ID (notify_id) must be the same for the cloud to drop it", got[1], got[0])
	}
}

func TestNotificationOtherMethodsAndSizes(t *testing.T) {
	r := newRig(t)
	for _, tc := range []struct {
		method, body string
	}{
		{"GET", ""},
		{"POST", strings.Repeat("a=b&", 20000)},
		{"POST", "%zz"},
		{"POST", "notify_id=1&notify_id=2&sign_type=RSA2"},
	} {
		req, _ := newRequest(tc.method, r.rx.srv.URL, tc.body)
		_, err := r.ch.ParseNotification(ctx, req)
		if vend.KindOf(err) != vend.Unauthorized {
			t.Errorf("%s %.20q: %v, want unauthorized", tc.method, tc.body, err)
		}
	}
}

func TestNewConfigErrors(t *testing.T) {
	kf := alipaytest.NewKeys(t)
	for _, cfg := range []alipay.Config{
		{AppPrivateKeyFile: kf.AppPrivateKeyFile, AlipayPublicKeyFile: kf.AlipayPublicKeyFile},
		{AppID: alipaytest.AppID, AppPrivateKeyFile: kf.AppPrivateKeyFile + ".missing", AlipayPublicKeyFile: kf.AlipayPublicKeyFile},
		{AppID: alipaytest.AppID, AppPrivateKeyFile: kf.AppPublicKeyFile, AlipayPublicKeyFile: kf.AlipayPublicKeyFile},
		{AppID: alipaytest.AppID, AppPrivateKeyFile: kf.AppPrivateKeyFile, AlipayPublicKeyFile: kf.AppPrivateKeyFile},
		{AppID: alipaytest.AppID, AppPrivateKeyFile: kf.AppPrivateKeyFile, AlipayPublicKeyFile: kf.AlipayPublicKeyFile, GatewayURL: "ftp://x"},
	} {
		if _, err := alipay.New(cfg); vend.KindOf(err) != vend.Invalid || !strings.HasPrefix(err.Error(), "alipay: ") {
			t.Errorf("New(%+v) = %v, want an invalid configuration error", cfg, err)
		}
	}
	ch, err := alipay.New(alipay.Config{AppID: alipaytest.AppID, AppPrivateKeyFile: kf.AppPrivateKeyFile, AlipayPublicKeyFile: kf.AlipayPublicKeyFile})
	if err != nil || ch.Name() != "alipay" || ch.Source().ID != "alipay" {
		t.Fatalf("New = %v, %v", ch, err)
	}
	_ = time.Second
}

// A gateway that is slow, down or answers garbage is ErrProvider
// (transient, for the breaker), never a refusal and never a panic.
func TestGatewayTechnicalFailures(t *testing.T) {
	kf := alipaytest.NewKeys(t)
	release := make(chan struct{})
	defer close(release)
	for _, tc := range []struct {
		name string
		h    http.HandlerFunc
	}{
		{"slow", func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body) // so the server notices the client going away
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}},
		{"502 html", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "<html>bad gateway</html>", http.StatusBadGateway)
		}},
		{"no response key", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, `{"other_response":{"code":"10000"},"sign":"x"}`)
		}},
		{"unsigned success", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, `{"alipay_trade_query_response":{"code":"10000","msg":"Success","out_trade_no":"T1","trade_status":"TRADE_SUCCESS","total_amount":"1.00"}}`)
		}},
		{"bad signature", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, `{"alipay_trade_query_response":{"code":"10000","msg":"Success","out_trade_no":"T1","trade_status":"TRADE_SUCCESS","total_amount":"1.00"},"sign":"AAAA"}`)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.h)
			defer srv.Close()
			ch, err := alipay.New(alipay.Config{AppID: alipaytest.AppID, AppPrivateKeyFile: kf.AppPrivateKeyFile, AlipayPublicKeyFile: kf.AlipayPublicKeyFile,
				GatewayURL: srv.URL + "/gateway.do", HTTPClient: &http.Client{Timeout: 300 * time.Millisecond}})
			if err != nil {
				t.Fatal(err)
			}
			st, err := ch.Query(ctx, "T1")
			if !errors.Is(err, payments.ErrProvider) || vend.KindOf(err) != vend.Transient {
				t.Fatalf("Query = %+v, %v; want ErrProvider", st, err)
			}
		})
	}
}

// The channel is used by every request handler at once.
func TestConcurrentUse(t *testing.T) {
	r := newRig(t)
	errs := make(chan error, 16)
	for i := 0; i < 8; i++ {
		go func(i int) {
			no := payments.NewOrderNo("C")
			if _, err := r.ch.Create(ctx, payments.Order{No: no, Amount: cny(int64(100 + i))}); err != nil {
				errs <- err
				return
			}
			st, err := r.ch.Query(ctx, no)
			if err == nil && st.State != payments.PayPending {
				err = errors.New("state " + string(st.State))
			}
			errs <- err
		}(i)
	}
	for i := 0; i < 8; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// In the SDK's production mode, an answer that names an unknown
// alipay_cert_sn makes the SDK download that certificate, unverified, from
// the gateway that gave the answer, and trust it from then on: a forged
// gateway brings its own key. The channel runs the SDK in public-key mode,
// where an unknown certificate is refused.
func TestForgedCertificateIsRefused(t *testing.T) {
	r := newRig(t)
	no := r.create(t, 100)
	r.p.MustControl("forge_cert", map[string]any{"on": true}, nil)

	priv, _ := os.ReadFile(r.p.Keys.AppPrivateKeyFile)
	pub, _ := os.ReadFile(r.p.Keys.AlipayPublicKeyFile)
	prod, err := sdk.New(alipaytest.AppID, string(priv), true, sdk.WithProductionGateway(r.p.URL+"/gateway.do"))
	if err != nil {
		t.Fatal(err)
	}
	if err := prod.LoadAliPayPublicKey(string(pub)); err != nil {
		t.Fatal(err)
	}
	forged, err := prod.TradeQuery(ctx, sdk.TradeQuery{OutTradeNo: no})
	if err != nil || forged.SubCode != "ACQ.TRADE_NOT_EXIST" {
		t.Logf("the SDK in production mode refused the forged answer (%+v, %v): the hazard is gone", forged, err)
	} else {
		t.Logf("the SDK in production mode accepted an answer signed by a key it fetched from the answering gateway")
	}

	_, err = r.ch.Query(ctx, no)
	wantErr(t, "Query answered under a forged certificate", err, payments.ErrProvider, "")
	_, err = r.ch.Create(ctx, payments.Order{No: payments.NewOrderNo("T"), Amount: cny(100)})
	wantErr(t, "Create answered under a forged certificate", err, payments.ErrProvider, "")
	r.p.MustControl("forge_cert", map[string]any{"on": false}, nil)
	if st, err := r.ch.Query(ctx, no); err != nil || st.State != payments.PayPending {
		t.Fatalf("Query with the real key back = %+v, %v: the forged certificate must not have been kept", st, err)
	}
}
