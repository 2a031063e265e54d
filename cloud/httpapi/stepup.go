package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/cloud/service"
)

// stepUpRoutes registers the step-up operations: SetPIN, GetStepUpSettings,
// SetStepUpThresholds and StepUp. The X-Step-Up-Token header of any
// request reaches the service through the context (ServeHTTP), where
// service.RequireStepUp spends it.
func (s *Server) stepUpRoutes(m *http.ServeMux) {
	m.HandleFunc("PUT /v1/me/pin", s.user(s.setPIN))
	m.HandleFunc("GET /v1/me/step-up", s.user(s.getStepUp))
	m.HandleFunc("PUT /v1/me/step-up", s.user(s.setStepUp))
	m.HandleFunc("POST /v1/auth/step-up", s.user(s.stepUp))
}

// withStepUp puts the request's X-Step-Up-Token into its context.
func withStepUp(r *http.Request) *http.Request {
	if t := r.Header.Get(phoneapi.StepUpHeader); t != "" {
		return r.WithContext(service.WithStepUpToken(r.Context(), strings.TrimSpace(t)))
	}
	return r
}

// failStepUp is fail with Retry-After until the end of a PIN lock.
func (s *Server) failStepUp(w http.ResponseWriter, r *http.Request, err error) {
	var le *service.PINLockedError
	if errors.As(err, &le) {
		secs := int64(le.Until.Sub(s.now()).Seconds()) + 1
		if secs < 1 {
			secs = 1
		}
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	}
	s.fail(w, r, err)
}

// stepUpRefusal reports whether a recorded answer is a step-up refusal
// (403 step_up.*, 429 step_up.locked). Such an answer is not the outcome
// of the request but a demand for proof: it is not stored under the
// Idempotency-Key, so the same request sent again with X-Step-Up-Token
// runs.
func stepUpRefusal(status int, body []byte) bool {
	if status != http.StatusForbidden && status != http.StatusTooManyRequests {
		return false
	}
	var e phoneapi.ErrorResponse
	return json.Unmarshal(body, &e) == nil && strings.HasPrefix(e.Error.Code, "step_up.")
}

func (s *Server) setPIN(w http.ResponseWriter, r *http.Request) {
	var req phoneapi.SetPINRequest
	if err := s.decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.svc.SetPIN(r.Context(), userOf(r).ID, req.PIN, req.CurrentPIN); err != nil {
		s.failStepUp(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) getStepUp(w http.ResponseWriter, r *http.Request) {
	st, err := s.svc.StepUpSettings(r.Context(), userOf(r).ID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) setStepUp(w http.ResponseWriter, r *http.Request) {
	var req phoneapi.StepUpThresholds
	if err := s.decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	st, err := s.svc.SetStepUpThresholds(r.Context(), userOf(r).ID, req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) stepUp(w http.ResponseWriter, r *http.Request) {
	var req phoneapi.StepUpRequest
	if err := s.decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	tok, err := s.svc.StepUp(r.Context(), userOf(r).ID, req)
	if err != nil {
		s.failStepUp(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, tok)
}
