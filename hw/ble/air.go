package ble

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"beaconvend/app-protocol/beacon"
	"beaconvend/app-protocol/vend"
)

// Simulated air defaults.
const (
	// EnvAir names the environment variable that overrides DefaultAir
	// when AirOpts.Group is empty, so that parallel demos or test runs on
	// one host can each have their own air.
	EnvAir = "BEACONVEND_BLE_AIR"
	// DefaultAir is the IPv4 multicast group and UDP port of the simulated
	// air: an address in the organisation-local scope 239.255.0.0/16,
	// sent with TTL 0 on the loopback interface only.
	DefaultAir = "239.255.66.1:47474"
	// DefaultAirInterval is how often a simulated advertiser repeats its
	// frame, like a radio's advertising interval.
	DefaultAirInterval = 100 * time.Millisecond
	// DefaultAirRSSI is the RSSI, dBm, listeners see from a simulated
	// advertiser: a phone about a metre from the machine.
	DefaultAirRSSI = -50
	// DefaultAirJitter is the ± dBm of uniform noise added to each report.
	DefaultAirJitter = 3

	datagramVersion = 1
	datagramHeader  = 11 // magic (2), version, flags, address (6), RSSI
	// MaxDatagramLen is the longest valid datagram: header, two length
	// bytes and two 31-byte payloads.
	MaxDatagramLen = datagramHeader + 2 + 2*beacon.MaxAdvLen
)

var datagramMagic = [2]byte{'B', 'V'}

// Datagram is what a simulated advertiser sends once per advertising
// interval: the same advertising and scan response bytes a radio would send,
// with the device address and the RSSI listeners should report.
//
// Wire format, version 1 (at most MaxDatagramLen = 75 bytes):
//
//	0-1   magic "BV"
//	2     version (1)
//	3     flags, reserved, 0
//	4-9   device address, most significant byte first
//	10    RSSI, int8 dBm
//	11    advertising data length n (0-31), then n bytes
//	      scan response length m (0-31), then m bytes; nothing follows
type Datagram struct {
	Addr     [6]byte
	RSSI     int8
	Adv      []byte
	ScanResp []byte
}

// MarshalBinary encodes d. Errors: ErrTooLong.
func (d Datagram) MarshalBinary() ([]byte, error) {
	if err := checkLen(d.Adv, d.ScanResp); err != nil {
		return nil, err
	}
	b := make([]byte, 0, datagramHeader+2+len(d.Adv)+len(d.ScanResp))
	b = append(b, datagramMagic[0], datagramMagic[1], datagramVersion, 0)
	b = append(b, d.Addr[:]...)
	b = append(b, byte(d.RSSI), byte(len(d.Adv)))
	b = append(b, d.Adv...)
	b = append(b, byte(len(d.ScanResp)))
	return append(b, d.ScanResp...), nil
}

// ParseDatagram decodes a datagram; Adv and ScanResp alias b (ScanResp is
// nil when empty). Any deviation from the format (magic, version, flags,
// lengths, trailing bytes) is ErrDatagram.
func ParseDatagram(b []byte) (Datagram, error) {
	var d Datagram
	if len(b) < datagramHeader+2 {
		return d, vend.Errorf(ErrDatagram, "%d bytes, want at least %d", len(b), datagramHeader+2)
	}
	if b[0] != datagramMagic[0] || b[1] != datagramMagic[1] {
		return d, vend.Errorf(ErrDatagram, "magic %02x%02x", b[0], b[1])
	}
	if b[2] != datagramVersion {
		return d, vend.Errorf(ErrDatagram, "version %d", b[2])
	}
	if b[3] != 0 {
		return d, vend.Errorf(ErrDatagram, "reserved flags 0x%02x", b[3])
	}
	copy(d.Addr[:], b[4:10])
	d.RSSI = int8(b[10])
	p := b[datagramHeader:]
	n := int(p[0])
	if n > beacon.MaxAdvLen || 1+n+1 > len(p) {
		return Datagram{}, vend.Errorf(ErrDatagram, "advertising data length %d in %d bytes", n, len(p)-1)
	}
	d.Adv, p = p[1:1+n:1+n], p[1+n:]
	m := int(p[0])
	if m > beacon.MaxAdvLen || 1+m != len(p) {
		return Datagram{}, vend.Errorf(ErrDatagram, "scan response length %d in %d bytes", m, len(p)-1)
	}
	if m > 0 {
		d.ScanResp = p[1 : 1+m : 1+m]
	}
	return d, nil
}

// FormatAddr returns a device address as "aa:bb:cc:dd:ee:ff".
func FormatAddr(a [6]byte) string { return net.HardwareAddr(a[:]).String() }

