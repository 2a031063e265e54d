package phoneapi

import (
	"net/mail"
	"strconv"
	"time"

	"beaconvend/app-protocol/vend"
)

// Types shared with package vend. They are aliases, so a phoneapi.Amount is a
// vend.Amount and the money arithmetic of vend applies to it.
type (
	// Amount is money as integer minor units of a currency (schema Amount).
	Amount = vend.Amount
	// Price is Minor units of money per Per metered units (schema Price).
	Price = vend.Price
	// Currency is an ISO 4217 alphabetic code (schema Currency).
	Currency = vend.Currency
	// Unit is what a machine meters; JSON ml, s, cycle, item (schema Unit).
	Unit = vend.Unit
	// MachineKind is water, washer, dryer or vending (schema MachineKind).
	MachineKind = vend.MachineKind
	// Outcome is how a session ended; JSON e.g. "cap_reached" (schema Outcome).
	Outcome = vend.Outcome
	// SessionID is a session's id; JSON is lower-case UUID text (schema SessionID).
	SessionID = vend.SessionID
	// ErrorKind is the kind of an API error; it fixes the HTTP status (schema ErrorKind).
	ErrorKind = vend.Kind
)

// Field limits of the request types.
const (
	MaxEmailLen       = 254 // bytes
	MinPasswordLen    = 10  // bytes, at sign-up
	MaxPasswordLen    = 128 // bytes
	MaxSourceIDLen    = 64  // bytes of a payment source id
	MinIdempotencyLen = 8   // characters of an Idempotency-Key
	MaxIdempotencyLen = 128 // characters of an Idempotency-Key
)

// DeviceID names a device: 1-64 of a-z 0-9 . _ - (schema DeviceID).
type DeviceID string

// Validate returns an error of kind invalid (code "id.device") unless d is a valid device id.
func (d DeviceID) Validate() error { return vend.ValidateDeviceID(string(d)) }

// MachineID names a machine or a slot within its device: 1-32 of A-Z a-z 0-9
// . _ - (schema MachineID).
type MachineID string

// Validate returns an error of kind invalid (code "id.machine") unless m is a valid machine id.
func (m MachineID) Validate() error { return vend.ValidateMachineID(string(m)) }

// ProximityID is a rotating proximity ID as heard in a beacon frame: 8 bytes
// written as 16 lower-case hex digits (schema ProximityID).
type ProximityID string

// Validate returns ErrProximityID unless p is 16 lower-case hex digits.
func (p ProximityID) Validate() error {
	if len(p) != 16 {
		return vend.Errorf(ErrProximityID, "%q: want 16 lower-case hex digits", clip(string(p)))
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return vend.Errorf(ErrProximityID, "%q: want 16 lower-case hex digits", clip(string(p)))
		}
	}
	return nil
}

// ErrorBody is the payload of every non-2xx response (schema ErrorBody).
type ErrorBody struct {
	Kind    ErrorKind `json:"kind"`    // what the app can do; fixes the HTTP status
	Code    string    `json:"code"`    // stable dotted code, e.g. "machine.busy"
	Message string    `json:"message"` // for logs, not for users
	// Session is set with device.no_reply: the pending session whose
	// grant the machine has not acknowledged yet. Money is held and the
	// machine may still start until the session is final; follow it
	// (GetSession or SessionEvents) and cancel it with StopSession.
	Session *Session `json:"session,omitempty"`
	// Price is set with price.changed: the price now in force, in the
	// machine's currency.
	Price *Price `json:"price,omitempty"`
	// Alternatives is set with source.limit: the payment sources that
	// would take the amount now (empty when none would).
	Alternatives []string `json:"alternatives,omitempty"`
}

// Validate returns an error of kind invalid naming the bad field.
func (e *ErrorBody) Validate() error {
	if _, ok := statusOfKind[e.Kind]; !ok {
		return fieldErr("kind", "unknown kind %q", clip(string(e.Kind)))
	}
	if !validCode(e.Code) {
		return fieldErr("code", "%q is not a dotted code", clip(e.Code))
	}
	return nil
}

