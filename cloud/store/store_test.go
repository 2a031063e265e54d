package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/store"
)

func TestMigrations(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		dsn := b.dsn(t)
		clk := newClock()
		s := mustOpen(t, dsn, clk, nil)
		v, err := s.Version(ctx)
		must(t, err)
		if v != store.SchemaVersion() || v < 1 {
			t.Fatalf("Version = %d, want %d", v, store.SchemaVersion())
		}
		s.Close()
		s2 := mustOpen(t, dsn, clk, nil) // re-run: nothing to do
		v2, err := s2.Version(ctx)
		must(t, err)
		if v2 != v {
			t.Fatalf("Version after reopen = %d, want %d", v2, v)
		}
		var n int
		must(t, s2.DB().QueryRow(`SELECT COUNT(*) FROM schema_migrations`).Scan(&n))
		if n != v {
			t.Fatalf("schema_migrations has %d rows, want %d", n, v)
		}
		_, err = s2.DB().Exec(`INSERT INTO schema_migrations (version, name, applied_ms) VALUES ($1, 'from_the_future.sql', 0)`, v+1)
		must(t, err)
		s2.Close()
		_, err = store.Open(ctx, dsn, &store.Opts{})
		if !errors.Is(err, store.ErrSchemaNewer) {
			t.Fatalf("Open on a newer schema: %v, want ErrSchemaNewer", err)
		}
	})
}

func TestOpenBadDSN(t *testing.T) {
	for _, dsn := range []string{"", "mysql://x", "sqlite::memory:", "sqlite:"} {
		if _, err := store.Open(context.Background(), dsn, nil); vend.CodeOf(err) != store.ErrDSN.Code {
			t.Errorf("Open(%q) = %v, want %s", dsn, err, store.ErrDSN.Code)
		}
	}
}

func TestTopUp(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		amt := vend.Amount{Minor: 1000, Currency: "EUR"}
		r1, err := e.s.TopUp(e.ctx, e.user.ID, amt, "sandbox_card", "key1")
		must(t, err)
		if r1.Duplicate || r1.Wallet.Minor != 1000 {
			t.Fatalf("first TopUp = %+v", r1)
		}
		for i := 0; i < 3; i++ {
			r, err := e.s.TopUp(e.ctx, e.user.ID, amt, "sandbox_card", "key1")
			must(t, err)
			if !r.Duplicate || r.TxID != r1.TxID {
				t.Fatalf("retry TopUp = %+v, want duplicate of tx %d", r, r1.TxID)
			}
		}
		if got := e.wallet(e.user.ID); got != 1000 {
			t.Fatalf("wallet = %d after idempotent top-ups, want 1000", got)
		}
		_, err = e.s.TopUp(e.ctx, e.user.ID, vend.Amount{Minor: 999, Currency: "EUR"}, "sandbox_card", "key1")
		wantCode(t, err, "idempotency.conflict")

		// Concurrent retries of one key: one transaction.
		var wg sync.WaitGroup
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := e.s.TopUp(e.ctx, e.user.ID, vend.Amount{Minor: 500, Currency: "EUR"}, "sandbox_card", "key2")
				if err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if got := e.wallet(e.user.ID); got != 1500 {
			t.Fatalf("wallet = %d after concurrent retries, want 1500", got)
		}

		before := e.count("ledger_tx")
		bad := []struct {
			name, user, channel, key string
			amt                      vend.Amount
			code                     string
		}{
			{"negative", e.user.ID, "sandbox_card", "b1", vend.Amount{Minor: -5, Currency: "EUR"}, "money.amount"},
			{"zero", e.user.ID, "sandbox_card", "b2", vend.Amount{Minor: 0, Currency: "EUR"}, "money.amount"},
			{"currency", e.user.ID, "sandbox_card", "b3", vend.Amount{Minor: 5, Currency: "eur"}, "money.currency"},
			{"no key", e.user.ID, "sandbox_card", "", vend.Amount{Minor: 5, Currency: "EUR"}, "store.input"},
			{"no channel", e.user.ID, "", "b4", vend.Amount{Minor: 5, Currency: "EUR"}, "store.input"},
			{"unknown user", "usr_nobody", "sandbox_card", "b5", vend.Amount{Minor: 5, Currency: "EUR"}, "user.not_found"},
		}
		for _, c := range bad {
			_, err := e.s.TopUp(e.ctx, c.user, c.amt, c.channel, c.key)
			if vend.CodeOf(err) != c.code {
				t.Errorf("TopUp %s = %v, want %s", c.name, err, c.code)
			}
		}
		if n := e.count("ledger_tx"); n != before {
			t.Fatalf("bad top-ups wrote %d ledger transactions", n-before)
		}
		e.checkLedger()
	})
}

