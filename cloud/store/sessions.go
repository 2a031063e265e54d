package store

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/proxid"
	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
)

// Usage replay errors: the store's own statement of signed.UsageGuard's
// rule, with the same codes.
var (
	ErrUsageConflict = vend.E(vend.Conflict, "usage.conflict", "store: a different report was already accepted for this session")
	ErrSeqReused     = vend.E(vend.Conflict, "usage.seq_reused", "store: sequence number already used by another session")
)

// Start errors.
var (
	ErrPriceChanged = vend.E(vend.Conflict, "price.changed", "store: the price is not the one the payer was shown")
	ErrCapTooSmall  = vend.E(vend.Invalid, "cap.too_small", "store: the cap does not buy one unit")
)

// State is a session's state.
type State string

// Session states (the package doc's state table lists every transition).
// Pending, Authorized, Running and Ending are live: a machine has at most
// one live session, and a live session holds funds. Unreported holds
// funds but frees the machine. The others are final.
const (
	Pending    State = "pending"    // funds held, grant not yet acknowledged by the device
	Authorized State = "authorized" // the device acknowledged the grant
	Running    State = "running"    // the machine started
	Ending     State = "ending"     // the device reported the end; usage report awaited
	Unreported State = "unreported" // acknowledged, but no report within the longest run plus the offline allowance: machine freed, hold kept for the settlement window
	Settled    State = "settled"    // usage captured (> 0), the rest released
	Refunded   State = "refunded"   // usage report with nothing to charge: hold released in full
	Failed     State = "failed"     // the device refused the grant: hold released in full
	Expired    State = "expired"    // never acknowledged by its start-by bound (plus AckBound): hold released by ExpireHolds
	Released   State = "released"   // unreported through its settlement window: hold released by policy
	Voided     State = "voided"     // unreported, released in full by an operator
)

// Live reports whether st holds funds and blocks its machine.
func (st State) Live() bool {
	return st == Pending || st == Authorized || st == Running || st == Ending
}

// Holds reports whether st holds funds: a live state or unreported.
func (st State) Holds() bool { return st.Live() || st == Unreported }

const liveStates = `('pending', 'authorized', 'running', 'ending')`

// Audit reasons the store writes on a session (Session.Reason) when the
// cloud closes or parks it on its own or on an operator's word.
const (
	ReasonUnacknowledged    = "grant.unacknowledged"     // pending past its start-by bound plus AckBound
	ReasonRefused           = "device.refused"           // the device refused the grant (its code is in Fault)
	ReasonUnreported        = "unreported"               // no report within the longest run plus the offline allowance
	ReasonUnreportedRelease = "unreported.released"      // the settlement window passed: released in full (PolicyRelease)
	ReasonUnreportedCapture = "unreported.captured_last" // the settlement window passed: the units of the ended event captured (PolicyCaptureLast)
	ReasonOperatorSettled   = "operator.settled"         // an operator settled it (followed by ": " and the operator's reason)
	ReasonOperatorVoided    = "operator.voided"          // an operator released it (followed by ": " and the operator's reason)
)

// UnreportedPolicy is what happens to an unreported session when its
// settlement window passes.
type UnreportedPolicy string

// Unreported policies.
const (
	// PolicyRelease releases the hold in full (reason unreported.released):
	// the payer is not charged for what no signed report shows.
	PolicyRelease UnreportedPolicy = "release"
	// PolicyCaptureLast captures the cost of the units the device named in
	// its ended event, when it sent one (reason unreported.captured_last),
	// and releases the rest; without an ended event it releases in full.
	PolicyCaptureLast UnreportedPolicy = "capture_last"
)

// Lifecycle bounds the states an acknowledged session can wait in. The
// zero value gives the defaults.
type Lifecycle struct {
	// PerUnit is, per machine kind, the longest one unit of a cap may take
	// to deliver; a session's longest run is CapUnits × PerUnit, at most
	// MaxRun. Defaults: water 500 ms per ml (2 ml/s, a slow tap), dryer
	// 1 s per second, washer 2 h per cycle, vending 1 min per item; any
	// other kind 1 min per unit.
	PerUnit map[vend.MachineKind]time.Duration
	// MaxRun bounds one session's longest run; 24 h.
	MaxRun time.Duration
	// OfflineAllowance is added to the longest run before an acknowledged
	// session without a report becomes unreported: the time a board may
	// need to get its report out after the machine stopped; 30 min.
	OfflineAllowance time.Duration
	// SettleWindow is how long an unreported session keeps its hold,
	// waiting for a late report or an operator, before Policy applies; 72 h.
	SettleWindow time.Duration
	// Policy applies when the settlement window passes; PolicyRelease.
	Policy UnreportedPolicy
}

func (l Lifecycle) withDefaults() Lifecycle {
	per := map[vend.MachineKind]time.Duration{
		vend.KindWater: 500 * time.Millisecond, vend.KindDryer: time.Second,
		vend.KindWasher: 2 * time.Hour, vend.KindVending: time.Minute,
	}
	for k, d := range l.PerUnit {
		if d > 0 {
			per[k] = d
		}
	}
	l.PerUnit = per
	if l.MaxRun <= 0 {
		l.MaxRun = 24 * time.Hour
	}
	if l.OfflineAllowance <= 0 {
		l.OfflineAllowance = 30 * time.Minute
	}
	if l.SettleWindow <= 0 {
		l.SettleWindow = 72 * time.Hour
	}
	if l.Policy == "" {
		l.Policy = PolicyRelease
	}
	return l
}

// longestRun is the longest a session of kind with capUnits may run.
func (l Lifecycle) longestRun(kind vend.MachineKind, capUnits uint64) time.Duration {
	per, ok := l.PerUnit[kind]
	if !ok {
		per = time.Minute
	}
	if capUnits > uint64(l.MaxRun/per) {
		return l.MaxRun
	}
	return time.Duration(capUnits) * per
}

// Session is one paid use of one machine.
type Session struct {
	ID         vend.SessionID
	User       string
	Device     string
	Operator   string
	Machine    string
	Slot       string
	State      State
	Unit       vend.Unit
	Price      vend.Price
	Currency   vend.Currency
	CapUnits   uint64
	CapAmount  int64  // the payer's money cap in minor units; 0 when the cap was given in units
	Hold       int64  // minor units held at start: Price.Cost(CapUnits), never above CapAmount
	Grant      []byte // the signed grant sent to the device; nil when started without a signer
	GrantExp   time.Time
	Deadline   time.Time // pending: released after this (grant expiry + AckBound); unreported: the end of its settlement window
	Unreported time.Time // authorized, running or ending: becomes unreported after this without a report
	Window     uint32    // proximity window the phone's ID resolved in
	WindowK    uint8
	IdemKey    string
	Units      uint64 // delivered, from the usage report
	Captured   int64  // minor units of the hold moved to the operator
	Released   int64  // minor units of the hold returned to the wallet
	Outcome    vend.Outcome
	Fault      string
	Reason     string // audit reason of the last transition the cloud made on its own or an operator's word (Reason* constants)
	LastUnits  int64  // units the device named in its ended event; -1 when none came
	Late       bool   // a valid report came after the session was closed without one (late capture)
	LateAmount int64  // minor units captured late (negative: refunded late); the wallet part plus Receivable
	Receivable int64  // minor units of LateAmount the wallet could not cover: owed by the payer (user_receivable)
	Created    time.Time
	Updated    time.Time
	Started    time.Time // zero until the machine started
	Ended      time.Time // zero until the session ended
	// RelayTicket is the signed relay ticket offered to the phone with
	// the grant (SetRelayTicket); nil when the session was not relayed.
	RelayTicket []byte
	Duplicate   bool // set by StartSession when the idempotency key returned an existing session
}

