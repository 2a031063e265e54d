package httpapi_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/httpapi"
	"beaconvend/cloud/internal/svctest"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

// opClock is the one settable clock of the store and the server.
type opClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *opClock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *opClock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// opEnv is a cloud HTTP API with operator "Acme" (account
// ops@acme.example) owning device "dev-1", on one database. The service's
// public URL is https://cloud.example; its commands wait 300 ms for the
// device's reply, which pub may give.
type opEnv struct {
	t   *testing.T
	st  *store.Store
	svc *service.Service
	pub *replyPublisher
	ck  ed25519.PrivateKey // the cloud's grant key
	clk *opClock
	url string
	kek []byte
	dsn string
}

// forEachStore runs fn on SQLite and on PostgreSQL (VEND_PG_DSN; the
// svctest rule when it is absent).
func forEachStore(t *testing.T, fn func(t *testing.T, e *opEnv)) {
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			dsn := "sqlite:" + filepath.Join(t.TempDir(), "c.db")
			if db == "postgres" {
				if os.Getenv("VEND_PG_DSN") == "" {
					svctest.Missing(t, "PostgreSQL (VEND_PG_DSN) for the PostgreSQL half of the operator API tests", "run `export \"$(scripts/pg.sh | tail -n1)\"`")
				}
				dsn = svctest.PostgresDSN(t, "vend_httpapi_test")
			}
			fn(t, newOpEnv(t, dsn))
		})
	}
}

func newOpEnv(t *testing.T, dsn string) *opEnv {
	ctx := context.Background()
	e := &opEnv{t: t, clk: &opClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}, kek: make([]byte, 32), dsn: dsn}
	rand.Read(e.kek)
	st, err := store.Open(ctx, dsn, &store.Opts{BcryptCost: 4, Now: e.clk.Now, KeyEncKey: e.kek})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e.st = st
	op, _, err := st.CreateOperatorWithAccount(ctx, "Acme", "ops@acme.example", "acme-password")
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	if err := st.CreateDevice(ctx, store.Device{ID: "dev-1", OperatorID: op.ID, Name: "lobby", IdentityKey: [16]byte{1}, K: 5, SignKey: pub, MQTTHash: "x",
		Machines: []store.Machine{{ID: "tap1", Kind: vend.KindWater, Name: "t", Price: vend.Price{Minor: 50, Per: 1000}, Currency: "EUR"}}}); err != nil {
		t.Fatal(err)
	}
	_, ck, _ := ed25519.GenerateKey(rand.Reader)
	e.ck, e.pub = ck, &replyPublisher{st: st}
	svc, err := service.New(ctx, service.Options{Store: st, Publisher: e.pub, CloudKey: ck, PublicURL: "https://cloud.example",
		ReplyTimeout: 300 * time.Millisecond, ReplyPoll: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	e.svc = svc
	api, err := httpapi.New(httpapi.Options{Service: svc, Now: e.clk.Now, OperatorSessionTTL: 8 * time.Hour, OperatorIdleTimeout: 30 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	e.url = srv.URL
	return e
}

// call sends a request and decodes the answer into out (when not nil); it
// returns the status and, for an error, its code.
func (e *opEnv) call(method, path, tok, body string, out any) (int, string) {
	e.t.Helper()
	r, _ := http.NewRequest(method, e.url+path, bytes.NewBufferString(body))
	if tok != "" {
		r.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := (&http.Client{Transport: newSpecChecker(e.t)}).Do(r)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		var er phoneapi.ErrorResponse
		if err := json.Unmarshal(b, &er); err != nil {
			e.t.Fatalf("%s %s: %d %s is no error body", method, path, resp.StatusCode, b)
		}
		return resp.StatusCode, er.Error.Code
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("%s %s: %s", method, path, b)
		}
	}
	return resp.StatusCode, ""
}

func (e *opEnv) logIn(pw string) httpapi.OperatorToken {
	e.t.Helper()
	var tok httpapi.OperatorToken
	if code, ec := e.call("POST", "/v1/operator/auth/login", "", `{"email":"ops@acme.example","password":"`+pw+`"}`, &tok); code != 200 {
		e.t.Fatalf("operator log-in = %d %s", code, ec)
	}
	return tok
}

// works asserts that tok reaches the operator API; refused that it gets
// 401 auth.token.
func (e *opEnv) works(tok string) {
	e.t.Helper()
	var d httpapi.OperatorDevice
	if code, ec := e.call("GET", "/v1/operator/devices/dev-1", tok, "", &d); code != 200 || d.ID != "dev-1" {
		e.t.Fatalf("GET device with a live token = %d %s %+v", code, ec, d)
	}
}

func (e *opEnv) refused(tok string) {
	e.t.Helper()
	if code, ec := e.call("GET", "/v1/operator/devices", tok, "", nil); code != 401 || ec != "auth.token" {
		e.t.Fatalf("GET devices with an ended token = %d %s, want 401 auth.token", code, ec)
	}
}

func TestOperatorLogInLogOut(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *opEnv) {
		tok := e.logIn("acme-password")
		if !strings.HasPrefix(tok.Token, store.ConsoleTokenPrefix) || tok.IdleTimeout != 1800 ||
			!tok.ExpiresAt.Equal(e.clk.Now().Add(8*time.Hour)) || tok.Operator == "" || tok.Account == "" {
			t.Fatalf("log-in answer %+v", tok)
		}
		other := e.logIn("acme-password")
		e.works(tok.Token)
		if code, ec := e.call("POST", "/v1/operator/auth/logout", tok.Token, "", nil); code != 204 {
			t.Fatalf("log-out = %d %s", code, ec)
		}
		e.refused(tok.Token)
		if code, ec := e.call("POST", "/v1/operator/auth/logout", tok.Token, "", nil); code != 401 || ec != "auth.token" {
			t.Fatalf("second log-out = %d %s, want 401 auth.token", code, ec)
		}
		e.works(other.Token) // the account's other session goes on

		if code, ec := e.call("POST", "/v1/operator/auth/login", "", `{"email":"ops@acme.example","password":"wrong-password"}`, nil); code != 401 || ec != "auth.credentials" {
			t.Fatalf("wrong password = %d %s", code, ec)
		}
		if code, ec := e.call("POST", "/v1/operator/auth/login", "", `{"email":"nobody@acme.example","password":"acme-password"}`, nil); code != 401 || ec != "auth.credentials" {
			t.Fatalf("unknown email = %d %s", code, ec)
		}
	})
}

