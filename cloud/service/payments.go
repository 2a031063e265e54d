package service

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/payments"
	"beaconvend/cloud/store"
)

// ErrChannelNotFound is a notification for a channel the cloud does not run.
var ErrChannelNotFound = vend.E(vend.NotFound, "channel.not_found", "payments: no such channel")

// Router returns the payment router (channels by priority, limits, health).
func (s *Service) Router() *payments.Router { return s.router }

// channel returns the configured channel named name (its channel name,
// the owner of its clearing account).
func (s *Service) channel(name string) (*payments.Guarded, bool) {
	for _, c := range s.router.Channels() {
		if c.Name() == name {
			return c, true
		}
	}
	return nil, false
}

// TopUp opens a top-up order for user on the request's source (or, for
// "auto", the first channel by priority that takes the amount) and
// returns it: the payer acts on its code_url; the wallet is credited when
// the channel confirms (a notification or a query, whichever first). The
// order is recorded pending before the channel is called; a retry with
// the same key returns the same order and calls the channel again only if
// it never answered (with the same order number, which providers do not
// open twice). Routing happens only before the order exists: a channel
// that fails Create is not replaced by another. Errors: request.field
// (the wallet as source), money.currency_mismatch, source.not_found,
// source.limit (a *payments.LimitError naming alternatives),
// channel.refused, channel.unavailable, channel.unhealthy, the store's.
func (s *Service) TopUp(ctx context.Context, user, key string, req phoneapi.TopUpRequest) (phoneapi.Payment, error) {
	if req.Source == "wallet" {
		return phoneapi.Payment{}, vend.Errorf(ErrSourceUnusable, "the wallet cannot top up itself")
	}
	if req.Amount.Currency != s.opts.Currency {
		return phoneapi.Payment{}, vend.Errorf(vend.ErrMismatch, "the wallet is in %s", s.opts.Currency)
	}
	var ch *payments.Guarded
	prev, err := s.st.PaymentByKey(ctx, user, key)
	switch {
	case err == nil:
		c, ok := s.channel(prev.Channel)
		if !ok {
			return phoneapi.Payment{}, vend.Errorf(ErrSourceNotFound, "channel %s of order %s is no longer configured", prev.Channel, prev.OrderNo)
		}
		ch = c
	case errors.Is(err, store.ErrPaymentNotFound):
		if ch, err = s.router.Pick(ctx, user, req.Amount, req.Source); err != nil {
			return phoneapi.Payment{}, err
		}
		if err := s.requireStepUp(ctx, user, StepUpTopUp, req.Amount, key); err != nil {
			return phoneapi.Payment{}, err
		}
	default:
		return phoneapi.Payment{}, err
	}
	p, created, err := s.st.CreatePayment(ctx, store.NewPayment{OrderNo: payments.NewOrderNo("bv"), Channel: ch.Name(), User: user,
		Amount: req.Amount, IdemKey: key, Expires: s.now().Add(s.opts.PaymentTTL)})
	if err != nil {
		return phoneapi.Payment{}, err
	}
	if created {
		s.Metrics.pay.orders.WithLabelValues(p.Channel, "created").Inc()
	}
	if p.State != store.PaymentPending || p.CodeURL != "" {
		return s.phonePayment(p), nil
	}
	act, err := ch.Create(ctx, payments.Order{No: p.OrderNo, Amount: p.Amount, Description: "beaconvend wallet top-up",
		ExpiresAt: p.Expires, NotifyURL: s.notifyURL(ch.Name())})
	if err != nil {
		s.Metrics.pay.providerErr(ch.Name(), "create", err)
		if vend.KindOf(err) == vend.Conflict {
			// A business refusal: the provider has no payable order.
			if c, changed, cerr := s.st.ClosePayment(ctx, p.OrderNo, true); cerr != nil {
				s.log.Error("service: fail refused order", "order", p.OrderNo, "err", cerr)
			} else {
				s.Metrics.pay.closed(c, changed)
			}
		}
		// A technical failure leaves the order pending: a retry with the
		// same key asks again with the same number, and the payment
		// sweep closes it at its TTL.
		return phoneapi.Payment{}, err
	}
	code := act.CodeURL
	if code == "" {
		code = act.ClientSecret
	}
	if act.ProviderRef != "" {
		if err := s.st.SetPaymentRef(ctx, p.OrderNo, act.ProviderRef); err != nil {
			return phoneapi.Payment{}, err
		}
	}
	if err := s.st.SetPaymentCode(ctx, p.OrderNo, code); err != nil {
		return phoneapi.Payment{}, err
	}
	p.CodeURL = code
	if ch.PaysAtOnce() {
		if q, err := s.queryPayment(ctx, ch, p); err == nil {
			p = q
		} else {
			s.log.Warn("service: query instant order", "order", p.OrderNo, "err", err)
		}
	}
	return s.phonePayment(p), nil
}

