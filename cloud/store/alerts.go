package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/mail"
	"net/url"
	"strings"
	"time"

	"beaconvend/app-protocol/vend"
)

// Errors of the alert inbox.
var (
	ErrAlertNotFound = vend.E(vend.NotFound, "alert.not_found", "store: alert not found")
	ErrAlertState    = vend.E(vend.Conflict, "alert.state", "store: alert is not in a state that allows this")
)

// AlertKind says what an alert is about. Its text is stable: webhooks and
// e-mails carry it.
type AlertKind string

// Alert kinds.
const (
	// AlertOffline: a device has been offline longer than the operator's
	// threshold (AlertSettings.OfflineAfter); resolved when it is online.
	AlertOffline AlertKind = "device.offline"
	// AlertFault: the device's latest telemetry shows its I/O board or a
	// machine in fault, with the code; resolved when an online device's
	// telemetry no longer shows it.
	AlertFault AlertKind = "machine.fault"
	// AlertNoFlow: a water machine's latest session ended with outcome
	// no_flow (its meter counted no pulses within the allowed pause, so
	// the controller closed the valve); resolved when a later session on
	// the machine delivers water.
	AlertNoFlow AlertKind = "water.no_flow"
	// AlertVendFailures: at least AlertSettings.VendFailCount sessions on
	// one machine failed (state failed, or outcome vend_failed) within
	// AlertSettings.VendFailWindow; resolved when none did in the window.
	AlertVendFailures AlertKind = "vend.failures"
	// AlertUnreported: a session became unreported (the device never
	// reported its usage); resolved when it is settled or voided.
	AlertUnreported AlertKind = "session.unreported"
	// AlertLowStock: a slot's stock fell to the low-stock level; raised and
	// resolved by the inventory (Service.RaiseAlert, Service.ResolveAlert).
	AlertLowStock AlertKind = "stock.low"
	// AlertChannel: a payment channel reported something the cloud refused
	// to book or that needs a person (channel_alerts: auth.lapsing,
	// payment.mismatch, …) about an order of the operator's machines.
	AlertChannel AlertKind = "channel"
)

// AlertKinds lists the kinds in the order pages show them.
var AlertKinds = []AlertKind{AlertOffline, AlertFault, AlertNoFlow, AlertVendFailures, AlertUnreported, AlertLowStock, AlertChannel}

// Valid reports whether k is a known kind.
func (k AlertKind) Valid() bool {
	for _, x := range AlertKinds {
		if k == x {
			return true
		}
	}
	return false
}

// AlertState is where an alert is in the inbox.
type AlertState string

// Alert states.
const (
	AlertOpen         AlertState = "open"
	AlertAcknowledged AlertState = "acknowledged"
	AlertResolved     AlertState = "resolved"
)

// Severities of an alert.
const (
	SeverityInfo     = "info"
	SeverityWarning  = "warning"
	SeverityCritical = "critical"
)

// NewAlert is an alert to raise.
type NewAlert struct {
	Operator string
	Kind     AlertKind
	Severity string // info, warning or critical; warning when ""
	Device   string // "" when not about a device
	Machine  string
	Slot     string
	// Ref distinguishes alerts of one kind on one machine (a session id, a
	// channel alert's id); part of the dedup key.
	Ref     string
	Code    string // a stable dotted code (the fault code, the channel alert's code)
	Summary string // one line, required, at most 200 bytes
	Detail  string // at most 2000 bytes
}

// DedupKey is the key under which at most one alert is open:
// kind|device|machine|slot|ref.
func (a NewAlert) DedupKey() string {
	return strings.Join([]string{string(a.Kind), a.Device, a.Machine, a.Slot, a.Ref}, "|")
}

// Alert is one raised alert.
type Alert struct {
	ID         string
	Operator   string
	Kind       AlertKind
	Severity   string
	DedupKey   string
	Device     string
	Machine    string
	Slot       string
	Ref        string
	Code       string
	Summary    string
	Detail     string
	State      AlertState
	Created    time.Time
	Acked      time.Time // zero when not acknowledged
	AckedBy    string
	Resolved   time.Time // zero while open or acknowledged
	ResolvedBy string    // "" when resolved by the engine
}

const alertCols = `id, operator_id, kind, severity, dedup_key, device_id, machine_id, slot_id, ref, code, summary, detail, state,
	created_ms, acked_ms, acked_by, resolved_ms, resolved_by`

func scanAlert(sc interface{ Scan(...any) error }) (Alert, error) {
	var a Alert
	var c, ak, r int64
	err := sc.Scan(&a.ID, &a.Operator, &a.Kind, &a.Severity, &a.DedupKey, &a.Device, &a.Machine, &a.Slot, &a.Ref, &a.Code,
		&a.Summary, &a.Detail, &a.State, &c, &ak, &a.AckedBy, &r, &a.ResolvedBy)
	a.Created = alertTime(c)
	a.Acked = alertTime(ak)
	a.Resolved = alertTime(r)
	return a, err
}

