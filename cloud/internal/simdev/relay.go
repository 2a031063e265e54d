package simdev

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/proxid"
	"beaconvend/controller/config"
	"beaconvend/hw/emu"
)

// The relay rig: a few real controller processes, each on an emulated
// Modbus board run in this process, so a harness can time a phone's
// StartSession to the instant the valve coil is written ON.
const (
	// RelayMachine is the machine id of every relay device's one water tap.
	RelayMachine = "tap1"
	// DefaultRelayFlowLPM is the emulated flow while a valve is open,
	// litres per minute: 150 ml take 0.45 s.
	DefaultRelayFlowLPM = 20
	// DefaultRelayStartTimeout bounds Start: emulators up, controllers
	// running and every device online in the cloud's store.
	DefaultRelayStartTimeout = 60 * time.Second
	// RelayStopTimeout is how long Close waits for a controller to exit
	// after SIGTERM (it stops sessions and sends their reports, up to
	// about 7 s) before it kills it.
	RelayStopTimeout = 15 * time.Second

	relayProfile  = "pulse-io-4" // what `cloud device add -kind water` configures
	relayValve    = "out1"       // tap1's valve and flow counter on it
	relayFlow     = "count1"
	relayKFactor  = 450 // pulses per litre, as `cloud device add` configures
	relayCmdLimit = 60 * time.Second
)

// RelayConfig describes a relay rig: N real controllers, one water machine
// each, against one cloud.
type RelayConfig struct {
	CloudBin      string    // the cloud program (go build ./cloud/cmd/cloud)
	ControllerBin string    // the controller program (go build ./controller/cmd/controller)
	DataDir       string    // the cloud's -data directory (cloud.key is made there if missing)
	DSN           string    // the cloud's -db; empty: SQLite under DataDir, as cloud does
	Dir           string    // controller directories (config, keys, journal, log), one per device
	N             int       // real controllers, at least 1
	FlowLPM       float64   // emulated flow while a valve is open, L/min; DefaultRelayFlowLPM when 0
	Currency      string    // the machines' currency (cloud device add -currency); its default when empty
	Log           io.Writer // progress lines; discarded when nil
}

func (c *RelayConfig) logf(format string, args ...any) {
	if c.Log != nil {
		fmt.Fprintf(c.Log, "relay: "+format+"\n", args...)
	}
}

// Relay is a relay rig: N real controller processes (controller/cmd/
// controller), each speaking Modbus RTU over a kernel pty to a board
// emulated in this process (hw/emu), one water machine per board. The
// boards' Opts.OnCoil hook timestamps every valve opening on this
// process's clock, so a harness measures tap-to-relay latency: from just
// before a phone's StartSession to the instant the valve coil is written
// ON (CoilOn). ProvisionRelay makes it before `cloud serve` starts, Start
// runs it, Close stops it; Start and Close are not called concurrently.
type Relay struct {
	Devices []*RelayDevice

	cfg      RelayConfig
	email    string // the rig's operator console login (Start reads the devices' online flag with it)
	password string

	mu      sync.Mutex
	started bool
	closed  bool
}

// RelayDevice is one real controller with its emulated board.
type RelayDevice struct {
	Identity               // id, keys and MQTT password from `cloud device add`
	Machine  string        // machine to start: RelayMachine
	Dir      string        // the controller's directory: controller.yaml, keys, journal.db, controller.log
	Emulator *emu.Emulator // its board, set by Start; Emulator.Board.Do injects faults

	valve uint16 // the valve's coil address

	mu      sync.Mutex
	ons     []time.Time   // instants the valve coil went from OFF to ON, in order
	changed chan struct{} // closed and replaced when ons grows

	cancel  context.CancelFunc // stops the emulator's Run
	runDone chan struct{}      // closed when the emulator's Run returned
	runErr  error              // what it returned
	emuLog  *os.File

	cmd     *exec.Cmd
	logPath string
	exited  chan struct{} // closed when the controller process has exited
	waitErr error         // its exit status
}

