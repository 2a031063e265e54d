package linux_test

import (
	"bytes"
	"testing"

	"beaconvend/hw/ble/goble/linux/hci/hcitest"
)

// An ATT request longer than one ACL fragment from the central (a 200-byte
// Write Request at ATT_MTU 247, in 27-byte fragments): change 9 cut the
// PDU to its length before gathering its continuation fragments, which
// extended it with zeros, so the handler got the first 20 bytes and then
// zeros, and the left-over fragments were read as the start of the next
// PDU.
func TestMultiFragmentRequest(t *testing.T) {
	_, ctl, tt := newDevice(t, nil)
	const h = 0x44
	ctl.Connect(h, hcitest.RolePeripheral)
	exchangeMTU(t, ctl, h, 247)
	long := make([]byte, 200)
	for i := range long {
		long[i] = byte(i + 1)
	}
	if got := roundTrip(t, ctl, h, cat([]byte{0x12}, le16(tt.wr.ValueHandle), long)); !bytes.Equal(got, []byte{0x13}) {
		t.Fatalf("Write Request of 200 bytes answered % x, want 13", got)
	}
	if got := tt.lastWrite(); !bytes.Equal(got, long) {
		t.Errorf("handler got % x\nwant % x", got, long)
	}
	// The next request is read from its own first fragment.
	exchangeMTU(t, ctl, h, 247)
}