func TestStartAndSettle(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		e.topUp(e.user.ID, 1000)

		// Insufficient funds: nothing written.
		_, err := e.start(e.user.ID, "wash1", "", 3, "s0") // 1050 > 1000
		wantCode(t, err, "funds.insufficient")
		if n := e.count("sessions"); n != 0 {
			t.Fatalf("failed start left %d sessions", n)
		}

		ss, err := e.start(e.user.ID, "w1", "", 10000, "s1") // 10 l at 0.50/l = 500
		must(t, err)
		if ss.Hold != 500 || ss.State != store.Pending || ss.Operator != e.opA.ID {
			t.Fatalf("session = %+v", ss)
		}
		if w, h := e.wallet(e.user.ID), e.holds(e.user.ID); w != 500 || h != 500 {
			t.Fatalf("wallet %d holds %d, want 500 500", w, h)
		}
		again, err := e.start(e.user.ID, "w1", "", 10000, "s1")
		must(t, err)
		if !again.Duplicate || again.ID != ss.ID {
			t.Fatalf("idempotent start = %v dup %v, want %v", again.ID, again.Duplicate, ss.ID)
		}
		_, err = e.start(e.user.ID, "w1", "", 20000, "s1")
		wantCode(t, err, "idempotency.conflict")
		_, err = e.start(e.user.ID, "w1", "", 100, "s2")
		wantCode(t, err, "machine.busy")

		cur, err := e.s.AdvanceSession(e.ctx, ss.ID, store.Authorized, time.Time{})
		must(t, err)
		if cur.ID != ss.ID || cur.State != store.Authorized || cur.Hold != 500 || cur.User != e.user.ID {
			t.Fatalf("AdvanceSession returned %+v", cur)
		}
		must(t, e.s.Advance(e.ctx, ss.ID, store.Running, e.clk.Now()))
		cur, err = e.s.AdvanceSession(e.ctx, ss.ID, store.Authorized, time.Time{}) // late event: no-op
		must(t, err)
		if cur.State != store.Running {
			t.Fatalf("late authorized moved the session back to %s", cur.State)
		}

		u, sig := e.usage(ss, 4321, vend.OutcomeUserStop) // 4.321 l → floor(216.05) = 216
		st, err := e.s.Settle(e.ctx, u, sig)
		must(t, err)
		if st.Captured != 216 || st.Released != 284 || st.Session.State != store.Settled || st.Duplicate {
			t.Fatalf("Settle = %+v", st)
		}
		if w, h, r := e.wallet(e.user.ID), e.holds(e.user.ID), e.revenue(e.opA.ID); w != 784 || h != 0 || r != 216 {
			t.Fatalf("wallet %d holds %d revenue %d, want 784 0 216", w, h, r)
		}
		err = e.s.Advance(e.ctx, ss.ID, store.Running, e.clk.Now())
		wantCode(t, err, "session.state")

		// The machine is free again; slots price by slot.
		v, err := e.start(e.user.ID, "v1", "A1", 1, "s3")
		must(t, err)
		if v.Hold != 150 || v.Price.Minor != 150 {
			t.Fatalf("slot session hold %d price %+v", v.Hold, v.Price)
		}
		_, err = e.start(e.user.ID, "v1", "", 1, "s4")
		wantCode(t, err, "slot.not_found")
		_, err = e.start(e.user.ID, "w1", "Z9", 1, "s5")
		wantCode(t, err, "slot.not_found")

		// A jam: nothing delivered → full release, refunded.
		u2, sig2 := e.usage(v, 0, vend.OutcomeVendFailed)
		st2, err := e.s.Settle(e.ctx, u2, sig2)
		must(t, err)
		if st2.Captured != 0 || st2.Released != 150 || st2.Session.State != store.Refunded {
			t.Fatalf("jam Settle = %+v", st2)
		}
		if w := e.wallet(e.user.ID); w != 784 {
			t.Fatalf("wallet %d after jam, want 784", w)
		}

		// The device refuses a grant: Fail releases it all, once.
		f, err := e.start(e.user.ID, "wash1", "", 1, "s6")
		must(t, err)
		r1, err := e.s.Fail(e.ctx, f.ID, "grant.expired")
		must(t, err)
		r2, err := e.s.Fail(e.ctx, f.ID, "grant.expired")
		must(t, err)
		if r1.Released != 350 || r1.Duplicate || !r2.Duplicate || r2.Session.State != store.Failed {
			t.Fatalf("Fail = %+v then %+v", r1, r2)
		}
		if w := e.wallet(e.user.ID); w != 784 {
			t.Fatalf("wallet %d after fail, want 784", w)
		}
		_, err = e.s.Fail(e.ctx, vend.NewSessionID(), "x")
		wantCode(t, err, "session.not_found")

		got, err := e.s.UserSession(e.ctx, e.user.ID, ss.ID)
		must(t, err)
		if got.Units != 4321 || got.Captured != 216 || got.Outcome != vend.OutcomeUserStop {
			t.Fatalf("UserSession = %+v", got)
		}
		other, err := e.s.CreateUser(e.ctx, "other@example.com", "password123")
		must(t, err)
		_, err = e.s.UserSession(e.ctx, other.ID, ss.ID)
		wantCode(t, err, "session.not_found")
		e.checkLedger()
	})
}

