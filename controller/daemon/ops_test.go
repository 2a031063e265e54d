package daemon_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"sync"
	"testing"
	"time"

	"beaconvend/app-protocol/beacon"
	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/proxid"
	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
	"beaconvend/controller/internal/testrig"
	"beaconvend/hw/ble"
)

// The beacon on the simulated air carries this device's rotating ID and
// shows busy while the only machine runs, idle again after.
func TestBeaconShowsStateOnAir(t *testing.T) {
	group := fmt.Sprintf("239.255.77.%d:%d", 1+time.Now().UnixNano()%200, 40000+time.Now().UnixNano()%20000)
	r := newRigBeacon(t, "pulse-io-4", waterSim, waterCfg, fmt.Sprintf("{backend: sim, sim_addr: %q, name: Water 1, k: 5}", group))
	sc, err := ble.NewAirScanner(&ble.AirOpts{Group: group})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var states []beacon.State
	var ids = map[proxid.ID]bool{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go sc.Scan(ctx, func(rep ble.Report) {
		f, err := rep.Frame(0xFFFF)
		if err != nil {
			return
		}
		mu.Lock()
		if len(states) == 0 || states[len(states)-1] != f.State {
			states = append(states, f.State)
		}
		ids[f.ID] = true
		mu.Unlock()
	})
	r.startDaemon()
	last := func() beacon.State {
		mu.Lock()
		defer mu.Unlock()
		if len(states) == 0 {
			return 255
		}
		return states[len(states)-1]
	}
	eventually(t, "idle on air", func() bool { return last() == beacon.Idle })
	g, gb := r.cloud.Grant("dev-1", "m1", "", vend.UnitML, vend.Price{Minor: 50, Per: 1000}, 100_000, time.Minute)
	if rep := r.cloud.WaitReply(r.cloud.Authorize("dev-1", "m1", gb)); !rep.OK {
		t.Fatal(rep)
	}
	eventually(t, "busy on air", func() bool { return last() == beacon.Busy })
	r.cloud.Send("dev-1", &mqttapi.Stop{Envelope: mqttapi.NewEnvelope(time.Now()), Session: g.Session, Machine: "m1"})
	r.cloud.WaitUsage(g.Session, r.devPub)
	eventually(t, "idle again", func() bool { return last() == beacon.Idle })
	// The ID on air is this device's, for the current window.
	var key proxid.Key
	copy(key[:], r.ident)
	now := time.Now()
	want := proxid.Compute(key, proxid.Counter(now), 5)
	prev := proxid.Compute(key, proxid.Counter(now.Add(-32*time.Second)), 5)
	mu.Lock()
	defer mu.Unlock()
	if !ids[want] && !ids[prev] {
		t.Errorf("advertised IDs %v do not include the device's current ID %s", ids, want)
	}
}

// set_prices, test_output, rotate_key (device and cloud) and reboot.
func TestOperationsCommands(t *testing.T) {
	r := newRig(t, "pulse-io-4", waterSim, waterCfg)
	r.startDaemon()
	env := func() mqttapi.Envelope { return mqttapi.NewEnvelope(time.Now()) }

	// Prices: a known machine is accepted, an unknown one refused.
	ok := r.cloud.Send("dev-1", &mqttapi.SetPrices{Envelope: env(), Prices: []mqttapi.PriceEntry{{Machine: "m1", Unit: vend.UnitML, Price: vend.Price{Minor: 60, Per: 1000}}}, Currency: "EUR"})
	if rep := r.cloud.WaitReply(ok); !rep.OK {
		t.Errorf("set_prices: %+v", rep)
	}
	bad := r.cloud.Send("dev-1", &mqttapi.SetPrices{Envelope: env(), Prices: []mqttapi.PriceEntry{{Machine: "m9", Unit: vend.UnitML, Price: vend.Price{Minor: 60, Per: 1000}}}, Currency: "EUR"})
	if rep := r.cloud.WaitReply(bad); rep.OK || rep.Code != "machine.unknown" {
		t.Errorf("set_prices unknown machine: %+v", rep)
	}

	// Test output: the valve opens for the duration, then closes.
	to := r.cloud.Send("dev-1", &mqttapi.TestOutput{Envelope: env(), Machine: "m1", Output: "out1", DurationMS: 600})
	if rep := r.cloud.WaitReply(to); !rep.OK {
		t.Fatalf("test_output: %+v", rep)
	}
	eventually(t, "valve open for the test", func() bool { return r.status().Coils["out1"] })
	eventually(t, "valve closed after the test", func() bool { return !r.status().Coils["out1"] })
	wrong := r.cloud.Send("dev-1", &mqttapi.TestOutput{Envelope: env(), Machine: "m1", Output: "out2", DurationMS: 100})
	if rep := r.cloud.WaitReply(wrong); rep.OK || rep.Code != mqttapi.CodeOutputUnknown {
		t.Errorf("test_output of another machine's output: %+v", rep)
	}

	// A repeated command id gets the stored reply, without acting twice.
	opens := r.status().Machines[0].Water.Opens
	dup := &mqttapi.TestOutput{Envelope: env(), Machine: "m1", Output: "out1", DurationMS: 100}
	id := r.cloud.Send("dev-1", dup)
	r.cloud.WaitReply(id)
	eventually(t, "valve closed", func() bool { return !r.status().Coils["out1"] })
	r.cloud.Mu.Lock()
	delete(r.cloud.Replies, id)
	r.cloud.Mu.Unlock()
	r.cloud.Send("dev-1", dup)
	if rep := r.cloud.WaitReply(id); !rep.OK {
		t.Errorf("repeated command: %+v", rep)
	}
	time.Sleep(300 * time.Millisecond)
	if got := r.status().Machines[0].Water.Opens; got != opens+1 {
		t.Errorf("valve opened %d times for one command sent twice", got-opens)
	}

	// Device key rotation: propose, commit; the next report is signed by the new key.
	prop := r.cloud.Send("dev-1", &mqttapi.RotateKey{Envelope: env(), Which: mqttapi.KeyDevice})
	rep := r.cloud.WaitReply(prop)
	if !rep.OK || len(rep.PublicKey) != ed25519.PublicKeySize {
		t.Fatalf("propose: %+v", rep)
	}
	newPub := ed25519.PublicKey(rep.PublicKey)
	badCommit := r.cloud.Send("dev-1", &mqttapi.RotateKey{Envelope: env(), Which: mqttapi.KeyDevice, PublicKey: r.devPub})
	if rep := r.cloud.WaitReply(badCommit); rep.OK || rep.Code != mqttapi.CodeKeyMismatch {
		t.Errorf("commit of another key: %+v", rep)
	}
	commit := r.cloud.Send("dev-1", &mqttapi.RotateKey{Envelope: env(), Which: mqttapi.KeyDevice, PublicKey: newPub})
	if rep := r.cloud.WaitReply(commit); !rep.OK {
		t.Fatalf("commit: %+v", rep)
	}
	g, gb := r.cloud.Grant("dev-1", "m1", "", vend.UnitML, vend.Price{Minor: 50, Per: 1000}, 100, time.Minute)
	if rep := r.cloud.WaitReply(r.cloud.Authorize("dev-1", "m1", gb)); !rep.OK {
		t.Fatal(rep)
	}
	if u := r.cloud.WaitUsage(g.Session, newPub); u.KeyID != signed.KeyIDOf(newPub) {
		t.Errorf("report signed by %s, want the new key", u.KeyID)
	}

	// Cloud key rotation: a new key signed by the current one is trusted;
	// one signed by a stranger is not.
	nextPub, nextPriv, _ := testrig.GenerateKey()
	sig, _ := signed.SignKeyRotation(r.cloud.Key, nextPub)
	_, stranger, _ := testrig.GenerateKey()
	forged, _ := signed.SignKeyRotation(stranger, nextPub)
	if rep := r.cloud.WaitReply(r.cloud.Send("dev-1", &mqttapi.RotateKey{Envelope: env(), Which: mqttapi.KeyCloud, PublicKey: nextPub, Signature: forged})); rep.OK {
		t.Error("cloud key rotation signed by a stranger accepted")
	}
	if rep := r.cloud.WaitReply(r.cloud.Send("dev-1", &mqttapi.RotateKey{Envelope: env(), Which: mqttapi.KeyCloud, PublicKey: nextPub, Signature: sig})); !rep.OK {
		t.Fatalf("cloud key rotation: %+v", rep)
	}
	old := r.cloud.Key
	r.cloud.Key = nextPriv
	g2, gb2 := r.cloud.Grant("dev-1", "m1", "", vend.UnitML, vend.Price{Minor: 50, Per: 1000}, 100, time.Minute)
	r.cloud.Key = old
	if rep := r.cloud.WaitReply(r.cloud.Authorize("dev-1", "m1", gb2)); !rep.OK {
		t.Fatalf("grant under the rotated cloud key: %+v", rep)
	}
	r.cloud.WaitUsage(g2.Session, newPub)

	// Telemetry reaches the cloud with the board and machine state.
	eventually(t, "telemetry", func() bool {
		r.cloud.Mu.Lock()
		defer r.cloud.Mu.Unlock()
		return r.cloud.Telem > 0
	})
}

// A reboot waits for the running session to end: it never interrupts one.
func TestRebootWaitsForSessions(t *testing.T) {
	r := newRig(t, "pulse-io-4", waterSim, waterCfg)
	r.startDaemon()
	g, gb := r.cloud.Grant("dev-1", "m1", "", vend.UnitML, vend.Price{Minor: 50, Per: 1000}, 100_000, time.Minute)
	if rep := r.cloud.WaitReply(r.cloud.Authorize("dev-1", "m1", gb)); !rep.OK {
		t.Fatal(rep)
	}
	id := r.cloud.Send("dev-1", &mqttapi.Reboot{Envelope: mqttapi.NewEnvelope(time.Now()), DelayS: 0})
	if rep := r.cloud.WaitReply(id); !rep.OK {
		t.Fatalf("reboot: %+v", rep)
	}
	select {
	case <-r.reboots:
		t.Fatal("rebooted while a session runs")
	case <-time.After(1500 * time.Millisecond):
	}
	r.cloud.Send("dev-1", &mqttapi.Stop{Envelope: mqttapi.NewEnvelope(time.Now()), Session: g.Session, Machine: "m1"})
	r.cloud.WaitUsage(g.Session, r.devPub)
	select {
	case <-r.reboots:
	case <-time.After(10 * time.Second):
		t.Fatal("no reboot after the session ended")
	}
}
