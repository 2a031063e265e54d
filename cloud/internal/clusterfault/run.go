package clusterfault

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/cloud/internal/simdev"
)

// try is one StartSession request a phone made.
type try struct {
	At, End time.Time
	OK      bool
	Code    string // "ok", "transport", or the API's code
}

// failed is a try that did not start a session for a reason of the
// deployment (not a machine's business answer such as machine.busy).
func (t try) failed() bool {
	return !t.OK && !strings.Contains(t.Code, "busy")
}

// blockedAfter is how long a start may take before it counts as blocked.
const blockedAfter = 2 * time.Second

// Kill is one fault and what it did to session starts.
type Kill struct {
	What    string
	At      time.Time
	Skipped string        // why it was not injected (e.g. a single PostgreSQL)
	Stopped time.Duration // first failed or blocked start after At → first successful start begun after it
	Failed  int           // failed or blocked starts between this kill and the next
	Err     string        // the kill or the restart failed
}

// Report is what a run found.
type Report struct {
	Config   Config
	Elapsed  time.Duration
	Kills    []Kill
	Starts   map[string]int // tries by answer
	Sessions map[string]int // sessions in the store by state
	Acked    int            // usage reports the simulated devices saw acknowledged
	// ControllerAcked is the usage reports the real controllers'
	// journals hold as acknowledged (settled).
	ControllerAcked int
	Violations      []string
}

// Run deploys, runs the traffic with the three kills, lets the
// deployment settle and audits it. The error is for a deployment that
// cannot be set up; the violations are in the Report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	t0 := time.Now()
	r, err := newRig(ctx, cfg)
	defer r.close()
	if err != nil {
		return nil, err
	}
	rep := &Report{Config: cfg, Starts: map[string]int{}, Sessions: map[string]int{}}
	tr := newTraffic(r)
	tctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); tr.run(tctx) }()

	q := cfg.Duration / 4
	pause := func() {
		select {
		case <-ctx.Done():
		case <-time.After(q):
		}
	}
	pause()
	rep.Kills = append(rep.Kills, r.killBroker(ctx))
	pause()
	rep.Kills = append(rep.Kills, r.killPrimary())
	pause()
	rep.Kills = append(rep.Kills, r.killCloud(ctx))
	pause()
	cancel()
	wg.Wait()
	cfg.logf("traffic stopped: %d tries", len(tr.tries))
	// A fault that was not injected as meant (no failover after the
	// primary's kill, a node that did not come back) leaves the run short
	// of what it claims to prove: a violation, not a note.
	for _, k := range rep.Kills {
		if k.Err != "" {
			rep.Violations = append(rep.Violations, fmt.Sprintf("fault_not_injected %s: %s", k.What, k.Err))
		}
	}

	bctx := context.WithoutCancel(ctx)
	rep.Violations = append(rep.Violations, r.settle(bctx)...)
	in, err := r.snapshot(bctx)
	if err != nil {
		return nil, err
	}
	if len(cfg.Plant) > 0 {
		did, err := plant(bctx, r.db, cfg.Plant, in)
		if err != nil {
			return nil, err
		}
		for _, d := range did {
			cfg.logf("planted %s", d)
		}
		devices := in.Store.Devices
		if in.Store, err = loadStore(bctx, r.db); err != nil {
			return nil, err
		}
		in.Store.Devices = devices
	}
	res := audit(in)
	rep.Violations = append(rep.Violations, res.Violations...)
	rep.Violations = append(rep.Violations, plantFound(cfg.Plant, res.Violations)...)
	rep.Sessions, rep.Acked, rep.ControllerAcked = res.Sessions, res.Acked, res.ControllerAcked
	tr.mu.Lock()
	tries := append([]try(nil), tr.tries...)
	tr.mu.Unlock()
	for _, t := range tries {
		rep.Starts[t.Code]++
	}
	outages(rep.Kills, tries)
	rep.Elapsed = time.Since(t0)
	return rep, nil
}

// killBroker SIGKILLs one broker node mid-traffic and starts it again
// after Down.
func (r *rig) killBroker(ctx context.Context) Kill {
	i := len(r.brk.addrs()) - 1
	k := Kill{What: fmt.Sprintf("%s node %d (SIGKILL)", r.cfg.Broker, i), At: time.Now()}
	r.cfg.logf("kill: %s", k.What)
	if err := r.brk.kill(i); err != nil {
		k.Err = err.Error()
		return k
	}
	select {
	case <-ctx.Done():
	case <-time.After(r.cfg.Down):
	}
	if err := r.brk.restart(i); err != nil {
		k.Err = "restart: " + err.Error()
	}
	return k
}