// ErrorResponse is the body of every non-2xx response:
// {"error":{"kind":..,"code":..,"message":..}} (schema ErrorResponse).
type ErrorResponse struct {
	Error ErrorBody `json:"error"`
}

// Validate returns an error of kind invalid naming the bad field.
func (e *ErrorResponse) Validate() error { return prefix("error", e.Error.Validate()) }

// HealthStatus answers Health (schema HealthStatus).
type HealthStatus struct {
	Status string    `json:"status"` // always "ok"
	Time   time.Time `json:"time"`   // the server's clock
}

// User is an account (schema User).
type User struct {
	ID        string    `json:"id"`
	Email     string    `json:"email"`
	CreatedAt time.Time `json:"created_at"`
}

// SignUpRequest creates an account (schema SignUpRequest).
type SignUpRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"` // MinPasswordLen..MaxPasswordLen bytes
}

// Validate returns an error of kind invalid naming the bad field.
func (r *SignUpRequest) Validate() error {
	if err := validateEmail(r.Email); err != nil {
		return err
	}
	if n := len(r.Password); n < MinPasswordLen || n > MaxPasswordLen {
		return fieldErr("password", "want %d-%d bytes, have %d", MinPasswordLen, MaxPasswordLen, n)
	}
	return nil
}

// LogInRequest exchanges email and password for a token (schema LogInRequest).
type LogInRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

// Validate returns an error of kind invalid naming the bad field.
func (r *LogInRequest) Validate() error {
	if err := validateEmail(r.Email); err != nil {
		return err
	}
	if n := len(r.Password); n < 1 || n > MaxPasswordLen {
		return fieldErr("password", "want 1-%d bytes, have %d", MaxPasswordLen, n)
	}
	return nil
}

func validateEmail(e string) error {
	if len(e) == 0 || len(e) > MaxEmailLen {
		return fieldErr("email", "want 1-%d bytes, have %d", MaxEmailLen, len(e))
	}
	a, err := mail.ParseAddress(e)
	if err != nil || a.Address != e || a.Name != "" {
		return fieldErr("email", "%q is not a plain address", clip(e))
	}
	return nil
}

// AuthToken answers SignUp and LogIn (schema AuthToken).
type AuthToken struct {
	Token     string    `json:"token"` // for "Authorization: Bearer <token>"
	ExpiresAt time.Time `json:"expires_at"`
	User      User      `json:"user"`
}

// Validate returns an error of kind invalid naming the bad field.
func (t *AuthToken) Validate() error {
	if t.Token == "" {
		return fieldErr("token", "empty")
	}
	if t.User.ID == "" {
		return fieldErr("user.id", "empty")
	}
	return nil
}

// ResolveRequest asks which device sent a proximity ID (schema ResolveRequest).
type ResolveRequest struct {
	ProximityID ProximityID `json:"proximity_id"`
	RSSI        *int        `json:"rssi,omitempty"`       // dBm, -127..20, when known
	CompanyID   *uint16     `json:"company_id,omitempty"` // Bluetooth SIG company id, when known
}

// Validate returns an error of kind invalid naming the bad field.
func (r *ResolveRequest) Validate() error {
	if err := r.ProximityID.Validate(); err != nil {
		return prefix("proximity_id", err)
	}
	if r.RSSI != nil && (*r.RSSI < -127 || *r.RSSI > 20) {
		return fieldErr("rssi", "%d dBm outside -127..20", *r.RSSI)
	}
	return nil
}

// ProximityWindow is the rotation window an ID matched: [Start, Start+2^K)
// in Unix seconds (schema ProximityWindow).
type ProximityWindow struct {
	Start int64 `json:"start"` // Unix seconds
	K     uint8 `json:"k"`     // rotation period exponent, 0..15
}

// Validate returns an error of kind invalid naming the bad field.
func (w *ProximityWindow) Validate() error {
	if w.Start < 0 {
		return fieldErr("start", "negative")
	}
	if w.K > 15 {
		return fieldErr("k", "%d above 15", w.K)
	}
	return nil
}

// Period returns the window's length, 2^K seconds.
func (w ProximityWindow) Period() time.Duration { return time.Duration(1<<(w.K&15)) * time.Second }

// DeviceState is a device's availability: idle, busy, fault, offline (schema DeviceState).
type DeviceState string

