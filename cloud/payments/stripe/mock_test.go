package stripecard_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/stripe/stripe-go/v85"

	"beaconvend/cloud/payments"
	stripecard "beaconvend/cloud/payments/stripe"
	"beaconvend/cloud/payments/stripe/stripetest"
)

// TestRequestShapesAgainstStripeMock sends every request the channel
// makes through stripe-go to stripe-mock, which validates each against
// Stripe's OpenAPI spec (parameters, types, enums) and answers 400 for a
// request Stripe would refuse. stripe-mock keeps no state and answers
// fixtures (another intent, no metadata), so the channel's own checks of
// the answers may fail here (ErrProvider); what this test holds is that
// every request was accepted.
func TestRequestShapesAgainstStripeMock(t *testing.T) {
	base := stripetest.StartMock(t)
	k := newKeys(t)
	rec := &recorder{}
	lk := &lookupMap{}
	ch, err := stripecard.New(stripecard.Config{SecretKeyFile: k.KeyFile, WebhookSecretFile: k.WhsecFile, Currency: eur,
		BaseURL: base, HTTPClient: &http.Client{Transport: rec}, LookupIntent: lk.lookup})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	lk.set("ORD-1", "pi_123")
	day, _ := payments.ParseDay("2026-03-14")

	steps := []struct {
		name   string
		do     func() error
		routes []string
	}{
		{"create", func() error { _, err := ch.Create(ctx, order("ORD-1", 1500)); return err },
			[]string{"POST /v1/payment_intents"}},
		{"authorize", func() error { _, err := ch.Authorize(ctx, order("ORD-1", 1500)); return err },
			[]string{"POST /v1/payment_intents"}},
		{"query", func() error { _, err := ch.Query(ctx, "ORD-1"); return err },
			[]string{"GET /v1/payment_intents/pi_123"}},
		{"query via search", func() error { _, err := ch.Query(ctx, "ORD-UNRECORDED"); return err },
			[]string{"GET /v1/payment_intents/search"}},
		{"capture", func() error { _, err := ch.Capture(ctx, "ORD-1", amount(700)); return err },
			[]string{"POST /v1/payment_intents/pi_123/capture"}},
		{"cancel", func() error { _, err := ch.Cancel(ctx, "ORD-1"); return err },
			[]string{"POST /v1/payment_intents/pi_123/cancel"}},
		{"refund", func() error {
			_, err := ch.Refund(ctx, payments.RefundRequest{OrderNo: "ORD-1", RefundNo: "RF-1", Amount: amount(300), Total: amount(700), Reason: "unused part"})
			return err
		}, []string{"GET /v1/refunds", "POST /v1/refunds"}},
		{"query refund", func() error { _, err := ch.QueryRefund(ctx, "ORD-1", "RF-1"); return err },
			[]string{"GET /v1/refunds"}},
		{"statement", func() error { _, err := ch.Statement(ctx, day); return err },
			[]string{"GET /v1/balance_transactions"}},
	}
	for _, s := range steps {
		err := s.do()
		if errors.Is(err, payments.ErrRefused) && !strings.Contains(err.Error(), "no refund") && !strings.Contains(err.Error(), "no payment intent") {
			t.Errorf("%s: %v: stripe-mock refused the request", s.name, err)
		}
		calls := rec.take()
		var got []string
		for _, c := range calls {
			got = append(got, c.Method+" "+c.Path)
			if c.Status != http.StatusOK {
				t.Errorf("%s: %s %s answered %d: %s", s.name, c.Method, c.Path, c.Status, c.Body)
			}
		}
		if strings.Join(got, ", ") != strings.Join(s.routes, ", ") {
			t.Errorf("%s: requests %v, want %v", s.name, got, s.routes)
		}
		t.Logf("%s: %v (channel: %v)", s.name, got, err)
	}

	// The validator is live: a parameter Stripe does not know is refused.
	sc := stripe.NewClient(k.Key, stripe.WithBackends(stripe.NewBackendsWithConfig(&stripe.BackendConfig{
		URL: stripe.String(base), LeveledLogger: &stripe.LeveledLogger{Level: stripe.LevelNull}})))
	p := &stripe.PaymentIntentCaptureParams{AmountToCapture: stripe.Int64(1)}
	p.AddExtra("amount_to_kapture", "1")
	if _, err := sc.V1PaymentIntents.Capture(ctx, "pi_123", p); err == nil {
		t.Fatal("stripe-mock accepted an unknown parameter: it does not validate")
	}
}
