package daemon_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"path/filepath"
	"testing"
	"time"

	"beaconvend/app-protocol/gattapi"
	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
	"beaconvend/controller/journal"
)

var waterPrice = vend.Price{Minor: 50, Per: 1000}

func newNonce(t *testing.T) [signed.RelayNonceLen]byte {
	var n [signed.RelayNonceLen]byte
	if _, err := rand.Read(n[:]); err != nil {
		t.Fatal(err)
	}
	return n
}

// relayed is what a phone writes to Grant for signed grant gb: the grant
// and a relay ticket for device with nonce, signed by the cloud.
func (r *rig) relayed(g signed.Grant, gb []byte, device string, nonce [signed.RelayNonceLen]byte) []byte {
	r.t.Helper()
	tk, err := signed.SignRelayTicket(r.cloud.Key, signed.RelayTicket{Session: g.Session, Device: device, Nonce: nonce,
		Grant: signed.Digest(gb), ExpiresAt: g.ExpiresAt.Truncate(time.Millisecond)})
	if err != nil {
		r.t.Fatal(err)
	}
	msg, err := gattapi.RelayGrant{Grant: gb, Ticket: tk}.MarshalBinary()
	if err != nil {
		r.t.Fatal(err)
	}
	return msg
}

// wantATT fails unless err is answered with ATT code want.
func wantATT(t *testing.T, what string, err error, want byte) {
	t.Helper()
	if err == nil || gattapi.ATTCode(err) != want {
		t.Errorf("%s: %v (ATT %#x), want ATT %#x", what, err, gattapi.ATTCode(err), want)
	}
}

// outboxUsage returns the usage report the outbox holds for session id,
// as MQTT sends it, and its message ID; nil when it is not queued.
func (r *rig) outboxUsage(id vend.SessionID) ([]byte, string) {
	r.t.Helper()
	items, err := r.d.Journal().Pending(1000)
	if err != nil {
		r.t.Fatal(err)
	}
	for _, it := range items {
		if it.Leaf != mqttapi.LeafUsage || it.Session != id {
			continue
		}
		m, err := mqttapi.Decode(mqttapi.LeafUsage, it.Payload)
		if err != nil {
			r.t.Fatal(err)
		}
		return m.(*mqttapi.Usage).Report, it.MsgID
	}
	return nil, ""
}

