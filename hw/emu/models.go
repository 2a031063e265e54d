package emu

import (
	"log/slog"
	"math"
	"math/big"
	"time"
)

// A model is one machine wired to the board. The board calls it with the
// board lock held, in time order: advance(t) brings its state up to t,
// coil reports an edge on one of its outputs at t (after advance(t)).
type model interface {
	name() string
	advance(to time.Time)
	coil(addr uint16, on bool, at time.Time)
	status(now time.Time) MachineStatus
}

// ---- water ----

// nsPerMinute × mL per litre: flow accumulates in mL·ns/min; dividing by
// nsPerMinute gives mL, and pulses = mL × K / 1000.
const nsPerMinute = int64(time.Minute)

type water struct {
	nm      string
	valve   uint16
	counter *counterState
	log     *slog.Logger

	on      bool
	last    time.Time
	rate    int64    // mL per minute
	kMilli  int64    // pulses per 1000 L
	acc     *big.Int // delivered volume in mL·ns/min: exact, never rounded
	pulses  uint64
	opens   int
	openFor time.Duration

	dlog   *deliveryLog
	cur    *Delivery // the open valve's delivery
	ulOpen int64     // delivered µL when it opened
}

func newWater(c MachineConfig, valve uint16, counter *counterState, now time.Time, log *slog.Logger, dlog *deliveryLog) *water {
	return &water{
		nm: c.Name, valve: valve, counter: counter, log: log, last: now, dlog: dlog,
		rate:   int64(math.Round(c.FlowLPM * flowRateScale)),
		kMilli: int64(math.Round(c.KFactor * kFactorScale)),
		acc:    new(big.Int),
	}
}

func (w *water) name() string { return w.nm }

func (w *water) advance(to time.Time) {
	if !to.After(w.last) {
		return
	}
	if w.on {
		dt := int64(to.Sub(w.last))
		w.openFor += to.Sub(w.last)
		w.acc.Add(w.acc, new(big.Int).Mul(big.NewInt(w.rate), big.NewInt(dt)))
		w.recount()
		if w.cur != nil {
			w.cur.DeliveredUL = w.deliveredUL() - w.ulOpen
		}
	}
	w.last = to
}

// recount derives pulses from the exact volume: floor(acc × K / (nsPerMinute × 1000 × 1000)).
func (w *water) recount() {
	p := new(big.Int).Mul(w.acc, big.NewInt(w.kMilli))
	p.Quo(p, new(big.Int).Mul(big.NewInt(nsPerMinute), big.NewInt(1000*kFactorScale)))
	w.pulses = p.Uint64()
	w.counter.raw = w.pulses
}

func (w *water) coil(addr uint16, on bool, at time.Time) {
	if addr != w.valve || on == w.on {
		return
	}
	w.on = on
	if on {
		w.opens++
		w.ulOpen = w.deliveredUL()
		w.cur = w.dlog.add(&Delivery{Machine: w.nm, Kind: KindWater, Start: at})
	} else if w.cur != nil {
		w.cur.DeliveredUL = w.deliveredUL() - w.ulOpen
		w.cur.End = at
		w.cur = nil
	}
	w.log.Debug("emu: valve", "machine", w.nm, "open", on, "delivered_ml", w.deliveredML(), "pulses", w.pulses)
}

// setRate changes the flow rate from at on (the board has advanced to at).
func (w *water) setRate(lpm float64) {
	w.rate = int64(math.Round(lpm * flowRateScale))
}

func (w *water) deliveredML() int64 {
	return new(big.Int).Quo(w.acc, big.NewInt(nsPerMinute)).Int64()
}

func (w *water) deliveredUL() int64 {
	return new(big.Int).Quo(w.acc, big.NewInt(nsPerMinute/1000)).Int64()
}

func (w *water) status(time.Time) MachineStatus {
	return MachineStatus{Name: w.nm, Kind: KindWater, Water: &WaterStatus{
		ValveOpen:   w.on,
		FlowLPM:     float64(w.rate) / flowRateScale,
		KFactor:     float64(w.kMilli) / kFactorScale,
		DeliveredML: w.deliveredML(),
		DeliveredUL: w.deliveredUL(),
		Pulses:      w.pulses,
		Opens:       w.opens,
		OpenMS:      w.openFor.Milliseconds(),
	}}
}

// ---- washer ----

type washer struct {
	cfg     MachineConfig
	coinOut uint16
	run     *inputState
	log     *slog.Logger
	dlog    *deliveryLog
	cur     *Delivery // the coin pulse in progress

	coinOn   bool
	onAt     time.Time
	credit   int
	edges    int
	valid    int
	invalid  int
	ignored  int
	running  bool
	runEnd   time.Time
	started  int
	complete int
}

func (w *washer) name() string { return w.cfg.Name }

func (w *washer) advance(to time.Time) {
	if w.running && !to.Before(w.runEnd) {
		w.running = false
		w.run.active = false
		w.complete++
		w.log.Info("emu: washer cycle done", "machine", w.cfg.Name, "cycles", w.complete)
	}
}

