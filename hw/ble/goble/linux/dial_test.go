package linux_test

import (
	ble "beaconvend/hw/ble/goble"
	"beaconvend/hw/ble/goble/linux"
	"beaconvend/hw/ble/goble/linux/hci/hcitest"
	"context"
	"testing"
	"time"
)

// Dial must not lose a connection that completes before it waits for one.
// The scripted controller reports LE Connection Complete before the
// Command Status of LE Create Connection, which makes the race upstream
// lost (it closed the connection nobody was waiting for, and Dial hung
// until its context ended) deterministic.
func TestDialConnectionBeforeStatus(t *testing.T) {
	const h = 0x43
	var ctl *hcitest.Controller
	ctl = hcitest.New(&hcitest.Opts{OnCommand: func(op uint16, p []byte) ([][]byte, bool) {
		if op == hcitest.OpLECreateConn {
			return [][]byte{hcitest.ConnectionComplete(h, hcitest.RoleCentral, 0), hcitest.CommandStatus(op, 0)}, true
		}
		return nil, false
	}})
	d, err := linux.NewDeviceWithNameAndHandler("test", nil, ble.OptTransport(ctl))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	type res struct {
		c   ble.Client
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := d.Dial(ctx, ble.NewAddr("11:22:33:44:55:66"))
		ch <- res{c, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("Dial: %v", r.err)
		}
		if r.c.Conn() == nil {
			t.Fatal("Dial returned a client without a connection")
		}
	case <-time.After(wait + time.Second):
		t.Fatal("Dial hung")
	}
}
