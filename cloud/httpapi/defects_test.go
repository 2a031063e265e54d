package httpapi_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
)

// call sends a raw request and decodes an error body, if any.
func (e *apiEnv) call(method, path, token, ctype, body string, hdr map[string]string) (*http.Response, []byte, phoneapi.ErrorBody) {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp := e.do(req, token)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var er phoneapi.ErrorResponse
	if resp.StatusCode >= 400 {
		_ = json.Unmarshal(b, &er)
	}
	return resp, b, er.Error
}

// GetDevice without a proof of presence answers only the device's public
// fields; with a proximity_id of this device from the accepted windows it
// answers its machines and prices.
func TestGetDeviceNeedsProximity(t *testing.T) {
	e := newAPIEnv(t, nil)
	c := e.phone()
	d, err := c.GetDevice(e.ctx, "wd-1")
	if err != nil {
		t.Fatal(err)
	}
	if d.Device.ID != "wd-1" || d.Device.State != phoneapi.DeviceIdle || len(d.Machines) != 0 {
		t.Fatalf("GetDevice without proximity = %+v, want the device's public fields and no machines", d)
	}
	d, err = c.GetDevice(e.ctx, "wd-1", e.proximityID(0))
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Machines) != 2 || d.Machines[0].Price.Minor == 0 {
		t.Fatalf("GetDevice with a current proximity ID = %+v, want its 2 machines with prices", d)
	}
	_, err = c.GetDevice(e.ctx, "wd-1", e.proximityID(-10*time.Minute))
	var ae *phoneapi.APIError
	if !errors.As(err, &ae) || ae.Status != 404 || ae.Code != "proximity.expired" && ae.Code != "proximity.unknown" {
		t.Fatalf("GetDevice with an old proximity ID = %v, want 404 proximity.*", err)
	}
	if _, err := c.GetDevice(e.ctx, "nope", e.proximityID(0)); !errors.As(err, &ae) || ae.Code != "proximity.unknown" {
		t.Fatalf("GetDevice of another device with wd-1's ID = %v, want proximity.unknown", err)
	}
	if resp, _, eb := e.call("GET", "/v1/devices/wd-1?proximity_id=zz", c.Token(), "", "", nil); resp.StatusCode != 400 || eb.Code != "request.field" || !strings.Contains(eb.Message, "proximity_id") {
		t.Fatalf("bad proximity_id = %d %+v, want 400 request.field naming proximity_id", resp.StatusCode, eb)
	}
}

// The same request sent again with the same key but other JSON spacing
// and key order is the same request: replayed, not key_reused, and the
// wallet is credited once.
func TestIdempotencyHashCoversParsedRequest(t *testing.T) {
	e := newAPIEnv(t, nil)
	c := e.phone()
	key := phoneapi.NewIdempotencyKey()
	h := map[string]string{"Idempotency-Key": key}
	resp, b, _ := e.call("POST", "/v1/wallet/topups", c.Token(), "application/json", `{"amount":{"minor":100,"currency":"EUR"},"source":"card_sandbox"}`, h)
	if resp.StatusCode != 201 {
		t.Fatalf("top-up = %d %s", resp.StatusCode, b)
	}
	resp, b, eb := e.call("POST", "/v1/wallet/topups", c.Token(), "application/json", "{\n  \"source\": \"card_sandbox\",\n  \"amount\": {\"currency\": \"EUR\", \"minor\": 100}\n}\n", h)
	if resp.StatusCode != 201 || resp.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("same top-up, other spacing and key order = %d %+v %s, want the replayed 201", resp.StatusCode, eb, b)
	}
	if w, _ := c.GetWallet(e.ctx); w.Available.Minor != 1100 {
		t.Fatalf("wallet = %+v, want 1100 (credited once)", w.Available)
	}
	resp, _, eb = e.call("POST", "/v1/wallet/topups", c.Token(), "application/json", `{"amount":{"minor":101,"currency":"EUR"},"source":"card_sandbox"}`, h)
	if resp.StatusCode != 409 || eb.Code != "idempotency.key_reused" {
		t.Fatalf("same key, another amount = %d %+v, want 409 idempotency.key_reused", resp.StatusCode, eb)
	}
}

