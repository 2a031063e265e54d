package mqttapi

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"beaconvend/app-protocol/vend"
)

// Version is the payload schema version this package writes in every
// envelope's "v". Decoders refuse any other value with [ErrVersion].
const Version = 1

// Size and range limits. Every one is checked by Validate and by the
// decoders, and each leaves a worst-case message below [MaxPayload].
const (
	MaxPayload      = 16 << 10  // bytes of one MQTT payload; larger is refused before parsing
	MaxMessageIDLen = 64        // bytes of a message id
	MaxTS           = 1<<53 - 1 // largest ts, Unix ms; exact in JavaScript and Swift doubles
	MaxGrant        = 2048      // bytes of a signed grant (before base64)
	MaxReport       = 4096      // bytes of a signed usage report (before base64)
	MinKey          = 16        // bytes of a public key, at least
	MaxKey          = 512       // bytes of a public key or signature, at most
	MaxPrices       = 64        // entries in one SetPrices
	MaxMachines     = 32        // machines in one State or Telemetry
	MaxAckIDs       = 128       // ids in one Ack
	MaxTestOutputMS = 10000     // longest TestOutput pulse, in milliseconds (10 s)
	MaxRebootDelayS = 3600      // longest Reboot delay, in seconds (1 h)
	MaxText         = 256       // bytes of a free-text field (Event.Detail, Reply.Message)
	MaxShortText    = 64        // bytes of firmware, operator, codes and output names
)

// The wire "type" of each message. The Go type and the AsyncAPI message
// name is the same word in CamelCase ("set_prices" is SetPrices).
const (
	TypeState      = "state"
	TypeTelemetry  = "telemetry"
	TypeEvent      = "event"
	TypeUsage      = "usage"
	TypeReply      = "reply"
	TypeAuthorize  = "authorize"
	TypeStop       = "stop"
	TypeSetPrices  = "set_prices"
	TypeTestOutput = "test_output"
	TypeReboot     = "reboot"
	TypeRotateKey  = "rotate_key"
	TypeAck        = "ack"
)

// Reply codes a device puts in [Reply.Code] when it refuses a command. The
// payload.* codes of this package's decode errors (via vend.CodeOf) are
// reply codes too. Codes are stable; firmware may add new ones in the same
// lower-case dotted form, and the cloud treats an unknown one as a refusal.
const (
	CodeGrantInvalid   = "grant.invalid"   // the grant bytes do not parse
	CodeGrantSignature = "grant.signature" // the grant is not signed by the current cloud key
	CodeGrantExpired   = "grant.expired"   // the grant's validity window has passed
	CodeGrantReplayed  = "grant.replayed"  // this grant (session) was already used
	CodeGrantDevice    = "grant.device"    // the grant names another device or machine
	CodeMachineUnknown = "machine.unknown" // no such machine on this device
	CodeMachineBusy    = "machine.busy"    // the machine runs another session or a test
	CodeMachineFault   = "machine.fault"   // the machine or its I/O board is faulted
	CodeSessionUnknown = "session.unknown" // Stop for a session this device never had
	CodeGrantCancelled = "grant.cancelled" // the cloud cancelled this session (Stop) before the machine started
	CodeOutputUnknown  = "output.unknown"  // TestOutput names an output the machine lacks
	CodeKeyMismatch    = "key.mismatch"    // RotateKey commit does not match the pending key
	CodeCmdStale       = "cmd.stale"       // the command waited too long in the broker
	CodeUnsupported    = "cmd.unsupported" // a known type this firmware does not implement
	CodeInternal       = "internal"        // the device failed; the cloud may retry
)

// Envelope is the head of every payload: {"v":1,"id":"…","ts":…,"type":"…"}.
// It is embedded in every message type, so its members sit beside the body's.
type Envelope struct {
	V    int    `json:"v"`    // schema version; Encode sets it to Version
	ID   string `json:"id"`   // message id, 1-64 of [A-Za-z0-9_-]; consumers are idempotent on it
	TS   int64  `json:"ts"`   // sender's clock when the message was made, Unix milliseconds, 1..2^53-1
	Type string `json:"type"` // message type, e.g. "set_prices"; Encode sets it
}

// Head returns the envelope, so that code holding a [Message] can read and
// set the id and time.
func (e *Envelope) Head() *Envelope { return e }

// NewEnvelope returns an envelope with a fresh [NewMessageID] and ts = now
// in Unix milliseconds. V and Type are left for Encode to fill.
func NewEnvelope(now time.Time) Envelope {
	return Envelope{ID: NewMessageID(), TS: now.UnixMilli()}
}

