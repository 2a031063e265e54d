package httpapi

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/store"
)

// Operator API types. Routes (bearer token from OperatorLogIn):
//
//	POST /v1/operator/auth/login                                  OperatorLogInRequest → OperatorToken
//	GET  /v1/operator/devices                                     {"devices": [OperatorDevice]}
//	GET  /v1/operator/devices/{device}                            OperatorDevice
//	PUT  /v1/operator/devices/{device}/machines/{machine}/price   OperatorPriceRequest → OperatorDevice (and mqttapi.SetPrices to the device)
//	GET  /v1/operator/sessions?device=&since=&until=&limit=       {"sessions": [OperatorSession]} (RFC 3339 times)
//	GET  /v1/operator/revenue?from=YYYY-MM-DD&to=YYYY-MM-DD       {"revenue": [OperatorRevenue]} (to exclusive; default the last 30 days)
//	GET  /v1/operator/sessions/unreported?limit=                  {"sessions": [OperatorSession]} (settlement window ending first, first)
//	POST /v1/operator/sessions/{session}/settle                   OperatorSettleRequest → OperatorSession (unreported → settled)
//	POST /v1/operator/sessions/{session}/void                     OperatorVoidRequest → OperatorSession (unreported → voided)
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
type (
	// OperatorLogInRequest is an operator account's email and password.
	OperatorLogInRequest struct {
		Email    string `json:"email"`
		Password string `json:"password"`
	}
	// OperatorToken answers OperatorLogIn.
	OperatorToken struct {
		Token     string    `json:"token"`
		ExpiresAt time.Time `json:"expires_at"`
		Operator  string    `json:"operator"`
		Account   string    `json:"account"`
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
		ID        string            `json:"id"`
		Name      string            `json:"name"`
		State     string            `json:"state"` // active or disabled
		Online    bool              `json:"online"`
		LastSeen  time.Time         `json:"last_seen,omitzero"`
		Telemetry json.RawMessage   `json:"telemetry,omitempty"`
		Machines  []OperatorMachine `json:"machines"`
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

const operatorTokenTTL = 12 * time.Hour

// Operator tokens are stateless (the store keeps only phone-user tokens):
// "bvo1." + base64url(account|operator|expiry unix) + "." + base64url(HMAC-SHA256),
// under Options.OperatorKey, shared by every instance. They cannot be
// revoked before they expire (12 h); disabling an account takes effect then.
func (s *Server) operatorToken(acc store.OperatorAccount, exp time.Time) string {
	payload := acc.ID + "|" + acc.OperatorID + "|" + strconv.FormatInt(exp.Unix(), 10)
	mac := hmac.New(sha256.New, s.opts.OperatorKey)
	mac.Write([]byte(payload))
	enc := base64.RawURLEncoding
	return "bvo1." + enc.EncodeToString([]byte(payload)) + "." + enc.EncodeToString(mac.Sum(nil))
}

func (s *Server) checkOperatorToken(t string) (string, error) {
	parts := strings.Split(t, ".")
	if len(s.opts.OperatorKey) < 32 || len(parts) != 3 || parts[0] != "bvo1" {
		return "", vend.Errorf(ErrAuthToken, "not an operator token")
	}
	enc := base64.RawURLEncoding
	payload, err1 := enc.DecodeString(parts[1])
	sig, err2 := enc.DecodeString(parts[2])
	mac := hmac.New(sha256.New, s.opts.OperatorKey)
	mac.Write(payload)
	if err1 != nil || err2 != nil || !hmac.Equal(sig, mac.Sum(nil)) {
		return "", vend.Errorf(ErrAuthToken, "bad operator token")
	}
	f := strings.Split(string(payload), "|")
	if len(f) != 3 {
		return "", vend.Errorf(ErrAuthToken, "bad operator token")
	}
	exp, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil || s.now().Unix() >= exp {
		return "", vend.Errorf(ErrAuthToken, "operator token expired")
	}
	return f[1], nil
}

func (s *Server) operator(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		t, err := bearer(r)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		op, err := s.checkOperatorToken(t)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), operatorKey, op)))
	}
}

func operatorOf(r *http.Request) string { return r.Context().Value(operatorKey).(string) }

func (s *Server) operatorLogIn(w http.ResponseWriter, r *http.Request) {
	var req OperatorLogInRequest
	if err := s.decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if len(s.opts.OperatorKey) < 32 {
		s.fail(w, r, errors.New("httpapi: operator API without an OperatorKey"))
		return
	}
	acc, err := s.st.AuthenticateOperator(r.Context(), req.Email, storePassword(req.Password))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	exp := s.now().Add(operatorTokenTTL).UTC().Truncate(time.Second)
	writeJSON(w, http.StatusOK, OperatorToken{Token: s.operatorToken(acc, exp), ExpiresAt: exp, Operator: acc.OperatorID, Account: acc.ID})
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
	ds, err := s.st.OperatorDevices(r.Context(), operatorOf(r))
	if err != nil {
		return OperatorDevice{}, err
	}
	for _, d := range ds {
		if d.ID == id {
			return opDevice(d), nil
		}
	}
	return OperatorDevice{}, vend.Errorf(store.ErrDeviceNotFound, "%s", id)
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
	writeJSON(w, http.StatusOK, map[string]any{"devices": out})
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
	if err := s.svc.SetPrices(r.Context(), operatorOf(r), dev, r.PathValue("machine"), req.Price, req.Slots); err != nil {
		s.fail(w, r, err)
		return
	}
	d, err := s.findDevice(r, dev)
	if err != nil {
		s.fail(w, r, err)
		return
	}
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

func (s *Server) opSessions(w http.ResponseWriter, r *http.Request) {
	f := store.SessionFilter{Device: r.URL.Query().Get("device")}
	var err error
	if f.Since, err = queryTime(r, "since"); err == nil {
		f.Until, err = queryTime(r, "until")
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if f.Limit, err = queryLimit(r); err != nil {
		s.fail(w, r, err)
		return
	}
	ss, err := s.st.OperatorSessions(r.Context(), operatorOf(r), f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"sessions": operatorSessions(ss)})
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
	writeJSON(w, http.StatusOK, map[string]any{"sessions": operatorSessions(ss)})
}

func (s *Server) opSettle(w http.ResponseWriter, r *http.Request) {
	var req OperatorSettleRequest
	if err := s.decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	id, err := parseSession(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ss, err := s.svc.OperatorSettle(r.Context(), operatorOf(r), id, req.Amount, req.Reason)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, operatorSession(ss))
}

func (s *Server) opVoid(w http.ResponseWriter, r *http.Request) {
	var req OperatorVoidRequest
	if err := s.decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	id, err := parseSession(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ss, err := s.svc.OperatorVoid(r.Context(), operatorOf(r), id, req.Reason)
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
	writeJSON(w, http.StatusOK, map[string]any{"revenue": out})
}