// Device states.
const (
	DeviceIdle    DeviceState = "idle"
	DeviceBusy    DeviceState = "busy"
	DeviceFault   DeviceState = "fault"
	DeviceOffline DeviceState = "offline"
)

// Valid reports whether s is a known state.
func (s DeviceState) Valid() bool {
	return s == DeviceIdle || s == DeviceBusy || s == DeviceFault || s == DeviceOffline
}

// MachineState is a machine's availability: idle, busy, fault, offline (schema MachineState).
type MachineState string

// Machine states.
const (
	MachineIdle    MachineState = "idle"
	MachineBusy    MachineState = "busy"
	MachineFault   MachineState = "fault"
	MachineOffline MachineState = "offline"
)

// Valid reports whether s is a known state.
func (s MachineState) Valid() bool { return DeviceState(s).Valid() }

// Device is a board with one or more machines (schema Device).
type Device struct {
	ID    DeviceID    `json:"id"`
	Name  string      `json:"name"`
	State DeviceState `json:"state"`
}

// Validate returns an error of kind invalid naming the bad field.
func (d *Device) Validate() error {
	if err := d.ID.Validate(); err != nil {
		return prefix("id", err)
	}
	if !d.State.Valid() {
		return fieldErr("state", "unknown state %q", clip(string(d.State)))
	}
	return nil
}

// Slot is a vending slot; its price is in its machine's currency and unit (schema Slot).
type Slot struct {
	ID        MachineID `json:"id"`
	Name      string    `json:"name"`
	Price     Price     `json:"price"`
	Available bool      `json:"available"`       // false when empty or disabled
	Empty     bool      `json:"empty,omitempty"` // sold out by the operator's count: a start is refused with slot.empty
	Stock     *uint64   `json:"stock,omitempty"` // items left by the operator's count; absent when the slot is not counted
}

// Machine is one machine of a device with its price (schema Machine).
type Machine struct {
	ID       MachineID    `json:"id"`
	Kind     MachineKind  `json:"kind"`
	Name     string       `json:"name"`
	Unit     Unit         `json:"unit"`
	Currency Currency     `json:"currency"`
	Price    Price        `json:"price"`
	State    MachineState `json:"state"`
	Slots    []Slot       `json:"slots"` // empty except for vending machines
}

// Validate returns an error of kind invalid naming the bad field.
func (m *Machine) Validate() error {
	if err := m.ID.Validate(); err != nil {
		return prefix("id", err)
	}
	if m.Kind.Unit() == 0 {
		return fieldErr("kind", "unknown kind %q", clip(string(m.Kind)))
	}
	if !m.Unit.Valid() {
		return fieldErr("unit", "unknown unit")
	}
	if err := m.Currency.Validate(); err != nil {
		return prefix("currency", err)
	}
	if err := m.Price.Validate(); err != nil {
		return prefix("price", err)
	}
	if !m.State.Valid() {
		return fieldErr("state", "unknown state %q", clip(string(m.State)))
	}
	for i, s := range m.Slots {
		if err := s.ID.Validate(); err != nil {
			return prefix("slots["+itoa(i)+"].id", err)
		}
		if err := s.Price.Validate(); err != nil {
			return prefix("slots["+itoa(i)+"].price", err)
		}
	}
	return nil
}

func validateMachines(ms []Machine) error {
	for i := range ms {
		if err := ms[i].Validate(); err != nil {
			return prefix("machines["+itoa(i)+"]", err)
		}
	}
	return nil
}

// ResolveResponse answers Resolve (schema ResolveResponse).
type ResolveResponse struct {
	Device   Device          `json:"device"`
	Window   ProximityWindow `json:"window"`
	Machines []Machine       `json:"machines"`
}

// Validate returns an error of kind invalid naming the bad field.
func (r *ResolveResponse) Validate() error {
	if err := r.Device.Validate(); err != nil {
		return prefix("device", err)
	}
	if err := r.Window.Validate(); err != nil {
		return prefix("window", err)
	}
	return validateMachines(r.Machines)
}

// DeviceResponse answers GetDevice (schema DeviceResponse).
type DeviceResponse struct {
	Device   Device    `json:"device"`
	Machines []Machine `json:"machines"`
}

