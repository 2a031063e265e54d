package httpapi_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/cloud/httpapi"
)

// post sends a JSON body and returns the status, the error code (if any)
// and the Retry-After header.
func (e *apiEnv) post(path, body string, hdr map[string]string) (int, string, string) {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.url+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp := e.do(req, "")
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var er phoneapi.ErrorResponse
	_ = json.Unmarshal(b, &er)
	if resp.StatusCode == 429 && resp.Header.Get("Retry-After") == "" {
		e.t.Errorf("%s: 429 without Retry-After", path)
	}
	return resp.StatusCode, er.Error.Code, resp.Header.Get("Retry-After")
}

func login(email, pw string) string {
	b, _ := json.Marshal(map[string]string{"email": email, "password": pw})
	return string(b)
}

// Log-ins from one address are limited whatever the account, sign-ups
// too, each with 429 rate.limited and a Retry-After.
func TestRateLimitPerAddress(t *testing.T) {
	e := newAPIEnv(t, func(o *httpapi.Options) {
		o.LogInPerIP = httpapi.RateLimit{Per: time.Minute, Burst: 3}
		o.SignUpPerIP = httpapi.RateLimit{Per: time.Hour, Burst: 2}
	})
	for i := range 3 {
		if st, code, _ := e.post("/v1/auth/login", login("x"+strconv.Itoa(i)+"@example.com", "wrong-password"), nil); st != 401 {
			t.Fatalf("log-in %d = %d %s, want 401", i, st, code)
		}
	}
	st, code, ra := e.post("/v1/auth/login", login("y@example.com", "wrong-password"), nil)
	if st != 429 || code != "rate.limited" || ra == "" {
		t.Fatalf("4th log-in from one address = %d %s Retry-After %q, want 429 rate.limited", st, code, ra)
	}
	if n, _ := strconv.Atoi(ra); n < 1 || n > 60 {
		t.Fatalf("Retry-After %q, want 1-60 s", ra)
	}
	// The operator log-in shares the address's log-in budget.
	if st, code, _ := e.post("/v1/operator/auth/login", login("op@example.com", "operator-password"), nil); st != 429 || code != "rate.limited" {
		t.Fatalf("operator log-in from a throttled address = %d %s, want 429 rate.limited", st, code)
	}
	if n := refusedCount(t, e, "rate.limited"); n != 2 {
		t.Fatalf("beaconvend_http_limited_total{code=rate.limited} = %v, want 2", n)
	}
	e.advance(time.Minute)
	if st, code, _ := e.post("/v1/auth/login", login("y@example.com", "wrong-password"), nil); st != 401 {
		t.Fatalf("a minute later = %d %s, want 401 (one token back)", st, code)
	}
	for i := range 2 {
		if st, code, _ := e.post("/v1/auth/signup", login("new"+strconv.Itoa(i)+"@example.com", "password-123"), nil); st != 201 {
			t.Fatalf("sign-up %d = %d %s", i, st, code)
		}
	}
	if st, code, _ := e.post("/v1/auth/signup", login("new9@example.com", "password-123"), nil); st != 429 || code != "rate.limited" {
		t.Fatalf("3rd sign-up from one address = %d %s, want 429 rate.limited", st, code)
	}
}

