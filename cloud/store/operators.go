package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"beaconvend/app-protocol/vend"
)

// Errors of operators and their console accounts.
var (
	ErrOperatorExists  = vend.E(vend.Conflict, "operator.name_taken", "store: an operator with this name exists (names are compared case-insensitively)")
	ErrAccountNotFound = vend.E(vend.NotFound, "operator_account.not_found", "store: operator account not found")
	ErrAccountDisabled = vend.E(vend.Unauthorized, "auth.account_disabled", "store: operator account is disabled")
	ErrCurrentPassword = vend.E(vend.Invalid, "auth.current_password", "store: current password is wrong")
)

// Operator is a tenant: the business that runs devices and earns revenue.
type Operator struct {
	ID      string // "op_" + 16 hex digits
	Name    string // unique among operators, case-insensitively
	Created time.Time
}

// OperatorAccount is a person who signs in to an operator's console.
type OperatorAccount struct {
	ID         string // "opa_" + 16 hex digits
	OperatorID string
	Email      string
	Disabled   bool   // cannot log in; its sessions are refused
	Role       string // owner, manager, technician or viewer (cloud/service roles)
}

// ConsoleTokenPrefix begins every console session token; the rest is the
// base64url (no padding) of 32 random bytes.
const ConsoleTokenPrefix = "bvc_"

const consoleTokenLen = len(ConsoleTokenPrefix) + 43

// ConsoleLimits bound a console session: TTL from its log-in (absolute),
// Idle between two uses. Both must be positive.
type ConsoleLimits struct {
	TTL  time.Duration
	Idle time.Duration
}

// ConsoleSession is a logged-in operator console: server-side, revocable.
// Its bearer token is known to the client only; the store keeps its
// SHA-256.
type ConsoleSession struct {
	Account  OperatorAccount
	Created  time.Time
	LastUsed time.Time // as last recorded; recorded at most every ConsoleTouch(Idle)
	Expires  time.Time // absolute bound
	Idle     time.Duration
}

// ConsoleTouch is how stale a console session's recorded last use may get
// before a request records it again: an eighth of the idle bound, at most a
// minute. A session therefore ends after between idle−ConsoleTouch(idle)
// and idle without a request; checking a live session writes to the
// database at most once per ConsoleTouch.
func ConsoleTouch(idle time.Duration) time.Duration { return min(idle/8, time.Minute) }

// nameKey is what operator names are compared by: trimmed, lower-cased.
func nameKey(name string) string { return strings.ToLower(strings.TrimSpace(name)) }

func checkOperatorName(name string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 200 {
		return "", vend.Errorf(ErrInput, "operator name must be 1-200 bytes")
	}
	return name, nil
}

// CreateOperator creates a tenant. Errors: ErrInput (empty name),
// ErrOperatorExists (the name, compared case-insensitively, is taken).
func (s *Store) CreateOperator(ctx context.Context, name string) (Operator, error) {
	name, err := checkOperatorName(name)
	if err != nil {
		return Operator{}, err
	}
	o := Operator{ID: newID("op"), Name: name, Created: time.UnixMilli(s.nowMs()).UTC()}
	if err := insertOperator(ctx, s, s.db, o); err != nil {
		return Operator{}, err
	}
	return o, nil
}

func insertOperator(ctx context.Context, s *Store, q queryer, o Operator) error {
	_, err := q.ExecContext(ctx, `INSERT INTO operators (id, name, name_key, created_ms) VALUES ($1, $2, $3, $4)`,
		o.ID, o.Name, nameKey(o.Name), o.Created.UnixMilli())
	if s.d.unique(err) {
		return vend.Errorf(ErrOperatorExists, "%q", clip(o.Name))
	}
	if err != nil {
		return fmt.Errorf("store: create operator: %w", err)
	}
	return nil
}

