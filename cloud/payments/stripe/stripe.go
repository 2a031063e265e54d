package stripecard

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/stripe/stripe-go/v85"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/payments"
)

// Name is the channel's default stable ID (payments.Channel.Name).
const Name = "stripe_card"

// DefaultBaseURL is Stripe's API host.
const DefaultBaseURL = "https://api.stripe.com"

// DefaultAuthorizationValidity is how long a card authorization is held:
// 7 days, Stripe's validity for card-not-present authorizations. Visa
// merchant-initiated authorizations lapse after 5 days: configure
// Config.AuthorizationValidity to 5×24h for those.
const DefaultAuthorizationValidity = 7 * 24 * time.Hour

// DefaultTolerance is how old a webhook signature's timestamp may be.
const DefaultTolerance = 5 * time.Minute

// Metadata keys the channel writes on Stripe objects.
const (
	MetaOrderNo  = "order_no"  // on a PaymentIntent (and its refunds): the cloud's order number
	MetaRefundNo = "refund_no" // on a refund: the cloud's refund number
)

// maxNotification bounds the body of a webhook read into memory.
const maxNotification = 256 << 10

// Errors of the channel besides the shared payments errors.
var (
	// ErrConfig is a Config that New refuses.
	ErrConfig = vend.E(vend.Invalid, "config.field", "stripecard: bad config")
	// errInvalid is a request the channel refuses before calling Stripe.
	errInvalid = vend.E(vend.Invalid, "request.field", "stripecard: bad request")
)

// LookupFunc returns the PaymentIntent ID (pi_…) Stripe gave the order
// orderNo at creation (payments.Action.ProviderRef), "" with a nil error
// when the caller has none recorded.
type LookupFunc func(ctx context.Context, orderNo string) (string, error)

// Config is what New needs to talk to Stripe as one account.
type Config struct {
	// Name is the channel's ID; empty: Name ("stripe_card").
	Name string
	// SecretKeyFile holds the account's secret key (sk_live_…, sk_test_…)
	// or a restricted key (rk_…); surrounding whitespace is ignored.
	SecretKeyFile string
	// WebhookSecretFile holds the webhook endpoint's signing secret (whsec_…).
	WebhookSecretFile string
	// Currency is the account's settlement currency: orders, refunds and
	// the statement are in it (the channel refuses another, so every
	// amount is the same integer minor units at both ends).
	Currency vend.Currency
	// BaseURL is Stripe's API, scheme and host only; empty:
	// DefaultBaseURL. Tests point it at stripe-mock or the stand-in.
	BaseURL string
	// AuthorizationValidity is how long an authorization is held before it
	// lapses; 0: DefaultAuthorizationValidity (7 days, card-not-present).
	// Set 5 days for Visa merchant-initiated transactions.
	AuthorizationValidity time.Duration
	// Tolerance is how old a webhook signature may be; 0: DefaultTolerance.
	Tolerance time.Duration
	// LookupIntent finds the pi_… of an order from the cloud's payment
	// records; nil, or an answer "", falls back to Stripe's search by
	// metadata (eventually consistent: an intent created in the last
	// minute may not be found yet). It may also be set later with
	// SetLookupIntent.
	LookupIntent LookupFunc
	// HTTPClient sends the requests; nil: a client with a 30 s timeout.
	HTTPClient *http.Client
	// NetworkRetries is how many times stripe-go retries a request that
	// failed on the network (with the same idempotency key); 0: none.
	NetworkRetries int64
}

// Channel is the Stripe card channel. It implements payments.Channel and
// payments.HoldChannel.
type Channel struct {
	name      string
	currency  vend.Currency
	validity  time.Duration
	tolerance time.Duration
	whsec     string
	client    *stripe.Client
	lookup    atomic.Pointer[LookupFunc]
}

var (
	_ payments.Channel     = (*Channel)(nil)
	_ payments.HoldChannel = (*Channel)(nil)
)