func TestStartBadInput(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		e.topUp(e.user.ID, 1000)
		cases := []struct {
			in   store.StartInput
			code string
		}{
			{store.StartInput{User: e.user.ID, Device: "nope", Machine: "w1", CapUnits: 1, IdemKey: "a"}, "device.not_found"},
			{store.StartInput{User: e.user.ID, Device: "dev-a", Machine: "zz", CapUnits: 1, IdemKey: "b"}, "machine.not_found"},
			{store.StartInput{User: e.user.ID, Device: "Bad/ID", Machine: "w1", CapUnits: 1, IdemKey: "c"}, "id.device"},
			{store.StartInput{User: e.user.ID, Device: "dev-a", Machine: "w1", CapUnits: 0, IdemKey: "d"}, "store.input"},
			{store.StartInput{User: e.user.ID, Device: "dev-a", Machine: "w1", CapUnits: 1, IdemKey: ""}, "store.input"},
			{store.StartInput{User: "usr_nobody", Device: "dev-a", Machine: "w1", CapUnits: 1, IdemKey: "e"}, "user.not_found"},
		}
		for _, c := range cases {
			_, err := e.s.StartSession(e.ctx, c.in)
			if vend.CodeOf(err) != c.code {
				t.Errorf("StartSession(%+v) = %v, want %s", c.in, err, c.code)
			}
		}
		must(t, e.s.SetDeviceState(e.ctx, e.opA.ID, "dev-a", store.DeviceDisabled))
		_, err := e.start(e.user.ID, "w1", "", 1, "f")
		wantCode(t, err, "device.disabled")
		if n := e.count("sessions"); n != 0 {
			t.Fatalf("bad starts wrote %d sessions", n)
		}
		if e.wallet(e.user.ID) != 1000 {
			t.Fatal("bad starts moved money")
		}
	})
}

func TestStartSignsGrant(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		e.topUp(e.user.ID, 1000)
		cloudPriv := e.priv // any Ed25519 key will do for the test
		ss, err := e.s.StartSession(e.ctx, store.StartInput{User: e.user.ID, Device: "dev-a", Machine: "w1", CapUnits: 2000,
			IdemKey: "g", Window: 1024, WindowK: 5,
			Sign: func(g signed.Grant) ([]byte, error) { return signed.SignGrant(cloudPriv, g) }})
		must(t, err)
		keys, _ := signed.NewKeys(e.devA.SignKey)
		g, err := signed.OpenGrant(ss.Grant, keys)
		must(t, err)
		if g.Session != ss.ID || g.CapMoney != ss.Hold || g.Price != ss.Price || g.Machine != "w1" || g.Window != 1024 {
			t.Fatalf("grant %+v does not match session %+v", g, ss)
		}
		got, err := e.s.GetSession(e.ctx, ss.ID)
		must(t, err)
		if string(got.Grant) != string(ss.Grant) {
			t.Fatal("stored grant differs")
		}
	})
}

