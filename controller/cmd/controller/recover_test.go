package main_test

import (
	"strings"
	"testing"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/controller/internal/testrig"
	"beaconvend/hw/emu"
)

// A controller killed with SIGKILL during a pour leaves the valve flowing
// until the board drops it (its watchdog, or the restarted controller's
// all-OFF). Recovery bills what the board's flow counter says flowed, not
// the last journaled reading (up to a second old): the report equals the
// emulator's delivered volume within the meter's rounding (one pulse is
// 2.2 mL at 450 pulses/L, either way: the counter and the volume are
// floored separately).
func TestKillDuringPourBillsWhatFlowed(t *testing.T) {
	r := newProcRig(t)
	r.start()
	for i, c := range []struct {
		name      string
		killAfter int64 // mL delivered when the controller is killed
		waitValve bool  // let the board's watchdog close the valve before the restart
	}{
		{"watchdog closes the valve", 700, true},
		{"restart closes the valve", 450, false},
	} {
		const capML = 3000
		before, poured := r.deliverySeq(), r.waterML()
		g, gb := r.cloud.Grant("dev-pc", "m1", "", vend.UnitML, vend.Price{Minor: 50, Per: 1000}, capML, time.Minute)
		if rep := r.cloud.WaitReply(r.cloud.Authorize("dev-pc", "m1", gb)); !rep.OK {
			t.Fatalf("%s: refused: %+v", c.name, rep)
		}
		testrig.Eventually(t, "water flowing", func() bool { return r.waterML()-poured >= c.killAfter })
		r.kill()
		if c.waitValve {
			testrig.Eventually(t, "the board's watchdog closes the valve", func() bool { return !r.waterOpen() })
		}
		r.start()
		u := r.cloud.WaitUsage(g.Session, r.devPub)
		d := r.waterDelivery(before)
		truthML := d.DeliveredUL / 1000
		t.Logf("%s: reported %d mL (%s), the board delivered %d µL", c.name, u.Units, u.Outcome, d.DeliveredUL)
		if diff := int64(u.Units) - min(truthML, capML); diff < -3 || diff > 3 {
			t.Errorf("case %d (%s): reported %d mL, the board delivered %d mL: off by %d mL", i, c.name, u.Units, truthML, diff)
		}
		if u.Outcome != vend.OutcomeInterrupted {
			t.Errorf("case %d: outcome %s, want interrupted", i, u.Outcome)
		}
		if cost, _ := (vend.Price{Minor: 50, Per: 1000}).Cost(u.Units); u.Amount != cost {
			t.Errorf("case %d: amount %d for %d mL, want %d", i, u.Amount, u.Units, cost)
		}
	}
}

// deliverySeq is the sequence number of the board's latest delivery.
func (r *procRig) deliverySeq() uint64 {
	ds, _, err := r.ctl.Deliveries(0)
	if err != nil {
		r.t.Fatal(err)
	}
	if len(ds) == 0 {
		return 0
	}
	return ds[len(ds)-1].Seq
}

// waterDelivery is the one valve opening after delivery seq.
func (r *procRig) waterDelivery(seq uint64) emu.Delivery {
	ds, _, err := r.ctl.Deliveries(seq)
	if err != nil {
		r.t.Fatal(err)
	}
	var out []emu.Delivery
	for _, d := range ds {
		if d.Kind == emu.KindWater {
			out = append(out, d)
		}
	}
	if len(out) != 1 {
		r.t.Fatalf("%d valve openings after delivery %d, want 1: %+v", len(out), seq, out)
	}
	return out[0]
}

func (r *procRig) waterML() int64 {
	for _, m := range r.status().Machines {
		if m.Water != nil {
			return m.Water.DeliveredML
		}
	}
	return 0
}

func (r *procRig) waterOpen() bool {
	for _, m := range r.status().Machines {
		if m.Water != nil {
			return m.Water.ValveOpen
		}
	}
	return false
}

// A controller killed with SIGKILL in the middle of the coin-pulse train
// (the washer needs two pulses per cycle) leaves part of the credit banked
// in the washer. The restarted controller completes the credit, so the
// washer runs exactly the one cycle its payer is billed for, once, and no
// credit stays banked for the next payer. Killed in the gap after the
// first pulse (it counted), and while the first pulse is on (the board
// drops it long after the washer's longest valid pulse: it did not count).
func TestKillInCoinPulseTrainCompletesTheCredit(t *testing.T) {
	for _, c := range []struct {
		name string
		cut  func(r *procRig) bool
		wait time.Duration // before the restart
	}{
		{"after a counted pulse", func(r *procRig) bool { return r.washer().Credit >= 1 }, 0},
		{"during a pulse", func(r *procRig) bool { return r.washer().CoinPulses >= 1 }, 2 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newProcRig(t)
			r.resumes = true
			r.start()
			g, gb := r.cloud.Grant("dev-pc", "w1", "", vend.UnitCycle, vend.Price{Minor: 350, Per: 1}, 1, time.Minute)
			r.cloud.Authorize("dev-pc", "w1", gb)
			for deadline := time.Now().Add(10 * time.Second); !c.cut(r); time.Sleep(2 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("no coin pulse")
				}
			}
			r.kill()
			w := r.washer()
			t.Logf("killed with %d coin pulses given, credit %d banked, %d cycles started", w.CoinPulses, w.Credit, w.CyclesStarted)
			time.Sleep(c.wait)
			r.start()
			u := r.cloud.WaitUsage(g.Session, r.devPub)
			w = r.washer()
			t.Logf("report %d cycle(s) %d (%s); washer: %d pulses, credit %d, %d cycles started", u.Units, u.Amount, u.Outcome, w.CoinPulses, w.Credit, w.CyclesStarted)
			if u.Units != 1 || u.Amount != 350 {
				t.Errorf("report %+v, want 1 cycle billed (350)", u)
			}
			if w.CyclesStarted != 1 || w.Credit != 0 {
				t.Errorf("washer ran %d cycles with %d pulses of credit left banked, want 1 cycle and none", w.CyclesStarted, w.Credit)
			}
			time.Sleep(500 * time.Millisecond)
			if n, ids := r.cloud.UsageCount(g.Session); ids != 1 || n < 1 {
				t.Errorf("%d usage deliveries with %d report IDs, want one report", n, ids)
			}
		})
	}
}