func (s *Service) notifyURL(channel string) string {
	return strings.TrimRight(s.opts.PublicURL, "/") + "/v1/channels/" + channel + "/notify"
}

// phonePayment converts a record to the phone API's Payment.
func (s *Service) phonePayment(p store.Payment) phoneapi.Payment {
	out := phoneapi.Payment{Order: p.OrderNo, Source: p.Channel, State: phoneapi.PaymentState(p.State), Amount: p.Amount,
		CreatedAt: p.Created, ExpiresAt: p.Expires, PaidAt: p.Paid, ProviderTxID: p.ProviderTxID,
		Refunded: vend.Amount{Minor: p.Refunded, Currency: p.Amount.Currency}}
	if c, ok := s.channel(p.Channel); ok {
		src := c.Source()
		out.Source, out.Test = src.ID, src.Test
		if src.Kind == phoneapi.SourceCard {
			out.ClientSecret = p.CodeURL
		} else {
			out.CodeURL = p.CodeURL
		}
	} else {
		out.CodeURL = p.CodeURL
	}
	if p.State != store.PaymentPending {
		out.CodeURL, out.ClientSecret = "", "" // nothing left to act on
	}
	return out
}

// queryPayment asks the channel for an order's state and records it.
func (s *Service) queryPayment(ctx context.Context, ch *payments.Guarded, p store.Payment) (store.Payment, error) {
	st, err := ch.Query(ctx, p.OrderNo)
	if err != nil {
		s.Metrics.pay.providerErr(ch.Name(), "query", err)
		return p, err
	}
	p, _, err = s.applyStatus(ctx, ch.Name(), st, "")
	return p, err
}

// applyStatus records what a channel says of an order: paid credits the
// wallet once; closed or failed ends a pending order; pending changes
// nothing. It reports whether the order's state moved now.
func (s *Service) applyStatus(ctx context.Context, channel string, st payments.Status, eventID string) (p store.Payment, changed bool, err error) {
	// A session order (a checkout's) moves its checkout on once changed.
	defer func() {
		if changed && p.Purpose == store.PurposeSession {
			s.orderChanged(ctx, p.OrderNo)
		}
	}()
	if st.State == payments.PayAuthorized || st.State == payments.PayActionRequired {
		cur, err := s.st.GetPayment(ctx, st.OrderNo)
		if err == nil && cur.Channel != channel {
			err = vend.Errorf(store.ErrPaymentNotFound, "%s order %q", channel, st.OrderNo)
		}
		if err != nil {
			return store.Payment{}, false, err
		}
		return s.applyHoldStatus(ctx, channel, cur, st, eventID)
	}
	if cur, err := s.st.GetPayment(ctx, st.OrderNo); err == nil && cur.Channel == channel && cur.CaptureMode == store.CaptureManual {
		return s.applyHoldStatus(ctx, channel, cur, st, eventID)
	}
	switch st.State {
	case payments.PayPaid:
		p, credited, err := s.st.MarkPaid(ctx, store.Paid{Channel: channel, OrderNo: st.OrderNo, ProviderTxID: st.ProviderTxID,
			Amount: st.Amount, PaidAt: st.PaidAt, EventID: eventID})
		if credited {
			s.Metrics.pay.orders.WithLabelValues(channel, "paid").Inc()
			s.log.Info("service: top-up paid", "channel", channel, "order", st.OrderNo, "amount", st.Amount.String())
		}
		if errors.Is(err, store.ErrPaymentMismatch) { // the store recorded the alert with the refusal
			s.Metrics.pay.alerts.WithLabelValues(channel, store.ErrPaymentMismatch.Code).Inc()
		}
		return p, credited, err
	case payments.PayClosed, payments.PayFailed:
		// Only the order's own channel may end it: check before closing.
		if cur, err := s.st.GetPayment(ctx, st.OrderNo); err != nil {
			return store.Payment{}, false, err
		} else if cur.Channel != channel {
			return store.Payment{}, false, vend.Errorf(store.ErrPaymentNotFound, "%s order %q", channel, st.OrderNo)
		}
		p, changed, err := s.st.ClosePayment(ctx, st.OrderNo, st.State == payments.PayFailed)
		if err == nil {
			s.Metrics.pay.closed(p, changed)
		}
		return p, changed, err
	default:
		p, err := s.st.GetPayment(ctx, st.OrderNo)
		if err == nil && p.Channel != channel {
			return store.Payment{}, false, vend.Errorf(store.ErrPaymentNotFound, "%s order %q", channel, st.OrderNo)
		}
		return p, false, err
	}
}