// Sessions end after the idle bound without a request, and at the
// absolute bound however busy they are (the injected clock).
func TestOperatorSessionExpiry(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *opEnv) {
		idle := e.logIn("acme-password")
		e.clk.Add(29 * time.Minute)
		e.works(idle.Token)
		e.clk.Add(30 * time.Minute)
		e.refused(idle.Token)

		busy := e.logIn("acme-password")
		for range 16 { // to 7 h 44 min
			e.clk.Add(29 * time.Minute)
			e.works(busy.Token)
		}
		e.clk.Add(29 * time.Minute) // 8 h 13 min
		e.refused(busy.Token)
	})
}

// A password change needs the current password, revokes every other
// session of the account and keeps the one that made it.
func TestOperatorPasswordChange(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *opEnv) {
		mine, other := e.logIn("acme-password"), e.logIn("acme-password")
		if code, ec := e.call("POST", "/v1/operator/auth/password", mine.Token, `{"current_password":"guess-guess","new_password":"new-password-1"}`, nil); code != 400 || ec != "auth.current_password" {
			t.Fatalf("change with a wrong current password = %d %s", code, ec)
		}
		if code, ec := e.call("POST", "/v1/operator/auth/password", mine.Token, `{"current_password":"acme-password","new_password":"short"}`, nil); code != 400 || ec != "request.field" {
			t.Fatalf("change to a short password = %d %s", code, ec)
		}
		e.works(other.Token)
		var got httpapi.OperatorPasswordChanged
		if code, ec := e.call("POST", "/v1/operator/auth/password", mine.Token, `{"current_password":"acme-password","new_password":"new-password-1"}`, &got); code != 200 || got.RevokedSessions != 1 {
			t.Fatalf("change = %d %s %+v", code, ec, got)
		}
		e.works(mine.Token)
		e.refused(other.Token)
		if code, ec := e.call("POST", "/v1/operator/auth/login", "", `{"email":"ops@acme.example","password":"acme-password"}`, nil); code != 401 || ec != "auth.credentials" {
			t.Fatalf("log-in with the old password = %d %s", code, ec)
		}
		e.works(e.logIn("new-password-1").Token)
	})
}

