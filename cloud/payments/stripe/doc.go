// Package stripecard is the card channel through Stripe: wallet top-ups
// and per-session card holds as PaymentIntents, through the official Go
// SDK (github.com/stripe/stripe-go/v85), behind payments.Channel and
// payments.HoldChannel. The directory is cloud/payments/stripe; the
// package is named stripecard so that it does not shadow stripe-go's own
// package name.
//
// New builds the channel from a Config: the account's secret key and the
// webhook endpoint's signing secret (files), the settlement currency, the
// API base URL (stripe-mock or the stand-in in tests) and the validity of
// an authorization (7 days by default, Stripe's for card-not-present; 5
// days for Visa merchant-initiated transactions: configure it).
//
// What each method does at Stripe:
//
//   - Create: POST /v1/payment_intents, capture_method=automatic, card
//     only, metadata order_no, idempotency key beaconvend-order-<no> (a
//     retried Create within Stripe's 24 hours gets the same intent). The
//     payer confirms with Action.ClientSecret; Action.ProviderRef is the
//     intent's pi_… ID, which the cloud records.
//   - Authorize: the same with capture_method=manual (a hold).
//   - Query: GET /v1/payment_intents/<pi> with latest_charge expanded.
//     requires_payment_method, requires_confirmation and processing are
//     PayPending; requires_action PayActionRequired (with the client
//     secret: 3-D Secure); requires_capture PayAuthorized (Amount =
//     amount_capturable; AuthExpiresAt = the charge's
//     payment_method_details.card.capture_before, else created +
//     AuthorizationValidity); succeeded PayPaid (Amount = amount_received);
//     canceled PayClosed.
//   - Capture: POST …/capture with amount_to_capture; Stripe releases the
//     rest. Cancel (and Close): POST …/cancel. Neither sends an idempotency
//     key (Stripe would replay a first failure for 24 hours); both are
//     idempotent by state: a repeat is answered payment_intent_unexpected_state,
//     upon which the channel queries the intent and returns its status when
//     it is what was asked (captured at that amount, cancelled) and
//     ErrRefused otherwise (capture after cancel, cancel after capture).
//   - Refund: POST /v1/refunds (payment_intent, amount, metadata refund_no
//     and order_no, idempotency key beaconvend-refund-<no>), after looking
//     the refund number up among the intent's refunds (GET /v1/refunds?
//     payment_intent=…), so a retry later than 24 hours never refunds
//     twice. QueryRefund: that lookup. pending and requires_action are
//     RefundPending, succeeded RefundSucceeded, failed and canceled
//     RefundFailed.
//   - ParseNotification: stripe-go's webhook.ConstructEventWithOptions
//     verifies the signature, the timestamp and the API version; see the
//     method for the event types. The event ID (evt_…) is
//     Notification.EventID: Stripe sends an event again until it is
//     acknowledged, and the caller deduplicates by that ID.
//   - Statement: GET /v1/balance_transactions of a UTC day; see the method.
//
// Finding an order's intent: Stripe knows an intent by its pi_… ID, the
// cloud by its order number. Config.LookupIntent (or SetLookupIntent)
// answers from the cloud's payment records (the ProviderRef it stored);
// without it, or when it has none, the channel searches
// (GET /v1/payment_intents/search, metadata['order_no']), which Stripe
// documents as eventually consistent (about a minute).
//
// Errors: a 4xx answer about the request (invalid_request_error,
// card_error, idempotency_error) is payments.ErrRefused with Stripe's code
// in the message; 5xx, 429, 409 (a concurrent request on the same
// object), 401/403 (our key refused: a configuration fault) or a network
// failure is payments.ErrProvider; a webhook that does not verify or
// decode is payments.ErrNotification. Amounts are integer minor units as
// Stripe's (for the few currencies Stripe represents differently from
// ISO 4217, such as HUF or TWD, configure the channel only after checking
// Stripe's currency table).
//
// Tests run every request shape through stripe-mock (Stripe's own
// OpenAPI validator), the sequencing against stripetest.Server, the
// project's stateful stand-in, and webhooks signed by openssl.
//
// Reference: https://docs.stripe.com/api (PaymentIntents, Refunds,
// Balance transactions, Events), https://docs.stripe.com/webhooks
// (signatures), https://docs.stripe.com/payments/place-a-hold-on-a-payment-method.
package stripecard
