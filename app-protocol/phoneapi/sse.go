package phoneapi

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
	"time"

	"beaconvend/app-protocol/vend"
)

// Limits of the SSE reader.
const (
	DefaultMaxSSELine  = 64 << 10 // bytes in one line, without its end
	DefaultMaxSSEEvent = 1 << 20  // bytes of data in one event
)

// SSEEvent is one dispatched Server-Sent Event.
type SSEEvent struct {
	ID    string        // the last event id seen on the stream, as the spec keeps it
	Type  string        // the event field, or "message" when the event had none
	Data  string        // the data lines joined with "\n"
	Retry time.Duration // the last retry field seen on the stream, or 0
}

// SSEReader parses a text/event-stream as the WHATWG HTML standard
// ("Server-sent events", "Event stream interpretation") describes: lines end
// in CRLF, LF or CR; lines starting with ':' are comments; a field name is
// followed by an optional ':' and one optional space; "data" lines of one
// event are joined with LF; an empty line dispatches the event; an event with
// no data is not dispatched; an "id" containing NUL is ignored; "retry" is
// used only when it is all ASCII digits; a leading UTF-8 BOM is skipped; an
// unfinished event at the end of the stream is dropped.
//
// Memory is bounded: a line longer than MaxLine bytes gives
// ErrSSELineTooLong and an event whose data exceeds MaxEvent bytes gives
// ErrSSEEventTooLarge. Errors are sticky.
type SSEReader struct {
	r        io.Reader
	maxEvent int
	buf      []byte // holds at most one line and its end; len is MaxLine+1
	start    int    // unread bytes are buf[start:end]
	end      int
	skipLF   bool // the last line ended in CR: a following LF belongs to it
	bomDone  bool
	rerr     error // error from r, returned once the buffer is drained
	err      error // sticky error of Next

	lastID string
	retry  time.Duration
	typ    string
	data   []byte
	hasDat bool
}

// NewSSEReader returns a reader of r that refuses lines over maxLine bytes
// and events over maxEvent bytes of data. Values <= 0 select
// DefaultMaxSSELine and DefaultMaxSSEEvent.
func NewSSEReader(r io.Reader, maxLine, maxEvent int) *SSEReader {
	if maxLine <= 0 {
		maxLine = DefaultMaxSSELine
	}
	if maxEvent <= 0 {
		maxEvent = DefaultMaxSSEEvent
	}
	first := min(maxLine+1, 4096)
	return &SSEReader{r: r, maxEvent: maxEvent, buf: make([]byte, first, maxLine+1)}
}

// LastEventID returns the last event id seen, to send as Last-Event-ID when
// reconnecting.
func (s *SSEReader) LastEventID() string { return s.lastID }

// Retry returns the reconnection delay the server asked for, or 0.
func (s *SSEReader) Retry() time.Duration { return s.retry }

// Next returns the next event. At the end of the stream it returns io.EOF
// (or io.ErrUnexpectedEOF inside an event, whose partial data is dropped);
// other errors are the reader's, ErrSSELineTooLong or ErrSSEEventTooLarge.
func (s *SSEReader) Next() (SSEEvent, error) {
	if s.err != nil {
		return SSEEvent{}, s.err
	}
	for {
		line, err := s.readLine()
		if err != nil {
			if err == io.EOF && (s.hasDat || s.typ != "") {
				err = io.ErrUnexpectedEOF
			}
			s.err = err
			return SSEEvent{}, err
		}
		if len(line) == 0 {
			if ev, ok := s.dispatch(); ok {
				return ev, nil
			}
			continue
		}
		if line[0] == ':' {
			continue
		}
		name, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			name, value = line[:i], line[i+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		switch string(name) {
		case "event":
			s.typ = string(value)
		case "data":
			if len(s.data)+len(value)+1 > s.maxEvent {
				s.err = vend.Errorf(ErrSSEEventTooLarge, "over %d bytes", s.maxEvent)
				return SSEEvent{}, s.err
			}
			s.data = append(s.data, value...)
			s.data = append(s.data, '\n')
			s.hasDat = true
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				s.lastID = string(value)
			}
		case "retry":
			if ms, ok := parseDigits(value); ok {
				s.retry = time.Duration(ms) * time.Millisecond
			}
		}
	}
}

// parseDigits parses an all-digit retry value, capped at one day.
func parseDigits(b []byte) (int64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	const maxRetry = 24 * 3600 * 1000
	if len(b) > 9 {
		return maxRetry, true
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return 0, false
	}
	return min(n, maxRetry), true
}

func (s *SSEReader) dispatch() (SSEEvent, bool) {
	defer func() { s.typ, s.data, s.hasDat = "", s.data[:0], false }()
	if !s.hasDat {
		return SSEEvent{}, false
	}
	ev := SSEEvent{ID: s.lastID, Type: s.typ, Data: strings.TrimSuffix(string(s.data), "\n"), Retry: s.retry}
	if ev.Type == "" {
		ev.Type = "message"
	}
	return ev, true
}

// maxEmptyReads bounds how often r may return 0, nil in a row.
const maxEmptyReads = 100

// readLine returns the next line without its end. The slice is valid until
// the next call.
func (s *SSEReader) readLine() ([]byte, error) {
	empty := 0
	for {
		if s.skipLF && s.start < s.end {
			if s.buf[s.start] == '\n' {
				s.start++
			}
			s.skipLF = false
		}
		if !s.bomDone {
			avail, bom := s.buf[s.start:s.end], []byte("\xef\xbb\xbf")
			switch {
			case len(avail) >= len(bom):
				if bytes.HasPrefix(avail, bom) {
					s.start += len(bom)
				}
				s.bomDone = true
			case !bytes.HasPrefix(bom, avail) || s.rerr != nil:
				s.bomDone = true
			}
		}
		if s.bomDone {
			if i := bytes.IndexAny(s.buf[s.start:s.end], "\r\n"); i >= 0 {
				line := s.buf[s.start : s.start+i]
				s.skipLF = s.buf[s.start+i] == '\r'
				s.start += i + 1
				return line, nil
			}
		}
		if s.rerr != nil {
			// An unterminated last line is dropped, as is the event it is in.
			if s.start < s.end && s.rerr == io.EOF {
				s.start = s.end
				return nil, io.ErrUnexpectedEOF
			}
			return nil, s.rerr
		}
		// Make room: slide the partial line to the front, then grow up to the cap.
		if s.start > 0 {
			s.end = copy(s.buf, s.buf[s.start:s.end])
			s.start = 0
		}
		if s.end == len(s.buf) {
			if len(s.buf) == cap(s.buf) {
				return nil, vend.Errorf(ErrSSELineTooLong, "over %d bytes", cap(s.buf)-1)
			}
			s.buf = s.buf[:min(2*len(s.buf), cap(s.buf))]
		}
		n, err := s.r.Read(s.buf[s.end:])
		s.end += n
		switch {
		case err != nil:
			s.rerr = err
			if errors.Is(err, io.EOF) {
				s.rerr = io.EOF
			}
		case n == 0:
			if empty++; empty >= maxEmptyReads {
				return nil, ErrSSEStall
			}
		}
	}
}