// Payment returns one of user's top-up orders. A pending order older than
// PaymentLate whose notification has not come is first asked of its
// channel (Query), so the phone sees the channel's authoritative state; a
// channel that does not answer leaves the order as recorded. Errors:
// payment.not_found, the store's.
func (s *Service) Payment(ctx context.Context, user, order string) (phoneapi.Payment, error) {
	p, err := s.st.UserPayment(ctx, user, order)
	if err != nil {
		return phoneapi.Payment{}, err
	}
	if p.State == store.PaymentPending && s.now().Sub(p.Created) >= s.opts.PaymentLate {
		if ch, ok := s.channel(p.Channel); ok {
			if q, err := s.queryPayment(ctx, ch, p); err == nil {
				p = q
			} else if !errors.Is(err, store.ErrPaymentMismatch) {
				s.log.Warn("service: query late order", "order", p.OrderNo, "err", err)
			}
		}
	}
	return s.phonePayment(p), nil
}

// Payments returns a page of user's top-up orders, newest first.
func (s *Service) Payments(ctx context.Context, user string, cur store.PaymentCursor, limit int) ([]phoneapi.Payment, store.PaymentCursor, error) {
	ps, next, err := s.st.UserPayments(ctx, user, cur, limit)
	if err != nil {
		return nil, store.PaymentCursor{}, err
	}
	out := make([]phoneapi.Payment, 0, len(ps))
	for _, p := range ps {
		out = append(out, s.phonePayment(p))
	}
	return out, next, nil
}

// HandleNotification verifies and applies one provider notification to
// channel and answers the provider (AckNotification): a verified payment
// notification credits its order once; a refund notification records
// the refund's outcome once (a failure gives the money back); a
// duplicate event changes nothing and is acknowledged. A forged,
// tampered or stale notification changes nothing and is answered as a
// failure. It returns what went wrong, for the log.
func (s *Service) HandleNotification(w http.ResponseWriter, r *http.Request, channel string) error {
	ch, ok := s.channel(channel)
	if !ok {
		http.Error(w, "unknown channel", http.StatusNotFound)
		// Not labelled by the path's name: anyone may post to any path.
		s.Metrics.pay.refused.WithLabelValues("", "unknown_channel").Inc()
		return vend.Errorf(ErrChannelNotFound, "%q", channel)
	}
	n, err := ch.ParseNotification(r.Context(), r)
	if err != nil {
		s.Metrics.pay.refused.WithLabelValues(ch.Name(), "signature").Inc()
		ch.AckNotification(w, err)
		return err
	}
	changed, err := s.applyNotification(r.Context(), ch.Name(), n)
	switch {
	case err == nil && changed:
		s.Metrics.pay.accepted.WithLabelValues(ch.Name(), "applied").Inc()
	case err == nil:
		s.Metrics.pay.accepted.WithLabelValues(ch.Name(), "duplicate").Inc()
	case ackable(err) == nil:
		s.Metrics.pay.accepted.WithLabelValues(ch.Name(), "unknown_order").Inc()
	case errors.Is(err, store.ErrPaymentMismatch) || errors.Is(err, store.ErrRefundStateClash):
		s.Metrics.pay.refused.WithLabelValues(ch.Name(), "mismatch").Inc()
	default:
		s.Metrics.pay.refused.WithLabelValues(ch.Name(), "error").Inc()
	}
	ch.AckNotification(w, ackable(err))
	return err
}

