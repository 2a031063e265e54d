package machine_test

import (
	"context"
	"testing"
	"time"

	"beaconvend/hw/machine"
)

// Cancelling a vend once the motor turns changes nothing: the item drops
// and is counted, the motor is off after. Cancelled before, nothing turns.
func TestVendIsAtomicOnceTheMotorTurns(t *testing.T) {
	r := newRig(t, vendingSim, -1)
	b := r.open(t, fastOpts())
	v, err := machine.NewVending(b, machine.VendingConfig{Motors: map[string]string{"A1": "relay1"}, Drop: "in16", DropTimeout: 1500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for !r.status(t).Coils["relay1"] {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
	}()
	res, err := v.Vend(ctx, "A1", nil)
	if err != nil || res.Reason != machine.StopCompleted || res.Units != 1 {
		t.Fatalf("vend cancelled mid-turn = %+v, %v; want the drop", res, err)
	}
	st := r.status(t)
	if st.Machines[0].Vending.Items != 1 || st.Coils["relay1"] {
		t.Errorf("emulator: %d items, motor on %v", st.Machines[0].Vending.Items, st.Coils["relay1"])
	}
	res, err = v.Vend(ctx, "A1", nil)
	if err != nil || res.Reason != machine.StopRequested || res.Units != 0 {
		t.Fatalf("vend cancelled before = %+v, %v", res, err)
	}
	if runs := r.status(t).Machines[0].Vending.Slots[0].Runs; runs != 1 {
		t.Errorf("motor started %d times, want 1", runs)
	}
}

// Cancelling a washer purchase after its first coin pulse changes
// nothing: every pulse of the credit is given and the cycle is metered.
func TestWasherPurchaseIsAtomicOnceAPulseIsGiven(t *testing.T) {
	r := newRig(t, laundrySim, -1)
	b := r.open(t, fastOpts())
	w, err := machine.NewWasher(b, machine.WasherConfig{Coin: "relay1", Running: "in1", PulsesPerCredit: 2, Debounce: 300 * time.Millisecond, StartTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for r.status(t).Machines[0].Washer.CoinPulses == 0 {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
	}()
	res, err := w.Cycle(ctx, 1, false, nil)
	if err != nil || res.Reason != machine.StopCompleted || res.Units != 1 {
		t.Fatalf("cycle cancelled after a pulse = %+v, %v; want the cycle", res, err)
	}
	ws := r.status(t).Machines[0].Washer
	if ws.ValidPulses != 2 || ws.CyclesCompleted != 1 || ws.Credit != 0 {
		t.Errorf("emulator washer: %+v", ws)
	}
	res, err = w.Cycle(ctx, 1, false, nil)
	if err != nil || res.Reason != machine.StopRequested {
		t.Fatalf("cycle cancelled before = %+v, %v", res, err)
	}
	if ws := r.status(t).Machines[0].Washer; ws.CoinPulses != 2 {
		t.Errorf("%d coin pulses, want 2", ws.CoinPulses)
	}
}
