package signed_test

import (
	"crypto/ed25519"
	"testing"
	"time"

	"beaconvend/app-protocol/signed"
)

// The canonical decoders must never panic, and whatever they accept must
// re-encode to the same bytes (one encoding per value).
func FuzzGrantDecode(f *testing.F) {
	g := testGrant()
	body, _ := g.MarshalBinary()
	f.Add(body)
	f.Add(body[:10])
	f.Add([]byte{signed.TagGrant, 2})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var g signed.Grant
		if err := g.UnmarshalBinary(b); err != nil {
			return
		}
		again, err := g.MarshalBinary()
		if err != nil {
			t.Fatalf("accepted %x but cannot re-encode: %v", b, err)
		}
		if string(again) != string(b) {
			t.Fatalf("not canonical: %x re-encodes as %x", b, again)
		}
	})
}

func FuzzUsageDecode(f *testing.F) {
	u := testUsage()
	body, _ := u.MarshalBinary()
	f.Add(body)
	u.StartedAt = time.Time{}
	u.Units, u.Amount = 0, 0
	body2, _ := u.MarshalBinary()
	f.Add(body2)
	f.Add(body[:20])
	f.Add([]byte{signed.TagUsage, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		var u signed.Usage
		if err := u.UnmarshalBinary(b); err != nil {
			_, _ = signed.PeekUsageDevice(b)
			return
		}
		again, err := u.MarshalBinary()
		if err != nil {
			t.Fatalf("accepted %x but cannot re-encode: %v", b, err)
		}
		if string(again) != string(b) {
			t.Fatalf("not canonical: %x re-encodes as %x", b, again)
		}
	})
}

// Verification of arbitrary bytes never panics and never succeeds without the key.
func FuzzVerifyGrant(f *testing.F) {
	seed := ed25519.NewKeyFromSeed(make([]byte, 32))
	keys, _ := signed.NewKeys(seed.Public().(ed25519.PublicKey))
	sg, _ := signed.SignGrant(seed, testGrant())
	f.Add(sg)
	f.Add(sg[:70])
	f.Fuzz(func(t *testing.T, b []byte) {
		c := check(keys, seenSet{})
		g, err := signed.VerifyGrant(b, c)
		if err == nil && string(b) != string(sg) {
			t.Fatalf("accepted a grant the key never signed: %+v", g)
		}
	})
}
