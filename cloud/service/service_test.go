package service_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/proxid"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

// FakePublisher records commands; Reply, when set, answers them through
// the service as a device would.
type FakePublisher struct {
	mu   sync.Mutex
	Sent []mqttapi.Message
	Fn   func(device string, cmd mqttapi.Message)
}

var _ service.Publisher = (*FakePublisher)(nil)

func (p *FakePublisher) Publish(_ context.Context, device string, cmd mqttapi.Message) error {
	p.mu.Lock()
	p.Sent = append(p.Sent, cmd)
	fn := p.Fn
	p.mu.Unlock()
	if fn != nil {
		go fn(device, cmd)
	}
	return nil
}

func setup(t *testing.T) (*service.Service, *store.Store, *FakePublisher, proxid.Key, string) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "c.db"), &store.Opts{BcryptCost: 4, AckBound: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	op, _ := st.CreateOperator(ctx, "op")
	var key proxid.Key
	rand.Read(key[:])
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	if err := st.CreateDevice(ctx, store.Device{ID: "wd-1", OperatorID: op.ID, Name: "w", IdentityKey: key, K: 5, SignKey: pub, MQTTHash: "x",
		Machines: []store.Machine{{ID: "tap1", Kind: vend.KindWater, Name: "t", Price: vend.Price{Minor: 50, Per: 1000}, Currency: "EUR"}}}); err != nil {
		t.Fatal(err)
	}
	if err := st.SetDeviceStatus(ctx, "wd-1", true, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	u, _ := st.CreateUser(ctx, "a@example.com", "password-123")
	if _, err := st.TopUp(ctx, u.ID, vend.Amount{Minor: 1000, Currency: "EUR"}, "sandbox_card", "k1"); err != nil {
		t.Fatal(err)
	}
	_, cloud, _ := ed25519.GenerateKey(rand.Reader)
	pubr := &FakePublisher{}
	svc, err := service.New(ctx, service.Options{Store: st, Publisher: pubr, CloudKey: cloud, ReplyTimeout: 300 * time.Millisecond, GrantTTL: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return svc, st, pubr, key, u.ID
}

func startReq(key proxid.Key) phoneapi.StartSessionRequest {
	return phoneapi.StartSessionRequest{Device: "wd-1", Machine: "tap1", Cap: phoneapi.Cap{Units: 2000}, Source: "wallet",
		ProximityID: phoneapi.ProximityID(proxid.Compute(key, proxid.Counter(time.Now()), 5).String())}
}

// No reply within the bound keeps the hold; a retry with the same key
// resends the same command; the sweeper releases the hold after expiry.
func TestNoReplyKeepsHoldUntilSweep(t *testing.T) {
	svc, st, pub, key, user := setup(t)
	ctx := context.Background()
	_, err := svc.StartSession(ctx, user, "key-00001", startReq(key))
	if vend.CodeOf(err) != "device.no_reply" || vend.KindOf(err) != vend.Transient {
		t.Fatalf("StartSession = %v, want device.no_reply", err)
	}
	if w, _ := svc.Wallet(ctx, user); w.Held.Minor != 100 {
		t.Fatalf("held %d, want 100 kept", w.Held.Minor)
	}
	_, _ = svc.StartSession(ctx, user, "key-00001", startReq(key))
	if len(pub.Sent) != 2 || pub.Sent[0].Head().ID != pub.Sent[1].Head().ID {
		t.Fatalf("retry sent %d commands, ids must match", len(pub.Sent))
	}
	time.Sleep(400 * time.Millisecond) // grant TTL + AckBound
	n, err := svc.Sweep(ctx)
	if err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v; want 1", n, err)
	}
	if w, _ := svc.Wallet(ctx, user); w.Held.Minor != 0 || w.Available.Minor != 1000 {
		t.Fatalf("after sweep %+v", w)
	}
	if imb, _ := st.LedgerImbalance(ctx); len(imb) != 0 {
		t.Fatalf("imbalance %v", imb)
	}
}

// A reply handled by the ingest path wakes the waiting start.
func TestReplyAuthorizes(t *testing.T) {
	svc, _, pub, key, user := setup(t)
	pub.Fn = func(device string, cmd mqttapi.Message) {
		if _, ok := cmd.(*mqttapi.Authorize); ok {
			svc.Handle(context.Background(), device, mqttapi.LeafReply, mqttapi.NewReply(mqttapi.NewEnvelope(time.Now()), cmd.Head().ID, nil))
		}
	}
	ss, err := svc.StartSession(context.Background(), user, "key-00002", startReq(key))
	if err != nil || ss.State != store.Authorized || ss.CapUnits != 2000 || ss.Hold != 100 {
		t.Fatalf("StartSession = %+v, %v", ss, err)
	}
}

func TestHubSince(t *testing.T) {
	h := service.NewHub()
	id := vend.NewSessionID()
	for i := range 70 {
		h.Publish(id, "progress", i)
	}
	if evs, ok := h.Since(id, 68); !ok || len(evs) != 2 || evs[0].ID != 69 {
		t.Fatalf("Since(68) = %v, %v", evs, ok)
	}
	if _, ok := h.Since(id, 2); ok {
		t.Fatal("Since(2) should need a snapshot: the buffer no longer holds it")
	}
	if evs, ok := h.Since(id, 70); !ok || len(evs) != 0 {
		t.Fatalf("Since(70) = %v, %v", evs, ok)
	}
}

// Telemetry with unchanged states is coalesced and written by the next
// flush; a change of machine state is written through at once, so a fault
// refuses the next start without waiting for a flush.
func TestTelemetryCoalescing(t *testing.T) {
	svc, st, _, key, user := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	tel := func(state mqttapi.MachineState, units uint64) *mqttapi.Telemetry {
		return &mqttapi.Telemetry{Envelope: mqttapi.NewEnvelope(time.Now()), Board: mqttapi.Board{Status: "ok"},
			Machines: []mqttapi.MachineStatus{{ID: "tap1", State: state, Counters: mqttapi.Counters{Unit: vend.UnitML, UnitsTotal: units}}}}
	}
	stored := func() string {
		d, err := st.GetDevice(ctx, "wd-1")
		if err != nil {
			t.Fatal(err)
		}
		return string(d.Telemetry)
	}
	handle := func(m *mqttapi.Telemetry) {
		t.Helper()
		if err := svc.Handle(ctx, "wd-1", mqttapi.LeafTelemetry, m); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond) // distinct millisecond timestamps
	}

	handle(tel(mqttapi.MachineIdle, 1)) // first from the device: written through
	first := stored()
	if first == "" || first == "null" {
		t.Fatalf("first telemetry not written: %q", first)
	}
	handle(tel(mqttapi.MachineIdle, 2)) // same states: queued
	if stored() != first {
		t.Fatal("unchanged telemetry was written through")
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for stored() == first {
		if time.Now().After(deadline) {
			t.Fatal("coalesced telemetry not flushed within 5 s (TelemetryFlush 1 s)")
		}
		time.Sleep(20 * time.Millisecond)
	}

	handle(tel(mqttapi.MachineFault, 3)) // a state change: written through
	if _, err := svc.StartSession(ctx, user, "key-00003", startReq(key)); vend.CodeOf(err) != "machine.fault" {
		t.Fatalf("start after fault telemetry = %v, want machine.fault at once", err)
	}
	handle(tel(mqttapi.MachineIdle, 4)) // recovered: written through
	handle(tel(mqttapi.MachineIdle, 5)) // queued, flushed when Run stops
	if strings.Contains(stored(), `"units_total":5`) {
		t.Fatal("unchanged telemetry after the recovery was written through")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if d, _ := st.GetDevice(context.Background(), "wd-1"); !strings.Contains(string(d.Telemetry), `"units_total":5`) {
		t.Fatalf("telemetry left at shutdown not flushed: %s", d.Telemetry)
	}
}

// With two instances a device's telemetry is dealt out between them: a
// fault must reach the store at once even when the instance that receives
// it last wrote the same fault and the other one has since stored the
// device as healthy.
func TestTelemetryFaultAcrossInstances(t *testing.T) {
	a, st, pub, key, user := setup(t)
	_, cloud, _ := ed25519.GenerateKey(rand.Reader)
	b, err := service.New(context.Background(), service.Options{Store: st, Publisher: pub, CloudKey: cloud})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	units := uint64(0)
	send := func(svc *service.Service, state mqttapi.MachineState) {
		t.Helper()
		units++
		m := &mqttapi.Telemetry{Envelope: mqttapi.NewEnvelope(time.Now()), Board: mqttapi.Board{Status: "ok"},
			Machines: []mqttapi.MachineStatus{{ID: "tap1", State: state, Counters: mqttapi.Counters{Unit: vend.UnitML, UnitsTotal: units}}}}
		if err := svc.Handle(ctx, "wd-1", mqttapi.LeafTelemetry, m); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond) // distinct millisecond timestamps
	}
	send(a, mqttapi.MachineFault) // a wrote fault
	send(b, mqttapi.MachineFault) // b wrote fault
	send(a, mqttapi.MachineIdle)  // a wrote idle: the store says healthy
	send(b, mqttapi.MachineFault) // b last wrote this very fault; it must still be stored now
	if _, err := a.StartSession(ctx, user, "key-00004", startReq(key)); vend.CodeOf(err) != "machine.fault" {
		t.Fatalf("start after the fault reached the other instance = %v, want machine.fault at once", err)
	}
}
