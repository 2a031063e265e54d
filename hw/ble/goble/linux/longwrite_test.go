package linux_test

import (
	ble "beaconvend/hw/ble/goble"
	"beaconvend/hw/ble/goble/linux/hci/hcitest"
	"bytes"
	"testing"
)

// Prepare Write offsets place the parts; Execute Write checks the result
// against the 512-byte attribute maximum (Core Vol 3 Part F 3.4.6).
func TestLongWrite(t *testing.T) {
	_, ctl, tt := newDevice(t, nil)
	const h = 0x45
	ctl.Connect(h, hcitest.RolePeripheral)
	vh := tt.wr.ValueHandle
	prep := func(off uint16, v []byte) {
		t.Helper()
		req := cat([]byte{0x16}, le16(vh), le16(off), v)
		if got := roundTrip(t, ctl, h, req); !bytes.Equal(got, cat([]byte{0x17}, req[1:])) {
			t.Fatalf("prepare write at %d: % x", off, got)
		}
	}
	exec := func(want []byte) {
		t.Helper()
		if got := roundTrip(t, ctl, h, []byte{0x18, 0x01}); !bytes.Equal(got, want) {
			t.Fatalf("execute write answered % x, want % x", got, want)
		}
	}
	prep(0, []byte("AAAA"))
	prep(2, []byte("BB"))
	exec([]byte{0x19})
	if got := tt.lastWrite(); string(got) != "AABB" {
		t.Errorf("long write with overlapping offsets wrote %q, want %q", got, "AABB")
	}
	// A gap is an invalid offset.
	prep(10, []byte("x"))
	exec(errRsp(0x18, vh, ble.ErrInvalidOffset))
	// More than 512 bytes is an invalid length.
	for off := 0; off < 520; off += 18 {
		prep(uint16(off), bytes.Repeat([]byte{'z'}, 18))
	}
	exec(errRsp(0x18, vh, ble.ErrInvalAttrValueLen))
	// Exactly 512 bytes is fine, in parts.
	want := make([]byte, 512)
	for i := range want {
		want[i] = byte(i * 7)
	}
	for off := 0; off < 512; off += 18 {
		prep(uint16(off), want[off:min(off+18, 512)])
	}
	exec([]byte{0x19})
	if got := tt.lastWrite(); !bytes.Equal(got, want) {
		t.Errorf("512-byte long write wrote % x, want % x", got, want)
	}
	// A prepare to a handle that does not take writes fails at once.
	req := cat([]byte{0x16}, le16(tt.static.ValueHandle), le16(0), []byte("x"))
	if got := roundTrip(t, ctl, h, req); !bytes.Equal(got, errRsp(0x16, tt.static.ValueHandle, ble.ErrWriteNotPerm)) {
		t.Errorf("prepare write to a static value answered % x", got)
	}
}
