package stripecard_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/payments"
	stripecard "beaconvend/cloud/payments/stripe"
)

func TestTopUpPaidOnceAndRetriedCreateOpensNoSecondIntent(t *testing.T) {
	s := newStandIn(t, nil)
	ctx := context.Background()
	a, err := s.Create(ctx, order("TOP-1", 2000))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(a.ProviderRef, "pi_") || !strings.HasPrefix(a.ClientSecret, a.ProviderRef+"_secret_") || a.CodeURL != "" {
		t.Fatalf("action %+v, want a pi_ ref and its client secret", a)
	}
	again, err := s.Create(ctx, order("TOP-1", 2000))
	if err != nil {
		t.Fatal(err)
	}
	if again != a || s.srv.Intents() != 1 {
		t.Fatalf("retried create: %+v and %d intents, want %+v and 1", again, s.srv.Intents(), a)
	}
	// The same order number for another amount is a different request: refused, never a second intent.
	_, err = s.Create(ctx, order("TOP-1", 2500))
	mustKind(t, err, payments.ErrRefused)
	if s.srv.Intents() != 1 {
		t.Fatalf("%d intents, want 1", s.srv.Intents())
	}

	st, err := s.Query(ctx, "TOP-1")
	if err != nil || st.State != payments.PayPending || st.ProviderTxID != a.ProviderRef {
		t.Fatalf("query before paying = %+v, %v; want pending %s", st, err, a.ProviderRef)
	}
	if err := s.srv.Confirm(a.ProviderRef); err != nil {
		t.Fatal(err)
	}
	st, err = s.Query(ctx, "TOP-1")
	if err != nil || st.State != payments.PayPaid || st.Amount != amount(2000) || st.PaidAt.IsZero() || st.OrderNo != "TOP-1" {
		t.Fatalf("query after paying = %+v, %v; want paid 20.00 EUR", st, err)
	}
	// A paid order cannot be closed: the caller then credits it.
	err = s.Close(ctx, "TOP-1")
	mustKind(t, err, payments.ErrRefused)
	if vend.KindOf(err) != vend.Conflict {
		t.Fatalf("close of a paid order: kind %s, want conflict", vend.KindOf(err))
	}
}

func TestCloseUnpaidOrderTwice(t *testing.T) {
	s := newStandIn(t, nil)
	ctx := context.Background()
	if _, err := s.Create(ctx, order("TOP-2", 500)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := s.Close(ctx, "TOP-2"); err != nil {
			t.Fatalf("close #%d: %v", i+1, err)
		}
	}
	if st, err := s.Query(ctx, "TOP-2"); err != nil || st.State != payments.PayClosed {
		t.Fatalf("after close: %+v, %v", st, err)
	}
	if err := s.srv.Confirm(s.srv.IntentOf("TOP-2")); err == nil {
		t.Fatal("the payer could pay a closed order")
	}
}

// authorized opens a hold of minor cents and has the payer confirm it.
func authorized(t *testing.T, s standIn, no string, minor int64) string {
	t.Helper()
	a, err := s.Authorize(context.Background(), order(no, minor))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.srv.Confirm(a.ProviderRef); err != nil {
		t.Fatal(err)
	}
	return a.ProviderRef
}

