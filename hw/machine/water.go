package machine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/hw/profile"
)

// Errors shared by the machine drivers.
var (
	ErrConfig = vend.E(vend.Invalid, "machine.config", "machine: invalid machine config")
)

// StopReason says why a run on a machine ended.
type StopReason string

// Stop reasons.
const (
	StopCap       StopReason = "cap_reached" // metering reached the cap
	StopRequested StopReason = "user_stop"   // the caller cancelled (user stop, shutdown)
	StopNoFlow    StopReason = "no_flow"     // water: no pulses for too long
	StopFault     StopReason = "fault"       // the board faulted
	StopCompleted StopReason = "completed"   // laundry cycle ended, item dropped
	StopJam       StopReason = "vend_failed" // vending: no drop within the timeout
	StopNoStart   StopReason = "not_started" // laundry: the machine never reported running
)

// WaterConfig wires a water dispenser to a board.
type WaterConfig struct {
	Valve string // output that opens the valve or runs the pump
	Flow  string // counter fed by the flow meter
	// KFactorMilli is the flow meter's calibration in pulses per 1000
	// litres (so 450.5 pulses/L is 450500): integer, so metering is exact.
	KFactorMilli uint64
	// NoFlow ends a pour when the valve is open and no pulse arrives for
	// this long (empty tank, closed tap, broken meter). Default 5 s.
	NoFlow time.Duration
	// PauseAllowance is the total time without flow a pour may spend across
	// pauses before it ends, so a user may stop and restart a tap without
	// holding the machine forever. Default 30 s.
	PauseAllowance time.Duration
}

// Water drives a water dispenser: a valve (or pump) output and a flow
// meter counting pulses.
type Water struct {
	b   *Board
	cfg WaterConfig
	ctr profile.Counter
}

// NewWater checks cfg against the board's profile. Errors: ErrConfig naming the field.
func NewWater(b *Board, cfg WaterConfig) (*Water, error) {
	if _, ok := b.prof.Output(cfg.Valve); !ok {
		return nil, vend.Errorf(ErrConfig, "water valve: no output %q in profile %s", cfg.Valve, b.prof.Name)
	}
	c, ok := b.prof.Counter(cfg.Flow)
	if !ok {
		return nil, vend.Errorf(ErrConfig, "water flow: no counter %q in profile %s", cfg.Flow, b.prof.Name)
	}
	if cfg.KFactorMilli < 1000 || cfg.KFactorMilli > 100_000_000 {
		return nil, vend.Errorf(ErrConfig, "water k_factor: %d milli-pulses per litre is outside 1-100000 pulses/L", cfg.KFactorMilli)
	}
	if cfg.NoFlow <= 0 {
		cfg.NoFlow = 5 * time.Second
	}
	if cfg.PauseAllowance <= 0 {
		cfg.PauseAllowance = 30 * time.Second
	}
	return &Water{b: b, cfg: cfg, ctr: c}, nil
}

// PulsesFor returns the pulses that make ml millilitres: the smallest
// pulse count whose volume is at least ml. A pour stops at exactly this count.
func (w *Water) PulsesFor(ml uint64) uint64 {
	return (ml*w.cfg.KFactorMilli + 999_999) / 1_000_000
}

// MLFor returns the millilitres in pulses, rounded down.
func (w *Water) MLFor(pulses uint64) uint64 {
	return pulses * 1_000_000 / w.cfg.KFactorMilli
}

// Progress is reported after every poll while a machine runs.
type Progress struct {
	Units   uint64    // metered so far (ml for water, seconds for a cycle, items)
	Meter   uint64    // raw meter reading, extended past counter wrap
	At      time.Time // poll time
	Running bool      // the output is on / the machine reports running
}

// Result is how a run ended.
type Result struct {
	Reason     StopReason
	Units      uint64 // delivered, capped at the cap (what is billed)
	Delivered  uint64 // delivered as metered, including overrun after the stop
	MeterStart uint64 // counter reading at start
	MeterEnd   uint64 // counter reading at the end (MeterStart + pulses)
	Started    time.Time
	Ended      time.Time
	Err        error // the board error for StopFault
}

