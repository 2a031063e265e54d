package wechatpay_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/payments"
	"beaconvend/cloud/payments/wechatpay"
	"beaconvend/cloud/payments/wechatpay/wechattest"
)

func cny(minor int64) vend.Amount { return vend.Amount{Minor: minor, Currency: "CNY"} }

// wantErr checks the error's sentinel and that its text names code.
func wantErr(t *testing.T, what string, err, sentinel error, code string) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("%s: err = %v, want %v", what, err, sentinel)
	}
	if code != "" && !strings.Contains(err.Error(), code) {
		t.Fatalf("%s: err = %v, want it to name %s", what, err, code)
	}
}

func TestPayFlow(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	no := payments.NewOrderNo("T")
	act, err := h.ch.Create(ctx, order(no, 1234))
	if err != nil {
		t.Fatalf("Create = %v", err)
	}
	if !strings.HasPrefix(act.CodeURL, "weixin://wxpay/bizpayurl?pr=") {
		t.Fatalf("CodeURL = %q", act.CodeURL)
	}
	// A retried create of the same order opens no second order.
	again, err := h.ch.Create(ctx, order(no, 1234))
	if err != nil || again.CodeURL != act.CodeURL {
		t.Fatalf("Create again = %+v, %v; want the same code_url %q", again, err, act.CodeURL)
	}
	// The same number with another amount is refused.
	_, err = h.ch.Create(ctx, order(no, 999))
	wantErr(t, "create with another amount", err, payments.ErrRefused, "INVALID_REQUEST")

	st, err := h.ch.Query(ctx, no)
	if err != nil || st.State != payments.PayPending || st.OrderNo != no || st.Amount.Minor != 0 {
		t.Fatalf("Query unpaid = %+v, %v", st, err)
	}

	p := h.Pay(no)
	got := h.next()
	if got.err != nil {
		t.Fatalf("ParseNotification = %v", got.err)
	}
	n := got.n
	if n.EventID != p.ID || n.Kind != payments.NotifyPayment || n.Payment.OrderNo != no ||
		n.Payment.State != payments.PayPaid || n.Payment.Amount != cny(1234) || n.Payment.ProviderTxID != p.TransactionID ||
		n.Payment.PaidAt.IsZero() || n.Payment.Payer == "" {
		t.Fatalf("notification = %+v; want event %s, paid 12.34 CNY, tx %s", n, p.ID, p.TransactionID)
	}
	if p.Status != http.StatusNoContent {
		t.Fatalf("our notify endpoint answered %d, want 204", p.Status)
	}

	st, err = h.ch.Query(ctx, no)
	if err != nil || st.State != payments.PayPaid || st.Amount != cny(1234) || st.ProviderTxID != p.TransactionID {
		t.Fatalf("Query paid = %+v, %v", st, err)
	}
	if d := time.Since(st.PaidAt); d < 0 || d > time.Minute {
		t.Fatalf("PaidAt = %v", st.PaidAt)
	}

	err = h.ch.Close(ctx, no)
	wantErr(t, "close a paid order", err, payments.ErrRefused, "ORDERPAID")
	if vend.KindOf(err) != vend.Conflict {
		t.Fatalf("close a paid order: kind %s, want conflict", vend.KindOf(err))
	}
	_, err = h.ch.Create(ctx, order(no, 1234))
	wantErr(t, "create a paid order again", err, payments.ErrRefused, "ORDERPAID")
}

func TestCloseUnpaid(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	no := h.create(500)
	if err := h.ch.Close(ctx, no); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if err := h.ch.Close(ctx, no); err != nil {
		t.Fatalf("Close a closed order = %v, want nil", err)
	}
	st, err := h.ch.Query(ctx, no)
	if err != nil || st.State != payments.PayClosed {
		t.Fatalf("Query closed = %+v, %v", st, err)
	}
	// A closed order can no longer be paid.
	if code := h.Control("pay", map[string]string{"out_trade_no": no}, nil); code != http.StatusConflict {
		t.Fatalf("paying a closed order at the peer: http %d, want 409", code)
	}
	_, err = h.ch.Create(ctx, order(no, 500))
	wantErr(t, "create a closed order again", err, payments.ErrRefused, "ORDER_CLOSED")
}