func TestSettleExactlyOnce(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		e.topUp(e.user.ID, 2000)
		ss, err := e.start(e.user.ID, "w1", "", 10000, "x1")
		must(t, err)
		must(t, e.s.Advance(e.ctx, ss.ID, store.Running, e.clk.Now()))
		u, sig := e.usage(ss, 7000, vend.OutcomeCompleted) // 350
		var wg sync.WaitGroup
		var fresh atomic.Int32
		for i := 0; i < 5; i++ {
			wg.Add(3)
			go func() {
				defer wg.Done()
				st, err := e.s.Settle(e.ctx, u, sig)
				if err != nil {
					t.Error(err)
					return
				}
				if st.Captured != 350 || st.Session.State != store.Settled {
					t.Errorf("Settle = %+v", st)
				}
				if !st.Duplicate {
					fresh.Add(1)
				}
			}()
			go func() { // interleaved events
				defer wg.Done()
				_ = e.s.Advance(e.ctx, ss.ID, store.Ending, time.Time{})
				_, _ = e.s.Fail(e.ctx, ss.ID, "late nack")
			}()
			go func() {
				defer wg.Done()
				if _, err := e.s.ExpireHolds(e.ctx, 0); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if fresh.Load() != 1 {
			t.Fatalf("%d fresh settlements, want 1", fresh.Load())
		}
		if w, h, r := e.wallet(e.user.ID), e.holds(e.user.ID), e.revenue(e.opA.ID); w != 1650 || h != 0 || r != 350 {
			t.Fatalf("wallet %d holds %d revenue %d, want 1650 0 350", w, h, r)
		}
		var caps int
		must(t, e.s.DB().QueryRow(`SELECT COUNT(*) FROM ledger_tx WHERE kind = 'capture'`).Scan(&caps))
		if caps != 1 {
			t.Fatalf("%d capture transactions, want 1", caps)
		}

		// A different report for the settled session: conflict.
		u2, sig2 := e.usage(ss, 6000, vend.OutcomeCompleted)
		_, err = e.s.Settle(e.ctx, u2, sig2)
		wantCode(t, err, "usage.conflict")

		// A reused seq for another session: conflict; a mismatching report: invalid.
		ss2, err := e.start(e.user.ID, "w1", "", 1000, "x2")
		must(t, err)
		u3, _ := e.usage(ss2, 10, vend.OutcomeCompleted)
		u3.Seq = u.Seq
		sig3, err := signed.SignUsage(e.priv, u3)
		must(t, err)
		_, err = e.s.Settle(e.ctx, u3, sig3)
		wantCode(t, err, "usage.seq_reused")
		u4, sig4 := e.usage(ss2, 2000, vend.OutcomeCompleted) // above cap 1000
		_, err = e.s.Settle(e.ctx, u4, sig4)
		wantCode(t, err, "usage.mismatch")
		u5, _ := e.usage(ss2, 10, vend.OutcomeCompleted)
		u5.Price = vend.Price{Minor: 1, Per: 1000}
		u5.Amount = 0
		sig5, err := signed.SignUsage(e.priv, u5)
		must(t, err)
		_, err = e.s.Settle(e.ctx, u5, sig5)
		wantCode(t, err, "usage.mismatch")
		u6, sig6 := e.usage(ss2, 10, vend.OutcomeCompleted)
		u6.Session = vend.NewSessionID()
		_, err = e.s.Settle(e.ctx, u6, sig6)
		wantCode(t, err, "session.not_found")
		_, err = e.s.Settle(e.ctx, u6, nil)
		wantCode(t, err, "store.input")
		var reports int
		must(t, e.s.DB().QueryRow(`SELECT COUNT(*) FROM usage_reports`).Scan(&reports))
		if reports != 1 {
			t.Fatalf("%d usage reports stored, want 1", reports)
		}
		e.checkLedger()
	})
}

func TestExpireHolds(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, &store.Opts{AckBound: 10 * time.Second})
		e.topUp(e.user.ID, 100000)
		// 3 machines × several sessions over time: only the stale pending
		// one expires; an acknowledged (authorized) one keeps its hold.
		var stale []store.Session
		for i, m := range []string{"w1", "wash1"} {
			ss, err := e.s.StartSession(e.ctx, store.StartInput{User: e.user.ID, Device: "dev-a", Machine: m, CapUnits: uint64(1 + 999*(1-i)),
				IdemKey: fmt.Sprintf("e%d", i), GrantTTL: 30 * time.Second})
			must(t, err)
			stale = append(stale, ss)
		}
		must(t, e.s.Advance(e.ctx, stale[1].ID, store.Authorized, time.Time{}))
		running, err := e.start(e.user.ID, "v1", "A2", 1, "e9")
		must(t, err)
		must(t, e.s.Advance(e.ctx, running.ID, store.Running, e.clk.Now()))
		got, err := e.s.ExpireHolds(e.ctx, 0)
		must(t, err)
		if len(got) != 0 {
			t.Fatalf("expired %d sessions before their deadline", len(got))
		}
		e.clk.Add(41 * time.Second)
		before := e.wallet(e.user.ID)
		var wg sync.WaitGroup
		var n atomic.Int32
		var released atomic.Int64
		for i := 0; i < 2; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sts, err := e.s.ExpireHolds(e.ctx, 0)
				if err != nil {
					t.Error(err)
				}
				for _, st := range sts {
					n.Add(1)
					released.Add(st.Released)
				}
			}()
		}
		wg.Wait()
		want := stale[0].Hold
		if n.Load() != 1 || released.Load() != want {
			t.Fatalf("expired %d sessions releasing %d, want 1 releasing %d", n.Load(), released.Load(), want)
		}
		if w := e.wallet(e.user.ID); w != before+want {
			t.Fatalf("wallet %d, want %d", w, before+want)
		}
		for i, want := range []store.State{store.Expired, store.Authorized} {
			got, err := e.s.GetSession(e.ctx, stale[i].ID)
			must(t, err)
			if got.State != want {
				t.Fatalf("session %s is %s, want %s", stale[i].ID, got.State, want)
			}
		}
		if r, err := e.s.GetSession(e.ctx, running.ID); err != nil || r.State != store.Running {
			t.Fatalf("running session = %v, %v", r.State, err)
		}
		// A late usage report for an expired session is captured late,
		// from the wallet (TestLateCapture has the details).
		u, sig := e.usage(stale[0], 1000, vend.OutcomeCompleted)
		st, err := e.s.Settle(e.ctx, u, sig)
		must(t, err)
		if !st.Late || st.LateAmount != 50 || st.Session.State != store.Expired {
			t.Fatalf("late report = %+v", st)
		}
		e.checkLedger()
	})
}

