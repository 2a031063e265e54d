package store_test

import (
	"os"
	"strings"
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