// ParseAddr parses "aa:bb:cc:dd:ee:ff" (either case; '-' also separates).
// Errors: ErrConfig.
func ParseAddr(s string) ([6]byte, error) {
	var a [6]byte
	h := strings.NewReplacer(":", "", "-", "").Replace(s)
	if len(h) != 12 || len(s) != 17 {
		return a, vend.Errorf(ErrConfig, "device address %q: want aa:bb:cc:dd:ee:ff", s)
	}
	if _, err := hex.Decode(a[:], []byte(h)); err != nil {
		return a, vend.Errorf(ErrConfig, "device address %q: want aa:bb:cc:dd:ee:ff", s)
	}
	return a, nil
}

// randomStaticAddr returns a random static device address (two most
// significant bits set, Core Spec Vol 6 Part B §1.3.2.1).
func randomStaticAddr() [6]byte {
	var a [6]byte
	for i := range a {
		a[i] = byte(rand.Uint32())
	}
	a[0] |= 0xC0
	return a
}

// AirOpts configures the simulated air. The zero value of a field means its
// default, except Jitter (zero: no noise).
type AirOpts struct {
	// Group is the air: "ip:port" of an IPv4 multicast group. Empty means
	// $BEACONVEND_BLE_AIR, else DefaultAir. Advertisers and scanners on
	// different groups or ports do not hear each other.
	Group    string
	Addr     string        // advertiser's device address "aa:bb:cc:dd:ee:ff"; empty: a random static address
	RSSI     int           // dBm the listeners report, −127..20; 0 means DefaultAirRSSI
	Jitter   int           // ± dBm of uniform noise per datagram; 0 means none
	Interval time.Duration // advertising interval; 0 means DefaultAirInterval
	Now      func() time.Time
	Logger   *slog.Logger // nil discards
}

// DefaultAirOpts returns the defaults with DefaultAirJitter noise.
func DefaultAirOpts() *AirOpts { return &AirOpts{Jitter: DefaultAirJitter} }

// AirGroup returns the group AirOpts.Group (or the environment, or the
// default) names. Errors: ErrConfig unless it is an IPv4 multicast address
// with a non-zero port.
func AirGroup(group string) (netip.AddrPort, error) {
	if group == "" {
		group = os.Getenv(EnvAir)
	}
	if group == "" {
		group = DefaultAir
	}
	ap, err := netip.ParseAddrPort(group)
	if err != nil || !ap.Addr().Is4() || !ap.Addr().IsMulticast() || ap.Port() == 0 {
		return netip.AddrPort{}, vend.Errorf(ErrConfig, "air %q: want an IPv4 multicast group and port like %s", group, DefaultAir)
	}
	return ap, nil
}

// AirAdvertiser is an Advertiser on the simulated air: while advertising,
// it multicasts a Datagram with its frame every Interval (plus a random
// 0–10 ms delay, as a radio's advDelay) on the loopback interface.
type AirAdvertiser struct {
	group  netip.AddrPort
	conn   *net.UDPConn
	addr   [6]byte
	o      AirOpts
	log    *slog.Logger
	stop   chan struct{}
	wg     sync.WaitGroup
	sent   atomic.Uint64
	errs   atomic.Uint64
	mu     sync.Mutex
	adv    []byte
	sr     []byte
	on     bool
	closed bool
	failed bool // the last send failed; log only transitions
}

// NewAirAdvertiser opens a simulated advertiser (nil o means
// DefaultAirOpts). Errors: ErrConfig, and the socket's.
func NewAirAdvertiser(o *AirOpts) (*AirAdvertiser, error) {
	if o == nil {
		o = DefaultAirOpts()
	}
	g, err := AirGroup(o.Group)
	if err != nil {
		return nil, err
	}
	a := &AirAdvertiser{group: g, o: *o, stop: make(chan struct{}), log: o.Logger}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if o.Addr == "" {
		a.addr = randomStaticAddr()
	} else if a.addr, err = ParseAddr(o.Addr); err != nil {
		return nil, err
	}
	if a.o.RSSI == 0 {
		a.o.RSSI = DefaultAirRSSI
	}
	if a.o.RSSI < -127 || a.o.RSSI > 20 || a.o.Jitter < 0 || a.o.Jitter > 20 || a.o.Interval < 0 {
		return nil, vend.Errorf(ErrConfig, "air rssi %d, jitter %d, interval %v", a.o.RSSI, a.o.Jitter, a.o.Interval)
	}
	if a.o.Interval == 0 {
		a.o.Interval = DefaultAirInterval
	}
	if a.conn, err = dialAir(g); err != nil {
		return nil, fmt.Errorf("ble: air %s: %w", g, err)
	}
	a.wg.Add(1)
	go a.loop()
	return a, nil
}

// Addr returns the advertiser's device address.
func (a *AirAdvertiser) Addr() string { return FormatAddr(a.addr) }

// Group returns the air the advertiser sends on.
func (a *AirAdvertiser) Group() netip.AddrPort { return a.group }

