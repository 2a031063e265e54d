package store_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"testing"
	"time"

	"beaconvend/cloud/store"
)

// The fleet reads: presence bounds, location, last sale per machine, and
// never another operator's device.
func TestFleetDevices(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		opB, err := e.s.CreateOperator(e.ctx, "Operator B")
		must(t, err)
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		must(t, e.s.CreateDevice(e.ctx, store.Device{ID: "dev-b", OperatorID: opB.ID, Name: "other", K: 5, SignKey: pub, MQTTHash: "x",
			IdentityKey: [16]byte{9}, Machines: testMachines()[:1]}))

		t0 := e.clk.Now()
		must(t, e.s.SetDeviceStatus(e.ctx, "dev-a", true, nil, t0))
		must(t, e.s.SetDeviceStatus(e.ctx, "dev-a", true, json.RawMessage(`{"outbox_depth":3}`), t0.Add(time.Minute)))
		must(t, e.s.SetDeviceLocation(e.ctx, e.opA.ID, "dev-a", "  Hall 2, Main St 1 "))

		ds, err := e.s.FleetDevices(e.ctx, e.opA.ID)
		must(t, err)
		if len(ds) != 1 || ds[0].ID != "dev-a" {
			t.Fatalf("FleetDevices(A) = %+v, want dev-a only", ds)
		}
		d := ds[0]
		if !d.Online || !d.OnlineSince.Equal(t0) || !d.Heard.Equal(t0.Add(time.Minute)) || !d.OfflineAt.IsZero() {
			t.Fatalf("presence: online %v since %v heard %v offline %v", d.Online, d.OnlineSince, d.Heard, d.OfflineAt)
		}
		if d.Location != "Hall 2, Main St 1" || len(d.Machines) != 3 || string(d.Telemetry) != `{"outbox_depth":3}` {
			t.Fatalf("device = %+v", d)
		}
		lost, err := e.s.SetDeviceLost(e.ctx, "dev-a", t0.Add(2*time.Minute), 0)
		must(t, err)
		d, err = e.s.FleetDevice(e.ctx, e.opA.ID, "dev-a")
		must(t, err)
		if !lost || d.Online || !d.OfflineAt.Equal(t0.Add(2*time.Minute)) {
			t.Fatalf("after the loss: online %v offline at %v", d.Online, d.OfflineAt)
		}

		// Another operator's device is not found, for every read and write.
		if _, err := e.s.FleetDevice(e.ctx, e.opA.ID, "dev-b"); err == nil {
			t.Fatal("FleetDevice(A, dev-b) found B's device")
		} else {
			wantCode(t, err, "device.not_found")
		}
		wantCode(t, e.s.SetDeviceLocation(e.ctx, e.opA.ID, "dev-b", "x"), "device.not_found")
		_, err = e.s.TelemetryHistory(e.ctx, e.opA.ID, "dev-b", time.Time{}, 0)
		wantCode(t, err, "device.not_found")
		_, err = e.s.PresenceHistory(e.ctx, e.opA.ID, "dev-b", 0)
		wantCode(t, err, "device.not_found")
	})
}

// Telemetry samples are kept at most once per period per device, pruned
// past the retention, returned oldest first.
func TestTelemetryHistory(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		t0 := e.clk.Now()
		rssi := -71
		keep := 10 * time.Minute
		var kept int
		for i := 0; i < 40; i++ { // every 30 s for 20 min, period 1 min
			smp := store.TelemetrySample{Device: "dev-a", At: t0.Add(time.Duration(i) * 30 * time.Second), OutboxDepth: uint32(i)}
			if i%2 == 0 {
				smp.RSSIdBm = &rssi
			}
			ok, err := e.s.RecordTelemetrySample(e.ctx, smp, time.Minute, keep)
			must(t, err)
			if ok {
				kept++
			}
		}
		if kept != 20 {
			t.Fatalf("kept %d samples of 40 at twice the period, want 20", kept)
		}
		h, err := e.s.TelemetryHistory(e.ctx, e.opA.ID, "dev-a", time.Time{}, 0)
		must(t, err)
		// The last kept sample is at 19 min; retention 10 min keeps 9-19 min.
		if len(h) != 11 || !h[0].At.Equal(t0.Add(9*time.Minute)) || !h[10].At.Equal(t0.Add(19*time.Minute)) {
			t.Fatalf("history: %d samples from %v to %v", len(h), h[0].At, h[len(h)-1].At)
		}
		if h[0].RSSIdBm == nil || *h[0].RSSIdBm != -71 || h[0].OutboxDepth != 18 {
			t.Fatalf("sample = %+v", h[0])
		}
		// A duplicate (another instance heard the same moment) is not kept twice.
		if ok, err := e.s.RecordTelemetrySample(e.ctx, h[10], time.Millisecond, keep); err != nil || ok {
			t.Fatalf("duplicate sample: kept %v, err %v", ok, err)
		}
		if _, err := e.s.RecordTelemetrySample(e.ctx, store.TelemetrySample{Device: "nope", At: t0}, time.Minute, keep); err == nil {
			t.Fatal("a sample for an unknown device was accepted")
		} else {
			wantCode(t, err, "device.not_found")
		}
		_, err = e.s.RecordTelemetrySample(e.ctx, store.TelemetrySample{Device: "dev-a", At: t0}, 0, keep)
		wantCode(t, err, "store.input")
		h, err = e.s.TelemetryHistory(e.ctx, e.opA.ID, "dev-a", t0.Add(15*time.Minute), 2)
		must(t, err)
		if len(h) != 2 || !h[1].At.Equal(t0.Add(19*time.Minute)) {
			t.Fatalf("limited history = %+v", h)
		}
		// A batch skips unknown devices and keeps the rest.
		n, err := e.s.RecordTelemetrySamples(e.ctx, []store.TelemetrySample{{Device: "nope", At: t0.Add(30 * time.Minute)},
			{Device: "dev-a", At: t0.Add(30 * time.Minute), OutboxDepth: 1}}, time.Minute, keep)
		if err != nil || n != 1 {
			t.Fatalf("batch kept %d, %v; want 1", n, err)
		}
	})
}