// Validate returns an error of kind invalid naming the bad field.
func (r *DeviceResponse) Validate() error {
	if err := r.Device.Validate(); err != nil {
		return prefix("device", err)
	}
	return validateMachines(r.Machines)
}

// Cap is the most a session may deliver: exactly one of Units (metered
// units) or Amount (money in the machine's currency) (schema Cap).
type Cap struct {
	Units  uint64  `json:"units,omitempty"`
	Amount *Amount `json:"amount,omitempty"`
}

// Validate returns an error of kind invalid naming the bad field.
func (c *Cap) Validate() error {
	switch {
	case c.Units == 0 && c.Amount == nil, c.Units != 0 && c.Amount != nil:
		return fieldErr("cap", "want exactly one of units, amount")
	case c.Amount != nil:
		if err := c.Amount.Currency.Validate(); err != nil {
			return prefix("cap.amount.currency", err)
		}
		if c.Amount.Minor <= 0 {
			return fieldErr("cap.amount.minor", "%d is not positive", c.Amount.Minor)
		}
	}
	return nil
}

// StartSessionRequest starts a paid session (schema StartSessionRequest).
type StartSessionRequest struct {
	Device      DeviceID    `json:"device"`
	Machine     MachineID   `json:"machine"`
	Slot        MachineID   `json:"slot,omitempty"` // vending only
	ProximityID ProximityID `json:"proximity_id"`   // the ID the phone heard; binds the grant to its window
	Cap         Cap         `json:"cap"`
	Source      string      `json:"source"` // a PaymentSource id, e.g. "wallet"
	// ExpectedPrice is the price the phone showed the payer (the machine's
	// or the slot's, from Resolve or GetDevice). When it is set and the
	// price has changed since, the start is refused with price.changed
	// (409) and the error carries the new price; nothing is held.
	ExpectedPrice *Price `json:"expected_price,omitempty"`
	// CanRelay says the phone can carry the grant to the board over BLE
	// (app-protocol/GATT.md): it heard the board's beacon with the
	// offline-capable bit. Only then does an offline device, one that does
	// not answer, or one set to relay always get a Session.Relay; without
	// it an offline device is machine.offline, as for older apps.
	CanRelay bool `json:"can_relay,omitempty"`
}

// Validate returns an error of kind invalid naming the bad field.
func (r *StartSessionRequest) Validate() error {
	if err := r.Device.Validate(); err != nil {
		return prefix("device", err)
	}
	if err := r.Machine.Validate(); err != nil {
		return prefix("machine", err)
	}
	if err := vend.ValidateSlotID(string(r.Slot)); err != nil {
		return prefix("slot", err)
	}
	if err := r.ProximityID.Validate(); err != nil {
		return prefix("proximity_id", err)
	}
	if err := r.Cap.Validate(); err != nil {
		return err
	}
	if r.ExpectedPrice != nil {
		if err := r.ExpectedPrice.Validate(); err != nil {
			return prefix("expected_price", err)
		}
	}
	return validateSource(r.Source)
}

func validateSource(s string) error {
	if len(s) == 0 || len(s) > MaxSourceIDLen {
		return fieldErr("source", "want 1-%d bytes, have %d", MaxSourceIDLen, len(s))
	}
	return nil
}

// SessionState is where a session is in its life (schema SessionState).
type SessionState string

// Session states. Settled, Refunded, Failed, Expired, Released and Voided
// are final. Until a session is final, money may still be charged: in
// particular a pending session whose start answered device.no_reply may
// still start the machine until its start-by bound has passed.
const (
	StatePending    SessionState = "pending"    // funds held; the device has not acknowledged the grant yet (it may still start the machine until the start-by bound passes)
	StateAuthorized SessionState = "authorized" // the grant is sent; the machine has not started
	StateRunning    SessionState = "running"    // the machine delivers
	StateEnding     SessionState = "ending"     // stopped or capped; waiting for the usage report
	StateUnreported SessionState = "unreported" // no usage report in time: the machine is free, the hold stays for a settlement window
	StateSettled    SessionState = "settled"    // usage captured, the rest released
	StateRefunded   SessionState = "refunded"   // nothing delivered; the hold released
	StateFailed     SessionState = "failed"     // could not hold or authorize
	StateExpired    SessionState = "expired"    // never acknowledged by its start-by bound; the hold released
	StateReleased   SessionState = "released"   // unreported through its settlement window; the hold released
	StateVoided     SessionState = "voided"     // unreported, released in full by the operator
)

