package phoneapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
)

const testToken = "bv1.test-token"

var testSession = func() vend.SessionID {
	id, err := vend.ParseSessionID("5f0c6a2e-3b1d-4c8e-9a7f-2d4b6e8c1a90")
	if err != nil {
		panic(err)
	}
	return id
}()

// recorded is a request the example server received.
type recorded struct {
	op     string
	header http.Header
	body   []byte
}

// exampleServer answers every operation of openapi.yaml with the example of
// its 2xx response, after checking the request against the spec: the
// request body against its schema, a bearer token unless the operation has
// no security, and the Idempotency-Key when the spec declares one. Go's
// ServeMux patterns use the same {name} wildcards as OpenAPI paths.
type exampleServer struct {
	*httptest.Server
	t    *testing.T
	mu   sync.Mutex
	reqs []recorded
}

func newExampleServer(t *testing.T) *exampleServer {
	t.Helper()
	s := &exampleServer{t: t}
	mux := http.NewServeMux()
	for id, o := range operations(t) {
		mux.HandleFunc(o.method+" "+o.path, func(w http.ResponseWriter, r *http.Request) { s.serve(w, r, id, o) })
	}
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

func (s *exampleServer) fail(w http.ResponseWriter, status int, kind vend.Kind, code, msg string) {
	s.t.Errorf("example server: %s", msg)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(phoneapi.ErrorResponse{Error: phoneapi.ErrorBody{Kind: kind, Code: code, Message: msg}})
}

func (s *exampleServer) serve(w http.ResponseWriter, r *http.Request, id string, o operation) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.reqs = append(s.reqs, recorded{id, r.Header.Clone(), body})
	s.mu.Unlock()

	if o.op.Security == nil || len(*o.op.Security) != 0 {
		if r.Header.Get("Authorization") != "Bearer "+testToken {
			s.fail(w, 401, vend.Unauthorized, "auth.required", id+": Authorization = "+r.Header.Get("Authorization"))
			return
		}
	}
	for _, p := range o.op.Parameters {
		if p.Value.In == "header" && p.Value.Required {
			v := r.Header.Get(p.Value.Name)
			if err := p.Value.Schema.Value.VisitJSON(v, openapi3.EnableJSONSchema2020()); v == "" || err != nil {
				s.fail(w, 400, vend.Invalid, "request.idempotency_key", id+": header "+p.Value.Name+" = "+v)
				return
			}
		}
	}
	if rb := o.op.RequestBody; rb != nil {
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			s.fail(w, 400, vend.Invalid, "request.json", id+": body: "+err.Error())
			return
		}
		if err := rb.Value.Content["application/json"].Schema.Value.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
			s.fail(w, 400, vend.Invalid, "request.field", id+": body fails the spec: "+err.Error())
			return
		}
	} else if len(body) != 0 {
		s.fail(w, 400, vend.Invalid, "request.json", id+": unexpected body "+string(body))
		return
	}
	for code, resp := range o.op.Responses.Map() {
		if !strings.HasPrefix(code, "2") {
			continue
		}
		status := 200
		switch code {
		case "201":
			status = 201
		case "204":
			w.WriteHeader(204)
			return
		}
		for ct, mt := range resp.Value.Content {
			w.Header().Set("Content-Type", ct)
			w.WriteHeader(status)
			if s, ok := mt.Example.(string); ok && ct == "text/event-stream" {
				io.WriteString(w, s)
			} else {
				json.NewEncoder(w).Encode(mt.Example)
			}
			return
		}
	}
	s.fail(w, 500, vend.Internal, "internal", id+": no 2xx example")
}

func (s *exampleServer) last(t *testing.T) recorded {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.reqs) == 0 {
		t.Fatal("no request reached the server")
	}
	return s.reqs[len(s.reqs)-1]
}

// call runs one Client operation with valid arguments; it returns what the
// method returned (nil for LogOut) and whether the operation takes an
// Idempotency-Key, which is fixed to key.
type call func(ctx context.Context, c *phoneapi.Client, key string) (any, error)

