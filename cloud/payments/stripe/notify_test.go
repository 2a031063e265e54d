package stripecard_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/payments"
	"beaconvend/cloud/payments/stripe/stripetest"
)

// deliver POSTs body with the given Stripe-Signature to ParseNotification.
func deliver(s standIn, body []byte, sig string) (payments.Notification, error) {
	r := httptest.NewRequest(http.MethodPost, "/v1/channels/stripe_card/notify", bytes.NewReader(body))
	if sig != "" {
		r.Header.Set("Stripe-Signature", sig)
	}
	return s.ParseNotification(context.Background(), r)
}

func TestWebhooksSignedByOpenSSL(t *testing.T) {
	s := newStandIn(t, nil)
	ctx := context.Background()
	hold, _ := s.Authorize(ctx, order("HOLD-W", 600))
	top, _ := s.Create(ctx, order("TOP-W", 1000))
	fail, _ := s.Create(ctx, order("TOP-WF", 1000))
	closed, _ := s.Authorize(ctx, order("HOLD-WC", 600))
	s.srv.Confirm(hold.ProviderRef)
	s.srv.Confirm(top.ProviderRef)
	s.srv.Decline(fail.ProviderRef)
	s.Cancel(ctx, "HOLD-WC")
	rs, err := s.Refund(ctx, payments.RefundRequest{OrderNo: "TOP-W", RefundNo: "RF-W", Amount: amount(250), Total: amount(1000)})
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		typ, obj string
		kind     payments.NotificationKind
		check    func(n payments.Notification) bool
	}{
		{"payment_intent.amount_capturable_updated", hold.ProviderRef, payments.NotifyPayment, func(n payments.Notification) bool {
			return n.Payment.State == payments.PayAuthorized && n.Payment.OrderNo == "HOLD-W" && n.Payment.Amount == amount(600) && !n.Payment.AuthExpiresAt.IsZero()
		}},
		{"payment_intent.succeeded", top.ProviderRef, payments.NotifyPayment, func(n payments.Notification) bool {
			return n.Payment.State == payments.PayPaid && n.Payment.OrderNo == "TOP-W" && n.Payment.Amount == amount(1000) && n.Payment.ProviderTxID == top.ProviderRef
		}},
		{"payment_intent.payment_failed", fail.ProviderRef, payments.NotifyPayment, func(n payments.Notification) bool {
			return n.Payment.State == payments.PayFailed && n.Payment.OrderNo == "TOP-WF"
		}},
		{"payment_intent.canceled", closed.ProviderRef, payments.NotifyPayment, func(n payments.Notification) bool {
			return n.Payment.State == payments.PayClosed && n.Payment.OrderNo == "HOLD-WC"
		}},
		{"refund.created", rs.ProviderRefundID, payments.NotifyRefund, func(n payments.Notification) bool {
			return n.Refund == rs
		}},
		{"charge.refunded", top.ProviderRef, payments.NotifyIgnored, func(n payments.Notification) bool {
			return n.Payment == (payments.Status{}) && n.Refund == (payments.RefundStatus{})
		}},
		{"customer.created", "cus_1", payments.NotifyIgnored, func(payments.Notification) bool { return true }},
	} {
		body := s.srv.Event(tc.typ, tc.obj)
		sig := stripetest.Sign(t, s.keys.Whsec, time.Now(), body)
		n, err := deliver(s, body, sig)
		if err != nil {
			t.Errorf("%s: %v", tc.typ, err)
			continue
		}
		if n.Kind != tc.kind || !strings.HasPrefix(n.EventID, "evt_") || !tc.check(n) {
			t.Errorf("%s: %+v, want kind %s", tc.typ, n, tc.kind)
		}
		// Stripe redelivers the same event: the same EventID, for the caller to deduplicate.
		again, err := deliver(s, body, stripetest.Sign(t, s.keys.Whsec, time.Now(), body))
		if err != nil || again.EventID != n.EventID {
			t.Errorf("%s redelivered: %+v, %v; want event %s again", tc.typ, again, err, n.EventID)
		}
	}
	if n, err := deliver(s, s.srv.Event("refund.updated", rs.ProviderRefundID), ""); err == nil {
		t.Fatalf("unsigned webhook accepted: %+v", n)
	}
}

func TestForgedWebhooksAreRefused(t *testing.T) {
	s := newStandIn(t, nil)
	ctx := context.Background()
	a, _ := s.Create(ctx, order("TOP-X", 1000))
	s.srv.Confirm(a.ProviderRef)
	body := s.srv.Event("payment_intent.succeeded", a.ProviderRef)
	now := time.Now()
	tampered := bytes.Replace(body, []byte(`"amount_received":1000`), []byte(`"amount_received":9000`), 1)
	if bytes.Equal(tampered, body) {
		t.Fatal("the tamper did not change the body")
	}
	otherVersion := s.srv.EventVersion("payment_intent.succeeded", a.ProviderRef, "2025-01-27.acacia")
	oldVersion := s.srv.EventVersion("payment_intent.succeeded", a.ProviderRef, "2020-08-27")
	for _, tc := range []struct {
		name string
		body []byte
		sig  string
	}{
		{"tampered body", tampered, stripetest.Sign(t, s.keys.Whsec, now, body)},
		{"wrong secret", body, stripetest.Sign(t, "whsec_"+randHex(t, 16), now, body)},
		{"stale timestamp", body, stripetest.Sign(t, s.keys.Whsec, now.Add(-6*time.Minute), body)},
		{"another API version", otherVersion, stripetest.Sign(t, s.keys.Whsec, now, otherVersion)},
		{"a pre-train API version", oldVersion, stripetest.Sign(t, s.keys.Whsec, now, oldVersion)},
		{"no signature", body, ""},
		{"garbage header", body, "t=abc,v1=zz"},
		{"not JSON", []byte("{"), stripetest.Sign(t, s.keys.Whsec, now, []byte("{"))},
	} {
		n, err := deliver(s, tc.body, tc.sig)
		if err == nil {
			t.Errorf("%s: accepted %+v", tc.name, n)
			continue
		}
		mustKind(t, err, payments.ErrNotification)
		if vend.KindOf(err) != vend.Unauthorized {
			t.Errorf("%s: kind %s, want unauthorized", tc.name, vend.KindOf(err))
		}
		t.Logf("%s: %v", tc.name, err)
	}
	// stripe-go compares the release train, not the date: an endpoint on
	// an earlier dahlia version is accepted (its objects decode alike).
	sameTrain := s.srv.EventVersion("payment_intent.succeeded", a.ProviderRef, "2026-01-28.dahlia")
	if _, err := deliver(s, sameTrain, stripetest.Sign(t, s.keys.Whsec, now, sameTrain)); err != nil {
		t.Fatalf("same release train refused: %v", err)
	}
	// The genuine one still verifies.
	if _, err := deliver(s, body, stripetest.Sign(t, s.keys.Whsec, now, body)); err != nil {
		t.Fatal(err)
	}
	// GET is refused.
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	if _, err := s.ParseNotification(ctx, r); err == nil {
		t.Fatal("GET accepted")
	}
}

func TestAckNotification(t *testing.T) {
	s := newStandIn(t, nil)
	w := httptest.NewRecorder()
	s.AckNotification(w, nil)
	if w.Code != http.StatusOK {
		t.Fatalf("ack of success: %d", w.Code)
	}
	w = httptest.NewRecorder()
	s.AckNotification(w, payments.ErrNotification)
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "channel.notification") {
		t.Fatalf("ack of failure: %d %s", w.Code, w.Body)
	}
}
