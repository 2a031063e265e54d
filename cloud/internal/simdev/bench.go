package simdev

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/broker"
	"beaconvend/cloud/internal/pgscratch"
	"beaconvend/cloud/store"
)

// BenchConfig is one fleet run: one deployment, a ramp of devices, then
// one or more load steps.
type BenchConfig struct {
	CloudBin      string // the cloud program (go build ./cloud/cmd/cloud)
	ControllerBin string // the controller program, for Relay > 0
	MosquittoBin  string // for Broker "mosquitto"
	DB            string // "sqlite" or "postgres"
	Broker        string // "embedded" (mochi inside the cloud) or "mosquitto"
	Instances     int    // cloud instances; more than one needs mosquitto and postgres
	PGDSN         string // base PostgreSQL DSN; a scratch database is made from it and dropped

	Devices     int           // simulated devices, one water machine each
	Phones      int           // phone users; also the most concurrent StartSession requests
	ConnectRate float64       // device connections started per second during the ramp
	Telemetry   time.Duration // per-device telemetry period (0: none)

	Rates      []float64     // load steps: target session starts per second (open loop)
	FindMax    bool          // keep stepping up by RateStep until a step misses the goals
	RateStep   float64       // FindMax increment
	MaxSteps   int           // FindMax bound
	AuthSLO    time.Duration // FindMax: the authorize p99 (phone request → grant at the device) a step must stay under
	Duration   time.Duration // length of each step
	Drain      time.Duration // how long to wait after a step for outstanding settlements
	UsageDelay time.Duration // mean time from grant to usage report (uniform 0..2×)

	Relay      int           // real controllers on emulated boards, for tap-to-relay
	RelayEvery time.Duration // pause between taps on the same controller

	FloodPublishers int           // ingest-versus-raw-broker phase: publishers (0: skip)
	FloodDuration   time.Duration // length of each flood
	FloodInflight   int           // unacknowledged publishes per publisher

	ProfileDir string // CPU and allocation profiles of the first instance, taken during the last step
	WorkDir    string // data directory parent; a temp dir when empty
	// Keep leaves the work directory (the cloud instances' logs, the
	// brokers' stores and logs) and the scratch PostgreSQL database in
	// place after the run and logs where they are.
	Keep  bool
	Label string    // names the run in the table (default broker+db)
	Log   io.Writer // progress lines; discarded when nil
}

// StepResult is what one load step measured.
type StepResult struct {
	Rate          float64
	Attempted     int // StartSession requests sent
	Authorized    int // answered with an authorized session
	Settled       int // usage reports acknowledged (settled in the store)
	SettledPerSec float64
	// Grant is phone request → the Authorize with the signed grant in the
	// device's MQTT handler (the PUBACK leaves right after); Answer is
	// phone request → the authorized session back at the phone.
	Grant, Answer [3]time.Duration
	Relay         [3]time.Duration // phone request → coil ON at an emulated board
	RelayTaps     int
	TelemetryIn   float64 // telemetry messages the cloud ingested per second
	CloudCPU      float64 // percent of one core, all instances
	CloudRSS      uint64  // peak bytes, all instances
	BrokerCPU     float64 // Mosquitto, percent of one core (embedded: inside CloudCPU)
	DBCPU         float64 // PostgreSQL processes, percent of one core
	DBCommits     float64 // PostgreSQL transactions (commits and rollbacks) per second, from pg_stat_database
	BenchCPU      float64 // this process (devices, phones, emulated boards), percent of one core
	Errors        map[string]int
	Pass          bool // met the goals (FindMax)
}

// BenchResult is what one run measured.
type BenchResult struct {
	Config     BenchConfig
	Provision  time.Duration
	Connect    time.Duration // all devices connected and online
	Steps      []StepResult
	Ingest     float64 // flood: telemetry the cloud ingested per second
	Raw        float64 // flood: what a plain subscriber received per second from a bare broker of the same kind
	FloodSent  int
	FloodLost  int            // flood messages the broker acked but the cloud never ingested (dropped by the broker under overload)
	RawLost    int            // the same for the plain subscriber
	Sessions   map[string]int // sessions by state in the store after the run
	LedgerOK   bool           // imbalance 0 and balances equal to entries after the run
	Lost       int            // usage reports a device had acked but the store does not show settled with its units
	Doubled    int            // sessions with more than one capture or release
	MaxRate    float64        // FindMax: the highest step that met the goals
	FileLimit  uint64
	Profiles   []string // files written to ProfileDir
	RelayCount int
	// The broker processes (Mosquitto, the NATS nodes; not the embedded
	// broker, inside the cloud) while the devices connected: resident
	// memory added per connected device (each a session with a QoS 1
	// subscription; on NATS a replicated JetStream consumer) and CPU time
	// per connect, all nodes together.
	BrokerRSSPerDevice uint64
	BrokerCPUPerDevice time.Duration
	BrokerRSS          uint64 // all broker processes, after the ramp
	// SubscribeRefused and SubscribeUnanswered count the devices' cmd
	// subscriptions the broker refused (SUBACK 0x80) or left unanswered
	// within DefaultSubscribeWait during the ramp; each was sent again
	// until granted (a device announces online only after its grant).
	SubscribeRefused, SubscribeUnanswered int
}

