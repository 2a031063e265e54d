package signed_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
)

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func mustKey(tb testing.TB) ed25519.PrivateKey {
	tb.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return priv
}

func pub(p ed25519.PrivateKey) ed25519.PublicKey { return p.Public().(ed25519.PublicKey) }

func mustKeys(tb testing.TB, pubs ...ed25519.PublicKey) signed.Keys {
	tb.Helper()
	ks, err := signed.NewKeys(pubs...)
	if err != nil {
		tb.Fatal(err)
	}
	return ks
}

func testGrant() signed.Grant {
	return signed.Grant{
		Session:   vend.SessionID{0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x46, 0x17, 0x98, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f},
		Device:    "dev-0001",
		Machine:   "m1",
		Slot:      "",
		Unit:      vend.UnitML,
		Price:     vend.Price{Minor: 50, Per: 1000},
		Currency:  "EUR",
		CapUnits:  4000,
		CapMoney:  200,
		IssuedAt:  t0,
		ExpiresAt: t0.Add(60 * time.Second),
		Window:    uint32(t0.Unix()) &^ 31,
		WindowK:   5,
	}
}

type seenSet map[vend.SessionID]bool

func (s seenSet) seen(id vend.SessionID) (bool, error) { return s[id], nil }

func check(keys signed.Keys, seen seenSet) signed.GrantCheck {
	return signed.GrantCheck{Keys: keys, Device: "dev-0001", Machine: "m1", Now: t0.Add(time.Second), Skew: 5 * time.Second, Seen: seen.seen}
}

func TestGrantRoundTrip(t *testing.T) {
	cloud := mustKey(t)
	sg, err := signed.SignGrant(cloud, testGrant())
	if err != nil {
		t.Fatal(err)
	}
	g, err := signed.VerifyGrant(sg, check(mustKeys(t, pub(cloud)), seenSet{}))
	if err != nil {
		t.Fatalf("VerifyGrant: %v", err)
	}
	want := testGrant()
	want.KeyID = signed.KeyIDOf(pub(cloud))
	if g != want {
		t.Errorf("VerifyGrant = %+v, want %+v", g, want)
	}
}

