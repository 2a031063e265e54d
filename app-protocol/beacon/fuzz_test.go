package beacon_test

import (
	"bytes"
	"testing"

	"beaconvend/app-protocol/beacon"
)

// Decode never panics; what it accepts re-encodes to the same frame.
func FuzzDecode(f *testing.F) {
	good, _ := beacon.Frame{CompanyID: 0xFFFF, State: beacon.Busy, TxPower: -59, ID: testID}.Encode()
	f.Add(good)
	f.Add(good[3:])
	f.Add([]byte{2, 1, 6})
	f.Add([]byte{0x1f, 0xff})
	f.Add(append(bytes.Clone(good), 0, 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := beacon.Decode(b, 0xFFFF)
		if err != nil {
			return
		}
		md, err := fr.ManufacturerData()
		if err != nil {
			t.Fatalf("decoded %+v from %x but cannot encode it: %v", fr, b, err)
		}
		if !bytes.Contains(b, md) {
			t.Fatalf("decoded %+v from %x; its encoding %x is not in the input", fr, b, md)
		}
		_, _ = beacon.DecodeScanResponse(b)
	})
}
