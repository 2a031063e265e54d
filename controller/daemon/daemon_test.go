package daemon_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
	"beaconvend/controller/internal/testrig"
	"beaconvend/controller/journal"
)

func TestWaterSessionEndToEnd(t *testing.T) {
	r := newRig(t, "pulse-io-4", waterSim, waterCfg)
	r.startDaemon()
	g, gb := r.cloud.Grant("dev-1", "m1", "", vend.UnitML, vend.Price{Minor: 50, Per: 1000}, 300, time.Minute)
	cmd := r.cloud.Authorize("dev-1", "m1", gb)
	if rep := r.cloud.WaitReply(cmd); !rep.OK {
		t.Fatalf("authorize refused: %+v", rep)
	}
	u := r.cloud.WaitUsage(g.Session, r.devPub)
	if err := signed.CheckAgainstGrant(u, g); err != nil {
		t.Fatal(err)
	}
	if u.Outcome != vend.OutcomeCapReached || u.Units != 300 || u.Amount != 15 {
		t.Fatalf("usage = %+v", u)
	}
	// The emulator's truth: the valve is shut and at least the cap flowed.
	w := r.status().Machines[0].Water
	if w.ValveOpen || w.DeliveredML < 300 {
		t.Fatalf("emulator: %+v", w)
	}
	if u.MeterEnd-u.MeterStart != w.Pulses {
		t.Errorf("report meter %d..%d, emulator pulses %d", u.MeterStart, u.MeterEnd, w.Pulses)
	}
	// Acked: the outbox drains and the session is settled in the journal.
	eventually(t, "outbox to drain", func() bool { return r.d.Stats().Outbox == 0 })
	eventually(t, "session settled", func() bool {
		s, err := r.d.Journal().Get(g.Session)
		return err == nil && s.State == journal.Settled
	})
	r.cloud.Mu.Lock()
	kinds := []string{}
	for _, e := range r.cloud.Events {
		if e.Session == g.Session && e.Kind != mqttapi.EventProgress {
			kinds = append(kinds, string(e.Kind))
		}
	}
	r.cloud.Mu.Unlock()
	if strings.Join(kinds, ",") != "authorized,started,ended" {
		t.Errorf("events %v", kinds)
	}
	// The same grant again under a new command ID is a replay: refused,
	// nothing switched on.
	again := r.cloud.Authorize("dev-1", "m1", gb)
	if rep := r.cloud.WaitReply(again); rep.OK || rep.Code != mqttapi.CodeGrantReplayed {
		t.Errorf("replayed grant: %+v", rep)
	}
	time.Sleep(300 * time.Millisecond)
	if opens := r.status().Machines[0].Water.Opens; opens != 1 {
		t.Errorf("valve opened %d times", opens)
	}
	if n, _ := r.cloud.UsageCount(g.Session); n != 1 {
		t.Errorf("%d usage reports", n)
	}
}

func TestUserStop(t *testing.T) {
	r := newRig(t, "pulse-io-4", waterSim, waterCfg)
	r.startDaemon()
	g, gb := r.cloud.Grant("dev-1", "m1", "", vend.UnitML, vend.Price{Minor: 50, Per: 1000}, 100_000, time.Minute)
	if rep := r.cloud.WaitReply(r.cloud.Authorize("dev-1", "m1", gb)); !rep.OK {
		t.Fatal(rep)
	}
	eventually(t, "water to flow", func() bool { return r.status().Machines[0].Water.DeliveredML > 100 })
	stop := r.cloud.Send("dev-1", &mqttapi.Stop{Envelope: mqttapi.NewEnvelope(time.Now()), Session: g.Session, Machine: "m1"})
	if rep := r.cloud.WaitReply(stop); !rep.OK {
		t.Fatal(rep)
	}
	u := r.cloud.WaitUsage(g.Session, r.devPub)
	w := r.status().Machines[0].Water
	if u.Outcome != vend.OutcomeUserStop || u.Units == 0 || u.Units > uint64(w.DeliveredML) || w.ValveOpen {
		t.Fatalf("usage %+v, emulator %+v", u, w)
	}
}

