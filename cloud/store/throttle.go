package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"beaconvend/app-protocol/vend"
)

// LoginThrottleState is an account's run of failed log-ins.
type LoginThrottleState struct {
	Failures    int       // consecutive failures
	LockedUntil time.Time // end of the current lock; zero when none
}

// ThrottleReset is how long after its last failure an account's count
// starts again from zero. Prune deletes records two ThrottleResets after
// their last failure (locks must be shorter than that).
const ThrottleReset = 24 * time.Hour

func validThrottle(scope, account string) error {
	if scope == "" || len(scope) > 32 || account == "" || len(account) > 128 {
		return vend.Errorf(ErrInput, "login throttle needs a scope of 1-32 bytes and an account of 1-128 bytes")
	}
	return nil
}

// LoginThrottle returns the failed log-ins of account in scope (zero when
// none). Errors: ErrInput, the database's.
func (s *Store) LoginThrottle(ctx context.Context, scope, account string) (LoginThrottleState, error) {
	if err := validThrottle(scope, account); err != nil {
		return LoginThrottleState{}, err
	}
	var n, until, updated int64
	err := s.db.QueryRowContext(ctx, `SELECT failures, locked_until_ms, updated_ms FROM login_throttle WHERE scope = $1 AND account = $2`,
		scope, account).Scan(&n, &until, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return LoginThrottleState{}, nil
	}
	if err != nil {
		return LoginThrottleState{}, fmt.Errorf("store: login throttle: %w", err)
	}
	if updated < s.nowMs()-ThrottleReset.Milliseconds() {
		return LoginThrottleState{}, nil
	}
	return throttleState(n, until), nil
}

func throttleState(n, until int64) LoginThrottleState {
	st := LoginThrottleState{Failures: int(n)}
	if until > 0 {
		st.LockedUntil = time.UnixMilli(until).UTC()
	}
	return st
}

// RecordLoginFailure counts one more failed log-in of account in scope,
// atomically across instances, and locks the account from now for
// lock(failures) when that is positive (a lock never shortens one already
// set). It returns the new state. Errors: ErrInput, the database's.
func (s *Store) RecordLoginFailure(ctx context.Context, scope, account string, lock func(failures int) time.Duration) (LoginThrottleState, error) {
	if err := validThrottle(scope, account); err != nil {
		return LoginThrottleState{}, err
	}
	var out LoginThrottleState
	err := s.tx(ctx, "login failure", func(tx *sql.Tx) error {
		now := s.nowMs()
		var n, until int64
		err := tx.QueryRowContext(ctx, `INSERT INTO login_throttle (scope, account, failures, locked_until_ms, updated_ms)
			VALUES ($1, $2, 1, 0, $3)
			ON CONFLICT (scope, account) DO UPDATE SET
				failures = CASE WHEN login_throttle.updated_ms < $4 THEN 1 ELSE login_throttle.failures + 1 END,
				locked_until_ms = CASE WHEN login_throttle.updated_ms < $4 THEN 0 ELSE login_throttle.locked_until_ms END,
				updated_ms = $3
			RETURNING failures, locked_until_ms`, scope, account, now, now-ThrottleReset.Milliseconds()).Scan(&n, &until)
		if err != nil {
			return err
		}
		if d := lock(int(n)); d > 0 && now+d.Milliseconds() > until {
			until = now + d.Milliseconds()
			if _, err := tx.ExecContext(ctx, `UPDATE login_throttle SET locked_until_ms = $1 WHERE scope = $2 AND account = $3 AND locked_until_ms < $1`,
				until, scope, account); err != nil {
				return err
			}
		}
		out = throttleState(n, until)
		return nil
	})
	return out, err
}

// ClearLoginFailures forgets account's failed log-ins (a successful
// log-in). Errors: ErrInput, the database's.
func (s *Store) ClearLoginFailures(ctx context.Context, scope, account string) error {
	if err := validThrottle(scope, account); err != nil {
		return err
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM login_throttle WHERE scope = $1 AND account = $2`, scope, account); err != nil {
		return fmt.Errorf("store: clear login failures: %w", err)
	}
	return nil
}
