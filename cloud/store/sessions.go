package store

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

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

// State is a session's state.
type State string

// Session states. Pending, Authorized, Running and Ending are live: a
// machine has at most one live session, and a live session holds funds.
// The others are final.
const (
	Pending    State = "pending"    // funds held, grant not yet delivered to the device
	Authorized State = "authorized" // the device acknowledged the grant
	Running    State = "running"    // the machine started
	Ending     State = "ending"     // the device reported the end; usage report awaited
	Settled    State = "settled"    // usage captured (> 0), the rest released
	Refunded   State = "refunded"   // usage report with nothing to charge: hold released in full
	Failed     State = "failed"     // the device refused the grant: hold released in full
	Expired    State = "expired"    // not acknowledged or started in time: hold released by ExpireHolds
)

// Live reports whether st holds funds and blocks its machine.
func (st State) Live() bool {
	return st == Pending || st == Authorized || st == Running || st == Ending
}

const liveStates = `('pending', 'authorized', 'running', 'ending')`

// Session is one paid use of one machine.
type Session struct {
	ID        vend.SessionID
	User      string
	Device    string
	Operator  string
	Machine   string
	Slot      string
	State     State
	Unit      vend.Unit
	Price     vend.Price
	Currency  vend.Currency
	CapUnits  uint64
	Hold      int64  // minor units held at start: Price.Cost(CapUnits)
	Grant     []byte // the signed grant sent to the device; nil when started without a signer
	GrantExp  time.Time
	Deadline  time.Time // ExpireHolds releases a pending or authorized session after this
	Window    uint32    // proximity window the phone's ID resolved in
	WindowK   uint8
	IdemKey   string
	Units     uint64 // delivered, from the usage report
	Captured  int64  // minor units moved to the operator
	Released  int64  // minor units returned to the wallet
	Outcome   vend.Outcome
	Fault     string
	Created   time.Time
	Updated   time.Time
	Started   time.Time // zero until the machine started
	Ended     time.Time // zero until the session ended
	Duplicate bool      // set by StartSession when the idempotency key returned an existing session
}

// StartInput is what StartSession needs.
type StartInput struct {
	ID       vend.SessionID // zero: a new random one
	User     string
	Device   string
	Machine  string
	Slot     string // "" for machines without slots; required for machines with slots
	CapUnits uint64 // most units the payer buys; the hold is the machine price's Cost of it
	IdemKey  string // the start request's idempotency key, unique per user (1-200 bytes)
	Window   uint32 // proximity window the phone's ID resolved in (copied into the grant)
	WindowK  uint8
	GrantTTL time.Duration // how long the device may take to start; 0 means 60 s
	// Sign, when set, signs the grant the store builds from the session
	// (cloud key, signed.SignGrant); it runs inside the transaction, so the
	// grant stored and sent always matches what is held.
	Sign func(signed.Grant) ([]byte, error)
}

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
	case in.CapUnits == 0:
		return vend.Errorf(ErrInput, "start: cap units is zero")
	case in.CapUnits > 1<<53:
		return vend.Errorf(ErrInput, "start: cap units %d too large", in.CapUnits)
	case in.IdemKey == "" || len(in.IdemKey) > 200:
		return vend.Errorf(ErrInput, "start: idempotency key must be 1-200 bytes")
	case proxid.ValidateK(in.WindowK) != nil:
		return vend.Errorf(ErrInput, "start: window k %d", in.WindowK)
	case in.GrantTTL < 0:
		return vend.Errorf(ErrInput, "start: grant ttl %s", in.GrantTTL)
	}
	return nil
}

