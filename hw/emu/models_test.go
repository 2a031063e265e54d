package emu_test

import (
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"beaconvend/hw/emu"
)

// Open for 10 s at 8 L/min is 1333.33 mL; at 450 pulses/L that is 600
// pulses exactly. Then 15 s at 4 L/min adds 1000 mL: 2333.33 mL, 1050 pulses.
func TestWaterExactPulses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, mustProfile(t, "pulse-io-4"), mustSim(t, `
machines:
  - {name: tap, kind: water, valve: out1, flow: count1, flow_lpm: 8, k_factor: 450}
`), nil)
		time.Sleep(5 * time.Second) // closed: nothing flows
		r.writeCoil(0, true)
		time.Sleep(10 * time.Second)
		r.writeCoil(0, false)
		if got := r.readInputRegs(0, 2); got[0] != 0 || got[1] != 600 {
			t.Fatalf("count1 registers = %v, want [0 600]", got)
		}
		w := machine(t, r.board.Status(), "tap").Water
		if w.Pulses != 600 || w.DeliveredML != 1333 || w.DeliveredUL != 1333333 || w.Opens != 1 || w.OpenMS != 10000 {
			t.Fatalf("after 10 s at 8 L/min: %+v", *w)
		}
		r.do(emu.Request{Cmd: emu.CmdFlowRate, Machine: "tap", LPM: new(4.0)})
		r.writeCoil(0, true)
		for range 15 { // polled, as a controller does; polling must not change the total
			time.Sleep(time.Second)
			r.readInputRegs(0, 2)
		}
		r.writeCoil(0, false)
		time.Sleep(time.Minute)
		s := r.board.Status()
		w = machine(t, s, "tap").Water
		if w.Pulses != 1050 || w.DeliveredML != 2333 || s.Counters["count1"] != 1050 {
			t.Fatalf("after +15 s at 4 L/min: %+v, counter %d", *w, s.Counters["count1"])
		}
	})
}

func TestWasherCreditAndCycle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, mustProfile(t, "generic-relay-8"), mustSim(t, `
machines:
  - {name: w1, kind: washer, coin: relay1, running: in1, credit: 2, cycle: 10m}
  - {name: w2, kind: washer, coin: relay2, running: in2}
`), nil)
		pulse := func(coil uint16, d time.Duration) {
			r.writeCoil(coil, true)
			time.Sleep(d)
			r.writeCoil(coil, false)
			time.Sleep(100 * time.Millisecond)
		}
		pulse(0, 5*time.Millisecond)   // too short
		pulse(0, 500*time.Millisecond) // too long
		pulse(0, 50*time.Millisecond)
		if r.readInput(0) {
			t.Fatal("running after 1 of 2 valid pulses")
		}
		pulse(0, 50*time.Millisecond)
		if !r.readInput(0) {
			t.Fatal("not running after 2 valid pulses")
		}
		if r.readInput(1) {
			t.Fatal("washer 2 runs without a pulse")
		}
		pulse(0, 50*time.Millisecond) // while running: swallowed
		w := machine(t, r.board.Status(), "w1").Washer
		if w.ValidPulses != 2 || w.InvalidPulses != 2 || w.IgnoredPulses != 1 || w.CoinPulses != 5 || w.CyclesStarted != 1 || w.CyclesCompleted != 0 {
			t.Fatalf("w1 during cycle: %+v", *w)
		}
		time.Sleep(10 * time.Minute)
		if r.readInput(0) {
			t.Fatal("still running after the 10 min cycle")
		}
		w = machine(t, r.board.Status(), "w1").Washer
		if w.CyclesCompleted != 1 || w.Running {
			t.Fatalf("w1 after cycle: %+v", *w)
		}
		pulse(1, 100*time.Millisecond) // washer 2: credit 1, default cycle 30 s
		if !r.readInput(1) {
			t.Fatal("washer 2 not running")
		}
		time.Sleep(31 * time.Second)
		if w := machine(t, r.board.Status(), "w2").Washer; w.CyclesCompleted != 1 {
			t.Fatalf("w2: %+v", *w)
		}
	})
}

