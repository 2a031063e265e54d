package daemon_test

import (
	"testing"
	"time"

	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
)

const laundryCfg = `machines:
  - id: washer-1
    kind: washer
    currency: EUR
    price: {minor: 350, per: 1}
    washer: {coin: relay1, running: in1, pulses_per_credit: 2, debounce: 300ms, start_timeout: 5s}
  - id: washer-2
    kind: washer
    currency: EUR
    price: {minor: 350, per: 1}
    washer: {coin: relay2, running: in2, pulses_per_credit: 2, debounce: 300ms, start_timeout: 5s}
`

const laundrySim = `profile: generic-relay-8
machines:
  - {name: w1, kind: washer, coin: relay1, running: in1, credit: 2, cycle: 1500ms}
  - {name: w2, kind: washer, coin: relay2, running: in2, credit: 2, cycle: 1500ms}
`

func TestLaundryCycleEndToEnd(t *testing.T) {
	r := newRig(t, "generic-relay-8", laundrySim, laundryCfg)
	r.startDaemon()
	g, gb := r.cloud.Grant("dev-1", "washer-2", "", vend.UnitCycle, vend.Price{Minor: 350, Per: 1}, 1, time.Minute)
	if rep := r.cloud.WaitReply(r.cloud.Authorize("dev-1", "washer-2", gb)); !rep.OK {
		t.Fatal(rep)
	}
	u := r.cloud.WaitUsage(g.Session, r.devPub)
	if err := signed.CheckAgainstGrant(u, g); err != nil {
		t.Fatal(err)
	}
	if u.Outcome != vend.OutcomeCompleted || u.Units != 1 || u.Amount != 350 {
		t.Fatalf("usage %+v", u)
	}
	st := r.status()
	if w := st.Machines[1].Washer; w.CyclesCompleted != 1 || w.ValidPulses != 2 {
		t.Errorf("emulated washer-2: %+v", w)
	}
	if w := st.Machines[0].Washer; w.CoinPulses != 0 {
		t.Errorf("washer-1 got coins: %+v", w)
	}
}

const vendingCfg = `machines:
  - id: vm
    kind: vending
    currency: EUR
    vending: {drop: in16, drop_timeout: 1500ms}
    slots:
      - {id: A1, name: Cola, output: relay1, price: {minor: 150, per: 1}}
      - {id: A2, name: Chips, output: relay2, price: {minor: 120, per: 1}}
`

const vendingSim = `profile: generic-relay-16
machines:
  - name: vm
    kind: vending
    drop: in16
    drop_after: 300ms
    drop_pulse: 300ms
    slots:
      - {name: A1, motor: relay1}
      - {name: A2, motor: relay2, jammed: true}
`

func TestVendAndJamEndToEnd(t *testing.T) {
	r := newRig(t, "generic-relay-16", vendingSim, vendingCfg)
	r.startDaemon()
	g, gb := r.cloud.Grant("dev-1", "vm", "A1", vend.UnitItem, vend.Price{Minor: 150, Per: 1}, 1, time.Minute)
	if rep := r.cloud.WaitReply(r.cloud.Authorize("dev-1", "vm", gb)); !rep.OK {
		t.Fatal(rep)
	}
	u := r.cloud.WaitUsage(g.Session, r.devPub)
	if u.Outcome != vend.OutcomeCompleted || u.Units != 1 || u.Amount != 150 || u.Slot != "A1" {
		t.Fatalf("vend: %+v", u)
	}
	// The jammed slot: the motor turns, nothing drops, nothing is charged.
	g2, gb2 := r.cloud.Grant("dev-1", "vm", "A2", vend.UnitItem, vend.Price{Minor: 120, Per: 1}, 1, time.Minute)
	if rep := r.cloud.WaitReply(r.cloud.Authorize("dev-1", "vm", gb2)); !rep.OK {
		t.Fatal(rep)
	}
	u2 := r.cloud.WaitUsage(g2.Session, r.devPub)
	if u2.Outcome != vend.OutcomeVendFailed || u2.Units != 0 || u2.Amount != 0 {
		t.Fatalf("jam: %+v", u2)
	}
	st := r.status()
	if st.Machines[0].Vending.Items != 1 || st.Coils["relay1"] || st.Coils["relay2"] {
		t.Errorf("emulator: %+v coils %v", st.Machines[0].Vending, st.Coils)
	}
	// A slot the machine does not have.
	_, gb3 := r.cloud.Grant("dev-1", "vm", "Z9", vend.UnitItem, vend.Price{Minor: 120, Per: 1}, 1, time.Minute)
	if rep := r.cloud.WaitReply(r.cloud.Authorize("dev-1", "vm", gb3)); rep.OK || rep.Code != "machine.unknown" {
		t.Errorf("unknown slot: %+v", rep)
	}
}
