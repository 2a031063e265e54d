package machine

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"sync"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/hw/modbus"
	"beaconvend/hw/profile"
)

// Errors.
var (
	ErrBoardFault = vend.E(vend.Transient, "board.fault", "machine: board fault")
	ErrReadback   = vend.E(vend.Transient, "board.readback", "machine: output read back differs from what was written")
	ErrUnknownIO  = vend.E(vend.Invalid, "board.unknown_io", "machine: no such output, input or counter in the board profile")
	ErrClosed     = vend.E(vend.Transient, "board.closed", "machine: board closed")
	ErrLease      = vend.E(vend.Invalid, "board.lease", "machine: an ON output needs a lease between 1 ms and 1 h")
)

// Opts configures a Board.
type Opts struct {
	// PollInterval is how often inputs, counters and coils are read, leases
	// checked and the board watchdog refreshed while an output is meant to
	// be ON or a driver waits for a poll. Default 100 ms.
	PollInterval time.Duration
	// IdlePollInterval is the poll interval while every output is OFF and
	// nobody waits: the board is still watched (faults, inputs, watchdog)
	// at a fraction of the CPU and bus time. Default 500 ms.
	IdlePollInterval time.Duration
	// MaxFailures is the number of consecutive failed polls after which
	// every output is driven OFF and the board is in fault. Default 3.
	MaxFailures int
	// RecoverPolls is the number of consecutive good polls that clear a
	// fault. Outputs stay OFF; owners must switch them on again. Default 5.
	RecoverPolls int
	// WatchdogTimeout is what the board's own watchdog (profile.Watchdog)
	// is armed with on every poll: when the controller stops polling for
	// this long, the board switches its outputs off by itself. Default
	// 10 × PollInterval or 3 × IdlePollInterval, whichever is longer, at
	// least 1 s.
	WatchdogTimeout time.Duration
	Logger          *slog.Logger     // default: discard
	Now             func() time.Time // default: time.Now
}

// DefaultOpts are the options used for nil.
var DefaultOpts = Opts{PollInterval: 100 * time.Millisecond, IdlePollInterval: 500 * time.Millisecond, MaxFailures: 3, RecoverPolls: 5}

// Snapshot is the board as one poll saw it.
type Snapshot struct {
	Seq      uint64            // increments with every poll, good or bad
	At       time.Time         // when the poll finished
	OK       bool              // the poll read everything
	Fault    bool              // the board is in fault (outputs forced OFF)
	Err      error             // the poll's error, when not OK
	Outputs  map[string]bool   // coil states as read back
	Inputs   map[string]bool   // logical input states (active_low applied)
	Counters map[string]uint32 // raw counter values
}

// Status summarizes the board for telemetry.
type Status struct {
	OK                  bool   `json:"ok"`
	Fault               bool   `json:"fault"`
	FaultReason         string `json:"fault_reason,omitempty"`
	ConsecutiveFailures int    `json:"consecutive_failures"`
	Polls               uint64 `json:"polls"`
	FailedPolls         uint64 `json:"failed_polls"`
	LeaseExpiries       uint64 `json:"lease_expiries"`
	ReadbackFaults      uint64 `json:"readback_faults"`
}

// Board owns one Modbus I/O board described by a profile and keeps it safe:
//
//   - Open drives every output OFF and reads the coils back before anything else;
//   - an output is ON only under a lease its owner renews; when a lease
//     lapses (a stuck or dead owner) the poll loop switches it OFF;
//   - every poll reads the coils back and compares them with what is meant
//     to be ON; a mismatch is rewritten once and then faults the board;
//   - MaxFailures consecutive failed polls fault the board: every output
//     is driven OFF (best effort) and owners waiting on the board are told;
//   - the board's own watchdog register, when the profile has one, is
//     re-armed on every poll, so if the whole process dies the board itself
//     drops its outputs;
//   - Close drives every output OFF.
//
// All methods are safe for concurrent use.
// lease is an ON output's lease: it lapses when its deadline has passed
// and its owner has since been offered a fresh poll and not renewed (so a
// slow or failing bus, which delays polls, is not mistaken for a dead owner).
type lease struct {
	until time.Time
	seq   uint64 // the snapshot sequence when it was set or renewed
}

