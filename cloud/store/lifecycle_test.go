package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/store"
)

// An acknowledged grant is never released at its expiry: the device may
// be running the machine while its link is down, and its report settles
// the session later.
func TestAcknowledgedGrantNotExpired(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, &store.Opts{AckBound: 10 * time.Second})
		e.topUp(e.user.ID, 10000)
		ss, err := e.start(e.user.ID, "w1", "", 2000, "ack-1")
		must(t, err)
		must(t, e.s.Advance(e.ctx, ss.ID, store.Authorized, time.Time{}))
		e.clk.Add(5 * time.Minute)
		got, err := e.s.ExpireHolds(e.ctx, 0)
		must(t, err)
		if len(got) != 0 {
			t.Fatalf("ExpireHolds released %d acknowledged sessions", len(got))
		}
		cur, err := e.s.GetSession(e.ctx, ss.ID)
		must(t, err)
		if cur.State != store.Authorized || e.holds(e.user.ID) != ss.Hold {
			t.Fatalf("session %s holding %d, want authorized holding %d", cur.State, e.holds(e.user.ID), ss.Hold)
		}
		// The report after two minutes offline settles it.
		u, sig := e.usage(ss, 1500, vend.OutcomeCompleted)
		st, err := e.s.Settle(e.ctx, u, sig)
		must(t, err)
		if st.Session.State != store.Settled || st.Captured != 75 || e.revenue(e.opA.ID) != 75 {
			t.Fatalf("settled %+v, revenue %d", st, e.revenue(e.opA.ID))
		}
		e.checkLedger()
	})
}

// A valid report for a pending session the sweeper already released
// (the device did start it) is captured late from the wallet.
func TestLateReportAfterExpiryCaptured(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, &store.Opts{AckBound: 10 * time.Second})
		e.topUp(e.user.ID, 10000)
		ss, err := e.start(e.user.ID, "w1", "", 2000, "late-1")
		must(t, err)
		e.clk.Add(10 * time.Minute)
		exp, err := e.s.ExpireHolds(e.ctx, 0)
		must(t, err)
		if len(exp) != 1 || e.wallet(e.user.ID) != 10000 {
			t.Fatalf("expired %d, wallet %d", len(exp), e.wallet(e.user.ID))
		}
		u, sig := e.usage(ss, 1000, vend.OutcomeCompleted)
		_, err = e.s.Settle(e.ctx, u, sig)
		must(t, err)
		if e.revenue(e.opA.ID) != 50 || e.wallet(e.user.ID) != 9950 {
			t.Fatalf("revenue %d wallet %d, want 50 and 9950", e.revenue(e.opA.ID), e.wallet(e.user.ID))
		}
		e.checkLedger()
	})
}

// SQLite runs with synchronous=FULL: a committed settlement survives a
// power cut.
func TestSQLiteSynchronousFull(t *testing.T) {
	e := newEnv(t, backends(t)[0], nil)
	var v int
	must(t, e.s.DB().QueryRowContext(e.ctx, `PRAGMA synchronous`).Scan(&v))
	if v != 2 {
		t.Fatalf("PRAGMA synchronous = %d, want 2 (FULL)", v)
	}
}

