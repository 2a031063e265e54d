package service

import (
	"context"
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/payments"
	"beaconvend/cloud/store"
)

// payMetrics are the payment channels' collectors (see Metrics). Each
// counter is incremented where the store or the provider says the event
// happened, once: an order is counted paid when MarkPaid credited it, not
// per notification or query that reported it.
type payMetrics struct {
	orders   *prometheus.CounterVec // channel, state: created, paid, closed, failed
	accepted *prometheus.CounterVec // channel, result: applied, duplicate, unknown_order
	refused  *prometheus.CounterVec // channel, reason: signature, mismatch, error, unknown_channel
	provErrs *prometheus.CounterVec // channel, op, kind: refused, technical, unhealthy
	refunds  *prometheus.CounterVec // channel, state: sent, succeeded, failed
	alerts   *prometheus.CounterVec // channel, code
}

func newPayMetrics(reg prometheus.Registerer, chans []*payments.Guarded) payMetrics {
	m := payMetrics{
		orders: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "beaconvend_payment_orders_total", Help: "Top-up orders by channel and what happened: created (recorded), paid (the wallet credited, once per order), closed (expired and closed at the provider), failed (the provider refused or failed it).",
		}, []string{"channel", "state"}),
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "beaconvend_payment_notifications_accepted_total", Help: "Verified provider notifications acknowledged, by channel and result: applied (changed an order or refund), duplicate (an event handled before, or news the records already held), unknown_order (alerted).",
		}, []string{"channel", "result"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "beaconvend_payment_notifications_refused_total", Help: "Provider notifications answered as failed, by channel and reason: signature (did not verify: forged, tampered, malformed), mismatch (amount, transaction or refund state contradicts the records; alerted), error (the records could not be written), unknown_channel (channel empty).",
		}, []string{"channel", "reason"}),
		provErrs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "beaconvend_payment_provider_errors_total", Help: "Failed calls to a channel's provider, by channel, operation (create, query, close, refund, query_refund) and kind: refused (a business answer), technical (no proper answer; feeds the breaker), unhealthy (not sent: the breaker is open).",
		}, []string{"channel", "op", "kind"}),
		refunds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "beaconvend_payment_refunds_total", Help: "Channel refunds by channel and state: sent (the provider accepted the request), succeeded, failed (recorded final, once per refund).",
		}, []string{"channel", "state"}),
		alerts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "beaconvend_payment_channel_alerts_total", Help: "Channel alerts recorded for an operator, by channel and code (payment.mismatch, refund.state, payment.not_found, refund.not_found, recon.*).",
		}, []string{"channel", "code"}),
	}
	reg.MustRegister(m.orders, m.accepted, m.refused, m.provErrs, m.refunds, m.alerts)
	for _, c := range chans {
		b := c.Breaker
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "beaconvend_payment_breaker_open", Help: "1 while the channel's breaker is open or half-open (technical failures in a row, no success since), 0 when closed; read from memory at each scrape.",
			ConstLabels: prometheus.Labels{"channel": c.Name()},
		}, func() float64 {
			if b.Open() {
				return 1
			}
			return 0
		}))
		for _, st := range []string{"created", "paid", "closed", "failed"} {
			m.orders.WithLabelValues(c.Name(), st)
		}
	}
	return m
}

// providerErr counts a failed call to a channel's provider.
func (m payMetrics) providerErr(channel, op string, err error) {
	if err == nil || errors.Is(err, context.Canceled) {
		return
	}
	kind := "refused"
	switch {
	case errors.Is(err, payments.ErrUnhealthy):
		kind = "unhealthy"
	case vend.KindOf(err) == vend.Transient || vend.KindOf(err) == vend.Internal || errors.Is(err, context.DeadlineExceeded):
		kind = "technical"
	}
	m.provErrs.WithLabelValues(channel, op, kind).Inc()
}

// closed counts an order the store moved to closed or failed.
func (m payMetrics) closed(p store.Payment, changed bool) {
	if changed {
		m.orders.WithLabelValues(p.Channel, string(p.State)).Inc()
	}
}

// recordAlert records a channel alert and counts it.
func (s *Service) recordAlert(ctx context.Context, a store.ChannelAlert) error {
	if err := s.st.RecordChannelAlert(ctx, a); err != nil {
		return err
	}
	s.Metrics.pay.alerts.WithLabelValues(a.Channel, a.Code).Inc()
	return nil
}

// applyRefund records a refund's outcome and counts a final state reached
// now, or the alert the store recorded for a contradicting one.
func (s *Service) applyRefund(ctx context.Context, up store.RefundUpdate) (store.Refund, bool, error) {
	f, changed, err := s.st.ApplyRefund(ctx, up)
	switch {
	case err == nil && changed:
		s.Metrics.pay.refunds.WithLabelValues(up.Channel, string(f.State)).Inc()
		if f.State != store.RefundPending {
			s.refundDone(f) // a checkout's refund may finish it
		}
	case errors.Is(err, store.ErrRefundStateClash):
		s.Metrics.pay.alerts.WithLabelValues(up.Channel, store.ErrRefundStateClash.Code).Inc()
	}
	return f, changed, err
}
