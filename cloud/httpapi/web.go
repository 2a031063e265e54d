package httpapi

import (
	"net/http"
	"time"
)

// ClientAddr is the address of the client of r as the limits see it: the
// peer, or behind a trusted proxy the last untrusted X-Forwarded-For hop.
// The web checkout (cloud/webcheckout) records it with a guest's checkout.
func (s *Server) ClientAddr(r *http.Request) string { return s.clientAddr(r) }

// TakeGuestCheckout takes one guest checkout from the client address's
// budget, the one POST /v1/checkouts without a bearer takes from, so the
// web checkout and the API share it; it returns 0, or how long to wait
// when the budget is spent (nothing is taken then).
func (s *Server) TakeGuestCheckout(r *http.Request) time.Duration {
	return s.guard.signUp.take(s.clientAddr(r), s.now())
}