// killPrimary SIGKILLs the PostgreSQL primary of the formation; the
// formation promotes the secondary.
func (r *rig) killPrimary() Kill {
	k := Kill{What: "PostgreSQL primary (SIGKILL)", At: time.Now()}
	if r.cfg.Failover == nil {
		k.Skipped = "single PostgreSQL (no -failover): not killed"
		return k
	}
	r.cfg.logf("kill: %s", k.What)
	if err := r.cfg.Failover.KillPrimary(); err != nil {
		k.Err = err.Error()
		return k
	}
	if err := r.cfg.Failover.WaitFailover(2 * time.Minute); err != nil {
		k.Err = err.Error()
	}
	r.cfg.logf("failover done in %s", time.Since(k.At).Round(time.Millisecond))
	return k
}

// killCloud SIGKILLs cloud instance 1 and starts it again after Down.
func (r *rig) killCloud(ctx context.Context) Kill {
	k := Kill{What: "cloud instance 1 (SIGKILL)", At: time.Now()}
	r.cfg.logf("kill: %s", k.What)
	r.clouds[1].Kill()
	select {
	case <-ctx.Done():
	case <-time.After(r.cfg.Down):
	}
	if err := r.startCloud(context.Background(), 1); err != nil {
		k.Err = "restart: " + err.Error()
	}
	return k
}

// outages fills each kill's Stopped and Failed from the tries.
func outages(kills []Kill, tries []try) {
	sort.Slice(tries, func(i, j int) bool { return tries[i].At.Before(tries[j].At) })
	for n := range kills {
		k := &kills[n]
		if k.Skipped != "" {
			continue
		}
		until := time.Now().Add(time.Hour)
		if n+1 < len(kills) {
			until = kills[n+1].At
		}
		var first time.Time
		for _, t := range tries {
			if t.At.Before(k.At) || !t.At.Before(until) {
				continue
			}
			bad := t.failed() || t.End.Sub(t.At) > blockedAfter
			if bad {
				k.Failed++
				if first.IsZero() {
					first = t.At
				}
			}
		}
		if first.IsZero() {
			continue
		}
		for _, t := range tries {
			if t.OK && t.At.After(first) && t.End.Sub(t.At) <= blockedAfter {
				k.Stopped = t.End.Sub(first)
				break
			}
		}
	}
}

// traffic is the phones: open-loop session starts at Rate on idle
// machines, simulated devices and real controllers.
type traffic struct {
	r      *rig
	phones chan *phoneapi.Client
	idle   chan *simdev.Device
	busy   map[string]*atomic.Bool
	relay  chan int

	mu    sync.Mutex
	tries []try
	keys  int
}

func newTraffic(r *rig) *traffic {
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second}}
	t := &traffic{r: r, phones: make(chan *phoneapi.Client, len(r.toks)), idle: make(chan *simdev.Device, len(r.devs)),
		busy: map[string]*atomic.Bool{}, relay: make(chan int, len(r.relay.Devices))}
	for _, tok := range r.toks {
		t.phones <- phoneapi.New(r.httpURL(), &phoneapi.Opts{HTTPClient: hc, Token: tok})
	}
	for _, d := range r.devs {
		t.busy[d.ID] = &atomic.Bool{}
		t.idle <- d
	}
	for i := range r.relay.Devices {
		t.relay <- i
	}
	return t
}

func (t *traffic) release(d *simdev.Device) {
	if t.busy[d.ID].CompareAndSwap(true, false) {
		t.idle <- d
	}
}

// run starts sessions until ctx ends.
func (t *traffic) run(ctx context.Context) {
	tick := time.NewTicker(time.Duration(float64(time.Second) / t.r.cfg.Rate))
	defer tick.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	n := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var p *phoneapi.Client
		select {
		case p = <-t.phones:
		default:
			continue
		}
		n++
		if n%10 == 0 {
			select {
			case i := <-t.relay:
				wg.Add(1)
				go func() { defer wg.Done(); defer func() { t.phones <- p }(); t.startRelay(ctx, p, i) }()
				continue
			default:
			}
		}
		var d *simdev.Device
		select {
		case d = <-t.idle:
			t.busy[d.ID].Store(true)
		default:
			t.phones <- p
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); defer func() { t.phones <- p }(); t.startSim(ctx, p, d) }()
	}
}

