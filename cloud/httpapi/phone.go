package httpapi

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

// storePassword adapts the spec's passwords (up to 128 bytes) to bcrypt's
// 72-byte limit in the store: longer ones are replaced, at sign-up and at
// log-in alike, by the base64 of their SHA-256 (44 bytes).
func storePassword(pw string) string {
	if len(pw) <= 72 {
		return pw
	}
	sum := sha256.Sum256([]byte(pw))
	return base64.StdEncoding.EncodeToString(sum[:])
}

func (s *Server) health(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, phoneapi.HealthStatus{Status: "ok", Time: s.now().UTC()})
}

func (s *Server) issue(w http.ResponseWriter, r *http.Request, u store.User, status int) {
	tok, err := s.st.IssueToken(r.Context(), u.ID, s.opts.TokenTTL)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, status, phoneapi.AuthToken{Token: tok, ExpiresAt: s.now().Add(s.opts.TokenTTL).UTC(),
		User: phoneapi.User{ID: u.ID, Email: u.Email, CreatedAt: u.Created.UTC()}})
}

func (s *Server) signUp(w http.ResponseWriter, r *http.Request) {
	var req phoneapi.SignUpRequest
	if err := s.decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	u, err := s.st.CreateUser(r.Context(), req.Email, storePassword(req.Password))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.issue(w, r, u, http.StatusCreated)
}

func (s *Server) logIn(w http.ResponseWriter, r *http.Request) {
	var req phoneapi.LogInRequest
	if err := s.decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	u, err := s.st.AuthenticateUser(r.Context(), req.Email, storePassword(req.Password))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.issue(w, r, u, http.StatusOK)
}

func (s *Server) logOut(w http.ResponseWriter, r *http.Request) {
	if err := s.st.RevokeToken(r.Context(), r.Context().Value(tokenKey).(string)); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) resolve(w http.ResponseWriter, r *http.Request) {
	var req phoneapi.ResolveRequest
	if err := s.decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	res, err := s.svc.Resolve(r.Context(), string(req.ProximityID))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) getDevice(w http.ResponseWriter, r *http.Request) {
	id := phoneapi.DeviceID(r.PathValue("device"))
	if err := id.Validate(); err != nil {
		s.fail(w, r, vend.Errorf(ErrField, "device: %v", err))
		return
	}
	pid := r.URL.Query().Get("proximity_id")
	if pid != "" {
		if err := phoneapi.ProximityID(pid).Validate(); err != nil {
			s.fail(w, r, vend.Errorf(ErrField, "proximity_id: %v", err))
			return
		}
	}
	res, err := s.svc.DeviceView(r.Context(), string(id), pid)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// listSessions answers ListSessions: the user's sessions, newest first,
// limit (1-100, 20) at a time, from the cursor "<created ms>.<session id>"
// of the previous page.
func (s *Server) listSessions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p := phoneapi.ListSessionsParams{Limit: phoneapi.DefaultSessionPage, Cursor: q.Get("cursor")}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 {
			s.fail(w, r, vend.Errorf(ErrField, "limit: want 1-%d", phoneapi.MaxSessionPage))
			return
		}
		p.Limit = n
	}
	if err := p.Validate(); err != nil {
		s.fail(w, r, vend.Errorf(ErrField, "%v", strings.TrimPrefix(err.Error(), "phoneapi: invalid field: ")))
		return
	}
	var cur store.SessionCursor
	if p.Cursor != "" {
		ms, id, ok := strings.Cut(p.Cursor, ".")
		n, err := strconv.ParseInt(ms, 10, 64)
		sid, err2 := vend.ParseSessionID(id)
		if !ok || err != nil || err2 != nil || n < 0 {
			s.fail(w, r, vend.Errorf(ErrField, "cursor: not a cursor of this list"))
			return
		}
		cur = store.SessionCursor{Created: n, ID: sid}
	}
	ss, next, err := s.st.UserSessions(r.Context(), userOf(r).ID, cur, p.Limit)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := phoneapi.SessionList{Sessions: make([]phoneapi.Session, 0, len(ss))}
	for _, x := range ss {
		out.Sessions = append(out.Sessions, s.svc.PhoneSession(x))
	}
	if next != (store.SessionCursor{}) {
		out.Next = strconv.FormatInt(next.Created, 10) + "." + next.ID.String()
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) startSession(w http.ResponseWriter, r *http.Request, key string, body []byte) {
	var req phoneapi.StartSessionRequest
	if err := s.decodeBytes(body, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	ss, err := s.svc.StartSession(r.Context(), userOf(r).ID, key, req)
	if err != nil {
		st, body := s.errorBody(r, err)
		if vend.CodeOf(err) == service.ErrDeviceNoReply.Code && !ss.ID.IsZero() {
			// The truth: money is held and the machine may still start
			// until the session is final. The phone waits for it (or
			// cancels it with StopSession), never says nothing was charged.
			ps := s.svc.PhoneSession(ss)
			body.Error.Session = &ps
		}
		var pc *store.PriceChangedError
		if errors.As(err, &pc) {
			p := pc.Price
			body.Error.Price = &p
		}
		if st == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "1")
		}
		writeJSON(w, st, body)
		return
	}
	writeJSON(w, http.StatusCreated, s.svc.PhoneSession(ss))
}

func (s *Server) getSession(w http.ResponseWriter, r *http.Request) {
	id, err := parseSession(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ss, err := s.st.UserSession(r.Context(), userOf(r).ID, id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.svc.PhoneSession(ss))
}

func (s *Server) stopSession(w http.ResponseWriter, r *http.Request, _ string, body []byte) {
	if len(body) > 0 {
		s.fail(w, r, vend.Errorf(ErrJSON, "StopSession takes no body"))
		return
	}
	id, err := parseSession(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ss, err := s.svc.StopSession(r.Context(), userOf(r).ID, id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.svc.PhoneSession(ss))
}

func (s *Server) getReceipt(w http.ResponseWriter, r *http.Request) {
	id, err := parseSession(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	rc, err := s.svc.Receipt(r.Context(), userOf(r).ID, id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rc)
}

func (s *Server) getWallet(w http.ResponseWriter, r *http.Request) {
	wl, err := s.svc.Wallet(r.Context(), userOf(r).ID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, wl)
}

func (s *Server) listSources(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.svc.PaymentSources())
}
