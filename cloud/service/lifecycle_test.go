package service_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/proxid"
	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/internal/svctest"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

// tclock is a settable clock shared by the store and the service.
type tclock struct{ ms atomic.Int64 }

func (c *tclock) Now() time.Time      { return time.UnixMilli(c.ms.Load()) }
func (c *tclock) Add(d time.Duration) { c.ms.Add(d.Milliseconds()) }

// rig is one service on one database with device wd-1 (water tap1, washer
// wash1, vending v1 with slots A1 and A2), its signing key, and one user.
type rig struct {
	svc  *service.Service
	st   *store.Store
	pub  *FakePublisher
	key  proxid.Key
	dev  ed25519.PrivateKey
	user string
	op   string
	clk  *tclock
	seq  atomic.Uint64
}

func eachDB(t *testing.T, fn func(t *testing.T, dsn string)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, filepath.Join(t.TempDir(), "c.db")) })
	t.Run("postgres", func(t *testing.T) { fn(t, svctest.PostgresDSN(t, "svc_life")) })
}

func newRig(t *testing.T, dsn string, sopts store.Opts, opts service.Options) *rig {
	t.Helper()
	ctx := context.Background()
	r := &rig{clk: &tclock{}, pub: &FakePublisher{}}
	r.clk.ms.Store(time.Now().UnixMilli())
	sopts.BcryptCost = 4
	sopts.Now = r.clk.Now
	st, err := store.Open(ctx, dsn, &sopts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r.st = st
	o, _ := st.CreateOperator(ctx, "op")
	r.op = o.ID
	rand.Read(r.key[:])
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	r.dev = priv
	if err := st.CreateDevice(ctx, store.Device{ID: "wd-1", OperatorID: o.ID, Name: "w", IdentityKey: r.key, K: 5, SignKey: pub, MQTTHash: "x",
		Machines: []store.Machine{
			{ID: "tap1", Kind: vend.KindWater, Name: "t", Price: vend.Price{Minor: 50, Per: 1000}, Currency: "EUR"},
			{ID: "wash1", Kind: vend.KindWasher, Name: "w", Price: vend.Price{Minor: 350, Per: 1}, Currency: "EUR"},
			{ID: "v1", Kind: vend.KindVending, Name: "v", Price: vend.Price{Minor: 100, Per: 1}, Currency: "EUR",
				Slots: []store.Slot{{ID: "A1", Name: "a", Price: vend.Price{Minor: 150, Per: 1}}, {ID: "A2", Name: "b", Price: vend.Price{Minor: 80, Per: 1}}}},
		}}); err != nil {
		t.Fatal(err)
	}
	if err := st.SetDeviceStatus(ctx, "wd-1", true, nil, r.clk.Now()); err != nil {
		t.Fatal(err)
	}
	u, _ := st.CreateUser(ctx, "a@example.com", "password-123")
	r.user = u.ID
	if _, err := st.TopUp(ctx, u.ID, vend.Amount{Minor: 100000, Currency: "EUR"}, "sandbox_card", "k1"); err != nil {
		t.Fatal(err)
	}
	_, cloud, _ := ed25519.GenerateKey(rand.Reader)
	opts.Store, opts.Publisher, opts.CloudKey = st, r.pub, cloud
	if opts.ReplyTimeout == 0 {
		opts.ReplyTimeout = 300 * time.Millisecond
	}
	opts.Now = r.clk.Now
	r.svc, err = service.New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// req is a start request for machine (and slot) with the proximity ID of
// the current window.
func (r *rig) req(machine, slot string, c phoneapi.Cap) phoneapi.StartSessionRequest {
	return phoneapi.StartSessionRequest{Device: "wd-1", Machine: phoneapi.MachineID(machine), Slot: phoneapi.MachineID(slot), Cap: c, Source: "wallet",
		ProximityID: phoneapi.ProximityID(proxid.Compute(r.key, proxid.Counter(r.clk.Now()), 5).String())}
}

// answer makes the fake device answer every Authorize with ok.
func (r *rig) answerOK() {
	r.pub.mu.Lock()
	defer r.pub.mu.Unlock()
	r.pub.Fn = func(device string, cmd mqttapi.Message) {
		if _, ok := cmd.(*mqttapi.Authorize); ok {
			r.svc.Handle(context.Background(), device, mqttapi.LeafReply, mqttapi.NewReply(mqttapi.NewEnvelope(time.Now()), cmd.Head().ID, nil))
		}
	}
}

// The hold never exceeds the payer's money cap, whatever price changes
// race the start: a 1.00 cap once became a 10.09 hold.
func TestPriceChangeMidStartNeverOverHolds(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		r := newRig(t, dsn, store.Opts{}, service.Options{})
		r.answerOK()
		ctx := context.Background()
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // the operator flips the price between 0.50 and 50.00 a litre
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				p := vend.Price{Minor: 50, Per: 1000}
				if i%2 == 1 {
					p.Minor = 5000
				}
				if err := r.st.SetPrices(ctx, r.op, "wd-1", "tap1", p, nil); err != nil {
					t.Error(err)
					return
				}
				time.Sleep(200 * time.Microsecond) // leave SQLite's one writer to the starts now and then
			}
		}()
		defer func() { close(stop); wg.Wait() }()
		capAmt := vend.Amount{Minor: 100, Currency: "EUR"}
		for i := 0; i < 60; i++ {
			ss, err := r.svc.StartSession(ctx, r.user, "race-"+string(rune('a'+i/26))+string(rune('a'+i%26)), r.req("tap1", "", phoneapi.Cap{Amount: &capAmt}))
			if err != nil {
				if vend.CodeOf(err) == "price.changed" {
					continue
				}
				t.Fatalf("start %d: %v", i, err)
			}
			if ss.Hold > capAmt.Minor {
				t.Fatalf("start %d: hold %d above the payer's cap %d (price %d/%d, %d units)", i, ss.Hold, capAmt.Minor, ss.Price.Minor, ss.Price.Per, ss.CapUnits)
			}
			if _, err := r.st.Fail(ctx, ss.ID, "test.done"); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// A running session whose report never comes does not hold the money and
// block the machine forever.
func TestRunningWithoutReportHasBoundedExit(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		r := newRig(t, dsn, store.Opts{}, service.Options{})
		r.answerOK()
		ctx := context.Background()
		ss, err := r.svc.StartSession(ctx, r.user, "run-1", r.req("tap1", "", phoneapi.Cap{Units: 2000}))
		if err != nil {
			t.Fatal(err)
		}
		if err := r.st.Advance(ctx, ss.ID, store.Running, r.clk.Now()); err != nil {
			t.Fatal(err)
		}
		// 2 l at 2 ml/s is 1000 s, plus the 30 min allowance: still running
		// after 45 min, unreported after 50.
		r.clk.Add(45 * time.Minute)
		if n, err := r.svc.Sweep(ctx); err != nil || n != 0 {
			t.Fatalf("Sweep at 45 min = %d, %v; want nothing due", n, err)
		}
		r.clk.Add(5 * time.Minute)
		if n, err := r.svc.Sweep(ctx); err != nil || n != 1 {
			t.Fatalf("Sweep at 50 min = %d, %v; want the session unreported", n, err)
		}
		cur, _ := r.st.GetSession(ctx, ss.ID)
		if cur.State != store.Unreported || cur.Reason != store.ReasonUnreported || r.svc.Metrics.Unreported() != 1 {
			t.Fatalf("session %s (%q), gauge %v; want unreported, 1", cur.State, cur.Reason, r.svc.Metrics.Unreported())
		}
		// The machine is free again; the payer's money still held.
		if _, err := r.st.StartSession(ctx, store.StartInput{User: r.user, Device: "wd-1", Machine: "tap1", CapUnits: 1000, IdemKey: "run-2"}); err != nil {
			t.Fatalf("start on the machine of an unreported session: %v", err)
		}
		if w, _ := r.svc.Wallet(ctx, r.user); w.Held.Minor != 150 {
			t.Fatalf("held %d, want 100 + the new session's 50", w.Held.Minor)
		}
		r.clk.Add(72*time.Hour + time.Minute)
		if _, err := r.svc.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
		cur, _ = r.st.GetSession(ctx, ss.ID)
		if cur.State != store.Released || cur.Reason != store.ReasonUnreportedRelease || cur.Released != 100 || r.svc.Metrics.Unreported() != 0 {
			t.Fatalf("after the window: %s (%q) released %d, gauge %v", cur.State, cur.Reason, cur.Released, r.svc.Metrics.Unreported())
		}
	})
}

