//go:build !phoneapi_payments

package main

// This file stands in for the payment types and client methods of
// app-protocol/phoneapi (Payment, Withdrawal, TopUp returning a Payment,
// GetPayment, ListPayments, Withdraw) until they exist there, with the
// same names, fields and JSON. When phoneapi has them, delete this file
// and drop the build constraint of paytypes_phoneapi.go, which aliases
// them.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
)

// PaymentState is where a channel payment (an order) stands.
type PaymentState string

// The states of a payment.
const (
	PaymentPending PaymentState = "pending"
	PaymentPaid    PaymentState = "paid"
	PaymentClosed  PaymentState = "closed"
	PaymentFailed  PaymentState = "failed"
)

// Payment is one top-up order through a payment channel.
type Payment struct {
	Order        string          `json:"order"`
	Source       string          `json:"source"`
	State        PaymentState    `json:"state"`
	Amount       phoneapi.Amount `json:"amount"`
	CodeURL      string          `json:"code_url,omitempty"`
	ClientSecret string          `json:"client_secret,omitempty"`
	CreatedAt    time.Time       `json:"created_at"`
	ExpiresAt    time.Time       `json:"expires_at"`
	PaidAt       time.Time       `json:"paid_at,omitzero"`
	ProviderTxID string          `json:"provider_tx_id,omitempty"`
	Refunded     phoneapi.Amount `json:"refunded"`
	Test         bool            `json:"test,omitempty"`
}

// PaymentList is a page of payments, newest first.
type PaymentList struct {
	Payments []Payment `json:"payments"`
	Next     string    `json:"next,omitempty"`
}

// ListPaymentsParams selects a page of payments.
type ListPaymentsParams struct {
	Limit  int
	Cursor string
}

// WithdrawalRequest asks to return wallet money to its channels.
type WithdrawalRequest struct {
	Amount phoneapi.Amount `json:"amount"`
}

// RefundState is where one refund through a channel stands.
type RefundState string

// The states of a refund.
const (
	RefundPending   RefundState = "pending"
	RefundSucceeded RefundState = "succeeded"
	RefundFailed    RefundState = "failed"
)

// RefundPart is one refund against one paid top-up order.
type RefundPart struct {
	RefundNo         string          `json:"refund_no"`
	Order            string          `json:"order"`
	Source           string          `json:"source"`
	Amount           phoneapi.Amount `json:"amount"`
	State            RefundState     `json:"state"`
	ProviderRefundID string          `json:"provider_refund_id,omitempty"`
}

// WithdrawalState sums up a withdrawal's refunds.
type WithdrawalState string

// The states of a withdrawal.
const (
	WithdrawalPending   WithdrawalState = "pending"
	WithdrawalSucceeded WithdrawalState = "succeeded"
	WithdrawalFailed    WithdrawalState = "failed"
	WithdrawalPartial   WithdrawalState = "partial"
)

// Withdrawal is the answer to a withdrawal.
type Withdrawal struct {
	ID      string          `json:"id"`
	Amount  phoneapi.Amount `json:"amount"`
	State   WithdrawalState `json:"state"`
	Refunds []RefundPart    `json:"refunds"`
}

// receiptRefunds is what an operator refunded of a session's charge, and
// its parts through the payer's channels.
func receiptRefunds(r *phoneapi.Receipt) (phoneapi.Amount, []RefundPart) {
	return phoneapi.Amount{}, nil
}

// alternativesOf returns the payment sources a source.limit error names
// as able to take the amount.
func alternativesOf(err error) []string {
	var le *limitError
	if errors.As(err, &le) {
		return le.alternatives
	}
	return nil
}

// newPayer returns the payment part of the phone API for c.
func newPayer(c *phoneapi.Client, base string, hc *http.Client) payer {
	return &tmpPayer{c: c, base: strings.TrimRight(base, "/"), hc: hc}
}

