package store_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/store"
)

func (e *env) online() bool {
	e.t.Helper()
	d, err := e.s.GetDevice(e.ctx, "dev-a")
	must(e.t, err)
	return d.Online
}

// The connection epoch: a loss applies to the epoch it belongs to, a late
// will of a taken-over connection does not take the new one down,
// telemetry flushed after a loss does not bring the device back, and the
// staleness bound ends an epoch nobody closed.
func TestPresenceEpochs(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		tel := json.RawMessage(`{"board":{"status":"ok"}}`)
		t0 := e.clk.Now()
		must(t, e.s.SetDeviceStatus(e.ctx, "dev-a", true, nil, t0)) // online: epoch t0
		must(t, e.s.SetDeviceStatus(e.ctx, "dev-a", true, tel, t0.Add(time.Minute)))
		lost, err := e.s.SetDeviceLost(e.ctx, "dev-a", t0.Add(2*time.Minute), 5*time.Second)
		must(t, err)
		if !lost || e.online() {
			t.Fatalf("loss of the current epoch: lost %v, online %v", lost, e.online())
		}
		if n, _ := e.s.OnlineDevices(e.ctx); n != 0 {
			t.Fatalf("OnlineDevices = %d after the loss", n)
		}
		// Telemetry heard before the loss, written after it (a coalesced
		// flush): refreshes the telemetry, not the presence.
		must(t, e.s.SetDeviceStatuses(e.ctx, []store.StatusUpdate{{Device: "dev-a", Online: true, Telemetry: tel, At: t0.Add(90 * time.Second)}}))
		if e.online() {
			t.Fatal("telemetry heard before the loss brought the device back online")
		}
		// Reconnect at t3; the broker publishes the old connection's will
		// 1 s later: within the grace, it belongs to the old epoch.
		t3 := t0.Add(3 * time.Minute)
		must(t, e.s.SetDeviceStatus(e.ctx, "dev-a", true, nil, t3))
		lost, err = e.s.SetDeviceLost(e.ctx, "dev-a", t3.Add(time.Second), 5*time.Second)
		must(t, err)
		if lost || !e.online() {
			t.Fatal("a late will of the taken-over connection ended the new epoch")
		}
		// Heard at t3+30 s; nothing after: stale at the bound.
		must(t, e.s.SetDeviceStatus(e.ctx, "dev-a", true, tel, t3.Add(30*time.Second)))
		ids, err := e.s.ExpirePresence(e.ctx, t3.Add(29*time.Second))
		must(t, err)
		if len(ids) != 0 || !e.online() {
			t.Fatalf("ExpirePresence before the bound = %v", ids)
		}
		ids, err = e.s.ExpirePresence(e.ctx, t3.Add(31*time.Second))
		must(t, err)
		if len(ids) != 1 || ids[0] != "dev-a" || e.online() {
			t.Fatalf("ExpirePresence after the bound = %v, online %v", ids, e.online())
		}
		// Fresh telemetry after that starts a new epoch.
		must(t, e.s.SetDeviceStatus(e.ctx, "dev-a", true, tel, t3.Add(time.Hour)))
		if !e.online() {
			t.Fatal("fresh telemetry after a stale expiry did not bring the device back")
		}
		if _, err := e.s.SetDeviceLost(e.ctx, "dev-zz", t3, 0); vend.CodeOf(err) != "device.not_found" {
			t.Fatalf("SetDeviceLost(unknown) = %v", err)
		}
	})
}

// A reply is stored and found under (device, command id): the same
// command id from another device is a different reply.
func TestCommandReplyPerDevice(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		first, err := e.s.SaveCommandReply(e.ctx, store.CommandReply{CommandID: "c1", Device: "dev-b", Status: "ok", Body: `{}`, At: e.clk.Now()})
		must(t, err)
		if !first {
			t.Fatal("first reply not first")
		}
		if _, err := e.s.GetCommandReply(e.ctx, "dev-a", "c1"); !errors.Is(err, store.ErrCommandNotFound) {
			t.Fatalf("dev-a's reply to c1 after only dev-b replied = %v, want command.not_found", err)
		}
		first, err = e.s.SaveCommandReply(e.ctx, store.CommandReply{CommandID: "c1", Device: "dev-a", Status: "machine.busy", Body: `{}`, At: e.clk.Now()})
		must(t, err)
		r, err := e.s.GetCommandReply(e.ctx, "dev-a", "c1")
		must(t, err)
		if !first || r.Device != "dev-a" || r.Status != "machine.busy" {
			t.Fatalf("dev-a's reply = %+v (first %v)", r, first)
		}
	})
}

