package ble

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"beaconvend/app-protocol/beacon"
	"beaconvend/app-protocol/proxid"
	goble "beaconvend/hw/ble/goble"
	"beaconvend/hw/ble/goble/linux/hci/hcitest"
)

// These tests run the GATT host and the Beacon on go-ble's real HCI,
// L2CAP and ATT code over the fork's scripted controller (hcitest), and
// read back the HCI commands the host sent. Every wait is bounded by
// gwait; a hang fails the test.
const gwait = 3 * time.Second

// HCI opcodes the tests read.
const (
	opLESetAdvParams = 0x2006
	opLESetAdvData   = 0x2008
)

var gattKey = proxid.Key{0: 0xbe, 1: 0xac, 15: 0x17}

// fakeClock is the beacon's wall clock, moved by the test.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// rig is an HCI backend on a scripted controller with a Beacon and a
// GATTHost serving the TestService.
type rig struct {
	ctl   *hcitest.Controller
	h     *HCI
	b     *Beacon
	ts    *TestService
	clock *fakeClock
	k     uint8
	stop  func()
}

func newRig(t *testing.T, idle time.Duration, o *hcitest.Opts) *rig {
	t.Helper()
	return newRigOpts(t, &GATTOpts{IdleTimeout: idle}, o, time.Hour)
}

// newRigOpts is newRig with the host's options and the test service's
// notification tick.
func newRigOpts(t *testing.T, gopts *GATTOpts, o *hcitest.Opts, tick time.Duration) *rig {
	t.Helper()
	ctl := hcitest.New(o)
	type res struct {
		dev any
		err error
	}
	ch := make(chan res, 1)
	go func() {
		d, err := initHCI(goble.OptTransport(ctl))
		ch <- res{d, err}
	}()
	var r res
	select {
	case r = <-ch:
	case <-time.After(gwait):
		t.Fatal("go-ble's HCI Init did not return")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	ho := DefaultHCIOpts()
	min, max, err := advInterval(ho)
	if err != nil {
		t.Fatal(err)
	}
	h := newHCI(r.dev.(controller), ho, min, max)
	h.startAccept()

	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)} // a multiple of 4 s: a window start for K=2
	const k = 2
	b, err := NewBeacon(h, &proxid.Rotator{Key: gattKey, K: k}, &BeaconOpts{State: beacon.Idle, Recheck: 10 * time.Millisecond, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ts := NewTestService()
	ts.Tick = tick
	host, err := NewGATTHost(h, b, ts.Service, gopts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); b.Run(ctx) }()
	go func() { defer wg.Done(); host.Run(ctx) }()
	rg := &rig{ctl: ctl, h: h, b: b, ts: ts, clock: clock, k: k}
	rg.stop = func() {
		cancel()
		done := make(chan struct{})
		go func() { wg.Wait(); b.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(2 * closeWait):
			t.Error("beacon and GATT host did not stop")
		}
	}
	t.Cleanup(rg.stop)
	// Serving: the database (and so the service's handles) is built, under
	// h.mu, which this read of h.gatt orders before the test's reads.
	for deadline := time.Now().Add(gwait); ; time.Sleep(5 * time.Millisecond) {
		h.mu.Lock()
		serving := h.gatt != nil
		h.mu.Unlock()
		if serving {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the host never served")
		}
	}
	return rg
}

// onAir is one advertisement the host put on air: the PDU type and frame
// in force when it sent LE Set Advertising Enable (on).
type onAir struct {
	at    int // index of the enable command
	typ   byte
	frame beacon.Frame
}

func (a onAir) String() string {
	return fmt.Sprintf("#%d type=%d state=%v id=%x", a.at, a.typ, a.frame.State, a.frame.ID)
}