// StartInput is what StartSession needs.
type StartInput struct {
	ID      vend.SessionID // zero: a new random one
	User    string
	Device  string
	Machine string
	Slot    string // "" for machines without slots; required for machines with slots
	// CapUnits is the most units the payer buys; the hold is the price's
	// Cost of it. Exactly one of CapUnits and CapAmount is set.
	CapUnits uint64
	// CapAmount is the most money (minor units of CapCurrency) the payer
	// agreed to: the store turns it into units with the price it reads in
	// the same transaction, and the hold never exceeds it.
	CapAmount   int64
	CapCurrency vend.Currency // the currency of CapAmount; must be the machine's
	// ExpectedPrice, when set, is the price the phone showed the payer:
	// a different price in the store is a *PriceChangedError (price.changed).
	ExpectedPrice *vend.Price
	IdemKey       string // the start request's idempotency key, unique per user (1-200 bytes)
	Window        uint32 // proximity window the phone's ID resolved in (copied into the grant)
	WindowK       uint8
	GrantTTL      time.Duration // the start-by bound: how long the device may take to start; 0 means 20 s
	// Sign, when set, signs the grant the store builds from the session
	// (cloud key, signed.SignGrant); it runs inside the transaction, so the
	// grant stored and sent always matches what is held.
	Sign func(signed.Grant) ([]byte, error)
}

// DefaultGrantTTL is the start-by bound of a grant when StartInput.GrantTTL is 0.
const DefaultGrantTTL = 20 * time.Second

func (in *StartInput) validate() error {
	switch {
	case vend.ValidateDeviceID(in.Device) != nil:
		return fmt.Errorf("store: start: %w", vend.ValidateDeviceID(in.Device))
	case vend.ValidateMachineID(in.Machine) != nil:
		return fmt.Errorf("store: start: %w", vend.ValidateMachineID(in.Machine))
	case vend.ValidateSlotID(in.Slot) != nil:
		return fmt.Errorf("store: start: %w", vend.ValidateSlotID(in.Slot))
	case in.User == "":
		return vend.Errorf(ErrInput, "start: no user")
	case (in.CapUnits == 0) == (in.CapAmount == 0):
		return vend.Errorf(ErrInput, "start: want exactly one of cap units (%d) and cap amount (%d)", in.CapUnits, in.CapAmount)
	case in.CapAmount < 0:
		return vend.Errorf(ErrInput, "start: cap amount %d is negative", in.CapAmount)
	case in.CapAmount > 0 && in.CapCurrency.Validate() != nil:
		return fmt.Errorf("store: start: cap currency: %w", in.CapCurrency.Validate())
	case in.CapUnits > 1<<53:
		return vend.Errorf(ErrInput, "start: cap units %d too large", in.CapUnits)
	case in.ExpectedPrice != nil && in.ExpectedPrice.Validate() != nil:
		return fmt.Errorf("store: start: expected price: %w", in.ExpectedPrice.Validate())
	case in.IdemKey == "" || len(in.IdemKey) > 200:
		return vend.Errorf(ErrInput, "start: idempotency key must be 1-200 bytes")
	case proxid.ValidateK(in.WindowK) != nil:
		return vend.Errorf(ErrInput, "start: window k %d", in.WindowK)
	case in.GrantTTL < 0:
		return vend.Errorf(ErrInput, "start: grant ttl %s", in.GrantTTL)
	}
	return nil
}

// PriceChangedError is StartSession's answer when the machine's price is
// not the one the payer was shown (StartInput.ExpectedPrice). It matches
// ErrPriceChanged (errors.Is, vend.CodeOf) and carries the price now in
// force, so the phone can show it and ask again.
type PriceChangedError struct {
	Price    vend.Price    // the current price
	Currency vend.Currency // the machine's currency
	Shown    vend.Price    // the price the payer was shown
}

// Error names both prices.
func (e *PriceChangedError) Error() string {
	return fmt.Sprintf("%s: %d per %d %s now, %d per %d shown", ErrPriceChanged.Msg,
		e.Price.Minor, e.Price.Per, e.Currency, e.Shown.Minor, e.Shown.Per)
}

// Unwrap returns ErrPriceChanged.
func (e *PriceChangedError) Unwrap() error { return ErrPriceChanged }

