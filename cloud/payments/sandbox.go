package payments

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
)

// SandboxName is the sandbox card's channel name (its clearing account's
// owner); the phone chooses it as payment source "card_sandbox".
const SandboxName = "sandbox_card"

// Sandbox is the development card channel: every order is paid by Create
// itself (PaysAtOnce), up to MaxPayment minor units. Anyone can mint
// wallet money with it, so the cloud program offers it only when
// configured for development, and the phone sees it marked as a test
// source. Its orders live in memory: after a restart, an order it never
// saw is unknown (ErrRefused) and the cloud's janitor closes it.
type Sandbox struct {
	MaxPayment int64
	Now        func() time.Time // time.Now when nil

	mu      sync.Mutex
	orders  map[string]Status
	refunds map[string]RefundStatus
}

var (
	_ Channel = (*Sandbox)(nil)
	_ Instant = (*Sandbox)(nil)
)

func (s *Sandbox) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Name returns "sandbox_card".
func (s *Sandbox) Name() string { return SandboxName }

// PaysAtOnce returns true.
func (s *Sandbox) PaysAtOnce() bool { return true }

// Source returns card_sandbox, marked Test.
func (s *Sandbox) Source() phoneapi.PaymentSource {
	return phoneapi.PaymentSource{ID: "card_sandbox", Kind: phoneapi.SourceCard, Name: "Test card •••• 4242", Test: true}
}

// Create pays o at once, unless it is above MaxPayment (ErrRefused).
func (s *Sandbox) Create(_ context.Context, o Order) (Action, error) {
	if s.MaxPayment > 0 && o.Amount.Minor > s.MaxPayment {
		return Action{}, vend.Errorf(ErrRefused, "sandbox_card: %s is above the per-payment limit", o.Amount)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.orders == nil {
		s.orders, s.refunds = map[string]Status{}, map[string]RefundStatus{}
	}
	if _, ok := s.orders[o.No]; !ok {
		s.orders[o.No] = Status{OrderNo: o.No, ProviderTxID: "sbx_" + o.No, State: PayPaid, Amount: o.Amount, PaidAt: s.now()}
	}
	return Action{ClientSecret: "sandbox_" + o.No, ProviderRef: "sbx_" + o.No}, nil
}

// Query returns a paid order it created, else ErrRefused.
func (s *Sandbox) Query(_ context.Context, no string) (Status, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.orders[no]
	if !ok {
		return Status{}, vend.Errorf(ErrRefused, "sandbox_card: ORDER_NOT_EXIST %s", no)
	}
	return st, nil
}

// Close refuses: its orders are paid at once (vend.Conflict), or unknown (closed).
func (s *Sandbox) Close(_ context.Context, no string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.orders[no]; ok {
		return vend.Errorf(ErrRefused, "sandbox_card: ORDERPAID %s", no)
	}
	return nil
}

// Refund succeeds at once up to what is left of the order.
func (s *Sandbox) Refund(_ context.Context, r RefundRequest) (RefundStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rs, ok := s.refunds[r.RefundNo]; ok {
		return rs, nil
	}
	st, ok := s.orders[r.OrderNo]
	if !ok {
		return RefundStatus{}, vend.Errorf(ErrRefused, "sandbox_card: ORDER_NOT_EXIST %s", r.OrderNo)
	}
	var done int64
	for _, x := range s.refunds {
		if x.OrderNo == r.OrderNo {
			done += x.Amount.Minor
		}
	}
	if done+r.Amount.Minor > st.Amount.Minor {
		return RefundStatus{}, vend.Errorf(ErrRefused, "sandbox_card: NOT_ENOUGH refundable on %s", r.OrderNo)
	}
	rs := RefundStatus{OrderNo: r.OrderNo, RefundNo: r.RefundNo, ProviderRefundID: "sbxr_" + r.RefundNo, State: RefundSucceeded, Amount: r.Amount, DoneAt: s.now()}
	s.refunds[r.RefundNo] = rs
	return rs, nil
}

// QueryRefund returns a refund it made, else ErrRefused.
func (s *Sandbox) QueryRefund(_ context.Context, _, refundNo string) (RefundStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rs, ok := s.refunds[refundNo]
	if !ok {
		return RefundStatus{}, vend.Errorf(ErrRefused, "sandbox_card: REFUND_NOT_EXIST %s", refundNo)
	}
	return rs, nil
}

// ParseNotification refuses everything: the sandbox sends none.
func (s *Sandbox) ParseNotification(context.Context, *http.Request) (Notification, error) {
	return Notification{}, vend.Errorf(ErrNotification, "sandbox_card sends no notifications")
}

// AckNotification answers with a JSON code.
func (s *Sandbox) AckNotification(w http.ResponseWriter, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
	}
	_ = json.NewEncoder(w).Encode(map[string]bool{"ok": err == nil})
}

// Statement returns no rows: the sandbox moves no money.
func (s *Sandbox) Statement(_ context.Context, day Day) (Statement, error) {
	return Statement{Channel: SandboxName, Day: day}, nil
}