// CreateOperatorWithAccount creates a tenant and its first console account
// in one transaction: either both exist afterwards or neither. Errors:
// ErrInput, ErrOperatorExists, ErrEmailTaken.
func (s *Store) CreateOperatorWithAccount(ctx context.Context, name, email, password string) (Operator, OperatorAccount, error) {
	name, err := checkOperatorName(name)
	if err != nil {
		return Operator{}, OperatorAccount{}, err
	}
	e, err := normEmail(email)
	if err != nil {
		return Operator{}, OperatorAccount{}, err
	}
	h, err := s.hash(password)
	if err != nil {
		return Operator{}, OperatorAccount{}, err
	}
	o := Operator{ID: newID("op"), Name: name, Created: time.UnixMilli(s.nowMs()).UTC()}
	a := OperatorAccount{ID: newID("opa"), OperatorID: o.ID, Email: e, Role: RoleOwner}
	err = s.tx(ctx, "create operator", func(tx *sql.Tx) error {
		if err := insertOperator(ctx, s, tx, o); err != nil {
			return err
		}
		return insertAccount(ctx, s, tx, a, h)
	})
	if err != nil {
		return Operator{}, OperatorAccount{}, err
	}
	return o, a, nil
}

func insertAccount(ctx context.Context, s *Store, q queryer, a OperatorAccount, hash string) error {
	_, err := q.ExecContext(ctx, `INSERT INTO operator_accounts (id, operator_id, email, pw_hash, created_ms, role) VALUES ($1, $2, $3, $4, $5, $6)`,
		a.ID, a.OperatorID, a.Email, hash, s.nowMs(), a.Role)
	if s.d.unique(err) {
		return vend.Errorf(ErrEmailTaken, "%s", a.Email)
	}
	if err != nil {
		return fmt.Errorf("store: operator account: %w", err)
	}
	return nil
}

// GetOperator returns an operator by ID. Errors: ErrOperatorNotFound.
func (s *Store) GetOperator(ctx context.Context, id string) (Operator, error) {
	return s.getOperator(ctx, `id = $1`, id)
}

// OperatorByName returns the operator whose name equals name, compared
// case-insensitively. Errors: ErrOperatorNotFound.
func (s *Store) OperatorByName(ctx context.Context, name string) (Operator, error) {
	return s.getOperator(ctx, `name_key = $1`, nameKey(name))
}

func (s *Store) getOperator(ctx context.Context, where, arg string) (Operator, error) {
	var o Operator
	var ms int64
	err := s.db.QueryRowContext(ctx, `SELECT id, name, created_ms FROM operators WHERE `+where, arg).Scan(&o.ID, &o.Name, &ms)
	if errors.Is(err, sql.ErrNoRows) {
		return Operator{}, vend.Errorf(ErrOperatorNotFound, "%q", clip(arg))
	}
	if err != nil {
		return Operator{}, fmt.Errorf("store: get operator: %w", err)
	}
	o.Created = time.UnixMilli(ms).UTC()
	return o, nil
}

// CreateOperatorAccount adds a console login to operator with the owner
// role. Errors: ErrInput, ErrOperatorNotFound, ErrEmailTaken.
func (s *Store) CreateOperatorAccount(ctx context.Context, operator, email, password string) (OperatorAccount, error) {
	return s.CreateOperatorAccountRole(ctx, operator, email, password, RoleOwner)
}

// CreateOperatorAccountRole adds a console login with role to operator.
// Errors: ErrInput (also for a role that is not one of OperatorRoles),
// ErrOperatorNotFound, ErrEmailTaken.
func (s *Store) CreateOperatorAccountRole(ctx context.Context, operator, email, password, role string) (OperatorAccount, error) {
	if err := checkRole(role); err != nil {
		return OperatorAccount{}, err
	}
	e, err := normEmail(email)
	if err != nil {
		return OperatorAccount{}, err
	}
	h, err := s.hash(password)
	if err != nil {
		return OperatorAccount{}, err
	}
	if _, err := s.GetOperator(ctx, operator); err != nil {
		return OperatorAccount{}, err
	}
	a := OperatorAccount{ID: newID("opa"), OperatorID: operator, Email: e, Role: role}
	if err := insertAccount(ctx, s, s.db, a, h); err != nil {
		return OperatorAccount{}, err
	}
	return a, nil
}

// dummyHashes holds, per bcrypt cost, a hash that an unknown email is
// checked against, so that it takes as long as a wrong password.
var dummyHashes sync.Map // int → []byte

func (s *Store) dummyCompare(password string) {
	cost := s.cost
	if cost == 0 {
		cost = bcrypt.DefaultCost
	}
	h, ok := dummyHashes.Load(cost)
	if !ok {
		b, err := bcrypt.GenerateFromPassword([]byte("no such account"), cost)
		if err != nil {
			b = dummyHash
		}
		h, _ = dummyHashes.LoadOrStore(cost, b)
	}
	_ = bcrypt.CompareHashAndPassword(h.([]byte), []byte(password))
}

