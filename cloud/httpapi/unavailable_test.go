package httpapi_test

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"testing"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/cloud/internal/svctest"
)

// cutProxy forwards loopback TCP to target until Cut, which closes the
// listener and every connection: the database vanishes under the cloud.
type cutProxy struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln}
	t.Cleanup(p.Cut)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(s, c); s.Close() }()
			go func() { _, _ = io.Copy(c, s); c.Close() }()
		}
	}()
	return p
}

func (p *cutProxy) Cut() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// A request that needs the database while PostgreSQL is unreachable (a
// failover under way) is 503 service.unavailable with Retry-After, which
// a client retries, not 500 internal.
func TestDatabaseUnreachableIs503(t *testing.T) {
	if os.Getenv("VEND_PG_DSN") == "" {
		svctest.Missing(t, "PostgreSQL (VEND_PG_DSN)", "run `export \"$(scripts/pg.sh | tail -n1)\"`")
	}
	dsn := svctest.PostgresDSN(t, "vend_httpapi_unavail")
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newCutProxy(t, u.Host)
	u.Host = proxy.ln.Addr().String()
	e := newOpEnv(t, u.String())
	var li struct {
		Token string `json:"token"`
	}
	if code, ec := e.call("POST", "/v1/operator/auth/login", "", `{"email":"ops@acme.example","password":"acme-password"}`, &li); code != 200 || li.Token == "" {
		t.Fatalf("log-in: %d %s", code, ec)
	}
	proxy.Cut()
	req, _ := http.NewRequest("GET", e.url+"/v1/operator/devices", nil)
	req.Header.Set("Authorization", "Bearer "+li.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var er phoneapi.ErrorResponse
	_ = json.NewDecoder(resp.Body).Decode(&er)
	if resp.StatusCode != http.StatusServiceUnavailable || er.Error.Code != "service.unavailable" || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("with the database unreachable: %d %+v Retry-After %q, want 503 service.unavailable with Retry-After",
			resp.StatusCode, er.Error, resp.Header.Get("Retry-After"))
	}
}
