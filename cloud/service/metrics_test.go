package service_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	"beaconvend/cloud/service"
)

// A scrape reads the gauges the periodic job computed and queries
// nothing: with the database closed, the ledger-imbalance and
// online-devices series still read what the last computation found
// (a scrape that queried would read -1, the failure value).
func TestScrapeRunsNoQuery(t *testing.T) {
	svc, st, _, _, _ := setup(t) // wd-1 online, one top-up
	if err := svc.RefreshGauges(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		got := scrape(t, svc)
		if got["beaconvend_devices_online"] != 1 || got["beaconvend_ledger_imbalance_minor"] != 0 {
			t.Fatalf("scrape %d with the database closed: online %v, imbalance %v; want the computed 1 and 0",
				i, got["beaconvend_devices_online"], got["beaconvend_ledger_imbalance_minor"])
		}
	}
}

// scrape gathers the service's registry as /metrics does and returns
// each gauge's value by name.
func scrape(t *testing.T, svc *service.Service) map[string]float64 {
	t.Helper()
	mfs, err := svc.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if g := m.GetGauge(); g != nil {
				out[mf.GetName()] = g.GetValue()
			}
		}
	}
	return out
}

// An imbalance written behind the ledger's back shows on the gauge
// within one GaugeInterval of Run, without a scrape causing it.
func TestImbalanceShowsWithinOnePeriod(t *testing.T) {
	_, st, _, _, _ := setup(t)
	_, cloud, _ := ed25519.GenerateKey(rand.Reader)
	const period = 300 * time.Millisecond
	svc, err := service.New(context.Background(), service.Options{Store: st, Publisher: &FakePublisher{}, CloudKey: cloud, GaugeInterval: period})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if v := svc.Metrics.LedgerImbalance(); v != 0 {
		t.Fatalf("imbalance %v at start, want 0", v)
	}
	// One unbalanced entry: 7 minor units out of nowhere.
	if _, err := st.DB().Exec(`INSERT INTO entries (tx_id, account_id, amount, currency)
		SELECT tx_id, account_id, 7, currency FROM entries LIMIT 1`); err != nil {
		t.Fatal(err)
	}
	// Within one period (plus the scheduling slack of a loaded machine).
	deadline := time.Now().Add(period + 5*time.Second)
	for scrape(t, svc)["beaconvend_ledger_imbalance_minor"] != 7 {
		if time.Now().After(deadline) {
			t.Fatalf("imbalance gauge %v after the bad entry, want 7", svc.Metrics.LedgerImbalance())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
