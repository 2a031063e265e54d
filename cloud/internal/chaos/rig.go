package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/broker"
	"beaconvend/cloud/internal/childproc"
	"beaconvend/cloud/internal/simdev"
	"beaconvend/hw/emu"
)

// machineSpec is how one kind of device is emulated and configured.
type machineSpec struct {
	kind    vend.MachineKind
	machine string // machine id `cloud device add` gives it
	sim     string // the emulated board (hw/emu sim config)
	ctl     map[string]any
	add     []string // further `cloud device add` flags
	board   string   // vending: the board profile the harness wires it on
}

// The soak's machines. Water flows at 6 L/min (100 mL/s) so a random
// Stop lands inside a run; the washer needs two coin pulses per cycle,
// which opens the coin-pulse window (a Stop between the pulses); the
// vending motor takes 800 ms per item, the motor window; its drop sensor
// is on a counted input (drop_counter), so items a motor left turning by
// a killed controller drops are counted and billed.
var specs = []machineSpec{
	{kind: vend.KindWater, machine: "tap1",
		sim: "profile: pulse-io-4\ncomm_timeout: 3s\nmachines:\n  - {name: tap1, kind: water, valve: out1, flow: count1, flow_lpm: 6, k_factor: 450}\n"},
	{kind: vend.KindWasher, machine: "washer1",
		sim: "profile: generic-relay-8\ncomm_timeout: 3s\nmachines:\n  - {name: washer1, kind: washer, coin: relay1, running: in1, credit: 2, cycle: 6s}\n",
		ctl: map[string]any{"pulses_per_credit": 2, "start_timeout": "10s"}},
	{kind: vend.KindVending, machine: "vm1", board: "pulse-io-4",
		sim: "profile: pulse-io-4\ncomm_timeout: 3s\nmachines:\n  - name: vm1\n    kind: vending\n    drop: in1\n    drop_counter: count1\n    drop_after: 800ms\n    slots: [{name: A1, motor: out1}, {name: A2, motor: out2}]\n"},
}

// device is one real controller on its emulated board, behind its link.
type device struct {
	simdev.Identity
	spec  machineSpec
	dir   string
	skew  time.Duration
	emu   *emu.Emulator
	emuRC context.CancelFunc
	emuWG sync.WaitGroup
	link  *linkProxy
	ctl   *childproc.Proc
}

// rig is the soak's deployment on loopback.
type rig struct {
	cfg     Config
	dsn     string
	data    string
	mqttDir string
	mqttURL string
	httpURL string
	opEmail string
	opPass  string

	mosq  *childproc.Proc
	cloud *childproc.Proc
	devs  []*device
	toks  []string
}

