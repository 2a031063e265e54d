package linux_test

import (
	"beaconvend/hw/ble/goble/linux/hci/hcitest"
	"bytes"
	"testing"
)

// With one LE buffer (the kernel's virtual controller, small real ones)
// upstream sized its send pool buffers − 1 = 0 and every ACL send hung.
func TestOneLEBuffer(t *testing.T) {
	_, ctl, _ := newDevice(t, &hcitest.Opts{LEBufCnt: 1})
	ctl.Connect(0x40, hcitest.RolePeripheral)
	exchangeMTU(t, ctl, 0x40, 100)
	got := roundTrip(t, ctl, 0x40, []byte{0x0a, 0x03, 0x00}) // read the device name
	if want := []byte("\x0btest"); !bytes.Equal(got, want) {
		t.Fatalf("read device name = % x, want % x", got, want)
	}
}
