package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/proxid"
	"beaconvend/app-protocol/vend"
)

// attempt is one phone's start on a machine, as the phone saw it.
type attempt struct {
	Phone     int
	Device    string
	Machine   string
	Slot      string
	Kind      vend.MachineKind
	IdemKey   string
	CapUnits  uint64 // 0 when the cap is an amount
	CapAmount int64  // 0 when the cap is units
	Shown     vend.Price
	Probe     bool     // the end-of-soak check that the machine is free again
	Repriced  bool     // the first start answered price.changed; the phone accepted the new price
	Retried   []string // answers that made the phone ask again with the same key (transport, service.unavailable)

	StartCode string             // "ok", or the error code of the start (e.g. device.no_reply)
	Session   phoneapi.SessionID // the session the phone learnt, if any (zero: none)
	Stopped   bool               // the phone sent a Stop
	StopErr   string
	Final     phoneapi.SessionState
	At        time.Time
}

// startResult is the answer to a start: a session (also with a 503
// device.no_reply that carries one), or an error code.
type startResult struct {
	status  int
	code    string
	msg     string
	session *phoneapi.Session
}

// machineLocks serialises the phones per machine, as people queue at a
// machine: one phone at a time tries it.
type machineLocks struct {
	mu   sync.Mutex
	busy map[int]bool
}

func (m *machineLocks) claim(rng *rand.Rand, n int) (int, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for range 4 * n {
		i := rng.IntN(n)
		if !m.busy[i] {
			m.busy[i] = true
			return i, true
		}
	}
	return 0, false
}

func (m *machineLocks) release(i int) {
	m.mu.Lock()
	delete(m.busy, i)
	m.mu.Unlock()
}

// phones drives the soak's phones and records their attempts.
type phones struct {
	r      *rig
	rates  Rates
	locks  machineLocks
	opTok  atomic.Value // string: operator token for price changes
	faults *counter

	mu       sync.Mutex
	attempts []*attempt
	prices   map[string]int // device/machine → price toggles
}

func (p *phones) record(a *attempt) {
	p.mu.Lock()
	p.attempts = append(p.attempts, a)
	p.mu.Unlock()
}

// run is one phone until ctx ends.
func (p *phones) run(ctx context.Context, i int, rng *rand.Rand) {
	c := phoneapi.New(p.r.httpURL, &phoneapi.Opts{Token: p.r.toks[i]})
	for ctx.Err() == nil {
		di, ok := p.locks.claim(rng, len(p.r.devs))
		if !ok {
			sleep(ctx, 200*time.Millisecond)
			continue
		}
		a := p.attempt(ctx, c, i, p.r.devs[di], rng, false)
		p.locks.release(di)
		pause := time.Duration(200+rng.IntN(1300)) * time.Millisecond
		if a != nil {
			p.record(a)
			if a.StartCode != "ok" {
				pause += 2 * time.Second // a person turned away walks off for a while
			}
		}
		sleep(ctx, pause)
	}
}