func TestUnknownOrder(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	_, err := h.ch.Query(ctx, "Tnosuchorder000")
	wantErr(t, "query unknown", err, payments.ErrRefused, "ORDER_NOT_EXIST")
	wantErr(t, "close unknown", h.ch.Close(ctx, "Tnosuchorder000"), payments.ErrRefused, "ORDER_NOT_EXIST")
	_, err = h.ch.QueryRefund(ctx, "Tnosuchorder000", "Rnosuchrefund00")
	wantErr(t, "query unknown refund", err, payments.ErrRefused, "RESOURCE_NOT_EXISTS")
}

func TestRefunds(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	no := h.create(1000)
	h.Pay(no)
	if n := h.next(); n.err != nil {
		t.Fatal(n.err)
	}
	// Unpaid orders cannot be refunded.
	unpaid := h.create(100)
	_, err := h.ch.Refund(ctx, payments.RefundRequest{OrderNo: unpaid, RefundNo: payments.NewOrderNo("R"), Amount: cny(50), Total: cny(100)})
	wantErr(t, "refund unpaid", err, payments.ErrRefused, "INVALID_REQUEST")

	r1 := payments.RefundRequest{OrderNo: no, RefundNo: payments.NewOrderNo("R"), Amount: cny(300), Total: cny(1000), Reason: "unused balance", NotifyURL: h.notify}
	rs, err := h.ch.Refund(ctx, r1)
	if err != nil || rs.State != payments.RefundPending || rs.Amount != cny(300) || rs.ProviderRefundID == "" || rs.OrderNo != no || rs.RefundNo != r1.RefundNo {
		t.Fatalf("Refund = %+v, %v", rs, err)
	}
	again, err := h.ch.Refund(ctx, r1)
	if err != nil || again.ProviderRefundID != rs.ProviderRefundID {
		t.Fatalf("Refund retried = %+v, %v; want the same refund %s", again, err, rs.ProviderRefundID)
	}
	q, err := h.ch.QueryRefund(ctx, no, r1.RefundNo)
	if err != nil || q.State != payments.RefundPending || q.ProviderRefundID != rs.ProviderRefundID {
		t.Fatalf("QueryRefund = %+v, %v", q, err)
	}
	// 800 is above the 700 still refundable: refused, and nothing changes.
	over := payments.RefundRequest{OrderNo: no, RefundNo: payments.NewOrderNo("R"), Amount: cny(800), Total: cny(1000)}
	_, err = h.ch.Refund(ctx, over)
	wantErr(t, "refund above refundable", err, payments.ErrRefused, "INVALID_REQUEST")
	if vend.KindOf(err) != vend.Conflict {
		t.Fatalf("refund above refundable: kind %s", vend.KindOf(err))
	}
	_, err = h.ch.QueryRefund(ctx, no, over.RefundNo)
	wantErr(t, "the refused refund", err, payments.ErrRefused, "RESOURCE_NOT_EXISTS")
	// Refund above the order's total never leaves the process.
	_, err = h.ch.Refund(ctx, payments.RefundRequest{OrderNo: no, RefundNo: payments.NewOrderNo("R"), Amount: cny(1001), Total: cny(1000)})
	wantErr(t, "refund above total", err, payments.ErrAmount, "")

	var done wechattest.Pushed
	if code := h.Control("refund-success", map[string]string{"out_refund_no": r1.RefundNo}, &done); code != 200 {
		t.Fatalf("refund-success: http %d", code)
	}
	n := h.next()
	if n.err != nil || n.n.Kind != payments.NotifyRefund || n.n.EventID != done.ID || n.n.Refund.RefundNo != r1.RefundNo ||
		n.n.Refund.OrderNo != no || n.n.Refund.State != payments.RefundSucceeded || n.n.Refund.Amount != cny(300) ||
		n.n.Refund.ProviderRefundID != rs.ProviderRefundID || n.n.Refund.DoneAt.IsZero() {
		t.Fatalf("refund notification = %+v, %v", n.n, n.err)
	}
	q, err = h.ch.QueryRefund(ctx, no, r1.RefundNo)
	if err != nil || q.State != payments.RefundSucceeded || q.DoneAt.IsZero() {
		t.Fatalf("QueryRefund after success = %+v, %v", q, err)
	}
	// The rest, exactly: full refund of what remains.
	rest := payments.RefundRequest{OrderNo: no, RefundNo: payments.NewOrderNo("R"), Amount: cny(700), Total: cny(1000)}
	if rs, err := h.ch.Refund(ctx, rest); err != nil || rs.Amount != cny(700) {
		t.Fatalf("refund the rest = %+v, %v", rs, err)
	}
	_, err = h.ch.Refund(ctx, payments.RefundRequest{OrderNo: no, RefundNo: payments.NewOrderNo("R"), Amount: cny(1), Total: cny(1000)})
	wantErr(t, "refund of a fully refunded order", err, payments.ErrRefused, "INVALID_REQUEST")
	st, err := h.ch.Query(ctx, no)
	if err != nil || st.State != payments.PayPaid {
		t.Fatalf("a refunded order is still paid: %+v, %v", st, err)
	}
}