// StartSession holds the price of in.CapUnits on the user's wallet and
// creates a pending session for the machine, in one transaction. A retry
// with the same (user, IdemKey) and the same device, machine, slot and
// cap returns the first session with Duplicate set; with different ones
// it is ErrIdemConflict. Errors: ErrInput and the vend ID errors,
// ErrUserNotFound, ErrDeviceNotFound, ErrDeviceDisabled,
// ErrMachineNotFound, ErrSlotNotFound, ErrMachineBusy (a live session
// exists: enforced by a unique index), ErrFunds (nothing is written),
// and the Sign function's error.
func (s *Store) StartSession(ctx context.Context, in StartInput) (Session, error) {
	if err := in.validate(); err != nil {
		return Session{}, err
	}
	if in.ID.IsZero() {
		in.ID = vend.NewSessionID()
	}
	ttl := in.GrantTTL
	if ttl == 0 {
		ttl = 60 * time.Second
	}
	var out Session
	err := s.tx(ctx, "start session", func(tx *sql.Tx) error {
		prev, err := s.scanSession(tx.QueryRowContext(ctx, `SELECT `+sessionCols+` FROM sessions WHERE user_id = $1 AND idem_key = $2`, in.User, in.IdemKey))
		if err == nil {
			if prev.Device != in.Device || prev.Machine != in.Machine || prev.Slot != in.Slot || prev.CapUnits != in.CapUnits {
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
		// The device, its machine and whether the machine has slots, in
		// one round trip (the transaction holds no lock while it waits).
		var op, dstate string
		var unit sql.NullInt64
		var price vend.Price
		var minor, per sql.NullInt64
		var cur sql.NullString
		var nslots int
		err = tx.QueryRowContext(ctx, `SELECT d.operator_id, d.state, m.unit, m.price_minor, m.price_per, m.currency,
			(SELECT COUNT(*) FROM machine_slots ms WHERE ms.device_id = d.id AND ms.machine_id = $2)
			FROM devices d LEFT JOIN machines m ON m.device_id = d.id AND m.id = $2 WHERE d.id = $1`,
			in.Device, in.Machine).Scan(&op, &dstate, &unit, &minor, &per, &cur, &nslots)
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
		hold, err := price.Cost(in.CapUnits)
		if err != nil {
			return vend.Errorf(ErrInput, "start: cap %d at %d/%d: %v", in.CapUnits, price.Minor, price.Per, err)
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
			State: Pending, Unit: vend.Unit(unit.Int64), Price: price, Currency: vend.Currency(cur.String), CapUnits: in.CapUnits,
			Hold: hold, GrantExp: now.Add(ttl), Window: in.Window, WindowK: in.WindowK, IdemKey: in.IdemKey,
			Created: now, Updated: now}
		ss.Deadline = ss.GrantExp.Add(s.ackBnd)
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
			idem_key, created_ms, updated_ms)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $20)`,
			ss.ID.String(), ss.User, ss.Device, ss.Operator, ss.Machine, ss.Slot, string(ss.State),
			int(ss.Unit), ss.Price.Minor, int64(ss.Price.Per), string(ss.Currency), int64(ss.CapUnits), ss.Hold, ss.Grant,
			ss.GrantExp.UnixMilli(), ss.Deadline.UnixMilli(), int64(ss.Window), int(ss.WindowK), ss.IdemKey, now.UnixMilli()); err != nil {
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
	outcome, fault, created_ms, updated_ms, started_ms, ended_ms`

func (s *Store) scanSession(sc interface{ Scan(...any) error }) (Session, error) {
	var ss Session
	var id, state, cur string
	var unit, winK, outcome int
	var per, capU, win, units, gexp, dl, created, updated, started, ended int64
	if err := sc.Scan(&id, &ss.User, &ss.Device, &ss.Operator, &ss.Machine, &ss.Slot, &state, &unit, &ss.Price.Minor, &per, &cur,
		&capU, &ss.Hold, &ss.Grant, &gexp, &dl, &win, &winK, &ss.IdemKey, &units, &ss.Captured, &ss.Released,
		&outcome, &ss.Fault, &created, &updated, &started, &ended); err != nil {
		return Session{}, err
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

// transitions lists, for each target of Advance, the states it may come from.
var transitions = map[State][]State{
	Authorized: {Pending},
	Running:    {Pending, Authorized},
	Ending:     {Pending, Authorized, Running},
}

// Advance moves a live session forward as the device reports it:
// Authorized (grant acknowledged), Running (machine started; at is the
// start time), Ending (machine stopped, usage report awaited). It is
// idempotent: advancing to the current state, or to an earlier live state
// than the current one (a late, reordered event), changes nothing and
// returns nil. Errors: ErrInput (to is not one of those), ErrSessionNotFound,
// ErrSessionState (the session is final).
func (s *Store) Advance(ctx context.Context, id vend.SessionID, to State, at time.Time) error {
	_, err := s.AdvanceSession(ctx, id, to, at)
	return err
}

// AdvanceSession is Advance that also returns the session as it is
// afterwards, read by the same statement (UPDATE … RETURNING) when the
// state changed, so the caller saves a round trip.
func (s *Store) AdvanceSession(ctx context.Context, id vend.SessionID, to State, at time.Time) (Session, error) {
	from, ok := transitions[to]
	if !ok {
		return Session{}, vend.Errorf(ErrInput, "advance to %q", to)
	}
	args := []any{string(to), s.nowMs(), id.String()}
	for _, f := range from {
		args = append(args, string(f))
	}
	q := `UPDATE sessions SET state = $1, updated_ms = $2`
	if to == Running {
		q += `, started_ms = ` + strconv.FormatInt(at.UnixMilli(), 10)
	}
	ss, err := s.scanSession(s.db.QueryRowContext(ctx, q+` WHERE id = $3 AND state IN `+in(4, len(from))+` RETURNING `+sessionCols, args...))
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
	if ss.State.Live() {
		return ss, nil // already there or further on
	}
	return ss, vend.Errorf(ErrSessionState, "session %s is %s", id, ss.State)
}

// Settlement is what Settle, Fail and ExpireHolds did to a session.
type Settlement struct {
	Session   Session // the session after settlement
	Captured  int64   // minor units moved to the operator
	Released  int64   // minor units returned to the wallet
	Duplicate bool    // the session was already settled by this very report (or failed with this call); no money moved now
}

// Settle settles a session from its device's verified usage report (the
// caller has checked the signature with signed.OpenUsage against the
// device's keys), in one transaction: it captures min(Amount, hold) from
// the user's holds to the operator's revenue and releases the rest to the
// wallet; outcomes vend_failed and not_started capture nothing. The
// session becomes settled (something captured) or refunded (nothing).
//
// Exactly once, as signed.UsageGuard states it: the same signed bytes
// again return the first Settlement with Duplicate set; a different
// report for the session is ErrUsageConflict; a (device, seq) used by
// another session is ErrSeqReused. Unique keys on usage_reports(session)
// and (device, seq) and on ledger_tx(idem_key) back this up under any
// concurrency. Errors also: ErrInput (empty signedUsage, invalid usage),
// ErrSessionNotFound, ErrUsageMismatch (device, machine, slot, unit, price
// or currency differ from the session, or units above the cap),
// ErrSessionState (the session already ended without this report, e.g.
// expired).
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
		// reverse).
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
			out = Settlement{Session: ss, Captured: ss.Captured, Released: ss.Released, Duplicate: true}
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
		if !ss.State.Live() {
			return vend.Errorf(ErrSessionState, "session %s is already %s", sid, ss.State)
		}
		capture := min(u.Amount, ss.Hold)
		if u.Outcome == vend.OutcomeVendFailed || u.Outcome == vend.OutcomeNotStarted {
			capture = 0
		}
		release := ss.Hold - capture
		st := Settled
		if capture == 0 {
			st = Refunded
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
		res, err := tx.ExecContext(ctx, `UPDATE sessions SET state = $1, units = $2, captured = $3, released = $4, outcome = $5,
			fault = $6, started_ms = $7, ended_ms = $8, updated_ms = $9 WHERE id = $10 AND state IN `+liveStates,
			string(st), int64(u.Units), capture, release, int(u.Outcome), fault, started, u.EndedAt.UnixMilli(), now, sid)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return errRetry // another transaction closed it meanwhile; look again
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO usage_reports (session_id, device_id, seq, digest, signed, received_ms)
			VALUES ($1, $2, $3, $4, $5, $6)`, sid, u.Device, int64(u.Seq), digest[:], signedUsage, now); err != nil {
			return err
		}
		if err := s.moveHold(ctx, tx, ss, capture, release); err != nil {
			return err
		}
		ss, err = s.getSession(ctx, tx, u.Session)
		if err != nil {
			return err
		}
		out = Settlement{Session: ss, Captured: capture, Released: release}
		return nil
	})
	if err != nil {
		return Settlement{}, err
	}
	return out, nil
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
	if len(ts) == 0 {
		return nil
	}
	if _, ok, err := s.post(ctx, tx, ss.Currency, ts...); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("store: session %s captured or released twice (bug)", sid)
	}
	return nil
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
// the grant) or that the cloud cancels before the machine started:
// pending or authorized → failed, the whole hold released, code recorded.
// Calling it again on a failed session returns it with Duplicate set.
// Errors: ErrSessionNotFound, ErrSessionState (running or final otherwise).
func (s *Store) Fail(ctx context.Context, id vend.SessionID, code string) (Settlement, error) {
	if len(code) > 100 {
		code = code[:100]
	}
	return s.closeUnstarted(ctx, id, Failed, code, false)
}

// closeUnstarted moves a pending or authorized session to st and releases
// its hold; ifDue limits it to sessions past their deadline.
func (s *Store) closeUnstarted(ctx context.Context, id vend.SessionID, st State, code string, ifDue bool) (Settlement, error) {
	var out Settlement
	err := s.tx(ctx, string(st), func(tx *sql.Tx) error {
		out = Settlement{}
		ss, err := s.getSession(ctx, tx, id)
		if err != nil {
			return err
		}
		if ss.State == st {
			out = Settlement{Session: ss, Released: ss.Released, Duplicate: true}
			return nil
		}
		if ss.State != Pending && ss.State != Authorized {
			return vend.Errorf(ErrSessionState, "session %s is %s", id, ss.State)
		}
		now := s.nowMs()
		q := `UPDATE sessions SET state = $1, released = hold_minor, fault = $2, ended_ms = $3, updated_ms = $3
			WHERE id = $4 AND state IN ('pending', 'authorized')`
		if ifDue {
			q += ` AND deadline_ms < $3`
		}
		res, err := tx.ExecContext(ctx, q, string(st), code, now, id.String())
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			if ifDue {
				return vend.Errorf(ErrSessionState, "session %s not due", id)
			}
			return errRetry
		}
		if err := s.moveHold(ctx, tx, ss, 0, ss.Hold); err != nil {
			return err
		}
		ss, err = s.getSession(ctx, tx, id)
		if err != nil {
			return err
		}
		out = Settlement{Session: ss, Released: ss.Hold}
		return nil
	})
	return out, err
}

// ExpireHolds releases the holds of up to limit sessions (0 means 100)
// still pending or authorized past their deadline (grant expiry plus
// Opts.AckBound), marking them expired, each in its own transaction. Safe
// to run concurrently from several instances: a conditional UPDATE lets
// exactly one of them expire a session, and the ledger's unique release
// key backs it up. It returns the sessions this call expired.
func (s *Store) ExpireHolds(ctx context.Context, limit int) ([]Settlement, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM sessions WHERE state IN ('pending', 'authorized') AND deadline_ms < $1
		ORDER BY deadline_ms LIMIT $2`, s.nowMs(), limit)
	if err != nil {
		return nil, fmt.Errorf("store: expire holds: %w", err)
	}
	var ids []vend.SessionID
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			rows.Close()
			return nil, fmt.Errorf("store: expire holds: %w", err)
		}
		id, err := vend.ParseSessionID(t)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("store: expire holds: %w", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: expire holds: %w", err)
	}
	var out []Settlement
	for _, id := range ids {
		st, err := s.closeUnstarted(ctx, id, Expired, "grant.unacknowledged", true)
		switch {
		case err == nil && !st.Duplicate:
			out = append(out, st)
		case err == nil, vend.CodeOf(err) == ErrSessionState.Code:
			// another instance (or the device) got there first
		default:
			return out, err
		}
	}
	return out, nil
}