const accountCols = `id, operator_id, email, pw_hash, disabled_ms, role`

func scanAccount(sc interface{ Scan(...any) error }) (OperatorAccount, string, error) {
	var a OperatorAccount
	var h string
	var disabled int64
	err := sc.Scan(&a.ID, &a.OperatorID, &a.Email, &h, &disabled, &a.Role)
	a.Disabled = disabled != 0
	return a, h, err
}

func (s *Store) accountByEmail(ctx context.Context, email string) (OperatorAccount, string, error) {
	e, err := normEmail(email)
	if err != nil {
		return OperatorAccount{}, "", vend.Errorf(ErrAccountNotFound, "%q", clip(email))
	}
	a, h, err := scanAccount(s.db.QueryRowContext(ctx, `SELECT `+accountCols+` FROM operator_accounts WHERE email = $1`, e))
	if errors.Is(err, sql.ErrNoRows) {
		return OperatorAccount{}, "", vend.Errorf(ErrAccountNotFound, "%s", e)
	}
	if err != nil {
		return OperatorAccount{}, "", fmt.Errorf("store: operator account: %w", err)
	}
	return a, h, nil
}

// OperatorAccountByEmail returns the console account of email. Errors:
// ErrAccountNotFound.
func (s *Store) OperatorAccountByEmail(ctx context.Context, email string) (OperatorAccount, error) {
	a, _, err := s.accountByEmail(ctx, email)
	return a, err
}

// AuthenticateOperator returns the operator account whose email and
// password match. Errors: ErrCredentials (the same for an unknown email
// and a wrong password, taking as long), ErrAccountDisabled (only when the
// password matched).
func (s *Store) AuthenticateOperator(ctx context.Context, email, password string) (OperatorAccount, error) {
	a, h, err := s.accountByEmail(ctx, email)
	if errors.Is(err, ErrAccountNotFound) {
		s.dummyCompare(password)
		return OperatorAccount{}, ErrCredentials
	}
	if err != nil {
		return OperatorAccount{}, fmt.Errorf("store: authenticate operator: %w", err)
	}
	if bcrypt.CompareHashAndPassword([]byte(h), []byte(password)) != nil {
		return OperatorAccount{}, ErrCredentials
	}
	if a.Disabled {
		return OperatorAccount{}, vend.Errorf(ErrAccountDisabled, "%s", a.Email)
	}
	return a, nil
}

// StartConsoleSession opens a console session for account, which must
// exist and be enabled, and returns its bearer token: ConsoleTokenPrefix
// and 256 random bits. Only the token's SHA-256 is stored. Errors:
// ErrInput (limits not positive), ErrAccountNotFound, ErrAccountDisabled.
func (s *Store) StartConsoleSession(ctx context.Context, account string, lim ConsoleLimits) (string, ConsoleSession, error) {
	if lim.TTL <= 0 || lim.Idle <= 0 {
		return "", ConsoleSession{}, vend.Errorf(ErrInput, "console session ttl %s, idle %s: want both positive", lim.TTL, lim.Idle)
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", ConsoleSession{}, fmt.Errorf("store: console token: %w", err)
	}
	tok := ConsoleTokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	now := s.nowMs()
	var cs ConsoleSession
	err := s.tx(ctx, "start console session", func(tx *sql.Tx) error {
		a, _, err := scanAccount(tx.QueryRowContext(ctx, `SELECT `+accountCols+` FROM operator_accounts WHERE id = $1`+s.d.lockRow, account))
		if errors.Is(err, sql.ErrNoRows) {
			return vend.Errorf(ErrAccountNotFound, "%q", clip(account))
		}
		if err != nil {
			return err
		}
		if a.Disabled {
			return vend.Errorf(ErrAccountDisabled, "%s", a.Email)
		}
		exp := now + lim.TTL.Milliseconds()
		if _, err := tx.ExecContext(ctx, `INSERT INTO console_sessions (hash, account_id, created_ms, last_used_ms, idle_ms, expires_ms)
			VALUES ($1, $2, $3, $3, $4, $5)`, tokenHash(tok), a.ID, now, lim.Idle.Milliseconds(), exp); err != nil {
			return err
		}
		cs = ConsoleSession{Account: a, Created: time.UnixMilli(now).UTC(), LastUsed: time.UnixMilli(now).UTC(),
			Expires: time.UnixMilli(exp).UTC(), Idle: lim.Idle}
		return nil
	})
	if err != nil {
		return "", ConsoleSession{}, err
	}
	return tok, cs, nil
}

