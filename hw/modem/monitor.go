package modem

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"go.bug.st/serial"

	"beaconvend/app-protocol/vend"
)

// Port is the modem's AT command port. A go.bug.st/serial Port satisfies
// it. Read must honour SetReadTimeout and may return (0, nil) when the
// timeout expires; Close must be safe while a Read is blocked.
type Port interface {
	Read(p []byte) (int, error)
	Write(p []byte) (int, error)
	SetReadTimeout(t time.Duration) error
	Close() error
}

var _ Port = serial.Port(nil)

// Opts configures a Monitor. Zero durations and counts take the
// DefaultOpts values.
type Opts struct {
	Interval    time.Duration    // between polls; default 30 s
	Timeout     time.Duration    // for one command's final result code; default 2 s
	ReopenAfter int              // failed polls after which a monitor made by Open reopens its port; default 3, negative never
	Baud        int              // bit rate for Open; default 115200 (USB modems ignore it)
	NoSetup     bool             // send queries only: no ATE0, AT+CREG=2, AT+CEREG=2
	Logger      *slog.Logger     // default discards
	Now         func() time.Time // clock for Status times; default time.Now
}

// DefaultOpts are the options New and Open use for a nil *Opts and for zero fields.
var DefaultOpts = Opts{
	Interval:    30 * time.Second,
	Timeout:     2 * time.Second,
	ReopenAfter: 3,
	Baud:        115200,
}

// readPoll is how long one Read waits, so the reader notices a stop.
const readPoll = 100 * time.Millisecond

// Status is what the monitor last learnt, for telemetry. Values from a poll
// stay until the next successful one: when the modem stops answering, OK
// turns false, Failures counts up and Updated stops moving.
type Status struct {
	OK           bool      `json:"ok"`                      // the last poll was answered
	SignalDBm    DBm       `json:"signal_dbm,omitempty"`    // RSSI from +CSQ in dBm; 0 when unknown
	CSQ          int       `json:"csq"`                     // raw +CSQ <rssi>: 0-31, 99 unknown
	BER          int       `json:"ber"`                     // raw +CSQ <ber>: 0-7, 99 unknown
	Quality      CESQ      `json:"quality"`                 // raw +CESQ indices; UnknownCESQ when unsupported
	RSRP         DBm       `json:"rsrp_dbm,omitempty"`      // LTE RSRP from +CESQ; 0 when unknown
	RSRQ         TenthDB   `json:"rsrq_tenth_db,omitempty"` // LTE RSRQ from +CESQ in 0.1 dB; 0 when unknown
	Registration RegState  `json:"registration"`            // best of +CREG and +CEREG
	Tech         Tech      `json:"tech,omitempty"`          // access technology while registered
	Operator     string    `json:"operator,omitempty"`      // +COPS? name, in the modem's format (long, short or MCC+MNC)
	LAC          string    `json:"lac,omitempty"`           // location/tracking area code (hex) when the modem reports it
	CellID       string    `json:"cell_id,omitempty"`       // cell identity (hex) when the modem reports it
	IMEI         string    `json:"imei,omitempty"`          // from AT+CGSN, Luhn-checked
	ICCID        string    `json:"iccid,omitempty"`         // from AT+CCID/+ICCID/+QCCID
	Updated      time.Time `json:"updated"`                 // end of the last successful poll; zero before the first
	RegUpdated   time.Time `json:"reg_updated"`             // last registration change or report (poll or URC)
	Failures     int       `json:"failures"`                // consecutive failed polls
	Err          string    `json:"error,omitempty"`         // why the last poll failed; "" when OK
	Reopens      int       `json:"reopens"`                 // times the port was reopened
}

// Monitor polls a modem's AT port and keeps a [Status]. Make one with New
// or Open, call Run in a goroutine, read Status at any time, and Close it.
type Monitor struct {
	opts Opts
	log  *slog.Logger
	open func() (Port, error) // nil for New: the port cannot be reopened

	mu      sync.Mutex
	st      Status
	port    Port
	running bool
	closed  bool
	stop    chan struct{}
	wg      sync.WaitGroup

	// Owned by the Run goroutine.
	noCESQ, noCEREG bool
	iccidCmd        int
	needSetup       bool
	needIDs         bool
	regs            map[string]Registration
	copsTech        Tech
}

