package daemon

import (
	"context"
	"fmt"
	"sync"
	"time"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
	"beaconvend/controller/config"
	"beaconvend/controller/journal"
	"beaconvend/hw/machine"
)

// mach is one machine's runtime: its driver and at most one running session.
type mach struct {
	cfg config.Machine

	mu       sync.Mutex
	water    *machine.Water
	washer   *machine.Washer
	vending  *machine.Vending
	session  vend.SessionID // the live session, zero when idle
	cancel   context.CancelFunc
	stopAs   vend.Outcome // outcome to record when cancelled
	testing  bool         // an output test runs
	counters mqttapi.Counters
	prices   []mqttapi.PriceEntry
	jammed   map[string]bool // vending slots out of service (see jam)
}

func newMach(c config.Machine) *mach {
	return &mach{cfg: c, counters: mqttapi.Counters{Unit: c.Kind.Unit()}}
}

func (m *mach) bind(b *machine.Board) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var err error
	switch m.cfg.Kind {
	case vend.KindWater:
		k, _ := config.ParseKFactor(m.cfg.Water.KFactor)
		m.water, err = machine.NewWater(b, machine.WaterConfig{
			Valve: m.cfg.Water.Valve, Flow: m.cfg.Water.Flow, KFactorMilli: k,
			NoFlow: m.cfg.Water.NoFlow.D(), PauseAllowance: m.cfg.Water.PauseAllowance.D(),
		})
	case vend.KindWasher, vend.KindDryer:
		w := m.cfg.Washer
		m.washer, err = machine.NewWasher(b, machine.WasherConfig{
			Coin: w.Coin, Running: w.Running, PulseWidth: w.PulseWidth.D(), PulseGap: w.PulseGap.D(),
			PulsesPerCredit: w.PulsesPerCredit, StartTimeout: w.StartTimeout.D(), Debounce: w.Debounce.D(),
		})
	case vend.KindVending:
		motors := map[string]string{}
		for _, s := range m.cfg.Slots {
			motors[s.ID] = s.Output
		}
		m.vending, err = machine.NewVending(b, machine.VendingConfig{Motors: motors, Drop: m.cfg.Vending.Drop,
			DropCounter: m.cfg.Vending.DropCounter, DropTimeout: m.cfg.Vending.DropTimeout.D()})
	}
	if err != nil {
		return fmt.Errorf("controller: machine %s: %w", m.cfg.ID, err)
	}
	return nil
}

func (m *mach) busy() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return !m.session.IsZero() || m.testing
}

func (m *mach) bound() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.water != nil || m.washer != nil || m.vending != nil
}

// stop cancels the running session, recording outcome.
func (m *mach) stop(outcome vend.Outcome) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cancel == nil {
		return false
	}
	m.stopAs = outcome
	m.cancel()
	return true
}