func (c *BenchConfig) logf(format string, args ...any) {
	if c.Log != nil {
		fmt.Fprintf(c.Log, "cloudbench: %s: "+format+"\n", append([]any{c.Name()}, args...)...)
	}
}

// Name is the run's label.
func (c *BenchConfig) Name() string {
	if c.Label != "" {
		return c.Label
	}
	n := c.Broker + "+" + c.DB
	if c.Instances > 1 {
		n += fmt.Sprintf("×%d", c.Instances)
	}
	return n
}

func (c *BenchConfig) check() error {
	switch {
	case c.DB != "sqlite" && c.DB != "postgres":
		return fmt.Errorf("simdev: unknown db %q", c.DB)
	case c.Broker != "embedded" && c.Broker != "mosquitto" && c.Broker != "nats-cluster":
		return fmt.Errorf("simdev: unknown broker %q", c.Broker)
	case c.Instances < 1:
		c.Instances = 1
	}
	if c.Instances > 1 && (c.Broker == "embedded" || c.DB != "postgres") {
		return errors.New("simdev: several instances need a shared broker and database (mosquitto or nats-cluster, and postgres)")
	}
	if c.Broker == "mosquitto" && c.MosquittoBin == "" {
		return errors.New("simdev: mosquitto broker needs MosquittoBin")
	}
	if c.Relay > 0 && c.ControllerBin == "" {
		return errors.New("simdev: Relay needs ControllerBin")
	}
	if len(c.Rates) == 0 {
		return errors.New("simdev: no rates")
	}
	if c.ConnectRate <= 0 {
		c.ConnectRate = 500
	}
	if c.RelayEvery <= 0 {
		c.RelayEvery = 2 * time.Second
	}
	if c.FloodDuration <= 0 {
		c.FloodDuration = 5 * time.Second
	}
	if c.FloodInflight <= 0 {
		c.FloodInflight = 20
	}
	if c.AuthSLO <= 0 {
		c.AuthSLO = 50 * time.Millisecond
	}
	if c.MaxSteps <= 0 {
		c.MaxSteps = 12
	}
	return nil
}

// fleet is a running deployment under test.
type fleet struct {
	cfg       BenchConfig
	dsn       string
	db        *store.Store
	clouds    []*cloudProc
	mosq      *mosquittoProc
	nats      *natsBench // Broker "nats-cluster"
	mqttURL   string
	httpURLs  []string
	adminURLs []string // /metrics lives on each cloud's admin listener
	devs      []*Device
	flood     []Identity
	relay     *Relay
	relayTok  string
	phones    chan *phoneapi.Client
	hc        *http.Client

	mu       sync.Mutex
	grantAt  map[vend.SessionID]time.Time
	settled  atomic.Int64
	idle     chan *Device
	busy     map[string]*atomic.Bool
	cloudPID []int
}

func (f *fleet) release(d *Device) {
	if f.busy[d.ID].CompareAndSwap(true, false) {
		f.idle <- d
	}
}

