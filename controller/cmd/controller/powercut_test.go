package main_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"fmt"

	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
	"beaconvend/controller/config"
	"beaconvend/controller/internal/testrig"
	"beaconvend/hw/emu"
)

const powerSim = `profile: pulse-io-4
machines:
  - {name: tap, kind: water, valve: out1, flow: count1, flow_lpm: 30, k_factor: 450}
  - name: vm
    kind: vending
    drop: in4
    drop_after: 250ms
    drop_pulse: 200ms
    slots:
      - {name: A1, motor: out2}
      - {name: A2, motor: out3}
`

const powerMachines = `machines:
  - id: m1
    kind: water
    currency: EUR
    price: {minor: 50, per: 1000}
    water: {valve: out1, flow: count1, k_factor: "450", no_flow: 2s}
  - id: vm
    kind: vending
    currency: EUR
    vending: {drop: in4, drop_timeout: 1500ms}
    slots:
      - {id: A1, output: out2, price: {minor: 150, per: 1}}
      - {id: A2, output: out3, price: {minor: 150, per: 1}}
`

// buildController compiles this package's program once per test run.
func buildController(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "controller")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

type session struct {
	id       vend.SessionID
	kind     string // water or vend
	slot     string
	cap      uint64
	accepted bool // the device replied OK
	killed   bool // the controller was killed while it ran
	truth    uint64
}

