package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/internal/browsertest"
	"beaconvend/cloud/service"
)

// TestConsoleFleetInChromium runs the console's fleet pages in Chromium
// against the in-process cloud with two real controllers on emulated
// boards, on SQLite and on PostgreSQL.
func TestConsoleFleetInChromium(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { consoleFleet(t, "") })
	t.Run("postgres", func(t *testing.T) {
		if testing.Short() {
			t.Skip("not with -short")
		}
		consoleFleet(t, consolePG(t))
	})
}

// rows is the device IDs the fleet table lists, in order.
func rows(p *browsertest.Page) []string {
	return browsertest.Eval[[]string](p, `[...document.querySelectorAll("tr[data-device]")].map(e => e.dataset.device)`)
}

func consoleFleet(t *testing.T, dsn string) {
	r := newConsoleRig(t, consoleRigOpts{DSN: dsn, Boards: 2, FlowLPM: 60,
		Config: map[string]any{"payments": map[string]any{"channels": []string{"sandbox_card"}}}})
	ctx := context.Background()
	st := r.Store()
	b0, b1 := r.Board(0), r.Board(1)
	if err := st.SetDeviceLocation(ctx, r.Operator, b1.ID, "Harbour kiosk"); err != nil {
		t.Fatal(err)
	}

	// A sale on board 0: a phone pays 0.5 L through the real controller.
	phone := phoneapi.New(r.URL, nil)
	if _, err := phone.SignUp(ctx, &phoneapi.SignUpRequest{Email: "fleet-payer@example.com", Password: "correct-horse-battery"}); err != nil {
		t.Fatal(err)
	}
	if _, err := phone.TopUp(ctx, phoneapi.NewIdempotencyKey(), &phoneapi.TopUpRequest{Amount: vend.Amount{Minor: 1000, Currency: "EUR"}, Source: "sandbox_card"}); err != nil {
		t.Fatal(err)
	}
	s, err := phone.StartSession(ctx, phoneapi.NewIdempotencyKey(), b0.StartRequest(time.Now(), 500))
	if err != nil {
		t.Fatalf("StartSession: %v", err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		x, err := phone.GetSession(ctx, s.ID)
		if err == nil && x.State == phoneapi.StateSettled {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("session %s not settled: %+v %v", s.ID, x, err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	p := r.login(t, service.RoleViewer)
	p.Go(r.URL + "/console/fleet")
	t.Run("lists the boards online", func(t *testing.T) {
		for _, b := range []string{b0.ID, b1.ID} {
			p.WaitFor(fmt.Sprintf(`tr[data-device=%q][data-status="online"]`, b))
		}
		if got := rows(p); len(got) != 2 {
			t.Fatalf("rows %v, want the two boards", got)
		}
		row := p.Text(fmt.Sprintf(`tr[data-device=%q]`, b0.ID))
		if !strings.Contains(row, "Online") || !strings.Contains(row, "since") || strings.Contains(row, "none in 30 days") {
			t.Errorf("board 0's row (with a sale) reads %q", row)
		}
		p.Axe() // fails on a serious or critical finding; logs the others
	})

	t.Run("device page: machines, sessions, chart", func(t *testing.T) {
		d := r.B.Page(t, browsertest.Desktop)
		r.submitLogin(d, r.Accounts[service.RoleViewer].Email, r.Accounts[service.RoleViewer].Password)
		d.Go(r.URL + "/console/fleet/" + b0.ID)
		d.WaitFor(fmt.Sprintf(`a[href="/console/sessions/%s"]`, s.ID))
		d.WaitFor(`#chart-outbox svg[role="img"]`)
		d.WaitFor(`#chart-signal svg[role="img"]`)
		if m := d.Text(`tr[data-machine="tap1"]`); !strings.Contains(m, "per") {
			t.Errorf("the machine row shows no price: %q", m)
		}
		if h := d.Text("main"); !strings.Contains(h, "connected") {
			t.Errorf("the state history lacks the connection: %q", h)
		}
		d.Axe() // fails on a serious or critical finding; logs the others
		if n := browsertest.Eval[int](d, `document.querySelectorAll("ul.price-links a").length`); n != 0 {
			t.Errorf("a viewer is offered %d price changes", n)
		}
		// A manager is led to the machine's price form on the operations page.
		m := r.login(t, service.RoleManager)
		m.Go(r.URL + "/console/fleet/" + b0.ID)
		m.WaitFor(fmt.Sprintf(`ul.price-links a[href="/console/ops/devices/%s#price-tap1"]`, b0.ID))
	})

	t.Run("another operator sees none of it", func(t *testing.T) {
		o := r.loginAs(t, r.Other)
		o.Go(r.URL + "/console/fleet")
		if got := rows(o); len(got) != 0 {
			t.Fatalf("the other operator's fleet lists %v", got)
		}
		o.Go(r.URL + "/console/fleet/" + b0.ID)
		if h := o.Text("h1"); h != "Not found" {
			t.Errorf("the other operator's view of board 0: %q", h)
		}
		o.Go(r.URL + "/console/fleet?q=" + b0.ID)
		if got := rows(o); len(got) != 0 {
			t.Errorf("searching board 0's ID as the other operator lists %v", got)
		}
	})

	t.Run("a killed board turns offline live", func(t *testing.T) {
		p.Wait(`(() => { const e = document.getElementById("fleet-live"); const d = e && e["htmx-internal-data"]; return d && d.sseEventSource && d.sseEventSource.readyState === 1 })()`)
		browsertest.Eval[bool](p, `window.__sameDocument = true`)
		killed := time.Now()
		r.KillBoard(t, 1)
		bound := service.DefaultStaleAfter + service.DefaultStaleAfter/6 // the sweep's bound, when no disconnect is seen
		sel := fmt.Sprintf(`tr[data-device=%q][data-status="offline"]`, b1.ID)
		for !browsertest.Eval[bool](p, fmt.Sprintf("!!document.querySelector(%q)", sel)) {
			if time.Since(killed) > bound {
				t.Fatalf("board 1 still not offline on the page %v after it was killed", bound)
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("board 1 offline on the page %v after the kill", time.Since(killed).Round(time.Millisecond))
		if !browsertest.Eval[bool](p, `window.__sameDocument === true`) {
			t.Fatal("the page reloaded")
		}
		if s := p.Text(fmt.Sprintf(`tr[data-device=%q] td.st`, b1.ID)); !strings.Contains(s, "Offline") {
			t.Errorf("board 1's status reads %q", s)
		}
		if s := p.Text(fmt.Sprintf(`tr[data-device=%q] td.st`, b0.ID)); !strings.Contains(s, "Online") {
			t.Errorf("board 0's status reads %q", s)
		}
		if s := p.Text("#fleet-summary"); !strings.Contains(s, "1 online") || !strings.Contains(s, "1 offline") {
			t.Errorf("summary reads %q", s)
		}
	})

	t.Run("filter and search", func(t *testing.T) {
		p.Go(r.URL + "/console/fleet")
		browsertest.Eval[bool](p, `(() => { document.getElementById("fleet-state").value = "offline"; return true })()`)
		p.ClickAndLoad(`form.filters button[type=submit]`)
		if got := rows(p); len(got) != 1 || got[0] != b1.ID {
			t.Errorf("state offline lists %v, want only %s", got, b1.ID)
		}
		p.Go(r.URL + "/console/fleet?state=online")
		if got := rows(p); len(got) != 1 || got[0] != b0.ID {
			t.Errorf("state online lists %v, want only %s", got, b0.ID)
		}
		p.Go(r.URL + "/console/fleet")
		p.Click("#fleet-q")
		p.Do(chromedp.KeyEvent("harbour"))
		p.ClickAndLoad(`form.filters button[type=submit]`)
		if got := rows(p); len(got) != 1 || got[0] != b1.ID {
			t.Errorf("search by location lists %v, want only %s", got, b1.ID)
		}
		p.Go(r.URL + "/console/fleet?q=" + b0.ID)
		if got := rows(p); len(got) != 1 || got[0] != b0.ID {
			t.Errorf("search by device ID lists %v, want only %s", got, b0.ID)
		}
		p.Axe() // fails on a serious or critical finding; logs the others
	})
}
