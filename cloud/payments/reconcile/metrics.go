package reconcile

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"beaconvend/cloud/store"
)

// Metrics are reconciliation's Prometheus collectors, read from the
// store (so every cloud instance reports the same, and a restart loses
// nothing):
//
//	beaconvend_recon_outcomes{channel,kind}                   outcomes of each kind in the channel's latest run (its newest day)
//	beaconvend_recon_totals_ok{channel}                       1 when the latest run's totals agreed, else 0
//	beaconvend_recon_last_run_timestamp_seconds{channel}      when the channel's latest run finished (Unix seconds)
//	beaconvend_recon_last_day_timestamp_seconds{channel}      the newest day reconciled, as its date at 00:00 UTC (Unix seconds): alert when it lags
//	beaconvend_recon_discrepancies_open{channel}              stored discrepancies not yet resolved, over every day
//	beaconvend_recon_failures_total{channel,reason}           runs that stored nothing: unavailable (no statement yet), rejected (statement refused)
type Metrics struct {
	outcomes *prometheus.GaugeVec
	totalsOK *prometheus.GaugeVec
	lastRun  *prometheus.GaugeVec
	lastDay  *prometheus.GaugeVec
	open     *prometheus.GaugeVec
	failures *prometheus.CounterVec

	mu       sync.Mutex
	channels map[string]bool // every channel ever seen, so a channel whose discrepancies are resolved reads 0
}

// NewMetrics creates the collectors and registers them with reg (when
// not nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		outcomes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "beaconvend_recon_outcomes", Help: "Outcomes of each kind in the channel's latest reconciliation run.",
		}, []string{"channel", "kind"}),
		totalsOK: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "beaconvend_recon_totals_ok", Help: "1 when the latest reconciliation run's totals agreed, else 0.",
		}, []string{"channel"}),
		lastRun: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "beaconvend_recon_last_run_timestamp_seconds", Help: "When the channel's latest reconciliation run finished.",
		}, []string{"channel"}),
		lastDay: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "beaconvend_recon_last_day_timestamp_seconds", Help: "The newest day reconciled for the channel, as its date at 00:00 UTC.",
		}, []string{"channel"}),
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "beaconvend_recon_discrepancies_open", Help: "Reconciliation discrepancies not yet resolved, over every day.",
		}, []string{"channel"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "beaconvend_recon_failures_total", Help: "Reconciliation runs that stored nothing, by reason.",
		}, []string{"channel", "reason"}),
		channels: map[string]bool{},
	}
	if reg != nil {
		reg.MustRegister(m.outcomes, m.totalsOK, m.lastRun, m.lastDay, m.open, m.failures)
	}
	return m
}

func (m *Metrics) failed(channel, reason string) {
	if m != nil {
		m.failures.WithLabelValues(channel, reason).Inc()
	}
}

// Refresh sets the gauges from the stored runs: for each channel its
// latest run (the newest day) and its open discrepancies.
func (m *Metrics) Refresh(ctx context.Context, st *store.Store) error {
	if m == nil {
		return nil
	}
	runs, err := st.ReconRuns(ctx, "", 0)
	if err != nil {
		return err
	}
	open, err := st.ReconOpenDiscrepancies(ctx)
	if err != nil {
		return err
	}
	latest := map[string]store.ReconRun{}
	for _, r := range runs { // newest day first
		if _, ok := latest[r.Channel]; !ok {
			latest[r.Channel] = r
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for ch, r := range latest {
		m.channels[ch] = true
		_, outs, err := st.ReconRunOf(ctx, ch, r.Day)
		if err != nil {
			return err
		}
		for k, n := range KindCounts(outs) {
			m.outcomes.WithLabelValues(ch, string(k)).Set(float64(n))
		}
		ok := 0.0
		if r.TotalsOK {
			ok = 1
		}
		m.totalsOK.WithLabelValues(ch).Set(ok)
		m.lastRun.WithLabelValues(ch).Set(float64(r.FinishedAt.UnixMilli()) / 1000)
		if d, err := time.Parse(time.DateOnly, r.Day); err == nil {
			m.lastDay.WithLabelValues(ch).Set(float64(d.Unix()))
		}
	}
	for ch := range open {
		m.channels[ch] = true
	}
	for ch := range m.channels {
		m.open.WithLabelValues(ch).Set(float64(open[ch]))
	}
	return nil
}