func TestRaceStartOneMachine(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		const n = 50
		users := make([]string, n)
		for i := range users {
			u, err := e.s.CreateUser(e.ctx, fmt.Sprintf("racer%d@example.com", i), "password123")
			must(t, err)
			users[i] = u.ID
			e.topUp(u.ID, 1000)
		}
		var wg sync.WaitGroup
		var ok, busy atomic.Int32
		start := make(chan struct{})
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				<-start
				_, err := e.start(users[i], "wash1", "", 1, "race")
				switch vend.CodeOf(err) {
				case "":
					ok.Add(1)
				case "machine.busy":
					busy.Add(1)
				default:
					t.Errorf("start: %v", err)
				}
			}(i)
		}
		close(start)
		wg.Wait()
		if ok.Load() != 1 || busy.Load() != n-1 {
			t.Fatalf("%d started, %d busy; want 1 and %d", ok.Load(), busy.Load(), n-1)
		}
		var holds int64
		must(t, e.s.DB().QueryRow(`SELECT COALESCE(SUM(balance), 0) FROM accounts WHERE kind = 'user_holds'`).Scan(&holds))
		if holds != 350 {
			t.Fatalf("total holds %d, want 350", holds)
		}
		e.checkLedger()
	})
}

// TestManySessionsOneWallet runs 500 sessions (start, then settle) from
// one wallet across 25 machines concurrently, with less money than all of
// them would need: the wallet never goes negative and the ledger balances.
func TestManySessionsOneWallet(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		const machines, perMachine = 25, 20
		var ms []store.Machine
		for i := 0; i < machines; i++ {
			ms = append(ms, store.Machine{ID: fmt.Sprintf("m%d", i), Kind: vend.KindWater, Price: vend.Price{Minor: 10, Per: 100}, Currency: "EUR"})
		}
		dev := e.devA
		dev.ID, dev.Machines = "dev-many", ms
		must(t, e.s.CreateDevice(e.ctx, dev))
		const funds = 20000 // each session holds 100 and captures 0-100: not all 500 can run
		e.topUp(e.user.ID, funds)
		var wg sync.WaitGroup
		var started, poor, captured atomic.Int64
		for m := 0; m < machines; m++ {
			wg.Add(1)
			go func(m int) {
				defer wg.Done()
				for i := 0; i < perMachine; i++ {
					ss, err := e.s.StartSession(e.ctx, store.StartInput{User: e.user.ID, Device: "dev-many",
						Machine: fmt.Sprintf("m%d", m), CapUnits: 1000, IdemKey: fmt.Sprintf("%d-%d", m, i)})
					if vend.CodeOf(err) == "funds.insufficient" {
						poor.Add(1)
						continue
					}
					if err != nil {
						t.Error(err)
						return
					}
					started.Add(1)
					if w := e.wallet(e.user.ID); w < 0 {
						t.Errorf("wallet %d < 0", w)
					}
					u, sig := e.usage(ss, uint64((m*37+i*101)%1001), vend.OutcomeCompleted)
					st, err := e.s.Settle(e.ctx, u, sig)
					if err != nil {
						t.Error(err)
						return
					}
					captured.Add(st.Captured)
				}
			}(m)
		}
		wg.Wait()
		if started.Load()+poor.Load() != machines*perMachine {
			t.Fatalf("started %d + poor %d != %d", started.Load(), poor.Load(), machines*perMachine)
		}
		w := e.wallet(e.user.ID)
		if w < 0 || w != funds-captured.Load() || e.holds(e.user.ID) != 0 || e.revenue(e.opA.ID) != captured.Load() {
			t.Fatalf("wallet %d holds %d revenue %d, captured %d of %d", w, e.holds(e.user.ID), e.revenue(e.opA.ID), captured.Load(), funds)
		}
		t.Logf("%d sessions settled, %d refused for funds, %d captured", started.Load(), poor.Load(), captured.Load())
		e.checkLedger()
	})
}

