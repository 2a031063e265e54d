package service

import (
	"context"
	"errors"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
)

// Metrics are the service's Prometheus collectors, all under the
// "beaconvend_" namespace:
//
//	beaconvend_sessions_total{state}                  sessions that reached a final state on this instance (settled, refunded, failed, expired)
//	beaconvend_authorize_latency_seconds               StartSession's wait from publishing Authorize to the device's reply
//	beaconvend_ingest_messages_total{leaf,result}      uplinks handled: result ok, duplicate, ignored, refused, error
//	beaconvend_usage_signature_failures_total          usage reports whose signature did not verify
//	beaconvend_ledger_imbalance_minor                  sum of |imbalance| over currencies (store.LedgerImbalance, every GaugeInterval); must read 0
//	beaconvend_devices_online                          devices the database holds online (counted every GaugeInterval)
//	beaconvend_telemetry_flush_seconds                 time of one coalesced telemetry write (one transaction)
//	beaconvend_telemetry_dropped_total                 coalesced telemetry updates lost to a failed flush
//	beaconvend_sessions_unreported                     sessions in state unreported (hold kept, machine freed), as the last sweep counted them
//	beaconvend_late_captures_total                     valid reports that came after their session was closed without one, captured late
//	beaconvend_late_receivable_minor_total             minor units of late captures the wallet could not cover (booked as receivable)
//	beaconvend_envelope_ts_skewed_total                uplinks whose envelope ts was more than MaxClockSkew ahead of the cloud's clock (clamped)
//	beaconvend_presence_offline_total{cause}           devices marked offline: will, disconnect (embedded broker hook), stale (no uplink within the bound), state (the device said so)
//	beaconvend_dead_letters_total{code}                usage reports no key verifies, dead-lettered and acknowledged (alert on any)
//	beaconvend_janitor_pruned_total{table}             rows the janitor deleted past their retention window
//	beaconvend_janitor_errors_total                    janitor runs that failed
//	beaconvend_key_rotation_steps_total{step}          device-key rotation steps: propose_sent, proposed, refused, commit_sent, committed, restarted, promoted
//	beaconvend_relay_grants_total{reason}              grants offered to the phone for relay over BLE: offline, no_reply, always
//	beaconvend_relay_uploads_total{result}             usage reports uploaded by phones: ok (settled), duplicate (held already, by phone or MQTT), refused
//
// Payment channels (per configured channel; each counted once, where the
// records or the provider say it happened, never by a query at scrape):
//
//	beaconvend_payment_orders_total{channel,state}                     top-up orders: created, paid (wallet credited, once per order however many notifications and queries report it), closed (TTL), failed (refused)
//	beaconvend_payment_notifications_accepted_total{channel,result}    verified notifications acknowledged: applied, duplicate (event seen before, or news the records held), unknown_order (alerted)
//	beaconvend_payment_notifications_refused_total{channel,reason}     notifications answered as failed: signature (forged, tampered, malformed), mismatch (alerted), error, unknown_channel (channel "")
//	beaconvend_payment_provider_errors_total{channel,op,kind}          failed provider calls by op (create, query, close, refund, query_refund) and kind: refused, technical, unhealthy (breaker open, not sent)
//	beaconvend_payment_breaker_open{channel}                           1 while the channel's breaker is open or half-open, else 0 (memory, read per scrape)
//	beaconvend_payment_refunds_total{channel,state}                    channel refunds: sent (provider accepted the request), succeeded, failed (final, once per refund)
//	beaconvend_payment_channel_alerts_total{channel,code}              channel alerts recorded for an operator, by code (payment.mismatch, refund.state, payment.not_found, refund.not_found, recon.*)
//
// Reconciliation's own metrics are registered by cloud/payments/reconcile.
type Metrics struct {
	unreported     prometheus.Gauge
	lateCaptures   prometheus.Counter
	lateReceivable prometheus.Counter
	sessions       *prometheus.CounterVec
	authorize      prometheus.Histogram
	ingest         *prometheus.CounterVec
	sigFails       prometheus.Counter
	telFlush       prometheus.Histogram
	telDropped     prometheus.Counter

	skewed       prometheus.Counter
	offline      *prometheus.CounterVec
	deadLetters  *prometheus.CounterVec
	pruned       *prometheus.CounterVec
	janitorErrs  prometheus.Counter
	rotation     *prometheus.CounterVec
	relayGrants  *prometheus.CounterVec
	relayUploads *prometheus.CounterVec
	onlineGauge  prometheus.Gauge
	imbalance    prometheus.Gauge
	online       prometheus.Gauge

	pay payMetrics
}

