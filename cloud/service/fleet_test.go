package service_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/internal/svctest"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

func intp(v int) *int { return &v }

// next reads one change from c within a second.
func next(t *testing.T, c <-chan string) string {
	t.Helper()
	select {
	case d, ok := <-c:
		if !ok {
			t.Fatal("fleet subscription closed")
		}
		return d
	case <-time.After(time.Second):
		t.Fatal("no fleet change announced")
	}
	return ""
}

// The fleet view: status with since when, faults with codes, signal,
// outbox depth; filters and search; presence changes announced to
// subscribers and kept in the state history; telemetry sampled once per
// period; another operator's device never shown.
func TestFleetView(t *testing.T) {
	eachPDB(t, func(t *testing.T, dsn string) {
		r := newPRig(t, dsn, service.Options{History: service.HistoryOptions{Every: time.Minute, Keep: time.Hour}})
		ctx := context.Background()
		op := r.device(t).OperatorID
		other, err := r.st.CreateOperator(ctx, "other")
		if err != nil {
			t.Fatal(err)
		}
		if err := r.st.CreateDevice(ctx, store.Device{ID: "zz-9", OperatorID: other.ID, Name: "theirs", K: 5,
			SignKey: r.priv.Public().(ed25519.PublicKey), MQTTHash: "x"}); err != nil {
			t.Fatal(err)
		}
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		if err := r.st.CreateDevice(ctx, store.Device{ID: "wd-2", OperatorID: op, Name: "Laundry", K: 5, SignKey: pub, MQTTHash: "x",
			Machines: []store.Machine{{ID: "wash1", Kind: vend.KindWasher, Name: "Washer", Price: vend.Price{Minor: 350, Per: 1}, Currency: "EUR"}}}); err != nil {
			t.Fatal(err)
		}
		if err := r.st.SetDeviceLocation(ctx, op, "wd-2", "Station Road 4"); err != nil {
			t.Fatal(err)
		}
		ch, stop := r.svc.FleetEvents.Subscribe()
		defer stop()
		// Run writes the telemetry samples with its flushes.
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- r.svc.Run(rctx) }()
		defer func() { cancel(); <-done }()

		online := r.clk.Now()
		r.handle(t, mqttapi.LeafState, state(online, mqttapi.Online, ""))
		if d := next(t, ch); d != "wd-1" {
			t.Fatalf("announced %q, want wd-1", d)
		}
		tel := telemetryAt(r.clk.Now(), mqttapi.MachineIdle)
		tel.Modem = &mqttapi.Modem{RSSIdBm: intp(-77), CSQ: 18, Registration: mqttapi.RegRoaming, Operator: "Example", Tech: "lte-m"}
		tel.OutboxDepth = 4
		r.handle(t, mqttapi.LeafTelemetry, tel)
		next(t, ch) // first telemetry: written through

		ds, sum, err := r.svc.Fleet(ctx, op, service.FleetFilter{})
		if err != nil {
			t.Fatal(err)
		}
		if sum != (service.FleetSummary{Total: 2, Online: 1, Offline: 1}) || len(ds) != 2 {
			t.Fatalf("summary %+v, %d devices", sum, len(ds))
		}
		d := ds[0]
		if d.ID != "wd-1" || d.Status != service.FleetOnline || !d.Since.Equal(online) || d.OutboxDepth != 4 ||
			d.Signal == nil || *d.Signal.RSSIdBm != -77 || d.Signal.Registration != "roaming" || d.Machines[0].State != "idle" {
			t.Fatalf("wd-1 = %+v", d)
		}
		if ds[1].Status != service.FleetOffline || !ds[1].Since.IsZero() || ds[1].Machines[0].State != "offline" {
			t.Fatalf("never-heard wd-2 = %+v", ds[1])
		}

		// A board fault and a jammed slot: status fault, with codes.
		r.clk.Add(30 * time.Second)
		tel = telemetryAt(r.clk.Now(), mqttapi.MachineFault)
		tel.Board = mqttapi.Board{Status: "fault", FaultCode: "modbus.timeout", ConsecutiveFailures: 3}
		r.handle(t, mqttapi.LeafTelemetry, tel)
		next(t, ch)
		ds, sum, err = r.svc.Fleet(ctx, op, service.FleetFilter{State: service.FleetFault})
		if err != nil {
			t.Fatal(err)
		}
		if sum.Fault != 1 || len(ds) != 1 || len(ds[0].Faults) != 2 || ds[0].Faults[0].Code != "modbus.timeout" ||
			ds[0].Faults[0].Detail != "3 failed transactions in a row" || ds[0].Faults[1].Code != "machine.fault" || ds[0].Faults[1].Machine != "tap1" {
			t.Fatalf("fault view: %+v %+v", sum, ds)
		}

		// Search by ID, name, location, machine; case-insensitive.
		for q, want := range map[string]int{"station": 1, "WD-": 2, "washer": 1, "theirs": 0, "zz-9": 0, "": 2} {
			ds, _, err := r.svc.Fleet(ctx, op, service.FleetFilter{Query: q})
			if err != nil || len(ds) != want {
				t.Errorf("search %q: %d devices (%v), want %d", q, len(ds), err, want)
			}
		}
		if _, _, err := r.svc.Fleet(ctx, op, service.FleetFilter{State: "broken"}); vend.CodeOf(err) != "request.field" {
			t.Fatalf("unknown state filter: %v", err)
		}

		// The last will: offline, announced, in the state history.
		r.clk.Add(10 * time.Second)
		lost := r.clk.Now()
		r.handle(t, mqttapi.LeafState, state(online, mqttapi.Offline, mqttapi.ReasonLost))
		if d := next(t, ch); d != "wd-1" {
			t.Fatalf("announced %q after the will", d)
		}
		det, err := r.svc.FleetDevice(ctx, op, "wd-1")
		if err != nil {
			t.Fatal(err)
		}
		if det.Status != service.FleetOffline || !det.Since.Equal(lost) || det.Machines[0].State != "offline" {
			t.Fatalf("after the will: %+v", det.FleetDevice)
		}
		if len(det.Presence) != 2 || det.Presence[0].Online || det.Presence[0].Cause != "will" || !det.Presence[1].Online {
			t.Fatalf("state history = %+v", det.Presence)
		}
		// Two telemetry messages 30 s apart, period 1 min: one sample,
		// written with a flush.
		deadline := time.Now().Add(5 * time.Second)
		for len(det.Telemetry) == 0 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
			if det, err = r.svc.FleetDevice(ctx, op, "wd-1"); err != nil {
				t.Fatal(err)
			}
		}
		if len(det.Telemetry) != 1 || det.Telemetry[0].OutboxDepth != 4 || *det.Telemetry[0].RSSIdBm != -77 || det.Telemetry[0].Faults != 0 {
			t.Fatalf("telemetry history = %+v", det.Telemetry)
		}

		// The staleness bound: announced as well.
		r.handle(t, mqttapi.LeafState, state(r.clk.Now(), mqttapi.Online, ""))
		next(t, ch)
		r.clk.Add(2 * time.Minute)
		if ids, err := r.svc.Presence(service.PresenceOptions{StaleAfter: time.Minute}).Sweep(ctx); err != nil || len(ids) != 1 {
			t.Fatalf("sweep = %v, %v", ids, err)
		}
		if d := next(t, ch); d != "wd-1" {
			t.Fatalf("announced %q after the sweep", d)
		}
		if _, err := r.svc.FleetDevice(ctx, op, "zz-9"); vend.CodeOf(err) != "device.not_found" {
			t.Fatalf("another operator's device: %v, want device.not_found", err)
		}
	})
}

