package httpapi

import (
	"strconv"
	"testing"
	"time"
)

// A flood of distinct keys never grows a limiter table past its bound,
// and a key still limited when the table is full of fresh ones keeps its
// state unless evicted arbitrarily.
func TestLimiterTableBounded(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tb := newLimiterTable(RateLimit{Per: time.Minute, Burst: 2}, 1000)
	for i := range 20_000 {
		tb.take("k"+strconv.Itoa(i), now)
		if n := tb.len(); n > 1000 {
			t.Fatalf("after %d keys the table holds %d, want at most 1000", i+1, n)
		}
	}
	// Refilled entries are evicted first: after a quiet minute the
	// table empties down to what is still in use.
	tb2 := newLimiterTable(RateLimit{Per: time.Second, Burst: 1}, 10)
	for i := range 10 {
		tb2.take("old"+strconv.Itoa(i), now)
	}
	tb2.take("new", now.Add(time.Minute))
	if n := tb2.len(); n != 1 {
		t.Fatalf("after the refill the table holds %d, want 1 (only the new key)", n)
	}
	if d := tb2.take("new", now.Add(time.Minute)); d <= 0 {
		t.Fatal("second take of a 1-burst bucket was allowed")
	}
}
