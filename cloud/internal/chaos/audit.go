package chaos

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/store"
	"beaconvend/hw/emu"
)

// dbSession is one row of the cloud's sessions table.
type dbSession struct {
	ID, User, Device, Machine, Slot, State, IdemKey, Fault string
	Price                                                  vend.Price
	CapUnits, Units                                        uint64
	Hold, Captured, Released                               int64
	Late                                                   bool  // a report came after the session was closed without one
	LateMinor                                              int64 // what the late capture moved (negative: an excess refunded)
	Outcome                                                vend.Outcome
	Created, Updated, Ended                                time.Time
	HasHold                                                bool
}

// liveStates are the session states with money held and a machine taken.
var liveStates = map[string]bool{"pending": true, "authorized": true, "running": true, "ending": true}

// policyStates are the states whose money follows a documented policy
// rather than the delivery (cloud/store doc): unreported (no usage report
// came; the hold is kept for a settlement window), released (the window
// passed, policy release) and voided (an operator released it with a
// reason). A valid report that comes later still settles them, as a late
// capture, and is then audited against the delivery.
var policyStates = map[string]bool{"unreported": true, "released": true, "voided": true}

// Violation is one broken invariant found by the audit.
type Violation struct {
	Kind    string // e.g. undercharged, not_terminal, hold_above_cap
	Session string // the session, when it is about one
	Device  string
	Detail  string
}

func (v Violation) String() string {
	s := v.Kind
	if v.Device != "" {
		s += " " + v.Device
	}
	if v.Session != "" {
		s += " " + v.Session
	}
	return s + ": " + v.Detail
}

func openDB(ctx context.Context, dsn string) (*store.Store, error) {
	return store.Open(ctx, dsn, &store.Opts{MaxOpenConns: 2})
}

func loadSessions(ctx context.Context, db *sql.DB) ([]*dbSession, error) {
	rows, err := db.QueryContext(ctx, `SELECT s.id, s.user_id, s.device_id, s.machine_id, s.slot_id, s.state, s.idem_key, s.fault,
		s.price_minor, s.price_per, s.cap_units, s.units, s.hold_minor, s.captured, s.released, s.late, s.late_minor, s.outcome,
		s.created_ms, s.updated_ms, s.ended_ms,
		(SELECT COUNT(*) FROM ledger_tx t WHERE t.session_id = s.id AND t.kind = 'hold')
		FROM sessions s ORDER BY s.created_ms, s.id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*dbSession
	for rows.Next() {
		var s dbSession
		var per, capU, units, late, outcome, c, u, e, holds int64
		if err := rows.Scan(&s.ID, &s.User, &s.Device, &s.Machine, &s.Slot, &s.State, &s.IdemKey, &s.Fault,
			&s.Price.Minor, &per, &capU, &units, &s.Hold, &s.Captured, &s.Released, &late, &s.LateMinor, &outcome, &c, &u, &e, &holds); err != nil {
			return nil, err
		}
		s.Price.Per, s.CapUnits, s.Units, s.Outcome = uint32(per), uint64(capU), uint64(units), vend.Outcome(outcome)
		s.Created, s.Updated = time.UnixMilli(c), time.UnixMilli(u)
		if e > 0 {
			s.Ended = time.UnixMilli(e)
		}
		s.HasHold = holds > 0
		s.Late = late != 0
		out = append(out, &s)
	}
	return out, rows.Err()
}

func countLive(ctx context.Context, db *sql.DB) (int, error) {
	var n int
	err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM sessions WHERE state IN ('pending', 'authorized', 'running', 'ending')`).Scan(&n)
	return n, err
}

// truth is what a machine gave within one session's window.
type truth struct {
	units      uint64 // mL, cycles or items of the session's slot
	deliveries int
	otherSlot  int // vending items from another slot than the session's
	credit     int // washer: valid coin pulses the machine took as credit
}

// machineTruth is one machine's truth at the end of a soak: its emulated
// board's delivery log and state.
type machineTruth struct {
	device, machine string
	kind            vend.MachineKind
	deliveries      []emu.Delivery
	dropped         uint64
	status          emu.Status
}

func truthOf(devs []*device) []machineTruth {
	var out []machineTruth
	for _, d := range devs {
		dels, dropped := d.emu.Board.Deliveries(0)
		out = append(out, machineTruth{device: d.ID, machine: d.spec.machine, kind: d.spec.kind, deliveries: dels, dropped: dropped, status: d.emu.Board.Status()})
	}
	return out
}

