package store_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"golang.org/x/crypto/bcrypt"

	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/internal/pgscratch"
	"beaconvend/cloud/internal/svctest"
	"beaconvend/cloud/store"
)

// clock is a settable test clock.
type clock struct{ ms atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ms.Store(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixMilli())
	return c
}
func (c *clock) Now() time.Time      { return time.UnixMilli(c.ms.Load()).UTC() }
func (c *clock) Add(d time.Duration) { c.ms.Add(d.Milliseconds()) }

// backend opens fresh stores of one kind.
type backend struct {
	name string
	dsn  func(t testing.TB) string // a fresh, empty database for one test
}

var (
	pgOnce    sync.Once
	pgBaseDSN string // DSN of the scratch database of this run
	pgErr     error
	pgSeq     atomic.Int64
)

// pgScratch creates one scratch database for the whole test run from
// VEND_PG_DSN; each test then gets its own schema in it.
func pgScratch() (string, error) {
	pgOnce.Do(func() {
		var drop func() error
		if pgBaseDSN, drop, pgErr = pgscratch.Create(os.Getenv("VEND_PG_DSN"), "vend_store_test"); pgErr == nil {
			dropPG = func() { _ = drop() }
		}
	})
	return pgBaseDSN, pgErr
}

var dropPG = func() {}

func TestMain(m *testing.M) {
	if os.Getenv("VEND_PG_DSN") == "" && os.Getenv("VEND_REQUIRE_SERVICES") == "" {
		fmt.Fprintln(os.Stderr, "!!!!!! cloud/store: VEND_PG_DSN is unset: the PostgreSQL half of this suite is SKIPPED. "+
			"Run `export \"$(scripts/pg.sh | tail -n1)\"` to run it. !!!!!!")
	}
	code := m.Run()
	dropPG()
	os.Exit(code)
}

func backends(t testing.TB) []backend {
	bs := []backend{{name: "sqlite", dsn: func(t testing.TB) string {
		return "sqlite:" + t.TempDir() + "/store.db"
	}}}
	pg := backend{name: "postgres", dsn: func(t testing.TB) string {
		if os.Getenv("VEND_PG_DSN") == "" {
			svctest.Missing(t, "PostgreSQL (VEND_PG_DSN) for the PostgreSQL half of cloud/store", "run `export \"$(scripts/pg.sh | tail -n1)\"`")
		}
		base, err := pgScratch()
		if err != nil {
			t.Fatalf("postgres scratch database from VEND_PG_DSN: %v", err)
		}
		schema := fmt.Sprintf("t%d", pgSeq.Add(1))
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
	}}
	return append(bs, pg)
}

// forEachDB runs fn as a subtest on SQLite and on PostgreSQL.
func forEachDB(t *testing.T, fn func(t *testing.T, b backend)) {
	t.Helper()
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) { fn(t, b) })
	}
}

// env is one test's store with a few fixtures.
type env struct {
	t    testing.TB
	ctx  context.Context
	s    *store.Store
	clk  *clock
	opA  store.Operator
	devA store.Device
	priv ed25519.PrivateKey
	user store.User
	seq  atomic.Uint64
	dsn  string
}