// newRig provisions the operator, the devices and the phones, then starts
// Mosquitto, the cloud, the boards, the links and the controllers, and
// waits for every device to be online.
func newRig(ctx context.Context, cfg Config, rng *rand.Rand) (*rig, error) {
	r := &rig{cfg: cfg, data: filepath.Join(cfg.Dir, "data"), mqttDir: filepath.Join(cfg.Dir, "mosquitto")}
	r.dsn = cfg.PostgresDSN
	if cfg.DB == "sqlite" {
		r.dsn = "sqlite:" + filepath.Join(cfg.Dir, "cloud.db")
	}
	mqttAddr, err := simdev.FreeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	httpAddr, err := simdev.FreeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	r.mqttURL, r.httpURL = "tcp://"+mqttAddr, "http://"+httpAddr

	// Provision before the cloud starts: it loads device keys at start.
	r.opEmail, r.opPass = fmt.Sprintf("chaos-%d@chaos.example", rng.Uint32()), fmt.Sprintf("chaos-pw-%016x", rng.Uint64())
	pwFile := filepath.Join(r.data, "operator.pw") // passwords never go on a command line
	if err := os.MkdirAll(r.data, 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(pwFile, []byte(r.opPass+"\n"), 0o600); err != nil {
		return nil, err
	}
	out, err := r.cloudCmd(ctx, "operator", "add", "-name", "chaos soak", "-email", r.opEmail, "-password-file", pwFile)
	if err != nil {
		return nil, err
	}
	var op struct{ Operator string }
	if err := json.Unmarshal(out, &op); err != nil || op.Operator == "" {
		return nil, fmt.Errorf("chaos: cloud operator add printed %q", out)
	}
	for i := range cfg.Devices {
		sp := specs[i%len(specs)]
		id := fmt.Sprintf("chaos-%s-%02d", sp.kind, i)
		dir := filepath.Join(cfg.Dir, "dev", id)
		args := append([]string{"device", "add", "-operator", op.Operator, "-id", id, "-kind", string(sp.kind),
			"-out", dir, "-mqtt-url", "tcp://127.0.0.1:1", "-mosquitto-dir", r.mqttDir, "-mosquitto-user", "", "-mosquitto-group", "",
			"-mosquitto-persistence", ""}, sp.add...)
		if _, err := r.cloudCmd(ctx, args...); err != nil {
			return nil, err
		}
		if err := simdev.WriteController(dir, simdev.Wiring{Port: "/dev/null", VendingBoard: sp.board}); err != nil {
			return nil, err
		}
		ident, err := simdev.IdentityFromDir(dir)
		if err != nil {
			return nil, err
		}
		d := &device{Identity: ident, spec: sp, dir: dir}
		if r.cfg.Skew {
			d.skew = time.Duration(rng.Int64N(int64(20*time.Minute))) - 10*time.Minute
		}
		r.devs = append(r.devs, d)
	}
	if r.toks, err = simdev.ProvisionPhones(ctx, r.dsn, fmt.Sprintf("chaos%d", rng.Uint32()), cfg.Phones); err != nil {
		return nil, err
	}

	if err := r.writeMosquittoConf(mqttAddr); err != nil {
		return nil, err
	}
	r.mosq = &childproc.Proc{Name: "mosquitto", Bin: cfg.MosquittoBin, LogPath: filepath.Join(r.mqttDir, "mosquitto.out"),
		Args: []string{"-c", filepath.Join(r.mqttDir, "chaos.conf")}}
	if err := r.startBroker(); err != nil {
		return nil, err
	}
	r.cloud = &childproc.Proc{Name: "cloud", Bin: cfg.CloudBin, LogPath: filepath.Join(cfg.Dir, "cloud.log"),
		Args: []string{"serve", "-dev", "-data", r.data, "-db", r.dsn, "-http", httpAddr, "-broker", r.mqttURL}}
	if err := r.startCloud(ctx); err != nil {
		return nil, err
	}
	for _, d := range r.devs {
		if err := r.startDevice(d); err != nil {
			return nil, err
		}
	}
	if err := r.waitOnline(ctx, 60*time.Second); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *rig) cloudCmd(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	args = append(args, "-data", r.data, "-db", r.dsn)
	cmd := exec.CommandContext(ctx, r.cfg.CloudBin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("chaos: cloud %s: %w\n%s", strings.Join(args[:2], " "), err, stderr.Bytes())
	}
	return stdout.Bytes(), nil
}

// writeMosquittoConf writes the broker's configuration on a fixed port
// with persistence, so a restarted broker keeps persistent sessions and
// their queued messages, as a site broker does.
func (r *rig) writeMosquittoConf(addr string) error {
	cfg := broker.MosquittoConfig{Addr: addr, PasswordFile: filepath.Join(r.mqttDir, "passwords"), ACLFile: filepath.Join(r.mqttDir, "acl"),
		PersistenceDir: filepath.Join(r.mqttDir, "persist") + "/"}
	if err := os.MkdirAll(cfg.PersistenceDir, 0o700); err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		cfg.User = "root"
	}
	var b bytes.Buffer
	if _, err := cfg.WriteTo(&b); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(r.mqttDir, "chaos.conf"), b.Bytes(), 0o600)
}

func (r *rig) startBroker() error {
	if err := r.mosq.Start(); err != nil {
		return err
	}
	addr := strings.TrimPrefix(r.mqttURL, "tcp://")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			return c.Close()
		}
		if !r.mosq.Running() || time.Now().After(deadline) {
			return fmt.Errorf("chaos: mosquitto not accepting on %s; output:\n%s", addr, r.mosq.Tail(2000))
		}
	}
}

func (r *rig) startCloud(ctx context.Context) error {
	if err := r.cloud.Start(); err != nil {
		return err
	}
	hc := &http.Client{Timeout: 2 * time.Second}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.httpURL+"/healthz", nil)
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if !r.cloud.Running() || time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("chaos: cloud not serving on %s; log:\n%s", r.httpURL, r.cloud.Tail(3000))
		}
	}
}

