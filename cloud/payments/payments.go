package payments

import (
	"context"
	"net/http"
	"time"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
)

// Errors shared by every channel.
var (
	ErrRefused      = vend.E(vend.Conflict, "channel.refused", "payments: the provider refused")
	ErrProvider     = vend.E(vend.Transient, "channel.unavailable", "payments: the provider did not answer properly")
	ErrNotification = vend.E(vend.Unauthorized, "channel.notification", "payments: notification refused")
	ErrStatement    = vend.E(vend.Invalid, "channel.statement", "payments: statement refused")
	ErrAmount       = vend.E(vend.Invalid, "money.amount", "payments: bad amount")
	ErrDay          = vend.E(vend.Invalid, "request.field", "payments: bad day")
)

// Channel is one payment provider. Every method is safe for concurrent
// use. Errors are vend errors: a provider's business refusal (an unknown
// order, a refund above what is refundable, a closed order) is ErrRefused
// (vend.Conflict) with the provider's code in the message; a technical
// failure (network, timeout, 5xx, a response whose signature does not
// verify) is ErrProvider (vend.Transient), which feeds the channel's
// breaker.
type Channel interface {
	// Name is the channel's stable ID: "wechatpay", "alipay",
	// "sandbox_card". It is the payment source ID the phone chooses, the
	// owner of the channel's ledger clearing account and the <channel> of
	// its ledger keys (chan:<channel>:<order>).
	Name() string
	// Source describes the channel to the phone.
	Source() phoneapi.PaymentSource
	// Create opens a payer-facing order for o and returns what the payer
	// acts on. The provider must not have seen o.No before; a Create
	// retried with the same o.No must not open a second order (providers
	// refuse a duplicate out_trade_no, or return the same order).
	Create(ctx context.Context, o Order) (Action, error)
	// Query asks the provider for the authoritative state of an order.
	Query(ctx context.Context, orderNo string) (Status, error)
	// Close abandons an unpaid order so it can no longer be paid. Closing
	// an order that is already closed is not an error; closing a paid
	// order is vend.Conflict (the caller then queries and credits).
	Close(ctx context.Context, orderNo string) error
	// Refund returns r.Amount of the paid order r.OrderNo to the payer,
	// once per r.RefundNo.
	Refund(ctx context.Context, r RefundRequest) (RefundStatus, error)
	// QueryRefund asks for the authoritative state of a refund.
	QueryRefund(ctx context.Context, orderNo, refundNo string) (RefundStatus, error)
	// ParseNotification verifies (signature, timestamp, certificate) and
	// decodes one asynchronous notification the provider POSTed to the
	// cloud. A forged, tampered or stale notification is an error of kind
	// vend.Unauthorized and changes nothing.
	ParseNotification(ctx context.Context, r *http.Request) (Notification, error)
	// AckNotification writes the answer the provider expects: success
	// when err is nil (it will not send the notification again), failure
	// otherwise (it retries later).
	AckNotification(w http.ResponseWriter, err error)
	// Statement downloads, verifies and normalizes the provider's
	// statement (trade bill) of one day in the provider's time zone.
	Statement(ctx context.Context, day Day) (Statement, error)
}

// Order is what the cloud asks a channel to collect.
type Order struct {
	No          string      // the cloud's unique order number (NewOrderNo): the provider's out_trade_no
	Amount      vend.Amount // > 0
	Description string      // shown to the payer by the provider, e.g. "beaconvend wallet top-up"
	ExpiresAt   time.Time   // the order's TTL: after it the payer can no longer pay
	NotifyURL   string      // where the provider POSTs its notifications
	ClientIP    string      // the payer's address, when the provider wants it
}

// Action is what the payer acts on to pay an order.
type Action struct {
	CodeURL      string `json:"code_url,omitempty"`      // QR payload: WeChat Pay code_url, Alipay qr_code
	ClientSecret string `json:"client_secret,omitempty"` // card channels
	ProviderRef  string `json:"provider_ref,omitempty"`  // the provider's ID of the order when it gives one at creation
	NextAction   string `json:"next_action,omitempty"`   // what the payer must do first (NextAction3DS), empty when nothing
}

// PayState is where an order stands at the provider.
type PayState string

// The states of an order.
const (
	PayPending PayState = "pending" // created, not paid (WeChat NOTPAY/USERPAYING, Alipay WAIT_BUYER_PAY)
	PayPaid    PayState = "paid"    // the payer paid (WeChat SUCCESS, or REFUND after a success; Alipay TRADE_SUCCESS/TRADE_FINISHED)
	PayClosed  PayState = "closed"  // closed or revoked unpaid (WeChat CLOSED/REVOKED, Alipay TRADE_CLOSED without a payment)
	PayFailed  PayState = "failed"  // the provider refused the payment (WeChat PAYERROR)
)