// recover finishes sessions a power cut or crash left open, and queues
// their reports: authorized ones as not_started, running ones as
// interrupted (a washer or dryer seen running billed for its credit),
// credited ones (coin pulses may have been given) as interrupted and
// billed for the credit. The board has already been
// driven OFF. When it answers (a controller killed while the board kept
// its power), two cases use what it says rather than the last journaled
// reading:
//
//   - a running water session is billed what the flow counter says flowed
//     (waterFlowed), the valve having run on until the board dropped it;
//   - a credited session whose pulse count was journaled is resumed, not
//     ended (returned in resume; Run starts it): the rest of its coin
//     pulses are driven so the machine gets exactly its credit, and the
//     cycle is metered as any other.
func (d *Daemon) recover() (resume []journal.Session, err error) {
	live, err := d.j.Live()
	if err != nil {
		return nil, err
	}
	for _, s := range live {
		d.log.Warn("finishing a session left open", "session", s.ID, "machine", s.Machine, "state", s.State, "units", s.Units, "coin_pulses", s.CoinPulses)
		switch s.State {
		case journal.Authorized:
			err = d.j.Transition(s.ID, journal.Expired, nil)
		case journal.Credited:
			if d.resumable(s) {
				d.log.Warn("completing the credit of a session left open", "session", s.ID, "machine", s.Machine, "coin_pulses", s.CoinPulses)
				resume = append(resume, s)
				continue
			}
			err = d.billCredit(s)
		case journal.Running:
			units, meter, ok := d.waterFlowed(s)
			if ok {
				d.log.Warn("billing what the flow counter counted", "session", s.ID, "journaled", s.Units, "counted", units)
			} else if units, meter, ok = d.vendDropped(s); ok {
				d.log.Warn("billing what the drop counter counted", "session", s.ID, "journaled", s.Units, "counted", units)
			}
			// A washer or dryer seen running runs what its credit bought
			// (it cannot be stopped from here), whatever was journaled.
			coin := d.coinOperated(s.Machine)
			err = d.j.Transition(s.ID, journal.Ending, func(x *journal.Session) {
				x.Outcome = vend.OutcomeInterrupted
				if ok {
					x.Units, x.MeterLast = max(x.Units, units), max(x.MeterLast, meter)
				}
				if coin {
					x.Units = max(x.Units, d.creditUnits(s))
				}
			})
		}
		if err != nil {
			return nil, fmt.Errorf("controller: recover session %s: %w", s.ID, err)
		}
		if _, err := d.j.EndSession(s.ID, d.signer, d.endedEvent(s.ID)...); err != nil {
			return nil, fmt.Errorf("controller: report session %s: %w", s.ID, err)
		}
	}
	return resume, nil
}

// resumed is a credited session recovery left to complete on its machine.
type resumed struct {
	m   *mach
	s   journal.Session
	ctx context.Context
}

// holdResumed marks the machines of sessions to resume busy, so nothing
// else starts on them before Run completes their credit.
func (d *Daemon) holdResumed(ss []journal.Session) {
	for _, s := range ss {
		m := d.machines[s.Machine]
		ctx, cancel := context.WithCancel(d.ctx)
		m.mu.Lock()
		m.session, m.cancel, m.stopAs = s.ID, cancel, vend.OutcomeUserStop
		m.mu.Unlock()
		d.resume = append(d.resume, resumed{m: m, s: s, ctx: ctx})
	}
}

// startResumed runs the sessions holdResumed kept (once, from Run). A
// session whose grant cannot be decoded is billed as the crash policy
// says.
func (d *Daemon) startResumed() {
	rs := d.resume
	d.resume = nil
	for _, r := range rs {
		g, err := r.s.DecodeGrant()
		if err != nil {
			d.log.Error("session left open has no readable grant; billed", "session", r.s.ID, "err", err)
			if err := d.billCredit(r.s); err == nil {
				d.report(r.s.ID, d.log)
			}
			r.m.mu.Lock()
			r.m.session, r.m.cancel = vend.SessionID{}, nil
			r.m.mu.Unlock()
			continue
		}
		d.sessWG.Add(1)
		go func() {
			defer d.sessWG.Done()
			d.run(r.ctx, r.m, g, &r.s)
		}()
	}
}

// coinOperated reports whether machine is a washer or dryer.
func (d *Daemon) coinOperated(machine string) bool {
	m := d.machines[machine]
	return m != nil && (m.cfg.Kind == vend.KindWasher || m.cfg.Kind == vend.KindDryer)
}

// billCredit ends a credited session the controller cannot complete (no
// board, no journaled pulse count, a resume that could not begin): the
// credit may be in the machine, so it is billed (outcome interrupted),
// never not_started.
func (d *Daemon) billCredit(s journal.Session) error {
	units := d.creditUnits(s)
	return d.j.Transition(s.ID, journal.Ending, func(x *journal.Session) {
		x.Outcome = vend.OutcomeInterrupted
		if units > x.Units {
			x.Units = units
		}
	})
}

