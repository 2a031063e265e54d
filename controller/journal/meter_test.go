package journal_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/controller/journal"
)

// TestMeterCommitBound drives three running sessions with a reading every
// 100 ms for 30 s of fake time and checks the flash-wear bound: at most one
// meter commit per running session per MeterInterval, plus exactly one
// commit per transition; and Invariant 3: the committed reading is never
// more than MeterInterval old.
func TestMeterCommitBound(t *testing.T) {
	clk := newClock()
	j := mustOpen(t, "", &journal.Opts{Now: clk.Now, MeterInterval: time.Second})
	var ids []vend.SessionID
	for _, m := range []string{"m1", "m2", "m3"} {
		ids = append(ids, mustStart(t, j, m, clk.Now(), 0))
	}
	transitions := uint64(6)
	if st := j.Stats(); st.TransitionCommits != transitions || st.MeterCommits != 0 {
		t.Fatalf("after start: %+v", st)
	}
	const (
		step = 100 * time.Millisecond
		span = 30 * time.Second
	)
	lastMeterAt := make(map[vend.SessionID]time.Time)
	start := clk.Now()
	var units uint64
	for clk.Now().Sub(start) < span {
		clk.Advance(step)
		units += 7
		for _, id := range ids {
			if err := j.Meter(id, units, units); err != nil {
				t.Fatal(err)
			}
			lastMeterAt[id] = clk.Now()
		}
		if err := j.FlushDue(); err != nil {
			t.Fatal(err)
		}
		// Invariant 3: the durable reading is at most one interval old.
		for _, id := range ids {
			s, err := j.Get(id)
			if err != nil {
				t.Fatal(err)
			}
			stale := time.Duration(units-s.Units) / 7 * step
			if stale >= time.Second {
				t.Fatalf("at %s session %s durable units %d, latest %d: %s stale", clk.Now().Sub(start), id, s.Units, units, stale)
			}
		}
	}
	st := j.Stats()
	bound := uint64(len(ids)) * uint64(span/time.Second)
	if st.MeterCommits > bound {
		t.Fatalf("%d meter commits for %d sessions over %s; bound %d", st.MeterCommits, len(ids), span, bound)
	}
	if st.MeterCommits < bound/2 {
		t.Fatalf("%d meter commits, expected about %d: readings are not being committed", st.MeterCommits, bound)
	}
	// Each transition commits once, with the latest reading.
	for _, id := range ids {
		clk.Advance(10 * time.Millisecond)
		units++
		if err := j.Meter(id, units, units); err != nil {
			t.Fatal(err)
		}
		if err := j.Transition(id, journal.Ending, func(s *journal.Session) { s.Outcome = vend.OutcomeCompleted }); err != nil {
			t.Fatal(err)
		}
		transitions++
		if s, _ := j.Get(id); s.Units != units || s.State != journal.Ending {
			t.Fatalf("after transition: units %d state %s, want %d ending", s.Units, s.State, units)
		}
		if _, err := j.EndSession(id, signer); err != nil {
			t.Fatal(err)
		}
		transitions++
	}
	st2 := j.Stats()
	if st2.TransitionCommits != transitions || st2.MeterCommits != st.MeterCommits {
		t.Fatalf("transitions: %+v, want %d transition commits and no more meter commits", st2, transitions)
	}
	if st2.Commits != st2.MeterCommits+st2.TransitionCommits+st2.OutboxCommits+st2.OtherCommits {
		t.Fatalf("Stats do not add up: %+v", st2)
	}
	t.Logf("%d sessions, %s: %+v", len(ids), span, st2)
}

// TestRunFlushesIdleReadings checks that Run commits a pending reading
// within MeterInterval plus a tick when no further Meter call comes.
func TestRunFlushesIdleReadings(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		j := mustOpen(t, "", &journal.Opts{MeterInterval: time.Second})
		id := mustStart(t, j, "m1", time.Now(), 0)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- j.Run(ctx) }()
		if err := j.Meter(id, 42, 42); err != nil { // pending: the start committed just now
			t.Fatal(err)
		}
		if s, _ := j.Get(id); s.Units != 0 {
			t.Fatalf("reading committed at once: %d", s.Units)
		}
		time.Sleep(1100 * time.Millisecond)
		synctest.Wait()
		if s, _ := j.Get(id); s.Units != 42 {
			t.Fatalf("after 1.1 s units = %d, want 42", s.Units)
		}
		cancel()
		if err := <-done; err != context.Canceled {
			t.Fatalf("Run = %v", err)
		}
		if st := j.Stats(); st.MeterCommits != 1 {
			t.Fatalf("meter commits = %d, want 1", st.MeterCommits)
		}
	})
}
