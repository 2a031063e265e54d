package linux_test

import (
	"runtime"
	"testing"
	"time"

	"beaconvend/hw/ble/goble/linux/hci/hcitest"
)

// Stopping the device ends its connections' goroutines (reassembly, ATT
// reader and server); upstream left them waiting for ever, a leak per
// connection alive at Stop.
func TestStopEndsConnections(t *testing.T) {
	before := runtime.NumGoroutine()
	d, ctl, _ := newDevice(t, nil)
	for h := uint16(0x50); h < 0x55; h++ {
		ctl.Connect(h, hcitest.RolePeripheral)
		exchangeMTU(t, ctl, h, 23)
	}
	d.Stop()
	deadline := time.Now().Add(wait)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines before the device, %d after Stop:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}