// RunBench builds the deployment cfg names on loopback (database, broker,
// cloud instances as processes), provisions and connects the devices at
// ConnectRate, starts the relay controllers, runs the load steps, the
// ingest flood, then stops everything and checks the ledger against what
// the devices reported. Every loop is bounded.
func RunBench(ctx context.Context, cfg BenchConfig) (res BenchResult, err error) {
	if err := cfg.check(); err != nil {
		return BenchResult{Config: cfg}, err
	}
	res = BenchResult{Config: cfg, Sessions: map[string]int{}}
	res.FileLimit, _ = raiseFileLimit()
	work, err := os.MkdirTemp(cfg.WorkDir, "cloudbench-")
	if err != nil {
		return res, err
	}
	if cfg.Keep {
		cfg.logf("keeping the work directory %s", work)
	} else {
		defer os.RemoveAll(work)
	}
	f := &fleet{cfg: cfg, grantAt: map[vend.SessionID]time.Time{}}
	switch cfg.DB {
	case "sqlite":
		f.dsn = "sqlite:" + filepath.Join(work, "cloud.db")
	case "postgres":
		if cfg.PGDSN == "" {
			return res, errors.New("simdev: postgres needs a DSN (-pg-dsn or VEND_PG_DSN)")
		}
		var drop func() error
		if f.dsn, drop, err = pgscratch.Create(cfg.PGDSN, "cloudbench"); err != nil {
			return res, err
		}
		if cfg.Keep {
			cfg.logf("keeping the database %s", f.dsn)
		} else {
			defer drop()
		}
	}

	// Provision through the store: the CLI hashes and writes one device
	// per process, too slow for ten thousand.
	t0 := time.Now()
	ids, toks, err := provision(ctx, f.dsn, "bench", cfg.Devices, cfg.Phones+1)
	if err != nil {
		return res, err
	}
	f.relayTok, toks = toks[0], toks[1:]
	if cfg.FloodPublishers > 0 {
		if f.flood, _, err = provision(ctx, f.dsn, "flood", cfg.FloodPublishers, 0); err != nil {
			return res, err
		}
	}
	res.Provision = time.Since(t0)
	cfg.logf("provisioned %d devices and %d phones in %s", cfg.Devices, cfg.Phones, res.Provision.Round(time.Millisecond))

	sec := newCloudSecrets()
	dataDirs := make([]string, cfg.Instances)
	for i := range dataDirs {
		dataDirs[i] = filepath.Join(work, fmt.Sprintf("data%d", i))
		if err := sec.writeTo(dataDirs[i]); err != nil {
			return res, err
		}
	}
	cloudKeys, err := signed.NewKeys(sec.Key.Public().(ed25519.PublicKey))
	if err != nil {
		return res, err
	}
	if cfg.Relay > 0 {
		if f.relay, err = ProvisionRelay(ctx, RelayConfig{CloudBin: cfg.CloudBin, ControllerBin: cfg.ControllerBin, DataDir: dataDirs[0],
			DSN: f.dsn, Dir: filepath.Join(work, "relay"), N: cfg.Relay, Log: cfg.Log}); err != nil {
			return res, err
		}
		defer func() {
			if cerr := f.relay.Close(); cerr != nil && err == nil {
				err = cerr
			}
		}()
		res.RelayCount = cfg.Relay
	}

	if cfg.Broker == "mosquitto" {
		hash, err := broker.HashPassword(sec.MQTTPassword)
		if err != nil {
			return res, err
		}
		entries := []broker.PasswordEntry{{User: broker.DefaultCloudUser, Hash: hash}}
		all := slices.Concat(ids, f.flood)
		if f.relay != nil {
			for _, d := range f.relay.Devices {
				all = append(all, d.Identity)
			}
		}
		hashes := make([]string, len(all))
		parallel(len(all), 8, func(i int) { hashes[i], _ = broker.HashPassword(all[i].Password) })
		for i, id := range all {
			entries = append(entries, broker.PasswordEntry{User: id.ID, Hash: hashes[i]})
		}
		if f.mosq, err = startMosquitto(cfg.MosquittoBin, filepath.Join(work, "mosquitto"), entries); err != nil {
			return res, err
		}
		defer f.mosq.stop()
		f.mqttURL = f.mosq.url
	}
	var natsConf string
	if cfg.Broker == "nats-cluster" {
		if f.nats, err = startNATSBench(ctx, f.dsn, sec.MQTTPassword, filepath.Join(work, "nats")); err != nil {
			return res, err
		}
		defer f.nats.close()
		f.mqttURL = f.nats.c.MQTTURLs[0]
		if natsConf, err = f.nats.cloudConfig(work); err != nil {
			return res, err
		}
	}
	for i, dir := range dataDirs {
		args := []string{"-data", dir, "-db", f.dsn, "-http", "127.0.0.1:0"}
		if f.mosq != nil {
			args = append(args, "-broker", f.mosq.url)
		}
		if f.nats != nil {
			// Each instance on another node's MQTT listener.
			args = append(args, "-config", natsConf, "-broker", f.nats.c.MQTTURLs[i%len(f.nats.c.MQTTURLs)])
		}
		if cfg.Instances > 1 {
			args = append(args, "-group", "bench")
		}
		if cfg.ProfileDir != "" && i == 0 {
			args = append(args, "-debug-addr", "127.0.0.1:0")
		}
		p, err := startCloud(cfg.CloudBin, filepath.Join(work, fmt.Sprintf("cloud%d.log", i)), args...)
		if err != nil {
			return res, err
		}
		defer p.stop(15 * time.Second)
		f.clouds = append(f.clouds, p)
		f.httpURLs = append(f.httpURLs, p.urls["http"])
		f.adminURLs = append(f.adminURLs, p.urls["admin"])
		f.cloudPID = append(f.cloudPID, p.cmd.Process.Pid)
		if f.mqttURL == "" {
			f.mqttURL = p.urls["mqtt"]
		}
	}
	if f.db, err = store.Open(ctx, f.dsn, nil); err != nil {
		return res, err
	}
	defer f.db.Close()

	// Devices, ramped at ConnectRate.
	t0 = time.Now()
	var ramp *Sampler
	var rss0 uint64
	if pids := f.brokerPIDs(); pids != nil {
		rss0 = rssOf(pids())
		ramp = NewSampler(pids, 500*time.Millisecond)
	}
	dctx, dcancel := context.WithCancel(ctx)
	var dwg sync.WaitGroup
	defer dwg.Wait()
	defer dcancel()
	if err := f.connect(dctx, &dwg, ids, cloudKeys); err != nil {
		return res, err
	}
	defer f.closeDevices()
	want := len(ids)
	if f.relay != nil {
		if err := f.relay.Start(ctx, f.mqttURL, f.httpURLs[0]); err != nil {
			return res, err
		}
		want += len(f.relay.Devices)
	}
	if err := waitOnline(ctx, f.db.DB(), want, 2*time.Minute); err != nil {
		return res, err
	}
	res.Connect = time.Since(t0)
	if ramp != nil {
		u := ramp.Stop()
		res.BrokerRSS = rssOf(f.brokerPIDs()())
		if res.BrokerRSS > rss0 {
			res.BrokerRSSPerDevice = (res.BrokerRSS - rss0) / uint64(want)
		}
		res.BrokerCPUPerDevice = u.CPU / time.Duration(want)
	}
	for _, d := range f.devs {
		r, u := d.SubscribeFailures()
		res.SubscribeRefused += r
		res.SubscribeUnanswered += u
	}
	cfg.logf("%d devices online in %s (cmd subscriptions sent again: %d refused, %d unanswered within %s)", want,
		res.Connect.Round(time.Millisecond), res.SubscribeRefused, res.SubscribeUnanswered, DefaultSubscribeWait)
	f.setupPhones(toks)
	defer f.hc.CloseIdleConnections()

	// Load steps.
	rates := slices.Clone(cfg.Rates)
	for i := 0; i < len(rates) && ctx.Err() == nil; i++ {
		last := i == len(rates)-1 && !cfg.FindMax
		var prof *profiler
		if cfg.ProfileDir != "" && last {
			prof = startProfile(ctx, f.clouds[0].urls["debug"], cfg.ProfileDir, cfg.Name(), cfg.Duration)
		}
		st := f.step(ctx, rates[i])
		if prof != nil {
			res.Profiles = prof.finish(ctx)
		}
		res.Steps = append(res.Steps, st)
		cfg.logf("step %.0f/s: %d starts, %d authorized, %d settled, answer p99 %s, pass %v", st.Rate, st.Attempted, st.Authorized, st.Settled, st.Answer[2], st.Pass)
		if cfg.FindMax {
			if !st.Pass {
				break
			}
			res.MaxRate = st.Rate
			if len(rates) < cfg.MaxSteps {
				rates = append(rates, st.Rate+cfg.RateStep)
			}
		}
	}

	// The fleet falls quiet (no telemetry, no resends; all settled or
	// counted) so that the flood's telemetry is all the cloud ingests.
	dcancel()
	dwg.Wait()
	if cfg.FloodPublishers > 0 && ctx.Err() == nil {
		if err := f.floodPhase(ctx, &res); err != nil {
			return res, err
		}
	}

	// Stop the devices, then the clouds, then check the ledger against
	// the devices' own records.
	dcancel()
	f.closeDevices()
	for _, p := range f.clouds {
		p.stop(15 * time.Second)
	}
	return res, f.audit(ctx, &res)
}