// A good relayed grant runs the machine to its cap; Progress follows it to
// ended; the Receipt is the signed report the outbox sends over MQTT,
// verifying with the device key. A phone ack keeps it in the outbox; a
// wrong or forged ack is refused; the cloud's ack relayed by the phone
// drops it from the outbox and settles the session.
func TestRelayedGrantRunsAndReceipt(t *testing.T) {
	r := newRig(t, "pulse-io-4", waterSim, waterCfg)
	r.cloud.NoAck = true // the cloud's acks come through the phone here
	r.startDaemon()
	relay := r.d.Relay()
	if p := relay.Progress(); p != (gattapi.Progress{}) {
		t.Fatalf("progress before any grant: %+v", p)
	}
	if rc := relay.Receipt(); rc.Status != gattapi.ReceiptNone {
		t.Fatalf("receipt before any grant: %+v", rc)
	}
	g, gb := r.cloud.Grant("dev-1", "m1", "", vend.UnitML, waterPrice, 300, time.Minute)
	if err := relay.Grant(r.relayed(g, gb, "dev-1", newNonce(t))); err != nil {
		t.Fatalf("relayed grant refused: %v", err)
	}
	sawRunning := false
	eventually(t, "relayed session to end", func() bool {
		p := relay.Progress()
		sawRunning = sawRunning || p.State == gattapi.StateRunning
		return p.State == gattapi.StateEnded
	})
	p := relay.Progress()
	if p.Units != 300 || p.Amount != 15 || p.Reason != 0 {
		t.Errorf("final progress %+v, want 300 units, 15 minor units", p)
	}
	if w := r.status().Machines[0].Water; w.Opens != 1 || w.ValveOpen || w.DeliveredML < 300 {
		t.Errorf("emulator: %+v", w)
	}
	var rc gattapi.Receipt
	eventually(t, "receipt", func() bool { rc = relay.Receipt(); return rc.Status == gattapi.ReceiptReady })
	if _, err := rc.MarshalBinary(); err != nil {
		t.Fatalf("receipt does not encode: %v", err)
	}
	keys, _ := signed.NewKeys(r.devPub)
	u, err := signed.OpenUsage(rc.Usage, keys)
	if err != nil {
		t.Fatalf("receipt's report does not verify with the device key: %v", err)
	}
	if err := signed.CheckAgainstGrant(u, g); err != nil || u.Units != 300 || u.Amount != 15 {
		t.Fatalf("report %+v: %v", u, err)
	}
	queued, msgID := r.outboxUsage(g.Session)
	if !bytes.Equal(queued, rc.Usage) {
		t.Fatal("receipt differs from the report the outbox sends over MQTT")
	}
	// The same bytes went over MQTT too (unacknowledged, so still queued).
	if mq := r.cloud.WaitUsage(g.Session, r.devPub); mq.Seq != u.Seq {
		t.Errorf("MQTT report seq %d, receipt %d", mq.Seq, u.Seq)
	}

	digest := signed.Digest(rc.Usage)
	wantATT(t, "phone ack of another hash", relay.Ack(gattapi.Ack{Kind: gattapi.AckPhone, Session: g.Session, Digest: [32]byte{1}}), 0x90)
	wantATT(t, "phone ack of another session", relay.Ack(gattapi.Ack{Kind: gattapi.AckPhone, Session: vend.NewSessionID(), Digest: digest}), 0x90)
	if err := relay.Ack(gattapi.Ack{Kind: gattapi.AckPhone, Session: g.Session, Digest: digest}); err != nil {
		t.Fatalf("phone ack: %v", err)
	}
	if q, _ := r.outboxUsage(g.Session); q == nil {
		t.Fatal("a phone ack dropped the report from the outbox")
	}
	if rc := relay.Receipt(); rc.Status != gattapi.ReceiptAcked || !bytes.Equal(rc.Usage, queued) {
		t.Errorf("receipt after the phone's ack: status %d", rc.Status)
	}

	cloudAck := func(session vend.SessionID, report [32]byte) []byte {
		b, err := signed.SignUsageAck(r.cloud.Key, signed.UsageAck{Device: "dev-1", Session: session, Report: report})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good := cloudAck(g.Session, digest)
	tampered := append([]byte(nil), good...)
	tampered[len(tampered)-1] ^= 1
	wantATT(t, "tampered cloud ack", relay.Ack(gattapi.Ack{Kind: gattapi.AckCloud, CloudAck: tampered}), 0x88)
	wantATT(t, "cloud ack of another report", relay.Ack(gattapi.Ack{Kind: gattapi.AckCloud, CloudAck: cloudAck(g.Session, [32]byte{2})}), 0x90)
	wantATT(t, "cloud ack of another session", relay.Ack(gattapi.Ack{Kind: gattapi.AckCloud, CloudAck: cloudAck(vend.NewSessionID(), digest)}), 0x90)
	if q, _ := r.outboxUsage(g.Session); q == nil {
		t.Fatal("a refused ack dropped the report")
	}
	if err := relay.Ack(gattapi.Ack{Kind: gattapi.AckCloud, CloudAck: good}); err != nil {
		t.Fatalf("cloud ack: %v", err)
	}
	if q, _ := r.outboxUsage(g.Session); q != nil {
		t.Fatalf("cloud ack kept the report %s in the outbox", msgID)
	}
	if s, err := r.d.Journal().Get(g.Session); err != nil || s.State != journal.Settled {
		t.Errorf("session after the cloud ack: %v %v, want settled", s.State, err)
	}
	if rc := relay.Receipt(); rc.Status != gattapi.ReceiptAcked {
		t.Errorf("receipt after the cloud ack: status %d", rc.Status)
	}
	// Acked again (the phone retries): idempotent.
	if err := relay.Ack(gattapi.Ack{Kind: gattapi.AckCloud, CloudAck: good}); err != nil {
		t.Errorf("cloud ack again: %v", err)
	}
	if !sawRunning {
		t.Log("progress never polled while running (a short pour)")
	}
}

// Refused relays answer with their ATT code, show it in Progress, and
// switch nothing on: relayed twice, a reused nonce, another board, an
// expired grant, an MQTT Authorize of a relayed grant and a relay of a
// grant MQTT delivered.
func TestRelayRefusals(t *testing.T) {
	r := newRig(t, "pulse-io-4", waterSim, waterCfg)
	r.startDaemon()
	relay := r.d.Relay()
	opens := func() int { return r.status().Machines[0].Water.Opens }

	g, gb := r.cloud.Grant("dev-1", "m1", "", vend.UnitML, waterPrice, 100, time.Minute)
	nonce := newNonce(t)
	if err := relay.Grant(r.relayed(g, gb, "dev-1", nonce)); err != nil {
		t.Fatalf("relayed grant: %v", err)
	}
	eventually(t, "relayed session to end", func() bool { return relay.Progress().State == gattapi.StateEnded })
	eventually(t, "its report", func() bool { return relay.Receipt().Status != gattapi.ReceiptNone })

	// The same grant relayed again (same or new nonce): replayed; its
	// session's progress stays on view.
	wantATT(t, "relayed twice", relay.Grant(r.relayed(g, gb, "dev-1", nonce)), 0x8D)
	wantATT(t, "relayed twice, new nonce", relay.Grant(r.relayed(g, gb, "dev-1", newNonce(t))), 0x8D)
	if p := relay.Progress(); p.State != gattapi.StateEnded {
		t.Errorf("progress after the same grant again: %+v", p)
	}
	// MQTT delivers the relayed grant after the relay: replayed.
	if rep := r.cloud.WaitReply(r.cloud.Authorize("dev-1", "m1", gb)); rep.OK || rep.Code != mqttapi.CodeGrantReplayed {
		t.Errorf("MQTT Authorize after relay: %+v", rep)
	}

	g2, gb2 := r.cloud.Grant("dev-1", "m1", "", vend.UnitML, waterPrice, 100, time.Minute)
	wantATT(t, "reused nonce", relay.Grant(r.relayed(g2, gb2, "dev-1", nonce)), 0x8E)
	if p := relay.Progress(); p.State != gattapi.StateRefused || p.Reason != 0x8E {
		t.Errorf("progress after a reused nonce: %+v", p)
	}
	gOther, gbOther := r.cloud.Grant("dev-2", "m1", "", vend.UnitML, waterPrice, 100, time.Minute)
	wantATT(t, "other board", relay.Grant(r.relayed(gOther, gbOther, "dev-2", newNonce(t))), 0x89)
	wantATT(t, "ticket for this board, grant for another", relay.Grant(r.relayed(gOther, gbOther, "dev-1", newNonce(t))), 0x89)
	gExp, gbExp := r.cloud.Grant("dev-1", "m1", "", vend.UnitML, waterPrice, 100, 50*time.Millisecond)
	time.Sleep(100 * time.Millisecond)
	wantATT(t, "expired", relay.Grant(r.relayed(gExp, gbExp, "dev-1", newNonce(t))), 0x8C)
	wantATT(t, "garbage", relay.Grant([]byte{1, 0}), 0x82)
	wantATT(t, "empty", relay.Grant(nil), 0x82)
	// The grant with the reused nonce was not accepted: a fresh ticket
	// for it is (its nonce log entry was never written either).
	gMQ, gbMQ := r.cloud.Grant("dev-1", "m1", "", vend.UnitML, waterPrice, 100, time.Minute)
	if rep := r.cloud.WaitReply(r.cloud.Authorize("dev-1", "m1", gbMQ)); !rep.OK {
		t.Fatalf("MQTT Authorize: %+v", rep)
	}
	// A relay of the grant MQTT delivered: replayed.
	wantATT(t, "relay after MQTT", relay.Grant(r.relayed(gMQ, gbMQ, "dev-1", newNonce(t))), 0x8D)
	r.cloud.WaitUsage(gMQ.Session, r.devPub)
	time.Sleep(300 * time.Millisecond)
	if n := opens(); n != 2 {
		t.Errorf("valve opened %d times, want 2 (the relayed grant, the MQTT one)", n)
	}
	for _, id := range []vend.SessionID{g2.Session, gOther.Session, gExp.Session} {
		if seen, _ := r.d.Journal().Seen(id); seen {
			t.Errorf("refused session %s is in the journal", id)
		}
	}
	if err := relay.Grant(r.relayed(g2, gb2, "dev-1", newNonce(t))); err != nil {
		t.Errorf("the grant refused for its nonce, with a fresh one: %v", err)
	}
	eventually(t, "it to end", func() bool { return relay.Progress().State == gattapi.StateEnded })
}

// A process that dies after a relayed grant is accepted and before it runs
// keeps the nonce: recovery reports the session not started, and neither
// the grant nor its nonce is accepted again.
func TestRelayNonceSurvivesRestart(t *testing.T) {
	r := newRig(t, "pulse-io-4", waterSim, waterCfg)
	g, gb := r.cloud.Grant("dev-1", "m1", "", vend.UnitML, waterPrice, 100, time.Minute)
	nonce := newNonce(t)
	// The accept commit of a relayed grant, then the process dies (the
	// journal file is all that is left).
	ck, _ := signed.NewKeys(r.cloud.Key.Public().(ed25519.PublicKey))
	g, err := signed.OpenGrant(gb, ck) // as encoded (ms times)
	if err != nil {
		t.Fatal(err)
	}
	j, err := journal.Open(filepath.Join(r.dir, "journal.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.AcceptRelay(g, gb, journal.Relay{Nonce: nonce, ExpiresAt: g.ExpiresAt}); err != nil {
		t.Fatal(err)
	}
	j.Close()
	r.startDaemon()
	eventually(t, "recovered session reported", func() bool {
		s, err := r.d.Journal().Get(g.Session)
		return err == nil && (s.State == journal.Reported || s.State == journal.Settled)
	})
	if s, _ := r.d.Journal().Get(g.Session); s.Outcome != vend.OutcomeNotStarted {
		t.Errorf("recovered outcome %v", s.Outcome)
	}
	relay := r.d.Relay()
	// The restarted board still shows the relayed session and its report.
	if p := relay.Progress(); p.State != gattapi.StateEnded || p.Units != 0 {
		t.Errorf("progress after the restart: %+v", p)
	}
	eventually(t, "its receipt", func() bool { return relay.Receipt().Status != gattapi.ReceiptNone })
	keys, _ := signed.NewKeys(r.devPub)
	if u, err := signed.OpenUsage(relay.Receipt().Usage, keys); err != nil || u.Session != g.Session || u.Outcome != vend.OutcomeNotStarted {
		t.Errorf("receipt after the restart: %+v, %v", u, err)
	}
	wantATT(t, "relayed again after the restart", relay.Grant(r.relayed(g, gb, "dev-1", newNonce(t))), 0x8D)
	g2, gb2 := r.cloud.Grant("dev-1", "m1", "", vend.UnitML, waterPrice, 100, time.Minute)
	wantATT(t, "its nonce with a new grant", relay.Grant(r.relayed(g2, gb2, "dev-1", nonce)), 0x8E)
	time.Sleep(300 * time.Millisecond)
	if n := r.status().Machines[0].Water.Opens; n != 0 {
		t.Errorf("valve opened %d times", n)
	}
}

// A relayed grant for a machine running an MQTT session is refused with
// machine.busy (0x91) and its nonce is not spent; the running session
// goes on.
func TestRelayWhileBusy(t *testing.T) {
	r := newRig(t, "pulse-io-4", waterSim, waterCfg)
	r.startDaemon()
	gMQ, gbMQ := r.cloud.Grant("dev-1", "m1", "", vend.UnitML, waterPrice, 100_000, time.Minute)
	if rep := r.cloud.WaitReply(r.cloud.Authorize("dev-1", "m1", gbMQ)); !rep.OK {
		t.Fatal(rep)
	}
	eventually(t, "water to flow", func() bool { return r.status().Machines[0].Water.ValveOpen })
	g, gb := r.cloud.Grant("dev-1", "m1", "", vend.UnitML, waterPrice, 100, time.Minute)
	nonce := newNonce(t)
	wantATT(t, "relay while busy", r.d.Relay().Grant(r.relayed(g, gb, "dev-1", nonce)), 0x91)
	if seen, _ := r.d.Journal().NonceSeen(nonce); seen {
		t.Error("a refused relay spent its nonce")
	}
	if !r.status().Machines[0].Water.ValveOpen {
		t.Error("the running session stopped")
	}
	stop := r.cloud.Send("dev-1", &mqttapi.Stop{Envelope: mqttapi.NewEnvelope(time.Now()), Session: gMQ.Session, Machine: "m1"})
	if rep := r.cloud.WaitReply(stop); !rep.OK {
		t.Fatal(rep)
	}
	r.cloud.WaitUsage(gMQ.Session, r.devPub)
	// The machine frees once its session's run has returned.
	var err error
	eventually(t, "the same relay accepted once the machine is free", func() bool {
		err = r.d.Relay().Grant(r.relayed(g, gb, "dev-1", nonce))
		return gattapi.ATTCode(err) != 0x91
	})
	if err != nil {
		t.Errorf("the same relay once the machine is free: %v", err)
	}
}
