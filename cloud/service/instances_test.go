package service_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/proxid"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/internal/svctest"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

// Two instances on one PostgreSQL: the device's reply reaches the other
// instance (as a shared subscription may deliver it), and the waiting start
// is woken by the database notification, not by the poll (set far beyond
// the reply timeout here).
func TestReplyOnOtherInstance(t *testing.T) {
	dsn := svctest.PostgresDSN(t, "svc")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	open := func() *store.Store {
		st, err := store.Open(ctx, dsn, &store.Opts{BcryptCost: 4})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	stA, stB := open(), open()
	op, _ := stA.CreateOperator(ctx, "op")
	var key proxid.Key
	rand.Read(key[:])
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	if err := stA.CreateDevice(ctx, store.Device{ID: "wd-1", OperatorID: op.ID, Name: "w", IdentityKey: key, K: 5, SignKey: pub, MQTTHash: "x",
		Machines: []store.Machine{
			{ID: "tap1", Kind: vend.KindWater, Name: "t", Price: vend.Price{Minor: 50, Per: 1000}, Currency: "EUR"},
			{ID: "tap2", Kind: vend.KindWater, Name: "t", Price: vend.Price{Minor: 50, Per: 1000}, Currency: "EUR"},
			{ID: "tap3", Kind: vend.KindWater, Name: "t", Price: vend.Price{Minor: 50, Per: 1000}, Currency: "EUR"},
			{ID: "tap4", Kind: vend.KindWater, Name: "t", Price: vend.Price{Minor: 50, Per: 1000}, Currency: "EUR"},
		}}); err != nil {
		t.Fatal(err)
	}
	if err := stA.SetDeviceStatus(ctx, "wd-1", true, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	u, _ := stA.CreateUser(ctx, "a@example.com", "password-123")
	if _, err := stA.TopUp(ctx, u.ID, vend.Amount{Minor: 1000, Currency: "EUR"}, "sandbox_card", "k1"); err != nil {
		t.Fatal(err)
	}
	_, cloud, _ := ed25519.GenerateKey(rand.Reader)
	var b *service.Service
	pubA := &FakePublisher{Fn: func(device string, cmd mqttapi.Message) {
		if _, ok := cmd.(*mqttapi.Authorize); ok {
			b.Handle(ctx, device, mqttapi.LeafReply, mqttapi.NewReply(mqttapi.NewEnvelope(time.Now()), cmd.Head().ID, nil))
		}
	}}
	opts := func(st *store.Store, p service.Publisher) service.Options {
		return service.Options{Store: st, Publisher: p, CloudKey: cloud, ReplyTimeout: 5 * time.Second, ReplyPoll: time.Hour}
	}
	a, err := service.New(ctx, opts(stA, pubA))
	if err != nil {
		t.Fatal(err)
	}
	if b, err = service.New(ctx, opts(stB, &FakePublisher{})); err != nil {
		t.Fatal(err)
	}
	go a.Run(ctx)
	go b.Run(ctx)
	// The listener connects in the background; starts retry until one is
	// woken. An attempt that timed out leaves its session pending (its
	// machine busy), so each attempt uses another machine.
	var took time.Duration
	for i := 0; ; i++ {
		t0 := time.Now()
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		req := startReq(key)
		req.Machine = phoneapi.MachineID("tap" + string(rune('1'+i)))
		ss, err := a.StartSession(rctx, u.ID, "key-0000"+string(rune('1'+i)), req)
		rcancel()
		if err == nil {
			if ss.State != store.Authorized {
				t.Fatalf("state %s", ss.State)
			}
			took = time.Since(t0)
			break
		}
		if i == 3 {
			t.Fatalf("StartSession not woken by the other instance's reply: %v", err)
		}
	}
	t.Logf("authorized through the other instance in %s", took)
}
