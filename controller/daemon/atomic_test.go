package daemon_test

import (
	"testing"
	"time"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/vend"
)

// A Stop right after the first coin pulse: the credit given is in the
// washer, so the session waits for the cycle and bills it; two such stops
// must not add up to a free cycle.
func TestStopAfterFirstCoinPulseBillsTheCycle(t *testing.T) {
	r := newRig(t, "generic-relay-8", laundrySim, laundryCfg)
	r.startDaemon()
	for i := 0; i < 2; i++ {
		g, gb := r.cloud.Grant("dev-1", "washer-1", "", vend.UnitCycle, vend.Price{Minor: 350, Per: 1}, 1, time.Minute)
		if rep := r.cloud.WaitReply(r.cloud.Authorize("dev-1", "washer-1", gb)); !rep.OK {
			t.Fatal(rep)
		}
		before := 2 * i
		eventually(t, "a coin pulse", func() bool { return r.status().Machines[0].Washer.CoinPulses > before })
		stop := r.cloud.Send("dev-1", &mqttapi.Stop{Envelope: mqttapi.NewEnvelope(time.Now()), Session: g.Session, Machine: "washer-1"})
		if rep := r.cloud.WaitReply(stop); !rep.OK {
			t.Fatalf("stop: %+v", rep)
		}
		u := r.cloud.WaitUsage(g.Session, r.devPub)
		w := r.status().Machines[0].Washer
		if u.Units != 1 || u.Amount != 350 {
			t.Errorf("session %d stopped after a coin pulse: usage %+v (washer %+v), want the cycle billed", i, u, w)
		}
	}
	w := r.status().Machines[0].Washer
	if w.CyclesStarted != 2 || w.Credit != 0 {
		t.Errorf("washer after two paid sessions: %+v, want 2 cycles and no credit banked", w)
	}
}

// A Stop while a spiral turns: the vend finishes (drop or jam timeout),
// and the item that dropped is billed.
func TestStopDuringVendIsAtomic(t *testing.T) {
	r := newRig(t, "generic-relay-16", vendingSim, vendingCfg)
	r.startDaemon()
	g, gb := r.cloud.Grant("dev-1", "vm", "A1", vend.UnitItem, vend.Price{Minor: 150, Per: 1}, 1, time.Minute)
	if rep := r.cloud.WaitReply(r.cloud.Authorize("dev-1", "vm", gb)); !rep.OK {
		t.Fatal(rep)
	}
	eventually(t, "motor on", func() bool { return r.status().Coils["relay1"] })
	stop := r.cloud.Send("dev-1", &mqttapi.Stop{Envelope: mqttapi.NewEnvelope(time.Now()), Session: g.Session, Machine: "vm"})
	if rep := r.cloud.WaitReply(stop); !rep.OK {
		t.Fatalf("stop: %+v", rep)
	}
	u := r.cloud.WaitUsage(g.Session, r.devPub)
	st := r.status()
	items := st.Machines[0].Vending.Slots[0].Items
	if items != 1 {
		t.Errorf("spiral stopped mid-turn: %d items dropped", items)
	}
	if u.Units != uint64(items) || u.Outcome != vend.OutcomeCompleted {
		t.Errorf("usage %+v, emulator dropped %d", u, items)
	}
	if st.Coils["relay1"] {
		t.Error("motor still on")
	}
}