// wellFormedConsoleToken reports whether tok has the shape of a console
// token; anything else is refused before the database is asked.
func wellFormedConsoleToken(tok string) bool {
	if len(tok) != consoleTokenLen || !strings.HasPrefix(tok, ConsoleTokenPrefix) {
		return false
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(tok[len(ConsoleTokenPrefix):])
	return err == nil && len(b) == 32
}

// ConsoleSessionByToken checks a console bearer token on every request:
// the session exists, is not revoked, has neither passed its absolute
// expiry nor been idle longer than its idle bound, and its account is
// enabled. A malformed token is refused without asking the database; an
// unknown or refused one with a single read. A live session's last use is
// recorded when older than ConsoleTouch. Errors: ErrToken (its message
// says why).
func (s *Store) ConsoleSessionByToken(ctx context.Context, token string) (ConsoleSession, error) {
	if !wellFormedConsoleToken(token) {
		return ConsoleSession{}, vend.Errorf(ErrToken, "not a console session token")
	}
	h := tokenHash(token)
	var cs ConsoleSession
	var created, used, idle, exp, revoked, disabled int64
	var why string
	err := s.db.QueryRowContext(ctx, `SELECT a.id, a.operator_id, a.email, a.disabled_ms, a.role,
			c.created_ms, c.last_used_ms, c.idle_ms, c.expires_ms, c.revoked_ms, c.revoke_reason
		FROM console_sessions c JOIN operator_accounts a ON a.id = c.account_id WHERE c.hash = $1`, h).
		Scan(&cs.Account.ID, &cs.Account.OperatorID, &cs.Account.Email, &disabled, &cs.Account.Role, &created, &used, &idle, &exp, &revoked, &why)
	if errors.Is(err, sql.ErrNoRows) {
		return ConsoleSession{}, vend.Errorf(ErrToken, "unknown console session")
	}
	if err != nil {
		return ConsoleSession{}, fmt.Errorf("store: console session: %w", err)
	}
	now := s.nowMs()
	switch {
	case revoked != 0:
		return ConsoleSession{}, vend.Errorf(ErrToken, "console session ended (%s)", why)
	case disabled != 0:
		return ConsoleSession{}, vend.Errorf(ErrToken, "console session ended (account disabled)")
	case now >= exp:
		return ConsoleSession{}, vend.Errorf(ErrToken, "console session expired")
	case now-used >= idle:
		return ConsoleSession{}, vend.Errorf(ErrToken, "console session idle too long")
	}
	cs.Created, cs.LastUsed, cs.Expires, cs.Idle = time.UnixMilli(created).UTC(), time.UnixMilli(used).UTC(), time.UnixMilli(exp).UTC(), time.Duration(idle)*time.Millisecond
	if time.Duration(now-used)*time.Millisecond >= ConsoleTouch(cs.Idle) {
		if _, err := s.db.ExecContext(ctx, `UPDATE console_sessions SET last_used_ms = $1 WHERE hash = $2 AND last_used_ms < $1`, now, h); err != nil {
			return ConsoleSession{}, fmt.Errorf("store: console session: %w", err)
		}
		cs.LastUsed = time.UnixMilli(now).UTC()
	}
	return cs, nil
}

// revokeConsoleSessions marks the live sessions of account revoked, except
// the one whose hash is keep (nil: none), and returns how many it revoked.
func (s *Store) revokeConsoleSessions(ctx context.Context, q queryer, account string, keep []byte, why string) (int, error) {
	if keep == nil {
		keep = []byte{}
	}
	res, err := q.ExecContext(ctx, `UPDATE console_sessions SET revoked_ms = $1, revoke_reason = $2
		WHERE account_id = $3 AND revoked_ms = 0 AND hash <> $4`, s.nowMs(), why, account, keep)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// EndConsoleSession revokes one console session (log-out). Ending an
// unknown, malformed or already ended session is not an error.
func (s *Store) EndConsoleSession(ctx context.Context, token string) error {
	if !wellFormedConsoleToken(token) {
		return nil
	}
	_, err := s.db.ExecContext(ctx, `UPDATE console_sessions SET revoked_ms = $1, revoke_reason = 'logout' WHERE hash = $2 AND revoked_ms = 0`,
		s.nowMs(), tokenHash(token))
	if err != nil {
		return fmt.Errorf("store: end console session: %w", err)
	}
	return nil
}

// ChangeOperatorPassword changes the password of the account that the
// live console session token belongs to, after checking current; every
// other session of that account is revoked, the one making the change
// stays. It returns how many sessions it revoked. Errors: ErrToken,
// ErrCurrentPassword, ErrInput (next is not 8-72 bytes).
func (s *Store) ChangeOperatorPassword(ctx context.Context, token, current, next string) (int, error) {
	cs, err := s.ConsoleSessionByToken(ctx, token)
	if err != nil {
		return 0, err
	}
	var old string
	if err := s.db.QueryRowContext(ctx, `SELECT pw_hash FROM operator_accounts WHERE id = $1`, cs.Account.ID).Scan(&old); err != nil {
		return 0, fmt.Errorf("store: change password: %w", err)
	}
	if bcrypt.CompareHashAndPassword([]byte(old), []byte(current)) != nil {
		return 0, vend.Errorf(ErrCurrentPassword, "%s", cs.Account.Email)
	}
	h, err := s.hash(next)
	if err != nil {
		return 0, err
	}
	var n int
	err = s.tx(ctx, "change password", func(tx *sql.Tx) error {
		// Compare and swap: a password changed, or an account disabled,
		// since the check above makes this change fail.
		res, err := tx.ExecContext(ctx, `UPDATE operator_accounts SET pw_hash = $1 WHERE id = $2 AND pw_hash = $3 AND disabled_ms = 0`, h, cs.Account.ID, old)
		if err != nil {
			return err
		}
		if k, err := res.RowsAffected(); err != nil {
			return err
		} else if k != 1 {
			return vend.Errorf(ErrToken, "the account changed meanwhile; log in again")
		}
		n, err = s.revokeConsoleSessions(ctx, tx, cs.Account.ID, tokenHash(token), "password")
		return err
	})
	return n, err
}

// SetOperatorPassword sets the password of the account of email (an
// administrator's reset: no current password) and revokes every session
// of that account. It returns the account and how many sessions it
// revoked. Errors: ErrInput, ErrAccountNotFound.
func (s *Store) SetOperatorPassword(ctx context.Context, email, password string) (OperatorAccount, int, error) {
	h, err := s.hash(password)
	if err != nil {
		return OperatorAccount{}, 0, err
	}
	a, _, err := s.accountByEmail(ctx, email)
	if err != nil {
		return OperatorAccount{}, 0, err
	}
	var n int
	err = s.tx(ctx, "set password", func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE operator_accounts SET pw_hash = $1 WHERE id = $2`, h, a.ID); err != nil {
			return err
		}
		n, err = s.revokeConsoleSessions(ctx, tx, a.ID, nil, "password")
		return err
	})
	return a, n, err
}

// SetOperatorAccountDisabled disables (or enables) the account of email.
// Disabling revokes every session of the account in the same transaction,
// so the next request with any of its tokens is refused, and log-in is
// refused until it is enabled again; enabling does not bring old sessions
// back. Both are idempotent. It returns the account and how many sessions
// it revoked. Errors: ErrAccountNotFound.
func (s *Store) SetOperatorAccountDisabled(ctx context.Context, email string, disabled bool) (OperatorAccount, int, error) {
	a, _, err := s.accountByEmail(ctx, email)
	if err != nil {
		return OperatorAccount{}, 0, err
	}
	var n int
	err = s.tx(ctx, "disable account", func(tx *sql.Tx) error {
		if !disabled {
			_, err := tx.ExecContext(ctx, `UPDATE operator_accounts SET disabled_ms = 0 WHERE id = $1`, a.ID)
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE operator_accounts SET disabled_ms = $1 WHERE id = $2 AND disabled_ms = 0`, s.nowMs(), a.ID); err != nil {
			return err
		}
		n, err = s.revokeConsoleSessions(ctx, tx, a.ID, nil, "disabled")
		return err
	})
	if err != nil {
		return OperatorAccount{}, 0, err
	}
	a.Disabled = disabled
	return a, n, nil
}

