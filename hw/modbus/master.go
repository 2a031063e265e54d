package modbus

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"time"
)

// MaxRetries bounds Opts.Retries.
const MaxRetries = 5

// Opts configures a Master. Start from DefaultOpts and change what differs.
type Opts struct {
	// Baud is the line rate in bits/s. It sets the inter-frame silence
	// (3.5 character times, 1.75 ms above 19200 baud) and how long a frame
	// takes on the wire. 0 means 9600. Open sets it from the line setting.
	Baud int
	// ResponseTimeout is how long to wait for a reply once the request is on
	// the wire, on top of the reply's own transmission time. 0 means 200 ms.
	ResponseTimeout time.Duration
	// Retries is how many more times a request is sent after a transient
	// failure (timeout, CRC, length, slave-ID or function mismatch), 0 to
	// MaxRetries. Exceptions, echo mismatches, invalid requests, a closed
	// port and a cancelled context are never retried.
	Retries int
	// BroadcastDelay is the turnaround after a broadcast write (slave 0),
	// which no slave answers, before the next request. 0 means 100 ms.
	BroadcastDelay time.Duration
	// Logger receives a debug record for every failed attempt. nil discards.
	Logger *slog.Logger
}

// DefaultOpts is 9600 baud, a 200 ms response timeout, 2 retries and a
// 100 ms broadcast turnaround.
var DefaultOpts = Opts{
	Baud:            9600,
	ResponseTimeout: 200 * time.Millisecond,
	Retries:         2,
	BroadcastDelay:  100 * time.Millisecond,
}

// Stats are a Master's counters since New, for telemetry.
type Stats struct {
	Exchanges uint64 // requests that reached the wire (each counted once, however many attempts)
	Retries   uint64 // attempts after the first
	Failed    uint64 // requests that returned an error after their last attempt (invalid ones excluded)
	Invalid   uint64 // requests refused with ErrRequest before reaching the wire

	// Failed attempts by cause; a request retried twice on timeouts counts 2 or 3 here.
	Timeouts       uint64 // ErrTimeout
	CRCErrors      uint64 // ErrCRC
	LengthErrors   uint64 // ErrLength
	SlaveIDErrors  uint64 // ErrSlaveID
	FunctionErrors uint64 // ErrFunction
	EchoErrors     uint64 // ErrEcho
	Exceptions     uint64 // *Exception
	PortErrors     uint64 // ErrClosed and other port read/write errors
	Cancelled      uint64 // the caller's context ended first
}

type counters struct {
	exchanges, retries, failed, invalid                                  atomic.Uint64
	timeouts, crc, length, slaveID, function, echo, exc, port, cancelled atomic.Uint64
}

// Master is a Modbus RTU client (master) on one serial line. It implements
// Bus; one request is on the line at a time, so it is safe for concurrent
// use. Create it with New or Open; Close closes the port.
type Master struct {
	port Port
	o    Opts
	log  *slog.Logger
	gap  time.Duration // inter-frame silence

	sem     chan struct{} // held for one exchange
	lastEnd time.Time     // end of the previous exchange; guarded by sem
	tx      [MaxADU]byte
	rx      [2 * MaxADU]byte // receive window; guarded by sem
	closed  atomic.Bool
	c       counters
}

var _ Bus = (*Master)(nil)