// reach starts a water session (2000 ml cap, hold 100) and drives it into st.
func (e *env) reach(st store.State, key string) store.Session {
	e.t.Helper()
	ss, err := e.start(e.user.ID, "w1", "", 2000, key)
	must(e.t, err)
	get := func() store.Session {
		cur, err := e.s.GetSession(e.ctx, ss.ID)
		must(e.t, err)
		return cur
	}
	unreported := func() {
		must(e.t, e.s.Advance(e.ctx, ss.ID, store.Authorized, time.Time{}))
		must(e.t, e.s.RecordEnded(e.ctx, ss.ID, 800))
		e.clk.ms.Store(get().Unreported.UnixMilli() + 1000)
		got, err := e.s.MarkUnreported(e.ctx, 0)
		must(e.t, err)
		if len(got) != 1 {
			e.t.Fatalf("MarkUnreported parked %d sessions, want 1", len(got))
		}
	}
	switch st {
	case store.Pending:
	case store.Authorized, store.Running, store.Ending:
		for _, s := range []store.State{store.Authorized, store.Running, store.Ending} {
			must(e.t, e.s.Advance(e.ctx, ss.ID, s, e.clk.Now()))
			if s == st {
				break
			}
		}
	case store.Unreported:
		unreported()
	case store.Expired:
		e.clk.Add(time.Minute)
		_, err := e.s.ExpireHolds(e.ctx, 0)
		must(e.t, err)
	case store.Failed:
		_, err := e.s.Fail(e.ctx, ss.ID, "grant.cancelled")
		must(e.t, err)
	case store.Released:
		unreported()
		e.clk.Add(73 * time.Hour)
		_, err := e.s.CloseUnreported(e.ctx, 0)
		must(e.t, err)
	case store.Voided:
		unreported()
		_, err := e.s.OperatorVoid(e.ctx, e.opA.ID, ss.ID, "board replaced")
		must(e.t, err)
	case store.Settled:
		unreported()
		_, err := e.s.OperatorSettle(e.ctx, e.opA.ID, ss.ID, 30, "customer confirmed 600 ml")
		must(e.t, err)
	default:
		e.t.Fatalf("reach %s: not a starting point of the walk", st)
	}
	cur := get()
	if cur.State != st {
		e.t.Fatalf("reach %s: session is %s", st, cur.State)
	}
	return cur
}