// audit checks every session, machine and the ledger, and returns the
// violations.
func audit(ctx context.Context, db *sql.DB, sessions []*dbSession, machines []machineTruth, attempts []*attempt, bound time.Duration) ([]Violation, error) {
	vs := auditSessions(sessions, machines, attempts, bound)
	lv, err := auditLedger(ctx, db, sessions)
	return append(vs, lv...), err
}

// auditSessions checks every session against its machine's truth and the
// phone's view, and every machine's end state.
func auditSessions(sessions []*dbSession, machines []machineTruth, attempts []*attempt, bound time.Duration) []Violation {
	var vs []Violation
	add := func(kind string, s *dbSession, dev, format string, args ...any) {
		v := Violation{Kind: kind, Device: dev, Detail: fmt.Sprintf(format, args...)}
		if s != nil {
			v.Session, v.Device = s.ID, s.Device
		}
		vs = append(vs, v)
	}
	byIdem := map[string]*attempt{}
	for _, a := range attempts {
		byIdem[a.IdemKey] = a
	}
	attemptOf := func(s *dbSession) *attempt {
		if a := byIdem[s.IdemKey]; a != nil {
			return a
		}
		for k, a := range byIdem { // the key may be stored with a prefix
			if strings.HasSuffix(s.IdemKey, k) {
				return a
			}
		}
		return nil
	}

	// Truth per session: each machine's deliveries, split into windows
	// from one session's creation to the next one's on the same machine
	// (the cloud allows one live session per machine).
	truths := map[string]truth{}
	for _, d := range machines {
		dels, dropped := d.deliveries, d.dropped
		if dropped > 0 {
			add("truth_log_overflow", nil, d.device, "%d deliveries dropped from the emulator's log", dropped)
		}
		var mine []*dbSession
		for _, s := range sessions {
			if s.Device == d.device && s.Machine == d.machine {
				mine = append(mine, s)
			}
		}
		sort.SliceStable(mine, func(i, j int) bool { return mine[i].Created.Before(mine[j].Created) })
		for _, del := range dels {
			credit := del.Kind == emu.KindWasher && del.Valid && !del.Ignored
			if !gave(del) && !credit {
				continue
			}
			i := sort.Search(len(mine), func(i int) bool { return mine[i].Created.After(del.Start) }) - 1
			if i < 0 && !gave(del) {
				add("credit_given_unbilled", nil, d.device, "a coin pulse at %s before any session", del.Start.Format(time.RFC3339Nano))
				continue
			}
			if i < 0 {
				add("delivered_without_session", nil, d.device, "%s at %s before any session", describe(del), del.Start.Format(time.RFC3339Nano))
				continue
			}
			s := mine[i]
			t := truths[s.ID]
			t.deliveries++
			switch d.kind {
			case vend.KindWater:
				t.units += uint64(del.DeliveredUL) // µL until converted below
			case vend.KindWasher:
				if del.CycleStarted {
					t.units++
				}
				if credit {
					t.credit++
				}
			case vend.KindVending:
				if del.Slot == s.Slot {
					t.units += uint64(del.Items)
				} else {
					t.otherSlot += del.Items
				}
			}
			truths[s.ID] = t
		}
		if d.kind == vend.KindWater {
			for _, s := range mine {
				t := truths[s.ID]
				t.units /= 1000
				truths[s.ID] = t
			}
		}
		st := d.status
		for name, on := range st.Coils {
			if on {
				add("output_on_at_end", nil, d.device, "output %s still ON after quiescence", name)
			}
		}
		for _, m := range st.Machines {
			if m.Washer != nil && m.Washer.Credit > 0 {
				add("washer_credit_banked", nil, d.device, "%d coin pulse(s) of credit left banked in the washer: a cycle partly paid and never billed", m.Washer.Credit)
			}
		}
	}

	for _, s := range sessions {
		a := attemptOf(s)
		if liveStates[s.State] {
			add("not_terminal", s, "", "state %s after quiescence (created %s ago)", s.State, time.Since(s.Created).Round(time.Second))
			continue
		}
		// By the cloud's clock: ended_ms of a settled session is the
		// device's signed end time, and a device's clock may be minutes
		// off; updated_ms is when the cloud closed it.
		// A late capture changes a session closed in time (updated_ms moves
		// with it); it is judged on its money below.
		end := s.Updated
		if !s.Late && end.Sub(s.Created) > bound {
			add("late_end", s, "", "ended %s after it was created, bound %s", end.Sub(s.Created).Round(time.Second), bound)
		}
		t := truths[s.ID]
		if t.credit > 0 && t.units == 0 && s.Captured == 0 && !policyStates[s.State] {
			add("credit_given_unbilled", s, "", "%s/%s: %d valid coin pulse(s) credited to the washer, no cycle started in the session, nothing captured: the credit stays banked for the next payer",
				s.State, s.Outcome, t.credit)
		}
		if t.otherSlot > 0 {
			add("wrong_slot", s, "", "%d item(s) dropped from another slot than %s", t.otherSlot, s.Slot)
		}
		if a != nil {
			var capMoney int64 = -1
			if a.CapAmount > 0 {
				capMoney = a.CapAmount
			} else if c, err := a.Shown.Cost(a.CapUnits); err == nil {
				capMoney = c
			}
			if capMoney >= 0 && s.Hold > capMoney {
				add("hold_above_cap", s, "", "hold %d > the %d the payer agreed to (cap %s at the shown price %d/%d; session priced %d/%d)",
					s.Hold, capMoney, capText(a), a.Shown.Minor, a.Shown.Per, s.Price.Minor, s.Price.Per)
			}
			if a.StartCode != "ok" && a.Session.IsZero() && (t.units > 0 || s.Captured > 0) {
				add("ran_after_failed_start", s, "", "the phone was told %s (no session; asked again after %v), yet the machine gave %d %s and %d was captured",
					a.StartCode, a.Retried, t.units, unitName(s), s.Captured)
			}
			if a.Final.Final() && string(a.Final) != s.State {
				add("phone_told_other_end", s, "", "the phone saw %s, the store ends in %s", a.Final, s.State)
			}
		}
		if policyStates[s.State] && !s.Late {
			if s.Captured != 0 && s.State == "unreported" {
				add("policy_capture", s, "", "unreported with %d captured (policy release captures 0)", s.Captured)
			}
			continue
		}
		if s.Captured+s.Released != s.Hold {
			add("hold_stranded", s, "", "%s with hold %d, captured %d, released %d", s.State, s.Hold, s.Captured, s.Released)
		}
		lo, hi := expectedCapture(s, t)
		charged := s.Captured + s.LateMinor // a late capture adds to (or refunds from) what was captured
		switch {
		case charged < lo:
			add("undercharged", s, "", "%s/%s: the machine gave %d %s (%d deliveries), captured %d, want %d (hold %d, price %d/%d, metered %d)",
				s.State, s.Outcome, t.units, unitName(s), t.deliveries, charged, lo, s.Hold, s.Price.Minor, s.Price.Per, s.Units)
		case charged > hi:
			add("overcharged", s, "", "%s/%s: the machine gave %d %s (%d deliveries), captured %d, want %d (hold %d, price %d/%d, metered %d)",
				s.State, s.Outcome, t.units, unitName(s), t.deliveries, charged, hi, s.Hold, s.Price.Minor, s.Price.Per, s.Units)
		}
	}
	return vs
}

