package console

import (
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

// A log-in never sends anyone off the console.
func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"/console/users":             "/console/users",
		"/console/audit?action=x":    "/console/audit?action=x",
		"":                           "/console/",
		"https://evil.example/":      "/console/",
		"//evil.example/console/":    "/console/",
		"/console//evil.example":     "/console/",
		"/console/\\evil":            "/console/",
		"/other":                     "/console/",
		"/console/x\r\nSet-Cookie:a": "/console/",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

// A CSV cell a spreadsheet would run as a formula is defused.
func TestCSVSafe(t *testing.T) {
	got := csvSafe("=1+1", "+x", "-2", "@a", "\tb", "ok", "", "a=b")
	want := []string{"'=1+1", "'+x", "'-2", "'@a", "'\tb", "ok", "", "a=b"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("csvSafe = %q, want %q", got, want)
	}
}

func testConsole() *Console {
	return &Console{opts: Options{Key: []byte("0123456789abcdef0123456789abcdef"), KeepAlive: time.Second, MaxStreams: 2,
		Secure: func(r *http.Request) bool { return r.TLS != nil }}, log: slog.New(slog.DiscardHandler)}
}

// The anti-forgery token is bound to the session: the session's own is
// taken, in the header or the form; another session's, none, or one from
// another origin is not.
func TestCSRF(t *testing.T) {
	c := testConsole()
	req := func(cookie, header, field, origin string) *http.Request {
		r := httptest.NewRequest("POST", "http://console.example/console/users", strings.NewReader(url.Values{"csrf": {field}}.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if cookie != "" {
			r.AddCookie(&http.Cookie{Name: sessionCookie, Value: cookie})
		}
		if header != "" {
			r.Header.Set(CSRFHeader, header)
		}
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		return r
	}
	mine, theirs := c.csrfFor("bvc_a"), c.csrfFor("bvc_b")
	if mine == theirs || mine == "" {
		t.Fatalf("tokens of two sessions: %q, %q", mine, theirs)
	}
	for _, tc := range []struct {
		name string
		r    *http.Request
		want bool
	}{
		{"field", req("bvc_a", "", mine, ""), true},
		{"header", req("bvc_a", mine, "", ""), true},
		{"same origin", req("bvc_a", mine, "", "http://console.example"), true},
		{"none", req("bvc_a", "", "", ""), false},
		{"another session's", req("bvc_a", theirs, theirs, ""), false},
		{"no session", req("", mine, mine, ""), false},
		{"cross origin", req("bvc_a", mine, mine, "https://evil.example"), false},
		{"truncated", req("bvc_a", mine[:10], "", ""), false},
	} {
		if got := c.checkCSRF(httptest.NewRecorder(), tc.r); got != tc.want {
			t.Errorf("%s: checkCSRF = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// The session cookie is Secure exactly when the request came over TLS
// (as Options.Secure decides), HttpOnly, SameSite=Strict, on /console/.
func TestSessionCookie(t *testing.T) {
	c := testConsole()
	for _, tls := range []bool{false, true} {
		r := httptest.NewRequest("POST", "https://console.example/console/login", nil)
		if !tls {
			r.TLS = nil
		}
		w := httptest.NewRecorder()
		c.setSession(w, r, "bvc_x", sessionFor(time.Hour))
		ck := w.Result().Cookies()[0]
		if ck.Secure != tls || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/console/" || ck.Value != "bvc_x" {
			t.Errorf("over TLS %v: cookie %+v", tls, ck)
		}
	}
}

// One error table: codes and kinds map to the statuses an operator's
// browser gets.
func TestDescribe(t *testing.T) {
	for _, c := range []struct {
		err  error
		want int
	}{
		{service.Allowed(service.Actor{Role: service.RoleViewer}, service.PermUsers), 403},
		{ErrCSRF, 403},
		{vend.Errorf(vend.E(vend.Transient, "rate.limited", "x: y"), "z"), 429},
		{vend.Errorf(ErrStreams, "1"), 429},
		{vend.Errorf(ErrFilter, "from"), 400},
		{vend.E(vend.NotFound, "operator_account.not_found", "store: x"), 404},
		{vend.E(vend.Conflict, "account.last_owner", "store: x"), 409},
		{errors.New("boom"), 500},
	} {
		if got, _, _ := describe(c.err); got != c.want {
			t.Errorf("describe(%v) = %d, want %d", c.err, got, c.want)
		}
	}
}

// An event's data lines are split so that a fragment cannot end the
// event early or forge another; streams beyond the bound are refused.
func TestStream(t *testing.T) {
	c := testConsole()
	r := httptest.NewRequest("GET", "/console/fleet/events", nil)
	w := httptest.NewRecorder()
	s, err := c.stream(w, r)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send("device-d1", "<tr>\n<td>a</td>\r\n\nevent: forged\n</tr>"); err != nil {
		t.Fatal(err)
	}
	want := "retry: 2000\n\nevent: device-d1\ndata: <tr>\ndata: <td>a</td>\ndata: \ndata: event: forged\ndata: </tr>\n\n"
	if got := w.Body.String(); got != want {
		t.Errorf("stream body:\n%q\nwant\n%q", got, want)
	}
	if ct := w.Header().Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type %q", ct)
	}
	if err := s.Send("a\nb", "x"); err == nil {
		t.Error("an event name with a line break was sent")
	}
	s2, err := c.stream(httptest.NewRecorder(), r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.stream(httptest.NewRecorder(), r); vend.CodeOf(err) != "stream.limit" {
		t.Errorf("a third stream with MaxStreams 2: %v", err)
	}
	s.Close()
	s.Close() // twice is harmless
	s3, err := c.stream(httptest.NewRecorder(), r)
	if err != nil {
		t.Errorf("a stream after one closed: %v", err)
	}
	s2.Close()
	s3.Close()
	if c.streams != 0 {
		t.Errorf("%d streams counted after all closed", c.streams)
	}
}

func sessionFor(d time.Duration) store.ConsoleSession {
	return store.ConsoleSession{Expires: time.Now().Add(d)}
}
