package machine

import (
	"context"
	"slices"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/hw/profile"
)

// VendingConfig wires a vending machine: one motor output per slot and a
// drop sensor shared by all slots.
type VendingConfig struct {
	Motors map[string]string // slot ID → output
	Drop   string            // input that goes active when an item falls
	// DropCounter, optional, is a counter of the board that counts the
	// drop input's pulses in hardware, one per item. It keeps counting
	// while no controller polls (a crashed one), so recovery can tell
	// what fell (see Settled and Dropped).
	DropCounter string
	// DropTimeout is how long a motor runs without a drop before the vend
	// counts as failed (a jam or an empty spiral). Default 5 s.
	DropTimeout time.Duration
	// SettleTimeout is how long a vend waits for the drop sensor to clear
	// (the previous item's pulse) before refusing it as stuck. Default 2 s.
	SettleTimeout time.Duration
}

// Vending drives a spiral or belt vending machine.
type Vending struct {
	b   *Board
	cfg VendingConfig
	ctr profile.Counter // the drop counter, when cfg names one
}

// NewVending checks cfg against the board's profile.
func NewVending(b *Board, cfg VendingConfig) (*Vending, error) {
	if len(cfg.Motors) == 0 {
		return nil, vend.Errorf(ErrConfig, "vending motors: none")
	}
	for slot, out := range cfg.Motors {
		if err := vend.ValidateSlotID(slot); err != nil || slot == "" {
			return nil, vend.Errorf(ErrConfig, "vending motors: slot %q: invalid id", slot)
		}
		if _, ok := b.prof.Output(out); !ok {
			return nil, vend.Errorf(ErrConfig, "vending motors.%s: no output %q in profile %s", slot, out, b.prof.Name)
		}
	}
	if _, ok := b.prof.Input(cfg.Drop); !ok {
		return nil, vend.Errorf(ErrConfig, "vending drop: no input %q in profile %s", cfg.Drop, b.prof.Name)
	}
	var ctr profile.Counter
	if cfg.DropCounter != "" {
		c, ok := b.prof.Counter(cfg.DropCounter)
		if !ok {
			return nil, vend.Errorf(ErrConfig, "vending drop_counter: no counter %q in profile %s", cfg.DropCounter, b.prof.Name)
		}
		ctr = c
	}
	if cfg.DropTimeout <= 0 {
		cfg.DropTimeout = 5 * time.Second
	}
	if cfg.SettleTimeout <= 0 {
		cfg.SettleTimeout = 2 * time.Second
	}
	return &Vending{b: b, cfg: cfg, ctr: ctr}, nil
}

// DropCounter returns the name of the drop counter, "" when the machine
// has none.
func (v *Vending) DropCounter() string { return v.cfg.DropCounter }

// DropCount returns the drop counter's raw reading in s; ok is false when
// the machine has no drop counter or s is not a good poll. A vend
// journals this reading as its start.
func (v *Vending) DropCount(s Snapshot) (raw uint32, ok bool) {
	if v.cfg.DropCounter == "" || !s.OK || s.Fault {
		return 0, false
	}
	return s.Counters[v.cfg.DropCounter], true
}

// Settled waits until every motor output reads OFF and the drop counter
// has not moved for quiet (at least two polls), and returns the counter's
// raw reading then. It gives up after bound with stable false and the
// latest reading. Recovery reads what a motor a crashed controller left
// turning dropped, once the board has dropped the motor. Errors: ErrConfig
// without a drop counter; ErrBoardFault when the board is in fault, gives
// no good poll within bound, or a motor still reads ON at the bound; ctx's
// error.
func (v *Vending) Settled(ctx context.Context, quiet, bound time.Duration) (raw uint32, stable bool, err error) {
	if v.cfg.DropCounter == "" {
		return 0, false, vend.Errorf(ErrConfig, "vending: no drop counter")
	}
	outs := make([]string, 0, len(v.cfg.Motors))
	for _, o := range v.cfg.Motors {
		outs = append(outs, o)
	}
	slices.Sort(outs)
	return settled(ctx, v.b, outs, v.cfg.DropCounter, quiet, bound)
}

