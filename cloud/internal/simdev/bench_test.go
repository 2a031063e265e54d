package simdev

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"beaconvend/cloud/internal/svctest"
)

// The fleet harness end to end at a small size, so it cannot rot: every
// authorized session settles once with the units its device reported, the
// ledger balances, the real controllers switch their valves, and the flood
// measures both the cloud's ingest and the bare broker. Run on the default
// deployment and on the scale-out one (two instances, Mosquitto,
// PostgreSQL, shared subscriptions).
func TestRunBench(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the cloud and controller programs; not with -short")
	}
	bin := relayBuild(t, t.TempDir())
	for _, tc := range []struct {
		name, broker, db string
		instances        int
	}{
		{"embedded-sqlite", "embedded", "sqlite", 1},
		{"mosquitto-postgres-x2", "mosquitto", "postgres", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := BenchConfig{
				CloudBin: filepath.Join(bin, "cloud"), ControllerBin: filepath.Join(bin, "controller"),
				Broker: tc.broker, DB: tc.db, Instances: tc.instances,
				Devices: 40, Phones: 4, ConnectRate: 200, Telemetry: time.Second,
				Rates: []float64{10}, Duration: 3 * time.Second, Drain: 15 * time.Second, UsageDelay: 50 * time.Millisecond,
				Relay: 1, RelayEvery: 500 * time.Millisecond,
				FloodPublishers: 2, FloodDuration: 500 * time.Millisecond, FloodInflight: 4,
				Log: t.Output(),
			}
			if tc.db == "postgres" {
				if cfg.PGDSN = os.Getenv("VEND_PG_DSN"); cfg.PGDSN == "" {
					svctest.Missing(t, "PostgreSQL (VEND_PG_DSN)", "run `export \"$(scripts/pg.sh | tail -n1)\"`")
				}
			}
			if tc.broker == "mosquitto" {
				var err error
				if cfg.MosquittoBin, err = MosquittoBinary(); err != nil {
					svctest.Missing(t, "mosquitto", "run scripts/mosquitto.sh")
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			res, err := RunBench(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Steps) != 1 {
				t.Fatalf("%d steps, want 1", len(res.Steps))
			}
			st := res.Steps[0]
			t.Logf("%+v", st)
			t.Logf("ingest %.0f/s raw %.0f/s sessions %v", res.Ingest, res.Raw, res.Sessions)
			if st.Authorized == 0 || st.Settled != st.Authorized {
				t.Errorf("authorized %d, settled %d: every authorized session must settle", st.Authorized, st.Settled)
			}
			for k, v := range st.Errors {
				if k != "skip.no_idle_device" {
					t.Errorf("errors: %s=%d", k, v)
				}
			}
			if !res.LedgerOK || res.Lost != 0 || res.Doubled != 0 {
				t.Errorf("ledger ok %v, lost %d, doubled %d", res.LedgerOK, res.Lost, res.Doubled)
			}
			if st.RelayTaps == 0 || st.Relay[0] <= 0 {
				t.Errorf("no tap-to-relay measured: %d taps, p50 %s", st.RelayTaps, st.Relay[0])
			}
			if st.Grant[0] <= 0 || st.Grant[0] > st.Answer[2] {
				t.Errorf("grant p50 %s must be positive and not above answer p99 %s", st.Grant[0], st.Answer[2])
			}
			if res.Ingest <= 0 || res.Raw <= 0 || res.FloodSent == 0 {
				t.Errorf("flood: sent %d, ingest %.0f/s, raw %.0f/s", res.FloodSent, res.Ingest, res.Raw)
			}
			if st.CloudCPU <= 0 || st.CloudRSS == 0 {
				t.Errorf("cloud CPU %.1f%% RSS %d: the sampler saw nothing", st.CloudCPU, st.CloudRSS)
			}
		})
	}
}