// StartSession creates a pending session for the machine and holds its
// cost on the user's wallet, in one transaction that reads the price once
// and decides from it the units (CapAmount turned into units), the hold
// and the grant: the hold never exceeds CapAmount, and a price other than
// ExpectedPrice is refused. A retry with the same (user, IdemKey) and the
// same device, machine, slot and cap returns the first session with
// Duplicate set; with different ones it is ErrIdemConflict. Errors:
// ErrInput and the vend ID errors, ErrUserNotFound, ErrDeviceNotFound,
// ErrDeviceDisabled, ErrMachineNotFound, ErrSlotNotFound, ErrCurrency (cap
// in another currency), *PriceChangedError (ErrPriceChanged),
// ErrCapTooSmall (the cap buys no unit), ErrMachineBusy (a live session
// exists: enforced by a unique index), ErrFunds (nothing is written), and
// the Sign function's error.
func (s *Store) StartSession(ctx context.Context, in StartInput) (Session, error) {
	if err := in.validate(); err != nil {
		return Session{}, err
	}
	if in.ID.IsZero() {
		in.ID = vend.NewSessionID()
	}
	ttl := in.GrantTTL
	if ttl == 0 {
		ttl = DefaultGrantTTL
	}
	var out Session
	err := s.tx(ctx, "start session", func(tx *sql.Tx) error {
		prev, err := s.scanSession(tx.QueryRowContext(ctx, `SELECT `+sessionCols+` FROM sessions WHERE user_id = $1 AND idem_key = $2`, in.User, in.IdemKey))
		if err == nil {
			sameCap := prev.CapAmount == in.CapAmount && (in.CapAmount > 0 || prev.CapUnits == in.CapUnits)
			if prev.Device != in.Device || prev.Machine != in.Machine || prev.Slot != in.Slot || !sameCap {
				return vend.Errorf(ErrIdemConflict, "start key %q", clip(in.IdemKey))
			}
			prev.Duplicate = true
			out = prev
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if err := s.userExists(ctx, tx, in.User); err != nil {
			return err
		}
		// A checkout's session starts only while its checkout is starting
		// (funded, not cancelled or failed meanwhile): the row lock orders
		// this start against FailCheckout.
		if id, ok := strings.CutPrefix(in.IdemKey, CheckoutKeyPrefix); ok {
			var state string
			err := tx.QueryRowContext(ctx, `SELECT state FROM checkouts WHERE id = $1 AND user_id = $2`+s.d.lockRow, id, in.User).Scan(&state)
			if errors.Is(err, sql.ErrNoRows) {
				return vend.Errorf(ErrCheckoutNotFound, "%q", clip(id))
			}
			if err != nil {
				return err
			}
			if state != string(phoneapi.CheckoutStarting) {
				return vend.Errorf(ErrCheckoutState, "checkout %s is %s", id, state)
			}
		}
		// The device, its machine and whether the machine has slots, in
		// one round trip (the transaction holds no lock while it waits).
		var op, dstate string
		var unit sql.NullInt64
		var price vend.Price
		var minor, per sql.NullInt64
		var cur, kind sql.NullString
		var nslots int
		err = tx.QueryRowContext(ctx, `SELECT d.operator_id, d.state, m.unit, m.price_minor, m.price_per, m.currency, m.kind,
			(SELECT COUNT(*) FROM machine_slots ms WHERE ms.device_id = d.id AND ms.machine_id = $2)
			FROM devices d LEFT JOIN machines m ON m.device_id = d.id AND m.id = $2 WHERE d.id = $1`,
			in.Device, in.Machine).Scan(&op, &dstate, &unit, &minor, &per, &cur, &kind, &nslots)
		if errors.Is(err, sql.ErrNoRows) {
			return vend.Errorf(ErrDeviceNotFound, "%q", in.Device)
		}
		if err != nil {
			return err
		}
		if DeviceState(dstate) != DeviceActive {
			return vend.Errorf(ErrDeviceDisabled, "%s", in.Device)
		}
		if !unit.Valid {
			return vend.Errorf(ErrMachineNotFound, "%s/%s", in.Device, in.Machine)
		}
		price.Minor, price.Per = minor.Int64, uint32(per.Int64)
		if nslots > 0 || in.Slot != "" {
			var sper int64
			err = tx.QueryRowContext(ctx, `SELECT price_minor, price_per FROM machine_slots WHERE device_id = $1 AND machine_id = $2 AND id = $3`,
				in.Device, in.Machine, in.Slot).Scan(&price.Minor, &sper)
			if errors.Is(err, sql.ErrNoRows) {
				return vend.Errorf(ErrSlotNotFound, "%s/%s slot %q", in.Device, in.Machine, in.Slot)
			}
			if err != nil {
				return err
			}
			price.Per = uint32(sper)
		}
		currency := vend.Currency(cur.String)
		// Everything below uses this one reading of the price.
		if in.ExpectedPrice != nil && *in.ExpectedPrice != price {
			return &PriceChangedError{Price: price, Currency: currency, Shown: *in.ExpectedPrice}
		}
		capUnits := in.CapUnits
		if in.CapAmount > 0 {
			if in.CapCurrency != currency {
				return vend.Errorf(ErrCurrency, "start: cap in %s, the machine charges %s", in.CapCurrency, currency)
			}
			if capUnits, err = price.UnitsFor(in.CapAmount); err != nil {
				return vend.Errorf(ErrInput, "start: cap %d at %d/%d: %v", in.CapAmount, price.Minor, price.Per, err)
			}
			capUnits = min(capUnits, 1<<53)
			if capUnits == 0 {
				return vend.Errorf(ErrCapTooSmall, "%d %s at %d per %d", in.CapAmount, currency, price.Minor, price.Per)
			}
		}
		hold, err := price.Cost(capUnits)
		if err != nil {
			return vend.Errorf(ErrInput, "start: cap %d at %d/%d: %v", capUnits, price.Minor, price.Per, err)
		}
		if in.CapAmount > 0 && hold > in.CapAmount {
			return fmt.Errorf("store: start: hold %d above the cap %d (bug)", hold, in.CapAmount)
		}
		var live string
		err = tx.QueryRowContext(ctx, `SELECT id FROM sessions WHERE device_id = $1 AND machine_id = $2 AND state IN `+liveStates,
			in.Device, in.Machine).Scan(&live)
		if err == nil {
			return vend.Errorf(ErrMachineBusy, "%s/%s", in.Device, in.Machine)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		now := time.UnixMilli(s.nowMs()).UTC()
		ss := Session{ID: in.ID, User: in.User, Device: in.Device, Operator: op, Machine: in.Machine, Slot: in.Slot,
			State: Pending, Unit: vend.Unit(unit.Int64), Price: price, Currency: currency, CapUnits: capUnits, CapAmount: in.CapAmount,
			Hold: hold, GrantExp: now.Add(ttl), Window: in.Window, WindowK: in.WindowK, IdemKey: in.IdemKey,
			LastUnits: -1, Created: now, Updated: now}
		ss.Deadline = ss.GrantExp.Add(s.ackBnd)
		ss.Unreported = ss.Deadline.Add(s.life.longestRun(vend.MachineKind(kind.String), capUnits) + s.life.OfflineAllowance)
		if in.Sign != nil {
			g, err := in.Sign(signed.Grant{Session: ss.ID, Device: ss.Device, Machine: ss.Machine, Slot: ss.Slot,
				Unit: ss.Unit, Price: ss.Price, Currency: ss.Currency, CapUnits: ss.CapUnits, CapMoney: ss.Hold,
				IssuedAt: now, ExpiresAt: ss.GrantExp, Window: ss.Window, WindowK: ss.WindowK})
			if err != nil {
				return fmt.Errorf("store: start: sign grant: %w", err)
			}
			ss.Grant = g
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO sessions (id, user_id, device_id, operator_id, machine_id, slot_id, state,
			unit, price_minor, price_per, currency, cap_units, hold_minor, grant_bytes, grant_exp_ms, deadline_ms, win, win_k,
			idem_key, created_ms, updated_ms, cap_minor, unreported_ms)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $20, $21, $22)`,
			ss.ID.String(), ss.User, ss.Device, ss.Operator, ss.Machine, ss.Slot, string(ss.State),
			int(ss.Unit), ss.Price.Minor, int64(ss.Price.Per), string(ss.Currency), int64(ss.CapUnits), ss.Hold, ss.Grant,
			ss.GrantExp.UnixMilli(), ss.Deadline.UnixMilli(), int64(ss.Window), int(ss.WindowK), ss.IdemKey, now.UnixMilli(),
			ss.CapAmount, ss.Unreported.UnixMilli()); err != nil {
			return err // a unique violation (machine or key raced) is retried; the checks above then name it
		}
		if hold > 0 {
			from, err := s.account(ctx, tx, UserWallet, ss.User, ss.Currency)
			if err != nil {
				return err
			}
			to, err := s.account(ctx, tx, UserHolds, ss.User, ss.Currency)
			if err != nil {
				return err
			}
			sid := ss.ID.String()
			if _, ok, err := s.post(ctx, tx, ss.Currency,
				transfer{kind: TxHold, idemKey: "hold:" + sid, session: &sid, from: from, to: to, amount: hold}); err != nil {
				return err
			} else if !ok {
				return vend.Errorf(ErrIdemConflict, "session id %s reused", sid)
			}
		}
		out = ss
		return nil
	})
	if err != nil {
		return Session{}, err
	}
	return out, nil
}

const sessionCols = `id, user_id, device_id, operator_id, machine_id, slot_id, state, unit, price_minor, price_per, currency,
	cap_units, hold_minor, grant_bytes, grant_exp_ms, deadline_ms, win, win_k, idem_key, units, captured, released,
	outcome, fault, created_ms, updated_ms, started_ms, ended_ms, cap_minor, unreported_ms, reason, last_units, late,
	late_minor, receivable_minor, relay_ticket`

func (s *Store) scanSession(sc interface{ Scan(...any) error }) (Session, error) {
	var ss Session
	var id, state, cur string
	var unit, winK, outcome int
	var per, capU, win, units, gexp, dl, created, updated, started, ended, unrep int64
	var late int
	if err := sc.Scan(&id, &ss.User, &ss.Device, &ss.Operator, &ss.Machine, &ss.Slot, &state, &unit, &ss.Price.Minor, &per, &cur,
		&capU, &ss.Hold, &ss.Grant, &gexp, &dl, &win, &winK, &ss.IdemKey, &units, &ss.Captured, &ss.Released,
		&outcome, &ss.Fault, &created, &updated, &started, &ended, &ss.CapAmount, &unrep, &ss.Reason, &ss.LastUnits, &late,
		&ss.LateAmount, &ss.Receivable, &ss.RelayTicket); err != nil {
		return Session{}, err
	}
	if len(ss.RelayTicket) == 0 {
		ss.RelayTicket = nil
	}
	ss.Late = late != 0
	if unrep != 0 {
		ss.Unreported = time.UnixMilli(unrep).UTC()
	}
	sid, err := vend.ParseSessionID(id)
	if err != nil {
		return Session{}, err
	}
	ss.ID, ss.State, ss.Unit, ss.Price.Per, ss.Currency = sid, State(state), vend.Unit(unit), uint32(per), vend.Currency(cur)
	ss.CapUnits, ss.Window, ss.WindowK, ss.Units, ss.Outcome = uint64(capU), uint32(win), uint8(winK), uint64(units), vend.Outcome(outcome)
	ss.GrantExp, ss.Deadline = time.UnixMilli(gexp).UTC(), time.UnixMilli(dl).UTC()
	ss.Created, ss.Updated = time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
	if started != 0 {
		ss.Started = time.UnixMilli(started).UTC()
	}
	if ended != 0 {
		ss.Ended = time.UnixMilli(ended).UTC()
	}
	if len(ss.Grant) == 0 {
		ss.Grant = nil
	}
	return ss, nil
}

func (s *Store) getSession(ctx context.Context, q queryer, id vend.SessionID) (Session, error) {
	ss, err := s.scanSession(q.QueryRowContext(ctx, `SELECT `+sessionCols+` FROM sessions WHERE id = $1`, id.String()))
	if errors.Is(err, sql.ErrNoRows) {
		return Session{}, vend.Errorf(ErrSessionNotFound, "%s", id)
	}
	return ss, err
}

// GetSession returns a session by ID for the cloud's own use (ingest,
// settlement); it is not scoped to a user or operator. Errors: ErrSessionNotFound.
func (s *Store) GetSession(ctx context.Context, id vend.SessionID) (Session, error) {
	ss, err := s.getSession(ctx, s.db, id)
	if err != nil && vend.KindOf(err) == vend.Internal {
		return Session{}, fmt.Errorf("store: get session: %w", err)
	}
	return ss, err
}

// UserSession returns one of user's sessions; another user's session is
// ErrSessionNotFound.
func (s *Store) UserSession(ctx context.Context, user string, id vend.SessionID) (Session, error) {
	ss, err := s.GetSession(ctx, id)
	if err != nil {
		return Session{}, err
	}
	if ss.User != user {
		return Session{}, vend.Errorf(ErrSessionNotFound, "%s", id)
	}
	return ss, nil
}

// Event is something that happens to a session: a row group of the
// state table (Transitions).
type Event string

// Session events.
const (
	EvStart          Event = "start"             // StartSession
	EvAck            Event = "ack"               // the device accepted the grant (reply ok, or its authorized event)
	EvStarted        Event = "started"           // the device's started event
	EvEnded          Event = "ended"             // the device's ended event, or the phone's stop of a running session
	EvRefused        Event = "refused"           // the device refused the grant (a reply code: grant.cancelled, grant.expired, machine.busy, …)
	EvReport         Event = "report"            // a verified usage report that charges something
	EvReportNone     Event = "report.nothing"    // a verified usage report with nothing to charge (not started, vend failed, 0 units)
	EvLateReport     Event = "report.late"       // a verified report for a session closed without one: late capture
	EvStartBy        Event = "sweep.start_by"    // pending past grant expiry (the start-by bound) + AckBound
	EvRunBound       Event = "sweep.run_bound"   // acknowledged, no report past the longest run + offline allowance
	EvWindow         Event = "sweep.window"      // unreported past its settlement window, PolicyRelease (or no ended units)
	EvWindowLast     Event = "sweep.window.last" // unreported past its settlement window, PolicyCaptureLast with ended units
	EvOperatorSettle Event = "operator.settle"   // an operator settles an unreported session with an amount ≤ hold
	EvOperatorVoid   Event = "operator.void"     // an operator releases an unreported session in full
)

// Transition is one row of the session state table: in any of From, Event
// leads to To (the same state when To is ""), moving Money in the ledger
// under the idempotency keys Keys.
type Transition struct {
	From  []State
	Event Event
	To    State
	Money string // "" when no money moves
	Keys  string // ledger idempotency keys (<s> is the session ID)
}

// Transitions is the cloud's session state machine; the package doc
// prints it (StateTable) and the store's code takes its From sets from it.
// Anything not listed is refused with ErrSessionState (a final session) or
// ignored as stale (an earlier live state: Advance is monotonic).
var Transitions = []Transition{
	{nil, EvStart, Pending, "hold wallet→holds", "hold:<s>"},
	{[]State{Pending}, EvAck, Authorized, "", ""},
	{[]State{Pending, Authorized}, EvStarted, Running, "", ""},
	{[]State{Pending, Authorized, Running}, EvEnded, Ending, "", ""},
	{[]State{Pending, Authorized}, EvRefused, Failed, "release holds→wallet", "release:<s>"},
	{[]State{Pending, Authorized, Running, Ending, Unreported}, EvReport, Settled,
		"capture holds→revenue, rest holds→wallet", "capture:<s>, release:<s>"},
	{[]State{Pending, Authorized, Running, Ending, Unreported}, EvReportNone, Refunded, "release holds→wallet", "release:<s>"},
	{[]State{Expired, Failed, Released, Voided, Settled}, EvLateReport, "",
		"owed−captured wallet→revenue, shortfall receivable→revenue (excess: revenue→wallet)", "late:<s>, late:<s>:receivable"},
	{[]State{Pending}, EvStartBy, Expired, "release holds→wallet", "release:<s>"},
	{[]State{Authorized, Running, Ending}, EvRunBound, Unreported, "", ""},
	{[]State{Unreported}, EvWindow, Released, "release holds→wallet", "release:<s>"},
	{[]State{Unreported}, EvWindowLast, Settled, "capture holds→revenue, rest holds→wallet", "capture:<s>, release:<s>"},
	{[]State{Unreported}, EvOperatorSettle, Settled, "capture holds→revenue, rest holds→wallet", "capture:<s>, release:<s>"},
	{[]State{Unreported}, EvOperatorVoid, Voided, "release holds→wallet", "release:<s>"},
}

// from returns the states ev applies to, by the state table.
func from(ev Event) []State {
	for _, t := range Transitions {
		if t.Event == ev {
			return t.From
		}
	}
	panic("store: no transition for " + string(ev))
}

// stateList returns "('a', 'b')" for an SQL IN clause (states are constants).
func stateList(sts []State) string {
	var b strings.Builder
	b.WriteByte('(')
	for i, st := range sts {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("'" + string(st) + "'")
	}
	b.WriteByte(')')
	return b.String()
}

// StateTable renders Transitions as the text table of the package doc.
func StateTable() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-49s %-17s %-10s %s\n", "from", "event", "to", "money [idempotency keys]")
	for _, t := range Transitions {
		f := "—"
		if t.From != nil {
			var parts []string
			for _, st := range t.From {
				parts = append(parts, string(st))
			}
			f = strings.Join(parts, ", ")
		}
		to := string(t.To)
		if to == "" {
			to = "(same)"
		}
		m := "none"
		if t.Money != "" {
			m = t.Money + " [" + t.Keys + "]"
		}
		fmt.Fprintf(&b, "%-49s %-17s %-10s %s\n", f, t.Event, to, m)
	}
	return b.String()
}

// advanceEvents maps the targets of Advance to their events.
var advanceEvents = map[State]Event{Authorized: EvAck, Running: EvStarted, Ending: EvEnded}

// Advance moves a live session forward as the device reports it:
// Authorized (grant acknowledged), Running (machine started; at is the
// start time), Ending (machine stopped, usage report awaited). It is
// idempotent: advancing to the current state, or to an earlier live state
// than the current one (a late, reordered event), changes nothing and
// returns nil; so is an event for an unreported session. Errors: ErrInput
// (to is not one of those), ErrSessionNotFound, ErrSessionState (the
// session is final).
func (s *Store) Advance(ctx context.Context, id vend.SessionID, to State, at time.Time) error {
	_, err := s.AdvanceSession(ctx, id, to, at)
	return err
}

// AdvanceSession is Advance that also returns the session as it is
// afterwards, read by the same statement (UPDATE … RETURNING) when the
// state changed, so the caller saves a round trip.
func (s *Store) AdvanceSession(ctx context.Context, id vend.SessionID, to State, at time.Time) (Session, error) {
	ev, ok := advanceEvents[to]
	if !ok {
		return Session{}, vend.Errorf(ErrInput, "advance to %q", to)
	}
	q := `UPDATE sessions SET state = $1, updated_ms = $2`
	if to == Running {
		q += `, started_ms = ` + strconv.FormatInt(at.UnixMilli(), 10)
	}
	ss, err := s.scanSession(s.db.QueryRowContext(ctx, q+` WHERE id = $3 AND state IN `+stateList(from(ev))+` RETURNING `+sessionCols,
		string(to), s.nowMs(), id.String()))
	if err == nil {
		return ss, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return Session{}, fmt.Errorf("store: advance: %w", err)
	}
	ss, err = s.GetSession(ctx, id)
	if err != nil {
		return Session{}, err
	}
	if ss.State.Holds() {
		return ss, nil // already there or further on
	}
	return ss, vend.Errorf(ErrSessionState, "session %s is %s", id, ss.State)
}

// RecordEnded keeps the units the device named in a session's ended event
// (Session.LastUnits), for PolicyCaptureLast. It changes only a session
// that still holds funds; for any other it does nothing. Errors: the
// database's.
func (s *Store) RecordEnded(ctx context.Context, id vend.SessionID, units uint64) error {
	if units > 1<<53 {
		return vend.Errorf(ErrInput, "ended units %d too large", units)
	}
	_, err := s.db.ExecContext(ctx, `UPDATE sessions SET last_units = $1 WHERE id = $2 AND state IN `+
		stateList(from(EvReport)), int64(units), id.String())
	if err != nil {
		return fmt.Errorf("store: record ended: %w", err)
	}
	return nil
}

// Settlement is what Settle, Fail, the sweeps and the operator's settle
// and void did to a session.
type Settlement struct {
	Session    Session      // the session after settlement
	Captured   int64        // minor units of the hold moved to the operator
	Released   int64        // minor units of the hold returned to the wallet
	Late       bool         // a late capture: the report came after the session was closed without one
	LateAmount int64        // minor units captured late (wallet and receivable; negative: refunded late)
	Receivable int64        // minor units of LateAmount the wallet could not cover, booked as owed by the payer
	Duplicate  bool         // the session was already settled by this very report (or failed with this call); no money moved now
	Stock      *StockChange // a vend from a tracked slot: its count after this report's items (nil otherwise, and on a duplicate)
}

// Settle settles a session from its device's verified usage report (the
// caller has checked the signature with signed.OpenUsage against the
// device's keys), in one transaction: it captures min(Amount, hold) from
// the user's holds to the operator's revenue and releases the rest to the
// wallet; outcomes vend_failed and not_started capture nothing. The
// session, live or unreported, becomes settled (something captured) or
// refunded (nothing).
//
// A report for a session already closed without one (expired, failed,
// released, voided, or settled by policy or an operator) is a late
// capture: what the report owes, up to the original hold, less what was
// already captured, is taken from the wallet; what the wallet cannot
// cover is booked to the payer's user_receivable account; an excess
// already captured is refunded from revenue to the wallet. The session
// keeps its state and is flagged Late (Settlement.Late).
//
// A vend from a tracked slot (SlotStock) decrements its count by the
// report's items (none for vend_failed or not_started) in the same
// transaction, never below zero (Settlement.Stock; the excess is clamped
// and counted in Short), late reports included; an operator's settle of
// an unreported session has no report and counts nothing.
//
// Exactly once, as signed.UsageGuard states it: the same signed bytes
// again return the first Settlement with Duplicate set; a different
// report for the session is ErrUsageConflict; a (device, seq) used by
// another session is ErrSeqReused. Unique keys on usage_reports(session)
// and (device, seq) and on ledger_tx(idem_key) back this up under any
// concurrency. Errors also: ErrInput (empty signedUsage, invalid usage),
// ErrSessionNotFound, ErrUsageMismatch (device, machine, slot, unit, price
// or currency differ from the session, or units above the cap),
// ErrSessionState (a refunded session without a report: cannot happen).
func (s *Store) Settle(ctx context.Context, u signed.Usage, signedUsage []byte) (Settlement, error) {
	if len(signedUsage) == 0 || len(signedUsage) > signed.MaxSigned {
		return Settlement{}, vend.Errorf(ErrInput, "settle: signed usage of %d bytes", len(signedUsage))
	}
	if err := u.Validate(); err != nil {
		return Settlement{}, fmt.Errorf("store: settle: %w", err)
	}
	digest := signed.Digest(signedUsage)
	sid := u.Session.String()
	var out Settlement
	err := s.tx(ctx, "settle", func(tx *sql.Tx) error {
		out = Settlement{}
		// Serialize settlements of one session: two deliveries of the same
		// report racing under READ COMMITTED would otherwise each see the
		// other's half-done work (its report row but not its state, or the
		// reverse). The sweeper and the operator take the same lock.
		var state string
		if err := tx.QueryRowContext(ctx, `SELECT state FROM sessions WHERE id = $1`+s.d.lockRow, sid).Scan(&state); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return vend.Errorf(ErrSessionNotFound, "%s", sid)
			}
			return err
		}
		var prev []byte
		err := tx.QueryRowContext(ctx, `SELECT digest FROM usage_reports WHERE session_id = $1`, sid).Scan(&prev)
		if err == nil {
			if !bytes.Equal(prev, digest[:]) {
				return vend.Errorf(ErrUsageConflict, "session %s", sid)
			}
			ss, err := s.getSession(ctx, tx, u.Session)
			if err != nil {
				return err
			}
			out = Settlement{Session: ss, Captured: ss.Captured, Released: ss.Released, Late: ss.Late,
				LateAmount: ss.LateAmount, Receivable: ss.Receivable, Duplicate: true}
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		var other string
		err = tx.QueryRowContext(ctx, `SELECT session_id FROM usage_reports WHERE device_id = $1 AND seq = $2`, u.Device, int64(u.Seq)).Scan(&other)
		if err == nil {
			return vend.Errorf(ErrSeqReused, "device %s seq %d used by session %s", u.Device, u.Seq, other)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		ss, err := s.getSession(ctx, tx, u.Session)
		if err != nil {
			return err
		}
		if err := matchUsage(u, ss); err != nil {
			return err
		}
		owed := min(u.Amount, ss.Hold)
		if u.Outcome == vend.OutcomeVendFailed || u.Outcome == vend.OutcomeNotStarted {
			owed = 0
		}
		now := s.nowMs()
		fault := ""
		if u.FaultCode != 0 {
			fault = strconv.Itoa(int(u.FaultCode))
		}
		started := int64(0)
		if !u.StartedAt.IsZero() {
			started = u.StartedAt.UnixMilli()
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO usage_reports (session_id, device_id, seq, digest, signed, received_ms)
			VALUES ($1, $2, $3, $4, $5, $6)`, sid, u.Device, int64(u.Seq), digest[:], signedUsage, now); err != nil {
			return err
		}
		// The report row above is once per session: so is the decrement.
		items := u.Units
		if u.Outcome == vend.OutcomeVendFailed || u.Outcome == vend.OutcomeNotStarted {
			items = 0
		}
		stock, err := s.vendStock(ctx, tx, ss.Device, ss.Machine, ss.Slot, items)
		if err != nil {
			return err
		}
		if !slices.Contains(from(EvReport), ss.State) {
			if !slices.Contains(from(EvLateReport), ss.State) {
				return vend.Errorf(ErrSessionState, "session %s is already %s", sid, ss.State)
			}
			late, recv, err := s.lateCapture(ctx, tx, ss, owed-ss.Captured)
			if err != nil {
				return err
			}
			res, err := tx.ExecContext(ctx, `UPDATE sessions SET units = $1, outcome = $2, fault = $3, started_ms = $4, ended_ms = $5,
				updated_ms = $6, late = 1, late_minor = $7, receivable_minor = $8 WHERE id = $9 AND state = $10 AND late = 0`,
				int64(u.Units), int(u.Outcome), fault, started, u.EndedAt.UnixMilli(), now, late, recv, sid, string(ss.State))
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n != 1 {
				return errRetry
			}
			if ss, err = s.getSession(ctx, tx, u.Session); err != nil {
				return err
			}
			out = Settlement{Session: ss, Late: true, LateAmount: late, Receivable: recv, Stock: stock}
			return nil
		}
		capture := owed
		release := ss.Hold - capture
		st := Settled
		if capture == 0 {
			st = Refunded
		}
		res, err := tx.ExecContext(ctx, `UPDATE sessions SET state = $1, units = $2, captured = $3, released = $4, outcome = $5,
			fault = $6, started_ms = $7, ended_ms = $8, updated_ms = $9 WHERE id = $10 AND state IN `+stateList(from(EvReport)),
			string(st), int64(u.Units), capture, release, int(u.Outcome), fault, started, u.EndedAt.UnixMilli(), now, sid)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return errRetry // another transaction closed it meanwhile; look again
		}
		if err := s.moveHold(ctx, tx, ss, capture, release); err != nil {
			return err
		}
		ss, err = s.getSession(ctx, tx, u.Session)
		if err != nil {
			return err
		}
		out = Settlement{Session: ss, Captured: capture, Released: release, Stock: stock}
		return nil
	})
	if err != nil {
		return Settlement{}, err
	}
	return out, nil
}