type Board struct {
	bus  modbus.Bus
	prof *profile.Profile
	opts Opts
	log  *slog.Logger

	mu       sync.Mutex
	want     map[string]lease // output name → lease; present = meant to be ON
	snap     Snapshot
	tick     chan struct{} // closed and replaced after every poll
	status   Status
	goodRun  int
	closed   bool
	coilLo   uint16
	coilN    uint16
	inLo     uint16
	inN      uint16
	stopPoll context.CancelFunc
	done     chan struct{}
	waiters  int           // goroutines blocked in Next
	wake     chan struct{} // nudges the poll loop to re-pick its interval
}

// Open takes over the board: every output is driven OFF and read back as
// OFF before Open returns, the watchdog (if any) is armed, and the poll
// loop starts. It returns the error of the first write or read when the
// board does not answer; outputs are then in an unknown state, which is
// why a real installation also needs the board's or the controller's
// hardware watchdog.
func Open(ctx context.Context, bus modbus.Bus, prof *profile.Profile, opts *Opts) (*Board, error) {
	o := DefaultOpts
	if opts != nil {
		o = *opts
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultOpts.PollInterval
	}
	if o.MaxFailures <= 0 {
		o.MaxFailures = DefaultOpts.MaxFailures
	}
	if o.RecoverPolls <= 0 {
		o.RecoverPolls = DefaultOpts.RecoverPolls
	}
	if o.IdlePollInterval <= 0 {
		o.IdlePollInterval = max(DefaultOpts.IdlePollInterval, o.PollInterval)
	}
	o.IdlePollInterval = max(o.IdlePollInterval, o.PollInterval)
	if o.WatchdogTimeout <= 0 {
		o.WatchdogTimeout = max(10*o.PollInterval, 3*o.IdlePollInterval, time.Second)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	b := &Board{bus: bus, prof: prof, opts: o, log: o.Logger, want: map[string]lease{}, tick: make(chan struct{}), wake: make(chan struct{}, 1)}
	b.coilLo, b.coilN = span(coilAddrs(prof))
	b.inLo, b.inN = span(inputAddrs(prof))
	if err := b.allOff(ctx); err != nil {
		return nil, fmt.Errorf("machine: open %s: outputs off: %w", prof.Name, err)
	}
	if err := b.armWatchdog(ctx); err != nil {
		return nil, fmt.Errorf("machine: open %s: watchdog: %w", prof.Name, err)
	}
	snap := b.poll(ctx)
	if !snap.OK {
		return nil, fmt.Errorf("machine: open %s: first poll: %w", prof.Name, snap.Err)
	}
	for n, on := range snap.Outputs {
		if on {
			return nil, vend.Errorf(ErrReadback, "open %s: output %s reads ON after all-off", prof.Name, n)
		}
	}
	b.publish(snap)
	pctx, cancel := context.WithCancel(context.Background())
	b.stopPoll, b.done = cancel, make(chan struct{})
	go b.run(pctx)
	return b, nil
}

// Profile returns the board's profile.
func (b *Board) Profile() *profile.Profile { return b.prof }

// Close stops polling and drives every output OFF. It returns the error of
// that last write; the board's watchdog is the backstop when it fails.
func (b *Board) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.want = map[string]lease{}
	b.mu.Unlock()
	b.stopPoll()
	<-b.done
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := b.allOff(ctx)
	b.mu.Lock()
	close(b.tick)
	b.tick = nil
	b.mu.Unlock()
	return err
}

