package linux_test

import (
	ble "beaconvend/hw/ble/goble"
	"beaconvend/hw/ble/goble/linux/hci/cmd"
	"beaconvend/hw/ble/goble/linux/hci/hcitest"
	"bytes"
	"testing"
	"time"
)

// A central that disconnects while a notification longer than the
// controller's buffers is being sent: upstream's writePDU held the pool
// lock while waiting for a buffer, and the disconnection handler, on the
// HCI reader goroutine, waited for that lock: the reader was stuck for
// good (no command completed, no disconnection handled, no advertising).
func TestDisconnectDuringNotification(t *testing.T) {
	d, ctl, tt := newDevice(t, &hcitest.Opts{LEBufCnt: 2})
	if err := d.HCI.Advertise(); err != nil {
		t.Fatal(err)
	}
	const h = 0x41
	ctl.Connect(h, hcitest.RolePeripheral)
	exchangeMTU(t, ctl, h, 247)
	got := roundTrip(t, ctl, h, cat([]byte{0x12}, le16(tt.notif.CCCD.Handle), le16(1)))
	if !bytes.Equal(got, []byte{0x13}) {
		t.Fatalf("subscribe: % x", got)
	}
	var n ble.Notifier
	select {
	case n = <-tt.notifyC:
	case <-time.After(wait):
		t.Fatal("notify handler not started")
	}
	ctl.Hold(true) // the link stops moving: no buffer comes back
	werr := make(chan error, 1)
	go func() {
		_, err := n.Write(bytes.Repeat([]byte{0xaa}, 200)) // 8 fragments of 27 bytes
		werr <- err
	}()
	time.Sleep(100 * time.Millisecond) // let the send block on the pool
	mark := len(ctl.Commands())
	ctl.Disconnect(h)
	select {
	case err := <-werr:
		if err == nil {
			t.Error("notification to a disconnected central returned nil")
		}
	case <-time.After(wait):
		t.Fatal("notification send still blocked after the disconnection")
	}
	// The reader goroutine is alive: advertising is re-enabled, commands
	// complete, and the next central is served.
	if _, err := ctl.WaitCommand(hcitest.OpLESetAdvEnable, mark, func(p []byte) bool { return len(p) == 1 && p[0] == 1 }, wait); err != nil {
		t.Fatalf("advertising not re-enabled after the disconnection: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- d.HCI.Send(&cmd.ReadBDADDR{}, &cmd.ReadBDADDRRP{}) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("command after the disconnection: %v", err)
		}
	case <-time.After(wait):
		t.Fatal("command after the disconnection never completed")
	}
	ctl.Hold(false)
	ctl.Connect(0x42, hcitest.RolePeripheral)
	exchangeMTU(t, ctl, 0x42, 23)
}
