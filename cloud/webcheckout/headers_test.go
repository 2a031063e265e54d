package webcheckout_test

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// Every page carries the strict policy and no inline script or style
// (which the policy would block in a browser, silently); state is told in
// words and a shape; errors have their status.
func TestPagesPolicyAndStatus(t *testing.T) {
	f := newFake()
	srv := newServer(t, f)
	c := client(t)
	get := func(path string) (*http.Response, string) {
		t.Helper()
		res, err := c.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		return res, string(b)
	}
	inline := regexp.MustCompile(`<script(?:\s[^>]*)?>[^<]|<script>|\sstyle=|\son[a-z]+=`)
	check := func(path string, status int) string {
		t.Helper()
		res, body := get(path)
		if res.StatusCode != status {
			t.Errorf("GET %s: %d, want %d", path, res.StatusCode, status)
		}
		if csp := res.Header.Get("Content-Security-Policy"); !strings.HasPrefix(csp, "default-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("GET %s: Content-Security-Policy %q", path, csp)
		}
		if res.Header.Get("Referrer-Policy") != "no-referrer" || res.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: headers %v", path, res.Header)
		}
		if m := inline.FindString(body); m != "" {
			t.Errorf("GET %s: inline script or style %q", path, m)
		}
		return body
	}
	for _, tc := range []struct {
		state  string
		online bool
		label  string
		shape  string
	}{
		{"idle", true, "Ready", "circle"},
		{"busy", true, "In use", "square"},
		{"fault", true, "Out of order", "triangle"},
		{"idle", false, "Offline", "ring"},
	} {
		f.offer.State, f.offer.Online = tc.state, tc.online
		body := check("/m/dev1/tap1", 200)
		if !strings.Contains(body, "shape-"+tc.shape) || !strings.Contains(body, "<span>"+tc.label+"</span>") {
			t.Errorf("state %s online %v: want %q with a %s", tc.state, tc.online, tc.label, tc.shape)
		}
	}
	check("/m/dev1/nope", 404)
	check("/m/c/nope", 404)
	check("/r/nope", 404)
	f.offer.WebCheckout = false
	if body := check("/m/dev1/tap1", 403); strings.Contains(body, "<form") {
		t.Error("the web-off page has a form")
	}
	res, _ := get("/m/static/style.css")
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/css") {
		t.Errorf("style sheet: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	res, _ = get("/m/static/../webcheckout.go")
	if res.StatusCode == 200 {
		t.Error("the static route serves outside its directory")
	}
}
