package machine_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"beaconvend/hw/emu"
	"beaconvend/hw/machine"
	"beaconvend/hw/modbus"
	"beaconvend/hw/profile"
)

// rig is an emulated board on a real pty, a Modbus master on its slave
// side, and the emulator's control socket for faults and the truth.
type rig struct {
	emu    *emu.Emulator
	ctl    *emu.Control
	master *modbus.Master
	prof   *profile.Profile
	cancel context.CancelFunc
}

func newRig(t *testing.T, simYAML string, commTimeout time.Duration) *rig {
	t.Helper()
	cfg, err := emu.ParseSimConfig(strings.NewReader(simYAML))
	if err != nil {
		t.Fatal(err)
	}
	p, err := cfg.ResolveProfile("")
	if err != nil {
		t.Fatal(err)
	}
	e, err := emu.Open(p, cfg, &emu.Opts{CommTimeout: commTimeout, ControlPath: t.TempDir() + "/ctl.sock"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go e.Run(ctx)
	ctl, err := emu.Dial(e.ControlPath())
	if err != nil {
		t.Fatal(err)
	}
	m, err := modbus.Open(e.BoardPath(), p.Serial, &modbus.Opts{ResponseTimeout: 300 * time.Millisecond, Retries: 1})
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{emu: e, ctl: ctl, master: m, prof: p, cancel: cancel}
	t.Cleanup(func() {
		m.Close()
		ctl.Close()
		cancel()
		e.Close()
	})
	return r
}

func (r *rig) open(t *testing.T, o *machine.Opts) *machine.Board {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := machine.Open(ctx, r.master, r.prof, o)
	if err != nil {
		t.Fatalf("machine.Open: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func (r *rig) status(t *testing.T) *emu.Status {
	t.Helper()
	s, err := r.ctl.Status()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// eventually polls cond for up to 10 s: bounded, not timing-fragile.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

const waterSim = `profile: pulse-io-4
machines:
  - {name: tap, kind: water, valve: out1, flow: count1, flow_lpm: 30, k_factor: 450}
`

func fastOpts() *machine.Opts {
	return &machine.Opts{PollInterval: 50 * time.Millisecond, MaxFailures: 3, RecoverPolls: 3}
}

func TestOpenDrivesEveryOutputOff(t *testing.T) {
	r := newRig(t, waterSim, -1)
	ctx := context.Background()
	// Leave outputs on, as a crashed controller would have.
	for _, c := range []uint16{0, 2, 3} {
		if err := r.master.WriteSingleCoil(ctx, 1, c, true); err != nil {
			t.Fatal(err)
		}
	}
	if s := r.status(t); !s.Coils["out1"] || !s.Coils["out4"] {
		t.Fatalf("setup: coils %v", s.Coils)
	}
	b := r.open(t, fastOpts())
	for n, on := range r.status(t).Coils {
		if on {
			t.Errorf("after Open, %s is ON", n)
		}
	}
	if snap := b.Snapshot(); !snap.OK || snap.Outputs["out1"] {
		t.Errorf("first snapshot %+v", snap)
	}
}

func TestWaterStopsAtExactPulseCountOfCap(t *testing.T) {
	r := newRig(t, waterSim, -1)
	b := r.open(t, fastOpts())
	w, err := machine.NewWater(b, machine.WaterConfig{Valve: "out1", Flow: "count1", KFactorMilli: 450_000})
	if err != nil {
		t.Fatal(err)
	}
	const capML = 400
	target := w.PulsesFor(capML) // 180 pulses
	var progressed int
	res, err := w.Pour(context.Background(), capML, func(p machine.Progress) { progressed++ })
	if err != nil {
		t.Fatal(err)
	}
	if res.Reason != machine.StopCap || res.Units != capML {
		t.Fatalf("Pour = %+v, want cap_reached with %d ml", res, capML)
	}
	pulses := res.MeterEnd - res.MeterStart
	if pulses < target {
		t.Errorf("valve closed after %d pulses, before the cap's %d", pulses, target)
	}
	st := r.status(t)
	water := st.Machines[0].Water
	if st.Coils["out1"] || water.ValveOpen {
		t.Errorf("valve still open after the pour")
	}
	// The emulator's truth: what flowed is what the meter counted.
	if water.Pulses != pulses {
		t.Errorf("metered %d pulses, emulator says %d flowed", pulses, water.Pulses)
	}
	if res.Delivered != w.MLFor(pulses) || res.Delivered < capML {
		t.Errorf("delivered %d ml for %d pulses", res.Delivered, pulses)
	}
	if progressed == 0 {
		t.Error("no progress reported")
	}
}

func TestWaterUserStopAndNoFlow(t *testing.T) {
	r := newRig(t, waterSim, -1)
	b := r.open(t, fastOpts())
	w, _ := machine.NewWater(b, machine.WaterConfig{Valve: "out1", Flow: "count1", KFactorMilli: 450_000, NoFlow: 400 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	res, err := w.Pour(ctx, 100_000, func(p machine.Progress) {
		if p.Units >= 100 {
			cancel()
		}
	})
	if err != nil || res.Reason != machine.StopRequested || res.Units < 100 || res.Units >= 100_000 {
		t.Fatalf("user stop: %+v, %v", res, err)
	}
	if r.status(t).Coils["out1"] {
		t.Fatal("valve open after user stop")
	}
	// An empty tank: no flow while the valve is open.
	if err := r.ctl.SetFlowRate("tap", 0); err != nil {
		t.Fatal(err)
	}
	res, err = w.Pour(context.Background(), 1000, nil)
	if err != nil || res.Reason != machine.StopNoFlow || res.Units != 0 {
		t.Fatalf("no flow: %+v, %v", res, err)
	}
	if r.status(t).Coils["out1"] {
		t.Fatal("valve open after no-flow stop")
	}
}

// A board that stops answering faults after MaxFailures polls: the pour
// ends with a fault and the metered units are kept; outputs are OFF on the
// board once it answers again.
func TestBoardFaultEndsPourOutputsOff(t *testing.T) {
	r := newRig(t, waterSim, -1)
	b := r.open(t, fastOpts())
	w, _ := machine.NewWater(b, machine.WaterConfig{Valve: "out1", Flow: "count1", KFactorMilli: 450_000})
	var last uint64
	res, err := w.Pour(context.Background(), 100_000, func(p machine.Progress) {
		last = p.Units
		if p.Units > 50 && p.Units < 100_000 {
			r.ctl.NoReply(100000)
		}
	})
	if err != nil || res.Reason != machine.StopFault {
		t.Fatalf("Pour = %+v, %v; want fault", res, err)
	}
	if res.Units < last || res.Units == 0 {
		t.Errorf("units %d, last progress %d: metered units lost", res.Units, last)
	}
	if !b.Status().Fault {
		t.Errorf("board not in fault: %+v, result %+v", b.Status(), res)
	}
	if err := b.Set(context.Background(), "out1", true, time.Second); err == nil {
		t.Error("Set ON allowed while in fault")
	}
	r.ctl.ClearFaults()
	eventually(t, "fault to clear", func() bool { return !b.Status().Fault })
	if r.status(t).Coils["out1"] {
		t.Error("valve ON after the fault")
	}
}

// An output whose owner stops renewing its lease is switched off by the
// poll loop.
func TestLeaseLapseSwitchesOff(t *testing.T) {
	r := newRig(t, waterSim, -1)
	b := r.open(t, fastOpts())
	if err := b.Set(context.Background(), "out2", true, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if !r.status(t).Coils["out2"] {
		t.Fatal("out2 not ON")
	}
	eventually(t, "lease to lapse", func() bool { return !r.status(t).Coils["out2"] })
	if b.Status().LeaseExpiries == 0 {
		t.Error("lease expiry not counted")
	}
	if err := b.Renew("out2", time.Second); err == nil {
		t.Error("Renew of a lapsed output succeeded")
	}
}

// When the controller dies (here: its serial port is closed under it, so
// nothing reaches the board any more), the board's own watchdog drops the
// outputs: a dead process cannot leave a valve open.
func TestBoardWatchdogDropsOutputsWhenControllerDies(t *testing.T) {
	r := newRig(t, waterSim, -1)
	b := r.open(t, &machine.Opts{PollInterval: 50 * time.Millisecond, WatchdogTimeout: 500 * time.Millisecond})
	if err := b.Set(context.Background(), "out1", true, time.Hour); err != nil {
		t.Fatal(err)
	}
	if s := r.status(t); !s.Coils["out1"] || s.Watchdog == nil || !s.Watchdog.Armed {
		t.Fatalf("setup: %+v", s)
	}
	r.master.Close() // the process is gone: no more polls, no all-off
	eventually(t, "board watchdog", func() bool {
		s := r.status(t)
		return !s.Coils["out1"] && s.WatchdogTrips > 0
	})
}

const laundrySim = `profile: generic-relay-8
machines:
  - {name: w1, kind: washer, coin: relay1, running: in1, credit: 2, cycle: 1500ms}
`

func TestWasherCycle(t *testing.T) {
	r := newRig(t, laundrySim, -1)
	b := r.open(t, fastOpts())
	w, err := machine.NewWasher(b, machine.WasherConfig{Coin: "relay1", Running: "in1", PulsesPerCredit: 2, Debounce: 300 * time.Millisecond, StartTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	res, err := w.Cycle(context.Background(), 1, false, nil)
	if err != nil || res.Reason != machine.StopCompleted || res.Units != 1 {
		t.Fatalf("Cycle = %+v, %v", res, err)
	}
	if ran := res.Ended.Sub(res.Started); ran < time.Second {
		t.Errorf("cycle metered %s, emulated cycle is 1.5 s", ran)
	}
	ws := r.status(t).Machines[0].Washer
	if ws == nil || ws.CyclesCompleted != 1 {
		t.Errorf("emulator washer: %+v", ws)
	}
	// One pulse short of a credit: the machine never starts.
	w1, _ := machine.NewWasher(b, machine.WasherConfig{Coin: "relay1", Running: "in1", PulsesPerCredit: 1, StartTimeout: 600 * time.Millisecond})
	res, err = w1.Cycle(context.Background(), 1, false, nil)
	if err != nil || res.Reason != machine.StopNoStart || res.Units != 0 {
		t.Fatalf("short credit: %+v, %v", res, err)
	}
}

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

func TestVending(t *testing.T) {
	r := newRig(t, vendingSim, -1)
	b := r.open(t, fastOpts())
	v, err := machine.NewVending(b, machine.VendingConfig{Motors: map[string]string{"A1": "relay1", "A2": "relay2"}, Drop: "in16", DropTimeout: 1500 * time.Millisecond, SettleTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	res, err := v.Vend(context.Background(), "A1", nil)
	if err != nil || res.Reason != machine.StopCompleted || res.Units != 1 {
		t.Fatalf("vend A1 = %+v, %v", res, err)
	}
	res, err = v.Vend(context.Background(), "A2", nil)
	if err != nil || res.Reason != machine.StopJam || res.Units != 0 {
		t.Fatalf("vend jammed A2 = %+v, %v", res, err)
	}
	st := r.status(t)
	if st.Coils["relay1"] || st.Coils["relay2"] {
		t.Error("a motor is still ON")
	}
	// A drop sensor stuck active would sell air: refused.
	if err := r.ctl.StuckInput("in16", true); err != nil {
		t.Fatal(err)
	}
	eventually(t, "stuck input to show", func() bool { return b.Snapshot().Inputs["in16"] })
	if _, err := v.Vend(context.Background(), "A1", nil); err == nil {
		t.Error("vend with a stuck drop sensor was not refused")
	}
	if r.status(t).Coils["relay1"] {
		t.Error("motor ON although the vend was refused")
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	r := newRig(t, waterSim, -1)
	b := r.open(t, fastOpts())
	if _, err := machine.NewWater(b, machine.WaterConfig{Valve: "nope", Flow: "count1", KFactorMilli: 450000}); err == nil || !strings.Contains(err.Error(), "valve") {
		t.Errorf("bad valve: %v", err)
	}
	if _, err := machine.NewWater(b, machine.WaterConfig{Valve: "out1", Flow: "count1", KFactorMilli: 5}); err == nil || !strings.Contains(err.Error(), "k_factor") {
		t.Errorf("bad k-factor: %v", err)
	}
	if err := b.Set(context.Background(), "out1", true, 0); err == nil {
		t.Error("ON without a lease accepted")
	}
}
