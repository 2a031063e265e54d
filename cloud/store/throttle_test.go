package store_test

import (
	"strconv"
	"sync"
	"testing"
	"time"

	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/store"
)

// Failed log-ins are counted per account atomically, lock it with the
// caller's policy, survive a reopen of the store (another instance, a
// restart), start again after a day and are cleared by a success.
func TestLoginThrottle(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		lock := func(n int) time.Duration {
			if n < 3 {
				return 0
			}
			return time.Duration(1<<(n-3)) * time.Minute
		}
		// Concurrent failures (two instances) are all counted.
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := e.s.RecordLoginFailure(e.ctx, "user", "acct-1", lock); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		now := e.clk.Now()
		other := mustOpen(t, e.dsn, e.clk, nil) // another instance on the same database
		st, err := other.LoginThrottle(e.ctx, "user", "acct-1")
		must(t, err)
		if st.Failures != 4 || !st.LockedUntil.Equal(now.Add(2*time.Minute)) {
			t.Fatalf("after 4 failures: %+v, want 4 failures locked until %v", st, now.Add(2*time.Minute))
		}
		if st, _ := e.s.LoginThrottle(e.ctx, "operator", "acct-1"); st.Failures != 0 {
			t.Fatalf("operator scope sees the user's failures: %+v", st)
		}
		// A shorter lock never shortens the current one.
		st, err = other.RecordLoginFailure(e.ctx, "user", "acct-1", func(int) time.Duration { return time.Second })
		must(t, err)
		if st.Failures != 5 || !st.LockedUntil.Equal(now.Add(2*time.Minute)) {
			t.Fatalf("5th failure with a 1 s policy: %+v, want the 2 min lock kept", st)
		}
		// A day after the last failure the count starts again.
		e.clk.Add(store.ThrottleReset + time.Minute)
		if st, _ := e.s.LoginThrottle(e.ctx, "user", "acct-1"); st.Failures != 0 {
			t.Fatalf("a day later: %+v, want nothing", st)
		}
		st, err = e.s.RecordLoginFailure(e.ctx, "user", "acct-1", lock)
		must(t, err)
		if st.Failures != 1 || !st.LockedUntil.IsZero() {
			t.Fatalf("first failure a day later: %+v", st)
		}
		must(t, e.s.ClearLoginFailures(e.ctx, "user", "acct-1"))
		if st, _ := e.s.LoginThrottle(e.ctx, "user", "acct-1"); st.Failures != 0 {
			t.Fatalf("after a success: %+v", st)
		}
		if _, err := e.s.RecordLoginFailure(e.ctx, "", "x", lock); err == nil {
			t.Fatal("empty scope accepted")
		}
		e.clk.Add(time.Hour)
		if _, err := e.s.RecordLoginFailure(e.ctx, "user", "acct-2", lock); err != nil {
			t.Fatal(err)
		}
		e.clk.Add(2*store.ThrottleReset - time.Minute)
		if _, err := e.s.RecordLoginFailure(e.ctx, "user", "acct-3", lock); err != nil {
			t.Fatal(err)
		}
		e.clk.Add(2 * time.Minute)
		p, err := e.s.Prune(e.ctx, store.Retention{})
		must(t, err)
		if n := p["login_throttle"]; n != 1 {
			t.Fatalf("pruned %d, want 1", n)
		}
	})
}

// A user's sessions come newest first, a page at a time, across sessions
// created in the same millisecond, and never another user's.
func TestUserSessions(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		e.topUp(e.user.ID, 100000)
		other, err := e.s.CreateUser(e.ctx, "other@example.com", "correct horse")
		must(t, err)
		e.topUp(other.ID, 100000)
		var ids []string
		for i := range 5 {
			if i%2 == 0 {
				e.clk.Add(time.Millisecond) // sessions 1-2 and 3-4 share a millisecond
			}
			ss, err := e.s.StartSession(e.ctx, store.StartInput{User: e.user.ID, Device: "dev-a", Machine: "w1", CapUnits: 1000,
				IdemKey: "key-" + strconv.Itoa(i), Window: 1, WindowK: 5, Sign: func(signed.Grant) ([]byte, error) { return []byte("g"), nil }})
			must(t, err)
			if _, err := e.s.Fail(e.ctx, ss.ID, "test.failed"); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, ss.ID.String())
		}
		if _, err := e.s.StartSession(e.ctx, store.StartInput{User: other.ID, Device: "dev-a", Machine: "w1", CapUnits: 1000,
			IdemKey: "key-x", Window: 1, WindowK: 5, Sign: func(signed.Grant) ([]byte, error) { return []byte("g"), nil }}); err != nil {
			t.Fatal(err)
		}
		var got []string
		var cur store.SessionCursor
		for page := 0; ; page++ {
			ss, next, err := e.s.UserSessions(e.ctx, e.user.ID, cur, 2)
			must(t, err)
			for _, s := range ss {
				if s.User != e.user.ID || s.Grant != nil {
					t.Fatalf("listed %+v", s)
				}
				got = append(got, s.ID.String())
			}
			if next == (store.SessionCursor{}) {
				break
			}
			if page > 5 {
				t.Fatal("no end of the list")
			}
			cur = next
		}
		if len(got) != 5 {
			t.Fatalf("listed %d sessions %v, want 5", len(got), got)
		}
		for i := 1; i < len(got); i++ {
			a, _ := e.s.GetSession(e.ctx, mustSID(t, got[i-1]))
			b, _ := e.s.GetSession(e.ctx, mustSID(t, got[i]))
			if a.Created.Before(b.Created) {
				t.Fatalf("not newest first: %v before %v", a.Created, b.Created)
			}
		}
		seen := map[string]bool{}
		for _, id := range got {
			seen[id] = true
		}
		for _, id := range ids {
			if !seen[id] {
				t.Fatalf("session %s missing from %v", id, got)
			}
		}
		ss, err := e.s.UserSessionByKey(e.ctx, e.user.ID, "key-3")
		if err != nil || ss.ID.String() != ids[3] {
			t.Fatalf("by key = %v %v, want %s", ss.ID, err, ids[3])
		}
		if _, err := e.s.UserSessionByKey(e.ctx, other.ID, "key-3"); err == nil {
			t.Fatal("another user's key found")
		}
		if _, _, err := e.s.UserSessions(e.ctx, e.user.ID, store.SessionCursor{}, 0); err == nil {
			t.Fatal("limit 0 accepted")
		}
	})
}

func mustSID(t *testing.T, s string) vend.SessionID {
	t.Helper()
	id, err := vend.ParseSessionID(s)
	must(t, err)
	return id
}
