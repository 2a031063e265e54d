package stripecard

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v85"

	"beaconvend/cloud/payments"
)

func testChannel() *Channel {
	return &Channel{name: Name, currency: "EUR", validity: DefaultAuthorizationValidity, tolerance: DefaultTolerance}
}

// FuzzNotification feeds the decoding that follows a verified signature
// (the event's data.object into an intent or a refund, its metadata and
// amounts) with arbitrary bodies: it must answer a notification or an
// error, never panic, and what it answers must be consistent.
func FuzzNotification(f *testing.F) {
	for _, s := range []string{
		`{"id":"evt_1","object":"event","type":"payment_intent.succeeded","data":{"object":{"id":"pi_1","object":"payment_intent","status":"succeeded","amount":500,"amount_received":500,"currency":"eur","created":1,"metadata":{"order_no":"A-1"}}}}`,
		`{"id":"evt_2","object":"event","type":"payment_intent.amount_capturable_updated","data":{"object":{"id":"pi_1","status":"requires_capture","amount_capturable":500,"currency":"eur","metadata":{"order_no":"A-1"},"latest_charge":{"id":"ch_1","payment_method_details":{"card":{"capture_before":99}}}}}}`,
		`{"id":"evt_3","object":"event","type":"refund.updated","data":{"object":{"id":"re_1","object":"refund","status":"succeeded","amount":100,"currency":"eur","metadata":{"refund_no":"R-1","order_no":"A-1"}}}}`,
		`{"id":"evt_4","object":"event","type":"payment_intent.payment_failed","data":{"object":"pi_1"}}`,
		`{"id":"evt_5","object":"event","type":"refund.failed","data":{"object":{"id":"re_1","status":"weird","amount":-3,"currency":"usd","metadata":{"refund_no":"R 1"}}}}`,
		`{"id":"evt_6","object":"event","type":"payment_intent.canceled","data":{"object":{"id":"pi_2","status":"canceled","currency":"EUR","metadata":{"order_no":"x'y"}}}}`,
		`{"id":"x","type":"payment_intent.succeeded","data":null}`,
	} {
		f.Add([]byte(s))
	}
	c := testChannel()
	f.Fuzz(func(t *testing.T, body []byte) {
		var ev stripe.Event
		if json.Unmarshal(body, &ev) != nil {
			return
		}
		n, err := c.notification(ev)
		if err != nil {
			if n != (payments.Notification{}) {
				t.Fatalf("error %v with a notification %+v", err, n)
			}
			return
		}
		if n.EventID != ev.ID || !strings.HasPrefix(n.EventID, "evt_") {
			t.Fatalf("event %q gave EventID %q", ev.ID, n.EventID)
		}
		switch n.Kind {
		case payments.NotifyPayment:
			p := n.Payment
			if checkNo("", p.OrderNo) != nil || !strings.HasPrefix(string(ev.Type), "payment_intent.") || p.ProviderTxID == "" {
				t.Fatalf("payment notification %+v from %s", p, ev.Type)
			}
			if (p.State == payments.PayPaid || p.State == payments.PayAuthorized) && (p.Amount.Minor <= 0 || p.Amount.Currency != "EUR") {
				t.Fatalf("%s with amount %s", p.State, p.Amount)
			}
		case payments.NotifyRefund:
			r := n.Refund
			if checkNo("", r.RefundNo) != nil || checkNo("", r.OrderNo) != nil || r.Amount.Minor <= 0 || r.Amount.Currency != "EUR" {
				t.Fatalf("refund notification %+v", r)
			}
		case payments.NotifyIgnored:
			if n.Payment != (payments.Status{}) || n.Refund != (payments.RefundStatus{}) {
				t.Fatalf("ignored notification with content %+v", n)
			}
		default:
			t.Fatalf("kind %q", n.Kind)
		}
	})
}

// TestStatementRowChecks feeds row() transactions Stripe should never
// send: each is refused naming what is wrong.
func TestStatementRowChecks(t *testing.T) {
	c := testChannel()
	from := time.Date(2026, 3, 14, 0, 0, 0, 0, time.UTC)
	to := from.AddDate(0, 0, 1)
	charge := func() *stripe.BalanceTransaction {
		return &stripe.BalanceTransaction{ID: "txn_1", Type: stripe.BalanceTransactionTypeCharge, Amount: 500, Fee: 32, Net: 468,
			Currency: "eur", Created: from.Unix() + 60, Source: &stripe.BalanceTransactionSource{ID: "ch_1", Type: stripe.BalanceTransactionSourceTypeCharge,
				Charge: &stripe.Charge{ID: "ch_1", Status: "succeeded", PaymentIntent: &stripe.PaymentIntent{ID: "pi_1", Metadata: map[string]string{MetaOrderNo: "A-1"}}}}}
	}
	row, ok, err := c.row(charge(), from, to)
	if err != nil || !ok || row.OrderNo != "A-1" || row.Amount.Minor != 500 || row.Fee != 32 || row.ProviderTxID != "pi_1" {
		t.Fatalf("good charge: %+v %v %v", row, ok, err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*stripe.BalanceTransaction)
		want string
	}{
		{"net", func(b *stripe.BalanceTransaction) { b.Net = 469 }, "≠ net"},
		{"currency", func(b *stripe.BalanceTransaction) { b.Currency = "eu" }, `currency "eu"`},
		{"before the day", func(b *stripe.BalanceTransaction) { b.Created = from.Unix() - 1 }, "outside the day"},
		{"next day", func(b *stripe.BalanceTransaction) { b.Created = to.Unix() }, "outside the day"},
		{"no source", func(b *stripe.BalanceTransaction) { b.Source = nil }, "without source"},
		{"source not expanded", func(b *stripe.BalanceTransaction) { b.Source.Charge = nil }, "not an expanded charge"},
		{"refund type with a charge", func(b *stripe.BalanceTransaction) { b.Type = stripe.BalanceTransactionTypeRefund }, "not an expanded refund"},
		{"negative charge", func(b *stripe.BalanceTransaction) { b.Amount, b.Net = -500, -532 }, "want > 0"},
	} {
		b := charge()
		tc.mod(b)
		if _, _, err := c.row(b, from, to); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
	// A charge in another currency is a row in that currency (reconciliation reports it).
	usd := charge()
	usd.Currency = "usd"
	if row, ok, err := c.row(usd, from, to); err != nil || !ok || row.Amount.Currency != "USD" {
		t.Fatalf("usd charge: %+v %v %v", row, ok, err)
	}
	// A charge without our metadata is known by its intent's ID, so it is reported, not lost.
	foreign := charge()
	foreign.Source.Charge.PaymentIntent.Metadata = nil
	if row, ok, err := c.row(foreign, from, to); err != nil || !ok || row.OrderNo != "pi_1" {
		t.Fatalf("foreign charge: %+v %v %v", row, ok, err)
	}
	foreign.Source.Charge.PaymentIntent = nil
	if row, ok, err := c.row(foreign, from, to); err != nil || !ok || row.OrderNo != "ch_1" || row.ProviderTxID != "ch_1" {
		t.Fatalf("foreign charge without intent: %+v %v %v", row, ok, err)
	}
	payout := charge()
	payout.Type = stripe.BalanceTransactionTypePayout
	if _, ok, err := c.row(payout, from, to); ok || err != nil {
		t.Fatalf("payout: ok %v err %v; want left out", ok, err)
	}
}