func TestHoldCapturesExactlyTheMeteredAmount(t *testing.T) {
	now := time.Date(2026, 3, 14, 9, 30, 0, 0, time.UTC)
	s := newStandIn(t, nil)
	s.srv.Now = func() time.Time { return now }
	s.srv.Validity = 6*24*time.Hour + 20*time.Hour // the issuer's capture_before, not the configured default
	ctx := context.Background()

	a, err := s.Authorize(ctx, order("HOLD-1", 500))
	if err != nil {
		t.Fatal(err)
	}
	if st, err := s.Query(ctx, "HOLD-1"); err != nil || st.State != payments.PayPending {
		t.Fatalf("before the payer confirms: %+v, %v; want pending (no grant yet)", st, err)
	}
	if err := s.srv.Confirm(a.ProviderRef); err != nil {
		t.Fatal(err)
	}
	st, err := s.Query(ctx, "HOLD-1")
	if err != nil {
		t.Fatal(err)
	}
	if st.State != payments.PayAuthorized || st.Amount != amount(500) || !st.AuthExpiresAt.Equal(now.Add(s.srv.Validity)) {
		t.Fatalf("authorized = %+v, want authorized 5.00 EUR until %s (capture_before)", st, now.Add(s.srv.Validity))
	}

	st, err = s.Capture(ctx, "HOLD-1", amount(320))
	if err != nil {
		t.Fatal(err)
	}
	if st.State != payments.PayPaid || st.Amount != amount(320) {
		t.Fatalf("capture = %+v, want paid 3.20 EUR", st)
	}
	// The rest is released: nothing left to capture, the intent received 3.20 only.
	if st, _ := s.Query(ctx, "HOLD-1"); st.State != payments.PayPaid || st.Amount != amount(320) {
		t.Fatalf("after capture: %+v", st)
	}
	// A retried capture of the same amount (the reply was lost) is the same success, not a second capture.
	st2, err := s.Capture(ctx, "HOLD-1", amount(320))
	if err != nil || st2.State != payments.PayPaid || st2.Amount != amount(320) {
		t.Fatalf("retried capture = %+v, %v; want the same paid status", st2, err)
	}
	// Another amount after the capture, or a cancel, is refused.
	_, err = s.Capture(ctx, "HOLD-1", amount(400))
	mustKind(t, err, payments.ErrRefused)
	_, err = s.Cancel(ctx, "HOLD-1")
	mustKind(t, err, payments.ErrRefused)
	if n := s.srv.Calls("POST /v1/payment_intents/{id}/capture"); n != 3 {
		t.Fatalf("%d capture requests, want 3 (one captured, two refused by state)", n)
	}
}

func TestHoldOfNothingDeliveredIsCancelled(t *testing.T) {
	s := newStandIn(t, nil)
	ctx := context.Background()
	authorized(t, s, "HOLD-0", 800)
	st, err := s.Cancel(ctx, "HOLD-0")
	if err != nil || st.State != payments.PayClosed {
		t.Fatalf("cancel = %+v, %v; want closed", st, err)
	}
	// Cancelling again (a retry) is its closed status, not an error.
	st, err = s.Cancel(ctx, "HOLD-0")
	if err != nil || st.State != payments.PayClosed {
		t.Fatalf("cancel again = %+v, %v; want closed", st, err)
	}
	// Capture after cancel is refused.
	_, err = s.Capture(ctx, "HOLD-0", amount(100))
	mustKind(t, err, payments.ErrRefused)
}

func TestCaptureAboveTheAuthorizationIsRefusedAndTheHoldStays(t *testing.T) {
	s := newStandIn(t, nil)
	ctx := context.Background()
	authorized(t, s, "HOLD-2", 500)
	_, err := s.Capture(ctx, "HOLD-2", amount(501))
	mustKind(t, err, payments.ErrRefused)
	if !strings.Contains(err.Error(), "amount_too_large") {
		t.Fatalf("err = %v, want Stripe's code in it", err)
	}
	if st, err := s.Query(ctx, "HOLD-2"); err != nil || st.State != payments.PayAuthorized || st.Amount != amount(500) {
		t.Fatalf("after a refused capture: %+v, %v; want still authorized 5.00", st, err)
	}
	if st, err := s.Capture(ctx, "HOLD-2", amount(500)); err != nil || st.Amount != amount(500) {
		t.Fatalf("capture of the whole hold = %+v, %v", st, err)
	}
}

func TestThreeDSecureThenAuthorized(t *testing.T) {
	s := newStandIn(t, nil)
	ctx := context.Background()
	a, err := s.Authorize(ctx, order("HOLD-3DS", 900))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.srv.RequireAction(a.ProviderRef); err != nil {
		t.Fatal(err)
	}
	st, err := s.Query(ctx, "HOLD-3DS")
	if err != nil || st.State != payments.PayActionRequired || st.ClientSecret != a.ClientSecret {
		t.Fatalf("during 3DS = %+v, %v; want action_required with the client secret", st, err)
	}
	// No capture while the payer authenticates.
	_, err = s.Capture(ctx, "HOLD-3DS", amount(100))
	mustKind(t, err, payments.ErrRefused)
	if err := s.srv.Confirm(a.ProviderRef); err != nil {
		t.Fatal(err)
	}
	if st, err := s.Query(ctx, "HOLD-3DS"); err != nil || st.State != payments.PayAuthorized || st.ClientSecret != "" {
		t.Fatalf("after 3DS = %+v, %v; want authorized", st, err)
	}
}