// New returns a Monitor that talks over port, which it owns from now on
// (Close closes it). opts may be nil. A monitor made by New cannot reopen
// the port: if the port fails, Status keeps counting failures until Close.
func New(port Port, opts *Opts) *Monitor {
	o := DefaultOpts
	if opts != nil {
		o = *opts
	}
	if o.Interval <= 0 {
		o.Interval = DefaultOpts.Interval
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultOpts.Timeout
	}
	if o.ReopenAfter == 0 {
		o.ReopenAfter = DefaultOpts.ReopenAfter
	}
	if o.Baud <= 0 {
		o.Baud = DefaultOpts.Baud
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Monitor{
		opts: o,
		log:  log,
		port: port,
		stop: make(chan struct{}),
		st: Status{
			CSQ: 99, BER: 99, Quality: UnknownCESQ, Registration: RegUnknown,
		},
		needSetup: true,
		needIDs:   true,
		regs:      map[string]Registration{},
	}
}

// Open opens the serial device at path (e.g. /dev/ttyUSB2, a pty's
// /dev/pts/N) and returns a Monitor on it. Unlike New, this monitor reopens
// the device after Opts.ReopenAfter failed polls in a row and whenever the
// port fails (a USB modem that re-enumerates). It returns ErrClosed
// wrapping the serial error when the first open fails.
func Open(path string, opts *Opts) (*Monitor, error) {
	m := New(nil, opts)
	m.open = func() (Port, error) {
		p, err := serial.Open(path, &serial.Mode{BaudRate: m.opts.Baud})
		if err != nil {
			return nil, fmt.Errorf("%w: open %s: %v", ErrClosed, path, err)
		}
		return p, nil
	}
	p, err := m.open()
	if err != nil {
		return nil, err
	}
	m.port = p
	return m, nil
}

// Status returns a copy of the current status.
func (m *Monitor) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st
}

// ErrRunning is returned by Run when the monitor is already running or closed.
var ErrRunning = vend.E(vend.Conflict, "modem.running", "modem: monitor already running or closed")

// Run polls the modem every Opts.Interval until ctx is done or Close is
// called, and applies unsolicited registration reports as they arrive. It
// returns ctx.Err() or nil after Close, and ErrRunning if the monitor is
// already running or closed. Modem failures never end Run; they show in
// Status.
func (m *Monitor) Run(ctx context.Context) error {
	m.mu.Lock()
	if m.running || m.closed {
		m.mu.Unlock()
		return ErrRunning
	}
	m.running = true
	m.wg.Add(1)
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		m.running = false
		m.mu.Unlock()
		m.wg.Done()
	}()

	var rd *reader
	defer func() {
		if rd != nil {
			rd.halt()
		}
	}()
	next := time.NewTimer(m.opts.Interval)
	defer next.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-m.stop:
			return nil
		default:
		}
		start := time.Now()
		if rd == nil {
			rd = m.connect()
		}
		var err error
		if rd == nil {
			err = vend.Errorf(ErrClosed, "no port")
		} else {
			err = m.poll(ctx, rd)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-m.stop:
			return nil
		default:
		}
		if err == nil {
			m.update(func(s *Status) {
				s.OK, s.Failures, s.Err, s.Updated = true, 0, "", m.opts.Now()
			})
		} else if f := m.fail(err); rd != nil && m.open != nil &&
			(rd.dead() || m.opts.ReopenAfter > 0 && f%m.opts.ReopenAfter == 0) {
			m.log.Warn("modem: reopening port", "failures", f, "err", err)
			rd.halt()
			m.closePort()
			rd = nil
		}
		next.Reset(max(0, m.opts.Interval-time.Since(start)))
		// Between polls, apply URCs as they come.
		for waiting := true; waiting; {
			var lines <-chan string
			if rd != nil {
				lines = rd.lines
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-m.stop:
				return nil
			case l := <-lines:
				m.unsolicited(l)
			case <-next.C:
				waiting = false
			}
		}
	}
}