func TestOperatorIsolation(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		opB, err := e.s.CreateOperator(e.ctx, "Operator B")
		must(t, err)
		devB := e.devA
		devB.ID, devB.OperatorID, devB.Name = "dev-b", opB.ID, "B's"
		must(t, e.s.CreateDevice(e.ctx, devB))
		e.topUp(e.user.ID, 5000)
		sa, err := e.start(e.user.ID, "wash1", "", 1, "ia")
		must(t, err)
		u, sig := e.usage(sa, 1, vend.OutcomeCompleted)
		_, err = e.s.Settle(e.ctx, u, sig)
		must(t, err)
		_, err = e.s.StartSession(e.ctx, store.StartInput{User: e.user.ID, Device: "dev-b", Machine: "w1", CapUnits: 1, IdemKey: "ib"})
		must(t, err)

		// A cannot set B's prices, nor see B's devices or sessions.
		err = e.s.SetPrices(e.ctx, e.opA.ID, "dev-b", "w1", vend.Price{Minor: 1, Per: 1}, nil)
		wantCode(t, err, "device.not_found")
		err = e.s.SetDeviceState(e.ctx, e.opA.ID, "dev-b", store.DeviceDisabled)
		wantCode(t, err, "device.not_found")
		err = e.s.PutMachine(e.ctx, e.opA.ID, "dev-b", store.Machine{ID: "x", Kind: vend.KindWater, Price: vend.Price{Minor: 1, Per: 1}, Currency: "EUR"})
		wantCode(t, err, "device.not_found")
		for _, c := range []struct {
			op   string
			want string
		}{{e.opA.ID, "dev-a"}, {opB.ID, "dev-b"}} {
			ds, err := e.s.OperatorDevices(e.ctx, c.op)
			must(t, err)
			if len(ds) != 1 || ds[0].ID != c.want || len(ds[0].Machines) != 3 {
				t.Fatalf("OperatorDevices(%s) = %+v, want only %s", c.op, ds, c.want)
			}
			ss, err := e.s.OperatorSessions(e.ctx, c.op, store.SessionFilter{})
			must(t, err)
			if len(ss) != 1 || ss[0].Device != c.want {
				t.Fatalf("OperatorSessions(%s) = %d sessions, want one on %s", c.op, len(ss), c.want)
			}
			ss, err = e.s.OperatorSessions(e.ctx, c.op, store.SessionFilter{Device: "dev-a"})
			must(t, err)
			if (c.want == "dev-a") != (len(ss) == 1) {
				t.Fatalf("OperatorSessions(%s, device dev-a) = %d sessions", c.op, len(ss))
			}
		}
		day := e.clk.Now().Truncate(24 * time.Hour)
		rev, err := e.s.RevenueByDeviceDay(e.ctx, e.opA.ID, day, day.Add(24*time.Hour))
		must(t, err)
		if len(rev) != 1 || rev[0].Device != "dev-a" || rev[0].Amount.Minor != 350 || rev[0].Sessions != 1 || !rev[0].Day.Equal(day) {
			t.Fatalf("RevenueByDeviceDay(A) = %+v", rev)
		}
		rev, err = e.s.RevenueByDeviceDay(e.ctx, opB.ID, day, day.Add(24*time.Hour))
		must(t, err)
		if len(rev) != 0 {
			t.Fatalf("RevenueByDeviceDay(B) = %+v, want none", rev)
		}

		// Own prices: set, and seen by the next session; slots too.
		must(t, e.s.SetPrices(e.ctx, e.opA.ID, "dev-a", "v1", vend.Price{Minor: 120, Per: 1}, map[string]vend.Price{"A1": {Minor: 200, Per: 1}}))
		err = e.s.SetPrices(e.ctx, e.opA.ID, "dev-a", "v1", vend.Price{Minor: 120, Per: 1}, map[string]vend.Price{"ZZ": {Minor: 1, Per: 1}})
		wantCode(t, err, "slot.not_found")
		err = e.s.SetPrices(e.ctx, e.opA.ID, "dev-a", "v1", vend.Price{Minor: -1, Per: 1}, nil)
		wantCode(t, err, "money.price")
		err = e.s.SetPrices(e.ctx, e.opA.ID, "dev-a", "nope", vend.Price{Minor: 1, Per: 1}, nil)
		wantCode(t, err, "machine.not_found")
		v, err := e.start(e.user.ID, "v1", "A1", 1, "ic")
		must(t, err)
		if v.Hold != 200 {
			t.Fatalf("hold %d after price change, want 200", v.Hold)
		}
	})
}

