package emu_test

import (
	"testing"
	"testing/synctest"
	"time"

	"beaconvend/hw/emu"
)

// The delivery log is the per-delivery truth a soak bills against: each
// valve opening with its volume, each vending motor run with its items,
// each washer coin pulse with whether it counted and started a cycle,
// also through the control socket's deliveries command.
func TestDeliveriesLog(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, mustProfile(t, "generic-relay-16"), mustSim(t, `
machines:
  - {name: w1, kind: washer, coin: relay1, running: in1, credit: 2, cycle: 1m}
  - name: snacks
    kind: vending
    drop: in16
    drop_after: 800ms
    slots:
      - {name: A1, motor: relay2}
      - {name: A2, motor: relay3, jammed: true}
`), nil)
		t0 := time.Now()
		pulse := func(coil uint16, d time.Duration) {
			r.writeCoil(coil, true)
			time.Sleep(d)
			r.writeCoil(coil, false)
			time.Sleep(100 * time.Millisecond)
		}
		pulse(0, 5*time.Millisecond)  // invalid
		pulse(0, 50*time.Millisecond) // credit 1 of 2
		pulse(0, 50*time.Millisecond) // starts the cycle
		pulse(0, 50*time.Millisecond) // swallowed
		r.writeCoil(1, true)          // A1: two items in 1.7 s
		time.Sleep(1700 * time.Millisecond)
		r.writeCoil(1, false)
		r.writeCoil(2, true) // jammed A2: nothing
		time.Sleep(time.Second)
		r.writeCoil(2, false)
		r.writeCoil(1, true) // still turning when read

		got, dropped := r.board.Deliveries(0)
		if dropped != 0 || len(got) != 7 {
			t.Fatalf("Deliveries(0) = %d entries (%d dropped): %+v", len(got), dropped, got)
		}
		want := []emu.Delivery{
			{Seq: 1, Machine: "w1", Kind: "washer"},
			{Seq: 2, Machine: "w1", Kind: "washer", Valid: true},
			{Seq: 3, Machine: "w1", Kind: "washer", Valid: true, CycleStarted: true},
			{Seq: 4, Machine: "w1", Kind: "washer", Valid: true, Ignored: true},
			{Seq: 5, Machine: "snacks", Kind: "vending", Slot: "A1", Items: 2},
			{Seq: 6, Machine: "snacks", Kind: "vending", Slot: "A2"},
			{Seq: 7, Machine: "snacks", Kind: "vending", Slot: "A1"},
		}
		for i, w := range want {
			g := got[i]
			if g.Start.Before(t0) || (i < 6 && !g.End.After(g.Start)) {
				t.Errorf("entry %d: start %v end %v", i, g.Start, g.End)
			}
			g.Start, g.End = time.Time{}, time.Time{}
			if g != w {
				t.Errorf("entry %d = %+v, want %+v", i, g, w)
			}
		}
		if !got[6].End.IsZero() {
			t.Errorf("running motor's delivery has an end: %v", got[6].End)
		}
		resp := r.board.Do(emu.Request{Cmd: emu.CmdDeliveries, Since: 5})
		if !resp.OK || len(resp.Deliveries) != 2 || resp.Deliveries[0].Seq != 6 || resp.Status == nil {
			t.Fatalf("deliveries since 5: %+v", resp)
		}
	})
}

// A water delivery's volume is exact per opening, also while it is open,
// and the openings add up to the machine's total.
func TestDeliveriesWater(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, mustProfile(t, "pulse-io-4"), mustSim(t, `
machines:
  - {name: tap, kind: water, valve: out1, flow: count1, flow_lpm: 6, k_factor: 450}
`), nil)
		r.writeCoil(0, true)
		time.Sleep(10 * time.Second) // 1 L
		r.writeCoil(0, false)
		time.Sleep(5 * time.Second)
		r.writeCoil(0, true)
		time.Sleep(time.Second) // 100 mL so far
		got, _ := r.board.Deliveries(0)
		if len(got) != 2 || got[0].DeliveredUL != 1_000_000 || got[1].DeliveredUL != 100_000 || !got[1].End.IsZero() {
			t.Fatalf("deliveries: %+v", got)
		}
		time.Sleep(time.Second)
		r.writeCoil(0, false)
		got, _ = r.board.Deliveries(1)
		w := machine(t, r.board.Status(), "tap").Water
		if len(got) != 1 || got[0].DeliveredUL != 200_000 || w.DeliveredUL != 1_200_000 || got[0].End.Sub(got[0].Start) != 2*time.Second {
			t.Fatalf("second delivery %+v, machine total %d µL", got, w.DeliveredUL)
		}
	})
}

// The control socket's deliveries command, through the Go client: a valve
// opened over Modbus on the pty shows as one delivery with its volume.
func TestDeliveriesOverControlSocket(t *testing.T) {
	e := startEmulator(t, mustProfile(t, "pulse-io-4"), mustSim(t, `
machines:
  - {name: tap, kind: water, valve: out1, flow: count1, flow_lpm: 60}
`), nil)
	c := newSimonvetter(t, e.BoardPath(), 1)
	ctl, err := emu.Dial(e.ControlPath())
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	if err := c.WriteCoil(0, true); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if err := c.WriteCoil(0, false); err != nil {
		t.Fatal(err)
	}
	got, dropped, err := ctl.Deliveries(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || dropped != 0 || got[0].Machine != "tap" || got[0].DeliveredUL < 100_000 || got[0].End.IsZero() {
		t.Fatalf("deliveries after a ≥100 ms opening at 1 L/s: %+v (dropped %d)", got, dropped)
	}
	if more, _, err := ctl.Deliveries(got[0].Seq); err != nil || len(more) != 0 {
		t.Fatalf("deliveries since the last: %+v, %v", more, err)
	}
}