// A start on a slot the board reports jammed is refused at once.
func TestStartOnJammedSlotRefused(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		r := newRig(t, dsn, store.Opts{}, service.Options{ReplyTimeout: 5 * time.Second})
		ctx := context.Background()
		tel := &mqttapi.Telemetry{Envelope: mqttapi.NewEnvelope(time.Now()), Board: mqttapi.Board{Status: "ok"},
			Machines: []mqttapi.MachineStatus{{ID: "v1", State: mqttapi.MachineIdle, Counters: mqttapi.Counters{Unit: vend.UnitItem}, Jammed: []string{"A1"}}}}
		b, _ := json.Marshal(tel)
		if err := r.st.SetDeviceStatus(ctx, "wd-1", true, b, r.clk.Now()); err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		_, err := r.svc.StartSession(ctx, r.user, "jam-1", r.req("v1", "A1", phoneapi.Cap{Units: 1}))
		if vend.CodeOf(err) != "slot.jammed" || vend.KindOf(err) != vend.Conflict {
			t.Fatalf("start on a jammed slot = %v, want slot.jammed", err)
		}
		if time.Since(t0) > 2*time.Second {
			t.Fatalf("refusal took %s: it waited for the device", time.Since(t0))
		}
		if w, _ := r.svc.Wallet(ctx, r.user); w.Held.Minor != 0 {
			t.Fatalf("held %d for a refused start", w.Held.Minor)
		}
		// The other slot sells (the device answers it).
		r.answerOK()
		if ss, err := r.svc.StartSession(ctx, r.user, "jam-2", r.req("v1", "A2", phoneapi.Cap{Units: 1})); err != nil || ss.State != store.Authorized {
			t.Fatalf("start on the free slot = %v, %v", ss.State, err)
		}
		// A faulted machine and an offline device answer at once, too.
		tel.Machines = append(tel.Machines, mqttapi.MachineStatus{ID: "wash1", State: mqttapi.MachineFault, Counters: mqttapi.Counters{Unit: vend.UnitCycle}})
		b, _ = json.Marshal(tel)
		if err := r.st.SetDeviceStatus(ctx, "wd-1", true, b, r.clk.Now()); err != nil {
			t.Fatal(err)
		}
		r.pub.mu.Lock()
		r.pub.Fn = nil
		r.pub.mu.Unlock()
		t0 = time.Now()
		if _, err := r.svc.StartSession(ctx, r.user, "jam-3", r.req("wash1", "", phoneapi.Cap{Units: 1})); vend.CodeOf(err) != "machine.fault" || time.Since(t0) > 2*time.Second {
			t.Fatalf("start on a faulted machine = %v after %s", err, time.Since(t0))
		}
		if err := r.st.SetDeviceStatus(ctx, "wd-1", false, nil, r.clk.Now().Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		t0 = time.Now()
		if _, err := r.svc.StartSession(ctx, r.user, "jam-4", r.req("tap1", "", phoneapi.Cap{Units: 1000})); vend.CodeOf(err) != "machine.offline" || time.Since(t0) > 2*time.Second {
			t.Fatalf("start on an offline device = %v after %s", err, time.Since(t0))
		}
	})
}

