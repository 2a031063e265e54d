package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/bcrypt"

	"beaconvend/app-protocol/vend"
)

// Errors of the step-up PIN and its tokens.
var (
	// ErrPINNotSet: the payer has no step-up PIN.
	ErrPINNotSet = vend.E(vend.Unauthorized, "step_up.pin_required", "store: no step-up pin set")
	// ErrStepUpToken: the step-up token is unknown, expired, spent by
	// another request, of another user or of another scope.
	ErrStepUpToken = vend.E(vend.Unauthorized, "step_up.invalid", "store: step-up token unknown, expired, used or not yours")
)

// StepUpPrefix begins every step-up token.
const StepUpPrefix = "su_"

// StepUpSettings is a payer's step-up PIN state and thresholds. A nil
// threshold means the payer asks no step-up for that action (the
// operator's limits still apply).
type StepUpSettings struct {
	PINSet          bool
	SessionCapAbove *vend.Amount // caps (sessions and checkouts) above this need a step-up
	TopUpAbove      *vend.Amount // top-ups above this
	WithdrawalAbove *vend.Amount // withdrawals above this
	Updated         time.Time    // last change of PIN or thresholds; zero when no PIN
}

// PINCheck is the outcome of one CheckPIN.
type PINCheck struct {
	OK bool // the PIN was right (the window's count is reset)
	// Attempts is how many checks the current window has reserved,
	// this one included (before a right PIN reset it).
	Attempts int
	// Locked reports that no check was allowed: the window's limit was
	// already used up. The PIN was not compared.
	Locked bool
	// LockedUntil is when the window ends and checks are allowed again:
	// set when Locked, and when this wrong guess used up the limit.
	LockedUntil time.Time
}

// validPIN is the store's own guard (the service also refuses weak PINs):
// 4-8 ASCII digits.
func validPIN(pin string) error {
	if len(pin) < 4 || len(pin) > 8 {
		return vend.Errorf(ErrInput, "pin must be 4-8 digits, have %d characters", len(pin))
	}
	for i := 0; i < len(pin); i++ {
		if pin[i] < '0' || pin[i] > '9' {
			return vend.Errorf(ErrInput, "pin must be digits only")
		}
	}
	return nil
}

func (s *Store) bcryptCost() int {
	if s.cost == 0 {
		return bcrypt.DefaultCost
	}
	return s.cost
}