// ProximityID is the ID the device's beacon broadcasts at t, as a phone
// standing at the machine hears it.
func (d *RelayDevice) ProximityID(at time.Time) phoneapi.ProximityID {
	return phoneapi.ProximityID(proxid.Compute(d.IDKey, proxid.Counter(at), d.K).String())
}

// StartRequest is a phone's request at t for capML millilitres of the
// device's water, paid from the wallet.
func (d *RelayDevice) StartRequest(at time.Time, capML uint64) *phoneapi.StartSessionRequest {
	return &phoneapi.StartSessionRequest{Device: phoneapi.DeviceID(d.ID), Machine: phoneapi.MachineID(d.Machine),
		ProximityID: d.ProximityID(at), Cap: phoneapi.Cap{Units: capML}, Source: "wallet"}
}

// ProvisionRelay adds an operator and N water devices (relay-00,
// relay-01, …) with `cloud operator add` and `cloud device add`, writing
// each controller's directory under cfg.Dir. Run it before `cloud serve`
// starts: the cloud's proximity-ID resolver loads device keys at start.
// It provisions once per database (device ids would clash). Errors: a
// bad config, a cloud command that fails (its output included) or does
// not finish within a minute, or ctx.
func ProvisionRelay(ctx context.Context, cfg RelayConfig) (*Relay, error) {
	switch {
	case cfg.CloudBin == "" || cfg.ControllerBin == "":
		return nil, errors.New("simdev: relay needs CloudBin and ControllerBin")
	case cfg.DataDir == "" || cfg.Dir == "":
		return nil, errors.New("simdev: relay needs DataDir and Dir")
	case cfg.N < 1 || cfg.N > 100:
		return nil, fmt.Errorf("simdev: relay N %d: want 1-100", cfg.N)
	case cfg.FlowLPM < 0:
		return nil, fmt.Errorf("simdev: relay flow %g L/min: want > 0", cfg.FlowLPM)
	}
	if cfg.FlowLPM == 0 {
		cfg.FlowLPM = DefaultRelayFlowLPM
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("simdev: relay dir: %w", err)
	}
	p, err := emu.ParseSimConfig(strings.NewReader(relaySim(cfg.FlowLPM)))
	if err != nil {
		return nil, fmt.Errorf("simdev: relay sim config: %w", err)
	}
	prof, err := p.ResolveProfile("")
	if err != nil {
		return nil, err
	}
	valve, _ := prof.Output(relayValve)

	tag := relayRandHex(4)
	r := &Relay{cfg: cfg, email: "relay-rig-" + tag + "@relay.example", password: relayRandHex(16)}
	t0 := time.Now()
	pwFile := filepath.Join(cfg.Dir, "operator.pw") // passwords never go on a command line
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(pwFile, []byte(r.password+"\n"), 0o600); err != nil {
		return nil, err
	}
	out, err := r.cloud(ctx, "operator", "add", "-name", "relay rig "+tag, "-email", r.email, "-password-file", pwFile)
	if err != nil {
		return nil, err
	}
	var op struct{ Operator string }
	if err := json.Unmarshal(out, &op); err != nil || op.Operator == "" {
		return nil, fmt.Errorf("simdev: cloud operator add printed %q", out)
	}
	for i := range cfg.N {
		id := fmt.Sprintf("relay-%02d", i)
		dir := filepath.Join(cfg.Dir, id)
		// The port and broker are placeholders until Start knows them.
		args := []string{"device", "add", "-operator", op.Operator, "-id", id, "-kind", "water", "-machines", "1",
			"-out", dir, "-mqtt-url", "tcp://127.0.0.1:1"}
		if cfg.Currency != "" {
			args = append(args, "-currency", cfg.Currency)
		}
		if _, err := r.cloud(ctx, args...); err != nil {
			return nil, err
		}
		if err := WriteController(dir, Wiring{Port: "/dev/null"}); err != nil {
			return nil, err
		}
		ident, err := IdentityFromDir(dir)
		if err != nil {
			return nil, err
		}
		r.Devices = append(r.Devices, &RelayDevice{Identity: ident, Machine: RelayMachine, Dir: dir, valve: valve.Coil,
			changed: make(chan struct{}), logPath: filepath.Join(dir, "controller.log")})
	}
	cfg.logf("provisioned %d real controllers in %s", cfg.N, time.Since(t0).Round(time.Millisecond))
	return r, nil
}

