package main

import (
	"context"
	"encoding/csv"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/internal/browsertest"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

// TestConsoleMoneyInChromium runs the console's sessions, refunds,
// settlement and revenue pages in Chromium against the in-process cloud,
// with sessions that real controllers on emulated boards ran and
// reported: a refund confirmed once despite a real double click, a
// partial refund, a refund an owner approves, roles refused, an
// unreported session settled, the revenue charts and the CSV exports;
// axe-core on every page.
func TestConsoleMoneyInChromium(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { consoleMoney(t, "") })
	t.Run("postgres", func(t *testing.T) {
		if testing.Short() {
			t.Skip("not with -short")
		}
		consoleMoney(t, consolePG(t))
	})
}

func consoleMoney(t *testing.T, dsn string) {
	// A session whose board goes silent is unreported within seconds.
	r := newConsoleRig(t, consoleRigOpts{DSN: dsn, Boards: 2, Args: []string{"-grant-ttl", "5s", "-ack-bound", "2s",
		"-offline-allowance", "2s", "-run-per-unit", "water=20ms"}})
	ctx := context.Background()
	st := r.Store()

	// A payer who topped up 50.00 EUR through the sandbox card channel runs
	// three sessions on board 0 and one on board 1, whose controller is
	// killed while the valve is open: that one is never reported.
	u, err := st.CreateUser(ctx, "payer@money-e2e.example", "payer password")
	if err != nil {
		t.Fatal(err)
	}
	const topUpTx = "sbx-money-e2e-1"
	if _, _, err := st.CreatePayment(ctx, store.NewPayment{OrderNo: "bv-money-e2e-1", Channel: "sandbox_card", User: u.ID,
		Amount: vend.Amount{Minor: 5000, Currency: "EUR"}, Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.MarkPaid(ctx, store.Paid{Channel: "sandbox_card", OrderNo: "bv-money-e2e-1", ProviderTxID: topUpTx,
		Amount: vend.Amount{Minor: 5000, Currency: "EUR"}, PaidAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	tok, err := st.IssueToken(ctx, u.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	phone := phoneapi.New(r.URL, &phoneapi.Opts{Token: tok})
	var settled []vend.SessionID
	for i := 0; i < 3; i++ {
		s, err := phone.StartSession(ctx, phoneapi.NewIdempotencyKey(), r.Board(0).StartRequest(time.Now(), 100))
		if err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
		waitState(t, st, s.ID, store.Settled)
		settled = append(settled, s.ID)
	}
	t0 := time.Now()
	lost, err := phone.StartSession(ctx, phoneapi.NewIdempotencyKey(), r.Board(1).StartRequest(t0, 500))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Relay.CoilOn(ctx, 1, t0, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	r.KillBoard(t, 1)
	waitState(t, st, lost.ID, store.Unreported)

	manager, owner, viewer := r.Accounts[service.RoleManager], r.Accounts[service.RoleOwner], r.Accounts[service.RoleViewer]
	revenue := func() int64 {
		t.Helper()
		a, err := st.Balance(ctx, store.OperatorRevenue, r.Operator, "EUR")
		if err != nil {
			t.Fatal(err)
		}
		return a.Minor
	}
	refunds := func(id vend.SessionID) []store.RefundRequest {
		t.Helper()
		rs, err := st.SessionRefunds(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return rs
	}

	t.Run("search", func(t *testing.T) {
		p := r.login(t, service.RoleViewer)
		p.Go(r.URL + "/console/sessions?payer=R-" + settled[1].String())
		got := p.Text("main table tbody")
		if !strings.Contains(got, settled[1].String()) || strings.Contains(got, settled[0].String()) {
			t.Fatalf("payer search for R-%s shows %q", settled[1], got)
		}
		p.Axe()
		// The top-up's transaction ID, as the payer's card statement shows
		// it, finds all the payer's sessions.
		p.Go(r.URL + "/console/sessions?payer=" + topUpTx)
		if n := moneyEval[int](p, `document.querySelectorAll("main table tbody a").length`); n != 4 {
			t.Fatalf("payer search by the top-up's transaction ID found %d sessions, want 4", n)
		}
		p.Go(r.URL + "/console/sessions?state=unreported")
		if got := p.Text("main table tbody"); !strings.Contains(got, lost.ID.String()) {
			t.Fatalf("unreported sessions: %q", got)
		}
		p.Go(r.URL + moneyEval[string](p, `document.querySelector('main table tbody a').getAttribute('href')`))
		if txt := p.Text("main"); !strings.Contains(txt, "unreported") || strings.Contains(txt, "Review the refund") {
			t.Fatalf("session page for a viewer: %q", txt)
		}
		p.Axe()
	})

	t.Run("viewer and technician refused", func(t *testing.T) {
		p := r.login(t, service.RoleViewer)
		p.Go(r.URL + "/console/sessions/" + settled[0].String())
		if moneyEval[bool](p, `!!document.querySelector('form[action$="/refund/review"]')`) {
			t.Fatal("a viewer is offered the refund form")
		}
		if got := post(p, "/console/sessions/"+settled[0].String()+"/refund/review", map[string]string{"csrf": csrfOf(p), "part": "full", "reason": "x"}); got != http.StatusForbidden {
			t.Fatalf("viewer's refund review = %d, want 403", got)
		}
		if got := post(p, "/console/sessions/"+settled[0].String()+"/refund", map[string]string{"csrf": csrfOf(p), "key": "console-x",
			"minor": "1", "currency": "EUR", "reason": "x"}); got != http.StatusForbidden {
			t.Fatalf("viewer's refund = %d, want 403", got)
		}
		if got := fetchStatus(p, "/console/exports/ledger"); got != http.StatusForbidden {
			t.Fatalf("viewer's export = %d, want 403", got)
		}
		tech := r.login(t, service.RoleTechnician)
		tech.Go(r.URL + "/console/sessions/" + settled[0].String())
		if got := post(tech, "/console/sessions/"+settled[0].String()+"/refund", map[string]string{"csrf": csrfOf(tech), "key": "console-y",
			"minor": "1", "currency": "EUR", "reason": "x"}); got != http.StatusForbidden {
			t.Fatalf("technician's refund = %d, want 403", got)
		}
		// The JSON operator API refuses the same.
		status, body := r.api(t, "POST", "/v1/operator/sessions/"+settled[0].String()+"/refund/review", r.apiToken(t, viewer),
			map[string]any{"amount": map[string]any{"minor": 1, "currency": "EUR"}}, nil)
		if status != http.StatusForbidden || !strings.Contains(body, "auth.forbidden") {
			t.Fatalf("API refund review as viewer = %d %s", status, body)
		}
		if len(refunds(settled[0])) != 0 {
			t.Fatal("a refused refund moved money")
		}
	})

	t.Run("refund once despite a double click", func(t *testing.T) {
		id := settled[0]
		before := revenue()
		p := r.loginAs(t, manager)
		p.Go(r.URL + "/console/sessions/" + id.String())
		p.Click("#r-reason")
		p.Do(chromedp.KeyEvent("the tap ran dry"))
		p.ClickAndLoad(`form[action$="/refund/review"] button[type=submit]`)
		if txt := p.Text("main"); !strings.Contains(txt, "back to channel sandbox_card, order bv-money-e2e-1") {
			t.Fatalf("review page does not say the money goes back to the card: %q", txt)
		}
		p.Axe()
		key := moneyEval[string](p, `document.querySelector('input[name=key]').value`)
		minor := moneyEval[string](p, `document.querySelector('input[name=minor]').value`)
		// A person's double click: two clicks in a row on the confirm
		// button. The browser sends the form twice.
		var posts atomic.Int32
		if err := chromedp.Listen(p.Ctx, func(ev any) {
			if e, ok := ev.(*network.EventRequestWillBeSent); ok && e.Request.Method == "POST" && strings.HasSuffix(e.Request.URL, "/refund") {
				posts.Add(1)
			}
		}); err != nil {
			t.Fatal(err)
		}
		moneyEval[bool](p, `window.__browsertestOld = true`)
		type pt struct{ X, Y float64 }
		c := moneyEval[pt](p, `(e => { const r = e.getBoundingClientRect(); return {X: r.x + r.width/2, Y: r.y + r.height/2} })(document.querySelector('#confirm-refund'))`)
		p.Do(chromedp.MouseClickXY(c.X, c.Y), chromedp.Sleep(20*time.Millisecond), chromedp.MouseClickXY(c.X, c.Y, chromedp.ClickCount(2)))
		p.Wait(`!window.__browsertestOld && document.readyState === "complete"`)
		if txt := p.Text("main"); !strings.Contains(txt, "The refund was made") {
			t.Fatalf("after the double click: %q", txt)
		}
		// Whether the browser sends the second click's submission depends
		// on whether the first one's request had left yet (else it
		// replaces it): logged here; the same form is sent again below,
		// so a duplicate always reaches the server.
		t.Logf("the double click sent the form %d times", posts.Load())
		// The same form sent once more (a retry) is still the one refund.
		if got := post(p, "/console/sessions/"+id.String()+"/refund", map[string]string{"csrf": csrfOf(p), "key": key,
			"minor": minor, "currency": "EUR", "reason": "the tap ran dry"}); got != 0 {
			t.Fatalf("resubmission = %d, want the redirect to the session (opaque to fetch: 0)", got)
		}
		rs := refunds(id)
		var n int64
		fmt.Sscan(minor, &n)
		if len(rs) != 1 || rs[0].Amount.Minor != n || revenue() != before-n {
			t.Fatalf("refunds after a double click and a retry: %+v (revenue %d → %d), want one of %d", rs, before, revenue(), n)
		}
		// The channel got one refund, of the whole amount, and the wallet none.
		if len(rs[0].Refunds) != 1 || rs[0].Refunds[0].Amount.Minor != n || rs[0].Wallet != 0 {
			t.Fatalf("refund parts = %+v, want one channel refund of %d", rs[0], n)
		}
		fs, err := st.OrderRefunds(ctx, "bv-money-e2e-1")
		if err != nil || len(fs) != 1 {
			t.Fatalf("channel refunds of the order = %+v, %v; want one", fs, err)
		}
		if txt := p.Text("main"); !strings.Contains(txt, "channel sandbox_card, order bv-money-e2e-1") || !strings.Contains(txt, "the tap ran dry") {
			t.Fatalf("session page does not list the refund: %q", txt)
		}
		p.Axe()
	})

	t.Run("partial refund", func(t *testing.T) {
		id := settled[1]
		ss, err := st.GetSession(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		p := r.loginAs(t, manager)
		p.Go(r.URL + "/console/sessions/" + id.String())
		p.Click("#r-part")
		moneyEval[bool](p, `(document.querySelector('#r-amount').value = "", true)`)
		p.Click("#r-amount")
		p.Do(chromedp.KeyEvent("0.01"))
		p.Click("#r-reason")
		p.Do(chromedp.KeyEvent("one cup short"))
		p.ClickAndLoad(`form[action$="/refund/review"] button[type=submit]`)
		if txt := p.Text("main"); !strings.Contains(txt, "Refund 0.01 EUR") {
			t.Fatalf("review of a partial refund: %q", txt)
		}
		p.ClickAndLoad("#confirm-refund")
		rs := refunds(id)
		if len(rs) != 1 || rs[0].Amount.Minor != 1 {
			t.Fatalf("partial refund: %+v, want 0.01 EUR", rs)
		}
		want := fmt.Sprintf("%d.%02d EUR", (ss.Captured-1)/100, (ss.Captured-1)%100)
		if txt := p.Text("main"); !strings.Contains(txt, want) {
			t.Fatalf("session page after a partial refund does not show %s left: %q", want, txt)
		}
	})

	t.Run("second approver", func(t *testing.T) {
		id := settled[2]
		op := r.login(t, service.RoleOwner)
		op.Go(r.URL + "/console/refunds")
		moneyEval[bool](op, `(document.querySelector('#t-amount').value = "", true)`)
		op.Click("#t-amount")
		op.Do(chromedp.KeyEvent("0.01"))
		op.ClickAndLoad(`form[action="/console/refunds/threshold"] button[type=submit]`)
		if txt := op.Text("main"); !strings.Contains(txt, "Refunds above 0.01 EUR need") {
			t.Fatalf("threshold not saved: %q", txt)
		}
		before := revenue()
		mp := r.loginAs(t, manager)
		mp.Go(r.URL + "/console/sessions/" + id.String())
		mp.Click("#r-part")
		moneyEval[bool](mp, `(document.querySelector('#r-amount').value = "", true)`)
		mp.Click("#r-amount")
		mp.Do(chromedp.KeyEvent("0.02"))
		mp.Click("#r-reason")
		mp.Do(chromedp.KeyEvent("wrong product"))
		mp.ClickAndLoad(`form[action$="/refund/review"] button[type=submit]`)
		if txt := mp.Text("main"); !strings.Contains(txt, "owner to approve") {
			t.Fatalf("review above the threshold: %q", txt)
		}
		mp.ClickAndLoad("#confirm-refund")
		if txt := mp.Text("main"); !strings.Contains(txt, "waits for an owner") {
			t.Fatalf("after asking: %q", txt)
		}
		if len(refunds(id)) != 0 || revenue() != before {
			t.Fatal("a refund above the threshold moved money before approval")
		}
		aps, err := st.RefundApprovals(ctx, r.Operator, id, false)
		if err != nil || len(aps) != 1 {
			t.Fatalf("approvals = %v, %v", aps, err)
		}
		// The manager may not approve.
		mp.Go(r.URL + "/console/refunds")
		if got := post(mp, "/console/refunds/"+aps[0].ID+"/approve", map[string]string{"csrf": csrfOf(mp)}); got != http.StatusForbidden {
			t.Fatalf("manager's approve = %d, want 403", got)
		}
		op.Go(r.URL + "/console/refunds")
		op.Axe()
		op.ClickAndLoad(`form[action="/console/refunds/` + aps[0].ID + `/approve"] button`)
		if txt := op.Text("main"); !strings.Contains(txt, "approved and made") {
			t.Fatalf("after approving: %q", txt)
		}
		if rs := refunds(id); len(rs) != 1 || rs[0].Amount.Minor != 2 || revenue() != before-2 {
			t.Fatalf("after approval: refunds %+v, revenue %d → %d", rs, before, revenue())
		}
		// Approving again refunds nothing more.
		op.Go(r.URL + "/console/refunds")
		post(op, "/console/refunds/"+aps[0].ID+"/approve", map[string]string{"csrf": csrfOf(op)})
		if rs := refunds(id); len(rs) != 1 {
			t.Fatalf("a second approval refunded again: %+v", rs)
		}
		log, err := st.AuditLog(ctx, r.Operator, store.AuditFilter{Action: "refund.approved"})
		if err != nil || len(log) != 1 || log[0].Email != owner.Email {
			t.Fatalf("audit of the approval: %+v, %v", log, err)
		}
		// Back to no threshold for the other tests.
		if err := st.SetRefundThreshold(ctx, r.Operator, nil); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("settle unreported", func(t *testing.T) {
		p := r.loginAs(t, manager)
		p.Go(r.URL + "/console/sessions/" + lost.ID.String())
		moneyEval[bool](p, `(document.querySelector('#s-amount').value = "", true)`)
		p.Click("#s-amount")
		p.Do(chromedp.KeyEvent("0.03"))
		p.Click("#s-reason")
		p.Do(chromedp.KeyEvent("board lost power; payer confirmed a cup"))
		p.ClickAndLoad(`form[action$="/settle/review"] button[type=submit]`)
		if txt := p.Text("main"); !strings.Contains(txt, "charges 0.03 EUR") {
			t.Fatalf("settle review: %q", txt)
		}
		p.Axe()
		p.ClickAndLoad("#confirm-settle")
		if txt := p.Text("main"); !strings.Contains(txt, "The session was settled") {
			t.Fatalf("after settling: %q", txt)
		}
		ss, err := st.GetSession(ctx, lost.ID)
		if err != nil || ss.State != store.Settled || ss.Captured != 3 || !strings.Contains(ss.Reason, "payer confirmed a cup") {
			t.Fatalf("settled session: %+v, %v", ss, err)
		}
	})

	t.Run("revenue and exports", func(t *testing.T) {
		p := r.loginAs(t, manager)
		p.Go(r.URL + "/console/revenue")
		if n := moneyEval[int](p, `document.querySelectorAll("figure.chart svg rect").length`); n == 0 {
			t.Fatal("the revenue page draws no bars")
		}
		if txt := p.Text("main"); !strings.Contains(txt, r.Board(0).ID) {
			t.Fatalf("revenue by device does not name %s: %q", r.Board(0).ID, txt)
		}
		p.Axe()
		type file struct {
			Status     int
			Type, Disp string
			Body       string
		}
		href := moneyEval[string](p, `document.querySelector('#export-ledger').getAttribute('href')`)
		f := moneyRun(p, chromedp.Evaluate[file](fmt.Sprintf(`fetch(%q).then(async r => ({Status: r.status, Type: r.headers.get("content-type"), Disp: r.headers.get("content-disposition") || "", Body: await r.text()}))`, href), chromedp.EvalAwaitPromise))
		if f.Status != 200 || !strings.HasPrefix(f.Type, "text/csv") || !strings.Contains(f.Disp, "attachment") {
			t.Fatalf("ledger export: %d %s %s", f.Status, f.Type, f.Disp)
		}
		rows, err := csv.NewReader(strings.NewReader(f.Body)).ReadAll()
		if err != nil {
			t.Fatalf("ledger export is not CSV: %v\n%s", err, f.Body)
		}
		// The book ends at the revenue account's balance.
		last := rows[len(rows)-1]
		if rows[0][7] != "balance_after_minor" || last[7] != fmt.Sprint(revenue()) {
			t.Fatalf("account book ends at %v, revenue is %d", last, revenue())
		}
		kinds := map[string]int{}
		for _, row := range rows[1:] {
			kinds[row[2]]++
		}
		if kinds["capture"] != 4 || kinds["chan_refund"] != 3 {
			t.Fatalf("account book kinds %v, want 4 captures and 3 refunds to the card", kinds)
		}
	})
}

// Eval is browsertest.Eval, short.
func moneyEval[T any](p *browsertest.Page, expr string) T { return browsertest.Eval[T](p, expr) }

// moneyRun is browsertest.Run, short.
func moneyRun[T any](p *browsertest.Page, a chromedp.Action[T]) T { return browsertest.Run(p, a) }

// fetchStatus GETs path from the page (its cookies) and returns the status.
func fetchStatus(p *browsertest.Page, path string) int {
	p.T.Helper()
	return moneyRun(p, chromedp.Evaluate[int](fmt.Sprintf(`fetch(%q, {redirect: "manual"}).then(r => r.status)`, path), chromedp.EvalAwaitPromise))
}

// waitState waits (60 s at most) until session id is in state want.
func waitState(t *testing.T, st *store.Store, id vend.SessionID, want store.State) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ss, err := st.GetSession(context.Background(), id)
		if err == nil && ss.State == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("session %s: %s after 60 s (%v; created %s, unreported bound %s), want %s", id, ss.State, err,
				ss.Created.Format(time.StampMilli), ss.Unreported.Format(time.StampMilli), want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