// connect starts one device connection every 1/ConnectRate (up to 64 in
// flight) and their Run loops.
func (f *fleet) connect(ctx context.Context, wg *sync.WaitGroup, ids []Identity, cloud signed.Keys) error {
	cfg := f.cfg
	f.idle = make(chan *Device, len(ids))
	f.busy = make(map[string]*atomic.Bool, len(ids))
	onAcked := func(d *Device, s vend.SessionID) {
		f.settled.Add(1)
		f.release(d)
	}
	onGrant := func(d *Device, g signed.Grant, at time.Time) {
		f.mu.Lock()
		f.grantAt[g.Session] = at
		f.mu.Unlock()
	}
	f.devs = make([]*Device, len(ids))
	for i, id := range ids {
		id.Cloud = cloud
		f.devs[i] = New(id, Options{
			ResendAfter: 5 * time.Second,
			UsageDelay:  func() time.Duration { return time.Duration(mrand.Int64N(int64(2*cfg.UsageDelay) + 1)) },
			OnAcked:     onAcked, OnGrant: onGrant, Telemetry: cfg.Telemetry,
		})
		f.busy[id.ID] = &atomic.Bool{}
	}
	tick := time.NewTicker(time.Duration(float64(time.Second) / cfg.ConnectRate))
	defer tick.Stop()
	sem := make(chan struct{}, 64)
	var cerr atomic.Value
	var cwg sync.WaitGroup
	for i, d := range f.devs {
		if i > 0 {
			<-tick.C
		}
		if err, _ := cerr.Load().(error); err != nil {
			break
		}
		sem <- struct{}{}
		cwg.Add(1)
		go func() {
			defer cwg.Done()
			defer func() { <-sem }()
			if err := d.Connect(f.deviceURL(i)); err != nil {
				cerr.Store(err)
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); d.Run(ctx) }()
		}()
		if i%1000 == 999 {
			cfg.logf("%d devices connecting", i+1)
		}
	}
	cwg.Wait()
	if err, _ := cerr.Load().(error); err != nil {
		return err
	}
	for _, d := range f.devs {
		f.busy[d.ID].Store(true)
		f.release(d)
	}
	return nil
}