// A grant captured off the broker or a phone must not authorize anything
// else than what the cloud signed.
func TestCapturedGrantCannotBeRepurposed(t *testing.T) {
	cloud := mustKey(t)
	keys := mustKeys(t, pub(cloud))
	sg, err := signed.SignGrant(cloud, testGrant())
	if err != nil {
		t.Fatal(err)
	}
	// Re-encode an altered body and staple the captured signature to it.
	alter := func(f func(*signed.Grant)) []byte {
		g := testGrant()
		g.KeyID = signed.KeyIDOf(pub(cloud))
		f(&g)
		body, err := g.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		return append(body, sg[len(sg)-ed25519.SignatureSize:]...)
	}
	cases := []struct {
		name  string
		grant []byte
		chk   func(*signed.GrantCheck)
		want  *vend.Error
	}{
		{"other device, same bytes", sg, func(c *signed.GrantCheck) { c.Device = "dev-0002" }, signed.ErrWrongDevice},
		{"other machine, same bytes", sg, func(c *signed.GrantCheck) { c.Machine = "m2" }, signed.ErrWrongMachine},
		{"device field rewritten", alter(func(g *signed.Grant) { g.Device = "dev-0002" }), func(c *signed.GrantCheck) { c.Device = "dev-0002" }, signed.ErrSignature},
		{"machine field rewritten", alter(func(g *signed.Grant) { g.Machine = "m2" }), func(c *signed.GrantCheck) { c.Machine = "m2" }, signed.ErrSignature},
		{"slot rewritten", alter(func(g *signed.Grant) { g.Slot = "a7" }), nil, signed.ErrSignature},
		{"price lowered", alter(func(g *signed.Grant) { g.Price.Minor = 1 }), nil, signed.ErrSignature},
		{"cap raised", alter(func(g *signed.Grant) { g.CapUnits, g.CapMoney = 40000, 2000 }), nil, signed.ErrSignature},
		{"expiry extended", alter(func(g *signed.Grant) { g.ExpiresAt = g.ExpiresAt.Add(time.Hour) }), nil, signed.ErrSignature},
		{"new session id", alter(func(g *signed.Grant) { g.Session[0] ^= 1 }), nil, signed.ErrSignature},
		{"expired", sg, func(c *signed.GrantCheck) { c.Now = t0.Add(61 * time.Second) }, signed.ErrExpired},
		{"issued in the future", sg, func(c *signed.GrantCheck) { c.Now = t0.Add(-time.Minute) }, signed.ErrNotYetValid},
		{"untrusted key", sg, func(c *signed.GrantCheck) { c.Keys = mustKeys(t, pub(mustKey(t))) }, signed.ErrUnknownKey},
		{"no session log", sg, func(c *signed.GrantCheck) { c.Seen = nil }, signed.ErrReplayed},
		{"truncated", sg[:len(sg)-1], nil, signed.ErrSignature},
		{"empty", nil, nil, signed.ErrTruncated},
		{"oversized", make([]byte, 4096), nil, signed.ErrTooLong},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := check(keys, seenSet{})
			if tc.chk != nil {
				tc.chk(&c)
			}
			_, err := signed.VerifyGrant(tc.grant, c)
			if !errors.Is(err, tc.want) {
				t.Fatalf("VerifyGrant = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestGrantSecondSessionRefused(t *testing.T) {
	cloud := mustKey(t)
	keys := mustKeys(t, pub(cloud))
	sg, err := signed.SignGrant(cloud, testGrant())
	if err != nil {
		t.Fatal(err)
	}
	seen := seenSet{}
	g, err := signed.VerifyGrant(sg, check(keys, seen))
	if err != nil {
		t.Fatal(err)
	}
	seen[g.Session] = true // the device records the session as it starts it
	if _, err := signed.VerifyGrant(sg, check(keys, seen)); !errors.Is(err, signed.ErrReplayed) {
		t.Fatalf("replayed grant: %v, want %v", err, signed.ErrReplayed)
	}
	if vend.KindOf(signed.ErrReplayed) != vend.Conflict {
		t.Errorf("replay kind = %s", vend.KindOf(signed.ErrReplayed))
	}
}

func TestGrantKeyRotation(t *testing.T) {
	old, next := mustKey(t), mustKey(t)
	keys := mustKeys(t, pub(old), pub(next))
	for i, k := range []ed25519.PrivateKey{old, next} {
		g := testGrant()
		g.Session[15] = byte(i)
		sg, err := signed.SignGrant(k, g)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := signed.VerifyGrant(sg, check(keys, seenSet{})); err != nil {
			t.Errorf("key %d: %v", i, err)
		}
	}
}

func TestGrantValidate(t *testing.T) {
	cloud := mustKey(t)
	cases := []struct {
		name string
		f    func(*signed.Grant)
	}{
		{"zero session", func(g *signed.Grant) { g.Session = vend.SessionID{} }},
		{"bad device", func(g *signed.Grant) { g.Device = "Dev/1" }},
		{"bad machine", func(g *signed.Grant) { g.Machine = "" }},
		{"bad slot", func(g *signed.Grant) { g.Slot = "a b" }},
		{"unknown unit", func(g *signed.Grant) { g.Unit = 9 }},
		{"per zero", func(g *signed.Grant) { g.Price.Per = 0 }},
		{"negative price", func(g *signed.Grant) { g.Price.Minor = -1 }},
		{"currency", func(g *signed.Grant) { g.Currency = "eur" }},
		{"zero cap", func(g *signed.Grant) { g.CapUnits = 0 }},
		{"cap money below cost", func(g *signed.Grant) { g.CapMoney = 199 }},
		{"expiry before issue", func(g *signed.Grant) { g.ExpiresAt = g.IssuedAt }},
		{"window k", func(g *signed.Grant) { g.WindowK = 16 }},
		{"window unaligned", func(g *signed.Grant) { g.Window++ }},
	}
	for _, tc := range cases {
		g := testGrant()
		tc.f(&g)
		if _, err := signed.SignGrant(cloud, g); !errors.Is(err, signed.ErrField) {
			t.Errorf("%s: SignGrant = %v, want %v", tc.name, err, signed.ErrField)
		}
	}
}

func TestGrantStrictDecoding(t *testing.T) {
	g := testGrant()
	body, err := g.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		b    []byte
		want *vend.Error
	}{
		{"trailing byte", append(bytes.Clone(body), 0), signed.ErrTrailing},
		{"short", body[:len(body)-1], signed.ErrTruncated},
		{"usage tag", append([]byte{signed.TagUsage}, body[1:]...), signed.ErrType},
		{"version 2", append([]byte{signed.TagGrant, 2}, body[2:]...), signed.ErrVersion},
		{"empty", nil, signed.ErrTruncated},
	}
	for _, tc := range cases {
		var got signed.Grant
		if err := got.UnmarshalBinary(tc.b); !errors.Is(err, tc.want) {
			t.Errorf("%s: UnmarshalBinary(%x) = %v, want %v", tc.name, tc.b, err, tc.want)
		}
	}
}

func testUsage() signed.Usage {
	g := testGrant()
	return signed.Usage{
		Device: g.Device, Seq: 7, Session: g.Session, Machine: g.Machine, Unit: g.Unit,
		Units: 1234, Price: g.Price, Currency: g.Currency, Amount: 61,
		StartedAt: t0.Add(2 * time.Second), EndedAt: t0.Add(40 * time.Second),
		MeterStart: 100000, MeterEnd: 100555, Outcome: vend.OutcomeUserStop,
	}
}

func TestUsageRoundTripAndGrantCheck(t *testing.T) {
	dev := mustKey(t)
	su, err := signed.SignUsage(dev, testUsage())
	if err != nil {
		t.Fatal(err)
	}
	if d, err := signed.PeekUsageDevice(su); err != nil || d != "dev-0001" {
		t.Fatalf("PeekUsageDevice = %q, %v", d, err)
	}
	u, err := signed.OpenUsage(su, mustKeys(t, pub(dev)))
	if err != nil {
		t.Fatal(err)
	}
	want := testUsage()
	want.KeyID = signed.KeyIDOf(pub(dev))
	if u != want {
		t.Errorf("OpenUsage = %+v, want %+v", u, want)
	}
	if err := signed.CheckAgainstGrant(u, testGrant()); err != nil {
		t.Errorf("CheckAgainstGrant: %v", err)
	}
	over := u
	over.Units, over.Amount = 4001, 200
	if err := signed.CheckAgainstGrant(over, testGrant()); !errors.Is(err, signed.ErrMismatch) {
		t.Errorf("units over cap: %v, want %v", err, signed.ErrMismatch)
	}
	cheap := u
	cheap.Price.Minor = 49
	if err := signed.CheckAgainstGrant(cheap, testGrant()); !errors.Is(err, signed.ErrMismatch) {
		t.Errorf("price differs: %v, want %v", err, signed.ErrMismatch)
	}
}

// A usage report captured in transit can be neither altered nor charged twice.
func TestCapturedUsageCannotBeAlteredOrReplayed(t *testing.T) {
	dev := mustKey(t)
	keys := mustKeys(t, pub(dev))
	su, err := signed.SignUsage(dev, testUsage())
	if err != nil {
		t.Fatal(err)
	}
	// Flip every bit of the body in turn: each must break the signature or the decoding.
	body := len(su) - ed25519.SignatureSize
	for i := 0; i < body*8; i++ {
		m := bytes.Clone(su)
		m[i/8] ^= 1 << (i % 8)
		if _, err := signed.OpenUsage(m, keys); err == nil {
			t.Fatalf("bit %d flipped: OpenUsage accepted %x", i, m)
		}
	}
	// Another device's key cannot sign for this device.
	other := mustKey(t)
	forged, err := signed.SignUsage(other, testUsage())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := signed.OpenUsage(forged, keys); !errors.Is(err, signed.ErrUnknownKey) {
		t.Errorf("forged: %v, want %v", err, signed.ErrUnknownKey)
	}

	var guard signed.UsageGuard
	u, err := signed.OpenUsage(su, keys)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := guard.Accept(u, signed.Digest(su)); d != signed.Fresh || err != nil {
		t.Fatalf("first delivery = %v, %v; want Fresh", d, err)
	}
	for i := 0; i < 4; i++ {
		if d, err := guard.Accept(u, signed.Digest(su)); d != signed.Duplicate || err != nil {
			t.Fatalf("redelivery %d = %v, %v; want Duplicate", i, d, err)
		}
	}
	// A second, validly signed but different report for the same session.
	u2 := testUsage()
	u2.Seq, u2.Units, u2.Amount = 8, 2000, 100
	su2, err := signed.SignUsage(dev, u2)
	if err != nil {
		t.Fatal(err)
	}
	v2, err := signed.OpenUsage(su2, keys)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := guard.Accept(v2, signed.Digest(su2)); !errors.Is(err, signed.ErrUsageConflict) {
		t.Errorf("second report for a settled session: %v, want %v", err, signed.ErrUsageConflict)
	}
	// A report for another session reusing a sequence number.
	u3 := testUsage()
	u3.Session[0] ^= 0xff
	su3, err := signed.SignUsage(dev, u3)
	if err != nil {
		t.Fatal(err)
	}
	v3, _ := signed.OpenUsage(su3, keys)
	if _, err := guard.Accept(v3, signed.Digest(su3)); !errors.Is(err, signed.ErrSeqReused) {
		t.Errorf("reused seq: %v, want %v", err, signed.ErrSeqReused)
	}
}

func TestUsageValidate(t *testing.T) {
	dev := mustKey(t)
	cases := []struct {
		name string
		f    func(*signed.Usage)
	}{
		{"amount not price × units", func(u *signed.Usage) { u.Amount++ }},
		{"seq zero", func(u *signed.Usage) { u.Seq = 0 }},
		{"ended before started", func(u *signed.Usage) { u.EndedAt = u.StartedAt.Add(-time.Millisecond) }},
		{"meter backwards", func(u *signed.Usage) { u.MeterEnd = u.MeterStart - 1 }},
		{"unknown outcome", func(u *signed.Usage) { u.Outcome = 0 }},
		{"zero session", func(u *signed.Usage) { u.Session = vend.SessionID{} }},
	}
	for _, tc := range cases {
		u := testUsage()
		tc.f(&u)
		if _, err := signed.SignUsage(dev, u); !errors.Is(err, signed.ErrField) {
			t.Errorf("%s: SignUsage = %v, want %v", tc.name, err, signed.ErrField)
		}
	}
	// A session that never started encodes its zero start time as 0 and decodes it back as zero.
	u := testUsage()
	u.StartedAt, u.Units, u.Amount, u.MeterEnd, u.Outcome = time.Time{}, 0, 0, u.MeterStart, vend.OutcomeNotStarted
	su, err := signed.SignUsage(dev, u)
	if err != nil {
		t.Fatal(err)
	}
	got, err := signed.OpenUsage(su, mustKeys(t, pub(dev)))
	if err != nil || !got.StartedAt.IsZero() {
		t.Errorf("not-started report: %v, %v", got.StartedAt, err)
	}
}

func BenchmarkSignGrant(b *testing.B) {
	k := mustKey(b)
	g := testGrant()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := signed.SignGrant(k, g); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyGrant(b *testing.B) {
	k := mustKey(b)
	sg, _ := signed.SignGrant(k, testGrant())
	c := check(mustKeys(b, pub(k)), seenSet{})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := signed.VerifyGrant(sg, c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSignUsage(b *testing.B) {
	k := mustKey(b)
	u := testUsage()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := signed.SignUsage(k, u); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpenUsage(b *testing.B) {
	k := mustKey(b)
	su, _ := signed.SignUsage(k, testUsage())
	keys := mustKeys(b, pub(k))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := signed.OpenUsage(su, keys); err != nil {
			b.Fatal(err)
		}
	}
}
