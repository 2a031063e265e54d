package service_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/broker/brokertest"
	"beaconvend/cloud/broker/natscluster"
	"beaconvend/cloud/ingest"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

// TestNATSNodeKilledDeviceOffline: a device connected to a NATS node that
// is SIGKILLed has no will published (its node is gone) and does not come
// back; the cloud, on the surviving nodes, shows it offline within the
// presence bound (StaleAfter + Interval) after it was last heard.
func TestNATSNodeKilledDeviceOffline(t *testing.T) {
	c, err := natscluster.StartProcs(natscluster.Options{Nodes: 3, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)

	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "c.db"), &store.Opts{BcryptCost: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	op, err := st.CreateOperator(ctx, "op")
	if err != nil {
		t.Fatal(err)
	}
	const dev = "wd-1"
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	if err := st.CreateDevice(ctx, store.Device{ID: dev, OperatorID: op.ID, Name: "w", K: 5, SignKey: pub, MQTTHash: "x",
		Machines: []store.Machine{{ID: "tap1", Kind: vend.KindWater, Name: "t", Price: vend.Price{Minor: 50, Per: 1000}, Currency: "EUR"}}}); err != nil {
		t.Fatal(err)
	}
	_, cloudKey, _ := ed25519.GenerateKey(rand.Reader)
	svc, err := service.New(ctx, service.Options{Store: st, Publisher: &FakePublisher{}, CloudKey: cloudKey, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	presence := svc.Presence(service.PresenceOptions{StaleAfter: 3 * time.Second, Interval: 500 * time.Millisecond})
	var lastHeard atomic.Int64 // unix ms of the last message handled for dev
	in, err := ingest.New(ingest.Options{
		URL: c.MQTTURLs[0], ClientID: "_cloud-a", Username: "open", Group: "cloud",
		NATS: &ingest.NATSOptions{URLs: c.NATSURLs[:2], Replicas: 3},
		Handler: ingest.HandlerFunc(func(ctx context.Context, d string, leaf mqttapi.Leaf, msg mqttapi.Message) error {
			err := svc.Handle(ctx, d, leaf, msg)
			if err == nil && d == dev {
				lastHeard.Store(time.Now().UnixMilli())
			}
			return err
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 3)
	go func() { done <- in.Run(rctx) }()
	go func() { done <- svc.Run(rctx) }() // flushes the coalesced telemetry
	go func() { done <- presence.Run(rctx) }()
	t.Cleanup(func() { cancel(); <-done; <-done; <-done })
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := in.WaitSubscribed(wctx); err != nil {
		t.Fatal(err)
	}

	// The device on node 2, with its will, online and sending telemetry;
	// it does not reconnect elsewhere (its link went down with the node).
	tree := mqttapi.Tree{}
	will, err := tree.LastWill(dev, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	o := brokertest.ClientOptions(c.MQTTURLs[2], dev, "open", "", nil)
	o.SetCleanSession(false).SetAutoReconnect(false).SetConnectRetry(false).SetKeepAlive(2*time.Second).
		SetBinaryWill(will.Topic, will.Payload, will.QoS, will.Retain)
	d := brokertest.MustConnect(t, o)
	online, err := tree.Publication(dev, &mqttapi.State{Envelope: mqttapi.NewEnvelope(time.Now()), Status: mqttapi.Online, Firmware: "test-1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := brokertest.Done(d.Publish(online.Topic, online.QoS, online.Retain, online.Payload)); err != nil {
		t.Fatal(err)
	}
	stopTele := make(chan struct{})
	go func() {
		tk := time.NewTicker(300 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stopTele:
				return
			case <-tk.C:
				p, _ := tree.Publication(dev, &mqttapi.Telemetry{Envelope: mqttapi.NewEnvelope(time.Now()), Board: mqttapi.Board{Status: "ok"},
					Machines: []mqttapi.MachineStatus{{ID: "tap1", State: mqttapi.MachineIdle, Counters: mqttapi.Counters{Unit: vend.UnitML}}}})
				d.Publish(p.Topic, p.QoS, p.Retain, p.Payload)
			}
		}
	}()
	defer close(stopTele)
	waitOnline := func(want bool, within time.Duration) time.Time {
		t.Helper()
		deadline := time.Now().Add(within)
		for time.Now().Before(deadline) {
			got, err := st.GetDevice(ctx, dev)
			if err != nil {
				t.Fatal(err)
			}
			if got.Online == want {
				return time.Now()
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("device online != %v within %v", want, within)
		return time.Time{}
	}
	waitOnline(true, 20*time.Second)
	time.Sleep(time.Second) // telemetry flowing through the core queue group
	if lastHeard.Load() == 0 {
		t.Fatal("nothing handled for the device")
	}

	if err := c.Kill(2); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	d.Disconnect(0)
	off := waitOnline(false, presence.Bound()+10*time.Second)
	heard := time.UnixMilli(lastHeard.Load())
	slack := time.Second // a sweep's own time and the poll above
	hist, err := st.PresenceHistory(ctx, op.ID, dev, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 1 || hist[0].Online || hist[0].Cause != "stale" {
		t.Errorf("last presence change %+v, want offline by the stale sweep (no will from a killed node)", hist)
	}
	t.Logf("last heard %v before the kill; offline %v after it was last heard (bound %v)", killed.Sub(heard).Round(time.Millisecond), off.Sub(heard).Round(time.Millisecond), presence.Bound())
	if off.Sub(heard) > presence.Bound()+slack {
		t.Errorf("offline %v after last heard, over the bound %v", off.Sub(heard), presence.Bound())
	}
}
