package webcheckout

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
)

// csrfCookie holds a random value per browser; a form's token is an HMAC
// of it, so a page on another site can neither read nor forge one, and
// SameSite=Strict keeps the cookie off cross-site posts as well.
const csrfCookie = "wc_csrf"

// session returns the browser's anti-forgery value, setting the cookie
// when the request has none (or a malformed one).
func (h *Handler) session(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(csrfCookie); err == nil && len(c.Value) == 32 {
		if _, err := hex.DecodeString(c.Value); err == nil {
			return c.Value
		}
	}
	v := randHex(16)
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: v, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: h.secure(r)})
	return v
}

func (h *Handler) secure(r *http.Request) bool { return h.opts.SecureCookies || r.TLS != nil }

// sign returns the token of a form for purpose ("checkout", "stop") and
// id (the form's ID, the checkout's ID) in the browser session sess.
func (h *Handler) sign(sess, purpose, id string) string {
	m := hmac.New(sha256.New, h.opts.Key)
	m.Write([]byte(sess))
	m.Write([]byte{0})
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write([]byte(id))
	return hex.EncodeToString(m.Sum(nil))
}

// verify reports whether tok is the token of (purpose, id) for the
// request's cookie.
func (h *Handler) verify(r *http.Request, purpose, id, tok string) bool {
	c, err := r.Cookie(csrfCookie)
	if err != nil || c.Value == "" || id == "" || len(id) > 64 {
		return false
	}
	want := h.sign(c.Value, purpose, id)
	return hmac.Equal([]byte(want), []byte(tok))
}