// statusCols are what an operator sees of a device: never its keys, so
// listing a fleet decrypts nothing.
const statusCols = `id, name, state, online, telemetry, last_seen_ms`

func scanStatus(sc interface{ Scan(...any) error }) (DeviceStatus, error) {
	var d DeviceStatus
	var state, tel string
	var online int
	var seen int64
	if err := sc.Scan(&d.ID, &d.Name, &state, &online, &tel, &seen); err != nil {
		return DeviceStatus{}, err
	}
	d.State, d.Online, d.Telemetry = DeviceState(state), online == 1, json.RawMessage(tel)
	if seen != 0 {
		d.LastSeen = time.UnixMilli(seen).UTC()
	}
	return d, nil
}

// OperatorDevices returns operator's devices, ordered by ID, with online
// state, last telemetry and machines. It reads no keys.
func (s *Store) OperatorDevices(ctx context.Context, operator string) ([]DeviceStatus, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+statusCols+` FROM devices WHERE operator_id = $1 ORDER BY id`, operator)
	if err != nil {
		return nil, fmt.Errorf("store: operator devices: %w", err)
	}
	var out []DeviceStatus
	var ids []string
	for rows.Next() {
		d, err := scanStatus(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("store: operator devices: %w", err)
		}
		out = append(out, d)
		ids = append(ids, d.ID)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: operator devices: %w", err)
	}
	ms, err := s.machines(ctx, ids)
	if err != nil {
		return nil, err
	}
	for i := range out {
		out[i].Machines = ms[out[i].ID]
	}
	return out, nil
}