// relaySim is the emulated board of a relay device: tap1 as `cloud device
// add` wires it, with the fail-safe communication timeout the demo uses.
func relaySim(lpm float64) string {
	return fmt.Sprintf("profile: %s\ncomm_timeout: 3s\nmachines:\n  - {name: %s, kind: water, valve: %s, flow: %s, flow_lpm: %g, k_factor: %d}\n",
		relayProfile, RelayMachine, relayValve, relayFlow, lpm, relayKFactor)
}

// cloud runs one cloud CLI command against the rig's data directory and
// database and returns its standard output.
func (r *Relay) cloud(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, relayCmdLimit)
	defer cancel()
	args = append(args, "-data", r.cfg.DataDir)
	if r.cfg.DSN != "" {
		args = append(args, "-db", r.cfg.DSN)
	}
	cmd := exec.CommandContext(ctx, r.cfg.CloudBin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("simdev: cloud %s %s: %w\n%s", args[0], args[1], err, stderr.Bytes())
	}
	return stdout.Bytes(), nil
}

// Start starts, per device, its emulated board (in this process, so the
// valve's coil writes are timed on this process's clock) and its
// controller process, connected to the broker at brokerURL (the embedded
// broker or Mosquitto; plain tcp:// on loopback) and with no beacon (the
// phone's proximity ID is computed, see ProximityID). It returns once
// the cloud at httpURL has every device online, which is what
// StartSession checks, or an error: a board or process that cannot start,
// a controller that exits, or devices still offline after
// DefaultRelayStartTimeout or when ctx ends. Call Close afterwards, also
// when Start fails.
func (r *Relay) Start(ctx context.Context, brokerURL, httpURL string) error {
	r.mu.Lock()
	if r.started || r.closed {
		r.mu.Unlock()
		return errors.New("simdev: relay already started or closed")
	}
	r.started = true
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, DefaultRelayStartTimeout)
	defer cancel()
	t0 := time.Now()
	for _, d := range r.Devices {
		if err := r.startDevice(d, brokerURL); err != nil {
			return err
		}
	}
	if err := r.waitOnline(ctx, httpURL); err != nil {
		return err
	}
	r.cfg.logf("%d real controllers online in %s", len(r.Devices), time.Since(t0).Round(time.Millisecond))
	return nil
}

