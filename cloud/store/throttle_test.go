package store_test

import (
	"sync"
	"testing"
	"time"

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
		e.clk.Add(store.ThrottleReset)
		n, err := e.s.PruneLoginThrottle(e.ctx, e.clk.Now().Add(-store.ThrottleReset/2))
		must(t, err)
		if n != 1 {
			t.Fatalf("pruned %d, want 1", n)
		}
	})
}
