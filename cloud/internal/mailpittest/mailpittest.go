// Package mailpittest runs a real SMTP server for tests: Mailpit
// (github.com/axllent/mailpit, the Go module at Version), built once with
// `go install` into the user's cache directory and started as a process on
// loopback ports with its own database; the messages it received are read
// back through its HTTP API. When it cannot be built (no Go toolchain, no
// module proxy) the rule of svctest.Missing applies. Imported only by tests.
package mailpittest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"beaconvend/cloud/internal/svctest"
)

// Version is the Mailpit release the tests run.
const Version = "v1.33.1"

// Opts configure a server; the zero value is plain SMTP accepting any
// (or no) authentication.
type Opts struct {
	// TLSCert and TLSKey (PEM files) enable STARTTLS; RequireTLS then
	// refuses a client that does not upgrade.
	TLSCert, TLSKey string
	RequireTLS      bool
}

// Server is one running Mailpit.
type Server struct {
	SMTPAddr string // host:port of the SMTP listener
	APIURL   string // base URL of the HTTP API, ending in /
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func build() (string, error) {
	buildOnce.Do(func() {
		dir, err := os.UserCacheDir()
		if err != nil {
			dir = os.TempDir()
		}
		gobin := filepath.Join(dir, "beaconvend-test", "mailpit-"+Version)
		binPath = filepath.Join(gobin, "mailpit")
		if _, err := os.Stat(binPath); err == nil {
			return
		}
		goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
		if _, err := os.Stat(goTool); err != nil {
			goTool = "go"
		}
		cmd := exec.Command(goTool, "install", "github.com/axllent/mailpit@"+Version)
		cmd.Env = append(os.Environ(), "GOBIN="+gobin, "GOFLAGS=", "CGO_ENABLED=0")
		cmd.Dir = os.TempDir()
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			buildErr = fmt.Errorf("go install github.com/axllent/mailpit@%s: %v: %s", Version, err, out.String())
		}
	})
	return binPath, buildErr
}

func freePort(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Start builds Mailpit when needed, starts it for this test and stops it
// when the test ends.
func Start(tb testing.TB, o Opts) *Server {
	tb.Helper()
	bin, err := build()
	if err != nil {
		svctest.Missing(tb, "Mailpit "+Version, err.Error())
	}
	smtpAddr, httpAddr := freePort(tb), freePort(tb)
	args := []string{"--smtp", smtpAddr, "--listen", httpAddr, "--database", filepath.Join(tb.TempDir(), "mailpit.db"),
		"--smtp-auth-accept-any", "--quiet"}
	if o.TLSCert != "" {
		args = append(args, "--smtp-tls-cert", o.TLSCert, "--smtp-tls-key", o.TLSKey)
		if o.RequireTLS {
			args = append(args, "--smtp-require-starttls")
		}
	} else {
		args = append(args, "--smtp-auth-allow-insecure")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, args...)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		cancel()
		tb.Fatalf("mailpittest: start: %v", err)
	}
	tb.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if tb.Failed() {
			tb.Logf("mailpit output:\n%s", logs.String())
		}
	})
	s := &Server{SMTPAddr: smtpAddr, APIURL: "http://" + httpAddr + "/"}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.APIURL + "api/v1/info")
		if err == nil {
			resp.Body.Close()
			if c, err := net.Dial("tcp", smtpAddr); err == nil {
				c.Close()
				return s
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("mailpittest: not up after 30 s: %v\n%s", err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Summary is a message in the list.
type Summary struct {
	ID        string
	MessageID string
	From      *mail.Address
	To        []*mail.Address
	Subject   string
	Created   time.Time
	Username  string // the SMTP user the message was sent as, "" without authentication
}

// Message is one message with its bodies and headers.
type Message struct {
	ID        string
	MessageID string
	From      *mail.Address
	To        []*mail.Address
	Subject   string
	Text      string
	HTML      string
}

func (s *Server) get(tb testing.TB, path string, v any) {
	tb.Helper()
	resp, err := http.Get(s.APIURL + path)
	if err != nil {
		tb.Fatalf("mailpittest: GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		tb.Fatalf("mailpittest: GET %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		tb.Fatalf("mailpittest: GET %s: %v", path, err)
	}
}

// Messages returns the received messages, newest first.
func (s *Server) Messages(tb testing.TB) []Summary {
	tb.Helper()
	var r struct{ Messages []Summary }
	s.get(tb, "api/v1/messages", &r)
	return r.Messages
}

// Message returns one message.
func (s *Server) Message(tb testing.TB, id string) Message {
	tb.Helper()
	var m Message
	s.get(tb, "api/v1/message/"+id, &m)
	return m
}

// Headers returns one message's headers.
func (s *Server) Headers(tb testing.TB, id string) map[string][]string {
	tb.Helper()
	var h map[string][]string
	s.get(tb, "api/v1/message/"+id+"/headers", &h)
	return h
}

// Wait waits up to timeout until at least n messages arrived and returns
// them, newest first; it fails the test when they do not.
func (s *Server) Wait(tb testing.TB, n int, timeout time.Duration) []Summary {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ms := s.Messages(tb)
		if len(ms) >= n {
			return ms
		}
		if time.Now().After(deadline) {
			subjects := make([]string, len(ms))
			for i, m := range ms {
				subjects[i] = m.Subject
			}
			tb.Fatalf("mailpittest: %d messages after %v, want %d (have %s)", len(ms), timeout, n, strings.Join(subjects, "; "))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