func TestWrongMerchantKey(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	cfg := h.Config(h.notify)
	cfg.MerchantKeyFile = filepath.Join(t.TempDir(), "other.pem")
	if err := os.WriteFile(cfg.MerchantKeyFile, wechattest.PrivatePEM(t, wechattest.GenKey(t)), 0o600); err != nil {
		t.Fatal(err)
	}
	bad, err := wechatpay.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	no := payments.NewOrderNo("T")
	_, err = bad.Create(ctx, order(no, 100))
	wantErr(t, "create signed with another key", err, payments.ErrProvider, "SIGN_ERROR")
	// The peer opened nothing.
	_, err = h.ch.Query(ctx, no)
	wantErr(t, "the refused order", err, payments.ErrRefused, "ORDER_NOT_EXIST")
}

func TestWrongPlatformKey(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	no := h.create(100)
	if code := h.Control("platform-key", map[string]string{"pem": string(wechattest.PrivatePEM(t, wechattest.GenKey(t)))}, nil); code != 200 {
		t.Fatalf("platform-key: http %d", code)
	}
	_, err := h.ch.Query(ctx, no)
	wantErr(t, "response signed by another key", err, payments.ErrProvider, "verify")
	p := h.Pay(no)
	n := h.next()
	wantErr(t, "notification signed by another key", n.err, payments.ErrNotification, "")
	if vend.KindOf(n.err) != vend.Unauthorized {
		t.Fatalf("kind %s, want unauthorized", vend.KindOf(n.err))
	}
	if p.Status != http.StatusInternalServerError {
		t.Fatalf("our notify endpoint answered %d to a forged notification, want 500", p.Status)
	}
}

func TestResponseFaults(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	no := h.create(100)
	for _, tc := range []struct {
		fault    string
		sentinel error
		text     string
	}{
		{"tamper", payments.ErrProvider, "verify"},
		{"stale", payments.ErrProvider, "expires"},
		{"wrong_key", payments.ErrProvider, "verify"},
		{"http500", payments.ErrProvider, "SYSTEM_ERROR"},
	} {
		h.Fault(tc.fault)
		st, err := h.ch.Query(ctx, no)
		if err == nil {
			t.Fatalf("%s: Query = %+v, nil; want an error", tc.fault, st)
		}
		wantErr(t, tc.fault, err, tc.sentinel, tc.text)
		if vend.KindOf(err) != vend.Transient {
			t.Fatalf("%s: kind %s, want transient", tc.fault, vend.KindOf(err))
		}
	}
	if st, err := h.ch.Query(ctx, no); err != nil || st.State != payments.PayPending {
		t.Fatalf("Query after the faults = %+v, %v", st, err)
	}
}