var calls = map[string]call{
	"Health": func(ctx context.Context, c *phoneapi.Client, _ string) (any, error) { return c.Health(ctx) },
	"SignUp": func(ctx context.Context, c *phoneapi.Client, _ string) (any, error) {
		return c.SignUp(ctx, &phoneapi.SignUpRequest{Email: "ana@example.com", Password: "correct-horse-battery"})
	},
	"LogIn": func(ctx context.Context, c *phoneapi.Client, _ string) (any, error) {
		return c.LogIn(ctx, &phoneapi.LogInRequest{Email: "ana@example.com", Password: "x"})
	},
	"LogOut": func(ctx context.Context, c *phoneapi.Client, _ string) (any, error) { return nil, c.LogOut(ctx) },
	"Resolve": func(ctx context.Context, c *phoneapi.Client, _ string) (any, error) {
		rssi := -70
		return c.Resolve(ctx, &phoneapi.ResolveRequest{ProximityID: "3fa8c2d10b9e4471", RSSI: &rssi})
	},
	"GetDevice": func(ctx context.Context, c *phoneapi.Client, _ string) (any, error) {
		return c.GetDevice(ctx, "vm-0193", "91c04e7ab23d5f60")
	},
	"ListSessions": func(ctx context.Context, c *phoneapi.Client, _ string) (any, error) {
		return c.ListSessions(ctx, &phoneapi.ListSessionsParams{Limit: 20, Cursor: "1772357400000.5f0c6a2e-3b1d-4c8e-9a7f-2d4b6e8c1a90"})
	},
	"StartSession": func(ctx context.Context, c *phoneapi.Client, key string) (any, error) {
		return c.StartSession(ctx, key, &phoneapi.StartSessionRequest{
			Device: "dev-7f3a2c", Machine: "tap1", ProximityID: "3fa8c2d10b9e4471",
			Cap: phoneapi.Cap{Amount: &vend.Amount{Minor: 300, Currency: "EUR"}}, Source: "wallet",
		})
	},
	"GetSession": func(ctx context.Context, c *phoneapi.Client, _ string) (any, error) {
		return c.GetSession(ctx, testSession)
	},
	"SessionEvents": func(ctx context.Context, c *phoneapi.Client, _ string) (any, error) {
		st, err := c.SessionEvents(ctx, testSession, "")
		if err != nil {
			return nil, err
		}
		defer st.Close()
		var evs []phoneapi.Event
		for {
			ev, err := st.Next()
			if errors.Is(err, io.EOF) {
				return evs, nil
			}
			if err != nil {
				return evs, err
			}
			evs = append(evs, ev)
		}
	},
	"StopSession": func(ctx context.Context, c *phoneapi.Client, key string) (any, error) {
		return c.StopSession(ctx, key, testSession)
	},
	"UploadUsage": func(ctx context.Context, c *phoneapi.Client, key string) (any, error) {
		return c.UploadUsage(ctx, key, testSession, []byte{0x55, 0x01, 0x05})
	},
	"GetReceipt": func(ctx context.Context, c *phoneapi.Client, _ string) (any, error) {
		return c.GetReceipt(ctx, testSession)
	},
	"GetWallet": func(ctx context.Context, c *phoneapi.Client, _ string) (any, error) { return c.GetWallet(ctx) },
	"TopUp": func(ctx context.Context, c *phoneapi.Client, key string) (any, error) {
		return c.TopUp(ctx, key, &phoneapi.TopUpRequest{Amount: vend.Amount{Minor: 1000, Currency: "EUR"}, Source: "card_sandbox"})
	},
	"ListPaymentSources": func(ctx context.Context, c *phoneapi.Client, _ string) (any, error) { return c.ListPaymentSources(ctx) },
	"GetPayment": func(ctx context.Context, c *phoneapi.Client, _ string) (any, error) {
		return c.GetPayment(ctx, "bv5f0c6a2e3b1d4c8e9a7f2d4b")
	},
	"ListPayments": func(ctx context.Context, c *phoneapi.Client, _ string) (any, error) {
		return c.ListPayments(ctx, &phoneapi.ListPaymentsParams{Limit: 20})
	},
	"Withdraw": func(ctx context.Context, c *phoneapi.Client, key string) (any, error) {
		return c.Withdraw(ctx, key, &phoneapi.WithdrawalRequest{Amount: vend.Amount{Minor: 500, Currency: "EUR"}})
	},
	"CreateCheckout": func(ctx context.Context, c *phoneapi.Client, key string) (any, error) {
		return c.CreateCheckout(ctx, key, &phoneapi.CheckoutRequest{Device: "dev-7f3a2c", Machine: "tap1", Cap: phoneapi.Cap{Units: 4000}, Source: "card"})
	},
	"GetCheckout": func(ctx context.Context, c *phoneapi.Client, _ string) (any, error) {
		return c.GetCheckout(ctx, "co_5f0c6a2e3b1d4c8e", "ct_9d2f6a0c")
	},
	"StopCheckout": func(ctx context.Context, c *phoneapi.Client, _ string) (any, error) {
		return c.StopCheckout(ctx, "co_5f0c6a2e3b1d4c8e", "ct_9d2f6a0c")
	},
	"GetCheckoutReceipt": func(ctx context.Context, c *phoneapi.Client, _ string) (any, error) {
		return c.GetCheckoutReceipt(ctx, "rc_4f1a9c2e7b3d5a8c6e0f2b4d6a8c0e2f")
	},
}

