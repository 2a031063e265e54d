package httpapi_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/httpapi"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

// moneyAPI is the operator API over a real store (SQLite and PostgreSQL)
// with settled sessions, reached through the spec checker: every answer
// must match openapi.yaml.
type moneyAPI struct {
	t        *testing.T
	st       *store.Store
	url      string
	hc       *http.Client
	op       string
	sessions []vend.SessionID
}

func newMoneyAPI(t *testing.T, e *opEnv, n int) *moneyAPI {
	ctx := context.Background()
	acc, err := e.st.OperatorAccountByEmail(ctx, "ops@acme.example")
	if err != nil {
		t.Fatal(err)
	}
	for _, role := range []string{"manager", "viewer", "owner"} {
		if _, err := e.st.CreateOperatorAccountRole(ctx, acc.OperatorID, role+"@acme.example", "acme-password", role); err != nil {
			t.Fatal(err)
		}
	}
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	if err := e.st.CreateDevice(ctx, store.Device{ID: "dev-m", OperatorID: acc.OperatorID, Name: "=HYPERLINK(\"x\")", IdentityKey: [16]byte{2}, K: 5,
		SignKey: pub, MQTTHash: "x", Machines: []store.Machine{{ID: "tap1", Kind: vend.KindWater, Name: "t", Price: vend.Price{Minor: 50, Per: 1000}, Currency: "EUR"}}}); err != nil {
		t.Fatal(err)
	}
	u, err := e.st.CreateUser(ctx, "payer@example.com", "payer password")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.TopUp(ctx, u.ID, vend.Amount{Minor: 100000, Currency: "EUR"}, "sandbox_card", "t1"); err != nil {
		t.Fatal(err)
	}
	m := &moneyAPI{t: t, st: e.st, url: e.url, hc: &http.Client{Transport: newSpecChecker(t)}, op: acc.OperatorID}
	keys, _ := signed.NewKeys(pub)
	for i := 0; i < n; i++ {
		ss, err := e.st.StartSession(ctx, store.StartInput{User: u.ID, Device: "dev-m", Machine: "tap1", CapUnits: 10000, IdemKey: fmt.Sprint("s", i)})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.st.Advance(ctx, ss.ID, store.Running, e.clk.Now()); err != nil {
			t.Fatal(err)
		}
		us := signed.Usage{Device: "dev-m", Seq: uint64(i + 1), Session: ss.ID, Machine: "tap1", Unit: ss.Unit, Units: 4000, Price: ss.Price,
			Currency: "EUR", Amount: 200, StartedAt: e.clk.Now(), EndedAt: e.clk.Now().Add(time.Second), MeterEnd: 4000, Outcome: vend.OutcomeCompleted}
		raw, err := signed.SignUsage(priv, us)
		if err != nil {
			t.Fatal(err)
		}
		vu, err := signed.OpenUsage(raw, keys)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.st.Settle(ctx, vu, raw); err != nil {
			t.Fatal(err)
		}
		m.sessions = append(m.sessions, ss.ID)
		e.clk.Add(time.Minute)
	}
	return m
}

// login returns a bearer token of role's account.
func (m *moneyAPI) login(role string) string {
	m.t.Helper()
	email := role + "@acme.example"
	if role == "" {
		email = "ops@acme.example"
	}
	var tok httpapi.OperatorToken
	if code, body := m.do("POST", "/v1/operator/auth/login", "", "", map[string]string{"email": email, "password": "acme-password"}, &tok); code != 200 {
		m.t.Fatalf("log-in %s = %d %s", email, code, body)
	}
	return tok.Token
}

