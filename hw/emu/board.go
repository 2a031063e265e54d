package emu

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"beaconvend/hw/modbus"
	"beaconvend/hw/profile"
)

// Opts tunes a Board or Emulator. The zero value (or nil) gives the
// defaults described per field.
type Opts struct {
	Logger      *slog.Logger     // events (watchdog trips, drops, cycles); discarded when nil
	Now         func() time.Time // the models' clock; time.Now when nil
	CommTimeout time.Duration    // overrides the sim config's comm_timeout when > 0; < 0 disables it
	FrameGap    time.Duration    // line silence after which a partial frame is dropped; 50ms when 0
	Tick        time.Duration    // how often Run brings the models up to date (for timely event logs); 20ms when 0
	Seed        uint64           // seed for probabilistic faults; 1 when 0
	ControlPath string           // control socket path for Emulator; a fresh temporary directory's control.sock when ""

	// OnCoil, when not nil, is told of every change of a coil's state: a
	// Modbus write that switches it, a lapsed watchdog lease or
	// communication timeout, or expire_lease. at is the instant on the
	// Now clock (for a lapse, the moment it lapsed). It is called in the
	// order the changes happen, with the board's lock held, so it must
	// return quickly and must not call the Board (that deadlocks): record
	// the change and signal another goroutine. Writes that leave a coil as
	// it was are not reported.
	OnCoil func(addr uint16, on bool, at time.Time)
}

