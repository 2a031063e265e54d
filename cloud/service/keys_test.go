package service_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

// authorized starts a session on the prig's tap that the device accepts.
func (r *prig) authorized(t *testing.T, idem string) store.Session {
	t.Helper()
	return r.authorizedOn(t, idem, "tap1")
}

// authorizedOn is authorized on machine, which it adds when missing.
func (r *prig) authorizedOn(t *testing.T, idem, machine string) store.Session {
	t.Helper()
	ctx := context.Background()
	if machine != "tap1" {
		if err := r.st.PutMachine(ctx, r.device(t).OperatorID, "wd-1", store.Machine{ID: machine, Kind: vend.KindWater, Name: machine,
			Price: vend.Price{Minor: 50, Per: 1000}, Currency: "EUR"}); err != nil {
			t.Fatal(err)
		}
	}
	r.handle(t, mqttapi.LeafState, state(r.clk.Now(), mqttapi.Online, ""))
	r.pub.Fn = func(device string, cmd mqttapi.Message) {
		if _, ok := cmd.(*mqttapi.Authorize); ok {
			_ = r.svc.Handle(ctx, device, mqttapi.LeafReply, mqttapi.NewReply(mqttapi.NewEnvelope(time.Now()), cmd.Head().ID, nil))
		}
	}
	req := startReq(r.key)
	req.Machine = phoneapi.MachineID(machine)
	prev := r.pub.Fn
	defer func() { r.pub.Fn = prev }()
	ss, err := r.svc.StartSession(ctx, r.user, idem, req)
	if err != nil {
		t.Fatalf("StartSession: %v", err)
	}
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
	eachPDB(t, func(t *testing.T, dsn string) {
		r := newPRig(t, dsn, service.Options{})
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
	eachPDB(t, func(t *testing.T, dsn string) {
		r := newPRig(t, dsn, service.Options{})
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
		// A report naming another device can never verify either.
		other := report(t, r.priv, ss, 2, 1000)
		if err := r.svc.Handle(ctx, "wd-9", mqttapi.LeafUsage, other); err != nil {
			t.Fatalf("report from wd-9 naming wd-1: %v (not acked)", err)
		}
		dl, err := r.st.DeadLetters(ctx, "wd-9", 0)
		if err != nil || len(dl) != 1 || dl[0].Code != "usage.unverifiable" {
			t.Fatalf("dead letters of wd-9 = %+v, %v", dl, err)
		}
		if n := r.svc.Metrics.DeadLetters(); n != 2 {
			t.Fatalf("dead letters counted %v, want 2 (each once)", n)
		}
	})
}

// fakeBoard answers RotateKey the way controller/daemon's rotateKey does:
// propose makes (or repeats) a pending key and replies with its public
// key; commit of the pending key switches to it; a restart forgets the
// pending key, and a commit then gets key.mismatch. Replies are cached by
// command id like the daemon's reply cache.
type fakeBoard struct {
	mu      sync.Mutex
	key     ed25519.PrivateKey
	pending ed25519.PrivateKey
	replies map[string]*mqttapi.Reply
}

func (b *fakeBoard) command(cmd mqttapi.Message) *mqttapi.Reply {
	b.mu.Lock()
	defer b.mu.Unlock()
	id := cmd.Head().ID
	if r, ok := b.replies[id]; ok {
		return r
	}
	m := cmd.(*mqttapi.RotateKey)
	var r *mqttapi.Reply
	switch {
	case m.PublicKey == nil:
		if b.pending == nil {
			_, b.pending, _ = ed25519.GenerateKey(rand.Reader)
		}
		r = mqttapi.NewReply(mqttapi.NewEnvelope(time.Now()), id, nil)
		r.PublicKey = b.pending.Public().(ed25519.PublicKey)
	case b.pending == nil || !b.pending.Public().(ed25519.PublicKey).Equal(ed25519.PublicKey(m.PublicKey)):
		r = mqttapi.NewReply(mqttapi.NewEnvelope(time.Now()), id, vend.Errorf(vend.E(vend.Conflict, mqttapi.CodeKeyMismatch, "daemon: key mismatch"), "no pending key"))
	default:
		b.key, b.pending = b.pending, nil
		r = mqttapi.NewReply(mqttapi.NewEnvelope(time.Now()), id, nil)
	}
	b.replies[id] = r
	return r
}

func (b *fakeBoard) restart() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pending, b.replies = nil, map[string]*mqttapi.Reply{}
}

func (b *fakeBoard) signing() ed25519.PrivateKey {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.key
}

// The cloud drives the device's in-band rotation end to end: propose,
// commit (again after the board lost its pending key in a restart), and
// promotion only at the first report under the new key; a report the
// board queued under the old key, delivered after the promotion, still
// settles.
func TestKeyRotationDriven(t *testing.T) {
	eachPDB(t, func(t *testing.T, dsn string) {
		r := newPRig(t, dsn, service.Options{})
		ctx := context.Background()
		queued := r.authorized(t, "key-00001") // its report will be signed under the old key
		board := &fakeBoard{key: r.priv, replies: map[string]*mqttapi.Reply{}}
		var dropCommit atomic.Bool
		dropCommit.Store(true)
		r.pub.Fn = func(device string, cmd mqttapi.Message) {
			if _, ok := cmd.(*mqttapi.RotateKey); !ok {
				return
			}
			if rk := cmd.(*mqttapi.RotateKey); rk.PublicKey != nil && dropCommit.CompareAndSwap(true, false) {
				board.restart() // the board reboots before the commit reaches it
			}
			_ = r.svc.Handle(ctx, device, mqttapi.LeafReply, board.command(cmd))
		}
		rot := r.svc.KeyRotator(service.KeyRotatorOptions{Resend: time.Hour})
		if _, err := r.st.RequestRotation(ctx, "wd-1"); err != nil {
			t.Fatal(err)
		}
		oldReport := report(t, r.priv, queued, 1, 1000) // signed before the switch, still in the outbox
		var got store.Rotation
		for i := 0; i < 50; i++ {
			if err := rot.Step(ctx); err != nil {
				t.Fatal(err)
			}
			time.Sleep(5 * time.Millisecond) // the fake's reply goroutine
			got, _ = r.st.GetRotation(ctx, "wd-1")
			if got.State == store.RotationCommitted {
				break
			}
		}
		if got.State != store.RotationCommitted || got.N != 2 {
			t.Fatalf("rotation = %+v, want committed on attempt 2 (after key.mismatch)", got)
		}
		if !board.signing().Public().(ed25519.PublicKey).Equal(got.Next) {
			t.Fatal("the cloud's next key is not the key the board signs with")
		}
		if d := r.device(t); !d.SignKey.Equal(r.priv.Public()) {
			t.Fatal("promoted before the device reported under the new key")
		}
		// A new session, reported under the new key: promotes it.
		r.clk.Add(time.Second)
		fresh := r.authorizedOn(t, "key-00002", "tap2")
		if err := r.svc.Handle(ctx, "wd-1", mqttapi.LeafUsage, report(t, board.signing(), fresh, 2, 500)); err != nil {
			t.Fatal(err)
		}
		if d := r.device(t); !d.SignKey.Equal(board.signing().Public()) || d.SignKeyNext != nil {
			t.Fatal("not promoted after the first report under the new key")
		}
		if got, _ = r.st.GetRotation(ctx, "wd-1"); got.State != store.RotationNone {
			t.Fatalf("rotation after promotion = %+v", got)
		}
		// The old report arrives now.
		if err := r.svc.Handle(ctx, "wd-1", mqttapi.LeafUsage, oldReport); err != nil {
			t.Fatalf("queued report under the retired key: %v", err)
		}
		if ss, _ := r.st.GetSession(ctx, queued.ID); ss.State != store.Settled {
			t.Fatalf("queued session %s, want settled", ss.State)
		}
		if r.svc.Metrics.DeadLetters() != 0 {
			t.Fatal("a valid report was dead-lettered")
		}
	})
}
