package service_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

// authorized starts a session on the rig's tap that the device accepts.
func (r *rig) authorized(t *testing.T, idem string) store.Session {
	t.Helper()
	ctx := context.Background()
	r.handle(t, mqttapi.LeafState, state(r.clk.Now(), mqttapi.Online, ""))
	r.pub.Fn = func(device string, cmd mqttapi.Message) {
		if _, ok := cmd.(*mqttapi.Authorize); ok {
			_ = r.svc.Handle(ctx, device, mqttapi.LeafReply, mqttapi.NewReply(mqttapi.NewEnvelope(time.Now()), cmd.Head().ID, nil))
		}
	}
	ss, err := r.svc.StartSession(ctx, r.user, idem, startReq(r.key))
	if err != nil {
		t.Fatalf("StartSession: %v", err)
	}
	r.pub.Fn = nil
	return ss
}

// report is the device's signed usage message for ss, signed with priv.
func report(t *testing.T, priv ed25519.PrivateKey, ss store.Session, seq uint64, units uint64) *mqttapi.Usage {
	t.Helper()
	cost, err := ss.Price.Cost(units)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	b, err := signed.SignUsage(priv, signed.Usage{Device: ss.Device, Seq: seq, Session: ss.ID, Machine: ss.Machine, Slot: ss.Slot,
		Unit: ss.Unit, Units: units, Price: ss.Price, Currency: ss.Currency, Amount: cost,
		StartedAt: now.Add(-time.Minute), EndedAt: now, MeterEnd: units, Outcome: vend.OutcomeUserStop})
	if err != nil {
		t.Fatal(err)
	}
	return &mqttapi.Usage{Envelope: mqttapi.NewEnvelope(now), Session: ss.ID, Seq: seq, Report: b}
}

// A report the board queued under its old key, delivered after the cloud
// promoted the new one, still settles the session.
func TestReportUnderRetiredKeySettles(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		r := newRig(t, dsn, service.Options{})
		ctx := context.Background()
		ss := r.authorized(t, "key-00001")
		old := r.priv
		next, _, _ := ed25519.GenerateKey(rand.Reader)
		if err := r.st.SetNextSignKey(ctx, "wd-1", next); err != nil {
			t.Fatal(err)
		}
		if err := r.st.PromoteSignKey(ctx, "wd-1"); err != nil {
			t.Fatal(err)
		}
		if err := r.svc.Handle(ctx, "wd-1", mqttapi.LeafUsage, report(t, old, ss, 1, 1000)); err != nil {
			t.Fatalf("report under the retired key: %v", err)
		}
		got, err := r.st.GetSession(ctx, ss.ID)
		if err != nil || got.State != store.Settled || got.Captured != 50 {
			t.Fatalf("session after the report = %s captured %d, %v; want settled, 50", got.State, got.Captured, err)
		}
	})
}

// A report whose signature can never verify is acknowledged (the handler
// returns nil, so the ingest acks it and the board stops resending) and
// dead-lettered once, however often it comes back.
func TestGarbageReportDeadLettered(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		r := newRig(t, dsn, service.Options{})
		ctx := context.Background()
		ss := r.authorized(t, "key-00001")
		_, stranger, _ := ed25519.GenerateKey(rand.Reader)
		m := report(t, stranger, ss, 1, 1000)
		for i := range 3 {
			if err := r.svc.Handle(ctx, "wd-1", mqttapi.LeafUsage, m); err != nil {
				t.Fatalf("delivery %d of a report that can never verify: %v (not acked: the board resends forever)", i+1, err)
			}
		}
		var n int
		if err := r.st.DB().QueryRowContext(ctx, `SELECT COUNT(*) FROM dead_letters WHERE device_id = 'wd-1'`).Scan(&n); err != nil || n != 1 {
			t.Fatalf("dead letters = %d, %v; want 1", n, err)
		}
		if got, _ := r.st.GetSession(ctx, ss.ID); got.State != store.Authorized {
			t.Fatalf("session %s after a garbage report, want it untouched (authorized)", got.State)
		}
	})
}
