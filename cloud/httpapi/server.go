package httpapi

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/payments"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

// Defaults for Options.
const (
	DefaultMaxBody      = 64 << 10            // bytes of a request body
	DefaultTokenTTL     = 30 * 24 * time.Hour // phone bearer tokens
	DefaultKeepAlive    = 15 * time.Second    // SSE keepalive comments
	DefaultPollInterval = 2 * time.Second     // SSE store polls

	DefaultOperatorSessionTTL  = 12 * time.Hour // operator console sessions, from log-in
	DefaultOperatorIdleTimeout = time.Hour      // operator console sessions, between requests
)

// Errors of the HTTP layer.
var (
	ErrJSON        = vend.E(vend.Invalid, "request.json", "httpapi: body is not valid JSON or too large")
	ErrField       = vend.E(vend.Invalid, "request.field", "httpapi: invalid field")
	ErrIdemKey     = vend.E(vend.Invalid, "request.idempotency_key", "httpapi: Idempotency-Key missing or malformed")
	ErrAuthMissing = vend.E(vend.Unauthorized, "auth.required", "auth: no bearer token")
	ErrAuthToken   = vend.E(vend.Unauthorized, "auth.token", "auth: token unknown, expired or logged out")
	ErrKeyReused   = vend.E(vend.Conflict, "idempotency.key_reused", "idempotency: key used with a different request")
	ErrInFlight    = vend.E(vend.Transient, "idempotency.in_flight", "idempotency: the first request with this key still runs")
	ErrNotFound    = vend.E(vend.NotFound, "route.not_found", "httpapi: no such route")
)

// Options configure a Server. Service is required.
type Options struct {
	Service      *service.Service
	Logger       *slog.Logger     // internal errors only; discard when nil
	Now          func() time.Time // time.Now when nil
	MaxBody      int64            // DefaultMaxBody when 0
	TokenTTL     time.Duration    // DefaultTokenTTL when 0
	KeepAlive    time.Duration    // DefaultKeepAlive when 0
	PollInterval time.Duration    // DefaultPollInterval when 0
	// OperatorSessionTTL bounds an operator console session from its
	// log-in; DefaultOperatorSessionTTL when 0.
	OperatorSessionTTL time.Duration
	// OperatorIdleTimeout ends a console session not used for this long;
	// DefaultOperatorIdleTimeout when 0.
	OperatorIdleTimeout time.Duration
	// BrokerConnected reports whether the MQTT client is connected, for
	// /readyz; nil means always.
	BrokerConnected func() bool

	// Connection bounds of NewHTTPServer and the abuse limits; see
	// limits.go for their defaults (DefaultReadTimeout, ...).
	Limits
}

// Server is the phone and operator HTTP API. It is an http.Handler.
type Server struct {
	opts Options
	svc  *service.Service
	st   *store.Store
	log  *slog.Logger
	now  func() time.Time
	mux  *http.ServeMux

	mu       sync.Mutex
	inflight map[string]bool // user + operation + key of POSTs running now

	guard *guard // rate limits, lock-outs and stream caps
}

