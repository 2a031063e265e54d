package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"beaconvend/cloud/broker/brokertest"
	"beaconvend/cloud/internal/simdev"
)

// The presence tests run the real programs as processes — cloud serve,
// hwsim (the emulated I/O board on a pty) and the controller — and end
// the controller with real signals: SIGKILL (its kernel resets the MQTT
// connection; the broker publishes its will and, the embedded one, calls
// the disconnect hook) and SIGSTOP (a hung board: the connection stays
// open, nothing is published; only the staleness bound can tell).

var (
	presBinOnce sync.Once
	presBinDir  string
	presBinErr  error
)

// presenceBins builds cloud, controller and hwsim once per test binary.
func presenceBins(t *testing.T) string {
	t.Helper()
	presBinOnce.Do(func() {
		presBinDir, presBinErr = os.MkdirTemp("", "cloud-presence-bin-")
		if presBinErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", presBinDir+string(filepath.Separator),
			"./cloud/cmd/cloud", "./controller/cmd/controller", "./hw/cmd/hwsim")
		cmd.Dir = "../../.."
		if out, err := cmd.CombinedOutput(); err != nil {
			presBinErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if presBinErr != nil {
		t.Fatal(presBinErr)
	}
	t.Cleanup(func() {}) // the directory is removed by the OS temp cleaner; binaries are reused across tests
	return presBinDir
}

// proc is a program run in the background, logging to a file.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  string
	out  string
}

func startProc(t *testing.T, dir, bin, name string, args ...string) *proc {
	t.Helper()
	p := &proc{done: make(chan struct{}), log: filepath.Join(dir, name+".log"), out: filepath.Join(dir, name+".out")}
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	outf, err := os.Create(p.out)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(filepath.Join(bin, strings.Fields(name)[0]), args...)
	p.cmd.Stdout, p.cmd.Stderr = outf, logf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); logf.Close(); outf.Close(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGCONT)
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			b, _ := os.ReadFile(p.log)
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			t.Logf("--- %s log (tail)\n%s", name, b)
		}
	})
	return p
}

func (p *proc) kill9() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// firstLine waits for the first stdout line of p and decodes it.
func (p *proc) firstLine(t *testing.T, v any) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, _ := os.ReadFile(p.out)
		if i := bytes.IndexByte(b, '\n'); i > 0 {
			if err := json.Unmarshal(b[:i], v); err != nil {
				t.Fatalf("%s: %v", p.out, err)
			}
			return
		}
		select {
		case <-p.done:
			b, _ := os.ReadFile(p.log)
			t.Fatalf("%s exited before printing: %s", p.out, b)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no line within 60 s", p.out)
		}
	}
}

const presenceWaterSim = `profile: pulse-io-4
comm_timeout: 3s
machines:
  - {name: tap, kind: water, valve: out1, flow: count1, flow_lpm: 20, k_factor: 450}
`

// presenceRig is a cloud, one emulated water board and its controller.
type presenceRig struct {
	dir, bin, data, api string
	cfg                 string
	controller          *proc
	token               string
}

