package clusterfault

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"beaconvend/app-protocol/signed"
	"beaconvend/cloud/broker"
	"beaconvend/cloud/internal/childproc"
	"beaconvend/cloud/internal/simdev"
	"beaconvend/cloud/store"
	"beaconvend/controller/config"
)

// brokers is the MQTT side of the deployment: its nodes' MQTT listeners
// and the means to kill and restart one.
type brokers interface {
	addrs() []string // host:port of every node's MQTT listener
	kill(i int) error
	restart(i int) error
	pids() []int
	close()
	// cloudConfig is what the cloud's configuration file says of the
	// broker, beyond the MQTT url the test passes on its command line.
	cloudConfig() string
}

// rig is the deployment on loopback.
type rig struct {
	cfg     Config
	db      *store.Store
	brk     brokers
	mqttLB  *balancer
	httpLB  *balancer
	clouds  []*childproc.Proc
	httpAt  []string // each instance's HTTP address (host:port)
	devs    []*simdev.Device
	relay   *simdev.Relay
	toks    []string
	devStop context.CancelFunc
	devWG   sync.WaitGroup
	closed  sync.Once
}

// cloudGroup is the instances' consumer group.
const cloudGroup = "clusterfault"

func newRig(ctx context.Context, cfg Config) (_ *rig, err error) {
	r := &rig{cfg: cfg}
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	if r.db, err = store.Open(ctx, cfg.DSN, &store.Opts{MaxOpenConns: 4}); err != nil {
		return r, err
	}
	t0 := time.Now()
	ids, toks, err := simdev.Provision(ctx, cfg.DSN, "cf", cfg.Devices, cfg.Phones)
	if err != nil {
		return r, err
	}
	r.toks = toks

	// Both instances share the signing key and the broker account, as a
	// fleet's instances do.
	seed := make([]byte, ed25519.SeedSize)
	pw := make([]byte, 32)
	rand.Read(seed)
	rand.Read(pw)
	key := ed25519.NewKeyFromSeed(seed)
	cloudPW := hex.EncodeToString(pw)
	dataDirs := []string{filepath.Join(cfg.Dir, "data0"), filepath.Join(cfg.Dir, "data1")}
	for _, d := range dataDirs {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return r, err
		}
		if err := config.WriteSecret(filepath.Join(d, "cloud.key"), []byte(hex.EncodeToString(seed)+"\n")); err != nil {
			return r, err
		}
		if err := config.WriteSecret(filepath.Join(d, "mqtt-cloud.secret"), []byte(cloudPW+"\n")); err != nil {
			return r, err
		}
	}
	cloudKeys, err := signed.NewKeys(key.Public().(ed25519.PublicKey))
	if err != nil {
		return r, err
	}
	if r.relay, err = simdev.ProvisionRelay(ctx, simdev.RelayConfig{CloudBin: cfg.CloudBin, ControllerBin: cfg.ControllerBin,
		DataDir: dataDirs[0], DSN: cfg.DSN, Dir: filepath.Join(cfg.Dir, "controllers"), N: cfg.Controllers, Log: cfg.Log}); err != nil {
		return r, err
	}
	cfg.logf("provisioned %d devices, %d controllers, %d phones in %s", cfg.Devices, cfg.Controllers, cfg.Phones, time.Since(t0).Round(time.Millisecond))

	hash, err := broker.HashPassword(cloudPW)
	if err != nil {
		return r, err
	}
	entries := []broker.PasswordEntry{{User: broker.DefaultCloudUser, Hash: hash}}
	all := append([]simdev.Identity(nil), ids...)
	for _, d := range r.relay.Devices {
		all = append(all, d.Identity)
	}
	for _, id := range all {
		h, err := broker.HashPassword(id.Password)
		if err != nil {
			return r, err
		}
		entries = append(entries, broker.PasswordEntry{User: id.ID, Hash: h})
	}
	bdir := filepath.Join(cfg.Dir, "broker")
	if cfg.Broker == "nats" {
		r.brk, err = startNATS(bdir)
	} else {
		r.brk, err = startMosquitto(cfg.MosquittoBin, entries, bdir)
	}
	if err != nil {
		return r, err
	}
	if r.mqttLB, err = newBalancer(r.brk.addrs()); err != nil {
		return r, err
	}

	// The cloud instances, on fixed loopback ports behind the HTTP
	// balancer (a killed instance comes back on the same address).
	cfgFile := filepath.Join(cfg.Dir, "cloud.yaml")
	if err := os.WriteFile(cfgFile, []byte(r.brk.cloudConfig()), 0o600); err != nil {
		return r, err
	}
	for i, d := range dataDirs {
		addr, err := simdev.FreeLoopbackAddr()
		if err != nil {
			return r, err
		}
		args := []string{"serve", "-dev", "-data", d, "-db", cfg.DSN, "-http", addr, "-broker", "tcp://" + r.mqttLB.Addr(), "-group", cloudGroup}
		if c := r.brk.cloudConfig(); c != "" {
			args = append(args, "-config", cfgFile)
		}
		p := &childproc.Proc{Name: fmt.Sprintf("cloud%d", i), Bin: cfg.CloudBin, Args: args, LogPath: filepath.Join(cfg.Dir, fmt.Sprintf("cloud%d.log", i))}
		r.clouds, r.httpAt = append(r.clouds, p), append(r.httpAt, addr)
		if err := r.startCloud(ctx, i); err != nil {
			return r, err
		}
	}
	if r.httpLB, err = newBalancer(r.httpAt); err != nil {
		return r, err
	}

	t0 = time.Now()
	dctx, cancel := context.WithCancel(context.Background())
	r.devStop = cancel
	for _, id := range ids {
		id.Cloud = cloudKeys
		d := simdev.New(id, simdev.Options{ResendAfter: 2 * time.Second, Telemetry: 20 * time.Second,
			UsageDelay: func() time.Duration { return time.Duration(200+mrandN(800)) * time.Millisecond }})
		r.devs = append(r.devs, d)
	}
	// The first connect to a new NATS cluster makes its MQTT streams
	// (they can time out while JetStream elects its leaders): one device
	// first, then the rest, each retried a few times.
	connect := func(i int) error {
		var err error
		for range 6 {
			if err = r.devs[i].Connect("tcp://" + r.mqttLB.Addr()); err == nil {
				return nil
			}
			time.Sleep(2 * time.Second)
		}
		return err
	}
	if err := connect(0); err != nil {
		return r, err
	}
	if err := parallelErr(len(r.devs)-1, 8, func(i int) error { return connect(i + 1) }); err != nil {
		return r, err
	}
	for _, d := range r.devs {
		r.devWG.Add(1)
		go func() { defer r.devWG.Done(); d.Run(dctx) }()
	}
	if err := r.relay.Start(ctx, "tcp://"+r.mqttLB.Addr(), r.httpURL()); err != nil {
		return r, err
	}
	if err := r.waitOnline(ctx, 2*time.Minute); err != nil {
		return r, err
	}
	cfg.logf("%d devices and %d controllers online in %s", len(r.devs), cfg.Controllers, time.Since(t0).Round(time.Millisecond))
	return r, nil
}

