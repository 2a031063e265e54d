package simdev

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/proxid"
	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/broker"
	"beaconvend/cloud/store"
)

// BenchConfig is one cloudbench run against one database.
type BenchConfig struct {
	CloudBin   string        // the cloud program (go build ./cloud/cmd/cloud)
	DB         string        // "sqlite" or "postgres"
	PGDSN      string        // base PostgreSQL DSN; a scratch database is made from it and dropped
	Devices    int           // simulated devices, one water machine each
	Phones     int           // phone users; also the most concurrent StartSession requests
	Rate       float64       // target session starts per second (open loop)
	Duration   time.Duration // how long starts are issued
	Drain      time.Duration // how long to wait afterwards for outstanding settlements
	UsageDelay time.Duration // mean time from grant to usage report (uniform 0..2×)
	WorkDir    string        // data directory parent; a temp dir when empty
	Log        io.Writer     // progress lines; discarded when nil
}

// BenchResult is what one run measured.
type BenchResult struct {
	Config        BenchConfig
	Provision     time.Duration // store-level provisioning of devices and phones
	Connect       time.Duration // all devices connected and online
	Attempted     int           // StartSession requests sent
	Authorized    int           // answered with an authorized session
	Settled       int           // usage reports acknowledged (settled in the store)
	SettledPerSec float64       // Settled over the time from the first start to the last Ack
	Auth          [3]time.Duration
	Settle        [3]time.Duration // grant → Ack of the usage report: p50, p95, p99
	Errors        map[string]int   // StartSession errors by code, and load-generator skips
	Sessions      map[string]int   // sessions by state in the store after the run
	LedgerOK      bool             // imbalance 0 and balances equal to entries after the run
}

type benchPhone struct {
	c *phoneapi.Client
}

func (c *BenchConfig) logf(format string, args ...any) {
	if c.Log != nil {
		fmt.Fprintf(c.Log, "cloudbench: "+format+"\n", args...)
	}
}

