package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"beaconvend/app-protocol/vend"
)

// SessionCursor is a position in a user's session list: the sessions
// created before Created (Unix ms), or at Created with an id below ID.
// The zero cursor is the start (the newest).
type SessionCursor struct {
	Created int64
	ID      vend.SessionID
}

// UserSessions returns up to limit (1-1000) of user's sessions after cur,
// newest first (created time, then id, descending), without their grants,
// and the cursor of the next page (zero when this page is the last).
// Errors: ErrInput, the database's.
func (s *Store) UserSessions(ctx context.Context, user string, cur SessionCursor, limit int) ([]Session, SessionCursor, error) {
	if user == "" || limit < 1 || limit > 1000 {
		return nil, SessionCursor{}, vend.Errorf(ErrInput, "user sessions need a user and a limit of 1-1000")
	}
	created, id := int64(1)<<62, "" // after every session
	if cur != (SessionCursor{}) {
		created, id = cur.Created, cur.ID.String()
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+sessionCols+` FROM sessions
		WHERE user_id = $1 AND (created_ms < $2 OR (created_ms = $2 AND id < $3))
		ORDER BY created_ms DESC, id DESC LIMIT $4`, user, created, id, limit+1)
	if err != nil {
		return nil, SessionCursor{}, fmt.Errorf("store: user sessions: %w", err)
	}
	defer rows.Close()
	out := []Session{}
	for rows.Next() {
		ss, err := s.scanSession(rows)
		if err != nil {
			return nil, SessionCursor{}, fmt.Errorf("store: user sessions: %w", err)
		}
		ss.Grant = nil
		out = append(out, ss)
	}
	if err := rows.Err(); err != nil {
		return nil, SessionCursor{}, fmt.Errorf("store: user sessions: %w", err)
	}
	if len(out) <= limit {
		return out, SessionCursor{}, nil
	}
	out = out[:limit]
	last := out[limit-1]
	return out, SessionCursor{Created: last.Created.UnixMilli(), ID: last.ID}, nil
}

// UserSessionByKey returns the session user started with the
// idempotency key key, or ErrSessionNotFound. Errors: the database's.
func (s *Store) UserSessionByKey(ctx context.Context, user, key string) (Session, error) {
	ss, err := s.scanSession(s.db.QueryRowContext(ctx, `SELECT `+sessionCols+` FROM sessions WHERE user_id = $1 AND idem_key = $2`, user, key))
	if errors.Is(err, sql.ErrNoRows) {
		return Session{}, vend.Errorf(ErrSessionNotFound, "start key %q", clip(key))
	}
	if err != nil {
		return Session{}, fmt.Errorf("store: session by key: %w", err)
	}
	return ss, nil
}