// A StartSession retried with its key after the proximity window is over
// gets its session, not proximity.expired.
func TestStartRetryAfterWindowFindsSession(t *testing.T) {
	e := newAPIEnv(t, nil)
	c := e.phone()
	key := phoneapi.NewIdempotencyKey()
	req := &phoneapi.StartSessionRequest{Device: "wd-1", Machine: "tap1", Cap: phoneapi.Cap{Units: 1000}, Source: "wallet", ProximityID: e.proximityID(0)}
	_, err := c.StartSession(e.ctx, key, req)
	var ae *phoneapi.APIError
	if !errors.As(err, &ae) || ae.Code != "device.no_reply" || ae.Session == nil {
		t.Fatalf("start = %v, want device.no_reply with the session", err)
	}
	first := ae.Session.ID
	e.advance(5 * time.Minute)
	_, err = c.StartSession(e.ctx, key, req)
	if !errors.As(err, &ae) || ae.Code != "device.no_reply" || ae.Session == nil || ae.Session.ID != first {
		t.Fatalf("retry after the window = %v, want device.no_reply with session %s", err, first)
	}
	// The same key with another cap is another request.
	other := *req
	other.Cap = phoneapi.Cap{Units: 2000}
	if _, err := c.StartSession(e.ctx, key, &other); !errors.As(err, &ae) || ae.Status != 409 || ae.Code != "idempotency.key_reused" {
		t.Fatalf("same key, another cap = %v, want 409 idempotency.key_reused", err)
	}
	// Another key with the stale ID is still refused.
	if _, err := c.StartSession(e.ctx, phoneapi.NewIdempotencyKey(), req); !errors.As(err, &ae) || ae.Code != "proximity.expired" && ae.Code != "proximity.unknown" {
		t.Fatalf("new start with the stale ID = %v, want proximity.*", err)
	}
}

// A phone lists its own sessions, newest first, a page at a time.
func TestListSessions(t *testing.T) {
	e := newAPIEnv(t, nil)
	a, b := e.phone(), e.phone()
	s1 := e.pendingOn(a, "tap1", "")
	e.advance(time.Second)
	s2 := e.pendingOn(a, "vm1", "A1")
	if _, err := e.st.Fail(e.ctx, s1.ID, "test.failed"); err != nil {
		t.Fatal(err)
	}
	e.advance(time.Second)
	s3 := e.pendingOn(b, "tap1", "")
	_ = s3
	page, err := a.ListSessions(e.ctx, &phoneapi.ListSessionsParams{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Sessions) != 1 || page.Sessions[0].ID != s2.ID || page.Next == "" {
		t.Fatalf("first page = %+v, want s2 (newest) and a cursor", page)
	}
	page, err = a.ListSessions(e.ctx, &phoneapi.ListSessionsParams{Limit: 1, Cursor: page.Next})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Sessions) != 1 || page.Sessions[0].ID != s1.ID || page.Sessions[0].State != phoneapi.StateFailed {
		t.Fatalf("second page = %+v, want the failed s1", page)
	}
	if page.Next != "" {
		if p3, err := a.ListSessions(e.ctx, &phoneapi.ListSessionsParams{Limit: 1, Cursor: page.Next}); err != nil || len(p3.Sessions) != 0 || p3.Next != "" {
			t.Fatalf("third page = %+v %v, want empty and no cursor", p3, err)
		}
	}
	all, err := a.ListSessions(e.ctx, nil)
	if err != nil || len(all.Sessions) != 2 || all.Next != "" {
		t.Fatalf("all of a's sessions = %+v %v, want 2 and no cursor (b's not listed)", all, err)
	}
	for _, q := range []string{"limit=0", "limit=101", "limit=x", "cursor=%21%21"} {
		if resp, _, eb := e.call("GET", "/v1/sessions?"+q, a.Token(), "", "", nil); resp.StatusCode != 400 || eb.Code != "request.field" {
			t.Errorf("GET /v1/sessions?%s = %d %+v, want 400 request.field", q, resp.StatusCode, eb)
		}
	}
}