func (f *fleet) closeDevices() {
	parallel(len(f.devs), 256, func(i int) { f.devs[i].Close() })
}

func (f *fleet) setupPhones(toks []string) {
	n := f.cfg.Phones * 2
	tr := &http.Transport{MaxIdleConns: n, MaxIdleConnsPerHost: n, IdleConnTimeout: time.Minute}
	f.hc = &http.Client{Transport: tr, Timeout: 15 * time.Second}
	f.phones = make(chan *phoneapi.Client, len(toks))
	for i, tok := range toks {
		// Phones spread over the instances, as a load balancer would.
		f.phones <- phoneapi.New(f.httpURLs[i%len(f.httpURLs)], &phoneapi.Opts{HTTPClient: f.hc, Token: tok})
	}
}

// step runs the load at rate for Duration, with relay taps alongside,
// then waits up to Drain for the step's sessions to settle.
func (f *fleet) step(ctx context.Context, rate float64) StepResult {
	cfg := f.cfg
	r := StepResult{Rate: rate, Errors: map[string]int{}}
	var (
		mu       sync.Mutex
		answer   []time.Duration
		grant    []time.Duration
		reqAt    = map[vend.SessionID]time.Time{}
		attempts atomic.Int64
		authzd   atomic.Int64
		swg      sync.WaitGroup
	)
	countErr := func(kind string) {
		mu.Lock()
		r.Errors[kind]++
		mu.Unlock()
	}
	settled0 := f.settled.Load()
	tel0, _ := scrape(ctx, f.adminURLs, "beaconvend_ingest_messages_total", `leaf="telemetry"`)
	samp := f.startSamplers()
	commits0 := f.pgCommits(ctx)
	sctx, scancel := context.WithTimeout(ctx, cfg.Duration)
	defer scancel()
	relayDone := make(chan [3]time.Duration, 1)
	var relayTaps atomic.Int64
	go func() { relayDone <- f.relayTaps(sctx, &relayTaps, countErr) }()

	interval := time.Duration(float64(time.Second) / rate)
	tick := time.NewTicker(interval)
	start := time.Now()
loop:
	for {
		select {
		case <-sctx.Done():
			break loop
		case <-tick.C:
		}
		var d *Device
		select {
		case d = <-f.idle:
			f.busy[d.ID].Store(true)
		default:
			countErr("skip.no_idle_device")
			continue
		}
		var p *phoneapi.Client
		select {
		case p = <-f.phones:
		default:
			f.release(d)
			countErr("skip.all_phones_busy")
			continue
		}
		attempts.Add(1)
		swg.Add(1)
		go func() {
			defer swg.Done()
			defer func() { f.phones <- p }()
			t0 := time.Now()
			s, err := p.StartSession(ctx, phoneapi.NewIdempotencyKey(), &phoneapi.StartSessionRequest{
				Device: phoneapi.DeviceID(d.ID), Machine: "tap1", ProximityID: d.ProximityID(t0),
				Cap: phoneapi.Cap{Units: uint64(500 + mrand.IntN(1500))}, Source: "wallet"})
			el := time.Since(t0)
			if err != nil {
				code := vend.CodeOf(err)
				var ae *phoneapi.APIError
				if !errors.As(err, &ae) {
					code = "transport"
				}
				countErr(code)
				f.release(d)
				return
			}
			authzd.Add(1)
			mu.Lock()
			answer = append(answer, el)
			reqAt[s.ID] = t0
			mu.Unlock()
		}()
	}
	tick.Stop()
	swg.Wait()
	loadEnd := time.Now()
	r.Relay = <-relayDone
	r.RelayTaps = int(relayTaps.Load())
	tel1, _ := scrape(ctx, f.adminURLs, "beaconvend_ingest_messages_total", `leaf="telemetry"`)
	r.TelemetryIn = (tel1 - tel0) / loadEnd.Sub(start).Seconds()
	r.CloudCPU, r.CloudRSS, r.BrokerCPU, r.DBCPU, r.BenchCPU = samp.stop()
	if commits0 >= 0 {
		r.DBCommits = float64(f.pgCommits(ctx)-commits0) / loadEnd.Sub(start).Seconds()
	}

	target := settled0 + authzd.Load()
	for deadline := time.Now().Add(cfg.Drain); f.settled.Load() < target && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	r.Attempted, r.Authorized = int(attempts.Load()), int(authzd.Load())
	r.Settled = int(f.settled.Load() - settled0)
	r.SettledPerSec = float64(r.Settled) / time.Since(start).Seconds()
	if n := r.Authorized - r.Settled; n > 0 {
		r.Errors["unsettled_after_drain"] += n
	}
	f.mu.Lock()
	for id, t0 := range reqAt {
		if g, ok := f.grantAt[id]; ok {
			grant = append(grant, g.Sub(t0))
		}
	}
	f.mu.Unlock()
	r.Grant, r.Answer = percentiles(grant), percentiles(answer)

	expected := int(rate * cfg.Duration.Seconds())
	hard := 0
	for k, v := range r.Errors {
		if k != "skip.no_idle_device" {
			hard += v
		}
	}
	// A step meets the goals when authorize latency as the load goal
	// defines it (request → grant at the device) stays under the SLO at
	// p99, nothing failed, every authorized session settled within the
	// drain, and at least 95 % of the target rate was started (the rest
	// being ticks that found every phone busy: the cloud fell behind).
	r.Pass = r.Grant[2] <= cfg.AuthSLO && hard == 0 && r.Authorized >= expected*95/100
	return r
}