// Set switches an output. on=true needs a lease (1 ms to 1 h): the output
// stays ON only until the lease runs out unless Renew extends it. The write
// is read back before Set returns. Errors: ErrUnknownIO, ErrLease,
// ErrBoardFault (while in fault, nothing is switched on), ErrClosed,
// ErrReadback and Modbus errors.
func (b *Board) Set(ctx context.Context, output string, on bool, lease time.Duration) error {
	o, ok := b.prof.Output(output)
	if !ok {
		return vend.Errorf(ErrUnknownIO, "output %q", output)
	}
	if on && (lease < time.Millisecond || lease > time.Hour) {
		return vend.Errorf(ErrLease, "%s for %q", lease, output)
	}
	b.mu.Lock()
	switch {
	case b.closed:
		b.mu.Unlock()
		return ErrClosed
	case on && b.status.Fault:
		b.mu.Unlock()
		return vend.Errorf(ErrBoardFault, "%s", b.status.FaultReason)
	}
	if on {
		b.want[output] = leaseOf(b, lease)
	} else {
		delete(b.want, output)
	}
	b.mu.Unlock()
	if on {
		b.nudge()
	}
	if err := b.writeCoil(ctx, o.Coil, on); err != nil {
		if on {
			b.mu.Lock()
			delete(b.want, output)
			b.mu.Unlock()
			b.offBestEffort(o.Coil)
		}
		return fmt.Errorf("machine: set %s %v: %w", output, on, err)
	}
	return nil
}

// Renew extends the lease of an output that is ON. It returns ErrLease when
// the output is not meant to be ON any more (its lease already lapsed or it
// was switched off), so an owner learns it lost the output.
func (b *Board) Renew(output string, lease time.Duration) error {
	if lease < time.Millisecond || lease > time.Hour {
		return vend.Errorf(ErrLease, "%s for %q", lease, output)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.want[output]; !ok {
		return vend.Errorf(ErrLease, "%q is not on", output)
	}
	b.want[output] = leaseOf(b, lease)
	return nil
}

// leaseOf returns a lease of d from now; b.mu is held.
func leaseOf(b *Board, d time.Duration) lease {
	return lease{until: b.opts.Now().Add(d), seq: b.snap.Seq}
}

// Pulse switches an output ON for width, then OFF, and waits gap after it:
// the coin-pulse primitive. The lease covers the pulse, so a process that
// dies mid-pulse still drops the output.
func (b *Board) Pulse(ctx context.Context, output string, width, gap time.Duration) error {
	if err := b.Set(ctx, output, true, width+b.opts.PollInterval*3); err != nil {
		return err
	}
	t := time.NewTimer(width)
	select {
	case <-ctx.Done():
		t.Stop()
	case <-t.C:
	}
	offCtx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := b.Set(offCtx, output, false, 0); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return sleep(ctx, gap)
}

// Snapshot returns the latest poll.
func (b *Board) Snapshot() Snapshot {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.snap
}

// Next waits for a poll newer than seq and returns it. It returns
// ErrClosed when the board is closed, or ctx's error.
func (b *Board) Next(ctx context.Context, seq uint64) (Snapshot, error) {
	for {
		b.mu.Lock()
		if b.snap.Seq > seq {
			s := b.snap
			b.mu.Unlock()
			return s, nil
		}
		tick := b.tick
		if tick == nil {
			b.mu.Unlock()
			return Snapshot{}, ErrClosed
		}
		b.waiters++
		b.mu.Unlock()
		b.nudge()
		select {
		case <-ctx.Done():
		case <-tick:
		}
		b.mu.Lock()
		b.waiters--
		b.mu.Unlock()
		if ctx.Err() != nil {
			return Snapshot{}, ctx.Err()
		}
	}
}

// nudge wakes the poll loop so that it switches to the fast interval.
func (b *Board) nudge() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// interval is the poll interval now: fast while an output is meant to be
// ON or a driver waits on Next, slow otherwise.
func (b *Board) interval() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.want) > 0 || b.waiters > 0 {
		return b.opts.PollInterval
	}
	return b.opts.IdlePollInterval
}

// Status returns counters for telemetry.
func (b *Board) Status() Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.status
}

func (b *Board) run(ctx context.Context) {
	defer close(b.done)
	last := b.opts.Now()
	t := time.NewTimer(b.opts.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-b.wake:
			// Re-pick the interval: poll now if the fast one has passed.
			t.Stop()
			if wait := b.opts.PollInterval - b.opts.Now().Sub(last); wait > 0 {
				t.Reset(wait)
				continue
			}
		}
		last = b.opts.Now()
		b.expireLeases(ctx)
		snap := b.poll(ctx)
		if ctx.Err() != nil {
			return
		}
		if snap.OK {
			if err := b.armWatchdog(ctx); err != nil {
				snap.OK, snap.Err = false, err
			}
		}
		if snap.OK {
			b.verify(ctx, &snap)
		}
		b.account(ctx, &snap)
		b.publish(snap)
		t.Reset(b.interval())
	}
}

