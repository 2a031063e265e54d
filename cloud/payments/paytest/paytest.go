// Package paytest is an in-process payment channel for tests of the
// machinery every channel shares (records, routing, limits, the breaker,
// refunds, notifications). It keeps order and refund state in memory the
// way a provider does: an order is paid only when the test says the payer
// paid (Pay); notifications are JSON bodies signed with HMAC-SHA256 under
// the channel's secret, so a forged or tampered one fails verification.
// Errors can be injected per operation (Fail) and answers delayed (Delay).
//
// It is a hand-written fake: the real providers are tested against
// independent peers in their own packages.
package paytest

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/payments"
)

// Channel is a fake provider. Set the fields before use.
type Channel struct {
	ID     string                     // channel name and payment source ID, e.g. "wechatpay"
	Kind   phoneapi.PaymentSourceKind // the source's kind; wechat_pay when empty
	Secret []byte                     // notification signing key
	Now    func() time.Time           // time.Now when nil
	// Fail, when set, is asked before each operation ("create", "query",
	// "close", "refund", "query_refund", "statement"); a non-nil answer is
	// returned instead of doing it.
	Fail func(op, orderNo string) error
	// RefundPending makes refunds stay pending until SettleRefund.
	RefundPending bool

	mu      sync.Mutex
	orders  map[string]*order
	refunds map[string]*payments.RefundStatus
	Calls   map[string]int // operations seen, by name (read under Lock/Unlock via Count)
}

type order struct {
	o      payments.Order
	status payments.Status
}

var _ payments.Channel = (*Channel)(nil)

func (c *Channel) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Channel) begin(op, no string) error {
	c.mu.Lock()
	if c.Calls == nil {
		c.Calls = map[string]int{}
	}
	if c.orders == nil {
		c.orders, c.refunds = map[string]*order{}, map[string]*payments.RefundStatus{}
	}
	c.Calls[op]++
	c.mu.Unlock()
	if c.Fail != nil {
		return c.Fail(op, no)
	}
	return nil
}

// Count returns how many times op was called.
func (c *Channel) Count(op string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Calls[op]
}

// Name returns ID.
func (c *Channel) Name() string { return c.ID }

// Source returns a QR source named after ID.
func (c *Channel) Source() phoneapi.PaymentSource {
	k := c.Kind
	if k == "" {
		k = phoneapi.SourceWeChatPay
	}
	return phoneapi.PaymentSource{ID: c.ID, Kind: k, Name: "Test " + c.ID}
}