// RunBench provisions a fresh database, starts `cloud serve` as a process
// with its embedded broker on loopback, connects the devices and runs the
// load. Every loop is bounded by Duration and Drain.
func RunBench(ctx context.Context, cfg BenchConfig) (BenchResult, error) {
	res := BenchResult{Config: cfg, Errors: map[string]int{}, Sessions: map[string]int{}}
	work, err := os.MkdirTemp(cfg.WorkDir, "cloudbench-"+cfg.DB+"-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(work)
	var dsn string
	switch cfg.DB {
	case "sqlite":
		dsn = "sqlite:" + filepath.Join(work, "cloud.db")
	case "postgres":
		if cfg.PGDSN == "" {
			return res, errors.New("simdev: postgres needs a DSN (-pg-dsn or VEND_PG_DSN)")
		}
		var drop func()
		dsn, drop, err = pgScratch(cfg.PGDSN)
		if err != nil {
			return res, err
		}
		defer drop()
	default:
		return res, fmt.Errorf("simdev: unknown db %q", cfg.DB)
	}

	// Provision through the store: the CLI hashes and writes one device per
	// process, too slow for a thousand.
	t0 := time.Now()
	ids, users, err := provision(ctx, dsn, cfg.Devices, cfg.Phones)
	if err != nil {
		return res, err
	}
	res.Provision = time.Since(t0)
	cfg.logf("%s: provisioned %d devices and %d phones in %s", cfg.DB, cfg.Devices, cfg.Phones, res.Provision.Round(time.Millisecond))

	data := filepath.Join(work, "data")
	proc, urls, err := startCloud(cfg.CloudBin, filepath.Join(work, "cloud.log"), "-data", data, "-db", dsn, "-http", "127.0.0.1:0")
	if err != nil {
		return res, err
	}
	stopped := false
	defer func() {
		if !stopped {
			proc.Process.Kill()
			proc.Wait()
		}
	}()
	seed, err := os.ReadFile(filepath.Join(data, "cloud.key"))
	if err != nil {
		return res, err
	}
	raw, err := hex.DecodeString(strings.TrimSpace(string(seed)))
	if err != nil || len(raw) != ed25519.SeedSize {
		return res, fmt.Errorf("simdev: cloud.key: %v", err)
	}
	cloudKeys, err := signed.NewKeys(ed25519.NewKeyFromSeed(raw).Public().(ed25519.PublicKey))
	if err != nil {
		return res, err
	}

	// Devices.
	t0 = time.Now()
	var (
		mu      sync.Mutex
		grantAt = map[vend.SessionID]time.Time{}
		settle  []time.Duration
		settled atomic.Int64
		lastAck atomic.Int64
	)
	idle := make(chan *Device, len(ids))
	// busy makes sure a device is in idle at most once: after a no_reply
	// error a late Ack could otherwise give it back twice.
	busy := map[string]*atomic.Bool{}
	for _, id := range ids {
		busy[id.ID] = &atomic.Bool{}
	}
	release := func(d *Device) {
		if busy[d.ID].CompareAndSwap(true, false) {
			idle <- d
		}
	}
	onAcked := func(d *Device, s vend.SessionID) {
		now := time.Now()
		mu.Lock()
		if g, ok := grantAt[s]; ok {
			settle = append(settle, now.Sub(g))
		}
		mu.Unlock()
		settled.Add(1)
		lastAck.Store(now.UnixNano())
		release(d)
	}
	dctx, dcancel := context.WithCancel(ctx)
	var dwg sync.WaitGroup
	defer dwg.Wait()
	defer dcancel()
	devs := make([]*Device, len(ids))
	sem := make(chan struct{}, 32)
	var cerr atomic.Value
	var cwg sync.WaitGroup
	for i, id := range ids {
		id.Cloud = cloudKeys
		d := New(id, Options{
			ResendAfter: 5 * time.Second,
			UsageDelay: func() time.Duration {
				return time.Duration(mrand.Int64N(int64(2*cfg.UsageDelay) + 1))
			},
			OnAcked: onAcked,
		})
		devs[i] = d
		cwg.Add(1)
		sem <- struct{}{}
		go func() {
			defer cwg.Done()
			defer func() { <-sem }()
			if err := d.Connect(urls["mqtt"]); err != nil {
				cerr.Store(err)
			}
		}()
	}
	cwg.Wait()
	defer func() {
		var wg sync.WaitGroup
		for _, d := range devs {
			wg.Add(1)
			go func() { defer wg.Done(); d.Close() }()
		}
		wg.Wait()
	}()
	if err, _ := cerr.Load().(error); err != nil {
		return res, err
	}
	for _, d := range devs {
		dwg.Add(1)
		go func() { defer dwg.Done(); d.Run(dctx) }()
	}
	if err := waitOnline(ctx, urls["http"], len(devs), 60*time.Second); err != nil {
		return res, err
	}
	res.Connect = time.Since(t0)
	cfg.logf("%s: %d devices online in %s", cfg.DB, len(devs), res.Connect.Round(time.Millisecond))
	for _, d := range devs {
		busy[d.ID].Store(true)
		release(d)
	}

	// Phones.
	tr := &http.Transport{MaxIdleConns: cfg.Phones * 2, MaxIdleConnsPerHost: cfg.Phones * 2, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 15 * time.Second}
	phones := make(chan *benchPhone, len(users))
	for _, tok := range users {
		phones <- &benchPhone{c: phoneapi.New(urls["http"], &phoneapi.Opts{HTTPClient: hc, Token: tok})}
	}

	// The load: an open loop at Rate; a tick finds no idle device or no
	// free phone: counted, not queued.
	var (
		lat      []time.Duration
		attempts atomic.Int64
		authzd   atomic.Int64
		swg      sync.WaitGroup
	)
	countErr := func(kind string) {
		mu.Lock()
		res.Errors[kind]++
		mu.Unlock()
	}
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	tick := time.NewTicker(interval)
	start := time.Now()
	end := start.Add(cfg.Duration)
	cfg.logf("%s: load at %.0f/s for %s", cfg.DB, cfg.Rate, cfg.Duration)
	for now := range tick.C {
		if now.After(end) || ctx.Err() != nil {
			break
		}
		var d *Device
		select {
		case d = <-idle:
			busy[d.ID].Store(true)
		default:
			countErr("skip.no_idle_device")
			continue
		}
		var p *benchPhone
		select {
		case p = <-phones:
		default:
			release(d)
			countErr("skip.all_phones_busy")
			continue
		}
		attempts.Add(1)
		swg.Add(1)
		go func() {
			defer swg.Done()
			defer func() { phones <- p }()
			t0 := time.Now()
			s, err := p.c.StartSession(ctx, phoneapi.NewIdempotencyKey(), &phoneapi.StartSessionRequest{
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
				release(d)
				return
			}
			authzd.Add(1)
			mu.Lock()
			lat = append(lat, el)
			grantAt[s.ID] = t0.Add(el)
			mu.Unlock()
		}()
	}
	tick.Stop()
	swg.Wait()
	loadEnd := time.Now()
	cfg.logf("%s: %d starts sent, %d authorized; draining", cfg.DB, attempts.Load(), authzd.Load())
	for deadline := time.Now().Add(cfg.Drain); settled.Load() < authzd.Load() && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	res.Attempted, res.Authorized, res.Settled = int(attempts.Load()), int(authzd.Load()), int(settled.Load())
	if la := lastAck.Load(); la > 0 {
		res.SettledPerSec = float64(res.Settled) / time.Unix(0, la).Sub(start).Seconds()
	}
	if n := res.Authorized - res.Settled; n > 0 {
		res.Errors["unsettled_after_drain"] += n
	}
	res.Auth = percentiles(lat)
	mu.Lock()
	res.Settle = percentiles(settle)
	mu.Unlock()
	cfg.logf("%s: load %s, settled %d", cfg.DB, loadEnd.Sub(start).Round(time.Millisecond), res.Settled)

	// Stop the cloud, then check the ledger.
	dcancel()
	tstop := time.Now()
	_ = proc.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { proc.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		proc.Process.Kill()
		<-done
	}
	stopped = true
	cfg.logf("%s: cloud stopped in %s", cfg.DB, time.Since(tstop).Round(time.Millisecond))
	st, err := store.Open(ctx, dsn, nil)
	if err != nil {
		return res, err
	}
	defer st.Close()
	imb, err1 := st.LedgerImbalance(ctx)
	bad, err2 := st.CheckBalances(ctx)
	res.LedgerOK = err1 == nil && err2 == nil && len(bad) == 0
	for _, v := range imb {
		res.LedgerOK = res.LedgerOK && v == 0
	}
	rows, err := st.DB().QueryContext(ctx, `SELECT state, COUNT(*) FROM sessions GROUP BY state`)
	if err != nil {
		return res, err
	}
	defer rows.Close()
	for rows.Next() {
		var s string
		var n int
		if err := rows.Scan(&s, &n); err != nil {
			return res, err
		}
		res.Sessions[s] = n
	}
	return res, rows.Err()
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

// provision writes an operator, n water devices and m funded phone users
// into the store at dsn, and returns the devices' identities (without the
// cloud keys) and the phones' bearer tokens.
func provision(ctx context.Context, dsn string, n, m int) ([]Identity, []string, error) {
	st, err := store.Open(ctx, dsn, &store.Opts{BcryptCost: 4})
	if err != nil {
		return nil, nil, err
	}
	defer st.Close()
	op, err := st.CreateOperator(ctx, "Bench Co")
	if err != nil {
		return nil, nil, err
	}
	ids := make([]Identity, n)
	errc := make(chan error, n)
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			var idKey proxid.Key
			rand.Read(idKey[:])
			pub, priv, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				errc <- err
				return
			}
			pwb := make([]byte, 32)
			rand.Read(pwb)
			pw := hex.EncodeToString(pwb)
			hash, err := broker.HashPassword(pw)
			if err != nil {
				errc <- err
				return
			}
			id := fmt.Sprintf("bench-%04d", i)
			price := vend.Price{Minor: 50, Per: 1000}
			err = st.CreateDevice(ctx, store.Device{ID: id, OperatorID: op.ID, Name: id, IdentityKey: idKey, K: proxid.DefaultK, SignKey: pub, MQTTHash: hash,
				Machines: []store.Machine{{ID: "tap1", Kind: vend.KindWater, Name: "Water 1", Unit: vend.KindWater.Unit(), Price: price, Currency: "EUR"}}})
			if err != nil {
				errc <- err
				return
			}
			ids[i] = Identity{ID: id, IDKey: idKey, K: proxid.DefaultK, Sign: priv, Password: pw}
		}()
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return nil, nil, err
	}
	var toks []string
	for i := range m {
		u, err := st.CreateUser(ctx, fmt.Sprintf("phone%d@bench.example", i), "bench-password-1")
		if err != nil {
			return nil, nil, err
		}
		tok, err := st.IssueToken(ctx, u.ID, 24*time.Hour)
		if err != nil {
			return nil, nil, err
		}
		if _, err := st.TopUp(ctx, u.ID, vend.Amount{Minor: 100_000_000, Currency: "EUR"}, "card_sandbox", "bench-topup"); err != nil {
			return nil, nil, err
		}
		toks = append(toks, tok)
	}
	return ids, toks, nil
}

