package uplink

import (
	"testing"
	"time"
)

// TestRetryDelaySpreadsAndIsBounded: boards refused together (a broker
// node lost, its devices reconnecting at once) must not ask again in
// step, and no pause exceeds 7.5 s.
func TestRetryDelaySpreadsAndIsBounded(t *testing.T) {
	for _, attempt := range []int{1, 2, 10, 25, 1000} {
		base := min(time.Duration(attempt)*200*time.Millisecond, 5*time.Second)
		seen := map[time.Duration]bool{}
		for range 200 {
			d := retryDelay(attempt)
			if d < base/2 || d >= base*3/2 {
				t.Fatalf("retryDelay(%d) = %s, want in [%s, %s)", attempt, d, base/2, base*3/2)
			}
			seen[d] = true
		}
		if len(seen) < 100 {
			t.Errorf("retryDelay(%d): %d distinct pauses in 200, want them spread", attempt, len(seen))
		}
	}
}
