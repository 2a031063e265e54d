package ble_test

import (
	"context"
	"sync"
	"time"

	"beaconvend/hw/ble"
)

// fakeAdvertiser records what a Beacon asks of its radio. It is hand-written
// (function fields, interface guard) because no BLE radio can run on the
// machines the tests run on; the go-ble backend has its own fake controller.
type fakeAdvertiser struct {
	AdvertiseFunc func(adv, scanResp []byte) error // nil: succeed
	StopFunc      func() error                     // nil: succeed

	mu    sync.Mutex
	calls []call
}

type call struct {
	Op      string // "advertise", "stop", "close"
	Adv, SR []byte
	At      time.Time
	Err     error
}

var _ ble.Advertiser = (*fakeAdvertiser)(nil)

func (f *fakeAdvertiser) Advertise(ctx context.Context, adv, scanResp []byte) error {
	var err error
	if f.AdvertiseFunc != nil {
		err = f.AdvertiseFunc(adv, scanResp)
	}
	f.record(call{Op: "advertise", Adv: append([]byte(nil), adv...), SR: append([]byte(nil), scanResp...), Err: err})
	return err
}

func (f *fakeAdvertiser) Stop() error {
	var err error
	if f.StopFunc != nil {
		err = f.StopFunc()
	}
	f.record(call{Op: "stop", Err: err})
	return err
}

func (f *fakeAdvertiser) Close() error {
	f.record(call{Op: "close"})
	return nil
}

func (f *fakeAdvertiser) record(c call) {
	c.At = time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, c)
}

// Calls returns a copy of the recorded calls.
func (f *fakeAdvertiser) Calls() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

// advertised returns the successful advertise calls.
func (f *fakeAdvertiser) advertised() []call {
	var out []call
	for _, c := range f.Calls() {
		if c.Op == "advertise" && c.Err == nil {
			out = append(out, c)
		}
	}
	return out
}

// fakeConnAdvertiser is a fakeAdvertiser that can also advertise
// connectable; those calls are recorded as "connectable".
type fakeConnAdvertiser struct{ fakeAdvertiser }

var _ ble.ConnectableAdvertiser = (*fakeConnAdvertiser)(nil)

func (f *fakeConnAdvertiser) AdvertiseConnectable(ctx context.Context, adv, scanResp []byte) error {
	f.record(call{Op: "connectable", Adv: append([]byte(nil), adv...), SR: append([]byte(nil), scanResp...)})
	return nil
}
