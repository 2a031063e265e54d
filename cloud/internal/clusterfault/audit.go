package clusterfault

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/internal/simdev"
	"beaconvend/cloud/store"
	"beaconvend/controller/config"
	"beaconvend/controller/journal"
)

// The audit is one function, audit, over an auditInput: what the cloud's
// store holds (storeView, read with loadStore through the store package
// on SQLite or PostgreSQL) and what each device saw (deviceView: a
// simulated device's records and MQTT client, a real controller's bbolt
// journal and log). The run builds the input from the deployment after it
// settled; the tests build it from a store they planted a defect in.

// Violation kinds: every violation the audit reports begins with one of
// these, then the device, session or account it concerns.
const (
	vLost           = "lost"                       // a report the device saw acknowledged is not settled in the store with its units
	vNotAcked       = "not_acked"                  // a report the device made was never acknowledged
	vUnknownSession = "unknown_session"            // the device holds a grant the store does not have
	vDoubled        = "doubled_capture_or_release" // a session has two capture (or two release) ledger transactions
	vDoubledKey     = "doubled_session_per_key"    // two sessions for one (user, idempotency key)
	vImbalance      = "ledger_imbalance"           // the entries of a currency (or of one transaction) do not sum to zero
	vBalance        = "balance_mismatch"           // an account's stored balance is not the sum of its entries
	vLive           = "live_after_settle"          // a session still live after the settle phase
	vNotOnline      = "not_online"                 // the store does not have the device online
	vNotConnected   = "not_connected"              // the store has it online, but the device's own client is not connected
	vUnknownDevice  = "unknown_device"             // the store does not know the device
	vBadReport      = "bad_report"                 // a controller's journal holds a report that does not open with its key
)

// auditInput is everything the audit judges.
type auditInput struct {
	Store   storeView
	Devices []deviceView
}

// storeView is what the cloud's store holds after the run.
type storeView struct {
	Sessions    map[vend.SessionID]storeSession
	Devices     map[string]bool   // device id → online flag
	DoubledTx   []doubledTx       // (session, kind) with more than one capture or release transaction
	DoubledKeys []doubledKey      // (user, idempotency key) with more than one session
	Imbalance   map[string]int64  // currency → sum of entries, when not zero (store.LedgerImbalance)
	Mismatches  []balanceMismatch // store.CheckBalances
}

// storeSession is one row of the sessions table.
type storeSession struct {
	Device string
	State  store.State
	Units  uint64
	Late   bool // settled by a late report (the session keeps its closed state)
}

type doubledTx struct {
	Session string
	Kind    string
	N       int
}

type doubledKey struct {
	User, Key string
	N         int
}

type balanceMismatch struct {
	Kind, Owner, Currency string
	Balance, Entries      int64
}

// deviceView is what one device saw, from its own side.
type deviceView struct {
	ID         string
	Controller bool // a real controller (its journal), not a simulated device
	// Connected is the device's own word on its MQTT connection at the
	// end: a simulated device's paho client, a controller's process
	// running with "mqtt connected" as the last connection line of its log.
	Connected bool
	Why       string // what Connected was read from, for the violation
	Reports   []deviceReport
}

// deviceReport is one session the device holds a grant of.
type deviceReport struct {
	Session  vend.SessionID
	Reported bool   // the device made (signed and queued) its usage report
	Acked    bool   // the cloud acknowledged that report
	Units    uint64 // units in the report
	Err      string // a controller's stored report that does not open
}

// auditResult is the audit's verdict and its counts.
type auditResult struct {
	Violations      []string
	Sessions        map[string]int // store sessions by state
	Acked           int            // reports simulated devices saw acknowledged
	ControllerAcked int            // reports real controllers saw acknowledged (journal: settled)
}

