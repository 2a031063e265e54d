package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
)

// payer is the part of the phone API that moves money between the
// payment channels and the wallet: a top-up creates an order the payer
// pays at the provider (TopUp), the order is followed to paid (GetPayment),
// payments are listed as receipts (ListPayments), and unused wallet money
// goes back to the channels it came from (Withdraw).
type payer interface {
	GetWallet(ctx context.Context) (*phoneapi.Wallet, error)
	TopUp(ctx context.Context, key string, req *phoneapi.TopUpRequest) (*Payment, error)
	GetPayment(ctx context.Context, order string) (*Payment, error)
	ListPayments(ctx context.Context, p *ListPaymentsParams) (*PaymentList, error)
	Withdraw(ctx context.Context, key string, req *WithdrawalRequest) (*Withdrawal, error)
}

// Errors of the payment steps.
var (
	// ErrPayment: a top-up order ended unpaid (closed, failed) or was
	// still pending when -pay-timeout passed.
	ErrPayment = vend.E(vend.Conflict, "phone.payment", "phone: not paid")
	// ErrLimit: the amount breaks the payment source's limits.
	ErrLimit = vend.E(vend.Conflict, "source.limit", "phone: over the payment source's limit")
	// ErrWithdrawal: a withdrawal returned less than asked (failed or
	// partial).
	ErrWithdrawal = vend.E(vend.Conflict, "phone.withdrawal", "phone: withdrawal incomplete")
)

// Payment defaults.
const (
	DefaultPayTimeout = 3 * time.Minute
	defaultPayPoll    = 2 * time.Second
	paymentsPage      = 20  // payments asked per page by -payments
	maxPaymentsListed = 100 // -payments stops after this many
)

// topUp moves -topup from -topup-source into the wallet, in the wallet's
// currency: it creates the order (one idempotency key for every retry of
// it, so a timeout never opens two orders), shows what the payer acts on
// (the QR code of a QR channel), follows the order until it is paid,
// closed or failed or -pay-timeout passes, and prints its receipt.
func (m *Main) topUp(ctx context.Context) error {
	minor, _ := parseAmount(m.TopUp)
	w, err := m.wallet(ctx)
	if err != nil {
		return err
	}
	cur := w.Available.Currency
	if cur == "" {
		cur = defaultCurrency
	}
	key := phoneapi.NewIdempotencyKey()
	req := &phoneapi.TopUpRequest{Amount: vend.Amount{Minor: minor, Currency: cur}, Source: m.TopUpSource}
	p, err := retry(ctx, steppedUp(m, phoneapi.ScopeTopUp, func(ctx context.Context) (*Payment, error) { return m.payer.TopUp(ctx, key, req) }))
	if err != nil {
		err = topUpError(fmt.Errorf("phone: top-up %s through %s: %w", req.Amount, m.TopUpSource, err))
		if vend.CodeOf(err) == "source.not_found" {
			err = fmt.Errorf("%w; the sources are: %s", err, m.sourceIDs(ctx))
		}
		return err
	}
	if err := checkPayment(p, ""); err != nil {
		return err
	}
	m.Payment = p
	if p.State == PaymentPending {
		if err := m.showAction(p); err != nil {
			return err
		}
	}
	p, err = m.followPayment(ctx, p)
	m.Payment = p
	if err != nil {
		return err
	}
	fmt.Fprint(m.out, formatPayment(p, m.Now()))
	if w, err := m.wallet(ctx); err == nil {
		fmt.Fprintf(m.out, "topped up %s through %s: wallet %s\n", p.Amount, sourceName(p), w.Available)
	}
	return nil
}