func newMetrics(s *Service, reg *prometheus.Registry) *Metrics {
	m := &Metrics{
		sessions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "beaconvend_sessions_total", Help: "Sessions that reached a final state, by state.",
		}, []string{"state"}),
		authorize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "beaconvend_authorize_latency_seconds", Help: "Time from publishing Authorize to the device's reply.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2, 3, 5, 10},
		}),
		ingest: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "beaconvend_ingest_messages_total", Help: "Device uplinks handled, by leaf and result.",
		}, []string{"leaf", "result"}),
		sigFails: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "beaconvend_usage_signature_failures_total", Help: "Usage reports refused because their signature did not verify.",
		}),
		telFlush: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "beaconvend_telemetry_flush_seconds", Help: "Time of one coalesced telemetry write (one transaction).",
			Buckets: []float64{.001, .005, .01, .05, .1, .5, 1, 5},
		}),
		telDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "beaconvend_telemetry_dropped_total", Help: "Coalesced telemetry updates lost to a failed flush.",
		}),
	}
	m.unreported = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "beaconvend_sessions_unreported", Help: "Sessions in state unreported (hold kept, machine freed), as the last sweep counted them.",
	})
	m.lateCaptures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "beaconvend_late_captures_total", Help: "Valid usage reports that came after their session was closed without one, captured late.",
	})
	m.lateReceivable = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "beaconvend_late_receivable_minor_total", Help: "Minor units of late captures the wallet could not cover, booked as owed by the payer.",
	})
	reg.MustRegister(m.unreported, m.lateCaptures, m.lateReceivable)
	m.skewed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "beaconvend_envelope_ts_skewed_total", Help: "Uplinks whose envelope ts was more than MaxClockSkew ahead of the cloud's clock; clamped.",
	})
	m.offline = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "beaconvend_presence_offline_total", Help: "Devices marked offline, by cause: will, disconnect, stale, state.",
	}, []string{"cause"})
	m.deadLetters = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "beaconvend_dead_letters_total", Help: "Usage reports no key verifies: dead-lettered and acknowledged. Alert on any.",
	}, []string{"code"})
	m.pruned = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "beaconvend_janitor_pruned_total", Help: "Rows the janitor deleted past their retention window, by table.",
	}, []string{"table"})
	m.janitorErrs = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "beaconvend_janitor_errors_total", Help: "Janitor runs that failed.",
	})
	m.rotation = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "beaconvend_key_rotation_steps_total", Help: "Device-key rotation steps taken, by step.",
	}, []string{"step"})
	m.relayGrants = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "beaconvend_relay_grants_total", Help: "Grants offered to the phone for relay over BLE, by reason (offline, no_reply, always).",
	}, []string{"reason"})
	m.relayUploads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "beaconvend_relay_uploads_total", Help: "Usage reports uploaded by phones, by result (ok, duplicate, refused).",
	}, []string{"result"})
	reg.MustRegister(m.skewed, m.offline, m.deadLetters, m.pruned, m.janitorErrs, m.rotation, m.relayGrants, m.relayUploads)
	// Both gauges read values the gauge job computes (RefreshGauges, every
	// Options.GaugeInterval): a scrape never queries the database, so a
	// scraper cannot load it, however large the ledger or often the scrape.
	m.imbalance = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "beaconvend_ledger_imbalance_minor", Help: "Sum over currencies of the absolute ledger imbalance in minor units, as the last periodic check found it; anything but 0 is a bug (-1: the check failed).",
	})
	// Read from the database, the one place presence is decided, so the
	// gauge and the operator API agree, on every instance (within a period).
	m.online = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "beaconvend_devices_online", Help: "Devices the database holds online (connected within the presence bound), as the last periodic count found them (-1: the count failed).",
	})
	imbalance, online := m.imbalance, m.online
	m.onlineGauge = online
	reg.MustRegister(m.sessions, m.authorize, m.ingest, m.sigFails, m.telFlush, m.telDropped, imbalance, online,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.pay = newPayMetrics(reg, s.opts.Channels)
	return m
}