// attempt is one start on d: read the price, start (racing a price change
// sometimes), stop at a random moment sometimes, follow to the end.
func (p *phones) attempt(ctx context.Context, c *phoneapi.Client, phone int, d *device, rng *rand.Rand, probe bool) *attempt {
	dr, err := c.GetDevice(ctx, phoneapi.DeviceID(d.ID), d.heard())
	if err != nil || len(dr.Machines) == 0 {
		return nil // the cloud is down: the phone tries again later
	}
	m := dr.Machines[0]
	a := &attempt{Phone: phone, Device: d.ID, Machine: string(m.ID), Kind: d.spec.kind, IdemKey: phoneapi.NewIdempotencyKey(), Probe: probe, At: time.Now()}
	a.Shown = m.Price
	switch d.spec.kind {
	case vend.KindWater:
		if probe {
			a.CapUnits = 40
		} else if rng.IntN(2) == 0 {
			a.CapUnits = uint64(150 + rng.IntN(650))
		} else {
			a.CapAmount = int64(8 + rng.IntN(35)) // 160-840 mL at 0.50 per litre
		}
	case vend.KindWasher:
		if probe || rng.IntN(2) == 0 {
			a.CapUnits = 1
		} else {
			a.CapAmount = a.Shown.Minor + int64(rng.IntN(100))
		}
	case vend.KindVending:
		if len(m.Slots) > 0 {
			s := m.Slots[rng.IntN(len(m.Slots))]
			a.Slot = string(s.ID)
			a.Shown = s.Price
		}
		a.CapUnits = 1
	}
	req := map[string]any{
		"device": d.ID, "machine": a.Machine, "source": "wallet",
		"proximity_id": string(d.heard()),
	}
	if a.Slot != "" {
		req["slot"] = a.Slot
	}
	if a.CapUnits > 0 {
		req["cap"] = map[string]any{"units": a.CapUnits}
	} else {
		req["cap"] = map[string]any{"amount": map[string]any{"minor": a.CapAmount, "currency": string(m.Currency)}}
	}
	if !probe && rng.Float64() < p.rates.PriceChange {
		// Half the time the price moves after the phone showed it and
		// before the start (the payer saw the old price), half the time
		// it races the start inside the cloud.
		if rng.IntN(2) == 0 {
			p.changePrice(ctx, d, a, 0)
		} else {
			go p.changePrice(ctx, d, a, time.Duration(rng.IntN(40))*time.Millisecond)
		}
	}
	res := p.start(ctx, c, a, req)
	for try := 0; try < 3 && (res.code == "transport" || res.code == "service.unavailable") && ctx.Err() == nil; try++ {
		// No answer, or the cloud was unavailable: ask again with the
		// same idempotency key, as a careful client does, so a session
		// the cloud did make is learnt rather than lost.
		a.Retried = append(a.Retried, res.code)
		sleep(ctx, time.Duration(1+try)*time.Second)
		res = p.start(ctx, c, a, req)
	}
	if res.code == "price.changed" {
		// The phone shows the new price and the payer accepts it once.
		a.Repriced = true
		if dr, err := c.GetDevice(ctx, phoneapi.DeviceID(d.ID), d.heard()); err == nil && len(dr.Machines) > 0 {
			a.Shown = dr.Machines[0].Price
			for _, s := range dr.Machines[0].Slots {
				if string(s.ID) == a.Slot {
					a.Shown = s.Price
				}
			}
			a.IdemKey = phoneapi.NewIdempotencyKey()
			res = p.start(ctx, c, a, req)
		}
	}
	a.StartCode = res.code
	if res.session == nil {
		return a
	}
	a.Session = res.session.ID
	s := res.session
	if res.code == "device.no_reply" {
		// The cloud kept the session pending: follow it until the machine
		// takes it (then go on) or it ends; sometimes cancel.
		s = p.followPending(ctx, c, a, rng)
		if s == nil || s.State.Final() {
			a.finish(s)
			return a
		}
	}
	if !probe && rng.Float64() < p.rates.Stop {
		time.Sleep(stopDelay(d.spec.kind, a, rng))
		p.stop(ctx, c, a)
	}
	within := p.r.cfg.SessionBound
	if probe {
		within = probeWithin
	}
	a.finish(p.waitFinal(ctx, c, a, within))
	return a
}

func (a *attempt) finish(s *phoneapi.Session) {
	if s != nil {
		a.Final = s.State
	}
}

// stopDelay is a random moment for a Stop: anywhere in a water run, in
// the washer's coin-pulse window (two 50 ms pulses 100 ms apart, then the
// wait for the machine to run), in the vending motor's 800 ms.
func stopDelay(k vend.MachineKind, a *attempt, rng *rand.Rand) time.Duration {
	switch k {
	case vend.KindWater:
		return time.Duration(rng.IntN(6000)) * time.Millisecond
	case vend.KindWasher:
		return time.Duration(rng.IntN(400)) * time.Millisecond
	default:
		return time.Duration(rng.IntN(1200)) * time.Millisecond
	}
}

func (p *phones) stop(ctx context.Context, c *phoneapi.Client, a *attempt) {
	a.Stopped = true
	key := phoneapi.NewIdempotencyKey()
	for range 3 {
		_, err := c.StopSession(ctx, key, a.Session)
		if err == nil {
			a.StopErr = ""
			return
		}
		a.StopErr = vend.CodeOf(err)
		if vend.KindOf(err) != vend.Transient {
			return
		}
		sleep(ctx, 500*time.Millisecond)
	}
}