// NewMessageID returns 128 random bits as 32 lower-case hex digits.
func NewMessageID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("mqttapi: crypto/rand failed: " + err.Error()) // never on Linux
	}
	return hex.EncodeToString(b[:])
}

// ValidateMessageID returns ErrID unless id is 1..64 bytes of [A-Za-z0-9_-].
func ValidateMessageID(id string) error {
	if !validToken(id, MaxMessageIDLen) {
		return vend.Errorf(ErrID, "%q: want 1-%d of A-Z a-z 0-9 _ -", clip(id), MaxMessageIDLen)
	}
	return nil
}

func (e *Envelope) validate(typ string) error {
	if e.V != Version {
		return vend.Errorf(ErrVersion, "v %d: this decoder speaks v%d", e.V, Version)
	}
	if e.Type != typ {
		return vend.Errorf(ErrType, "type %q: want %q", clip(e.Type), typ)
	}
	if err := ValidateMessageID(e.ID); err != nil {
		return err
	}
	if e.TS <= 0 || e.TS > MaxTS {
		return fieldErr("ts", "%d: want 1-%d (Unix ms)", e.TS, int64(MaxTS))
	}
	return nil
}

// Message is one payload type. Every message type is a pointer to a struct
// that embeds [Envelope]; [Registry] lists them all.
type Message interface {
	// Head returns the envelope.
	Head() *Envelope
	// TypeName returns the wire type, e.g. "set_prices".
	TypeName() string
	// Validate returns nil or an error of kind vend.Invalid (ErrVersion,
	// ErrType, ErrID or a *FieldError naming the bad field).
	Validate() error
}

// FieldError names the field of a payload that is wrong, as a JSON path
// ("modem.csq", "prices[2].price"). Its chain holds [ErrField] first, so
// vend.CodeOf gives "payload.field", then any vend error that caused it
// (vend.ErrSessionID, vend.ErrCurrency…).
type FieldError struct {
	Field string // JSON path of the offending member
	Err   error  // what is wrong with it
}

// Error reads "mqttapi: invalid field: <path>: <detail>".
func (e *FieldError) Error() string { return ErrField.Msg + ": " + e.Field + ": " + e.Err.Error() }

// Unwrap returns ErrField and the cause.
func (e *FieldError) Unwrap() []error { return []error{ErrField, e.Err} }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Err: fmt.Errorf(format, args...)}
}

func wrapField(field string, err error) error {
	if err == nil {
		return nil
	}
	return &FieldError{Field: field, Err: err}
}

// FieldOf returns the field named by the first *FieldError in err's chain, or "".
func FieldOf(err error) string {
	var fe *FieldError
	if errors.As(err, &fe) {
		return fe.Field
	}
	return ""
}

// ---- State (device → cloud, leaf state, retained) ----

// Status is a device's connection status.
type Status string

// Statuses.
const (
	Online  Status = "online"
	Offline Status = "offline"
)

// Offline reasons, in [State.Reason].
const (
	ReasonLost     = "lost"     // the last will: the connection dropped without DISCONNECT
	ReasonShutdown = "shutdown" // the controller stopped in order
	ReasonReboot   = "reboot"   // the controller is rebooting (Reboot command, update); expect it back
)

// MachineState is what a machine is doing, in the beacon's vocabulary.
type MachineState string

// Machine states.
const (
	MachineIdle    MachineState = "idle"    // ready to sell
	MachineBusy    MachineState = "busy"    // running a session, a test or a locally paid cycle
	MachineFault   MachineState = "fault"   // faulted; not selling
	MachineOffline MachineState = "offline" // not reachable by the controller, or disabled
)

func (s MachineState) valid() bool {
	switch s {
	case MachineIdle, MachineBusy, MachineFault, MachineOffline:
		return true
	}
	return false
}

// State is the device's retained presence on leaf state. The device
// publishes it online right after connecting, offline before an orderly
// disconnect, and registers an offline State with Reason "lost" as its MQTT
// last will. Consumers order presence by their own clock, not by ts (see
// the package doc).
type State struct {
	Envelope
	Status   Status           `json:"status"`             // online or offline
	Reason   string           `json:"reason,omitempty"`   // offline only: lost, shutdown or reboot
	Firmware string           `json:"firmware,omitempty"` // firmware version, required when online, 1-64 bytes
	Machines []MachineSummary `json:"machines,omitempty"` // optional, at most MaxMachines
}

// MachineSummary is one machine in a [State].
type MachineSummary struct {
	ID    string           `json:"id"`    // machine id (vend.ValidateMachineID)
	Kind  vend.MachineKind `json:"kind"`  // water, washer, dryer or vending
	State MachineState     `json:"state"` // idle, busy, fault or offline
}

