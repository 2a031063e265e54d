package beacon_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"beaconvend/hw/ble/goble/linux/adv"

	"beaconvend/app-protocol/beacon"
	"beaconvend/app-protocol/proxid"
	"beaconvend/app-protocol/vend"
)

var testID = proxid.ID{0xde, 0xad, 0xbe, 0xef, 0x01, 0x23, 0x45, 0x67}

func TestEncodeLayout(t *testing.T) {
	f := beacon.Frame{CompanyID: 0xFFFF, State: beacon.Busy, OfflineCapable: true, TxPower: -59, ID: testID}
	b, err := f.Encode()
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{
		0x02, 0x01, 0x06, // Flags: LE General Discoverable, BR/EDR not supported
		0x0F, 0xFF, 0xFF, 0xFF, // MSD, length 15, company 0xFFFF LE
		0xBC, 0x01, 0x05, 0xC5, // magic, version 1, busy|offline-capable, -59 dBm
		0xde, 0xad, 0xbe, 0xef, 0x01, 0x23, 0x45, 0x67,
	}
	if !bytes.Equal(b, want) {
		t.Fatalf("Encode = % x\nwant     % x", b, want)
	}
	if len(b) != beacon.FrameLen || len(b) > beacon.MaxAdvLen {
		t.Errorf("len = %d, FrameLen %d", len(b), beacon.FrameLen)
	}
}

