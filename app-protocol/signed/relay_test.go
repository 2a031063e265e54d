package signed_test

import (
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"testing"

	"beaconvend/app-protocol/signed"
)

func testTicket() signed.RelayTicket {
	g := testGrant()
	return signed.RelayTicket{Session: g.Session, Device: g.Device, Nonce: [16]byte{1, 2, 3}, Grant: sha256.Sum256([]byte("grant")), ExpiresAt: g.ExpiresAt}
}

// Relay tickets and usage acks sign, open and refuse like grants; a
// signature over one type never opens as another.
func TestRelayTicketAndUsageAck(t *testing.T) {
	cloud := mustKey(t)
	keys := mustKeys(t, pub(cloud))
	st, err := signed.SignRelayTicket(cloud, testTicket())
	if err != nil {
		t.Fatal(err)
	}
	got, err := signed.OpenRelayTicket(st, keys)
	want := testTicket()
	want.KeyID = signed.KeyIDOf(pub(cloud))
	if err != nil || got != want {
		t.Fatalf("OpenRelayTicket = %+v, %v; want %+v", got, err, want)
	}
	bad := append([]byte(nil), st...)
	bad[20] ^= 1
	if _, err := signed.OpenRelayTicket(bad, keys); !errors.Is(err, signed.ErrSignature) {
		t.Fatalf("altered ticket: %v", err)
	}
	ua, err := signed.SignUsageAck(cloud, signed.UsageAck{Device: "dev-0001", Session: want.Session, Report: [32]byte{9}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := signed.OpenUsageAck(ua, keys); err != nil {
		t.Fatal(err)
	}
	if _, err := signed.OpenRelayTicket(ua, keys); !errors.Is(err, signed.ErrType) {
		t.Fatalf("an ack opened as a ticket: %v, want %v", err, signed.ErrType)
	}
	if _, err := signed.OpenUsageAck(st, keys); !errors.Is(err, signed.ErrType) {
		t.Fatalf("a ticket opened as an ack: %v, want %v", err, signed.ErrType)
	}
	for name, tk := range map[string]signed.RelayTicket{
		"zero nonce":   func() signed.RelayTicket { x := testTicket(); x.Nonce = [16]byte{}; return x }(),
		"zero grant":   func() signed.RelayTicket { x := testTicket(); x.Grant = [32]byte{}; return x }(),
		"bad device":   func() signed.RelayTicket { x := testTicket(); x.Device = "Bad Device"; return x }(),
		"zero session": func() signed.RelayTicket { x := testTicket(); x.Session = [16]byte{}; return x }(),
	} {
		if _, err := signed.SignRelayTicket(cloud, tk); !errors.Is(err, signed.ErrField) {
			t.Errorf("%s: %v, want %v", name, err, signed.ErrField)
		}
	}
	if _, err := signed.SignRelayTicket(ed25519.PrivateKey{1}, testTicket()); !errors.Is(err, signed.ErrKey) {
		t.Errorf("short key: %v", err)
	}
}

func FuzzRelayDecode(f *testing.F) {
	tk := testTicket()
	body, _ := tk.MarshalBinary()
	f.Add(body)
	ack := signed.UsageAck{Device: "dev-0001", Session: tk.Session, Report: [32]byte{9}}
	abody, _ := ack.MarshalBinary()
	f.Add(abody)
	f.Add([]byte{signed.TagRelay, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r signed.RelayTicket
		if err := r.UnmarshalBinary(b); err == nil {
			again, err := r.MarshalBinary()
			if err != nil || string(again) != string(b) {
				t.Fatalf("ticket %x re-encodes as %x, %v", b, again, err)
			}
		}
		var a signed.UsageAck
		if err := a.UnmarshalBinary(b); err == nil {
			again, err := a.MarshalBinary()
			if err != nil || string(again) != string(b) {
				t.Fatalf("ack %x re-encodes as %x, %v", b, again, err)
			}
		}
	})
}