func TestThreeDSecureNeverCompletedIsCancelled(t *testing.T) {
	s := newStandIn(t, nil)
	ctx := context.Background()
	a, err := s.Authorize(ctx, order("HOLD-3DS-X", 900))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.srv.RequireAction(a.ProviderRef); err != nil {
		t.Fatal(err)
	}
	if st, err := s.Cancel(ctx, "HOLD-3DS-X"); err != nil || st.State != payments.PayClosed {
		t.Fatalf("cancel during 3DS = %+v, %v; want closed", st, err)
	}
	if err := s.srv.Confirm(a.ProviderRef); err == nil {
		t.Fatal("the payer completed 3DS on a cancelled intent")
	}
}

func TestDeclinedCardStaysPending(t *testing.T) {
	s := newStandIn(t, nil)
	ctx := context.Background()
	a, err := s.Authorize(ctx, order("HOLD-DECL", 900))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.srv.Decline(a.ProviderRef); err != nil {
		t.Fatal(err)
	}
	if st, err := s.Query(ctx, "HOLD-DECL"); err != nil || st.State != payments.PayPending || st.Amount != (vend.Amount{}) {
		t.Fatalf("after a decline = %+v, %v; want pending (the payer may try another card), nothing authorized", st, err)
	}
}

func TestLapsedAuthorizationIsClosedAndCannotBeCaptured(t *testing.T) {
	s := newStandIn(t, nil)
	ctx := context.Background()
	pi := authorized(t, s, "HOLD-LAPSE", 700)
	if err := s.srv.Lapse(pi); err != nil {
		t.Fatal(err)
	}
	if st, err := s.Query(ctx, "HOLD-LAPSE"); err != nil || st.State != payments.PayClosed {
		t.Fatalf("after the lapse = %+v, %v; want closed", st, err)
	}
	_, err := s.Capture(ctx, "HOLD-LAPSE", amount(700))
	mustKind(t, err, payments.ErrRefused)
	if st, err := s.Cancel(ctx, "HOLD-LAPSE"); err != nil || st.State != payments.PayClosed {
		t.Fatalf("cancel of a lapsed hold = %+v, %v; want closed, no error", st, err)
	}
}

func TestAuthorizationValidityDefaultAndConfigured(t *testing.T) {
	s := newStandIn(t, nil)
	if got := s.AuthorizationValidity(); got != 7*24*time.Hour {
		t.Fatalf("default validity %s, want 168h", got)
	}
	five := newStandIn(t, func(c *stripecard.Config) { c.AuthorizationValidity = 5 * 24 * time.Hour })
	if got := five.AuthorizationValidity(); got != 5*24*time.Hour {
		t.Fatalf("configured validity %s, want 120h", got)
	}
}