// New reads the key files of cfg and returns the channel. A missing
// field, an unreadable file or a key of the wrong kind is ErrConfig
// naming it.
func New(cfg Config) (*Channel, error) {
	bad := func(format string, args ...any) (*Channel, error) {
		return nil, vend.Errorf(ErrConfig, "stripecard: config: %s", fmt.Sprintf(format, args...))
	}
	key, err := readKey("SecretKeyFile", cfg.SecretKeyFile, "sk_", "rk_")
	if err != nil {
		return nil, err
	}
	whsec, err := readKey("WebhookSecretFile", cfg.WebhookSecretFile, "whsec_")
	if err != nil {
		return nil, err
	}
	if err := cfg.Currency.Validate(); err != nil {
		return bad("Currency %q: want an ISO 4217 code such as EUR", cfg.Currency)
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.Trim(u.Path, "/") != "" || u.RawQuery != "" {
		return bad("BaseURL %q: want scheme://host[:port] only", cfg.BaseURL)
	}
	if cfg.AuthorizationValidity < 0 || cfg.Tolerance < 0 || cfg.NetworkRetries < 0 {
		return bad("AuthorizationValidity, Tolerance and NetworkRetries must not be negative")
	}
	if cfg.AuthorizationValidity == 0 {
		cfg.AuthorizationValidity = DefaultAuthorizationValidity
	}
	if cfg.Tolerance == 0 {
		cfg.Tolerance = DefaultTolerance
	}
	if cfg.Name == "" {
		cfg.Name = Name
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	if cfg.HTTPClient != nil {
		c := *cfg.HTTPClient
		hc = &c
	}
	base := strings.TrimRight(cfg.BaseURL, "/")
	backends := stripe.NewBackendsWithConfig(&stripe.BackendConfig{
		HTTPClient:        hc,
		URL:               stripe.String(base),
		MaxNetworkRetries: stripe.Int64(cfg.NetworkRetries),
		LeveledLogger:     &stripe.LeveledLogger{Level: stripe.LevelNull},
		EnableTelemetry:   stripe.Bool(false),
	})
	c := &Channel{name: cfg.Name, currency: cfg.Currency, validity: cfg.AuthorizationValidity, tolerance: cfg.Tolerance,
		whsec: whsec, client: stripe.NewClient(key, stripe.WithBackends(backends))}
	if cfg.LookupIntent != nil {
		c.SetLookupIntent(cfg.LookupIntent)
	}
	return c, nil
}

// readKey reads a key file and checks its prefix.
func readKey(field, path string, prefixes ...string) (string, error) {
	if strings.TrimSpace(path) == "" {
		return "", vend.Errorf(ErrConfig, "stripecard: config: %s is empty", field)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", vend.Errorf(ErrConfig, "stripecard: config: %s: %v", field, err)
	}
	k := strings.TrimSpace(string(b))
	for _, p := range prefixes {
		if strings.HasPrefix(k, p) && len(k) > len(p) && !strings.ContainsAny(k, " \t\r\n") {
			return k, nil
		}
	}
	return "", vend.Errorf(ErrConfig, "stripecard: config: %s %s: not a key starting with %s", field, path, strings.Join(prefixes, " or "))
}

// SetLookupIntent sets how the channel finds an order's PaymentIntent
// (see LookupFunc; nil: search only). It is safe to call while the
// channel is in use: the cloud wires its payment records after building
// the channel, through an interface of its own
// (interface{ SetLookupIntent(func(context.Context, string) (string, error)) }),
// so its parameter is a plain func type.
func (c *Channel) SetLookupIntent(f func(ctx context.Context, orderNo string) (string, error)) {
	lf := LookupFunc(f)
	c.lookup.Store(&lf)
}

// Name returns the channel's ID ("stripe_card" unless configured).
func (c *Channel) Name() string { return c.name }

// Source describes the channel to the phone.
func (c *Channel) Source() phoneapi.PaymentSource {
	return phoneapi.PaymentSource{ID: c.name, Kind: phoneapi.SourceCard, Name: "Card"}
}

// Location is the time zone of the channel's statement days: UTC.
func (c *Channel) Location() *time.Location { return time.UTC }

// AuthorizationValidity is how long an authorization is held before it lapses.
func (c *Channel) AuthorizationValidity() time.Duration { return c.validity }

// Create opens a PaymentIntent with automatic capture for o.Amount; the
// payer confirms it with Action.ClientSecret. A retry with the same o.No
// (within Stripe's 24 hours of idempotency) returns the same intent.
func (c *Channel) Create(ctx context.Context, o payments.Order) (payments.Action, error) {
	return c.open(ctx, o, false)
}

// Authorize opens a PaymentIntent with capture_method=manual for
// o.Amount; once the payer confirmed, Query reports PayAuthorized.
func (c *Channel) Authorize(ctx context.Context, o payments.Order) (payments.Action, error) {
	return c.open(ctx, o, true)
}

func (c *Channel) open(ctx context.Context, o payments.Order, manual bool) (payments.Action, error) {
	op := "create " + o.No
	if manual {
		op = "authorize " + o.No
	}
	if err := checkNo("order number", o.No); err != nil {
		return payments.Action{}, err
	}
	if err := c.checkAmount(op, o.Amount); err != nil {
		return payments.Action{}, err
	}
	p := &stripe.PaymentIntentCreateParams{
		Amount:             stripe.Int64(o.Amount.Minor),
		Currency:           stripe.String(strings.ToLower(string(o.Amount.Currency))),
		PaymentMethodTypes: []*string{stripe.String("card")},
		Metadata:           map[string]string{MetaOrderNo: o.No},
	}
	if o.Description != "" {
		p.Description = stripe.String(o.Description)
	}
	if manual {
		p.CaptureMethod = stripe.String(string(stripe.PaymentIntentCaptureMethodManual))
	} else {
		p.CaptureMethod = stripe.String(string(stripe.PaymentIntentCaptureMethodAutomatic))
	}
	p.IdempotencyKey = stripe.String("beaconvend-order-" + o.No)
	pi, err := c.client.V1PaymentIntents.Create(ctx, p)
	if err != nil {
		return payments.Action{}, c.mapErr(op, err)
	}
	if pi.ID == "" || pi.ClientSecret == "" {
		return payments.Action{}, vend.Errorf(payments.ErrProvider, "stripecard: %s: the answer has no id or client_secret", op)
	}
	if got := pi.Metadata[MetaOrderNo]; got != o.No {
		return payments.Action{}, vend.Errorf(payments.ErrProvider, "stripecard: %s: the answer is about order %q", op, got)
	}
	a := payments.Action{ClientSecret: pi.ClientSecret, ProviderRef: pi.ID}
	if pi.Status == stripe.PaymentIntentStatusRequiresAction {
		a.NextAction = payments.NextAction3DS
	}
	return a, nil
}

// intentID finds the PaymentIntent of an order: LookupIntent, else a
// search by metadata. No intent is ErrRefused.
func (c *Channel) intentID(ctx context.Context, op, orderNo string) (string, error) {
	if err := checkNo("order number", orderNo); err != nil {
		return "", err
	}
	if f := c.lookup.Load(); f != nil && *f != nil {
		id, err := (*f)(ctx, orderNo)
		if err != nil {
			return "", fmt.Errorf("stripecard: %s: look up the intent: %w", op, err)
		}
		if id != "" {
			if !strings.HasPrefix(id, "pi_") {
				return "", vend.Errorf(errInvalid, "stripecard: %s: recorded intent %q is not a pi_ ID", op, id)
			}
			return id, nil
		}
	}
	sp := &stripe.PaymentIntentSearchParams{}
	sp.Query = fmt.Sprintf("metadata['%s']:'%s'", MetaOrderNo, orderNo)
	sp.Limit = stripe.Int64(10)
	var found []string
	for pi, err := range c.client.V1PaymentIntents.Search(ctx, sp).All(ctx) {
		if err != nil {
			return "", c.mapErr(op+": search", err)
		}
		if pi.Metadata[MetaOrderNo] == orderNo {
			found = append(found, pi.ID)
		}
		if len(found) > 1 {
			return "", vend.Errorf(payments.ErrProvider, "stripecard: %s: more than one intent for the order (%s)", op, strings.Join(found, ", "))
		}
	}
	if len(found) == 0 {
		return "", vend.Errorf(payments.ErrRefused, "stripecard: %s: no payment intent for order %s", op, orderNo)
	}
	return found[0], nil
}

// Query retrieves the order's PaymentIntent (with its latest charge).
func (c *Channel) Query(ctx context.Context, orderNo string) (payments.Status, error) {
	op := "query " + orderNo
	id, err := c.intentID(ctx, op, orderNo)
	if err != nil {
		return payments.Status{}, err
	}
	p := &stripe.PaymentIntentRetrieveParams{}
	p.AddExpand("latest_charge")
	pi, err := c.client.V1PaymentIntents.Retrieve(ctx, id, p)
	if err != nil {
		return payments.Status{}, c.mapErr(op, err)
	}
	return c.checked(op, orderNo, pi)
}

// checked converts an intent that must be about orderNo.
func (c *Channel) checked(op, orderNo string, pi *stripe.PaymentIntent) (payments.Status, error) {
	st, err := c.status(pi)
	if err != nil {
		return payments.Status{}, vend.Errorf(payments.ErrProvider, "stripecard: %s: %v", op, err)
	}
	if st.OrderNo != orderNo {
		return payments.Status{}, vend.Errorf(payments.ErrProvider, "stripecard: %s: the answer is about order %q", op, st.OrderNo)
	}
	return st, nil
}

// status converts a PaymentIntent (an answer or a webhook's object).
func (c *Channel) status(pi *stripe.PaymentIntent) (payments.Status, error) {
	if pi == nil || pi.ID == "" {
		return payments.Status{}, errors.New("payment intent without id")
	}
	st := payments.Status{OrderNo: pi.Metadata[MetaOrderNo], ProviderTxID: pi.ID}
	cur := vend.Currency(strings.ToUpper(string(pi.Currency)))
	if cur != c.currency {
		return payments.Status{}, fmt.Errorf("intent %s in currency %q, the channel's is %s", pi.ID, pi.Currency, c.currency)
	}
	switch pi.Status {
	case stripe.PaymentIntentStatusRequiresPaymentMethod, stripe.PaymentIntentStatusRequiresConfirmation, stripe.PaymentIntentStatusProcessing:
		st.State = payments.PayPending
	case stripe.PaymentIntentStatusRequiresAction:
		st.State, st.ClientSecret = payments.PayActionRequired, pi.ClientSecret
	case stripe.PaymentIntentStatusRequiresCapture:
		st.State = payments.PayAuthorized
		if pi.AmountCapturable <= 0 {
			return payments.Status{}, fmt.Errorf("intent %s requires_capture with amount_capturable %d", pi.ID, pi.AmountCapturable)
		}
		st.Amount = vend.Amount{Minor: pi.AmountCapturable, Currency: cur}
		st.AuthExpiresAt = time.Unix(pi.Created, 0).UTC().Add(c.validity)
		if ch := pi.LatestCharge; ch != nil && ch.PaymentMethodDetails != nil && ch.PaymentMethodDetails.Card != nil && ch.PaymentMethodDetails.Card.CaptureBefore > 0 {
			st.AuthExpiresAt = time.Unix(ch.PaymentMethodDetails.Card.CaptureBefore, 0).UTC()
		}
	case stripe.PaymentIntentStatusSucceeded:
		st.State = payments.PayPaid
		if pi.AmountReceived <= 0 {
			return payments.Status{}, fmt.Errorf("intent %s succeeded with amount_received %d", pi.ID, pi.AmountReceived)
		}
		st.Amount = vend.Amount{Minor: pi.AmountReceived, Currency: cur}
		st.PaidAt = time.Unix(pi.Created, 0).UTC()
		if ch := pi.LatestCharge; ch != nil && ch.Created > 0 {
			st.PaidAt = time.Unix(ch.Created, 0).UTC()
		}
	case stripe.PaymentIntentStatusCanceled:
		st.State = payments.PayClosed
	default:
		return payments.Status{}, fmt.Errorf("intent %s: unknown status %q", pi.ID, pi.Status)
	}
	return st, nil
}

// Close cancels an unpaid intent. An intent already cancelled is not an
// error; a succeeded one is ErrRefused (vend.Conflict); an authorized one
// is released (Cancel).
func (c *Channel) Close(ctx context.Context, orderNo string) error {
	st, err := c.Cancel(ctx, orderNo)
	if err != nil {
		return err
	}
	if st.State != payments.PayClosed {
		return vend.Errorf(payments.ErrRefused, "stripecard: close %s: the intent is %s", orderNo, st.State)
	}
	return nil
}

// Cancel cancels the order's intent, releasing an authorization in
// full. Cancelling a cancelled intent returns its closed status;
// cancelling a succeeded one is ErrRefused.
func (c *Channel) Cancel(ctx context.Context, orderNo string) (payments.Status, error) {
	op := "cancel " + orderNo
	id, err := c.intentID(ctx, op, orderNo)
	if err != nil {
		return payments.Status{}, err
	}
	// No idempotency key: Stripe would replay a first failure (a 500
	// too) for 24 hours, and a cancel is idempotent by state anyway.
	pi, err := c.client.V1PaymentIntents.Cancel(ctx, id, &stripe.PaymentIntentCancelParams{})
	if err != nil {
		if !unexpectedState(err) {
			return payments.Status{}, c.mapErr(op, err)
		}
		st, qerr := c.Query(ctx, orderNo)
		if qerr != nil {
			return payments.Status{}, qerr
		}
		if st.State == payments.PayClosed {
			return st, nil
		}
		return payments.Status{}, vend.Errorf(payments.ErrRefused, "stripecard: %s: the intent is %s: %s", op, st.State, stripeMsg(err))
	}
	return c.checked(op, orderNo, pi)
}

// Capture captures amount of the order's authorization; Stripe releases
// the rest. A retry after a capture of the same amount returns the paid
// status; a capture of another amount after one, or of a cancelled or
// lapsed intent, is ErrRefused.
func (c *Channel) Capture(ctx context.Context, orderNo string, amount vend.Amount) (payments.Status, error) {
	op := "capture " + orderNo
	if err := c.checkAmount(op, amount); err != nil {
		return payments.Status{}, err
	}
	id, err := c.intentID(ctx, op, orderNo)
	if err != nil {
		return payments.Status{}, err
	}
	// No idempotency key: Stripe would replay a first failure (a 500
	// too) for 24 hours; a capture is idempotent by state (capture once:
	// a second one is payment_intent_unexpected_state, answered below).
	pi, err := c.client.V1PaymentIntents.Capture(ctx, id, &stripe.PaymentIntentCaptureParams{AmountToCapture: stripe.Int64(amount.Minor)})
	if err != nil {
		if !unexpectedState(err) {
			return payments.Status{}, c.mapErr(op, err)
		}
		st, qerr := c.Query(ctx, orderNo)
		if qerr != nil {
			return payments.Status{}, qerr
		}
		if st.State == payments.PayPaid && st.Amount == amount {
			return st, nil // captured before: this is a retry
		}
		return payments.Status{}, vend.Errorf(payments.ErrRefused, "stripecard: %s: the intent is %s %s: %s", op, st.State, st.Amount, stripeMsg(err))
	}
	st, err := c.checked(op, orderNo, pi)
	if err != nil {
		return payments.Status{}, err
	}
	if st.State != payments.PayPaid || st.Amount != amount {
		return payments.Status{}, vend.Errorf(payments.ErrProvider, "stripecard: %s: after the capture the intent is %s %s, want paid %s", op, st.State, st.Amount, amount)
	}
	return st, nil
}

// Refund refunds r.Amount of the order's intent, once per r.RefundNo
// (idempotency key and metadata refund_no).
func (c *Channel) Refund(ctx context.Context, r payments.RefundRequest) (payments.RefundStatus, error) {
	op := "refund " + r.RefundNo
	if err := checkNo("refund number", r.RefundNo); err != nil {
		return payments.RefundStatus{}, err
	}
	if err := c.checkAmount(op, r.Amount); err != nil {
		return payments.RefundStatus{}, err
	}
	if r.Total.Minor != 0 && r.Amount.Minor > r.Total.Minor {
		return payments.RefundStatus{}, vend.Errorf(payments.ErrAmount, "stripecard: %s: %s is above the order's %s", op, r.Amount, r.Total)
	}
	id, err := c.intentID(ctx, op, r.OrderNo)
	if err != nil {
		return payments.RefundStatus{}, err
	}
	// Stripe keeps idempotency keys for 24 hours: a refund retried later
	// is found by its metadata first, so it is never made twice.
	if rs, found, err := c.findRefund(ctx, op, id, r.OrderNo, r.RefundNo); err != nil || found {
		return rs, err
	}
	p := &stripe.RefundCreateParams{PaymentIntent: stripe.String(id), Amount: stripe.Int64(r.Amount.Minor),
		Metadata: map[string]string{MetaRefundNo: r.RefundNo, MetaOrderNo: r.OrderNo}}
	if r.Reason != "" {
		p.Metadata["reason"] = truncate(r.Reason, 500)
	}
	p.IdempotencyKey = stripe.String("beaconvend-refund-" + r.RefundNo)
	rf, err := c.client.V1Refunds.Create(ctx, p)
	if err != nil {
		return payments.RefundStatus{}, c.mapErr(op, err)
	}
	return c.refundChecked(op, r.OrderNo, r.RefundNo, rf)
}

// QueryRefund finds the refund refundNo among the refunds of the
// order's intent. None is ErrRefused.
func (c *Channel) QueryRefund(ctx context.Context, orderNo, refundNo string) (payments.RefundStatus, error) {
	op := "query refund " + refundNo
	if err := checkNo("refund number", refundNo); err != nil {
		return payments.RefundStatus{}, err
	}
	id, err := c.intentID(ctx, op, orderNo)
	if err != nil {
		return payments.RefundStatus{}, err
	}
	rs, found, err := c.findRefund(ctx, op, id, orderNo, refundNo)
	if err == nil && !found {
		err = vend.Errorf(payments.ErrRefused, "stripecard: %s: no refund %s on intent %s of order %s", op, refundNo, id, orderNo)
	}
	return rs, err
}

// findRefund lists the refunds of intent id for the one with metadata
// refund_no = refundNo.
func (c *Channel) findRefund(ctx context.Context, op, id, orderNo, refundNo string) (payments.RefundStatus, bool, error) {
	lp := &stripe.RefundListParams{PaymentIntent: stripe.String(id)}
	lp.Limit = stripe.Int64(100)
	for rf, err := range c.client.V1Refunds.List(ctx, lp).All(ctx) {
		if err != nil {
			return payments.RefundStatus{}, false, c.mapErr(op+": list refunds", err)
		}
		if rf.Metadata[MetaRefundNo] == refundNo {
			rs, err := c.refundChecked(op, orderNo, refundNo, rf)
			return rs, err == nil, err
		}
	}
	return payments.RefundStatus{}, false, nil
}

func (c *Channel) refundChecked(op, orderNo, refundNo string, rf *stripe.Refund) (payments.RefundStatus, error) {
	rs, err := c.refundStatus(rf)
	if err != nil {
		return payments.RefundStatus{}, vend.Errorf(payments.ErrProvider, "stripecard: %s: %v", op, err)
	}
	if rs.RefundNo != refundNo {
		return payments.RefundStatus{}, vend.Errorf(payments.ErrProvider, "stripecard: %s: the answer is about refund %q", op, rs.RefundNo)
	}
	if rs.OrderNo == "" {
		rs.OrderNo = orderNo
	}
	if rs.OrderNo != orderNo {
		return payments.RefundStatus{}, vend.Errorf(payments.ErrProvider, "stripecard: %s: the answer is about order %q", op, rs.OrderNo)
	}
	return rs, nil
}

// refundStatus converts a refund (an answer or a webhook's object).
func (c *Channel) refundStatus(rf *stripe.Refund) (payments.RefundStatus, error) {
	if rf == nil || rf.ID == "" {
		return payments.RefundStatus{}, errors.New("refund without id")
	}
	rs := payments.RefundStatus{OrderNo: rf.Metadata[MetaOrderNo], RefundNo: rf.Metadata[MetaRefundNo], ProviderRefundID: rf.ID}
	switch rf.Status {
	case stripe.RefundStatusPending, stripe.RefundStatusRequiresAction:
		rs.State = payments.RefundPending
	case stripe.RefundStatusSucceeded:
		rs.State = payments.RefundSucceeded
		rs.DoneAt = time.Unix(rf.Created, 0).UTC()
	case stripe.RefundStatusFailed, stripe.RefundStatusCanceled:
		rs.State = payments.RefundFailed
	default:
		return payments.RefundStatus{}, fmt.Errorf("refund %s: unknown status %q", rf.ID, rf.Status)
	}
	if rf.Amount <= 0 {
		return payments.RefundStatus{}, fmt.Errorf("refund %s: amount %d", rf.ID, rf.Amount)
	}
	cur := vend.Currency(strings.ToUpper(string(rf.Currency)))
	if cur != c.currency {
		return payments.RefundStatus{}, fmt.Errorf("refund %s in currency %q, the channel's is %s", rf.ID, rf.Currency, c.currency)
	}
	rs.Amount = vend.Amount{Minor: rf.Amount, Currency: cur}
	return rs, nil
}

// unexpectedState reports Stripe's refusal of an operation the intent's
// status does not allow (capture of a cancelled intent, cancel of a
// succeeded one).
func unexpectedState(err error) bool {
	var se *stripe.Error
	return errors.As(err, &se) && se.Code == stripe.ErrorCodePaymentIntentUnexpectedState
}

func stripeMsg(err error) string {
	var se *stripe.Error
	if errors.As(err, &se) {
		return se.Msg
	}
	return err.Error()
}

// mapErr turns a stripe-go error into the channel's vocabulary: a 4xx
// answer about the request (invalid_request_error, card_error,
// idempotency_error) is ErrRefused with Stripe's code; 5xx, 429, 401/403
// (our key refused: a configuration fault), a 409 lock timeout or a
// network failure is ErrProvider.
func (c *Channel) mapErr(op string, err error) error {
	var se *stripe.Error
	if errors.As(err, &se) && se.HTTPStatusCode > 0 {
		code := string(se.Code)
		if code == "" {
			code = string(se.Type)
		}
		switch {
		case se.HTTPStatusCode >= 500, se.HTTPStatusCode == http.StatusTooManyRequests, se.HTTPStatusCode == http.StatusUnauthorized,
			se.HTTPStatusCode == http.StatusForbidden, se.HTTPStatusCode == http.StatusConflict, se.Type == stripe.ErrorTypeAPI:
			return vend.Errorf(payments.ErrProvider, "stripecard: %s: http %d %s: %s", op, se.HTTPStatusCode, code, se.Msg)
		}
		return vend.Errorf(payments.ErrRefused, "stripecard: %s: http %d %s: %s", op, se.HTTPStatusCode, code, se.Msg)
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	return vend.Errorf(payments.ErrProvider, "stripecard: %s: %v", op, err)
}

// checkNo checks an order or refund number: 1 to 64 characters of
// [0-9A-Za-z_-] (it is used in idempotency keys, metadata and search
// queries, so nothing that would need quoting).
func checkNo(what, no string) error {
	if len(no) < 1 || len(no) > 64 {
		return vend.Errorf(errInvalid, "stripecard: %s %q: want 1 to 64 characters", what, no)
	}
	for _, r := range no {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '_' || r == '-') {
			return vend.Errorf(errInvalid, "stripecard: %s %q: character %q not allowed", what, no, r)
		}
	}
	return nil
}

func (c *Channel) checkAmount(op string, a vend.Amount) error {
	if a.Currency != c.currency {
		return vend.Errorf(payments.ErrAmount, "stripecard: %s: currency %q, the channel's is %s", op, a.Currency, c.currency)
	}
	if a.Minor <= 0 || a.Minor > 99999999 {
		return vend.Errorf(payments.ErrAmount, "stripecard: %s: amount %d minor units, want 1 to 99999999", op, a.Minor)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8Start(s[n]) {
		n--
	}
	return s[:n]
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }
