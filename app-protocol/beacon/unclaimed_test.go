package beacon_test

import (
	"bytes"
	"testing"

	"beaconvend/app-protocol/beacon"
	"beaconvend/app-protocol/vend"
)

// The unclaimed frame and the legacy frame share one scan: each decoder
// refuses the other's frame by its version, and the unclaimed one round-trips.
func TestUnclaimedFrame(t *testing.T) {
	key := bytes.Repeat([]byte{0x42}, 32)
	u := beacon.Unclaimed{CompanyID: 0xFFFF, TxPower: -59, Tag: beacon.ClaimTag(key)}
	adv := u.Encode()
	if len(adv) != beacon.FrameLen {
		t.Fatalf("unclaimed frame of %d bytes, want %d", len(adv), beacon.FrameLen)
	}
	got, err := beacon.DecodeUnclaimed(adv, 0xFFFF)
	if err != nil || got != u {
		t.Fatalf("DecodeUnclaimed(%x) = %+v, %v; want %+v", adv, got, err, u)
	}
	if _, err := beacon.Decode(adv, 0xFFFF); vend.CodeOf(err) != beacon.ErrVersion.Code {
		t.Fatalf("legacy Decode of an unclaimed frame = %v, want %s", err, beacon.ErrVersion.Code)
	}
	legacy, err := beacon.Frame{CompanyID: 0xFFFF, State: beacon.Idle, TxPower: -59, ID: testID}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := beacon.DecodeUnclaimed(legacy, 0xFFFF); vend.CodeOf(err) != beacon.ErrVersion.Code {
		t.Fatalf("DecodeUnclaimed of a legacy frame = %v, want %s", err, beacon.ErrVersion.Code)
	}
	bad := bytes.Clone(adv)
	bad[9] = 1 // the reserved byte
	if _, err := beacon.DecodeUnclaimed(bad, 0xFFFF); vend.CodeOf(err) != beacon.ErrReserved.Code {
		t.Fatalf("reserved byte set: %v, want %s", err, beacon.ErrReserved.Code)
	}
	for n := range adv {
		if _, err := beacon.DecodeUnclaimed(adv[:n], 0xFFFF); err == nil {
			t.Fatalf("DecodeUnclaimed accepted %d of %d bytes", n, len(adv))
		}
	}
}

// FuzzDecodeUnclaimed: never panics; what it accepts re-encodes to bytes
// found in the input.
func FuzzDecodeUnclaimed(f *testing.F) {
	f.Add(beacon.Unclaimed{CompanyID: 0xFFFF, TxPower: -59}.Encode())
	f.Add([]byte{2, 1, 6, 0x0f, 0xff, 0xff, 0xff, 0xbc, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		u, err := beacon.DecodeUnclaimed(b, 0xFFFF)
		if err != nil {
			return
		}
		if !bytes.Contains(b, u.ManufacturerData()) {
			t.Fatalf("decoded %+v from %x; its encoding is not in the input", u, b)
		}
	})
}