// tmpPayer calls the payment endpoints with the client's token.
type tmpPayer struct {
	c    *phoneapi.Client
	base string
	hc   *http.Client
}

func (p *tmpPayer) GetWallet(ctx context.Context) (*phoneapi.Wallet, error) {
	return p.c.GetWallet(ctx)
}

func (p *tmpPayer) TopUp(ctx context.Context, key string, req *phoneapi.TopUpRequest) (*Payment, error) {
	if err := phoneapi.ValidateIdempotencyKey(key); err != nil {
		return nil, err
	}
	if err := req.Validate(); err != nil {
		return nil, err
	}
	var raw json.RawMessage
	if err := p.do(ctx, http.MethodPost, "/v1/wallet/topups", key, req, &raw); err != nil {
		return nil, err
	}
	var out Payment
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, vend.Errorf(phoneapi.ErrResponse, "POST /v1/wallet/topups: %v", err)
	}
	if out.Order == "" {
		// A cloud that predates payment records answers with the
		// wallet: the (sandbox) top-up is done.
		var w phoneapi.Wallet
		if json.Unmarshal(raw, &w) == nil && w.Available.Currency != "" {
			now := time.Now().UTC()
			out = Payment{Order: "-", Source: req.Source, State: PaymentPaid, Amount: req.Amount, CreatedAt: now, PaidAt: now,
				Refunded: phoneapi.Amount{Currency: req.Amount.Currency}, Test: true}
		}
	}
	return &out, nil
}

func (p *tmpPayer) GetPayment(ctx context.Context, order string) (*Payment, error) {
	var out Payment
	return &out, p.do(ctx, http.MethodGet, "/v1/payments/"+url.PathEscape(order), "", nil, &out)
}

func (p *tmpPayer) ListPayments(ctx context.Context, lp *ListPaymentsParams) (*PaymentList, error) {
	q := url.Values{}
	if lp != nil && lp.Limit > 0 {
		q.Set("limit", strconv.Itoa(lp.Limit))
	}
	if lp != nil && lp.Cursor != "" {
		q.Set("cursor", lp.Cursor)
	}
	path := "/v1/payments"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out PaymentList
	return &out, p.do(ctx, http.MethodGet, path, "", nil, &out)
}

func (p *tmpPayer) Withdraw(ctx context.Context, key string, req *WithdrawalRequest) (*Withdrawal, error) {
	if err := phoneapi.ValidateIdempotencyKey(key); err != nil {
		return nil, err
	}
	var out Withdrawal
	return &out, p.do(ctx, http.MethodPost, "/v1/wallet/withdrawals", key, req, &out)
}

func (p *tmpPayer) do(ctx context.Context, method, path, key string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, p.base+path, body)
	if err != nil {
		return fmt.Errorf("phone: %s %s: %w", method, path, err)
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if t := p.c.Token(); t != "" {
		req.Header.Set("Authorization", "Bearer "+t)
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := p.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %s %s: %w", phoneapi.ErrTransport, method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, phoneapi.MaxResponseBytes))
	if err != nil {
		return fmt.Errorf("%w: %s %s: %w", phoneapi.ErrTransport, method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		ae := phoneapi.DecodeError(resp.StatusCode, b)
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 && s < 86400 {
			ae.RetryAfter = time.Duration(s) * time.Second
		}
		if ae.Code == "source.limit" {
			var eb struct {
				Error struct {
					Alternatives []string `json:"alternatives"`
				} `json:"error"`
			}
			_ = json.Unmarshal(b, &eb)
			return &limitError{APIError: ae, alternatives: eb.Error.Alternatives}
		}
		return ae
	}
	if err := json.Unmarshal(b, out); err != nil {
		return vend.Errorf(phoneapi.ErrResponse, "%s %s: %v", method, path, err)
	}
	return nil
}

// limitError is a source.limit answer with the alternatives it names.
type limitError struct {
	*phoneapi.APIError
	alternatives []string
}

func (e *limitError) Unwrap() error { return e.APIError }