// New returns a Master on port. opts may be nil for DefaultOpts; zero
// fields take their defaults (see Opts). The Master owns port from then on.
func New(port Port, opts *Opts) *Master {
	o := DefaultOpts
	if opts != nil {
		o = *opts
	}
	if o.Baud <= 0 {
		o.Baud = DefaultOpts.Baud
	}
	if o.ResponseTimeout <= 0 {
		o.ResponseTimeout = DefaultOpts.ResponseTimeout
	}
	o.Retries = min(max(o.Retries, 0), MaxRetries)
	if o.BroadcastDelay <= 0 {
		o.BroadcastDelay = DefaultOpts.BroadcastDelay
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Master{port: port, o: o, log: log, gap: FrameGap(o.Baud), sem: make(chan struct{}, 1)}
}

// CharTime is how long one RTU character (start, 8 data, parity or second
// stop, stop: 11 bits) takes on the wire at baud bits/s.
func CharTime(baud int) time.Duration {
	return time.Duration(11 * int64(time.Second) / int64(max(baud, 1)))
}

// FrameGap is the silence that separates RTU frames at baud bits/s: 3.5
// character times, or a fixed 1.75 ms above 19200 baud (Modbus over Serial
// Line v1.02 §2.5.1.1).
func FrameGap(baud int) time.Duration {
	if baud > 19200 {
		return 1750 * time.Microsecond
	}
	return CharTime(baud) * 7 / 2
}

// Stats returns the counters. It is safe to call at any time.
func (m *Master) Stats() Stats {
	c := &m.c
	return Stats{
		Exchanges: c.exchanges.Load(), Retries: c.retries.Load(), Failed: c.failed.Load(), Invalid: c.invalid.Load(),
		Timeouts: c.timeouts.Load(), CRCErrors: c.crc.Load(), LengthErrors: c.length.Load(),
		SlaveIDErrors: c.slaveID.Load(), FunctionErrors: c.function.Load(), EchoErrors: c.echo.Load(),
		Exceptions: c.exc.Load(), PortErrors: c.port.Load(), Cancelled: c.cancelled.Load(),
	}
}

// Close closes the port. A request in flight fails with ErrClosed, and so
// does every later one.
func (m *Master) Close() error {
	if m.closed.Swap(true) {
		return nil
	}
	return m.port.Close()
}

// ReadCoils reads qty coils (FC 01) from addr on slave; see Master.Do for
// the errors.
func (m *Master) ReadCoils(ctx context.Context, slave byte, addr, qty uint16) ([]bool, error) {
	return m.readBits(ctx, &Request{Slave: slave, Function: FuncReadCoils, Addr: addr, Qty: qty})
}

// ReadDiscreteInputs reads qty discrete inputs (FC 02) from addr on slave;
// see Master.Do for the errors.
func (m *Master) ReadDiscreteInputs(ctx context.Context, slave byte, addr, qty uint16) ([]bool, error) {
	return m.readBits(ctx, &Request{Slave: slave, Function: FuncReadDiscreteInputs, Addr: addr, Qty: qty})
}

// ReadHoldingRegisters reads qty holding registers (FC 03) from addr on
// slave; see Master.Do for the errors.
func (m *Master) ReadHoldingRegisters(ctx context.Context, slave byte, addr, qty uint16) ([]uint16, error) {
	return m.readRegs(ctx, &Request{Slave: slave, Function: FuncReadHoldingRegisters, Addr: addr, Qty: qty})
}

// ReadInputRegisters reads qty input registers (FC 04) from addr on slave;
// see Master.Do for the errors.
func (m *Master) ReadInputRegisters(ctx context.Context, slave byte, addr, qty uint16) ([]uint16, error) {
	return m.readRegs(ctx, &Request{Slave: slave, Function: FuncReadInputRegisters, Addr: addr, Qty: qty})
}

// WriteSingleCoil switches one coil (FC 05) and checks the echo; see
// Master.Do for the errors.
func (m *Master) WriteSingleCoil(ctx context.Context, slave byte, addr uint16, on bool) error {
	req := Request{Slave: slave, Function: FuncWriteSingleCoil, Addr: addr, Qty: 1}
	if on {
		req.Value = 0xFF00
	}
	return m.Do(ctx, &req, nil)
}

// WriteSingleRegister writes one holding register (FC 06) and checks the
// echo; see Master.Do for the errors.
func (m *Master) WriteSingleRegister(ctx context.Context, slave byte, addr, value uint16) error {
	return m.Do(ctx, &Request{Slave: slave, Function: FuncWriteSingleRegister, Addr: addr, Qty: 1, Value: value}, nil)
}

// WriteMultipleCoils writes len(values) coils from addr (FC 0F) and checks
// the echoed address and quantity; see Master.Do for the errors.
func (m *Master) WriteMultipleCoils(ctx context.Context, slave byte, addr uint16, values []bool) error {
	if len(values) > MaxWriteBits {
		return m.invalid(&Request{Slave: slave, Function: FuncWriteMultipleCoils, Addr: addr, Qty: MaxWriteBits + 1})
	}
	return m.Do(ctx, &Request{Slave: slave, Function: FuncWriteMultipleCoils, Addr: addr,
		Qty: uint16(len(values)), Data: PackBits(values)}, nil)
}

// WriteMultipleRegisters writes len(values) holding registers from addr
// (FC 10) and checks the echoed address and quantity; see Master.Do for the
// errors.
func (m *Master) WriteMultipleRegisters(ctx context.Context, slave byte, addr uint16, values []uint16) error {
	if len(values) > MaxWriteRegisters {
		return m.invalid(&Request{Slave: slave, Function: FuncWriteMultipleRegisters, Addr: addr, Qty: MaxWriteRegisters + 1})
	}
	return m.Do(ctx, &Request{Slave: slave, Function: FuncWriteMultipleRegisters, Addr: addr,
		Qty: uint16(len(values)), Data: PackRegisters(values)}, nil)
}

func (m *Master) invalid(req *Request) error {
	m.c.invalid.Add(1)
	return req.Validate()
}

func (m *Master) readBits(ctx context.Context, req *Request) ([]bool, error) {
	var out []bool
	err := m.Do(ctx, req, func(r Response) { out = r.Bits(make([]bool, 0, r.Qty)) })
	return out, err
}

func (m *Master) readRegs(ctx context.Context, req *Request) ([]uint16, error) {
	var out []uint16
	err := m.Do(ctx, req, func(r Response) { out = r.Registers(make([]uint16, 0, r.Qty)) })
	return out, err
}

// Do sends req and waits for its reply, retrying transient failures up to
// Opts.Retries times. On success it calls use, if not nil, with the checked
// reply before the next request may reuse the receive buffer that
// Response.Data points into. A broadcast (slave 0) write gets no reply: Do
// returns after the request and Opts.BroadcastDelay.
//
// Every error is an *OpError naming the request and wrapping one of:
// ErrRequest (invalid request, nothing sent), ErrTimeout, ErrCRC,
// ErrLength, ErrSlaveID, ErrFunction, ErrEcho, an *Exception, ErrClosed
// (the port is closed or gone), another port error, or ctx.Err().
func (m *Master) Do(ctx context.Context, req *Request, use func(Response)) error {
	if err := req.Validate(); err != nil {
		m.c.invalid.Add(1)
		return err
	}
	if m.closed.Load() {
		return opErr(req, ErrClosed, "")
	}
	select {
	case m.sem <- struct{}{}:
	case <-ctx.Done():
		m.c.cancelled.Add(1)
		return &OpError{Op: req.String(), Err: ctx.Err()}
	}
	defer func() { <-m.sem }()
	m.c.exchanges.Add(1)
	for attempt := 1; ; attempt++ {
		resp, err := m.attempt(ctx, req)
		if err == nil {
			if use != nil {
				use(resp)
			}
			return nil
		}
		m.count(err)
		// No drain here: the next attempt (or the next request) first
		// waits for the line to be quiet, discarding the rest of a late or
		// broken reply.
		retry := transient(err)
		if e, ok := err.(*OpError); ok {
			e.Attempts = attempt
		}
		m.log.Debug("modbus: attempt failed", "op", req.String(), "attempt", attempt, "err", err)
		if !retry || attempt > m.o.Retries || ctx.Err() != nil {
			m.c.failed.Add(1)
			return err
		}
		m.c.retries.Add(1)
	}
}

// transient reports whether another attempt may succeed.
func transient(err error) bool {
	for _, s := range []error{ErrTimeout, ErrCRC, ErrLength, ErrSlaveID, ErrFunction} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

func (m *Master) count(err error) {
	c := &m.c
	var ex *Exception
	switch {
	case errors.Is(err, ErrTimeout):
		c.timeouts.Add(1)
	case errors.Is(err, ErrCRC):
		c.crc.Add(1)
	case errors.Is(err, ErrLength):
		c.length.Add(1)
	case errors.Is(err, ErrSlaveID):
		c.slaveID.Add(1)
	case errors.Is(err, ErrFunction):
		c.function.Add(1)
	case errors.Is(err, ErrEcho):
		c.echo.Add(1)
	case errors.As(err, &ex):
		c.exc.Add(1)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		c.cancelled.Add(1)
	default:
		c.port.Add(1)
	}
}

// wireTime is how long n characters take on the line.
func (m *Master) wireTime(n int) time.Duration { return time.Duration(n) * CharTime(m.o.Baud) }

// attempt puts req on the line once and reads its reply.
func (m *Master) attempt(ctx context.Context, req *Request) (Response, error) {
	if err := m.silence(ctx); err != nil {
		if ctx.Err() != nil {
			return Response{}, &OpError{Op: req.String(), Err: err}
		}
		return Response{}, m.portErr(req, err)
	}
	if err := m.flush(); err != nil {
		return Response{}, m.portErr(req, err)
	}
	tx, _ := req.AppendADU(m.tx[:0]) // validated by Do
	if err := writeAll(m.port, tx); err != nil {
		return Response{}, m.portErr(req, err)
	}
	// The write returns once the bytes are queued; they reach the slave
	// one wire time later.
	onWire := time.Now().Add(m.wireTime(len(tx)))
	if req.Slave == BroadcastSlave {
		err := sleep(ctx, time.Until(onWire.Add(m.o.BroadcastDelay)))
		m.lastEnd = time.Now()
		if err != nil {
			return Response{}, &OpError{Op: req.String(), Err: err}
		}
		return Response{}, nil
	}
	deadline := onWire.Add(m.o.ResponseTimeout + m.wireTime(req.ResponseLen()))
	return m.receive(ctx, req, tx, deadline)
}

// maxWait bounds one Read so that a cancelled context is noticed quickly.
const maxWait = 20 * time.Millisecond

// receive reads until the reply to req is in the receive window or the
// deadline passes. Stray bytes are skipped: the window is scanned for a
// frame that starts with the slave address and function code, has the
// length they announce and a good CRC (see scan). Frames of another
// conversation (another slave or function, a write echo that does not match)
// do not end the wait, since the reply may still follow them; they name the
// error if nothing better arrives. A frame that claims to be the reply but
// is broken (bad CRC, wrong length) ends it once the line has been quiet
// for the inter-frame gap, so that the retry comes early.
func (m *Master) receive(ctx context.Context, req *Request, tx []byte, deadline time.Time) (Response, error) {
	buf := m.rx[:0]
	var noted error // a frame of another conversation seen in buf
	for {
		if err := ctx.Err(); err != nil {
			m.lastEnd = time.Now()
			return Response{}, &OpError{Op: req.String(), Err: err}
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			m.lastEnd = time.Now()
			if err := diagnose(req, tx, buf, true); err != nil {
				return Response{}, err
			}
			if noted != nil {
				return Response{}, noted
			}
			if len(buf) == 0 {
				return Response{}, opErr(req, ErrTimeout, "nothing within %v", m.o.ResponseTimeout)
			}
			return Response{}, opErr(req, ErrTimeout, "no complete reply within %v, got % x", m.o.ResponseTimeout, clip(buf))
		}
		wait = min(wait, maxWait)
		quietCheck := len(buf) > 0 && wait >= m.gap
		if quietCheck {
			wait = m.gap
		}
		if len(buf) == cap(buf) { // keep the newest MaxADU bytes: a reply is never longer
			n := copy(buf, buf[len(buf)-MaxADU:])
			buf = buf[:n]
		}
		if err := m.port.SetReadTimeout(wait); err != nil {
			return Response{}, m.portErr(req, err)
		}
		n, err := m.port.Read(buf[len(buf):cap(buf)])
		if err != nil {
			m.lastEnd = time.Now()
			return Response{}, m.portErr(req, err)
		}
		if n == 0 {
			if quietCheck {
				if err := diagnose(req, tx, buf, false); err != nil {
					m.lastEnd = time.Now()
					return Response{}, err
				}
			}
			continue
		}
		buf = buf[:len(buf)+n]
		resp, err, ok := scan(req, buf, &noted)
		if ok {
			m.lastEnd = time.Now()
			return resp, err
		}
	}
}

// scan looks for the reply to req anywhere in buf: a frame that starts with
// the slave address and the function code (or its exception form), has the
// length they announce and a good CRC. It reports ok = false while none is
// complete; otherwise ParseResponse's verdict on the first one. A write
// reply that does not echo the request is passed over (it may be a late
// answer to an earlier write) and its error stored in *noted.
func scan(req *Request, buf []byte, noted *error) (Response, error, bool) {
	for off := 0; off+2 <= len(buf); off++ {
		n := req.replyLen(buf[off:])
		if n <= 0 || len(buf)-off < n {
			continue
		}
		if f := buf[off : off+n]; CheckCRC(f) {
			resp, err := ParseResponse(*req, f)
			if errors.Is(err, ErrEcho) {
				*noted = err
				continue
			}
			return resp, err, true
		}
	}
	return Response{}, nil, false
}

// diagnose explains why buf holds no reply to req. Before the deadline
// (final false) it reports only a frame that claims to be the reply but is
// broken: one that starts like the reply and is complete by its announced
// length but fails the CRC, or one that ends buf with a good CRC and the
// right slave and function but the wrong length. At the deadline it also
// reports a complete frame of another slave or function at the end of buf.
// It returns nil when buf may be a reply still arriving, or noise.
//
// A frame equal to the request itself (tx) is skipped: some RS-485 adapters
// echo what the master sends.
func diagnose(req *Request, tx, buf []byte, final bool) error {
	for off := 0; off+5 <= len(buf); off++ {
		if !CheckCRC(buf[off:]) || bytes.Equal(buf[off:], tx) {
			continue
		}
		_, err := ParseResponse(*req, buf[off:])
		if err != nil && (final || errors.Is(err, ErrLength)) {
			return err
		}
	}
	for off := 0; off+2 <= len(buf); off++ {
		if n := req.replyLen(buf[off:]); n > 0 && len(buf)-off >= n && !CheckCRC(buf[off:off+n]) {
			return opErr(req, ErrCRC, "got % x", clip(buf[off:off+n]))
		}
	}
	return nil
}

// flush discards whatever arrived since the previous exchange: the port's
// input buffer, then anything a read finds without waiting.
func (m *Master) flush() error {
	if err := m.port.ResetInputBuffer(); err != nil {
		return err
	}
	if err := m.port.SetReadTimeout(0); err != nil {
		return err
	}
	for range 8 {
		n, err := m.port.Read(m.rx[:])
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		m.log.Debug("modbus: discarded stray bytes", "n", n)
	}
	return nil
}

// silence waits until the line has been quiet for the inter-frame gap
// since the end of the previous exchange, reading and discarding whatever
// arrives meanwhile (the rest of a late or broken reply); every byte
// restarts the gap. A line that never falls quiet is given up on after the
// response timeout. The wait is a read with a timeout, which the kernel
// times to the microsecond, where a sleep would overshoot sub-millisecond
// gaps.
func (m *Master) silence(ctx context.Context) error {
	until := m.lastEnd.Add(m.gap)
	limit := time.Now().Add(m.o.ResponseTimeout)
	for {
		d := time.Until(until)
		if d <= 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := m.port.SetReadTimeout(min(d, maxWait)); err != nil {
			return err
		}
		n, err := m.port.Read(m.rx[:])
		if err != nil {
			return err
		}
		if n > 0 {
			m.log.Debug("modbus: discarded bytes while waiting for silence", "n", n)
			if now := time.Now(); now.Before(limit) {
				until = now.Add(m.gap)
				m.lastEnd = now
			}
		}
	}
}

func (m *Master) portErr(req *Request, err error) error {
	if m.closed.Load() || isClosed(err) {
		return opErr(req, ErrClosed, "%v", err)
	}
	return &OpError{Op: req.String(), Err: err}
}

func writeAll(w io.Writer, b []byte) error {
	for len(b) > 0 {
		n, err := w.Write(b)
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrShortWrite
		}
		b = b[n:]
	}
	return nil
}

// sleep waits d or until ctx ends. Short waits (the inter-frame gap) do not
// arm a timer.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	if d <= maxWait {
		time.Sleep(d)
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