// ackable is the error the provider is told: an order or refund the
// cloud does not know, from a verified notification, is acknowledged
// (alerted, never retried forever); anything else that failed is not.
func ackable(err error) error {
	if errors.Is(err, store.ErrPaymentNotFound) || errors.Is(err, store.ErrRefundNotFound) {
		return nil
	}
	return err
}

// applyNotification applies a verified notification and reports whether
// it changed an order or refund (false: a duplicate event, or news the
// records already held).
func (s *Service) applyNotification(ctx context.Context, channel string, n payments.Notification) (bool, error) {
	switch n.Kind {
	case payments.NotifyPayment:
		_, changed, err := s.applyStatus(ctx, channel, n.Payment, n.EventID)
		if errors.Is(err, store.ErrPaymentNotFound) {
			_ = s.recordAlert(ctx, store.ChannelAlert{Channel: channel, OrderNo: n.Payment.OrderNo, Code: "payment.not_found",
				Detail: "verified notification " + n.EventID + " for an order the cloud does not know"})
		}
		return changed, err
	case payments.NotifyRefund:
		_, changed, err := s.applyRefund(ctx, refundUpdate(channel, n.Refund, n.EventID))
		if errors.Is(err, store.ErrRefundNotFound) {
			_ = s.recordAlert(ctx, store.ChannelAlert{Channel: channel, OrderNo: n.Refund.OrderNo, Code: "refund.not_found",
				Detail: "verified notification " + n.EventID + " for refund " + n.Refund.RefundNo + " the cloud does not know"})
		}
		return changed, err
	case payments.NotifyIgnored:
		return false, nil // verified, but about nothing the cloud acts on: acknowledged so it is not sent again
	}
	return false, vend.Errorf(payments.ErrNotification, "%s: kind %q", channel, n.Kind)
}

func refundUpdate(channel string, rs payments.RefundStatus, eventID string) store.RefundUpdate {
	return store.RefundUpdate{Channel: channel, RefundNo: rs.RefundNo, State: store.RefundState(rs.State),
		ProviderRefundID: rs.ProviderRefundID, Amount: rs.Amount, DoneAt: rs.DoneAt, EventID: eventID}
}

// PaymentSweep counts what SweepPayments did.
type PaymentSweep struct {
	Closed   int // pending orders closed after their TTL
	Credited int // expired orders the channel said were paid after all
	Refunds  int // pending refunds whose outcome was recorded
}