// Close stops Run, waits for its goroutines and closes the port. It is
// safe to call more than once and concurrently with Run.
func (m *Monitor) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	close(m.stop)
	p := m.port
	m.port = nil
	m.mu.Unlock()
	var err error
	if p != nil {
		err = p.Close() // unblocks a Read in progress
	}
	m.wg.Wait()
	return err
}

// connect (re)opens the port when needed and starts its reader.
func (m *Monitor) connect() *reader {
	m.mu.Lock()
	p := m.port
	m.mu.Unlock()
	if p == nil {
		if m.open == nil {
			return nil
		}
		np, err := m.open()
		if err != nil {
			m.log.Warn("modem: reopen failed", "err", err)
			return nil
		}
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			np.Close()
			return nil
		}
		m.port = np
		m.st.Reopens++
		m.mu.Unlock()
		p = np
		m.needSetup, m.needIDs = true, true
	}
	if err := p.SetReadTimeout(readPoll); err != nil {
		m.log.Warn("modem: set read timeout", "err", err)
	}
	return m.startReader(p)
}

func (m *Monitor) closePort() {
	m.mu.Lock()
	p := m.port
	m.port = nil
	m.mu.Unlock()
	if p != nil {
		p.Close()
	}
}

// reader owns the goroutine that reads lines off one port.
type reader struct {
	port  Port
	lines chan string
	stop  chan struct{}
	done  chan struct{}
	err   error // set before done is closed
	once  sync.Once
}

func (m *Monitor) startReader(p Port) *reader {
	r := &reader{port: p, lines: make(chan string, 128), stop: make(chan struct{}), done: make(chan struct{})}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer close(r.done)
		var sp Splitter
		buf := make([]byte, 256)
		for {
			select {
			case <-r.stop:
				return
			case <-m.stop:
				return
			default:
			}
			n, err := p.Read(buf)
			if n > 0 {
				sp.Feed(buf[:n], func(l string) {
					select {
					case r.lines <- l:
					case <-r.stop:
					case <-m.stop:
					}
				})
			}
			if err != nil {
				r.err = err
				return
			}
		}
	}()
	return r
}

// halt stops the reader and waits for it.
func (r *reader) halt() {
	r.once.Do(func() { close(r.stop) })
	<-r.done
}

func (r *reader) dead() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// exec sends one command and waits for its final result code, applying
// URCs that arrive meanwhile.
func (m *Monitor) exec(ctx context.Context, rd *reader, cmd string) (*Response, error) {
	if len(cmd) > MaxCommandLen || strings.ContainsAny(cmd, "\r\n") || cmd == "" {
		return nil, vend.Errorf(ErrCommand, "%q", clip(cmd))
	}
	// Lines left from before (URCs, a late reply to a timed-out command).
	for drained := false; !drained; {
		select {
		case l := <-rd.lines:
			m.unsolicited(l)
		default:
			drained = true
		}
	}
	if rd.dead() {
		return nil, m.closedErr(rd)
	}
	if _, err := rd.port.Write([]byte(cmd + "\r")); err != nil {
		return nil, fmt.Errorf("%w: write %s: %v", ErrClosed, cmd, err)
	}
	col := NewCollector(cmd)
	t := time.NewTimer(m.opts.Timeout)
	defer t.Stop()
	finish := func() *Response {
		r := col.Response()
		for _, u := range r.URCs {
			m.unsolicited(u)
		}
		return r
	}
	for {
		select {
		case l := <-rd.lines:
			if col.Add(l) {
				r := finish()
				if col.TooLarge() {
					return r, vend.Errorf(ErrTooLarge, "%s: %d lines dropped", cmd, r.Dropped)
				}
				return r, r.Err()
			}
		case <-t.C:
			return finish(), vend.Errorf(ErrTimeout, "%s after %v", cmd, m.opts.Timeout)
		case <-rd.done:
			finish()
			return nil, m.closedErr(rd)
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-m.stop:
			return nil, vend.Errorf(ErrClosed, "monitor closed")
		}
	}
}

