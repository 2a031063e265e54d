package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

// Operator API types. The routes (bearer token from OperatorLogIn) are
// described in app-protocol/openapi.yaml, tag operator, paths under
// /v1/operator/; TestOperatorRoutesAreInTheSpec keeps the two in step.
//
// An unreported session is one the device acknowledged but never reported
// within the machine's longest run plus the offline allowance: its
// machine is free again, its hold is kept until settle_by, then the
// cloud's unreported policy applies. Settling captures amount (≤ hold)
// and releases the rest; voiding releases it all; both need a reason,
// kept on the session for the audit. A device report arriving afterwards
// is still captured (late), for the difference.
//
// Another operator's device is device.not_found, never forbidden.
//
// Each account has a role (owner > manager > technician > viewer): every
// role may read; changing a price needs manager (service.PermPrice),
// settling or voiding manager (PermSettle), a refund manager (PermRefund);
// a role without the permission is refused 403 auth.forbidden, naming the
// permission. Every change is written to the operator's audit log.
//
// Log-in errors: auth.credentials (unknown email or wrong password, alike),
// auth.account_disabled (right password, disabled account). A token that is
// unknown, expired, idle too long, logged out, revoked by a password
// change or of a disabled account is auth.token. A password change with a
// wrong current password is auth.current_password (400: the session stays).
type (
	// OperatorLogInRequest is an operator account's email and password.
	OperatorLogInRequest struct {
		Email    string `json:"email"`
		Password string `json:"password"`
	}
	// OperatorToken answers OperatorLogIn: the bearer token of a new
	// console session, which ends at ExpiresAt, after IdleTimeout seconds
	// without a request, at log-out, when another session of the account
	// changes the password, or when the account is disabled.
	OperatorToken struct {
		Token       string    `json:"token"`
		ExpiresAt   time.Time `json:"expires_at"`
		IdleTimeout int64     `json:"idle_timeout_s"`
		Operator    string    `json:"operator"`
		Account     string    `json:"account"`
	}
	// OperatorPasswordRequest changes the logged-in account's password.
	OperatorPasswordRequest struct {
		CurrentPassword string `json:"current_password"`
		NewPassword     string `json:"new_password"` // 8 bytes or more
	}
	// OperatorPasswordChanged answers a password change: the session that
	// made it stays valid; RevokedSessions other sessions of the account
	// were ended.
	OperatorPasswordChanged struct {
		RevokedSessions int `json:"revoked_sessions"`
	}
	// OperatorMachine is a machine with its price and slots.
	OperatorMachine struct {
		ID       string         `json:"id"`
		Kind     string         `json:"kind"`
		Name     string         `json:"name"`
		Unit     vend.Unit      `json:"unit"`
		Currency vend.Currency  `json:"currency"`
		Price    vend.Price     `json:"price"`
		Slots    []OperatorSlot `json:"slots"`
	}
	// OperatorSlot is a vending slot with its price.
	OperatorSlot struct {
		ID    string     `json:"id"`
		Name  string     `json:"name"`
		Price vend.Price `json:"price"`
	}
	// OperatorDevice is a device with its online state and last telemetry.
	OperatorDevice struct {
		ID        string                `json:"id"`
		Name      string                `json:"name"`
		State     string                `json:"state"` // active or disabled
		Online    bool                  `json:"online"`
		LastSeen  time.Time             `json:"last_seen,omitzero"`
		Telemetry json.RawMessage       `json:"telemetry,omitempty"`
		Machines  []OperatorMachine     `json:"machines"`
		Reply     *OperatorCommandReply `json:"reply,omitempty"` // a price change only: the device's answer to the new price table
	}
	// OperatorPriceRequest sets a machine's price and, optionally, slot prices.
	OperatorPriceRequest struct {
		Price vend.Price            `json:"price"`
		Slots map[string]vend.Price `json:"slots,omitempty"`
	}
	// OperatorSession is one session on the operator's devices.
	OperatorSession struct {
		ID       vend.SessionID `json:"id"`
		Device   string         `json:"device"`
		Machine  string         `json:"machine"`
		Slot     string         `json:"slot,omitempty"`
		State    string         `json:"state"`
		Units    uint64         `json:"units"`
		Hold     vend.Amount    `json:"hold"`
		Captured vend.Amount    `json:"captured"`
		Outcome  vend.Outcome   `json:"outcome,omitzero"`
		Created  time.Time      `json:"created_at"`
		Ended    time.Time      `json:"ended_at,omitzero"`
		Reason   string         `json:"reason,omitempty"`      // audit reason of the last transition the cloud or an operator made
		SettleBy time.Time      `json:"settle_by,omitzero"`    // unreported: when the unreported policy applies
		Late     *vend.Amount   `json:"late_amount,omitempty"` // set when a report came after the session was closed: captured late
	}
	// OperatorSettleRequest settles an unreported session by hand.
	OperatorSettleRequest struct {
		Amount vend.Amount `json:"amount"` // captured; 0 ≤ amount ≤ hold, in the session's currency
		Reason string      `json:"reason"` // 1-200 bytes, kept for the audit
	}
	// OperatorVoidRequest releases an unreported session in full.
	OperatorVoidRequest struct {
		Reason string `json:"reason"` // 1-200 bytes, kept for the audit
	}
	// OperatorRevenue is what one device earned on one UTC day.
	OperatorRevenue struct {
		Device   string      `json:"device"`
		Day      string      `json:"day"` // YYYY-MM-DD
		Amount   vend.Amount `json:"amount"`
		Sessions int         `json:"sessions"`
	}
)