// The janitor deletes what is past its window, in bounded batches, and
// keeps the rest.
func TestPrune(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		for i := range 25 {
			_, err := e.s.MarkProcessed(e.ctx, "dev-a", fmt.Sprintf("old-%d", i))
			must(t, err)
		}
		_, err := e.s.SaveCommandReply(e.ctx, store.CommandReply{CommandID: "c-old", Device: "dev-a", Status: "ok", Body: `{}`, At: e.clk.Now()})
		must(t, err)
		_, err = e.s.SaveIdempotent(e.ctx, e.user.ID, "k-old", []byte{1}, store.IdemResponse{Status: 200, Body: []byte(`{}`)})
		must(t, err)
		_, err = e.s.IssueToken(e.ctx, e.user.ID, time.Hour)
		must(t, err)
		e.clk.Add(80 * time.Hour)
		_, err = e.s.MarkProcessed(e.ctx, "dev-a", "new")
		must(t, err)
		_, err = e.s.SaveCommandReply(e.ctx, store.CommandReply{CommandID: "c-new", Device: "dev-a", Status: "ok", Body: `{}`, At: e.clk.Now()})
		must(t, err)
		_, err = e.s.SaveIdempotent(e.ctx, e.user.ID, "k-new", []byte{1}, store.IdemResponse{Status: 200, Body: []byte(`{}`)})
		must(t, err)

		got, err := e.s.Prune(e.ctx, store.Retention{Batch: 10, MaxBatches: 2})
		must(t, err)
		if got["processed_messages"] != 20 || e.count("processed_messages") != 6 {
			t.Fatalf("first prune: %v, %d processed left; want 20 deleted in 2 batches of 10", got, e.count("processed_messages"))
		}
		got, err = e.s.Prune(e.ctx, store.Retention{Batch: 10, MaxBatches: 2})
		must(t, err)
		if got["processed_messages"] != 5 || e.count("processed_messages") != 1 {
			t.Fatalf("second prune: %v, %d processed left; want the new one", got, e.count("processed_messages"))
		}
		if e.count("command_replies") != 1 || e.count("idempotency") != 1 || e.count("tokens") != 0 {
			t.Fatalf("after prune: replies %d, idempotency %d, tokens %d; want 1, 1, 0",
				e.count("command_replies"), e.count("idempotency"), e.count("tokens"))
		}
		if _, err := e.s.GetCommandReply(e.ctx, "dev-a", "c-new"); err != nil {
			t.Fatal(err)
		}
	})
}

// A promoted-away key verifies reports of sessions created before the
// promotion, for the bounded window; not of sessions created after it.
func TestRetiredKeys(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		e.topUp(e.user.ID, 1000)
		before, err := e.start(e.user.ID, "w1", "", 1000, "k-1")
		must(t, err)
		old := e.priv.Public().(ed25519.PublicKey)
		next, _, _ := ed25519.GenerateKey(rand.Reader)
		must(t, e.s.SetNextSignKey(e.ctx, "dev-a", next))
		must(t, e.s.PromoteSignKey(e.ctx, "dev-a"))
		e.clk.Add(time.Second)
		keys, err := e.s.UsageKeys(e.ctx, "dev-a", before.ID)
		must(t, err)
		if !keys.Current.Equal(next) || len(keys.Retired) != 1 || !keys.Retired[0].Equal(old) {
			t.Fatalf("UsageKeys(session before promotion) = %+v", keys)
		}
		_, v := e.usage(before, 500, vend.OutcomeUserStop)
		ks, _ := signed.NewKeys(keys.All()...)
		if _, err := signed.OpenUsage(v, ks); err != nil {
			t.Fatalf("report under the retired key: %v", err)
		}
		_, err = e.s.Settle(e.ctx, mustOpenUsage(t, v, ks), v)
		must(t, err)
		after, err := e.start(e.user.ID, "w1", "", 1000, "k-2")
		must(t, err)
		if keys, _ := e.s.UsageKeys(e.ctx, "dev-a", after.ID); len(keys.Retired) != 0 {
			t.Fatalf("retired key offered for a session created after the promotion: %+v", keys)
		}
		e.clk.Add(store.RetiredKeyWindow)
		if keys, _ := e.s.UsageKeys(e.ctx, "dev-a", before.ID); len(keys.Retired) != 0 {
			t.Fatalf("retired key offered past its window: %+v", keys)
		}
		got, err := e.s.Prune(e.ctx, store.Retention{})
		must(t, err)
		if got["retired_sign_keys"] != 1 {
			t.Fatalf("prune %v, want the retired key gone", got)
		}
		e.checkLedger()
	})
}