func mustOpen(t testing.TB, dsn string, clk *clock, opts *store.Opts) *store.Store {
	t.Helper()
	if opts == nil {
		opts = &store.Opts{}
	}
	opts.Now = clk.Now
	if opts.BcryptCost == 0 {
		opts.BcryptCost = bcrypt.MinCost
	}
	s, err := store.Open(context.Background(), dsn, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// newEnv opens a fresh store with operator A, its device "dev-a" with a
// water machine "w1" (50 EUR cents per 1000 ml), a washer "wash1" (350 per
// cycle) and a vending machine "v1" with slots, and one user.
func newEnv(t testing.TB, b backend, opts *store.Opts) *env {
	t.Helper()
	e := &env{t: t, ctx: context.Background(), clk: newClock()}
	e.dsn = b.dsn(t)
	e.s = mustOpen(t, e.dsn, e.clk, opts)
	var err error
	e.opA, err = e.s.CreateOperator(e.ctx, "Operator A")
	must(t, err)
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	e.priv = priv
	e.devA = store.Device{ID: "dev-a", OperatorID: e.opA.ID, Name: "lobby", K: 5, SignKey: pub, MQTTHash: "x",
		IdentityKey: [16]byte{1, 2, 3}, Machines: testMachines()}
	must(t, e.s.CreateDevice(e.ctx, e.devA))
	e.user, err = e.s.CreateUser(e.ctx, "payer@example.com", "correct horse")
	must(t, err)
	return e
}

func testMachines() []store.Machine {
	return []store.Machine{
		{ID: "w1", Kind: vend.KindWater, Name: "water", Price: vend.Price{Minor: 50, Per: 1000}, Currency: "EUR"},
		{ID: "wash1", Kind: vend.KindWasher, Name: "washer", Price: vend.Price{Minor: 350, Per: 1}, Currency: "EUR"},
		{ID: "v1", Kind: vend.KindVending, Name: "snacks", Price: vend.Price{Minor: 100, Per: 1}, Currency: "EUR",
			Slots: []store.Slot{{ID: "A1", Name: "chips", Price: vend.Price{Minor: 150, Per: 1}}, {ID: "A2", Name: "gum", Price: vend.Price{Minor: 80, Per: 1}}}},
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantCode(t testing.TB, err error, code string) {
	t.Helper()
	if vend.CodeOf(err) != code {
		t.Fatalf("error = %v (code %q), want code %q", err, vend.CodeOf(err), code)
	}
	if !strings.HasPrefix(err.Error(), "store:") {
		t.Fatalf("error %q does not start with \"store:\"", err)
	}
}

func (e *env) topUp(user string, minor int64) {
	e.t.Helper()
	_, err := e.s.TopUp(e.ctx, user, vend.Amount{Minor: minor, Currency: "EUR"}, "sandbox_card", fmt.Sprintf("k-%d-%d", minor, time.Now().UnixNano()))
	must(e.t, err)
}

func (e *env) wallet(user string) int64 {
	e.t.Helper()
	a, err := e.s.Wallet(e.ctx, user, "EUR")
	must(e.t, err)
	return a.Minor
}

func (e *env) holds(user string) int64 {
	e.t.Helper()
	a, err := e.s.Balance(e.ctx, store.UserHolds, user, "EUR")
	must(e.t, err)
	return a.Minor
}

func (e *env) revenue(op string) int64 {
	e.t.Helper()
	a, err := e.s.Balance(e.ctx, store.OperatorRevenue, op, "EUR")
	must(e.t, err)
	return a.Minor
}

// usage builds and signs the device's report for ss with units delivered.
func (e *env) usage(ss store.Session, units uint64, out vend.Outcome) (signed.Usage, []byte) {
	e.t.Helper()
	cost, err := ss.Price.Cost(units)
	must(e.t, err)
	u := signed.Usage{Device: ss.Device, Seq: e.seq.Add(1), Session: ss.ID, Machine: ss.Machine, Slot: ss.Slot,
		Unit: ss.Unit, Units: units, Price: ss.Price, Currency: ss.Currency, Amount: cost,
		StartedAt: e.clk.Now(), EndedAt: e.clk.Now().Add(time.Second), MeterEnd: units, Outcome: out}
	b, err := signed.SignUsage(e.priv, u)
	must(e.t, err)
	keys, _ := signed.NewKeys(e.priv.Public().(ed25519.PublicKey))
	v, err := signed.OpenUsage(b, keys)
	must(e.t, err)
	return v, b
}

func (e *env) start(user, machine, slot string, capUnits uint64, key string) (store.Session, error) {
	return e.s.StartSession(e.ctx, store.StartInput{User: user, Device: "dev-a", Machine: machine, Slot: slot,
		CapUnits: capUnits, IdemKey: key})
}

// checkLedger asserts the ledger sums to zero and balances equal entries.
func (e *env) checkLedger() {
	e.t.Helper()
	imb, err := e.s.LedgerImbalance(e.ctx)
	must(e.t, err)
	if len(imb) != 0 {
		e.t.Fatalf("LedgerImbalance = %v, want none", imb)
	}
	bad, err := e.s.CheckBalances(e.ctx)
	must(e.t, err)
	if len(bad) != 0 {
		e.t.Fatalf("CheckBalances = %+v, want none", bad)
	}
}

// count returns SELECT COUNT(*) FROM table.
func (e *env) count(table string) int {
	e.t.Helper()
	var n int
	must(e.t, e.s.DB().QueryRowContext(e.ctx, `SELECT COUNT(*) FROM `+table).Scan(&n))
	return n
}
