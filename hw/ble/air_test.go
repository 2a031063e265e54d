package ble_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"beaconvend/app-protocol/beacon"
	"beaconvend/app-protocol/proxid"
	"beaconvend/hw/ble"
)

// testAir returns a group and port of its own for one test, so parallel
// tests and other processes on the host do not hear each other.
func testAir(t *testing.T) string {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	port := c.LocalAddr().(*net.UDPAddr).Port
	c.Close()
	return fmt.Sprintf("239.255.%d.%d:%d", rand.IntN(256), 1+rand.IntN(254), port)
}

// collector gathers reports from a scanner running in the background.
type collector struct {
	mu      sync.Mutex
	reports []ble.Report
	cancel  context.CancelFunc
	done    chan error
	once    sync.Once
}

func startScan(t *testing.T, s ble.Scanner) *collector {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	c := &collector{cancel: cancel, done: make(chan error, 1)}
	go func() {
		c.done <- s.Scan(ctx, func(r ble.Report) {
			c.mu.Lock()
			c.reports = append(c.reports, r)
			c.mu.Unlock()
		})
	}()
	t.Cleanup(func() { c.stop(t) })
	return c
}

func (c *collector) stop(t *testing.T) []ble.Report {
	t.Helper()
	c.once.Do(func() {
		c.cancel()
		if err := <-c.done; !errors.Is(err, context.Canceled) {
			t.Errorf("Scan() = %v, want context.Canceled", err)
		}
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reports
}

func (c *collector) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.reports)
}