// TestPowerCut kills the controller with SIGKILL at random points across
// many water and vending sessions, restarts it, and checks that every
// session it accepted is reported exactly once, that no report charges
// more than the emulator says was delivered (and exactly that when the
// session was not cut), and that after every restart the outputs are OFF
// before the controller says anything.
func TestPowerCut(t *testing.T) {
	n := 100
	if testing.Short() {
		n = 20
	}
	bin := buildController(t)
	dir := t.TempDir()
	sim, err := emu.ParseSimConfig(strings.NewReader(powerSim))
	if err != nil {
		t.Fatal(err)
	}
	prof, _ := sim.ResolveProfile("")
	e, err := emu.Open(prof, sim, &emu.Opts{ControlPath: filepath.Join(dir, "emu.sock")})
	if err != nil {
		t.Fatal(err)
	}
	ectx, ecancel := context.WithCancel(context.Background())
	defer ecancel()
	go e.Run(ectx)
	defer e.Close()
	ctl, err := emu.Dial(e.ControlPath())
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()

	_, cloudKey, _ := ed25519.GenerateKey(rand.Reader)
	devPub, devPriv, _ := ed25519.GenerateKey(rand.Reader)
	idk := make([]byte, 16)
	rand.Read(idk)
	config.WriteSecret(filepath.Join(dir, "identity.key"), []byte(hex.EncodeToString(idk)))
	config.WriteSecret(filepath.Join(dir, "device.key"), []byte(hex.EncodeToString(devPriv.Seed())))
	addr := testrig.FreeAddr(t)
	cfg := fmt.Sprintf(`device_id: dev-pc
keys: {identity_key_file: identity.key, device_key_file: device.key, cloud_public_keys: [%s]}
mqtt: {broker: "tcp://%s", telemetry_interval: 5s, drain_rate: 100}
journal: journal.db
board: {profile: pulse-io-4, port: %s, poll_interval: 50ms}
beacon: {backend: none}
grant_skew: 5s
`, hex.EncodeToString(cloudKey.Public().(ed25519.PublicKey)), addr, e.BoardPath()) + powerMachines
	cfgPath := filepath.Join(dir, "controller.yaml")
	os.WriteFile(cfgPath, []byte(cfg), 0o644)
	broker := testrig.StartBroker(t, addr)
	defer broker.Stop()
	cloud := testrig.NewCloud(t, addr, cloudKey)

	status := func() *emu.Status {
		s, err := ctl.Status()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	truth := func() (pulses uint64, items map[string]int) {
		s := status()
		items = map[string]int{}
		for _, m := range s.Machines {
			if m.Water != nil {
				pulses = m.Water.Pulses
			}
			if m.Vending != nil {
				for _, sl := range m.Vending.Slots {
					items[sl.Name] = sl.Items
				}
			}
		}
		return
	}

	var proc *exec.Cmd
	var exited chan struct{}
	logf, _ := os.Create(filepath.Join(dir, "controller.log"))
	defer logf.Close()
	start := func() {
		cloud.Mu.Lock()
		before := len(cloud.States)
		cloud.Mu.Unlock()
		proc = exec.Command(bin, "-config", cfgPath, "-log-level", "debug")
		proc.Stdout, proc.Stderr = logf, logf
		if err := proc.Start(); err != nil {
			t.Fatal(err)
		}
		exited = make(chan struct{})
		go func(p *exec.Cmd, ch chan struct{}) { p.Wait(); close(ch) }(proc, exited)
		// The first thing the cloud hears is the online state; by then
		// every output must already be OFF.
		testrig.Eventually(t, "controller online", func() bool {
			cloud.Mu.Lock()
			defer cloud.Mu.Unlock()
			for _, s := range cloud.States[before:] {
				if s.Status == mqttapi.Online {
					return true
				}
			}
			return false
		})
		for name, on := range status().Coils {
			if on {
				t.Fatalf("output %s ON when the restarted controller came online", name)
			}
		}
	}
	kill := func() {
		proc.Process.Signal(syscall.SIGKILL)
		<-exited
		proc = nil
	}
	defer func() {
		if proc != nil {
			proc.Process.Signal(syscall.SIGTERM)
			<-exited
		}
	}()

	rng := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), 1))
	var sessions []*session
	kills := 0
	prevPulses, prevItems := uint64(0), map[string]int{}
	var prev *session
	settle := func(s *session) {
		// The truth of the previous session is what flowed or dropped
		// between its start and now (the machines run one at a time and
		// the restarted controller has switched everything off).
		p, it := truth()
		if s != nil {
			if s.kind == "water" {
				s.truth = (p - prevPulses) * 1_000_000 / 450_000
			} else {
				s.truth = uint64(it[s.slot] - prevItems[s.slot])
			}
		}
		prevPulses, prevItems = p, it
	}
	for i := 0; i < n; i++ {
		if proc == nil {
			start()
		}
		settle(prev)
		s := &session{kind: "water", cap: 150}
		var g signed.Grant
		var gb []byte
		if i%2 == 1 {
			s.kind, s.slot, s.cap = "vend", []string{"A1", "A2"}[rng.IntN(2)], 1
			g, gb = cloud.Grant("dev-pc", "vm", s.slot, vend.UnitItem, vend.Price{Minor: 150, Per: 1}, 1, time.Minute)
		} else {
			s.cap = uint64(100 + rng.IntN(200))
			g, gb = cloud.Grant("dev-pc", "m1", "", vend.UnitML, vend.Price{Minor: 50, Per: 1000}, s.cap, time.Minute)
		}
		s.id = g.Session
		machine := map[string]string{"water": "m1", "vend": "vm"}[s.kind]
		cmdID := cloud.Authorize("dev-pc", machine, gb)
		sessions = append(sessions, s)
		prev = s
		if rng.IntN(3) == 0 {
			time.Sleep(time.Duration(rng.IntN(700)) * time.Millisecond)
			s.killed = true
			kills++
			kill()
			cloud.Mu.Lock()
			if r := cloud.Replies[cmdID]; r != nil && r.OK {
				s.accepted = true
			}
			cloud.Mu.Unlock()
			continue
		}
		r := cloud.WaitReply(cmdID)
		if !r.OK {
			t.Fatalf("session %d refused: %+v", i, r)
		}
		s.accepted = true
		cloud.WaitUsage(s.id, devPub)
	}
	if proc == nil {
		start()
	}
	// Every session ended; let the recovered ones report.
	testrig.Eventually(t, "recovered reports", func() bool {
		for _, s := range sessions {
			if n, _ := cloud.UsageCount(s.id); s.accepted && n == 0 {
				return false
			}
		}
		return true
	})
	time.Sleep(time.Second)
	settle(prev)

	reported := 0
	for i, s := range sessions {
		n, ids := cloud.UsageCount(s.id)
		if ids > 1 {
			t.Errorf("session %d (%s): %d different usage reports", i, s.kind, ids)
		}
		if n == 0 {
			if s.accepted {
				t.Errorf("session %d (%s): accepted but never reported", i, s.kind)
			}
			continue
		}
		reported++
		u := cloud.WaitUsage(s.id, devPub)

		if u.Units > s.cap {
			t.Errorf("session %d: %d units above the cap %d", i, u.Units, s.cap)
		}
		if u.Units > s.truth {
			t.Errorf("session %d (%s, killed %v): reported %d units, %d delivered", i, s.kind, s.killed, u.Units, s.truth)
		}
		if !s.killed && u.Units != min(s.truth, s.cap) {
			t.Errorf("session %d (%s): reported %d, delivered %d, cap %d", i, s.kind, u.Units, s.truth, s.cap)
		}
	}
	if kills < n/6 {
		t.Errorf("only %d kills in %d sessions", kills, n)
	}
	var seqs []uint64
	cloud.Mu.Lock()
	seen := map[uint64]vend.SessionID{}
	for _, u := range cloud.Usage {
		if other, dup := seen[u.Seq]; dup && other != u.Session {
			t.Errorf("usage seq %d used by %s and %s", u.Seq, other, u.Session)
		}
		seen[u.Seq] = u.Session
		seqs = append(seqs, u.Seq)
	}
	cloud.Mu.Unlock()
	t.Logf("%d sessions, %d kills, %d reported; %d usage deliveries; max seq %d", len(sessions), kills, reported, len(seqs), maxOf(seqs))
}

func maxOf(v []uint64) uint64 {
	m := uint64(0)
	for _, x := range v {
		m = max(m, x)
	}
	return m
}
