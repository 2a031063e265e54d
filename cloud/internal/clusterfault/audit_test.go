package clusterfault

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/internal/simdev"
	"beaconvend/cloud/internal/svctest"
	"beaconvend/cloud/store"
	"beaconvend/controller/journal"
)

// The audit's tests: a small deployment's worth of state made through
// the real store (its migrations, on SQLite and on PostgreSQL), a real
// controller journal and simulated devices' records; then one defect
// planted at a time, and the audit must name it. A defect the store's API
// can produce is made through the API; one the API (or a constraint)
// prevents is written by SQL, and the test says so.

var pgSeq atomic.Int64

// dsnMaker returns what makes fresh, empty databases of backend b for
// the subtests of t: SQLite files, or schemas in one scratch PostgreSQL
// database made from VEND_PG_DSN (svctest: skipped loudly without it,
// failed under VEND_REQUIRE_SERVICES), as the store's own tests do.
func dsnMaker(t *testing.T, b string) func(t *testing.T) string {
	if b == "sqlite" {
		return func(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "store.db") }
	}
	base := svctest.PostgresDSN(t, "clusterfault_audit")
	return func(t *testing.T) string {
		t.Helper()
		schema := fmt.Sprintf("a%d", pgSeq.Add(1))
		db, err := sql.Open("pgx", base)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.Exec(`CREATE SCHEMA ` + schema); err != nil {
			t.Fatalf("create schema: %v", err)
		}
		u, _ := url.Parse(base)
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return u.String()
	}
}

// fixture is the state of a clean run: two simulated devices and one real
// controller, online, each with sessions settled (one refunded), and the
// devices' views of them.
type fixture struct {
	t       *testing.T
	ctx     context.Context
	st      *store.Store
	user    store.User
	cloud   ed25519.PrivateKey
	cloudK  signed.Keys
	devKeys map[string]ed25519.PrivateKey
	sims    map[string]map[vend.SessionID]simdev.Record // simulated devices' records
	conn    map[string]bool                             // simulated devices' clients connected
	jpath   string                                      // the controller's journal
	settled vend.SessionID                              // a session of sim-1 acknowledged and settled
	ctlSess vend.SessionID                              // the controller's settled session
	keys    int
}

const ctlID = "ctl-1"