// Valid reports whether s is a known state.
func (s SessionState) Valid() bool {
	switch s {
	case StatePending, StateAuthorized, StateRunning, StateEnding, StateUnreported,
		StateSettled, StateRefunded, StateFailed, StateExpired, StateReleased, StateVoided:
		return true
	}
	return false
}

// Final reports whether s is a state a session never leaves.
func (s SessionState) Final() bool {
	return s == StateSettled || s == StateRefunded || s == StateFailed || s == StateExpired ||
		s == StateReleased || s == StateVoided
}

// Session is a paid session on one machine (schema Session).
type Session struct {
	ID        SessionID    `json:"id"`
	Device    DeviceID     `json:"device"`
	Machine   MachineID    `json:"machine"`
	Slot      MachineID    `json:"slot,omitempty"`
	State     SessionState `json:"state"`
	Unit      Unit         `json:"unit"`
	Price     Price        `json:"price"`
	Currency  Currency     `json:"currency"`
	Source    string       `json:"source"`    // the PaymentSource id holding the money
	Hold      Amount       `json:"hold"`      // held on the source
	CapUnits  uint64       `json:"cap_units"` // most units the board may deliver
	Units     uint64       `json:"units"`     // metered so far; final once ended
	Amount    Amount       `json:"amount"`    // cost of Units so far; captured once settled
	Outcome   Outcome      `json:"outcome,omitzero"`
	FaultCode string       `json:"fault_code,omitempty"`
	CreatedAt time.Time    `json:"created_at"`
	StartedAt time.Time    `json:"started_at,omitzero"`
	EndedAt   time.Time    `json:"ended_at,omitzero"`
	// Relay, when set, is the grant for the phone to carry to the board
	// over BLE (app-protocol/GATT.md): the cloud could not reach the device
	// (offline, or no reply in time) or its operator relays every session.
	Relay *Relay `json:"relay,omitempty"`
}

// Relay is a grant the phone relays to the board: write
// gattapi.RelayGrant{Grant, Ticket} to the board's Grant characteristic.
type Relay struct {
	Grant     []byte    `json:"grant"`      // signed grant, base64 (JSON's []byte)
	Ticket    []byte    `json:"ticket"`     // signed relay ticket (device-bound nonce), base64
	ExpiresAt time.Time `json:"expires_at"` // the machine must start by then; the board refuses the grant after it
}

// UsageUpload is the body of POST /v1/sessions/{id}/usage: the signed usage
// report the phone read from the board's Receipt characteristic, as is.
type UsageUpload struct {
	Report []byte `json:"report"` // signed usage report, base64
}

// MaxUsageReport bounds an uploaded report (signed.MaxSigned).
const MaxUsageReport = 512

// Validate returns an error of kind invalid naming the bad field.
func (u *UsageUpload) Validate() error {
	if len(u.Report) == 0 {
		return fieldErr("report", "required")
	}
	if len(u.Report) > MaxUsageReport {
		return fieldErr("report", "%d bytes, limit %d", len(u.Report), MaxUsageReport)
	}
	return nil
}

// UsageAccepted answers an uploaded usage report: the session (settled or
// refunded), and what the phone acknowledges to the board: write
// gattapi.Ack{Kind: AckCloud, CloudAck} to the board's Ack characteristic
// (the board then drops the report from its outbox), or at least
// gattapi.Ack{Kind: AckPhone, Digest: ReceiptDigest}.
type UsageAccepted struct {
	Session       Session `json:"session"`
	ReceiptDigest string  `json:"receipt_digest"` // SHA-256 of the signed report, lower-case hex
	CloudAck      []byte  `json:"cloud_ack"`      // signed usage ack (signed.UsageAck), base64
	Duplicate     bool    `json:"duplicate"`      // the cloud held this report already (by phone or MQTT); nothing settled twice
}