// usage signs the device's report for ss.
func (r *rig) usage(t *testing.T, ss store.Session, units uint64, out vend.Outcome) *mqttapi.Usage {
	t.Helper()
	cost, _ := ss.Price.Cost(units)
	seq := r.seq.Add(1)
	u := signed.Usage{Device: ss.Device, Seq: seq, Session: ss.ID, Machine: ss.Machine, Slot: ss.Slot, Unit: ss.Unit, Units: units,
		Price: ss.Price, Currency: ss.Currency, Amount: cost, StartedAt: r.clk.Now(), EndedAt: r.clk.Now().Add(time.Second), MeterEnd: units, Outcome: out}
	b, err := signed.SignUsage(r.dev, u)
	if err != nil {
		t.Fatal(err)
	}
	return &mqttapi.Usage{Envelope: mqttapi.NewEnvelope(time.Now()), Session: ss.ID, Seq: seq, Report: b}
}

// A start the machine did not answer: the phone gets the pending session
// (money held), cancels it, the cloud sends the board a Stop, and the
// board's grant.cancelled (arriving after the start stopped waiting)
// fails the session and releases the hold.
func TestNoReplyCancelThenBoardRefuses(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		r := newRig(t, dsn, store.Opts{}, service.Options{ReplyTimeout: 200 * time.Millisecond})
		ctx := context.Background()
		ss, err := r.svc.StartSession(ctx, r.user, "nr-1", r.req("tap1", "", phoneapi.Cap{Units: 2000}))
		if vend.CodeOf(err) != "device.no_reply" || ss.State != store.Pending || ss.ID.IsZero() {
			t.Fatalf("StartSession = %s %v, want the pending session with device.no_reply", ss.State, err)
		}
		if ss.GrantExp.Sub(ss.Created) != 20*time.Second {
			t.Fatalf("start-by bound %s after creation, want the 20 s default", ss.GrantExp.Sub(ss.Created))
		}
		cur, err := r.svc.StopSession(ctx, r.user, ss.ID)
		if err != nil || cur.State != store.Pending {
			t.Fatalf("cancel = %s, %v; want still pending until the board answers", cur.State, err)
		}
		r.pub.mu.Lock()
		last := r.pub.Sent[len(r.pub.Sent)-1]
		r.pub.mu.Unlock()
		if st, ok := last.(*mqttapi.Stop); !ok || st.Session != ss.ID || st.ID != "stop-"+hex.EncodeToString(ss.ID[:]) {
			t.Fatalf("cancel sent %#v, want mqttapi.Stop for the session", last)
		}
		if w, _ := r.svc.Wallet(ctx, r.user); w.Held.Minor != 100 {
			t.Fatalf("held %d before the board answered, want 100", w.Held.Minor)
		}
		rep := mqttapi.NewReply(mqttapi.NewEnvelope(time.Now()), "auth-"+hex.EncodeToString(ss.ID[:]),
			vend.E(vend.Conflict, mqttapi.CodeGrantCancelled, "cancelled"))
		if err := r.svc.Handle(ctx, "wd-1", mqttapi.LeafReply, rep); err != nil {
			t.Fatal(err)
		}
		cur, _ = r.st.GetSession(ctx, ss.ID)
		if cur.State != store.Failed || cur.Fault != mqttapi.CodeGrantCancelled {
			t.Fatalf("after grant.cancelled: %s (%q), want failed", cur.State, cur.Fault)
		}
		if w, _ := r.svc.Wallet(ctx, r.user); w.Held.Minor != 0 || w.Available.Minor != 100000 {
			t.Fatalf("after the refusal: %+v", w)
		}
	})
}

