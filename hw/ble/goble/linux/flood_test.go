package linux_test

import (
	"bytes"
	"testing"

	"beaconvend/hw/ble/goble/linux/hci/hcitest"
)

// A central that sends requests faster than the server's answers leave
// (here: 40 reads of a long value while the link does not move) overran
// the connection's input queue, and upstream's HCI reader blocked on it
// while the server waited for a send buffer only that reader could
// return: nothing was ever handled again. The reader must stay free; the
// overrunning central is disconnected.
func TestCentralFlood(t *testing.T) {
	_, ctl, tt := newDevice(t, &hcitest.Opts{LEBufCnt: 1})
	const h = 0x47
	ctl.Connect(h, hcitest.RolePeripheral)
	exchangeMTU(t, ctl, h, 515)
	ctl.Hold(true)
	for i := 0; i < 40; i++ {
		ctl.SendATT(h, cat([]byte{0x0a}, le16(tt.static.ValueHandle)))
	}
	ctl.Hold(false)
	ctl.Completed(h, 1) // the packet sent while the link was held
	ctl.Disconnect(h)
	ctl.Connect(0x48, hcitest.RolePeripheral)
	got := roundTrip(t, ctl, 0x48, []byte{0x0a, 0x03, 0x00})
	if want := []byte("\x0btest"); !bytes.Equal(got, want) {
		t.Fatalf("read device name = % x, want % x", got, want)
	}
}