// Every row of the state table, from every state it lists, on both
// databases: the target state, the money moved, the ledger balanced.
func TestStateTableWalk(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		for _, tr := range store.Transitions {
			froms := tr.From
			if froms == nil {
				froms = []store.State{""}
			}
			for _, f := range froms {
				t.Run(string(tr.Event)+"/"+string(f), func(t *testing.T) {
					opts := &store.Opts{AckBound: 10 * time.Second}
					if tr.Event == store.EvWindowLast {
						opts.Lifecycle.Policy = store.PolicyCaptureLast
					}
					e := newEnv(t, b, opts)
					e.topUp(e.user.ID, 10000)
					var ss store.Session
					if f != "" {
						ss = e.reach(f, "walk")
					}
					before := ss
					var st store.Settlement
					var err error
					switch tr.Event {
					case store.EvStart:
						ss, err = e.start(e.user.ID, "w1", "", 2000, "walk")
						st.Session = ss
					case store.EvAck, store.EvStarted, store.EvEnded:
						to := map[store.Event]store.State{store.EvAck: store.Authorized, store.EvStarted: store.Running, store.EvEnded: store.Ending}[tr.Event]
						st.Session, err = e.s.AdvanceSession(e.ctx, ss.ID, to, e.clk.Now())
					case store.EvRefused:
						st, err = e.s.Fail(e.ctx, ss.ID, "grant.cancelled")
					case store.EvReport, store.EvLateReport:
						u, sig := e.usage(ss, 1000, vend.OutcomeCompleted)
						st, err = e.s.Settle(e.ctx, u, sig)
					case store.EvReportNone:
						u, sig := e.usage(ss, 0, vend.OutcomeNotStarted)
						st, err = e.s.Settle(e.ctx, u, sig)
					case store.EvStartBy:
						e.clk.Add(31 * time.Second)
						var sts []store.Settlement
						sts, err = e.s.ExpireHolds(e.ctx, 0)
						if len(sts) == 1 {
							st = sts[0]
						}
					case store.EvRunBound:
						e.clk.ms.Store(ss.Unreported.UnixMilli() + 1)
						var sts []store.Settlement
						sts, err = e.s.MarkUnreported(e.ctx, 0)
						if len(sts) == 1 {
							st = sts[0]
						}
					case store.EvWindow, store.EvWindowLast:
						e.clk.Add(72*time.Hour + time.Second)
						var sts []store.Settlement
						sts, err = e.s.CloseUnreported(e.ctx, 0)
						if len(sts) == 1 {
							st = sts[0]
						}
					case store.EvOperatorSettle:
						st, err = e.s.OperatorSettle(e.ctx, e.opA.ID, ss.ID, 70, "meter photo")
					case store.EvOperatorVoid:
						st, err = e.s.OperatorVoid(e.ctx, e.opA.ID, ss.ID, "machine broken")
					default:
						t.Fatalf("the walk does not know event %s", tr.Event)
					}
					must(t, err)
					want := tr.To
					if want == "" {
						want = f
					}
					cur, err := e.s.GetSession(e.ctx, st.Session.ID)
					must(t, err)
					if cur.State != want {
						t.Fatalf("%s from %s: session is %s, want %s", tr.Event, f, cur.State, want)
					}
					held := e.holds(e.user.ID)
					if cur.State.Holds() != (held == cur.Hold) || (!cur.State.Holds() && held != 0) {
						t.Fatalf("%s: %d held for a session %s holding %d", tr.Event, held, cur.State, cur.Hold)
					}
					wantCapture := map[store.Event]int64{store.EvReport: 50, store.EvWindowLast: 40, store.EvOperatorSettle: 70}[tr.Event]
					if tr.Event == store.EvLateReport {
						if !cur.Late || cur.LateAmount != 50-before.Captured || cur.Captured != before.Captured {
							t.Fatalf("late report on %s: late %v amount %d captured %d", f, cur.Late, cur.LateAmount, cur.Captured)
						}
						if e.revenue(e.opA.ID) != 50 || e.wallet(e.user.ID) != 10000-50 {
							t.Fatalf("late report on %s: revenue %d wallet %d, want 50 and 9950", f, e.revenue(e.opA.ID), e.wallet(e.user.ID))
						}
					} else if !cur.State.Holds() && (cur.Captured != wantCapture || cur.Captured+cur.Released != cur.Hold || e.revenue(e.opA.ID) != wantCapture) {
						t.Fatalf("%s: captured %d released %d of %d, revenue %d; want %d captured", tr.Event, cur.Captured, cur.Released, cur.Hold, e.revenue(e.opA.ID), wantCapture)
					}
					if r := map[store.Event]string{store.EvStartBy: store.ReasonUnacknowledged, store.EvRunBound: store.ReasonUnreported,
						store.EvWindow: store.ReasonUnreportedRelease, store.EvWindowLast: store.ReasonUnreportedCapture}[tr.Event]; r != "" && cur.Reason != r {
						t.Fatalf("%s: reason %q, want %q", tr.Event, cur.Reason, r)
					}
					e.checkLedger()
				})
			}
		}
	})
}

// The package doc's state table is the one the code runs.
func TestStateTableDoc(t *testing.T) {
	b, err := os.ReadFile("doc.go")
	must(t, err)
	var doc strings.Builder
	for _, l := range strings.Split(store.StateTable(), "\n") {
		if l != "" {
			doc.WriteString("//\t" + strings.TrimRight(l, " ") + "\n")
		}
	}
	if !strings.Contains(string(b), doc.String()) {
		t.Fatalf("doc.go does not contain the state table; put this in its Sessions section:\n%s", doc.String())
	}
}