// Validate returns an error of kind invalid naming the bad field.
func (s *Session) Validate() error {
	if s.ID.IsZero() {
		return fieldErr("id", "zero")
	}
	if err := s.Device.Validate(); err != nil {
		return prefix("device", err)
	}
	if err := s.Machine.Validate(); err != nil {
		return prefix("machine", err)
	}
	if err := vend.ValidateSlotID(string(s.Slot)); err != nil {
		return prefix("slot", err)
	}
	if !s.State.Valid() {
		return fieldErr("state", "unknown state %q", clip(string(s.State)))
	}
	if !s.Unit.Valid() {
		return fieldErr("unit", "unknown unit")
	}
	if err := s.Price.Validate(); err != nil {
		return prefix("price", err)
	}
	if err := s.Currency.Validate(); err != nil {
		return prefix("currency", err)
	}
	if s.Hold.Currency != s.Currency {
		return fieldErr("hold.currency", "%q, session is in %q", clip(string(s.Hold.Currency)), s.Currency)
	}
	if s.Amount.Currency != s.Currency {
		return fieldErr("amount.currency", "%q, session is in %q", clip(string(s.Amount.Currency)), s.Currency)
	}
	if s.Amount.Minor < 0 || s.Amount.Minor > s.Hold.Minor {
		return fieldErr("amount.minor", "%d outside 0..hold %d", s.Amount.Minor, s.Hold.Minor)
	}
	if s.Outcome != 0 && !s.Outcome.Valid() {
		return fieldErr("outcome", "unknown outcome")
	}
	return nil
}

// ProgressEvent is the data of a "progress" event: running totals of a
// session (schema ProgressEvent).
type ProgressEvent struct {
	Session SessionID    `json:"session"`
	State   SessionState `json:"state"`
	Units   uint64       `json:"units"`
	Amount  Amount       `json:"amount"`
	TS      time.Time    `json:"ts"` // when the board metered it
}

// Validate returns an error of kind invalid naming the bad field.
func (p *ProgressEvent) Validate() error {
	if p.Session.IsZero() {
		return fieldErr("session", "zero")
	}
	if !p.State.Valid() {
		return fieldErr("state", "unknown state %q", clip(string(p.State)))
	}
	if err := p.Amount.Currency.Validate(); err != nil {
		return prefix("amount.currency", err)
	}
	if p.Amount.Minor < 0 {
		return fieldErr("amount.minor", "negative")
	}
	return nil
}

// Receipt is what a settled session delivered and charged:
// Captured = floor(Units × Price), Released = Held − Captured (schema Receipt).
type Receipt struct {
	Number    string    `json:"number"`
	Session   SessionID `json:"session"`
	Device    DeviceID  `json:"device"`
	Machine   MachineID `json:"machine"`
	Slot      MachineID `json:"slot,omitempty"`
	Units     uint64    `json:"units"`
	Unit      Unit      `json:"unit"`
	Price     Price     `json:"price"`
	Currency  Currency  `json:"currency"`
	Held      Amount    `json:"held"`
	Captured  Amount    `json:"captured"`
	Released  Amount    `json:"released"`
	Outcome   Outcome   `json:"outcome"`
	Source    string    `json:"source"`              // what funded the session: "wallet"
	StartedAt time.Time `json:"started_at,omitzero"` // zero when the machine never started
	EndedAt   time.Time `json:"ended_at"`
	SettledAt time.Time `json:"settled_at"`
	// Refunded is what an operator refunded of the charge (zero: nothing);
	// Refunds its parts returned through the payer's original channels,
	// the rest went to the wallet.
	Refunded Amount       `json:"refunded,omitzero"`
	Refunds  []RefundPart `json:"refunds,omitempty"`
}