func newFixture(t *testing.T, dsn func(t *testing.T) string) *fixture {
	t.Helper()
	f := &fixture{t: t, ctx: context.Background(), devKeys: map[string]ed25519.PrivateKey{},
		sims: map[string]map[vend.SessionID]simdev.Record{}, conn: map[string]bool{}}
	var err error
	f.st, err = store.Open(f.ctx, dsn(t), &store.Opts{BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	t.Cleanup(func() { f.st.Close() })
	_, f.cloud, _ = ed25519.GenerateKey(rand.Reader)
	if f.cloudK, err = signed.NewKeys(f.cloud.Public().(ed25519.PublicKey)); err != nil {
		t.Fatal(err)
	}
	op, err := f.st.CreateOperator(f.ctx, "Operator")
	f.must(err)
	for _, id := range []string{"sim-1", "sim-2", ctlID} {
		pub, priv, _ := ed25519.GenerateKey(rand.Reader)
		f.devKeys[id] = priv
		f.must(f.st.CreateDevice(f.ctx, store.Device{ID: id, OperatorID: op.ID, Name: id, K: 5, SignKey: pub, MQTTHash: "x",
			IdentityKey: [16]byte{1}, Machines: []store.Machine{{ID: "tap1", Kind: vend.KindWater, Name: "water",
				Price: vend.Price{Minor: 50, Per: 1000}, Currency: "EUR"}}}))
		f.must(f.st.SetDeviceStatus(f.ctx, id, true, nil, time.Now()))
		if id != ctlID {
			f.sims[id] = map[vend.SessionID]simdev.Record{}
			f.conn[id] = true
		}
	}
	f.user, err = f.st.CreateUser(f.ctx, "payer@example.com", "correct horse")
	f.must(err)
	_, err = f.st.TopUp(f.ctx, f.user.ID, vend.Amount{Minor: 100000, Currency: "EUR"}, "sandbox_card", "top-up-1")
	f.must(err)

	f.settled = f.simSession("sim-1", 600, true)
	f.simSession("sim-1", 0, true) // refunded: nothing delivered
	f.simSession("sim-2", 999, true)

	// The controller's journal: a grant accepted, run, ended, reported
	// and acknowledged, as the controller's daemon does it.
	f.jpath = filepath.Join(t.TempDir(), "journal.db")
	f.ctlSess = f.ctlSession(700, true, true)
	return f
}

func (f *fixture) must(err error) {
	f.t.Helper()
	if err != nil {
		f.t.Fatal(err)
	}
}

// start starts a session on device for capUnits with a grant signed by
// the cloud's key.
func (f *fixture) start(device string, capUnits uint64) store.Session {
	f.t.Helper()
	f.keys++
	ss, err := f.st.StartSession(f.ctx, store.StartInput{User: f.user.ID, Device: device, Machine: "tap1", CapUnits: capUnits,
		IdemKey: fmt.Sprintf("key-%d", f.keys), Sign: func(g signed.Grant) ([]byte, error) { return signed.SignGrant(f.cloud, g) }})
	f.must(err)
	return ss
}

// usage signs device's report of units for ss.
func (f *fixture) usage(ss store.Session, units uint64, seq uint64) (signed.Usage, []byte) {
	f.t.Helper()
	cost, err := ss.Price.Cost(units)
	f.must(err)
	out := vend.OutcomeUserStop
	started := time.Now().Add(-time.Second)
	if units == 0 {
		out, started = vend.OutcomeNotStarted, time.Time{}
	}
	u := signed.Usage{Device: ss.Device, Seq: seq, Session: ss.ID, Machine: ss.Machine, Unit: ss.Unit, Units: units,
		Price: ss.Price, Currency: ss.Currency, Amount: cost, StartedAt: started, EndedAt: time.Now(), MeterEnd: units, Outcome: out}
	b, err := signed.SignUsage(f.devKeys[ss.Device], u)
	f.must(err)
	keys, _ := signed.NewKeys(f.devKeys[ss.Device].Public().(ed25519.PublicKey))
	v, err := signed.OpenUsage(b, keys)
	f.must(err)
	return v, b
}

// simSession makes a simulated device's session: started, reported with
// units; settled in the store and acknowledged at the device when settle.
func (f *fixture) simSession(device string, units uint64, settle bool) vend.SessionID {
	f.t.Helper()
	ss := f.start(device, 1000)
	rec := simdev.Record{Units: units, Grants: 1, Reported: true}
	if settle {
		u, b := f.usage(ss, units, uint64(len(f.sims[device])+1))
		_, err := f.st.Settle(f.ctx, u, b)
		f.must(err)
		rec.Acked = true
	}
	f.sims[device][ss.ID] = rec
	return ss.ID
}

// ctlSession runs a session through the controller's journal: accepted,
// running, ending with units, reported (EndSession signs it) and, when
// ack, acknowledged; the store settles the journal's own signed report
// when settle.
func (f *fixture) ctlSession(units uint64, ack, settle bool) vend.SessionID {
	f.t.Helper()
	ss := f.start(ctlID, 1000)
	g, err := signed.OpenGrant(ss.Grant, f.cloudK)
	f.must(err)
	return f.ctlRun(ss, g, ss.Grant, units, ack, settle)
}

// ctlRun is ctlSession's journal part for grant g (signed: gb).
func (f *fixture) ctlRun(ss store.Session, g signed.Grant, gb []byte, units uint64, ack, settle bool) vend.SessionID {
	f.t.Helper()
	j, err := journal.Open(f.jpath, &journal.Opts{MeterInterval: -1})
	f.must(err)
	defer func() { f.must(j.Close()) }()
	f.must(j.Accept(g, gb))
	f.must(j.Transition(g.Session, journal.Running, nil))
	f.must(j.Meter(g.Session, units, 1000+units))
	f.must(j.Transition(g.Session, journal.Ending, func(s *journal.Session) { s.Outcome = vend.OutcomeUserStop }))
	rec, err := j.EndSession(g.Session, func(u signed.Usage) ([]byte, error) { return signed.SignUsage(f.devKeys[ctlID], u) })
	f.must(err)
	if settle {
		keys, _ := signed.NewKeys(f.devKeys[ctlID].Public().(ed25519.PublicKey))
		u, err := signed.OpenUsage(rec.Usage, keys)
		f.must(err)
		_, err = f.st.Settle(f.ctx, u, rec.Usage)
		f.must(err)
	}
	if ack {
		_, err = j.Ack(rec.UsageMsgID)
		f.must(err)
	}
	return g.Session
}

// input builds the audit's input the way the run does: the store through
// loadStore, the simulated devices through simView, the controller from
// its journal file and its log's connection state.
func (f *fixture) input() *auditInput {
	f.t.Helper()
	sv, err := loadStore(f.ctx, f.st)
	f.must(err)
	in := &auditInput{Store: sv}
	for _, id := range []string{"sim-1", "sim-2"} {
		in.Devices = append(in.Devices, simView(id, f.sims[id], f.conn[id], time.Now()))
	}
	reps, err := controllerReports(f.jpath, f.devKeys[ctlID].Public().(ed25519.PublicKey))
	f.must(err)
	in.Devices = append(in.Devices, deviceView{ID: ctlID, Controller: true, Connected: true, Why: "log", Reports: reps})
	return in
}

// exec runs SQL on the store's database (for a defect the API prevents).
func (f *fixture) exec(q string, args ...any) {
	f.t.Helper()
	if _, err := f.st.DB().ExecContext(f.ctx, q, args...); err != nil {
		f.t.Fatalf("%s: %v", q, err)
	}
}

// wantViolation asserts the audit of in reports a violation that begins
// with kind and names every one of names.
func wantViolation(t *testing.T, in *auditInput, kind string, names ...string) {
	t.Helper()
	res := audit(in)
	for _, v := range res.Violations {
		if !strings.HasPrefix(v, kind+" ") {
			continue
		}
		ok := true
		for _, n := range names {
			ok = ok && strings.Contains(v, n)
		}
		if ok {
			return
		}
	}
	t.Fatalf("audit violations %q: want one of kind %s naming %q", res.Violations, kind, names)
}

var backendsUnderTest = []string{"sqlite", "postgres"}

func TestAuditCleanRunHasNoViolations(t *testing.T) {
	for _, b := range backendsUnderTest {
		t.Run(b, func(t *testing.T) {
			f := newFixture(t, dsnMaker(t, b))
			res := audit(f.input())
			if len(res.Violations) != 0 {
				t.Fatalf("clean state: violations %q, want none", res.Violations)
			}
			if res.Acked != 3 || res.ControllerAcked != 1 {
				t.Errorf("acked %d (simulated) %d (controllers), want 3 and 1", res.Acked, res.ControllerAcked)
			}
			if res.Sessions["settled"] != 3 || res.Sessions["refunded"] != 1 {
				t.Errorf("sessions by state %v, want settled 3 refunded 1", res.Sessions)
			}
		})
	}
}

// TestAuditNamesEachDefect plants one defect per subtest in a clean
// state and checks the audit names it.
func TestAuditNamesEachDefect(t *testing.T) {
	type defect struct {
		name  string
		plant func(f *fixture) (kind string, names []string)
		edit  func(in *auditInput) // the device side, where the input is what carries the defect
	}
	defects := []defect{
		{"acked report the store never settled (API: a session left authorized)", func(f *fixture) (string, []string) {
			ss := f.start("sim-2", 500)
			f.must(f.st.Advance(f.ctx, ss.ID, store.Authorized, time.Now()))
			// The device saw its report acknowledged (an ack sent before,
			// or without, the store's commit).
			f.sims["sim-2"][ss.ID] = simdev.Record{Units: 120, Grants: 1, Reported: true, Acked: true}
			return vLost, []string{"sim-2", ss.ID.String(), "acknowledged 120 units", "authorized"}
		}, nil},
		{"acked report the store has with other units (SQL: the store settles only the signed units)", func(f *fixture) (string, []string) {
			f.exec(`UPDATE sessions SET units = units + 1 WHERE id = $1`, f.settled.String())
			return vLost, []string{"sim-1", f.settled.String(), "acknowledged 600 units", "settled with 601"}
		}, nil},
		{"acked report unsettled (SQL: Settle never moves a session back; the harness's unsettle-acked)", func(f *fixture) (string, []string) {
			f.must(plantUnsettle(f.ctx, f.st, f.settled))
			return vLost, []string{"sim-1", f.settled.String(), "store ending"}
		}, nil},
		{"controller's journal acked, the store never settled it (API)", func(f *fixture) (string, []string) {
			sid := f.ctlSession(250, true, false)
			return vLost, []string{ctlID, sid.String(), "acknowledged 250 units", "store pending"}
		}, nil},
		{"report never acknowledged (simulated device)", func(f *fixture) (string, []string) {
			sid := f.simSession("sim-2", 300, false)
			return vNotAcked, []string{"sim-2", sid.String()}
		}, nil},
		{"report never acknowledged (controller's journal: reported, not settled)", func(f *fixture) (string, []string) {
			sid := f.ctlSession(300, false, true)
			return vNotAcked, []string{ctlID, sid.String()}
		}, nil},
		{"session settled twice (SQL: the ledger's unique key on capture:<s>; the harness's duplicate-capture)", func(f *fixture) (string, []string) {
			f.must(plantDuplicateCapture(f.ctx, f.st, f.settled))
			return vDoubled, []string{f.settled.String(), "2 capture"}
		}, nil},
		{"two sessions for one idempotency key (SQL: the sessions table's unique (user, key) is copied away)", func(f *fixture) (string, []string) {
			key := plantDoubledKey(f, f.settled)
			return vDoubledKey, []string{f.user.ID, key, "2 sessions"}
		}, nil},
		{"unbalanced ledger (SQL: post writes both entries of a transfer)", func(f *fixture) (string, []string) {
			f.exec(`INSERT INTO entries (tx_id, account_id, amount, currency)
				SELECT tx_id, account_id, 5, currency FROM entries WHERE amount > 0 ORDER BY id LIMIT 1`)
			return vImbalance, []string{"EUR", "5"}
		}, nil},
		{"wallet balance disagrees with its movements (SQL: balances change only with entries)", func(f *fixture) (string, []string) {
			f.exec(`UPDATE accounts SET balance = balance + 7 WHERE kind = 'user_wallet' AND owner = $1`, f.user.ID)
			return vBalance, []string{"user_wallet", f.user.ID, "EUR"}
		}, nil},
		{"session left live (API: started, never settled)", func(f *fixture) (string, []string) {
			ss := f.start("sim-1", 400)
			return vLive, []string{"sim-1", ss.ID.String(), "pending"}
		}, nil},
		{"a simulated device holds a grant the store does not know", func(f *fixture) (string, []string) {
			sid := vend.NewSessionID()
			f.sims["sim-1"][sid] = simdev.Record{Grants: 1}
			return vUnknownSession, []string{"sim-1", sid.String()}
		}, nil},
		{"a controller's journal holds a grant the store does not know (a cloud-signed grant for a session never stored)", func(f *fixture) (string, []string) {
			ss := f.start(ctlID, 1000)
			g, err := signed.OpenGrant(ss.Grant, f.cloudK)
			f.must(err)
			g.Session = vend.NewSessionID()
			gb, err := signed.SignGrant(f.cloud, g)
			f.must(err)
			sid := f.ctlRun(ss, g, gb, 100, false, false)
			return vUnknownSession, []string{ctlID, sid.String()}
		}, nil},
		{"device not reconnected: the store has it offline (API)", func(f *fixture) (string, []string) {
			f.must(f.st.SetDeviceStatus(f.ctx, "sim-2", false, nil, time.Now()))
			return vNotOnline, []string{"sim-2"}
		}, nil},
		{"device not reconnected: the store has it online, its client is disconnected", func(f *fixture) (string, []string) {
			f.conn["sim-1"] = false
			return vNotConnected, []string{"sim-1", "mqtt client disconnected"}
		}, nil},
		{"controller not reconnected: its log's last connection line is a loss", func(f *fixture) (string, []string) {
			return vNotConnected, []string{ctlID, "connection lost"}
		}, func(in *auditInput) {
			log := []byte("time=1 level=INFO msg=\"mqtt connected\" broker=tcp://x device=ctl-1\n" +
				"time=2 level=WARN msg=\"mqtt connection lost\" err=EOF\n")
			for i := range in.Devices {
				if in.Devices[i].ID == ctlID {
					in.Devices[i].Connected, in.Devices[i].Why = controllerConnected(log)
				}
			}
		}},
	}
	for _, b := range backendsUnderTest {
		t.Run(b, func(t *testing.T) {
			dsn := dsnMaker(t, b)
			for _, d := range defects {
				t.Run(d.name, func(t *testing.T) {
					t.Parallel()
					f := newFixture(t, dsn)
					kind, names := d.plant(f)
					in := f.input()
					if d.edit != nil {
						d.edit(in)
					}
					wantViolation(t, in, kind, names...)
				})
			}
		})
	}
}

// plantDoubledKey gives session sid a twin under the same user and
// idempotency key. The sessions table's UNIQUE (user_id, idem_key) makes
// that impossible even by SQL, so the table is first renamed away and
// copied back without its constraints (CREATE TABLE AS keeps none), on
// SQLite and PostgreSQL alike. It returns the key.
func plantDoubledKey(f *fixture, sid vend.SessionID) string {
	f.t.Helper()
	f.exec(`ALTER TABLE sessions RENAME TO sessions_planted`)
	f.exec(`CREATE TABLE sessions AS SELECT * FROM sessions_planted`)
	rows, err := f.st.DB().QueryContext(f.ctx, `SELECT * FROM sessions WHERE 1 = 0`)
	f.must(err)
	cols, err := rows.Columns()
	rows.Close()
	f.must(err)
	sel := make([]string, len(cols))
	for i, c := range cols {
		sel[i] = c
		if c == "id" {
			sel[i] = "'" + vend.NewSessionID().String() + "'"
		}
	}
	f.exec(`INSERT INTO sessions (`+strings.Join(cols, ", ")+`) SELECT `+strings.Join(sel, ", ")+` FROM sessions_planted WHERE id = $1`, sid.String())
	var key string
	f.must(f.st.DB().QueryRowContext(f.ctx, `SELECT idem_key FROM sessions WHERE id = $1`, sid.String()).Scan(&key))
	return key
}

func TestControllerConnected(t *testing.T) {
	for _, c := range []struct {
		log  string
		want bool
	}{
		{"", false},
		{"level=INFO msg=\"controller started\"\n", false},
		{"level=INFO msg=\"mqtt connected\" broker=x\n", true},
		{"level=INFO msg=\"mqtt connected\"\nlevel=WARN msg=\"mqtt connection lost\" err=EOF\n", false},
		{"level=INFO msg=\"mqtt connected\"\nlevel=WARN msg=\"mqtt connection lost\" err=EOF\nlevel=INFO msg=\"mqtt connected\"\n", true},
	} {
		if got, why := controllerConnected([]byte(c.log)); got != c.want {
			t.Errorf("controllerConnected(%q) = %v (%s), want %v", c.log, got, why, c.want)
		}
	}
}

// TestPlantIsNamed runs the harness's own planting on a clean state: each
// named defect is written, the audit reports it, and plantFound finds no
// blind spot; a name it does not know is refused.
func TestPlantIsNamed(t *testing.T) {
	for _, b := range backendsUnderTest {
		t.Run(b, func(t *testing.T) {
			f := newFixture(t, dsnMaker(t, b))
			names := []string{PlantDuplicateCapture, PlantUnsettleAcked}
			did, err := plant(f.ctx, f.st, names, f.input())
			if err != nil {
				t.Fatal(err)
			}
			if len(did) != 2 {
				t.Fatalf("planted %q, want 2", did)
			}
			res := audit(f.input())
			if missed := plantFound(names, res.Violations); len(missed) != 0 {
				t.Fatalf("audit %q missed %q", res.Violations, missed)
			}
			if missed := plantFound(names, nil); len(missed) != 2 || !strings.HasPrefix(missed[0], "audit_blind: planted duplicate-capture") {
				t.Fatalf("plantFound with no violations = %q, want two audit_blind", missed)
			}
			if _, err := plant(f.ctx, f.st, []string{"drop-table"}, f.input()); err == nil || !strings.Contains(err.Error(), `plant "drop-table"`) {
				t.Fatalf("plant of an unknown defect: %v, want an error naming it", err)
			}
		})
	}
}