func alertTime(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

func (a *NewAlert) check() error {
	if a.Operator == "" {
		return vend.Errorf(ErrInput, "alert: operator is required")
	}
	if !a.Kind.Valid() {
		return vend.Errorf(ErrInput, "alert: kind %q: want one of %v", clip(string(a.Kind)), AlertKinds)
	}
	switch a.Severity {
	case "":
		a.Severity = SeverityWarning
	case SeverityInfo, SeverityWarning, SeverityCritical:
	default:
		return vend.Errorf(ErrInput, "alert: severity %q: want info, warning or critical", clip(a.Severity))
	}
	a.Summary = strings.TrimSpace(a.Summary)
	if a.Summary == "" || len(a.Summary) > 200 {
		return vend.Errorf(ErrInput, "alert: summary of %d bytes: want 1-200", len(a.Summary))
	}
	if len(a.Detail) > 2000 {
		return vend.Errorf(ErrInput, "alert: detail of %d bytes: want at most 2000", len(a.Detail))
	}
	for name, v := range map[string]string{"device": a.Device, "machine": a.Machine, "slot": a.Slot, "ref": a.Ref, "code": a.Code} {
		if len(v) > 128 || strings.ContainsAny(v, "|\n\r") {
			return vend.Errorf(ErrInput, "alert: %s %q: at most 128 bytes, no '|' or line breaks", name, clip(v))
		}
	}
	return nil
}

// RaiseAlert opens an alert unless one with the same dedup key is open or
// acknowledged: idempotent while open, safe on any number of instances (a
// conditional insert on the open-key index). A new alert gets its
// deliveries (alert_deliveries: e-mail when the operator has recipients,
// webhook when it has a URL) in the same transaction. It returns the
// open alert and whether this call created it. Errors: ErrInput.
func (s *Store) RaiseAlert(ctx context.Context, in NewAlert) (Alert, bool, error) {
	if err := in.check(); err != nil {
		return Alert{}, false, err
	}
	var out Alert
	var created bool
	err := s.tx(ctx, "raise alert", func(tx *sql.Tx) error {
		created = false
		now := s.nowMs()
		id := newID("alr")
		res, err := tx.ExecContext(ctx, `INSERT INTO alerts (id, operator_id, kind, severity, dedup_key, device_id, machine_id, slot_id,
			ref, code, summary, detail, state, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $13, $9, $10, $11, 'open', $12)
			ON CONFLICT DO NOTHING`,
			id, in.Operator, string(in.Kind), in.Severity, in.DedupKey(), in.Device, in.Machine, in.Slot, in.Code,
			in.Summary, in.Detail, now, in.Ref)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			created = true
			if err := queueDeliveries(ctx, tx, id, in.Operator, now); err != nil {
				return err
			}
		}
		out, err = scanAlert(tx.QueryRowContext(ctx, `SELECT `+alertCols+` FROM alerts WHERE dedup_key = $1 AND resolved_ms = 0`, in.DedupKey()))
		return err
	})
	if err != nil {
		return Alert{}, false, err
	}
	return out, created, nil
}

// ResolveAlert resolves the open (or acknowledged) alert of operator with
// this dedup key, by is who ("" the engine); it reports whether one was
// open. Resolving nothing is not an error.
func (s *Store) ResolveAlert(ctx context.Context, operator, dedupKey, by string) (bool, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE alerts SET state = 'resolved', resolved_ms = $1, resolved_by = $2
		WHERE dedup_key = $3 AND operator_id = $4 AND resolved_ms = 0`, s.nowMs(), clipN(by, 200), dedupKey, operator)
	if err != nil {
		return false, fmt.Errorf("store: resolve alert: %w", err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// ResolveAlertID resolves one of operator's alerts by id (an operator
// closing it by hand). Errors: ErrAlertNotFound, ErrAlertState (already
// resolved).
func (s *Store) ResolveAlertID(ctx context.Context, operator, id, by string) (Alert, error) {
	return s.moveAlert(ctx, operator, id, `state = 'resolved', resolved_ms = $1, resolved_by = $2`, `resolved_ms = 0`, by)
}

// AckAlert acknowledges one of operator's open alerts: someone is on it.
// Acknowledging an acknowledged alert again changes nothing and is not an
// error. Errors: ErrAlertNotFound, ErrAlertState (resolved).
func (s *Store) AckAlert(ctx context.Context, operator, id, by string) (Alert, error) {
	a, err := s.GetAlert(ctx, operator, id)
	if err != nil {
		return Alert{}, err
	}
	if a.State == AlertAcknowledged {
		return a, nil
	}
	return s.moveAlert(ctx, operator, id, `state = 'acknowledged', acked_ms = $1, acked_by = $2`, `state = 'open'`, by)
}

func (s *Store) moveAlert(ctx context.Context, operator, id, set, cond, by string) (Alert, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE alerts SET `+set+` WHERE id = $3 AND operator_id = $4 AND `+cond,
		s.nowMs(), clipN(by, 200), id, operator)
	if err != nil {
		return Alert{}, fmt.Errorf("store: alert: %w", err)
	}
	a, err := s.GetAlert(ctx, operator, id)
	if err != nil {
		return Alert{}, err
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return a, vend.Errorf(ErrAlertState, "alert %s is %s", clip(id), a.State)
	}
	return a, nil
}

// GetAlert returns one of operator's alerts. Errors: ErrAlertNotFound
// (also for another operator's alert).
func (s *Store) GetAlert(ctx context.Context, operator, id string) (Alert, error) {
	a, err := scanAlert(s.db.QueryRowContext(ctx, `SELECT `+alertCols+` FROM alerts WHERE id = $1 AND operator_id = $2`, id, operator))
	if errors.Is(err, sql.ErrNoRows) {
		return Alert{}, vend.Errorf(ErrAlertNotFound, "%q", clip(id))
	}
	if err != nil {
		return Alert{}, fmt.Errorf("store: alert: %w", err)
	}
	return a, nil
}

