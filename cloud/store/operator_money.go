package store

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"beaconvend/app-protocol/vend"
)

// Errors of the operator's money pages.
var (
	ErrCursor           = vend.E(vend.Invalid, "request.cursor", "store: the page cursor is not one this server gave")
	ErrApprovalNotFound = vend.E(vend.NotFound, "refund.approval_not_found", "store: refund approval not found")
	ErrApprovalState    = vend.E(vend.Conflict, "refund.approval_state", "store: the refund approval is no longer pending")
	ErrApprovalSelf     = vend.E(vend.Conflict, "refund.approval_self", "store: a refund cannot be approved by the account that asked for it")
)

// Page sizes of SearchSessions.
const (
	DefaultPageSize = 50
	MaxPageSize     = 500
)

// SessionQuery narrows SearchSessions. Every field is optional.
type SessionQuery struct {
	Device  string       // device ID
	Machine string       // machine ID (on any device unless Device is set)
	Since   time.Time    // created at or after
	Until   time.Time    // created before
	State   State        // one state
	Outcome vend.Outcome // one outcome (0: any)
	// Payer is a payer reference (see PayerRef): a receipt number
	// ("R-<session>"), a session ID, a channel order number or the
	// provider's transaction ID of the payment behind the session.
	Payer  string
	Cursor string // from the previous page's Next; "" for the first page
	Limit  int    // page size; 0 means DefaultPageSize, at most MaxPageSize
}

// SessionPage is one page of sessions, newest first.
type SessionPage struct {
	Sessions []Session
	Next     string // cursor of the next page; "" on the last page
}

func encodeCursor(ms int64, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(ms, 10) + "|" + id))
}

func decodeCursor(c string) (int64, string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(c) > 200 {
		return 0, "", vend.Errorf(ErrCursor, "%q", clip(c))
	}
	ms, id, ok := strings.Cut(string(b), "|")
	n, err := strconv.ParseInt(ms, 10, 64)
	if !ok || err != nil || id == "" {
		return 0, "", vend.Errorf(ErrCursor, "%q", clip(c))
	}
	return n, id, nil
}

// PayerRef normalizes a payer reference as an operator types it: spaces
// trimmed, and a receipt number "R-<session>" (the number on the app's
// receipt) reduced to its session ID.
func PayerRef(ref string) string {
	ref = strings.TrimSpace(ref)
	if s, ok := strings.CutPrefix(ref, "R-"); ok {
		return s
	}
	if s, ok := strings.CutPrefix(ref, "r-"); ok {
		return s
	}
	return ref
}

