package proxid_test

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"beaconvend/app-protocol/proxid"
)

var key = proxid.Key{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}

func TestComputeRotatesOnWindowBoundaries(t *testing.T) {
	const k = 5
	base := uint32(1_800_000_000) // aligned to 32: 1_800_000_000 % 32 == 0
	if proxid.WindowStart(base, k) != base {
		t.Fatalf("test base not aligned")
	}
	a := proxid.Compute(key, base, k)
	if b := proxid.Compute(key, base+31, k); b != a {
		t.Errorf("same window: %s != %s", b, a)
	}
	if c := proxid.Compute(key, base+32, k); c == a {
		t.Errorf("next window: ID did not rotate")
	}
	if d := proxid.Compute(key, base-1, k); d == a {
		t.Errorf("previous window: ID did not differ")
	}
	other := key
	other[0] ^= 1
	if proxid.Compute(other, base, k) == a {
		t.Errorf("another key gives the same ID")
	}
	if proxid.Compute(key, base, 6) == proxid.Compute(key, base, 5) {
		t.Errorf("k is not bound into the ID")
	}
}

func TestRotator(t *testing.T) {
	now := time.Unix(1_800_000_010, 0)
	r := proxid.Rotator{Key: key, K: 5, Now: func() time.Time { return now }}
	id, w, next := r.Current()
	if w != 1_800_000_000 || !next.Equal(time.Unix(1_800_000_032, 0)) {
		t.Errorf("window %d next %v", w, next)
	}
	if id != proxid.Compute(key, w, 5) {
		t.Errorf("id mismatch")
	}
}

func TestParse(t *testing.T) {
	id := proxid.ID{0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3}
	got, err := proxid.ParseID(id.String())
	if err != nil || got != id {
		t.Errorf("ParseID(%s) = %s, %v", id, got, err)
	}
	for _, bad := range []string{"", "deadbeef", "deadbeef0001020g", "deadbeef000102030"} {
		if _, err := proxid.ParseID(bad); !errors.Is(err, proxid.ErrIDText) {
			t.Errorf("ParseID(%q) = %v", bad, err)
		}
	}
	if _, err := proxid.ParseKey(key.String()); err != nil {
		t.Error(err)
	}
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func devKey(i int) proxid.Key {
	var k proxid.Key
	k[0], k[1], k[2], k[15] = byte(i), byte(i>>8), byte(i>>16), 0x5a
	return k
}

func TestResolverWindows(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	r, err := proxid.NewResolver(5, c.now)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		if err := r.Add(fmt.Sprintf("dev-%d", i), devKey(i)); err != nil {
			t.Fatal(err)
		}
	}
	w := uint32(1_800_000_000)
	at := func(dev int, start uint32) proxid.ID { return proxid.Compute(devKey(dev), start, 5) }
	cases := []struct {
		name   string
		id     proxid.ID
		offset int
		err    error
	}{
		{"current", at(7, w), 0, nil},
		{"previous (phone clock behind)", at(7, w-32), -1, nil},
		{"next (board clock ahead)", at(7, w+32), 1, nil},
		{"two windows old: copied off the air", at(7, w-64), 0, proxid.ErrUnknown},
		{"two windows ahead", at(7, w+64), 0, proxid.ErrUnknown},
		{"never issued", proxid.ID{1, 2, 3}, 0, proxid.ErrUnknown},
	}
	for _, tc := range cases {
		m, err := r.Resolve(tc.id)
		if !errors.Is(err, tc.err) {
			t.Errorf("%s: Resolve = %+v, %v; want %v", tc.name, m, err, tc.err)
			continue
		}
		if err == nil && (m.Device != "dev-7" || m.Offset != tc.offset || m.Window != uint32(int64(w)+int64(tc.offset)*32)) {
			t.Errorf("%s: Resolve = %+v", tc.name, m)
		}
	}
	// Roll one window: the old "next" becomes current, the old "previous" is refused.
	c.add(32 * time.Second)
	if m, err := r.Resolve(at(7, w+32)); err != nil || m.Offset != 0 {
		t.Errorf("after roll, current: %+v %v", m, err)
	}
	if _, err := r.Resolve(at(7, w-32)); !errors.Is(err, proxid.ErrUnknown) {
		t.Errorf("after roll, w-1 of old: %v", err)
	}
	if m, err := r.Resolve(at(7, w+64)); err != nil || m.Offset != 1 {
		t.Errorf("after roll, new next: %+v %v", m, err)
	}
	// A jump of many windows (stalled process).
	c.add(10 * 32 * time.Second)
	nw := w + 11*32
	if st := r.Advance(); st.Windows != 3 || st.Devices != 50 {
		t.Errorf("Advance after a jump of 10 windows = %+v, want 3 windows recomputed for 50 devices", st)
	}
	for _, off := range []int{-1, 0, 1} {
		start := uint32(int64(nw) + int64(off)*32)
		if m, err := r.Resolve(at(42, start)); err != nil || m.Device != "dev-42" || m.Offset != off {
			t.Errorf("after jump, offset %d: %+v %v", off, m, err)
		}
	}
	// Remove and re-key.
	r.Remove("dev-42")
	if _, err := r.Resolve(at(42, nw)); !errors.Is(err, proxid.ErrUnknown) {
		t.Errorf("removed device still resolves: %v", err)
	}
	if err := r.Add("dev-43", devKey(1000)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Resolve(at(43, nw)); !errors.Is(err, proxid.ErrUnknown) {
		t.Errorf("old key after rotation still resolves: %v", err)
	}
	if m, err := r.Resolve(proxid.Compute(devKey(1000), nw, 5)); err != nil || m.Device != "dev-43" {
		t.Errorf("new key: %+v %v", m, err)
	}
	if r.Len() != 49 {
		t.Errorf("Len = %d, want 49", r.Len())
	}
	if err := r.Add("Bad/ID", key); !errors.Is(err, proxid.ErrDevice) {
		t.Errorf("Add(bad id) = %v", err)
	}
	if _, err := proxid.NewResolver(16, nil); !errors.Is(err, proxid.ErrK) {
		t.Errorf("NewResolver(16) = %v", err)
	}
}

func TestResolverAmbiguous(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	r, _ := proxid.NewResolver(5, c.now)
	r.Add("dev-a", key)
	r.Add("dev-b", key) // same identity key: a provisioning mistake, every ID collides
	if _, err := r.Resolve(proxid.Compute(key, 1_800_000_000, 5)); !errors.Is(err, proxid.ErrAmbiguous) {
		t.Errorf("collision: %v, want ErrAmbiguous", err)
	}
}

// Lookups, adds and rolls run concurrently without races (go test -race)
// and without a device disappearing mid-roll.
func TestResolverConcurrent(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	r, _ := proxid.NewResolver(5, c.now)
	for i := 0; i < 200; i++ {
		r.Add(fmt.Sprintf("dev-%d", i), devKey(i))
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 4)
	for g := 0; g < 3; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				now := c.now()
				id := proxid.Compute(devKey(i%200), proxid.Window(now, 5), 5)
				if _, err := r.Lookup(id); err != nil && !errors.Is(err, proxid.ErrUnknown) {
					errs <- err
					return
				}
			}
		}()
	}
	for i := 0; i < 20; i++ {
		c.add(32 * time.Second)
		r.Advance()
		r.Add(fmt.Sprintf("new-%d", i), devKey(10000+i))
	}
	close(stop)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	now := proxid.Window(c.now(), 5)
	for i := 0; i < 200; i++ {
		if _, err := r.Lookup(proxid.Compute(devKey(i), now, 5)); err != nil {
			t.Fatalf("dev-%d after rolls: %v", i, err)
		}
	}
}