// consoleAuth is what the operator middleware puts in the request's
// context: the checked session and its token.
type consoleAuth struct {
	session store.ConsoleSession
	token   string
}

// operator wraps a handler of the operator API: the bearer token must be a
// live console session (store.ConsoleSessionByToken, checked against the
// database on every request, so a revocation holds from the next request
// on every instance). The handler runs with the account as the
// service.Actor of its context: the service methods that change things
// check the account's role (service.Authorize: 403 auth.forbidden) and
// write the audit log.
func (s *Server) operator(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		t, err := bearer(r)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		cs, err := s.st.ConsoleSessionByToken(r.Context(), t)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		a := cs.Account
		ctx := service.WithActor(r.Context(), service.Actor{Operator: a.OperatorID, Account: a.ID, Email: a.Email,
			Role: service.Role(a.Role), IP: s.clientAddr(r)})
		h(w, r.WithContext(context.WithValue(ctx, operatorKey, consoleAuth{session: cs, token: t})))
	}
}

func consoleOf(r *http.Request) consoleAuth { return r.Context().Value(operatorKey).(consoleAuth) }

func operatorOf(r *http.Request) string { return consoleOf(r).session.Account.OperatorID }

func (s *Server) operatorLogIn(w http.ResponseWriter, r *http.Request) {
	var req OperatorLogInRequest
	if err := s.decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	acc, err := s.st.AuthenticateOperator(r.Context(), req.Email, storePassword(req.Password))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	tok, cs, err := s.st.StartConsoleSession(r.Context(), acc.ID, store.ConsoleLimits{TTL: s.opts.OperatorSessionTTL, Idle: s.opts.OperatorIdleTimeout})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, OperatorToken{Token: tok, ExpiresAt: cs.Expires, IdleTimeout: int64(cs.Idle / time.Second),
		Operator: acc.OperatorID, Account: acc.ID})
}

func (s *Server) operatorLogOut(w http.ResponseWriter, r *http.Request) {
	if err := s.st.EndConsoleSession(r.Context(), consoleOf(r).token); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) operatorPassword(w http.ResponseWriter, r *http.Request) {
	var req OperatorPasswordRequest
	if err := s.decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	n, err := s.st.ChangeOperatorPassword(r.Context(), consoleOf(r).token, storePassword(req.CurrentPassword), storePassword(req.NewPassword))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, OperatorPasswordChanged{RevokedSessions: n})
}

