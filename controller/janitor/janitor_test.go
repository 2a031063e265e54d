package janitor_test

import (
	"crypto/ed25519"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
	"beaconvend/controller/janitor"
	"beaconvend/controller/journal"
)

var (
	cloudKey  = ed25519.NewKeyFromSeed(make([]byte, 32))
	deviceKey = ed25519.NewKeyFromSeed([]byte("device-key-seed-0123456789abcdef"))
	t0        = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func grant(tb testing.TB, machine string, now time.Time) (signed.Grant, []byte) {
	tb.Helper()
	g := signed.Grant{
		Session: vend.NewSessionID(), Device: "dev-1", Machine: machine,
		Unit: vend.UnitML, Price: vend.Price{Minor: 5, Per: 100}, Currency: "EUR",
		CapUnits: 5000, CapMoney: 250,
		IssuedAt: now.Truncate(time.Millisecond), ExpiresAt: now.Add(20 * time.Second).Truncate(time.Millisecond),
	}
	b, err := signed.SignGrant(cloudKey, g)
	if err != nil {
		tb.Fatal(err)
	}
	g.KeyID = signed.KeyIDOf(cloudKey.Public().(ed25519.PublicKey))
	return g, b
}

func sign(u signed.Usage) ([]byte, error) { return signed.SignUsage(deviceKey, u) }

// sell runs one session through the journal to reported (acked: settled).
func sell(tb testing.TB, j *journal.Journal, machine string, now time.Time, ack bool) (signed.Grant, []byte) {
	tb.Helper()
	g, b := grant(tb, machine, now)
	if err := j.Accept(g, b); err != nil {
		tb.Fatal(err)
	}
	if err := j.Transition(g.Session, journal.Running, nil); err != nil {
		tb.Fatal(err)
	}
	if err := j.Meter(g.Session, 300, 300); err != nil {
		tb.Fatal(err)
	}
	if err := j.Transition(g.Session, journal.Ending, func(s *journal.Session) { s.Outcome = vend.OutcomeCapReached }); err != nil {
		tb.Fatal(err)
	}
	s, err := j.EndSession(g.Session, sign)
	if err != nil {
		tb.Fatal(err)
	}
	if ack {
		if _, err := j.Ack(s.UsageMsgID); err != nil {
			tb.Fatal(err)
		}
	}
	return g, b
}

// The janitor deletes settled sessions past the retention and seen
// entries past their bound, and nothing the cloud has not acknowledged,
// nothing live and nothing recent.
func TestSweepPrunesOnlyWhatIsPastItsBound(t *testing.T) {
	c := &clock{t: t0}
	j, err := journal.Open(filepath.Join(t.TempDir(), "journal.db"), &journal.Opts{Now: c.Now, MeterInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	old, oldBytes := sell(t, j, "m1", c.Now(), true)
	unacked, _ := sell(t, j, "m2", c.Now(), false)
	cancelled := vend.NewSessionID()
	if _, err := j.Cancel(cancelled, c.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	c.Advance(7*24*time.Hour + time.Minute)
	recent, _ := sell(t, j, "m3", c.Now(), true)
	live, liveBytes := grant(t, "m4", c.Now())
	if err := j.Accept(live, liveBytes); err != nil {
		t.Fatal(err)
	}
	jn := janitor.New(j, janitor.Opts{Now: c.Now})
	r, err := jn.Sweep()
	if err != nil {
		t.Fatal(err)
	}
	if r.Sessions != 1 || r.Seen != 2 {
		t.Errorf("sweep = %+v, want the old settled session and 2 seen entries (its own, the old cancellation)", r)
	}
	if _, err := j.Get(old.Session); vend.CodeOf(err) != mqttapi.CodeSessionUnknown {
		t.Errorf("old settled session: %v, want it pruned", err)
	}
	for name, id := range map[string]vend.SessionID{"unacknowledged": unacked.Session, "recent": recent.Session, "live": live.Session} {
		if _, err := j.Get(id); err != nil {
			t.Errorf("%s session pruned: %v", name, err)
		}
		if seen, _ := j.Seen(id); !seen {
			t.Errorf("%s session's seen entry pruned", name)
		}
	}
	// The pruned session's grant, replayed, is still refused: expired.
	_, err = signed.VerifyGrant(oldBytes, signed.GrantCheck{Keys: keys(t), Device: "dev-1", Machine: "m1", Now: c.Now(), Skew: 30 * time.Second, Seen: j.Seen})
	if vend.CodeOf(err) != mqttapi.CodeGrantExpired {
		t.Errorf("replay of a pruned session's grant: %v, want %s", err, mqttapi.CodeGrantExpired)
	}
	// A second sweep has nothing to do and writes nothing.
	before := j.Stats().Commits
	if r, err := jn.Sweep(); err != nil || r != (janitor.Result{}) {
		t.Errorf("second sweep = %+v, %v", r, err)
	}
	if after := j.Stats().Commits; after != before {
		t.Errorf("an empty sweep committed %d times", after-before)
	}
}

func keys(tb testing.TB) signed.Keys {
	ks, err := signed.NewKeys(cloudKey.Public().(ed25519.PublicKey))
	if err != nil {
		tb.Fatal(err)
	}
	return ks
}

// Relay nonces are kept until their ticket's expiry plus the margin, then
// pruned in the sweep; a nonce still in its bound stays.
func TestSweepPrunesExpiredNonces(t *testing.T) {
	c := &clock{t: t0}
	j, err := journal.Open(filepath.Join(t.TempDir(), "journal.db"), &journal.Opts{Now: c.Now, MeterInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	old, oldBytes := grant(t, "m1", c.Now())
	oldNonce := [16]byte{1}
	if err := j.AcceptRelay(old, oldBytes, journal.Relay{Nonce: oldNonce, ExpiresAt: old.ExpiresAt}); err != nil {
		t.Fatal(err)
	}
	c.Advance(2 * time.Hour)
	fresh, freshBytes := grant(t, "m2", c.Now())
	freshNonce := [16]byte{2}
	if err := j.AcceptRelay(fresh, freshBytes, journal.Relay{Nonce: freshNonce, ExpiresAt: fresh.ExpiresAt}); err != nil {
		t.Fatal(err)
	}
	jn := janitor.New(j, janitor.Opts{Now: c.Now, SeenMargin: time.Hour})
	r, err := jn.Sweep()
	if err != nil {
		t.Fatal(err)
	}
	if r.Nonces != 1 {
		t.Errorf("sweep = %+v, want 1 nonce pruned", r)
	}
	if seen, _ := j.NonceSeen(oldNonce); seen {
		t.Error("nonce past its ticket's expiry and the margin kept")
	}
	if seen, _ := j.NonceSeen(freshNonce); !seen {
		t.Error("nonce within its bound pruned")
	}
}
