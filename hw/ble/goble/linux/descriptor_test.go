package linux_test

import (
	"testing"

	ble "beaconvend/hw/ble/goble"
)

// Server code finds a descriptor's handle as it finds a characteristic's,
// and rebuilding the database (every AddService) keeps one CCCD per
// characteristic; upstream left Descriptor.Handle 0 and appended another
// CCCD on each rebuild.
func TestDescriptorHandles(t *testing.T) {
	d, _, tt := newDevice(t, nil)
	if got, want := tt.notif.CCCD.Handle, tt.notif.ValueHandle+1; got != want {
		t.Errorf("CCCD handle = %#x, want %#x", got, want)
	}
	if err := d.AddService(ble.NewService(ble.UUID16(0xfee0))); err != nil {
		t.Fatal(err)
	}
	if n := len(tt.notif.Descriptors); n != 1 {
		t.Errorf("after a second AddService the notify characteristic has %d descriptors, want 1", n)
	}
}
