package ble_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"beaconvend/app-protocol/beacon"
	"beaconvend/app-protocol/proxid"
	"beaconvend/hw/ble"
)

var testKey = proxid.Key{0: 0x01, 1: 0x23, 15: 0xEF}

// runBeacon starts b.Run and returns a function that cancels it and returns
// Run's error.
func runBeacon(t *testing.T, b *ble.Beacon) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- b.Run(ctx) }()
	return func() error {
		cancel()
		return <-errc
	}
}

func mustBeacon(t *testing.T, a ble.Advertiser, k uint8, o *ble.BeaconOpts) *ble.Beacon {
	t.Helper()
	b, err := ble.NewBeacon(a, &proxid.Rotator{Key: testKey, K: k}, o)
	if err != nil {
		t.Fatalf("NewBeacon: %v", err)
	}
	return b
}

func mustDecode(t *testing.T, adv []byte) beacon.Frame {
	t.Helper()
	f, err := beacon.Decode(adv, beacon.DefaultCompanyID)
	if err != nil {
		t.Fatalf("Decode(%x): %v", adv, err)
	}
	return f
}

func TestBeaconRotatesAtWindowBoundaries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fa := &fakeAdvertiser{}
		b := mustBeacon(t, fa, 5, &ble.BeaconOpts{State: beacon.Idle, TxPower: -60, Name: "dispenser-7", OfflineCapable: true})
		start := time.Now() // synctest's epoch, 2000-01-01, a multiple of 32 s
		stop := runBeacon(t, b)
		time.Sleep(100 * time.Second)
		synctest.Wait()
		if err := stop(); !errors.Is(err, context.Canceled) {
			t.Fatalf("Run() = %v, want context.Canceled", err)
		}

		got := fa.advertised()
		if len(got) != 4 {
			t.Fatalf("advertised %d frames, want 4 (t=0, 32, 64, 96 s): %+v", len(got), got)
		}
		sr, _ := beacon.EncodeScanResponse("dispenser-7")
		for i, c := range got {
			at := start.Add(time.Duration(32*i) * time.Second)
			if !c.At.Equal(at) {
				t.Errorf("frame %d advertised at %v, want %v (the window boundary)", i, c.At.Sub(start), at.Sub(start))
			}
			f := mustDecode(t, c.Adv)
			want := beacon.Frame{CompanyID: beacon.DefaultCompanyID, Version: 1, State: beacon.Idle, OfflineCapable: true, TxPower: -60,
				ID: proxid.Compute(testKey, proxid.Counter(at), 5)}
			if f != want {
				t.Errorf("frame %d = %+v, want %+v", i, f, want)
			}
			if string(c.SR) != string(sr) {
				t.Errorf("frame %d scan response %x, want %x", i, c.SR, sr)
			}
		}
		calls := fa.Calls()
		if last := calls[len(calls)-1]; last.Op != "stop" {
			t.Errorf("last call %q, want stop when Run ends", last.Op)
		}
		if st := b.Stats(); st.Rotations != 3 || st.Updates != 4 || st.Errors != 0 {
			t.Errorf("Stats() = %+v, want 3 rotations, 4 updates, 0 errors", st)
		}
		if _, on := b.OnAir(); on {
			t.Error("OnAir() = true after Run returned")
		}
	})
}

func TestBeaconStateChangeIsImmediate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fa := &fakeAdvertiser{}
		b := mustBeacon(t, fa, 5, nil) // defaults: Offline
		// Before Run a state change is only recorded.
		if err := b.SetState(beacon.Idle); err != nil {
			t.Fatal(err)
		}
		if n := len(fa.Calls()); n != 0 {
			t.Fatalf("SetState before Run made %d radio calls", n)
		}
		stop := runBeacon(t, b)
		defer stop()
		time.Sleep(3 * time.Second)
		synctest.Wait()

		if err := b.SetState(beacon.Busy); err != nil {
			t.Fatal(err)
		}
		got := fa.advertised()
		if len(got) != 2 {
			t.Fatalf("advertised %d frames, want 2", len(got))
		}
		if !got[1].At.Equal(got[0].At.Add(3 * time.Second)) {
			t.Errorf("state change advertised %v after start, want at once (3s)", got[1].At.Sub(got[0].At))
		}
		f0, f1 := mustDecode(t, got[0].Adv), mustDecode(t, got[1].Adv)
		if f0.State != beacon.Idle || f1.State != beacon.Busy || f0.ID != f1.ID {
			t.Errorf("frames %+v then %+v, want idle then busy with the same ID", f0, f1)
		}
		if err := b.SetState(beacon.Busy); err != nil { // no change: no radio traffic
			t.Fatal(err)
		}
		time.Sleep(5 * time.Second) // Recheck wakes find nothing new either
		synctest.Wait()
		if n := len(fa.advertised()); n != 2 {
			t.Errorf("advertised %d frames after a repeated state, want 2", n)
		}
		if err := b.SetState(beacon.State(7)); !errors.Is(err, beacon.ErrState) {
			t.Errorf("SetState(7) = %v, want beacon.ErrState", err)
		}
		if st := b.Stats(); st.Updates != 2 || st.Rotations != 0 {
			t.Errorf("Stats() = %+v, want 2 updates, 0 rotations", st)
		}
	})
}