// TypeName returns "state".
func (*State) TypeName() string { return TypeState }

// Validate checks the envelope and the body; see [Message].
func (m *State) Validate() error {
	if err := m.Envelope.validate(TypeState); err != nil {
		return err
	}
	switch m.Status {
	case Online:
		if m.Reason != "" {
			return fieldErr("reason", "%q: only offline states carry a reason", clip(m.Reason))
		}
		if err := checkText("firmware", m.Firmware, 1, MaxShortText); err != nil {
			return err
		}
	case Offline:
		switch m.Reason {
		case ReasonLost, ReasonShutdown, ReasonReboot:
		default:
			return fieldErr("reason", "%q: want lost, shutdown or reboot", clip(m.Reason))
		}
		if err := checkText("firmware", m.Firmware, 0, MaxShortText); err != nil {
			return err
		}
	default:
		return fieldErr("status", "%q: want online or offline", clip(string(m.Status)))
	}
	if err := checkMachineIDs(len(m.Machines), func(i int) string { return m.Machines[i].ID }); err != nil {
		return err
	}
	for i, s := range m.Machines {
		p := fmt.Sprintf("machines[%d]", i)
		if s.Kind.Unit() == 0 {
			return fieldErr(p+".kind", "%q: want water, washer, dryer or vending", clip(string(s.Kind)))
		}
		if !s.State.valid() {
			return fieldErr(p+".state", "%q: want idle, busy, fault or offline", clip(string(s.State)))
		}
	}
	return nil
}

// ---- Telemetry (device → cloud, leaf telemetry, QoS 0) ----

// Registration is the modem's network registration (3GPP +CREG/+CEREG stat).
type Registration string

// Registrations.
const (
	RegHome      Registration = "home"      // registered, home network
	RegRoaming   Registration = "roaming"   // registered, roaming
	RegSearching Registration = "searching" // not registered, searching
	RegDenied    Registration = "denied"    // registration denied
	RegUnknown   Registration = "unknown"   // anything else
)

// Radio technologies, in [Modem.Tech].
var techs = map[string]bool{
	"gsm": true, "egprs": true, "umts": true, "hspa": true, "lte": true,
	"lte-m": true, "nb-iot": true, "nr": true, "unknown": true,
}

// Telemetry is the device's periodic health report on leaf telemetry (QoS 0,
// not retained, not acked): the next one supersedes a lost one.
type Telemetry struct {
	Envelope
	UptimeS     uint64          `json:"uptime_s"`           // seconds since the controller started
	Modem       *Modem          `json:"modem,omitempty"`    // absent on boards without a cellular modem
	Board       Board           `json:"board"`              // the serial I/O board link
	OutboxDepth uint32          `json:"outbox_depth"`       // uplink messages waiting for an Ack
	Machines    []MachineStatus `json:"machines,omitempty"` // at most MaxMachines
}

// Modem is the cellular modem's view of the network.
type Modem struct {
	RSSIdBm      *int         `json:"rssi_dbm,omitempty"` // received signal, dBm, -150..0; absent when unknown
	CSQ          int          `json:"csq"`                // AT+CSQ rssi index 0..31, or 99 for unknown
	Registration Registration `json:"registration"`       // home, roaming, searching, denied or unknown
	Operator     string       `json:"operator,omitempty"` // network name or MCC+MNC, up to 64 bytes
	Tech         string       `json:"tech"`               // gsm, egprs, umts, hspa, lte, lte-m, nb-iot, nr or unknown
}

// Board is the health of the link to the serial I/O board.
type Board struct {
	Status              string `json:"status"`               // ok or fault
	FaultCode           string `json:"fault_code,omitempty"` // dotted code, required when status is fault
	ConsecutiveFailures uint32 `json:"consecutive_failures"` // failed transactions in a row, 0 when healthy
}

// MachineStatus is one machine in a [Telemetry].
type MachineStatus struct {
	ID       string         `json:"id"`               // machine id
	State    MachineState   `json:"state"`            // idle, busy, fault or offline
	Session  vend.SessionID `json:"session,omitzero"` // the running session, if any
	Counters Counters       `json:"counters"`         // lifetime totals
	// Jammed lists the slots of a vending machine that are out of service
	// (a jammed spiral, a drop sensor that never saw the item), at most
	// MaxJammedSlots, each once. A start for one of them is refused by the
	// cloud (slot.jammed) instead of holding the payer's funds.
	Jammed []string `json:"jammed,omitempty"`
}

// MaxJammedSlots bounds MachineStatus.Jammed.
const MaxJammedSlots = 64