// gave reports whether a delivery gave the payer anything.
func gave(d emu.Delivery) bool {
	switch d.Kind {
	case emu.KindWater:
		return d.DeliveredUL > 0
	case emu.KindWasher:
		return d.CycleStarted
	default:
		return d.Items > 0
	}
}

func describe(d emu.Delivery) string {
	switch d.Kind {
	case emu.KindWater:
		return fmt.Sprintf("%d mL", d.DeliveredUL/1000)
	case emu.KindWasher:
		return "a washer cycle"
	default:
		return fmt.Sprintf("%d item(s) from %s", d.Items, d.Slot)
	}
}

func unitName(s *dbSession) string {
	switch {
	case strings.HasPrefix(s.Machine, "tap"):
		return "mL"
	case strings.HasPrefix(s.Machine, "washer"):
		return "cycle(s)"
	}
	return "item(s)"
}

func capText(a *attempt) string {
	if a.CapAmount > 0 {
		return fmt.Sprintf("amount %d", a.CapAmount)
	}
	return fmt.Sprintf("%d units", a.CapUnits)
}

// expectedCapture is the range captured may take: min(delivered × price,
// hold), with the water meter's resolution (one 450/L pulse is 2.2 mL)
// allowed per delivery.
func expectedCapture(s *dbSession, t truth) (lo, hi int64) {
	slack := uint64(0)
	if strings.HasPrefix(s.Machine, "tap") {
		slack = 3*uint64(t.deliveries) + 1
	}
	cost := func(u uint64) int64 {
		c, err := s.Price.Cost(u)
		if err != nil {
			return 0
		}
		return min(c, s.Hold)
	}
	l := uint64(0)
	if t.units > slack {
		l = t.units - slack
	}
	return cost(l), cost(t.units + slack)
}