// Advertise replaces the frame on air and sends it at once, so a change is
// heard within one datagram. Errors: ErrTooLong, ErrClosed, the socket's.
func (a *AirAdvertiser) Advertise(ctx context.Context, adv, scanResp []byte) error {
	if err := checkLen(adv, scanResp); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return ErrClosed
	}
	a.adv = append([]byte(nil), adv...)
	a.sr = append([]byte(nil), scanResp...)
	a.on = true
	return a.sendLocked()
}

// Stop stops sending. It is a no-op when not advertising.
func (a *AirAdvertiser) Stop() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.on = false
	return nil
}

// Close stops sending and closes the socket. Later calls return nil.
func (a *AirAdvertiser) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed, a.on = true, false
	close(a.stop)
	a.mu.Unlock()
	a.wg.Wait()
	return a.conn.Close()
}

// AirAdvertiserStats counts datagrams.
type AirAdvertiserStats struct {
	Sent   uint64 // datagrams sent
	Errors uint64 // failed sends
}

// Stats returns the counters.
func (a *AirAdvertiser) Stats() AirAdvertiserStats {
	return AirAdvertiserStats{Sent: a.sent.Load(), Errors: a.errs.Load()}
}

func (a *AirAdvertiser) loop() {
	defer a.wg.Done()
	t := time.NewTimer(a.o.Interval)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-t.C:
		}
		a.mu.Lock()
		if a.on {
			if err := a.sendLocked(); err != nil && !a.failed {
				a.log.Warn("ble: air send failed", "air", a.group, "err", err)
			}
		}
		a.mu.Unlock()
		t.Reset(a.o.Interval + rand.N(10*time.Millisecond))
	}
}

func (a *AirAdvertiser) sendLocked() error {
	rssi := a.o.RSSI
	if a.o.Jitter > 0 {
		rssi += rand.IntN(2*a.o.Jitter+1) - a.o.Jitter
	}
	rssi = max(-127, min(20, rssi))
	b, err := Datagram{Addr: a.addr, RSSI: int8(rssi), Adv: a.adv, ScanResp: a.sr}.MarshalBinary()
	if err != nil {
		return err
	}
	if _, err = a.conn.WriteToUDPAddrPort(b, a.group); err != nil {
		a.errs.Add(1)
		a.failed = true
		return fmt.Errorf("ble: air send: %w", err)
	}
	a.failed = false
	a.sent.Add(1)
	return nil
}

// AirScanner is a Scanner on the simulated air. Each Scan opens its own
// socket, so any number of scanners, in one process or many, hear every
// advertiser on the same group.
type AirScanner struct {
	group     netip.AddrPort
	now       func() time.Time
	received  atomic.Uint64
	malformed atomic.Uint64
}

// NewAirScanner returns a scanner on o's group (nil o means
// DefaultAirOpts; only Group and Now matter). Errors: ErrConfig.
func NewAirScanner(o *AirOpts) (*AirScanner, error) {
	if o == nil {
		o = DefaultAirOpts()
	}
	g, err := AirGroup(o.Group)
	if err != nil {
		return nil, err
	}
	s := &AirScanner{group: g, now: o.Now}
	if s.now == nil {
		s.now = time.Now
	}
	return s, nil
}

// Group returns the air the scanner listens to.
func (s *AirScanner) Group() netip.AddrPort { return s.group }

// AirScannerStats counts datagrams.
type AirScannerStats struct {
	Received  uint64 // well-formed datagrams passed to fn
	Malformed uint64 // datagrams dropped by ParseDatagram
}

// Stats returns the counters over all of the scanner's Scans.
func (s *AirScanner) Stats() AirScannerStats {
	return AirScannerStats{Received: s.received.Load(), Malformed: s.malformed.Load()}
}

// Scan listens until ctx is done and calls fn for every well-formed
// datagram; malformed ones are counted and dropped. It returns ctx.Err(),
// or the socket's error.
func (s *AirScanner) Scan(ctx context.Context, fn func(Report)) error {
	conn, err := listenAir(s.group)
	if err != nil {
		return fmt.Errorf("ble: air %s: %w", s.group, err)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer func() {
		if stop() {
			conn.Close()
		}
	}()
	buf := make([]byte, 2*MaxDatagramLen)
	for {
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, net.ErrClosed) {
				return ErrClosed
			}
			return fmt.Errorf("ble: air receive: %w", err)
		}
		d, err := ParseDatagram(buf[:n])
		if err != nil {
			s.malformed.Add(1)
			continue
		}
		s.received.Add(1)
		r := Report{Addr: FormatAddr(d.Addr), RSSI: int(d.RSSI), Data: append([]byte(nil), d.Adv...), At: s.now()}
		if d.ScanResp != nil {
			r.ScanResp = append([]byte(nil), d.ScanResp...)
		}
		fn(r)
	}
}

// Interface guards.
var (
	_ Advertiser = (*AirAdvertiser)(nil)
	_ Scanner    = (*AirScanner)(nil)
)