// TestClientAgainstSpecExamples calls every operation against the example
// server: the request must pass the spec (path, method, body schema, auth,
// Idempotency-Key) and the answer must decode into what the example says.
func TestClientAgainstSpecExamples(t *testing.T) {
	srv := newExampleServer(t)
	ops := operations(t)
	for id := range ops {
		if calls[id] == nil {
			t.Errorf("no test call for operation %s", id)
		}
	}
	for _, id := range sortedKeys(calls) {
		t.Run(id, func(t *testing.T) {
			o, ok := ops[id]
			if !ok {
				t.Fatalf("test call %s is no operation", id)
			}
			c := phoneapi.New(srv.URL, &phoneapi.Opts{Token: testToken, UserAgent: "phoneapi-test/1"})
			key := phoneapi.NewIdempotencyKey()
			got, err := calls[id](t.Context(), c, key)
			if err != nil {
				t.Fatalf("%s: %v", id, err)
			}
			r := srv.last(t)
			if r.op != id {
				t.Fatalf("request reached %s, want %s", r.op, id)
			}
			if ua := r.header.Get("User-Agent"); ua != "phoneapi-test/1" {
				t.Errorf("User-Agent = %q", ua)
			}
			hasKey := false
			for _, p := range o.op.Parameters {
				hasKey = hasKey || p.Value.Name == "Idempotency-Key"
			}
			if k := r.header.Get("Idempotency-Key"); hasKey && k != key || !hasKey && k != "" {
				t.Errorf("Idempotency-Key = %q, spec declares one: %v (key %q)", k, hasKey, key)
			}
			if id == "SessionEvents" {
				checkEvents(t, got.([]phoneapi.Event))
				return
			}
			if got == nil {
				return
			}
			for code, resp := range o.op.Responses.Map() {
				if strings.HasPrefix(code, "2") {
					if mt := resp.Value.Content["application/json"]; mt != nil {
						if g, w := normalize(t, got), normalize(t, mt.Example); !reflect.DeepEqual(g, w) {
							t.Errorf("%s returned\n%s\nwant the example\n%s", id, mustJSON(t, g), mustJSON(t, w))
						}
					}
				}
			}
		})
	}
}

