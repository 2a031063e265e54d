package console

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"beaconvend/app-protocol/vend"
)

// ErrStreams refuses an event stream beyond Options.MaxStreams on this
// instance (HTTP 429; the browser's EventSource retries).
var ErrStreams = vend.E(vend.Transient, "stream.limit", "console: too many event streams open; try again shortly")

// Stream is an open Server-Sent Events answer to one browser tab, as
// htmx-ext-sse reads it (sse-connect on an element, sse-swap="<event>"
// on the parts it replaces). It is not safe for concurrent use.
type Stream struct {
	w    http.ResponseWriter
	rc   *http.ResponseController
	keep time.Duration
	done func()
}

// stream starts an event stream answer on w: the headers, no read
// deadline, a first retry hint. It takes one of the instance's
// MaxStreams slots until Close. Errors: ErrStreams when all are taken
// (nothing is written then; answer with c.fail).
//
//	s, err := c.stream(w, r)
//	if err != nil { c.fail(w, r, err); return }
//	defer s.Close()
//	tick := time.NewTicker(s.KeepAliveEvery())
//	for { select {
//	case <-r.Context().Done(): return
//	case <-tick.C: if s.KeepAlive() != nil { return }
//	case x := <-updates: html, _ := c.part(r, "fleet", "row", x); if s.Send("device-"+x.ID, html) != nil { return }
//	} }
func (c *Console) stream(w http.ResponseWriter, r *http.Request) (*Stream, error) {
	c.mu.Lock()
	if c.streams >= c.opts.MaxStreams {
		c.mu.Unlock()
		w.Header().Set("Retry-After", "10")
		return nil, vend.Errorf(ErrStreams, "%d open", c.opts.MaxStreams)
	}
	c.streams++
	c.mu.Unlock()
	s := &Stream{w: w, rc: http.NewResponseController(w), keep: c.opts.KeepAlive}
	s.done = func() {
		c.mu.Lock()
		c.streams--
		c.mu.Unlock()
	}
	_ = s.rc.SetReadDeadline(time.Time{})
	secureHeaders(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	s.writeBy()
	w.WriteHeader(http.StatusOK)
	if err := s.write("retry: 2000\n\n"); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// KeepAliveEvery is how often a quiet stream should call KeepAlive
// (Options.KeepAlive).
func (s *Stream) KeepAliveEvery() time.Duration { return s.keep }

func (s *Stream) writeBy() { _ = s.rc.SetWriteDeadline(time.Now().Add(s.keep + 10*time.Second)) }

func (s *Stream) write(text string) error {
	s.writeBy()
	if _, err := fmt.Fprint(s.w, text); err != nil {
		return err
	}
	return s.rc.Flush()
}

// Send writes one event named event (letters, digits, '-', '_', '.',
// ':') with data, an HTML fragment, split into data lines. An error
// means the tab has gone: stop.
func (s *Stream) Send(event, data string) error {
	if event == "" || strings.ContainsAny(event, "\r\n") {
		return errors.New("console: event name must be one non-empty line")
	}
	var b strings.Builder
	b.WriteString("event: " + event + "\n")
	for _, line := range strings.Split(strings.ReplaceAll(data, "\r\n", "\n"), "\n") {
		b.WriteString("data: " + strings.ReplaceAll(line, "\r", "") + "\n")
	}
	b.WriteString("\n")
	return s.write(b.String())
}

// KeepAlive writes a comment, so that proxies keep a quiet stream open.
func (s *Stream) KeepAlive() error { return s.write(": keepalive\n\n") }

// Close gives the stream's slot back. Call it once, when the handler
// returns.
func (s *Stream) Close() {
	if s.done != nil {
		s.done()
		s.done = nil
	}
}
