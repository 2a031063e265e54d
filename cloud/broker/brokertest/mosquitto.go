package brokertest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"beaconvend/cloud/broker"
	"beaconvend/cloud/internal/svctest"
)

// MosquittoPath returns the mosquitto binary: $VEND_MOSQUITTO, then PATH,
// then /usr/sbin/mosquitto. When none exists it calls tb.Fatal if
// $VEND_REQUIRE_SERVICES is set, and tb.Skip with a loud message otherwise.
func MosquittoPath(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv("VEND_MOSQUITTO"); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	svctest.Missing(tb, "Mosquitto 2", "run scripts/mosquitto.sh (or set VEND_MOSQUITTO to the binary)")
	return ""
}

// MosquittoOptions tune [NewMosquitto].
type MosquittoOptions struct {
	Persistence bool // keep sessions and queued messages across Stop/Start
	// TLS, when not nil, adds a TLS listener with PKI's server certificate
	// (and requires client certificates when ClientCerts is true).
	TLS         *PKI
	ClientCerts bool
	// Operators are read-only operator accounts: their password entries
	// and their ACL sections.
	Operators []MosquittoOperator
}

// MosquittoOperator is an operator account for [NewMosquitto].
type MosquittoOperator struct {
	ACL  broker.OperatorACL
	Hash string // "$7$" hash of its password
}

// Mosquitto is a mosquitto process under test.
type Mosquitto struct {
	bin, dir string
	acc      *Accounts
	opts     MosquittoOptions
	port     int
	tlsPort  int

	mu   sync.Mutex
	cmd  *exec.Cmd
	exit chan error
}

var _ Server = (*Mosquitto)(nil)