// Counters are a machine's lifetime totals since commissioning, kept in the
// journal, never reset, so the cloud can reconcile them against usage reports.
type Counters struct {
	Unit          vend.Unit `json:"unit"`           // unit of UnitsTotal: ml, s, cycle or item
	UnitsTotal    uint64    `json:"units_total"`    // metered units delivered, all sessions and local sales
	SessionsTotal uint64    `json:"sessions_total"` // sessions ended
	FaultsTotal   uint64    `json:"faults_total"`   // faults raised
}

// TypeName returns "telemetry".
func (*Telemetry) TypeName() string { return TypeTelemetry }

// Validate checks the envelope and the body; see [Message].
func (m *Telemetry) Validate() error {
	if err := m.Envelope.validate(TypeTelemetry); err != nil {
		return err
	}
	if mo := m.Modem; mo != nil {
		if mo.RSSIdBm != nil && (*mo.RSSIdBm < -150 || *mo.RSSIdBm > 0) {
			return fieldErr("modem.rssi_dbm", "%d: want -150..0", *mo.RSSIdBm)
		}
		if (mo.CSQ < 0 || mo.CSQ > 31) && mo.CSQ != 99 {
			return fieldErr("modem.csq", "%d: want 0-31 or 99", mo.CSQ)
		}
		switch mo.Registration {
		case RegHome, RegRoaming, RegSearching, RegDenied, RegUnknown:
		default:
			return fieldErr("modem.registration", "%q: want home, roaming, searching, denied or unknown", clip(string(mo.Registration)))
		}
		if err := checkText("modem.operator", mo.Operator, 0, MaxShortText); err != nil {
			return err
		}
		if !techs[mo.Tech] {
			return fieldErr("modem.tech", "%q: want gsm, egprs, umts, hspa, lte, lte-m, nb-iot, nr or unknown", clip(mo.Tech))
		}
	}
	switch m.Board.Status {
	case "ok":
		if m.Board.FaultCode != "" {
			return fieldErr("board.fault_code", "%q: only a faulted board has one", clip(m.Board.FaultCode))
		}
	case "fault":
		if err := checkCode("board.fault_code", m.Board.FaultCode); err != nil {
			return err
		}
	default:
		return fieldErr("board.status", "%q: want ok or fault", clip(m.Board.Status))
	}
	if err := checkMachineIDs(len(m.Machines), func(i int) string { return m.Machines[i].ID }); err != nil {
		return err
	}
	for i, s := range m.Machines {
		p := fmt.Sprintf("machines[%d]", i)
		if !s.State.valid() {
			return fieldErr(p+".state", "%q: want idle, busy, fault or offline", clip(string(s.State)))
		}
		if !s.Counters.Unit.Valid() {
			return fieldErr(p+".counters.unit", "%d: want ml, s, cycle or item", uint8(s.Counters.Unit))
		}
		if len(s.Jammed) > MaxJammedSlots {
			return fieldErr(p+".jammed", "%d slots: want at most %d", len(s.Jammed), MaxJammedSlots)
		}
		for j, slot := range s.Jammed {
			if slot == "" {
				return fieldErr(fmt.Sprintf("%s.jammed[%d]", p, j), "empty slot id")
			}
			if err := wrapField(fmt.Sprintf("%s.jammed[%d]", p, j), vend.ValidateSlotID(slot)); err != nil {
				return err
			}
			if slices.Contains(s.Jammed[:j], slot) {
				return fieldErr(fmt.Sprintf("%s.jammed[%d]", p, j), "%q listed twice", slot)
			}
		}
	}
	return nil
}

// ---- Event (device → cloud, leaf evt) ----

// EventKind says what happened.
type EventKind string

// Event kinds.
const (
	EventAuthorized    EventKind = "authorized"     // a grant was accepted; amount is the cap
	EventStarted       EventKind = "started"        // the machine started delivering
	EventProgress      EventKind = "progress"       // metered so far: units, unit, amount
	EventEnded         EventKind = "ended"          // the session ended: final units, amount, outcome
	EventFault         EventKind = "fault"          // the board or a machine faulted: fault_code
	EventDoor          EventKind = "door"           // a door opened or closed: detail is "open" or "closed"
	EventPowerRestored EventKind = "power_restored" // the controller came back after a power cut
	// EventClock is a clock probe: a board without a fresh estimate of the
	// cloud's clock sends it to have it acknowledged, and takes the Ack's
	// envelope time as the cloud's time. It has no body and changes nothing.
	EventClock EventKind = "clock"
)