// audit checks the invariants over in: every usage report a device saw
// acknowledged is settled once in the store with the device's units
// (settled or refunded, or settled late); every report made was
// acknowledged; every grant a device holds is a session of the store; no
// session doubled (one capture and one release transaction per session,
// one session per idempotency key); the ledger balances and every stored
// balance is the sum of its entries; no session is left live; every
// device is online in the store and, by its own side, connected.
func audit(in *auditInput) auditResult {
	res := auditResult{Sessions: map[string]int{}}
	add := func(format string, args ...any) {
		res.Violations = append(res.Violations, fmt.Sprintf(format, args...))
	}
	var live []string
	for id, s := range in.Store.Sessions {
		res.Sessions[string(s.State)]++
		if s.State.Live() {
			live = append(live, fmt.Sprintf("%s %s (%s)", s.Device, id, s.State))
		}
	}
	sort.Strings(live)
	for _, l := range live {
		add("%s %s", vLive, l)
	}
	for _, d := range in.Devices {
		online, known := in.Store.Devices[d.ID]
		switch {
		case !known:
			add("%s %s: the store has no such device", vUnknownDevice, d.ID)
		case !online:
			add("%s %s: the store has it offline at the end (device side: %s)", vNotOnline, d.ID, d.Why)
		case !d.Connected:
			add("%s %s: the store has it online but the device is not connected (%s)", vNotConnected, d.ID, d.Why)
		}
		for _, r := range d.Reports {
			s, ok := in.Store.Sessions[r.Session]
			switch {
			case r.Err != "":
				add("%s %s %s: %s", vBadReport, d.ID, r.Session, r.Err)
			case !ok:
				add("%s %s %s: the device holds a grant the store does not have", vUnknownSession, d.ID, r.Session)
			case s.Device != d.ID:
				add("%s %s %s: the store has the session on device %s", vUnknownSession, d.ID, r.Session, s.Device)
			case r.Acked:
				if d.Controller {
					res.ControllerAcked++
				} else {
					res.Acked++
				}
				settled := s.State == store.Settled || s.State == store.Refunded || s.Late
				if !settled || s.Units != r.Units {
					late := ""
					if s.Late {
						late = " (late)"
					}
					add("%s %s %s: acknowledged %d units; store %s%s with %d", vLost, d.ID, r.Session, r.Units, s.State, late, s.Units)
				}
			case r.Reported:
				add("%s %s %s: the usage report was never acknowledged", vNotAcked, d.ID, r.Session)
			}
		}
	}
	for _, x := range in.Store.DoubledTx {
		add("%s %s: %d %s transactions", vDoubled, x.Session, x.N, x.Kind)
	}
	for _, x := range in.Store.DoubledKeys {
		add("%s user %s key %q: %d sessions", vDoubledKey, x.User, x.Key, x.N)
	}
	curs := make([]string, 0, len(in.Store.Imbalance))
	for c := range in.Store.Imbalance {
		curs = append(curs, c)
	}
	sort.Strings(curs)
	for _, c := range curs {
		add("%s %s: entries sum to %d", vImbalance, c, in.Store.Imbalance[c])
	}
	for _, m := range in.Store.Mismatches {
		add("%s %s %s %s: balance %d, entries sum to %d", vBalance, m.Kind, m.Owner, m.Currency, m.Balance, m.Entries)
	}
	return res
}

// loadStore reads the store's side of the audit: every session, every
// device's online flag, doubled ledger transactions and idempotency keys,
// and the ledger's own checks.
func loadStore(ctx context.Context, st *store.Store) (storeView, error) {
	v := storeView{Sessions: map[vend.SessionID]storeSession{}, Devices: map[string]bool{}, Imbalance: map[string]int64{}}
	db := st.DB()
	rows, err := db.QueryContext(ctx, `SELECT id, device_id, state, units, late FROM sessions`)
	if err != nil {
		return v, fmt.Errorf("clusterfault: audit: sessions: %w", err)
	}
	for rows.Next() {
		var id, dev, state string
		var units int64
		var late int
		if err := rows.Scan(&id, &dev, &state, &units, &late); err != nil {
			rows.Close()
			return v, fmt.Errorf("clusterfault: audit: sessions: %w", err)
		}
		sid, err := vend.ParseSessionID(id)
		if err != nil {
			rows.Close()
			return v, fmt.Errorf("clusterfault: audit: session id %q: %w", id, err)
		}
		v.Sessions[sid] = storeSession{Device: dev, State: store.State(state), Units: uint64(units), Late: late != 0}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return v, fmt.Errorf("clusterfault: audit: sessions: %w", err)
	}

	rows, err = db.QueryContext(ctx, `SELECT id, online FROM devices`)
	if err != nil {
		return v, fmt.Errorf("clusterfault: audit: devices: %w", err)
	}
	for rows.Next() {
		var id string
		var on int
		if err := rows.Scan(&id, &on); err != nil {
			rows.Close()
			return v, fmt.Errorf("clusterfault: audit: devices: %w", err)
		}
		v.Devices[id] = on != 0
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return v, fmt.Errorf("clusterfault: audit: devices: %w", err)
	}

	rows, err = db.QueryContext(ctx, `SELECT session_id, kind, COUNT(*) FROM ledger_tx
		WHERE kind IN ('capture', 'release') AND session_id IS NOT NULL
		GROUP BY session_id, kind HAVING COUNT(*) > 1 ORDER BY session_id, kind`)
	if err != nil {
		return v, fmt.Errorf("clusterfault: audit: ledger transactions: %w", err)
	}
	for rows.Next() {
		var x doubledTx
		if err := rows.Scan(&x.Session, &x.Kind, &x.N); err != nil {
			rows.Close()
			return v, fmt.Errorf("clusterfault: audit: ledger transactions: %w", err)
		}
		v.DoubledTx = append(v.DoubledTx, x)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return v, fmt.Errorf("clusterfault: audit: ledger transactions: %w", err)
	}

	rows, err = db.QueryContext(ctx, `SELECT user_id, idem_key, COUNT(*) FROM sessions
		GROUP BY user_id, idem_key HAVING COUNT(*) > 1 ORDER BY user_id, idem_key`)
	if err != nil {
		return v, fmt.Errorf("clusterfault: audit: idempotency keys: %w", err)
	}
	for rows.Next() {
		var x doubledKey
		if err := rows.Scan(&x.User, &x.Key, &x.N); err != nil {
			rows.Close()
			return v, fmt.Errorf("clusterfault: audit: idempotency keys: %w", err)
		}
		v.DoubledKeys = append(v.DoubledKeys, x)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return v, fmt.Errorf("clusterfault: audit: idempotency keys: %w", err)
	}

	imb, err := st.LedgerImbalance(ctx)
	if err != nil {
		return v, err
	}
	for c, n := range imb {
		if n != 0 {
			v.Imbalance[string(c)] = n
		}
	}
	bad, err := st.CheckBalances(ctx)
	if err != nil {
		return v, err
	}
	for _, b := range bad {
		v.Mismatches = append(v.Mismatches, balanceMismatch{Kind: string(b.Account.Kind), Owner: b.Account.Owner,
			Currency: string(b.Account.Currency), Balance: b.Account.Balance, Entries: b.Entries})
	}
	return v, nil
}

