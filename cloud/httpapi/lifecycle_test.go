package httpapi_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/proxid"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/httpapi"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

// A start the machine does not answer is 503 device.no_reply WITH the
// pending session (money held), so the phone can wait for it or cancel
// it; a start at a price the phone was not shown is 409 price.changed
// with the new price; operators list, settle and void unreported
// sessions.
func TestStartTruthAndUnreportedAPI(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	clk := func() time.Time { return now }
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "c.db"), &store.Opts{BcryptCost: 4, Now: func() time.Time { return clk() }})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	op, _ := st.CreateOperator(ctx, "op")
	if _, err := st.CreateOperatorAccount(ctx, op.ID, "op@example.com", "operator-password"); err != nil {
		t.Fatal(err)
	}
	var key proxid.Key
	rand.Read(key[:])
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	if err := st.CreateDevice(ctx, store.Device{ID: "wd-1", OperatorID: op.ID, Name: "w", IdentityKey: key, K: 5, SignKey: pub, MQTTHash: "x",
		Machines: []store.Machine{{ID: "tap1", Kind: vend.KindWater, Name: "t", Price: vend.Price{Minor: 50, Per: 1000}, Currency: "EUR"}}}); err != nil {
		t.Fatal(err)
	}
	if err := st.SetDeviceStatus(ctx, "wd-1", true, nil, now); err != nil {
		t.Fatal(err)
	}
	_, ck, _ := ed25519.GenerateKey(rand.Reader)
	svc, err := service.New(ctx, service.Options{Store: st, Publisher: nopPublisher{}, CloudKey: ck, ReplyTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	api, err := httpapi.New(httpapi.Options{Service: svc})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	defer srv.Close()
	c := phoneapi.New(srv.URL, &phoneapi.Opts{HTTPClient: &http.Client{Transport: newSpecChecker(t)}})
	u, err := c.SignUp(ctx, &phoneapi.SignUpRequest{Email: "a@example.com", Password: "password-123"})
	if err != nil {
		t.Fatal(err)
	}
	_ = u
	if _, err := c.TopUp(ctx, phoneapi.NewIdempotencyKey(), &phoneapi.TopUpRequest{Amount: vend.Amount{Minor: 1000, Currency: "EUR"}, Source: "card_sandbox"}); err != nil {
		t.Fatal(err)
	}
	req := func(p vend.Price) *phoneapi.StartSessionRequest {
		return &phoneapi.StartSessionRequest{Device: "wd-1", Machine: "tap1", Cap: phoneapi.Cap{Amount: &vend.Amount{Minor: 100, Currency: "EUR"}},
			Source: "wallet", ExpectedPrice: &p, ProximityID: phoneapi.ProximityID(proxid.Compute(key, proxid.Counter(time.Now()), 5).String())}
	}
	_, err = c.StartSession(ctx, phoneapi.NewIdempotencyKey(), req(vend.Price{Minor: 40, Per: 1000}))
	var ae *phoneapi.APIError
	if !errors.As(err, &ae) || ae.Status != 409 || ae.Code != "price.changed" || ae.Price == nil || *ae.Price != (vend.Price{Minor: 50, Per: 1000}) {
		t.Fatalf("start at a price not shown = %v (price %v), want 409 price.changed with 50/1000", err, ae.Price)
	}
	_, err = c.StartSession(ctx, phoneapi.NewIdempotencyKey(), req(vend.Price{Minor: 50, Per: 1000}))
	if !errors.As(err, &ae) || ae.Status != 503 || ae.Code != "device.no_reply" || ae.Session == nil ||
		ae.Session.State != phoneapi.StatePending || ae.Session.Hold.Minor != 100 {
		t.Fatalf("start without a reply = %v, session %+v; want 503 device.no_reply with the pending session holding 100", err, ae.Session)
	}
	sid := ae.Session.ID
	got, err := c.GetSession(ctx, sid)
	if err != nil || got.State != phoneapi.StatePending {
		t.Fatalf("GetSession = %v, %v", got, err)
	}

	// The board acknowledged (an authorized event), then went silent for
	// good: after the longest run and the allowance the session is
	// unreported, listed for the operator, who voids it with a reason.
	if err := st.Advance(ctx, sid, store.Authorized, now); err != nil {
		t.Fatal(err)
	}
	now = now.Add(24 * time.Hour)
	if _, err := svc.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	call := func(method, path, tok, body string, out any) int {
		t.Helper()
		r, _ := http.NewRequest(method, srv.URL+path, bytes.NewBufferString(body))
		if tok != "" {
			r.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := (&http.Client{Transport: newSpecChecker(t)}).Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if out != nil {
			if err := json.Unmarshal(b, out); err != nil {
				t.Fatalf("%s %s: %s", method, path, b)
			}
		}
		return resp.StatusCode
	}
	var tok httpapi.OperatorToken
	if code := call("POST", "/v1/operator/auth/login", "", `{"email":"op@example.com","password":"operator-password"}`, &tok); code != 200 {
		t.Fatalf("operator login %d", code)
	}
	var list struct{ Sessions []httpapi.OperatorSession }
	if code := call("GET", "/v1/operator/sessions/unreported", tok.Token, "", &list); code != 200 || len(list.Sessions) != 1 ||
		list.Sessions[0].ID != sid || list.Sessions[0].State != "unreported" || list.Sessions[0].SettleBy.IsZero() {
		t.Fatalf("unreported list = %d %+v", code, list)
	}
	var e phoneapi.ErrorResponse
	if code := call("POST", "/v1/operator/sessions/"+sid.String()+"/settle", tok.Token, `{"amount":{"minor":101,"currency":"EUR"},"reason":"x"}`, &e); code != 400 || e.Error.Code != "request.field" && e.Error.Code != "money.amount" {
		t.Fatalf("settle above the hold = %d %+v", code, e)
	}
	var os httpapi.OperatorSession
	if code := call("POST", "/v1/operator/sessions/"+sid.String()+"/void", tok.Token, `{"reason":"board replaced"}`, &os); code != 200 ||
		os.State != "voided" || os.Reason != "operator.voided: board replaced" {
		t.Fatalf("void = %d %+v", code, os)
	}
	if w, _ := c.GetWallet(ctx); w.Available.Minor != 1000 || w.Held.Minor != 0 {
		t.Fatalf("wallet after void %+v", w)
	}
	// The void is in the operator's audit log, as the account's, with
	// the state before and after; the refused settle is not.
	es, err := st.AuditLog(ctx, tok.Operator, store.AuditFilter{Action: "session."})
	if err != nil || len(es) != 1 || es[0].Action != "session.void" || es[0].Target != sid.String() || es[0].Account != tok.Account ||
		!strings.Contains(string(es[0].Before), `"state":"unreported"`) || !strings.Contains(string(es[0].After), `"reason":"board replaced"`) {
		t.Fatalf("audit of the void = %+v, %v", es, err)
	}

	// Another session goes silent the same way; the operator settles it
	// by hand for what the customer says was poured: 60 of the 100 held
	// are captured, 40 go back to the wallet, a retry is refused.
	_, err = c.StartSession(ctx, phoneapi.NewIdempotencyKey(), req(vend.Price{Minor: 50, Per: 1000}))
	if !errors.As(err, &ae) || ae.Code != "device.no_reply" || ae.Session == nil {
		t.Fatalf("second start = %v", err)
	}
	sid2 := ae.Session.ID
	if err := st.Advance(ctx, sid2, store.Authorized, now); err != nil {
		t.Fatal(err)
	}
	now = now.Add(24 * time.Hour)
	if _, err := svc.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if code := call("POST", "/v1/operator/auth/login", "", `{"email":"op@example.com","password":"operator-password"}`, &tok); code != 200 {
		t.Fatalf("operator login a day later %d", code) // the first session ended with the day
	}
	settle := `{"amount":{"minor":60,"currency":"EUR"},"reason":"customer confirmed 1.2 l"}`
	if code := call("POST", "/v1/operator/sessions/"+sid2.String()+"/settle", tok.Token, settle, &os); code != 200 || os.ID != sid2 ||
		os.State != "settled" || os.Captured != (vend.Amount{Minor: 60, Currency: "EUR"}) || os.Reason != "operator.settled: customer confirmed 1.2 l" {
		t.Fatalf("settle = %d %+v", code, os)
	}
	if code := call("POST", "/v1/operator/sessions/"+sid2.String()+"/settle", tok.Token, settle, &e); code != 409 || e.Error.Code != "session.state" {
		t.Fatalf("second settle = %d %+v, want 409 session.state", code, e)
	}
	if w, _ := c.GetWallet(ctx); w.Available.Minor != 940 || w.Held.Minor != 0 {
		t.Fatalf("wallet after the settle %+v, want 940 available, none held", w)
	}
	txs, err := st.SessionLedger(ctx, sid2)
	var moved []string
	for _, x := range txs {
		moved = append(moved, fmt.Sprintf("%s %d %s>%s", x.Kind, x.Amount.Minor, x.From, x.To))
	}
	if want := "hold 100 user_wallet>user_holds, capture 60 user_holds>operator_revenue, release 40 user_holds>user_wallet"; err != nil || strings.Join(moved, ", ") != want {
		t.Fatalf("ledger of the settled session = %q, %v; want %q", strings.Join(moved, ", "), err, want)
	}
	if im, err := st.LedgerImbalance(ctx); err != nil || len(im) != 0 {
		t.Fatalf("ledger imbalance %v, %v", im, err)
	}
	if es, err := st.AuditLog(ctx, tok.Operator, store.AuditFilter{Action: "session.settle"}); err != nil || len(es) != 1 || es[0].Target != sid2.String() {
		t.Fatalf("audit of the settle = %+v, %v", es, err)
	}
}