// Disabling the account (what `cloud operator disable` does) refuses its
// tokens from the very next request and its log-ins until enabled.
func TestOperatorAccountDisabled(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *opEnv) {
		tok := e.logIn("acme-password")
		e.works(tok.Token)
		if _, _, err := e.st.SetOperatorAccountDisabled(context.Background(), "ops@acme.example", true); err != nil {
			t.Fatal(err)
		}
		e.refused(tok.Token)
		if code, ec := e.call("POST", "/v1/operator/auth/login", "", `{"email":"ops@acme.example","password":"acme-password"}`, nil); code != 401 || ec != "auth.account_disabled" {
			t.Fatalf("log-in of a disabled account = %d %s", code, ec)
		}
		if _, _, err := e.st.SetOperatorAccountDisabled(context.Background(), "ops@acme.example", false); err != nil {
			t.Fatal(err)
		}
		e.refused(tok.Token)
		e.works(e.logIn("acme-password").Token)
	})
}

// Tokens that were never issued, cut short, altered, or of another kind
// (a phone user's, the old HMAC shape) are refused.
func TestOperatorTokenForged(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *opEnv) {
		tok := e.logIn("acme-password").Token
		flip := []byte(tok)
		flip[len(flip)-3] ^= 2
		for _, bad := range []string{tok[:len(tok)-1], tok[:8], string(flip), store.ConsoleTokenPrefix + strings.Repeat("x", 43),
			"bvo1.YWNjfG9wfDk5OTk5OTk5OTk.c2ln", "vt_" + strings.Repeat("A", 43)} {
			e.refused(bad)
		}
		e.works(tok)
	})
}

// Finding one device does not open the fleet's identity keys: a device
// whose key no longer decrypts does not break the view of the others.
func TestOperatorDeviceLookupReadsNoKeys(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *opEnv) {
		ctx := context.Background()
		op, err := e.st.OperatorByName(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		if err := e.st.CreateDevice(ctx, store.Device{ID: "dev-2", OperatorID: op.ID, IdentityKey: [16]byte{2}, K: 5, SignKey: pub, MQTTHash: "x"}); err != nil {
			t.Fatal(err)
		}
		// Re-seal dev-2's key under another key-encryption key, as a
		// database restored next to the wrong key file would hold it.
		other, err := store.Open(ctx, e.dsn, &store.Opts{KeyEncKey: bytes.Repeat([]byte{9}, 32)})
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		if err := other.CreateDevice(ctx, store.Device{ID: "dev-3", OperatorID: op.ID, IdentityKey: [16]byte{3}, K: 5, SignKey: pub, MQTTHash: "x"}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.st.GetDevice(ctx, "dev-3"); err == nil {
			t.Fatal("dev-3's key decrypts under the cloud's key; the test needs one that does not")
		}
		tok := e.logIn("acme-password").Token
		e.works(tok)
		var list struct{ Devices []httpapi.OperatorDevice }
		if code, ec := e.call("GET", "/v1/operator/devices", tok, "", &list); code != 200 || len(list.Devices) != 3 {
			t.Fatalf("list = %d %s %+v", code, ec, list)
		}
		if code, ec := e.call("GET", "/v1/operator/devices/nope", tok, "", nil); code != 404 || ec != "device.not_found" {
			t.Fatalf("unknown device = %d %s", code, ec)
		}
	})
}