// simView is a simulated device's side: its session records and whether
// its MQTT client is connected (lastCmd: when its cmd topic last brought
// a message, for the violation's text).
func simView(id string, recs map[vend.SessionID]simdev.Record, connected bool, lastCmd time.Time) deviceView {
	d := deviceView{ID: id, Connected: connected}
	d.Why = "mqtt client disconnected"
	if connected {
		d.Why = "mqtt client connected"
	}
	if lastCmd.IsZero() {
		d.Why += ", no command ever received"
	} else {
		d.Why += fmt.Sprintf(", last command %s ago", time.Since(lastCmd).Round(time.Millisecond))
	}
	for sid, r := range recs {
		d.Reports = append(d.Reports, deviceReport{Session: sid, Reported: r.Reported, Acked: r.Acked, Units: r.Units})
	}
	sortReports(d.Reports)
	return d
}

func sortReports(rs []deviceReport) {
	sort.Slice(rs, func(i, j int) bool { return bytes.Compare(rs[i].Session[:], rs[j].Session[:]) < 0 })
}

// controllerConnected reads a controller's log (its uplink's "mqtt
// connected" and "mqtt connection lost" lines): connected when the last of
// them is "mqtt connected".
func controllerConnected(log []byte) (bool, string) {
	last := ""
	sc := bufio.NewScanner(bytes.NewReader(log))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case bytes.Contains(line, []byte(`msg="mqtt connected"`)):
			last = "connected"
		case bytes.Contains(line, []byte(`msg="mqtt connection lost"`)):
			last = "connection lost"
		}
	}
	switch last {
	case "connected":
		return true, `log: last "mqtt connected"`
	case "":
		return false, "log: never connected"
	}
	return false, `log: last "mqtt connection lost"`
}

// controllerJournal returns the journal file the controller configured
// in dir (its controller.yaml) uses.
func controllerJournal(dir string) (string, error) {
	cfg, err := config.Load(filepath.Join(dir, "controller.yaml"))
	if err != nil {
		return "", fmt.Errorf("clusterfault: controller config: %w", err)
	}
	path := cfg.Journal
	if !filepath.IsAbs(path) {
		path = filepath.Join(dir, path)
	}
	return path, nil
}

// controllerReports reads a stopped controller's journal at path with the
// controller's own journal package: a session in state settled is a report
// the cloud acknowledged, one in state reported a report not acknowledged;
// a report's units are read from its signed bytes, opened with the
// device's key pub. Errors: a missing or locked (controller still
// running) or corrupt journal.
func controllerReports(path string, pub ed25519.PublicKey) ([]deviceReport, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("clusterfault: controller journal: %w", err)
	}
	j, err := journal.Open(path, &journal.Opts{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("clusterfault: controller journal (is the controller still running?): %w", err)
	}
	ss, jerr := j.Sessions()
	if err := errors.Join(jerr, j.Close()); err != nil {
		return nil, fmt.Errorf("clusterfault: controller journal: %w", err)
	}
	keys, err := signed.NewKeys(pub)
	if err != nil {
		return nil, err
	}
	var out []deviceReport
	for _, s := range ss {
		r := deviceReport{Session: s.ID, Acked: s.State == journal.Settled, Reported: s.State == journal.Reported || s.State == journal.Settled}
		if r.Reported {
			u, err := signed.OpenUsage(s.Usage, keys)
			if err != nil {
				r.Err = fmt.Sprintf("stored usage report: %v", err)
			}
			r.Units = u.Units
		}
		out = append(out, r)
	}
	sortReports(out)
	return out, nil
}
