package store_test

import (
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