func (o *Opts) withDefaults() Opts {
	var r Opts
	if o != nil {
		r = *o
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if r.Now == nil {
		r.Now = time.Now
	}
	if r.FrameGap <= 0 {
		r.FrameGap = 50 * time.Millisecond
	}
	if r.Tick <= 0 {
		r.Tick = 20 * time.Millisecond
	}
	if r.Seed == 0 {
		r.Seed = 1
	}
	return r
}

type inputState struct {
	def    profile.Input
	active bool  // set by a model
	stuck  *bool // forced electrical level (fault)
}

// level is what the discrete input register reads: the electrical level.
func (in *inputState) level() bool {
	if in.stuck != nil {
		return *in.stuck
	}
	return in.active != in.def.ActiveLow
}

type counterState struct {
	def    profile.Counter
	raw    uint64 // pulses counted by the model
	offset uint32 // set by writes to a holding counter
}

func (c *counterState) value() uint32 {
	v := uint32(c.raw) + c.offset
	if c.def.Width == 16 {
		v &= 0xFFFF
	}
	return v
}

type regRef struct {
	counter  *counterState // nil for the watchdog register
	word     int
	watchdog bool
}

// Board is an emulated Modbus RTU I/O board: the state of its coils,
// inputs and registers per a profile, the machines wired to it, and the
// faults injected into its replies. It is safe for concurrent use. Serve
// answers Modbus on a port; Do applies control requests.
type Board struct {
	prof *profile.Profile
	o    Opts
	log  *slog.Logger

	mu       sync.Mutex
	last     time.Time
	coils    map[uint16]bool
	coilName map[uint16]string
	coilUser map[uint16]model
	inputs   map[uint16]*inputState
	inByName map[string]*inputState
	counters []*counterState
	holding  map[uint16]regRef
	inRegs   map[uint16]regRef
	models   []model

	wdValue    uint16
	wdArmed    bool
	wdDeadline time.Time
	wdTrips    int

	commTimeout  time.Duration
	commArmed    bool
	commDeadline time.Time
	commTrips    int
	forced       int

	stats  Stats
	faults FaultStatus
	rnd    *rand.Rand
	dlog   deliveryLog

	extraMu sync.RWMutex
	extra   map[string]func(Request) error
}

var builtinCmds = map[string]bool{
	CmdStatus: true, CmdCorruptCRC: true, CmdNoReply: true, CmdDelay: true, CmdStuckInput: true,
	CmdExpireLease: true, CmdJam: true, CmdFlowRate: true, CmdClearFaults: true, CmdDeliveries: true,
}

// HandleCommand adds control command name, answered by fn (called without
// the board lock; an error it returns goes back as OK=false). A program
// extends the control socket this way (hwsim adds modem_* commands). It
// panics when name is a built-in command.
func (b *Board) HandleCommand(name string, fn func(Request) error) {
	if builtinCmds[name] {
		panic("emu: HandleCommand: " + name + " is built in")
	}
	b.extraMu.Lock()
	defer b.extraMu.Unlock()
	if b.extra == nil {
		b.extra = map[string]func(Request) error{}
	}
	b.extra[name] = fn
}

// NewBoard returns a board that follows p with the machines of cfg (nil
// for none) wired to it, every output OFF. It returns an error wrapping
// ErrConfig when cfg names outputs, inputs or counters p does not have.
func NewBoard(p *profile.Profile, cfg *SimConfig, o *Opts) (*Board, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if cfg == nil {
		cfg = &SimConfig{}
	}
	machines, err := cfg.validate(p)
	if err != nil {
		return nil, err
	}
	opts := o.withDefaults()
	b := &Board{
		prof: p, o: opts, log: opts.Logger,
		last:     opts.Now(),
		coils:    map[uint16]bool{},
		coilName: map[uint16]string{},
		coilUser: map[uint16]model{},
		inputs:   map[uint16]*inputState{},
		inByName: map[string]*inputState{},
		holding:  map[uint16]regRef{},
		inRegs:   map[uint16]regRef{},
		rnd:      rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15)),
	}
	b.commTimeout = cfg.CommTimeout
	if opts.CommTimeout > 0 {
		b.commTimeout = opts.CommTimeout
	} else if opts.CommTimeout < 0 {
		b.commTimeout = 0
	}
	for _, out := range p.Outputs {
		b.coils[out.Coil] = false
		b.coilName[out.Coil] = out.Name
	}
	for _, in := range p.Inputs {
		s := &inputState{def: in}
		b.inputs[in.Input] = s
		b.inByName[in.Name] = s
	}
	byName := map[string]*counterState{}
	for _, c := range p.Counters {
		s := &counterState{def: c}
		b.counters = append(b.counters, s)
		byName[c.Name] = s
		regs := b.inRegs
		if c.Table == "holding" {
			regs = b.holding
		}
		for w := 0; w < c.Width/16; w++ {
			regs[c.Register+uint16(w)] = regRef{counter: s, word: w}
		}
	}
	if wd := p.Watchdog; wd != nil {
		b.holding[wd.Register] = regRef{watchdog: true}
	}
	for _, mc := range machines {
		var m model
		switch mc.Kind {
		case KindWater:
			out, _ := p.Output(mc.Valve)
			m = newWater(mc, out.Coil, byName[mc.Flow], b.last, b.log, &b.dlog)
			b.coilUser[out.Coil] = m
		case KindWasher:
			out, _ := p.Output(mc.Coin)
			m = &washer{cfg: mc, coinOut: out.Coil, run: b.inByName[mc.Running], log: b.log, dlog: &b.dlog}
			b.coilUser[out.Coil] = m
		case KindVending:
			v := &vending{cfg: mc, drop: b.inByName[mc.Drop], counter: byName[mc.DropCounter], log: b.log, dlog: &b.dlog}
			for _, sc := range mc.Slots {
				out, _ := p.Output(sc.Motor)
				v.slots = append(v.slots, &slot{name: sc.Name, motor: sc.Motor, addr: out.Coil, jammed: sc.Jammed})
				b.coilUser[out.Coil] = v
			}
			m = v
		}
		b.models = append(b.models, m)
	}
	return b, nil
}

// Profile returns the profile the board follows.
func (b *Board) Profile() *profile.Profile { return b.prof }

