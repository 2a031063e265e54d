package linux_test

import (
	"testing"
	"time"

	"beaconvend/hw/ble/goble/linux/hci/cmd"
)

// An event the host cannot use (here Disconnection Complete for a handle
// it does not know, as after a double disconnect) must not fail the
// commands that follow; upstream stored the handler's error as the
// device's error and every command returned it until another event came.
func TestEventErrorDoesNotPoisonCommands(t *testing.T) {
	d, ctl, _ := newDevice(t, nil)
	ctl.Disconnect(0x0999)
	time.Sleep(100 * time.Millisecond) // let the reader handle it; no later event arrives
	done := make(chan error, 1)
	go func() { done <- d.HCI.Send(&cmd.ReadBDADDR{}, &cmd.ReadBDADDRRP{}) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("command after a bad event: %v", err)
		}
	case <-time.After(wait):
		t.Fatal("command after a bad event hung")
	}
}