// A pending session nobody answers is released only after its start-by
// bound plus AckBound; its report arriving later (the board did start) is
// captured late, exactly once, and counted.
func TestNoReplyExpiryThenLateReport(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		r := newRig(t, dsn, store.Opts{}, service.Options{ReplyTimeout: 100 * time.Millisecond})
		ctx := context.Background()
		ss, _ := r.svc.StartSession(ctx, r.user, "nr-2", r.req("tap1", "", phoneapi.Cap{Units: 2000}))
		r.clk.Add(29 * time.Second) // 20 s start-by + 10 s AckBound not yet passed
		if n, err := r.svc.Sweep(ctx); err != nil || n != 0 {
			t.Fatalf("Sweep inside the bound = %d, %v", n, err)
		}
		r.clk.Add(2 * time.Second)
		if n, err := r.svc.Sweep(ctx); err != nil || n != 1 {
			t.Fatalf("Sweep past the bound = %d, %v", n, err)
		}
		cur, _ := r.st.GetSession(ctx, ss.ID)
		if cur.State != store.Expired || cur.Reason != store.ReasonUnacknowledged {
			t.Fatalf("%s (%q), want expired grant.unacknowledged", cur.State, cur.Reason)
		}
		u := r.usage(t, ss, 1500, vend.OutcomeCompleted)
		for i := 0; i < 2; i++ {
			if err := r.svc.Handle(ctx, "wd-1", mqttapi.LeafUsage, u); err != nil {
				t.Fatalf("delivery %d: %v", i, err)
			}
		}
		if r.svc.Metrics.LateCaptures() != 1 {
			t.Fatalf("late captures counted %v, want 1", r.svc.Metrics.LateCaptures())
		}
		if w, _ := r.svc.Wallet(ctx, r.user); w.Available.Minor != 100000-75 {
			t.Fatalf("wallet %d, want %d", w.Available.Minor, 100000-75)
		}
		cur, _ = r.st.GetSession(ctx, ss.ID)
		if !cur.Late || cur.LateAmount != 75 {
			t.Fatalf("session late=%v amount %d", cur.Late, cur.LateAmount)
		}
	})
}