// update brings the board to now: lapsed leases switch outputs off at the
// moment they lapsed, then every model advances. Called with b.mu held.
func (b *Board) update(now time.Time) time.Time {
	if now.Before(b.last) {
		now = b.last
	}
	for {
		var t time.Time
		kind := 0 // 1 watchdog, 2 comm timeout
		if b.wdArmed {
			t, kind = b.wdDeadline, 1
		}
		if b.commArmed && (kind == 0 || b.commDeadline.Before(t)) {
			t, kind = b.commDeadline, 2
		}
		if kind == 0 || t.After(now) {
			break
		}
		b.advance(t)
		if kind == 1 {
			b.wdArmed = false
			b.wdTrips++
			b.log.Warn("emu: watchdog lease lapsed, all outputs OFF", "trips", b.wdTrips)
		} else {
			b.commArmed = false
			b.commTrips++
			b.log.Warn("emu: no request within comm timeout, all outputs OFF", "timeout", b.commTimeout, "trips", b.commTrips)
		}
		b.allOff(t)
	}
	b.advance(now)
	return now
}

func (b *Board) advance(t time.Time) {
	for _, m := range b.models {
		m.advance(t)
	}
	b.last = t
}

func (b *Board) allOff(t time.Time) {
	for addr, on := range b.coils {
		if on {
			b.setCoil(addr, false, t)
		}
	}
}

func (b *Board) setCoil(addr uint16, on bool, t time.Time) {
	if b.coils[addr] == on {
		return
	}
	b.coils[addr] = on
	if b.o.OnCoil != nil {
		b.o.OnCoil(addr, on, t)
	}
	if m := b.coilUser[addr]; m != nil {
		m.coil(addr, on, t)
		m.advance(t) // an edge can change inputs at once (a washer starting)
	}
}

// Tick brings the models up to the clock's now, so lapsed leases and
// finished cycles take effect (and are logged) without a request.
func (b *Board) Tick() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.update(b.o.Now())
}

// Run calls Tick every Opts.Tick until ctx is done, and returns nil.
func (b *Board) Run(ctx context.Context) error {
	t := time.NewTicker(b.o.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			b.Tick()
		}
	}
}

// Status returns the board's whole state, brought up to now.
func (b *Board) Status() Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.update(b.o.Now())
	s := Status{
		Board: b.prof.Name, SlaveID: b.prof.SlaveID,
		Coils: map[string]bool{}, Inputs: map[string]bool{}, Counters: map[string]uint32{},
		WatchdogTrips: b.wdTrips, CommTimeoutMS: b.commTimeout.Milliseconds(), CommTrips: b.commTrips,
		ForcedOffs: b.forced, Stats: b.stats, Faults: b.faults,
	}
	for addr, on := range b.coils {
		s.Coils[b.coilName[addr]] = on
	}
	for _, in := range b.inputs {
		s.Inputs[in.def.Name] = in.level()
	}
	for _, c := range b.counters {
		s.Counters[c.def.Name] = c.value()
	}
	if wd := b.prof.Watchdog; wd != nil {
		w := &WatchdogStatus{Register: wd.Register, UnitMS: wd.UnitMS, Value: b.wdValue, Armed: b.wdArmed}
		if b.wdArmed {
			w.RemainingMS = b.wdDeadline.Sub(now).Milliseconds()
		}
		s.Watchdog = w
	}
	if len(b.faults.Stuck) > 0 {
		s.Faults.Stuck = map[string]bool{}
		for k, v := range b.faults.Stuck {
			s.Faults.Stuck[k] = v
		}
	}
	s.Machines = []MachineStatus{}
	for _, m := range b.models {
		s.Machines = append(s.Machines, m.status(now))
	}
	return s
}

// ---- Modbus application layer ----

func exception(fc, code byte) []byte { return []byte{fc | 0x80, code} }

// handle executes one request PDU addressed to this board (or broadcast)
// and returns the response PDU. It holds the lock for the whole request,
// so a multi-coil write is atomic for the models.
func (b *Board) handle(pdu []byte, broadcast bool) []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.update(b.o.Now())
	if broadcast {
		b.stats.Broadcasts++
	} else {
		b.stats.Requests++
		if b.commTimeout > 0 {
			b.commArmed = true
			b.commDeadline = now.Add(b.commTimeout)
		}
	}
	resp := b.execute(pdu, now)
	if resp[0]&0x80 != 0 && !broadcast {
		b.stats.Exceptions++
	}
	return resp
}