// pgCommits is PostgreSQL's count of transactions in the bench database
// (every statement outside a transaction is one), or -1 on SQLite. The
// statistics lag by up to a second.
func (f *fleet) pgCommits(ctx context.Context) int64 {
	if f.cfg.DB != "postgres" {
		return -1
	}
	var n int64
	if err := f.db.DB().QueryRowContext(ctx, `SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()`).Scan(&n); err != nil {
		return -1
	}
	return n
}

// relayTaps starts sessions on the real controllers, one at a time per
// controller, until ctx is done, and returns the tap-to-relay percentiles.
func (f *fleet) relayTaps(ctx context.Context, taps *atomic.Int64, countErr func(string)) [3]time.Duration {
	if f.relay == nil {
		return [3]time.Duration{}
	}
	var (
		mu  sync.Mutex
		lat []time.Duration
		wg  sync.WaitGroup
	)
	phone := phoneapi.New(f.httpURLs[0], &phoneapi.Opts{HTTPClient: f.hc, Token: f.relayTok})
	for i, d := range f.relay.Devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Spread the controllers over the first interval.
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Duration(i) * f.cfg.RelayEvery / time.Duration(len(f.relay.Devices))):
			}
			for ctx.Err() == nil {
				t0 := time.Now()
				s, err := phone.StartSession(ctx, phoneapi.NewIdempotencyKey(), d.StartRequest(t0, 100))
				if err != nil {
					if ctx.Err() == nil {
						countErr("relay." + vend.CodeOf(err))
					}
					return
				}
				on, err := f.relay.CoilOn(context.WithoutCancel(ctx), i, t0, 10*time.Second)
				if err != nil {
					countErr("relay.no_coil")
				} else {
					taps.Add(1)
					mu.Lock()
					lat = append(lat, on.Sub(t0))
					mu.Unlock()
				}
				// Wait for the session to end before tapping this machine again.
				for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
					cur, err := phone.GetSession(context.WithoutCancel(ctx), s.ID)
					if err == nil && cur.State.Final() {
						break
					}
				}
				select {
				case <-ctx.Done():
				case <-time.After(f.cfg.RelayEvery):
				}
			}
		}()
	}
	wg.Wait()
	return percentiles(lat)
}