func (r *rig) httpURL() string { return "http://" + r.httpLB.Addr() }

func (r *rig) startCloud(ctx context.Context, i int) error {
	p := r.clouds[i]
	if err := p.Start(); err != nil {
		return err
	}
	hc := &http.Client{Timeout: 2 * time.Second}
	// A cloud that cannot reach the database exits; during a failover it
	// is started again until the deadline, as a supervisor does.
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.httpAt[i]+"/healthz", nil)
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			p.Kill()
			return fmt.Errorf("clusterfault: %s not serving on %s; log:\n%s", p.Name, r.httpAt[i], p.Tail(3000))
		}
		if !p.Running() {
			time.Sleep(time.Second)
			if err := p.Start(); err != nil {
				return err
			}
		}
	}
}

// online is the number of devices the store has online.
func (r *rig) online(ctx context.Context) (int, error) {
	var n int
	err := r.db.DB().QueryRowContext(ctx, `SELECT COUNT(*) FROM devices WHERE online = 1`).Scan(&n)
	return n, err
}

// waitOnline waits until every device and controller is online in the
// store.
func (r *rig) waitOnline(ctx context.Context, within time.Duration) error {
	want := len(r.devs) + len(r.relay.Devices)
	var n int
	var err error
	for deadline := time.Now().Add(within); time.Now().Before(deadline) && ctx.Err() == nil; time.Sleep(250 * time.Millisecond) {
		if n, err = r.online(ctx); err == nil && n >= want {
			return nil
		}
	}
	return fmt.Errorf("clusterfault: %d of %d devices online after %s (%v)", n, want, within, err)
}

