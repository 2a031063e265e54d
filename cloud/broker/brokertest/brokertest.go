// Package brokertest starts real MQTT brokers for tests: the embedded
// broker of package cloud/broker and a Mosquitto 2 process, each on a free
// loopback port with generated credentials, and restartable on the same
// port. It also makes a throw-away PKI (CA, server and client certificates)
// with crypto/x509 at test time, so no key is ever stored in the repository.
//
// Mosquitto is found through $VEND_MOSQUITTO, then PATH, then
// /usr/sbin/mosquitto (scripts/mosquitto.sh installs it). When it is
// missing, [MosquittoPath] fails the test if $VEND_REQUIRE_SERVICES is set
// and skips it loudly otherwise.
package brokertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"beaconvend/cloud/broker"
)

// Wait bounds every wait in these helpers: a broker start, a stop, a connect.
const Wait = 15 * time.Second

// Server is a broker under test.
type Server interface {
	// URL is the plain-TCP address for paho, "tcp://127.0.0.1:<port>".
	URL() string
	// Start starts the broker, on the same port after the first start.
	Start(tb testing.TB)
	// Stop stops it in order (persistent state is saved where enabled).
	Stop(tb testing.TB)
	// Name is "embedded" or "mosquitto", for subtest names.
	Name() string
}

// Accounts is a set of device credentials and the cloud's, and implements
// broker.Credentials. It is safe for concurrent use.
type Accounts struct {
	CloudUser     string // broker.DefaultCloudUser
	CloudPassword string
	CloudHash     string

	mu      sync.Mutex
	devices map[string]*account
}

type account struct {
	password, hash string
	enabled        bool
}

var _ broker.Credentials = (*Accounts)(nil)

// NewAccounts makes enabled devices with the given ids and random
// passwords, and a cloud account.
func NewAccounts(tb testing.TB, deviceIDs ...string) *Accounts {
	tb.Helper()
	a := &Accounts{CloudUser: broker.DefaultCloudUser, devices: map[string]*account{}}
	a.CloudPassword = randomSecret()
	var err error
	if a.CloudHash, err = broker.HashPassword(a.CloudPassword); err != nil {
		tb.Fatalf("HashPassword: %v", err)
	}
	for _, id := range deviceIDs {
		a.Add(tb, id)
	}
	return a
}

// Add adds an enabled device with a random password.
func (a *Accounts) Add(tb testing.TB, id string) {
	tb.Helper()
	pw := randomSecret()
	h, err := broker.HashPassword(pw)
	if err != nil {
		tb.Fatalf("HashPassword: %v", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.devices[id] = &account{password: pw, hash: h, enabled: true}
}

// Password returns device id's password, or "" for an unknown device.
func (a *Accounts) Password(id string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if d, ok := a.devices[id]; ok {
		return d.password
	}
	return ""
}

// SetEnabled enables or disables a device. The embedded broker sees it at
// the next CONNECT; a Mosquitto server needs a restart (or SIGHUP after
// rewriting the files) since a disabled device is left out of its file.
func (a *Accounts) SetEnabled(id string, enabled bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if d, ok := a.devices[id]; ok {
		d.enabled = enabled
	}
}

// DeviceCredential implements broker.Credentials.
func (a *Accounts) DeviceCredential(_ context.Context, id string) (broker.Credential, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	d, ok := a.devices[id]
	if !ok {
		return broker.Credential{}, fmt.Errorf("%w: %s", broker.ErrUnknown, id)
	}
	return broker.Credential{PasswordHash: d.hash, Enabled: d.enabled}, nil
}

// PasswordEntries returns the Mosquitto password file entries: the cloud
// and every enabled device.
func (a *Accounts) PasswordEntries() []broker.PasswordEntry {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := []broker.PasswordEntry{{User: a.CloudUser, Hash: a.CloudHash}}
	for id, d := range a.devices {
		if d.enabled {
			out = append(out, broker.PasswordEntry{User: id, Hash: d.hash})
		}
	}
	return out
}

func randomSecret() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitListening dials addr until it accepts or Wait passes; exited, when
// not nil, reports the broker process ending first.
func waitListening(addr string, exited <-chan error) error {
	deadline := time.Now().Add(Wait)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case e := <-exited:
			return fmt.Errorf("broker exited before listening on %s: %v", addr, e)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listening on %s after %v: %w", addr, Wait, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Embedded is the embedded broker (package cloud/broker) under test.
type Embedded struct {
	Opts broker.Options // as given, with Addr fixed to the first bound port

	mu   sync.Mutex
	b    *broker.Broker
	done chan error
}

var _ Server = (*Embedded)(nil)

// NewEmbedded starts the embedded broker with acc's credentials on a free
// loopback port; opts may set TLS, DataDir and the rest (Credentials,
// CloudPasswordHash and Addr are filled in when empty). The broker is
// stopped at the end of the test.
func NewEmbedded(tb testing.TB, acc *Accounts, opts broker.Options) *Embedded {
	tb.Helper()
	if opts.Credentials == nil {
		opts.Credentials = acc
	}
	if opts.CloudPasswordHash == "" {
		opts.CloudUser, opts.CloudPasswordHash = acc.CloudUser, acc.CloudHash
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	e := &Embedded{Opts: opts}
	e.Start(tb)
	tb.Cleanup(func() { e.Stop(tb) })
	return e
}

// Name returns "embedded".
func (e *Embedded) Name() string { return "embedded" }

// Broker returns the running broker, or nil when stopped.
func (e *Embedded) Broker() *broker.Broker {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.b
}

// URL returns tcp://<bound address>.
func (e *Embedded) URL() string { return "tcp://" + e.Opts.Addr }

// Start starts the broker on its port; a no-op when running. Binding the
// same port right after a stop is retried for a while.
func (e *Embedded) Start(tb testing.TB) {
	tb.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.b != nil {
		return
	}
	var b *broker.Broker
	var err error
	for deadline := time.Now().Add(Wait); ; time.Sleep(50 * time.Millisecond) {
		if b, err = broker.New(e.Opts); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		tb.Fatalf("broker.New: %v", err)
	}
	e.Opts.Addr = b.Addr()
	if b.TLSAddr() != "" {
		e.Opts.TLSAddr = b.TLSAddr()
	}
	e.b, e.done = b, make(chan error, 1)
	go func(done chan<- error) { done <- b.Run(context.Background()) }(e.done)
	if err := waitListening(e.Opts.Addr, nil); err != nil {
		tb.Fatal(err)
	}
}

// Stop closes the broker and waits for Run to return; a no-op when stopped.
func (e *Embedded) Stop(tb testing.TB) {
	tb.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.b == nil {
		return
	}
	if err := e.b.Close(); err != nil {
		tb.Errorf("broker close: %v", err)
	}
	select {
	case err := <-e.done:
		if err != nil && !errors.Is(err, broker.ErrClosed) {
			tb.Errorf("broker run: %v", err)
		}
	case <-time.After(Wait):
		tb.Errorf("broker run did not return within %v of Close", Wait)
	}
	e.b = nil
}

// HostPort returns "127.0.0.1:<port>" for a URL of this package's servers.
func HostPort(url string) (string, int) {
	host, port, _ := net.SplitHostPort(url[len("tcp://"):])
	p, _ := strconv.Atoi(port)
	return host, p
}