func TestRoundTrip(t *testing.T) {
	for _, st := range []beacon.State{beacon.Idle, beacon.Busy, beacon.Fault, beacon.Offline} {
		for _, oc := range []bool{false, true} {
			for _, company := range []uint16{0xFFFF, 0x0059, 0x1234} {
				f := beacon.Frame{CompanyID: company, Version: 1, State: st, OfflineCapable: oc, TxPower: -12, ID: testID}
				b, err := f.Encode()
				if err != nil {
					t.Fatal(err)
				}
				got, err := beacon.Decode(b, company)
				if err != nil || got != f {
					t.Errorf("Decode(%x) = %+v, %v; want %+v", b, got, err, f)
				}
			}
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	good, _ := beacon.Frame{CompanyID: 0xFFFF, ID: testID}.Encode()
	mut := func(i int, v byte) []byte { b := bytes.Clone(good); b[i] = v; return b }
	cases := []struct {
		name string
		b    []byte
		want *vend.Error
	}{
		{"32 bytes", append(bytes.Clone(good), make([]byte, 13)...), beacon.ErrTooLong},
		{"AD length past end", mut(3, 0x11), beacon.ErrTruncated},
		{"cut mid-frame", good[:10], beacon.ErrTruncated},
		{"garbage after terminator", append(append(bytes.Clone(good), 0), 7), beacon.ErrTruncated},
		{"other company", mut(5, 0x00), beacon.ErrNoFrame},
		{"no MSD at all", []byte{2, 1, 6}, beacon.ErrNoFrame},
		{"empty", nil, beacon.ErrNoFrame},
		{"bad magic", mut(7, 0xBD), beacon.ErrMagic},
		{"version 2", mut(8, 2), beacon.ErrVersion},
		{"reserved bits", mut(9, 0x80), beacon.ErrReserved},
		{"two-byte flags", append([]byte{3, 1, 6, 0}, good[3:]...), beacon.ErrFlags},
		{"payload too short", append([]byte{2, 1, 6, 0x0e}, good[4:18]...), beacon.ErrLength},
		{"payload too long", append(append([]byte{2, 1, 6, 0x10}, good[4:]...), 0), beacon.ErrLength},
	}
	for _, tc := range cases {
		_, err := beacon.Decode(tc.b, 0xFFFF)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: Decode(%x) = %v, want %v", tc.name, tc.b, err, tc.want)
		}
	}
}

func TestDecodeToleratesOtherADs(t *testing.T) {
	good, _ := beacon.Frame{CompanyID: 0xFFFF, State: beacon.Fault, ID: testID}.Encode()
	// No Flags AD (some scan APIs strip it), zero padding, and a name AD first.
	withName := append([]byte{3, 0x09, 'W', '1'}, good[3:]...)
	withName = append(withName, 0, 0, 0)
	for _, b := range [][]byte{good[3:], withName} {
		f, err := beacon.Decode(b, 0xFFFF)
		if err != nil || f.State != beacon.Fault || f.ID != testID {
			t.Errorf("Decode(%x) = %+v, %v", b, f, err)
		}
	}
}

func TestScanResponse(t *testing.T) {
	sr, err := beacon.EncodeScanResponse("Laundry 4 - Main St")
	if err != nil {
		t.Fatal(err)
	}
	if n, err := beacon.DecodeScanResponse(sr); err != nil || n != "Laundry 4 - Main St" {
		t.Errorf("DecodeScanResponse = %q, %v", n, err)
	}
	for _, bad := range []string{"", "this name is far too long for one AD", "tab\there"} {
		if _, err := beacon.EncodeScanResponse(bad); !errors.Is(err, beacon.ErrName) {
			t.Errorf("EncodeScanResponse(%q) = %v, want ErrName", bad, err)
		}
	}
	if _, err := beacon.DecodeScanResponse([]byte{2, 1, 6}); !errors.Is(err, beacon.ErrName) {
		t.Errorf("no name: %v", err)
	}
}

// The advertisement decodes with go-ble's own linux/adv parser (code this
// project did not write). go-ble's Flags() and TxPower() are known to
// misreport, so the Flags AD is checked by walking the raw AD structures
// with go-ble's Field accessor and by hand.
func TestGoBLECrossCheck(t *testing.T) {
	f := beacon.Frame{CompanyID: 0x1234, Version: 1, State: beacon.Busy, OfflineCapable: true, TxPower: -40, ID: testID}
	b, err := f.Encode()
	if err != nil {
		t.Fatal(err)
	}
	p := adv.NewRawPacket(b)
	md := p.ManufacturerData()
	if len(md) < 2 || binary.LittleEndian.Uint16(md) != 0x1234 {
		t.Fatalf("go-ble ManufacturerData = %x, want company 0x1234 first", md)
	}
	want, _ := f.ManufacturerData()
	if !bytes.Equal(md, want) {
		t.Fatalf("go-ble ManufacturerData = %x, want %x", md, want)
	}
	got, err := beacon.DecodeManufacturerData(md)
	if err != nil || got != f {
		t.Errorf("DecodeManufacturerData(go-ble's bytes) = %+v, %v; want %+v", got, err, f)
	}
	// Same bytes built by go-ble's encoder from our fields.
	gp, err := adv.NewPacket(adv.Flags(beacon.FlagsValue), adv.ManufacturerData(0x1234, want[2:]))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(gp.Bytes(), b) {
		t.Errorf("go-ble NewPacket = % x\nours             % x", gp.Bytes(), b)
	}
	// Flags: go-ble's Field(type) returns the AD's data.
	if fl := p.Field(0x01); len(fl) != 1 || fl[0] != beacon.FlagsValue {
		t.Errorf("go-ble Field(Flags) = %x, want %02x", fl, beacon.FlagsValue)
	}
	// Independent walk of the AD structures.
	var types []byte
	for i := 0; i < len(b); i += 1 + int(b[i]) {
		types = append(types, b[i+1])
	}
	if !bytes.Equal(types, []byte{0x01, 0xFF}) {
		t.Errorf("AD types = %x, want 01 ff", types)
	}
	// TX power travels inside our payload (byte 3), not as a 0x0A AD.
	if int8(md[5]) != -40 {
		t.Errorf("TX power byte = %d, want -40", int8(md[5]))
	}
	// The scan response name through go-ble's LocalName.
	sr, _ := beacon.EncodeScanResponse("Water 1")
	if n := adv.NewRawPacket(sr).LocalName(); n != "Water 1" {
		t.Errorf("go-ble LocalName = %q", n)
	}
}

func BenchmarkEncode(b *testing.B) {
	f := beacon.Frame{CompanyID: 0xFFFF, State: beacon.Idle, TxPower: -59, ID: testID}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.Encode(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	raw, _ := beacon.Frame{CompanyID: 0xFFFF, State: beacon.Idle, TxPower: -59, ID: testID}.Encode()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := beacon.Decode(raw, 0xFFFF); err != nil {
			b.Fatal(err)
		}
	}
}
