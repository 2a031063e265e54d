package httpapi_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"beaconvend/cloud/httpapi"
)

// shortTimeouts makes the server's connection bounds small enough to pass
// in a test.
func shortTimeouts(o *httpapi.Options) {
	o.ReadHeaderTimeout = 200 * time.Millisecond
	o.ReadTimeout = 300 * time.Millisecond
	o.WriteTimeout = 300 * time.Millisecond
	o.IdleTimeout = 300 * time.Millisecond
	o.KeepAlive = 50 * time.Millisecond
}

// closedWithin reads from c until the server closes it and fails when that
// has not happened within limit (a generous guard, not a measurement).
func closedWithin(t *testing.T, c net.Conn, limit time.Duration, what string) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(limit))
	b, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("%s: connection still open after %v (read %q)", what, limit, b)
	}
	return string(b)
}

// A client that trickles its request headers one byte at a time (slowloris)
// never completes a request and is cut off by ReadHeaderTimeout, however
// often it sends a byte.
func TestSlowHeadersAreCutOff(t *testing.T) {
	e := newAPIEnv(t, shortTimeouts)
	c, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		if _, err := io.WriteString(c, "GET /v1/health HTTP/1.1\r\nHost: x\r\n"); err != nil {
			return
		}
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				if _, err := io.WriteString(c, "X"); err != nil {
					return
				}
			}
		}
	}()
	if got := closedWithin(t, c, 5*time.Second, "trickling client"); strings.Contains(got, "200 OK") {
		t.Fatalf("trickling client got an answer: %q", got)
	}
}

// A client that sends its headers but trickles a body is cut off by
// ReadTimeout.
func TestSlowBodyIsCutOff(t *testing.T) {
	e := newAPIEnv(t, shortTimeouts)
	c, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		io.WriteString(c, "POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				if _, err := io.WriteString(c, " "); err != nil {
					return
				}
			}
		}
	}()
	got := closedWithin(t, c, 5*time.Second, "trickling body")
	if strings.Contains(got, "200 OK") {
		t.Fatalf("trickling body got an answer: %q", got)
	}
}

// An idle keep-alive connection is closed after IdleTimeout.
func TestIdleKeepAliveIsClosed(t *testing.T) {
	e := newAPIEnv(t, shortTimeouts)
	c, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Close {
		t.Fatalf("health = %d close=%v, want 200 on a kept-alive connection", resp.StatusCode, resp.Close)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("idle connection: read = %v, want EOF (closed by the server)", err)
	}
}

// Large request headers are refused (431) instead of buffered.
func TestHeaderLimit(t *testing.T) {
	e := newAPIEnv(t, func(o *httpapi.Options) { o.MaxHeaderBytes = 4 << 10 })
	req, _ := http.NewRequest("GET", e.url+"/v1/health", nil)
	req.Header.Set("X-Big", strings.Repeat("a", 16<<10))
	resp, err := http.DefaultClient.Do(req) // the server's 431 precedes any route
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("16 KiB header = %d, want 431", resp.StatusCode)
	}
}

// A session event stream outlives ReadTimeout and WriteTimeout: it keeps
// delivering keepalives for many times those bounds.
func TestEventStreamOutlivesTimeouts(t *testing.T) {
	e := newAPIEnv(t, shortTimeouts)
	c := e.phone()
	s := e.pendingSession(c)
	req, _ := http.NewRequest("GET", e.url+"/v1/sessions/"+s.ID.String()+"/events", nil)
	resp := e.do(req, c.Token())
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("events = %d", resp.StatusCode)
	}
	br := bufio.NewReader(resp.Body)
	deadline := time.Now().Add(2 * time.Second) // > 6 × ReadTimeout
	keepalives := 0
	for time.Now().Before(deadline) {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended after %d keepalives: %v", keepalives, err)
		}
		if strings.HasPrefix(line, ": keepalive") {
			keepalives++
		}
	}
	if keepalives == 0 {
		t.Fatal("no keepalive on the stream")
	}
}