func (r *Relay) startDevice(d *RelayDevice, brokerURL string) error {
	sim, err := emu.ParseSimConfig(strings.NewReader(relaySim(r.cfg.FlowLPM)))
	if err != nil {
		return err
	}
	prof, err := sim.ResolveProfile("")
	if err != nil {
		return err
	}
	d.emuLog, err = os.Create(filepath.Join(d.Dir, "emu.log"))
	if err != nil {
		return fmt.Errorf("simdev: %s: %w", d.ID, err)
	}
	e, err := emu.Open(prof, sim, &emu.Opts{
		Logger: slog.New(slog.NewTextHandler(d.emuLog, nil)),
		OnCoil: d.onCoil,
	})
	if err != nil {
		d.emuLog.Close()
		return fmt.Errorf("simdev: %s: %w", d.ID, err)
	}
	d.Emulator = e
	ectx, ecancel := context.WithCancel(context.Background())
	d.cancel, d.runDone = ecancel, make(chan struct{})
	go func() {
		defer close(d.runDone)
		d.runErr = e.Run(ectx)
	}()

	cfgPath := filepath.Join(d.Dir, "controller.yaml")
	if err := ControllerConfig(cfgPath, brokerURL, e.BoardPath(), nil); err != nil {
		return fmt.Errorf("simdev: %s: %w", d.ID, err)
	}
	logf, err := os.Create(d.logPath)
	if err != nil {
		return fmt.Errorf("simdev: %s: %w", d.ID, err)
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command(r.cfg.ControllerBin, "-config", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("simdev: %s: start controller: %w", d.ID, err)
	}
	d.cmd, d.exited = cmd, make(chan struct{})
	go func() {
		defer close(d.exited)
		d.waitErr = cmd.Wait()
	}()
	return nil
}

// ControllerConfig points the controller config WriteController made
// at path at the broker and the board's pty and turns its beacon off;
// edit, when set, changes the parsed YAML further (a harness's machine
// settings). The file is rewritten with the controller's own secret-file
// writer and loaded back, so a config the controller would refuse is an
// error here.
func ControllerConfig(path, brokerURL, port string, edit func(y map[string]any)) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var y map[string]any
	if err := yaml.Unmarshal(b, &y); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	set := func(section, key string, v any) {
		m, _ := y[section].(map[string]any)
		if m == nil {
			m = map[string]any{}
			y[section] = m
		}
		m[key] = v
	}
	set("mqtt", "broker", brokerURL)
	set("board", "port", port)
	set("beacon", "backend", "none")
	if edit != nil {
		edit(y)
	}
	out, err := yaml.Marshal(y)
	if err != nil {
		return err
	}
	if err := config.WriteSecret(path, out); err != nil {
		return err
	}
	_, err = config.Load(path)
	return err
}

// onCoil is the emulator's OnCoil hook: called with the board's lock
// held, so it only records.
func (d *RelayDevice) onCoil(addr uint16, on bool, at time.Time) {
	if addr != d.valve || !on {
		return
	}
	d.mu.Lock()
	d.ons = append(d.ons, at)
	close(d.changed)
	d.changed = make(chan struct{})
	d.mu.Unlock()
}

// waitOnline polls the operator API until every relay device is online
// in the cloud's store, failing early when a controller exits.
func (r *Relay) waitOnline(ctx context.Context, base string) error {
	hc := &http.Client{Timeout: 5 * time.Second}
	var tok string
	var last error
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		for _, d := range r.Devices {
			select {
			case <-d.exited:
				return fmt.Errorf("simdev: controller %s exited at start (%v); log:\n%s", d.ID, d.waitErr, relayTail(d.logPath))
			default:
			}
		}
		if tok == "" {
			tok, last = r.operatorLogIn(ctx, hc, base)
		}
		if tok != "" {
			var offline []string
			offline, last = r.offline(ctx, hc, base, tok)
			if last == nil && len(offline) == 0 {
				return nil
			}
			if last == nil {
				last = fmt.Errorf("offline: %s", strings.Join(offline, ", "))
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("simdev: relay devices not online: %v (%w)", last, ctx.Err())
		case <-t.C:
		}
	}
}

func (r *Relay) operatorLogIn(ctx context.Context, hc *http.Client, base string) (string, error) {
	body, _ := json.Marshal(map[string]string{"email": r.email, "password": r.password})
	var out struct{ Token string }
	if err := relayJSON(ctx, hc, http.MethodPost, base+"/v1/operator/auth/login", "", body, &out); err != nil {
		return "", err
	}
	return out.Token, nil
}