// auditLedger checks the double-entry ledger straight from its tables.
func auditLedger(ctx context.Context, db *sql.DB, sessions []*dbSession) ([]Violation, error) {
	var vs []Violation
	add := func(kind, format string, args ...any) {
		vs = append(vs, Violation{Kind: kind, Detail: fmt.Sprintf(format, args...)})
	}
	rows, err := db.QueryContext(ctx, `SELECT currency, SUM(amount) FROM entries GROUP BY currency HAVING SUM(amount) <> 0`)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var cur string
		var sum int64
		if err := rows.Scan(&cur, &sum); err != nil {
			rows.Close()
			return nil, err
		}
		add("ledger_unbalanced", "entries in %s sum to %d", cur, sum)
	}
	rows.Close()
	var badTx, badAcc int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM (SELECT tx_id FROM entries GROUP BY tx_id HAVING SUM(amount) <> 0) t`).Scan(&badTx); err != nil {
		return nil, err
	}
	if badTx > 0 {
		add("ledger_unbalanced", "%d transactions whose entries do not sum to zero", badTx)
	}
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM (SELECT a.id FROM accounts a LEFT JOIN entries e ON e.account_id = a.id
		GROUP BY a.id, a.balance, a.may_go_negative HAVING a.balance <> COALESCE(SUM(e.amount), 0) OR (a.may_go_negative = 0 AND a.balance < 0)) t`).Scan(&badAcc); err != nil {
		return nil, err
	}
	if badAcc > 0 {
		add("ledger_account_mismatch", "%d accounts whose balance is not the sum of their entries, or negative", badAcc)
	}
	var holds int64
	if err := db.QueryRowContext(ctx, `SELECT COALESCE(SUM(balance), 0) FROM accounts WHERE kind = 'user_holds'`).Scan(&holds); err != nil {
		return nil, err
	}
	var want int64
	for _, s := range sessions {
		if s.HasHold {
			want += s.Hold - s.Captured - s.Released
		}
	}
	if holds != want {
		add("holds_mismatch", "user_holds accounts hold %d, the sessions' open holds sum to %d", holds, want)
	}
	rows, err = db.QueryContext(ctx, `SELECT session_id, kind, COUNT(*) FROM ledger_tx WHERE session_id IS NOT NULL AND kind IN ('hold', 'capture', 'release')
		GROUP BY session_id, kind HAVING COUNT(*) > 1`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var id, kind string
		var n int
		if err := rows.Scan(&id, &kind, &n); err != nil {
			return nil, err
		}
		vs = append(vs, Violation{Kind: "double_settlement", Session: id, Detail: fmt.Sprintf("%d %s transactions", n, kind)})
	}
	// Each session's capture in the ledger equals its captured column.
	caps := map[string]int64{}
	rows2, err := db.QueryContext(ctx, `SELECT t.session_id, SUM(e.amount) FROM ledger_tx t JOIN entries e ON e.tx_id = t.id
		WHERE t.kind = 'capture' AND e.amount > 0 GROUP BY t.session_id`)
	if err != nil {
		return nil, err
	}
	defer rows2.Close()
	for rows2.Next() {
		var id string
		var sum int64
		if err := rows2.Scan(&id, &sum); err != nil {
			return nil, err
		}
		caps[id] = sum
	}
	for _, s := range sessions {
		if caps[s.ID] != s.Captured {
			vs = append(vs, Violation{Kind: "ledger_capture_mismatch", Session: s.ID, Device: s.Device,
				Detail: fmt.Sprintf("sessions.captured %d, capture entries %d", s.Captured, caps[s.ID])})
		}
	}
	return vs, rows2.Err()
}
