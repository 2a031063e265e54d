package daemon_test

import (
	"testing"
	"time"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/vend"
)

func stopCmd(s vend.SessionID, machine string) *mqttapi.Stop {
	return &mqttapi.Stop{Envelope: mqttapi.NewEnvelope(time.Now()), Session: s, Machine: machine}
}

// The cloud cancels a session the board never saw: the Stop is answered
// ok and remembered durably, and the grant, when the broker delivers it
// late (even after a restart), is refused with grant.cancelled and switches
// nothing on.
func TestStopBeforeAuthorizeCancels(t *testing.T) {
	r := newRig(t, "pulse-io-4", waterSim, waterCfg)
	r.startDaemon()
	g, gb := r.cloud.Grant("dev-1", "m1", "", vend.UnitML, vend.Price{Minor: 50, Per: 1000}, 300, time.Minute)
	if rep := r.cloud.WaitReply(r.cloud.Send("dev-1", stopCmd(g.Session, "m1"))); !rep.OK {
		t.Fatalf("stop for a session not yet seen: %+v", rep)
	}
	if rep := r.cloud.WaitReply(r.cloud.Authorize("dev-1", "m1", gb)); rep.OK || rep.Code != mqttapi.CodeGrantCancelled {
		t.Fatalf("grant of a cancelled session: %+v, want %s", rep, mqttapi.CodeGrantCancelled)
	}
	r.stopDaemon()
	r.startDaemon()
	if rep := r.cloud.WaitReply(r.cloud.Authorize("dev-1", "m1", gb)); rep.OK || rep.Code != mqttapi.CodeGrantCancelled {
		t.Fatalf("after a restart, grant of a cancelled session: %+v", rep)
	}
	time.Sleep(300 * time.Millisecond)
	if w := r.status().Machines[0].Water; w.Opens != 0 {
		t.Errorf("valve opened %d times for a cancelled session", w.Opens)
	}
	if n, _ := r.cloud.UsageCount(g.Session); n != 0 {
		t.Errorf("%d usage reports for a session that never started", n)
	}
}

// An Authorize and the Stop for the same session both wait in the
// board's command queue (the link came back and the broker delivered both
// at once): the Stop wins, nothing runs.
func TestQueuedStopWinsOverAuthorize(t *testing.T) {
	r := newRig(t, "generic-relay-8", laundrySim, laundryCfg)
	r.startDaemon()
	g, gb := r.cloud.Grant("dev-1", "washer-1", "", vend.UnitCycle, vend.Price{Minor: 350, Per: 1}, 1, time.Minute)
	// A slow board keeps the command loop busy with an output test on the
	// other washer while the Authorize and the Stop arrive.
	if err := r.ctl.Delay(120 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	test := r.cloud.Send("dev-1", &mqttapi.TestOutput{Envelope: mqttapi.NewEnvelope(time.Now()), Machine: "washer-2", Output: "relay2", DurationMS: 50})
	auth := r.cloud.Authorize("dev-1", "washer-1", gb)
	stop := r.cloud.Send("dev-1", stopCmd(g.Session, "washer-1"))
	r.cloud.WaitReply(test)
	if err := r.ctl.Delay(0); err != nil {
		t.Fatal(err)
	}
	if rep := r.cloud.WaitReply(auth); rep.OK || rep.Code != mqttapi.CodeGrantCancelled {
		t.Errorf("authorize with its stop queued behind it: %+v, want %s", rep, mqttapi.CodeGrantCancelled)
	}
	if rep := r.cloud.WaitReply(stop); !rep.OK {
		t.Errorf("stop: %+v", rep)
	}
	time.Sleep(500 * time.Millisecond)
	if w := r.status().Machines[0].Washer; w.CoinPulses != 0 {
		t.Errorf("the cancelled session drove %d coin pulses", w.CoinPulses)
	}
	if n, _ := r.cloud.UsageCount(g.Session); n != 0 {
		t.Errorf("the cancelled session was reported: %+v", r.cloud.WaitUsage(g.Session, r.devPub))
	}
}

// A board whose clock is 10 minutes off judges a grant's start-by bound
// by the cloud's clock, estimated from the Acks of its uplinks: a fresh
// grant (20 s to live) is accepted, and one past its bound is refused,
// whichever way the board's clock is wrong.
func TestSkewedBoardClockUsesCloudTime(t *testing.T) {
	for _, skew := range []time.Duration{10 * time.Minute, -10 * time.Minute} {
		t.Run(skew.String(), func(t *testing.T) {
			r := newRig(t, "pulse-io-4", waterSim, waterCfg)
			r.now = func() time.Time { return time.Now().Add(skew) }
			r.startDaemon()
			price := vend.Price{Minor: 50, Per: 1000}
			// The controller's first uplinks are acknowledged within a moment.
			time.Sleep(time.Second)
			g, gb := r.cloud.Grant("dev-1", "m1", "", vend.UnitML, price, 200, 20*time.Second)
			if rep := r.cloud.WaitReply(r.cloud.Authorize("dev-1", "m1", gb)); !rep.OK {
				t.Fatalf("fresh grant on a board %s off: %+v", skew, rep)
			}
			if u := r.cloud.WaitUsage(g.Session, r.devPub); u.Units != 200 {
				t.Errorf("usage %+v", u)
			}
			_, late := r.cloud.Grant("dev-1", "m1", "", vend.UnitML, price, 200, time.Second)
			time.Sleep(1500 * time.Millisecond)
			if rep := r.cloud.WaitReply(r.cloud.Authorize("dev-1", "m1", late)); rep.OK || rep.Code != mqttapi.CodeGrantExpired {
				t.Errorf("grant past its start-by bound on a board %s off: %+v, want %s", skew, rep, mqttapi.CodeGrantExpired)
			}
		})
	}
}

// A board whose clock is 10 min behind and whose start-up clock sample was
// lost (its power_restored event went unacknowledged) still judges a fresh
// grant by the cloud's clock: it probes the cloud's clock before judging
// the grant, instead of refusing every grant as not yet valid until some
// other uplink happens to be acknowledged.
func TestSkewedBoardWithoutClockSampleProbes(t *testing.T) {
	r := newRig(t, "pulse-io-4", waterSim, waterCfg)
	r.now = func() time.Time { return time.Now().Add(-10 * time.Minute) }
	r.cloud.Mu.Lock()
	r.cloud.NoAck = true
	r.cloud.Mu.Unlock()
	r.startDaemon()
	time.Sleep(1500 * time.Millisecond) // the start-up probe goes out, unacknowledged
	r.cloud.Mu.Lock()
	r.cloud.NoAck = false
	r.cloud.Mu.Unlock()
	price := vend.Price{Minor: 50, Per: 1000}
	g, gb := r.cloud.Grant("dev-1", "m1", "", vend.UnitML, price, 200, 20*time.Second)
	if rep := r.cloud.WaitReply(r.cloud.Authorize("dev-1", "m1", gb)); !rep.OK {
		t.Fatalf("fresh grant on a board 10 min behind without a clock sample: %+v", rep)
	}
	if u := r.cloud.WaitUsage(g.Session, r.devPub); u.Units != 200 {
		t.Errorf("usage %+v", u)
	}
}
