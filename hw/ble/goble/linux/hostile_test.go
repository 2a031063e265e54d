package linux_test

import (
	ble "beaconvend/hw/ble/goble"
	"beaconvend/hw/ble/goble/linux/hci/hcitest"
	"bytes"
	"testing"
)

// hostile PDUs that crashed upstream's server from its own goroutine.
func TestHostileCentral(t *testing.T) {
	_, ctl, tt := newDevice(t, nil)
	const h = 0x44
	ctl.Connect(h, hcitest.RolePeripheral)
	cccd := tt.notif.CCCD.Handle
	for _, c := range []struct {
		name     string
		req, rsp []byte
	}{
		{"execute write on an empty queue", []byte{0x18, 0x01}, []byte{0x19}},
		{"cancel on an empty queue", []byte{0x18, 0x00}, []byte{0x19}},
		{"1-byte write to a CCCD", cat([]byte{0x12}, le16(cccd), []byte{0x01}), errRsp(0x12, cccd, ble.ErrInvalAttrValueLen)},
		{"3-byte write to a CCCD", cat([]byte{0x12}, le16(cccd), []byte{0x01, 0, 0}), errRsp(0x12, cccd, ble.ErrInvalAttrValueLen)},
		{"read of a static value longer than MTU-1", cat([]byte{0x0a}, le16(tt.static.ValueHandle)), cat([]byte{0x0b}, tt.staticVal[:22])},
		{"read blob of a static value", cat([]byte{0x0c}, le16(tt.static.ValueHandle), le16(22)), cat([]byte{0x0d}, tt.staticVal[22:44])},
		{"read blob at its end", cat([]byte{0x0c}, le16(tt.static.ValueHandle), le16(300)), []byte{0x0d}},
		{"read blob past its end", cat([]byte{0x0c}, le16(tt.static.ValueHandle), le16(301)), errRsp(0x0c, tt.static.ValueHandle, ble.ErrInvalidOffset)},
		{"read by type of a long static value", cat([]byte{0x08}, le16(tt.static.ValueHandle), le16(tt.static.ValueHandle), le16(0xfff1)), cat([]byte{0x09, 21}, le16(tt.static.ValueHandle), tt.staticVal[:19])},
	} {
		if got := roundTrip(t, ctl, h, c.req); !bytes.Equal(got, c.rsp) {
			t.Errorf("%s: % x answered % x, want % x", c.name, c.req, got, c.rsp)
		}
	}
	// The server still serves after all that.
	exchangeMTU(t, ctl, h, 23)
}
