package daemon_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"beaconvend/controller/config"
	"beaconvend/controller/daemon"
	"beaconvend/controller/internal/testrig"
	"beaconvend/hw/emu"
)

var eventually = testrig.Eventually

// rig is one controller on an emulated board with a broker and a cloud.
type rig struct {
	t       *testing.T
	dir     string
	emu     *emu.Emulator
	ctl     *emu.Control
	broker  *testrig.Broker
	cloud   *testrig.Cloud
	cfgPath string
	devPub  ed25519.PublicKey
	ident   []byte // proximity identity key
	reboots chan struct{}
	now     func() time.Time // the daemon's clock; nil for time.Now
	d       *daemon.Daemon
	cancel  context.CancelFunc
	done    chan struct{}
}

const waterCfg = `machines:
  - id: m1
    kind: water
    currency: EUR
    price: {minor: 50, per: 1000}
    water: {valve: out1, flow: count1, k_factor: "450", no_flow: 2s}
`

const waterSim = `profile: pulse-io-4
machines:
  - {name: tap, kind: water, valve: out1, flow: count1, flow_lpm: 12, k_factor: 450}
`

func newRig(t *testing.T, profileName, simYAML, machinesYAML string) *rig {
	return newRigBeacon(t, profileName, simYAML, machinesYAML, "{backend: none}")
}

func newRigBeacon(t *testing.T, profileName, simYAML, machinesYAML, beaconYAML string) *rig {
	t.Helper()
	dir := t.TempDir()
	e, ctl := testrig.StartEmulator(t, dir, simYAML)
	keys := testrig.WriteKeys(t, dir)
	addr := testrig.FreeAddr(t)
	cfg := fmt.Sprintf(`device_id: dev-1
keys:
  identity_key_file: identity.key
  device_key_file: device.key
  cloud_public_keys: [%s]
mqtt: {broker: "tcp://%s", telemetry_interval: 1s, drain_rate: 50}
journal: journal.db
board: {profile: %s, port: %s, poll_interval: 50ms}
beacon: %s
grant_skew: 5s
`, keys.CloudPublicHex(), addr, profileName, e.BoardPath(), beaconYAML) + machinesYAML
	cfgPath := filepath.Join(dir, "controller.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, dir: dir, emu: e, ctl: ctl, cfgPath: cfgPath, devPub: keys.DevicePub, ident: keys.Identity, reboots: make(chan struct{}, 4)}
	r.broker = testrig.StartBroker(t, addr)
	r.cloud = testrig.NewCloud(t, addr, keys.Cloud)
	t.Cleanup(func() {
		r.stopDaemon()
		r.broker.Stop()
	})
	return r
}

func (r *rig) startDaemon() {
	r.t.Helper()
	cfg, err := config.Load(r.cfgPath)
	if err != nil {
		r.t.Fatal(err)
	}
	var log *slog.Logger
	if os.Getenv("VEND_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	d, err := daemon.Open(context.Background(), cfg, daemon.Opts{ProgressEvery: 200 * time.Millisecond, AckTimeout: 2 * time.Second, OnReboot: func() { r.reboots <- struct{}{} }, ShutdownGrace: 3 * time.Second, Logger: log, Now: r.now})
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.d, r.cancel, r.done = d, cancel, make(chan struct{})
	go func() { defer close(r.done); d.Run(ctx) }()
	eventually(r.t, "controller online", func() bool { return d.Stats().Uplink.Connected })
}

// setConfig replaces old with new in the controller's config file (before
// startDaemon).
func (r *rig) setConfig(old, new string) {
	r.t.Helper()
	b, err := os.ReadFile(r.cfgPath)
	if err != nil {
		r.t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		r.t.Fatalf("config has no %q", old)
	}
	if err := os.WriteFile(r.cfgPath, []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) stopDaemon() {
	if r.d == nil {
		return
	}
	r.cancel()
	<-r.done
	r.d.Close()
	r.d = nil
}

func (r *rig) status() *emu.Status {
	r.t.Helper()
	s, err := r.ctl.Status()
	if err != nil {
		r.t.Fatal(err)
	}
	return s
}
