package hcitest

import (
	"testing"
	"time"

	ble "beaconvend/hw/ble/goble"
	"beaconvend/hw/ble/goble/linux"
)

// NewDevice runs the fork's whole Linux peripheral (HCI, L2CAP, ATT
// server, GATT database) named name on a new scripted controller, serving
// svcs. It fails tb when the device is not up within wait (Init talks to
// the controller, so a broken script would otherwise hang the test) and
// stops the device at tb's cleanup.
func NewDevice(tb testing.TB, name string, o *Opts, wait time.Duration, svcs ...*ble.Service) (*linux.Device, *Controller) {
	tb.Helper()
	ctl := New(o)
	type res struct {
		d   *linux.Device
		err error
	}
	ch := make(chan res, 1)
	go func() {
		d, err := linux.NewDeviceWithNameAndHandler(name, nil, ble.OptTransport(ctl))
		ch <- res{d, err}
	}()
	var d *linux.Device
	select {
	case r := <-ch:
		if r.err != nil {
			tb.Fatalf("NewDevice: %v", r.err)
		}
		d = r.d
	case <-time.After(wait):
		tb.Fatalf("NewDevice did not return within %v", wait)
	}
	tb.Cleanup(func() { d.Stop() })
	for _, s := range svcs {
		if err := d.AddService(s); err != nil {
			tb.Fatalf("AddService: %v", err)
		}
	}
	return d, ctl
}