// start makes one session start, again with the same idempotency key
// after a transport error or a 5xx (a phone's retry), up to three times.
func (t *traffic) start(ctx context.Context, p *phoneapi.Client, req *phoneapi.StartSessionRequest) (*phoneapi.Session, bool) {
	key := phoneapi.NewIdempotencyKey()
	for range 3 {
		at := time.Now()
		s, err := p.StartSession(ctx, key, req)
		tr := try{At: at, End: time.Now(), OK: err == nil, Code: "ok"}
		retry := false
		if err != nil {
			var ae *phoneapi.APIError
			switch {
			case errors.As(err, &ae):
				tr.Code = ae.Code
				retry = ae.Status >= 500
			default:
				tr.Code, retry = "transport", true
			}
		}
		t.mu.Lock()
		t.tries = append(t.tries, tr)
		t.mu.Unlock()
		if err == nil || !retry || ctx.Err() != nil {
			return s, err == nil
		}
		select {
		case <-ctx.Done():
			return nil, false
		case <-time.After(500 * time.Millisecond):
		}
	}
	return nil, false
}

func (t *traffic) startSim(ctx context.Context, p *phoneapi.Client, d *simdev.Device) {
	// A retry sends the same request with the same key.
	_, ok := t.start(ctx, p, &phoneapi.StartSessionRequest{Device: phoneapi.DeviceID(d.ID), Machine: "tap1", ProximityID: d.ProximityID(time.Now()),
		Cap: phoneapi.Cap{Units: uint64(200 + rand.IntN(1000))}, Source: "wallet"})
	if !ok {
		t.release(d)
		return
	}
	// The device is free again once its report is acknowledged; the
	// test watches the device's records rather than a callback so a
	// grant that never reached it still frees it after a bound.
	go func() {
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			time.Sleep(250 * time.Millisecond)
			if d.Pending() == 0 && allAcked(d) {
				break
			}
		}
		t.release(d)
	}()
}

func allAcked(d *simdev.Device) bool {
	for _, r := range d.Sessions() {
		if !r.Acked {
			return false
		}
	}
	return true
}

func (t *traffic) startRelay(ctx context.Context, p *phoneapi.Client, i int) {
	d := t.r.relay.Devices[i]
	t.start(ctx, p, d.StartRequest(time.Now(), 150))
	// 150 mL at 20 L/min is under half a second; the report follows.
	go func() { time.Sleep(3 * time.Second); t.relay <- i }()
}

// settle brings every killed part back, then waits (up to Settle) for
// every device to be online in the store, and for every simulated
// device's uplinks to be acknowledged, every session to be final and
// every device to be connected by its own account (a simulated device's
// MQTT client, a controller's log): a device still reconnecting is given
// the time, one that stays disconnected is the audit's not_connected.
func (r *rig) settle(ctx context.Context) []string {
	var vs []string
	for i, p := range r.clouds {
		if !p.Running() {
			if err := r.startCloud(ctx, i); err != nil {
				vs = append(vs, "restore: "+err.Error())
			}
		}
	}
	deadline := time.Now().Add(r.cfg.Settle)
	if err := r.waitOnline(ctx, r.cfg.Settle); err != nil {
		vs = append(vs, "not_reconnected: "+err.Error())
	}
	for time.Now().Before(deadline) {
		pending := 0
		for _, d := range r.devs {
			pending += d.Pending()
		}
		live, err := r.live(ctx)
		if err == nil && pending == 0 && live == 0 && r.allConnected() {
			return vs
		}
		time.Sleep(500 * time.Millisecond)
	}
	return vs
}

// allConnected reports whether every simulated device's client is
// connected and every controller runs with "mqtt connected" as its log's
// last connection line.
func (r *rig) allConnected() bool {
	for _, d := range r.devs {
		if !d.Connected() {
			return false
		}
	}
	for i := range r.relay.Devices {
		if ok, _ := r.controllerConnected(i); !ok {
			return false
		}
	}
	return true
}