func mustOpenUsage(t *testing.T, b []byte, ks signed.Keys) signed.Usage {
	t.Helper()
	u, err := signed.OpenUsage(b, ks)
	must(t, err)
	return u
}

// The rotation walks its states only in order; a dead letter is stored
// once.
func TestRotationStatesAndDeadLetters(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		r, err := e.s.RequestRotation(e.ctx, "dev-a")
		must(t, err)
		if r.State != store.RotationRequested || r.N != 1 {
			t.Fatalf("RequestRotation = %+v", r)
		}
		if r2, _ := e.s.RequestRotation(e.ctx, "dev-a"); r2.N != 1 {
			t.Fatalf("a second request restarted the rotation: %+v", r2)
		}
		if err := e.s.RotationCommitted(e.ctx, "dev-a", 1); !errors.Is(err, store.ErrRotation) {
			t.Fatalf("commit before propose = %v", err)
		}
		next, _, _ := ed25519.GenerateKey(rand.Reader)
		must(t, e.s.RotationProposed(e.ctx, "dev-a", 1, next))
		if k, _ := e.s.UsageKeys(e.ctx, "dev-a", vend.NewSessionID()); !k.Next.Equal(next) {
			t.Fatalf("proposed key does not verify: %+v", k)
		}
		must(t, e.s.RotationRestart(e.ctx, "dev-a", 1))
		r, _ = e.s.GetRotation(e.ctx, "dev-a")
		if r.State != store.RotationRequested || r.N != 2 {
			t.Fatalf("after restart %+v", r)
		}
		// The board proposes another key on attempt 2 (the first may have
		// been committed before its reply was lost): both verify.
		next2, _, _ := ed25519.GenerateKey(rand.Reader)
		must(t, e.s.RotationProposed(e.ctx, "dev-a", 2, next2))
		if k, _ := e.s.UsageKeys(e.ctx, "dev-a", vend.NewSessionID()); !k.Next.Equal(next2) {
			t.Fatalf("second proposal not the next key: %+v", k)
		}
		e.topUp(e.user.ID, 1000)
		ss, err := e.start(e.user.ID, "w1", "", 1000, "k-rot")
		must(t, err)
		if k, _ := e.s.UsageKeys(e.ctx, "dev-a", ss.ID); len(k.Retired) != 1 || !k.Retired[0].Equal(next) {
			t.Fatalf("the first attempt's key no longer verifies during the rotation: %+v", k)
		}
		must(t, e.s.RotationCommitted(e.ctx, "dev-a", 2))
		must(t, e.s.PromoteSignKey(e.ctx, "dev-a"))
		if r, _ = e.s.GetRotation(e.ctx, "dev-a"); r.State != store.RotationNone {
			t.Fatalf("after promote %+v", r)
		}
		e.clk.Add(time.Second)
		later, err := e.start(e.user.ID, "wash1", "", 1, "k-rot2")
		must(t, err)
		if k, _ := e.s.UsageKeys(e.ctx, "dev-a", ss.ID); len(k.Retired) != 2 || !k.Current.Equal(next2) {
			t.Fatalf("after promote, a session from before: %+v; want the old key and the first attempt's retired", k)
		}
		if k, _ := e.s.UsageKeys(e.ctx, "dev-a", later.ID); len(k.Retired) != 0 {
			t.Fatalf("after promote, a later session: %+v; want no retired key", k)
		}

		d := store.DeadLetter{Device: "dev-a", MessageID: "m1", Leaf: "usage", Code: "signed.unknown_key", Detail: "x", Payload: []byte{1, 2}, At: e.clk.Now()}
		first, err := e.s.SaveDeadLetter(e.ctx, d)
		must(t, err)
		again, err := e.s.SaveDeadLetter(e.ctx, d)
		must(t, err)
		ds, err := e.s.DeadLetters(e.ctx, "dev-a", 0)
		must(t, err)
		if !first || again || len(ds) != 1 || string(ds[0].Payload) != "\x01\x02" {
			t.Fatalf("dead letters: first %v again %v %+v", first, again, ds)
		}
	})
}
