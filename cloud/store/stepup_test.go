package store_test

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/store"
)

// The PIN is kept only as a bcrypt hash; thresholds need a PIN and
// survive a PIN change; bad PINs never reach the table.
func TestStepUpPINAndThresholds(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		st, err := e.s.StepUpSettingsOf(e.ctx, e.user.ID)
		must(t, err)
		if st.PINSet {
			t.Fatalf("new user: %+v, want no pin", st)
		}
		eur := func(m int64) *vend.Amount { return &vend.Amount{Minor: m, Currency: "EUR"} }
		wantCode(t, e.s.SetStepUpThresholds(e.ctx, e.user.ID, eur(500), nil, nil), store.ErrPINNotSet.Code)
		for _, bad := range []string{"", "123", "123456789", "12a4", "١٢٣٤", " 1234"} {
			wantCode(t, e.s.SetStepUpPIN(e.ctx, e.user.ID, bad), store.ErrInput.Code)
		}
		if n := e.count("step_up_pins"); n != 0 {
			t.Fatalf("bad pins wrote %d rows", n)
		}
		wantCode(t, e.s.SetStepUpPIN(e.ctx, "usr_nobody", "4821"), store.ErrUserNotFound.Code)
		must(t, e.s.SetStepUpPIN(e.ctx, e.user.ID, "4821"))
		var h string
		must(t, e.s.DB().QueryRowContext(e.ctx, `SELECT pin_hash FROM step_up_pins WHERE user_id = $1`, e.user.ID).Scan(&h))
		if strings.Contains(h, "4821") || !strings.HasPrefix(h, "$2") {
			t.Fatalf("stored pin %q: want a bcrypt hash without the pin", h)
		}
		must(t, e.s.SetStepUpThresholds(e.ctx, e.user.ID, eur(500), nil, eur(1000)))
		wantCode(t, e.s.SetStepUpThresholds(e.ctx, e.user.ID, eur(-1), nil, nil), store.ErrInput.Code)
		wantCode(t, e.s.SetStepUpThresholds(e.ctx, e.user.ID, &vend.Amount{Minor: 1, Currency: "eur"}, nil, nil), store.ErrInput.Code)
		must(t, e.s.SetStepUpPIN(e.ctx, e.user.ID, "9305")) // a change keeps the thresholds
		st, err = e.s.StepUpSettingsOf(e.ctx, e.user.ID)
		must(t, err)
		if !st.PINSet || st.SessionCapAbove == nil || *st.SessionCapAbove != *eur(500) || st.TopUpAbove != nil ||
			st.WithdrawalAbove == nil || *st.WithdrawalAbove != *eur(1000) {
			t.Fatalf("settings = %+v", st)
		}
		c, err := e.s.CheckPIN(e.ctx, e.user.ID, "4821", 5, 15*time.Minute)
		must(t, err)
		if c.OK {
			t.Fatal("the old pin still works")
		}
		c, err = e.s.CheckPIN(e.ctx, e.user.ID, "9305", 5, 15*time.Minute)
		must(t, err)
		if !c.OK {
			t.Fatalf("the new pin: %+v", c)
		}
	})
}

// Twenty concurrent wrong guesses, from two store instances (two cloud
// instances), get exactly the limit of comparisons; the rest are refused
// as locked without a comparison, and even the right PIN is refused until
// the window ends. A right PIN then resets the count.
func TestStepUpPINLockoutConcurrent(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, &store.Opts{MaxOpenConns: 20})
		other := mustOpen(t, e.dsn, e.clk, &store.Opts{MaxOpenConns: 20})
		must(t, e.s.SetStepUpPIN(e.ctx, e.user.ID, "4821"))
		const limit, window = 5, 15 * time.Minute
		var compared, locked atomic.Int32
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s := e.s
				if i%2 == 1 {
					s = other
				}
				c, err := s.CheckPIN(e.ctx, e.user.ID, "0000", limit, window)
				if err != nil {
					t.Error(err)
					return
				}
				if c.OK {
					t.Error("a wrong pin was accepted")
				}
				if c.Locked {
					locked.Add(1)
				} else {
					compared.Add(1)
				}
			}()
		}
		wg.Wait()
		if compared.Load() != limit || locked.Load() != 20-limit {
			t.Fatalf("compared %d, locked %d; want %d compared", compared.Load(), locked.Load(), limit)
		}
		c, err := e.s.CheckPIN(e.ctx, e.user.ID, "4821", limit, window)
		must(t, err)
		if c.OK || !c.Locked || !c.LockedUntil.Equal(e.clk.Now().Add(window)) {
			t.Fatalf("right pin while locked: %+v, want locked until %v", c, e.clk.Now().Add(window))
		}
		e.clk.Add(window)
		c, err = e.s.CheckPIN(e.ctx, e.user.ID, "1111", limit, window)
		must(t, err)
		if c.OK || c.Locked || c.Attempts != 1 {
			t.Fatalf("first guess of a new window: %+v", c)
		}
		for i := 2; i <= limit-1; i++ {
			if c, _ = e.s.CheckPIN(e.ctx, e.user.ID, "1111", limit, window); c.Attempts != i {
				t.Fatalf("guess %d: %+v", i, c)
			}
		}
		c, err = e.s.CheckPIN(e.ctx, e.user.ID, "4821", limit, window) // the last guess left is right
		must(t, err)
		if !c.OK {
			t.Fatalf("right pin as the last guess: %+v", c)
		}
		c, err = e.s.CheckPIN(e.ctx, e.user.ID, "1111", limit, window)
		must(t, err)
		if c.Attempts != 1 || c.Locked {
			t.Fatalf("after a right pin: %+v, want the count started again", c)
		}
		if _, err := e.s.CheckPIN(e.ctx, "usr_nobody", "4821", limit, window); vend.CodeOf(err) != store.ErrPINNotSet.Code {
			t.Fatalf("no pin: %v", err)
		}
	})
}

