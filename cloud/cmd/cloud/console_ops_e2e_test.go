package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/phoneapi"
	pb "beaconvend/app-protocol/provision"
	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/internal/browsertest"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

// TestConsoleOpsInChromium runs the console's remote operations and
// inventory in Chromium against the in-process cloud with a real
// controller on an emulated board: a price change reviewed, confirmed and
// answered by the controller; an output test switching the board's coil;
// roles refused; restock, a settled vend decrementing the count, and a
// sold-out slot refused to the phone and shown to it.
func TestConsoleOpsInChromium(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { consoleOps(t, "") })
	t.Run("postgres", func(t *testing.T) {
		if testing.Short() {
			t.Skip("not with -short")
		}
		consoleOps(t, consolePG(t))
	})
}

// setValue sets a form field's value as typing would leave it.
func setValue(p *browsertest.Page, sel, v string) {
	p.T.Helper()
	p.WaitFor(sel)
	browsertest.Eval[bool](p, fmt.Sprintf(`(e => { e.value = %q; return true })(document.querySelector(%q))`, v, sel))
}

func consoleOps(t *testing.T, dsn string) {
	// The sandbox card funds the phone of the inventory test; stickers
	// carry the public URL.
	r := newConsoleRig(t, consoleRigOpts{DSN: dsn, Config: map[string]any{"payments": map[string]any{
		"channels": []string{"sandbox_card"}, "public_url": "https://pay.example.test"}}})
	ctx := context.Background()
	st := r.Store()
	board := r.Board(0)
	dev := board.ID
	d, err := st.GetDevice(ctx, dev)
	if err != nil {
		t.Fatal(err)
	}
	tap := d.Machines[0]
	cur := string(tap.Currency)

	t.Run("price change confirmed and answered by the controller", func(t *testing.T) {
		replies := r.Watch(t, dev, mqttapi.LeafReply)
		p := r.login(t, service.RoleManager)
		p.Go(r.URL + "/console/ops")
		p.Axe()
		p.ClickAndLoad(fmt.Sprintf(`a[href="/console/ops/devices/%s"]`, dev))
		p.Axe()
		newMinor := tap.Price.Minor + 15
		setValue(p, "#price-"+tap.ID+"-price", fmt.Sprintf("%d.%02d", newMinor/100, newMinor%100))
		p.ClickAndLoad(fmt.Sprintf(`form[action="/console/ops/devices/%s/price/review"] button[type=submit]`, dev))
		old, neu := fmt.Sprintf("%d.%02d %s per %d ml", tap.Price.Minor/100, tap.Price.Minor%100, cur, tap.Price.Per),
			fmt.Sprintf("%d.%02d %s per %d ml", newMinor/100, newMinor%100, cur, tap.Price.Per)
		if txt := p.Text("main table"); !strings.Contains(txt, old) || !strings.Contains(txt, neu) || !strings.Contains(txt, "→ changes") {
			t.Fatalf("review page: %q, want %q → %q", txt, old, neu)
		}
		p.Axe()
		if got, _ := st.GetDevice(ctx, dev); got.Machines[0].Price.Minor != tap.Price.Minor {
			t.Fatal("the review changed the price")
		}
		// Another manager changes the price meanwhile: the confirmation is
		// refused and the review shown again against the price now.
		other := tap.Price
		other.Minor++
		if err := st.SetPrices(ctx, r.Operator, dev, tap.ID, other, nil); err != nil {
			t.Fatal(err)
		}
		p.ClickAndLoad("#confirm")
		if txt := p.WaitText("#stale", "changed since you reviewed"); !strings.Contains(p.Text("main table"), fmt.Sprintf("%d.%02d %s", other.Minor/100, other.Minor%100, cur)) {
			t.Fatalf("stale review: %q / %q", txt, p.Text("main table"))
		}
		p.Axe()
		if got, _ := st.GetDevice(ctx, dev); got.Machines[0].Price != other {
			t.Fatal("a stale confirmation changed the price")
		}
		p.ClickAndLoad("#confirm")
		p.WaitText("#reply", "Accepted by the device")
		p.Axe()
		cmd := p.Text("#reply + p code")
		// The controller itself answered that command, over the broker.
		deadline := time.After(10 * time.Second)
		for found := false; !found; {
			select {
			case m := <-replies:
				if rep, ok := m.(*mqttapi.Reply); ok && rep.CmdID == cmd {
					if !rep.OK {
						t.Fatalf("the controller refused the prices: %+v", rep)
					}
					found = true
				}
			case <-deadline:
				t.Fatalf("no reply to %s from the controller", cmd)
			}
		}
		got, _ := st.GetDevice(ctx, dev)
		if got.Machines[0].Price.Minor != newMinor {
			t.Fatalf("price %d in the store, want %d", got.Machines[0].Price.Minor, newMinor)
		}
		es, err := st.AuditLog(ctx, r.Operator, store.AuditFilter{Action: "price.set"})
		if err != nil || len(es) != 1 || es[0].Email != r.Accounts[service.RoleManager].Email || !strings.Contains(string(es[0].After), `"accepted"`) {
			t.Fatalf("audit: %+v, %v", es, err)
		}
		tap = got.Machines[0]
	})

	t.Run("technician's output test reaches the board", func(t *testing.T) {
		p := r.login(t, service.RoleTechnician)
		p.Go(r.URL + "/console/ops/devices/" + dev)
		if n := browsertest.Eval[int](p, `document.querySelectorAll("form[action$='/price/review']").length`); n != 0 {
			t.Fatalf("a technician sees %d price forms", n)
		}
		setValue(p, "#test-output", "out1")
		setValue(p, "#test-duration", "300")
		p.ClickAndLoad(`form[action$="/test/review"] button[type=submit]`)
		if txt := p.Text("main"); !strings.Contains(txt, "out1") || !strings.Contains(txt, "300 ms") {
			t.Fatalf("review page: %q", txt)
		}
		p.Axe()
		t0 := time.Now()
		p.ClickAndLoad("#confirm")
		p.WaitText("#reply", "Accepted by the device")
		p.Axe()
		if _, err := r.Relay.CoilOn(ctx, 0, t0, 10*time.Second); err != nil {
			t.Fatalf("the board's valve coil was not switched on: %v", err)
		}

		// An output the board does not have: the controller refuses it.
		p.Go(r.URL + "/console/ops/devices/" + dev)
		setValue(p, "#test-output", "relay9")
		p.ClickAndLoad(`form[action$="/test/review"] button[type=submit]`)
		p.ClickAndLoad("#confirm")
		if txt := p.WaitText("#reply", "Refused by the device"); !strings.Contains(txt, "output.unknown") {
			t.Fatalf("unknown output: %q", txt)
		}
		if es, _ := st.AuditLog(ctx, r.Operator, store.AuditFilter{Action: "output.test"}); len(es) != 2 {
			t.Fatalf("%d output.test audit entries, want 2", len(es))
		}
	})

	t.Run("viewer refused", func(t *testing.T) {
		p := r.login(t, service.RoleViewer)
		p.Go(r.URL + "/console/ops/devices/" + dev)
		p.Axe()
		if n := browsertest.Eval[int](p, `document.querySelectorAll("main form").length`); n != 0 {
			t.Fatalf("a viewer sees %d forms on the operations page", n)
		}
		tok := csrfOf(p)
		for path, fields := range map[string]map[string]string{
			"/console/ops/devices/" + dev + "/test":   {"machine": tap.ID, "output": "out1", "duration_ms": "300"},
			"/console/ops/devices/" + dev + "/price":  {"machine": tap.ID, "price": "9.99", "per": "1000"},
			"/console/ops/devices/" + dev + "/reboot": {"delay_s": "0"},
			"/console/inventory/restock":              {"device": dev, "machine": "v1", "slot": "A1", "stock": "5"},
			"/console/ops/provision":                  {"id": "viewer-dev", "kind": "water", "currency": "EUR", "k": "5"},
		} {
			fields["csrf"] = tok
			if st := post(p, path, fields); st != http.StatusForbidden {
				t.Errorf("viewer POST %s: %d, want 403", path, st)
			}
		}
		vt := r.apiToken(t, r.Accounts[service.RoleViewer])
		status, body := r.api(t, "POST", "/v1/operator/devices/"+dev+"/machines/"+tap.ID+"/test-output", vt,
			map[string]any{"output": "out1", "duration_ms": 300}, nil)
		if status != http.StatusForbidden || !strings.Contains(body, "auth.forbidden") {
			t.Fatalf("viewer's API output test: %d %s", status, body)
		}
		if got, _ := st.GetDevice(ctx, dev); got.Machines[0].Price != tap.Price {
			t.Fatal("a viewer changed the price")
		}
	})

	t.Run("provisioning: add a device, its bundle once, its stickers", func(t *testing.T) {
		p := r.login(t, service.RoleManager)
		p.Go(r.URL + "/console/ops/provision")
		p.Axe()
		setValue(p, "#p-id", "added-01")
		setValue(p, "#p-name", "Added in the console")
		browsertest.Eval[bool](p, `(e => { e.value = "vending"; return true })(document.querySelector("#p-kind"))`)
		setValue(p, "#p-slots", "B1:Water:120,B2:Cola:200")
		p.ClickAndLoad(`form[action="/console/ops/provision"] button[type=submit]`)
		if txt := p.WaitText("main", "is registered"); !strings.Contains(txt, "once") || !strings.Contains(txt, "private keys") {
			t.Fatalf("provisioned page: %q", txt)
		}
		p.Axe()
		d, err := st.GetDevice(ctx, "added-01")
		if err != nil || d.OperatorID != r.Operator || len(d.Machines) != 1 || len(d.Machines[0].Slots) != 2 || d.Machines[0].Slots[1].Price.Minor != 200 {
			t.Fatalf("added device: %+v, %v", d, err)
		}
		fetch := func(method, path, body string) (int, string) {
			js := fmt.Sprintf(`fetch(%q, {method: %q, headers: {"X-CSRF-Token": %q}%s}).then(async r => JSON.stringify([r.status, await r.text()]))`,
				path, method, csrfOf(p), map[bool]string{true: fmt.Sprintf(", body: new URLSearchParams(%s)", body), false: ""}[body != ""])
			var res [2]any
			if err := json.Unmarshal([]byte(browsertest.Run(p, chromedp.Evaluate[string](js, chromedp.EvalAwaitPromise))), &res); err != nil {
				t.Fatal(err)
			}
			return int(res[0].(float64)), res[1].(string)
		}
		tok := browsertest.Eval[string](p, `document.querySelector("input[name=token]").value`)
		status, body := fetch("POST", "/console/ops/provision/bundle", fmt.Sprintf(`{token: %q}`, tok))
		b, err := pb.Decode(strings.NewReader(body))
		if status != http.StatusOK || err != nil || b.DeviceID != "added-01" || b.OperatorID != r.Operator || !strings.HasPrefix(b.MQTT.URL, "tcp://127.0.0.1:") {
			t.Fatalf("bundle download: %d, %v, %+v", status, err, b)
		}
		if status, _ := fetch("POST", "/console/ops/provision/bundle", fmt.Sprintf(`{token: %q}`, tok)); status != http.StatusNotFound {
			t.Fatalf("second bundle download: %d, want 404 (once)", status)
		}
		status, svg := fetch("GET", "/console/ops/devices/added-01/stickers/stickers.svg", "")
		if status != http.StatusOK || !strings.Contains(svg, "<svg") || !strings.Contains(svg, "pay.example.test/m/added-01/") {
			t.Fatalf("stickers: %d %.200s", status, svg)
		}
		if es, _ := st.AuditLog(ctx, r.Operator, store.AuditFilter{Action: "device.add"}); len(es) != 1 || strings.Contains(string(es[0].After), b.MQTT.Password) {
			t.Fatalf("device.add audit: %+v", es)
		}
		// A technician may not provision.
		tp := r.login(t, service.RoleTechnician)
		tp.Go(r.URL + "/console/ops/provision")
		if !strings.Contains(tp.Text("main"), "manager") {
			t.Fatalf("a technician on the provisioning page: %q", tp.Text("main"))
		}
	})

	t.Run("restock, a vend decrements, sold out refused and shown", func(t *testing.T) {
		// The rig's boards are water taps: the vending machine exists in
		// the cloud only. The phone's start reaches the real controller,
		// which refuses the unknown machine; the vend's report is then the
		// one a vending controller would send, signed with this device's
		// own key, through the cloud's uplink path, and settles late.
		v := store.Machine{ID: "v1", Kind: vend.KindVending, Name: "snacks", Price: vend.Price{Minor: 100, Per: 1}, Currency: tap.Currency,
			Slots: []store.Slot{{ID: "A1", Name: "Crisps", Price: vend.Price{Minor: 150, Per: 1}}, {ID: "A2", Name: "Gum", Price: vend.Price{Minor: 80, Per: 1}}}}
		if err := st.PutMachine(ctx, r.Operator, dev, v); err != nil {
			t.Fatal(err)
		}
		p := r.login(t, service.RoleTechnician)
		p.Go(r.URL + "/console/inventory?device=" + dev)
		p.Axe()
		row := fmt.Sprintf("#slot-%s-v1-A1", dev)
		if txt := p.Text(row); !strings.Contains(txt, "not counted") {
			t.Fatalf("A1 before a restock: %q", txt)
		}
		setValue(p, row+` input[name=stock]`, "1")
		p.ClickAndLoad(row + ` button[type=submit]`)
		p.WaitText("#restock-status", "now counted, 1")
		if txt := p.Text(row + " [data-stock]"); txt != "1" || !strings.Contains(p.URL(), "/console/inventory?") {
			t.Fatalf("A1 stock shown %q at %s, want 1 after a redirect", txt, p.URL())
		}
		p.Axe()

		phone := phoneapi.New(r.URL, nil)
		if _, err := phone.SignUp(ctx, &phoneapi.SignUpRequest{Email: "payer@ops-rig.example", Password: "correct-horse-battery"}); err != nil {
			t.Fatal(err)
		}
		if _, err := phone.TopUp(ctx, phoneapi.NewIdempotencyKey(), &phoneapi.TopUpRequest{Amount: vend.Amount{Minor: 1000, Currency: tap.Currency}, Source: "card_sandbox"}); err != nil {
			t.Fatal(err)
		}
		start := func() error {
			_, err := phone.StartSession(ctx, phoneapi.NewIdempotencyKey(), &phoneapi.StartSessionRequest{Device: phoneapi.DeviceID(dev), Machine: "v1", Slot: "A1",
				ProximityID: board.ProximityID(time.Now()), Cap: phoneapi.Cap{Units: 1}, Source: "wallet"})
			return err
		}
		if err := start(); vend.CodeOf(err) == "slot.empty" || err == nil {
			t.Fatalf("start on a counted slot with 1 left: %v, want the controller's refusal", err)
		}
		ss, err := st.OperatorSessions(ctx, r.Operator, store.SessionFilter{Device: dev})
		if err != nil {
			t.Fatal(err)
		}
		var sess store.Session
		for _, s := range ss {
			if s.Machine == "v1" {
				sess = s
			}
		}
		if sess.Slot != "A1" {
			t.Fatalf("no session on v1/A1 among %d", len(ss))
		}
		cost, _ := sess.Price.Cost(1)
		now := time.Now()
		rep, err := signed.SignUsage(board.Sign, signed.Usage{Device: dev, Seq: 1 << 40, Session: sess.ID, Machine: "v1", Slot: "A1", Unit: sess.Unit, Units: 1,
			Price: sess.Price, Currency: sess.Currency, Amount: cost, StartedAt: now.Add(-2 * time.Second), EndedAt: now, MeterEnd: 1, Outcome: vend.OutcomeCompleted})
		if err != nil {
			t.Fatal(err)
		}
		u := &mqttapi.Usage{Envelope: mqttapi.NewEnvelope(now), Session: sess.ID, Seq: 1 << 40, Report: rep}
		for range 2 { // delivered twice: counted once
			if err := r.M.Service.Handle(ctx, dev, mqttapi.LeafUsage, u); err != nil {
				t.Fatal(err)
			}
		}
		p.Go(r.URL + "/console/inventory?device=" + dev)
		if txt := p.Text(row); !strings.Contains(txt, "sold out") || p.Text(row+" [data-stock]") != "0" {
			t.Fatalf("A1 after the vend: %q", txt)
		}
		p.Axe()

		// The phone sees the slot empty, and its start is refused.
		dv, err := phone.GetDevice(ctx, phoneapi.DeviceID(dev), board.ProximityID(time.Now()))
		if err != nil {
			t.Fatal(err)
		}
		var a1, a2 *phoneapi.Slot
		for _, m := range dv.Machines {
			for i := range m.Slots {
				switch m.Slots[i].ID {
				case "A1":
					a1 = &m.Slots[i]
				case "A2":
					a2 = &m.Slots[i]
				}
			}
		}
		if a1 == nil || !a1.Empty || a1.Available || a1.Stock == nil || *a1.Stock != 0 || a2 == nil || a2.Empty || a2.Stock != nil {
			b, _ := json.Marshal(dv)
			t.Fatalf("phone's device: %s", b)
		}
		w0, _ := phone.GetWallet(ctx)
		err = start()
		var ae *phoneapi.APIError
		if vend.CodeOf(err) != "slot.empty" {
			t.Fatalf("start on a sold-out slot: %v, want slot.empty", err)
		}
		if !errors.As(err, &ae) || ae.Status != http.StatusConflict {
			t.Fatalf("slot.empty status %d, want 409", ae.Status)
		}
		if w1, _ := phone.GetWallet(ctx); w1.Held != w0.Held || w1.Available != w0.Available {
			t.Fatalf("a refused start moved money: %+v → %+v", w0, w1)
		}
		// The alert engine has the sold-out slot.
		as, _, err := st.ListAlerts(ctx, r.Operator, store.AlertFilter{Kind: store.AlertLowStock, State: store.AlertOpen})
		if err != nil || len(as) != 1 || as[0].Code != "stock.empty" || as[0].Slot != "A1" {
			t.Fatalf("open stock alerts: %+v, %v", as, err)
		}
		// The web checkout offers it as empty.
		offer, err := r.M.Service.MachineOffer(ctx, dev, "v1")
		if err != nil || !offer.Slots[0].Empty || offer.Slots[1].Empty {
			t.Fatalf("web checkout offer: %+v, %v", offer.Slots, err)
		}
	})

	// Last: the board's controller really restarts (it exits for its
	// supervisor), so nothing may follow.
	t.Run("reboot confirmed, answered, and the board goes away", func(t *testing.T) {
		p := r.login(t, service.RoleTechnician)
		p.Go(r.URL + "/console/ops/devices/" + dev)
		setValue(p, "#reboot-delay", "0")
		p.ClickAndLoad(`form[action$="/reboot/review"] button[type=submit]`)
		if txt := p.Text("main"); !strings.Contains(txt, "Reboot "+dev) {
			t.Fatalf("review page: %q", txt)
		}
		p.Axe()
		p.ClickAndLoad("#confirm")
		p.WaitText("#reply", "Accepted by the device")
		p.Axe()
		deadline := time.Now().Add(30 * time.Second)
		for {
			d, err := st.GetDevice(ctx, dev)
			if err != nil {
				t.Fatal(err)
			}
			if !d.Online {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the board stayed online after an accepted reboot")
			}
			time.Sleep(200 * time.Millisecond)
		}
		if es, _ := st.AuditLog(ctx, r.Operator, store.AuditFilter{Action: "device.reboot"}); len(es) != 1 {
			t.Fatalf("%d device.reboot audit entries, want 1", len(es))
		}
	})
}