// Create records the order (a retry with the same number returns the same
// action) and returns a code_url.
func (c *Channel) Create(_ context.Context, o payments.Order) (payments.Action, error) {
	if err := c.begin("create", o.No); err != nil {
		return payments.Action{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev, ok := c.orders[o.No]; ok && prev.o.Amount != o.Amount {
		return payments.Action{}, vend.Errorf(payments.ErrRefused, "%s: OUT_TRADE_NO_USED %s", c.ID, o.No)
	}
	if _, ok := c.orders[o.No]; !ok {
		c.orders[o.No] = &order{o: o, status: payments.Status{OrderNo: o.No, State: payments.PayPending}}
	}
	return payments.Action{CodeURL: "paytest://" + c.ID + "/" + o.No}, nil
}

// Pay makes the payer pay order no (as scanning the QR would) and returns
// its status; an unknown, closed or expired order is an error.
func (c *Channel) Pay(no string) (payments.Status, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	o, ok := c.orders[no]
	switch {
	case !ok:
		return payments.Status{}, fmt.Errorf("paytest: no order %s", no)
	case o.status.State == payments.PayPaid:
		return o.status, nil
	case o.status.State != payments.PayPending:
		return payments.Status{}, fmt.Errorf("paytest: order %s is %s", no, o.status.State)
	case !o.o.ExpiresAt.IsZero() && c.now().After(o.o.ExpiresAt):
		return payments.Status{}, fmt.Errorf("paytest: order %s expired", no)
	}
	o.status = payments.Status{OrderNo: no, ProviderTxID: "ptx_" + no, State: payments.PayPaid, Amount: o.o.Amount, PaidAt: c.now()}
	return o.status, nil
}

// Query returns the order's status; an unknown order is ErrRefused.
func (c *Channel) Query(_ context.Context, no string) (payments.Status, error) {
	if err := c.begin("query", no); err != nil {
		return payments.Status{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	o, ok := c.orders[no]
	if !ok {
		return payments.Status{}, vend.Errorf(payments.ErrRefused, "%s: ORDER_NOT_EXIST %s", c.ID, no)
	}
	return o.status, nil
}

// Close closes a pending order; a paid one is vend.Conflict (ErrRefused).
func (c *Channel) Close(_ context.Context, no string) error {
	if err := c.begin("close", no); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	o, ok := c.orders[no]
	if !ok {
		return nil
	}
	if o.status.State == payments.PayPaid {
		return vend.Errorf(payments.ErrRefused, "%s: ORDERPAID %s", c.ID, no)
	}
	o.status.State = payments.PayClosed
	return nil
}

// Refund refunds part of a paid order once per refund number, never
// above what is left (ErrRefused, as a provider refuses it).
func (c *Channel) Refund(_ context.Context, r payments.RefundRequest) (payments.RefundStatus, error) {
	if err := c.begin("refund", r.OrderNo); err != nil {
		return payments.RefundStatus{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if rs, ok := c.refunds[r.RefundNo]; ok {
		return *rs, nil
	}
	o, ok := c.orders[r.OrderNo]
	if !ok || o.status.State != payments.PayPaid {
		return payments.RefundStatus{}, vend.Errorf(payments.ErrRefused, "%s: order %s not paid", c.ID, r.OrderNo)
	}
	var done int64
	for _, x := range c.refunds {
		if x.OrderNo == r.OrderNo && x.State != payments.RefundFailed {
			done += x.Amount.Minor
		}
	}
	if r.Amount.Minor <= 0 || done+r.Amount.Minor > o.status.Amount.Minor {
		return payments.RefundStatus{}, vend.Errorf(payments.ErrRefused, "%s: NOT_ENOUGH: %d refunded of %d, asked %d", c.ID, done, o.status.Amount.Minor, r.Amount.Minor)
	}
	rs := &payments.RefundStatus{OrderNo: r.OrderNo, RefundNo: r.RefundNo, ProviderRefundID: "prf_" + r.RefundNo, State: payments.RefundSucceeded, Amount: r.Amount, DoneAt: c.now()}
	if c.RefundPending {
		rs.State, rs.DoneAt = payments.RefundPending, time.Time{}
	}
	c.refunds[r.RefundNo] = rs
	return *rs, nil
}

// SettleRefund finishes a pending refund as succeeded or failed and returns it.
func (c *Channel) SettleRefund(refundNo string, st payments.RefundState) (payments.RefundStatus, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	rs, ok := c.refunds[refundNo]
	if !ok {
		return payments.RefundStatus{}, fmt.Errorf("paytest: no refund %s", refundNo)
	}
	rs.State, rs.DoneAt = st, c.now()
	return *rs, nil
}

// QueryRefund returns a refund's status; unknown is ErrRefused.
func (c *Channel) QueryRefund(_ context.Context, orderNo, refundNo string) (payments.RefundStatus, error) {
	if err := c.begin("query_refund", orderNo); err != nil {
		return payments.RefundStatus{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	rs, ok := c.refunds[refundNo]
	if !ok {
		return payments.RefundStatus{}, vend.Errorf(payments.ErrRefused, "%s: REFUND_NOT_EXIST %s", c.ID, refundNo)
	}
	return *rs, nil
}

// wire is a notification's body.
type wire struct {
	EventID string                 `json:"event_id"`
	Kind    string                 `json:"kind"`
	Payment *payments.Status       `json:"payment,omitempty"`
	Refund  *payments.RefundStatus `json:"refund,omitempty"`
}

// SignatureHeader carries the hex HMAC-SHA256 of the body.
const SignatureHeader = "X-Paytest-Signature"

func (c *Channel) sign(body []byte) string {
	m := hmac.New(sha256.New, c.Secret)
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// Notification returns the body and signature of a notification.
func (c *Channel) Notification(n payments.Notification) (body []byte, sig string) {
	w := wire{EventID: n.EventID, Kind: string(n.Kind)}
	if n.Kind == payments.NotifyPayment {
		w.Payment = &n.Payment
	} else {
		w.Refund = &n.Refund
	}
	body, _ = json.Marshal(w)
	return body, c.sign(body)
}

// NotifyRequest returns a signed notification as the provider would POST it to url.
func (c *Channel) NotifyRequest(url string, n payments.Notification) *http.Request {
	body, sig := c.Notification(n)
	r, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(string(body)))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set(SignatureHeader, sig)
	return r
}

// ParseNotification verifies the HMAC and decodes the body; anything else
// is ErrNotification (vend.Unauthorized).
func (c *Channel) ParseNotification(_ context.Context, r *http.Request) (payments.Notification, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		return payments.Notification{}, vend.Errorf(payments.ErrNotification, "%s: read body: %v", c.ID, err)
	}
	want, _ := hex.DecodeString(r.Header.Get(SignatureHeader))
	got, _ := hex.DecodeString(c.sign(body))
	if len(want) == 0 || !hmac.Equal(want, got) {
		return payments.Notification{}, vend.Errorf(payments.ErrNotification, "%s: signature does not verify", c.ID)
	}
	var w wire
	if err := json.Unmarshal(body, &w); err != nil || w.EventID == "" {
		return payments.Notification{}, vend.Errorf(payments.ErrNotification, "%s: malformed body", c.ID)
	}
	n := payments.Notification{EventID: w.EventID, Kind: payments.NotificationKind(w.Kind)}
	switch {
	case n.Kind == payments.NotifyPayment && w.Payment != nil:
		n.Payment = *w.Payment
	case n.Kind == payments.NotifyRefund && w.Refund != nil:
		n.Refund = *w.Refund
	default:
		return payments.Notification{}, vend.Errorf(payments.ErrNotification, "%s: kind %q", c.ID, w.Kind)
	}
	return n, nil
}

// AckNotification answers 200 {"code":"SUCCESS"} or 500 {"code":"FAIL"}.
func (c *Channel) AckNotification(w http.ResponseWriter, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, `{"code":"FAIL"}`)
		return
	}
	_, _ = io.WriteString(w, `{"code":"SUCCESS"}`)
}

// Statement returns the paid orders and refunds it holds (every day).
func (c *Channel) Statement(_ context.Context, day payments.Day) (payments.Statement, error) {
	if err := c.begin("statement", ""); err != nil {
		return payments.Statement{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st := payments.Statement{Channel: c.ID, Day: day}
	for _, o := range c.orders {
		if o.status.State == payments.PayPaid {
			st.Rows = append(st.Rows, payments.StatementRow{Kind: payments.RowPayment, At: o.status.PaidAt, OrderNo: o.o.No,
				ProviderTxID: o.status.ProviderTxID, Amount: o.status.Amount, Status: "SUCCESS"})
			st.Payments += o.status.Amount.Minor
			st.Currency = o.status.Amount.Currency
		}
	}
	for _, r := range c.refunds {
		if r.State == payments.RefundSucceeded {
			st.Rows = append(st.Rows, payments.StatementRow{Kind: payments.RowRefund, At: r.DoneAt, OrderNo: r.OrderNo, RefundNo: r.RefundNo,
				ProviderRefundID: r.ProviderRefundID, Amount: r.Amount, Status: "REFUND"})
			st.Refunds += r.Amount.Minor
		}
	}
	return st, nil
}
