package sim

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"beaconvend/hw/pty"
)

// Opts configures a Modem. Empty fields take the DefaultOpts values.
type Opts struct {
	IMEI         string // 15 digits; default 490154203237518 (a valid Luhn example)
	ICCID        string // 19-20 digits; default 8944500102198304826
	Operator     string // long name; default "Beacon Mobile"
	MCCMNC       string // numeric operator; default "00101" (test network)
	Act          int    // access technology while registered (TS 27.007 §7.3); default 7 (LTE); -1 means GSM (0)
	CSQ          int    // initial +CSQ rssi 1-31 or 99; 0 takes the default 20 (-73 dBm); SetSignal(0) sets 0
	Unregistered bool   // start searching instead of registered at home
	Roaming      bool   // start registered roaming
	NoEcho       bool   // start with echo off (real modems start with ATE1)
	NoCESQ       bool   // answer AT+CESQ with ERROR, as 2G/3G-only modems do
	NoCEREG      bool   // answer AT+CEREG with ERROR
	CCIDCommand  string // the one ICCID command answered ("AT+CCID", "AT+ICCID", "AT+QCCID"); "" answers all three
	Logger       *slog.Logger
}

// DefaultOpts are the values New uses for empty fields.
var DefaultOpts = Opts{
	IMEI:     "490154203237518",
	ICCID:    "8944500102198304826",
	Operator: "Beacon Mobile",
	MCCMNC:   "00101",
	Act:      7,
	CSQ:      20,
}

// Modem is an emulated cellular modem answering AT commands on the master
// side of a pseudo-terminal. Its methods are safe for concurrent use.
type Modem struct {
	pair *pty.Pair
	log  *slog.Logger
	opts Opts

	wmu sync.Mutex // serialises writes to the master so lines never interleave

	mu       sync.Mutex
	echo     bool
	csq      int
	stat     int // +CREG/+CEREG <stat>: 1 home, 5 roaming, 2 searching
	cregN    int
	ceregN   int
	silent   bool
	slow     time.Duration
	counts   map[string]int
	received []string

	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// New allocates a pseudo-terminal and starts answering on it. Give
// [Modem.Path] to the monitor (modem.Open). opts may be nil.
func New(opts *Opts) (*Modem, error) {
	o := DefaultOpts
	if opts != nil {
		o = *opts
		d := DefaultOpts
		for _, f := range []struct{ dst, def *string }{
			{&o.IMEI, &d.IMEI}, {&o.ICCID, &d.ICCID}, {&o.Operator, &d.Operator}, {&o.MCCMNC, &d.MCCMNC},
		} {
			if *f.dst == "" {
				*f.dst = *f.def
			}
		}
		switch {
		case o.Act == 0:
			o.Act = d.Act
		case o.Act < 0:
			o.Act = 0
		}
		if o.CSQ == 0 {
			o.CSQ = d.CSQ
		}
	}
	if o.CSQ < 0 || o.CSQ > 31 && o.CSQ != 99 {
		return nil, fmt.Errorf("sim: csq %d: want 0-31 or 99", o.CSQ)
	}
	if o.Act < 0 || o.Act > 13 {
		return nil, fmt.Errorf("sim: act %d: want 0-13", o.Act)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p, err := pty.Open()
	if err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	m := &Modem{
		pair:   p,
		log:    log,
		opts:   o,
		echo:   !o.NoEcho,
		csq:    o.CSQ,
		stat:   1,
		counts: map[string]int{},
		stop:   make(chan struct{}),
	}
	switch {
	case o.Unregistered:
		m.stat = 2
	case o.Roaming:
		m.stat = 5
	}
	m.wg.Add(1)
	go m.serve()
	return m, nil
}

// Path is the slave device (/dev/pts/N) that a driver opens.
func (m *Modem) Path() string { return m.pair.SlavePath }

// Close stops the emulator and closes the pseudo-terminal; a driver that
// still has it open then reads an error, as when a USB modem is unplugged.
func (m *Modem) Close() error {
	var err error
	m.once.Do(func() {
		close(m.stop)
		err = m.pair.Close() // unblocks the Read in serve
		m.wg.Wait()
	})
	return err
}

// SetSignal sets the +CSQ rssi (0-31, or 99 for no signal). Values out of
// range are clamped to 0-31.
func (m *Modem) SetSignal(csq int) {
	if csq != 99 {
		csq = min(max(csq, 0), 31)
	}
	m.mu.Lock()
	m.csq = csq
	m.mu.Unlock()
}

// LoseSignal drops coverage: +CSQ 99 and registration searching (stat 2),
// announced with +CREG/+CEREG URCs when enabled.
func (m *Modem) LoseSignal() {
	m.mu.Lock()
	m.csq = 99
	m.mu.Unlock()
	m.setStat(2)
}

// Register registers on the network, roaming or at home, announced with
// URCs when enabled. A modem with no signal (+CSQ 99) gets DefaultOpts' CSQ back.
func (m *Modem) Register(roaming bool) {
	m.mu.Lock()
	if m.csq == 99 {
		m.csq = DefaultOpts.CSQ
	}
	m.mu.Unlock()
	if roaming {
		m.setStat(5)
	} else {
		m.setStat(1)
	}
}

// Deny sets registration denied (stat 3).
func (m *Modem) Deny() { m.setStat(3) }

// Garbage writes n random bytes (line noise) to the driver, between whole
// replies.
func (m *Modem) Garbage(n int) {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rand.IntN(256))
	}
	m.write(b)
}

