package console_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/internal/browsertest"
	"beaconvend/cloud/store"
)

var updateShot = flag.Bool("update-screenshot", false, "write the fleet page's screenshot to fleet.png (the README shows it)")

// logIn signs p in through the log-in form.
func logIn(p *browsertest.Page, base, email, password string) {
	p.T.Helper()
	p.Go(base + "/console/login")
	browsertest.Eval[bool](p, fmt.Sprintf(`(() => { document.getElementById("email").value = %q; document.getElementById("password").value = %q; return true })()`, email, password))
	p.ClickAndLoad("button[type=submit]")
}

// demoFleet fills r with what a small fleet looks like: boards online
// with modems, one with a board-link fault, one never heard; a day of
// telemetry samples on wd-1.
func demoFleet(t *testing.T, r *fleetRig) {
	t.Helper()
	ctx := context.Background()
	rssi := func(v int) *int { return &v }
	r.handle(t, "wd-1", mqttapi.LeafState, onlineState())
	r.handle(t, "wd-1", mqttapi.LeafTelemetry, &mqttapi.Telemetry{Envelope: mqttapi.NewEnvelope(time.Now()), UptimeS: 86400,
		Board: mqttapi.Board{Status: "ok"}, OutboxDepth: 0,
		Modem:    &mqttapi.Modem{RSSIdBm: rssi(-71), CSQ: 21, Registration: mqttapi.RegHome, Operator: "Example Mobile", Tech: "lte-m"},
		Machines: []mqttapi.MachineStatus{{ID: "tap1", State: mqttapi.MachineIdle, Counters: mqttapi.Counters{Unit: vend.UnitML, SessionsTotal: 412}}}})
	r.handle(t, "wd-2", mqttapi.LeafState, onlineState())
	r.handle(t, "wd-2", mqttapi.LeafTelemetry, &mqttapi.Telemetry{Envelope: mqttapi.NewEnvelope(time.Now()), UptimeS: 3600,
		Board: mqttapi.Board{Status: "fault", FaultCode: "modbus.timeout", ConsecutiveFailures: 4}, OutboxDepth: 3,
		Modem:    &mqttapi.Modem{RSSIdBm: rssi(-97), CSQ: 8, Registration: mqttapi.RegRoaming, Operator: "Other Net", Tech: "nb-iot"},
		Machines: []mqttapi.MachineStatus{{ID: "wash1", State: mqttapi.MachineFault, Counters: mqttapi.Counters{Unit: vend.UnitCycle}}}})
	// A vending machine at the airport that lost its link an hour ago.
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	if err := r.st.CreateDevice(ctx, store.Device{ID: "vm-7", OperatorID: r.op, Name: "Snacks", K: 5, SignKey: pub, MQTTHash: "x",
		Machines: []store.Machine{{ID: "v1", Kind: vend.KindVending, Name: "Snack machine", Price: vend.Price{Minor: 150, Per: 1}, Currency: "EUR",
			Slots: []store.Slot{{ID: "A1", Name: "Crisps", Price: vend.Price{Minor: 150, Per: 1}}}}}}); err != nil {
		t.Fatal(err)
	}
	for id, loc := range map[string]string{"wd-1": "Main St 1, lobby", "vm-7": "Airport T1, gate B"} {
		if err := r.st.SetDeviceLocation(ctx, r.op, id, loc); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.st.SetDeviceStatus(ctx, "vm-7", true, nil, time.Now().Add(-3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	r.svc.DeviceDisconnected(ctx, "vm-7", time.Now().Add(-62*time.Minute))
	start := time.Now().Add(-24 * time.Hour)
	for i := 0; i < 96; i++ {
		at := start.Add(time.Duration(i) * 15 * time.Minute)
		v := -76 + int(math.Round(6*math.Sin(float64(i)/9)))
		depth := uint32(0)
		if i > 60 && i < 66 {
			depth = uint32(4 * (i - 60)) // a link outage an afternoon
		}
		if _, err := r.st.RecordTelemetrySample(ctx, store.TelemetrySample{Device: "wd-1", At: at, RSSIdBm: &v, OutboxDepth: depth},
			time.Minute, 48*time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	// The sample of the telemetry above, written with the service's next flush.
	deadline := time.Now().Add(5 * time.Second)
	for {
		h, err := r.st.TelemetryHistory(ctx, r.op, "wd-1", time.Time{}, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(h) == 97 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("wd-1 has %d telemetry samples, want 96 and the live one", len(h))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The fleet page in Chromium: live over SSE (a board that drops turns
// offline without a reload), filter and search, the device page's
// charts, axe on both pages.
func TestFleetInChromium(t *testing.T) {
	b := browsertest.Start(t)
	r := newFleetRig(t, "sqlite:"+filepath.Join(t.TempDir(), "c.db"))
	demoFleet(t, r)
	p := b.Page(t, browsertest.Desktop)
	logIn(p, r.srv.URL, "viewer@example.com", "password-123")
	if !strings.HasSuffix(p.URL(), "/console/fleet") {
		t.Fatalf("after the log-in: %s", p.URL())
	}
	p.WaitFor(`tr[data-device="wd-1"][data-status="online"]`)
	p.WaitFor(`tr[data-device="wd-2"][data-status="fault"]`)
	if s := p.Text(`tr[data-device="wd-2"]`); !strings.Contains(s, "board: modbus.timeout (4 failed transactions in a row)") || !strings.Contains(s, "-97 dBm") {
		t.Errorf("wd-2's row reads %q", s)
	}
	p.WaitFor(`tr[data-device="vm-7"][data-status="offline"]`)
	if s := p.Text(`tr[data-device="vm-7"] td.st`); !strings.Contains(s, "(1 h 2 min)") {
		t.Errorf("vm-7 offline for %q, want 1 h 2 min", s)
	}
	if n := browsertest.Eval[int](p, `document.querySelectorAll("tr[data-device]").length`); n != 3 {
		t.Fatalf("%d rows, want 3 (this operator's devices only)", n)
	}
	p.Axe() // fails on a serious or critical finding; logs the others
	if *updateShot {
		if err := os.WriteFile("fleet.png", p.ElementPNG("body", 1), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Live: the stream is open; a disconnect turns the row offline with
	// no reload (the marker set on this document survives).
	p.Wait(`(() => { const e = document.getElementById("fleet-live"); return e && e["htmx-internal-data"] && e["htmx-internal-data"].sseEventSource && e["htmx-internal-data"].sseEventSource.readyState === 1 })()`)
	browsertest.Eval[bool](p, `window.__sameDocument = true`)
	r.svc.DeviceDisconnected(context.Background(), "wd-1", time.Now())
	p.WaitFor(`tr[data-device="wd-1"][data-status="offline"]`)
	if !browsertest.Eval[bool](p, `window.__sameDocument === true`) {
		t.Fatal("the page was reloaded")
	}
	if s := p.Text(`tr[data-device="wd-1"] td.st`); !strings.Contains(s, "Offline") || !strings.Contains(s, "since") {
		t.Errorf("offline status reads %q", s)
	}

	// Filter and search through the form.
	browsertest.Eval[bool](p, `(() => { document.getElementById("fleet-state").value = "fault"; return true })()`)
	p.ClickAndLoad(`form.filters button[type=submit]`)
	p.WaitFor(`tr[data-device="wd-2"]`)
	if n := browsertest.Eval[int](p, `document.querySelectorAll("tr[data-device]").length`); n != 1 {
		t.Errorf("state=fault shows %d rows, want 1", n)
	}
	p.Go(r.srv.URL + "/console/fleet?q=STATION")
	p.WaitFor(`tr[data-device="wd-2"]`)
	if n := browsertest.Eval[int](p, `document.querySelectorAll("tr[data-device]").length`); n != 1 {
		t.Errorf("q=STATION shows %d rows, want 1", n)
	}

	// The device page: machines with prices, the charts, axe.
	p.Go(r.srv.URL + "/console/fleet/wd-1")
	p.WaitFor(`#chart-signal svg path`)
	if s := p.Text(`tr[data-machine="tap1"]`); !strings.Contains(s, "0.50 EUR per 1 L") {
		t.Errorf("machine row reads %q", s)
	}
	// 96 samples of the last day and the one the telemetry just sent.
	if s := p.Text(`#chart-signal desc`); !strings.Contains(s, "97 points") || !strings.Contains(s, "highest -70 dBm") {
		t.Errorf("signal chart summary: %q", s)
	}
	p.Axe() // fails on a serious or critical finding; logs the others
}