func (b *Board) execute(pdu []byte, now time.Time) []byte {
	fc := pdu[0]
	u16 := func(i int) uint16 { return binary.BigEndian.Uint16(pdu[i:]) }
	switch fc {
	case modbus.FuncReadCoils, modbus.FuncReadDiscreteInputs:
		addr, qty := u16(1), u16(3)
		if qty < 1 || qty > modbus.MaxReadBits {
			return exception(fc, modbus.ExIllegalDataValue)
		}
		bits := make([]byte, (int(qty)+7)/8)
		for i := 0; i < int(qty); i++ {
			a := int(addr) + i
			var v, ok bool
			if fc == modbus.FuncReadCoils {
				v, ok = b.coils[uint16(a)]
			} else if in := b.inputs[uint16(a)]; in != nil {
				v, ok = in.level(), true
			}
			if !ok || a > 0xFFFF {
				return exception(fc, modbus.ExIllegalDataAddress)
			}
			if v {
				bits[i/8] |= 1 << (i % 8)
			}
		}
		return append([]byte{fc, byte(len(bits))}, bits...)
	case modbus.FuncReadHoldingRegisters, modbus.FuncReadInputRegisters:
		addr, qty := u16(1), u16(3)
		if qty < 1 || qty > modbus.MaxReadRegisters {
			return exception(fc, modbus.ExIllegalDataValue)
		}
		regs := b.inRegs
		if fc == modbus.FuncReadHoldingRegisters {
			regs = b.holding
		}
		out := []byte{fc, byte(2 * qty)}
		for i := 0; i < int(qty); i++ {
			a := int(addr) + i
			r, ok := regs[uint16(a)]
			if !ok || a > 0xFFFF {
				return exception(fc, modbus.ExIllegalDataAddress)
			}
			out = binary.BigEndian.AppendUint16(out, b.readReg(r))
		}
		return out
	case modbus.FuncWriteSingleCoil:
		addr, v := u16(1), u16(3)
		if v != 0xFF00 && v != 0x0000 {
			return exception(fc, modbus.ExIllegalDataValue)
		}
		if _, ok := b.coils[addr]; !ok {
			return exception(fc, modbus.ExIllegalDataAddress)
		}
		b.setCoil(addr, v == 0xFF00, now)
		return append([]byte(nil), pdu[:5]...)
	case modbus.FuncWriteSingleRegister:
		addr, v := u16(1), u16(3)
		r, ok := b.holding[addr]
		if !ok {
			return exception(fc, modbus.ExIllegalDataAddress)
		}
		b.writeReg(r, v, now)
		return append([]byte(nil), pdu[:5]...)
	case modbus.FuncWriteMultipleCoils:
		addr, qty, n := u16(1), u16(3), int(pdu[5])
		if qty < 1 || qty > modbus.MaxWriteBits || n != (int(qty)+7)/8 || len(pdu) != 6+n {
			return exception(fc, modbus.ExIllegalDataValue)
		}
		for i := 0; i < int(qty); i++ {
			if _, ok := b.coils[uint16(int(addr)+i)]; !ok || int(addr)+i > 0xFFFF {
				return exception(fc, modbus.ExIllegalDataAddress)
			}
		}
		for i := 0; i < int(qty); i++ {
			b.setCoil(addr+uint16(i), pdu[6+i/8]&(1<<(i%8)) != 0, now)
		}
		return append([]byte(nil), pdu[:5]...)
	case modbus.FuncWriteMultipleRegisters:
		addr, qty, n := u16(1), u16(3), int(pdu[5])
		if qty < 1 || qty > modbus.MaxWriteRegisters || n != 2*int(qty) || len(pdu) != 6+n {
			return exception(fc, modbus.ExIllegalDataValue)
		}
		refs := make([]regRef, qty)
		for i := range refs {
			r, ok := b.holding[uint16(int(addr)+i)]
			if !ok || int(addr)+i > 0xFFFF {
				return exception(fc, modbus.ExIllegalDataAddress)
			}
			refs[i] = r
		}
		for i, r := range refs {
			b.writeReg(r, binary.BigEndian.Uint16(pdu[6+2*i:]), now)
		}
		return append([]byte(nil), pdu[:5]...)
	}
	return exception(fc, modbus.ExIllegalFunction)
}