// The state history keeps each change once, newest first, pruned.
func TestPresenceHistory(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		t0 := e.clk.Now()
		keep := time.Hour
		must(t, e.s.RecordPresence(e.ctx, "dev-a", store.PresenceChange{At: t0, Online: true, Cause: "state"}, keep))
		must(t, e.s.RecordPresence(e.ctx, "dev-a", store.PresenceChange{At: t0.Add(time.Minute), Online: false, Cause: "will"}, keep))
		must(t, e.s.RecordPresence(e.ctx, "dev-a", store.PresenceChange{At: t0.Add(time.Minute), Online: false, Cause: "will"}, keep))
		h, err := e.s.PresenceHistory(e.ctx, e.opA.ID, "dev-a", 0)
		must(t, err)
		if len(h) != 2 || h[0].Online || h[0].Cause != "will" || !h[1].Online {
			t.Fatalf("history = %+v", h)
		}
		must(t, e.s.RecordPresence(e.ctx, "dev-a", store.PresenceChange{At: t0.Add(2 * time.Hour), Online: true, Cause: "state"}, keep))
		h, err = e.s.PresenceHistory(e.ctx, e.opA.ID, "dev-a", 0)
		must(t, err)
		if len(h) != 1 {
			t.Fatalf("after retention: %+v", h)
		}
		wantCode(t, e.s.RecordPresence(e.ctx, "nope", store.PresenceChange{At: t0, Cause: "stale"}, keep), "device.not_found")
		wantCode(t, e.s.RecordPresence(e.ctx, "dev-a", store.PresenceChange{At: t0}, keep), "store.input")
	})
}

// The last sale per machine: the newest session that captured money,
// not one that captured nothing, and none older than LastSaleWindow.
func TestFleetLastSale(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		e.topUp(e.user.ID, 5000)
		old, err := e.start(e.user.ID, "w1", "", 2000, "old")
		must(t, err)
		e.settleUnits(old, 1000)
		e.clk.Add(store.LastSaleWindow + time.Hour)
		sale, err := e.start(e.user.ID, "w1", "", 2000, "sale")
		must(t, err)
		e.clk.Add(time.Minute)
		e.settleUnits(sale, 1000)
		soldAt := e.clk.Now().Add(time.Second) // the report's end (env.usage)
		e.clk.Add(time.Minute)
		none, err := e.start(e.user.ID, "w1", "", 2000, "none")
		must(t, err)
		e.settleUnits(none, 0)
		old2, err := e.start(e.user.ID, "wash1", "", 1, "wash")
		must(t, err)
		e.settleUnits(old2, 1)
		washAt := e.clk.Now().Add(time.Second)
		d, err := e.s.FleetDevice(e.ctx, e.opA.ID, "dev-a")
		must(t, err)
		if len(d.LastSale) != 2 || !d.LastSale["w1"].Equal(soldAt) || !d.LastSale["wash1"].Equal(washAt) {
			t.Fatalf("last sales = %v, want w1 at %v and wash1 at %v", d.LastSale, soldAt, washAt)
		}
		e.clk.Add(store.LastSaleWindow + time.Hour)
		d, err = e.s.FleetDevice(e.ctx, e.opA.ID, "dev-a")
		must(t, err)
		if len(d.LastSale) != 0 {
			t.Fatalf("last sales past the window = %v", d.LastSale)
		}
	})
}