// Small protocol defects: each answer as the spec says.
func TestProtocolAnswers(t *testing.T) {
	e := newAPIEnv(t, nil)
	c := e.phone()
	// A vending start without a slot names the missing slot.
	_, err := c.StartSession(e.ctx, phoneapi.NewIdempotencyKey(), &phoneapi.StartSessionRequest{Device: "wd-1", Machine: "vm1",
		Cap: phoneapi.Cap{Units: 1}, Source: "wallet", ProximityID: e.proximityID(0)})
	var ae *phoneapi.APIError
	if !errors.As(err, &ae) || ae.Status != 400 || ae.Code != "request.field" || !strings.Contains(ae.Message, "slot") {
		t.Fatalf("vending start without a slot = %v, want 400 request.field naming the slot", err)
	}
	// A malformed device id is the 400 the spec declares.
	if resp, _, eb := e.call("GET", "/v1/devices/Bad!Id", c.Token(), "", "", nil); resp.StatusCode != 400 || eb.Code != "request.field" || !strings.Contains(eb.Message, "device") {
		t.Errorf("GET /v1/devices/Bad!Id = %d %+v, want 400 request.field naming the device", resp.StatusCode, eb)
	}
	// An ID a few windows old is expired, not unknown.
	for _, back := range []time.Duration{5 * 32 * time.Second, 8 * 32 * time.Second} {
		_, err = c.Resolve(e.ctx, &phoneapi.ResolveRequest{ProximityID: e.proximityID(-back)})
		if !errors.As(err, &ae) || ae.Code != "proximity.expired" {
			t.Fatalf("resolve of an ID %v old = %v, want proximity.expired", back, err)
		}
	}
	// 401s say how to authenticate, for phones and operators.
	for _, path := range []string{"/v1/wallet", "/v1/operator/devices"} {
		resp, _, eb := e.call("GET", path, "", "", "", nil)
		if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") == "" || eb.Kind != vend.Unauthorized {
			t.Errorf("GET %s without a token = %d WWW-Authenticate %q", path, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	}
	// Bodies must be JSON.
	for _, tc := range []struct{ path, ctype, body string }{
		{"/v1/resolve", "text/plain", `{"proximity_id":"0011223344556677"}`},
		{"/v1/operator/auth/login", "text/plain;charset=UTF-8", `{"email":"op@example.com","password":"operator-password"}`},
		{"/v1/wallet/topups", "text/plain", `{"amount":{"minor":1,"currency":"EUR"},"source":"card_sandbox"}`},
		{"/v1/auth/login", "application/x-www-form-urlencoded", `email=a&password=b`},
	} {
		resp, _, eb := e.call("POST", tc.path, c.Token(), tc.ctype, tc.body, map[string]string{"Idempotency-Key": phoneapi.NewIdempotencyKey()})
		if resp.StatusCode != 415 || eb.Code != "request.content_type" {
			t.Errorf("POST %s as %q = %d %+v, want 415 request.content_type", tc.path, tc.ctype, resp.StatusCode, eb)
		}
	}
	for _, ct := range []string{"application/json; charset=utf-8", ""} {
		resp, _, eb := e.call("POST", "/v1/resolve", c.Token(), ct, `{"proximity_id":"0011223344556677"}`, nil)
		if resp.StatusCode != 404 || eb.Code != "proximity.unknown" {
			t.Errorf("resolve with Content-Type %q = %d %+v, want it read as JSON", ct, resp.StatusCode, eb)
		}
	}
}