// expireLeases switches off outputs whose owner stopped renewing.
func (b *Board) expireLeases(ctx context.Context) {
	now := b.opts.Now()
	var lapsed []string
	b.mu.Lock()
	for n, l := range b.want {
		// Lapsed: past its deadline, and the owner has been offered at
		// least one poll since it last renewed.
		if now.After(l.until) && b.snap.Seq > l.seq+1 {
			lapsed = append(lapsed, n)
			delete(b.want, n)
			b.status.LeaseExpiries++
		}
	}
	b.mu.Unlock()
	sort.Strings(lapsed)
	for _, n := range lapsed {
		o, _ := b.prof.Output(n)
		b.log.Warn("output lease lapsed; switching off", "board", b.prof.Name, "output", n)
		if err := b.writeCoil(ctx, o.Coil, false); err != nil {
			b.log.Error("lease expiry: switch off failed", "output", n, "err", err)
		}
	}
}

// verify compares read-back coils with what is meant to be ON: an output
// that reads ON but is not wanted is switched off; one wanted ON that reads
// OFF is rewritten once, then faults the board.
func (b *Board) verify(ctx context.Context, s *Snapshot) {
	b.mu.Lock()
	want := make(map[string]bool, len(b.want))
	for n := range b.want {
		want[n] = true
	}
	b.mu.Unlock()
	for _, o := range b.prof.Outputs {
		got := s.Outputs[o.Name]
		if got == want[o.Name] {
			continue
		}
		b.mu.Lock()
		b.status.ReadbackFaults++
		b.mu.Unlock()
		b.log.Warn("output read back differs; rewriting", "board", b.prof.Name, "output", o.Name, "want", want[o.Name], "got", got)
		if err := b.writeCoil(ctx, o.Coil, want[o.Name]); err != nil {
			s.OK, s.Err = false, vend.Errorf(ErrReadback, "%s: %v", o.Name, err)
			return
		}
	}
}

// account updates failure counters and enters or leaves fault.
func (b *Board) account(ctx context.Context, s *Snapshot) {
	b.mu.Lock()
	b.status.Polls++
	enter := false
	if s.OK {
		b.status.ConsecutiveFailures = 0
		if b.status.Fault {
			b.goodRun++
			if b.goodRun >= b.opts.RecoverPolls {
				b.status.Fault, b.status.FaultReason, b.goodRun = false, "", 0
				b.log.Info("board recovered", "board", b.prof.Name)
			}
		}
	} else {
		b.status.FailedPolls++
		b.status.ConsecutiveFailures++
		b.goodRun = 0
		if !b.status.Fault && b.status.ConsecutiveFailures >= b.opts.MaxFailures {
			b.status.Fault = true
			b.status.FaultReason = fmt.Sprintf("%d consecutive failed polls: %v", b.status.ConsecutiveFailures, s.Err)
			b.want = map[string]lease{}
			enter = true
		}
	}
	s.Fault = b.status.Fault
	b.status.OK = s.OK && !b.status.Fault
	b.mu.Unlock()
	if enter {
		b.log.Error("board fault: all outputs off", "board", b.prof.Name, "err", s.Err)
		_ = b.allOff(ctx)
	}
}

func (b *Board) publish(s Snapshot) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s.Seq = b.snap.Seq + 1
	if !s.OK {
		// Keep the last good readings so meters never go backwards; flag the poll.
		s.Outputs, s.Inputs, s.Counters = b.snap.Outputs, b.snap.Inputs, b.snap.Counters
	}
	b.snap = s
	if b.tick != nil {
		close(b.tick)
		b.tick = make(chan struct{})
	}
}