func mustAirScanner(t *testing.T, group string) *ble.AirScanner {
	t.Helper()
	s, err := ble.NewAirScanner(&ble.AirOpts{Group: group})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustAirAdvertiser(t *testing.T, o *ble.AirOpts) *ble.AirAdvertiser {
	t.Helper()
	a, err := ble.NewAirAdvertiser(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func TestAirTwoBeaconsTwoListeners(t *testing.T) {
	t.Parallel()
	air := testAir(t)
	keys := []proxid.Key{{1}, {2}}
	addrs := []string{"c0:00:00:00:00:01", "c0:00:00:00:00:02"}
	states := []beacon.State{beacon.Idle, beacon.Busy}
	rssi := []int{-50, -70}

	var scanners []*collector
	var airScanners []*ble.AirScanner
	for range 2 {
		s := mustAirScanner(t, air)
		airScanners = append(airScanners, s)
		scanners = append(scanners, startScan(t, s))
	}
	time.Sleep(50 * time.Millisecond) // let the scanners join

	for i := range 2 {
		a := mustAirAdvertiser(t, &ble.AirOpts{Group: air, Addr: addrs[i], RSSI: rssi[i], Jitter: 3, Interval: 50 * time.Millisecond})
		b, err := ble.NewBeacon(a, &proxid.Rotator{Key: keys[i], K: 0}, &ble.BeaconOpts{State: states[i], Name: fmt.Sprintf("machine-%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { defer close(done); b.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done; b.Close() })
	}
	time.Sleep(2300 * time.Millisecond) // K=0: a new ID every second

	for li, c := range scanners {
		reports := c.stop(t)
		ids := map[string]map[proxid.ID]bool{}
		for _, r := range reports {
			i := -1
			for j, a := range addrs {
				if r.Addr == a {
					i = j
				}
			}
			if i < 0 {
				t.Fatalf("listener %d: report from unknown address %q", li, r.Addr)
			}
			f, err := r.Frame(beacon.DefaultCompanyID)
			if err != nil {
				t.Fatalf("listener %d: Decode(%x): %v", li, r.Data, err)
			}
			if f.State != states[i] {
				t.Errorf("listener %d: %s state %v, want %v", li, r.Addr, f.State, states[i])
			}
			c := proxid.Counter(r.At)
			if f.ID != proxid.Compute(keys[i], c, 0) && f.ID != proxid.Compute(keys[i], c-1, 0) {
				t.Errorf("listener %d: %s ID %v is not the key's ID at %v (or a second before)", li, r.Addr, f.ID, r.At)
			}
			if r.RSSI < rssi[i]-3 || r.RSSI > rssi[i]+3 {
				t.Errorf("listener %d: %s RSSI %d, want %d±3", li, r.Addr, r.RSSI, rssi[i])
			}
			if name, err := beacon.DecodeScanResponse(r.ScanResp); err != nil || name != fmt.Sprintf("machine-%d", i) {
				t.Errorf("listener %d: %s scan response name %q, %v", li, r.Addr, name, err)
			}
			if ids[r.Addr] == nil {
				ids[r.Addr] = map[proxid.ID]bool{}
			}
			ids[r.Addr][f.ID] = true
		}
		for _, a := range addrs {
			if len(ids[a]) < 2 {
				t.Errorf("listener %d heard %d IDs from %s in 2.3 s, want a rotation (≥2)", li, len(ids[a]), a)
			}
		}
		if n := len(reports); n < 40 {
			t.Errorf("listener %d got %d reports, want ≥40 (2 advertisers × 50 ms × 2.3 s)", li, n)
		}
		if st := airScanners[li].Stats(); st.Malformed != 0 || st.Received != uint64(len(reports)) {
			t.Errorf("listener %d Stats() = %+v with %d reports", li, st, len(reports))
		}
	}
}

func TestAirGroupsAreIsolated(t *testing.T) {
	t.Parallel()
	air := testAir(t)
	var other string
	for other = testAir(t); other[:len(other)-6] == air[:len(air)-6]; other = testAir(t) {
	}
	// Same port, different group: the case the kernel mixes up unless
	// the listener binds the group and turns IP_MULTICAST_ALL off.
	_, port, _ := net.SplitHostPort(air)
	host, _, _ := net.SplitHostPort(other)
	other = net.JoinHostPort(host, port)

	same := startScan(t, mustAirScanner(t, air))
	diff := startScan(t, mustAirScanner(t, other))
	time.Sleep(50 * time.Millisecond)
	a := mustAirAdvertiser(t, &ble.AirOpts{Group: air, Interval: 20 * time.Millisecond})
	if err := a.Advertise(t.Context(), []byte{2, 1, 6}, nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if same.len() == 0 {
		t.Errorf("scanner on %s heard nothing", air)
	}
	if n := diff.len(); n != 0 {
		t.Errorf("scanner on %s heard %d datagrams sent to %s", other, n, air)
	}
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	n := same.len()
	time.Sleep(150 * time.Millisecond)
	if m := same.len(); m != n {
		t.Errorf("heard %d datagrams after Stop", m-n)
	}
}

func TestAirAdvertiserErrors(t *testing.T) {
	t.Parallel()
	a := mustAirAdvertiser(t, &ble.AirOpts{Group: testAir(t)})
	if err := a.Advertise(t.Context(), make([]byte, 32), nil); !errors.Is(err, ble.ErrTooLong) {
		t.Errorf("Advertise(32 bytes) = %v, want ErrTooLong", err)
	}
	if err := a.Advertise(t.Context(), nil, make([]byte, 32)); !errors.Is(err, ble.ErrTooLong) {
		t.Errorf("Advertise(scan response of 32 bytes) = %v, want ErrTooLong", err)
	}
	a.Close()
	if err := a.Advertise(t.Context(), []byte{2, 1, 6}, nil); !errors.Is(err, ble.ErrClosed) {
		t.Errorf("Advertise after Close = %v, want ErrClosed", err)
	}
	for _, o := range []*ble.AirOpts{
		{Group: "127.0.0.1:4000"},
		{Group: "239.255.1.1"},
		{Group: "239.255.1.1:0"},
		{Group: "[ff02::1]:4000"},
		{Group: "239.255.1.1:4000", Addr: "nonsense"},
		{Group: "239.255.1.1:4000", RSSI: 50},
		{Group: "239.255.1.1:4000", Jitter: -1},
	} {
		if _, err := ble.NewAirAdvertiser(o); !errors.Is(err, ble.ErrConfig) {
			t.Errorf("NewAirAdvertiser(%+v) = %v, want ErrConfig", o, err)
		}
	}
}

func TestAirGroupFromEnv(t *testing.T) {
	t.Setenv(ble.EnvAir, "239.255.9.9:4999")
	s, err := ble.NewAirScanner(nil)
	if err != nil {
		t.Fatal(err)
	}
	if g := s.Group().String(); g != "239.255.9.9:4999" {
		t.Errorf("Group() = %s, want the environment's", g)
	}
	t.Setenv(ble.EnvAir, "")
	if g, _ := ble.AirGroup(""); g.String() != ble.DefaultAir {
		t.Errorf("AirGroup(\"\") = %s, want %s", g, ble.DefaultAir)
	}
}

func TestDatagramRoundTrip(t *testing.T) {
	adv, _ := beacon.Frame{ID: proxid.ID{1, 2, 3}}.Encode()
	sr, _ := beacon.EncodeScanResponse("x")
	for _, d := range []ble.Datagram{
		{Addr: [6]byte{0xC0, 1, 2, 3, 4, 5}, RSSI: -50, Adv: adv, ScanResp: sr},
		{RSSI: -127, Adv: adv},
		{RSSI: 20, Adv: []byte{}},
		{Adv: bytes.Repeat([]byte{0}, 31), ScanResp: bytes.Repeat([]byte{1}, 31)},
	} {
		b, err := d.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		got, err := ble.ParseDatagram(b)
		if err != nil {
			t.Fatalf("ParseDatagram(%x): %v", b, err)
		}
		if got.Addr != d.Addr || got.RSSI != d.RSSI || !bytes.Equal(got.Adv, d.Adv) || !bytes.Equal(got.ScanResp, d.ScanResp) {
			t.Errorf("ParseDatagram(%x) = %+v, want %+v", b, got, d)
		}
	}
	good, _ := ble.Datagram{Adv: []byte{2, 1, 6}}.MarshalBinary()
	for _, b := range [][]byte{
		nil,
		good[:len(good)-1],
		append(append([]byte{}, good...), 0),
		append([]byte{'X'}, good[1:]...),
		append([]byte{'B', 'V', 2}, good[3:]...),
		append([]byte{'B', 'V', 1, 1}, good[4:]...),
		append(append([]byte{}, good[:11]...), 32),
	} {
		if _, err := ble.ParseDatagram(b); !errors.Is(err, ble.ErrDatagram) {
			t.Errorf("ParseDatagram(%x) = %v, want ErrDatagram", b, err)
		}
	}
}

func FuzzDatagram(f *testing.F) {
	adv, _ := beacon.Frame{ID: proxid.ID{9}}.Encode()
	sr, _ := beacon.EncodeScanResponse("seed")
	for _, d := range []ble.Datagram{{RSSI: -50, Adv: adv, ScanResp: sr}, {Adv: adv}} {
		b, _ := d.MarshalBinary()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ble.ParseDatagram(b)
		if err != nil {
			if !errors.Is(err, ble.ErrDatagram) {
				t.Fatalf("ParseDatagram(%x) = %v, want ErrDatagram", b, err)
			}
			return
		}
		if len(b) > ble.MaxDatagramLen {
			t.Fatalf("ParseDatagram accepted %d bytes", len(b))
		}
		again, err := d.MarshalBinary()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("MarshalBinary(ParseDatagram(%x)) = %x, %v", b, again, err)
		}
	})
}