// startCloud runs `cloud serve -json` with args, its log in logPath, and
// returns the process and its {"http","mqtt"} line.
func startCloud(bin, logPath string, args ...string) (*exec.Cmd, map[string]string, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, append([]string{"serve", "-json"}, args...)...)
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
		io.Copy(io.Discard, out)
	}()
	select {
	case l, ok := <-line:
		var m map[string]string
		if !ok || json.Unmarshal([]byte(l), &m) != nil || m["http"] == "" || m["mqtt"] == "" {
			cmd.Process.Kill()
			cmd.Wait()
			b, _ := os.ReadFile(logPath)
			return nil, nil, fmt.Errorf("simdev: cloud serve printed %q; log:\n%s", l, b)
		}
		return cmd, m, nil
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		return nil, nil, errors.New("simdev: cloud serve did not start within 60 s")
	}
}

// waitOnline polls the cloud's /metrics until beaconvend_devices_online
// reaches n.
func waitOnline(ctx context.Context, base string, n int, within time.Duration) error {
	want := fmt.Sprintf("beaconvend_devices_online %d\n", n)
	var last string
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/metrics", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(b), want) {
			return nil
		}
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "beaconvend_devices_online ") {
				last = l
			}
		}
	}
	return fmt.Errorf("simdev: devices not online within %s (%s, want %d)", within, last, n)
}

// pgScratch creates a database from base for one run; drop removes it.
func pgScratch(base string) (string, func(), error) {
	db, err := sql.Open("pgx", base)
	if err != nil {
		return "", nil, err
	}
	defer db.Close()
	var b [4]byte
	rand.Read(b[:])
	name := "cloudbench_" + hex.EncodeToString(b[:])
	if _, err := db.Exec(`CREATE DATABASE ` + name); err != nil {
		return "", nil, fmt.Errorf("simdev: create scratch database: %w", err)
	}
	u, err := url.Parse(base)
	if err != nil {
		return "", nil, err
	}
	u.Path = "/" + name
	drop := func() {
		db, err := sql.Open("pgx", base)
		if err == nil {
			db.Exec(`DROP DATABASE IF EXISTS ` + name + ` WITH (FORCE)`)
			db.Close()
		}
	}
	return u.String(), drop, nil
}