// A late report whose charge the wallet cannot cover books the shortfall
// as a receivable; the ledger still balances; a second delivery moves
// nothing.
func TestLateCaptureShortfallAndDuplicate(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, &store.Opts{AckBound: 10 * time.Second})
		e.topUp(e.user.ID, 100)
		ss, err := e.start(e.user.ID, "w1", "", 2000, "short-1") // holds all 100
		must(t, err)
		e.clk.Add(time.Minute)
		if _, err := e.s.ExpireHolds(e.ctx, 0); err != nil {
			t.Fatal(err)
		}
		// The payer spends 70 of the released 100 meanwhile.
		ss2, err := e.start(e.user.ID, "wash1", "", 0, "x")
		if err == nil || ss2.ID != (vend.SessionID{}) {
			t.Fatalf("start without a cap = %v, want an input error", err)
		}
		other, err := e.s.StartSession(e.ctx, store.StartInput{User: e.user.ID, Device: "dev-a", Machine: "v1", Slot: "A2", CapAmount: 90, CapCurrency: "EUR", IdemKey: "spend"})
		must(t, err)
		if other.Hold != 80 || other.CapUnits != 1 {
			t.Fatalf("0.90 cap at 0.80 an item holds %d for %d items, want 80 for 1", other.Hold, other.CapUnits)
		}
		u, sig := e.usage(ss, 2000, vend.OutcomeCapReached) // owes 100, the wallet has 20
		st, err := e.s.Settle(e.ctx, u, sig)
		must(t, err)
		if !st.Late || st.LateAmount != 100 || st.Receivable != 80 || st.Session.State != store.Expired || !st.Session.Late {
			t.Fatalf("late settle = %+v", st)
		}
		if e.wallet(e.user.ID) != 0 || e.revenue(e.opA.ID) != 100 {
			t.Fatalf("wallet %d revenue %d, want 0 and 100", e.wallet(e.user.ID), e.revenue(e.opA.ID))
		}
		rcv, err := e.s.Balance(e.ctx, store.UserReceivable, e.user.ID, "EUR")
		must(t, err)
		if rcv.Minor != -80 {
			t.Fatalf("receivable %d, want -80 (owed)", rcv.Minor)
		}
		again, err := e.s.Settle(e.ctx, u, sig)
		must(t, err)
		if !again.Duplicate || e.revenue(e.opA.ID) != 100 {
			t.Fatalf("second delivery = %+v, revenue %d", again, e.revenue(e.opA.ID))
		}
		// Another report for the session is refused.
		u2, sig2 := e.usage(ss, 10, vend.OutcomeCompleted)
		_, err = e.s.Settle(e.ctx, u2, sig2)
		wantCode(t, err, "usage.conflict")
		e.checkLedger()
	})
}

// A late report for a session an operator settled by hand moves only the
// difference: the rest when it owes more, a refund when it owes less.
func TestLateReportAfterOperatorSettle(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		for _, tc := range []struct {
			units      uint64
			late, wall int64
		}{{1600, 80 - 30, 10000 - 80}, {200, 10 - 30, 10000 - 10}} {
			e := newEnv(t, b, &store.Opts{AckBound: 10 * time.Second})
			e.topUp(e.user.ID, 10000)
			ss := e.reach(store.Settled, "op-1") // operator captured 30 of 100
			u, sig := e.usage(ss, tc.units, vend.OutcomeCompleted)
			st, err := e.s.Settle(e.ctx, u, sig)
			must(t, err)
			if !st.Late || st.LateAmount != tc.late || st.Session.State != store.Settled {
				t.Fatalf("%d units after a settle of 30: %+v", tc.units, st)
			}
			if e.wallet(e.user.ID) != tc.wall || e.revenue(e.opA.ID) != 10000-tc.wall {
				t.Fatalf("%d units: wallet %d revenue %d", tc.units, e.wallet(e.user.ID), e.revenue(e.opA.ID))
			}
			e.checkLedger()
		}
	})
}

// The sweeper closing an unreported session and its report racing in:
// whichever wins, the report's charge is taken exactly once.
func TestSettleRacesSweeper(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		for i := 0; i < 8; i++ {
			e := newEnv(t, b, &store.Opts{AckBound: 10 * time.Second})
			e.topUp(e.user.ID, 10000)
			ss := e.reach(store.Unreported, "race")
			e.clk.Add(73 * time.Hour)
			u, sig := e.usage(ss, 1000, vend.OutcomeCompleted)
			var wg sync.WaitGroup
			var serr, cerr error
			wg.Add(2)
			go func() { defer wg.Done(); _, serr = e.s.Settle(e.ctx, u, sig) }()
			go func() { defer wg.Done(); _, cerr = e.s.CloseUnreported(e.ctx, 0) }()
			wg.Wait()
			must(t, serr)
			must(t, cerr)
			cur, err := e.s.GetSession(e.ctx, ss.ID)
			must(t, err)
			if cur.State != store.Settled && !(cur.State == store.Released && cur.Late) {
				t.Fatalf("round %d: session %s late=%v", i, cur.State, cur.Late)
			}
			if e.revenue(e.opA.ID) != 50 || e.wallet(e.user.ID) != 9950 || e.holds(e.user.ID) != 0 {
				t.Fatalf("round %d (%s): revenue %d wallet %d holds %d", i, cur.State, e.revenue(e.opA.ID), e.wallet(e.user.ID), e.holds(e.user.ID))
			}
			e.checkLedger()
		}
	})
}