func (m *Monitor) closedErr(rd *reader) error {
	if rd.err != nil {
		return fmt.Errorf("%w: read: %v", ErrClosed, rd.err)
	}
	return vend.Errorf(ErrClosed, "reader stopped")
}

// iccidCmds are tried in order until one answers.
var iccidCmds = []string{"AT+CCID", "AT+ICCID", "AT+QCCID"}

// poll runs one round of queries. Only +CSQ is required for success; the
// other queries log their failures and keep the previous values.
func (m *Monitor) poll(ctx context.Context, rd *reader) error {
	if m.needSetup && !m.opts.NoSetup {
		if _, err := m.exec(ctx, rd, "ATE0"); err != nil {
			return err
		}
		for _, c := range []string{"AT+CREG=2", "AT+CEREG=2"} {
			if _, err := m.exec(ctx, rd, c); err != nil && !errors.Is(err, ErrError) {
				return err
			}
		}
	}
	m.needSetup = false

	r, err := m.exec(ctx, rd, "AT+CSQ")
	if err != nil {
		return err
	}
	line, err := r.Info()
	if err != nil {
		return err
	}
	csq, err := ParseCSQ(line)
	if err != nil {
		return err
	}
	m.update(func(s *Status) {
		s.CSQ, s.BER = csq.RSSI, csq.BER
		s.SignalDBm, _ = csq.DBm()
	})

	if !m.noCESQ {
		if q, err := m.cesq(ctx, rd); err == nil {
			m.update(func(s *Status) {
				s.Quality = q
				s.RSRP, _ = q.RSRPDBm()
				s.RSRQ, _ = q.RSRQDB()
			})
		} else if errors.Is(err, ErrError) {
			m.noCESQ = true
			m.log.Info("modem: AT+CESQ unsupported; not asking again", "err", err)
		} else {
			m.log.Warn("modem: AT+CESQ", "err", err)
		}
	}

	m.registration(ctx, rd, "AT+CREG?")
	if !m.noCEREG {
		if err := m.registration(ctx, rd, "AT+CEREG?"); errors.Is(err, ErrError) {
			m.noCEREG = true // 2G/3G-only modem
		}
	}

	if r, err := m.exec(ctx, rd, "AT+COPS?"); err != nil {
		m.log.Warn("modem: AT+COPS?", "err", err)
	} else if line, err := r.Info(); err != nil {
		m.log.Warn("modem: AT+COPS?", "err", err)
	} else if op, err := ParseCOPS(line); err != nil {
		m.log.Warn("modem: AT+COPS?", "err", err)
	} else {
		m.copsTech = op.Tech()
		m.update(func(s *Status) {
			s.Operator = strings.ToValidUTF8(op.Name, "")
			m.derive(s)
		})
	}

	if m.needIDs {
		m.identify(ctx, rd)
	}
	return nil
}

func (m *Monitor) cesq(ctx context.Context, rd *reader) (CESQ, error) {
	r, err := m.exec(ctx, rd, "AT+CESQ")
	if err != nil {
		return CESQ{}, err
	}
	line, err := r.Info()
	if err != nil {
		return CESQ{}, err
	}
	return ParseCESQ(line)
}

// registration queries AT+CREG? or AT+CEREG? and applies every
// registration line of the reply (a URC of the same kind may be among them).
func (m *Monitor) registration(ctx context.Context, rd *reader, cmd string) error {
	r, err := m.exec(ctx, rd, cmd)
	if err != nil {
		m.log.Warn("modem: "+cmd, "err", err)
		return err
	}
	if len(r.Lines) == 0 {
		err := vend.Errorf(ErrMissing, "%s", cmd)
		m.log.Warn("modem: "+cmd, "err", err)
		return err
	}
	for _, l := range r.Lines {
		m.unsolicited(l)
	}
	return nil
}

