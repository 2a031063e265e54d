package journal_test

import (
	"crypto/ed25519"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
	"beaconvend/controller/journal"
)

var (
	cloudKey  = ed25519.NewKeyFromSeed(make([]byte, 32))
	deviceKey = ed25519.NewKeyFromSeed([]byte("device-key-seed-0123456789abcdef"))
)

const testDevice = "dev-1"

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// fakeClock is a hand-moved clock for Opts.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: t0} }

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *fakeClock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// mustOpen opens a journal in a fresh temp dir (or at path) and closes it
// at the end of the test.
func mustOpen(tb testing.TB, path string, opts *journal.Opts) *journal.Journal {
	tb.Helper()
	if path == "" {
		path = filepath.Join(tb.TempDir(), "journal.db")
	}
	j, err := journal.Open(path, opts)
	if err != nil {
		tb.Fatalf("Open(%s) = %v", path, err)
	}
	tb.Cleanup(func() { j.Close() })
	return j
}

// mustGrant returns a valid grant for machine, issued at now, and its
// signed bytes.
func mustGrant(tb testing.TB, machine string, now time.Time) (signed.Grant, []byte) {
	tb.Helper()
	g := signed.Grant{
		Session: vend.NewSessionID(), Device: testDevice, Machine: machine,
		Unit: vend.UnitML, Price: vend.Price{Minor: 5, Per: 100}, Currency: "EUR",
		CapUnits: 5000, CapMoney: 250,
		IssuedAt: now.Truncate(time.Millisecond), ExpiresAt: now.Add(2 * time.Minute).Truncate(time.Millisecond),
	}
	b, err := signed.SignGrant(cloudKey, g)
	if err != nil {
		tb.Fatalf("SignGrant = %v", err)
	}
	g.KeyID = signed.KeyIDOf(cloudKey.Public().(ed25519.PublicKey))
	return g, b
}

func signer(u signed.Usage) ([]byte, error) { return signed.SignUsage(deviceKey, u) }

// mustEvent returns an encoded evt message for session id.
func mustEvent(tb testing.TB, kind mqttapi.EventKind, id vend.SessionID, now time.Time) journal.Outgoing {
	tb.Helper()
	m := &mqttapi.Event{Envelope: mqttapi.NewEnvelope(now), Kind: kind, Session: id, Machine: "m1"}
	switch kind {
	case mqttapi.EventAuthorized:
		m.Amount = &vend.Amount{Minor: 250, Currency: "EUR"}
	case mqttapi.EventProgress, mqttapi.EventEnded:
		units := uint64(10)
		m.Units, m.Unit, m.Amount = &units, vend.UnitML, &vend.Amount{Minor: 1, Currency: "EUR"}
		if kind == mqttapi.EventEnded {
			m.Outcome = vend.OutcomeUserStop
		}
	}
	b, err := mqttapi.Encode(m)
	if err != nil {
		tb.Fatalf("Encode(%s) = %v", kind, err)
	}
	return journal.Outgoing{Leaf: mqttapi.LeafEvt, MsgID: m.ID, Payload: b}
}

// mustStart accepts a grant on machine and moves it to running with the
// meter at meterStart; it returns the session ID.
func mustStart(tb testing.TB, j *journal.Journal, machine string, now time.Time, meterStart uint64) vend.SessionID {
	tb.Helper()
	g, b := mustGrant(tb, machine, now)
	if err := j.Accept(g, b); err != nil {
		tb.Fatalf("Accept(%s) = %v", machine, err)
	}
	if err := j.Transition(g.Session, journal.Running, func(s *journal.Session) { s.MeterStart = meterStart }); err != nil {
		tb.Fatalf("Transition(running) = %v", err)
	}
	return g.Session
}

// wantCode fails unless err carries code and kind.
func wantCode(tb testing.TB, what string, err error, code string, kind vend.Kind) {
	tb.Helper()
	if vend.CodeOf(err) != code || vend.KindOf(err) != kind {
		tb.Fatalf("%s = %v (code %q kind %q), want code %q kind %q", what, err, vend.CodeOf(err), vend.KindOf(err), code, kind)
	}
}

func mustKeys(tb testing.TB, priv ed25519.PrivateKey) signed.Keys {
	tb.Helper()
	ks, err := signed.NewKeys(priv.Public().(ed25519.PublicKey))
	if err != nil {
		tb.Fatal(err)
	}
	return ks
}

func writeFile(path string, b []byte) error { return os.WriteFile(path, b, 0o600) }