// AlertFilter selects alerts for ListAlerts; zero fields select all.
type AlertFilter struct {
	State  AlertState // "", open, acknowledged or resolved
	Kind   AlertKind
	Device string
	// Cursor continues a listing where the previous page ended (its
	// returned cursor); "" starts at the newest.
	Cursor string
	Limit  int // 1-500; 50 when 0
}

// ListAlerts returns operator's alerts matching f, newest first, and the
// cursor of the next page ("" at the end). Errors: ErrInput (a bad
// filter or cursor).
func (s *Store) ListAlerts(ctx context.Context, operator string, f AlertFilter) ([]Alert, string, error) {
	if f.Limit == 0 {
		f.Limit = 50
	}
	if f.Limit < 1 || f.Limit > 500 {
		return nil, "", vend.Errorf(ErrInput, "alerts: limit %d: want 1-500", f.Limit)
	}
	switch f.State {
	case "", AlertOpen, AlertAcknowledged, AlertResolved:
	default:
		return nil, "", vend.Errorf(ErrInput, "alerts: state %q: want open, acknowledged or resolved", clip(string(f.State)))
	}
	if f.Kind != "" && !f.Kind.Valid() {
		return nil, "", vend.Errorf(ErrInput, "alerts: kind %q: want one of %v", clip(string(f.Kind)), AlertKinds)
	}
	curMs, curID := int64(1<<62), ""
	if f.Cursor != "" {
		ms, id, ok := strings.Cut(f.Cursor, ".")
		var err error
		if ok {
			_, err = fmt.Sscan(ms, &curMs)
		}
		if !ok || err != nil || id == "" {
			return nil, "", vend.Errorf(ErrInput, "alerts: cursor %q is not one this listing returned", clip(f.Cursor))
		}
		curID = id
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+alertCols+` FROM alerts
		WHERE operator_id = $1 AND ($2 = '' OR state = $2) AND ($3 = '' OR kind = $3) AND ($4 = '' OR device_id = $4)
		AND (created_ms < $5 OR (created_ms = $5 AND id < $6) OR $6 = '' AND created_ms <= $5)
		ORDER BY created_ms DESC, id DESC LIMIT $7`,
		operator, string(f.State), string(f.Kind), f.Device, curMs, curID, f.Limit+1)
	if err != nil {
		return nil, "", fmt.Errorf("store: alerts: %w", err)
	}
	defer rows.Close()
	var out []Alert
	for rows.Next() {
		a, err := scanAlert(rows)
		if err != nil {
			return nil, "", fmt.Errorf("store: alerts: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("store: alerts: %w", err)
	}
	next := ""
	if len(out) > f.Limit {
		out = out[:f.Limit]
		last := out[len(out)-1]
		next = fmt.Sprintf("%d.%s", last.Created.UnixMilli(), last.ID)
	}
	return out, next, nil
}

// CountOpenAlerts counts operator's alerts that are open (not yet
// acknowledged).
func (s *Store) CountOpenAlerts(ctx context.Context, operator string) (int, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM alerts WHERE operator_id = $1 AND state = 'open'`, operator).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count alerts: %w", err)
	}
	return n, nil
}

// OpenAlertsOf returns up to limit unresolved alerts of kind, oldest
// first, across operators: what the engine re-checks.
func (s *Store) OpenAlertsOf(ctx context.Context, kind AlertKind, limit int) ([]Alert, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+alertCols+` FROM alerts WHERE kind = $1 AND resolved_ms = 0
		ORDER BY created_ms LIMIT $2`, string(kind), limit)
	if err != nil {
		return nil, fmt.Errorf("store: open alerts: %w", err)
	}
	defer rows.Close()
	var out []Alert
	for rows.Next() {
		a, err := scanAlert(rows)
		if err != nil {
			return nil, fmt.Errorf("store: open alerts: %w", err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// ---- settings ----

// Defaults of AlertSettings.
const (
	DefaultOfflineAfter   = 10 * time.Minute
	DefaultVendFailCount  = 3
	DefaultVendFailWindow = 30 * time.Minute
	DefaultLowStockLevel  = 2
)

// AlertSettings are one operator's thresholds, recipients and quiet
// period.
type AlertSettings struct {
	// EmailTo are the recipients of alert e-mails, comma-separated
	// addresses; "" sends none.
	EmailTo string
	// WebhookURL receives each alert as a signed POST; "" sends none.
	// http or https.
	WebhookURL string
	// OfflineAfter: a device offline this long raises device.offline;
	// 1 s – 7 days.
	OfflineAfter time.Duration
	// VendFailCount failed sessions on one machine within VendFailWindow
	// raise vend.failures; 1–1000 and 1 min – 7 days.
	VendFailCount  int
	VendFailWindow time.Duration
	// LowStockLevel: a slot at or below this many items is low (read by the
	// inventory); 0–10000.
	LowStockLevel int
	// QuietStart and QuietEnd ("HH:MM", both or neither) bound a daily
	// period in TimeZone in which nothing is delivered; alerts still open
	// in the inbox and their messages are sent, one per alert, when the
	// period ends. An end before the start spans midnight.
	QuietStart, QuietEnd string
	TimeZone             string // IANA name; UTC when ""
	Updated              time.Time
}

// DefaultAlertSettings are the settings of an operator that set none.
func DefaultAlertSettings() AlertSettings {
	return AlertSettings{OfflineAfter: DefaultOfflineAfter, VendFailCount: DefaultVendFailCount,
		VendFailWindow: DefaultVendFailWindow, LowStockLevel: DefaultLowStockLevel, TimeZone: "UTC"}
}

// Check validates the settings and fills TimeZone; ErrInput names the
// field that is wrong.
func (a *AlertSettings) Check() error {
	a.EmailTo = strings.TrimSpace(a.EmailTo)
	if a.EmailTo != "" {
		list, err := mail.ParseAddressList(a.EmailTo)
		if err != nil || len(list) > 20 {
			return vend.Errorf(ErrInput, "alert settings: email_to %q: want up to 20 comma-separated addresses", clip(a.EmailTo))
		}
		addrs := make([]string, len(list))
		for i, x := range list {
			addrs[i] = x.Address
		}
		a.EmailTo = strings.Join(addrs, ", ")
	}
	a.WebhookURL = strings.TrimSpace(a.WebhookURL)
	if a.WebhookURL != "" {
		u, err := url.Parse(a.WebhookURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || len(a.WebhookURL) > 500 {
			return vend.Errorf(ErrInput, "alert settings: webhook_url %q: want an http or https URL", clip(a.WebhookURL))
		}
	}
	if a.OfflineAfter < time.Second || a.OfflineAfter > 7*24*time.Hour {
		return vend.Errorf(ErrInput, "alert settings: offline_after %v: want 1s-168h", a.OfflineAfter)
	}
	if a.VendFailCount < 1 || a.VendFailCount > 1000 {
		return vend.Errorf(ErrInput, "alert settings: vend_fail_count %d: want 1-1000", a.VendFailCount)
	}
	if a.VendFailWindow < time.Minute || a.VendFailWindow > 7*24*time.Hour {
		return vend.Errorf(ErrInput, "alert settings: vend_fail_window %v: want 1m-168h", a.VendFailWindow)
	}
	if a.LowStockLevel < 0 || a.LowStockLevel > 10000 {
		return vend.Errorf(ErrInput, "alert settings: low_stock_level %d: want 0-10000", a.LowStockLevel)
	}
	if (a.QuietStart == "") != (a.QuietEnd == "") {
		return vend.Errorf(ErrInput, "alert settings: quiet_start and quiet_end: set both or neither")
	}
	for name, v := range map[string]string{"quiet_start": a.QuietStart, "quiet_end": a.QuietEnd} {
		if v == "" {
			continue
		}
		if _, err := time.Parse("15:04", v); err != nil || len(v) != 5 {
			return vend.Errorf(ErrInput, "alert settings: %s %q: want HH:MM", name, clip(v))
		}
	}
	if a.QuietStart != "" && a.QuietStart == a.QuietEnd {
		return vend.Errorf(ErrInput, "alert settings: quiet period %s-%s is empty", a.QuietStart, a.QuietEnd)
	}
	if a.TimeZone == "" {
		a.TimeZone = "UTC"
	}
	if _, err := time.LoadLocation(a.TimeZone); err != nil {
		return vend.Errorf(ErrInput, "alert settings: time_zone %q: not a known IANA zone", clip(a.TimeZone))
	}
	return nil
}

// QuietUntil returns when the quiet period that t falls in ends, or the
// zero time when t is outside one (or there is none).
func (a AlertSettings) QuietUntil(t time.Time) time.Time {
	if a.QuietStart == "" {
		return time.Time{}
	}
	loc, err := time.LoadLocation(a.TimeZone)
	if err != nil {
		loc = time.UTC
	}
	lt := t.In(loc)
	at := func(day time.Time, hhmm string) time.Time {
		p, _ := time.Parse("15:04", hhmm)
		return time.Date(day.Year(), day.Month(), day.Day(), p.Hour(), p.Minute(), 0, 0, loc)
	}
	// The periods that may contain lt began yesterday or today.
	for _, d := range []int{-1, 0} {
		day := lt.AddDate(0, 0, d)
		start := at(day, a.QuietStart)
		end := at(day, a.QuietEnd)
		if !end.After(start) {
			end = at(day.AddDate(0, 0, 1), a.QuietEnd)
		}
		if !lt.Before(start) && lt.Before(end) {
			return end
		}
	}
	return time.Time{}
}

func alertSettings(ctx context.Context, q queryer, operator string) (AlertSettings, error) {
	a := DefaultAlertSettings()
	var off, win, upd int64
	err := q.QueryRowContext(ctx, `SELECT email_to, webhook_url, offline_after_s, vend_fail_count, vend_fail_window_s,
		low_stock_level, quiet_start, quiet_end, time_zone, updated_ms FROM alert_settings WHERE operator_id = $1`, operator).
		Scan(&a.EmailTo, &a.WebhookURL, &off, &a.VendFailCount, &win, &a.LowStockLevel, &a.QuietStart, &a.QuietEnd, &a.TimeZone, &upd)
	if errors.Is(err, sql.ErrNoRows) {
		return a, nil
	}
	if err != nil {
		return a, err
	}
	a.OfflineAfter = time.Duration(off) * time.Second
	a.VendFailWindow = time.Duration(win) * time.Second
	a.Updated = alertTime(upd)
	return a, nil
}

// AlertSettings returns operator's settings, the defaults when it set
// none.
func (s *Store) AlertSettings(ctx context.Context, operator string) (AlertSettings, error) {
	a, err := alertSettings(ctx, s.db, operator)
	if err != nil {
		return a, fmt.Errorf("store: alert settings: %w", err)
	}
	return a, nil
}

// PutAlertSettings replaces operator's settings after Check. Deliveries
// already queued keep their targets. Errors: ErrInput,
// ErrOperatorNotFound.
func (s *Store) PutAlertSettings(ctx context.Context, operator string, a AlertSettings) (AlertSettings, error) {
	if err := a.Check(); err != nil {
		return a, err
	}
	if _, err := s.GetOperator(ctx, operator); err != nil {
		return a, err
	}
	now := s.nowMs()
	a.Updated = alertTime(now)
	_, err := s.db.ExecContext(ctx, `INSERT INTO alert_settings (operator_id, email_to, webhook_url, offline_after_s, vend_fail_count,
		vend_fail_window_s, low_stock_level, quiet_start, quiet_end, time_zone, updated_ms)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
		ON CONFLICT (operator_id) DO UPDATE SET email_to = excluded.email_to, webhook_url = excluded.webhook_url,
		offline_after_s = excluded.offline_after_s, vend_fail_count = excluded.vend_fail_count,
		vend_fail_window_s = excluded.vend_fail_window_s, low_stock_level = excluded.low_stock_level,
		quiet_start = excluded.quiet_start, quiet_end = excluded.quiet_end, time_zone = excluded.time_zone,
		updated_ms = excluded.updated_ms`,
		operator, a.EmailTo, a.WebhookURL, int64(a.OfflineAfter/time.Second), a.VendFailCount, int64(a.VendFailWindow/time.Second),
		a.LowStockLevel, a.QuietStart, a.QuietEnd, a.TimeZone, now)
	if err != nil {
		return a, fmt.Errorf("store: alert settings: %w", err)
	}
	return a, nil
}

// ---- the engine's conditions ----

// AlertSubject is a device, machine or session that meets an alert's
// condition, found by one of the engine's queries.
type AlertSubject struct {
	Operator string
	Device   string
	Name     string // the device's label
	Machine  string
	Ref      string // a session id (unreported), a channel alert id
	Code     string
	Count    int       // failures in the window (vend.failures)
	Since    time.Time // offline since, or the latest failure
}

func (s *Store) subjects(ctx context.Context, what, q string, args ...any) ([]AlertSubject, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", what, err)
	}
	defer rows.Close()
	var out []AlertSubject
	for rows.Next() {
		var a AlertSubject
		var since int64
		if err := rows.Scan(&a.Operator, &a.Device, &a.Name, &a.Machine, &a.Ref, &a.Code, &a.Count, &since); err != nil {
			return nil, fmt.Errorf("store: %s: %w", what, err)
		}
		a.Since = alertTime(since)
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: %s: %w", what, err)
	}
	return out, nil
}

// OfflineDevices returns up to limit active devices offline longer than
// their operator's OfflineAfter (by the store's clock) without an open
// device.offline alert.
func (s *Store) OfflineDevices(ctx context.Context, limit int) ([]AlertSubject, error) {
	return s.subjects(ctx, "offline devices", `SELECT d.operator_id, d.id, d.name, '', '', '', 0, d.offline_ms FROM devices d
		LEFT JOIN alert_settings a ON a.operator_id = d.operator_id
		WHERE d.online = 0 AND d.state = 'active' AND d.offline_ms > 0
		AND d.offline_ms <= $1 - COALESCE(a.offline_after_s, $2) * 1000
		AND NOT EXISTS (SELECT 1 FROM alerts x WHERE x.dedup_key = 'device.offline|' || d.id || '|||' AND x.resolved_ms = 0)
		ORDER BY d.offline_ms LIMIT $3`, s.nowMs(), int64(DefaultOfflineAfter/time.Second), limit)
}

// ResolveOnlineDevices resolves the device.offline alerts of devices now
// online and returns them.
func (s *Store) ResolveOnlineDevices(ctx context.Context) ([]Alert, error) {
	return s.resolveWhere(ctx, `kind = 'device.offline' AND device_id IN (SELECT id FROM devices WHERE online = 1)`)
}

func (s *Store) resolveWhere(ctx context.Context, cond string, args ...any) ([]Alert, error) {
	args = append([]any{s.nowMs()}, args...)
	rows, err := s.db.QueryContext(ctx, `UPDATE alerts SET state = 'resolved', resolved_ms = $1
		WHERE resolved_ms = 0 AND `+cond+` RETURNING `+alertCols, args...)
	if err != nil {
		return nil, fmt.Errorf("store: resolve alerts: %w", err)
	}
	defer rows.Close()
	var out []Alert
	for rows.Next() {
		a, err := scanAlert(rows)
		if err != nil {
			return nil, fmt.Errorf("store: resolve alerts: %w", err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// FaultTelemetry returns up to limit online devices whose stored
// telemetry mentions a fault (the caller parses it), with the telemetry
// in Code and whether it is online (1 or 0) in Count; and, in the same form, the devices of open machine.fault
// alerts, so that cleared faults can be resolved.
func (s *Store) FaultTelemetry(ctx context.Context, limit int) ([]AlertSubject, error) {
	return s.subjects(ctx, "fault telemetry", `SELECT d.operator_id, d.id, d.name, '', '', d.telemetry, d.online, 0 FROM devices d
		WHERE d.state = 'active' AND ((d.online = 1 AND d.telemetry LIKE '%"fault"%')
		OR d.id IN (SELECT device_id FROM alerts WHERE kind = 'machine.fault' AND resolved_ms = 0))
		ORDER BY d.id LIMIT $1`, limit)
}

// LastFaultCode returns the fault code of the machine's latest session
// that ended with one, "" when none did.
func (s *Store) LastFaultCode(ctx context.Context, device, machine string) (string, error) {
	var code string
	err := s.db.QueryRowContext(ctx, `SELECT fault FROM sessions WHERE device_id = $1 AND machine_id = $2 AND fault <> ''
		ORDER BY updated_ms DESC LIMIT 1`, device, machine).Scan(&code)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("store: fault code: %w", err)
	}
	return code, nil
}

// endedStates are the session states after a usage report or a failure.
const endedStates = `('settled', 'refunded', 'failed', 'released', 'voided')`

// NoFlowMachines returns up to limit machines whose latest ended session
// (by the cloud's clock), within the last since, ended with outcome
// no_flow, without an open water.no_flow alert; Ref is the session.
func (s *Store) NoFlowMachines(ctx context.Context, since time.Duration, limit int) ([]AlertSubject, error) {
	return s.subjects(ctx, "no-flow machines", `SELECT x.operator_id, x.device_id, d.name, x.machine_id, x.id, '', 0, x.updated_ms
		FROM sessions x JOIN devices d ON d.id = x.device_id
		WHERE x.updated_ms >= $1 AND x.outcome = $2 AND x.state IN `+endedStates+`
		AND NOT EXISTS (SELECT 1 FROM sessions y WHERE y.device_id = x.device_id AND y.machine_id = x.machine_id
			AND y.state IN `+endedStates+` AND (y.updated_ms > x.updated_ms OR y.updated_ms = x.updated_ms AND y.id > x.id))
		AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.dedup_key = 'water.no_flow|' || x.device_id || '|' || x.machine_id || '||'
			AND a.resolved_ms = 0)
		ORDER BY x.updated_ms LIMIT $3`, s.nowMs()-since.Milliseconds(), int(vend.OutcomeNoFlow), limit)
}

// ResolveFlowing resolves the water.no_flow alerts of machines where a
// session that delivered something ended after the alert was raised.
func (s *Store) ResolveFlowing(ctx context.Context) ([]Alert, error) {
	return s.resolveWhere(ctx, `kind = 'water.no_flow' AND EXISTS (SELECT 1 FROM sessions y
		WHERE y.device_id = alerts.device_id AND y.machine_id = alerts.machine_id AND y.updated_ms >= alerts.created_ms
		AND y.units > 0 AND y.outcome <> $2 AND y.state IN `+endedStates+`)`, int(vend.OutcomeNoFlow))
}

// failedSQL is a session that failed: refused or abandoned before
// delivery (state failed) or a vend that dropped nothing.
const failedSQL = `(x.state = 'failed' OR x.outcome = 6)`

// VendFailureMachines returns up to limit machines with at least their
// operator's VendFailCount failed sessions within its VendFailWindow and
// no open vend.failures alert; Count is how many.
func (s *Store) VendFailureMachines(ctx context.Context, limit int) ([]AlertSubject, error) {
	return s.subjects(ctx, "vend failures", `SELECT x.operator_id, x.device_id, MIN(d.name), x.machine_id, '', '', COUNT(*), MAX(x.updated_ms)
		FROM sessions x JOIN devices d ON d.id = x.device_id LEFT JOIN alert_settings a ON a.operator_id = x.operator_id
		WHERE `+failedSQL+` AND x.updated_ms >= $1 - COALESCE(a.vend_fail_window_s, $2) * 1000
		AND NOT EXISTS (SELECT 1 FROM alerts y WHERE y.dedup_key = 'vend.failures|' || x.device_id || '|' || x.machine_id || '||'
			AND y.resolved_ms = 0)
		GROUP BY x.operator_id, x.device_id, x.machine_id
		HAVING COUNT(*) >= MAX(COALESCE(a.vend_fail_count, $3))
		ORDER BY x.device_id, x.machine_id LIMIT $4`,
		s.nowMs(), int64(DefaultVendFailWindow/time.Second), DefaultVendFailCount, limit)
}

// ResolveVendFailures resolves the vend.failures alerts of machines with
// no failed session within their operator's window.
func (s *Store) ResolveVendFailures(ctx context.Context) ([]Alert, error) {
	return s.resolveWhere(ctx, `kind = 'vend.failures' AND NOT EXISTS (SELECT 1 FROM sessions x
		LEFT JOIN alert_settings a ON a.operator_id = x.operator_id
		WHERE x.device_id = alerts.device_id AND x.machine_id = alerts.machine_id AND `+failedSQL+`
		AND x.updated_ms >= $1 - COALESCE(a.vend_fail_window_s, $2) * 1000)`, int64(DefaultVendFailWindow/time.Second))
}

// UnreportedAlertSessions returns up to limit unreported sessions without an
// open session.unreported alert; Ref is the session.
func (s *Store) UnreportedAlertSessions(ctx context.Context, limit int) ([]AlertSubject, error) {
	return s.subjects(ctx, "unreported sessions", `SELECT x.operator_id, x.device_id, d.name, x.machine_id, x.id, '', 0, x.updated_ms
		FROM sessions x JOIN devices d ON d.id = x.device_id
		WHERE x.state = 'unreported'
		AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.dedup_key = 'session.unreported|' || x.device_id || '|' || x.machine_id || '||' || x.id
			AND a.resolved_ms = 0)
		ORDER BY x.updated_ms LIMIT $1`, limit)
}

// ResolveReported resolves the session.unreported alerts of sessions no
// longer unreported (settled by a late report, by the policy, or voided).
func (s *Store) ResolveReported(ctx context.Context) ([]Alert, error) {
	return s.resolveWhere(ctx, `kind = 'session.unreported' AND NOT EXISTS (SELECT 1 FROM sessions x
		WHERE x.id = alerts.ref AND x.state = 'unreported')`)
}

// ChannelAlertsAfter mirrors channel alerts into the inbox: it reads up
// to limit channel_alerts past the alert_cursors position, under a lock
// on the cursor so instances take turns, calls raise for each one about
// an order of a checkout (the device's operator; a wallet top-up has no
// operator and is only logged by the channel code), and moves the cursor
// past them. It returns how many it read.
func (s *Store) ChannelAlertsAfter(ctx context.Context, limit int, raise func(AlertSubject, string) NewAlert) (int, error) {
	var n int
	err := s.tx(ctx, "mirror channel alerts", func(tx *sql.Tx) error {
		n = 0
		var pos int64
		err := tx.QueryRowContext(ctx, `SELECT pos FROM alert_cursors WHERE name = 'channel_alerts'`+s.d.lockRow).Scan(&pos)
		if errors.Is(err, sql.ErrNoRows) {
			if _, err := tx.ExecContext(ctx, `INSERT INTO alert_cursors (name, pos) VALUES ('channel_alerts', 0) ON CONFLICT DO NOTHING`); err != nil {
				return err
			}
			if err := tx.QueryRowContext(ctx, `SELECT pos FROM alert_cursors WHERE name = 'channel_alerts'`+s.d.lockRow).Scan(&pos); err != nil {
				return err
			}
		} else if err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT c.id, c.channel, c.order_no, c.code, c.detail, COALESCE(d.operator_id, ''),
			COALESCE(k.device_id, ''), COALESCE(d.name, ''), COALESCE(k.machine_id, '')
			FROM channel_alerts c LEFT JOIN checkouts k ON k.order_no = c.order_no LEFT JOIN devices d ON d.id = k.device_id
			WHERE c.id > $1 ORDER BY c.id LIMIT $2`, pos, limit)
		if err != nil {
			return err
		}
		type row struct {
			id                    int64
			channel, order, code  string
			detail                string
			op, dev, name, machin string
		}
		var rs []row
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.id, &r.channel, &r.order, &r.code, &r.detail, &r.op, &r.dev, &r.name, &r.machin); err != nil {
				rows.Close()
				return err
			}
			rs = append(rs, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		now := s.nowMs()
		for _, r := range rs {
			pos = r.id
			if r.op == "" {
				continue
			}
			in := raise(AlertSubject{Operator: r.op, Device: r.dev, Name: r.name, Machine: r.machin,
				Ref: fmt.Sprintf("%d", r.id), Code: r.code}, fmt.Sprintf("%s order %s: %s", r.channel, r.order, r.detail))
			if err := in.check(); err != nil {
				return err
			}
			id := newID("alr")
			res, err := tx.ExecContext(ctx, `INSERT INTO alerts (id, operator_id, kind, severity, dedup_key, device_id, machine_id, slot_id,
				ref, code, summary, detail, state, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $13, $9, $10, $11, 'open', $12)
				ON CONFLICT DO NOTHING`,
				id, in.Operator, string(in.Kind), in.Severity, in.DedupKey(), in.Device, in.Machine, in.Slot, in.Code,
				in.Summary, clipN(in.Detail, 2000), now, in.Ref)
			if err != nil {
				return err
			}
			if k, _ := res.RowsAffected(); k == 1 {
				if err := queueDeliveries(ctx, tx, id, in.Operator, now); err != nil {
					return err
				}
			}
		}
		n = len(rs)
		if n > 0 {
			_, err = tx.ExecContext(ctx, `UPDATE alert_cursors SET pos = $1 WHERE name = 'channel_alerts' AND pos < $1`, pos)
		}
		return err
	})
	return n, err
}