// topUpError turns the API's refusals of a top-up into the client's
// errors: source.limit names the sources the server says would take the
// amount; channel.refused (the provider would not open the order) is
// ErrPayment.
func topUpError(err error) error {
	var ae *phoneapi.APIError
	if !errors.As(err, &ae) {
		return err
	}
	switch ae.Code {
	case "source.limit":
		msg := err.Error()
		if alt := alternativesOf(err); len(alt) > 0 {
			msg += "; try -topup-source " + strings.Join(alt, " or -topup-source ")
		} else {
			msg += "; the cloud names no other source for this amount: try a smaller one"
		}
		return fmt.Errorf("%w: %s", ErrLimit, strings.TrimPrefix(msg, "phone: "))
	case "channel.refused":
		return fmt.Errorf("%w: %s; nothing was charged", ErrPayment, strings.TrimPrefix(err.Error(), "phone: "))
	}
	return mapAPIError(err, nil)
}

// sourceIDs lists the payment sources a top-up can use, for an error
// message: "wechatpay, alipay", or "unknown" when they cannot be listed.
func (m *Main) sourceIDs(ctx context.Context) string {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	l, err := m.client.ListPaymentSources(rctx)
	if err != nil {
		return "unknown (" + oneLine(err) + ")"
	}
	var ids []string
	for _, s := range l.Sources {
		if s.ID != "wallet" {
			ids = append(ids, s.ID)
		}
	}
	if len(ids) == 0 {
		return "none"
	}
	return strings.Join(ids, ", ")
}

// checkPayment checks an answer of the payment endpoints: a known state,
// an order number, the order asked for (when order is not empty).
func checkPayment(p *Payment, order string) error {
	switch {
	case p == nil || p.Order == "":
		return fmt.Errorf("%w: payment without an order number", phoneapi.ErrResponse)
	case order != "" && p.Order != order:
		return fmt.Errorf("%w: asked for order %s, got %s", phoneapi.ErrResponse, order, p.Order)
	}
	switch p.State {
	case PaymentPending, PaymentPaid, PaymentClosed, PaymentFailed:
		return nil
	}
	return fmt.Errorf("%w: order %s in unknown state %q", phoneapi.ErrResponse, p.Order, p.State)
}

// showAction prints what the payer acts on: the QR code of code_url
// (WeChat Pay, Alipay) with the URL as text for copy and paste.
func (m *Main) showAction(p *Payment) error {
	fmt.Fprintf(m.out, "order %s: %s through %s, pay before %s\n", p.Order, p.Amount, sourceName(p), clock(p.ExpiresAt))
	switch {
	case p.CodeURL != "":
		fmt.Fprintf(m.out, "scan this code with the %s app:\n", appName(p.Source))
		if err := writeQR(m.out, p.CodeURL, m.color); err != nil {
			return err
		}
		fmt.Fprintf(m.out, "or open: %s\n", p.CodeURL)
	case p.ClientSecret != "":
		// A card channel's app confirms the payment with the client
		// secret; it is not shown.
		fmt.Fprintln(m.out, "confirm the card payment in the card's app")
	}
	return nil
}

// followPayment asks for the order every poll interval until it is no
// longer pending, -pay-timeout passes or ctx ends. A transient error is
// shown and asked again; any other ends the wait. A paid order returns
// nil; a closed or failed one ErrPayment saying so; a pending one at the
// bound ErrPayment saying until when it can still be paid.
func (m *Main) followPayment(ctx context.Context, p *Payment) (*Payment, error) {
	if p.State == PaymentPending {
		v := newPayView(m.out, m.color, m.Now)
		p0, err := m.waitPaid(ctx, p, v)
		v.Finish()
		if p = p0; err != nil {
			return p, err
		}
	}
	switch p.State {
	case PaymentClosed:
		if !p.ExpiresAt.IsZero() && !m.Now().Before(p.ExpiresAt) {
			return p, fmt.Errorf("%w: order %s expired at %s unpaid and is closed; nothing was charged", ErrPayment, p.Order, clock(p.ExpiresAt))
		}
		return p, fmt.Errorf("%w: order %s was closed unpaid; nothing was charged", ErrPayment, p.Order)
	case PaymentFailed:
		return p, fmt.Errorf("%w: %s refused the payment of order %s; nothing was charged", ErrPayment, sourceName(p), p.Order)
	}
	return p, nil
}