// X-Forwarded-For is believed only from a configured trusted proxy.
func TestRateLimitTrustedProxy(t *testing.T) {
	limit := func(o *httpapi.Options) { o.LogInPerIP = httpapi.RateLimit{Per: time.Hour, Burst: 1} }
	plain := newAPIEnv(t, limit)
	if st, _, _ := plain.post("/v1/auth/login", login("a@example.com", "wrong-password"), map[string]string{"X-Forwarded-For": "192.0.2.1"}); st != 401 {
		t.Fatalf("first = %d", st)
	}
	if st, code, _ := plain.post("/v1/auth/login", login("a@example.com", "wrong-password"), map[string]string{"X-Forwarded-For": "192.0.2.2"}); st != 429 {
		t.Fatalf("forged X-Forwarded-For without a trusted proxy = %d %s, want 429 (the peer address counts)", st, code)
	}
	proxied := newAPIEnv(t, func(o *httpapi.Options) {
		limit(o)
		o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	for _, xff := range []string{"192.0.2.1", "192.0.2.2", "198.51.100.7, 192.0.2.3"} {
		if st, code, _ := proxied.post("/v1/auth/login", login("b@example.com", "wrong-password"), map[string]string{"X-Forwarded-For": xff}); st != 401 {
			t.Fatalf("client %s behind the trusted proxy = %d %s, want 401 (its own budget)", xff, st, code)
		}
	}
	if st, code, _ := proxied.post("/v1/auth/login", login("b@example.com", "wrong-password"), map[string]string{"X-Forwarded-For": "203.0.113.9, 192.0.2.1"}); st != 429 {
		t.Fatalf("second log-in of 192.0.2.1 = %d %s, want 429 (the right-most untrusted hop counts)", st, code)
	}
}

// One account is limited across addresses; repeated failures lock it with
// a growing lock that holds on another instance of the API over the same
// store and ends with a success.
func TestLockoutGrowsAndHoldsAcrossInstances(t *testing.T) {
	lim := func(o *httpapi.Options) {
		o.PerAccount = httpapi.RateLimit{Per: time.Second, Burst: 100}
		o.LockoutAfter, o.LockoutBase, o.LockoutMax = 3, time.Minute, 10*time.Minute
	}
	e := newAPIEnv(t, lim)
	c := e.phone()
	_ = c
	email := "p" + strconv.FormatInt(phoneSeq.Load(), 10) + "@example.com"
	for i := range 3 {
		if st, code, _ := e.post("/v1/auth/login", login(email, "wrong-password"), nil); st != 401 || code != "auth.credentials" {
			t.Fatalf("failure %d = %d %s, want 401 auth.credentials", i, st, code)
		}
	}
	st, code, ra := e.post("/v1/auth/login", login(email, "password-123"), nil)
	if st != 429 || code != "auth.locked" || ra != "60" {
		t.Fatalf("right password while locked = %d %s Retry-After %q, want 429 auth.locked 60", st, code, ra)
	}
	// A second API instance over the same store sees the lock.
	api2, err := httpapi.New(httpapi.Options{Service: e.svc, Now: e.clock, Limits: httpapi.Limits{LockoutAfter: 3, LockoutBase: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", "/v1/auth/login", strings.NewReader(login(email, "password-123")))
	req.Header.Set("Content-Type", "application/json")
	req.RemoteAddr = "192.0.2.50:1234"
	rec := httptest.NewRecorder()
	api2.ServeHTTP(rec, req)
	if rec.Code != 429 || !bytes.Contains(rec.Body.Bytes(), []byte("auth.locked")) {
		t.Fatalf("other instance while locked = %d %s, want 429 auth.locked", rec.Code, rec.Body)
	}
	// After the lock, one more failure locks for twice as long.
	e.advance(61 * time.Second)
	if st, code, _ := e.post("/v1/auth/login", login(email, "wrong-password"), nil); st != 401 {
		t.Fatalf("failure after the lock = %d %s", st, code)
	}
	if st, code, ra := e.post("/v1/auth/login", login(email, "password-123"), nil); st != 429 || code != "auth.locked" || ra != "120" {
		t.Fatalf("after the 4th failure = %d %s Retry-After %q, want 429 auth.locked 120", st, code, ra)
	}
	e.advance(121 * time.Second)
	if st, code, _ := e.post("/v1/auth/login", login(email, "password-123"), nil); st != 200 {
		t.Fatalf("right password after the lock = %d %s", st, code)
	}
	// The success cleared the count: two failures do not lock.
	for range 2 {
		e.post("/v1/auth/login", login(email, "wrong-password"), nil)
	}
	if st, code, _ := e.post("/v1/auth/login", login(email, "password-123"), nil); st != 200 {
		t.Fatalf("after a success and 2 failures = %d %s, want 200", st, code)
	}
	// Operators are locked the same way, on their own count.
	for range 3 {
		if st, code, _ := e.post("/v1/operator/auth/login", login("op@example.com", "wrong-password"), nil); st != 401 {
			t.Fatalf("operator failure = %d %s", st, code)
		}
	}
	if st, code, _ := e.post("/v1/operator/auth/login", login("op@example.com", "operator-password"), nil); st != 429 || code != "auth.locked" {
		t.Fatalf("operator while locked = %d %s, want 429 auth.locked", st, code)
	}
}

// One account is limited whatever address it comes from.
func TestRateLimitPerAccount(t *testing.T) {
	e := newAPIEnv(t, func(o *httpapi.Options) {
		o.PerAccount = httpapi.RateLimit{Per: time.Hour, Burst: 2}
		o.LockoutAfter = -1
	})
	for range 2 {
		e.post("/v1/auth/login", login("victim@example.com", "wrong-password"), nil)
	}
	if st, code, _ := e.post("/v1/auth/login", login("Victim@Example.com ", "wrong-password"), nil); st != 429 || code != "rate.limited" {
		t.Fatalf("3rd log-in of one account = %d %s, want 429 rate.limited", st, code)
	}
	if st, code, _ := e.post("/v1/auth/login", login("other@example.com", "wrong-password"), nil); st != 401 {
		t.Fatalf("another account = %d %s, want 401", st, code)
	}
}

// Event streams are capped per user and per instance (429 stream.limit);
// a closed stream frees its place.
func TestEventStreamCaps(t *testing.T) {
	e := newAPIEnv(t, func(o *httpapi.Options) {
		o.MaxStreamsPerUser, o.MaxStreams = 2, 3
		o.KeepAlive = 50 * time.Millisecond
	})
	open := func(c *phoneapi.Client, s phoneapi.Session) (*http.Response, string) {
		req, _ := http.NewRequest("GET", e.url+"/v1/sessions/"+s.ID.String()+"/events", nil)
		resp := e.do(req, c.Token())
		if resp.StatusCode == 200 {
			return resp, ""
		}
		defer resp.Body.Close()
		var er phoneapi.ErrorResponse
		json.NewDecoder(resp.Body).Decode(&er)
		if resp.Header.Get("Retry-After") == "" {
			t.Errorf("stream refused without Retry-After")
		}
		return nil, strconv.Itoa(resp.StatusCode) + " " + er.Error.Code
	}
	a, b := e.phone(), e.phone()
	sa := e.pendingSession(a)
	a1, _ := open(a, sa)
	a2, _ := open(a, sa)
	if a1 == nil || a2 == nil {
		t.Fatal("two streams of one user refused")
	}
	defer a2.Body.Close()
	if r, got := open(a, sa); r != nil || got != "429 stream.limit" {
		t.Fatalf("3rd stream of one user = %q, want 429 stream.limit", got)
	}
	// b's first stream makes three on the instance; its second is over
	// the instance's cap although b has only one.
	sb := e.pendingOn(b, "vm1", "A1")
	b1, _ := open(b, sb)
	if b1 == nil {
		t.Fatal("b's first stream refused")
	}
	defer b1.Body.Close()
	if r, got := open(b, sb); r != nil || got != "429 stream.limit" {
		t.Fatalf("4th stream on the instance = %q, want 429 stream.limit", got)
	}
	a1.Body.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r, got := open(a, sa)
		if r != nil {
			r.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("closing a stream did not free its place: %s", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// refusedCount reads the limits counter of one code from the service's registry.
func refusedCount(t *testing.T, e *apiEnv, code string) float64 {
	t.Helper()
	mfs, err := e.svc.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "beaconvend_http_limited_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "code" && l.GetValue() == code {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no beaconvend_http_limited_total{code=%q}", code)
	return 0
}