const fleet = 100_000

func fleetResolver(b *testing.B, c *clock) *proxid.Resolver {
	b.Helper()
	r, _ := proxid.NewResolver(proxid.DefaultK, c.now)
	for i := 0; i < fleet; i++ {
		if err := r.Add(fmt.Sprintf("dev-%06d", i), devKey(i)); err != nil {
			b.Fatal(err)
		}
	}
	return r
}

// BenchmarkResolve100k: one lookup among 100,000 devices (300,000 live IDs).
func BenchmarkResolve100k(b *testing.B) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	r := fleetResolver(b, c)
	w := proxid.Window(c.now(), proxid.DefaultK)
	ids := make([]proxid.ID, 1024)
	for i := range ids {
		ids[i] = proxid.Compute(devKey(i*97%fleet), w, proxid.DefaultK)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := r.Lookup(ids[i&1023]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkRoll100k: the incremental rebuild when the window rolls: one new
// window of 100,000 IDs computed and swapped in.
func BenchmarkRoll100k(b *testing.B) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	r := fleetResolver(b, c)
	b.ReportAllocs()
	for b.Loop() {
		c.add(32 * time.Second)
		if st := r.Advance(); st.Windows != 1 {
			b.Fatalf("rolled %d windows", st.Windows)
		}
	}
}

// BenchmarkMemory100k reports the heap a 100,000-device resolver holds.
func BenchmarkMemory100k(b *testing.B) {
	var r *proxid.Resolver
	var before, after runtime.MemStats
	for b.Loop() {
		runtime.GC()
		runtime.ReadMemStats(&before)
		r = fleetResolver(b, &clock{t: time.Unix(1_800_000_000, 0)})
		runtime.GC()
		runtime.ReadMemStats(&after)
	}
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "MiB")
	runtime.KeepAlive(r)
}

func BenchmarkCompute(b *testing.B) {
	b.ReportAllocs()
	var c uint32 = 1_800_000_000
	for b.Loop() {
		proxid.Compute(key, c, 5)
		c += 32
	}
}
