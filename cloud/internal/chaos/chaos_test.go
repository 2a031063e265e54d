package chaos

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"beaconvend/cloud/internal/simdev"
	"beaconvend/cloud/internal/svctest"
)

// The chaos soak's CI form: 40 s of phones and every kind of
// fault against the real cloud, Mosquitto, SQLite and real controllers
// on emulated boards (water, washer, vending), then the audit of every
// session, the ledger and every machine. Any violation fails the test,
// with the soak's table in the log. VEND_CHAOS_DB=postgres runs it on
// PostgreSQL (a scratch database from VEND_PG_DSN).
func TestChaosSoakShort(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the cloud, Mosquitto and controllers for about a minute and a half; not with -short")
	}
	mosq, err := simdev.MosquittoBinary()
	if err != nil {
		svctest.Missing(t, "Mosquitto 2", "run scripts/mosquitto.sh (or set VEND_MOSQUITTO to the binary)")
	}
	// Kept when the test fails, for reading a violation against the logs.
	dir, err := os.MkdirTemp("", "chaos-soak-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			os.RemoveAll(dir)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cloudBin, ctlBin, err := BuildPrograms(ctx, filepath.Join(dir, "bin"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		CloudBin: cloudBin, ControllerBin: ctlBin, MosquittoBin: mosq, Dir: dir,
		Duration: 40 * time.Second, Devices: 6, Phones: 4, Seed: 12,
		Rates: DefaultRates, Skew: true,
		SessionBound: 2 * time.Minute, QuiesceWithin: 35 * time.Second,
		Log: t.Output(),
	}
	if os.Getenv("VEND_CHAOS_DB") == "postgres" {
		cfg.DB, cfg.PostgresDSN = "postgres", svctest.PostgresDSN(t, "chaos")
	}
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	rep.Print(t.Output())
	// The soak did what it says: phones started sessions and every kind
	// of fault was injected.
	if rep.Starts["ok"] == 0 || rep.Sessions == 0 {
		t.Errorf("no session started: %v", rep.Starts)
	}
	for _, k := range []string{"link_cut", "controller_kill", "cloud_kill"} {
		if rep.Faults[k] == 0 {
			t.Errorf("no %s injected: %v", k, rep.Faults)
		}
	}
	if rep.Faults["broker_kill"]+rep.Faults["broker_restart"] == 0 {
		t.Errorf("no broker restart injected: %v", rep.Faults)
	}
	for kind, n := range rep.ViolationCounts() {
		t.Errorf("%d %s violation(s)", n, kind)
	}
	if t.Failed() {
		t.Logf("logs: %s (cloud.log, dev/*/controller.log, attempts.jsonl)", dir)
	}
}