// URC sends one unsolicited line, framed as the modem frames them (CR LF
// before and after), e.g. "RING" or "+CMTI: \"SM\",3".
func (m *Modem) URC(line string) { m.write([]byte("\r\n" + line + "\r\n")) }

// Silent stops (true) or resumes (false) answering commands; commands
// received while silent are read and dropped, as by a hung modem.
func (m *Modem) Silent(on bool) {
	m.mu.Lock()
	m.silent = on
	m.mu.Unlock()
}

// SlowReply delays every reply by d (0 restores prompt replies).
func (m *Modem) SlowReply(d time.Duration) {
	m.mu.Lock()
	m.slow = d
	m.mu.Unlock()
}

// Count returns how many times cmd (upper case, as "AT+CESQ") was received.
func (m *Modem) Count(cmd string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.counts[cmd]
}

// Received returns the last commands received (up to 100), oldest first.
func (m *Modem) Received() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.received...)
}

func (m *Modem) setStat(stat int) {
	m.mu.Lock()
	changed := m.stat != stat
	m.stat = stat
	var urcs []string
	if changed {
		if l := m.regLine("+CREG", m.cregN, false); l != "" {
			urcs = append(urcs, l)
		}
		if !m.opts.NoCEREG {
			if l := m.regLine("+CEREG", m.ceregN, false); l != "" {
				urcs = append(urcs, l)
			}
		}
	}
	m.mu.Unlock()
	for _, u := range urcs {
		m.URC(u)
	}
}

// regLine formats a registration line; the URC form omits <n> and is
// empty when n is 0 (reports disabled). Called with mu held.
func (m *Modem) regLine(cmd string, n int, query bool) string {
	if !query && n == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString(cmd + ": ")
	if query {
		fmt.Fprintf(&b, "%d,", n)
	}
	fmt.Fprintf(&b, "%d", m.stat)
	if n >= 2 && (m.stat == 1 || m.stat == 5) {
		fmt.Fprintf(&b, `,"1A2B","01C3D4E5",%d`, m.opts.Act)
	}
	return b.String()
}

func (m *Modem) write(b []byte) {
	m.wmu.Lock()
	defer m.wmu.Unlock()
	if _, err := m.pair.Master.Write(b); err != nil {
		m.log.Debug("sim: write", "err", err)
	}
}

// maxCmd bounds a command line; longer input is discarded up to its CR.
const maxCmd = 512

// serve reads commands (terminated by CR, as S3 says; LF ignored) and answers them.
func (m *Modem) serve() {
	defer m.wg.Done()
	buf := make([]byte, 256)
	var line []byte
	over := false
	for {
		n, err := m.pair.Master.Read(buf)
		for _, c := range buf[:n] {
			switch {
			case c == '\r':
				if !over {
					m.command(string(line))
				}
				line, over = line[:0], false
			case c == '\n' || over:
			case len(line) >= maxCmd:
				over = true
			default:
				line = append(line, c)
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				select {
				case <-m.stop:
				default:
					m.log.Debug("sim: read", "err", err)
				}
			}
			return
		}
	}
}