// followPending polls a session the start left pending until it is
// authorized or further, or final; it cancels it sometimes.
func (p *phones) followPending(ctx context.Context, c *phoneapi.Client, a *attempt, rng *rand.Rand) *phoneapi.Session {
	cancelAt := time.Now().Add(time.Duration(2+rng.IntN(30)) * time.Second)
	cancel := rng.IntN(3) == 0
	for deadline := time.Now().Add(p.r.cfg.SessionBound); time.Now().Before(deadline) && ctx.Err() == nil; sleep(ctx, 500*time.Millisecond) {
		s, err := c.GetSession(ctx, a.Session)
		if err != nil {
			continue
		}
		if s.State != phoneapi.StatePending {
			return s
		}
		if cancel && time.Now().After(cancelAt) && !a.Stopped {
			p.stop(ctx, c, a)
		}
	}
	return nil
}

// waitFinal polls the session until it is final or within has passed.
func (p *phones) waitFinal(ctx context.Context, c *phoneapi.Client, a *attempt, within time.Duration) *phoneapi.Session {
	var last *phoneapi.Session
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		s, err := c.GetSession(context.WithoutCancel(ctx), a.Session)
		if err == nil {
			last = s
			if s.State.Final() || policyStates[string(s.State)] {
				return s // unreported: the machine is free, the money follows the policy
			}
		}
		if ctx.Err() != nil && !a.Probe {
			break // the run is over; the audit reads the end from the store
		}
	}
	return last
}

// start posts the start request with the price the phone showed
// (expected_price), and reads a session from an error answer that carries
// one (503 device.no_reply with the pending session).
func (p *phones) start(ctx context.Context, c *phoneapi.Client, a *attempt, req map[string]any) startResult {
	req["expected_price"] = map[string]any{"minor": a.Shown.Minor, "per": a.Shown.Per}
	return postStart(ctx, p.r.httpURL, c.Token(), a.IdemKey, req)
}

func postStart(ctx context.Context, base, tok, key string, req map[string]any) startResult {
	b, _ := json.Marshal(req)
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	hr, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/sessions", bytes.NewReader(b))
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Authorization", "Bearer "+tok)
	hr.Header.Set("Idempotency-Key", key)
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		return startResult{code: "transport"}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var out struct {
		phoneapi.Session
		Error *phoneapi.ErrorBody `json:"error"`
	}
	_ = json.Unmarshal(body, &out)
	r := startResult{status: resp.StatusCode, code: "ok"}
	if resp.StatusCode/100 != 2 {
		r.code = fmt.Sprintf("http.%d", resp.StatusCode)
		if out.Error != nil && out.Error.Code != "" {
			r.code, r.msg = out.Error.Code, out.Error.Message
		}
	}
	switch {
	case out.Error != nil && out.Error.Session != nil && !out.Error.Session.ID.IsZero():
		r.session = out.Error.Session // 503 device.no_reply: the pending session
	case !out.Session.ID.IsZero():
		s := out.Session
		r.session = &s
	}
	return r
}

// changePrice races the start with an operator price change on the same
// machine: the price toggles between the base and 1.5 × the base.
func (p *phones) changePrice(ctx context.Context, d *device, a *attempt, after time.Duration) {
	time.Sleep(after)
	tok, _ := p.opTok.Load().(string)
	if tok == "" {
		var err error
		if tok, err = p.r.operatorToken(ctx); err != nil {
			return
		}
		p.opTok.Store(tok)
	}
	p.mu.Lock()
	key := d.ID + "/" + a.Machine
	p.prices[key]++
	up := p.prices[key]%2 == 1
	p.mu.Unlock()
	base := map[vend.MachineKind]vend.Price{vend.KindWater: {Minor: 50, Per: 1000}, vend.KindWasher: {Minor: 350, Per: 1}, vend.KindVending: {Minor: 150, Per: 1}}[d.spec.kind]
	if up {
		base.Minor = base.Minor * 3 / 2
	}
	body := map[string]any{"price": base}
	if d.spec.kind == vend.KindVending {
		body["slots"] = map[string]vend.Price{"A1": base, "A2": base}
	}
	b, _ := json.Marshal(body)
	if err := httpJSON(ctx, http.MethodPut, fmt.Sprintf("%s/v1/operator/devices/%s/machines/%s/price", p.r.httpURL, d.ID, a.Machine), tok, b, nil); err == nil {
		p.faults.add("price_change")
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// heard is the proximity ID a phone standing at d hears now: the machine
// details and a start both need it.
func (d *device) heard() phoneapi.ProximityID {
	return phoneapi.ProximityID(proxid.Compute(d.IDKey, proxid.Counter(time.Now()), d.K).String())
}