// do sends a JSON request and decodes a 2xx answer into out; it returns
// the status and the body.
func (m *moneyAPI) do(method, path, tok, key string, in, out any) (int, string) {
	m.t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	r, _ := http.NewRequest(method, m.url+path, body)
	if in != nil {
		r.Header.Set("Content-Type", "application/json")
	}
	if tok != "" {
		r.Header.Set("Authorization", "Bearer "+tok)
	}
	if key != "" {
		r.Header.Set("Idempotency-Key", key)
	}
	resp, err := m.hc.Do(r)
	if err != nil {
		m.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(b, out); err != nil {
			m.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return resp.StatusCode, string(b)
}

func eurJSON(minor int64) map[string]any { return map[string]any{"minor": minor, "currency": "EUR"} }

func TestOperatorMoneyAPI(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *opEnv) {
		m := newMoneyAPI(t, e, 5)
		mgr, viewer, owner := m.login("manager"), m.login("viewer"), m.login("owner")

		// Pages of 2 walk all 5 sessions once, newest first.
		seen, cursor, pages := map[string]bool{}, "", 0
		for {
			var p httpapi.OperatorSessionPage
			q := "/v1/operator/sessions?device=dev-m&limit=2"
			if cursor != "" {
				q += "&cursor=" + cursor
			}
			if code, body := m.do("GET", q, viewer, "", nil, &p); code != 200 {
				t.Fatalf("search = %d %s", code, body)
			}
			pages++
			for _, s := range p.Sessions {
				if seen[s.ID.String()] {
					t.Fatalf("session %s on two pages", s.ID)
				}
				seen[s.ID.String()] = true
			}
			if cursor = p.NextCursor; cursor == "" {
				break
			}
		}
		if len(seen) != 5 || pages != 3 {
			t.Fatalf("walked %d sessions in %d pages, want 5 in 3", len(seen), pages)
		}
		var p httpapi.OperatorSessionPage
		m.do("GET", "/v1/operator/sessions?payer=R-"+m.sessions[2].String(), viewer, "", nil, &p)
		if len(p.Sessions) != 1 || p.Sessions[0].ID != m.sessions[2] {
			t.Fatalf("payer search = %+v", p.Sessions)
		}
		if code, body := m.do("GET", "/v1/operator/sessions?cursor=%21%21", viewer, "", nil, nil); code != 400 || !strings.Contains(body, "request.cursor") {
			t.Fatalf("bad cursor = %d %s", code, body)
		}

		// The session page: grant absent (made in the store), report checked.
		var d httpapi.OperatorSessionDetail
		if code, body := m.do("GET", "/v1/operator/sessions/"+m.sessions[0].String(), viewer, "", nil, &d); code != 200 {
			t.Fatalf("detail = %d %s", code, body)
		}
		if d.Report == nil || d.Report.Units != 4000 || d.ReceiptNumber != "R-"+m.sessions[0].String() || d.Refundable.Minor != 200 {
			t.Fatalf("detail = %+v", d)
		}

		// A viewer may not refund; a manager may, once per key.
		id := m.sessions[0].String()
		refund := map[string]any{"amount": eurJSON(150), "reason": "leak"}
		if code, body := m.do("POST", "/v1/operator/sessions/"+id+"/refund", viewer, "k-viewer-1", refund, nil); code != 403 || !strings.Contains(body, "auth.forbidden") {
			t.Fatalf("viewer's refund = %d %s", code, body)
		}
		var rv httpapi.OperatorRefundReview
		if code, body := m.do("POST", "/v1/operator/sessions/"+id+"/refund/review", mgr, "", map[string]any{"amount": eurJSON(150)}, &rv); code != 200 || rv.Wallet.Minor != 150 || rv.NeedsApproval {
			t.Fatalf("review = %d %s", code, body)
		}
		for i := 0; i < 2; i++ {
			var sr service.SessionRefund
			if code, body := m.do("POST", "/v1/operator/sessions/"+id+"/refund", mgr, "k-refund-1", refund, &sr); code != 201 || sr.Wallet.Minor != 150 {
				t.Fatalf("refund %d = %d %s", i, code, body)
			}
		}
		if rs, _ := m.st.SessionRefunds(context.Background(), m.sessions[0]); len(rs) != 1 {
			t.Fatalf("refunds after a retry = %d, want 1", len(rs))
		}

		// Above the threshold: 202 and an approval; the manager cannot approve.
		var th httpapi.OperatorRefundThreshold
		if code, body := m.do("PUT", "/v1/operator/refund-threshold", mgr, "", map[string]any{"threshold": eurJSON(100)}, nil); code != 403 {
			t.Fatalf("manager's threshold = %d %s", code, body)
		}
		if code, body := m.do("PUT", "/v1/operator/refund-threshold", owner, "", map[string]any{"threshold": eurJSON(100)}, &th); code != 200 || th.Threshold.Minor != 100 {
			t.Fatalf("owner's threshold = %d %s", code, body)
		}
		var ap httpapi.OperatorApproval
		id1 := m.sessions[1].String()
		if code, body := m.do("POST", "/v1/operator/sessions/"+id1+"/refund", mgr, "k-refund-2", map[string]any{"amount": eurJSON(200), "reason": "broken"}, &ap); code != 202 || ap.State != "pending" {
			t.Fatalf("refund above the threshold = %d %s", code, body)
		}
		if code, _ := m.do("POST", "/v1/operator/refund-approvals/"+ap.ID+"/approve", mgr, "", map[string]any{}, nil); code != 403 {
			t.Fatalf("manager's approve = %d", code)
		}
		var list httpapi.OperatorApprovalList
		m.do("GET", "/v1/operator/refund-approvals", viewer, "", nil, &list)
		if len(list.Approvals) != 1 {
			t.Fatalf("open approvals = %+v", list)
		}
		if code, body := m.do("POST", "/v1/operator/refund-approvals/"+ap.ID+"/approve", owner, "", map[string]any{"note": "ok"}, &ap); code != 200 || ap.State != "approved" || ap.Refund == "" {
			t.Fatalf("owner's approve = %d %s", code, body)
		}
		if code, body := m.do("POST", "/v1/operator/refund-approvals/"+ap.ID+"/reject", owner, "", map[string]any{"note": "no"}, nil); code != 409 || !strings.Contains(body, "refund.approval_state") {
			t.Fatalf("reject after approve = %d %s", code, body)
		}

		// Revenue by device and the account book as CSV (a viewer may not export).
		var rep httpapi.OperatorRevenueReport
		if code, body := m.do("GET", "/v1/operator/revenue/device?from=2026-02-28&to=2026-03-02", viewer, "", nil, &rep); code != 200 || len(rep.Lines) != 1 ||
			rep.Lines[0].Gross.Minor != 1000 || rep.Lines[0].Net.Minor != 650 {
			t.Fatalf("revenue by device = %d %s", code, body)
		}
		if code, _ := m.do("GET", "/v1/operator/exports/ledger?from=2026-02-28&to=2026-03-02", viewer, "", nil, nil); code != 403 {
			t.Fatalf("viewer's export = %d", code)
		}
		code, body := m.do("GET", "/v1/operator/exports/ledger?from=2026-02-28&to=2026-03-02", mgr, "", nil, nil)
		rows, err := csv.NewReader(strings.NewReader(body)).ReadAll()
		if code != 200 || err != nil || len(rows) != 8 || rows[7][8] != "6.50" || rows[7][7] != "650" {
			t.Fatalf("account book = %d %v %q", code, err, rows)
		}
		code, body = m.do("GET", "/v1/operator/exports/sessions?from=2026-02-28&to=2026-03-02", mgr, "", nil, nil)
		if code != 200 || strings.Count(body, "\n") != 6 {
			t.Fatalf("sessions export = %d %s", code, body)
		}
		if code, _ := m.do("GET", "/v1/operator/exports/everything", mgr, "", nil, nil); code != 400 {
			t.Fatalf("unknown export = %d", code)
		}
		_ = phoneapi.ErrorResponse{}
	})
}
