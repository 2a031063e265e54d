package machine

import (
	"context"
	"time"

	"beaconvend/app-protocol/vend"
)

// WasherConfig wires a washer or dryer that takes coin pulses.
type WasherConfig struct {
	// Coin is the output wired across the machine's coin-acceptor input.
	// The relay is energized for each pulse and de-energized at rest. A
	// machine whose coin line idles closed (pulses open) is wired to the
	// relay's normally-closed contact: the line then idles correctly with
	// the relay off, which is also its fail-safe state, and an energizing
	// pulse still makes one coin. Software never holds a coin relay on.
	Coin string
	// Running is the input that reads the machine's "in use" signal (a
	// door-lock or motor line through an optocoupler).
	Running string
	// PulseWidth and PulseGap shape each coin pulse; most machines accept
	// 50 ms on, 100 ms off (the defaults). Both 20 ms to 1 s.
	PulseWidth time.Duration
	PulseGap   time.Duration
	// PulsesPerCredit is how many coin pulses buy one cycle (a machine set
	// to 4 coins a wash needs 4). Default 1.
	PulsesPerCredit int
	// StartTimeout is how long the machine has to report running after
	// the last pulse before the start counts as failed. Default 30 s.
	StartTimeout time.Duration
	// MaxCycle bounds a cycle; a machine still "running" after it is
	// reported as a fault. Default 3 h.
	MaxCycle time.Duration
	// Debounce is how long Running must stay inactive before the cycle
	// counts as ended (door-lock lines flicker between phases). Default 2 s.
	Debounce time.Duration
}

// Washer drives a coin-operated washer or dryer.
type Washer struct {
	b   *Board
	cfg WasherConfig
}

// NewWasher checks cfg against the board's profile.
func NewWasher(b *Board, cfg WasherConfig) (*Washer, error) {
	if _, ok := b.prof.Output(cfg.Coin); !ok {
		return nil, vend.Errorf(ErrConfig, "washer coin: no output %q in profile %s", cfg.Coin, b.prof.Name)
	}
	if _, ok := b.prof.Input(cfg.Running); !ok {
		return nil, vend.Errorf(ErrConfig, "washer running: no input %q in profile %s", cfg.Running, b.prof.Name)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&cfg.PulseWidth, 50*time.Millisecond)
	def(&cfg.PulseGap, 100*time.Millisecond)
	def(&cfg.StartTimeout, 30*time.Second)
	def(&cfg.MaxCycle, 3*time.Hour)
	def(&cfg.Debounce, 2*time.Second)
	if cfg.PulsesPerCredit == 0 {
		cfg.PulsesPerCredit = 1
	}
	for _, d := range []struct {
		n string
		v time.Duration
	}{{"pulse_width", cfg.PulseWidth}, {"pulse_gap", cfg.PulseGap}} {
		if d.v < 20*time.Millisecond || d.v > time.Second {
			return nil, vend.Errorf(ErrConfig, "washer %s: %s is outside 20ms-1s", d.n, d.v)
		}
	}
	if cfg.PulsesPerCredit < 1 || cfg.PulsesPerCredit > 50 {
		return nil, vend.Errorf(ErrConfig, "washer pulses_per_credit: %d is outside 1-50", cfg.PulsesPerCredit)
	}
	return &Washer{b: b, cfg: cfg}, nil
}

// Running reports whether the machine's running input is active in the
// latest poll.
func (w *Washer) Running() bool { return w.b.Snapshot().Inputs[w.cfg.Running] }

// Purchase is what Buy and Resume are asked for.
type Purchase struct {
	Credits int  // credits bought, each PulsesPerCredit coin pulses
	Seconds bool // meter whole seconds run (a dryer) rather than cycles
	// BeforePulse, when set, is called before coin pulse n (1-based, of the
	// whole purchase) is driven, and must make n durable (the journal's
	// CoinPulse); an error stops the train there with StopFault and that
	// error, and pulse n is not driven.
	BeforePulse func(n int) error
	Progress    func(Progress) // called after every poll while the cycle runs
}