// identify reads IMEI and ICCID; it stops asking once both are known.
func (m *Monitor) identify(ctx context.Context, rd *reader) {
	st := m.Status()
	imei, iccid := st.IMEI, st.ICCID
	if r, err := m.exec(ctx, rd, "AT+CGSN"); err == nil {
		for _, l := range r.Lines {
			if v, err := ParseIMEI(l); err == nil {
				imei = v
				break
			} else {
				m.log.Warn("modem: AT+CGSN", "err", err)
			}
		}
	} else {
		m.log.Warn("modem: AT+CGSN", "err", err)
	}
	got := false
	for i := m.iccidCmd; i < len(iccidCmds) && !got; i++ {
		r, err := m.exec(ctx, rd, iccidCmds[i])
		if err != nil {
			m.log.Debug("modem: "+iccidCmds[i], "err", err)
			if errors.Is(err, ErrError) {
				continue // try the next vendor's command
			}
			break
		}
		for _, l := range r.Lines {
			if v, err := ParseICCID(l); err == nil {
				iccid, got, m.iccidCmd = v, true, i
				break
			}
		}
	}
	if !got && m.iccidCmd == 0 {
		m.log.Warn("modem: no ICCID (no SIM, or none of AT+CCID, AT+ICCID, AT+QCCID answered)")
	}
	m.update(func(s *Status) { s.IMEI, s.ICCID = imei, iccid })
	m.needIDs = imei == "" || iccid == ""
}

// unsolicited applies a URC (or a registration line of a query reply).
func (m *Monitor) unsolicited(line string) {
	if !strings.HasPrefix(line, "+C") || !strings.Contains(line, "REG:") {
		m.log.Debug("modem: unsolicited", "line", line)
		return
	}
	r, err := ParseRegistration(line)
	if err != nil {
		m.log.Debug("modem: bad registration line", "line", line, "err", err)
		return
	}
	if old, ok := m.regs[r.Cmd]; ok && r.LAC == "" && r.Act < 0 && old.State() == r.State() {
		// A short report of an unchanged state keeps the cell it already named.
		r.LAC, r.CI, r.Act = old.LAC, old.CI, old.Act
	}
	m.regs[r.Cmd] = r
	m.update(func(s *Status) {
		s.RegUpdated = m.opts.Now()
		m.derive(s)
	})
}

var regRank = map[RegState]int{RegHome: 5, RegRoaming: 5, RegSearching: 4, RegDenied: 3, RegNotRegistered: 2, RegUnknown: 1}

// derive computes the registration fields of s from the last +CREG/+CEREG
// reports and +COPS? technology.
func (m *Monitor) derive(s *Status) {
	best, found := Registration{}, false
	for _, c := range []string{"+CEREG", "+C5GREG", "+CGREG", "+CREG"} {
		r, ok := m.regs[c]
		if ok && (!found || regRank[r.State()] > regRank[best.State()]) {
			best, found = r, true
		}
	}
	if !found {
		s.Registration = RegUnknown
		return
	}
	s.Registration = best.State()
	s.LAC, s.CellID = best.LAC, best.CI
	s.Tech = ""
	if s.Registration.Registered() {
		s.Tech = m.copsTech
		if t := best.Tech(); t != "" {
			s.Tech = t
		}
		if s.Tech == "" && best.Cmd == "+CEREG" {
			s.Tech = TechLTE
		}
	}
}

func (m *Monitor) update(f func(*Status)) {
	m.mu.Lock()
	f(&m.st)
	m.mu.Unlock()
}

// fail records a failed poll and returns the failure count.
func (m *Monitor) fail(err error) int {
	m.needSetup, m.needIDs = true, true
	m.log.Warn("modem: poll failed", "err", err)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.st.OK = false
	m.st.Failures++
	m.st.Err = err.Error()
	return m.st.Failures
}