// Every refused command gets a nack naming the reason, and nothing is
// switched on.
func TestRefusedCommands(t *testing.T) {
	r := newRig(t, "pulse-io-4", waterSim, waterCfg)
	r.startDaemon()
	price := vend.Price{Minor: 50, Per: 1000}
	_, good := r.cloud.Grant("dev-1", "m1", "", vend.UnitML, price, 100, time.Minute)
	_, otherDev := r.cloud.Grant("dev-2", "m1", "", vend.UnitML, price, 100, time.Minute)
	_, expired := r.cloud.Grant("dev-1", "m1", "", vend.UnitML, price, 100, time.Millisecond)
	time.Sleep(5 * time.Millisecond)
	_, forgerKey, _ := testrig.GenerateKey()
	realKey := r.cloud.Key
	r.cloud.Key = forgerKey
	_, forged := r.cloud.Grant("dev-1", "m1", "", vend.UnitML, price, 100, time.Minute)
	r.cloud.Key = realKey
	tampered := append([]byte(nil), good...)
	tampered[len(tampered)-70] ^= 1 // a body byte under the signature

	cases := []struct {
		name, machine string
		grant         []byte
		code          string
	}{
		{"forged (untrusted key)", "m1", forged, "sig.unknown_key"},
		{"tampered", "m1", tampered, "sig.invalid"},
		{"expired", "m1", expired, "grant.expired"},
		{"other device", "m1", otherDev, "grant.device"},
		{"unknown machine", "m9", good, "machine.unknown"},
		{"grant for m1 sent as m2", "m2", good, "machine.unknown"},
	}
	for _, tc := range cases {
		id := r.cloud.Authorize("dev-1", tc.machine, tc.grant)
		rep := r.cloud.WaitReply(id)
		if rep.OK || rep.Code != tc.code {
			t.Errorf("%s: reply %+v, want code %s", tc.name, rep, tc.code)
		}
	}
	// Malformed and oversized payloads: refused by the decoder, with the id when it can be read.
	r.cloud.SendRaw("dev-1", []byte(`{"v":1,"id":"bad-json-1","ts":1,"type":"authorize","machine":"m1","grant":`))
	env := mqttapi.NewEnvelope(time.Now())
	big, _ := json.Marshal(map[string]any{"v": 1, "id": "too-big-1", "ts": env.TS, "type": "stop", "machine": "m1", "pad": strings.Repeat("x", mqttapi.MaxPayload)})
	r.cloud.SendRaw("dev-1", big)
	r.cloud.SendRaw("dev-1", []byte(`{"v":9,"id":"future-1","ts":1,"type":"stop","session":"6b1f0c3e-8a52-4d07-9e31-2f4c5a6b7c8d","machine":"m1"}`))
	if rep := r.cloud.WaitReply("future-1"); rep.OK || rep.Code != "payload.version" {
		t.Errorf("unknown version: %+v", rep)
	}
	// Replayed grant for a new command id after the session ran: refused.
	g2, gb2 := r.cloud.Grant("dev-1", "m1", "", vend.UnitML, price, 50, time.Minute)
	if rep := r.cloud.WaitReply(r.cloud.Authorize("dev-1", "m1", gb2)); !rep.OK {
		t.Fatal(rep)
	}
	r.cloud.WaitUsage(g2.Session, r.devPub)
	opens := r.status().Machines[0].Water.Opens
	// Nothing but the one good session switched anything on.
	if opens != 1 {
		t.Errorf("valve opened %d times, want 1", opens)
	}
	if r.status().Coils["out1"] {
		t.Error("valve ON after refusals")
	}
}