// floodPhase measures how fast the cloud ingests telemetry flooded by
// FloodPublishers devices, then what a bare broker of the same kind
// delivers to one plain subscriber with the same publishers and payload.
func (f *fleet) floodPhase(ctx context.Context, res *BenchResult) error {
	cfg := f.cfg
	// Each message is a fresh telemetry message (its own id, so the
	// cloud's dedup passes it) of the publishing device.
	payload := func(pub int, _ uint64) []byte {
		p, _ := TelemetryPublication(mqttapi.Tree{}, f.flood[pub].ID, time.Now())
		return p.Payload
	}
	var pubs []FloodPub
	for _, id := range f.flood {
		topic, err := mqttapi.Tree{}.Topic(id.ID, mqttapi.LeafTelemetry)
		if err != nil {
			return err
		}
		pubs = append(pubs, FloodPub{URL: f.mqttURL, ClientID: id.ID, Username: id.ID, Password: id.Password, Topic: topic})
	}
	before, err := scrape(ctx, f.adminURLs, "beaconvend_ingest_messages_total", `leaf="telemetry"`)
	if err != nil {
		return err
	}
	var prof *profiler
	if cfg.ProfileDir != "" {
		prof = startProfile(ctx, f.clouds[0].urls["debug"], cfg.ProfileDir, cfg.Name()+"-flood", cfg.FloodDuration+time.Second)
	}
	fr, err := Flood(ctx, FloodConfig{Publishers: pubs, Payload: payload, Inflight: cfg.FloodInflight, Duration: cfg.FloodDuration})
	if err != nil {
		return err
	}
	t0 := fr.Start
	res.FloodSent = fr.Acked
	// Count until every acked message is in, or until the count stalls
	// for 2 s (the broker dropped the rest); a few stray messages per poll
	// (the relay controllers' own telemetry) do not count as progress.
	var got float64
	last := t0
	for stall := time.Now(); time.Since(stall) < 2*time.Second && time.Since(t0) < time.Minute; time.Sleep(100 * time.Millisecond) {
		now, err := scrape(ctx, f.adminURLs, "beaconvend_ingest_messages_total", `leaf="telemetry"`)
		if err != nil {
			return err
		}
		if now-before > got+10 {
			stall = time.Now()
			last = stall
		}
		got = max(got, now-before)
		if got >= float64(fr.Acked) {
			last = time.Now()
			break
		}
	}
	got = min(got, float64(fr.Acked))
	res.Ingest = got / last.Sub(t0).Seconds()
	res.FloodLost = fr.Acked - int(got)
	if prof != nil {
		res.Profiles = append(res.Profiles, prof.finish(ctx)...)
	}
	cfg.logf("flood: %d telemetry messages acked by the broker in %s; the cloud ingested %.0f of them in %s: %.0f/s; %d never reached it",
		fr.Acked, fr.Elapsed.Round(time.Millisecond), got, last.Sub(t0).Round(time.Millisecond), res.Ingest, res.FloodLost)

	var url string
	var stop func() error
	switch cfg.Broker {
	case "mosquitto":
		url, stop, err = StartPlainMosquitto(cfg.MosquittoBin, filepath.Join(filepath.Dir(f.mosq.dir), "raw-mosquitto"))
	case "nats-cluster":
		// The yardstick: a bare three-node cluster of the same build and
		// settings, without the auth callout, its MQTT listener on node 0.
		url, stop, err = StartPlainNATSCluster(filepath.Join(filepath.Dir(f.nats.dir), "raw-nats"))
	default:
		url, stop, err = StartPlainMochi("127.0.0.1:0")
	}
	if err != nil {
		return err
	}
	defer stop()
	raw, err := RawBrokerRate(ctx, RawConfig{URL: url, Publishers: len(pubs), Payload: payload(0, 0), Duration: cfg.FloodDuration, Inflight: cfg.FloodInflight})
	if err != nil {
		return err
	}
	res.Raw, res.RawLost = raw.PerSec, raw.Lost
	cfg.logf("raw %s: %d sent, %d received, %.0f/s", cfg.Broker, raw.Sent, raw.Received, raw.PerSec)
	return nil
}