// poll reads coils, inputs and counters.
func (b *Board) poll(ctx context.Context) Snapshot {
	s := Snapshot{Outputs: map[string]bool{}, Inputs: map[string]bool{}, Counters: map[string]uint32{}}
	fail := func(err error) Snapshot {
		return Snapshot{At: b.opts.Now(), Err: err}
	}
	slave := b.prof.SlaveID
	coils, err := b.bus.ReadCoils(ctx, slave, b.coilLo, b.coilN)
	if err != nil {
		return fail(err)
	}
	for _, o := range b.prof.Outputs {
		s.Outputs[o.Name] = coils[o.Coil-b.coilLo]
	}
	if b.inN > 0 {
		ins, err := b.bus.ReadDiscreteInputs(ctx, slave, b.inLo, b.inN)
		if err != nil {
			return fail(err)
		}
		for _, in := range b.prof.Inputs {
			s.Inputs[in.Name] = ins[in.Input-b.inLo] != in.ActiveLow
		}
	}
	for _, table := range []string{"input", "holding"} {
		var addrs []uint16
		for _, c := range b.prof.Counters {
			if c.Table == table {
				addrs = append(addrs, c.Register, c.Register+uint16(c.Width/16)-1)
			}
		}
		if len(addrs) == 0 {
			continue
		}
		lo, n := span(addrs)
		read := b.bus.ReadInputRegisters
		if table == "holding" {
			read = b.bus.ReadHoldingRegisters
		}
		regs, err := read(ctx, slave, lo, n)
		if err != nil {
			return fail(err)
		}
		for _, c := range b.prof.Counters {
			if c.Table == table {
				i := c.Register - lo
				s.Counters[c.Name] = c.Value(regs[i : i+uint16(c.Width/16)])
			}
		}
	}
	s.OK, s.At = true, b.opts.Now()
	return s
}

func (b *Board) writeCoil(ctx context.Context, coil uint16, on bool) error {
	if err := b.bus.WriteSingleCoil(ctx, b.prof.SlaveID, coil, on); err != nil {
		return err
	}
	got, err := b.bus.ReadCoils(ctx, b.prof.SlaveID, coil, 1)
	if err != nil {
		return err
	}
	if got[0] != on {
		return vend.Errorf(ErrReadback, "coil %d reads %v after writing %v", coil, got[0], on)
	}
	return nil
}

func (b *Board) offBestEffort(coil uint16) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = b.bus.WriteSingleCoil(ctx, b.prof.SlaveID, coil, false)
}

// allOff writes every profile output OFF with one multiple-coils write when
// the coils are contiguous enough, else one by one, and reads them back.
func (b *Board) allOff(ctx context.Context) error {
	slave := b.prof.SlaveID
	if err := b.bus.WriteMultipleCoils(ctx, slave, b.coilLo, make([]bool, b.coilN)); err != nil {
		// Fall back to single writes: a board may refuse coils that are not outputs.
		var firstErr error
		for _, o := range b.prof.Outputs {
			if err := b.bus.WriteSingleCoil(ctx, slave, o.Coil, false); err != nil && firstErr == nil {
				firstErr = err
			}
		}
		if firstErr != nil {
			return firstErr
		}
	}
	coils, err := b.bus.ReadCoils(ctx, slave, b.coilLo, b.coilN)
	if err != nil {
		return err
	}
	for _, o := range b.prof.Outputs {
		if coils[o.Coil-b.coilLo] {
			return vend.Errorf(ErrReadback, "output %s reads ON after all-off", o.Name)
		}
	}
	return nil
}

func (b *Board) armWatchdog(ctx context.Context) error {
	w := b.prof.Watchdog
	if w == nil {
		return nil
	}
	n := b.opts.WatchdogTimeout / (time.Duration(w.UnitMS) * time.Millisecond)
	n = min(max(n, 1), 0xFFFF)
	return b.bus.WriteSingleRegister(ctx, b.prof.SlaveID, w.Register, uint16(n))
}

func coilAddrs(p *profile.Profile) []uint16 {
	var a []uint16
	for _, o := range p.Outputs {
		a = append(a, o.Coil)
	}
	return a
}

func inputAddrs(p *profile.Profile) []uint16 {
	var a []uint16
	for _, in := range p.Inputs {
		a = append(a, in.Input)
	}
	return a
}

// span returns the lowest address and the count that covers all of addrs.
func span(addrs []uint16) (lo, n uint16) {
	if len(addrs) == 0 {
		return 0, 0
	}
	lo, hi := addrs[0], addrs[0]
	for _, a := range addrs {
		lo, hi = min(lo, a), max(hi, a)
	}
	return lo, hi - lo + 1
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