func TestRefundOncePerRefundNumber(t *testing.T) {
	s := newStandIn(t, nil)
	ctx := context.Background()
	pi := authorized(t, s, "HOLD-R", 1000)
	if _, err := s.Capture(ctx, "HOLD-R", amount(800)); err != nil {
		t.Fatal(err)
	}
	req := payments.RefundRequest{OrderNo: "HOLD-R", RefundNo: "RF-1", Amount: amount(300), Total: amount(800)}
	rs, err := s.Refund(ctx, req)
	if err != nil || rs.State != payments.RefundSucceeded || rs.Amount != amount(300) || rs.RefundNo != "RF-1" || rs.OrderNo != "HOLD-R" {
		t.Fatalf("refund = %+v, %v", rs, err)
	}
	again, err := s.Refund(ctx, req)
	if err != nil || again.ProviderRefundID != rs.ProviderRefundID {
		t.Fatalf("retried refund = %+v, %v; want the same refund %s", again, err, rs.ProviderRefundID)
	}
	if n := s.srv.Calls("POST /v1/refunds"); n != 1 {
		t.Fatalf("%d refund creations, want 1", n)
	}
	// Above what is left (8.00 − 3.00): refused by Stripe.
	_, err = s.Refund(ctx, payments.RefundRequest{OrderNo: "HOLD-R", RefundNo: "RF-2", Amount: amount(501), Total: amount(800)})
	mustKind(t, err, payments.ErrRefused)
	q, err := s.QueryRefund(ctx, "HOLD-R", "RF-1")
	if err != nil || q != rs {
		t.Fatalf("query refund = %+v, %v; want %+v", q, err, rs)
	}
	_, err = s.QueryRefund(ctx, "HOLD-R", "RF-NONE")
	mustKind(t, err, payments.ErrRefused)

	if err := s.srv.FailRefund(rs.ProviderRefundID); err != nil {
		t.Fatal(err)
	}
	if q, err := s.QueryRefund(ctx, "HOLD-R", "RF-1"); err != nil || q.State != payments.RefundFailed {
		t.Fatalf("after the refund failed: %+v, %v", q, err)
	}
	_ = pi
}

func TestPendingRefundSettles(t *testing.T) {
	s := newStandIn(t, nil)
	s.srv.PendingRefunds = true
	ctx := context.Background()
	if a, err := s.Create(ctx, order("TOP-R", 1000)); err != nil || s.srv.Confirm(a.ProviderRef) != nil {
		t.Fatal(err)
	}
	rs, err := s.Refund(ctx, payments.RefundRequest{OrderNo: "TOP-R", RefundNo: "RF-P", Amount: amount(1000), Total: amount(1000)})
	if err != nil || rs.State != payments.RefundPending {
		t.Fatalf("refund = %+v, %v; want pending", rs, err)
	}
	if err := s.srv.SettleRefund(rs.ProviderRefundID); err != nil {
		t.Fatal(err)
	}
	if q, err := s.QueryRefund(ctx, "TOP-R", "RF-P"); err != nil || q.State != payments.RefundSucceeded {
		t.Fatalf("after settling: %+v, %v", q, err)
	}
}

func TestLookupIntentIsUsedBeforeSearch(t *testing.T) {
	lk := &lookupMap{}
	s := newStandIn(t, func(c *stripecard.Config) { c.LookupIntent = lk.lookup })
	ctx := context.Background()
	a, err := s.Authorize(ctx, order("HOLD-L", 500))
	if err != nil {
		t.Fatal(err)
	}
	// Not recorded yet (the process died before storing ProviderRef): found by search.
	if st, err := s.Query(ctx, "HOLD-L"); err != nil || st.ProviderTxID != a.ProviderRef {
		t.Fatalf("query by search = %+v, %v", st, err)
	}
	if s.srv.Calls("GET /v1/payment_intents/search") != 1 {
		t.Fatal("no search")
	}
	lk.set("HOLD-L", a.ProviderRef)
	if _, err := s.Query(ctx, "HOLD-L"); err != nil {
		t.Fatal(err)
	}
	if s.srv.Calls("GET /v1/payment_intents/search") != 1 || lk.n != 2 {
		t.Fatalf("recorded intent: %d searches, %d lookups; want 1 and 2", s.srv.Calls("GET /v1/payment_intents/search"), lk.n)
	}
	// A record naming another order's intent is caught by its metadata.
	other, _ := s.Authorize(ctx, order("HOLD-M", 500))
	lk.set("HOLD-L", other.ProviderRef)
	_, err = s.Query(ctx, "HOLD-L")
	mustKind(t, err, payments.ErrProvider)
	// A failing lookup is the caller's error, wrapped.
	s.SetLookupIntent(func(context.Context, string) (string, error) { return "", errors.New("store down") })
	if _, err := s.Query(ctx, "HOLD-L"); err == nil || !strings.Contains(err.Error(), "store down") {
		t.Fatalf("err = %v, want the lookup's", err)
	}
	// An unknown order is a refusal naming it.
	s.SetLookupIntent(nil)
	_, err = s.Query(ctx, "NOPE")
	mustKind(t, err, payments.ErrRefused)
}