func newPresenceRig(t *testing.T, brokerKind, dsn string, serveArgs ...string) *presenceRig {
	t.Helper()
	r := &presenceRig{dir: t.TempDir(), bin: presenceBins(t)}
	r.data = filepath.Join(r.dir, "cloud")
	sim := filepath.Join(r.dir, "water.yaml")
	if err := os.WriteFile(sim, []byte(presenceWaterSim), 0o644); err != nil {
		t.Fatal(err)
	}
	hw := startProc(t, r.dir, r.bin, "hwsim", "-sim", sim, "-json", "-control", filepath.Join(r.dir, "water.sock"))
	var paths struct{ Board string }
	hw.firstLine(t, &paths)

	cli := func(args ...string) {
		t.Helper()
		args = append(args[:2:2], append([]string{"-data", r.data, "-db", dsn}, args[2:]...)...)
		if out, err := exec.Command(filepath.Join(r.bin, "cloud"), args...).CombinedOutput(); err != nil {
			t.Fatalf("cloud %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	cli("operator", "add", "-name", "test", "-email", "op@test.example", "-password-file", passwordFile(t, "test-operator-pw"))
	mosq := filepath.Join(r.dir, "mosquitto")
	cli("device", "add", "-operator", "test", "-id", "p-water", "-kind", "water", "-out", filepath.Join(r.dir, "water"),
		"-mqtt-url", "tcp://127.0.0.1:1", "-mosquitto-dir", mosq, "-mosquitto-group", "", "-mosquitto-user", "")
	if err := simdev.WriteController(filepath.Join(r.dir, "water"), simdev.Wiring{Port: paths.Board}); err != nil {
		t.Fatal(err)
	}

	serve := append([]string{"serve", "-dev", "-data", r.data, "-db", dsn, "-http", "127.0.0.1:0", "-json"}, serveArgs...)
	if brokerKind == "mosquitto" {
		serve = append(serve, "-broker", brokertest.StartMosquittoFiles(t, mosq))
	}
	cloud := startProc(t, r.dir, r.bin, "cloud", serve...)
	var addrs struct{ HTTP, MQTT string }
	cloud.firstLine(t, &addrs)
	r.api = addrs.HTTP

	r.cfg = filepath.Join(r.dir, "water", "controller.yaml")
	if err := simdev.ControllerConfig(r.cfg, addrs.MQTT, paths.Board, func(y map[string]any) {
		y["mqtt"].(map[string]any)["telemetry_interval"] = "1s"
	}); err != nil {
		t.Fatal(err)
	}
	r.startController(t)
	r.token = r.login(t)
	return r
}

func (r *presenceRig) startController(t *testing.T) {
	t.Helper()
	r.controller = startProc(t, r.dir, r.bin, "controller", "-config", r.cfg)
}

func (r *presenceRig) login(t *testing.T) string {
	t.Helper()
	resp, err := http.Post(r.api+"/v1/operator/auth/login", "application/json",
		strings.NewReader(`{"email":"op@test.example","password":"test-operator-pw"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.Token == "" {
		t.Fatalf("operator login: %d %v", resp.StatusCode, err)
	}
	return tok.Token
}

// online is what the operator API says of the board.
func (r *presenceRig) online(t *testing.T) bool {
	t.Helper()
	req, _ := http.NewRequest("GET", r.api+"/v1/operator/devices/p-water", nil)
	req.Header.Set("Authorization", "Bearer "+r.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var d struct{ Online bool }
	if resp.StatusCode != 200 || json.Unmarshal(b, &d) != nil {
		t.Fatalf("operator device: %d %s", resp.StatusCode, b)
	}
	return d.Online
}

// waitOnline waits until the operator API says online is want, within
// bound, and returns how long it took.
func (r *presenceRig) waitOnline(t *testing.T, want bool, bound time.Duration, what string) time.Duration {
	t.Helper()
	t0 := time.Now()
	for r.online(t) != want {
		if time.Since(t0) > bound {
			t.Fatalf("%s: operator API still says online=%v after %v", what, !want, bound)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(t0)
}

// presenceBackend is a broker and a database; db makes the database for
// one subtest.
type presenceBackend struct {
	name, broker string
	db           func(t *testing.T) string
}

func presenceBackends() []presenceBackend {
	return []presenceBackend{
		{"embedded-sqlite", "embedded", func(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "cloud.db") }},
		{"mosquitto-postgres", "mosquitto", pgScratchDSN},
	}
}

// SIGKILL of a running controller: the operator API says offline within
// seconds (the will, and on the embedded broker the disconnect hook), and
// online again once it is restarted.
func TestControllerKilledShowsOffline(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes; run without -short")
	}
	for _, b := range presenceBackends() {
		t.Run(b.name, func(t *testing.T) {
			dsn := b.db(t)
			r := newPresenceRig(t, b.broker, dsn)
			r.waitOnline(t, true, 60*time.Second, "controller start")
			time.Sleep(3 * time.Second) // several telemetry periods: telemetry newer than the will's stamp
			r.controller.kill9()
			took := r.waitOnline(t, false, 15*time.Second, "after kill -9")
			t.Logf("%s: offline %v after kill -9", b.name, took.Round(10*time.Millisecond))
			r.startController(t)
			took = r.waitOnline(t, true, 60*time.Second, "after restart")
			t.Logf("%s: online again %v after restart", b.name, took.Round(10*time.Millisecond))
		})
	}
}

// A hung controller (SIGSTOP) keeps its TCP connection: no will, no
// disconnect until the broker's keepalive runs out (45 s). The staleness
// bound (-presence-stale, here 4 s with 1 s telemetry) says offline first.
func TestControllerHungShowsOfflineAtBound(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes; run without -short")
	}
	for _, b := range presenceBackends() {
		t.Run(b.name, func(t *testing.T) {
			dsn := b.db(t)
			r := newPresenceRig(t, b.broker, dsn, "-presence-stale", "4s")
			r.waitOnline(t, true, 60*time.Second, "controller start")
			time.Sleep(6 * time.Second) // beyond the bound: a healthy board stays online
			if !r.online(t) {
				t.Fatal("a healthy board reporting every second went offline with a 4 s bound")
			}
			if err := r.controller.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			took := r.waitOnline(t, false, 4*time.Second+2*time.Second, "after SIGSTOP") // bound + sweep interval + a margin
			t.Logf("%s: offline %v after SIGSTOP (bound 4 s)", b.name, took.Round(10*time.Millisecond))
			_ = r.controller.cmd.Process.Signal(syscall.SIGCONT)
			r.waitOnline(t, true, 30*time.Second, "after SIGCONT")
		})
	}
}

// `cloud device rotate-key` drives the real controller's in-band
// rotation: the board makes the key pair and proposes it, the cloud
// records it and commits, and the board writes the new seed to its key
// file; the cloud's next key is exactly that key (the promotion waits for
// the board's first report under it).
func TestRotateKeyDrivesController(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes; run without -short")
	}
	dsn := "sqlite:" + filepath.Join(t.TempDir(), "cloud.db")
	r := newPresenceRig(t, "embedded", dsn)
	r.waitOnline(t, true, 60*time.Second, "controller start")
	keyFile := filepath.Join(r.dir, "water", "device.key")
	before, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	rotate := func(args ...string) map[string]any {
		t.Helper()
		out, err := exec.Command(filepath.Join(r.bin, "cloud"), append([]string{"device", "rotate-key", "-data", r.data, "-db", dsn, "-id", "p-water"}, args...)...).Output()
		if err != nil {
			t.Fatalf("rotate-key %v: %v %s", args, err, out)
		}
		var m map[string]any
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatalf("rotate-key printed %q", out)
		}
		return m
	}
	if m := rotate(); m["rotation"] != "requested" {
		t.Fatalf("rotate-key = %v, want requested", m)
	}
	var m map[string]any
	deadline := time.Now().Add(30 * time.Second)
	for m = rotate("-status"); m["rotation"] != "committed"; m = rotate("-status") {
		if time.Now().After(deadline) {
			t.Fatalf("rotation not committed within 30 s: %v", m)
		}
		time.Sleep(200 * time.Millisecond)
	}
	after, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(before, after) {
		t.Fatal("the board's key file did not change")
	}
	seed, err := hex.DecodeString(strings.TrimSpace(string(after)))
	if err != nil || len(seed) != ed25519.SeedSize {
		t.Fatalf("board key file: %v", err)
	}
	pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
	if m["next_key"] != hex.EncodeToString(pub) {
		t.Fatalf("cloud's next key %v, the board signs with %x", m["next_key"], pub)
	}
	if m["key"] == hex.EncodeToString(pub) {
		t.Fatal("promoted before the board reported under the new key")
	}
}