// Operators settle or void only their own unreported sessions, with a
// reason, never above the hold.
func TestOperatorSettleVoidRules(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, &store.Opts{AckBound: 10 * time.Second})
		e.topUp(e.user.ID, 10000)
		ss := e.reach(store.Unreported, "rules")
		opB, err := e.s.CreateOperator(e.ctx, "Operator B")
		must(t, err)
		_, err = e.s.OperatorVoid(e.ctx, opB.ID, ss.ID, "not mine")
		wantCode(t, err, "session.not_found")
		_, err = e.s.OperatorSettle(e.ctx, e.opA.ID, ss.ID, 101, "too much")
		wantCode(t, err, "money.amount")
		_, err = e.s.OperatorSettle(e.ctx, e.opA.ID, ss.ID, -1, "negative")
		wantCode(t, err, "money.amount")
		_, err = e.s.OperatorVoid(e.ctx, e.opA.ID, ss.ID, "")
		wantCode(t, err, "store.input")
		list, err := e.s.UnreportedSessions(e.ctx, e.opA.ID, 0)
		must(t, err)
		if len(list) != 1 || list[0].ID != ss.ID {
			t.Fatalf("UnreportedSessions = %d sessions", len(list))
		}
		if l, _ := e.s.UnreportedSessions(e.ctx, opB.ID, 0); len(l) != 0 {
			t.Fatalf("operator B sees %d unreported sessions of A", len(l))
		}
		st, err := e.s.OperatorVoid(e.ctx, e.opA.ID, ss.ID, "board replaced")
		must(t, err)
		if st.Session.State != store.Voided || st.Session.Reason != "operator.voided: board replaced" || st.Released != 100 {
			t.Fatalf("void = %+v", st)
		}
		_, err = e.s.OperatorSettle(e.ctx, e.opA.ID, ss.ID, 10, "again")
		wantCode(t, err, "session.state")
		live := e.reach(store.Running, "rules-2")
		_, err = e.s.OperatorVoid(e.ctx, e.opA.ID, live.ID, "running")
		wantCode(t, err, "session.state")
		e.checkLedger()
	})
}