// Validate returns an error of kind invalid naming the bad field. It checks
// the receipt's arithmetic: Captured is the cost of Units and Held is
// Captured plus Released, all in Currency.
func (r *Receipt) Validate() error {
	if r.Number == "" {
		return fieldErr("number", "empty")
	}
	if r.Session.IsZero() {
		return fieldErr("session", "zero")
	}
	if err := r.Device.Validate(); err != nil {
		return prefix("device", err)
	}
	if err := r.Machine.Validate(); err != nil {
		return prefix("machine", err)
	}
	if !r.Unit.Valid() {
		return fieldErr("unit", "unknown unit")
	}
	if err := r.Currency.Validate(); err != nil {
		return prefix("currency", err)
	}
	for _, a := range []struct {
		name string
		a    Amount
	}{{"held", r.Held}, {"captured", r.Captured}, {"released", r.Released}} {
		if a.a.Currency != r.Currency {
			return fieldErr(a.name+".currency", "%q, receipt is in %q", clip(string(a.a.Currency)), r.Currency)
		}
		if a.a.Minor < 0 {
			return fieldErr(a.name+".minor", "negative")
		}
	}
	cost, err := r.Price.Cost(r.Units)
	if err != nil {
		return prefix("price", err)
	}
	if cost != r.Captured.Minor {
		return fieldErr("captured.minor", "%d, but %d units at %d/%d cost %d", r.Captured.Minor, r.Units, r.Price.Minor, r.Price.Per, cost)
	}
	if sum, err := r.Captured.Add(r.Released); err != nil || sum.Minor != r.Held.Minor {
		return fieldErr("released.minor", "captured %d + released %d != held %d", r.Captured.Minor, r.Released.Minor, r.Held.Minor)
	}
	if !r.Outcome.Valid() {
		return fieldErr("outcome", "unknown outcome")
	}
	return nil
}

// Wallet is the user's stored balance (schema Wallet).
type Wallet struct {
	Available Amount `json:"available"` // can be spent or held
	Held      Amount `json:"held"`      // backs running sessions
}

// Validate returns an error of kind invalid naming the bad field.
func (w *Wallet) Validate() error {
	if err := w.Available.Currency.Validate(); err != nil {
		return prefix("available.currency", err)
	}
	if w.Held.Currency != w.Available.Currency {
		return fieldErr("held.currency", "%q, wallet is in %q", clip(string(w.Held.Currency)), w.Available.Currency)
	}
	return nil
}

// TopUpRequest moves money from a payment source into the wallet (schema TopUpRequest).
type TopUpRequest struct {
	Amount Amount `json:"amount"`
	Source string `json:"source"` // a PaymentSource id other than "wallet"
}

// Validate returns an error of kind invalid naming the bad field.
func (r *TopUpRequest) Validate() error {
	if err := r.Amount.Currency.Validate(); err != nil {
		return prefix("amount.currency", err)
	}
	if r.Amount.Minor <= 0 {
		return fieldErr("amount.minor", "%d is not positive", r.Amount.Minor)
	}
	if err := validateSource(r.Source); err != nil {
		return err
	}
	if r.Source == "wallet" {
		return fieldErr("source", "cannot top up the wallet from itself")
	}
	return nil
}

// PaymentSourceKind is the channel of a payment source (schema PaymentSourceKind).
type PaymentSourceKind string

// Payment source kinds.
const (
	SourceWallet    PaymentSourceKind = "wallet"
	SourceCard      PaymentSourceKind = "card"
	SourceWeChatPay PaymentSourceKind = "wechat_pay"
	SourceAlipay    PaymentSourceKind = "alipay"
)

// PaymentSource is something the user can pay or top up from (schema PaymentSource).
type PaymentSource struct {
	ID      string            `json:"id"` // e.g. "wallet", "card_sandbox"
	Kind    PaymentSourceKind `json:"kind"`
	Name    string            `json:"name"` // for display, e.g. a masked card number
	Default bool              `json:"default"`
	// Test marks a development channel that moves no real money (the
	// sandbox card of a cloud configured with development: true).
	Test bool `json:"test,omitempty"`
}

// PaymentSourceList answers ListPaymentSources, the default first (schema PaymentSourceList).
type PaymentSourceList struct {
	Sources []PaymentSource `json:"sources"`
}

// Pages of ListSessions.
const (
	DefaultSessionPage = 20  // sessions per page when no limit is given
	MaxSessionPage     = 100 // the largest limit
	maxCursor          = 128 // bytes of a cursor
)