// Cycle buys cycles (credits × PulsesPerCredit coin pulses), waits for the
// machine to report running, then meters the cycle in seconds until running
// stays inactive for Debounce. Results: StopCompleted (Units = 1 cycle per
// credit, or the seconds run when seconds is true, as for a dryer),
// StopNoStart (the machine never reported running within StartTimeout:
// nothing to bill), StopFault, StopRequested (ctx was cancelled before the
// first pulse: nothing given).
//
// Buying is atomic once it begins: from the first coin pulse on, ctx is no
// longer honoured. The whole pulse train is driven (a half-paid credit
// left banked in the machine would make the next buyer's cycle free) and
// Cycle waits for the machine to start, or for StartTimeout, and a started
// cycle is metered to its end (a washer cannot be stopped from here). The
// caller records the credit as given, durably, before calling Cycle.
func (w *Washer) Cycle(ctx context.Context, credits int, seconds bool, progress func(Progress)) (Result, error) {
	return w.Buy(ctx, Purchase{Credits: credits, Seconds: seconds, Progress: progress})
}

// Buy is Cycle with a hook before each coin pulse (Purchase.BeforePulse),
// so that a caller can journal how many pulses it has driven.
func (w *Washer) Buy(ctx context.Context, p Purchase) (Result, error) {
	if p.Credits < 1 {
		return Result{}, vend.Errorf(ErrConfig, "washer: %d credits", p.Credits)
	}
	s := w.b.Snapshot()
	if !s.OK || s.Fault {
		return Result{}, vend.Errorf(ErrBoardFault, "no good poll to start from")
	}
	if s.Inputs[w.cfg.Running] {
		return Result{}, vend.Errorf(ErrConfig, "washer: machine already running")
	}
	r := Result{Started: w.b.opts.Now()}
	if ctx.Err() != nil {
		r.Reason, r.Ended = StopRequested, r.Started
		return r, nil
	}
	// From the first pulse on, the purchase runs to its end whatever ctx says.
	bg := context.WithoutCancel(ctx)
	if err := w.pulses(bg, p, 1, p.Credits*w.cfg.PulsesPerCredit); err != nil {
		r.Reason, r.Err, r.Ended = StopFault, err, w.b.opts.Now()
		return r, nil
	}
	return w.await(bg, r, p, w.cfg.StartTimeout, time.Time{})
}

// Resume completes a purchase that a crash interrupted after the caller
// had recorded coin pulse committed as about to be driven (pulses 1 to
// committed-1 were driven, pulse committed may or may not have reached
// the machine, or may have been cut to an invalid width). The machine
// must end with exactly the purchase's credit, so:
//
//   - a machine already running when the whole train was recorded is the
//     purchase's cycle: it is metered;
//   - otherwise the rest of the train (committed+1 onwards) is driven
//     and the machine has StartTimeout to run; if it does not and the
//     last recorded pulse was in doubt, that one pulse is driven again
//     (recorded first, as pulse total+1), once in the purchase's life,
//     and the machine has StartTimeout again.
//
// The cycle is then metered as by Buy; StopNoStart when it never ran.
// ctx is not honoured (the purchase began before the crash). Errors (for a
// resume that cannot begin, so the caller keeps its crash policy):
// ErrConfig for committed < 1 or a machine already running with part of
// the train not driven; ErrBoardFault without a good poll.
func (w *Washer) Resume(ctx context.Context, p Purchase, committed int) (Result, error) {
	total := p.Credits * w.cfg.PulsesPerCredit
	if p.Credits < 1 || committed < 1 {
		return Result{}, vend.Errorf(ErrConfig, "washer: resume %d credits from pulse %d", p.Credits, committed)
	}
	s := w.b.Snapshot()
	if !s.OK || s.Fault {
		return Result{}, vend.Errorf(ErrBoardFault, "no good poll to resume from")
	}
	bg := context.WithoutCancel(ctx)
	r := Result{Started: w.b.opts.Now()}
	if s.Inputs[w.cfg.Running] {
		if committed < total {
			return Result{}, vend.Errorf(ErrConfig, "washer: machine running with pulses %d-%d of its credit not driven", committed+1, total)
		}
		return w.await(bg, r, p, 0, s.At)
	}
	if err := w.pulses(bg, p, committed+1, total); err != nil {
		r.Reason, r.Err, r.Ended = StopFault, err, w.b.opts.Now()
		return r, nil
	}
	r, err := w.await(bg, r, p, w.cfg.StartTimeout, time.Time{})
	if err != nil || r.Reason != StopNoStart || committed > total {
		return r, err
	}
	// The pulse in doubt did not count: give it again, once.
	if err := w.pulses(bg, p, total+1, total+1); err != nil {
		r.Reason, r.Err, r.Ended = StopFault, err, w.b.opts.Now()
		return r, nil
	}
	return w.await(bg, Result{Started: w.b.opts.Now()}, p, w.cfg.StartTimeout, time.Time{})
}