// close stops everything the rig started, also after a failure: the
// devices, the controllers and their boards, the clouds, the balancers,
// the brokers.
func (r *rig) close() { r.closed.Do(r.closeAll) }

func (r *rig) closeAll() {
	if r.devStop != nil {
		r.devStop()
		r.devWG.Wait()
	}
	parallelErr(len(r.devs), 64, func(i int) error { r.devs[i].Close(); return nil })
	if r.relay != nil {
		if err := r.relay.Close(); err != nil {
			r.cfg.logf("closing the controllers: %v", err)
		}
	}
	for _, p := range r.clouds {
		_ = p.Signal(syscall.SIGTERM, 15*time.Second)
	}
	if r.httpLB != nil {
		r.httpLB.Close()
	}
	if r.mqttLB != nil {
		r.mqttLB.Close()
	}
	if r.brk != nil {
		r.brk.close()
	}
	if r.db != nil {
		r.db.Close()
	}
}

// mosquittoBrokers is one Mosquitto: the deployment of today's site
// broker, for running the test where NATS cannot be had.
type mosquittoBrokers struct {
	p    *childproc.Proc
	addr string
}

func startMosquitto(bin string, entries []broker.PasswordEntry, dir string) (brokers, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	var pw, acl bytes.Buffer
	if err := broker.WritePasswordFile(&pw, entries); err != nil {
		return nil, err
	}
	if err := broker.WriteACLFile(&acl, broker.Options{}.Tree, broker.DefaultCloudUser); err != nil {
		return nil, err
	}
	pwFile, aclFile := filepath.Join(dir, "passwd"), filepath.Join(dir, "acl")
	if err := os.WriteFile(pwFile, pw.Bytes(), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(aclFile, acl.Bytes(), 0o600); err != nil {
		return nil, err
	}
	addr, err := simdev.FreeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	mc := broker.MosquittoConfig{Addr: addr, PasswordFile: pwFile, ACLFile: aclFile, PersistenceDir: filepath.Join(dir, "persist") + "/"}
	if err := os.MkdirAll(mc.PersistenceDir, 0o700); err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 {
		mc.User = "root"
	}
	var conf bytes.Buffer
	if _, err := mc.WriteTo(&conf); err != nil {
		return nil, err
	}
	confPath := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(confPath, conf.Bytes(), 0o600); err != nil {
		return nil, err
	}
	m := &mosquittoBrokers{p: &childproc.Proc{Name: "mosquitto", Bin: bin, Args: []string{"-c", confPath}, LogPath: filepath.Join(dir, "mosquitto.out")}, addr: addr}
	return m, m.restart(0)
}

func (m *mosquittoBrokers) addrs() []string     { return []string{m.addr} }
func (m *mosquittoBrokers) kill(int) error      { m.p.Kill(); return nil }
func (m *mosquittoBrokers) pids() []int         { return []int{m.p.Pid()} }
func (m *mosquittoBrokers) close()              { _ = m.p.Signal(syscall.SIGTERM, 10*time.Second) }
func (m *mosquittoBrokers) cloudConfig() string { return "" }

func (m *mosquittoBrokers) restart(int) error {
	if err := m.p.Start(); err != nil {
		return err
	}
	return waitAccepting(m.addr, m.p, 10*time.Second)
}