// SearchSessions returns one page of sessions on operator's devices that
// match q, newest first (created time, then ID), with the cursor of the
// next page; there is no limit on how many pages. A payer reference
// matches the session it names (receipt number or session ID), the
// session a checkout paid (its channel order number or the provider's
// transaction ID), or every session of the payer whose wallet top-up it
// names. Sessions on other operators' devices are never returned.
// Errors: ErrCursor, ErrInput (a bad state or an oversized field).
func (s *Store) SearchSessions(ctx context.Context, operator string, q SessionQuery) (SessionPage, error) {
	if q.Limit <= 0 {
		q.Limit = DefaultPageSize
	}
	q.Limit = min(q.Limit, MaxPageSize)
	if len(q.Device) > 100 || len(q.Machine) > 100 || len(q.Payer) > 200 {
		return SessionPage{}, vend.Errorf(ErrInput, "session search: a field is longer than allowed")
	}
	if q.State != "" && !knownState(q.State) {
		return SessionPage{}, vend.Errorf(ErrInput, "session search: unknown state %q", clip(string(q.State)))
	}
	curMs, curID := int64(1)<<62, ""
	if q.Cursor != "" {
		var err error
		if curMs, curID, err = decodeCursor(q.Cursor); err != nil {
			return SessionPage{}, err
		}
	}
	until := int64(1) << 62
	if !q.Until.IsZero() {
		until = q.Until.UnixMilli()
	}
	var since int64
	if !q.Since.IsZero() {
		since = q.Since.UnixMilli()
	}
	payer := PayerRef(q.Payer)
	rows, err := s.db.QueryContext(ctx, `SELECT `+sessionCols+` FROM sessions
		WHERE operator_id = $1 AND ($2 = '' OR device_id = $2) AND ($3 = '' OR machine_id = $3)
			AND created_ms >= $4 AND created_ms < $5 AND ($6 = '' OR state = $6) AND ($7 = 0 OR outcome = $7)
			AND (created_ms < $8 OR (created_ms = $8 AND id < $9))
			AND ($10 = '' OR id = $10
				OR id IN (SELECT c.session_id FROM checkouts c JOIN channel_payments p ON p.order_no = c.order_no
					WHERE c.session_id IS NOT NULL AND (c.order_no = $10 OR p.provider_tx_id = $10))
				OR user_id IN (SELECT user_id FROM channel_payments WHERE purpose = 'topup' AND (order_no = $10 OR provider_tx_id = $10)))
		ORDER BY created_ms DESC, id DESC LIMIT $11`,
		operator, q.Device, q.Machine, since, until, string(q.State), int(q.Outcome), curMs, cursorID(curID), payer, q.Limit+1)
	if err != nil {
		return SessionPage{}, fmt.Errorf("store: search sessions: %w", err)
	}
	defer rows.Close()
	var out SessionPage
	for rows.Next() {
		ss, err := s.scanSession(rows)
		if err != nil {
			return SessionPage{}, fmt.Errorf("store: search sessions: %w", err)
		}
		ss.Grant = nil
		out.Sessions = append(out.Sessions, ss)
	}
	if err := rows.Err(); err != nil {
		return SessionPage{}, fmt.Errorf("store: search sessions: %w", err)
	}
	if len(out.Sessions) > q.Limit {
		out.Sessions = out.Sessions[:q.Limit]
		last := out.Sessions[q.Limit-1]
		out.Next = encodeCursor(last.Created.UnixMilli(), last.ID.String())
	}
	return out, nil
}

// cursorID is the ID bound of a page: any ID sorts below "~" when the
// page starts at the top.
func cursorID(id string) string {
	if id == "" {
		return "~"
	}
	return id
}

func knownState(st State) bool {
	switch st {
	case Pending, Authorized, Running, Ending, Settled, Refunded, Failed, Unreported, Voided:
		return true
	}
	return false
}

// OperatorSession returns one session of operator's with its signed
// grant; another operator's session is ErrSessionNotFound.
func (s *Store) OperatorSession(ctx context.Context, operator string, id vend.SessionID) (Session, error) {
	ss, err := s.GetSession(ctx, id)
	if err != nil {
		return Session{}, err
	}
	if ss.Operator != operator {
		return Session{}, vend.Errorf(ErrSessionNotFound, "%s", id)
	}
	return ss, nil
}

// UsageReport is the signed usage report a session was settled from.
type UsageReport struct {
	Device   string
	Seq      uint64
	Signed   []byte // the device's signed report, as received
	Received time.Time
}

// SessionUsageReport returns the signed report a session was settled
// from; ok is false when none came.
func (s *Store) SessionUsageReport(ctx context.Context, id vend.SessionID) (UsageReport, bool, error) {
	var r UsageReport
	var seq, ms int64
	err := s.db.QueryRowContext(ctx, `SELECT device_id, seq, signed, received_ms FROM usage_reports WHERE session_id = $1`, id.String()).
		Scan(&r.Device, &seq, &r.Signed, &ms)
	if errors.Is(err, sql.ErrNoRows) {
		return UsageReport{}, false, nil
	}
	if err != nil {
		return UsageReport{}, false, fmt.Errorf("store: usage report: %w", err)
	}
	r.Seq, r.Received = uint64(seq), time.UnixMilli(ms).UTC()
	return r, true, nil
}

// LedgerTx is one ledger transaction of a session, as the session page
// shows it.
type LedgerTx struct {
	ID     int64
	Kind   TxKind
	At     time.Time
	Amount vend.Amount // what moved (the positive side)
	From   AccountKind
	To     AccountKind
}