// ListSessionsParams are the query of ListSessions.
type ListSessionsParams struct {
	Limit  int    // 1..MaxSessionPage; 0 is DefaultSessionPage
	Cursor string // the Next of the previous page; empty for the first
}

// Validate returns an error of kind invalid naming the bad field.
func (p *ListSessionsParams) Validate() error {
	if p.Limit < 0 || p.Limit > MaxSessionPage {
		return fieldErr("limit", "want 1-%d", MaxSessionPage)
	}
	if len(p.Cursor) > maxCursor {
		return fieldErr("cursor", "too long")
	}
	return nil
}

// SessionList answers ListSessions: a page of the user's sessions, newest
// first (schema SessionList).
type SessionList struct {
	Sessions []Session `json:"sessions"`
	Next     string    `json:"next,omitempty"` // cursor of the next page; omitted on the last
}

// Validate returns an error of kind invalid naming the bad field.
func (l *SessionList) Validate() error {
	if l.Sessions == nil {
		return fieldErr("sessions", "missing")
	}
	for i := range l.Sessions {
		if err := l.Sessions[i].Validate(); err != nil {
			return prefix("sessions["+strconv.Itoa(i)+"]", err)
		}
	}
	if len(l.Next) > maxCursor {
		return fieldErr("next", "too long")
	}
	return nil
}

// Schemas returns the Go type of every schema in openapi.yaml's
// components/schemas, by schema name, as a zero value. The tests use it to
// keep the spec and the Go types in step.
func Schemas() map[string]any {
	return map[string]any{
		"DeviceID":            DeviceID(""),
		"MachineID":           MachineID(""),
		"SessionID":           SessionID{},
		"ProximityID":         ProximityID(""),
		"Currency":            Currency(""),
		"Amount":              Amount{},
		"Price":               Price{},
		"Unit":                Unit(0),
		"MachineKind":         MachineKind(""),
		"Outcome":             Outcome(0),
		"ErrorKind":           ErrorKind(""),
		"ErrorBody":           ErrorBody{},
		"ErrorResponse":       ErrorResponse{},
		"HealthStatus":        HealthStatus{},
		"User":                User{},
		"SignUpRequest":       SignUpRequest{},
		"LogInRequest":        LogInRequest{},
		"AuthToken":           AuthToken{},
		"ResolveRequest":      ResolveRequest{},
		"ProximityWindow":     ProximityWindow{},
		"DeviceState":         DeviceState(""),
		"MachineState":        MachineState(""),
		"Device":              Device{},
		"Slot":                Slot{},
		"Machine":             Machine{},
		"ResolveResponse":     ResolveResponse{},
		"DeviceResponse":      DeviceResponse{},
		"Cap":                 Cap{},
		"StartSessionRequest": StartSessionRequest{},
		"SessionState":        SessionState(""),
		"Session":             Session{},
		"Relay":               Relay{},
		"UsageUpload":         UsageUpload{},
		"UsageAccepted":       UsageAccepted{},
		"ProgressEvent":       ProgressEvent{},
		"Receipt":             Receipt{},
		"Wallet":              Wallet{},
		"TopUpRequest":        TopUpRequest{},
		"PaymentSourceKind":   PaymentSourceKind(""),
		"PaymentSource":       PaymentSource{},
		"PaymentSourceList":   PaymentSourceList{},
		"SessionList":         SessionList{},
		"PaymentState":        PaymentState(""),
		"Payment":             Payment{},
		"PaymentList":         PaymentList{},
		"WithdrawalRequest":   WithdrawalRequest{},
		"RefundState":         RefundState(""),
		"RefundPart":          RefundPart{},
		"WithdrawalState":     WithdrawalState(""),
		"Withdrawal":          Withdrawal{},
		"CheckoutRequest":     CheckoutRequest{},
		"CheckoutState":       CheckoutState(""),
		"Checkout":            Checkout{},
		"SetPINRequest":       SetPINRequest{},
		"StepUpThresholds":    StepUpThresholds{},
		"StepUpLimits":        StepUpLimits{},
		"StepUpSettings":      StepUpSettings{},
		"StepUpRequest":       StepUpRequest{},
		"StepUpToken":         StepUpToken{},
	}
}