func TestDevices(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		key := make([]byte, 32)
		key[0] = 7
		e := newEnv(t, b, &store.Opts{KeyEncKey: key})
		d, err := e.s.GetDevice(e.ctx, "dev-a")
		must(t, err)
		if d.IdentityKey != e.devA.IdentityKey || d.K != 5 || d.OperatorID != e.opA.ID || len(d.Machines) != 3 || d.Machines[0].ID != "v1" || len(d.Machines[0].Slots) != 2 {
			t.Fatalf("GetDevice = %+v", d)
		}
		var raw []byte
		must(t, e.s.DB().QueryRow(`SELECT identity_key FROM devices WHERE id = 'dev-a'`).Scan(&raw))
		if raw[0] != 1 || len(raw) <= 17 {
			t.Fatalf("identity key stored as %x, want encrypted", raw)
		}
		// Without the key, reading it fails clearly.
		s2 := mustOpen(t, e.dsn, e.clk, nil)
		if _, err := s2.GetDevice(e.ctx, "dev-a"); err == nil {
			t.Fatal("read an encrypted identity key without KeyEncKey")
		}
		_, err = e.s.GetDevice(e.ctx, "dev-zz")
		wantCode(t, err, "device.not_found")
		err = e.s.CreateDevice(e.ctx, e.devA)
		wantCode(t, err, "device.exists")
		bad := e.devA
		bad.ID = "dev-bad"
		bad.Machines = append([]store.Machine{}, bad.Machines...)
		bad.Machines = append(bad.Machines, store.Machine{ID: "c", Kind: vend.KindWater, Price: vend.Price{Minor: 1, Per: 1}, Currency: "euro"})
		err = e.s.CreateDevice(e.ctx, bad)
		wantCode(t, err, "money.currency")
		if _, err := e.s.GetDevice(e.ctx, "dev-bad"); vend.CodeOf(err) != "device.not_found" {
			t.Fatalf("a refused device was written: %v", err)
		}

		next := make([]byte, 32)
		next[0] = 9
		must(t, e.s.SetNextSignKey(e.ctx, "dev-a", next))
		keys, err := e.s.DeviceKeys(e.ctx)
		must(t, err)
		if len(keys) != 1 || len(keys[0].SignKeys) != 2 || keys[0].IdentityKey != e.devA.IdentityKey {
			t.Fatalf("DeviceKeys = %+v", keys)
		}
		must(t, e.s.PromoteSignKey(e.ctx, "dev-a"))
		d, err = e.s.GetDevice(e.ctx, "dev-a")
		must(t, err)
		if string(d.SignKey) != string(next) || d.SignKeyNext != nil {
			t.Fatalf("after promote: %x %x", d.SignKey, d.SignKeyNext)
		}

		tel := json.RawMessage(`{"rssi":-70,"temp_c":31}`)
		must(t, e.s.SetDeviceStatus(e.ctx, "dev-a", true, tel, e.clk.Now()))
		must(t, e.s.SetDeviceStatus(e.ctx, "dev-a", false, nil, e.clk.Now().Add(-time.Minute))) // stale: ignored
		ds, err := e.s.OperatorDevices(e.ctx, e.opA.ID)
		must(t, err)
		if !ds[0].Online || string(ds[0].Telemetry) != string(tel) || !ds[0].LastSeen.Equal(e.clk.Now()) {
			t.Fatalf("status = %+v", ds[0])
		}
		err = e.s.SetDeviceStatus(e.ctx, "dev-a", true, json.RawMessage(`[1]`), e.clk.Now())
		wantCode(t, err, "store.input")
		err = e.s.SetDeviceStatus(e.ctx, "dev-zz", true, nil, e.clk.Now())
		wantCode(t, err, "device.not_found")

		// A batch: one commit, stale and unknown entries skipped, a bad
		// entry refuses the whole batch before anything is written.
		tel2 := json.RawMessage(`{"rssi":-60}`)
		later := e.clk.Now().Add(time.Second)
		must(t, e.s.SetDeviceStatuses(e.ctx, []store.StatusUpdate{
			{Device: "dev-a", Online: true, Telemetry: tel2, At: later},
			{Device: "dev-a", Online: false, At: e.clk.Now()}, // older than the first: ignored
			{Device: "dev-zz", Online: true, At: later},       // unknown: skipped
		}))
		ds, err = e.s.OperatorDevices(e.ctx, e.opA.ID)
		must(t, err)
		if !ds[0].Online || string(ds[0].Telemetry) != string(tel2) || !ds[0].LastSeen.Equal(later) {
			t.Fatalf("after batch: %+v", ds[0])
		}
		err = e.s.SetDeviceStatuses(e.ctx, []store.StatusUpdate{
			{Device: "dev-a", Online: false, At: later.Add(time.Second)},
			{Device: "dev-a", Online: true, Telemetry: json.RawMessage(`"x"`), At: later.Add(time.Second)},
		})
		wantCode(t, err, "store.input")
		ds, err = e.s.OperatorDevices(e.ctx, e.opA.ID)
		must(t, err)
		if !ds[0].Online {
			t.Fatal("a refused batch wrote its first entry")
		}

		sks, err := e.s.SignKeys(e.ctx, "dev-a")
		must(t, err)
		if len(sks) != 1 || string(sks[0]) != string(next) {
			t.Fatalf("SignKeys = %x", sks)
		}
		_, err = e.s.SignKeys(e.ctx, "dev-zz")
		wantCode(t, err, "device.not_found")
	})
}

