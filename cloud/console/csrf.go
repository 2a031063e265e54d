package console

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"

	"beaconvend/app-protocol/vend"
)

// ErrCSRF refuses a state-changing request whose anti-forgery token is
// missing or is not its session's (HTTP 403).
var ErrCSRF = vend.E(vend.Unauthorized, "web.csrf", "console: this form has expired or did not come from the console; reload the page and try again")

// CSRFField and CSRFHeader carry the anti-forgery token: the field of
// every form (the layout's forms and the features'), and the header htmx
// sends with every request (the layout sets hx-headers on <body>).
const (
	CSRFField  = "csrf"
	CSRFHeader = "X-CSRF-Token"
)

// csrfFor returns the anti-forgery token of the console session whose
// token is tok: an HMAC, under the console's key, of the SHA-256 of tok
// (what the store keeps). It is bound to the session: a log-out or a new
// log-in makes every earlier form stale, and another site can neither
// read nor compute it.
func (c *Console) csrfFor(tok string) string {
	h := sha256.Sum256([]byte(tok))
	m := hmac.New(sha256.New, c.opts.Key)
	m.Write([]byte("beaconvend console csrf\x00"))
	m.Write(h[:])
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// csrfToken returns the anti-forgery token of r's session, "" when r has
// no session cookie. Templates get it as .CSRF.
func (c *Console) csrfToken(r *http.Request) string {
	ck, err := r.Cookie(sessionCookie)
	if err != nil || ck.Value == "" {
		return ""
	}
	return c.csrfFor(ck.Value)
}

// checkCSRF reports whether r carries its session's token, in the
// CSRFHeader header or the CSRFField form field, and, when the browser
// names the request's origin, whether it is this host. It reads the form
// (at most 1 MiB; handlers find it in r.PostForm).
func (c *Console) checkCSRF(w http.ResponseWriter, r *http.Request) bool {
	if o := r.Header.Get("Origin"); o != "" && !sameOrigin(o, r) {
		return false
	}
	want := c.csrfToken(r)
	if want == "" {
		return false
	}
	r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
	if err := r.ParseForm(); err != nil {
		return false
	}
	got := r.Header.Get(CSRFHeader)
	if got == "" {
		got = r.PostForm.Get(CSRFField)
	}
	return hmac.Equal([]byte(got), []byte(want))
}

// sameOrigin reports whether the Origin header o names r's host.
func sameOrigin(o string, r *http.Request) bool {
	u, err := url.Parse(o)
	return err == nil && u.Host != "" && u.Host == r.Host
}
