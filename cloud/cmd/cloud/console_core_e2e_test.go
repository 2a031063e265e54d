package main

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"beaconvend/cloud/internal/browsertest"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

// TestConsoleCoreInChromium runs the console's log-in, sessions, roles,
// forgery protection, users page and audit log in Chromium against the
// in-process cloud, on SQLite and on PostgreSQL.
func TestConsoleCoreInChromium(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { consoleCore(t, "") })
	t.Run("postgres", func(t *testing.T) {
		if testing.Short() {
			t.Skip("not with -short")
		}
		consoleCore(t, consolePG(t))
	})
}

// csrfOf is the anti-forgery token the page's layout holds (for htmx).
func csrfOf(p *browsertest.Page) string {
	return browsertest.Eval[string](p, `JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRF-Token"] || ""`)
}

// post sends a form POST from the page (its cookies, this origin) with
// fields, as a forged or hand-made request would, and returns the status.
func post(p *browsertest.Page, path string, fields map[string]string) int {
	p.T.Helper()
	var b strings.Builder
	for k, v := range fields {
		fmt.Fprintf(&b, "%q: %q,", k, v)
	}
	js := fmt.Sprintf(`fetch(%q, {method: "POST", redirect: "manual", body: new URLSearchParams({%s})}).then(r => r.status)`, path, b.String())
	return browsertest.Run(p, chromedp.Evaluate[int](js, chromedp.EvalAwaitPromise))
}