// lateCapture moves delta (owed minus already captured) for a session
// closed without a report: delta > 0 comes from the wallet as far as it
// goes, the rest from the payer's receivable account (which goes
// negative: the payer owes it); delta < 0 is refunded from revenue to the
// wallet. The keys late:<s> and late:<s>:receivable make it once. It
// returns what moved and the receivable part.
func (s *Store) lateCapture(ctx context.Context, tx *sql.Tx, ss Session, delta int64) (late, recv int64, err error) {
	if delta == 0 {
		return 0, 0, nil
	}
	sid := ss.ID.String()
	wal, err := s.account(ctx, tx, UserWallet, ss.User, ss.Currency)
	if err != nil {
		return 0, 0, err
	}
	rev, err := s.account(ctx, tx, OperatorRevenue, ss.Operator, ss.Currency)
	if err != nil {
		return 0, 0, err
	}
	var ts []transfer
	if delta < 0 {
		ts = append(ts, transfer{kind: TxRefund, idemKey: "late:" + sid, session: &sid, from: rev, to: wal, amount: -delta})
	} else {
		var bal int64
		if err := tx.QueryRowContext(ctx, `SELECT balance FROM accounts WHERE id = $1`+s.d.lockRow, wal).Scan(&bal); err != nil {
			return 0, 0, err
		}
		take := min(delta, max(bal, 0))
		recv = delta - take
		if take > 0 {
			ts = append(ts, transfer{kind: TxLateCapture, idemKey: "late:" + sid, session: &sid, from: wal, to: rev, amount: take})
		}
		if recv > 0 {
			rcv, err := s.account(ctx, tx, UserReceivable, ss.User, ss.Currency)
			if err != nil {
				return 0, 0, err
			}
			ts = append(ts, transfer{kind: TxLateCapture, idemKey: "late:" + sid + ":receivable", session: &sid, from: rcv, to: rev, amount: recv})
		}
	}
	if _, ok, err := s.post(ctx, tx, ss.Currency, ts...); err != nil {
		return 0, 0, err
	} else if !ok {
		return 0, 0, fmt.Errorf("store: session %s captured late twice (bug)", sid)
	}
	return delta, recv, nil
}