// SweepPayments gives every expired pending order its bounded exit:
// Close at the channel, then closed in the records; a channel answering
// that the order is paid (vend.Conflict) is queried and the order
// credited; a channel that does not answer is tried again next time.
// Refunds still pending after RefundRetry are asked of their channel
// (QueryRefund), and sent again when the channel never saw them (the
// cloud died between recording and sending). Safe on several instances.
func (s *Service) SweepPayments(ctx context.Context) (PaymentSweep, error) {
	var out PaymentSweep
	exp, err := s.st.ExpiredPayments(ctx, 100)
	if err != nil {
		return out, err
	}
	for _, p := range exp {
		ch, ok := s.channel(p.Channel)
		if !ok {
			continue
		}
		err := ch.Close(ctx, p.OrderNo)
		s.Metrics.pay.providerErr(ch.Name(), "close", err)
		switch {
		case err == nil:
			if c, changed, err := s.st.ClosePayment(ctx, p.OrderNo, false); err != nil {
				return out, err
			} else if changed {
				s.Metrics.pay.closed(c, changed)
				out.Closed++
			}
		case vend.KindOf(err) == vend.Conflict:
			q, qerr := s.queryPayment(ctx, ch, p)
			if qerr != nil {
				s.log.Warn("service: query order the channel would not close", "order", p.OrderNo, "err", qerr)
				continue
			}
			if q.State == store.PaymentPaid {
				out.Credited++
			}
		default:
			s.log.Warn("service: close expired order", "order", p.OrderNo, "err", err)
		}
	}
	pend, err := s.st.PendingRefunds(ctx, s.now().Add(-s.opts.RefundRetry), 100)
	if err != nil {
		return out, err
	}
	for _, f := range pend {
		ch, ok := s.channel(f.Channel)
		if !ok {
			continue
		}
		rs, err := ch.QueryRefund(ctx, f.OrderNo, f.RefundNo)
		s.Metrics.pay.providerErr(ch.Name(), "query_refund", err)
		if vend.KindOf(err) == vend.Conflict {
			// The channel never saw it: send it now (once per refund number).
			s.sendRefund(ctx, ch, f)
			out.Refunds++
			continue
		}
		if err != nil {
			s.log.Warn("service: query refund", "refund", f.RefundNo, "err", err)
			continue
		}
		if _, changed, err := s.applyRefund(ctx, refundUpdate(ch.Name(), rs, "")); err != nil {
			s.log.Error("service: apply refund", "refund", f.RefundNo, "err", err)
		} else if changed {
			out.Refunds++
		}
	}
	return out, nil
}

// sendRefund asks the channel to refund f and records the answer: a
// refusal fails the refund (its money goes back where it came from); a
// technical failure leaves it pending for the sweep.
func (s *Service) sendRefund(ctx context.Context, ch *payments.Guarded, f store.Refund) store.Refund {
	rs, err := ch.Refund(ctx, payments.RefundRequest{OrderNo: f.OrderNo, RefundNo: f.RefundNo, Amount: f.Amount,
		Total: vend.Amount{Minor: f.OrderTotal, Currency: f.Amount.Currency}, Reason: f.Reason, NotifyURL: s.notifyURL(ch.Name())})
	s.Metrics.pay.providerErr(ch.Name(), "refund", err)
	var up store.RefundUpdate
	switch {
	case err == nil:
		s.Metrics.pay.refunds.WithLabelValues(ch.Name(), "sent").Inc()
		rs.RefundNo = f.RefundNo
		up = refundUpdate(ch.Name(), rs, "")
	case vend.KindOf(err) == vend.Conflict:
		s.log.Warn("service: refund refused", "refund", f.RefundNo, "err", err)
		up = store.RefundUpdate{Channel: ch.Name(), RefundNo: f.RefundNo, State: store.RefundFailed}
	default:
		s.log.Warn("service: refund not sent", "refund", f.RefundNo, "err", err)
		return f
	}
	g, _, err := s.applyRefund(ctx, up)
	if err != nil {
		s.log.Error("service: record refund", "refund", f.RefundNo, "err", err)
		return f
	}
	return g
}

// sendRefunds sends each pending refund of r to its channel.
func (s *Service) sendRefunds(ctx context.Context, r store.RefundRequest) store.RefundRequest {
	for i, f := range r.Refunds {
		if f.State != store.RefundPending {
			continue
		}
		if ch, ok := s.channel(f.Channel); ok {
			r.Refunds[i] = s.sendRefund(ctx, ch, f)
		}
	}
	return r
}