func opDevice(d store.DeviceStatus) OperatorDevice {
	out := OperatorDevice{ID: d.ID, Name: d.Name, State: string(d.State), Online: d.Online, LastSeen: d.LastSeen, Machines: []OperatorMachine{}}
	if len(d.Telemetry) > 0 && string(d.Telemetry) != "{}" {
		out.Telemetry = d.Telemetry
	}
	if !out.LastSeen.IsZero() {
		out.LastSeen = out.LastSeen.UTC()
	}
	for _, m := range d.Machines {
		om := OperatorMachine{ID: m.ID, Kind: string(m.Kind), Name: m.Name, Unit: m.Unit, Currency: m.Currency, Price: m.Price, Slots: []OperatorSlot{}}
		for _, sl := range m.Slots {
			om.Slots = append(om.Slots, OperatorSlot{ID: sl.ID, Name: sl.Name, Price: sl.Price})
		}
		out.Machines = append(out.Machines, om)
	}
	return out
}

func (s *Server) findDevice(r *http.Request, id string) (OperatorDevice, error) {
	d, err := s.st.OperatorDevice(r.Context(), operatorOf(r), id)
	if err != nil {
		return OperatorDevice{}, err
	}
	return opDevice(d), nil
}

func (s *Server) opDevices(w http.ResponseWriter, r *http.Request) {
	ds, err := s.st.OperatorDevices(r.Context(), operatorOf(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := []OperatorDevice{}
	for _, d := range ds {
		out = append(out, opDevice(d))
	}
	writeJSON(w, http.StatusOK, OperatorDeviceList{Devices: out})
}

func (s *Server) opDevice(w http.ResponseWriter, r *http.Request) {
	d, err := s.findDevice(r, r.PathValue("device"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

func (s *Server) opSetPrice(w http.ResponseWriter, r *http.Request) {
	var req OperatorPriceRequest
	if err := s.decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	dev := r.PathValue("device")
	pc, err := s.svc.ChangePrice(r.Context(), dev, r.PathValue("machine"), req.Price, req.Slots)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	d, err := s.findDevice(r, dev)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	d.Reply = &pc.Reply
	writeJSON(w, http.StatusOK, d)
}

func queryTime(r *http.Request, name string) (time.Time, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		if t, err = time.Parse(time.DateOnly, v); err != nil {
			return time.Time{}, vend.Errorf(ErrField, "%s: want RFC 3339 or YYYY-MM-DD", name)
		}
	}
	return t, nil
}

// queryLimit reads the optional limit query parameter: 0 when absent, else
// a positive integer (request.field otherwise).
func queryLimit(r *http.Request) (int, error) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, vend.Errorf(ErrField, "limit: want a positive integer")
	}
	return n, nil
}

func operatorSessions(ss []store.Session) []OperatorSession {
	out := []OperatorSession{}
	for _, x := range ss {
		out = append(out, operatorSession(x))
	}
	return out
}

func operatorSession(x store.Session) OperatorSession {
	o := OperatorSession{ID: x.ID, Device: x.Device, Machine: x.Machine, Slot: x.Slot, State: string(x.State),
		Units: x.Units, Hold: vend.Amount{Minor: x.Hold, Currency: x.Currency}, Captured: vend.Amount{Minor: x.Captured, Currency: x.Currency},
		Outcome: x.Outcome, Created: x.Created.UTC(), Ended: utcOrZero(x.Ended), Reason: x.Reason}
	if x.State == store.Unreported {
		o.SettleBy = x.Deadline.UTC()
	}
	if x.Late {
		o.Late = &vend.Amount{Minor: x.LateAmount, Currency: x.Currency}
	}
	return o
}

func (s *Server) opUnreported(w http.ResponseWriter, r *http.Request) {
	limit, err := queryLimit(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ss, err := s.st.UnreportedSessions(r.Context(), operatorOf(r), limit)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, OperatorSessionList{Sessions: operatorSessions(ss)})
}

func (s *Server) opSettle(w http.ResponseWriter, r *http.Request) {
	var req OperatorSettleRequest
	s.opEnd(w, r, &req, func(ctx context.Context, op string, id vend.SessionID) (store.Session, error) {
		return s.svc.OperatorSettle(ctx, op, id, req.Amount, req.Reason)
	})
}

func (s *Server) opVoid(w http.ResponseWriter, r *http.Request) {
	var req OperatorVoidRequest
	s.opEnd(w, r, &req, func(ctx context.Context, op string, id vend.SessionID) (store.Session, error) {
		return s.svc.OperatorVoid(ctx, op, id, req.Reason)
	})
}

// opEnd decodes an operator's settle or void of an unreported session
// into req, then ends the session with end and answers its new state.
func (s *Server) opEnd(w http.ResponseWriter, r *http.Request, req any, end func(context.Context, string, vend.SessionID) (store.Session, error)) {
	if err := s.decode(w, r, req); err != nil {
		s.fail(w, r, err)
		return
	}
	id, err := parseSession(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ss, err := end(r.Context(), operatorOf(r), id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, operatorSession(ss))
}

func utcOrZero(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC()
}

func (s *Server) opRevenue(w http.ResponseWriter, r *http.Request) {
	from, err := queryTime(r, "from")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	to, err := queryTime(r, "to")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if to.IsZero() {
		to = s.now().UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)
	}
	if from.IsZero() {
		from = to.Add(-30 * 24 * time.Hour)
	}
	rs, err := s.st.RevenueByDeviceDay(r.Context(), operatorOf(r), from, to)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := []OperatorRevenue{}
	for _, x := range rs {
		out = append(out, OperatorRevenue{Device: x.Device, Day: x.Day.UTC().Format(time.DateOnly), Amount: x.Amount, Sessions: x.Sessions})
	}
	writeJSON(w, http.StatusOK, OperatorRevenueList{Revenue: out})
}

// ThrottleOperatorLogIn runs try, an operator log-in by email made
// elsewhere (the console's log-in form), under the throttle of POST
// /v1/operator/auth/login: the per-address and per-account rate limits
// (rate.limited) and the account's lock-out (auth.locked), which refuse
// without calling try. A failure of try of kind unauthorized (wrong
// password, disabled account) counts towards the lock-out; a success
// clears it. It returns try's error or the refusal, whose message says
// how long to wait.
func (s *Server) ThrottleOperatorLogIn(r *http.Request, email string, try func() error) error {
	now := s.now()
	if wait := s.guard.logIn.take(s.clientAddr(r), now); wait > 0 {
		s.guard.refused.WithLabelValues("rate.limited").Inc()
		return vend.Errorf(ErrRateLimited, "too many attempts from this address; try again in %d s", retrySeconds(wait))
	}
	acct := accountKey(scopeOperator, email)
	if wait := s.guard.account.take(scopeOperator+"|"+acct, now); wait > 0 {
		s.guard.refused.WithLabelValues("rate.limited").Inc()
		return vend.Errorf(ErrRateLimited, "too many attempts for this account; try again in %d s", retrySeconds(wait))
	}
	if s.opts.LockoutAfter <= 0 {
		return try()
	}
	th, err := s.st.LoginThrottle(r.Context(), scopeOperator, acct)
	if err != nil {
		return err
	}
	if wait := th.LockedUntil.Sub(now); wait > 0 {
		s.guard.refused.WithLabelValues("auth.locked").Inc()
		return vend.Errorf(ErrLocked, "after %d failed log-ins; try again in %d s", th.Failures, retrySeconds(wait))
	}
	err = try()
	ctx := context.WithoutCancel(r.Context())
	switch {
	case vend.KindOf(err) == vend.Unauthorized:
		if _, err := s.st.RecordLoginFailure(ctx, scopeOperator, acct, s.lockFor); err != nil {
			s.log.Error("httpapi: record failed log-in", "err", err)
		}
	case err == nil && th.Failures > 0:
		if err := s.st.ClearLoginFailures(ctx, scopeOperator, acct); err != nil {
			s.log.Error("httpapi: clear failed log-ins", "err", err)
		}
	}
	return err
}

// ForwardedTLS reports whether r came over TLS: to this listener, or to a
// trusted proxy (Limits.TrustedProxies) that says so in
// X-Forwarded-Proto. The console marks its cookies Secure then.
func (s *Server) ForwardedTLS(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	ip := peerIP(r.RemoteAddr)
	return ip.IsValid() && s.trusted(ip) && strings.EqualFold(strings.TrimSpace(r.Header.Get("X-Forwarded-Proto")), "https")
}