// moveHold captures and releases a session's hold under the session-keyed
// ledger idempotency keys; a second capture or release of one session
// cannot be written.
func (s *Store) moveHold(ctx context.Context, tx *sql.Tx, ss Session, capture, release int64) error {
	sid := ss.ID.String()
	holds, err := s.account(ctx, tx, UserHolds, ss.User, ss.Currency)
	if err != nil {
		return err
	}
	var ts []transfer
	if capture > 0 {
		rev, err := s.account(ctx, tx, OperatorRevenue, ss.Operator, ss.Currency)
		if err != nil {
			return err
		}
		ts = append(ts, transfer{kind: TxCapture, idemKey: "capture:" + sid, session: &sid, from: holds, to: rev, amount: capture})
	}
	if release > 0 {
		wal, err := s.account(ctx, tx, UserWallet, ss.User, ss.Currency)
		if err != nil {
			return err
		}
		ts = append(ts, transfer{kind: TxRelease, idemKey: "release:" + sid, session: &sid, from: holds, to: wal, amount: release})
	}
	if len(ts) > 0 {
		if _, ok, err := s.post(ctx, tx, ss.Currency, ts...); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("store: session %s captured or released twice (bug)", sid)
		}
	}
	// A session funded through a channel (a checkout) returns what it
	// released to the channel in the same transaction.
	return s.checkoutSessionEnded(ctx, tx, ss, capture)
}

