package main

import (
	"beaconvend/cloud/broker/brokertest"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The end-to-end tests run the real cloud, controller and hwsim programs
// as processes (their Mains live in package main of their own commands),
// over real ptys, a real embedded MQTT broker and the simulated air, and
// the phone's Main in process.

var (
	binDir    string
	buildOnce sync.Once
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// repoRoot is the module root, three levels up from this package.
func repoRoot(t testing.TB) string {
	t.Helper()
	d, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// bins builds cloud, controller and hwsim once per test binary.
func bins(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "phone-e2e-bin-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", binDir+string(filepath.Separator),
			"./cloud/cmd/cloud", "./controller/cmd/controller", "./hw/cmd/hwsim")
		cmd.Dir = repoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// syncBuffer is an io.Writer safe for concurrent use that can wait for
// its content to match.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitMatch waits until the content matches re, or fails the test.
func (s *syncBuffer) waitMatch(t testing.TB, re *regexp.Regexp, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !re.MatchString(s.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("output did not match %s within %s:\n%s", re, d, s.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// rig is a cloud with a water dispenser and a vending machine, each a
// controller on an emulated board, on an air group of its own.
type rig struct {
	dir  string
	bin  string
	API  string
	Air  string
	Sock map[string]string // hwsim control socket by sim name
	logs []string
}

// start runs a program in the background; the test's cleanup stops it
// with SIGTERM (SIGKILL after 10 s).
func (r *rig) start(t testing.TB, name string, args ...string) string {
	t.Helper()
	outPath := filepath.Join(r.dir, name+".out")
	logPath := filepath.Join(r.dir, name+".log")
	out, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(r.bin, args[0]), args[1:]...)
	cmd.Stdout, cmd.Stderr = out, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.logs = append(r.logs, logPath)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		out.Close()
		logf.Close()
	})
	return outPath
}

// jsonLine waits for the first line of path and decodes it.
func (r *rig) jsonLine(t testing.TB, path string, v any) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		if i := bytes.IndexByte(b, '\n'); i > 0 {
			if err := json.Unmarshal(b[:i], v); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			return
		}
		if time.Now().After(deadline) {
			r.dumpLogs(t)
			t.Fatalf("%s: no line within 30s", path)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (r *rig) dumpLogs(t testing.TB) {
	t.Helper()
	for _, l := range r.logs {
		b, _ := os.ReadFile(l)
		if len(b) > 3000 {
			b = b[len(b)-3000:]
		}
		t.Logf("--- %s\n%s", filepath.Base(l), b)
	}
}

func (r *rig) run(t testing.TB, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(r.bin, args[0]), args[1:]...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

const (
	testWaterSim = `profile: pulse-io-4
comm_timeout: 3s
machines:
  - {name: tap, kind: water, valve: out1, flow: count1, flow_lpm: 20, k_factor: 450}
`
	testLaundrySim = `profile: generic-relay-8
machines:
  - {name: washer-1, kind: washer, coin: relay1, running: in1, credit: 1, cycle: 2s}
  - {name: washer-2, kind: washer, coin: relay2, running: in2, credit: 1, cycle: 2s}
`
	testVendingSim = `profile: generic-relay-16
machines:
  - name: snacks
    kind: vending
    drop: in16
    drop_after: 300ms
    drop_pulse: 300ms
    slots:
      - {name: A1, motor: relay1}
      - {name: B5, motor: relay2}
`
)

// freeAddr returns a loopback address with a port free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// rigOpts changes what newRigWith starts.
type rigOpts struct {
	broker      string // "embedded" (default) or "mosquitto"
	cloudConfig string // a `cloud serve -config` file, with -dev, -data and -http over it; {http} in it becomes the listen address
	currency    string // the devices' currency; default EUR
}

// newRig provisions and starts everything. Devices are added before
// `cloud serve` starts, so its resolver knows them at once.
func newRig(t testing.TB, brokerKind string) *rig {
	t.Helper()
	return newRigWith(t, rigOpts{broker: brokerKind})
}

// newRigWith is newRig with options.
func newRigWith(t testing.TB, o rigOpts) *rig {
	t.Helper()
	brokerKind := o.broker
	if o.currency == "" {
		o.currency = "EUR"
	}
	r := &rig{dir: t.TempDir(), bin: bins(t), Sock: map[string]string{}}
	r.Air = fmt.Sprintf("239.255.%d.%d:%d", 1+rand.IntN(250), 1+rand.IntN(250), 20000+rand.IntN(30000))
	pty := map[string]string{}
	for name, sim := range map[string]string{"water": testWaterSim, "vending": testVendingSim, "laundry": testLaundrySim} {
		p := filepath.Join(r.dir, name+".yaml")
		if err := os.WriteFile(p, []byte(sim), 0o644); err != nil {
			t.Fatal(err)
		}
		out := r.start(t, "hwsim-"+name, "hwsim", "-sim", p, "-json", "-control", filepath.Join(r.dir, name+".sock"))
		var paths struct{ Board, Control string }
		r.jsonLine(t, out, &paths)
		pty[name], r.Sock[name] = paths.Board, paths.Control
	}
	data := filepath.Join(r.dir, "cloud")
	pwFile := filepath.Join(r.dir, "operator.pw")
	if err := os.WriteFile(pwFile, []byte("test-operator-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r.run(t, "cloud", "operator", "add", "-data", data, "-name", "test", "-email", "op@test.example", "-password-file", pwFile)
	r.run(t, "cloud", "device", "add", "-data", data, "-operator", "test", "-id", "t-water", "-kind", "water", "-currency", o.currency,
		"-out", filepath.Join(r.dir, "water"), "-mqtt-url", "tcp://127.0.0.1:1")
	r.run(t, "cloud", "device", "add", "-data", data, "-operator", "test", "-id", "t-vending", "-kind", "vending", "-currency", o.currency,
		"-slots", "A1:Cola:150,B5:Cookies:140", "-out", filepath.Join(r.dir, "vending"), "-mqtt-url", "tcp://127.0.0.1:1")
	mqttDir := filepath.Join(r.dir, "mosquitto")
	r.run(t, "cloud", "device", "add", "-data", data, "-operator", "test", "-id", "t-laundry", "-kind", "washer", "-machines", "2", "-currency", o.currency,
		"-out", filepath.Join(r.dir, "laundry"), "-mqtt-url", "tcp://127.0.0.1:1", "-mosquitto-dir", mqttDir)
	// Each board: its wiring (the emulator's pty, the simulated air at a
	// distance) and the controller's import of its bundle.
	for i, dev := range []string{"water", "vending", "laundry"} {
		profile := map[string]string{"water": "pulse-io-4", "vending": "generic-relay-16", "laundry": "generic-relay-8"}[dev]
		w := fmt.Sprintf("profile: %s\nport: %s\njournal: %s\nbeacon: {sim_addr: %q, sim_rssi: %d}\n",
			profile, pty[dev], filepath.Join(r.dir, dev, "board", "journal.db"), r.Air, -50-10*i)
		if dev == "vending" { // a quick drop time-out for the jam tests
			w += "machines:\n  vm1: {drop: in16, drop_timeout: 2s, slots: {A1: relay1, B5: relay2}}\n"
		}
		wiring := filepath.Join(r.dir, dev, "wiring.yaml")
		if err := os.WriteFile(wiring, []byte(w), 0o644); err != nil {
			t.Fatal(err)
		}
		r.run(t, "controller", "import-bundle", "-bundle", filepath.Join(r.dir, dev, "bundle.json"), "-wiring", wiring,
			"-out", filepath.Join(r.dir, dev, "board"), "-beacon", "sim")
	}

	serve := []string{"cloud", "serve", "-dev", "-data", data, "-http", "127.0.0.1:0", "-json"}
	if o.cloudConfig != "" {
		// A copy of the configuration with {http} replaced by the
		// address the cloud listens on, so payments.public_url (where
		// the providers send notifications) can name it.
		b, err := os.ReadFile(o.cloudConfig)
		if err != nil {
			t.Fatal(err)
		}
		addr := "127.0.0.1:0"
		if bytes.Contains(b, []byte("{http}")) {
			addr = freeAddr(t)
			b = bytes.ReplaceAll(b, []byte("{http}"), []byte(addr))
		}
		cfg := filepath.Join(r.dir, "cloud.yaml")
		if err := os.WriteFile(cfg, b, 0o600); err != nil {
			t.Fatal(err)
		}
		serve = []string{"cloud", "serve", "-dev", "-config", cfg, "-data", data, "-http", addr, "-json"}
	}
	if brokerKind == "mosquitto" {
		// A real Mosquitto with the password and ACL files the last
		// device add wrote (they cover every device provisioned so far).
		serve = append(serve, "-broker", brokertest.StartMosquittoFiles(t, mqttDir))
	}
	out := r.start(t, "cloud", serve...)
	var addrs struct{ HTTP, MQTT string }
	r.jsonLine(t, out, &addrs)
	r.API = addrs.HTTP

	for _, dev := range []string{"water", "vending", "laundry"} {
		cfg := filepath.Join(r.dir, dev, "board", "controller.yaml")
		b, err := os.ReadFile(cfg)
		if err != nil {
			t.Fatal(err)
		}
		s := strings.Replace(string(b), "broker: tcp://127.0.0.1:1", "broker: "+addrs.MQTT, 1)
		if err := os.WriteFile(cfg, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		r.start(t, "controller-"+dev, "controller", "-config", cfg)
	}
	t.Cleanup(func() {
		if t.Failed() {
			r.dumpLogs(t)
		}
	})
	r.waitOnline(t)
	return r
}

// waitOnline lists until both devices are heard and their machines idle.
func (r *rig) waitOnline(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		m, _, err := r.phone(t, nil, "-email", "probe@test.example", "-password", "probe-password", "-signup", "-list", "-scan", "700ms")
		idle := 0
		for _, n := range m.Nearby {
			for _, mc := range n.Machines {
				if mc.State == "idle" {
					idle++
				}
			}
		}
		if err == nil && idle == 4 {
			return
		}
		if time.Now().After(deadline) {
			r.dumpLogs(t)
			t.Fatalf("devices not online within 60s (last: %v, %d idle)", err, idle)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// phone runs the phone Main in process with the rig's API and air and
// returns it with its combined output.
func (r *rig) phone(t testing.TB, interrupts <-chan os.Signal, args ...string) (*Main, *syncBuffer, error) {
	t.Helper()
	return r.phoneWith(t, interrupts, nil, args...)
}

// phoneWith is phone that first sends its output buffer on started (when
// not nil), so a test can watch a session while it runs.
func (r *rig) phoneWith(t testing.TB, interrupts <-chan os.Signal, started chan<- *syncBuffer, args ...string) (*Main, *syncBuffer, error) {
	t.Helper()
	out := &syncBuffer{}
	if started != nil {
		started <- out
	}
	m := &Main{Stdout: out, Stderr: out, Interrupts: interrupts}
	base := []string{"-api", r.API, "-air", r.Air, "-token-file", filepath.Join(r.dir, "tokens.json"), "-scan", "1500ms", "-timeout", "60s"}
	if err := m.ParseFlags(append(base, args...)); err != nil {
		t.Fatalf("phone %q: %v", args, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	err := m.Run(ctx)
	if cerr := m.Close(); err == nil {
		err = cerr
	}
	return m, out, err
}