// RefreshGauges recomputes the ledger-imbalance and online-devices gauges
// from the store (a full ledger check and a count); Run calls it every
// Options.GaugeInterval, New once. A failed query sets its gauge to -1 and
// is returned.
func (s *Service) RefreshGauges(ctx context.Context) error {
	var errs []error
	imb, err := s.st.LedgerImbalance(ctx)
	if err != nil {
		s.Metrics.imbalance.Set(-1)
		errs = append(errs, err)
	} else {
		var sum int64
		for _, v := range imb {
			if v < 0 {
				v = -v
			}
			sum += v
		}
		s.Metrics.imbalance.Set(float64(sum))
	}
	n, err := s.st.OnlineDevices(ctx)
	if err != nil {
		s.Metrics.online.Set(-1)
		errs = append(errs, err)
	} else {
		s.Metrics.online.Set(float64(n))
	}
	return errors.Join(errs...)
}

// LedgerImbalance returns what the beaconvend_ledger_imbalance_minor gauge
// reads now.
func (m *Metrics) LedgerImbalance() float64 { return gaugeValue(m.imbalance) }

// LateCaptures returns the late captures counted so far.
func (m *Metrics) LateCaptures() float64 { return counterValue(m.lateCaptures) }

// Unreported returns the unreported sessions the last sweep counted.
func (m *Metrics) Unreported() float64 {
	var d dto.Metric
	_ = m.unreported.Write(&d)
	return d.GetGauge().GetValue()
}

// SignatureFailures returns the usage signature failures counted so far.
func (m *Metrics) SignatureFailures() float64 { return counterValue(m.sigFails) }

func counterValue(c prometheus.Counter) float64 {
	var out = make(chan prometheus.Metric, 1)
	c.Collect(out)
	mm := <-out
	var d dto.Metric
	_ = mm.Write(&d)
	return d.GetCounter().GetValue()
}

// DevicesOnline returns what the beaconvend_devices_online gauge reads now.
func (m *Metrics) DevicesOnline() float64 { return gaugeValue(m.onlineGauge) }

// ClockSkewed returns the uplinks counted with an envelope ts too far ahead.
func (m *Metrics) ClockSkewed() float64 { return counterValue(m.skewed) }

// DeadLetters returns the usage reports dead-lettered so far (all codes).
func (m *Metrics) DeadLetters() float64 { return vecSum(m.deadLetters) }

// Offline returns the devices marked offline for cause so far.
func (m *Metrics) Offline(cause string) float64 {
	return counterValue(m.offline.WithLabelValues(cause))
}

// Pruned returns the rows the janitor deleted from table so far.
func (m *Metrics) Pruned(table string) float64 { return counterValue(m.pruned.WithLabelValues(table)) }

func gaugeValue(g prometheus.Collector) float64 {
	out := make(chan prometheus.Metric, 1)
	g.Collect(out)
	var d dto.Metric
	_ = (<-out).Write(&d)
	return d.GetGauge().GetValue()
}

func vecSum(v *prometheus.CounterVec) float64 {
	out := make(chan prometheus.Metric, 64)
	go func() { v.Collect(out); close(out) }()
	var sum float64
	for mm := range out {
		var d dto.Metric
		_ = mm.Write(&d)
		sum += d.GetCounter().GetValue()
	}
	return sum
}