// matchUsage checks a verified report against its session: against the
// signed grant when the session has one (signed.CheckAgainstGrant, the same
// rule a relay or auditor applies), else against the session's own fields.
func matchUsage(u signed.Usage, ss Session) error {
	g := signed.Grant{
		Session: ss.ID, Device: ss.Device, Machine: ss.Machine, Slot: ss.Slot, Unit: ss.Unit,
		Price: ss.Price, Currency: ss.Currency, CapUnits: ss.CapUnits, CapMoney: math.MaxInt64,
	}
	if n := len(ss.Grant) - ed25519.SignatureSize; n > 0 {
		var body signed.Grant
		if err := body.UnmarshalBinary(ss.Grant[:n]); err == nil {
			g = body
		}
	}
	if err := signed.CheckAgainstGrant(u, g); err != nil {
		return vend.Errorf(ErrUsageMismatch, "%v", err)
	}
	return nil
}

// Fail ends a session the device refused (a negative acknowledgement of
// the grant: any reply code, grant.cancelled and grant.expired included):
// pending or authorized → failed, the whole hold released, code recorded
// as the fault and reason device.refused. Calling it again on a failed
// session returns it with Duplicate set. Errors: ErrSessionNotFound,
// ErrSessionState (running or final otherwise).
func (s *Store) Fail(ctx context.Context, id vend.SessionID, code string) (Settlement, error) {
	if len(code) > 100 {
		code = code[:100]
	}
	return s.close(ctx, id, EvRefused, code, ReasonRefused, -1, "")
}