// startDevice starts the device's emulated board (once: a board keeps its
// state, like the hardware, while its controller is killed), its link and
// its controller.
func (r *rig) startDevice(d *device) error {
	sim, err := emu.ParseSimConfig(strings.NewReader(d.spec.sim))
	if err != nil {
		return err
	}
	prof, err := sim.ResolveProfile("")
	if err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(d.dir, "emu.log"))
	if err != nil {
		return err
	}
	e, err := emu.Open(prof, sim, &emu.Opts{Logger: slog.New(slog.NewTextHandler(logf, nil))})
	if err != nil {
		return fmt.Errorf("chaos: %s board: %w", d.ID, err)
	}
	d.emu = e
	ectx, cancel := context.WithCancel(context.Background())
	d.emuRC = cancel
	d.emuWG.Add(1)
	go func() { defer d.emuWG.Done(); defer logf.Close(); _ = e.Run(ectx) }()
	if d.link, err = newLinkProxy(strings.TrimPrefix(r.mqttURL, "tcp://")); err != nil {
		return err
	}
	cfgPath := filepath.Join(d.dir, "controller.yaml")
	if err := controllerConfig(cfgPath, d.link.URL(), e.BoardPath(), d.spec.ctl); err != nil {
		return fmt.Errorf("chaos: %s: %w", d.ID, err)
	}
	args := []string{"-config", cfgPath}
	if r.cfg.Skew {
		args = append(args, "-clock-skew="+d.skew.String())
	}
	d.ctl = &childproc.Proc{Name: "controller " + d.ID, Bin: r.cfg.ControllerBin, LogPath: filepath.Join(d.dir, "controller.log"), Args: args}
	return d.ctl.Start()
}

// controllerConfig points the controller config `cloud device add` wrote
// at the link and the board's pty, turns its beacon off and sets the
// soak's machine settings.
func controllerConfig(path, brokerURL, port string, machine map[string]any) error {
	return simdev.ControllerConfig(path, brokerURL, port, func(y map[string]any) {
		ms, _ := y["machines"].([]any)
		if len(ms) == 0 || machine == nil {
			return
		}
		m, _ := ms[0].(map[string]any)
		for _, sec := range []string{"washer", "vending", "water"} {
			if s, ok := m[sec].(map[string]any); ok {
				for k, v := range machine {
					s[k] = v
				}
			}
		}
	})
}

// operatorToken logs the operator in.
func (r *rig) operatorToken(ctx context.Context) (string, error) {
	var out struct{ Token string }
	body, _ := json.Marshal(map[string]string{"email": r.opEmail, "password": r.opPass})
	if err := httpJSON(ctx, http.MethodPost, r.httpURL+"/v1/operator/auth/login", "", body, &out); err != nil {
		return "", err
	}
	return out.Token, nil
}

// waitOnline polls the operator API until every device is online.
func (r *rig) waitOnline(ctx context.Context, within time.Duration) error {
	deadline := time.Now().Add(within)
	var last error
	for time.Now().Before(deadline) && ctx.Err() == nil {
		tok, err := r.operatorToken(ctx)
		if err == nil {
			var out struct {
				Devices []struct {
					ID     string `json:"id"`
					Online bool   `json:"online"`
				} `json:"devices"`
			}
			if err = httpJSON(ctx, http.MethodGet, r.httpURL+"/v1/operator/devices", tok, nil, &out); err == nil {
				n := 0
				for _, d := range out.Devices {
					if d.Online {
						n++
					}
				}
				if n >= len(r.devs) {
					return nil
				}
				err = fmt.Errorf("%d of %d devices online", n, len(r.devs))
			}
		}
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("chaos: devices not online within %s: %v", within, last)
}

// ensureUp restores every link and starts whatever is down: the end of
// the fault phase.
func (r *rig) ensureUp(ctx context.Context) error {
	if !r.mosq.Running() {
		if err := r.startBroker(); err != nil {
			return err
		}
	}
	if !r.cloud.Running() {
		if err := r.startCloud(ctx); err != nil {
			return err
		}
	}
	for _, d := range r.devs {
		d.link.Restore()
		if !d.ctl.Running() {
			if err := d.ctl.Start(); err != nil {
				return err
			}
		}
	}
	return nil
}

// close stops the controllers (SIGTERM), the cloud, the broker, then the
// boards and links.
func (r *rig) close() {
	var wg sync.WaitGroup
	for _, d := range r.devs {
		if d.ctl != nil {
			wg.Add(1)
			go func() { defer wg.Done(); _ = d.ctl.Signal(syscall.SIGTERM, 15*time.Second) }()
		}
	}
	wg.Wait()
	if r.cloud != nil {
		_ = r.cloud.Signal(syscall.SIGTERM, 15*time.Second)
	}
	if r.mosq != nil {
		_ = r.mosq.Signal(syscall.SIGTERM, 10*time.Second)
	}
	for _, d := range r.devs {
		if d.link != nil {
			d.link.Close()
		}
		if d.emu != nil {
			d.emuRC()
			d.emuWG.Wait()
			_ = d.emu.Close()
		}
	}
}

func httpJSON(ctx context.Context, method, url, tok string, body []byte, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, bytes.TrimSpace(buf.Bytes()))
	}
	if v == nil {
		return nil
	}
	return json.Unmarshal(buf.Bytes(), v)
}