func TestBeaconFollowsClockSteps(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var offset atomic.Int64 // wall clock step, seconds
		now := func() time.Time { return time.Now().Add(time.Duration(offset.Load()) * time.Second) }
		fa := &fakeAdvertiser{}
		b := mustBeacon(t, fa, 10, &ble.BeaconOpts{Now: now}) // 1024 s windows
		stop := runBeacon(t, b)
		defer stop()
		time.Sleep(10 * time.Second)
		offset.Store(5000) // NTP steps the clock forward mid-sleep
		time.Sleep(1500 * time.Millisecond)
		synctest.Wait()
		got := fa.advertised()
		if len(got) != 2 {
			t.Fatalf("advertised %d frames, want 2 (start, after the step)", len(got))
		}
		if d := got[1].At.Sub(got[0].At); d > 10*time.Second+ble.DefaultRecheck {
			t.Errorf("new window noticed %v after start, want within Recheck of the step", d)
		}
		want := proxid.Compute(testKey, proxid.Counter(got[1].At.Add(5000*time.Second)), 10)
		if f := mustDecode(t, got[1].Adv); f.ID != want {
			t.Errorf("after the step ID %v, want %v", f.ID, want)
		}
		offset.Store(0) // and back: the old window's ID returns
		time.Sleep(1500 * time.Millisecond)
		synctest.Wait()
		got = fa.advertised()
		if f0, f2 := mustDecode(t, got[0].Adv), mustDecode(t, got[len(got)-1].Adv); f0.ID != f2.ID {
			t.Errorf("after stepping back ID %v, want %v", f2.ID, f0.ID)
		}
	})
}

func TestBeaconSurfacesAdvertiserErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		radio := errors.New("hci: command disallowed")
		var fail atomic.Int32
		fail.Store(3)
		fa := &fakeAdvertiser{AdvertiseFunc: func(adv, sr []byte) error {
			if fail.Add(-1) >= 0 {
				return radio
			}
			return nil
		}}
		b := mustBeacon(t, fa, 5, nil)
		stop := runBeacon(t, b)
		defer stop()
		synctest.Wait()
		if _, on := b.OnAir(); on {
			t.Fatal("OnAir() = true after a failed Advertise")
		}
		if err := b.SetState(beacon.Busy); !errors.Is(err, radio) {
			t.Fatalf("SetState() = %v, want the advertiser's error", err)
		}
		// Run retries with backoff: 1 s after the first failure (the third
		// consecutive one), then 4 s later (succeeds).
		time.Sleep(4500 * time.Millisecond)
		synctest.Wait()
		if st := b.Stats(); st.Updates != 0 {
			t.Fatalf("retried before the backoff: %+v", st)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		st := b.Stats()
		if st.Errors != 3 || !errors.Is(st.LastErr, radio) || st.Updates != 1 {
			t.Errorf("Stats() = %+v, want 3 errors (last the radio's) and 1 update", st)
		}
		if f, on := b.OnAir(); !on || f.State != beacon.Busy {
			t.Errorf("OnAir() = %+v, %v; want the busy frame on air", f, on)
		}
		var ops []string
		for _, c := range fa.Calls() {
			ops = append(ops, fmt.Sprintf("%s:%v", c.Op, c.Err != nil))
		}
		want := "[advertise:true advertise:true advertise:true advertise:false]"
		if fmt.Sprint(ops) != want {
			t.Errorf("calls %v, want %s", ops, want)
		}
	})
}

func TestBeaconCloseAndRunErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stopErr := errors.New("radio gone")
		fa := &fakeAdvertiser{StopFunc: func() error { return stopErr }}
		b := mustBeacon(t, fa, 5, nil)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		errc := make(chan error, 1)
		go func() { errc <- b.Run(ctx) }()
		synctest.Wait()
		if err := b.Run(ctx); !errors.Is(err, ble.ErrRunning) {
			t.Errorf("second Run() = %v, want ErrRunning", err)
		}
		if err := b.Close(); !errors.Is(err, stopErr) {
			t.Errorf("Close() = %v, want the Stop error", err)
		}
		if err := <-errc; !errors.Is(err, context.Canceled) || !errors.Is(err, stopErr) {
			t.Errorf("Run() = %v, want context.Canceled joined with the Stop error", err)
		}
		var ops []string
		for _, c := range fa.Calls() {
			ops = append(ops, c.Op)
		}
		if fmt.Sprint(ops) != "[advertise stop stop close]" {
			t.Errorf("calls %v, want [advertise stop stop close]", ops)
		}
		if err := b.Close(); err != nil {
			t.Errorf("second Close() = %v", err)
		}
		if err := b.Run(ctx); !errors.Is(err, ble.ErrClosed) {
			t.Errorf("Run after Close = %v, want ErrClosed", err)
		}
		if err := b.SetState(beacon.Idle); !errors.Is(err, ble.ErrClosed) {
			t.Errorf("SetState after Close = %v, want ErrClosed", err)
		}
	})
}

func TestNewBeaconValidates(t *testing.T) {
	fa := &fakeAdvertiser{}
	for _, tc := range []struct {
		k    uint8
		o    *ble.BeaconOpts
		want error
	}{
		{16, nil, proxid.ErrK},
		{5, &ble.BeaconOpts{State: 4}, beacon.ErrState},
		{5, &ble.BeaconOpts{Name: "caf\u00e9"}, beacon.ErrName},
	} {
		if _, err := ble.NewBeacon(fa, &proxid.Rotator{Key: testKey, K: tc.k}, tc.o); !errors.Is(err, tc.want) {
			t.Errorf("NewBeacon(k=%d, %+v) = %v, want %v", tc.k, tc.o, err, tc.want)
		}
	}
}