// Event is a session or machine event on leaf evt. Which members are
// required depends on Kind; see Validate and the AsyncAPI document. The
// cloud acknowledges every event with [Ack].
type Event struct {
	Envelope
	Kind      EventKind      `json:"kind"`                 // what happened
	Session   vend.SessionID `json:"session,omitzero"`     // the session, for session kinds
	Machine   string         `json:"machine,omitempty"`    // machine id; empty for board-wide events
	Units     *uint64        `json:"units,omitempty"`      // metered units so far (progress) or in all (ended), in Unit
	Unit      vend.Unit      `json:"unit,omitzero"`        // unit of Units; present exactly when Units is
	Amount    *vend.Amount   `json:"amount,omitempty"`     // authorized: the cap; progress/ended: cost of Units
	Outcome   vend.Outcome   `json:"outcome,omitzero"`     // ended only
	FaultCode string         `json:"fault_code,omitempty"` // dotted code; fault, and ended with outcome fault
	Detail    string         `json:"detail,omitempty"`     // free text up to 256 bytes; door: open or closed
}

// TypeName returns "event".
func (*Event) TypeName() string { return TypeEvent }

// Validate checks the envelope and the body; see [Message].
func (m *Event) Validate() error {
	if err := m.Envelope.validate(TypeEvent); err != nil {
		return err
	}
	var needSession, needMachine, needUnits, needAmount bool
	switch m.Kind {
	case EventAuthorized:
		needSession, needMachine, needAmount = true, true, true
	case EventStarted:
		needSession, needMachine = true, true
	case EventProgress, EventEnded:
		needSession, needMachine, needUnits, needAmount = true, true, true, true
	case EventFault:
		if err := checkCode("fault_code", m.FaultCode); err != nil {
			return err
		}
	case EventDoor:
		needMachine = true
		if m.Detail != "open" && m.Detail != "closed" {
			return fieldErr("detail", "%q: a door event says open or closed", clip(m.Detail))
		}
	case EventPowerRestored, EventClock:
	default:
		return fieldErr("kind", "%q: want authorized, started, progress, ended, fault, door, power_restored or clock", clip(string(m.Kind)))
	}
	if needSession && m.Session.IsZero() {
		return fieldErr("session", "required for %s", m.Kind)
	}
	if m.Machine != "" || needMachine {
		if err := vend.ValidateMachineID(m.Machine); err != nil {
			return wrapField("machine", err)
		}
	}
	if needUnits && m.Units == nil {
		return fieldErr("units", "required for %s", m.Kind)
	}
	if (m.Units == nil) != (m.Unit == 0) {
		return fieldErr("unit", "units and unit come together")
	}
	if m.Unit != 0 && !m.Unit.Valid() {
		return fieldErr("unit", "%d: want ml, s, cycle or item", uint8(m.Unit))
	}
	if needAmount && m.Amount == nil {
		return fieldErr("amount", "required for %s", m.Kind)
	}
	if m.Amount != nil {
		if err := checkAmount("amount", *m.Amount); err != nil {
			return err
		}
	}
	if m.Kind == EventEnded {
		if !m.Outcome.Valid() {
			return fieldErr("outcome", "%d: required for ended", uint8(m.Outcome))
		}
		if m.Outcome == vend.OutcomeFault {
			if err := checkCode("fault_code", m.FaultCode); err != nil {
				return err
			}
		} else if m.FaultCode != "" {
			return fieldErr("fault_code", "only with outcome fault")
		}
	} else if m.Outcome != 0 {
		return fieldErr("outcome", "only ended events carry one")
	}
	if m.Kind != EventFault && m.Kind != EventEnded && m.FaultCode != "" {
		return fieldErr("fault_code", "only fault and ended events carry one")
	}
	return checkText("detail", m.Detail, 0, MaxText)
}

// ---- Usage (device → cloud, leaf usage) ----

// Usage carries one signed usage report on leaf usage. Report is the exact
// canonical byte encoding signed by the device key (package
// app-protocol/signed); this package treats it as opaque and JSON renders it
// as standard base64. Session and Seq are unsigned routing copies: the
// settling code must use the values inside Report and may reject a Usage
// whose copies disagree. The cloud acknowledges it with [Ack].
type Usage struct {
	Envelope
	Session vend.SessionID `json:"session"` // the session the report settles
	Seq     uint64         `json:"seq"`     // the device's usage report counter, from 1, +1 per report
	Report  []byte         `json:"report"`  // signed canonical report, 1..MaxReport bytes
}

// TypeName returns "usage".
func (*Usage) TypeName() string { return TypeUsage }

// Validate checks the envelope and the body; see [Message].
func (m *Usage) Validate() error {
	if err := m.Envelope.validate(TypeUsage); err != nil {
		return err
	}
	if m.Session.IsZero() {
		return fieldErr("session", "required")
	}
	if m.Seq == 0 {
		return fieldErr("seq", "0: counts from 1")
	}
	return checkBytes("report", m.Report, 1, MaxReport)
}

