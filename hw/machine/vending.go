package machine

import (
	"context"
	"time"

	"beaconvend/app-protocol/vend"
)

// VendingConfig wires a vending machine: one motor output per slot and a
// drop sensor shared by all slots.
type VendingConfig struct {
	Motors map[string]string // slot ID → output
	Drop   string            // input that goes active when an item falls
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
	if cfg.DropTimeout <= 0 {
		cfg.DropTimeout = 5 * time.Second
	}
	if cfg.SettleTimeout <= 0 {
		cfg.SettleTimeout = 2 * time.Second
	}
	return &Vending{b: b, cfg: cfg}, nil
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
