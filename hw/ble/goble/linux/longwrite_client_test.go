package linux_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	ble "beaconvend/hw/ble/goble"
	"beaconvend/hw/ble/goble/linux"
	"beaconvend/hw/ble/goble/linux/gatt"
	"beaconvend/hw/ble/goble/linux/hci/hcitest"
)

// The central's long write (upstream had none, issue #81): a 300-byte
// value reaches a scripted peripheral as Prepare Writes of ATT_MTU-5
// bytes at their offsets and one Execute Write.
func TestClientWriteLongCharacteristic(t *testing.T) {
	const h = 0x49
	ctl := hcitest.New(nil)
	d, err := linux.NewDeviceWithNameAndHandler("test", nil, ble.OptTransport(ctl))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	go func() {
		if _, err := ctl.WaitCommand(hcitest.OpLECreateConn, 0, nil, wait); err == nil {
			ctl.Connect(h, hcitest.RoleCentral)
		}
	}()
	cln, err := d.Dial(ctx, ble.NewAddr("11:22:33:44:55:66"))
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	// The peripheral: echo prepares into a queue, assemble on execute.
	got := make(chan []byte, 1)
	go func() {
		var val []byte
		for {
			req, err := ctl.ReadATT(h, wait)
			if err != nil {
				return
			}
			switch req[0] {
			case 0x16:
				off := int(req[3]) | int(req[4])<<8
				if off > len(val) {
					ctl.SendATT(h, []byte{0x01, 0x16, req[1], req[2], 0x07})
					continue
				}
				val = append(val[:off], req[5:]...)
				ctl.SendATT(h, append([]byte{0x17}, req[1:]...))
			case 0x18:
				ctl.SendATT(h, []byte{0x19})
				got <- val
				return
			}
		}
	}()
	want := make([]byte, 300)
	for i := range want {
		want[i] = byte(i * 3)
	}
	c := &ble.Characteristic{ValueHandle: 0x0021}
	errc := make(chan error, 1)
	go func() { errc <- cln.(*gatt.Client).WriteLongCharacteristic(c, want) }()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("WriteLongCharacteristic: %v", err)
		}
	case <-time.After(wait):
		t.Fatal("WriteLongCharacteristic hung")
	}
	select {
	case v := <-got:
		if !bytes.Equal(v, want) {
			t.Errorf("the peripheral assembled % x, want % x", v, want)
		}
	case <-time.After(wait):
		t.Fatal("no Execute Write")
	}
}