// audit reads the store after the clouds stopped: the ledger balances,
// and every usage report a device saw acknowledged is settled once with
// the units the device reported.
func (f *fleet) audit(ctx context.Context, res *BenchResult) error {
	st := f.db
	imb, err1 := st.LedgerImbalance(ctx)
	bad, err2 := st.CheckBalances(ctx)
	res.LedgerOK = err1 == nil && err2 == nil && len(bad) == 0
	for _, v := range imb {
		res.LedgerOK = res.LedgerOK && v == 0
	}
	type row struct {
		state string
		units uint64
	}
	sessions := map[string]row{}
	if err := eachRow(ctx, st.DB(), `SELECT id, state, units FROM sessions`, func(sc func(...any) error) error {
		var id string
		var r row
		if err := sc(&id, &r.state, &r.units); err != nil {
			return err
		}
		sessions[id] = r
		res.Sessions[r.state]++
		return nil
	}); err != nil {
		return err
	}
	if err := eachRow(ctx, st.DB(), `SELECT COUNT(*) FROM (SELECT session_id, kind FROM ledger_tx WHERE kind IN ('capture', 'release') GROUP BY session_id, kind HAVING COUNT(*) > 1) d`,
		func(sc func(...any) error) error { return sc(&res.Doubled) }); err != nil {
		return err
	}
	for _, d := range f.devs {
		for id, rec := range d.Sessions() {
			if !rec.Acked {
				continue
			}
			r, ok := sessions[id.String()]
			if !ok || (r.state != string(store.Settled) && r.state != string(store.Refunded)) || r.units != rec.Units {
				res.Lost++
			}
		}
	}
	return nil
}

func eachRow(ctx context.Context, db *sql.DB, q string, f func(scan func(...any) error) error) error {
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := f(rows.Scan); err != nil {
			return err
		}
	}
	return rows.Err()
}

// samplers watch CPU and memory of the cloud instances, Mosquitto,
// PostgreSQL and the bench itself during a step.
type samplers struct{ cloud, mosq, pg, bench *Sampler }

func (f *fleet) startSamplers() *samplers {
	s := &samplers{cloud: NewSampler(PIDs(f.cloudPID...), 500*time.Millisecond), bench: NewSampler(PIDs(os.Getpid()), 500*time.Millisecond)}
	if pids := f.brokerPIDs(); pids != nil {
		s.mosq = NewSampler(pids, 500*time.Millisecond)
	}
	if f.cfg.DB == "postgres" {
		s.pg = NewSampler(func() []int { p, _ := PIDsByName("postgres"); return p }, 500*time.Millisecond)
	}
	return s
}

func (s *samplers) stop() (cloudCPU float64, cloudRSS uint64, brokerCPU, dbCPU, benchCPU float64) {
	c := s.cloud.Stop()
	benchCPU = s.bench.Stop().CPUPercent
	if s.mosq != nil {
		brokerCPU = s.mosq.Stop().CPUPercent
	}
	if s.pg != nil {
		dbCPU = s.pg.Stop().CPUPercent
	}
	return c.CPUPercent, c.PeakRSS, brokerCPU, dbCPU, benchCPU
}

// profiler takes a CPU profile of the first instance over a step and
// allocation and in-use heap profiles after it, from its -debug-addr
// listener.
type profiler struct {
	base, dir, name string
	cpu             chan error
	files           []string
}

func startProfile(ctx context.Context, base, dir, name string, d time.Duration) *profiler {
	p := &profiler{base: base, dir: dir, name: sanitize(name), cpu: make(chan error, 1)}
	if base == "" {
		p.cpu <- errors.New("no debug address")
		return p
	}
	secs := max(1, int(d.Seconds())-1)
	go func() {
		p.cpu <- p.fetch(ctx, "/debug/pprof/profile?seconds="+strconv.Itoa(secs), "cpu")
	}()
	return p
}

func (p *profiler) fetch(ctx context.Context, path, kind string) error {
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return err
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", p.base+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	file := filepath.Join(p.dir, p.name+"."+kind+".pprof")
	out, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, resp.Body); err != nil {
		out.Close()
		return err
	}
	p.files = append(p.files, file)
	return out.Close()
}

func (p *profiler) finish(ctx context.Context) []string {
	if err := <-p.cpu; err == nil {
		_ = p.fetch(ctx, "/debug/pprof/allocs", "allocs")
		_ = p.fetch(ctx, "/debug/pprof/heap?gc=1", "heap")
	}
	return p.files
}

func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			b[i] = '-'
		}
	}
	return string(b)
}

func percentiles(d []time.Duration) [3]time.Duration {
	if len(d) == 0 {
		return [3]time.Duration{}
	}
	s := slices.Clone(d)
	slices.Sort(s)
	at := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return [3]time.Duration{at(0.50), at(0.95), at(0.99)}
}

// parallel runs f(0..n-1) on up to k goroutines.
func parallel(n, k int, f func(i int)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, k)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			f(i)
		}()
	}
	wg.Wait()
}