// A controller killed just after the washer was seen running (before the
// cycle's first metered reading reached the journal) bills the cycle: a
// washer cannot be stopped from the controller and runs it to its end.
func TestKillAfterWasherStartsBillsTheCycle(t *testing.T) {
	r := newProcRig(t)
	r.start()
	g, gb := r.cloud.Grant("dev-pc", "w1", "", vend.UnitCycle, vend.Price{Minor: 350, Per: 1}, 1, time.Minute)
	r.cloud.Authorize("dev-pc", "w1", gb)
	for deadline := time.Now().Add(10 * time.Second); r.washer().CyclesStarted < 1; time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the washer never started")
		}
	}
	time.Sleep(450 * time.Millisecond) // seen running, not yet a second of it
	r.kill()
	r.start()
	u := r.cloud.WaitUsage(g.Session, r.devPub)
	w := r.washer()
	t.Logf("report %d cycle(s) %d (%s); washer: %d cycles started", u.Units, u.Amount, u.Outcome, w.CyclesStarted)
	if u.Units != 1 || u.Amount != 350 {
		t.Errorf("report %+v, want the cycle the washer ran billed (1, 350)", u)
	}
	if w.CyclesStarted != 1 {
		t.Errorf("washer ran %d cycles, want 1", w.CyclesStarted)
	}
}

// A controller killed with SIGKILL while a vending motor turns leaves the
// motor turning until the board drops it (its output watchdog, or the
// restarted controller's all-OFF), and items fall that no controller saw
// on the drop input. With the drop sensor also counted by the board
// (drop_counter), recovery bills the items the counter counted since the
// vend's journaled start: exactly what the emulator dropped, capped at the
// grant's cap.
func TestKillDuringVendBillsWhatDropped(t *testing.T) {
	const old = "vending: {drop: in4, drop_timeout: 1500ms}"
	if !strings.Contains(powerMachines, old) {
		t.Fatalf("powerMachines lacks %q", old)
	}
	r := newProcRigMachines(t, strings.Replace(powerMachines, old, "vending: {drop: in4, drop_counter: count4, drop_timeout: 1500ms}", 1))
	r.start()
	price := vend.Price{Minor: 150, Per: 1}
	for i, c := range []struct {
		name      string
		capItems  uint64
		waitMotor bool // let the board's watchdog stop the motor before the restart
	}{
		{"cap 1, watchdog stops the motor", 1, true},
		{"cap 9, watchdog stops the motor", 9, true},
		{"cap 5, restart stops the motor", 5, false},
	} {
		before := r.deliverySeq()
		g, gb := r.cloud.Grant("dev-pc", "vm", "A1", vend.UnitItem, price, c.capItems, time.Minute)
		if rep := r.cloud.WaitReply(r.cloud.Authorize("dev-pc", "vm", gb)); !rep.OK {
			t.Fatalf("%s: refused: %+v", c.name, rep)
		}
		testrig.Eventually(t, "motor A1 turning", func() bool { return r.status().Coils["out2"] })
		r.kill()
		if c.waitMotor {
			testrig.Eventually(t, "the board's watchdog stops the motor", func() bool { return !r.status().Coils["out2"] })
		} else {
			time.Sleep(300 * time.Millisecond) // an item falls before the restart
		}
		r.start()
		u := r.cloud.WaitUsage(g.Session, r.devPub)
		dropped := r.vendDropped(before)
		t.Logf("%s: reported %d item(s) %d (%s), the board dropped %d", c.name, u.Units, u.Amount, u.Outcome, dropped)
		if dropped < 1 {
			t.Fatalf("case %d (%s): the motor dropped nothing; the kill came too late to test recovery", i, c.name)
		}
		if want := min(dropped, c.capItems); u.Units != want {
			t.Errorf("case %d (%s): reported %d item(s), the board dropped %d (cap %d): want %d", i, c.name, u.Units, dropped, c.capItems, want)
		}
		if cost, _ := price.Cost(u.Units); u.Amount != cost {
			t.Errorf("case %d: amount %d for %d item(s), want %d", i, u.Amount, u.Units, cost)
		}
		testrig.Eventually(t, "drop sensor clear", func() bool { return !r.status().Inputs["in4"] })
	}
}

// vendDropped is the items the board's vending motors dropped in the
// motor runs after delivery seq.
func (r *procRig) vendDropped(seq uint64) uint64 {
	ds, _, err := r.ctl.Deliveries(seq)
	if err != nil {
		r.t.Fatal(err)
	}
	var n uint64
	for _, d := range ds {
		if d.Kind == emu.KindVending {
			n += uint64(d.Items)
		}
	}
	return n
}