// The link drops mid-session: the session still stops at its cap, and the
// reports arrive once, in order, after the broker returns.
func TestLinkLossFinishesWithinCap(t *testing.T) {
	r := newRig(t, "pulse-io-4", waterSim, waterCfg)
	r.startDaemon()
	g, gb := r.cloud.Grant("dev-1", "m1", "", vend.UnitML, vend.Price{Minor: 50, Per: 1000}, 600, time.Minute)
	if rep := r.cloud.WaitReply(r.cloud.Authorize("dev-1", "m1", gb)); !rep.OK {
		t.Fatal(rep)
	}
	eventually(t, "flow", func() bool { return r.status().Machines[0].Water.DeliveredML > 50 })
	r.broker.Stop()
	eventually(t, "cap reached offline", func() bool {
		w := r.status().Machines[0].Water
		return !w.ValveOpen && w.DeliveredML >= 600
	})
	if n, _ := r.cloud.UsageCount(g.Session); n != 0 {
		t.Fatal("usage arrived while the broker was down")
	}
	eventually(t, "the report to wait in the outbox", func() bool {
		s, err := r.d.Journal().Get(g.Session)
		return err == nil && s.State == journal.Reported && r.d.Stats().Outbox > 0
	})
	// In queue order: EndSession queues the usage report, then the ended
	// event. (Arrival order at the cloud is not asserted: the test's broker
	// restarts empty, so a message published before the cloud's client has
	// subscribed again is retried from the outbox after later ones.)
	items, err := r.d.Journal().Pending(100)
	if err != nil {
		t.Fatal(err)
	}
	usageAt, endedAt := -1, -1
	for i, it := range items {
		msg, err := mqttapi.Decode(it.Leaf, it.Payload)
		if err != nil {
			t.Fatalf("outbox item %d: %v", it.Seq, err)
		}
		switch x := msg.(type) {
		case *mqttapi.Usage:
			if usageAt < 0 {
				usageAt = i
			}
		case *mqttapi.Event:
			if x.Kind == mqttapi.EventEnded && endedAt < 0 {
				endedAt = i
			}
		}
	}
	if usageAt < 0 || endedAt < 0 || endedAt < usageAt {
		t.Errorf("outbox order: usage at %d, ended at %d (of %d items), want the usage report first", usageAt, endedAt, len(items))
	}
	r.broker = testrig.StartBroker(t, r.broker.Addr)
	u := r.cloud.WaitUsage(g.Session, r.devPub)
	if u.Units != 600 || u.Outcome != vend.OutcomeCapReached {
		t.Fatalf("usage after reconnect: %+v", u)
	}
	eventually(t, "outbox drained", func() bool { return r.d.Stats().Outbox == 0 })
	time.Sleep(500 * time.Millisecond)
	n, ids := r.cloud.UsageCount(g.Session)
	if ids != 1 {
		t.Fatalf("%d distinct usage messages (%d deliveries)", ids, n)
	}
}

// The board stops answering mid-session: outputs OFF, the session ends
// with a fault and keeps its metered units.
func TestBoardFaultMidSession(t *testing.T) {
	r := newRig(t, "pulse-io-4", waterSim, waterCfg)
	r.startDaemon()
	g, gb := r.cloud.Grant("dev-1", "m1", "", vend.UnitML, vend.Price{Minor: 50, Per: 1000}, 100_000, time.Minute)
	if rep := r.cloud.WaitReply(r.cloud.Authorize("dev-1", "m1", gb)); !rep.OK {
		t.Fatal(rep)
	}
	eventually(t, "flow", func() bool { return r.status().Machines[0].Water.DeliveredML > 200 })
	if err := r.ctl.NoReply(1_000_000); err != nil {
		t.Fatal(err)
	}
	u := r.cloud.WaitUsage(g.Session, r.devPub)
	delivered := uint64(r.status().Machines[0].Water.DeliveredML)
	if u.Outcome != vend.OutcomeFault || u.Units == 0 || u.Units > delivered || u.FaultCode == 0 {
		t.Fatalf("usage %+v, %d ml truly delivered", u, delivered)
	}
	// The valve closes: by the controller if a write got through, else by
	// the board's own watchdog once polls stop refreshing it.
	eventually(t, "valve closed", func() bool { return !r.status().Machines[0].Water.ValveOpen })
	r.ctl.ClearFaults()
}

// Commits stay within one per running machine per second plus one per
// transition.
func TestCommitBound(t *testing.T) {
	r := newRig(t, "pulse-io-4", waterSim, waterCfg)
	r.startDaemon()
	before := r.d.Stats().Journal
	start := time.Now()
	g, gb := r.cloud.Grant("dev-1", "m1", "", vend.UnitML, vend.Price{Minor: 50, Per: 1000}, 500, time.Minute)
	if rep := r.cloud.WaitReply(r.cloud.Authorize("dev-1", "m1", gb)); !rep.OK {
		t.Fatal(rep)
	}
	r.cloud.WaitUsage(g.Session, r.devPub)
	ran := time.Since(start)
	after := r.d.Stats().Journal
	meter := after.MeterCommits - before.MeterCommits
	transitions := after.TransitionCommits - before.TransitionCommits
	// accept, running, ending, reported = 4 transitions
	if transitions > 4 {
		t.Errorf("%d transition commits for one session", transitions)
	}
	if limit := uint64(ran/time.Second) + 2; meter > limit {
		t.Errorf("%d meter commits in %s (limit %d)", meter, ran, limit)
	}
	t.Logf("session of %s: %d meter commits, %d transition commits, %d outbox commits", ran.Round(time.Millisecond), meter, transitions, after.OutboxCommits-before.OutboxCommits)
}
