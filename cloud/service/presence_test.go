package service_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/proxid"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/internal/svctest"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

// testClock is a settable clock shared by a test's store and service.
type testClock struct{ ms atomic.Int64 }

func newTestClock() *testClock {
	c := &testClock{}
	c.ms.Store(time.Now().UnixMilli())
	return c
}
func (c *testClock) Now() time.Time      { return time.UnixMilli(c.ms.Load()) }
func (c *testClock) Add(d time.Duration) { c.ms.Add(d.Milliseconds()) }

// prig is one service on one database with device "wd-1" (one water tap)
// and a funded user.
type prig struct {
	svc  *service.Service
	st   *store.Store
	pub  *FakePublisher
	clk  *testClock
	key  proxid.Key
	priv ed25519.PrivateKey
	user string
	opts service.Options
}

// eachPDB runs fn on SQLite and on PostgreSQL.
func eachPDB(t *testing.T, fn func(t *testing.T, dsn string)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, "sqlite:"+filepath.Join(t.TempDir(), "c.db")) })
	t.Run("postgres", func(t *testing.T) { fn(t, svctest.PostgresDSN(t, "vend_svc_presence")) })
}

func newPRig(t *testing.T, dsn string, opts service.Options) *prig {
	t.Helper()
	ctx := context.Background()
	r := &prig{clk: newTestClock(), pub: &FakePublisher{}}
	st, err := store.Open(ctx, dsn, &store.Opts{BcryptCost: 4, Now: r.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r.st = st
	op, err := st.CreateOperator(ctx, "op")
	if err != nil {
		t.Fatal(err)
	}
	rand.Read(r.key[:])
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	r.priv = priv
	if err := st.CreateDevice(ctx, store.Device{ID: "wd-1", OperatorID: op.ID, Name: "w", IdentityKey: r.key, K: 5, SignKey: pub, MQTTHash: "x",
		Machines: []store.Machine{{ID: "tap1", Kind: vend.KindWater, Name: "t", Price: vend.Price{Minor: 50, Per: 1000}, Currency: "EUR"}}}); err != nil {
		t.Fatal(err)
	}
	u, err := st.CreateUser(ctx, "a@example.com", "password-123")
	if err != nil {
		t.Fatal(err)
	}
	r.user = u.ID
	if _, err := st.TopUp(ctx, u.ID, vend.Amount{Minor: 1000, Currency: "EUR"}, "sandbox_card", "k1"); err != nil {
		t.Fatal(err)
	}
	_, cloud, _ := ed25519.GenerateKey(rand.Reader)
	opts.Store, opts.Publisher, opts.CloudKey, opts.Now = st, r.pub, cloud, r.clk.Now
	if opts.ReplyTimeout == 0 {
		opts.ReplyTimeout = 300 * time.Millisecond
	}
	r.opts = opts
	r.svc, err = service.New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *prig) handle(t *testing.T, leaf mqttapi.Leaf, m mqttapi.Message) {
	t.Helper()
	if err := r.svc.Handle(context.Background(), "wd-1", leaf, m); err != nil {
		t.Fatalf("Handle %s: %v", leaf, err)
	}
}

func (r *prig) device(t *testing.T) store.Device {
	t.Helper()
	d, err := r.st.GetDevice(context.Background(), "wd-1")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func state(ts time.Time, st mqttapi.Status, reason string) *mqttapi.State {
	return &mqttapi.State{Envelope: mqttapi.NewEnvelope(ts), Status: st, Reason: reason}
}

func telemetryAt(ts time.Time, ms mqttapi.MachineState) *mqttapi.Telemetry {
	return &mqttapi.Telemetry{Envelope: mqttapi.NewEnvelope(ts), Board: mqttapi.Board{Status: "ok"},
		Machines: []mqttapi.MachineStatus{{ID: "tap1", State: ms, Counters: mqttapi.Counters{Unit: vend.UnitML}}}}
}

// A controller killed with SIGKILL: its last will carries the time its
// process started (the broker publishes it unchanged), which is older than
// the telemetry it sent since. The will must still mark it offline, and
// the online gauge must agree with the database.
func TestWillAfterTelemetryMarksOffline(t *testing.T) {
	eachPDB(t, func(t *testing.T, dsn string) {
		r := newPRig(t, dsn, service.Options{})
		start := r.clk.Now() // the controller process starts: its will is stamped now
		r.clk.Add(time.Second)
		r.handle(t, mqttapi.LeafState, state(r.clk.Now(), mqttapi.Online, ""))
		r.clk.Add(60 * time.Second)
		r.handle(t, mqttapi.LeafTelemetry, telemetryAt(r.clk.Now(), mqttapi.MachineIdle))
		if err := r.svc.RefreshGauges(context.Background()); err != nil {
			t.Fatal(err)
		}
		if g := r.svc.Metrics.DevicesOnline(); g != 1 || !r.device(t).Online {
			t.Fatalf("online gauge = %v, database online %v; want 1 and true", g, r.device(t).Online)
		}
		r.clk.Add(30 * time.Second)
		r.handle(t, mqttapi.LeafState, state(start, mqttapi.Offline, mqttapi.ReasonLost)) // the will
		if d := r.device(t); d.Online {
			t.Fatal("device still online after its last will")
		}
		if err := r.svc.RefreshGauges(context.Background()); err != nil {
			t.Fatal(err)
		}
		if g := r.svc.Metrics.DevicesOnline(); g != 0 {
			t.Fatalf("online gauge = %v, want 0 like the database", g)
		}
	})
}

// One message stamped a year ahead must not freeze the stored status: the
// next, correctly stamped telemetry (a machine back from a fault) replaces
// it, and the far-future stamp is counted.
func TestFutureTimestampDoesNotFreezeStatus(t *testing.T) {
	eachPDB(t, func(t *testing.T, dsn string) {
		r := newPRig(t, dsn, service.Options{})
		r.handle(t, mqttapi.LeafState, state(r.clk.Now(), mqttapi.Online, ""))
		r.handle(t, mqttapi.LeafTelemetry, telemetryAt(r.clk.Now().Add(365*24*time.Hour), mqttapi.MachineFault))
		r.clk.Add(time.Second)
		r.handle(t, mqttapi.LeafTelemetry, telemetryAt(r.clk.Now(), mqttapi.MachineIdle))
		if d := r.device(t); strings.Contains(string(d.Telemetry), `"fault"`) {
			t.Fatalf("stored telemetry still the future-stamped fault: %s", d.Telemetry)
		}
		r.handle(t, mqttapi.LeafState, state(r.clk.Now(), mqttapi.Offline, mqttapi.ReasonShutdown))
		if d := r.device(t); d.Online {
			t.Fatal("offline state ignored after a future-stamped message")
		}
		if n := r.svc.Metrics.ClockSkewed(); n != 1 {
			t.Fatalf("skewed timestamps counted = %v, want 1", n)
		}
	})
}

// A board without a real-time clock restarts with its clock behind: its
// fresh telemetry must replace the fault telemetry it sent before.
func TestRestartedBoardReplacesStaleFault(t *testing.T) {
	eachPDB(t, func(t *testing.T, dsn string) {
		r := newPRig(t, dsn, service.Options{})
		r.handle(t, mqttapi.LeafState, state(r.clk.Now(), mqttapi.Online, ""))
		r.handle(t, mqttapi.LeafTelemetry, telemetryAt(r.clk.Now(), mqttapi.MachineFault))
		r.clk.Add(10 * time.Second)
		boot := r.clk.Now().Add(-time.Hour) // the restarted board's clock
		r.handle(t, mqttapi.LeafState, state(boot, mqttapi.Online, ""))
		r.handle(t, mqttapi.LeafTelemetry, telemetryAt(boot.Add(time.Second), mqttapi.MachineIdle))
		d := r.device(t)
		if strings.Contains(string(d.Telemetry), `"fault"`) || !d.Online {
			t.Fatalf("after restart: online %v, telemetry %s; want online with the fresh idle telemetry", d.Online, d.Telemetry)
		}
	})
}

// A reply to a command sent to wd-1, published by another device under
// the same command ID, must not decide wd-1's session.
func TestReplyFromAnotherDeviceDoesNotDecide(t *testing.T) {
	eachPDB(t, func(t *testing.T, dsn string) {
		r := newPRig(t, dsn, service.Options{})
		ctx := context.Background()
		if err := r.st.CreateDevice(ctx, store.Device{ID: "wd-2", OperatorID: r.device(t).OperatorID, Name: "x", K: 5,
			SignKey: r.priv.Public().(ed25519.PublicKey), MQTTHash: "x"}); err != nil {
			t.Fatal(err)
		}
		r.handle(t, mqttapi.LeafState, state(r.clk.Now(), mqttapi.Online, ""))
		r.pub.Fn = func(device string, cmd mqttapi.Message) {
			if _, ok := cmd.(*mqttapi.Authorize); ok {
				_ = r.svc.Handle(ctx, "wd-2", mqttapi.LeafReply, mqttapi.NewReply(mqttapi.NewEnvelope(time.Now()), cmd.Head().ID, nil))
			}
		}
		_, err := r.svc.StartSession(ctx, r.user, "key-00001", startReq(r.key))
		if vend.CodeOf(err) != "device.no_reply" {
			t.Fatalf("StartSession with only a foreign reply = %v, want device.no_reply", err)
		}
	})
}

// Nothing heard for the staleness bound: offline, counted, whatever the
// retained state said; the next telemetry brings the device back.
func TestPresenceStaleBound(t *testing.T) {
	eachPDB(t, func(t *testing.T, dsn string) {
		r := newPRig(t, dsn, service.Options{})
		p := r.svc.Presence(service.PresenceOptions{StaleAfter: time.Minute})
		ctx := context.Background()
		r.handle(t, mqttapi.LeafState, state(r.clk.Now(), mqttapi.Online, ""))
		r.clk.Add(59 * time.Second)
		if ids, err := p.Sweep(ctx); err != nil || len(ids) != 0 {
			t.Fatalf("Sweep within the bound = %v, %v", ids, err)
		}
		r.clk.Add(2 * time.Second)
		if ids, err := p.Sweep(ctx); err != nil || len(ids) != 1 || r.device(t).Online {
			t.Fatalf("Sweep past the bound = %v, %v; online %v", ids, err, r.device(t).Online)
		}
		if n := r.svc.Metrics.Offline("stale"); n != 1 {
			t.Fatalf("offline{stale} = %v, want 1", n)
		}
		r.handle(t, mqttapi.LeafTelemetry, telemetryAt(r.clk.Now(), mqttapi.MachineIdle))
		if !r.device(t).Online {
			t.Fatal("fresh telemetry did not bring the device back")
		}
	})
}