// controllerConnected is controller i's own word on its link: its
// process runs and its log's last connection line is "mqtt connected".
func (r *rig) controllerConnected(i int) (bool, string) {
	log, err := os.ReadFile(r.relay.LogPath(i))
	if err != nil {
		return false, "log: " + err.Error()
	}
	ok, why := controllerConnected(log)
	if !r.relay.Running(i) {
		return false, "process exited; " + why
	}
	return ok, why
}

func (r *rig) live(ctx context.Context) (int, error) {
	var n int
	err := r.db.DB().QueryRowContext(ctx, `SELECT COUNT(*) FROM sessions WHERE state IN ('pending', 'authorized', 'running', 'ending')`).Scan(&n)
	return n, err
}

// snapshot stops nothing but the controllers and reads the audit's
// input: each simulated device's records and client; each controller's
// connection (its log, its process) and then, once it has stopped
// (SIGTERM: it ends its sessions and sends their reports), its journal;
// the store's devices' online flags before the controllers stopped (a
// stopping controller says it goes offline) and the store's sessions and
// ledger after.
func (r *rig) snapshot(ctx context.Context) (*auditInput, error) {
	in := &auditInput{}
	for _, d := range r.devs {
		in.Devices = append(in.Devices, simView(d.ID, d.Sessions(), d.Connected(), d.LastCommand()))
	}
	var ctl []deviceView
	for i, d := range r.relay.Devices {
		v := deviceView{ID: d.ID, Controller: true}
		v.Connected, v.Why = r.controllerConnected(i)
		ctl = append(ctl, v)
	}
	pre, err := loadStore(ctx, r.db)
	if err != nil {
		return nil, err
	}
	if err := r.relay.Close(); err != nil {
		r.cfg.logf("stopping the controllers: %v", err)
	}
	for i, d := range r.relay.Devices {
		path, err := controllerJournal(d.Dir)
		if err != nil {
			return nil, fmt.Errorf("clusterfault: %s: %w", d.ID, err)
		}
		reps, err := controllerReports(path, d.Sign.Public().(ed25519.PublicKey))
		if err != nil {
			return nil, fmt.Errorf("clusterfault: %s: %w", d.ID, err)
		}
		ctl[i].Reports = reps
	}
	in.Devices = append(in.Devices, ctl...)
	if in.Store, err = loadStore(ctx, r.db); err != nil {
		return nil, err
	}
	in.Store.Devices = pre.Devices
	return in, nil
}

// Print writes the report.
func (rep *Report) Print(w io.Writer) {
	c := rep.Config
	fmt.Fprintf(w, "cluster fault test: broker %s, %d simulated devices, %d real controllers, %d phones at %.0f starts/s for %s, down %s, elapsed %s\n",
		c.Broker, c.Devices, c.Controllers, c.Phones, c.Rate, c.Duration, c.Down, rep.Elapsed.Round(time.Second))
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "kill\tstarts stopped for\tfailed/blocked starts\tnote\n")
	for _, k := range rep.Kills {
		note := k.Skipped
		if k.Err != "" {
			note = "error: " + k.Err
		}
		stopped := k.Stopped.Round(10 * time.Millisecond).String()
		if k.Skipped != "" {
			stopped = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", k.What, stopped, k.Failed, note)
	}
	tw.Flush()
	tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	for _, k := range sortedKeys(rep.Starts) {
		fmt.Fprintf(tw, "start answers %s\t%d\n", k, rep.Starts[k])
	}
	for _, k := range sortedKeys(rep.Sessions) {
		fmt.Fprintf(tw, "sessions %s\t%d\n", k, rep.Sessions[k])
	}
	fmt.Fprintf(tw, "usage reports acknowledged (simulated devices)\t%d\n", rep.Acked)
	fmt.Fprintf(tw, "usage reports acknowledged (real controllers' journals)\t%d\n", rep.ControllerAcked)
	tw.Flush()
	for i, v := range rep.Violations {
		if i == 20 {
			fmt.Fprintf(w, "  … %d more\n", len(rep.Violations)-20)
			break
		}
		fmt.Fprintf(w, "  %s\n", v)
	}
	if len(rep.Violations) == 0 {
		fmt.Fprintln(w, "no violations")
	} else {
		fmt.Fprintf(w, "%d violations\n", len(rep.Violations))
	}
}

func sortedKeys(m map[string]int) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
