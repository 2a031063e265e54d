package stripecard

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/stripe/stripe-go/v85"
	"github.com/stripe/stripe-go/v85/webhook"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/payments"
)

// ParseNotification verifies a webhook with stripe-go's
// webhook.ConstructEventWithOptions (the Stripe-Signature header's v1
// HMAC-SHA256 over "<t>.<body>" under the endpoint's secret, the
// timestamp within Config.Tolerance, the event's api_version of
// stripe-go's release train) and decodes it. Anything that does not
// verify or decode is payments.ErrNotification and changes nothing.
//
// payment_intent.succeeded, .amount_capturable_updated, .canceled,
// .requires_action and .processing are payment notifications whose state
// is the intent's status at the event; payment_intent.payment_failed is
// PayFailed. refund.created, refund.updated and refund.failed are refund
// notifications. Any other event type (charge.refunded among them: since
// API 2022-11-15 it carries the charge's totals, not the refund and its
// refund_no, which the refund.* events carry), and an intent or refund
// without our metadata, is a payments.NotifyIgnored notification: verified,
// to be acknowledged, changing nothing.
func (c *Channel) ParseNotification(ctx context.Context, r *http.Request) (payments.Notification, error) {
	fail := func(format string, args ...any) (payments.Notification, error) {
		return payments.Notification{}, vend.Errorf(payments.ErrNotification, "stripecard: %s", fmt.Sprintf(format, args...))
	}
	if r.Method != http.MethodPost {
		return fail("method %s, want POST", r.Method)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxNotification+1))
	if err != nil {
		return fail("read body: %v", err)
	}
	if len(body) > maxNotification {
		return fail("body above %d bytes", maxNotification)
	}
	ev, err := webhook.ConstructEventWithOptions(body, r.Header.Get("Stripe-Signature"), c.whsec,
		webhook.ConstructEventOptions{Tolerance: c.tolerance})
	if err != nil {
		return fail("%s", sdkMsg(err))
	}
	n, err := c.notification(ev)
	if err != nil {
		return fail("event %s: %v", ev.ID, err)
	}
	return n, nil
}

// sdkMsg shortens stripe-go's webhook errors (the API version one names
// a function to call) to what an operator needs.
func sdkMsg(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, ". We recommend"); i >= 0 {
		msg = msg[:i]
	}
	if msg == "" {
		return "webhook refused"
	}
	return strings.ToLower(msg[:1]) + msg[1:]
}

// notification decodes a verified event.
func (c *Channel) notification(ev stripe.Event) (payments.Notification, error) {
	if !strings.HasPrefix(ev.ID, "evt_") {
		return payments.Notification{}, fmt.Errorf("event id %q: want evt_…", ev.ID)
	}
	n := payments.Notification{EventID: ev.ID, Kind: payments.NotifyIgnored}
	if ev.Data == nil || len(ev.Data.Raw) == 0 {
		return payments.Notification{}, fmt.Errorf("%s without data.object", ev.Type)
	}
	t := string(ev.Type)
	switch t {
	case "payment_intent.succeeded", "payment_intent.amount_capturable_updated", "payment_intent.canceled",
		"payment_intent.requires_action", "payment_intent.processing", "payment_intent.payment_failed":
		var pi stripe.PaymentIntent
		if err := json.Unmarshal(ev.Data.Raw, &pi); err != nil {
			return payments.Notification{}, fmt.Errorf("%s: payment intent: %v", t, err)
		}
		if pi.Object != "" && pi.Object != "payment_intent" {
			return payments.Notification{}, fmt.Errorf("%s: object %q, want payment_intent", t, pi.Object)
		}
		if pi.Metadata[MetaOrderNo] == "" {
			return n, nil // not an intent this cloud opened
		}
		st, err := c.status(&pi)
		if err != nil {
			return payments.Notification{}, fmt.Errorf("%s: %v", t, err)
		}
		if t == "payment_intent.payment_failed" {
			st.State, st.Amount, st.ClientSecret = payments.PayFailed, vend.Amount{}, ""
		}
		if err := checkNo("order number", st.OrderNo); err != nil {
			return payments.Notification{}, fmt.Errorf("%s: %v", t, err)
		}
		n.Kind, n.Payment = payments.NotifyPayment, st
	case "refund.created", "refund.updated", "refund.failed":
		var rf stripe.Refund
		if err := json.Unmarshal(ev.Data.Raw, &rf); err != nil {
			return payments.Notification{}, fmt.Errorf("%s: refund: %v", t, err)
		}
		if rf.Object != "" && rf.Object != "refund" {
			return payments.Notification{}, fmt.Errorf("%s: object %q, want refund", t, rf.Object)
		}
		if rf.Metadata[MetaRefundNo] == "" {
			return n, nil // a refund made outside the cloud (the dashboard): reconciliation reports it
		}
		rs, err := c.refundStatus(&rf)
		if err != nil {
			return payments.Notification{}, fmt.Errorf("%s: %v", t, err)
		}
		if err := checkNo("refund number", rs.RefundNo); err != nil {
			return payments.Notification{}, fmt.Errorf("%s: %v", t, err)
		}
		if err := checkNo("order number", rs.OrderNo); err != nil {
			return payments.Notification{}, fmt.Errorf("%s: %v", t, err)
		}
		n.Kind, n.Refund = payments.NotifyRefund, rs
	}
	return n, nil
}

// AckNotification answers 200 when err is nil (Stripe stops sending the
// event), 400 otherwise (Stripe retries it for up to three days).
func (c *Channel) AckNotification(w http.ResponseWriter, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err == nil {
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, `{"received":true}`)
		return
	}
	w.WriteHeader(http.StatusBadRequest)
	b, _ := json.Marshal(map[string]string{"error": vend.CodeOf(err)})
	_, _ = w.Write(b)
}
