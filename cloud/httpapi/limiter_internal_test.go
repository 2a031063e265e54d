package httpapi

import (
	"net/http/httptest"
	"net/netip"
	"runtime"
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
	// A throttled key outlives a flood of fresh ones.
	tb3 := newLimiterTable(RateLimit{Per: time.Minute, Burst: 2}, 1000)
	tb3.take("attacker", now)
	tb3.take("attacker", now)
	for i := range 50_000 {
		tb3.take("flood"+strconv.Itoa(i), now)
	}
	if d := tb3.take("attacker", now); d <= 0 {
		t.Fatal("a flood of new keys reset a throttled key")
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

// The client address is the peer's unless the peer is a trusted proxy;
// IPv6 clients count by their /64.
func TestClientAddr(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	for _, tc := range []struct {
		remote  string
		xff     []string
		trusted bool
		want    string
	}{
		{"192.0.2.1:5000", nil, false, "192.0.2.1"},
		{"192.0.2.1:5000", []string{"198.51.100.1"}, false, "192.0.2.1"},
		{"10.1.2.3:5000", []string{"198.51.100.1"}, false, "10.1.2.3"},
		{"10.1.2.3:5000", []string{"198.51.100.1"}, true, "198.51.100.1"},
		{"10.1.2.3:5000", []string{"203.0.113.9, 198.51.100.1, 10.9.9.9"}, true, "198.51.100.1"},
		{"10.1.2.3:5000", []string{"203.0.113.9", "198.51.100.1"}, true, "198.51.100.1"},
		{"10.1.2.3:5000", []string{"garbage, 10.9.9.9"}, true, "10.9.9.9"},
		{"10.1.2.3:5000", []string{"10.9.9.9"}, true, "10.9.9.9"},
		{"[2001:db8:1:2:3:4:5:6]:5000", nil, false, "2001:db8:1:2::/64"},
		{"[fd00::1]:5000", []string{"2001:db8:aa:bb::7"}, true, "2001:db8:aa:bb::/64"},
		{"[::ffff:192.0.2.7]:5000", nil, false, "192.0.2.7"},
	} {
		s := &Server{}
		if tc.trusted {
			s.opts.TrustedProxies = proxies
		}
		r := httptest.NewRequest("POST", "/v1/auth/login", nil)
		r.RemoteAddr = tc.remote
		for _, h := range tc.xff {
			r.Header.Add("X-Forwarded-For", h)
		}
		if got := s.clientAddr(r); got != tc.want {
			t.Errorf("clientAddr(%s, XFF %q, trusted %v) = %s, want %s", tc.remote, tc.xff, tc.trusted, got, tc.want)
		}
	}
}

// BenchmarkLimiterFlood: one take per new key in a full table (the
// eviction path a flood of addresses drives).
func BenchmarkLimiterFlood(b *testing.B) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tb := newLimiterTable(RateLimit{Per: time.Second, Burst: 20}, DefaultMaxLimiters)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		tb.take("k"+strconv.Itoa(i), now)
		i++
	}
}

// BenchmarkLimiterMemory reports the heap of a full table.
func BenchmarkLimiterMemory(b *testing.B) {
	var before, after runtime.MemStats
	var tb *limiterTable
	for b.Loop() {
		runtime.GC()
		runtime.ReadMemStats(&before)
		tb = newLimiterTable(RateLimit{Per: time.Second, Burst: 20}, DefaultMaxLimiters)
		now := time.Now()
		for i := range DefaultMaxLimiters {
			tb.take("203.0."+strconv.Itoa(i>>8)+"."+strconv.Itoa(i&255), now)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
	}
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "MiB")
	runtime.KeepAlive(tb)
}
