package machine_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"beaconvend/hw/machine"
)

// Resume completes a purchase a crash interrupted so that the washer gets
// exactly its credit: the rest of the train when the recorded pulse had
// counted, and the recorded pulse once more when it had not; every pulse
// recorded before it is driven.
func TestWasherResumeCompletesTheCredit(t *testing.T) {
	for _, c := range []struct {
		name      string
		given     int // pulses the machine really took before the crash
		committed int // the pulse recorded as about to be driven
		want      []int
	}{
		{"first pulse counted", 1, 1, []int{2}},
		{"first pulse lost", 0, 1, []int{2, 3}},
		{"whole train recorded, last pulse lost", 1, 2, []int{3}},
		{"extra pulse already given", 1, 3, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, laundrySim, -1)
			b := r.open(t, fastOpts())
			w, err := machine.NewWasher(b, machine.WasherConfig{Coin: "relay1", Running: "in1", PulsesPerCredit: 2, Debounce: 300 * time.Millisecond, StartTimeout: 700 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			for range c.given {
				if err := b.Pulse(context.Background(), "relay1", 50*time.Millisecond, 100*time.Millisecond); err != nil {
					t.Fatal(err)
				}
			}
			var recorded []int
			res, err := w.Resume(context.Background(), machine.Purchase{Credits: 1, BeforePulse: func(n int) error {
				recorded = append(recorded, n)
				return nil
			}}, c.committed)
			if err != nil {
				t.Fatal(err)
			}
			ws := r.status(t).Machines[0].Washer
			want := machine.StopCompleted
			if c.committed > 2 {
				want = machine.StopNoStart // the credit was given up on: nothing more driven
			}
			if res.Reason != want || (want == machine.StopCompleted && res.Units != 1) {
				t.Errorf("Resume = %+v, want %s", res, want)
			}
			if len(recorded) != len(c.want) || (len(c.want) > 0 && recorded[0] != c.want[0]) {
				t.Errorf("pulses recorded %v, want %v", recorded, c.want)
			}
			if c.committed <= 2 && (ws.CyclesStarted != 1 || ws.Credit != 0) {
				t.Errorf("washer: %d cycles started, credit %d left; want 1 and 0", ws.CyclesStarted, ws.Credit)
			}
		})
	}
}