func (b *Board) readReg(r regRef) uint16 {
	if r.watchdog {
		return b.wdValue
	}
	return r.counter.def.Words(r.counter.value())[r.word]
}

func (b *Board) writeReg(r regRef, v uint16, now time.Time) {
	if r.watchdog {
		b.wdValue = v
		b.wdArmed = v > 0
		b.wdDeadline = now.Add(time.Duration(v) * time.Duration(b.prof.Watchdog.UnitMS) * time.Millisecond)
		return
	}
	c := r.counter
	words := c.def.Words(c.value())
	words[r.word] = v
	c.offset = c.def.Value(words) - uint32(c.raw)
}

// ---- faults and control ----

// replyFault decides, for one reply about to be sent, whether to withhold
// it, corrupt its CRC, and how long to wait first.
func (b *Board) replyFault() (drop, corrupt bool, delay time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f := &b.faults
	switch {
	case f.NoReplyNext > 0:
		f.NoReplyNext--
		drop = true
	case f.NoReplyProbability > 0 && b.rnd.Float64() < f.NoReplyProbability:
		drop = true
	}
	if drop {
		b.stats.RepliesDropped++
		return true, false, 0
	}
	switch {
	case f.CorruptNext > 0:
		f.CorruptNext--
		corrupt = true
	case f.CorruptProbability > 0 && b.rnd.Float64() < f.CorruptProbability:
		corrupt = true
	}
	if corrupt {
		b.stats.RepliesCorrupted++
	}
	delay = time.Duration(f.DelayMS) * time.Millisecond
	if delay > 0 {
		b.stats.RepliesDelayed++
	}
	return false, corrupt, delay
}

func (b *Board) count(f func(s *Stats)) {
	b.mu.Lock()
	f(&b.stats)
	b.mu.Unlock()
}

// Control commands (Request.Cmd).
const (
	CmdStatus      = "status"       // return the state
	CmdCorruptCRC  = "corrupt_crc"  // count: corrupt the next N replies' CRC; probability: each reply with this chance; both 0 clears
	CmdNoReply     = "no_reply"     // count / probability as corrupt_crc, for withholding replies
	CmdDelay       = "delay"        // delay_ms: wait before every reply; 0 clears
	CmdStuckInput  = "stuck_input"  // input, level: force an input's electrical level; without level, release it
	CmdExpireLease = "expire_lease" // switch every output OFF now, as a lapsed watchdog lease does
	CmdJam         = "jam"          // machine, slot, jammed (default true): a jammed slot's motor turns, nothing drops
	CmdFlowRate    = "flow_rate"    // machine, lpm: a water machine's flow rate from now on
	CmdClearFaults = "clear_faults" // clear corrupt_crc, no_reply, delay and stuck inputs (not jams or flow rates)
	CmdDeliveries  = "deliveries"   // since: the delivery log's entries after that sequence number (Response.Deliveries)
)

// Request is one control command, one JSON object per line on the
// control socket. Only the fields the command uses are read.
type Request struct {
	Cmd         string   `json:"cmd"`
	Count       int      `json:"count,omitempty"`
	Probability float64  `json:"probability,omitempty"`
	DelayMS     int64    `json:"delay_ms,omitempty"`
	Input       string   `json:"input,omitempty"` // input name (or its 0-based address)
	Level       *bool    `json:"level,omitempty"` // electrical level to force
	Machine     string   `json:"machine,omitempty"`
	Slot        string   `json:"slot,omitempty"`
	Jammed      *bool    `json:"jammed,omitempty"`
	LPM         *float64 `json:"lpm,omitempty"`
	Since       uint64   `json:"since,omitempty"` // deliveries: entries after this Seq

	// For commands a program adds with HandleCommand (hwsim's modem_* commands).
	Value   *int   `json:"value,omitempty"`
	On      *bool  `json:"on,omitempty"`
	Roaming bool   `json:"roaming,omitempty"`
	Text    string `json:"text,omitempty"`
}