// ---- Reply (device → cloud, leaf reply) ----

// Reply is the device's answer to one command on leaf reply, matched by
// CmdID. A device replies to every command except [Ack]; for a command id it
// has already handled it sends the stored reply again without acting twice.
type Reply struct {
	Envelope
	CmdID     string `json:"cmd_id"`               // id of the command answered
	OK        bool   `json:"ok"`                   // true: done (or accepted for later, e.g. Reboot)
	Code      string `json:"code,omitempty"`       // reason code when OK is false, e.g. "grant.expired"
	Message   string `json:"message,omitempty"`    // human-readable detail, up to 256 bytes
	PublicKey []byte `json:"public_key,omitempty"` // RotateKey{which: device} proposal only: the pending public key
}

// NewReply returns the reply to command cmdID: OK when err is nil, otherwise
// refused with vend.CodeOf(err) and err's text (clipped to MaxText bytes).
func NewReply(env Envelope, cmdID string, err error) *Reply {
	r := &Reply{Envelope: env, CmdID: cmdID, OK: err == nil}
	if err != nil {
		r.Code = vend.CodeOf(err)
		r.Message = clipText(strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == utf8.RuneError {
				return ' '
			}
			return r
		}, err.Error()), MaxText)
	}
	return r
}

// TypeName returns "reply".
func (*Reply) TypeName() string { return TypeReply }

// Validate checks the envelope and the body; see [Message].
func (m *Reply) Validate() error {
	if err := m.Envelope.validate(TypeReply); err != nil {
		return err
	}
	if err := ValidateMessageID(m.CmdID); err != nil {
		return wrapField("cmd_id", err)
	}
	if m.OK {
		if m.Code != "" {
			return fieldErr("code", "%q: an ok reply has no code", clip(m.Code))
		}
	} else if err := checkCode("code", m.Code); err != nil {
		return err
	}
	if m.PublicKey != nil {
		if !m.OK {
			return fieldErr("public_key", "only an ok reply carries one")
		}
		if err := checkBytes("public_key", m.PublicKey, MinKey, MaxKey); err != nil {
			return err
		}
	}
	return checkText("message", m.Message, 0, MaxText)
}

// ---- Commands (cloud → device, leaf cmd) ----

// Authorize asks the device to run a session on Machine. Grant is the
// cloud-signed grant (package app-protocol/signed; opaque here, base64 in
// JSON) that carries the session id, cap, price and validity; the device acts
// only on what the grant's signature covers.
type Authorize struct {
	Envelope
	Machine string `json:"machine"` // machine id the grant is for
	Grant   []byte `json:"grant"`   // signed grant, 1..MaxGrant bytes
}

// TypeName returns "authorize".
func (*Authorize) TypeName() string { return TypeAuthorize }

// Validate checks the envelope and the body; see [Message].
func (m *Authorize) Validate() error {
	if err := m.Envelope.validate(TypeAuthorize); err != nil {
		return err
	}
	if err := vend.ValidateMachineID(m.Machine); err != nil {
		return wrapField("machine", err)
	}
	return checkBytes("grant", m.Grant, 1, MaxGrant)
}

// Stop asks the device to end Session on Machine now (the payer pressed
// stop). Stopping a session that already ended is OK: the device replies ok.
type Stop struct {
	Envelope
	Session vend.SessionID `json:"session"` // session to stop
	Machine string         `json:"machine"` // machine it runs on
}

// TypeName returns "stop".
func (*Stop) TypeName() string { return TypeStop }

// Validate checks the envelope and the body; see [Message].
func (m *Stop) Validate() error {
	if err := m.Envelope.validate(TypeStop); err != nil {
		return err
	}
	if m.Session.IsZero() {
		return fieldErr("session", "required")
	}
	return wrapField("machine", vend.ValidateMachineID(m.Machine))
}

// SetPrices replaces the device's whole price table, atomically. A machine
// (or slot) missing from the table is not for sale. All prices are in one
// Currency, the device's.
type SetPrices struct {
	Envelope
	Currency vend.Currency `json:"currency"` // ISO 4217, e.g. "EUR"
	Prices   []PriceEntry  `json:"prices"`   // 1..MaxPrices entries, unique per (machine, slot)
}

// PriceEntry is the price of one machine, or one slot of a vending machine.
type PriceEntry struct {
	Machine string     `json:"machine"`        // machine id
	Slot    string     `json:"slot,omitempty"` // slot id; empty for machines without slots
	Unit    vend.Unit  `json:"unit"`           // the unit Price.Per counts; must match the machine's
	Price   vend.Price `json:"price"`          // Minor units of Currency per Per units
}

