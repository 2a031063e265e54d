package phoneapi

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// PaymentState is where a top-up order stands (schema PaymentState).
type PaymentState string

// The states of a top-up order: pending until the payer pays it (then
// paid, once), or closed when its time ran out unpaid, or failed when the
// channel refused it.
const (
	PaymentPending PaymentState = "pending"
	PaymentPaid    PaymentState = "paid"
	PaymentClosed  PaymentState = "closed"
	PaymentFailed  PaymentState = "failed"
)

// Valid reports whether s is one of the states.
func (s PaymentState) Valid() bool {
	switch s {
	case PaymentPending, PaymentPaid, PaymentClosed, PaymentFailed:
		return true
	}
	return false
}

// Payment is a top-up order and its receipt (schema Payment): the payer
// acts on CodeURL (a QR payload to show or scan) or ClientSecret; the
// order turns paid once the channel confirms, and the wallet is credited
// then. Refunded is what withdrawals and session refunds returned through
// the channel.
type Payment struct {
	Order        string       `json:"order"`  // the cloud's order number
	Source       string       `json:"source"` // the payment source ID (channel)
	State        PaymentState `json:"state"`
	Amount       Amount       `json:"amount"`
	CodeURL      string       `json:"code_url,omitempty"`
	ClientSecret string       `json:"client_secret,omitempty"`
	CreatedAt    time.Time    `json:"created_at"`
	ExpiresAt    time.Time    `json:"expires_at"`
	PaidAt       time.Time    `json:"paid_at,omitzero"`
	ProviderTxID string       `json:"provider_tx_id,omitempty"` // the channel's transaction ID, once paid
	Refunded     Amount       `json:"refunded"`
	Test         bool         `json:"test,omitempty"` // a development channel that moves no real money
}

// Validate returns an error of kind invalid naming the bad field.
func (p *Payment) Validate() error {
	if p.Order == "" || len(p.Order) > 64 {
		return fieldErr("order", "want 1-64 bytes")
	}
	if err := validateSource(p.Source); err != nil {
		return err
	}
	if !p.State.Valid() {
		return fieldErr("state", "unknown state %q", clip(string(p.State)))
	}
	if err := p.Amount.Currency.Validate(); err != nil {
		return prefix("amount.currency", err)
	}
	if p.Amount.Minor <= 0 {
		return fieldErr("amount.minor", "%d is not positive", p.Amount.Minor)
	}
	if p.Refunded.Currency != p.Amount.Currency || p.Refunded.Minor < 0 || p.Refunded.Minor > p.Amount.Minor {
		return fieldErr("refunded", "%v of %v", p.Refunded, p.Amount)
	}
	return nil
}

// PaymentList is a page of the user's top-up orders, newest first (schema PaymentList).
type PaymentList struct {
	Payments []Payment `json:"payments"`
	Next     string    `json:"next,omitempty"` // cursor of the next page; empty on the last
}

// ListPaymentsParams page ListPayments.
type ListPaymentsParams struct {
	Limit  int    // 1..MaxSessionPage; 0 is DefaultSessionPage
	Cursor string // the Next of the previous page; empty for the first
}

// WithdrawalRequest returns unused wallet money to the channels it came
// through (schema WithdrawalRequest).
type WithdrawalRequest struct {
	Amount Amount `json:"amount"`
}

// Validate returns an error of kind invalid naming the bad field.
func (r *WithdrawalRequest) Validate() error {
	if err := r.Amount.Currency.Validate(); err != nil {
		return prefix("amount.currency", err)
	}
	if r.Amount.Minor <= 0 {
		return fieldErr("amount.minor", "%d is not positive", r.Amount.Minor)
	}
	return nil
}

// RefundState is where one refund through a channel stands (schema RefundState).
type RefundState string

// The states of a refund.
const (
	RefundPending   RefundState = "pending"
	RefundSucceeded RefundState = "succeeded"
	RefundFailed    RefundState = "failed"
)

// RefundPart is one refund against one paid top-up order (schema RefundPart).
type RefundPart struct {
	RefundNo         string      `json:"refund_no"`
	Order            string      `json:"order"`
	Source           string      `json:"source"`
	Amount           Amount      `json:"amount"`
	State            RefundState `json:"state"`
	ProviderRefundID string      `json:"provider_refund_id,omitempty"`
}

// WithdrawalState sums up a withdrawal's refunds (schema WithdrawalState):
// pending while any is; succeeded or failed when all are; partial when
// some succeeded and some failed (the failed part is back in the wallet).
type WithdrawalState string

// The states of a withdrawal.
const (
	WithdrawalPending   WithdrawalState = "pending"
	WithdrawalSucceeded WithdrawalState = "succeeded"
	WithdrawalFailed    WithdrawalState = "failed"
	WithdrawalPartial   WithdrawalState = "partial"
)

// Withdrawal answers Withdraw (schema Withdrawal): the wallet money
// returned, refunded against the payer's paid orders, oldest first.
type Withdrawal struct {
	ID      string          `json:"id"`
	Amount  Amount          `json:"amount"`
	State   WithdrawalState `json:"state"`
	Refunds []RefundPart    `json:"refunds"`
}

// Validate returns an error of kind invalid naming the bad field.
func (w *Withdrawal) Validate() error {
	if w.ID == "" {
		return fieldErr("id", "empty")
	}
	switch w.State {
	case WithdrawalPending, WithdrawalSucceeded, WithdrawalFailed, WithdrawalPartial:
	default:
		return fieldErr("state", "unknown state %q", clip(string(w.State)))
	}
	var sum int64
	for _, r := range w.Refunds {
		sum += r.Amount.Minor
	}
	if sum != w.Amount.Minor {
		return fieldErr("refunds", "sum to %d, amount is %d", sum, w.Amount.Minor)
	}
	return nil
}

// GetPayment returns one of the user's top-up orders; a pending order
// whose confirmation is late is first asked of its channel. Errors:
// not_found (payment.not_found), unauthorized, transient.
func (c *Client) GetPayment(ctx context.Context, order string) (*Payment, error) {
	if order == "" || len(order) > 64 {
		return nil, fieldErr("order", "want 1-64 bytes")
	}
	var out Payment
	if err := c.do(ctx, http.MethodGet, "/v1/payments/"+url.PathEscape(order), "", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListPayments returns the user's top-up orders, newest first. Errors:
// invalid, unauthorized, transient.
func (c *Client) ListPayments(ctx context.Context, p *ListPaymentsParams) (*PaymentList, error) {
	q := url.Values{}
	if p != nil {
		if p.Limit < 0 || p.Limit > MaxSessionPage {
			return nil, fieldErr("limit", "want 1-%d", MaxSessionPage)
		}
		if p.Limit > 0 {
			q.Set("limit", strconv.Itoa(p.Limit))
		}
		if p.Cursor != "" {
			q.Set("cursor", p.Cursor)
		}
	}
	var out PaymentList
	if err := c.doQuery(ctx, "/v1/payments", q, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Withdraw returns amount of the wallet to the channels it came through;
// key is the Idempotency-Key. Errors: conflict (refund.exceeds_refundable,
// funds.insufficient, idempotency.key_reused), invalid, unauthorized,
// transient.
func (c *Client) Withdraw(ctx context.Context, key string, req *WithdrawalRequest) (*Withdrawal, error) {
	if err := ValidateIdempotencyKey(key); err != nil {
		return nil, err
	}
	if err := req.Validate(); err != nil {
		return nil, err
	}
	var out Withdrawal
	if err := c.do(ctx, http.MethodPost, "/v1/wallet/withdrawals", key, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
