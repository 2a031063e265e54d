package store

import (
	"context"
	"fmt"
	"time"

	"beaconvend/app-protocol/vend"
)

// SessionFilter narrows OperatorSessions.
type SessionFilter struct {
	Device string    // "" for all the operator's devices
	Since  time.Time // created at or after; zero for no bound
	Until  time.Time // created before; zero for no bound
	Limit  int       // at most this many, newest first; 0 means 100, capped at 1000
}

// OperatorSessions returns sessions on operator's devices, newest first.
// Sessions on other operators' devices are never returned, whatever the filter.
func (s *Store) OperatorSessions(ctx context.Context, operator string, f SessionFilter) ([]Session, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	f.Limit = min(f.Limit, 1000)
	until := int64(1) << 62
	if !f.Until.IsZero() {
		until = f.Until.UnixMilli()
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+sessionCols+` FROM sessions
		WHERE operator_id = $1 AND ($2 = '' OR device_id = $2) AND created_ms >= $3 AND created_ms < $4
		ORDER BY created_ms DESC, id LIMIT $5`, operator, f.Device, f.Since.UnixMilli(), until, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("store: operator sessions: %w", err)
	}
	defer rows.Close()
	var out []Session
	for rows.Next() {
		ss, err := s.scanSession(rows)
		if err != nil {
			return nil, fmt.Errorf("store: operator sessions: %w", err)
		}
		ss.Grant = nil
		out = append(out, ss)
	}
	return out, rows.Err()
}

// Revenue is what one device earned its operator on one UTC day.
type Revenue struct {
	Device   string
	Day      time.Time // 00:00 UTC
	Amount   vend.Amount
	Sessions int // sessions with a capture that day
}

// RevenueByDeviceDay sums captures (from the ledger) into operator's
// revenue per device and UTC day for sessions settled in [from, to),
// ordered by day then device.
func (s *Store) RevenueByDeviceDay(ctx context.Context, operator string, from, to time.Time) ([]Revenue, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT s.device_id, t.created_ms / 86400000 AS day, e.currency, SUM(e.amount), COUNT(*)
		FROM entries e
		JOIN accounts a ON a.id = e.account_id
		JOIN ledger_tx t ON t.id = e.tx_id
		JOIN sessions s ON s.id = t.session_id
		WHERE a.kind = 'operator_revenue' AND a.owner = $1 AND s.operator_id = $1 AND t.kind = 'capture'
			AND t.created_ms >= $2 AND t.created_ms < $3
		GROUP BY s.device_id, t.created_ms / 86400000, e.currency
		ORDER BY day, s.device_id, e.currency`, operator, from.UnixMilli(), to.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("store: revenue: %w", err)
	}
	defer rows.Close()
	var out []Revenue
	for rows.Next() {
		var r Revenue
		var day int64
		var cur string
		if err := rows.Scan(&r.Device, &day, &cur, &r.Amount.Minor, &r.Sessions); err != nil {
			return nil, fmt.Errorf("store: revenue: %w", err)
		}
		r.Day, r.Amount.Currency = time.UnixMilli(day*86400000).UTC(), vend.Currency(cur)
		out = append(out, r)
	}
	return out, rows.Err()
}

// UnreportedSessions returns operator's unreported sessions (acknowledged,
// no report within the longest run plus the offline allowance: the hold
// is kept, the machine is free), those whose settlement window ends first
// first; at most limit (0 means 100, capped at 1000).
func (s *Store) UnreportedSessions(ctx context.Context, operator string, limit int) ([]Session, error) {
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	rows, err := s.db.QueryContext(ctx, `SELECT `+sessionCols+` FROM sessions
		WHERE operator_id = $1 AND state = 'unreported' ORDER BY deadline_ms, id LIMIT $2`, operator, limit)
	if err != nil {
		return nil, fmt.Errorf("store: unreported sessions: %w", err)
	}
	defer rows.Close()
	var out []Session
	for rows.Next() {
		ss, err := s.scanSession(rows)
		if err != nil {
			return nil, fmt.Errorf("store: unreported sessions: %w", err)
		}
		ss.Grant = nil
		out = append(out, ss)
	}
	return out, rows.Err()
}

// CountUnreported returns how many sessions are unreported, all operators
// together (the sweeper's gauge).
func (s *Store) CountUnreported(ctx context.Context) (int, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM sessions WHERE state = 'unreported'`).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count unreported: %w", err)
	}
	return n, nil
}