// TypeName returns "set_prices".
func (*SetPrices) TypeName() string { return TypeSetPrices }

// Validate checks the envelope and the body; see [Message].
func (m *SetPrices) Validate() error {
	if err := m.Envelope.validate(TypeSetPrices); err != nil {
		return err
	}
	if err := m.Currency.Validate(); err != nil {
		return wrapField("currency", err)
	}
	if len(m.Prices) == 0 || len(m.Prices) > MaxPrices {
		return fieldErr("prices", "%d entries: want 1-%d", len(m.Prices), MaxPrices)
	}
	seen := map[[2]string]bool{}
	for i, p := range m.Prices {
		f := fmt.Sprintf("prices[%d]", i)
		if err := vend.ValidateMachineID(p.Machine); err != nil {
			return wrapField(f+".machine", err)
		}
		if err := vend.ValidateSlotID(p.Slot); err != nil {
			return wrapField(f+".slot", err)
		}
		k := [2]string{p.Machine, p.Slot}
		if seen[k] {
			return fieldErr(f, "duplicate machine %q slot %q", p.Machine, p.Slot)
		}
		seen[k] = true
		if !p.Unit.Valid() {
			return fieldErr(f+".unit", "%d: want ml, s, cycle or item", uint8(p.Unit))
		}
		if err := p.Price.Validate(); err != nil {
			return wrapField(f+".price", err)
		}
	}
	return nil
}

// TestOutput asks the device to switch one output of an idle machine ON for
// DurationMS milliseconds and OFF again (service check). The device refuses
// with machine.busy while a session runs.
type TestOutput struct {
	Envelope
	Machine    string `json:"machine"`     // machine id
	Output     string `json:"output"`      // output name from the board profile, e.g. "valve", 1-64 of [a-z0-9._-]
	DurationMS uint32 `json:"duration_ms"` // milliseconds ON, 1..MaxTestOutputMS
}

// TypeName returns "test_output".
func (*TestOutput) TypeName() string { return TypeTestOutput }

// Validate checks the envelope and the body; see [Message].
func (m *TestOutput) Validate() error {
	if err := m.Envelope.validate(TypeTestOutput); err != nil {
		return err
	}
	if err := vend.ValidateMachineID(m.Machine); err != nil {
		return wrapField("machine", err)
	}
	if err := checkCode("output", m.Output); err != nil {
		return err
	}
	if m.DurationMS == 0 || m.DurationMS > MaxTestOutputMS {
		return fieldErr("duration_ms", "%d: want 1-%d", m.DurationMS, MaxTestOutputMS)
	}
	return nil
}

// Reboot asks the device to reboot after DelayS seconds and after every
// running session has ended (never mid-session). It replies ok first.
type Reboot struct {
	Envelope
	DelayS uint32 `json:"delay_s"` // seconds to wait, 0..MaxRebootDelayS
}

// TypeName returns "reboot".
func (*Reboot) TypeName() string { return TypeReboot }

// Validate checks the envelope and the body; see [Message].
func (m *Reboot) Validate() error {
	if err := m.Envelope.validate(TypeReboot); err != nil {
		return err
	}
	if m.DelayS > MaxRebootDelayS {
		return fieldErr("delay_s", "%d: want 0-%d", m.DelayS, MaxRebootDelayS)
	}
	return nil
}

// KeyRole names whose key a [RotateKey] rotates.
type KeyRole string

// Key roles.
const (
	KeyDevice KeyRole = "device" // the device's signing key (usage reports)
	KeyCloud  KeyRole = "cloud"  // the cloud's signing key (grants), as trusted by the device
)

// RotateKey rotates a key.
//
// Which "cloud": PublicKey is the new cloud public key and Signature is the
// current cloud key's signature over it (canonical bytes defined by
// app-protocol/signed; opaque here), so that whoever can publish on cmd
// cannot plant a key. The device verifies, stores it atomically and
// replies.
//
// Which "device", in two steps so that no report is ever signed by a key the
// cloud does not know: without PublicKey (propose) the device makes a new
// key pair, keeps it pending and replies ok with the new public key in
// [Reply.PublicKey] (the same one again for a repeated command id); with
// PublicKey (commit) equal to the pending key, the device switches to it,
// or replies key.mismatch.
type RotateKey struct {
	Envelope
	Which     KeyRole `json:"which"`                // device or cloud
	PublicKey []byte  `json:"public_key,omitempty"` // cloud: new key (required); device: commit the pending key
	Signature []byte  `json:"signature,omitempty"`  // cloud only (required): the current cloud key's signature
}