// The price is read once, in the start's transaction: a price the payer
// was not shown is price.changed with the new price, and a money cap
// never holds more than itself, whatever price changes race the start.
func TestStartPriceOnceCapAmount(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		e.topUp(e.user.ID, 1000000)
		shown := vend.Price{Minor: 50, Per: 1000}
		must(t, e.s.SetPrices(e.ctx, e.opA.ID, "dev-a", "w1", vend.Price{Minor: 60, Per: 1000}, nil))
		_, err := e.s.StartSession(e.ctx, store.StartInput{User: e.user.ID, Device: "dev-a", Machine: "w1",
			CapAmount: 100, CapCurrency: "EUR", ExpectedPrice: &shown, IdemKey: "p-1"})
		var pc *store.PriceChangedError
		if !errors.As(err, &pc) || pc.Price != (vend.Price{Minor: 60, Per: 1000}) || vend.CodeOf(err) != "price.changed" {
			t.Fatalf("start at a changed price = %v, want price.changed carrying 60/1000", err)
		}
		if e.holds(e.user.ID) != 0 {
			t.Fatal("a refused start held money")
		}
		_, err = e.s.StartSession(e.ctx, store.StartInput{User: e.user.ID, Device: "dev-a", Machine: "w1",
			CapAmount: 100, CapCurrency: "USD", IdemKey: "p-2"})
		wantCode(t, err, "money.currency_mismatch")
		_, err = e.s.StartSession(e.ctx, store.StartInput{User: e.user.ID, Device: "dev-a", Machine: "wash1",
			CapAmount: 349, CapCurrency: "EUR", IdemKey: "p-3"})
		wantCode(t, err, "cap.too_small")
		// Concurrent price flips between 0.50 and 50.00 a litre.
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				_ = e.s.SetPrices(e.ctx, e.opA.ID, "dev-a", "w1", vend.Price{Minor: []int64{50, 5000}[i%2], Per: 1000}, nil)
			}
		}()
		for i := 0; i < 40; i++ {
			ss, err := e.s.StartSession(e.ctx, store.StartInput{User: e.user.ID, Device: "dev-a", Machine: "w1",
				CapAmount: 100, CapCurrency: "EUR", IdemKey: fmt.Sprintf("flip-%d", i)})
			must(t, err)
			if ss.Hold > 100 || ss.CapAmount != 100 {
				t.Fatalf("start %d: hold %d for a cap of 100 (price %v, %d units)", i, ss.Hold, ss.Price, ss.CapUnits)
			}
			if c, _ := ss.Price.Cost(ss.CapUnits); c != ss.Hold {
				t.Fatalf("start %d: hold %d is not the cost %d of %d units at %v", i, ss.Hold, c, ss.CapUnits, ss.Price)
			}
			again, err := e.s.StartSession(e.ctx, store.StartInput{User: e.user.ID, Device: "dev-a", Machine: "w1",
				CapAmount: 100, CapCurrency: "EUR", IdemKey: fmt.Sprintf("flip-%d", i)})
			if err != nil || !again.Duplicate || again.ID != ss.ID {
				t.Fatalf("retry of start %d = %v, %v", i, again.ID, err)
			}
			_, err = e.s.Fail(e.ctx, ss.ID, "test")
			must(t, err)
		}
		close(stop)
		wg.Wait()
		e.checkLedger()
	})
}

