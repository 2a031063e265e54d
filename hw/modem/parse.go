package modem

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"beaconvend/app-protocol/vend"
)

// Limits that keep the parser's memory bounded whatever the modem sends.
const (
	MaxLineLen       = 512  // bytes of one line after clean-up; longer lines are dropped
	MaxResponseLines = 64   // information and unsolicited lines kept per response
	MaxResponseBytes = 8192 // bytes of those lines together
	MaxCommandLen    = 256  // bytes of a command, without the terminating CR
)

// Splitter cuts a byte stream into AT lines. Lines end at CR or LF in any
// mix (CR LF, LF CR, lone CR as after a command echo); empty lines are not
// returned. Bytes outside printable ASCII (0x20-0x7E) are dropped, so line
// noise around a result code does not hide it, and leading and trailing
// spaces are trimmed. A line longer than [MaxLineLen] is discarded up to its
// terminator and counted in Dropped; a Splitter never holds more than
// MaxLineLen bytes. The zero value is ready to use.
type Splitter struct {
	buf     []byte
	over    bool // the current line overflowed; skip to its terminator
	Dropped int  // overlong lines discarded so far
}

// Feed consumes p and calls emit for every complete line, in order.
func (s *Splitter) Feed(p []byte, emit func(line string)) {
	for _, c := range p {
		switch {
		case c == '\r' || c == '\n':
			if s.over {
				s.over = false
				s.Dropped++
			} else if l := bytes.TrimSpace(s.buf); len(l) > 0 {
				emit(string(l))
			}
			s.buf = s.buf[:0]
		case c < 0x20 || c > 0x7e || s.over:
		case len(s.buf) >= MaxLineLen:
			s.over = true
			s.buf = s.buf[:0]
		default:
			if s.buf == nil {
				s.buf = make([]byte, 0, 64)
			}
			s.buf = append(s.buf, c)
		}
	}
}

// Pending reports how many bytes of an unterminated line are buffered.
func (s *Splitter) Pending() int { return len(s.buf) }

// Final result codes (ITU-T V.250 §5.7.1, TS 27.007 §9.2).
const (
	ResultOK = "OK"
	// ResultError is the plain error result; see also the +CME/+CMS forms.
	ResultError = "ERROR"
)

// IsFinal reports whether line is a final result code: OK, ERROR,
// +CME ERROR: <err>, +CMS ERROR: <err>, or one of the V.250 call results
// NO CARRIER, BUSY, NO ANSWER, NO DIALTONE (which end a command as ERROR does).
func IsFinal(line string) bool {
	switch line {
	case ResultOK, ResultError, "NO CARRIER", "BUSY", "NO ANSWER", "NO DIALTONE":
		return true
	}
	return strings.HasPrefix(line, "+CME ERROR:") || strings.HasPrefix(line, "+CMS ERROR:")
}

// CommandError is a final result code other than OK. errors.Is(err,
// ErrError) matches it.
type CommandError struct {
	Cmd   string // the command, e.g. "AT+CESQ"
	Final string // the final result code as received, e.g. "+CME ERROR: 4"
	Code  int    // the +CME/+CMS error number, or -1 (plain ERROR or a textual error)
}

// Error reads "modem: AT+CESQ: +CME ERROR: 4".
func (e *CommandError) Error() string { return "modem: " + e.Cmd + ": " + e.Final }

// Unwrap returns ErrError.
func (e *CommandError) Unwrap() error { return ErrError }

func finalError(cmd, final string) error {
	if final == ResultOK {
		return nil
	}
	code := -1
	if i := strings.IndexByte(final, ':'); i >= 0 {
		if n, err := strconv.Atoi(strings.TrimSpace(final[i+1:])); err == nil {
			code = n
		}
	}
	return &CommandError{Cmd: cmd, Final: final, Code: code}
}

// Response is the reply to one command.
type Response struct {
	Cmd     string   // the command it answers, as sent (without CR)
	Lines   []string // information lines, in order (echo, URCs and final result removed)
	URCs    []string // lines that arrived meanwhile but do not belong to the command (URCs, noise)
	Final   string   // the final result code; "" when the response is incomplete
	Dropped int      // lines dropped: overlong, or beyond MaxResponseLines / MaxResponseBytes
}

// Err returns nil for OK, a *CommandError for the other final result codes
// and ErrIncomplete without one. (ParseResponse and ReadResponse return
// ErrTooLarge instead when lines were dropped for exceeding the limits.)
func (r *Response) Err() error {
	if r.Final == "" {
		return vend.Errorf(ErrIncomplete, "%s", r.Cmd)
	}
	if err := finalError(r.Cmd, r.Final); err != nil {
		return err
	}
	return nil
}

// Collector sorts the lines that follow a command into a [Response]. Use
// one per command: call Add for every line until it returns true.
type Collector struct {
	resp     Response
	prefixes []string // information prefixes with colon, e.g. "+CSQ:"
	bare     bool     // the command may answer with bare text (ATI, AT+CGSN)
	bytes    int
	big      bool
}

// bareReplies are extended commands whose answer is bare text on some
// modems and prefixed on others.
var bareReplies = map[string]bool{
	"+CGSN:": true, "+GSN:": true, "+CCID:": true, "+ICCID:": true, "+QCCID:": true,
	"+CIMI:": true, "+CGMI:": true, "+CGMM:": true, "+CGMR:": true,
}