// New returns a Server with every route of app-protocol/openapi.yaml, the
// operator API under /v1/operator/, /healthz and /readyz. Metrics are
// not served here: the cloud serves them on its admin listener.
func New(opts Options) (*Server, error) {
	if opts.Service == nil {
		return nil, errors.New("httpapi: Service is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxBody <= 0 {
		opts.MaxBody = DefaultMaxBody
	}
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = DefaultTokenTTL
	}
	if opts.KeepAlive <= 0 {
		opts.KeepAlive = DefaultKeepAlive
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.OperatorSessionTTL <= 0 {
		opts.OperatorSessionTTL = DefaultOperatorSessionTTL
	}
	if opts.OperatorIdleTimeout <= 0 {
		opts.OperatorIdleTimeout = DefaultOperatorIdleTimeout
	}
	opts.Limits = opts.Limits.withDefaults()
	s := &Server{opts: opts, svc: opts.Service, st: opts.Service.Store(), log: opts.Logger, now: opts.Now, mux: http.NewServeMux(), inflight: map[string]bool{}}
	s.guard = newGuard(opts.Limits, opts.Now, s.svc.Registry())
	m := s.mux
	m.HandleFunc("GET /v1/health", s.health)
	m.HandleFunc("POST /v1/auth/signup", s.throttle(scopeUser, s.guard.signUp, false, s.signUp))
	m.HandleFunc("POST /v1/auth/login", s.throttle(scopeUser, s.guard.logIn, true, s.logIn))
	m.HandleFunc("POST /v1/auth/logout", s.user(s.logOut))
	m.HandleFunc("POST /v1/resolve", s.user(s.resolve))
	m.HandleFunc("GET /v1/devices/{device}", s.user(s.getDevice))
	m.HandleFunc("GET /v1/sessions", s.user(s.listSessions))
	m.HandleFunc("POST /v1/sessions", s.user(s.idempotent("start", func() any { return &phoneapi.StartSessionRequest{} }, s.startSession)))
	m.HandleFunc("GET /v1/sessions/{session}", s.user(s.getSession))
	m.HandleFunc("GET /v1/sessions/{session}/events", s.user(s.sessionEvents))
	m.HandleFunc("POST /v1/sessions/{session}/stop", s.user(s.idempotent("stop", nil, s.stopSession)))
	m.HandleFunc("GET /v1/sessions/{session}/receipt", s.user(s.getReceipt))
	m.HandleFunc("GET /v1/wallet", s.user(s.getWallet))
	m.HandleFunc("POST /v1/wallet/topups", s.user(s.idempotent("topup", func() any { return &phoneapi.TopUpRequest{} }, s.topUp)))
	m.HandleFunc("GET /v1/payment-sources", s.user(s.listSources))
	m.HandleFunc("GET /v1/payments", s.user(s.listPayments))
	m.HandleFunc("GET /v1/payments/{order}", s.user(s.getPayment))
	m.HandleFunc("POST /v1/wallet/withdrawals", s.user(s.idempotent("withdraw", func() any { return &phoneapi.WithdrawalRequest{} }, s.withdraw)))
	m.HandleFunc("POST /v1/channels/{channel}/notify", s.channelNotify)
	m.HandleFunc("POST /v1/checkouts", s.createCheckout)
	m.HandleFunc("GET /v1/checkouts/{id}", s.getCheckout)
	m.HandleFunc("POST /v1/checkouts/{id}/stop", s.stopCheckout)
	m.HandleFunc("GET /v1/receipts/{token}", s.getCheckoutReceipt)
	s.stepUpRoutes(m)

	m.HandleFunc("POST /v1/operator/auth/login", s.throttle(scopeOperator, s.guard.logIn, true, s.operatorLogIn))
	m.HandleFunc("POST /v1/operator/auth/logout", s.operator(s.operatorLogOut))
	m.HandleFunc("POST /v1/operator/auth/password", s.operator(s.throttle(scopeOperator, s.guard.logIn, false, s.operatorPassword)))
	m.HandleFunc("GET /v1/operator/devices", s.operator(s.opDevices))
	m.HandleFunc("GET /v1/operator/devices/{device}", s.operator(s.opDevice))
	m.HandleFunc("PUT /v1/operator/devices/{device}/machines/{machine}/price", s.operator(s.opSetPrice))
	m.HandleFunc("PUT /v1/operator/devices/{device}/machines/{machine}/web-checkout", s.operator(s.opSetWebCheckout))
	m.HandleFunc("GET /v1/operator/sessions", s.operator(s.opSearchSessions))
	m.HandleFunc("GET /v1/operator/revenue", s.operator(s.opRevenue))
	m.HandleFunc("GET /v1/operator/sessions/unreported", s.operator(s.opUnreported))
	m.HandleFunc("POST /v1/operator/sessions/{session}/settle", s.operator(s.opSettle))
	m.HandleFunc("POST /v1/operator/sessions/{session}/void", s.operator(s.opVoid))
	s.opsRoutes(m) // remote operations and inventory (operator_ops.go)
	m.HandleFunc("POST /v1/operator/sessions/{session}/refund", s.operator(s.opRefund))
	s.alertRoutes(m)
	s.operatorMoneyRoutes(m)
	s.relayRoutes(m) // relay over BLE and claims (relay.go)

	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	m.HandleFunc("GET /readyz", s.readyz)
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, vend.Errorf(ErrNotFound, "%s %s", r.Method, r.URL.Path))
	})
	return s, nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, withStepUp(r)) }

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.svc.Ready(ctx); err != nil {
		s.fail(w, r, vend.Errorf(service.ErrUnavailable, "store: %v", err))
		return
	}
	if s.opts.BrokerConnected != nil && !s.opts.BrokerConnected() {
		s.fail(w, r, vend.Errorf(service.ErrUnavailable, "broker not connected"))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// ---- errors ----

// codeMap renames store and library codes to the phone API's.
var codeMap = map[string]string{
	"idempotency.conflict": "idempotency.key_reused",
	"email.taken":          "auth.email_taken",
	"store.input":          "request.field",
	"slot.not_found":       "machine.not_found",
	"device.disabled":      "machine.offline",
	"id.device":            "request.field",
	"id.machine":           "request.field",
	"id.slot":              "request.field",
	"id.session":           "request.field",
	"id.proximity":         "request.field",
	"proximity.id_text":    "request.field",
	"money.amount":         "request.field",
	"money.currency":       "request.field",
	"money.overflow":       "request.field",
	"money.price":          "request.field",
	"user.not_found":       "auth.token",
}

// fail writes err as the error body; the kind fixes the status
// (phoneapi.HTTPStatus). Only internal errors are logged, and their text is
// not sent.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	st, body := s.errorBody(r, err)
	if (st == http.StatusServiceUnavailable || st == http.StatusTooManyRequests) && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", "1")
	}
	if st == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="beaconvend"`)
	}
	writeJSON(w, st, body)
}

func (s *Server) errorBody(r *http.Request, err error) (int, phoneapi.ErrorResponse) {
	kind, code := vend.KindOf(err), vend.CodeOf(err)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		kind, code = vend.Transient, "service.unavailable"
	}
	if kind == vend.Internal && store.Unavailable(err) {
		// The database is unreachable or switching over: try again
		// (503 with Retry-After), not a bug (500).
		kind, code = vend.Transient, "service.unavailable"
	}
	if c, ok := codeMap[code]; ok {
		code = c
	}
	msg := err.Error()
	if kind == vend.Internal || code == "internal" {
		s.log.Error("httpapi: internal error", "method", r.Method, "path", r.URL.Path, "err", err)
		kind, code, msg = vend.Internal, "internal", "internal error"
	}
	body := phoneapi.ErrorBody{Kind: kind, Code: code, Message: msg}
	var le *payments.LimitError
	if errors.As(err, &le) {
		body.Alternatives = append([]string{}, le.Alternatives...)
	}
	return phoneapi.ErrorStatus(kind, code), phoneapi.ErrorResponse{Error: body}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"kind":"internal","code":"internal","message":"internal error"}}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// ---- request bodies ----

// decode reads a JSON body of at most MaxBody bytes into v, refusing
// unknown fields (request.field naming it), bad JSON and trailing data
// (request.json), then runs v's Validate method when it has one.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) error {
	if err := jsonBody(r); err != nil {
		return err
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBody))
	if err != nil {
		return vend.Errorf(ErrJSON, "body over %d bytes", s.opts.MaxBody)
	}
	return s.decodeBytes(b, v)
}

// jsonBody refuses a request body declared as anything but
// application/json (request.content_type, 415): text/plain and form
// bodies are what a browser posts cross-origin without asking. A request
// without a Content-Type is read as JSON (clients such as curl scripts
// and older apps send none).
func jsonBody(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return nil
	}
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
		return vend.Errorf(ErrContentType, "got %.64q", ct)
	}
	return nil
}

func (s *Server) decodeBytes(b []byte, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &te):
			return vend.Errorf(ErrField, "%s: want %s", te.Field, te.Type)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return vend.Errorf(ErrField, "%s: unknown field", strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`))
		case vend.KindOf(err) == vend.Invalid && vend.CodeOf(err) != "internal":
			return vend.Errorf(ErrField, "%v", err)
		}
		return vend.Errorf(ErrJSON, "%v", err)
	}
	if dec.More() {
		return vend.Errorf(ErrJSON, "data after the JSON value")
	}
	if val, ok := v.(interface{ Validate() error }); ok {
		if err := val.Validate(); err != nil {
			return vend.Errorf(ErrField, "%v", strings.TrimPrefix(err.Error(), "phoneapi: invalid field: "))
		}
	}
	return nil
}