// close applies ev, one of the state table's events that close or park a
// session without a report, in one transaction: the session must be in
// one of ev's From states and, for the sweeps, past its bound (bound is
// the SQL condition for the time-bounded closes, $6 being now; the run
// bound has its own); capture (-1: none) goes to revenue and the rest of
// the hold back to the wallet (nothing moves for sweep.run_bound). A
// refusal of a session already failed returns Duplicate.
func (s *Store) close(ctx context.Context, id vend.SessionID, ev Event, fault, reason string, capture int64, bound string) (Settlement, error) {
	var to State
	for _, t := range Transitions {
		if t.Event == ev {
			to = t.To
		}
	}
	var out Settlement
	err := s.tx(ctx, string(ev), func(tx *sql.Tx) error {
		out = Settlement{}
		var state string
		if err := tx.QueryRowContext(ctx, `SELECT state FROM sessions WHERE id = $1`+s.d.lockRow, id.String()).Scan(&state); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return vend.Errorf(ErrSessionNotFound, "%s", id)
			}
			return err
		}
		ss, err := s.getSession(ctx, tx, id)
		if err != nil {
			return err
		}
		if ss.State == to && ev == EvRefused {
			out = Settlement{Session: ss, Captured: ss.Captured, Released: ss.Released, Duplicate: true}
			return nil
		}
		if !slices.Contains(from(ev), ss.State) {
			return vend.Errorf(ErrSessionState, "session %s is %s", id, ss.State)
		}
		now := s.nowMs()
		if ev == EvRunBound {
			q := `UPDATE sessions SET state = $1, reason = $2, deadline_ms = $3, updated_ms = $4 WHERE id = $5 AND state IN ` +
				stateList(from(ev)) + ` AND unreported_ms < $4`
			res, err := tx.ExecContext(ctx, q, string(to), reason, now+s.life.SettleWindow.Milliseconds(), now, id.String())
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n != 1 {
				return vend.Errorf(ErrSessionState, "session %s not due", id)
			}
		} else {
			capture = max(capture, 0)
			if capture > ss.Hold {
				return vend.Errorf(ErrAmount, "capture %d above the hold %d", capture, ss.Hold)
			}
			release := ss.Hold - capture
			if fault == "" {
				fault = ss.Fault
			}
			q := `UPDATE sessions SET state = $1, captured = $2, released = $3, fault = $4, reason = $5, ended_ms = $6, updated_ms = $6
				WHERE id = $7 AND state IN ` + stateList(from(ev)) + bound
			res, err := tx.ExecContext(ctx, q, string(to), capture, release, fault, reason, now, id.String())
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n != 1 {
				if bound != "" {
					return vend.Errorf(ErrSessionState, "session %s not due", id)
				}
				return errRetry
			}
			if err := s.moveHold(ctx, tx, ss, capture, release); err != nil {
				return err
			}
			out.Captured, out.Released = capture, release
		}
		ss, err = s.getSession(ctx, tx, id)
		if err != nil {
			return err
		}
		out.Session = ss
		return nil
	})
	return out, err
}