// offline returns the relay devices the cloud does not have online: the
// operator API's device list (cloud/httpapi.OperatorDevice, of which only
// id and online are read, so this package needs neither httpapi nor the
// service behind it) shows the store's online flag, which StartSession
// checks.
func (r *Relay) offline(ctx context.Context, hc *http.Client, base, tok string) ([]string, error) {
	type device struct {
		ID     string `json:"id"`
		Online bool   `json:"online"`
	}
	var out struct {
		Devices []device `json:"devices"`
	}
	if err := relayJSON(ctx, hc, http.MethodGet, base+"/v1/operator/devices", tok, nil, &out); err != nil {
		return nil, err
	}
	var offline []string
	for _, d := range r.Devices {
		i := slices.IndexFunc(out.Devices, func(o device) bool { return o.ID == d.ID })
		if i < 0 || !out.Devices[i].Online {
			offline = append(offline, d.ID)
		}
	}
	return offline, nil
}

func relayJSON(ctx context.Context, hc *http.Client, method, url, tok string, body []byte, v any) error {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, bytes.TrimSpace(b))
	}
	return json.Unmarshal(b, v)
}

// CoilOn waits until device i's valve coil goes from OFF to ON at or
// after `after`, and returns that instant as the emulated board saw the
// write (this process's clock, with its monotonic reading, so it can be
// subtracted from a time.Now taken before the phone's request). It
// returns an error for a bad i, after timeout, or when ctx ends.
func (r *Relay) CoilOn(ctx context.Context, i int, after time.Time, timeout time.Duration) (time.Time, error) {
	if i < 0 || i >= len(r.Devices) {
		return time.Time{}, fmt.Errorf("simdev: relay device %d: have %d", i, len(r.Devices))
	}
	d := r.Devices[i]
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		d.mu.Lock()
		// ons is in order: the first at or after `after` is the one.
		j, _ := slices.BinarySearchFunc(d.ons, after, func(a, b time.Time) int { return a.Compare(b) })
		var at time.Time
		if j < len(d.ons) {
			at = d.ons[j]
		}
		changed := d.changed
		d.mu.Unlock()
		if !at.IsZero() {
			return at, nil
		}
		select {
		case <-changed:
		case <-t.C:
			return time.Time{}, fmt.Errorf("simdev: %s: valve not switched on within %s", d.ID, timeout)
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("simdev: %s: waiting for the valve: %w", d.ID, ctx.Err())
		}
	}
}

// Close stops every controller (SIGTERM; killed after RelayStopTimeout),
// then every emulated board, and returns the first error: a controller
// that had to be killed or exited with an error, or a board that failed.
// A second Close does nothing.
func (r *Relay) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()
	errs := make([]error, 2*len(r.Devices))
	var wg sync.WaitGroup
	for i, d := range r.Devices {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = d.stopController() }()
	}
	wg.Wait()
	// The boards stay up until their controllers have switched everything
	// OFF and exited.
	for i, d := range r.Devices {
		errs[len(r.Devices)+i] = d.stopEmulator()
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func (d *RelayDevice) stopController() error {
	if d.cmd == nil {
		return nil
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("simdev: controller %s: %w", d.ID, err)
	}
	t := time.NewTimer(RelayStopTimeout)
	defer t.Stop()
	select {
	case <-d.exited:
	case <-t.C:
		d.cmd.Process.Kill()
		<-d.exited
		return fmt.Errorf("simdev: controller %s did not stop within %s after SIGTERM; killed", d.ID, RelayStopTimeout)
	}
	if d.waitErr != nil {
		return fmt.Errorf("simdev: controller %s: %w; log:\n%s", d.ID, d.waitErr, relayTail(d.logPath))
	}
	return nil
}

func (d *RelayDevice) stopEmulator() error {
	if d.Emulator == nil {
		return nil
	}
	d.cancel()
	<-d.runDone
	err := d.Emulator.Close()
	if d.runErr != nil {
		err = d.runErr
	}
	if cerr := d.emuLog.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("simdev: %s: board: %w", d.ID, err)
	}
	return nil
}

// relayTail is the end of a log file, for errors.
func relayTail(path string) []byte {
	b, _ := os.ReadFile(path)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return b
}

func relayRandHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