// ---- authentication ----

type ctxKey int

const (
	userKey ctxKey = iota
	tokenKey
	operatorKey
)

func bearer(r *http.Request) (string, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", vend.Errorf(ErrAuthMissing, "no Authorization header")
	}
	t, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || strings.TrimSpace(t) == "" {
		return "", vend.Errorf(ErrAuthMissing, "want Authorization: Bearer <token>")
	}
	return strings.TrimSpace(t), nil
}

// user wraps a handler that needs a phone user's bearer token.
func (s *Server) user(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		t, err := bearer(r)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		u, err := s.st.UserByToken(r.Context(), t)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		ctx := context.WithValue(context.WithValue(r.Context(), userKey, u), tokenKey, t)
		h(w, r.WithContext(ctx))
	}
}

func userOf(r *http.Request) store.User { return r.Context().Value(userKey).(store.User) }

// ---- idempotency ----

// recorder captures a handler's response for the idempotency record.
type recorder struct {
	header http.Header
	status int
	body   []byte
}

func (rec *recorder) Header() http.Header    { return rec.header }
func (rec *recorder) WriteHeader(status int) { rec.status = status }
func (rec *recorder) Write(b []byte) (int, error) {
	rec.body = append(rec.body, b...)
	return len(b), nil
}

// idempotent wraps a money-moving POST: it requires an Idempotency-Key,
// replays the stored response of an earlier request with the same key and
// parameters (header Idempotent-Replayed: true), refuses the key with
// other parameters (409 idempotency.key_reused) or while the first request
// still runs on this instance (503 idempotency.in_flight), and stores
// every final response (2xx and 4xx; not 5xx, which the client retries,
// nor a step-up refusal, which the client answers with a step-up token).
// Keys are scoped to the user and the operation. The request hash covers
// method, path and the parsed request (newReq's type, re-encoded), so the
// same request with other JSON spacing or key order is the same request;
// a body that does not parse is refused before the key is looked at. A
// nil newReq takes no body.
func (s *Server) idempotent(op string, newReq func() any, h func(w http.ResponseWriter, r *http.Request, key string, body []byte)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get("Idempotency-Key")
		if err := phoneapi.ValidateIdempotencyKey(key); err != nil {
			s.fail(w, r, vend.Errorf(ErrIdemKey, "%v", err))
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBody))
		if err != nil {
			s.fail(w, r, vend.Errorf(ErrJSON, "body over %d bytes", s.opts.MaxBody))
			return
		}
		var canon []byte
		switch {
		case newReq == nil && len(body) > 0:
			s.fail(w, r, vend.Errorf(ErrJSON, "%s takes no body", op))
			return
		case newReq != nil:
			if err := jsonBody(r); err != nil {
				s.fail(w, r, err)
				return
			}
			v := newReq()
			if err := s.decodeBytes(body, v); err != nil {
				s.fail(w, r, err)
				return
			}
			if canon, err = json.Marshal(v); err != nil {
				s.fail(w, r, err)
				return
			}
		}
		u := userOf(r)
		scoped := op + ":" + key
		sum := sha256.Sum256([]byte(r.Method + " " + r.URL.Path + "\n" + string(canon)))
		hash := sum[:]
		prev, err := s.st.LookupIdempotent(r.Context(), u.ID, scoped, hash)
		switch {
		case err == nil:
			replay(w, prev)
			return
		case errors.Is(err, store.ErrIdemConflict):
			s.fail(w, r, vend.Errorf(ErrKeyReused, "key %s", key))
			return
		case !errors.Is(err, store.ErrIdemNotFound):
			s.fail(w, r, err)
			return
		}
		flight := u.ID + "\x00" + scoped
		s.mu.Lock()
		busy := s.inflight[flight]
		s.inflight[flight] = true
		s.mu.Unlock()
		if busy {
			s.fail(w, r, vend.Errorf(ErrInFlight, "key %s", key))
			return
		}
		defer func() {
			s.mu.Lock()
			delete(s.inflight, flight)
			s.mu.Unlock()
		}()
		rec := &recorder{header: http.Header{}, status: http.StatusOK}
		h(rec, r, key, body)
		if rec.status < 500 && !stepUpRefusal(rec.status, rec.body) {
			stored, err := s.st.SaveIdempotent(r.Context(), u.ID, scoped, hash, store.IdemResponse{Status: rec.status, Body: rec.body})
			switch {
			case errors.Is(err, store.ErrIdemConflict):
				s.fail(w, r, vend.Errorf(ErrKeyReused, "key %s", key))
				return
			case err != nil:
				s.log.Error("httpapi: save idempotent response", "err", err)
			case string(stored.Body) != string(rec.body) || stored.Status != rec.status:
				replay(w, stored) // a concurrent request with the same key won
				return
			}
		}
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.status)
		_, _ = w.Write(rec.body)
	}
}

func replay(w http.ResponseWriter, r store.IdemResponse) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Idempotent-Replayed", "true")
	w.WriteHeader(r.Status)
	_, _ = w.Write(r.Body)
}

func parseSession(r *http.Request) (vend.SessionID, error) {
	id, err := vend.ParseSessionID(r.PathValue("session"))
	if err != nil {
		return id, vend.Errorf(ErrField, "session: %v", err)
	}
	return id, nil
}