func queueDeliveries(ctx context.Context, tx *sql.Tx, alert, operator string, now int64) error {
	set, err := alertSettings(ctx, tx, operator)
	if err != nil {
		return err
	}
	for ch, target := range map[string]string{"email": set.EmailTo, "webhook": set.WebhookURL} {
		if target == "" {
			continue
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO alert_deliveries (id, alert_id, operator_id, channel, target, state, next_ms, created_ms)
			VALUES ($1, $2, $3, $4, $5, 'pending', $6, $6)`, newID("dlv"), alert, operator, ch, target, now); err != nil {
			return err
		}
	}
	return nil
}

// ---- deliveries ----

// Delivery is one message of an alert to one channel.
type Delivery struct {
	ID        string
	Alert     Alert
	Channel   string // email or webhook
	Target    string // the recipients, or the URL
	State     string // pending, sent or failed
	Attempts  int    // attempts started, this one included after a claim
	Next      time.Time
	LastError string
	Sent      time.Time
}

const deliveryCols = `d.id, d.channel, d.target, d.state, d.attempts, d.next_ms, d.last_error, d.sent_ms`

func scanDelivery(sc interface{ Scan(...any) error }, withAlert bool) (Delivery, error) {
	var d Delivery
	var next, sent int64
	dst := []any{&d.ID, &d.Channel, &d.Target, &d.State, &d.Attempts, &next, &d.LastError, &sent}
	var a Alert
	var c, ak, r int64
	if withAlert {
		dst = append(dst, &a.ID, &a.Operator, &a.Kind, &a.Severity, &a.DedupKey, &a.Device, &a.Machine, &a.Slot, &a.Ref, &a.Code,
			&a.Summary, &a.Detail, &a.State, &c, &ak, &a.AckedBy, &r, &a.ResolvedBy)
	}
	if err := sc.Scan(dst...); err != nil {
		return d, err
	}
	a.Created, a.Acked, a.Resolved = alertTime(c), alertTime(ak), alertTime(r)
	d.Alert = a
	d.Next, d.Sent = alertTime(next), alertTime(sent)
	return d, nil
}

// ClaimDeliveries claims up to limit pending deliveries that are due and
// not leased, each for lease: a claim counts an attempt and is made by
// one conditional UPDATE, so two instances never hold the same delivery
// at once. A claim whose holder died is claimed again once its lease
// passed.
func (s *Store) ClaimDeliveries(ctx context.Context, lease time.Duration, limit int) ([]Delivery, error) {
	now := s.nowMs()
	rows, err := s.db.QueryContext(ctx, `SELECT d.id FROM alert_deliveries d WHERE d.state = 'pending' AND d.next_ms <= $1 AND d.lease_ms <= $1
		ORDER BY d.next_ms LIMIT $2`, now, limit)
	if err != nil {
		return nil, fmt.Errorf("store: claim deliveries: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, fmt.Errorf("store: claim deliveries: %w", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	var out []Delivery
	for _, id := range ids {
		res, err := s.db.ExecContext(ctx, `UPDATE alert_deliveries SET lease_ms = $1, attempts = attempts + 1
			WHERE id = $2 AND state = 'pending' AND next_ms <= $3 AND lease_ms <= $3`, now+lease.Milliseconds(), id, now)
		if err != nil {
			return out, fmt.Errorf("store: claim deliveries: %w", err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			continue // another instance took it
		}
		d, err := scanDelivery(s.db.QueryRowContext(ctx, `SELECT `+deliveryCols+`, `+prefixCols("a.", alertCols)+`
			FROM alert_deliveries d JOIN alerts a ON a.id = d.alert_id WHERE d.id = $1`, id), true)
		if err != nil {
			return out, fmt.Errorf("store: claim deliveries: %w", err)
		}
		out = append(out, d)
	}
	return out, nil
}

func prefixCols(p, cols string) string {
	parts := strings.Split(cols, ",")
	for i, c := range parts {
		parts[i] = p + strings.TrimSpace(c)
	}
	return strings.Join(parts, ", ")
}

// DeliveryResult is what became of a claimed delivery.
type DeliveryResult struct {
	Sent bool
	Err  string // why the attempt failed
	// Retry is when the next attempt may start after a failure; zero
	// gives up (state failed).
	Retry time.Time
	// Hold puts the delivery back, uncounted, until this time (a quiet
	// period); takes precedence over the rest.
	Hold time.Time
}

// FinishDelivery records the result of attempt (Delivery.Attempts of
// the claim) of a delivery. A result for an attempt that is no longer
// the current one (its lease passed and another claim took it) is
// ignored and reported false.
func (s *Store) FinishDelivery(ctx context.Context, id string, attempt int, r DeliveryResult) (bool, error) {
	now := s.nowMs()
	var q string
	var args []any
	switch {
	case !r.Hold.IsZero():
		q, args = `UPDATE alert_deliveries SET lease_ms = 0, attempts = attempts - 1, next_ms = $1 WHERE id = $2 AND attempts = $3 AND state = 'pending'`,
			[]any{r.Hold.UnixMilli(), id, attempt}
	case r.Sent:
		q, args = `UPDATE alert_deliveries SET state = 'sent', lease_ms = 0, sent_ms = $1, last_error = '' WHERE id = $2 AND attempts = $3 AND state = 'pending'`,
			[]any{now, id, attempt}
	case r.Retry.IsZero():
		q, args = `UPDATE alert_deliveries SET state = 'failed', lease_ms = 0, last_error = $1 WHERE id = $2 AND attempts = $3 AND state = 'pending'`,
			[]any{clipN(r.Err, 500), id, attempt}
	default:
		q, args = `UPDATE alert_deliveries SET lease_ms = 0, next_ms = $1, last_error = $2 WHERE id = $3 AND attempts = $4 AND state = 'pending'`,
			[]any{r.Retry.UnixMilli(), clipN(r.Err, 500), id, attempt}
	}
	res, err := s.db.ExecContext(ctx, q, args...)
	if err != nil {
		return false, fmt.Errorf("store: finish delivery: %w", err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// AlertDeliveries returns the deliveries of one of operator's alerts.
func (s *Store) AlertDeliveries(ctx context.Context, operator, alert string) ([]Delivery, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+deliveryCols+` FROM alert_deliveries d WHERE d.alert_id = $1 AND d.operator_id = $2
		ORDER BY d.channel`, alert, operator)
	if err != nil {
		return nil, fmt.Errorf("store: alert deliveries: %w", err)
	}
	defer rows.Close()
	var out []Delivery
	for rows.Next() {
		d, err := scanDelivery(rows, false)
		if err != nil {
			return nil, fmt.Errorf("store: alert deliveries: %w", err)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}
