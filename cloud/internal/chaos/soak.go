package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/store"
)

// Report is what a soak found.
type Report struct {
	Config     Config
	Skew       string // "on" or why it is off
	Elapsed    time.Duration
	Attempts   int            // phone starts (probes excluded)
	Starts     map[string]int // start answers by code ("ok", "machine.busy", …)
	Stops      int            // Stops the phones sent
	Repriced   int            // starts answered price.changed and made again at the new price
	Sessions   int            // sessions in the store
	States     map[string]int // sessions by final state
	Outcomes   map[string]int // settled sessions by outcome
	Faults     map[string]int // faults injected by kind
	Harness    map[string]int // harness trouble (a restart that failed)
	Violations []Violation
	Quiesced   bool // every session ended within QuiesceWithin
}

// ViolationCounts is the violations by kind.
func (r *Report) ViolationCounts() map[string]int {
	m := map[string]int{}
	for _, v := range r.Violations {
		m[v.Kind]++
	}
	return m
}

// Run runs one soak: the deployment, the phones and the faults for
// cfg.Duration, then quiescence, a probe start on every machine, and the
// audit. It returns an error when the deployment cannot be set up; the
// violations are in the Report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	t0 := time.Now()
	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x5851f42d4c957f2d))
	cfg.logf("seed %d, %d devices, %d phones, %s on %s", cfg.Seed, cfg.Devices, cfg.Phones, cfg.Duration, cfg.DB)
	r, err := newRig(ctx, cfg, rng)
	if r != nil {
		defer r.close()
	}
	if err != nil {
		return nil, err
	}
	rep := &Report{Config: cfg, Starts: map[string]int{}, States: map[string]int{}, Outcomes: map[string]int{}}
	rep.Skew = "off"
	if cfg.Skew {
		rep.Skew = "on (±10 min per controller)"
	}
	cfg.logf("deployment up in %s", time.Since(t0).Round(time.Millisecond))

	faults, harness := newCounter(), newCounter()
	p := &phones{r: r, rates: cfg.Rates, locks: machineLocks{busy: map[int]bool{}}, faults: faults, prices: map[string]int{}}
	fctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	var wg sync.WaitGroup
	for i := range cfg.Phones {
		prng := rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))
		wg.Add(1)
		go func() { defer wg.Done(); p.run(fctx, i, prng) }()
	}
	frng := rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))
	wg.Add(1)
	go func() { defer wg.Done(); injectFaults(fctx, r, cfg.Rates, cfg.Duration, frng, faults, harness) }()
	<-fctx.Done()
	cancel()
	wg.Wait()
	cfg.logf("faults stopped after %s; %d attempts", time.Since(t0).Round(time.Second), len(p.attempts))

	// Quiescence: everything up, every link restored, every session ended.
	bctx := context.WithoutCancel(ctx)
	if err := r.ensureUp(bctx); err != nil {
		harness.add("restore")
		cfg.logf("restore: %v", err)
	}
	if err := r.waitOnline(bctx, 60*time.Second); err != nil {
		harness.add("online_after_faults")
		cfg.logf("%v", err)
	}
	st, err := openDB(bctx, r.dsn)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	rep.Quiesced = quiesce(bctx, cfg, st, cfg.QuiesceWithin)

	// Every machine is free again: a probe start on each succeeds.
	probes := runProbes(bctx, p, rng)
	quiesce(bctx, cfg, st, 10*time.Second)

	sessions, err := loadSessions(bctx, st.DB())
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	attempts := append(append([]*attempt(nil), p.attempts...), probes...)
	p.mu.Unlock()
	vs, err := audit(bctx, st.DB(), sessions, truthOf(r.devs), attempts, cfg.SessionBound)
	if err != nil {
		return nil, err
	}
	for _, a := range probes {
		if a.StartCode != "ok" {
			vs = append(vs, Violation{Kind: "machine_not_free", Device: a.Device, Detail: fmt.Sprintf("a start after quiescence answered %s", a.StartCode)})
		}
	}
	rep.Violations = vs
	writeJSONLines(filepath.Join(cfg.Dir, "attempts.jsonl"), attempts)
	writeJSONLines(filepath.Join(cfg.Dir, "violations.jsonl"), vs)
	for _, a := range attempts {
		if !a.Probe {
			rep.Attempts++
			rep.Starts[a.StartCode]++
			if a.Stopped {
				rep.Stops++
			}
			if a.Repriced {
				rep.Repriced++
			}
		}
	}
	rep.Sessions = len(sessions)
	for _, s := range sessions {
		rep.States[s.State]++
		if s.State == "settled" || s.State == "refunded" {
			rep.Outcomes[outcomeName(s.Outcome)]++
		}
	}
	rep.Faults, rep.Harness = faults.snapshot(), harness.snapshot()
	rep.Elapsed = time.Since(t0)
	return rep, nil
}