// Migration 0002 keeps every row of a version-1 database (on SQLite it
// rebuilds five tables): balances, ledger, sessions and reports survive,
// foreign keys still hold, and a live session gets an unreported bound.
func TestMigration0002KeepsRows(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		dsn := b.dsn(t)
		db, err := store.OpenAtVersion(ctx, dsn, 1)
		must(t, err)
		sid, done := vend.NewSessionID(), vend.NewSessionID()
		now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixMilli()
		ov := "" // explicit IDs for identity columns
		if b.name == "postgres" {
			ov = " OVERRIDING SYSTEM VALUE"
		}
		for _, q := range []struct {
			sql  string
			args []any
		}{
			{`INSERT INTO operators (id, name, created_ms) VALUES ('op_1', 'op', $1)`, []any{now}},
			{`INSERT INTO devices (id, operator_id, name, state, identity_key, rotation_k, sign_key, mqtt_hash, created_ms, updated_ms)
				VALUES ('dev-a', 'op_1', 'd', 'active', $1, 5, $1, 'x', $2, $2)`, []any{make([]byte, 16), now}},
			{`INSERT INTO machines (device_id, id, kind, name, unit, price_minor, price_per, currency, updated_ms)
				VALUES ('dev-a', 'w1', 'water', 'w', 1, 50, 1000, 'EUR', $1)`, []any{now}},
			{`INSERT INTO users (id, email, pw_hash, created_ms) VALUES ('usr_1', 'a@example.com', 'x', $1)`, []any{now}},
			{`INSERT INTO accounts (id, kind, owner, currency, balance, may_go_negative, created_ms)` + ov + ` VALUES
				(1, 'channel_clearing', 'sandbox_card', 'EUR', -1000, 1, $1), (2, 'user_wallet', 'usr_1', 'EUR', 850, 0, $1),
				(3, 'user_holds', 'usr_1', 'EUR', 100, 0, $1), (4, 'operator_revenue', 'op_1', 'EUR', 50, 0, $1)`, []any{now}},
			{`INSERT INTO sessions (id, user_id, device_id, operator_id, machine_id, state, unit, price_minor, price_per, currency,
				cap_units, hold_minor, grant_exp_ms, deadline_ms, idem_key, created_ms, updated_ms, captured, released)
				VALUES ($1, 'usr_1', 'dev-a', 'op_1', 'w1', 'running', 1, 50, 1000, 'EUR', 2000, 100, $3, $3, 'k1', $3, $3, 0, 0),
				($2, 'usr_1', 'dev-a', 'op_1', 'w1', 'settled', 1, 50, 1000, 'EUR', 2000, 100, $3, $3, 'k2', $3, $3, 50, 50)`,
				[]any{sid.String(), done.String(), now}},
			{`INSERT INTO ledger_tx (id, kind, idem_key, session_id, created_ms)` + ov + ` VALUES (1, 'topup', 'topup:usr_1:k', NULL, $1),
				(2, 'hold', $2, $3, $1), (3, 'hold', $4, $5, $1), (4, 'capture', $6, $5, $1), (5, 'release', $7, $5, $1)`,
				[]any{now, "hold:" + sid.String(), sid.String(), "hold:" + done.String(), done.String(), "capture:" + done.String(), "release:" + done.String()}},
			{`INSERT INTO entries (tx_id, account_id, amount, currency) VALUES (1, 1, -1000, 'EUR'), (1, 2, 1000, 'EUR'),
				(2, 2, -100, 'EUR'), (2, 3, 100, 'EUR'), (3, 2, -100, 'EUR'), (3, 3, 100, 'EUR'),
				(4, 3, -50, 'EUR'), (4, 4, 50, 'EUR'), (5, 3, -50, 'EUR'), (5, 2, 50, 'EUR')`, nil},
			{`INSERT INTO usage_reports (session_id, device_id, seq, digest, signed, received_ms) VALUES ($1, 'dev-a', 1, $2, $2, $3)`,
				[]any{done.String(), []byte{1, 2, 3}, now}},
		} {
			if _, err := db.ExecContext(ctx, q.sql, q.args...); err != nil {
				t.Fatalf("%.60s: %v", q.sql, err)
			}
		}
		db.Close()
		clk := newClock()
		s := mustOpen(t, dsn, clk, nil)
		v, err := s.Version(ctx)
		must(t, err)
		if v != store.SchemaVersion() {
			t.Fatalf("version %d", v)
		}
		live, err := s.GetSession(ctx, sid)
		must(t, err)
		if live.State != store.Running || live.Hold != 100 || live.Unreported.IsZero() || live.LastUnits != -1 {
			t.Fatalf("live session after migration: %+v", live)
		}
		old, err := s.GetSession(ctx, done)
		must(t, err)
		if old.State != store.Settled || old.Captured != 50 || old.Released != 50 {
			t.Fatalf("settled session after migration: %+v", old)
		}
		for kind, want := range map[store.AccountKind]int64{store.UserWallet: 850, store.UserHolds: 100} {
			a, err := s.Balance(ctx, kind, "usr_1", "EUR")
			must(t, err)
			if a.Minor != want {
				t.Fatalf("%s = %d, want %d", kind, a.Minor, want)
			}
		}
		e := &env{t: t, ctx: ctx, s: s, clk: clk}
		e.checkLedger()
		if _, err := s.DB().ExecContext(ctx, `INSERT INTO entries (tx_id, account_id, amount, currency) VALUES (1, 99, 5, 'EUR')`); err == nil {
			t.Fatal("an entry for a missing account was accepted: foreign keys lost")
		}
		if n := e.count("ledger_tx"); n != 5 {
			t.Fatalf("%d ledger transactions, want 5", n)
		}
		// The machine is still busy with the live session.
		_, err = s.StartSession(ctx, store.StartInput{User: "usr_1", Device: "dev-a", Machine: "w1", CapUnits: 10, IdemKey: "k3"})
		wantCode(t, err, "machine.busy")
	})
}