// OperatorDevice returns one of operator's devices, as OperatorDevices
// does, with one query for the device and one for its machines; it reads
// no keys. Errors: ErrDeviceNotFound (also for another operator's device).
func (s *Store) OperatorDevice(ctx context.Context, operator, id string) (DeviceStatus, error) {
	d, err := scanStatus(s.db.QueryRowContext(ctx, `SELECT `+statusCols+` FROM devices WHERE id = $1 AND operator_id = $2`, id, operator))
	if errors.Is(err, sql.ErrNoRows) {
		return DeviceStatus{}, vend.Errorf(ErrDeviceNotFound, "%q", clip(id))
	}
	if err != nil {
		return DeviceStatus{}, fmt.Errorf("store: operator device: %w", err)
	}
	ms, err := s.machines(ctx, []string{id})
	if err != nil {
		return DeviceStatus{}, err
	}
	d.Machines = ms[id]
	return d, nil
}

// The roles an operator account may have, from the most to the least
// powerful; cloud/service (roles.go) says what each may do.
const (
	RoleOwner      = "owner"
	RoleManager    = "manager"
	RoleTechnician = "technician"
	RoleViewer     = "viewer"
)

// OperatorRoles lists the roles, the most powerful first.
var OperatorRoles = []string{RoleOwner, RoleManager, RoleTechnician, RoleViewer}

func checkRole(role string) error {
	if !slices.Contains(OperatorRoles, role) {
		return vend.Errorf(ErrInput, "role %q: want owner, manager, technician or viewer", clip(role))
	}
	return nil
}

// ErrLastOwner refuses a change that would leave an operator without an
// enabled owner (nobody could manage its accounts any more).
var ErrLastOwner = vend.E(vend.Conflict, "account.last_owner", "store: an operator needs at least one enabled owner")

// OperatorAccounts returns operator's console accounts, ordered by email.
func (s *Store) OperatorAccounts(ctx context.Context, operator string) ([]OperatorAccount, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+accountCols+` FROM operator_accounts WHERE operator_id = $1 ORDER BY email`, operator)
	if err != nil {
		return nil, fmt.Errorf("store: operator accounts: %w", err)
	}
	defer rows.Close()
	var out []OperatorAccount
	for rows.Next() {
		a, _, err := scanAccount(rows)
		if err != nil {
			return nil, fmt.Errorf("store: operator accounts: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: operator accounts: %w", err)
	}
	return out, nil
}

