package gattapi_test

import (
	"bytes"
	"crypto/ed25519"
	"testing"
	"time"

	"beaconvend/app-protocol/gattapi"
	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
)

// FuzzDecode: no decoder panics; what one accepts re-encodes to the same
// bytes (one encoding per value).
func FuzzDecode(f *testing.F) {
	for _, c := range build(f).Cases {
		if c.Bytes != "" {
			f.Add(unhex(f, c.Bytes))
		}
		for _, ch := range c.Chunks {
			f.Add(unhex(f, ch))
		}
	}
	f.Add([]byte{})
	f.Add([]byte{1, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, m := range []codec{&gattapi.RelayGrant{}, &gattapi.Progress{}, &gattapi.Receipt{}, &gattapi.Ack{}, &gattapi.ClaimInfo{}} {
			if err := m.UnmarshalBinary(b); err != nil {
				if vend.CodeOf(err) == "internal" {
					t.Fatalf("%T: error without a code: %v", m, err)
				}
				continue
			}
			again, err := m.MarshalBinary()
			if err != nil {
				t.Fatalf("%T decoded %x but cannot encode it: %v", m, b, err)
			}
			if !bytes.Equal(again, b) {
				t.Fatalf("%T decoded %x, re-encoded %x", m, b, again)
			}
		}
	})
}

// FuzzReassemble: chunks in any order and size never panic, never hold
// more than Max bytes, and a finished message is at most Max bytes.
func FuzzReassemble(f *testing.F) {
	f.Add([]byte{0, 0, 0, 2, 1, 2, 0, 1, 0, 2, 3}, uint8(6))
	f.Add([]byte{0, 0, 0, 1, 9}, uint8(5))
	f.Add([]byte{0, 1, 0, 0, 9, 9}, uint8(3))
	f.Fuzz(func(t *testing.T, stream []byte, step uint8) {
		r := gattapi.Reassembler{Max: 64}
		n := int(step%16) + 1
		for len(stream) > 0 {
			c := stream[:min(n, len(stream))]
			stream = stream[len(c):]
			msg, done, err := r.Add(c)
			if err != nil && (done || msg != nil) {
				t.Fatalf("Add(%x) = %x, %v, %v", c, msg, done, err)
			}
			if len(msg) > 64 {
				t.Fatalf("message of %d bytes over Max 64", len(msg))
			}
		}
	})
}

// FuzzCheckRelay: arbitrary values never panic the board's check, and
// nothing but the intact value is accepted.
func FuzzCheckRelay(f *testing.F) {
	good := relayValue(f, cloudKey, nil)
	f.Add(good)
	f.Add(good[:100])
	f.Add(append(bytes.Clone(good), 0))
	keys, err := signed.NewKeys(cloudKey.Public().(ed25519.PublicKey))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, err := gattapi.CheckRelay(b, gattapi.RelayCheck{Keys: keys, Device: "wash-01", Machines: []string{"washer1"}, Now: t0.Add(time.Second),
			Seen: func(vend.SessionID) (bool, error) { return false, nil }, NonceSeen: func([16]byte) (bool, error) { return false, nil }})
		if err == nil && !bytes.Equal(b, good) {
			t.Fatalf("accepted %x, which is not the signed value", b)
		}
	})
}