// Pour opens the valve and meters until capML is delivered (the valve
// closes at exactly PulsesFor(capML) pulses), ctx is cancelled (user stop),
// no pulse arrives for NoFlow or the pauses exceed PauseAllowance, or the
// board faults. progress, if not nil, is called after every poll. The valve
// is OFF when Pour returns, whatever happened; the returned error is only
// for a pour that could not start.
func (w *Water) Pour(ctx context.Context, capML uint64, progress func(Progress)) (Result, error) {
	if capML == 0 {
		return Result{}, vend.Errorf(ErrConfig, "water: cap of 0 ml")
	}
	target := w.PulsesFor(capML)
	start := w.b.Snapshot()
	if !start.OK || start.Fault {
		return Result{}, vend.Errorf(ErrBoardFault, "no good poll to start from")
	}
	meter := newMeter(w.ctr, start.Counters[w.cfg.Flow])
	lease := leaseFor(w.b)
	if err := w.b.Set(ctx, w.cfg.Valve, true, lease); err != nil {
		return Result{}, err
	}
	r := Result{MeterStart: meter.base, Started: w.b.opts.Now()}
	seq := start.Seq
	lastFlow := r.Started
	var paused time.Duration
	var lastPoll time.Time = r.Started
	stop := func(reason StopReason, err error) (Result, error) {
		r.Reason, r.Err = reason, err
		return w.finish(r, meter, capML, seq)
	}
	for {
		s, err := w.b.Next(ctx, seq)
		if err != nil {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return stop(StopRequested, nil)
			}
			return stop(StopFault, err)
		}
		seq = s.Seq
		if s.Fault {
			return stop(StopFault, vend.Errorf(ErrBoardFault, "%v", s.Err))
		}
		if err := w.b.Renew(w.cfg.Valve, lease); err != nil {
			return stop(StopFault, err)
		}
		if !s.OK {
			continue // transient poll failure; the board faults after MaxFailures
		}
		before := meter.pulses
		meter.observe(s.Counters[w.cfg.Flow])
		if meter.pulses != before {
			lastFlow = s.At
		} else if s.At.After(lastPoll) {
			paused += s.At.Sub(lastPoll)
		}
		lastPoll = s.At
		if progress != nil {
			progress(Progress{Units: min(w.MLFor(meter.pulses), capML), Meter: meter.base + meter.pulses, At: s.At, Running: true})
		}
		switch {
		case meter.pulses >= target:
			return stop(StopCap, nil)
		case s.At.Sub(lastFlow) >= w.cfg.NoFlow:
			return stop(StopNoFlow, nil)
		case paused >= w.cfg.PauseAllowance:
			return stop(StopNoFlow, nil)
		}
	}
}

// finish closes the valve, reads the counter once more to catch pulses
// that arrived while it closed, and fills the result.
func (w *Water) finish(r Result, m *meter, capML uint64, seq uint64) (Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := w.b.Set(ctx, w.cfg.Valve, false, 0); err != nil && r.Err == nil {
		// The lease lapses by itself; the board watchdog is the backstop.
		r.Err = fmt.Errorf("machine: close valve: %w", err)
	}
	if s, err := w.b.Next(ctx, seq); err == nil && s.OK {
		m.observe(s.Counters[w.cfg.Flow])
	}
	r.Ended = w.b.opts.Now()
	r.Delivered = w.MLFor(m.pulses)
	r.Units = min(r.Delivered, capML)
	r.MeterEnd = m.base + m.pulses
	return r, nil
}

// leaseFor is how long an output stays on without renewal: a few polls.
func leaseFor(b *Board) time.Duration { return max(5*b.opts.PollInterval, 500*time.Millisecond) }

// meter extends a wrapping 16- or 32-bit hardware counter into a running
// pulse count.
type meter struct {
	width  int
	last   uint32
	base   uint64 // the reading at start
	pulses uint64 // pulses since start
}

func newMeter(c profile.Counter, first uint32) *meter {
	return &meter{width: c.Width, last: first, base: uint64(first)}
}

func (m *meter) observe(v uint32) {
	var d uint32
	if m.width == 16 {
		d = uint32(uint16(v) - uint16(m.last))
	} else {
		d = v - m.last
	}
	m.pulses += uint64(d)
	m.last = v
}

// Settled waits until the valve reads OFF and the flow counter has not
// moved for quiet (at least two polls), and returns the counter's raw
// reading then. It gives up after bound with stable false and the latest
// reading (a counter still moving with the valve off: a leak or a noisy
// meter). Recovery reads the water a crashed controller left flowing
// with it, once the board has dropped the valve. Errors: ErrBoardFault
// when the board is in fault or gives no good poll within bound, or when
// the valve still reads ON at the bound; ctx's error.
func (w *Water) Settled(ctx context.Context, quiet, bound time.Duration) (raw uint32, stable bool, err error) {
	return settled(ctx, w.b, []string{w.cfg.Valve}, w.cfg.Flow, quiet, bound)
}

// Flowed returns the pulses counted from meterStart to the raw counter
// reading raw, given meterLast, a later reading of the same run (both as
// Progress.Meter: extended past counter wrap): meterLast - meterStart
// plus the counter's advance since meterLast. ok is false when raw is not
// consistent with them: the counter went backwards from meterLast (the
// board lost power, which resets its counters, or was replaced), or
// meterLast is below meterStart.
func (w *Water) Flowed(meterStart, meterLast uint64, raw uint32) (pulses uint64, ok bool) {
	return counted(w.ctr, meterStart, meterLast, raw)
}