// SessionLedger returns the ledger transactions of a session, oldest first.
func (s *Store) SessionLedger(ctx context.Context, id vend.SessionID) ([]LedgerTx, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT t.id, t.kind, t.created_ms, e.amount, e.currency, a.kind
		FROM ledger_tx t JOIN entries e ON e.tx_id = t.id JOIN accounts a ON a.id = e.account_id
		WHERE t.session_id = $1 ORDER BY t.id, e.amount`, id.String())
	if err != nil {
		return nil, fmt.Errorf("store: session ledger: %w", err)
	}
	defer rows.Close()
	var out []LedgerTx
	for rows.Next() {
		var id, ms, amount int64
		var kind, cur, acct string
		if err := rows.Scan(&id, &kind, &ms, &amount, &cur, &acct); err != nil {
			return nil, fmt.Errorf("store: session ledger: %w", err)
		}
		if len(out) == 0 || out[len(out)-1].ID != id {
			out = append(out, LedgerTx{ID: id, Kind: TxKind(kind), At: time.UnixMilli(ms).UTC(), Amount: vend.Amount{Currency: vend.Currency(cur)}})
		}
		t := &out[len(out)-1]
		if amount < 0 {
			t.From = AccountKind(acct)
		} else {
			t.To, t.Amount.Minor = AccountKind(acct), amount
		}
	}
	return out, rows.Err()
}

// RevenueGroup is what revenue is grouped by.
type RevenueGroup string

// Revenue groupings.
const (
	ByDay      RevenueGroup = "day"      // UTC day of the ledger transaction (key YYYY-MM-DD)
	ByDevice   RevenueGroup = "device"   // the session's device (key: device ID)
	ByLocation RevenueGroup = "location" // the device's location (key: location; "" none)
)

// RevenueLine is one group of an operator's revenue in one currency:
// Gross is what sessions were charged (captures and late captures), Refunds
// what went back (refunds, less channel refunds that failed), Net = Gross -
// Refunds, the change of the operator's revenue account.
type RevenueLine struct {
	Key      string
	Currency vend.Currency
	Gross    int64 // minor units
	Refunds  int64 // minor units, ≥ 0 unless failed channel refunds of earlier refunds came back
	Net      int64 // minor units
	Sessions int   // sessions with a capture in the group
}

// RevenueBy sums operator's revenue account movements in [from, to)
// (ledger time) by group, ordered by key then currency. Errors: ErrInput
// (an unknown group or to before from).
func (s *Store) RevenueBy(ctx context.Context, operator string, group RevenueGroup, from, to time.Time) ([]RevenueLine, error) {
	var key string
	switch group {
	case ByDay:
		key = `CAST(t.created_ms / 86400000 AS TEXT)`
	case ByDevice:
		key = `COALESCE(s.device_id, '')`
	case ByLocation:
		key = `COALESCE(d.location, '')`
	default:
		return nil, vend.Errorf(ErrInput, "revenue: unknown grouping %q", clip(string(group)))
	}
	if to.Before(from) {
		return nil, vend.Errorf(ErrInput, "revenue: the range ends before it starts")
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+key+` AS k, e.currency,
			SUM(CASE WHEN t.kind IN ('capture', 'late_capture') THEN e.amount ELSE 0 END),
			SUM(CASE WHEN t.kind IN ('capture', 'late_capture') THEN 0 ELSE e.amount END),
			COUNT(DISTINCT CASE WHEN t.kind = 'capture' THEN t.session_id END)
		FROM entries e
		JOIN accounts a ON a.id = e.account_id
		JOIN ledger_tx t ON t.id = e.tx_id
		LEFT JOIN sessions s ON s.id = t.session_id
		LEFT JOIN devices d ON d.id = s.device_id
		WHERE a.kind = 'operator_revenue' AND a.owner = $1 AND t.created_ms >= $2 AND t.created_ms < $3
		GROUP BY `+key+`, e.currency ORDER BY 1, 2`, operator, from.UnixMilli(), to.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("store: revenue: %w", err)
	}
	defer rows.Close()
	var out []RevenueLine
	for rows.Next() {
		var l RevenueLine
		var cur string
		var refunds int64
		if err := rows.Scan(&l.Key, &cur, &l.Gross, &refunds, &l.Sessions); err != nil {
			return nil, fmt.Errorf("store: revenue: %w", err)
		}
		l.Currency, l.Refunds = vend.Currency(cur), -refunds
		l.Net = l.Gross - l.Refunds
		if group == ByDay {
			n, _ := strconv.ParseInt(l.Key, 10, 64)
			l.Key = time.UnixMilli(n * 86400000).UTC().Format(time.DateOnly)
		}
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: revenue: %w", err)
	}
	if group == ByDay {
		// Keys were day numbers compared as text; order them as dates.
		sortLines(out)
	}
	return out, nil
}

func sortLines(ls []RevenueLine) {
	for i := 1; i < len(ls); i++ {
		for j := i; j > 0 && (ls[j].Key < ls[j-1].Key || (ls[j].Key == ls[j-1].Key && ls[j].Currency < ls[j-1].Currency)); j-- {
			ls[j], ls[j-1] = ls[j-1], ls[j]
		}
	}
}

// Movement is one entry of an operator's revenue account: the
// merchant's account book.
type Movement struct {
	Entry   int64 // the entry's ID: the book's order
	At      time.Time
	Kind    TxKind
	Session vend.SessionID // zero when the transaction has none
	Amount  vend.Amount    // signed: positive credits the operator
	Balance vend.Amount    // the account's balance after this entry
}

// Movements calls fn with each entry of operator's revenue accounts (one
// per currency) whose transaction is in [from, to), in book order
// (currency, then entry), with the balance after each entry, streaming
// from the database: nothing is collected in memory. fn's error stops the
// walk and is returned.
func (s *Store) Movements(ctx context.Context, operator string, from, to time.Time, fn func(Movement) error) error {
	rows, err := s.db.QueryContext(ctx, `SELECT id, created_ms, kind, session_id, amount, currency, bal FROM (
			SELECT e.id, t.created_ms, t.kind, t.session_id, e.amount, e.currency,
				SUM(e.amount) OVER (PARTITION BY e.account_id ORDER BY e.id) AS bal
			FROM entries e JOIN accounts a ON a.id = e.account_id JOIN ledger_tx t ON t.id = e.tx_id
			WHERE a.kind = 'operator_revenue' AND a.owner = $1 AND t.created_ms < $3) x
		WHERE created_ms >= $2 ORDER BY currency, id`, operator, from.UnixMilli(), to.UnixMilli())
	if err != nil {
		return fmt.Errorf("store: movements: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var m Movement
		var ms int64
		var kind, cur string
		var sess sql.NullString
		if err := rows.Scan(&m.Entry, &ms, &kind, &sess, &m.Amount.Minor, &cur, &m.Balance.Minor); err != nil {
			return fmt.Errorf("store: movements: %w", err)
		}
		m.At, m.Kind = time.UnixMilli(ms).UTC(), TxKind(kind)
		m.Amount.Currency, m.Balance.Currency = vend.Currency(cur), vend.Currency(cur)
		if sess.Valid {
			m.Session, _ = vend.ParseSessionID(sess.String)
		}
		if err := fn(m); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: movements: %w", err)
	}
	return nil
}

// DeviceLocations returns the location of each of operator's devices that has one.
func (s *Store) DeviceLocations(ctx context.Context, operator string) (map[string]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, location FROM devices WHERE operator_id = $1 AND location <> ''`, operator)
	if err != nil {
		return nil, fmt.Errorf("store: locations: %w", err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var id, loc string
		if err := rows.Scan(&id, &loc); err != nil {
			return nil, fmt.Errorf("store: locations: %w", err)
		}
		out[id] = loc
	}
	return out, rows.Err()
}