func (s *Service) refundParts(fs []store.Refund) []phoneapi.RefundPart {
	out := []phoneapi.RefundPart{}
	for _, f := range fs {
		src := f.Channel
		if c, ok := s.channel(f.Channel); ok {
			src = c.Source().ID
		}
		out = append(out, phoneapi.RefundPart{RefundNo: f.RefundNo, Order: f.OrderNo, Source: src, Amount: f.Amount,
			State: phoneapi.RefundState(f.State), ProviderRefundID: f.ProviderRefundID})
	}
	return out
}

// Withdraw returns amount of user's wallet to the channels it came
// through, against the user's paid orders oldest refundable first (see
// store.Withdraw), sends each refund and returns the withdrawal. Once per
// key: a retry returns the withdrawal as it stands. Errors:
// money.currency_mismatch, refund.exceeds_refundable,
// funds.insufficient, idempotency.conflict, the store's.
func (s *Service) Withdraw(ctx context.Context, user, key string, req phoneapi.WithdrawalRequest) (phoneapi.Withdrawal, error) {
	if req.Amount.Currency != s.opts.Currency {
		return phoneapi.Withdrawal{}, vend.Errorf(vend.ErrMismatch, "the wallet is in %s", s.opts.Currency)
	}
	if err := s.requireStepUp(ctx, user, StepUpWithdrawal, req.Amount, key); err != nil {
		return phoneapi.Withdrawal{}, err
	}
	r, err := s.st.Withdraw(ctx, user, req.Amount, key)
	if err != nil {
		return phoneapi.Withdrawal{}, err
	}
	if !r.Duplicate {
		r = s.sendRefunds(ctx, r)
	}
	return s.phoneWithdrawal(r), nil
}

func (s *Service) phoneWithdrawal(r store.RefundRequest) phoneapi.Withdrawal {
	w := phoneapi.Withdrawal{ID: r.ID, Amount: r.Amount, Refunds: s.refundParts(r.Refunds)}
	var pending, ok, failed int
	for _, f := range r.Refunds {
		switch f.State {
		case store.RefundPending:
			pending++
		case store.RefundSucceeded:
			ok++
		default:
			failed++
		}
	}
	switch {
	case pending > 0:
		w.State = phoneapi.WithdrawalPending
	case failed == 0:
		w.State = phoneapi.WithdrawalSucceeded
	case ok == 0:
		w.State = phoneapi.WithdrawalFailed
	default:
		w.State = phoneapi.WithdrawalPartial
	}
	return w
}

// SessionRefund is an operator's refund of a session's charge.
type SessionRefund struct {
	Session vend.SessionID        `json:"session"`
	Amount  vend.Amount           `json:"amount"`
	Wallet  vend.Amount           `json:"wallet"`  // the part returned to the payer's wallet
	Refunds []phoneapi.RefundPart `json:"refunds"` // the parts returned through the payer's channels
}

// RefundSession refunds amount of a session of operator's, with a reason,
// to the original channel(s) of the payer's money and the rest to the
// wallet (see store.RefundSession), and sends each channel refund. Once
// per key. Errors: session.not_found, session.state,
// refund.exceeds_refundable, funds.insufficient, store.input (reason),
// idempotency.conflict.
func (s *Service) RefundSession(ctx context.Context, operator string, id vend.SessionID, key string, amount vend.Amount, reason string) (SessionRefund, error) {
	if err := s.authorizeFor(ctx, operator, PermRefund); err != nil {
		return SessionRefund{}, err
	}
	r, err := s.st.RefundSession(ctx, operator, id, amount, reason, key)
	if err != nil {
		return SessionRefund{}, err
	}
	if !r.Duplicate {
		s.audited(ctx, operator, "session.refund", id.String(), nil,
			map[string]any{"amount": r.Amount, "wallet": vend.Amount{Minor: r.Wallet, Currency: r.Amount.Currency}, "reason": reason, "key": key})
	}
	if !r.Duplicate {
		r = s.sendRefunds(ctx, r)
	}
	return SessionRefund{Session: id, Amount: r.Amount, Wallet: vend.Amount{Minor: r.Wallet, Currency: r.Amount.Currency},
		Refunds: s.refundParts(r.Refunds)}, nil
}