func consoleCore(t *testing.T, dsn string) {
	r := newConsoleRig(t, consoleRigOpts{DSN: dsn})
	ctx := context.Background()
	st := r.Store()
	owner := r.Accounts[service.RoleOwner]

	t.Run("log-in", func(t *testing.T) {
		p := r.B.Page(t, browsertest.Desktop)
		p.Go(r.URL + "/console/users")
		if !strings.Contains(p.URL(), "/console/login?next=") {
			t.Fatalf("a page without a session went to %s, want the log-in page", p.URL())
		}
		p.Axe()
		r.submitLogin(p, owner.Email, "not the password")
		if msg := p.Text("#login-error"); msg != "Wrong email or password." {
			t.Errorf("wrong password shows %q", msg)
		}
		if v := browsertest.Eval[string](p, `document.getElementById("email").value`); v != owner.Email {
			t.Errorf("the form forgot the email: %q", v)
		}
		p.Axe()
		r.submitLogin(p, "nobody@console-rig.example", owner.Password)
		if msg := p.Text("#login-error"); msg != "Wrong email or password." {
			t.Errorf("an unknown email shows %q, want the same as a wrong password", msg)
		}
		// The right password, after a redirect to the page first asked
		// for: the log-in keeps where the operator was going.
		// By keyboard alone: type, Tab to the password (its focus
		// visible), Enter submits.
		p.Go(r.URL + "/console/users")
		p.Click("#email")
		p.Do(chromedp.KeyEvent(owner.Email + "\t"))
		if id := browsertest.Eval[string](p, `document.activeElement.id`); id != "password" {
			t.Fatalf("Tab from the email went to %q, want the password", id)
		}
		if o := browsertest.Eval[string](p, `getComputedStyle(document.activeElement).outlineStyle`); o == "none" || o == "" {
			t.Errorf("the focused password field shows no outline (%q)", o)
		}
		browsertest.Eval[bool](p, `window.__beforeSubmit = true`)
		p.Do(chromedp.KeyEvent(owner.Password + "\r"))
		p.Wait(`!window.__beforeSubmit && document.readyState === "complete"`)
		if !strings.HasSuffix(p.URL(), "/console/users") {
			t.Fatalf("after log-in at %s, want /console/users", p.URL())
		}
		c := sessionCookie(p)
		if c == nil || !c.HTTPOnly || c.SameSite != network.CookieSameSiteStrict || c.Path != "/console/" || c.Secure {
			t.Errorf("session cookie = %+v, want HttpOnly, SameSite=Strict, Path=/console/, not Secure over plain HTTP", c)
		}
		// Every console answer carries the strict policy; the scripts are
		// this origin's.
		for _, path := range []string{"/console/login", "/console/static/htmx.min.js", "/console/static/console.css"} {
			res, err := http.Get(r.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if csp := res.Header.Get("Content-Security-Policy"); res.StatusCode != 200 || !strings.HasPrefix(csp, "default-src 'self';") {
				t.Errorf("%s: %d, policy %q", path, res.StatusCode, csp)
			}
		}
		if n := browsertest.Eval[int](p, `document.querySelectorAll("script:not([src]), style, [style]").length`); n != 0 {
			t.Errorf("the page has %d inline scripts or styles", n)
		}
		if ok := browsertest.Eval[bool](p, `typeof htmx === "object" && htmx.version.startsWith("2.0.")`); !ok {
			t.Errorf("htmx 2.0 is not loaded")
		}
		// The page's scripts cannot read the session.
		if s := browsertest.Eval[string](p, `document.cookie`); strings.Contains(s, "bv_console") {
			t.Errorf("document.cookie shows the session: %q", s)
		}
	})

	t.Run("throttle", func(t *testing.T) {
		a := r.addAccount(r.Operator, "throttled@console-rig.example", service.RoleViewer)
		p := r.B.Page(t, browsertest.Desktop)
		var msg string
		for i := range 12 {
			r.submitLogin(p, a.Email, fmt.Sprintf("wrong %d", i))
			if msg = p.Text("#login-error"); strings.HasPrefix(msg, "Too many log-in attempts") {
				break
			}
			if msg != "Wrong email or password." {
				t.Fatalf("attempt %d: %q", i, msg)
			}
		}
		if !strings.HasPrefix(msg, "Too many log-in attempts") || !strings.Contains(msg, "again in") {
			t.Fatalf("after repeated wrong passwords: %q, want the throttle's message with a wait", msg)
		}
		// Refused before the password is checked: the right one is
		// refused too, and no session is made.
		r.submitLogin(p, a.Email, a.Password)
		if msg := p.Text("#login-error"); !strings.HasPrefix(msg, "Too many log-in attempts") {
			t.Errorf("the right password while throttled: %q", msg)
		}
		if c := sessionCookie(p); c != nil {
			t.Errorf("a throttled log-in set a session cookie")
		}
		p.Axe()
	})

	t.Run("log-out revokes", func(t *testing.T) {
		p := r.login(t, service.RoleOwner)
		old := sessionCookie(p)
		if old == nil {
			t.Fatal("no session cookie after log-in")
		}
		hc := r.httpClient(t, old.Value)
		res, err := hc.Get(r.URL + "/console/users")
		if err != nil || res.StatusCode != http.StatusOK {
			t.Fatalf("the session cookie before log-out: %v %v", res.StatusCode, err)
		}
		res.Body.Close()
		p.Go(r.URL + "/console/users")
		p.ClickAndLoad("form.who button[type=submit]")
		if !strings.Contains(p.URL(), "/console/login") {
			t.Errorf("log-out led to %s", p.URL())
		}
		if c := sessionCookie(p); c != nil {
			t.Errorf("the cookie stayed after log-out: %+v", c)
		}
		// The old cookie, replayed (copied before the log-out), is
		// refused: the session ended in the store, not only in the tab.
		res, err = hc.Get(r.URL + "/console/users")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusSeeOther || !strings.Contains(res.Header.Get("Location"), "/console/login") {
			t.Errorf("the logged-out cookie: %d → %q, want a redirect to the log-in page", res.StatusCode, res.Header.Get("Location"))
		}
		res, err = hc.PostForm(r.URL+"/console/users/"+r.Accounts[service.RoleViewer].Account+"/role", map[string][]string{"role": {"owner"}, "confirm": {"yes"}})
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusUnauthorized {
			t.Errorf("a POST with the logged-out cookie: %d, want 401", res.StatusCode)
		}
	})

	t.Run("roles", func(t *testing.T) {
		viewer := r.login(t, service.RoleViewer)
		if n := browsertest.Eval[int](viewer, `document.querySelectorAll('nav a[href="/console/users"], nav a[href="/console/audit"]').length`); n != 0 {
			t.Errorf("a viewer's navigation links to users or the audit log (%d links)", n)
		}
		viewer.Go(r.URL + "/console/users")
		if h := viewer.Text("h1"); h != "Not allowed" {
			t.Errorf("a viewer on the users page sees %q", h)
		}
		if txt := viewer.Text("main"); !strings.Contains(txt, "users needs the owner role") {
			t.Errorf("the refusal does not name the permission: %q", txt)
		}
		viewer.Axe()
		// A hand-made POST with the viewer's own valid token: refused by
		// role, not by forgery protection, and nothing changes.
		tech := r.Accounts[service.RoleTechnician]
		if s := post(viewer, "/console/users/"+tech.Account+"/role", map[string]string{"role": "owner", "confirm": "yes", "csrf": csrfOf(viewer)}); s != http.StatusForbidden {
			t.Errorf("a viewer's role change: %d, want 403", s)
		}
		if a, _ := st.OperatorAccountByID(ctx, r.Operator, tech.Account); a.Role != string(service.RoleTechnician) {
			t.Errorf("a refused role change made %s %s", a.Email, a.Role)
		}
		for _, path := range []string{"/console/audit", "/console/audit.csv"} {
			viewer.Go(r.URL + path)
			if h := viewer.Text("h1"); h != "Not allowed" {
				t.Errorf("a viewer at %s sees %q", path, h)
			}
		}

		// A technician may not change a price, however the request is
		// made: the JSON operator API with its own valid token is 403
		// auth.forbidden, checked in the service the console shares.
		dev := r.Board(0)
		path := "/v1/operator/devices/" + dev.ID + "/machines/" + dev.Machine + "/price"
		price := map[string]any{"price": map[string]any{"minor": 77, "per": 1000}}
		status, body := r.api(t, "PUT", path, r.apiToken(t, tech), price, nil)
		if status != http.StatusForbidden || !strings.Contains(body, `"auth.forbidden"`) || !strings.Contains(body, "price needs the manager role") {
			t.Errorf("a technician's price change: %d %s, want 403 auth.forbidden naming the permission", status, body)
		}
		d, err := st.OperatorDevice(ctx, r.Operator, dev.ID)
		if err != nil || d.Machines[0].Price.Minor == 77 {
			t.Errorf("a refused price change was made: %+v %v", d.Machines, err)
		}
		// A manager may; the change is audited as the manager's.
		mgr := r.Accounts[service.RoleManager]
		if status, body := r.api(t, "PUT", path, r.apiToken(t, mgr), price, nil); status != http.StatusOK {
			t.Fatalf("a manager's price change: %d %s", status, body)
		}
		es, err := st.AuditLog(ctx, r.Operator, store.AuditFilter{Action: "price.set"})
		if err != nil || len(es) != 1 || es[0].Email != mgr.Email || es[0].Role != "manager" || es[0].Target != dev.ID+"/"+dev.Machine ||
			!strings.Contains(string(es[0].After), `"minor":77`) || strings.Contains(string(es[0].Before), `"minor":77`) {
			t.Errorf("audit of the price change = %+v, %v", es, err)
		}
	})

	t.Run("csrf", func(t *testing.T) {
		p := r.login(t, service.RoleOwner)
		viewer := r.Accounts[service.RoleViewer]
		sel := fmt.Sprintf(`form[action="/console/users/%s/role"]`, viewer.Account)
		for _, c := range []struct{ name, js string }{
			{"without a token", `document.querySelector('` + sel + ` input[name=csrf]').remove()`},
			{"with another token", `document.querySelector('` + sel + ` input[name=csrf]').value = "AAAA` + strings.Repeat("x", 39) + `"`},
		} {
			p.Go(r.URL + "/console/users")
			browsertest.Eval[any](p, c.js)
			browsertest.Eval[any](p, `document.querySelector('`+sel+` select').value = "owner"`)
			p.ClickAndLoad(sel + ` button[type=submit]`)
			if h := p.Text("h1"); h != "Form expired" {
				t.Errorf("a role change %s: %q, want the forgery page", c.name, h)
			}
			if a, _ := st.OperatorAccountByID(ctx, r.Operator, viewer.Account); a.Role != "viewer" {
				t.Fatalf("a role change %s was made: %s", c.name, a.Role)
			}
		}
		p.Axe()
		// A token is bound to its session: another log-in's token (of
		// the same account) is refused.
		other := r.login(t, service.RoleOwner)
		other.Go(r.URL + "/console/users")
		if s := post(other, "/console/users/"+viewer.Account+"/role", map[string]string{"role": "owner", "confirm": "yes", "csrf": csrfOf(p)}); s != http.StatusForbidden {
			t.Errorf("another session's token: %d, want 403", s)
		}
		// With its own token the same request goes through (to the
		// confirm step's redirect), so the refusals above were the
		// token's.
		if s := post(other, "/console/users/"+viewer.Account+"/role", map[string]string{"role": "technician", "confirm": "yes", "csrf": csrfOf(other)}); s != 0 && s != http.StatusSeeOther {
			t.Errorf("the session's own token: %d, want a redirect", s) // fetch's manual redirect reports 0
		}
		if a, _ := st.OperatorAccountByID(ctx, r.Operator, viewer.Account); a.Role != "technician" {
			t.Errorf("the role change with the right token was not made: %s", a.Role)
		}
		r.cli("operator", "role", "-email", viewer.Email, "-role", "viewer")
	})

	t.Run("users", func(t *testing.T) {
		p := r.login(t, service.RoleOwner)
		p.Go(r.URL + "/console/users")
		p.Axe()
		p.Click("#new-email")
		p.Do(chromedp.KeyEvent("newhire@console-rig.example"))
		browsertest.Eval[any](p, `document.getElementById("new-role").value = "technician"`)
		p.ClickAndLoad(`form[action="/console/users"] button[type=submit]`)
		pw := p.Text("code.secret")
		if len(pw) < 16 {
			t.Fatalf("the made password shown once is %q", pw)
		}
		p.Axe()
		hire := rigAccount{Email: "newhire@console-rig.example", Password: pw, Operator: r.Operator, Role: service.RoleTechnician}
		a, err := st.OperatorAccountByEmail(ctx, hire.Email)
		if err != nil || a.Role != "technician" || a.OperatorID != r.Operator {
			t.Fatalf("the added account = %+v, %v", a, err)
		}
		hire.Account = a.ID
		hp := r.loginAs(t, hire)

		// Change its role: a confirm step first, which changes nothing.
		p.Go(r.URL + "/console/users")
		sel := fmt.Sprintf(`form[action="/console/users/%s/role"]`, a.ID)
		browsertest.Eval[any](p, `document.querySelector('`+sel+` select').value = "manager"`)
		p.ClickAndLoad(sel + ` button[type=submit]`)
		if q := p.Text("#question"); !strings.Contains(q, "from technician to manager") {
			t.Errorf("the confirm step asks %q", q)
		}
		p.Axe()
		if a, _ := st.OperatorAccountByID(ctx, r.Operator, a.ID); a.Role != "technician" {
			t.Fatalf("the confirm step changed the role to %s", a.Role)
		}
		p.ClickAndLoad(`form input[name=confirm] ~ p button[type=submit]`)
		if n := p.Text(".ok"); !strings.Contains(n, "Role changed for "+hire.Email) {
			t.Errorf("after the change: %q", n)
		}
		if a, _ := st.OperatorAccountByID(ctx, r.Operator, a.ID); a.Role != "manager" {
			t.Fatalf("role after confirm = %s", a.Role)
		}
		// Disable it (confirmed): its open session ends at once.
		p.ClickAndLoad(fmt.Sprintf(`form[action="/console/users/%s/disable"] button`, a.ID))
		p.ClickAndLoad(`form input[name=confirm] ~ p button[type=submit]`)
		if n := p.Text(".ok"); !strings.Contains(n, "is disabled") {
			t.Errorf("after disabling: %q", n)
		}
		hp.Go(r.URL + "/console/password")
		if !strings.Contains(hp.URL(), "/console/login") {
			t.Errorf("the disabled account's open tab still works: %s", hp.URL())
		}
		r.submitLogin(hp, hire.Email, hire.Password)
		if msg := hp.Text("#login-error"); !strings.Contains(msg, "disabled") {
			t.Errorf("a disabled account's log-in: %q", msg)
		}
		// The last enabled owner cannot be demoted: first the other
		// owners (the rig's first account among them) become viewers.
		as, err := st.OperatorAccounts(ctx, r.Operator)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range as {
			if x.Role == "owner" && x.ID != owner.Account {
				r.cli("operator", "role", "-email", x.Email, "-role", "viewer")
			}
		}
		p.Go(r.URL + "/console/users")
		sel = fmt.Sprintf(`form[action="/console/users/%s/role"]`, owner.Account)
		browsertest.Eval[any](p, `document.querySelector('`+sel+` select').value = "viewer"`)
		p.ClickAndLoad(sel + ` button[type=submit]`)
		p.ClickAndLoad(`form input[name=confirm] ~ p button[type=submit]`)
		if txt := p.Text("main"); !strings.Contains(txt, "at least one enabled owner") {
			t.Errorf("demoting the last owner: %q", txt)
		}
	})

	t.Run("audit", func(t *testing.T) {
		p := r.login(t, service.RoleOwner)
		p.Go(r.URL + "/console/audit")
		p.Axe()
		txt := p.Text("table")
		for _, want := range []string{"price.set", "account.add", "account.role", "account.disable", "newhire@console-rig.example", r.Accounts[service.RoleManager].Email} {
			if !strings.Contains(txt, want) {
				t.Errorf("the audit page lacks %q", want)
			}
		}
		// Filter by a kind of action.
		p.Click("#f-action")
		p.Do(chromedp.KeyEvent("account."))
		p.ClickAndLoad(`form.filters button[type=submit]`)
		actions := browsertest.Eval[[]string](p, `[...document.querySelectorAll("tbody th")].map(e => e.textContent)`)
		if len(actions) == 0 {
			t.Fatal("no entries for account.")
		}
		for _, a := range actions {
			if !strings.HasPrefix(a, "account.") {
				t.Errorf("filter account. shows %q", a)
			}
		}
		// The export link of the filtered page, fetched with the owner's
		// session: the same entries as CSV.
		href := browsertest.Eval[string](p, `document.querySelector('a[download]').href`)
		if !strings.Contains(href, "/console/audit.csv?action=account.") {
			t.Errorf("export link %q does not keep the filter", href)
		}
		res, err := r.httpClient(t, sessionCookie(p).Value).Get(href)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if ct := res.Header.Get("Content-Type"); res.StatusCode != http.StatusOK || !strings.HasPrefix(ct, "text/csv") {
			b, _ := io.ReadAll(res.Body)
			t.Fatalf("export: %d %s %s", res.StatusCode, ct, b)
		}
		rows, err := csv.NewReader(res.Body).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != len(actions)+1 || strings.Join(rows[0], ",") != "id,at,operator,account,email,role,action,target,before,after,ip" {
			t.Fatalf("export has %d rows (header %v), the page %d entries", len(rows), rows[0], len(actions))
		}
		for _, row := range rows[1:] {
			if !strings.HasPrefix(row[6], "account.") || row[2] != r.Operator {
				t.Errorf("export row %v", row)
			}
		}
		// Paged newest first, 50 a page, the filter kept across pages.
		for i := range 60 {
			if _, err := st.AppendAudit(ctx, store.AuditEntry{Operator: r.Operator, Email: "cli", Action: "test.page", Target: fmt.Sprintf("n%02d", i)}); err != nil {
				t.Fatal(err)
			}
		}
		p.Go(r.URL + "/console/audit?action=test.page")
		targets := func() []string {
			return browsertest.Eval[[]string](p, `[...document.querySelectorAll("tbody tr td:nth-child(4)")].map(e => e.textContent)`)
		}
		if ts := targets(); len(ts) != 50 || ts[0] != "n59" || ts[49] != "n10" {
			t.Fatalf("first page: %d entries %v…", len(ts), ts[:min(len(ts), 3)])
		}
		p.ClickAndLoad(`nav.pager a:last-child`)
		if ts := targets(); len(ts) != 10 || ts[0] != "n09" || ts[9] != "n00" {
			t.Fatalf("older page: %v", ts)
		}
		if n := browsertest.Eval[int](p, `[...document.querySelectorAll("nav.pager a")].filter(a => a.textContent === "Older").length`); n != 0 {
			t.Errorf("the last page links to an older one")
		}
		p.ClickAndLoad(`nav.pager a`)
		if ts := targets(); len(ts) != 50 || ts[0] != "n59" {
			t.Errorf("Newest: %d entries", len(ts))
		}
		p.Axe()
		// A viewer's session cannot export.
		vp := r.login(t, service.RoleViewer)
		res, err = r.httpClient(t, sessionCookie(vp).Value).Get(r.URL + "/console/audit.csv")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusForbidden {
			t.Errorf("a viewer's export: %d, want 403", res.StatusCode)
		}
	})

	t.Run("isolation", func(t *testing.T) {
		p := r.loginAs(t, r.Other)
		p.Go(r.URL + "/console/users")
		if txt := p.Text("table"); strings.Contains(txt, "console-rig.example") {
			t.Errorf("another operator's owner sees the rig's accounts: %q", txt)
		}
		p.Go(r.URL + "/console/audit")
		if txt := p.Text("main"); strings.Contains(txt, "console-rig.example") {
			t.Errorf("another operator's owner sees the rig's audit log")
		}
		tech := r.Accounts[service.RoleTechnician]
		if s := post(p, "/console/users/"+tech.Account+"/disable", map[string]string{"confirm": "yes", "csrf": csrfOf(p)}); s != http.StatusNotFound {
			t.Errorf("another operator's owner disabling a rig account: %d, want 404", s)
		}
		if a, _ := st.OperatorAccountByID(ctx, r.Operator, tech.Account); a.Disabled {
			t.Error("another operator's owner disabled a rig account")
		}
	})
}