// RefundThreshold returns the amount above which operator's session
// refunds need an owner's approval; ok is false when none is set.
func (s *Store) RefundThreshold(ctx context.Context, operator string) (vend.Amount, bool, error) {
	var minor sql.NullInt64
	var cur string
	err := s.db.QueryRowContext(ctx, `SELECT refund_approval_minor, refund_approval_currency FROM operators WHERE id = $1`, operator).Scan(&minor, &cur)
	if errors.Is(err, sql.ErrNoRows) {
		return vend.Amount{}, false, vend.Errorf(ErrOperatorNotFound, "%q", clip(operator))
	}
	if err != nil {
		return vend.Amount{}, false, fmt.Errorf("store: refund threshold: %w", err)
	}
	if !minor.Valid {
		return vend.Amount{}, false, nil
	}
	return vend.Amount{Minor: minor.Int64, Currency: vend.Currency(cur)}, true, nil
}

// SetRefundThreshold sets (or, with nil, removes) the amount above which
// operator's session refunds need an owner's approval. Errors: ErrInput
// (negative), vend.ErrCurrency, ErrOperatorNotFound.
func (s *Store) SetRefundThreshold(ctx context.Context, operator string, limit *vend.Amount) error {
	var minor any
	cur := ""
	if limit != nil {
		if limit.Minor < 0 {
			return vend.Errorf(ErrInput, "a refund approval threshold cannot be negative")
		}
		if err := limit.Currency.Validate(); err != nil {
			return fmt.Errorf("store: refund threshold: %w", err)
		}
		minor, cur = limit.Minor, string(limit.Currency)
	}
	res, err := s.db.ExecContext(ctx, `UPDATE operators SET refund_approval_minor = $1, refund_approval_currency = $2 WHERE id = $3`, minor, cur, operator)
	if err != nil {
		return fmt.Errorf("store: refund threshold: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return vend.Errorf(ErrOperatorNotFound, "%q", clip(operator))
	}
	return nil
}

// ApprovalState is where a refund approval stands.
type ApprovalState string

// Refund approval states.
const (
	ApprovalPending   ApprovalState = "pending"
	ApprovalApproving ApprovalState = "approving" // claimed by an approver; the refund is being made
	ApprovalApproved  ApprovalState = "approved"
	ApprovalRejected  ApprovalState = "rejected"
	ApprovalExpired   ApprovalState = "expired"
)

// ApprovalTTL is how long a refund waits for an owner before it expires.
const ApprovalTTL = 7 * 24 * time.Hour

// RefundApproval is a session refund above the operator's threshold,
// waiting for (or given) an owner's decision.
type RefundApproval struct {
	ID             string
	Operator       string
	Session        vend.SessionID
	Amount         vend.Amount
	Reason         string
	Key            string // the request's idempotency key
	RequestedBy    string // operator account ID
	RequestedEmail string
	State          ApprovalState
	DecidedBy      string
	DecidedEmail   string
	Note           string // the approver's reason
	Refund         string // refund_requests.id once approved
	Created        time.Time
	Expires        time.Time
	Decided        time.Time
	Duplicate      bool // the key was used before with the same request: nothing new was made
}

// NewApproval asks for a refund approval.
type NewApproval struct {
	Operator, Session       string
	Amount                  vend.Amount
	Reason, Key             string
	RequestedBy, ReqByEmail string
}

const approvalCols = `id, operator_id, session_id, amount_minor, currency, reason, idem_key, requested_by, requested_email, state,
	decided_by, decided_email, note, refund_id, created_ms, expires_ms, decided_ms`

func scanApproval(sc interface{ Scan(...any) error }) (RefundApproval, error) {
	var a RefundApproval
	var sess, cur, state string
	var created, expires, decided int64
	if err := sc.Scan(&a.ID, &a.Operator, &sess, &a.Amount.Minor, &cur, &a.Reason, &a.Key, &a.RequestedBy, &a.RequestedEmail, &state,
		&a.DecidedBy, &a.DecidedEmail, &a.Note, &a.Refund, &created, &expires, &decided); err != nil {
		return RefundApproval{}, err
	}
	a.Session, _ = vend.ParseSessionID(sess)
	a.Amount.Currency, a.State = vend.Currency(cur), ApprovalState(state)
	a.Created, a.Expires = time.UnixMilli(created).UTC(), time.UnixMilli(expires).UTC()
	if decided != 0 {
		a.Decided = time.UnixMilli(decided).UTC()
	}
	return a, nil
}

// RequestRefundApproval records a refund waiting for an owner, once per
// (operator, key): the same request again returns the first with
// Duplicate set; another request with the key is ErrIdemConflict. The
// session must be operator's (ErrSessionNotFound) and charged in the
// amount's currency; whether the amount is still refundable is checked
// when it is approved. Errors: ErrInput, ErrAmount, ErrSessionNotFound,
// ErrIdemConflict.
func (s *Store) RequestRefundApproval(ctx context.Context, in NewApproval) (RefundApproval, error) {
	switch {
	case in.Reason == "" || len(in.Reason) > 200:
		return RefundApproval{}, vend.Errorf(ErrInput, "a session refund needs a reason of 1-200 bytes")
	case in.Key == "" || len(in.Key) > 200:
		return RefundApproval{}, vend.Errorf(ErrInput, "a refund approval needs an idempotency key of 1-200 bytes")
	case in.Amount.Minor <= 0:
		return RefundApproval{}, vend.Errorf(ErrAmount, "refund of %d", in.Amount.Minor)
	}
	sid, err := vend.ParseSessionID(in.Session)
	if err != nil {
		return RefundApproval{}, vend.Errorf(ErrSessionNotFound, "%q", clip(in.Session))
	}
	hash := fmt.Sprintf("%s|%d|%s|%s", in.Session, in.Amount.Minor, in.Amount.Currency, in.Reason)
	var id string
	dup := false
	err = s.tx(ctx, "refund approval", func(tx *sql.Tx) error {
		dup = false
		var prev string
		err := tx.QueryRowContext(ctx, `SELECT id, req_hash FROM refund_approvals WHERE operator_id = $1 AND idem_key = $2`,
			in.Operator, in.Key).Scan(&id, &prev)
		if err == nil {
			if prev != hash {
				return vend.Errorf(ErrIdemConflict, "refund approval key %q", clip(in.Key))
			}
			dup = true
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		var op, cur string
		err = tx.QueryRowContext(ctx, `SELECT operator_id, currency FROM sessions WHERE id = $1`, sid.String()).Scan(&op, &cur)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && op != in.Operator) {
			return vend.Errorf(ErrSessionNotFound, "%s", sid)
		}
		if err != nil {
			return err
		}
		if vend.Currency(cur) != in.Amount.Currency {
			return vend.Errorf(ErrCurrency, "session in %s", cur)
		}
		id = newID("ra")
		now := s.nowMs()
		_, err = tx.ExecContext(ctx, `INSERT INTO refund_approvals (id, operator_id, session_id, amount_minor, currency, reason, idem_key,
			req_hash, requested_by, requested_email, state, created_ms, expires_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'pending', $11, $12)`,
			id, in.Operator, sid.String(), in.Amount.Minor, cur, in.Reason, in.Key, hash, in.RequestedBy, in.ReqByEmail, now, now+ApprovalTTL.Milliseconds())
		return err
	})
	if err != nil {
		return RefundApproval{}, err
	}
	a, err := s.RefundApproval(ctx, in.Operator, id)
	a.Duplicate = dup
	return a, err
}

// RefundApproval returns one of operator's refund approvals (another
// operator's is ErrApprovalNotFound). A pending one past its bound is
// reported expired.
func (s *Store) RefundApproval(ctx context.Context, operator, id string) (RefundApproval, error) {
	a, err := scanApproval(s.db.QueryRowContext(ctx, `SELECT `+approvalCols+` FROM refund_approvals WHERE id = $1 AND operator_id = $2`, id, operator))
	if errors.Is(err, sql.ErrNoRows) {
		return RefundApproval{}, vend.Errorf(ErrApprovalNotFound, "%q", clip(id))
	}
	if err != nil {
		return RefundApproval{}, fmt.Errorf("store: refund approval: %w", err)
	}
	if a.State == ApprovalPending && !s.now().Before(a.Expires) {
		a.State = ApprovalExpired
	}
	return a, nil
}

// RefundApprovals returns operator's refund approvals, newest first: the
// open ones (pending or approving, not expired) when open, else those
// of session (open or not). At most 200.
func (s *Store) RefundApprovals(ctx context.Context, operator string, session vend.SessionID, open bool) ([]RefundApproval, error) {
	q := `SELECT ` + approvalCols + ` FROM refund_approvals WHERE operator_id = $1 AND `
	arg := any(s.nowMs())
	if open {
		q += `((state = 'pending' AND expires_ms > $2) OR state = 'approving')`
	} else {
		q += `session_id = $2`
		arg = session.String()
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY created_ms DESC, id DESC LIMIT 200`, operator, arg)
	if err != nil {
		return nil, fmt.Errorf("store: refund approvals: %w", err)
	}
	defer rows.Close()
	var out []RefundApproval
	for rows.Next() {
		a, err := scanApproval(rows)
		if err != nil {
			return nil, fmt.Errorf("store: refund approvals: %w", err)
		}
		if a.State == ApprovalPending && !s.now().Before(a.Expires) {
			a.State = ApprovalExpired
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// ClaimRefundApproval is an owner's approve, first step: a pending
// approval becomes approving (or stays so for the same account, to
// finish an approval a crash interrupted), decided by account. The
// account that asked cannot approve (ErrApprovalSelf); a rejected,
// approved or expired approval (pending past ApprovalTTL: the state is
// derived when read) is ErrApprovalState.
func (s *Store) ClaimRefundApproval(ctx context.Context, operator, id, account, email, note string) (RefundApproval, error) {
	if len(note) > 200 {
		return RefundApproval{}, vend.Errorf(ErrInput, "a note is at most 200 bytes")
	}
	err := s.tx(ctx, "claim refund approval", func(tx *sql.Tx) error {
		a, err := scanApproval(tx.QueryRowContext(ctx, `SELECT `+approvalCols+` FROM refund_approvals WHERE id = $1 AND operator_id = $2`+s.d.lockRow, id, operator))
		if errors.Is(err, sql.ErrNoRows) {
			return vend.Errorf(ErrApprovalNotFound, "%q", clip(id))
		}
		if err != nil {
			return err
		}
		if a.RequestedBy == account {
			return vend.Errorf(ErrApprovalSelf, "%s asked for it", a.RequestedEmail)
		}
		now := s.nowMs()
		switch {
		case a.State == ApprovalApproving && a.DecidedBy == account:
			return nil
		case a.State != ApprovalPending:
			return vend.Errorf(ErrApprovalState, "it is %s", a.State)
		case now >= a.Expires.UnixMilli():
			return vend.Errorf(ErrApprovalState, "it expired at %s", a.Expires.Format(time.RFC3339))
		}
		_, err = tx.ExecContext(ctx, `UPDATE refund_approvals SET state = 'approving', decided_by = $1, decided_email = $2, note = $3, decided_ms = $4
			WHERE id = $5`, account, email, note, now, id)
		return err
	})
	if err != nil {
		return RefundApproval{}, err
	}
	return s.RefundApproval(ctx, operator, id)
}

// FinishRefundApproval records the refund an approving approval became.
func (s *Store) FinishRefundApproval(ctx context.Context, operator, id, refund string) (RefundApproval, error) {
	_, err := s.db.ExecContext(ctx, `UPDATE refund_approvals SET state = 'approved', refund_id = $1 WHERE id = $2 AND operator_id = $3 AND state = 'approving'`,
		refund, id, operator)
	if err != nil {
		return RefundApproval{}, fmt.Errorf("store: finish refund approval: %w", err)
	}
	return s.RefundApproval(ctx, operator, id)
}

// ReleaseRefundApproval puts an approving approval whose refund could not
// be made (e.g. nothing left to refund) back to pending, so that it can
// be rejected or approved again.
func (s *Store) ReleaseRefundApproval(ctx context.Context, operator, id string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE refund_approvals SET state = 'pending', decided_by = '', decided_email = '', note = '', decided_ms = 0
		WHERE id = $1 AND operator_id = $2 AND state = 'approving'`, id, operator)
	if err != nil {
		return fmt.Errorf("store: release refund approval: %w", err)
	}
	return nil
}

// RejectRefundApproval is an owner's reject of a pending approval, with
// a note. Errors: ErrApprovalNotFound, ErrApprovalState (not pending),
// ErrApprovalSelf (the account that asked), ErrInput.
func (s *Store) RejectRefundApproval(ctx context.Context, operator, id, account, email, note string) (RefundApproval, error) {
	if note == "" || len(note) > 200 {
		return RefundApproval{}, vend.Errorf(ErrInput, "a rejection needs a reason of 1-200 bytes")
	}
	a, err := s.RefundApproval(ctx, operator, id)
	if err != nil {
		return RefundApproval{}, err
	}
	if a.RequestedBy == account {
		return RefundApproval{}, vend.Errorf(ErrApprovalSelf, "%s asked for it", a.RequestedEmail)
	}
	res, err := s.db.ExecContext(ctx, `UPDATE refund_approvals SET state = 'rejected', decided_by = $1, decided_email = $2, note = $3, decided_ms = $4
		WHERE id = $5 AND operator_id = $6 AND state = 'pending' AND expires_ms > $4`, account, email, note, s.nowMs(), id, operator)
	if err != nil {
		return RefundApproval{}, fmt.Errorf("store: reject refund approval: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return RefundApproval{}, vend.Errorf(ErrApprovalState, "it is %s", a.State)
	}
	return s.RefundApproval(ctx, operator, id)
}

// RefundPlan is what a session refund would do, computed without moving
// anything: the review step before an operator confirms.
type RefundPlan struct {
	Session    vend.SessionID
	Charged    vend.Amount   // what the session charged (captured and late)
	Refundable vend.Amount   // what is left to refund
	Amount     vend.Amount   // the refund asked for
	Channels   []PlannedPart // to the payer's channel orders, oldest first
	Wallet     vend.Amount   // to the payer's wallet: what did not come through a channel
}

// PlannedPart is one channel refund of a RefundPlan.
type PlannedPart struct {
	Channel    string
	OrderNo    string
	ProviderTx string // the provider's transaction ID of the order
	Amount     vend.Amount
}

// PlanSessionRefund computes where a refund of amount of operator's
// session would go, by the rules of RefundSession, without writing. The
// plan is advice: RefundSession decides again when it runs. Errors:
// ErrSessionNotFound (or another operator's), ErrAmount, ErrCurrency,
// ErrSessionState (nothing charged), ErrRefundable.
func (s *Store) PlanSessionRefund(ctx context.Context, operator string, id vend.SessionID, amount vend.Amount) (RefundPlan, error) {
	ss, err := s.OperatorSession(ctx, operator, id)
	if err != nil {
		return RefundPlan{}, err
	}
	cur := ss.Currency
	p := RefundPlan{Session: id, Amount: amount, Charged: vend.Amount{Minor: ss.Captured + ss.LateAmount, Currency: cur}}
	var before, failed int64
	if err := s.db.QueryRowContext(ctx, `SELECT COALESCE(SUM(amount_minor), 0) FROM refund_requests WHERE session_id = $1`, id.String()).Scan(&before); err != nil {
		return RefundPlan{}, fmt.Errorf("store: plan refund: %w", err)
	}
	if err := s.db.QueryRowContext(ctx, `SELECT COALESCE(SUM(amount_minor), 0) FROM channel_refunds WHERE session_id = $1 AND state = 'failed'`,
		id.String()).Scan(&failed); err != nil {
		return RefundPlan{}, fmt.Errorf("store: plan refund: %w", err)
	}
	p.Refundable = vend.Amount{Minor: max(p.Charged.Minor-before+failed, 0), Currency: cur}
	switch {
	case p.Charged.Minor <= 0:
		return p, vend.Errorf(ErrSessionState, "session %s (%s) charged nothing", id, ss.State)
	case amount.Minor <= 0:
		return p, vend.Errorf(ErrAmount, "refund of %d", amount.Minor)
	case amount.Currency != cur:
		return p, vend.Errorf(ErrCurrency, "session in %s", cur)
	case amount.Minor > p.Refundable.Minor:
		return p, vend.Errorf(ErrRefundable, "session %s: %s left to refund", id, p.Refundable)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT order_no, channel, COALESCE(provider_tx_id, ''), amount_minor - refunded_minor - voided_minor
		FROM channel_payments WHERE user_id = $1 AND currency = $2 AND state = 'paid' AND refunded_minor + voided_minor < amount_minor
		ORDER BY paid_ms, order_no`, ss.User, string(cur))
	if err != nil {
		return RefundPlan{}, fmt.Errorf("store: plan refund: %w", err)
	}
	defer rows.Close()
	left := amount.Minor
	for rows.Next() && left > 0 {
		var pp PlannedPart
		var room int64
		if err := rows.Scan(&pp.OrderNo, &pp.Channel, &pp.ProviderTx, &room); err != nil {
			return RefundPlan{}, fmt.Errorf("store: plan refund: %w", err)
		}
		pp.Amount = vend.Amount{Minor: min(left, room), Currency: cur}
		left -= pp.Amount.Minor
		p.Channels = append(p.Channels, pp)
	}
	if err := rows.Err(); err != nil {
		return RefundPlan{}, fmt.Errorf("store: plan refund: %w", err)
	}
	p.Wallet = vend.Amount{Minor: left, Currency: cur}
	return p, nil
}
