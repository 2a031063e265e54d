package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"beaconvend/app-protocol/vend"
)

// AuditEntry is one change in an operator's business, as the audit log
// keeps it: who (the account, its email and role then, the client
// address), what (action and target), the state before and after as
// JSON, and when (the cloud's clock).
type AuditEntry struct {
	ID       int64 // ascending in the order entries were written
	Operator string
	Account  string // "" for the cloud itself or the command line
	Email    string // the account's email then, or "cli", "system"
	Role     string // the account's role then
	Action   string // dotted verb: price.set, session.settle, account.role, …
	Target   string // what changed: device/machine, a session, an account
	Before   json.RawMessage
	After    json.RawMessage
	At       time.Time
	IP       string
}

// Bounds of an audit entry's fields (bytes).
const (
	MaxAuditField = 200      // action, target, email, role, ip
	MaxAuditJSON  = 64 << 10 // before and after, each
)

// AppendAudit writes e (its ID and At are set here; At is the store's
// clock) and returns it as written. Before and After must be JSON (nil is
// null). Errors: ErrInput (no operator or action, a field too long, not
// JSON).
func (s *Store) AppendAudit(ctx context.Context, e AuditEntry) (AuditEntry, error) {
	if e.Operator == "" || e.Action == "" {
		return AuditEntry{}, vend.Errorf(ErrInput, "audit entry needs an operator and an action")
	}
	for name, v := range map[string]string{"action": e.Action, "target": e.Target, "email": e.Email, "role": e.Role, "ip": e.IP, "account": e.Account} {
		if len(v) > MaxAuditField {
			return AuditEntry{}, vend.Errorf(ErrInput, "audit %s longer than %d bytes", name, MaxAuditField)
		}
	}
	for name, p := range map[string]*json.RawMessage{"before": &e.Before, "after": &e.After} {
		if len(*p) == 0 {
			*p = json.RawMessage("null")
		}
		if len(*p) > MaxAuditJSON || !json.Valid(*p) {
			return AuditEntry{}, vend.Errorf(ErrInput, "audit %s: not JSON of at most %d bytes", name, MaxAuditJSON)
		}
	}
	now := s.nowMs()
	e.At = time.UnixMilli(now).UTC()
	err := s.db.QueryRowContext(ctx, `INSERT INTO audit_log (operator_id, account_id, email, role, action, target, before_json, after_json, at_ms, ip)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id`,
		e.Operator, e.Account, e.Email, e.Role, e.Action, e.Target, string(e.Before), string(e.After), now, e.IP).Scan(&e.ID)
	if err != nil {
		return AuditEntry{}, fmt.Errorf("store: append audit: %w", err)
	}
	return e, nil
}

// AuditFilter selects audit entries: by action (exact, or a prefix
// ending in "." such as "account."), by account (its ID or email), from
// Since (inclusive) until Until (exclusive), older than the cursor Before
// (an entry ID; 0: from the newest), at most Limit (DefaultAuditLimit
// when 0, at most MaxAuditLimit).
type AuditFilter struct {
	Action  string
	Account string
	Since   time.Time
	Until   time.Time
	Before  int64
	Limit   int
}

// Limits of AuditLog.
const (
	DefaultAuditLimit = 50
	MaxAuditLimit     = 1000
)

// AuditLog returns operator's audit entries that match f, newest first.
// Page on with f.Before set to the last entry's ID; an export pages
// until a page comes back shorter than its limit. Errors: ErrInput (a
// limit out of range).
func (s *Store) AuditLog(ctx context.Context, operator string, f AuditFilter) ([]AuditEntry, error) {
	if f.Limit == 0 {
		f.Limit = DefaultAuditLimit
	}
	if f.Limit < 0 || f.Limit > MaxAuditLimit {
		return nil, vend.Errorf(ErrInput, "audit limit %d: want 1-%d", f.Limit, MaxAuditLimit)
	}
	q := `SELECT id, operator_id, account_id, email, role, action, target, before_json, after_json, at_ms, ip
		FROM audit_log WHERE operator_id = $1`
	args := []any{operator}
	arg := func(cond string, v any) {
		args = append(args, v)
		q += fmt.Sprintf(" AND "+cond, len(args))
	}
	if a := strings.TrimSpace(f.Action); a != "" {
		if strings.HasSuffix(a, ".") {
			arg("action LIKE $%d", escapeLike(a)+"%")
			q += ` ESCAPE '\'`
		} else {
			arg("action = $%d", a)
		}
	}
	if a := strings.TrimSpace(f.Account); a != "" {
		args = append(args, a, strings.ToLower(a))
		q += fmt.Sprintf(" AND (account_id = $%d OR email = $%d)", len(args)-1, len(args))
	}
	if !f.Since.IsZero() {
		arg("at_ms >= $%d", f.Since.UnixMilli())
	}
	if !f.Until.IsZero() {
		arg("at_ms < $%d", f.Until.UnixMilli())
	}
	if f.Before > 0 {
		arg("id < $%d", f.Before)
	}
	args = append(args, f.Limit)
	q += fmt.Sprintf(" ORDER BY id DESC LIMIT $%d", len(args))
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: audit log: %w", err)
	}
	defer rows.Close()
	var out []AuditEntry
	for rows.Next() {
		var e AuditEntry
		var before, after string
		var at int64
		if err := rows.Scan(&e.ID, &e.Operator, &e.Account, &e.Email, &e.Role, &e.Action, &e.Target, &before, &after, &at, &e.IP); err != nil {
			return nil, fmt.Errorf("store: audit log: %w", err)
		}
		e.Before, e.After, e.At = json.RawMessage(before), json.RawMessage(after), time.UnixMilli(at).UTC()
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: audit log: %w", err)
	}
	return out, nil
}

// escapeLike escapes LIKE's wildcards (and the escape character \).
func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}
