package httpapi

import (
	"net/http"
	"strconv"
	"strings"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/store"
)

// topUp answers TopUp: 201 and the order the payer acts on.
func (s *Server) topUp(w http.ResponseWriter, r *http.Request, key string, body []byte) {
	var req phoneapi.TopUpRequest
	if err := s.decodeBytes(body, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	p, err := s.svc.TopUp(r.Context(), userOf(r).ID, key, req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, p)
}

// getPayment answers GetPayment.
func (s *Server) getPayment(w http.ResponseWriter, r *http.Request) {
	order := r.PathValue("order")
	if order == "" || len(order) > 64 {
		s.fail(w, r, vend.Errorf(ErrField, "order: want 1-64 bytes"))
		return
	}
	p, err := s.svc.Payment(r.Context(), userOf(r).ID, order)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

// listPayments answers ListPayments: limit (1-100, 20) at a time, from
// the cursor "<created ms>.<order>" of the previous page.
func (s *Server) listPayments(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := phoneapi.DefaultSessionPage
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > phoneapi.MaxSessionPage {
			s.fail(w, r, vend.Errorf(ErrField, "limit: want 1-%d", phoneapi.MaxSessionPage))
			return
		}
		limit = n
	}
	var cur store.PaymentCursor
	if c := q.Get("cursor"); c != "" {
		ms, no, ok := strings.Cut(c, ".")
		n, err := strconv.ParseInt(ms, 10, 64)
		if !ok || err != nil || n < 0 || no == "" || len(c) > 128 {
			s.fail(w, r, vend.Errorf(ErrField, "cursor: not a cursor of this list"))
			return
		}
		cur = store.PaymentCursor{Created: n, OrderNo: no}
	}
	ps, next, err := s.svc.Payments(r.Context(), userOf(r).ID, cur, limit)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := phoneapi.PaymentList{Payments: ps}
	if next.OrderNo != "" {
		out.Next = strconv.FormatInt(next.Created, 10) + "." + next.OrderNo
	}
	writeJSON(w, http.StatusOK, out)
}

// withdraw answers Withdraw: 201 and the withdrawal with its refunds.
func (s *Server) withdraw(w http.ResponseWriter, r *http.Request, key string, body []byte) {
	var req phoneapi.WithdrawalRequest
	if err := s.decodeBytes(body, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	wd, err := s.svc.Withdraw(r.Context(), userOf(r).ID, key, req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, wd)
}

// channelNotify takes a provider's notification; the channel verifies it
// and writes the answer the provider expects.
func (s *Server) channelNotify(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := s.svc.HandleNotification(w, r, r.PathValue("channel")); err != nil {
		s.log.Warn("httpapi: channel notification", "channel", r.PathValue("channel"), "code", vend.CodeOf(err), "err", err)
	}
}

// OperatorRefundRequest is the body of POST
// /v1/operator/sessions/{session}/refund: how much of the session's
// charge goes back to the payer, and why (1-200 bytes).
type OperatorRefundRequest struct {
	Amount vend.Amount `json:"amount"`
	Reason string      `json:"reason"`
}

// Validate checks the amount and the reason.
func (q *OperatorRefundRequest) Validate() error {
	if q.Amount.Minor <= 0 {
		return vend.Errorf(ErrField, "amount.minor: %d is not positive", q.Amount.Minor)
	}
	if err := q.Amount.Currency.Validate(); err != nil {
		return vend.Errorf(ErrField, "amount.currency: %v", err)
	}
	if q.Reason == "" || len(q.Reason) > 200 {
		return vend.Errorf(ErrField, "reason: want 1-200 bytes")
	}
	return nil
}

// opRefund refunds a session of the operator's to the payer's original
// channel(s), once per Idempotency-Key (the store keeps the key with the
// refund, so a retry answers the same refund): 201 with the refund, or,
// above the operator's approval threshold, 202 with the approval it now
// waits for (service.RequestRefund).
func (s *Server) opRefund(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Idempotency-Key")
	if err := phoneapi.ValidateIdempotencyKey(key); err != nil {
		s.fail(w, r, vend.Errorf(ErrIdemKey, "%v", err))
		return
	}
	var req OperatorRefundRequest
	if err := s.decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	id, err := parseSession(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.opRefundOrApproval(w, r, id, key, req)
}
