package service_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/proxid"
	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

// opsRig is a service with operator A's vending device "vm-1" (machine
// "v1", slots A1 and A2) and water device "wd-1", operator B, a funded
// payer, and a device that answers commands as the answer function says.
type opsRig struct {
	svc    *service.Service
	st     *store.Store
	pub    *FakePublisher
	key    proxid.Key
	dev    ed25519.PrivateKey
	user   string
	opA    string
	opB    string
	seq    atomic.Uint64
	mu     sync.Mutex
	answer func(cmd mqttapi.Message) error // nil: never answers
}

func newOpsRig(t *testing.T) *opsRig {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "c.db"), &store.Opts{BcryptCost: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r := &opsRig{st: st}
	a, _ := st.CreateOperator(ctx, "A")
	b, _ := st.CreateOperator(ctx, "B")
	r.opA, r.opB = a.ID, b.ID
	rand.Read(r.key[:])
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	r.dev = priv
	for _, d := range []store.Device{
		{ID: "vm-1", OperatorID: a.ID, Name: "snacks", IdentityKey: r.key, K: 5, SignKey: pub, MQTTHash: "x",
			Machines: []store.Machine{{ID: "v1", Kind: vend.KindVending, Name: "snacks", Price: vend.Price{Minor: 100, Per: 1}, Currency: "EUR",
				Slots: []store.Slot{{ID: "A1", Name: "chips", Price: vend.Price{Minor: 150, Per: 1}}, {ID: "A2", Name: "gum", Price: vend.Price{Minor: 80, Per: 1}}}}}},
		{ID: "wd-1", OperatorID: a.ID, Name: "tap", IdentityKey: [16]byte{9}, K: 5, SignKey: pub, MQTTHash: "x",
			Machines: []store.Machine{{ID: "tap1", Kind: vend.KindWater, Name: "tap", Price: vend.Price{Minor: 50, Per: 1000}, Currency: "EUR"}}},
	} {
		if err := st.CreateDevice(ctx, d); err != nil {
			t.Fatal(err)
		}
		if err := st.SetDeviceStatus(ctx, d.ID, true, nil, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	u, _ := st.CreateUser(ctx, "payer@example.com", "password-123")
	r.user = u.ID
	if _, err := st.TopUp(ctx, u.ID, vend.Amount{Minor: 10000, Currency: "EUR"}, "sandbox_card", "k1"); err != nil {
		t.Fatal(err)
	}
	_, cloud, _ := ed25519.GenerateKey(rand.Reader)
	r.pub = &FakePublisher{}
	r.svc, err = service.New(ctx, service.Options{Store: st, Publisher: r.pub, CloudKey: cloud, ReplyTimeout: 400 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r.svc.Res.Refresh(ctx)
	// The device: its replies go through the service's uplink path, as
	// the ingest delivers them.
	r.pub.Fn = func(device string, cmd mqttapi.Message) {
		r.mu.Lock()
		fn := r.answer
		r.mu.Unlock()
		if fn == nil {
			return
		}
		if _, ok := cmd.(*mqttapi.Authorize); ok {
			return
		}
		_ = r.svc.Handle(context.Background(), device, mqttapi.LeafReply, mqttapi.NewReply(mqttapi.NewEnvelope(time.Now()), cmd.Head().ID, fn(cmd)))
	}
	return r
}

func (r *opsRig) setAnswer(fn func(cmd mqttapi.Message) error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.answer = fn
}

// audits returns operator op's audit entries of action, oldest first.
func (r *opsRig) audits(t *testing.T, op, action string) []store.AuditEntry {
	t.Helper()
	es, err := r.st.AuditLog(context.Background(), op, store.AuditFilter{Action: action})
	if err != nil {
		t.Fatal(err)
	}
	slices.Reverse(es)
	return es
}

// as is a request context of an account of operator op with role.
func as(op string, role service.Role) context.Context {
	return service.WithActor(context.Background(), service.Actor{Operator: op, Account: "opa_" + string(role), Email: string(role) + "@a.example", Role: role})
}

func (r *opsRig) sent() []mqttapi.Message {
	r.pub.mu.Lock()
	defer r.pub.mu.Unlock()
	return append([]mqttapi.Message{}, r.pub.Sent...)
}

func wantErrCode(t *testing.T, what string, err error, code string) {
	t.Helper()
	if vend.CodeOf(err) != code {
		t.Fatalf("%s: error %v (code %q), want code %q", what, err, vend.CodeOf(err), code)
	}
}

func TestChangePriceRepliesAndRoles(t *testing.T) {
	r := newOpsRig(t)
	mgr := as(r.opA, service.RoleManager)

	for _, role := range []service.Role{service.RoleViewer, service.RoleTechnician} {
		_, err := r.svc.ChangePrice(as(r.opA, role), "wd-1", "tap1", vend.Price{Minor: 60, Per: 1000}, nil)
		wantErrCode(t, string(role)+" changes a price", err, "auth.forbidden")
	}
	_, err := r.svc.ChangePrice(as(r.opB, service.RoleOwner), "wd-1", "tap1", vend.Price{Minor: 60, Per: 1000}, nil)
	wantErrCode(t, "another operator's device", err, "device.not_found")
	if len(r.sent()) != 0 {
		t.Fatalf("refused changes sent %d commands", len(r.sent()))
	}

	// Accepted: the device got the whole table.
	r.setAnswer(func(mqttapi.Message) error { return nil })
	pc, err := r.svc.ChangePrice(mgr, "vm-1", "v1", vend.Price{Minor: 100, Per: 1}, map[string]vend.Price{"A1": {Minor: 170, Per: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if pc.Reply.Status != service.CommandAccepted || pc.Before.Slots["A1"].Minor != 150 || pc.After.Slots["A1"].Minor != 170 || pc.After.Slots["A2"].Minor != 80 {
		t.Fatalf("ChangePrice = %+v", pc)
	}
	sp, ok := r.sent()[0].(*mqttapi.SetPrices)
	if !ok || len(sp.Prices) != 2 || sp.Prices[0].Slot != "A1" || sp.Prices[0].Price.Minor != 170 || sp.ID != pc.Reply.Command {
		t.Fatalf("sent %+v", r.sent()[0])
	}

	// Refused: the device's code is shown; the cloud's price holds.
	r.setAnswer(func(mqttapi.Message) error {
		return vend.Errorf(vend.E(vend.Conflict, "machine.unknown", "controller: unknown machine"), "v9")
	})
	pc, err = r.svc.ChangePrice(mgr, "vm-1", "v1", vend.Price{Minor: 110, Per: 1}, nil)
	if err != nil || pc.Reply.Status != service.CommandRefused || pc.Reply.Code != "machine.unknown" {
		t.Fatalf("refused ChangePrice = %+v, %v", pc, err)
	}
	d, _ := r.st.GetDevice(context.Background(), "vm-1")
	if d.Machines[0].Price.Minor != 110 {
		t.Fatalf("price %d after a refusal, want 110 (the cloud's)", d.Machines[0].Price.Minor)
	}

	// No answer: a timeout, not an error.
	r.setAnswer(nil)
	t0 := time.Now()
	pc, err = r.svc.ChangePrice(mgr, "wd-1", "tap1", vend.Price{Minor: 55, Per: 1000}, nil)
	if err != nil || pc.Reply.Status != service.CommandTimeout {
		t.Fatalf("silent device: %+v, %v", pc, err)
	}
	if time.Since(t0) < 400*time.Millisecond {
		t.Fatalf("timeout after %s, before the reply timeout", time.Since(t0))
	}

	// Bad input: nothing written.
	_, err = r.svc.ChangePrice(mgr, "wd-1", "tap1", vend.Price{Minor: 55, Per: 0}, nil)
	if vend.KindOf(err) != vend.Invalid {
		t.Fatalf("per 0: %v, want invalid", err)
	}
	_, err = r.svc.ChangePrice(mgr, "vm-1", "v1", vend.Price{Minor: 100, Per: 1}, map[string]vend.Price{"Z9": {Minor: 1, Per: 1}})
	wantErrCode(t, "unknown slot", err, "slot.not_found")

	// Audited: who, before and after, and the device's answer; refusals
	// of the role or the input are not changes.
	es := r.audits(t, r.opA, "price.set")
	if len(es) != 3 || es[0].Target != "vm-1/v1" || es[0].Role != "manager" || !strings.Contains(string(es[0].Before), `"A1":{"minor":150`) ||
		!strings.Contains(string(es[0].After), `"A1":{"minor":170`) || !strings.Contains(string(es[0].After), `"status":"accepted"`) ||
		!strings.Contains(string(es[1].After), `"status":"refused"`) || !strings.Contains(string(es[2].After), `"status":"timeout"`) {
		t.Fatalf("price audit entries: %+v", es)
	}
}

func TestOutputTest(t *testing.T) {
	r := newOpsRig(t)
	tech := as(r.opA, service.RoleTechnician)
	_, err := r.svc.TestOutput(as(r.opA, service.RoleViewer), "wd-1", "tap1", "out1", time.Second)
	wantErrCode(t, "viewer", err, "auth.forbidden")
	for _, c := range []struct {
		out  string
		d    time.Duration
		code string
	}{
		{"out1", 0, "request.field"}, {"out1", 50 * time.Millisecond, "request.field"}, {"out1", 11 * time.Second, "request.field"},
		{"", time.Second, "request.field"}, {"OUT 1", time.Second, "request.field"},
	} {
		_, err := r.svc.TestOutput(tech, "wd-1", "tap1", c.out, c.d)
		wantErrCode(t, "output "+c.out+" "+c.d.String(), err, c.code)
	}
	_, err = r.svc.TestOutput(tech, "wd-1", "nope", "out1", time.Second)
	wantErrCode(t, "unknown machine", err, "machine.not_found")
	_, err = r.svc.TestOutput(as(r.opB, service.RoleOwner), "wd-1", "tap1", "out1", time.Second)
	wantErrCode(t, "another operator's device", err, "device.not_found")
	if len(r.sent()) != 0 {
		t.Fatalf("refused tests sent %d commands", len(r.sent()))
	}

	var got *mqttapi.TestOutput
	r.setAnswer(func(cmd mqttapi.Message) error {
		if m, ok := cmd.(*mqttapi.TestOutput); ok {
			got = m
			if m.Output != "out1" {
				return vend.Errorf(vend.E(vend.Invalid, "output.unknown", "controller: unknown output"), "%q", m.Output)
			}
		}
		return nil
	})
	ot, err := r.svc.TestOutput(tech, "wd-1", "tap1", "out1", 1500*time.Millisecond)
	if err != nil || ot.Reply.Status != service.CommandAccepted || got == nil || got.DurationMS != 1500 || got.Machine != "tap1" {
		t.Fatalf("TestOutput = %+v, %v; device got %+v", ot, err, got)
	}
	ot, err = r.svc.TestOutput(tech, "wd-1", "tap1", "relay7", time.Second)
	if err != nil || ot.Reply.Status != service.CommandRefused || ot.Reply.Code != "output.unknown" {
		t.Fatalf("unknown output: %+v, %v", ot, err)
	}

	// A live session on the machine: refused before anything is sent.
	n := len(r.sent())
	ss, err := r.st.StartSession(context.Background(), store.StartInput{User: r.user, Device: "wd-1", Machine: "tap1", CapUnits: 1000, IdemKey: "live-1"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.svc.TestOutput(tech, "wd-1", "tap1", "out1", time.Second)
	wantErrCode(t, "live session", err, "machine.busy")
	if len(r.sent()) != n {
		t.Fatal("a test was sent during a live session")
	}
	_ = ss

	// Offline: refused at once.
	if err := r.st.SetDeviceStatus(context.Background(), "vm-1", false, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	_, err = r.svc.TestOutput(tech, "vm-1", "v1", "out1", time.Second)
	wantErrCode(t, "offline device", err, "machine.offline")
	if es := r.audits(t, r.opA, "output.test"); len(es) != 2 || es[0].Role != "technician" || !strings.Contains(string(es[0].After), `"duration_ms":1500`) {
		t.Fatalf("output test audit entries: %+v", es)
	}
}

func TestReboot(t *testing.T) {
	r := newOpsRig(t)
	_, err := r.svc.Reboot(as(r.opA, service.RoleViewer), "wd-1", 0)
	wantErrCode(t, "viewer", err, "auth.forbidden")
	for _, d := range []time.Duration{-time.Second, time.Hour + time.Second, 1500 * time.Millisecond} {
		_, err := r.svc.Reboot(as(r.opA, service.RoleTechnician), "wd-1", d)
		wantErrCode(t, "delay "+d.String(), err, "request.field")
	}
	r.setAnswer(func(mqttapi.Message) error { return nil })
	rr, err := r.svc.Reboot(as(r.opA, service.RoleTechnician), "wd-1", 30*time.Second)
	if err != nil || rr.Reply.Status != service.CommandAccepted {
		t.Fatalf("Reboot = %+v, %v", rr, err)
	}
	if m, ok := r.sent()[0].(*mqttapi.Reboot); !ok || m.DelayS != 30 {
		t.Fatalf("sent %+v", r.sent()[0])
	}
	if es := r.audits(t, r.opA, "device.reboot"); len(es) != 1 || es[0].Target != "wd-1" {
		t.Fatalf("reboot audit entries: %+v", es)
	}
}

func (r *opsRig) proximity() phoneapi.ProximityID {
	return phoneapi.ProximityID(proxid.Compute(r.key, proxid.Counter(time.Now()), 5).String())
}

// vend starts a one-item vend on slot and settles it.
func (r *opsRig) vend(t *testing.T, slot, key string) {
	t.Helper()
	r.settle(t, r.startVend(t, slot, key))
}

func (r *opsRig) startVend(t *testing.T, slot, key string) store.Session {
	t.Helper()
	ctx := context.Background()
	ss, err := r.st.StartSession(ctx, store.StartInput{User: r.user, Device: "vm-1", Machine: "v1", Slot: slot, CapUnits: 1, IdemKey: key})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.st.Advance(ctx, ss.ID, store.Running, time.Now()); err != nil {
		t.Fatal(err)
	}
	return ss
}

// settle sends the device's signed one-item report for ss through the
// uplink path.
func (r *opsRig) settle(t *testing.T, ss store.Session) {
	t.Helper()
	seq := r.seq.Add(1)
	cost, _ := ss.Price.Cost(1)
	b, err := signed.SignUsage(r.dev, signed.Usage{Device: ss.Device, Seq: seq, Session: ss.ID, Machine: ss.Machine, Slot: ss.Slot, Unit: ss.Unit, Units: 1,
		Price: ss.Price, Currency: ss.Currency, Amount: cost, StartedAt: time.Now().Add(-time.Second), EndedAt: time.Now(), MeterEnd: 1, Outcome: vend.OutcomeCompleted})
	if err != nil {
		t.Fatal(err)
	}
	u := &mqttapi.Usage{Envelope: mqttapi.NewEnvelope(time.Now()), Session: ss.ID, Seq: seq, Report: b}
	if err := r.svc.Handle(context.Background(), "vm-1", mqttapi.LeafUsage, u); err != nil {
		t.Fatalf("usage: %v", err)
	}
	// The same report again (a redelivery): counted once (the callers
	// check the count).
	if err := r.svc.Handle(context.Background(), "vm-1", mqttapi.LeafUsage, u); err != nil {
		t.Fatalf("usage again: %v", err)
	}
}

// alertCodes returns operator A's stock alerts as "code:slot:state",
// oldest first.
func (r *opsRig) alertCodes(t *testing.T) []string {
	t.Helper()
	as, _, err := r.st.ListAlerts(context.Background(), r.opA, store.AlertFilter{Kind: service.AlertLowStock})
	if err != nil {
		t.Fatal(err)
	}
	out := []string{}
	for _, a := range slices.Backward(as) {
		out = append(out, a.Code+":"+a.Slot+":"+string(a.State))
	}
	return out
}

func TestInventory(t *testing.T) {
	r := newOpsRig(t)
	ctx := context.Background()
	tech := as(r.opA, service.RoleTechnician)
	_, err := r.svc.Restock(as(r.opA, service.RoleViewer), "vm-1", "v1", "A1", 5, 1)
	wantErrCode(t, "viewer restocks", err, "auth.forbidden")
	_, err = r.svc.Restock(as(r.opB, service.RoleOwner), "vm-1", "v1", "A1", 5, 1)
	wantErrCode(t, "another operator restocks", err, "device.not_found")
	_, err = r.svc.Restock(tech, "vm-1", "v1", "A1", store.MaxStock+1, 1)
	wantErrCode(t, "stock above the bound", err, "store.input")

	st, err := r.svc.Restock(tech, "vm-1", "v1", "A1", 2, 1)
	if err != nil || st.Stock != 2 || st.RestockedBy != "opa_technician" {
		t.Fatalf("Restock = %+v, %v", st, err)
	}
	inv, err := r.svc.Inventory(as(r.opA, service.RoleViewer), "vm-1")
	if err != nil || len(inv) != 2 || !inv[0].Tracked || inv[0].Stock != 2 || inv[1].Tracked {
		t.Fatalf("Inventory = %+v, %v", inv, err)
	}

	// A vend to 1: at the threshold, stock.low.
	r.vend(t, "A1", "v-1")
	inv, _ = r.svc.Inventory(tech, "vm-1")
	if inv[0].Stock != 1 || !inv[0].Low {
		t.Fatalf("after a vend: %+v", inv[0])
	}
	// A vend to 0: stock.empty; the phone sees it; a start is refused.
	r.vend(t, "A1", "v-2")
	dv, err := r.svc.DeviceView(ctx, "vm-1", string(r.proximity()))
	if err != nil {
		t.Fatal(err)
	}
	a1, a2 := dv.Machines[0].Slots[0], dv.Machines[0].Slots[1]
	if !a1.Empty || a1.Available || a1.Stock == nil || *a1.Stock != 0 || a2.Empty || !a2.Available || a2.Stock != nil {
		t.Fatalf("phone's slots: %+v %+v", a1, a2)
	}
	offer, err := r.svc.MachineOffer(ctx, "vm-1", "v1")
	if err != nil || !offer.Slots[0].Empty || offer.Slots[1].Empty {
		t.Fatalf("web checkout offer: %+v, %v", offer.Slots, err)
	}
	held := func() int64 { a, _ := r.st.Balance(ctx, store.UserHolds, r.user, "EUR"); return a.Minor }
	_, err = r.svc.StartSession(ctx, r.user, "start-empty-1", phoneapi.StartSessionRequest{Device: "vm-1", Machine: "v1", Slot: "A1",
		Cap: phoneapi.Cap{Units: 1}, Source: "wallet", ProximityID: r.proximity()})
	wantErrCode(t, "start on a sold-out slot", err, "slot.empty")
	if !errors.Is(err, service.ErrSlotEmpty) || held() != 0 {
		t.Fatalf("slot.empty: %v, held %d", err, held())
	}
	if got := strings.Join(r.alertCodes(t), " "); got != "stock.low:A1:open stock.empty:A1:open" {
		t.Fatalf("alerts %s, want stock.low then stock.empty open on A1", got)
	}
	// A vend the count did not have: a technician recounts 0 while the
	// last item is being vended. It settles anyway (the item left): the
	// count stays at zero and stock.short says the count was wrong.
	if _, err := r.svc.Restock(tech, "vm-1", "v1", "A1", 1, 0); err != nil {
		t.Fatal(err)
	}
	ss := r.startVend(t, "A1", "v-3")
	if _, err := r.svc.Restock(tech, "vm-1", "v1", "A1", 0, 0); err != nil {
		t.Fatal(err)
	}
	r.settle(t, ss)
	inv, _ = r.svc.Inventory(tech, "vm-1")
	if inv[0].Stock != 0 || inv[0].Short != 1 {
		t.Fatalf("after a vend beyond the count: %+v", inv[0])
	}
	// The restock to 1 resolved both; the recount to 0 raised a new
	// empty alert, and the vend beyond it stock.short.
	if got := strings.Join(r.alertCodes(t), " "); got != "stock.low:A1:resolved stock.empty:A1:resolved stock.empty:A1:open stock.short:A1:open" {
		t.Fatalf("alerts %s", got)
	}
	// The untracked slot sells.
	r.vend(t, "A2", "v-4")
	es := r.audits(t, r.opA, "inventory.restock")
	if len(es) != 3 || (len(es[0].Before) != 0 && string(es[0].Before) != "null") || string(es[0].After) != `{"low_at":1,"stock":2}` || !strings.Contains(string(es[2].Before), `"stock":1`) {
		t.Fatalf("restock audit entries: %+v", es)
	}
}
