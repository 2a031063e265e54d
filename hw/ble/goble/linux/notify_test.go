package linux_test

import (
	ble "beaconvend/hw/ble/goble"
	"beaconvend/hw/ble/goble/linux/hci/hcitest"
	"bytes"
	"testing"
	"time"
)

// A notification longer than ATT_MTU − 3 is an error for the server code,
// not silently cut (upstream sent the first MTU − 3 bytes and said nil).
func TestNotificationTooLong(t *testing.T) {
	_, ctl, tt := newDevice(t, nil)
	const h = 0x46
	ctl.Connect(h, hcitest.RolePeripheral)
	if got := roundTrip(t, ctl, h, cat([]byte{0x12}, le16(tt.notif.CCCD.Handle), le16(1))); !bytes.Equal(got, []byte{0x13}) {
		t.Fatalf("subscribe: % x", got)
	}
	var n ble.Notifier
	select {
	case n = <-tt.notifyC:
	case <-time.After(wait):
		t.Fatal("notify handler not started")
	}
	if _, err := n.Write(make([]byte, 21)); err == nil {
		t.Error("a 21-byte notification at ATT_MTU 23 returned nil")
	}
	if _, err := n.Write([]byte("twenty bytes exactly")); err != nil {
		t.Errorf("a 20-byte notification: %v", err)
	}
	got := readATT(t, ctl, h)
	if want := cat([]byte{0x1b}, le16(tt.notif.ValueHandle), []byte("twenty bytes exactly")); !bytes.Equal(got, want) {
		t.Errorf("notification % x, want % x", got, want)
	}
}