// pulses drives coin pulses from to to (1-based, inclusive), each recorded
// by BeforePulse first.
func (w *Washer) pulses(ctx context.Context, p Purchase, from, to int) error {
	for n := from; n <= to; n++ {
		if p.BeforePulse != nil {
			if err := p.BeforePulse(n); err != nil {
				return err
			}
		}
		if err := w.b.Pulse(ctx, w.cfg.Coin, w.cfg.PulseWidth, w.cfg.PulseGap); err != nil {
			return err
		}
	}
	return nil
}

// await waits up to startTimeout for the machine to report running
// (unless runningSince says it already does), then meters the cycle to
// its end.
func (w *Washer) await(bg context.Context, r Result, p Purchase, startTimeout time.Duration, runningSince time.Time) (Result, error) {
	credits, seconds, progress := p.Credits, p.Seconds, p.Progress
	seq := w.b.Snapshot().Seq
	startBy := w.b.opts.Now().Add(startTimeout)
	for runningSince.IsZero() {
		s, err := w.b.Next(bg, seq)
		if err != nil {
			r.Reason, r.Err, r.Ended = StopFault, err, w.b.opts.Now()
			return r, nil
		}
		seq = s.Seq
		if s.Fault {
			r.Reason, r.Err, r.Ended = StopFault, vend.Errorf(ErrBoardFault, "%v", s.Err), s.At
			return r, nil
		}
		if s.OK && s.Inputs[w.cfg.Running] {
			runningSince = s.At
			break
		}
		if s.At.After(startBy) {
			r.Reason, r.Ended = StopNoStart, s.At
			return r, nil
		}
	}
	r.Started = runningSince
	var idleSince time.Time
	for {
		s, err := w.b.Next(bg, seq)
		if err != nil {
			r.Reason, r.Err, r.Ended = StopFault, err, w.b.opts.Now()
			return w.units(r, credits, seconds), nil
		}
		seq = s.Seq
		if s.Fault {
			r.Reason, r.Err, r.Ended = StopFault, vend.Errorf(ErrBoardFault, "%v", s.Err), s.At
			return w.units(r, credits, seconds), nil
		}
		if !s.OK {
			continue
		}
		if s.Inputs[w.cfg.Running] {
			idleSince = time.Time{}
		} else if idleSince.IsZero() {
			idleSince = s.At
		}
		r.Ended = s.At
		if progress != nil {
			p := w.units(r, credits, seconds)
			progress(Progress{Units: p.Units, At: s.At, Running: idleSince.IsZero()})
		}
		if !idleSince.IsZero() && s.At.Sub(idleSince) >= w.cfg.Debounce {
			r.Ended = idleSince
			r.Reason = StopCompleted
			return w.units(r, credits, seconds), nil
		}
		if s.At.Sub(runningSince) > w.cfg.MaxCycle {
			r.Reason, r.Err = StopFault, vend.Errorf(ErrBoardFault, "still running after %s", w.cfg.MaxCycle)
			return w.units(r, credits, seconds), nil
		}
	}
}

// units fills Units/Delivered: cycles bought, or whole seconds run.
func (w *Washer) units(r Result, credits int, seconds bool) Result {
	if seconds {
		r.Delivered = uint64(r.Ended.Sub(r.Started) / time.Second)
	} else {
		r.Delivered = uint64(credits)
	}
	r.Units = r.Delivered
	r.MeterStart, r.MeterEnd = 0, r.Delivered
	return r
}