// OperatorAccountByID returns operator's account id. Errors:
// ErrAccountNotFound (also for another operator's account).
func (s *Store) OperatorAccountByID(ctx context.Context, operator, id string) (OperatorAccount, error) {
	a, _, err := scanAccount(s.db.QueryRowContext(ctx, `SELECT `+accountCols+` FROM operator_accounts WHERE id = $1 AND operator_id = $2`, id, operator))
	if errors.Is(err, sql.ErrNoRows) {
		return OperatorAccount{}, vend.Errorf(ErrAccountNotFound, "%q", clip(id))
	}
	if err != nil {
		return OperatorAccount{}, fmt.Errorf("store: operator account: %w", err)
	}
	return a, nil
}

// changeAccount runs change on operator's account id in one transaction
// that holds the operator's row, so that concurrent changes of one
// operator's accounts are serialized; after change, at least one enabled
// owner must remain (else ErrLastOwner and nothing is changed). It
// returns the account before and after.
func (s *Store) changeAccount(ctx context.Context, what, operator, id string, change func(tx *sql.Tx, a OperatorAccount) error) (before, after OperatorAccount, err error) {
	err = s.tx(ctx, what, func(tx *sql.Tx) error {
		var op string
		err := tx.QueryRowContext(ctx, `SELECT id FROM operators WHERE id = $1`+s.d.lockRow, operator).Scan(&op)
		if errors.Is(err, sql.ErrNoRows) {
			return vend.Errorf(ErrAccountNotFound, "%q", clip(id))
		}
		if err != nil {
			return err
		}
		before, _, err = scanAccount(tx.QueryRowContext(ctx, `SELECT `+accountCols+` FROM operator_accounts WHERE id = $1 AND operator_id = $2`, id, operator))
		if errors.Is(err, sql.ErrNoRows) {
			return vend.Errorf(ErrAccountNotFound, "%q", clip(id))
		}
		if err != nil {
			return err
		}
		if err := change(tx, before); err != nil {
			return err
		}
		var owners int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM operator_accounts WHERE operator_id = $1 AND role = 'owner' AND disabled_ms = 0`, operator).Scan(&owners); err != nil {
			return err
		}
		if owners == 0 {
			return vend.Errorf(ErrLastOwner, "%s", before.Email)
		}
		after, _, err = scanAccount(tx.QueryRowContext(ctx, `SELECT `+accountCols+` FROM operator_accounts WHERE id = $1`, id))
		return err
	})
	if err != nil {
		return OperatorAccount{}, OperatorAccount{}, err
	}
	return before, after, nil
}

// SetOperatorAccountRole gives operator's account id role and returns the
// account before and after; its sessions stay, and carry the new role
// from their next request. Errors: ErrInput (unknown role),
// ErrAccountNotFound (also another operator's), ErrLastOwner.
func (s *Store) SetOperatorAccountRole(ctx context.Context, operator, id, role string) (before, after OperatorAccount, err error) {
	if err := checkRole(role); err != nil {
		return OperatorAccount{}, OperatorAccount{}, err
	}
	return s.changeAccount(ctx, "set account role", operator, id, func(tx *sql.Tx, _ OperatorAccount) error {
		_, err := tx.ExecContext(ctx, `UPDATE operator_accounts SET role = $1 WHERE id = $2`, role, id)
		return err
	})
}

// SetOperatorAccountDisabledByID disables (or enables) operator's account
// id, as SetOperatorAccountDisabled does (disabling revokes its sessions
// in the same transaction), and returns the account before and after and
// how many sessions it revoked. Errors: ErrAccountNotFound (also another
// operator's), ErrLastOwner (disabling the last enabled owner).
func (s *Store) SetOperatorAccountDisabledByID(ctx context.Context, operator, id string, disabled bool) (before, after OperatorAccount, revoked int, err error) {
	before, after, err = s.changeAccount(ctx, "disable account", operator, id, func(tx *sql.Tx, a OperatorAccount) error {
		revoked = 0
		if !disabled {
			_, err := tx.ExecContext(ctx, `UPDATE operator_accounts SET disabled_ms = 0 WHERE id = $1`, id)
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE operator_accounts SET disabled_ms = $1 WHERE id = $2 AND disabled_ms = 0`, s.nowMs(), id); err != nil {
			return err
		}
		n, err := s.revokeConsoleSessions(ctx, tx, id, nil, "disabled")
		revoked = n
		return err
	})
	return before, after, revoked, err
}