// due returns up to limit IDs of sessions in states whose column col is
// before now, oldest first.
func (s *Store) due(ctx context.Context, what string, states []State, col string, limit int) ([]vend.SessionID, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM sessions WHERE state IN `+stateList(states)+` AND `+col+` < $1
		ORDER BY `+col+` LIMIT $2`, s.nowMs(), limit)
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", what, err)
	}
	defer rows.Close()
	var ids []vend.SessionID
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			return nil, fmt.Errorf("store: %s: %w", what, err)
		}
		id, err := vend.ParseSessionID(t)
		if err != nil {
			return nil, fmt.Errorf("store: %s: %w", what, err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: %s: %w", what, err)
	}
	return ids, nil
}

// sweep applies fn to each due session and keeps the ones this call
// changed; a session another instance (or a report, or an operator) got
// to first is skipped.
func sweep(ids []vend.SessionID, fn func(vend.SessionID) (Settlement, error)) ([]Settlement, error) {
	var out []Settlement
	for _, id := range ids {
		st, err := fn(id)
		switch {
		case err == nil && !st.Duplicate:
			out = append(out, st)
		case err == nil, vend.CodeOf(err) == ErrSessionState.Code:
		default:
			return out, err
		}
	}
	return out, nil
}

// ExpireHolds releases the holds of up to limit sessions (0 means 100)
// still pending — never acknowledged by the device — past their start-by
// bound plus Opts.AckBound, marking them expired (reason
// grant.unacknowledged), each in its own transaction. An acknowledged
// session is never expired: it waits for its report (see MarkUnreported).
// Safe to run concurrently from several instances: a conditional UPDATE
// lets exactly one of them expire a session, and the ledger's unique
// release key backs it up. It returns the sessions this call expired.
func (s *Store) ExpireHolds(ctx context.Context, limit int) ([]Settlement, error) {
	ids, err := s.due(ctx, "expire holds", from(EvStartBy), "deadline_ms", limit)
	if err != nil {
		return nil, err
	}
	return sweep(ids, func(id vend.SessionID) (Settlement, error) {
		return s.close(ctx, id, EvStartBy, "", ReasonUnacknowledged, -1, ` AND deadline_ms < $6`)
	})
}

// MarkUnreported parks up to limit (0 means 100) acknowledged sessions
// (authorized, running, ending) that have had no report for their
// machine's longest run plus Lifecycle.OfflineAllowance after their
// start-by bound: they become unreported (reason unreported), which frees
// the machine for a new session, and keep their hold for
// Lifecycle.SettleWindow. It returns the sessions this call parked.
func (s *Store) MarkUnreported(ctx context.Context, limit int) ([]Settlement, error) {
	ids, err := s.due(ctx, "mark unreported", from(EvRunBound), "unreported_ms", limit)
	if err != nil {
		return nil, err
	}
	return sweep(ids, func(id vend.SessionID) (Settlement, error) {
		return s.close(ctx, id, EvRunBound, "", ReasonUnreported, -1, "")
	})
}

// CloseUnreported applies Lifecycle.Policy to up to limit (0 means 100)
// unreported sessions past their settlement window: PolicyRelease releases
// the hold in full (released, reason unreported.released);
// PolicyCaptureLast captures the cost of the units of the device's ended
// event when it sent one (settled, reason unreported.captured_last) and
// releases the rest. A report arriving later is a late capture (Settle).
// It returns the sessions this call closed.
func (s *Store) CloseUnreported(ctx context.Context, limit int) ([]Settlement, error) {
	ids, err := s.due(ctx, "close unreported", from(EvWindow), "deadline_ms", limit)
	if err != nil {
		return nil, err
	}
	return sweep(ids, func(id vend.SessionID) (Settlement, error) {
		return s.closeUnreported(ctx, id, ReasonUnreportedRelease, ReasonUnreportedCapture, ` AND deadline_ms < $6`)
	})
}

// closeUnreported applies the unreported policy to one unreported
// session, with the reasons given and the SQL bound on its row.
func (s *Store) closeUnreported(ctx context.Context, id vend.SessionID, released, captured, bound string) (Settlement, error) {
	if s.life.Policy == PolicyCaptureLast {
		ss, err := s.GetSession(ctx, id)
		if err != nil {
			return Settlement{}, err
		}
		if ss.LastUnits >= 0 {
			c, err := ss.Price.Cost(uint64(ss.LastUnits))
			if err != nil {
				return Settlement{}, fmt.Errorf("store: close unreported %s: %w", id, err)
			}
			return s.close(ctx, id, EvWindowLast, "", captured, min(c, ss.Hold), bound)
		}
	}
	return s.close(ctx, id, EvWindow, "", released, -1, bound)
}

// OperatorSettle settles one of operator's unreported sessions by hand:
// amount (0 ≤ amount ≤ hold) is captured, the rest released, the session
// becomes settled with reason "operator.settled: <reason>". A device
// report arriving later is a late capture of the difference. Errors:
// ErrInput (no reason, or one over 200 bytes), ErrAmount (negative or above
// the hold), ErrSessionNotFound (also another operator's session),
// ErrSessionState (not unreported).
func (s *Store) OperatorSettle(ctx context.Context, operator string, id vend.SessionID, amount int64, reason string) (Settlement, error) {
	if err := s.ownUnreported(ctx, operator, id, reason); err != nil {
		return Settlement{}, err
	}
	if amount < 0 {
		return Settlement{}, vend.Errorf(ErrAmount, "settle amount %d", amount)
	}
	return s.close(ctx, id, EvOperatorSettle, "", ReasonOperatorSettled+": "+reason, amount, "")
}

// OperatorVoid releases one of operator's unreported sessions in full:
// the session becomes voided with reason "operator.voided: <reason>". A
// device report arriving later is a late capture. Errors: as OperatorSettle.
func (s *Store) OperatorVoid(ctx context.Context, operator string, id vend.SessionID, reason string) (Settlement, error) {
	if err := s.ownUnreported(ctx, operator, id, reason); err != nil {
		return Settlement{}, err
	}
	return s.close(ctx, id, EvOperatorVoid, "", ReasonOperatorVoided+": "+reason, -1, "")
}

func (s *Store) ownUnreported(ctx context.Context, operator string, id vend.SessionID, reason string) error {
	if reason == "" || len(reason) > 200 {
		return vend.Errorf(ErrInput, "a reason of 1-200 bytes is required")
	}
	ss, err := s.GetSession(ctx, id)
	if err != nil {
		return err
	}
	if ss.Operator != operator {
		return vend.Errorf(ErrSessionNotFound, "%s", id)
	}
	return nil
}