// NewMosquitto starts mosquitto with acc's password file, the generated
// ACL file and config on a free loopback port. It is stopped at the end of
// the test; its log is printed when the test fails.
func NewMosquitto(tb testing.TB, acc *Accounts, opts MosquittoOptions) *Mosquitto {
	tb.Helper()
	m := &Mosquitto{bin: MosquittoPath(tb), dir: tb.TempDir(), acc: acc, opts: opts, port: FreePort(tb)}
	if opts.TLS != nil {
		m.tlsPort = FreePort(tb)
	}
	m.Start(tb)
	tb.Cleanup(func() {
		m.Stop(tb)
		if tb.Failed() {
			if b, err := os.ReadFile(m.LogFile()); err == nil {
				tb.Logf("mosquitto log:\n%s", tail(b, 8000))
			}
		}
	})
	return m
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// Name returns "mosquitto".
func (m *Mosquitto) Name() string { return "mosquitto" }

// URL returns tcp://127.0.0.1:<port>.
func (m *Mosquitto) URL() string { return fmt.Sprintf("tcp://127.0.0.1:%d", m.port) }

// TLSURL returns ssl://127.0.0.1:<tls port>, or "" without TLS.
func (m *Mosquitto) TLSURL() string {
	if m.tlsPort == 0 {
		return ""
	}
	return fmt.Sprintf("ssl://127.0.0.1:%d", m.tlsPort)
}

// LogFile is where mosquitto logs.
func (m *Mosquitto) LogFile() string { return filepath.Join(m.dir, "mosquitto.log") }

// Dir is the directory holding the generated files.
func (m *Mosquitto) Dir() string { return m.dir }

// writeFiles (re)writes the password, ACL and config files.
func (m *Mosquitto) writeFiles(tb testing.TB) string {
	tb.Helper()
	var pw, acl bytes.Buffer
	entries := m.acc.PasswordEntries()
	a := broker.ACL{CloudUser: m.acc.CloudUser}
	for _, o := range m.opts.Operators {
		entries = append(entries, broker.PasswordEntry{User: o.ACL.User, Hash: o.Hash})
		a.Operators = append(a.Operators, o.ACL)
	}
	if err := broker.WritePasswordFile(&pw, entries); err != nil {
		tb.Fatalf("WritePasswordFile: %v", err)
	}
	if err := broker.WriteACL(&acl, a); err != nil {
		tb.Fatalf("WriteACL: %v", err)
	}
	pwFile, aclFile := filepath.Join(m.dir, "passwd"), filepath.Join(m.dir, "acl")
	for f, b := range map[string][]byte{pwFile: pw.Bytes(), aclFile: acl.Bytes()} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	cfg := broker.MosquittoConfig{
		Addr:         fmt.Sprintf("127.0.0.1:%d", m.port),
		PasswordFile: pwFile,
		ACLFile:      aclFile,
		LogFile:      m.LogFile(),
	}
	if os.Geteuid() == 0 {
		cfg.User = "root"
	}
	if m.opts.Persistence {
		cfg.PersistenceDir = filepath.Join(m.dir, "data")
		if err := os.MkdirAll(cfg.PersistenceDir, 0o700); err != nil {
			tb.Fatal(err)
		}
	}
	var conf bytes.Buffer
	if _, err := cfg.WriteTo(&conf); err != nil {
		tb.Fatalf("MosquittoConfig.WriteTo: %v", err)
	}
	if p := m.opts.TLS; p != nil {
		tlsCfg := broker.MosquittoConfig{
			TLSAddr: fmt.Sprintf("127.0.0.1:%d", m.tlsPort), PasswordFile: pwFile, ACLFile: aclFile,
			TLSCertFile: p.ServerCert, TLSKeyFile: p.ServerKey,
		}
		if m.opts.ClientCerts {
			tlsCfg.TLSCAFile, tlsCfg.RequireClientCert = p.CAFile, true
		}
		var b bytes.Buffer
		if _, err := tlsCfg.WriteTo(&b); err != nil {
			tb.Fatalf("MosquittoConfig.WriteTo (tls): %v", err)
		}
		// Only the listener section of the second config is wanted.
		s := b.String()
		conf.WriteString(s[strings.Index(s, "\nlistener "):])
	}
	confFile := filepath.Join(m.dir, "mosquitto.conf")
	if err := os.WriteFile(confFile, conf.Bytes(), 0o600); err != nil {
		tb.Fatal(err)
	}
	return confFile
}

// Start writes the files (so enable/disable changes apply) and starts
// mosquitto; a no-op when running.
func (m *Mosquitto) Start(tb testing.TB) {
	tb.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		return
	}
	conf := m.writeFiles(tb)
	var lastErr error
	for attempt := 0; attempt < 20; attempt++ {
		cmd := exec.Command(m.bin, "-c", conf)
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stderr, &stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			tb.Fatalf("start %s: %v", m.bin, err)
		}
		exit := make(chan error, 1)
		go func() { exit <- cmd.Wait() }()
		err := waitListening(fmt.Sprintf("127.0.0.1:%d", m.port), exit)
		if err == nil && m.tlsPort != 0 {
			err = waitListening(fmt.Sprintf("127.0.0.1:%d", m.tlsPort), exit)
		}
		if err == nil {
			m.cmd, m.exit = cmd, exit
			return
		}
		_ = cmd.Process.Kill()
		<-exit
		lastErr = fmt.Errorf("%v; output: %s", err, stderr.String())
		// The port may still be held for a moment after a stop: retry.
		time.Sleep(100 * time.Millisecond)
	}
	log, _ := os.ReadFile(m.LogFile())
	tb.Fatalf("mosquitto did not start: %v\nlog:\n%s", lastErr, tail(log, 4000))
}

// Stop sends SIGTERM (mosquitto saves its persistence file then) and waits;
// after Wait it kills the process. A no-op when stopped.
func (m *Mosquitto) Stop(tb testing.TB) {
	tb.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exit:
	case <-time.After(Wait):
		tb.Errorf("mosquitto did not stop within %v of SIGTERM; killing it", Wait)
		_ = m.cmd.Process.Kill()
		<-m.exit
	}
	m.cmd = nil
}