// command answers one command line.
func (m *Modem) command(raw string) {
	cmd := strings.ToUpper(strings.TrimSpace(raw))
	m.mu.Lock()
	echo, silent, slow := m.echo, m.silent, m.slow
	m.counts[cmd]++
	m.received = append(m.received, cmd)
	if len(m.received) > 100 {
		m.received = m.received[1:]
	}
	m.mu.Unlock()
	if cmd == "" {
		return
	}
	if silent {
		return
	}
	if echo {
		m.write([]byte(raw + "\r"))
	}
	reply := m.reply(cmd)
	if slow > 0 {
		select {
		case <-time.After(slow):
		case <-m.stop:
			return
		}
	}
	// V.250 verbose framing: information text in one block, then the result.
	var b strings.Builder
	if info := reply[:len(reply)-1]; len(info) > 0 {
		b.WriteString("\r\n" + strings.Join(info, "\r\n") + "\r\n")
	}
	b.WriteString("\r\n" + reply[len(reply)-1] + "\r\n")
	m.write([]byte(b.String()))
}

// reply computes the response lines (information, then final result) to cmd.
func (m *Modem) reply(cmd string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	ok := func(lines ...string) []string { return append(lines, "OK") }
	registered := m.stat == 1 || m.stat == 5
	switch cmd {
	case "AT":
		return ok()
	case "ATE0":
		m.echo = false
		return ok()
	case "ATE1", "ATE":
		m.echo = true
		return ok()
	case "ATI":
		return ok("beaconvend", "SIM-AT", "Revision: SIMAT01R01")
	case "AT+CSQ":
		ber := 0
		if m.csq == 99 {
			ber = 99
		}
		return ok(fmt.Sprintf("+CSQ: %d,%d", m.csq, ber))
	case "AT+CESQ":
		if m.opts.NoCESQ {
			return []string{"ERROR"}
		}
		return ok("+CESQ: " + m.cesq())
	case "AT+CREG?":
		return ok(m.regLine("+CREG", m.cregN, true))
	case "AT+CEREG?":
		if m.opts.NoCEREG {
			return []string{"ERROR"}
		}
		return ok(m.regLine("+CEREG", m.ceregN, true))
	case "AT+COPS?":
		if !registered {
			return ok("+COPS: 0")
		}
		return ok(fmt.Sprintf(`+COPS: 0,0,"%s",%d`, m.opts.Operator, m.opts.Act))
	case "AT+CGSN", "AT+GSN":
		return ok(m.opts.IMEI)
	case "AT+CCID", "AT+ICCID", "AT+QCCID":
		if m.opts.CCIDCommand != "" && m.opts.CCIDCommand != cmd {
			return []string{"ERROR"}
		}
		switch cmd {
		case "AT+CCID":
			return ok("+CCID: " + m.opts.ICCID)
		case "AT+ICCID":
			return ok("ICCID: " + m.opts.ICCID)
		default:
			return ok("+QCCID: " + m.opts.ICCID)
		}
	case "AT+CPIN?":
		return ok("+CPIN: READY")
	}
	for _, p := range []struct {
		prefix string
		dst    *int
	}{{"AT+CREG=", &m.cregN}, {"AT+CEREG=", &m.ceregN}} {
		if v, found := strings.CutPrefix(cmd, p.prefix); found {
			if p.dst == &m.ceregN && m.opts.NoCEREG {
				return []string{"ERROR"}
			}
			if len(v) == 1 && v[0] >= '0' && v[0] <= '2' {
				*p.dst = int(v[0] - '0')
				return ok()
			}
			return []string{"+CME ERROR: 50"} // incorrect parameters
		}
	}
	return []string{"ERROR"}
}

// cesq derives plausible +CESQ values from the rssi for the configured
// technology. Called with mu held.
func (m *Modem) cesq() string {
	if m.csq == 99 {
		return "99,99,255,255,255,255"
	}
	dbm := -113 + 2*m.csq
	switch {
	case m.opts.Act == 0 || m.opts.Act == 1 || m.opts.Act == 3:
		return fmt.Sprintf("%d,0,255,255,255,255", min(max(dbm+111, 0), 63))
	case m.opts.Act >= 2 && m.opts.Act <= 6:
		return fmt.Sprintf("99,99,%d,%d,255,255", min(max(dbm+121-3, 0), 96), 39)
	default:
		// RSRP is roughly RSSI minus 10*log10(12*N_RB), about 20-30 dB below it.
		return fmt.Sprintf("99,99,255,255,%d,%d", 20, min(max(dbm-25+141, 0), 97))
	}
}
