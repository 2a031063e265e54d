package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/internal/simdev"
	"beaconvend/cloud/payments"
	"beaconvend/cloud/payments/reconcile"
	"beaconvend/cloud/payments/stripe/stripetest"
	"beaconvend/cloud/store"
)

// TestCardSessionEndToEnd runs card-held sessions through `cloud serve`
// with the Stripe channel (stripe-go) against the project's stateful
// Stripe stand-in, a simulated water board on the cloud's MQTT broker,
// and webhooks signed by openssl:
//
//   - a signed-in payer's checkout authorizes the cap (capture_method
//     manual); the grant reaches the board only once the intent is
//     requires_capture (announced by a signed
//     payment_intent.amount_capturable_updated); the board meters 1 234 ml
//     of a 2 000 ml cap and the cloud captures exactly their cost, the
//     rest released by Stripe;
//   - a second session delivers nothing: the intent is cancelled, nothing
//     captured;
//   - a tampered webhook is refused (400) and changes nothing; a verified
//     event the cloud does not act on is acknowledged (200);
//   - the day's statement, read by the channel from the stand-in's
//     balance transactions, reconciles all matched with the cloud's
//     records and ledger.
func TestCardSessionEndToEnd(t *testing.T) {
	ctx := context.Background()
	sk := "sk_test_" + strings.Repeat("c", 24)
	whsec := "whsec_" + strings.Repeat("d", 32)
	standin := stripetest.NewServer(t)
	standin.APIKey = sk
	dir := t.TempDir()
	keyFile, secFile := filepath.Join(dir, "sk"), filepath.Join(dir, "whsec")
	for f, v := range map[string]string{keyFile: sk, secFile: whsec} {
		if err := os.WriteFile(f, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	data, out := t.TempDir(), t.TempDir()
	op := runCLI(t, data, "operator", "add", "-name", "Acme Water", "-email", "ops@acme.example", "-password-file", passwordFile(t, "acme-password-1"))
	runCLI(t, data, "device", "add", "-id", "wd-1", "-operator", op["operator"], "-kind", "water", "-out", filepath.Join(out, "wd-1"),
		"-mqtt-url", "tcp://127.0.0.1:1883")
	if err := simdev.WriteController(filepath.Join(out, "wd-1"), simdev.Wiring{Port: "/dev/null"}); err != nil {
		t.Fatal(err)
	}
	cfg := map[string]any{"development": true, "payments": map[string]any{
		"currency": "EUR",
		"channels": []map[string]any{{"name": "stripe_card", "base_url": standin.URL,
			"credentials": map[string]string{"secret_key": "file:" + keyFile, "webhook_secret": "file:" + secFile}}},
	}}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "cloud.yaml")
	if err := os.WriteFile(cfgFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	m := serveInProcessWith(t, nil, "-config", cfgFile, "-data", data)
	water := newSimDevice(t, filepath.Join(out, "wd-1"), m.MQTTURL)
	phone := phoneapi.New(m.HTTPURL, nil)
	if _, err := phone.SignUp(ctx, &phoneapi.SignUpRequest{Email: "card@example.com", Password: "card-payer-password"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "wd-1 online", func() bool {
		r, err := phone.GetDevice(ctx, "wd-1")
		return err == nil && r.Device.State == phoneapi.DeviceIdle
	})
	dev, err := phone.GetDevice(ctx, "wd-1", water.proximityID(time.Now()))
	if err != nil || len(dev.Machines) == 0 {
		t.Fatalf("device %+v %v", dev, err)
	}
	price := dev.Machines[0].Price
	machine := dev.Machines[0].ID

	// webhook POSTs a Stripe event about obj, signed by openssl (or
	// tampered after signing), and returns the HTTP status.
	webhook := func(typ, obj string, tamper bool) int {
		t.Helper()
		body := standin.Event(typ, obj)
		sig := stripetest.Sign(t, whsec, time.Now(), body)
		if tamper {
			body = bytes.Replace(body, []byte(`"livemode":false`), []byte(`"livemode":true`), 1)
		}
		req, _ := http.NewRequest(http.MethodPost, m.HTTPURL+"/v1/channels/stripe_card/notify", bytes.NewReader(body))
		req.Header.Set("Stripe-Signature", sig)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// session opens a card checkout for capUnits, confirms the card at
	// the stand-in and announces it by webhook, and returns the checkout
	// in session with its intent and grant.
	session := func(key string, capUnits uint64) (*phoneapi.Checkout, string) {
		t.Helper()
		co, err := phone.CreateCheckout(ctx, key, &phoneapi.CheckoutRequest{Device: "wd-1", Machine: machine,
			ProximityID: water.proximityID(time.Now()), Cap: phoneapi.Cap{Units: capUnits}, Source: "stripe_card", ExpectedPrice: &price})
		if err != nil {
			t.Fatalf("CreateCheckout: %v", err)
		}
		if co.Mode != phoneapi.HoldModeAuthorize || co.ClientSecret == "" || co.State != phoneapi.CheckoutAwaitingPayment {
			t.Fatalf("checkout %+v: want a card authorization awaiting the payer", co)
		}
		pi := standin.IntentOf(co.Order)
		if pi == "" {
			t.Fatalf("no intent for order %s", co.Order)
		}
		// Not authorized yet: no grant may reach the board.
		if got, err := phone.GetCheckout(ctx, co.ID, ""); err != nil || got.Session != nil {
			t.Fatalf("before the card is confirmed: %+v %v", got, err)
		}
		if err := standin.Confirm(pi); err != nil {
			t.Fatal(err)
		}
		if code := webhook("payment_intent.amount_capturable_updated", pi, true); code != http.StatusBadRequest {
			t.Fatalf("tampered webhook answered %d, want 400", code)
		}
		if code := webhook("payment_intent.amount_capturable_updated", pi, false); code != http.StatusOK {
			t.Fatalf("webhook answered %d, want 200", code)
		}
		var cur *phoneapi.Checkout
		eventually(t, "checkout in session", func() bool {
			cur, err = phone.GetCheckout(ctx, co.ID, "")
			return err == nil && cur.State == phoneapi.CheckoutInSession && cur.Session != nil
		})
		return cur, pi
	}

	// A water session: 1 234 ml of 2 000 captured exactly.
	co, pi := session(phoneapi.NewIdempotencyKey(), 2000)
	g := water.grant(*co.Session)
	if g.CapMoney != co.Hold.Minor || g.CapUnits != 2000 {
		t.Fatalf("grant %+v for checkout %+v", g, co)
	}
	water.publish(water.usage(g, 1234, vend.OutcomeUserStop, nil))
	cost, err := price.Cost(1234)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "checkout done", func() bool {
		co, err = phone.GetCheckout(ctx, co.ID, "")
		return err == nil && co.State == phoneapi.CheckoutDone
	})
	if co.Captured.Minor != cost || co.Returned.Minor != co.Hold.Minor-cost {
		t.Fatalf("checkout %+v: want %d captured and the rest returned", co, cost)
	}
	// Captured once, for exactly the cost: a capture retried by the
	// sweep racing the settlement is answered by Stripe's state, not
	// charged twice.
	if n := standin.Calls("POST /v1/payment_intents/{id}/capture"); n < 1 {
		t.Fatalf("%d capture calls, want at least 1", n)
	}
	ch, ok := m.Service.Router().Lookup("stripe_card")
	if !ok {
		t.Fatal("no stripe_card channel")
	}
	if st, err := ch.Query(ctx, co.Order); err != nil || st.State != payments.PayPaid || st.Amount.Minor != cost {
		t.Fatalf("the intent at Stripe: %+v %v, want paid %d", st, err, cost)
	}
	p, err := m.Store.GetPayment(ctx, co.Order)
	if err != nil || p.Captured != cost || p.Voided != co.Hold.Minor-cost || p.ProviderRef != pi {
		t.Fatalf("payment record %+v %v", p, err)
	}

	// Nothing delivered: the intent is cancelled.
	co2, pi2 := session(phoneapi.NewIdempotencyKey(), 1000)
	water.publish(water.usage(water.grant(*co2.Session), 0, vend.OutcomeUserStop, nil))
	eventually(t, "second checkout done", func() bool {
		co2, err = phone.GetCheckout(ctx, co2.ID, "")
		return err == nil && co2.State == phoneapi.CheckoutDone
	})
	if co2.Captured.Minor != 0 || co2.Returned.Minor != co2.Hold.Minor || standin.Calls("POST /v1/payment_intents/{id}/cancel") < 1 {
		t.Fatalf("zero-unit checkout %+v: want the hold cancelled in full", co2)
	}
	if st, err := ch.Query(ctx, co2.Order); err != nil || st.State != payments.PayClosed {
		t.Fatalf("the zero-unit intent at Stripe: %+v %v, want cancelled", st, err)
	}
	if standin.IntentOf(co2.Order) != pi2 {
		t.Fatalf("second checkout's order has no intent %s", pi2)
	}
	// Every call found its intent by the ID the cloud recorded, never by
	// Stripe's search (which lags about a minute behind a new intent).
	if n := standin.Calls("GET /v1/payment_intents/search"); n != 0 {
		t.Fatalf("%d searches for an intent: the recorded provider ref was not used", n)
	}

	// A verified event about nothing the cloud acts on is acknowledged.
	if code := webhook("customer.created", "cus_nothing", false); code != http.StatusOK {
		t.Fatalf("an ignored event answered %d, want 200 (else Stripe retries it for days)", code)
	}
	if imb, err := m.Store.LedgerImbalance(ctx); err != nil || len(imb) != 0 {
		t.Fatalf("ledger %v %v", imb, err)
	}

	// The day (a UTC day, Stripe's) reconciles all matched.
	now := time.Now().UTC()
	day := payments.Day{Year: now.Year(), Month: now.Month(), Day: now.Day()}
	later := func() time.Time {
		return time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC).Add(26 * time.Hour)
	}
	rep, err := reconcile.New(m.Store, &reconcile.Opts{Fees: m.Store, Now: later}).Reconcile(ctx, "stripe_card", ch, day)
	if err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	if rep.Run.Status != store.ReconBalanced || !rep.Run.TotalsOK || rep.Count(reconcile.Matched) != 1 || len(rep.Outcomes) != 1 {
		t.Fatalf("reconciliation of the card day: %s totals ok %v (%s), outcomes %+v", rep.Run.Status, rep.Run.TotalsOK, rep.Run.TotalsDetail, rep.Outcomes)
	}
	if rep.Run.StmtPayments != cost || rep.Run.OurPayments != cost {
		t.Fatalf("run %+v: want %d paid on both sides", rep.Run, cost)
	}
}