// SetStepUpPIN stores a bcrypt hash of pin (4-8 digits) as user's step-up
// PIN, creating the record or replacing the PIN (thresholds kept), and
// resets the window's guesses. Whether the caller may change it is the
// service's decision. Errors: ErrInput, ErrUserNotFound, the database's.
func (s *Store) SetStepUpPIN(ctx context.Context, user, pin string) error {
	if err := validPIN(pin); err != nil {
		return err
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pin), s.bcryptCost())
	if err != nil {
		return fmt.Errorf("store: hash pin: %w", err)
	}
	return s.tx(ctx, "set pin", func(tx *sql.Tx) error {
		if err := s.userExists(ctx, tx, user); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO step_up_pins (user_id, pin_hash, attempts, window_start_ms, updated_ms)
			VALUES ($1, $2, 0, 0, $3)
			ON CONFLICT (user_id) DO UPDATE SET pin_hash = $2, attempts = 0, window_start_ms = 0, updated_ms = $3`,
			user, string(h), s.nowMs())
		return err
	})
}

// StepUpSettingsOf returns user's PIN state and thresholds (PINSet false
// and no thresholds when the user has no PIN). Errors: the database's.
func (s *Store) StepUpSettingsOf(ctx context.Context, user string) (StepUpSettings, error) {
	var (
		out        StepUpSettings
		sm, tm, wm sql.NullInt64
		sc, tc, wc string
		updated    int64
	)
	err := s.db.QueryRowContext(ctx, `SELECT session_minor, session_currency, top_up_minor, top_up_currency,
		withdrawal_minor, withdrawal_currency, updated_ms FROM step_up_pins WHERE user_id = $1`, user).
		Scan(&sm, &sc, &tm, &tc, &wm, &wc, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return StepUpSettings{}, nil
	}
	if err != nil {
		return StepUpSettings{}, fmt.Errorf("store: step-up settings: %w", err)
	}
	amt := func(m sql.NullInt64, c string) *vend.Amount {
		if !m.Valid {
			return nil
		}
		return &vend.Amount{Minor: m.Int64, Currency: vend.Currency(c)}
	}
	out = StepUpSettings{PINSet: true, SessionCapAbove: amt(sm, sc), TopUpAbove: amt(tm, tc), WithdrawalAbove: amt(wm, wc),
		Updated: time.UnixMilli(updated).UTC()}
	return out, nil
}

// SetStepUpThresholds replaces user's three thresholds (nil: none). Each
// set one must be a non-negative amount with a valid currency. Errors:
// ErrPINNotSet (thresholds need a PIN), ErrInput, the database's.
func (s *Store) SetStepUpThresholds(ctx context.Context, user string, session, topUp, withdrawal *vend.Amount) error {
	type col struct {
		name string
		a    *vend.Amount
	}
	args := []any{user, s.nowMs()}
	for _, c := range []col{{"session_cap_above", session}, {"top_up_above", topUp}, {"withdrawal_above", withdrawal}} {
		if c.a == nil {
			args = append(args, nil, "")
			continue
		}
		if c.a.Minor < 0 {
			return vend.Errorf(ErrInput, "%s: minor %d is negative", c.name, c.a.Minor)
		}
		if err := c.a.Currency.Validate(); err != nil {
			return vend.Errorf(ErrInput, "%s: %v", c.name, err)
		}
		args = append(args, c.a.Minor, string(c.a.Currency))
	}
	res, err := s.db.ExecContext(ctx, `UPDATE step_up_pins SET updated_ms = $2,
		session_minor = $3, session_currency = $4, top_up_minor = $5, top_up_currency = $6,
		withdrawal_minor = $7, withdrawal_currency = $8 WHERE user_id = $1`, args...)
	if err != nil {
		return fmt.Errorf("store: step-up thresholds: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return vend.Errorf(ErrPINNotSet, "set a pin before thresholds")
	}
	return nil
}

// CheckPIN compares pin with user's step-up PIN, at most limit times per
// window. The check is reserved before the (slow) comparison by one
// conditional UPDATE that counts it, so concurrent guesses on any number
// of instances get at most limit comparisons per window: a reservation
// beyond the limit is refused (Locked) without comparing. The window
// starts at the first reserved check and lasts window; a right PIN
// resets the count. A wrong guess counts whether or not the PIN is well
// formed. Errors: ErrPINNotSet, ErrInput (limit or window not positive),
// the database's.
func (s *Store) CheckPIN(ctx context.Context, user, pin string, limit int, window time.Duration) (PINCheck, error) {
	if limit <= 0 || window <= 0 {
		return PINCheck{}, vend.Errorf(ErrInput, "pin check needs a positive limit and window")
	}
	var (
		n, start int64
		hash     string
	)
	err := s.tx(ctx, "reserve pin check", func(tx *sql.Tx) error {
		now := s.nowMs()
		old := now - window.Milliseconds()
		err := tx.QueryRowContext(ctx, `UPDATE step_up_pins SET
				attempts = CASE WHEN window_start_ms <= $2 THEN 1 ELSE attempts + 1 END,
				window_start_ms = CASE WHEN window_start_ms <= $2 THEN $3 ELSE window_start_ms END
			WHERE user_id = $1 AND (attempts < $4 OR window_start_ms <= $2)
			RETURNING attempts, window_start_ms, pin_hash`, user, old, now, limit).Scan(&n, &start, &hash)
		if errors.Is(err, sql.ErrNoRows) {
			// Locked, or no PIN at all.
			n = -1
			err = tx.QueryRowContext(ctx, `SELECT window_start_ms FROM step_up_pins WHERE user_id = $1`, user).Scan(&start)
			if errors.Is(err, sql.ErrNoRows) {
				return vend.Errorf(ErrPINNotSet, "user %s", clip(user))
			}
		}
		return err
	})
	if err != nil {
		return PINCheck{}, err
	}
	until := time.UnixMilli(start + window.Milliseconds()).UTC()
	if n < 0 {
		return PINCheck{Locked: true, Attempts: limit, LockedUntil: until}, nil
	}
	out := PINCheck{Attempts: int(n)}
	if validPIN(pin) == nil && bcrypt.CompareHashAndPassword([]byte(hash), []byte(pin)) == nil {
		out.OK = true
		// A right PIN starts the count again; a reservation made in the
		// meantime by a concurrent guess has had its comparison.
		if _, err := s.db.ExecContext(ctx, `UPDATE step_up_pins SET attempts = 0, window_start_ms = 0 WHERE user_id = $1`, user); err != nil {
			return PINCheck{}, fmt.Errorf("store: reset pin checks: %w", err)
		}
		return out, nil
	}
	if int(n) >= limit {
		out.LockedUntil = until
	}
	return out, nil
}

// IssueStepUpToken returns a new random step-up token for user, valid for
// ttl and for scope ("" any action). Only its SHA-256 is stored.
// Errors: ErrInput (ttl not positive, scope over 32 bytes),
// ErrUserNotFound, the database's.
func (s *Store) IssueStepUpToken(ctx context.Context, user, scope string, ttl time.Duration) (string, time.Time, error) {
	if ttl <= 0 || len(scope) > 32 {
		return "", time.Time{}, vend.Errorf(ErrInput, "step-up token needs a positive ttl and a scope of at most 32 bytes")
	}
	if err := s.userExists(ctx, s.db, user); err != nil {
		return "", time.Time{}, err
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", time.Time{}, fmt.Errorf("store: step-up token: %w", err)
	}
	tok := StepUpPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	now := s.nowMs()
	exp := now + ttl.Milliseconds()
	if _, err := s.db.ExecContext(ctx, `INSERT INTO step_up_tokens (hash, user_id, scope, expires_ms, created_ms) VALUES ($1, $2, $3, $4, $5)`,
		tokenHash(tok), user, scope, exp, now); err != nil {
		return "", time.Time{}, fmt.Errorf("store: issue step-up token: %w", err)
	}
	return tok, time.UnixMilli(exp).UTC(), nil
}

// UseStepUpToken spends token for one request of user: it must be
// unexpired, of user, of scope (or issued for any scope) and unspent —
// or spent already by the same usedFor (the action and idempotency key
// of a retried request; an empty usedFor never matches again). One
// conditional UPDATE decides, so two requests cannot both spend it.
// Errors: ErrStepUpToken, the database's.
func (s *Store) UseStepUpToken(ctx context.Context, user, token, scope, usedFor string) error {
	if len(token) > 256 {
		return vend.Errorf(ErrStepUpToken, "token over 256 bytes")
	}
	now := s.nowMs()
	res, err := s.db.ExecContext(ctx, `UPDATE step_up_tokens SET used_ms = $4, used_for = $5
		WHERE hash = $1 AND user_id = $2 AND expires_ms > $4 AND (scope = '' OR scope = $3)
			AND (used_ms = 0 OR (used_for = $5 AND $5 <> ''))`,
		tokenHash(token), user, scope, now, usedFor)
	if err != nil {
		return fmt.Errorf("store: use step-up token: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return vend.Errorf(ErrStepUpToken, "for %s", scope)
	}
	return nil
}