// NewCollector returns a Collector for the reply to cmd (as sent, e.g.
// "AT+CREG?"). Lines that start with the command's own prefix ("+CREG:")
// are information. For basic commands (ATI) and for those answered with bare
// text by some vendors (AT+CGSN, AT+CCID, AT+ICCID, AT+QCCID, AT+CIMI), every
// line that does not look unsolicited is information too; the ICCID
// commands also accept each other's prefixes.
func NewCollector(cmd string) *Collector {
	c := &Collector{resp: Response{Cmd: cmd}}
	p := InfoPrefix(cmd)
	switch {
	case p == "":
		c.bare = true
	case bareReplies[p]:
		c.bare = true
		c.prefixes = []string{p}
		if p == "+CCID:" || p == "+ICCID:" || p == "+QCCID:" {
			c.prefixes = iccidPrefixes
		}
	default:
		c.prefixes = []string{p}
	}
	return c
}

// InfoPrefix returns the information-response prefix of an extended
// command: "AT+CSQ" → "+CSQ:", "AT+CREG?" → "+CREG:", "AT^SYSINFO" →
// "^SYSINFO:". Basic commands (ATI, ATE0) return "".
func InfoPrefix(cmd string) string {
	c := strings.ToUpper(strings.TrimSpace(cmd))
	if !strings.HasPrefix(c, "AT") || len(c) < 4 {
		return ""
	}
	c = c[2:]
	if c[0] != '+' && c[0] != '^' && c[0] != '$' && c[0] != '#' && c[0] != '%' {
		return ""
	}
	end := strings.IndexAny(c, "?=")
	if end < 0 {
		end = len(c)
	}
	return c[:end] + ":"
}

// Add files one line and reports whether it was the final result code.
func (c *Collector) Add(line string) (done bool) {
	switch {
	case line == "":
		return false
	case IsFinal(line):
		c.resp.Final = line
		return true
	case strings.EqualFold(line, c.resp.Cmd):
		return false // echo (ATE1)
	}
	info := false
	for _, p := range c.prefixes {
		if len(line) >= len(p) && strings.EqualFold(line[:len(p)], p) {
			info = true
			break
		}
	}
	if !info && c.bare {
		info = !LooksUnsolicited(line)
	}
	if c.big || len(c.resp.Lines)+len(c.resp.URCs) >= MaxResponseLines || c.bytes+len(line) > MaxResponseBytes {
		c.big = true
		c.resp.Dropped++
		return false
	}
	c.bytes += len(line)
	if info {
		c.resp.Lines = append(c.resp.Lines, line)
	} else {
		c.resp.URCs = append(c.resp.URCs, line)
	}
	return false
}

// Response returns what was collected so far.
func (c *Collector) Response() *Response {
	r := c.resp
	return &r
}

// TooLarge reports whether lines were dropped for exceeding the limits.
func (c *Collector) TooLarge() bool { return c.big }

// unsolicitedWords are URCs that are bare words rather than +XXX: lines.
var unsolicitedWords = map[string]bool{
	"RING": true, "RDY": true, "READY": true, "CALL READY": true, "SMS READY": true,
	"PB DONE": true, "POWERED DOWN": true, "NORMAL POWER DOWN": true,
	"UNDER-VOLTAGE POWER DOWN": true, "UNDER-VOLTAGE WARNNING": true,
	"OVER-VOLTAGE POWER DOWN": true, "APP RDY": true, "START": true,
}

// LooksUnsolicited reports whether a line has the shape of an unsolicited
// result code: a +/^/$/#/% prefixed result ("+CREG: 5", "^SYSINFO: 2,3",
// "+CMTI: \"SM\",3", "+QIND: ...", "+CPIN: READY") or a known bare word (RING,
// RDY, Call Ready, SMS Ready, PB DONE, POWERED DOWN).
func LooksUnsolicited(line string) bool {
	if line == "" {
		return false
	}
	switch line[0] {
	case '+', '^', '$', '#', '%', '*':
		return true
	}
	return unsolicitedWords[strings.ToUpper(line)]
}

// ParseResponse parses the complete reply to cmd from b: the bytes the
// modem sent after the command was written, possibly including its echo and
// unsolicited lines. Bytes after the final result code are ignored. It
// returns the response and its error: nil for OK, a *CommandError for
// ERROR/+CME ERROR/+CMS ERROR, ErrIncomplete when b ends before a final
// result code, ErrTooLarge when the response exceeds the limits.
func ParseResponse(b []byte, cmd string) (*Response, error) {
	return ReadResponse(bytes.NewReader(b), cmd)
}

// ReadResponse reads the reply to cmd from r as [ParseResponse] does. It
// stops reading at the final result code (it may have consumed bytes
// after it from the same Read), at io.EOF, or at a read error. A Read that
// returns (0, nil), as a serial port does on timeout, ends the response as
// incomplete after 100 consecutive such reads.
func ReadResponse(r io.Reader, cmd string) (*Response, error) {
	var (
		sp    Splitter
		col   = NewCollector(cmd)
		done  bool
		buf   [256]byte
		empty int
	)
	for !done {
		n, err := r.Read(buf[:])
		if n > 0 {
			empty = 0
			sp.Feed(buf[:n], func(line string) {
				if !done {
					done = col.Add(line)
				}
			})
		} else if err == nil {
			if empty++; empty >= 100 {
				break
			}
		}
		if err != nil {
			if done {
				break
			}
			resp := col.Response()
			resp.Dropped += sp.Dropped
			if errors.Is(err, io.EOF) {
				return resp, resp.Err()
			}
			return resp, fmt.Errorf("modem: %s: read: %w", cmd, err)
		}
	}
	resp := col.Response()
	resp.Dropped += sp.Dropped
	if col.TooLarge() {
		return resp, vend.Errorf(ErrTooLarge, "%s: %d lines dropped", cmd, resp.Dropped)
	}
	return resp, resp.Err()
}