func TestVendingDropAndJam(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, mustProfile(t, "generic-relay-16"), mustSim(t, `
machines:
  - name: snacks
    kind: vending
    drop: in16
    slots:
      - {name: A1, motor: relay1}
      - {name: A2, motor: relay2, jammed: true}
`), nil)
		// vend runs the motor until the drop sensor is seen by a 100 ms
		// poll, or gives up after 3 s; it returns whether it saw a drop.
		vend := func(coil uint16) bool {
			time.Sleep(time.Second) // let the sensor clear from the last drop
			r.writeCoil(coil, true)
			defer r.writeCoil(coil, false)
			for range 30 {
				time.Sleep(100 * time.Millisecond)
				if r.readInput(15) {
					return true
				}
			}
			return false
		}
		if !vend(0) {
			t.Fatal("A1: no drop seen")
		}
		time.Sleep(time.Second)
		if r.readInput(15) {
			t.Fatal("drop sensor still active 1 s after the drop")
		}
		if vend(1) {
			t.Fatal("jammed A2 dropped an item")
		}
		r.do(emu.Request{Cmd: emu.CmdJam, Machine: "snacks", Slot: "A2", Jammed: new(false)})
		if !vend(1) {
			t.Fatal("A2 freed: no drop seen")
		}
		r.do(emu.Request{Cmd: emu.CmdJam, Machine: "snacks", Slot: "A1"})
		if vend(0) {
			t.Fatal("A1 jammed at run time: dropped")
		}
		v := machine(t, r.board.Status(), "snacks").Vending
		if v.Items != 2 || v.Slots[0].Items != 1 || v.Slots[1].Items != 1 || v.Slots[0].Runs != 2 || v.Slots[1].Runs != 2 || !v.Slots[0].Jammed {
			t.Fatalf("vending status: %+v", *v)
		}
	})
}

// A vending machine that names a drop_counter counts one pulse on it per
// item dropped, so a controller that missed the drop input (it was not
// polling) can still tell how many items fell; a jammed slot counts none.
func TestVendingDropCounter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, mustProfile(t, "pulse-io-4"), mustSim(t, `
machines:
  - name: snacks
    kind: vending
    drop: in1
    drop_counter: count1
    drop_after: 800ms
    slots:
      - {name: A1, motor: out1}
      - {name: A2, motor: out2, jammed: true}
`), nil)
		r.writeCoil(0, true)
		time.Sleep(2500 * time.Millisecond) // three drops: at 0.8, 1.6 and 2.4 s
		r.writeCoil(0, false)
		r.writeCoil(1, true)
		time.Sleep(2 * time.Second)
		r.writeCoil(1, false)
		time.Sleep(time.Second)
		if got := r.readInputRegs(0, 2); got[0] != 0 || got[1] != 3 {
			t.Fatalf("count1 registers = %v, want [0 3]", got)
		}
		s := r.board.Status()
		if v := machine(t, s, "snacks").Vending; v.Items != 3 || s.Counters["count1"] != 3 {
			t.Fatalf("vending status %+v, counter %d; want 3 items counted", *v, s.Counters["count1"])
		}
	})
}

func TestWatchdogLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, mustProfile(t, "pulse-io-4"), mustSim(t, `
machines:
  - {name: tap, kind: water, valve: out1, flow: count1, flow_lpm: 6, k_factor: 1000}
`), nil)
		r.writeReg(100, 10) // 10 × 100 ms
		r.writeCoil(0, true)
		r.writeCoil(1, true)
		for range 5 { // refreshed every 900 ms: stays on
			time.Sleep(900 * time.Millisecond)
			r.writeReg(100, 10)
		}
		s := r.board.Status()
		if !s.Coils["out1"] || !s.Coils["out2"] || s.WatchdogTrips != 0 {
			t.Fatalf("refreshed lease: coils %v, trips %d", s.Coils, s.WatchdogTrips)
		}
		time.Sleep(5 * time.Second) // the controller died
		s = r.board.Status()
		if s.Coils["out1"] || s.Coils["out2"] || s.WatchdogTrips != 1 || s.Watchdog.Armed {
			t.Fatalf("lapsed lease: coils %v, trips %d, %+v", s.Coils, s.WatchdogTrips, *s.Watchdog)
		}
		// The valve was open 4.5 s + 1 s lease at 6 L/min = 550 mL = 550 pulses, no more.
		if w := machine(t, s, "tap").Water; w.DeliveredML != 550 || w.Pulses != 550 {
			t.Fatalf("delivered %+v, want 550 mL", *w)
		}
		r.do(emu.Request{Cmd: emu.CmdStuckInput, Input: "in1", Level: new(true)})
		r.writeCoil(2, true)
		st := r.do(emu.Request{Cmd: emu.CmdExpireLease})
		if st.Coils["out3"] || st.ForcedOffs != 1 || !st.Inputs["in1"] {
			t.Fatalf("after expire_lease: %+v", st)
		}
	})
}

func TestCommTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, mustProfile(t, "generic-relay-4"), mustSim(t, "comm_timeout: 2s\n"), nil)
		r.writeCoil(3, true)
		for range 5 {
			time.Sleep(1500 * time.Millisecond)
			r.readInput(0)
		}
		if s := r.board.Status(); !s.Coils["relay4"] || s.CommTrips != 0 {
			t.Fatalf("polled every 1.5 s: coils %v, trips %d", s.Coils, s.CommTrips)
		}
		time.Sleep(2100 * time.Millisecond)
		if s := r.board.Status(); s.Coils["relay4"] || s.CommTrips != 1 || s.CommTimeoutMS != 2000 {
			t.Fatalf("silent 2.1 s: coils %v, trips %d", s.Coils, s.CommTrips)
		}
	})
}

// Opts.CommTimeout overrides the sim config (hwsim -comm-timeout).
func TestCommTimeoutOverride(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, mustProfile(t, "generic-relay-4"), nil, &emu.Opts{CommTimeout: 500 * time.Millisecond})
		r.writeCoil(0, true)
		time.Sleep(600 * time.Millisecond)
		if s := r.board.Status(); s.Coils["relay1"] || s.CommTrips != 1 {
			t.Fatalf("coils %v, trips %d", s.Coils, s.CommTrips)
		}
	})
}

// Opts.OnCoil hears every change of a coil, in order, at the instant it
// took effect: Modbus writes, a lapsed lease (at its deadline, not when it
// is noticed) and expire_lease; a write that changes nothing is not heard.
func TestOnCoil(t *testing.T) {
	type change struct {
		addr uint16
		on   bool
		at   time.Duration // since the test began
	}
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		var mu sync.Mutex
		var got []change
		r := newRig(t, mustProfile(t, "pulse-io-4"), mustSim(t, `
machines:
  - {name: tap, kind: water, valve: out1, flow: count1, flow_lpm: 6, k_factor: 1000}
`), &emu.Opts{OnCoil: func(addr uint16, on bool, at time.Time) {
			mu.Lock()
			got = append(got, change{addr, on, at.Sub(t0)})
			mu.Unlock()
		}})
		r.writeReg(100, 10) // a 1 s lease
		r.writeCoil(0, true)
		r.writeCoil(0, true) // no change
		time.Sleep(300 * time.Millisecond)
		r.writeCoil(1, true)
		r.writeCoil(1, false)
		r.writeCoil(1, false) // no change
		time.Sleep(2 * time.Second)
		r.board.Status()
		r.writeCoil(2, true)
		r.do(emu.Request{Cmd: emu.CmdExpireLease})
		want := []change{
			{0, true, 0},
			{1, true, 300 * time.Millisecond},
			{1, false, 300 * time.Millisecond},
			{0, false, time.Second}, // the lease's deadline
			{2, true, 2300 * time.Millisecond},
			{2, false, 2300 * time.Millisecond},
		}
		mu.Lock()
		defer mu.Unlock()
		if !slices.Equal(got, want) {
			t.Fatalf("OnCoil heard %v, want %v", got, want)
		}
	})
}

// Every washer of the built-in sim configs starts a cycle on one coin pulse
// of the controller's default shape (50 ms, hw/machine), because that is
// what provisioning configures (pulses_per_credit 1): a new operator who
// provisions a washer board and runs hwsim with a built-in config must see
// the first purchase start. A machine set to several coins a cycle is
// configured on both sides (credit in the sim, pulses_per_credit in the
// wiring).
func TestBuiltInWashersStartOnOneDefaultCoinPulse(t *testing.T) {
	n := 0
	for _, name := range emu.ExampleNames() {
		cfg, err := emu.LoadSimConfig(name)
		if err != nil {
			t.Fatal(err)
		}
		p, err := cfg.ResolveProfile("")
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range cfg.Machines {
			if m.Kind != emu.KindWasher {
				continue
			}
			n++
			t.Run(name+"/"+m.Name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					r := newRig(t, p, cfg, nil)
					coin, _ := p.Output(m.Coin)
					run, _ := p.Input(m.Running)
					r.writeCoil(coin.Coil, true)
					time.Sleep(50 * time.Millisecond)
					r.writeCoil(coin.Coil, false)
					time.Sleep(100 * time.Millisecond)
					if !r.readInput(run.Input) {
						w := machine(t, r.board.Status(), m.Name).Washer
						t.Errorf("%s: washer %s not running after one coin pulse: credit %d of %d", name, m.Name, w.Credit, w.CreditNeeded)
					}
				})
			})
		}
	}
	if n == 0 {
		t.Fatal("no washer in the built-in sim configs")
	}
}