func TestProviderFailuresAreTransient(t *testing.T) {
	s := newStandIn(t, nil)
	ctx := context.Background()
	for _, code := range []int{http.StatusInternalServerError, http.StatusTooManyRequests, http.StatusConflict} {
		s.srv.FailNext(code)
		_, err := s.Create(ctx, order("TOP-F", 500))
		mustKind(t, err, payments.ErrProvider)
		if vend.KindOf(err) != vend.Transient {
			t.Fatalf("http %d: kind %s, want transient", code, vend.KindOf(err))
		}
	}
	// Our key refused (401): a configuration fault, not an answer about the order.
	wrong := newKeys(t)
	ch, err := stripecard.New(stripecard.Config{SecretKeyFile: wrong.KeyFile, WebhookSecretFile: wrong.WhsecFile, Currency: eur, BaseURL: s.srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	_, err = ch.Create(ctx, order("TOP-K", 500))
	mustKind(t, err, payments.ErrProvider)
	// Nothing listening.
	dead, err := stripecard.New(stripecard.Config{SecretKeyFile: wrong.KeyFile, WebhookSecretFile: wrong.WhsecFile, Currency: eur, BaseURL: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = dead.Create(ctx, order("TOP-D", 500))
	mustKind(t, err, payments.ErrProvider)
}

func TestBadRequestsAreRefusedBeforeStripe(t *testing.T) {
	s := newStandIn(t, nil)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		o    payments.Order
		want *vend.Error
	}{
		{"zero", order("A-1", 0), payments.ErrAmount},
		{"negative", order("A-2", -5), payments.ErrAmount},
		{"too large", order("A-3", 100000000), payments.ErrAmount},
		{"other currency", payments.Order{No: "A-4", Amount: vend.Amount{Minor: 100, Currency: "USD"}}, payments.ErrAmount},
		{"empty number", order("", 100), nil},
		{"quote in number", order("A'5", 100), nil},
	} {
		_, err := s.Create(ctx, tc.o)
		if err == nil || vend.KindOf(err) != vend.Invalid || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("%s: err = %v, want invalid", tc.name, err)
		}
	}
	if n := s.srv.Calls("POST /v1/payment_intents"); n != 0 {
		t.Fatalf("%d requests reached Stripe", n)
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	k := newKeys(t)
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pk := write("pk", "pk_test_123")
	good := stripecard.Config{SecretKeyFile: k.KeyFile, WebhookSecretFile: k.WhsecFile, Currency: eur}
	for _, tc := range []struct {
		name string
		mod  func(*stripecard.Config)
		want string
	}{
		{"no key", func(c *stripecard.Config) { c.SecretKeyFile = "" }, "SecretKeyFile is empty"},
		{"missing key file", func(c *stripecard.Config) { c.SecretKeyFile = filepath.Join(dir, "absent") }, "SecretKeyFile"},
		{"publishable key", func(c *stripecard.Config) { c.SecretKeyFile = pk }, "not a key starting with sk_ or rk_"},
		{"webhook secret is a key", func(c *stripecard.Config) { c.WebhookSecretFile = k.KeyFile }, "WebhookSecretFile"},
		{"currency", func(c *stripecard.Config) { c.Currency = "eur" }, "Currency"},
		{"base url with path", func(c *stripecard.Config) { c.BaseURL = "https://api.stripe.com/v1" }, "BaseURL"},
		{"negative validity", func(c *stripecard.Config) { c.AuthorizationValidity = -time.Hour }, "negative"},
	} {
		cfg := good
		tc.mod(&cfg)
		_, err := stripecard.New(cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, stripecard.ErrConfig) {
			t.Errorf("%s: err = %v, want ErrConfig naming %q", tc.name, err, tc.want)
		}
	}
	ch, err := stripecard.New(good)
	if err != nil {
		t.Fatal(err)
	}
	if ch.Name() != "stripe_card" || ch.Source().ID != "stripe_card" || ch.Source().Kind != "card" {
		t.Fatalf("name %q source %+v", ch.Name(), ch.Source())
	}
}