// writeJSONLines keeps what every phone saw (one line per start) and
// every violation in the working directory, for reading a violation
// against the logs.
func writeJSONLines[T any](path string, items []T) {
	f, err := os.Create(path)
	if err != nil {
		return
	}
	defer f.Close()
	enc := json.NewEncoder(f)
	for _, it := range items {
		_ = enc.Encode(it)
	}
}

// quiesce waits until no session is live, or within has passed.
func quiesce(ctx context.Context, cfg Config, st *store.Store, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for {
		n, err := countLive(ctx, st.DB())
		if err == nil && n == 0 {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			cfg.logf("%d sessions still live after %s (%v)", n, within, err)
			return false
		}
		time.Sleep(time.Second)
	}
}

// probeWithin bounds the probe starts' retries, and the wait for each
// probe session's end.
const probeWithin = 15 * time.Second

// runProbes starts a small session on every machine (retrying busy and
// unreachable answers for probeWithin), and follows it to its end.
func runProbes(ctx context.Context, p *phones, rng *rand.Rand) []*attempt {
	c := phoneapi.New(p.r.httpURL, &phoneapi.Opts{Token: p.r.toks[0]})
	out := make([]*attempt, len(p.r.devs))
	var wg sync.WaitGroup
	for i, d := range p.r.devs {
		prng := rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))
		wg.Add(1)
		go func() {
			defer wg.Done()
			var a *attempt
			for deadline := time.Now().Add(probeWithin); ; time.Sleep(time.Second) {
				a = p.attempt(ctx, c, 0, d, prng, true)
				if (a != nil && a.StartCode == "ok") || time.Now().After(deadline) {
					break
				}
			}
			if a == nil {
				a = &attempt{Device: d.ID, Machine: d.spec.machine, Probe: true, StartCode: "device.unreadable"}
			}
			out[i] = a
		}()
	}
	wg.Wait()
	return out
}

// Print writes the report as tables.
func (r *Report) Print(w io.Writer) {
	c := r.Config
	fmt.Fprintf(w, "chaos soak: seed %d, %s, %d devices, %d phones, db %s, elapsed %s\n", c.Seed, c.Duration, c.Devices, c.Phones, c.DB, r.Elapsed.Round(time.Second))
	fmt.Fprintf(w, "rates: link cuts %.1f/min, broker restarts %.1f/min, controller kills %.1f/min, cloud kills %.1f/min, stops %.0f%%, price races %.0f%%; clock skew %s\n",
		c.Rates.LinkCut, c.Rates.BrokerRestart, c.Rates.ControllerKill, c.Rates.CloudKill, 100*c.Rates.Stop, 100*c.Rates.PriceChange, r.Skew)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	section := func(title string, m map[string]int) {
		fmt.Fprintf(tw, "%s\t\n", title)
		if len(m) == 0 {
			fmt.Fprintf(tw, "  (none)\t0\n")
		}
		for _, k := range sortedKeys(m) {
			fmt.Fprintf(tw, "  %s\t%d\n", k, m[k])
		}
	}
	fmt.Fprintf(tw, "phone starts\t%d\n", r.Attempts)
	section("start answers", r.Starts)
	fmt.Fprintf(tw, "stops sent by phones\t%d\n", r.Stops)
	fmt.Fprintf(tw, "starts repriced (price.changed)\t%d\n", r.Repriced)
	fmt.Fprintf(tw, "sessions in the store\t%d\n", r.Sessions)
	section("sessions by state", r.States)
	section("settled/refunded by outcome", r.Outcomes)
	section("faults injected", r.Faults)
	if len(r.Harness) > 0 {
		section("harness trouble", r.Harness)
	}
	section("violations", r.ViolationCounts())
	tw.Flush()
	if !r.Quiesced {
		fmt.Fprintf(w, "not quiescent: sessions still live %s after the faults stopped\n", c.QuiesceWithin)
	}
	vs := append([]Violation(nil), r.Violations...)
	sort.SliceStable(vs, func(i, j int) bool { return vs[i].Kind < vs[j].Kind })
	shown := map[string]int{}
	for _, v := range vs {
		if shown[v.Kind]++; shown[v.Kind] <= 5 {
			fmt.Fprintf(w, "  %s\n", v)
		}
	}
	if len(vs) == 0 {
		fmt.Fprintln(w, "no violations")
	} else {
		fmt.Fprintf(w, "%d violations (%s)\n", len(vs), strings.Join(sortedKeys(r.ViolationCounts()), ", "))
	}
}

// outcomeName is the outcome's text, "none" for 0.
func outcomeName(o vend.Outcome) string {
	if o == 0 {
		return "none"
	}
	return o.String()
}