// Dropped returns the items the drop counter counted from meterStart to
// its raw reading raw, given meterLast, a later journaled reading of the
// same vend (meterStart when none was). ok is false when raw is not
// consistent with them: the counter went backwards (the board lost power,
// which resets its counters, or was replaced).
func (v *Vending) Dropped(meterStart, meterLast uint64, raw uint32) (items uint64, ok bool) {
	if v.cfg.DropCounter == "" {
		return 0, false
	}
	return counted(v.ctr, meterStart, meterLast, raw)
}

// Vend runs a slot's motor until the drop sensor sees an item
// (StopCompleted, Units 1), DropTimeout passes (StopJam, Units 0) or the
// board faults (StopFault). A vend is atomic once the motor turns: ctx is
// honoured only until the motor is switched on (StopRequested, nothing
// turned); after that a cancelled ctx changes nothing, so a spiral is never
// stopped mid-turn with its item half out. The drop must
// be seen as a change from inactive to active after the motor started: a
// sensor already active before the vend is refused as a fault, so a stuck
// sensor never sells air. The motor is OFF when Vend returns.
func (v *Vending) Vend(ctx context.Context, slot string, progress func(Progress)) (Result, error) {
	out, ok := v.cfg.Motors[slot]
	if !ok {
		return Result{}, vend.Errorf(ErrUnknownIO, "vending slot %q", slot)
	}
	s := v.b.Snapshot()
	if !s.OK || s.Fault {
		return Result{}, vend.Errorf(ErrBoardFault, "no good poll to start from")
	}
	requested := func() (Result, error) {
		now := v.b.opts.Now()
		return Result{Reason: StopRequested, Started: now, Ended: now}, nil
	}
	if ctx.Err() != nil {
		return requested()
	}
	// The previous item's drop pulse may still be on: give the sensor
	// time to clear; if it does not, it is stuck or the chute is blocked.
	settle := v.b.opts.Now().Add(v.cfg.SettleTimeout)
	for s.Inputs[v.cfg.Drop] {
		if !v.b.opts.Now().Before(settle) {
			return Result{}, vend.Errorf(ErrBoardFault, "drop sensor %s is active before the vend (stuck or blocked)", v.cfg.Drop)
		}
		var err error
		if s, err = v.b.Next(ctx, s.Seq); err != nil {
			if ctx.Err() != nil {
				return requested()
			}
			return Result{}, err
		}
		if s.Fault {
			return Result{}, vend.Errorf(ErrBoardFault, "%v", s.Err)
		}
	}
	if ctx.Err() != nil {
		return requested()
	}
	// From here on the vend runs to a drop, a jam or a fault.
	bg := context.WithoutCancel(ctx)
	lease := leaseFor(v.b)
	if err := v.b.Set(bg, out, true, lease); err != nil {
		return Result{}, err
	}
	r := Result{Started: v.b.opts.Now()}
	seq := s.Seq
	end := func(reason StopReason, units uint64, err error) (Result, error) {
		octx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if e := v.b.Set(octx, out, false, 0); e != nil && err == nil {
			err = e
		}
		r.Reason, r.Units, r.Delivered, r.MeterEnd, r.Err, r.Ended = reason, units, units, units, err, v.b.opts.Now()
		return r, nil
	}
	for {
		s, err := v.b.Next(bg, seq)
		if err != nil {
			return end(StopFault, 0, err)
		}
		seq = s.Seq
		if s.Fault {
			return end(StopFault, 0, vend.Errorf(ErrBoardFault, "%v", s.Err))
		}
		if err := v.b.Renew(out, lease); err != nil {
			return end(StopFault, 0, err)
		}
		if !s.OK {
			continue
		}
		if progress != nil {
			progress(Progress{At: s.At, Running: true})
		}
		if s.Inputs[v.cfg.Drop] {
			return end(StopCompleted, 1, nil)
		}
		if s.At.Sub(r.Started) >= v.cfg.DropTimeout {
			return end(StopJam, 0, nil)
		}
	}
}