func (w *washer) coil(addr uint16, on bool, at time.Time) {
	if addr != w.coinOut || on == w.coinOn {
		return
	}
	w.coinOn = on
	if on {
		w.edges++
		w.onAt = at
		w.cur = w.dlog.add(&Delivery{Machine: w.cfg.Name, Kind: KindWasher, Start: at})
		return
	}
	cur := w.cur
	if cur == nil {
		cur = &Delivery{}
	}
	w.cur = nil
	cur.End = at
	d := at.Sub(w.onAt)
	switch {
	case d < w.cfg.PulseMin || d > w.cfg.PulseMax:
		w.invalid++
		w.log.Info("emu: washer coin pulse out of range", "machine", w.cfg.Name, "ms", d.Milliseconds())
	case w.running:
		w.ignored++
		cur.Valid, cur.Ignored = true, true
		w.log.Info("emu: washer coin pulse while running ignored", "machine", w.cfg.Name)
	default:
		w.valid++
		w.credit++
		cur.Valid = true
		if w.credit >= w.cfg.Credit {
			cur.CycleStarted = true
			w.credit = 0
			w.running = true
			w.run.active = true
			w.runEnd = at.Add(w.cfg.Cycle)
			w.started++
			w.log.Info("emu: washer cycle started", "machine", w.cfg.Name, "cycle", w.cfg.Cycle)
		}
	}
}

func (w *washer) status(now time.Time) MachineStatus {
	s := &WasherStatus{
		Running: w.running, Credit: w.credit, CreditNeeded: w.cfg.Credit,
		CoinPulses: w.edges, ValidPulses: w.valid, InvalidPulses: w.invalid, IgnoredPulses: w.ignored,
		CyclesStarted: w.started, CyclesCompleted: w.complete,
	}
	if w.running {
		s.RemainingMS = w.runEnd.Sub(now).Milliseconds()
	}
	return MachineStatus{Name: w.cfg.Name, Kind: KindWasher, Washer: s}
}

// ---- vending ----

type slot struct {
	name   string
	motor  string
	addr   uint16
	on     bool
	next   time.Time // when the running motor drops its next item
	cur    *Delivery // the motor run in progress
	jammed bool
	items  int
	runs   int
}

type vending struct {
	cfg  MachineConfig
	drop *inputState
	// counter, when the config names a drop_counter, counts one pulse
	// per item dropped (a board counting its drop input in hardware).
	counter *counterState
	slots   []*slot
	log     *slog.Logger
	dlog    *deliveryLog

	hasDrop  bool
	lastDrop time.Time
}

func (v *vending) name() string { return v.cfg.Name }

func (v *vending) advance(to time.Time) {
	for _, s := range v.slots {
		if !s.on || s.jammed {
			continue
		}
		for !s.next.After(to) {
			s.items++
			if s.cur != nil {
				s.cur.Items++
			}
			if !v.hasDrop || s.next.After(v.lastDrop) {
				v.lastDrop = s.next
			}
			v.hasDrop = true
			if v.counter != nil {
				v.counter.raw++
			}
			v.log.Info("emu: item dropped", "machine", v.cfg.Name, "slot", s.name, "items", s.items)
			s.next = s.next.Add(v.cfg.DropAfter)
		}
	}
	v.drop.active = v.hasDrop && !to.Before(v.lastDrop) && to.Before(v.lastDrop.Add(v.cfg.DropPulse))
}

func (v *vending) coil(addr uint16, on bool, at time.Time) {
	for _, s := range v.slots {
		if s.addr != addr || s.on == on {
			continue
		}
		s.on = on
		if on {
			s.runs++
			s.next = at.Add(v.cfg.DropAfter)
			s.cur = v.dlog.add(&Delivery{Machine: v.cfg.Name, Kind: KindVending, Slot: s.name, Start: at})
		} else if s.cur != nil {
			s.cur.End = at
			s.cur = nil
		}
	}
}

// jam sets a slot's jam at the current time (the board has advanced to at).
func (v *vending) jam(s *slot, jammed bool, at time.Time) {
	if s.jammed && !jammed && s.on {
		s.next = at.Add(v.cfg.DropAfter)
	}
	s.jammed = jammed
}

func (v *vending) slot(name string) *slot {
	for _, s := range v.slots {
		if s.name == name {
			return s
		}
	}
	return nil
}

func (v *vending) status(time.Time) MachineStatus {
	st := &VendingStatus{Dropping: v.drop.active}
	for _, s := range v.slots {
		st.Items += s.items
		st.Slots = append(st.Slots, SlotStatus{Name: s.name, Motor: s.motor, MotorOn: s.on, Jammed: s.jammed, Items: s.items, Runs: s.runs})
	}
	return MachineStatus{Name: v.cfg.Name, Kind: KindVending, Vending: st}
}