// advertised returns what went on air from command index from on.
func (rg *rig) advertised(t *testing.T, from int) []onAir {
	t.Helper()
	var out []onAir
	var typ byte = 0xff
	var data []byte
	for i, c := range rg.ctl.Commands() {
		switch c.Op {
		case opLESetAdvParams:
			typ = c.Params[4]
		case opLESetAdvData:
			data = c.Params[1 : 1+int(c.Params[0])]
		case hcitest.OpLESetAdvEnable:
			if i >= from && c.Params[0] == 1 {
				f, err := beacon.Decode(data, beacon.DefaultCompanyID)
				if err != nil {
					t.Fatalf("advertising data %x: %v", data, err)
				}
				out = append(out, onAir{i, typ, f})
			}
		}
	}
	return out
}

// waitAdv waits until an advertisement from command index from on
// satisfies ok, and returns it.
func (rg *rig) waitAdv(t *testing.T, from int, what string, ok func(onAir) bool) onAir {
	t.Helper()
	deadline := time.Now().Add(gwait)
	for time.Now().Before(deadline) {
		for _, a := range rg.advertised(t, from) {
			if ok(a) {
				return a
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no advertisement %s within %v; on air since #%d: %v", what, gwait, from, rg.advertised(t, from))
	return onAir{}
}

func (rg *rig) mark() int { return len(rg.ctl.Commands()) }

func (rg *rig) id() proxid.ID {
	return proxid.Compute(gattKey, proxid.Counter(rg.clock.Now()), rg.k)
}

// waitDisconnect waits for the host to send HCI Disconnect for handle h.
func (rg *rig) waitDisconnect(t *testing.T, from int, h uint16, within time.Duration) {
	t.Helper()
	if _, err := rg.ctl.WaitCommand(hcitest.OpDisconnect, from, func(p []byte) bool {
		return len(p) >= 2 && binary.LittleEndian.Uint16(p) == h
	}, within); err != nil {
		t.Fatalf("no Disconnect for handle %#x within %v: %v", h, within, err)
	}
}

func le16(v uint16) []byte { return []byte{byte(v), byte(v >> 8)} }

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

func (rg *rig) roundTrip(t *testing.T, h uint16, req []byte) []byte {
	t.Helper()
	rg.ctl.SendATT(h, req)
	b, err := rg.ctl.ReadATT(h, gwait)
	if err != nil {
		t.Fatalf("ATT % x on handle %#x: no answer: %v", req, h, err)
	}
	return b
}

// served checks that central h is served: MTU exchange and a read of the
// test value.
func (rg *rig) served(t *testing.T, h uint16) {
	t.Helper()
	if got := rg.roundTrip(t, h, []byte{0x02, 23, 0}); !bytes.Equal(got, cat([]byte{0x03}, le16(goble.MaxMTU))) {
		t.Fatalf("Exchange MTU on %#x answered % x", h, got)
	}
	rh := rg.ts.Service.Characteristics[0].ValueHandle
	v := rg.ts.Value()
	if got, want := rg.roundTrip(t, h, cat([]byte{0x0a}, le16(rh))), cat([]byte{0x0b}, v[:min(len(v), 22)]); !bytes.Equal(got, want) {
		t.Fatalf("Read of the test value on %#x answered % x, want % x", h, got, want)
	}
}

var (
	connectable = func(a onAir) bool { return a.typ == advInd }
	nonconn     = func(a onAir) bool { return a.typ == advNonconnInd }
)

func TestGATTConnectBusyRotateDisconnect(t *testing.T) {
	rg := newRig(t, time.Minute, nil)
	first := rg.waitAdv(t, 0, "connectable idle", func(a onAir) bool { return connectable(a) && a.frame.State == beacon.Idle })
	if first.frame.ID != rg.id() {
		t.Errorf("first frame ID %x, want %x", first.frame.ID, rg.id())
	}
	for _, a := range rg.advertised(t, first.at) {
		if !connectable(a) {
			t.Errorf("before any central: %v, want ADV_IND only", a)
		}
	}

	// Connect: non-connectable, busy, same window's ID.
	m := rg.mark()
	const h = 0x40
	rg.ctl.Connect(h, hcitest.RolePeripheral)
	busy := rg.waitAdv(t, m, "non-connectable busy", func(a onAir) bool { return nonconn(a) && a.frame.State == beacon.Busy })
	if busy.frame.ID != first.frame.ID {
		t.Errorf("busy frame ID %x, want the window's %x", busy.frame.ID, first.frame.ID)
	}
	rg.served(t, h)
	if l := rg.b.Link(); l != LinkConnected {
		t.Errorf("beacon link %v, want connected", l)
	}

	// The machine faults while the phone is connected: still busy on air.
	if err := rg.b.SetState(beacon.Fault); err != nil {
		t.Fatal(err)
	}
	// Rotation continues while connected: the next window's ID, busy,
	// non-connectable.
	m2 := rg.mark()
	rg.clock.Add(4 * time.Second)
	rot := rg.waitAdv(t, m2, "rotated while connected", func(a onAir) bool { return a.frame.ID == rg.id() })
	if !nonconn(rot) || rot.frame.State != beacon.Busy || rot.frame.ID == first.frame.ID {
		t.Errorf("rotation while connected put %v on air, want ADV_NONCONN_IND busy with a new ID", rot)
	}
	for _, a := range rg.advertised(t, m) {
		if !nonconn(a) || a.frame.State != beacon.Busy {
			t.Errorf("while connected: %v, want ADV_NONCONN_IND busy", a)
		}
	}
	rg.served(t, h)

	// Disconnect: connectable again, with the real state (fault now).
	m3 := rg.mark()
	rg.ctl.Disconnect(h)
	back := rg.waitAdv(t, m3, "connectable with the real state", connectable)
	if back.frame.State != beacon.Fault || back.frame.ID != rg.id() {
		t.Errorf("after the disconnection %v, want ADV_IND state fault ID %x", back, rg.id())
	}
	if l := rg.b.Link(); l != LinkListening {
		t.Errorf("beacon link %v, want listening", l)
	}
	if s := rg.h.GATTStats(); s.Connections != 1 || s.Refused != 0 || s.IdleDrops != 0 {
		t.Errorf("stats %+v", s)
	}

	// A state change while listening goes on air connectable.
	m4 := rg.mark()
	if err := rg.b.SetState(beacon.Idle); err != nil {
		t.Fatal(err)
	}
	rg.waitAdv(t, m4, "connectable idle", func(a onAir) bool { return connectable(a) && a.frame.State == beacon.Idle })
}

func TestGATTIdleTimeoutDropsSilentCentral(t *testing.T) {
	const idle = 300 * time.Millisecond
	rg := newRig(t, idle, nil)
	rg.waitAdv(t, 0, "connectable", connectable)

	// A central that keeps talking stays.
	const h = 0x40
	m := rg.mark()
	rg.ctl.Connect(h, hcitest.RolePeripheral)
	rg.waitAdv(t, m, "busy", nonconn)
	var silent time.Time
	for i := range 6 {
		if i > 0 {
			time.Sleep(idle / 3)
		}
		rg.served(t, h)
		silent = time.Now()
	}
	if _, err := rg.ctl.WaitCommand(hcitest.OpDisconnect, m, nil, time.Millisecond); err == nil {
		t.Fatal("a talking central was disconnected")
	}
	// Then falls silent: dropped after idle, not before.
	rg.waitDisconnect(t, m, h, idle+gwait)
	if d := time.Since(silent); d < idle-50*time.Millisecond {
		t.Errorf("silent central dropped after %v, want about %v", d, idle)
	}
	rg.waitAdv(t, m, "connectable after the idle drop", connectable)
	if s := rg.h.GATTStats(); s.IdleDrops != 1 {
		t.Errorf("stats %+v, want 1 idle drop", s)
	}
	// A central that says nothing at all is dropped too, and the next one
	// is served.
	m = rg.mark()
	rg.ctl.Connect(0x41, hcitest.RolePeripheral)
	rg.waitDisconnect(t, m, 0x41, idle+gwait)
	m = rg.mark()
	rg.waitAdv(t, m-1, "connectable", connectable)
	rg.ctl.Connect(0x42, hcitest.RolePeripheral)
	rg.served(t, 0x42)
}

func TestGATTSecondCentralRefused(t *testing.T) {
	rg := newRig(t, time.Minute, nil)
	rg.waitAdv(t, 0, "connectable", connectable)
	m := rg.mark()
	rg.ctl.Connect(0x40, hcitest.RolePeripheral)
	rg.waitAdv(t, m, "busy", nonconn)
	rg.served(t, 0x40)

	m = rg.mark()
	rg.ctl.Connect(0x41, hcitest.RolePeripheral) // the virtual controller would not let it in; a host must refuse it anyway
	rg.waitDisconnect(t, m, 0x41, gwait)
	rg.served(t, 0x40) // the first is untouched
	for _, c := range rg.ctl.Commands()[m:] {
		if c.Op == hcitest.OpDisconnect && binary.LittleEndian.Uint16(c.Params) == 0x40 {
			t.Error("the first central was disconnected")
		}
	}
	for _, a := range rg.advertised(t, m) {
		if connectable(a) {
			t.Errorf("refusing the second central put %v on air", a)
		}
	}
	if s := rg.h.GATTStats(); s.Connections != 1 || s.Refused != 1 {
		t.Errorf("stats %+v, want 1 connection, 1 refused", s)
	}
	m = rg.mark()
	rg.ctl.Disconnect(0x40)
	rg.waitAdv(t, m, "connectable", connectable)
	rg.ctl.Connect(0x42, hcitest.RolePeripheral)
	rg.served(t, 0x42)
}

// The malformed PDUs of issue 17 (each crashed or hung go-ble as pinned),
// then a disconnection in the middle of a multi-fragment notification:
// advertising resumes connectable and the next central is served.
func TestGATTHostileCentral(t *testing.T) {
	rg := newRig(t, time.Minute, &hcitest.Opts{LEBufCnt: 2})
	rg.waitAdv(t, 0, "connectable", connectable)
	const h = 0x40
	m := rg.mark()
	rg.ctl.Connect(h, hcitest.RolePeripheral)
	rg.waitAdv(t, m, "busy", nonconn)
	ch := rg.ts.Service.Characteristics
	cccd, static := ch[2].CCCD.Handle, ch[3].ValueHandle
	errRsp := func(op byte, h uint16, code goble.ATTError) []byte {
		return cat([]byte{0x01, op}, le16(h), []byte{byte(code)})
	}
	for _, c := range []struct {
		name     string
		req, rsp []byte
	}{
		{"execute write on an empty queue", []byte{0x18, 0x01}, []byte{0x19}},
		{"1-byte write to a CCCD", cat([]byte{0x12}, le16(cccd), []byte{0x01}), errRsp(0x12, cccd, goble.ErrInvalAttrValueLen)},
		{"read of a static value longer than MTU-1", cat([]byte{0x0a}, le16(static)), cat([]byte{0x0b}, TestStaticValue[:22])},
		{"read blob past its end", cat([]byte{0x0c}, le16(static), le16(301)), errRsp(0x0c, static, goble.ErrInvalidOffset)},
	} {
		if got := rg.roundTrip(t, h, c.req); !bytes.Equal(got, c.rsp) {
			t.Errorf("%s: % x answered % x, want % x", c.name, c.req, got, c.rsp)
		}
	}
	// A long value, then a subscription whose first notification (200
	// bytes, 9 ACL fragments) cannot finish: the link stops moving, and
	// the central goes.
	if got := rg.roundTrip(t, h, []byte{0x02, 247, 0}); got[0] != 0x03 {
		t.Fatalf("Exchange MTU: % x", got)
	}
	wh := ch[1].ValueHandle
	long := bytes.Repeat([]byte{0xaa}, 200)
	if got := rg.roundTrip(t, h, cat([]byte{0x12}, le16(wh), long)); !bytes.Equal(got, []byte{0x13}) {
		t.Fatalf("write: % x", got)
	}
	rg.ctl.Hold(true)
	rg.ctl.SendATT(h, cat([]byte{0x12}, le16(cccd), le16(1)))
	deadline := time.Now().Add(gwait)
	for rg.ts.Subscriptions() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if rg.ts.Subscriptions() == 0 {
		t.Fatal("notification not started")
	}
	time.Sleep(100 * time.Millisecond) // the notification waits for a buffer
	m = rg.mark()
	rg.ctl.Disconnect(h)
	rg.waitAdv(t, m, "connectable after a disconnection mid-notification", func(a onAir) bool {
		return connectable(a) && a.frame.State == beacon.Idle
	})
	rg.ctl.Hold(false)
	m = rg.mark()
	rg.ctl.Connect(0x41, hcitest.RolePeripheral)
	rg.waitAdv(t, m, "busy for the next central", nonconn)
	rg.served(t, 0x41)
}

func TestGATTOptsAndErrors(t *testing.T) {
	rg := newRig(t, time.Minute, nil)
	if err := rg.h.ServeGATT(t.Context(), rg.ts.Service, nil, func(Link) {}); !errors.Is(err, ErrRunning) {
		t.Errorf("second ServeGATT = %v, want ErrRunning", err)
	}
	if err := rg.h.ServeGATT(t.Context(), nil, nil, func(Link) {}); !errors.Is(err, ErrConfig) {
		t.Errorf("ServeGATT(nil service) = %v, want ErrConfig", err)
	}
	if err := rg.h.ServeGATT(t.Context(), rg.ts.Service, &GATTOpts{IdleTimeout: -1}, func(Link) {}); !errors.Is(err, ErrConfig) {
		t.Errorf("ServeGATT(idle -1) = %v, want ErrConfig", err)
	}
	air, err := NewAirAdvertiser(&AirOpts{Group: "239.255.66.9:47499"})
	if err != nil {
		t.Fatal(err)
	}
	defer air.Close()
	b, err := NewBeacon(air, &proxid.Rotator{Key: gattKey, K: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewGATTHost(rg.h, b, rg.ts.Service, nil); !errors.Is(err, ErrUnsupported) {
		t.Errorf("NewGATTHost on the simulated air = %v, want ErrUnsupported", err)
	}
	if err := b.SetLink(Link(7)); !errors.Is(err, ErrConfig) {
		t.Errorf("SetLink(7) = %v, want ErrConfig", err)
	}
}

// With NotifyKeepsAlive a central that only listens to notifications
// stays; without it the same central is dropped.
func TestGATTNotifyKeepsAlive(t *testing.T) {
	const idle = 300 * time.Millisecond
	for _, keep := range []bool{true, false} {
		t.Run(fmt.Sprintf("keep=%v", keep), func(t *testing.T) {
			rg := newRigOpts(t, &GATTOpts{IdleTimeout: idle, NotifyKeepsAlive: keep}, nil, 50*time.Millisecond)
			rg.waitAdv(t, 0, "connectable", connectable)
			const h = 0x40
			m := rg.mark()
			rg.ctl.Connect(h, hcitest.RolePeripheral)
			cccd := rg.ts.Service.Characteristics[2].CCCD.Handle
			if got := rg.roundTrip(t, h, cat([]byte{0x12}, le16(cccd), le16(1))); !bytes.Equal(got, []byte{0x13}) {
				t.Fatalf("subscribe: % x", got)
			}
			_, err := rg.ctl.WaitCommand(hcitest.OpDisconnect, m, nil, 4*idle)
			switch {
			case keep && err == nil:
				t.Errorf("a central receiving notifications every 50 ms was dropped (idle %v)", idle)
			case !keep && err != nil:
				t.Errorf("a central that only listens was not dropped after %v: %v", 4*idle, err)
			}
		})
	}
}