// Status is the provider's view of an order.
type Status struct {
	OrderNo      string
	ProviderTxID string // WeChat transaction_id, Alipay trade_no
	State        PayState
	Amount       vend.Amount // what the payer paid (zero when not paid)
	PaidAt       time.Time   // zero when not paid
	Payer        string      // the provider's payer ID (openid, buyer_id), for support; may be empty
	// AuthExpiresAt is, for a PayAuthorized order of a HoldChannel, when
	// the authorization lapses; zero otherwise.
	AuthExpiresAt time.Time
	// ClientSecret is, for a PayActionRequired order, what the payer's
	// SDK needs to complete the action; empty otherwise.
	ClientSecret string
}

// RefundRequest asks to return part or all of a paid order.
type RefundRequest struct {
	OrderNo   string
	RefundNo  string      // the cloud's unique refund number: the provider's out_refund_no
	Amount    vend.Amount // > 0, at most what is still refundable
	Total     vend.Amount // the order's original amount (WeChat wants it)
	Reason    string
	NotifyURL string
}

// RefundState is where a refund stands at the provider.
type RefundState string

// The states of a refund.
const (
	RefundPending   RefundState = "pending"   // accepted, money not yet returned (WeChat PROCESSING)
	RefundSucceeded RefundState = "succeeded" // the money is back with the payer
	RefundFailed    RefundState = "failed"    // closed or abnormal: the money was not returned
)

// RefundStatus is the provider's view of a refund.
type RefundStatus struct {
	OrderNo          string
	RefundNo         string
	ProviderRefundID string
	State            RefundState
	Amount           vend.Amount
	DoneAt           time.Time
}

// NotificationKind says what a notification reports.
type NotificationKind string

// The kinds of notification.
const (
	NotifyPayment NotificationKind = "payment"
	NotifyRefund  NotificationKind = "refund"
	// NotifyIgnored: a verified notification that reports nothing the
	// cloud acts on (an event type the channel does not use, an object
	// that carries no order of ours). The caller acknowledges it and
	// changes nothing; EventID is set, Payment and Refund are empty.
	NotifyIgnored NotificationKind = "ignored"
)

// Notification is one verified, decoded provider notification.
type Notification struct {
	EventID string // the provider's ID of the notification: the idempotency key of its handling
	Kind    NotificationKind
	Payment Status       // Kind == NotifyPayment
	Refund  RefundStatus // Kind == NotifyRefund
}

// Day is a calendar day in the provider's time zone (Asia/Shanghai for
// WeChat Pay and Alipay).
type Day struct {
	Year  int
	Month time.Month
	Day   int
}

// String formats the day as 2006-01-02.
func (d Day) String() string {
	return time.Date(d.Year, d.Month, d.Day, 0, 0, 0, 0, time.UTC).Format(time.DateOnly)
}

// ParseDay parses 2006-01-02.
func ParseDay(s string) (Day, error) {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return Day{}, vend.Errorf(ErrDay, "%q: want YYYY-MM-DD", s)
	}
	return Day{t.Year(), t.Month(), t.Day()}, nil
}

// RowKind says whether a statement row is a payment or a refund.
type RowKind string

// The kinds of statement row.
const (
	RowPayment RowKind = "payment"
	RowRefund  RowKind = "refund"
)

// StatementRow is one normalized row of a provider's statement.
type StatementRow struct {
	Kind             RowKind
	At               time.Time
	OrderNo          string // our out_trade_no
	ProviderTxID     string
	RefundNo         string // refunds: our out_refund_no
	ProviderRefundID string
	Amount           vend.Amount // paid (payments) or refunded (refunds), > 0
	Fee              int64       // the provider's fee on this row, minor units (negative on a refund when the fee is returned)
	Status           string      // the provider's status text (SUCCESS, REFUND, …), kept for the report
}

// Statement is one day's normalized statement with the provider's own
// totals, which Statement checks against the rows (a statement whose
// summary does not match its rows, or whose digest does not verify, is an
// error).
type Statement struct {
	Channel  string
	Day      Day
	Rows     []StatementRow
	Payments int64 // total paid, minor units, from the provider's summary
	Refunds  int64 // total refunded
	Fees     int64 // total fees
	Currency vend.Currency
}