// A step-up token is spent once, by its user, in its scope, before it
// expires; a retry of the very request that spent it may present it again.
func TestStepUpTokens(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		other, err := e.s.CreateUser(e.ctx, "other@example.com", "correct horse")
		must(t, err)
		tok, exp, err := e.s.IssueStepUpToken(e.ctx, e.user.ID, "", 5*time.Minute)
		must(t, err)
		if !strings.HasPrefix(tok, store.StepUpPrefix) || !exp.Equal(e.clk.Now().Add(5*time.Minute)) {
			t.Fatalf("token %q expires %v", tok, exp)
		}
		var n int
		must(t, e.s.DB().QueryRowContext(e.ctx, `SELECT COUNT(*) FROM step_up_tokens WHERE hash = $1`, []byte(tok)).Scan(&n))
		if n != 0 {
			t.Fatal("the token is stored in clear")
		}
		wantCode(t, e.s.UseStepUpToken(e.ctx, other.ID, tok, "top_up", "top_up:k1"), store.ErrStepUpToken.Code)
		must(t, e.s.UseStepUpToken(e.ctx, e.user.ID, tok, "top_up", "top_up:k1"))
		must(t, e.s.UseStepUpToken(e.ctx, e.user.ID, tok, "top_up", "top_up:k1")) // the same request retried
		wantCode(t, e.s.UseStepUpToken(e.ctx, e.user.ID, tok, "top_up", "top_up:k2"), store.ErrStepUpToken.Code)
		wantCode(t, e.s.UseStepUpToken(e.ctx, e.user.ID, tok, "session", ""), store.ErrStepUpToken.Code)

		// Without a request key a spent token never works again.
		t2, _, err := e.s.IssueStepUpToken(e.ctx, e.user.ID, "", time.Minute)
		must(t, err)
		must(t, e.s.UseStepUpToken(e.ctx, e.user.ID, t2, "pin", ""))
		wantCode(t, e.s.UseStepUpToken(e.ctx, e.user.ID, t2, "pin", ""), store.ErrStepUpToken.Code)

		// A scoped token serves its scope only.
		t3, _, err := e.s.IssueStepUpToken(e.ctx, e.user.ID, "withdrawal", time.Minute)
		must(t, err)
		wantCode(t, e.s.UseStepUpToken(e.ctx, e.user.ID, t3, "top_up", "a"), store.ErrStepUpToken.Code)
		must(t, e.s.UseStepUpToken(e.ctx, e.user.ID, t3, "withdrawal", "b"))

		// Expired: refused, then pruned after the grace.
		t4, _, err := e.s.IssueStepUpToken(e.ctx, e.user.ID, "", time.Minute)
		must(t, err)
		e.clk.Add(time.Minute)
		wantCode(t, e.s.UseStepUpToken(e.ctx, e.user.ID, t4, "session", "s"), store.ErrStepUpToken.Code)
		wantCode(t, e.s.UseStepUpToken(e.ctx, e.user.ID, "su_unknown", "session", "s"), store.ErrStepUpToken.Code)

		// Two requests racing for one token: one wins.
		t5, _, err := e.s.IssueStepUpToken(e.ctx, e.user.ID, "", time.Minute)
		must(t, err)
		var won atomic.Int32
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if e.s.UseStepUpToken(e.ctx, e.user.ID, t5, "session", "session:key-"+string(rune('a'+i))) == nil {
					won.Add(1)
				}
			}()
		}
		wg.Wait()
		if won.Load() != 1 {
			t.Fatalf("%d requests spent one token", won.Load())
		}
		if _, _, err := e.s.IssueStepUpToken(e.ctx, e.user.ID, "", 0); vend.CodeOf(err) != store.ErrInput.Code {
			t.Fatalf("zero ttl: %v", err)
		}
		e.clk.Add(2 * time.Hour)
		p, err := e.s.Prune(e.ctx, store.Retention{})
		must(t, err)
		if p["step_up_tokens"] != 5 {
			t.Fatalf("pruned %d step-up tokens, want 5", p["step_up_tokens"])
		}
	})
}