// A refusal whose signature does not verify is a forgery, not a refusal:
// a forged ORDER_NOT_EXIST, ORDERPAID or NO_STATEMENT_EXIST must not make
// the caller give up an order, a refund or a day's statement.
func TestForgedRefusal(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.Fault("wrong_key")
	_, err := h.ch.Query(ctx, "Tnosuchorder000")
	wantErr(t, "forged ORDER_NOT_EXIST", err, payments.ErrProvider, "does not verify")
	h.Fault("wrong_key")
	st, err := h.ch.Statement(ctx, today(0))
	wantErr(t, "forged NO_STATEMENT_EXIST", err, payments.ErrProvider, "does not verify")
	if len(st.Rows) != 0 {
		t.Fatalf("statement %+v", st)
	}
	// Signed by the platform, the same refusals stand.
	_, err = h.ch.Query(ctx, "Tnosuchorder000")
	wantErr(t, "ORDER_NOT_EXIST", err, payments.ErrRefused, "ORDER_NOT_EXIST")
	if _, err := h.ch.Statement(ctx, today(0)); err != nil {
		t.Fatalf("NO_STATEMENT_EXIST: %v, want an empty statement", err)
	}
}

func TestNotificationFaults(t *testing.T) {
	for _, fault := range []string{"tamper", "stale", "wrong_key"} {
		t.Run(fault, func(t *testing.T) {
			h := newHarness(t)
			no := h.create(100)
			h.Fault(fault)
			p := h.Pay(no)
			n := h.next()
			wantErr(t, fault, n.err, payments.ErrNotification, "")
			if p.Status != http.StatusInternalServerError {
				t.Fatalf("ack = %d, want 500", p.Status)
			}
			// WeChat Pay's order is paid all the same: a query finds it.
			st, err := h.ch.Query(context.Background(), no)
			if err != nil || st.State != payments.PayPaid {
				t.Fatalf("Query = %+v, %v", st, err)
			}
		})
	}
}

func TestReplayedNotification(t *testing.T) {
	h := newHarness(t)
	no := h.create(250)
	p := h.Pay(no)
	first := h.next()
	var r wechattest.Pushed
	if code := h.Control("replay", map[string]string{"id": p.ID}, &r); code != 200 {
		t.Fatalf("replay: http %d", code)
	}
	second := h.next()
	if first.err != nil || second.err != nil {
		t.Fatalf("errors %v, %v", first.err, second.err)
	}
	// The replay verifies (it is WeChat Pay's own, resent) and carries the
	// same event ID: deduplicating by it is the caller's job.
	if second.n.EventID != first.n.EventID || second.n != first.n {
		t.Fatalf("replay = %+v, first = %+v", second.n, first.n)
	}
}

func TestParseNotificationRefusesJunk(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct {
		name, method, body string
		header             map[string]string
	}{
		{"get", http.MethodGet, "", nil},
		{"no headers", http.MethodPost, `{"id":"x"}`, nil},
		{"bad signature", http.MethodPost, `{"id":"x"}`, map[string]string{
			"Wechatpay-Serial": h.Keys.PlatformSerial, "Wechatpay-Signature": "AAAA", "Wechatpay-Nonce": "n",
			"Wechatpay-Timestamp": "1700000000",
		}},
		{"huge", http.MethodPost, strings.Repeat("x", 70<<10), nil},
	} {
		r := httptest.NewRequest(tc.method, "/notify", strings.NewReader(tc.body))
		for k, v := range tc.header {
			r.Header.Set(k, v)
		}
		_, err := h.ch.ParseNotification(context.Background(), r)
		wantErr(t, tc.name, err, payments.ErrNotification, "")
	}
}

func TestAckNotification(t *testing.T) {
	h := newHarness(t)
	w := httptest.NewRecorder()
	h.ch.AckNotification(w, nil)
	if w.Code != http.StatusNoContent || w.Body.Len() != 0 {
		t.Fatalf("ack ok = %d %q", w.Code, w.Body)
	}
	w = httptest.NewRecorder()
	h.ch.AckNotification(w, vend.Errorf(payments.ErrNotification, "x"))
	if w.Code != http.StatusInternalServerError || !strings.Contains(w.Body.String(), `"code":"FAIL"`) {
		t.Fatalf("ack fail = %d %q", w.Code, w.Body)
	}
}