// resumable reports whether credited session s can be completed: its
// machine is a bound washer or dryer, the board answers and is not in
// fault, and the journal knows how many coin pulses were given.
func (d *Daemon) resumable(s journal.Session) bool {
	m := d.machines[s.Machine]
	b := d.board.Load()
	if m == nil || b == nil || b.Status().Fault || s.CoinPulses < 1 {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.washer != nil
}

// Bounds of the wait for a flow counter to settle at recovery.
const (
	flowQuiet = 300 * time.Millisecond
	flowBound = 5 * time.Second
)

// waterFlowed is what running water session s delivered by the board's
// flow counter, read once the valve is OFF and the counter has stopped:
// the units (capped at the session's cap) and the meter reading. ok is
// false, and the journaled reading stands, when the machine is not water,
// the board does not answer or is in fault, or the counter is not
// consistent with the journal (it went backwards: the board lost power,
// which resets its counters and closed the valve at once, or it is
// another board), or it counted less than the journal already has.
func (d *Daemon) waterFlowed(s journal.Session) (units, meter uint64, ok bool) {
	m := d.machines[s.Machine]
	b := d.board.Load()
	if m == nil || b == nil || b.Status().Fault {
		return 0, 0, false
	}
	m.mu.Lock()
	w := m.water
	m.mu.Unlock()
	if w == nil {
		return 0, 0, false
	}
	return d.recount(s, "flow counter", w.Settled, w.Flowed, w.MLFor)
}

// vendDropped is what running vending session s dropped by the board's
// drop counter, read once every motor is OFF and the counter has stopped:
// the items (capped at the session's cap) and the meter reading. ok is
// false, and the journaled units stand, when the machine is not vending or
// has no drop counter, the session's start was not journaled against that
// counter, the board does not answer or is in fault, or the counter is not
// consistent with the journal (it went backwards: the board lost power,
// which resets its counters and stops its motors at once, or it is
// another board).
func (d *Daemon) vendDropped(s journal.Session) (units, meter uint64, ok bool) {
	m := d.machines[s.Machine]
	b := d.board.Load()
	if m == nil || b == nil || b.Status().Fault || s.MeterCounter == "" {
		return 0, 0, false
	}
	m.mu.Lock()
	v := m.vending
	m.mu.Unlock()
	if v == nil {
		return 0, 0, false
	}
	if c := v.DropCounter(); c != s.MeterCounter {
		d.log.Warn("drop counter changed since the vend started; billing the journaled units", "session", s.ID, "journaled", s.MeterCounter, "configured", c)
		return 0, 0, false
	}
	return d.recount(s, "drop counter", v.Settled, v.Dropped, func(items uint64) uint64 { return items })
}

// recount is the recovery of a session from a board counter (what, for
// the log): it waits until the machine's outputs are OFF and the counter
// has stopped (settled), counts the pulses since the session's journaled
// start (counted), and turns them into units (capped at the session's
// cap). ok is false, and the journaled units stand, when the counter
// cannot be read, is not consistent with the journal, or counts less
// than the journal already has.
func (d *Daemon) recount(s journal.Session, what string,
	settled func(ctx context.Context, quiet, bound time.Duration) (uint32, bool, error),
	counted func(meterStart, meterLast uint64, raw uint32) (uint64, bool),
	toUnits func(pulses uint64) uint64,
) (units, meter uint64, ok bool) {
	raw, stable, err := settled(context.Background(), flowQuiet, flowBound)
	if err != nil {
		d.log.Warn(what+" unreadable at recovery; billing the journaled units", "session", s.ID, "err", err)
		return 0, 0, false
	}
	if !stable {
		d.log.Warn(what+" still moving with the outputs off; billing what it counted so far", "session", s.ID)
	}
	pulses, ok := counted(s.MeterStart, s.MeterLast, raw)
	if !ok {
		d.log.Warn(what+" not consistent with the journal (reset or another board); billing the journaled units",
			"session", s.ID, "counter", raw, "meter_start", s.MeterStart, "meter_last", s.MeterLast)
		return 0, 0, false
	}
	units = min(toUnits(pulses), s.CapUnits)
	if units < s.Units {
		return 0, 0, false
	}
	return units, s.MeterStart + pulses, true
}

// creditUnits is what an interrupted credit bills: the cycle a washer's
// credit buys, or a dryer's whole authorized time (the machine's timer
// runs what the credit bought; the cap is what the payer agreed to pay).
func (d *Daemon) creditUnits(s journal.Session) uint64 {
	if s.Unit == vend.UnitCycle {
		return min(1, s.CapUnits)
	}
	return s.CapUnits
}

// endedEvent builds the outbox event for a session that has just ended,
// reading the record (state after the transition).
func (d *Daemon) endedEvent(id vend.SessionID) []journal.Outgoing {
	s, err := d.j.Get(id)
	if err != nil {
		return nil
	}
	g, err := s.DecodeGrant()
	if err != nil {
		return nil
	}
	units := min(s.Units, g.CapUnits)
	cost, _ := g.Price.Cost(units)
	out := s.Outcome
	if !out.Valid() {
		out = vend.OutcomeInterrupted
	}
	ev := &mqttapi.Event{Envelope: d.env(), Kind: mqttapi.EventEnded, Session: id, Machine: s.Machine,
		Units: &units, Unit: g.Unit, Amount: &vend.Amount{Minor: cost, Currency: g.Currency}, Outcome: out}
	if out == vend.OutcomeFault {
		ev.FaultCode = faultCodeBoard
	}
	o, err := d.outgoing(ev, vend.SessionID{})
	if err != nil {
		d.log.Error("ended event", "err", err)
		return nil
	}
	return []journal.Outgoing{o}
}

// authorize verifies a grant and starts its session. It returns the error
// the reply carries.
func (d *Daemon) authorize(cmd *mqttapi.Authorize) error {
	m, ok := d.machines[cmd.Machine]
	if !ok {
		return vend.Errorf(errMachineUnknown, "%q", cmd.Machine)
	}
	// Judged by the cloud's clock (estimated from Acks): a board whose own
	// clock is minutes off neither refuses good grants nor starts late ones.
	d.syncClock()
	cancelled := false
	g, err := signed.VerifyGrant(cmd.Grant, signed.GrantCheck{
		Keys: d.cloudKeys(), Device: d.cfg.DeviceID, Machine: cmd.Machine, Now: d.cloudNow(),
		Skew: d.cfg.GrantSkew.D(), Seen: func(id vend.SessionID) (bool, error) {
			seen, c, err := d.j.SeenState(id)
			cancelled = c
			return seen && !c, err
		},
	})
	// The cloud cancelled this session (Stop) before it started, or a Stop
	// for it waits in the command queue: the Stop wins.
	if err == nil && (cancelled || d.stopQueued(g.Session)) {
		if _, cerr := d.j.Cancel(g.Session, g.ExpiresAt.Add(d.cfg.GrantSkew.D())); cerr != nil {
			return cerr
		}
		return vend.Errorf(errGrantCancelled, "%s", g.Session)
	}
	// A replayed grant (a seen session ID) is refused with grant.replayed
	// and switches nothing on. A cloud retrying its own Authorize after a
	// lost reply gets the stored reply from the reply cache (same command
	// ID); after a restart it gets grant.replayed, which the cloud reads as
	// "already accepted", since only the cloud issues session IDs.
	if err != nil {
		return err
	}
	return d.start(m, g, cmd.Grant, nil)
}

// start begins the session of a verified grant on machine m, for every
// path a grant comes by (MQTT Authorize, a phone's GATT relay): the board
// must be ready, the slot in service and known, the unit the machine's and
// the machine free; then the grant is accepted in the journal (with the
// relay's nonce, in the same commit, when relay is set) and its session
// runs. It returns the error the reply or the ATT answer carries.
func (d *Daemon) start(m *mach, g signed.Grant, grantBytes []byte, relay *journal.Relay) error {
	if _, ok := d.boardReady(); !m.bound() || !ok {
		return vend.Errorf(errMachineFault, "board not ready")
	}
	if m.cfg.Kind == vend.KindVending && m.isJammed(g.Slot) {
		return vend.Errorf(errMachineFault, "slot %s on %s is jammed", g.Slot, m.cfg.ID)
	}
	if g.Unit != m.cfg.Kind.Unit() {
		return vend.Errorf(errGrantUnit, "grant meters %s, machine %s meters %s", g.Unit, m.cfg.ID, m.cfg.Kind.Unit())
	}
	if m.cfg.Kind == vend.KindVending {
		found := false
		for _, s := range m.cfg.Slots {
			found = found || s.ID == g.Slot
		}
		if !found {
			return vend.Errorf(errMachineUnknown, "slot %q on %s", g.Slot, m.cfg.ID)
		}
	}
	m.mu.Lock()
	if !m.session.IsZero() || m.testing {
		m.mu.Unlock()
		return vend.Errorf(errMachineBusy, "%s", m.cfg.ID)
	}
	capAmt := vend.Amount{Minor: g.CapMoney, Currency: g.Currency}
	ev := &mqttapi.Event{Envelope: d.env(), Kind: mqttapi.EventAuthorized, Session: g.Session, Machine: g.Machine, Amount: &capAmt}
	out, err := d.outgoing(ev, vend.SessionID{})
	if err != nil {
		m.mu.Unlock()
		return err
	}
	if relay != nil {
		err = d.j.AcceptRelay(g, grantBytes, *relay, out)
	} else {
		err = d.j.Accept(g, grantBytes, out)
	}
	if err != nil {
		m.mu.Unlock()
		return err
	}
	ctx, cancel := context.WithCancel(d.ctx)
	m.session, m.cancel, m.stopAs = g.Session, cancel, vend.OutcomeUserStop
	m.mu.Unlock()
	d.kickDrain()
	d.sessWG.Add(1)
	go func() {
		defer d.sessWG.Done()
		d.run(ctx, m, g, nil)
	}()
	return nil
}

// run drives one session to its end and reports it. Nothing is switched
// on (no valve, motor or coin pulse) unless the transition that makes the
// session billable (running, or credited for a coin pulse) is committed
// first; a journal that cannot write is a fault (journalFailed). resume,
// when set, is a credited session recovery left open (see recover): its
// purchase is completed rather than begun.
func (d *Daemon) run(ctx context.Context, m *mach, g signed.Grant, resume *journal.Session) {
	defer func() {
		m.mu.Lock()
		m.session, m.cancel = vend.SessionID{}, nil
		m.mu.Unlock()
	}()
	id := g.Session
	log := d.log.With("session", id, "machine", m.cfg.ID)
	// Stopped before anything was switched on, or past the grant's start-by
	// bound judged by the cloud's clock: not started, nothing billed.
	if resume == nil && (ctx.Err() != nil || !d.cloudNow().Before(g.ExpiresAt)) {
		d.finish(id, journal.Expired, vend.OutcomeNotStarted, 0, nil, log)
		return
	}
	started, credited := false, false
	meterCounter := "" // the counter markStarted's reading is of, when journaled (vending)
	markStarted := func(meter uint64) error {
		if started {
			return nil
		}
		ev := &mqttapi.Event{Envelope: d.env(), Kind: mqttapi.EventStarted, Session: id, Machine: m.cfg.ID}
		out, err := d.outgoing(ev, vend.SessionID{})
		if err != nil {
			return err
		}
		if err := d.j.Transition(id, journal.Running, func(s *journal.Session) {
			s.MeterStart, s.MeterLast, s.MeterCounter = meter, meter, meterCounter
		}, out); err != nil {
			d.journalFailed(err, log)
			return err
		}
		started = true
		d.kickDrain()
		return nil
	}
	// notStarted ends a session whose outputs were never switched on
	// because its start could not be committed.
	notStarted := func(err error) {
		log.Error("start not committed; nothing switched on", "err", err)
		d.finish(id, journal.Failed, vend.OutcomeFault, 0, err, log)
	}
	var lastProgress time.Time
	progress := func(p machine.Progress) {
		if !started {
			if err := markStarted(p.Meter); err != nil {
				log.Error("start", "err", err)
				return
			}
		}
		if err := d.j.Meter(id, p.Units, p.Meter); err != nil {
			log.Error("meter", "err", err)
			d.journalFailed(err, log)
		}
		if p.At.Sub(lastProgress) >= d.opts.ProgressEvery {
			lastProgress = p.At
			u := p.Units
			cost, _ := g.Price.Cost(min(u, g.CapUnits))
			d.publishDirect(&mqttapi.Event{Envelope: d.env(), Kind: mqttapi.EventProgress, Session: id, Machine: m.cfg.ID,
				Units: &u, Unit: g.Unit, Amount: &vend.Amount{Minor: cost, Currency: g.Currency}})
		}
	}
	var res machine.Result
	var err error
	switch m.cfg.Kind {
	case vend.KindWater:
		// Water starts at once: record the start with the counter reading.
		snap := d.board.Load().Snapshot() // set: authorize checked it
		meter := uint64(snap.Counters[m.cfg.Water.Flow])
		if err := markStarted(meter); err != nil {
			notStarted(err)
			return
		}
		res, err = m.water.Pour(ctx, g.CapUnits, progress)
	case vend.KindWasher, vend.KindDryer:
		// Credit given is billable: committed, with the first coin pulse,
		// before that pulse; every further pulse is committed before it is
		// driven, so recovery knows how much of the credit was given.
		p := machine.Purchase{Credits: 1, Seconds: m.cfg.Kind == vend.KindDryer,
			BeforePulse: func(n int) error {
				if err := d.j.CoinPulse(id, n); err != nil {
					d.journalFailed(err, log)
					return err
				}
				return nil
			},
			Progress: func(p machine.Progress) {
				p.Units = min(p.Units, g.CapUnits)
				progress(p)
			}}
		if resume != nil {
			credited = true
			res, err = m.washer.Resume(ctx, p, resume.CoinPulses)
			if err != nil || (res.Reason == machine.StopFault && !started) {
				// The credit could not be completed (board fault, a
				// machine running with part of it not given): the
				// crash policy, billed.
				log.Warn("credit left open could not be completed; billed", "err", err, "result", res.Err)
				if berr := d.billCredit(*resume); berr != nil {
					log.Error("end session", "err", berr)
					return
				}
				d.report(id, log)
				return
			}
			break
		}
		if err := d.j.Transition(id, journal.Credited, func(s *journal.Session) { s.CoinPulses = 1 }); err != nil {
			d.journalFailed(err, log)
			notStarted(err)
			return
		}
		credited = true
		res, err = m.washer.Buy(ctx, p)
	case vend.KindVending:
		// With a drop counter the running commit records its reading, so
		// that recovery can bill what a motor a crash left turning dropped.
		var meter uint64
		if c := m.vending.DropCounter(); c != "" {
			raw, ok := m.vending.DropCount(d.board.Load().Snapshot())
			if !ok {
				notStarted(vend.Errorf(machine.ErrBoardFault, "no good poll of drop counter %s", c))
				return
			}
			meter, meterCounter = uint64(raw), c
		}
		if err := markStarted(meter); err != nil {
			notStarted(err)
			return
		}
		res, err = m.vending.Vend(ctx, g.Slot, func(p machine.Progress) {})
		if meterCounter != "" {
			// The journal keeps the counter's reading at the start (the
			// vend's own reading is its item count, not the counter's).
			res.MeterEnd = 0
		}
	}
	if err != nil {
		// Could not start at all (board fault, stuck sensor): nothing delivered.
		log.Warn("session could not start", "err", err)
		switch {
		case started:
			d.finishRunning(id, vend.OutcomeFault, 0, log)
		case credited:
			d.finish(id, journal.Failed, vend.OutcomeFault, 0, err, log)
		default:
			d.finish(id, journal.Expired, vend.OutcomeFault, 0, err, log)
		}
		return
	}
	outcome := map[machine.StopReason]vend.Outcome{
		machine.StopCap: vend.OutcomeCapReached, machine.StopNoFlow: vend.OutcomeNoFlow, machine.StopFault: vend.OutcomeFault,
		machine.StopCompleted: vend.OutcomeCompleted, machine.StopJam: vend.OutcomeVendFailed, machine.StopNoStart: vend.OutcomeNotStarted,
	}[res.Reason]
	if res.Reason == machine.StopRequested {
		m.mu.Lock()
		outcome = m.stopAs
		m.mu.Unlock()
	}
	if outcome == 0 {
		outcome = vend.OutcomeInterrupted
	}
	if res.Reason == machine.StopJam {
		m.jam(g.Slot)
		d.stateChanged()
	}
	if !started {
		if credited {
			// Credit given, the machine never seen running (start timeout,
			// fault) or no pulse driven at all: nothing billed.
			if outcome != vend.OutcomeFault {
				outcome = vend.OutcomeNotStarted
			}
			d.finish(id, journal.Ending, outcome, 0, nil, log)
			return
		}
		d.finish(id, journal.Expired, vend.OutcomeNotStarted, 0, nil, log)
		return
	}
	if res.MeterEnd > 0 {
		if err := d.j.Meter(id, res.Units, res.MeterEnd); err != nil {
			log.Error("final meter", "err", err)
			d.journalFailed(err, log)
		}
	}
	d.finishRunning(id, outcome, res.Units, log)
	m.mu.Lock()
	m.counters.UnitsTotal += res.Units
	m.counters.SessionsTotal++
	if outcome == vend.OutcomeFault {
		m.counters.FaultsTotal++
	}
	m.mu.Unlock()
}

// finishRunning ends a running session: Ending (Refunded for a failed
// vend) with its outcome and final reading, then the signed report.
func (d *Daemon) finishRunning(id vend.SessionID, outcome vend.Outcome, units uint64, log interface{ Error(string, ...any) }) {
	to := journal.Ending
	if outcome == vend.OutcomeVendFailed {
		to = journal.Refunded
	}
	d.finish(id, to, outcome, units, nil, log)
}

// finish moves a session to the ended state to with its outcome (and its
// units, never downwards), then reports it.
func (d *Daemon) finish(id vend.SessionID, to journal.State, outcome vend.Outcome, units uint64, cause error, log interface{ Error(string, ...any) }) {
	err := d.j.Transition(id, to, func(s *journal.Session) {
		s.Outcome = outcome
		if units > s.Units {
			s.Units = units
		}
		if outcome == vend.OutcomeFault {
			s.FaultCode = faultBoard
		}
	})
	if err != nil {
		log.Error("end session", "err", err, "cause", cause)
		return
	}
	d.report(id, log)
}

func (d *Daemon) report(id vend.SessionID, log interface{ Error(string, ...any) }) {
	if _, err := d.j.EndSession(id, d.signer, d.endedEvent(id)...); err != nil {
		log.Error("report session", "err", err)
		return
	}
	d.kickDrain()
}

// Fault codes of sessions ended by a board fault: the usage report's
// numeric code and the event's dotted one.
const (
	faultBoard     uint16 = 1
	faultCodeBoard        = "board.fault"
)

// Sentinels for command replies.
var (
	errMachineUnknown = vend.E(vend.NotFound, mqttapi.CodeMachineUnknown, "controller: no such machine")
	errMachineBusy    = vend.E(vend.Conflict, mqttapi.CodeMachineBusy, "controller: machine busy")
	errMachineFault   = vend.E(vend.Transient, mqttapi.CodeMachineFault, "controller: machine or board in fault")
	errSessionUnknown = vend.E(vend.NotFound, mqttapi.CodeSessionUnknown, "controller: no such session")
	errGrantCancelled = vend.E(vend.Conflict, mqttapi.CodeGrantCancelled, "controller: session cancelled before it started")
	errOutputUnknown  = vend.E(vend.NotFound, mqttapi.CodeOutputUnknown, "controller: no such output on this machine")
	errGrantUnit      = vend.E(vend.Invalid, "grant.unit", "controller: grant unit does not match the machine")
	errKeyMismatch    = vend.E(vend.Invalid, mqttapi.CodeKeyMismatch, "controller: key does not match the pending key")
	errUnsupported    = vend.E(vend.Invalid, mqttapi.CodeUnsupported, "controller: command not supported")
)
