package main_test

import (
	"crypto/ed25519"
	"fmt"

	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
	"beaconvend/controller/internal/testrig"
	"beaconvend/hw/emu"
)

const powerSim = `profile: pulse-io-4
machines:
  - {name: tap, kind: water, valve: out1, flow: count1, flow_lpm: 30, k_factor: 450}
  - name: vm
    kind: vending
    drop: in4
    drop_counter: count4
    drop_after: 250ms
    drop_pulse: 200ms
    slots:
      - {name: A1, motor: out2}
      - {name: A2, motor: out3}
  - {name: w1, kind: washer, coin: out4, running: in1, credit: 2, cycle: 2s}
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
  - id: w1
    kind: washer
    currency: EUR
    price: {minor: 350, per: 1}
    washer: {coin: out4, running: in1, pulses_per_credit: 2, pulse_width: 100ms, pulse_gap: 200ms, debounce: 300ms, start_timeout: 5s}
`

// buildController compiles this package's program once per test run.
func buildController(t testing.TB) string {
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
// procRig runs the real controller program as a process against an
// emulated board (a pty), a real broker and a cloud stand-in, all in this
// test process, so the controller can be killed with real signals.
type procRig struct {
	t       testing.TB
	bin     string
	dir     string
	cfgPath string
	ctl     *emu.Control
	cloud   *testrig.Cloud
	devPub  ed25519.PublicKey
	proc    *exec.Cmd
	exited  chan struct{}
	logf    *os.File
	args    []string // extra command-line arguments
	// resumes: the restarted controller completes a washer's credit left
	// open, so the coin output may already pulse when it comes online.
	resumes bool
}

func newProcRig(t testing.TB) *procRig {
	t.Helper()
	return newProcRigMachines(t, powerMachines)
}

// newProcRigMachines is newProcRig with the controller's machines section
// machines (powerMachines, edited) instead of powerMachines.
func newProcRigMachines(t testing.TB, machines string) *procRig {
	t.Helper()
	r := &procRig{t: t}
	r.bin = buildController(t)
	r.dir = t.TempDir()
	dir := r.dir
	e, ctl := testrig.StartEmulator(t, dir, powerSim)
	r.ctl = ctl
	keys := testrig.WriteKeys(t, dir)
	r.devPub = keys.DevicePub
	addr := testrig.FreeAddr(t)
	cfg := fmt.Sprintf(`device_id: dev-pc
keys: {identity_key_file: identity.key, device_key_file: device.key, cloud_public_keys: [%s]}
mqtt: {broker: "tcp://%s", telemetry_interval: 5s, drain_rate: 100}
journal: journal.db
board: {profile: pulse-io-4, port: %s, poll_interval: 50ms}
beacon: {backend: none}
grant_skew: 5s
`, keys.CloudPublicHex(), addr, e.BoardPath()) + machines
	r.cfgPath = filepath.Join(dir, "controller.yaml")
	if err := os.WriteFile(r.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	broker := testrig.StartBroker(t, addr)
	r.cloud = testrig.NewCloud(t, addr, keys.Cloud)
	r.logf, _ = os.Create(filepath.Join(dir, "controller.log"))
	t.Cleanup(func() {
		if r.proc != nil {
			r.proc.Process.Signal(syscall.SIGTERM)
			<-r.exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(r.logf.Name())
			if len(b) > 6000 {
				b = b[len(b)-6000:]
			}
			t.Logf("controller log (tail):\n%s", b)
		}
		r.logf.Close()
		broker.Stop()
	})
	return r
}

func (r *procRig) status() *emu.Status {
	r.t.Helper()
	s, err := r.ctl.Status()
	if err != nil {
		r.t.Fatal(err)
	}
	return s
}

// start runs the controller and waits for its online state; by then every
// output must already be OFF.
func (r *procRig) start() {
	t := r.t
	t.Helper()
	r.cloud.Mu.Lock()
	before := len(r.cloud.States)
	r.cloud.Mu.Unlock()
	r.proc = exec.Command(r.bin, append([]string{"-config", r.cfgPath, "-log-level", "debug"}, r.args...)...)
	r.proc.Stdout, r.proc.Stderr = r.logf, r.logf
	if err := r.proc.Start(); err != nil {
		t.Fatal(err)
	}
	r.exited = make(chan struct{})
	go func(p *exec.Cmd, ch chan struct{}) { p.Wait(); close(ch) }(r.proc, r.exited)
	testrig.Eventually(t, "controller online", func() bool {
		r.cloud.Mu.Lock()
		defer r.cloud.Mu.Unlock()
		for _, s := range r.cloud.States[before:] {
			if s.Status == mqttapi.Online {
				return true
			}
		}
		return false
	})
	for name, on := range r.status().Coils {
		if on && !(r.resumes && name == "out4") {
			t.Fatalf("output %s ON when the restarted controller came online", name)
		}
	}
}

func (r *procRig) kill() {
	r.proc.Process.Signal(syscall.SIGKILL)
	<-r.exited
	r.proc = nil
}

func TestPowerCut(t *testing.T) {
	n := 100
	if testing.Short() {
		n = 20
	}
	r := newProcRig(t)
	rng := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), 1))
	var sessions []*session
	kills := 0
	prevPulses, prevItems := uint64(0), map[string]int{}
	var prev *session
	settle := func(s *session) {
		// The truth of the previous session is what flowed or dropped
		// between its start and now (the machines run one at a time and
		// the restarted controller has switched everything off).
		p, it := r.truth()
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
		if r.proc == nil {
			r.start()
		}
		settle(prev)
		s := &session{kind: "water", cap: 150}
		var g signed.Grant
		var gb []byte
		if i%2 == 1 {
			s.kind, s.slot, s.cap = "vend", []string{"A1", "A2"}[rng.IntN(2)], 1
			g, gb = r.cloud.Grant("dev-pc", "vm", s.slot, vend.UnitItem, vend.Price{Minor: 150, Per: 1}, 1, time.Minute)
		} else {
			s.cap = uint64(100 + rng.IntN(200))
			g, gb = r.cloud.Grant("dev-pc", "m1", "", vend.UnitML, vend.Price{Minor: 50, Per: 1000}, s.cap, time.Minute)
		}
		s.id = g.Session
		machine := map[string]string{"water": "m1", "vend": "vm"}[s.kind]
		cmdID := r.cloud.Authorize("dev-pc", machine, gb)
		sessions = append(sessions, s)
		prev = s
		if rng.IntN(3) == 0 {
			time.Sleep(time.Duration(rng.IntN(700)) * time.Millisecond)
			s.killed = true
			kills++
			r.kill()
			r.cloud.Mu.Lock()
			if rep := r.cloud.Replies[cmdID]; rep != nil && rep.OK {
				s.accepted = true
			}
			r.cloud.Mu.Unlock()
			continue
		}
		rep := r.cloud.WaitReply(cmdID)
		if !rep.OK {
			t.Fatalf("session %d refused: %+v", i, rep)
		}
		s.accepted = true
		r.cloud.WaitUsage(s.id, r.devPub)
	}
	if r.proc == nil {
		r.start()
	}
	// Every session ended; let the recovered ones report.
	testrig.Eventually(t, "recovered reports", func() bool {
		for _, s := range sessions {
			if n, _ := r.cloud.UsageCount(s.id); s.accepted && n == 0 {
				return false
			}
		}
		return true
	})
	time.Sleep(time.Second)
	settle(prev)

	reported := 0
	for i, s := range sessions {
		n, ids := r.cloud.UsageCount(s.id)
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
		u := r.cloud.WaitUsage(s.id, r.devPub)

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
	r.cloud.Mu.Lock()
	seen := map[uint64]vend.SessionID{}
	for _, u := range r.cloud.Usage {
		if other, dup := seen[u.Seq]; dup && other != u.Session {
			t.Errorf("usage seq %d used by %s and %s", u.Seq, other, u.Session)
		}
		seen[u.Seq] = u.Session
		seqs = append(seqs, u.Seq)
	}
	r.cloud.Mu.Unlock()
	t.Logf("%d sessions, %d kills, %d reported; %d usage deliveries; max seq %d", len(sessions), kills, reported, len(seqs), maxOf(seqs))
}

func maxOf(v []uint64) uint64 {
	m := uint64(0)
	for _, x := range v {
		m = max(m, x)
	}
	return m
}

// truth is what the emulator says flowed and dropped, in all.
func (r *procRig) truth() (pulses uint64, items map[string]int) {
	items = map[string]int{}
	for _, m := range r.status().Machines {
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