func TestCreateRefusesBadOrders(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		o    payments.Order
		want error
	}{
		{"zero", order(payments.NewOrderNo("T"), 0), payments.ErrAmount},
		{"euro", payments.Order{No: payments.NewOrderNo("T"), Amount: vend.Amount{Minor: 100, Currency: "EUR"}}, payments.ErrAmount},
		{"short no", order("T1", 100), nil},
		{"bad no", order("T/../x1234", 100), nil},
	} {
		_, err := h.ch.Create(ctx, tc.o)
		if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || vend.KindOf(err) != vend.Invalid {
			t.Errorf("%s: Create = %v, want an invalid error", tc.name, err)
		}
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	k := wechattest.NewKeys(t)
	good := wechatpay.Config{
		MchID: k.MchID, AppID: k.AppID, MerchantSerial: k.MerchantSerial, MerchantKeyFile: k.MerchantKeyFile,
		APIv3KeyFile: k.APIv3KeyFile, PlatformKeyFile: k.PlatformKeyFile, PlatformSerial: k.PlatformSerial,
	}
	good.HTTPClient = &http.Client{}
	if _, err := wechatpay.New(good); err != nil {
		t.Fatalf("New(good) = %v", err)
	}
	if good.HTTPClient.Transport != nil {
		t.Fatal("New changed the caller's HTTP client")
	}
	short := filepath.Join(k.Dir, "short.key")
	_ = os.WriteFile(short, []byte("0123456789"), 0o600)
	for _, tc := range []struct {
		name, want string
		mod        func(*wechatpay.Config)
	}{
		{"no mchid", "MchID", func(c *wechatpay.Config) { c.MchID = "" }},
		{"missing key", "MerchantKeyFile", func(c *wechatpay.Config) { c.MerchantKeyFile = filepath.Join(k.Dir, "nope.pem") }},
		{"public as private", "MerchantKeyFile", func(c *wechatpay.Config) { c.MerchantKeyFile = k.PlatformKeyFile }},
		{"short v3 key", "APIv3KeyFile", func(c *wechatpay.Config) { c.APIv3KeyFile = short }},
		{"private as platform", "PlatformKeyFile", func(c *wechatpay.Config) { c.PlatformKeyFile = k.MerchantKeyFile }},
		{"no serial", "PlatformSerial", func(c *wechatpay.Config) { c.PlatformSerial = "" }},
		{"base with path", "BaseURL", func(c *wechatpay.Config) { c.BaseURL = "http://127.0.0.1:1/v3" }},
	} {
		c := good
		tc.mod(&c)
		_, err := wechatpay.New(c)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "wechatpay: ") {
			t.Errorf("%s: New = %v, want an error naming %s", tc.name, err, tc.want)
		}
	}
}

// A server that never answers: the call ends with the caller's deadline
// as a provider fault (it feeds the breaker), not a hang.
func TestProviderNeverAnswers(t *testing.T) {
	k := wechattest.NewKeys(t)
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-stop:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(stop)
	ch, err := wechatpay.New(wechatpay.Config{
		MchID: k.MchID, AppID: k.AppID, MerchantSerial: k.MerchantSerial, MerchantKeyFile: k.MerchantKeyFile,
		APIv3KeyFile: k.APIv3KeyFile, PlatformKeyFile: k.PlatformKeyFile, PlatformSerial: k.PlatformSerial,
		BaseURL: srv.URL, NotifyURL: "https://example.invalid/notify",
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = ch.Create(ctx, order(payments.NewOrderNo("T"), 100))
	wantErr(t, "create against a silent server", err, payments.ErrProvider, "deadline")
	if vend.KindOf(err) != vend.Transient {
		t.Fatalf("kind %s, want transient", vend.KindOf(err))
	}
}
