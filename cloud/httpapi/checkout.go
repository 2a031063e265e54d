package httpapi

import (
	"net/http"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/service"
)

// CheckoutTokenHeader carries a checkout's token: how a payer without an
// account (or without a bearer) reads and stops the checkout.
const CheckoutTokenHeader = "X-Checkout-Token"

// optionalUser returns the bearer's user ID, "" without an Authorization
// header; a header that does not name a user is an error (a stale token
// must not silently turn a signed-in payer into a guest).
func (s *Server) optionalUser(r *http.Request) (string, error) {
	if r.Header.Get("Authorization") == "" {
		return "", nil
	}
	t, err := bearer(r)
	if err != nil {
		return "", err
	}
	u, err := s.st.UserByToken(r.Context(), t)
	if err != nil {
		return "", err
	}
	return u.ID, nil
}

// checkoutAccess reads who asks for a checkout: the bearer's user and
// the X-Checkout-Token header.
func (s *Server) checkoutAccess(r *http.Request) (service.CheckoutAccess, error) {
	u, err := s.optionalUser(r)
	if err != nil {
		return service.CheckoutAccess{}, err
	}
	a := service.CheckoutAccess{User: u, Token: r.Header.Get(CheckoutTokenHeader)}
	if a.User == "" && a.Token == "" {
		return a, vend.Errorf(ErrAuthMissing, "want Authorization: Bearer <token> or %s", CheckoutTokenHeader)
	}
	return a, nil
}

func checkoutID(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if id == "" || len(id) > 40 {
		return "", vend.Errorf(ErrField, "id: want 1-40 bytes")
	}
	return id, nil
}

// createCheckout answers CreateCheckout: 201 and the checkout with its
// token. A bearer is optional (none: a guest, limited per client address
// like a sign-up). The service is idempotent by the key itself (scoped by
// the user, or by the key alone for a guest, who must send a random key
// of at least 16 characters), so a retry returns the same checkout and
// token.
func (s *Server) createCheckout(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Idempotency-Key")
	if err := phoneapi.ValidateIdempotencyKey(key); err != nil {
		s.fail(w, r, vend.Errorf(ErrIdemKey, "%v", err))
		return
	}
	user, err := s.optionalUser(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if user == "" {
		if wait := s.guard.signUp.take(s.clientAddr(r), s.now()); wait > 0 {
			s.limited(w, r, vend.Errorf(ErrRateLimited, "too many checkouts from this address"), wait)
			return
		}
	}
	var req phoneapi.CheckoutRequest
	if err := s.decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	c, err := s.svc.Checkout(r.Context(), service.Payer{User: user, ClientIP: s.clientAddr(r)}, key, req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, c)
}

// getCheckout answers GetCheckout for the owner's bearer or the token.
func (s *Server) getCheckout(w http.ResponseWriter, r *http.Request) {
	id, err := checkoutID(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	a, err := s.checkoutAccess(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	c, err := s.svc.GetCheckout(r.Context(), id, a)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

// stopCheckout answers StopCheckout: cancelled before the session, the
// machine stopped during it.
func (s *Server) stopCheckout(w http.ResponseWriter, r *http.Request) {
	id, err := checkoutID(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	a, err := s.checkoutAccess(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	c, err := s.svc.StopCheckout(r.Context(), id, a)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

// getCheckoutReceipt answers GetCheckoutReceipt: the receipt link's
// checkout, no account needed.
func (s *Server) getCheckoutReceipt(w http.ResponseWriter, r *http.Request) {
	t := r.PathValue("token")
	if t == "" || len(t) > 100 {
		s.fail(w, r, vend.Errorf(ErrField, "token: want 1-100 bytes"))
		return
	}
	c, err := s.svc.CheckoutReceipt(r.Context(), t)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

// OperatorWebCheckoutRequest is the body of PUT
// /v1/operator/devices/{device}/machines/{machine}/web-checkout: whether
// the machine's QR web checkout may start sessions without a proximity
// ID. A printed code proves nothing about presence: anyone who has a
// photo of it can pay and start the machine from anywhere, so turn it on
// only where that is acceptable.
type OperatorWebCheckoutRequest struct {
	On *bool `json:"on"`
}

// Validate requires the field.
func (q *OperatorWebCheckoutRequest) Validate() error {
	if q.On == nil {
		return vend.Errorf(ErrField, "on: required")
	}
	return nil
}

// OperatorWebCheckout is the answer of the web checkout switch.
type OperatorWebCheckout struct {
	Device      string `json:"device"`
	Machine     string `json:"machine"`
	WebCheckout bool   `json:"web_checkout"`
}

// opSetWebCheckout turns one of the operator's machines' web checkout on
// or off with Service.SetWebCheckout (manager or owner; audited); another
// operator's device is device.not_found.
func (s *Server) opSetWebCheckout(w http.ResponseWriter, r *http.Request) {
	var req OperatorWebCheckoutRequest
	if err := s.decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	dev, mach := r.PathValue("device"), r.PathValue("machine")
	if err := s.svc.SetWebCheckout(r.Context(), operatorOf(r), dev, mach, *req.On); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, OperatorWebCheckout{Device: dev, Machine: mach, WebCheckout: *req.On})
}