// TypeName returns "rotate_key".
func (*RotateKey) TypeName() string { return TypeRotateKey }

// Validate checks the envelope and the body; see [Message].
func (m *RotateKey) Validate() error {
	if err := m.Envelope.validate(TypeRotateKey); err != nil {
		return err
	}
	switch m.Which {
	case KeyCloud:
		if err := checkBytes("public_key", m.PublicKey, MinKey, MaxKey); err != nil {
			return err
		}
		return checkBytes("signature", m.Signature, MinKey, MaxKey)
	case KeyDevice:
		if m.PublicKey != nil {
			if err := checkBytes("public_key", m.PublicKey, MinKey, MaxKey); err != nil {
				return err
			}
		}
		if m.Signature != nil {
			return fieldErr("signature", "only a cloud rotation carries one")
		}
		return nil
	}
	return fieldErr("which", "%q: want device or cloud", clip(string(m.Which)))
}

// Ack is the cloud's application-level acknowledgement of device uplinks
// (events and usage reports) by message id, sent on cmd once they are
// durably stored. The device's outbox keeps each message, and resends it
// after reconnecting, until its id arrives in an Ack: a PUBACK only says the
// broker has it. The device does not reply to an Ack, and ignores ids it
// does not hold.
type Ack struct {
	Envelope
	IDs []string `json:"ids"` // 1..MaxAckIDs message ids
}

// TypeName returns "ack".
func (*Ack) TypeName() string { return TypeAck }

// Validate checks the envelope and the body; see [Message].
func (m *Ack) Validate() error {
	if err := m.Envelope.validate(TypeAck); err != nil {
		return err
	}
	if len(m.IDs) == 0 || len(m.IDs) > MaxAckIDs {
		return fieldErr("ids", "%d ids: want 1-%d", len(m.IDs), MaxAckIDs)
	}
	for i, id := range m.IDs {
		if err := ValidateMessageID(id); err != nil {
			return wrapField(fmt.Sprintf("ids[%d]", i), err)
		}
	}
	return nil
}

// ---- helpers ----

// checkText requires min..max bytes of valid UTF-8 without control characters.
func checkText(field, s string, min, max int) error {
	if len(s) < min || len(s) > max {
		if min > 0 && s == "" {
			return fieldErr(field, "required")
		}
		return fieldErr(field, "%d bytes: want %d-%d", len(s), min, max)
	}
	if !utf8.ValidString(s) {
		return fieldErr(field, "not UTF-8")
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return fieldErr(field, "control character %U", r)
		}
	}
	return nil
}

// checkCode requires a stable code: 1..64 bytes of [a-z0-9._-] starting with a letter.
func checkCode(field, s string) error {
	if s == "" {
		return fieldErr(field, "required")
	}
	if len(s) > MaxShortText || s[0] < 'a' || s[0] > 'z' {
		return fieldErr(field, "%q: want 1-%d of a-z 0-9 . _ - starting with a letter", clip(s), MaxShortText)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fieldErr(field, "%q: want 1-%d of a-z 0-9 . _ - starting with a letter", clip(s), MaxShortText)
		}
	}
	return nil
}

func checkBytes(field string, b []byte, min, max int) error {
	if len(b) < min || len(b) > max {
		if len(b) == 0 {
			return fieldErr(field, "required")
		}
		return fieldErr(field, "%d bytes: want %d-%d", len(b), min, max)
	}
	return nil
}

func checkAmount(field string, a vend.Amount) error {
	if err := a.Currency.Validate(); err != nil {
		return wrapField(field+".currency", err)
	}
	if a.Minor < 0 {
		return fieldErr(field+".minor", "%d: negative", a.Minor)
	}
	return nil
}

// clipText shortens s to at most max bytes on a rune boundary.
func clipText(s string, max int) string {
	if len(s) <= max {
		return s
	}
	s = s[:max]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// checkMachineIDs checks the ids of a machines[] member of n entries: at
// most MaxMachines, each valid, none twice.
func checkMachineIDs(n int, id func(i int) string) error {
	if n > MaxMachines {
		return fieldErr("machines", "%d entries: want at most %d", n, MaxMachines)
	}
	seen := make(map[string]bool, n)
	for i := 0; i < n; i++ {
		p := fmt.Sprintf("machines[%d].id", i)
		if err := vend.ValidateMachineID(id(i)); err != nil {
			return wrapField(p, err)
		}
		if seen[id(i)] {
			return fieldErr(p, "%q: duplicate", id(i))
		}
		seen[id(i)] = true
	}
	return nil
}