// Resume refuses a machine already running while part of the credit was
// never driven (it is not this purchase's cycle), and meters a running
// machine as the purchase's cycle when the whole train was recorded.
func TestWasherResumeOfARunningMachine(t *testing.T) {
	r := newRig(t, laundrySim, -1)
	b := r.open(t, fastOpts())
	w, err := machine.NewWasher(b, machine.WasherConfig{Coin: "relay1", Running: "in1", PulsesPerCredit: 2, Debounce: 300 * time.Millisecond, StartTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := b.Pulse(context.Background(), "relay1", 50*time.Millisecond, 100*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "washer running", w.Running)
	if _, err := w.Resume(context.Background(), machine.Purchase{Credits: 1}, 1); err == nil {
		t.Error("Resume from pulse 1 of a running machine: no error")
	}
	res, err := w.Resume(context.Background(), machine.Purchase{Credits: 1, BeforePulse: func(n int) error {
		t.Errorf("pulse %d driven into a running machine", n)
		return nil
	}}, 2)
	if err != nil || res.Reason != machine.StopCompleted || res.Units != 1 {
		t.Errorf("Resume of the running cycle = %+v, %v", res, err)
	}
}

// Settled reads the flow counter once the valve is off and the counter
// still; Flowed adds what it counted after the last journaled reading and
// refuses a counter that went backwards (reset by a power cut, another
// board).
func TestWaterSettledAndFlowed(t *testing.T) {
	r := newRig(t, waterSim, -1)
	b := r.open(t, fastOpts())
	w, err := machine.NewWater(b, machine.WaterConfig{Valve: "out1", Flow: "count1", KFactorMilli: 450_000})
	if err != nil {
		t.Fatal(err)
	}
	start := uint64(b.Snapshot().Counters["count1"])
	if err := b.Set(context.Background(), "out1", true, time.Hour); err != nil {
		t.Fatal(err)
	}
	eventually(t, "flow", func() bool { return uint64(b.Snapshot().Counters["count1"]) > start+100 })
	last := uint64(b.Snapshot().Counters["count1"])
	time.Sleep(300 * time.Millisecond) // it keeps flowing past the last reading
	if _, _, err := w.Settled(context.Background(), 200*time.Millisecond, 500*time.Millisecond); err == nil {
		t.Error("Settled with the valve open: no error")
	}
	if err := b.Set(context.Background(), "out1", false, 0); err != nil {
		t.Fatal(err)
	}
	raw, stable, err := w.Settled(context.Background(), 200*time.Millisecond, 3*time.Second)
	if err != nil || !stable {
		t.Fatalf("Settled = %d, %v, %v", raw, stable, err)
	}
	truth := r.status(t).Machines[0].Water.Pulses
	pulses, ok := w.Flowed(start, last, raw)
	if !ok || start+pulses != truth || pulses <= last-start {
		t.Errorf("Flowed(%d, %d, %d) = %d, %v; the emulator counted %d", start, last, raw, pulses, ok, truth)
	}
	if _, ok := w.Flowed(start, last, 3); ok && last > 3 {
		t.Error("a counter reset below the last reading was accepted")
	}
	if _, ok := w.Flowed(last, start, raw); ok && last > start {
		t.Error("a last reading below the start was accepted")
	}
	// Past a 32-bit wrap the counter's advance still counts.
	if p, ok := w.Flowed(0xFFFF_FF00, 0xFFFF_FFF0, 0x10); !ok || p != 0x110 {
		t.Errorf("Flowed across the wrap = %d, %v; want %d", p, ok, 0x110)
	}
}

const vendingCounterSim = `profile: pulse-io-4
machines:
  - name: snacks
    kind: vending
    drop: in1
    drop_counter: count1
    drop_after: 300ms
    slots: [{name: A1, motor: out1}, {name: A2, motor: out2}]
`

// A motor left turning (a crashed controller) drops items the drop
// counter counts: Settled waits for every motor to read OFF and the
// counter to be still, and Dropped returns what fell since the journaled
// start; a counter gone backwards is refused.
func TestVendingSettledAndDropped(t *testing.T) {
	r := newRig(t, vendingCounterSim, -1)
	b := r.open(t, fastOpts())
	v, err := machine.NewVending(b, machine.VendingConfig{Motors: map[string]string{"A1": "out1", "A2": "out2"}, Drop: "in1", DropCounter: "count1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := machine.NewVending(b, machine.VendingConfig{Motors: map[string]string{"A1": "out1"}, Drop: "in1", DropCounter: "count9"}); !errors.Is(err, machine.ErrConfig) {
		t.Errorf("NewVending with drop counter count9: %v, want ErrConfig", err)
	}
	raw0, ok := v.DropCount(b.Snapshot())
	if !ok || v.DropCounter() != "count1" {
		t.Fatalf("DropCount = %d, %v; DropCounter = %q", raw0, ok, v.DropCounter())
	}
	start := uint64(raw0)
	if err := b.Set(context.Background(), "out2", true, time.Hour); err != nil {
		t.Fatal(err)
	}
	eventually(t, "two items dropped", func() bool { return r.status(t).Machines[0].Vending.Items >= 2 })
	if _, _, err := v.Settled(context.Background(), 200*time.Millisecond, 500*time.Millisecond); err == nil {
		t.Error("Settled with a motor on: no error")
	}
	if err := b.Set(context.Background(), "out2", false, 0); err != nil {
		t.Fatal(err)
	}
	raw, stable, err := v.Settled(context.Background(), 200*time.Millisecond, 3*time.Second)
	if err != nil || !stable {
		t.Fatalf("Settled = %d, %v, %v", raw, stable, err)
	}
	truth := uint64(r.status(t).Machines[0].Vending.Items)
	if items, ok := v.Dropped(start, start, raw); !ok || items != truth {
		t.Errorf("Dropped(%d, %d, %d) = %d, %v; the emulator dropped %d", start, start, raw, items, ok, truth)
	}
	if _, ok := v.Dropped(start+100, start+100, raw); ok {
		t.Error("a counter below the journaled start was accepted")
	}
	plain, err := machine.NewVending(b, machine.VendingConfig{Motors: map[string]string{"A1": "out1"}, Drop: "in1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := plain.DropCount(b.Snapshot()); ok || plain.DropCounter() != "" {
		t.Error("DropCount of a machine without a drop counter: ok")
	}
	if _, _, err := plain.Settled(context.Background(), time.Millisecond, time.Millisecond); !errors.Is(err, machine.ErrConfig) {
		t.Errorf("Settled without a drop counter: %v, want ErrConfig", err)
	}
}