// Response answers one Request: OK with the state after the command, or
// an error message.
type Response struct {
	OK     bool    `json:"ok"`
	Error  string  `json:"error,omitempty"`
	Status *Status `json:"status,omitempty"`

	// Deliveries answers the deliveries command (see Delivery); Dropped
	// is how many of the oldest entries the bounded log no longer holds.
	Deliveries []Delivery `json:"deliveries,omitempty"`
	Dropped    uint64     `json:"dropped,omitempty"`
}

// Do applies a control request and returns the response; errors (unknown
// command, unknown input/machine/slot, values out of range) come back as
// OK=false with a message beginning "emu: control request".
func (b *Board) Do(req Request) Response {
	b.extraMu.RLock()
	fn := b.extra[req.Cmd]
	b.extraMu.RUnlock()
	do := b.do
	if fn != nil {
		do = fn
	}
	if err := do(req); err != nil {
		return Response{Error: err.Error()}
	}
	s := b.Status()
	r := Response{OK: true, Status: &s}
	if req.Cmd == CmdDeliveries {
		r.Deliveries, r.Dropped = b.Deliveries(req.Since)
	}
	return r
}

func (b *Board) do(req Request) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.update(b.o.Now())
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrRequest, req.Cmd, fmt.Sprintf(format, args...))
	}
	prob := func() error {
		if req.Count < 0 || req.Probability < 0 || req.Probability > 1 {
			return bad("want count >= 0 or probability 0-1")
		}
		return nil
	}
	f := &b.faults
	switch req.Cmd {
	case CmdStatus, CmdDeliveries:
	case CmdCorruptCRC:
		if err := prob(); err != nil {
			return err
		}
		f.CorruptNext, f.CorruptProbability = req.Count, req.Probability
	case CmdNoReply:
		if err := prob(); err != nil {
			return err
		}
		f.NoReplyNext, f.NoReplyProbability = req.Count, req.Probability
	case CmdDelay:
		if req.DelayMS < 0 || req.DelayMS > 60000 {
			return bad("delay_ms %d: want 0-60000", req.DelayMS)
		}
		f.DelayMS = req.DelayMS
	case CmdStuckInput:
		in := b.inByName[req.Input]
		if in == nil {
			if a, err := strconv.ParseUint(req.Input, 10, 16); err == nil {
				in = b.inputs[uint16(a)]
			}
		}
		if in == nil {
			return bad("no input %q on %s", req.Input, b.prof.Name)
		}
		if req.Level == nil {
			in.stuck = nil
			delete(f.Stuck, in.def.Name)
		} else {
			l := *req.Level
			in.stuck = &l
			if f.Stuck == nil {
				f.Stuck = map[string]bool{}
			}
			f.Stuck[in.def.Name] = l
		}
	case CmdExpireLease:
		b.forced++
		b.wdArmed = false
		b.allOff(now)
		b.log.Warn("emu: lease expired by control, all outputs OFF")
	case CmdJam, CmdFlowRate:
		var m model
		for _, x := range b.models {
			if x.name() == req.Machine {
				m = x
			}
		}
		if m == nil {
			return bad("no machine %q", req.Machine)
		}
		if req.Cmd == CmdJam {
			v, ok := m.(*vending)
			if !ok {
				return bad("machine %q is not a vending machine", req.Machine)
			}
			s := v.slot(req.Slot)
			if s == nil {
				return bad("machine %q has no slot %q", req.Machine, req.Slot)
			}
			v.jam(s, req.Jammed == nil || *req.Jammed, now)
			break
		}
		w, ok := m.(*water)
		if !ok {
			return bad("machine %q is not a water machine", req.Machine)
		}
		if req.LPM == nil || *req.LPM < 0 || *req.LPM > maxFlowLitresPerMin {
			return bad("lpm: want 0-%g", float64(maxFlowLitresPerMin))
		}
		w.setRate(*req.LPM)
	case CmdClearFaults:
		for _, in := range b.inputs {
			in.stuck = nil
		}
		b.faults = FaultStatus{}
	default:
		return bad("unknown command (want status, deliveries, corrupt_crc, no_reply, delay, stuck_input, expire_lease, jam, flow_rate or clear_faults)")
	}
	return nil
}
