package ble_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"beaconvend/app-protocol/beacon"
	"beaconvend/app-protocol/proxid"
	"beaconvend/hw/ble"
)

// The GATT side's link decides the PDU type and whether the frame says
// busy; rotation goes on while connected, and the real state comes back.
func TestBeaconLink(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fa := &fakeConnAdvertiser{}
		b := mustBeacon(t, fa, 5, &ble.BeaconOpts{State: beacon.Idle})
		stop := runBeacon(t, b)
		time.Sleep(time.Second)
		last := func() (string, beacon.Frame) {
			t.Helper()
			calls := fa.Calls()
			c := calls[len(calls)-1]
			return c.Op, mustDecode(t, c.Adv)
		}
		step := func(name, wantOp string, wantState beacon.State, wantID proxid.ID) {
			t.Helper()
			op, f := last()
			if op != wantOp || f.State != wantState || f.ID != wantID {
				t.Errorf("%s: last call %s state=%v id=%x, want %s state=%v id=%x", name, op, f.State, f.ID, wantOp, wantState, wantID)
			}
		}
		id := func() proxid.ID { return proxid.Compute(testKey, proxid.Counter(time.Now()), 5) }
		step("start", "advertise", beacon.Idle, id())
		if err := b.SetLink(ble.LinkListening); err != nil {
			t.Fatal(err)
		}
		step("listening", "connectable", beacon.Idle, id())
		if err := b.SetLink(ble.LinkConnected); err != nil {
			t.Fatal(err)
		}
		step("connected", "advertise", beacon.Busy, id())
		n := len(fa.Calls())
		if err := b.SetState(beacon.Fault); err != nil {
			t.Fatal(err)
		}
		if len(fa.Calls()) != n {
			t.Errorf("a state change while connected went on air: %v", fa.Calls()[n:])
		}
		if s := b.State(); s != beacon.Fault {
			t.Errorf("State() = %v, want the machine's fault", s)
		}
		first := id()
		time.Sleep(32 * time.Second) // the next window
		synctest.Wait()
		step("rotated while connected", "advertise", beacon.Busy, id())
		if id() == first {
			t.Fatal("no new window")
		}
		// Busy already on air with this ID: Connected → Listening still
		// re-advertises (the PDU type changes).
		if err := b.SetLink(ble.LinkListening); err != nil {
			t.Fatal(err)
		}
		step("disconnected", "connectable", beacon.Fault, id())
		if err := b.SetLink(ble.LinkNone); err != nil {
			t.Fatal(err)
		}
		step("no service", "advertise", beacon.Fault, id())
		if err := stop(); !errors.Is(err, context.Canceled) {
			t.Errorf("Run() = %v", err)
		}
	})
}

func TestBeaconLinkNeedsConnectableAdvertiser(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fa := &fakeAdvertiser{}
		b := mustBeacon(t, fa, 5, &ble.BeaconOpts{State: beacon.Idle})
		stop := runBeacon(t, b)
		time.Sleep(time.Second)
		if err := b.SetLink(ble.LinkListening); !errors.Is(err, ble.ErrUnsupported) {
			t.Errorf("SetLink(listening) on a non-connectable advertiser = %v, want ErrUnsupported", err)
		}
		if err := b.SetLink(ble.Link(9)); !errors.Is(err, ble.ErrConfig) {
			t.Errorf("SetLink(9) = %v, want ErrConfig", err)
		}
		stop()
	})
}