func TestUsersAndTokens(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		_, err := e.s.CreateUser(e.ctx, "PAYER@example.com", "another password")
		wantCode(t, err, "email.taken")
		_, err = e.s.CreateUser(e.ctx, "not an email", "password123")
		wantCode(t, err, "store.input")
		_, err = e.s.CreateUser(e.ctx, "short@example.com", "short")
		wantCode(t, err, "store.input")
		u, err := e.s.AuthenticateUser(e.ctx, "Payer@Example.com", "correct horse")
		must(t, err)
		if u.ID != e.user.ID {
			t.Fatalf("authenticated %s, want %s", u.ID, e.user.ID)
		}
		_, err = e.s.AuthenticateUser(e.ctx, "payer@example.com", "wrong horse")
		wantCode(t, err, "auth.credentials")
		_, err = e.s.AuthenticateUser(e.ctx, "nobody@example.com", "wrong horse")
		wantCode(t, err, "auth.credentials")

		tok, err := e.s.IssueToken(e.ctx, u.ID, time.Hour)
		must(t, err)
		got, err := e.s.UserByToken(e.ctx, tok)
		must(t, err)
		if got.ID != u.ID {
			t.Fatalf("UserByToken = %s", got.ID)
		}
		e.clk.Add(2 * time.Hour)
		_, err = e.s.UserByToken(e.ctx, tok)
		wantCode(t, err, "auth.token")
		tok2, err := e.s.IssueToken(e.ctx, u.ID, time.Hour)
		must(t, err)
		must(t, e.s.RevokeToken(e.ctx, tok2))
		_, err = e.s.UserByToken(e.ctx, tok2)
		wantCode(t, err, "auth.token")

		acct, err := e.s.CreateOperatorAccount(e.ctx, e.opA.ID, "ops@example.com", "operator pass")
		must(t, err)
		got2, err := e.s.AuthenticateOperator(e.ctx, "ops@example.com", "operator pass")
		must(t, err)
		if got2.OperatorID != e.opA.ID || got2.ID != acct.ID {
			t.Fatalf("AuthenticateOperator = %+v", got2)
		}
		_, err = e.s.AuthenticateOperator(e.ctx, "payer@example.com", "correct horse") // a phone user is not an operator
		wantCode(t, err, "auth.credentials")
		_, err = e.s.CreateOperatorAccount(e.ctx, "op_nobody", "x@example.com", "operator pass")
		wantCode(t, err, "operator.not_found")
	})
}

func TestIdempotencyAndIngest(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		h1, h2 := []byte("hash-1"), []byte("hash-2")
		_, err := e.s.LookupIdempotent(e.ctx, e.user.ID, "k", h1)
		wantCode(t, err, "idempotency.not_found")
		r, err := e.s.SaveIdempotent(e.ctx, e.user.ID, "k", h1, store.IdemResponse{Status: 201, Body: []byte(`{"id":1}`)})
		must(t, err)
		r2, err := e.s.SaveIdempotent(e.ctx, e.user.ID, "k", h1, store.IdemResponse{Status: 201, Body: []byte(`{"id":2}`)})
		must(t, err)
		if string(r2.Body) != string(r.Body) || r2.Status != 201 {
			t.Fatalf("second save returned %s, want the first %s", r2.Body, r.Body)
		}
		got, err := e.s.LookupIdempotent(e.ctx, e.user.ID, "k", h1)
		must(t, err)
		if string(got.Body) != `{"id":1}` {
			t.Fatalf("Lookup = %s", got.Body)
		}
		_, err = e.s.LookupIdempotent(e.ctx, e.user.ID, "k", h2)
		wantCode(t, err, "idempotency.conflict")
		_, err = e.s.SaveIdempotent(e.ctx, e.user.ID, "k", h2, store.IdemResponse{Status: 200})
		wantCode(t, err, "idempotency.conflict")
		if _, err := e.s.LookupIdempotent(e.ctx, "usr_other", "k", h2); vend.CodeOf(err) != "idempotency.not_found" {
			t.Fatalf("keys are per user: %v", err)
		}

		var firsts atomic.Int32
		var wg sync.WaitGroup
		for i := 0; i < 10; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				first, err := e.s.MarkProcessed(e.ctx, "dev-a", "msg-1")
				if err != nil {
					t.Error(err)
				}
				if first {
					firsts.Add(1)
				}
			}()
		}
		wg.Wait()
		if firsts.Load() != 1 {
			t.Fatalf("MarkProcessed first %d times, want 1", firsts.Load())
		}
		first, err := e.s.MarkProcessed(e.ctx, "dev-b", "msg-1")
		must(t, err)
		if !first {
			t.Fatal("message ids are per device")
		}
		e.clk.Add(time.Hour)
		n, err := e.s.PruneProcessed(e.ctx, e.clk.Now())
		must(t, err)
		if n != 2 {
			t.Fatalf("pruned %d, want 2", n)
		}

		ok, err := e.s.SaveCommandReply(e.ctx, store.CommandReply{CommandID: "c1", Device: "dev-a", Status: "ok", Body: `{}`, At: e.clk.Now()})
		must(t, err)
		dup, err := e.s.SaveCommandReply(e.ctx, store.CommandReply{CommandID: "c1", Device: "dev-a", Status: "error", Body: `{}`, At: e.clk.Now()})
		must(t, err)
		if !ok || dup {
			t.Fatalf("SaveCommandReply first %v, again %v", ok, dup)
		}
		cr, err := e.s.GetCommandReply(e.ctx, "dev-a", "c1")
		must(t, err)
		if cr.Status != "ok" {
			t.Fatalf("reply status %q, want the first one", cr.Status)
		}
		_, err = e.s.GetCommandReply(e.ctx, "dev-a", "c2")
		wantCode(t, err, "command.not_found")
	})
}