// waitPaid asks for the pending order p until it is no longer pending,
// showing each answer on v; see followPayment.
func (m *Main) waitPaid(ctx context.Context, p *Payment, v *payView) (*Payment, error) {
	deadline := m.Now().Add(m.PayTimeout)
	v.Update(p)
	for p.State == PaymentPending {
		left := deadline.Sub(m.Now())
		if left <= 0 {
			return p, stillPending(p, m.PayTimeout, m.Now())
		}
		t := time.NewTimer(min(m.payPoll, left))
		select {
		case <-ctx.Done():
			t.Stop()
			return p, m.stoppedWaiting(ctx, p)
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		q, err := m.payer.GetPayment(rctx, p.Order)
		cancel()
		if err == nil {
			err = checkPayment(q, p.Order)
		}
		if err != nil && ctx.Err() != nil {
			return p, m.stoppedWaiting(ctx, p)
		}
		if err != nil {
			if vend.KindOf(err) == vend.Transient {
				v.Note(fmt.Sprintf("asking again: %s", oneLine(err)))
				continue
			}
			return p, fmt.Errorf("phone: order %s: %w", p.Order, err)
		}
		p = q
		v.Update(p)
	}
	return p, nil
}

// stoppedWaiting is the error when ctx ends (Ctrl-C) while the order is
// pending.
func (m *Main) stoppedWaiting(ctx context.Context, p *Payment) error {
	return fmt.Errorf("phone: stopped waiting for order %s (%v): %s", p.Order, ctx.Err(), payableUntil(p, m.Now()))
}

// stillPending is the error for an order still pending at -pay-timeout.
func stillPending(p *Payment, waited time.Duration, now time.Time) error {
	return fmt.Errorf("%w: order %s still pending after %s: %s", ErrPayment, p.Order, waited, payableUntil(p, now))
}

// payableUntil tells what becomes of a pending order the client stops
// following.
func payableUntil(p *Payment, now time.Time) string {
	if p.ExpiresAt.IsZero() {
		return "if it is paid, the wallet is credited then (phone -payments shows it)"
	}
	if !now.Before(p.ExpiresAt) {
		return fmt.Sprintf("it expired at %s and the cloud closes it unpaid", clock(p.ExpiresAt))
	}
	return fmt.Sprintf("it can still be paid until %s, and the wallet is credited then (phone -payments shows it)", clock(p.ExpiresAt))
}

// withdraw returns -withdraw (an amount, or "all" the wallet has
// available) to the channels the money came from and prints the refunds.
func (m *Main) withdraw(ctx context.Context) error {
	w, err := m.wallet(ctx)
	if err != nil {
		return err
	}
	amount := w.Available
	if !strings.EqualFold(m.Withdraw, "all") {
		minor, _ := parseAmount(m.Withdraw)
		amount.Minor = minor
	}
	if amount.Currency == "" {
		amount.Currency = defaultCurrency
	}
	if amount.Minor <= 0 {
		return fmt.Errorf("phone: nothing to withdraw: the wallet has %s available", w.Available)
	}
	key := phoneapi.NewIdempotencyKey()
	req := &WithdrawalRequest{Amount: amount}
	wd, err := retry(ctx, steppedUp(m, phoneapi.ScopeWithdrawal, func(ctx context.Context) (*Withdrawal, error) { return m.payer.Withdraw(ctx, key, req) }))
	if err != nil {
		return mapAPIError(fmt.Errorf("phone: withdraw %s: %w", amount, err), func() string {
			return fmt.Sprintf("%s available", w.Available)
		})
	}
	m.Withdrawal = wd
	fmt.Fprint(m.out, formatWithdrawal(wd))
	if w, err := m.wallet(ctx); err == nil {
		fmt.Fprintf(m.out, "wallet now %s available\n", w.Available)
	}
	switch wd.State {
	case WithdrawalSucceeded, WithdrawalPending:
		return nil
	}
	var back int64
	for _, r := range wd.Refunds {
		if r.State != RefundFailed {
			back += r.Amount.Minor
		}
	}
	return fmt.Errorf("%w: withdrawal %s %s: %s of %s is on its way back; the rest stays in the wallet",
		ErrWithdrawal, wd.ID, wd.State, vend.Amount{Minor: back, Currency: amount.Currency}, amount)
}

// listPayments prints the newest payments (up to maxPaymentsListed) as
// receipts.
func (m *Main) listPayments(ctx context.Context) error {
	var all []Payment
	cursor := ""
	for len(all) < maxPaymentsListed {
		lp := &ListPaymentsParams{Limit: min(paymentsPage, maxPaymentsListed-len(all)), Cursor: cursor}
		page, err := retry(ctx, func(ctx context.Context) (*PaymentList, error) { return m.payer.ListPayments(ctx, lp) })
		if err != nil {
			return fmt.Errorf("phone: payments: %w", err)
		}
		for i := range page.Payments {
			if err := checkPayment(&page.Payments[i], ""); err != nil {
				return fmt.Errorf("phone: payments: %w", err)
			}
		}
		all = append(all, page.Payments...)
		if page.Next == "" || page.Next == cursor || len(page.Payments) == 0 {
			break
		}
		cursor = page.Next
	}
	m.Payments = all
	if len(all) == 0 {
		fmt.Fprintln(m.out, "no payments yet")
		return nil
	}
	for i := range all {
		if i > 0 {
			fmt.Fprintln(m.out)
		}
		fmt.Fprint(m.out, formatPayment(&all[i], m.Now()))
	}
	return nil
}

// payView shows the wait for a payment: on a terminal one line redrawn in
// place each poll; otherwise a line when the state changes.
type payView struct {
	w     io.Writer
	tty   bool
	now   func() time.Time
	start time.Time
	state PaymentState
	drawn bool
}

func newPayView(w io.Writer, tty bool, now func() time.Time) *payView {
	return &payView{w: w, tty: tty, now: now, start: now()}
}

// Update shows p.
func (v *payView) Update(p *Payment) {
	line := fmt.Sprintf("order %s %-7s %s", p.Order, p.State, v.now().Sub(v.start).Round(time.Second))
	if p.State == PaymentPending && !p.ExpiresAt.IsZero() {
		if left := p.ExpiresAt.Sub(v.now()); left > 0 {
			line += fmt.Sprintf(", expires in %s", left.Round(time.Second))
		} else {
			line += ", expired"
		}
	}
	switch {
	case v.tty:
		fmt.Fprintf(v.w, "\r\x1b[K%s", line)
		v.drawn = true
	case p.State != v.state:
		fmt.Fprintln(v.w, line)
	}
	v.state = p.State
}

// Note prints msg on a line of its own.
func (v *payView) Note(msg string) {
	if v.drawn {
		fmt.Fprint(v.w, "\r\x1b[K")
		v.drawn = false
	}
	fmt.Fprintln(v.w, msg)
}

// Finish ends the redrawn line.
func (v *payView) Finish() {
	if v.drawn {
		fmt.Fprintln(v.w)
		v.drawn = false
	}
}

// sourceName is the channel of a payment, marked when it moves no real
// money.
func sourceName(p *Payment) string {
	if p.Test {
		return p.Source + " (test)"
	}
	return p.Source
}

// appName is the app a payer scans a channel's QR code with.
func appName(source string) string {
	switch source {
	case "wechatpay":
		return "WeChat"
	case "alipay":
		return "Alipay"
	}
	return source
}

// clock formats an instant for the payer, in the local zone.
func clock(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05 MST")
}