// A subscriber that stops reading is dropped, never blocks the ingest.
func TestFleetEventsSlowSubscriber(t *testing.T) {
	var f service.FleetEvents
	c, stop := f.Subscribe()
	defer stop()
	r := newPRig(t, "sqlite:"+t.TempDir()+"/c.db", service.Options{})
	r.svc.FleetEvents = &f
	for i := 0; i < 300; i++ {
		r.handle(t, mqttapi.LeafState, state(r.clk.Now(), mqttapi.Online, ""))
		r.clk.Add(time.Millisecond)
	}
	n := 0
	for range c {
		n++
	}
	if n != 256 || f.Subscribers() != 0 {
		t.Fatalf("read %d changes before the close, %d subscribers left; want 256 and 0", n, f.Subscribers())
	}
}

// On PostgreSQL a presence change one instance decides reaches the fleet
// subscribers of another instance through a notification.
func TestFleetEventsAcrossInstances(t *testing.T) {
	dsn := svctest.PostgresDSN(t, "vend_svc_fleet")
	a := newPRig(t, dsn, service.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := store.Open(ctx, dsn, &store.Opts{BcryptCost: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	opts := a.opts
	opts.Store, opts.Registry = st, nil
	b, err := service.New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	defer func() { cancel(); <-done }()
	ch, stop := b.FleetEvents.Subscribe()
	defer stop()
	// The listener connects in the background: announce until it hears.
	deadline := time.Now().Add(10 * time.Second)
	for {
		a.handle(t, mqttapi.LeafState, state(a.clk.Now(), mqttapi.Online, ""))
		select {
		case d := <-ch:
			if d != "wd-1" {
				t.Fatalf("instance b heard %q, want wd-1", d)
			}
			return
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("instance b never heard instance a's presence change")
		}
		a.clk.Add(time.Second)
	}
}