func checkEvents(t *testing.T, evs []phoneapi.Event) {
	t.Helper()
	var types []string
	for _, e := range evs {
		types = append(types, e.Type)
	}
	if want := []string{"state", "progress", "ended"}; !reflect.DeepEqual(types, want) {
		t.Fatalf("event types %v, want %v", types, want)
	}
	if p := evs[1].Progress; p == nil || p.Units != 1830 || p.Amount != (vend.Amount{Minor: 91, Currency: "EUR"}) || evs[1].ID != "41" {
		t.Errorf("progress event = %+v", evs[1])
	}
	if s := evs[2].Session; s == nil || s.State != phoneapi.StateSettled || s.Outcome != vend.OutcomeCapReached || s.ID != testSession {
		t.Errorf("ended event = %+v", evs[2])
	}
}

func TestTokenLifecycle(t *testing.T) {
	var mu sync.Mutex
	var auths []string
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/auth/login", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"token":"tok-1","expires_at":"2026-03-31T09:30:00Z","user":{"id":"u1","email":"a@b.example","created_at":"2026-03-01T09:30:00Z"}}`)
	})
	mux.HandleFunc("GET /v1/wallet", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auths = append(auths, r.Header.Get("Authorization"))
		mu.Unlock()
		io.WriteString(w, `{"available":{"minor":5,"currency":"EUR"},"held":{"minor":0,"currency":"EUR"}}`)
	})
	mux.HandleFunc("POST /v1/auth/logout", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	srv := httptest.NewServer(mux)
	defer srv.Close()

	c := phoneapi.New(srv.URL+"/", nil)
	ctx := t.Context()
	if _, err := c.GetWallet(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.LogIn(ctx, &phoneapi.LogInRequest{Email: "a@b.example", Password: "pw"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetWallet(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.LogOut(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetWallet(ctx); err != nil {
		t.Fatal(err)
	}
	if want := []string{"", "Bearer tok-1", ""}; !reflect.DeepEqual(auths, want) {
		t.Errorf("Authorization headers %q, want %q", auths, want)
	}
}

// errorServer answers every request with status and body.
func errorServer(t *testing.T, status int, body string, header map[string]string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestErrorsAreTyped(t *testing.T) {
	tests := []struct {
		status int
		body   string
		header map[string]string
		want   phoneapi.APIError
	}{
		{409, `{"error":{"kind":"conflict","code":"machine.busy","message":"sessions: machine tap1 is busy"}}`, nil,
			phoneapi.APIError{Status: 409, Kind: vend.Conflict, Code: "machine.busy", Message: "sessions: machine tap1 is busy"}},
		{409, `{"error":{"kind":"conflict","code":"funds.insufficient","message":"ledger: short"}}`, nil,
			phoneapi.APIError{Status: 409, Kind: vend.Conflict, Code: "funds.insufficient", Message: "ledger: short"}},
		{404, `{"error":{"kind":"not_found","code":"proximity.expired","message":"proximity: old"}}`, nil,
			phoneapi.APIError{Status: 404, Kind: vend.NotFound, Code: "proximity.expired", Message: "proximity: old"}},
		{409, `{"error":{"kind":"conflict","code":"idempotency.key_reused","message":"x"}}`, nil,
			phoneapi.APIError{Status: 409, Kind: vend.Conflict, Code: "idempotency.key_reused", Message: "x"}},
		{503, `{"error":{"kind":"transient","code":"idempotency.in_flight","message":"busy"}}`, map[string]string{"Retry-After": "3"},
			phoneapi.APIError{Status: 503, Kind: vend.Transient, Code: "idempotency.in_flight", Message: "busy", RetryAfter: 3 * time.Second}},
		{401, `{"error":{"kind":"unauthorized","code":"auth.token","message":"expired"}}`, nil,
			phoneapi.APIError{Status: 401, Kind: vend.Unauthorized, Code: "auth.token", Message: "expired"}},
		{502, `<html>bad gateway</html>`, nil,
			phoneapi.APIError{Status: 502, Kind: vend.Transient, Code: "http.502", Message: "<html>bad gateway</html>"}},
		{500, `{"error":{"kind":"weird","code":"Not A Code","message":"m"}}`, nil,
			phoneapi.APIError{Status: 500, Kind: vend.Internal, Code: "http.500", Message: "m"}},
		{400, ``, nil, phoneapi.APIError{Status: 400, Kind: vend.Invalid, Code: "http.400"}},
	}
	for _, tt := range tests {
		srv := errorServer(t, tt.status, tt.body, tt.header)
		c := phoneapi.New(srv.URL, &phoneapi.Opts{Token: testToken})
		_, err := c.StartSession(t.Context(), phoneapi.NewIdempotencyKey(), &phoneapi.StartSessionRequest{
			Device: "d1", Machine: "m1", ProximityID: "0011223344556677", Cap: phoneapi.Cap{Units: 1}, Source: "wallet",
		})
		var ae *phoneapi.APIError
		if !errors.As(err, &ae) {
			t.Errorf("%d %s: error %v (%T), want *APIError", tt.status, tt.body, err, err)
			continue
		}
		if !reflect.DeepEqual(*ae, tt.want) {
			t.Errorf("%d %s: got %+v, want %+v", tt.status, tt.body, *ae, tt.want)
		}
		if vend.KindOf(err) != tt.want.Kind || vend.CodeOf(err) != tt.want.Code {
			t.Errorf("%d %s: KindOf/CodeOf = %s/%s, want %s/%s", tt.status, tt.body, vend.KindOf(err), vend.CodeOf(err), tt.want.Kind, tt.want.Code)
		}
		if !strings.HasPrefix(err.Error(), "phoneapi: ") {
			t.Errorf("error %q does not begin with phoneapi:", err)
		}
	}
}

func TestClientRefusesBadRequestsWithoutSending(t *testing.T) {
	var sent atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { sent.Store(true) }))
	defer srv.Close()
	c := phoneapi.New(srv.URL, &phoneapi.Opts{Token: testToken})
	ctx := t.Context()
	good := phoneapi.StartSessionRequest{Device: "d1", Machine: "m1", ProximityID: "0011223344556677", Cap: phoneapi.Cap{Units: 1}, Source: "wallet"}
	tests := []struct {
		name, field string
		run         func() error
	}{
		{"no key", "", func() error { _, err := c.StartSession(ctx, "", &good); return err }},
		{"short key", "", func() error { _, err := c.StopSession(ctx, "1234567", testSession); return err }},
		{"key with space", "", func() error { _, err := c.TopUp(ctx, "abc defgh", &phoneapi.TopUpRequest{}); return err }},
		{"both caps", "cap", func() error {
			r := good
			r.Cap.Amount = &vend.Amount{Minor: 1, Currency: "EUR"}
			_, err := c.StartSession(ctx, "key-12345", &r)
			return err
		}},
		{"upper-case proximity", "proximity_id", func() error {
			_, err := c.Resolve(ctx, &phoneapi.ResolveRequest{ProximityID: "3FA8C2D10B9E4471"})
			return err
		}},
		{"bad device", "device", func() error { _, err := c.GetDevice(ctx, "Dev/1"); return err }},
		{"bad proximity for a device", "proximity_id", func() error { _, err := c.GetDevice(ctx, "vm-0193", "zz"); return err }},
		{"two proximity IDs", "proximity_id", func() error {
			_, err := c.GetDevice(ctx, "vm-0193", "3fa8c2d10b9e4471", "3fa8c2d10b9e4472")
			return err
		}},
		{"list limit", "limit", func() error { _, err := c.ListSessions(ctx, &phoneapi.ListSessionsParams{Limit: 101}); return err }},
		{"list cursor", "cursor", func() error {
			_, err := c.ListSessions(ctx, &phoneapi.ListSessionsParams{Cursor: strings.Repeat("c", 129)})
			return err
		}},
		{"top up wallet", "source", func() error {
			_, err := c.TopUp(ctx, "key-12345", &phoneapi.TopUpRequest{Amount: vend.Amount{Minor: 5, Currency: "EUR"}, Source: "wallet"})
			return err
		}},
		{"short password", "password", func() error {
			_, err := c.SignUp(ctx, &phoneapi.SignUpRequest{Email: "a@b.example", Password: "short"})
			return err
		}},
	}
	for _, tt := range tests {
		err := tt.run()
		if vend.KindOf(err) != vend.Invalid {
			t.Errorf("%s: err %v, kind %s, want invalid", tt.name, err, vend.KindOf(err))
		}
		if tt.field != "" && (!errors.Is(err, phoneapi.ErrField) || !strings.Contains(err.Error(), "field: "+tt.field)) {
			t.Errorf("%s: err %v does not name field %s", tt.name, err, tt.field)
		}
		if tt.field == "" && !errors.Is(err, phoneapi.ErrIdempotencyKey) {
			t.Errorf("%s: err %v, want ErrIdempotencyKey", tt.name, err)
		}
	}
	if sent.Load() {
		t.Error("an invalid request reached the server")
	}
}

func TestBadBaseURL(t *testing.T) {
	for _, u := range []string{"", "ftp://x", "://", "api.example.com"} {
		_, err := phoneapi.New(u, nil).Health(t.Context())
		if !errors.Is(err, phoneapi.ErrBaseURL) {
			t.Errorf("New(%q).Health() = %v, want ErrBaseURL", u, err)
		}
	}
}

func TestResponseTooLarge(t *testing.T) {
	big := `{"status":"ok","time":"2026-03-01T09:30:00Z","pad":"` + strings.Repeat("x", phoneapi.MaxResponseBytes) + `"}`
	srv := errorServer(t, 200, big, nil)
	_, err := phoneapi.New(srv.URL, nil).Health(t.Context())
	if !errors.Is(err, phoneapi.ErrResponseTooLarge) {
		t.Errorf("Health() = %v, want ErrResponseTooLarge", err)
	}
}

// sseServer streams chunks with a flush after each.
func sseServer(t *testing.T, chunks []string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Accept") != "text/event-stream" || r.Header.Get("Authorization") != "Bearer "+testToken {
			http.Error(w, `{"error":{"kind":"invalid","code":"request.field","message":"headers"}}`, 400)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
		w.Header().Set("X-Last-Event-ID", r.Header.Get("Last-Event-ID"))
		f := w.(http.Flusher)
		for _, c := range chunks {
			io.WriteString(w, c)
			f.Flush()
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

const (
	sessJSON     = `{"id":"5f0c6a2e-3b1d-4c8e-9a7f-2d4b6e8c1a90","device":"d1","machine":"m1","state":"running","unit":"ml","price":{"minor":50,"per":1000},"currency":"EUR","source":"wallet","hold":{"minor":250,"currency":"EUR"},"cap_units":5000,"units":0,"amount":{"minor":0,"currency":"EUR"},"created_at":"2026-03-01T09:30:00Z"}`
	progressJSON = `{"session":"5f0c6a2e-3b1d-4c8e-9a7f-2d4b6e8c1a90","state":"running","units":10,"amount":{"minor":0,"currency":"EUR"},"ts":"2026-03-01T09:30:09Z"}`
)

func TestSessionEventsChunkedMidLine(t *testing.T) {
	stream := "retry: 1500\r\n: keepalive\r\n\r\nid: 7\r\nevent: state\r\ndata: " + sessJSON + "\r\n\r\n" +
		"id: 8\nevent: progress\ndata: " + progressJSON + "\n\n" +
		"event: mystery\ndata: skipped\n\n" +
		"id: 9\revent: ended\rdata: " + strings.Replace(sessJSON, `"running"`, `"settled"`, 1) + "\r\r" +
		"id: 10\nevent: progress\ndata: " + progressJSON + "\n\n"
	// Split into 7-byte chunks, so lines, CRLF pairs and JSON break across writes.
	var chunks []string
	for i := 0; i < len(stream); i += 7 {
		chunks = append(chunks, stream[i:min(i+7, len(stream))])
	}
	srv := sseServer(t, chunks)
	c := phoneapi.New(srv.URL, &phoneapi.Opts{Token: testToken})
	st, err := c.SessionEvents(t.Context(), testSession, "6")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var got []string
	for {
		ev, err := st.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		got = append(got, ev.Type+"#"+ev.ID)
		if (ev.Session == nil) == (ev.Progress == nil) {
			t.Errorf("event %s: Session %v, Progress %v; want exactly one", ev.Type, ev.Session, ev.Progress)
		}
	}
	if want := []string{"state#7", "progress#8", "ended#9"}; !reflect.DeepEqual(got, want) {
		t.Errorf("events %v, want %v (nothing after ended)", got, want)
	}
	if st.Retry() != 1500*time.Millisecond || st.LastEventID() != "9" {
		t.Errorf("Retry %v, LastEventID %q; want 1.5s, 9", st.Retry(), st.LastEventID())
	}
}

func TestSessionEventsRefusesOversizedLine(t *testing.T) {
	long := "data: " + strings.Repeat("a", phoneapi.DefaultMaxSSELine) + "\n\n"
	var chunks []string
	for i := 0; i < len(long); i += 4096 {
		chunks = append(chunks, long[i:min(i+4096, len(long))])
	}
	srv := sseServer(t, append([]string{"id: 1\nevent: state\ndata: " + sessJSON + "\n\n"}, chunks...))
	st, err := phoneapi.New(srv.URL, &phoneapi.Opts{Token: testToken}).SessionEvents(t.Context(), testSession, "")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if ev, err := st.Next(); err != nil || ev.Type != "state" {
		t.Fatalf("first Next = %v, %v", ev, err)
	}
	_, err = st.Next()
	if !errors.Is(err, phoneapi.ErrSSELineTooLong) || vend.CodeOf(err) != "sse.line_too_long" {
		t.Errorf("Next over a long line = %v, want ErrSSELineTooLong", err)
	}
}

func TestSessionEventsErrors(t *testing.T) {
	srv := errorServer(t, 404, `{"error":{"kind":"not_found","code":"session.not_found","message":"no"}}`, nil)
	_, err := phoneapi.New(srv.URL, &phoneapi.Opts{Token: testToken}).SessionEvents(t.Context(), testSession, "")
	if vend.CodeOf(err) != "session.not_found" || vend.KindOf(err) != vend.NotFound {
		t.Errorf("SessionEvents on 404 = %v", err)
	}
	srv = errorServer(t, 200, `{}`, map[string]string{"Content-Type": "application/json"})
	_, err = phoneapi.New(srv.URL, &phoneapi.Opts{Token: testToken}).SessionEvents(t.Context(), testSession, "")
	if !errors.Is(err, phoneapi.ErrEventStream) {
		t.Errorf("SessionEvents on JSON = %v, want ErrEventStream", err)
	}
	srv = sseServer(t, []string{"event: progress\ndata: {not json\n\n", "event: progress\ndata: " + progressJSON + "\n\n"})
	st, err := phoneapi.New(srv.URL, &phoneapi.Opts{Token: testToken}).SessionEvents(t.Context(), testSession, "")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Next(); !errors.Is(err, phoneapi.ErrResponse) {
		t.Errorf("Next on bad JSON = %v, want ErrResponse", err)
	}
	if ev, err := st.Next(); err != nil || ev.Progress == nil || ev.Progress.Units != 10 {
		t.Errorf("Next after bad JSON = %+v, %v", ev, err)
	}
	if _, err := st.Next(); !errors.Is(err, io.EOF) {
		t.Errorf("Next at end = %v, want io.EOF", err)
	}
}

func TestNewIdempotencyKey(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		k := phoneapi.NewIdempotencyKey()
		if err := phoneapi.ValidateIdempotencyKey(k); err != nil {
			t.Fatalf("NewIdempotencyKey() = %q: %v", k, err)
		}
		if seen[k] {
			t.Fatalf("NewIdempotencyKey() repeated %q", k)
		}
		seen[k] = true
	}
}
