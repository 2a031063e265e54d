package ble

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	goble "beaconvend/hw/ble/goble"
	"beaconvend/hw/ble/goble/linux/hci"
	"beaconvend/hw/ble/goble/linux/hci/cmd"
	"golang.org/x/sys/unix"
)

// fakeController stands in for go-ble's *hci.HCI: no HCI adapter exists
// where these tests run. It records the command sequence; fail makes the
// named step fail.
type fakeController struct {
	mu      sync.Mutex
	ops     []string
	sent    []hci.Command
	fail    map[string]error
	handler goble.AdvHandler
	done    chan bool
	closed  chan struct{}
	once    sync.Once
}

var _ controller = (*fakeController)(nil)

func newFakeController() *fakeController {
	return &fakeController{fail: map[string]error{}, done: make(chan bool), closed: make(chan struct{})}
}

func (f *fakeController) op(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ops = append(f.ops, name)
	return f.fail[name]
}

func (f *fakeController) Send(c hci.Command, _ hci.CommandRP) error {
	if e, ok := c.(*cmd.LESetAdvertiseEnable); ok { // recorded as go-ble's Advertise and StopAdvertising were
		if e.AdvertisingEnable == 1 {
			return f.op("advertise")
		}
		return f.op("stop")
	}
	f.mu.Lock()
	f.sent = append(f.sent, c)
	f.mu.Unlock()
	return f.op(fmt.Sprintf("send %T", c))
}
func (f *fakeController) SetAdvertisement(ad, sr []byte) error {
	return f.op(fmt.Sprintf("set %x/%x", ad, sr))
}
func (f *fakeController) Accept() (goble.Conn, error) {
	<-f.closed
	return nil, errors.New("closed")
}
func (f *fakeController) Scan(allowDup bool) error {
	return f.op(fmt.Sprintf("scan dup=%v", allowDup))
}
func (f *fakeController) StopScanning() error { return f.op("stop scan") }
func (f *fakeController) SetAdvHandler(h goble.AdvHandler) error {
	f.handler = h
	return nil
}
func (f *fakeController) Done() <-chan bool { return f.done }
func (f *fakeController) Error() error      { return errors.New("skt: device gone") }
func (f *fakeController) Close() error {
	f.once.Do(func() { close(f.closed) })
	return f.op("close")
}

func (f *fakeController) takeOps() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	ops := f.ops
	f.ops = nil
	return ops
}

func testHCI(t *testing.T, o *HCIOpts) (*HCI, *fakeController) {
	t.Helper()
	if o == nil {
		o = DefaultHCIOpts()
	}
	min, max, err := advInterval(o)
	if err != nil {
		t.Fatal(err)
	}
	f := newFakeController()
	return newHCI(f, o, min, max), f
}

func TestHCIAdvertiseStopsSetsAndRestarts(t *testing.T) {
	h, f := testHCI(t, nil)
	adv := []byte{2, 1, 6}
	for i, sr := range [][]byte{nil, {2, 9, 'x'}} {
		if err := h.Advertise(t.Context(), adv, sr); err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprint([]string{"stop", "send *cmd.LESetRandomAddress", "send *cmd.LESetAdvertisingParameters",
			fmt.Sprintf("set %x/%x", adv, sr), "advertise"})
		if got := fmt.Sprint(f.takeOps()); got != want {
			t.Errorf("Advertise #%d ops %s\nwant %s", i, got, want)
		}
		p := f.sent[len(f.sent)-1].(*cmd.LESetAdvertisingParameters)
		wantType := uint8(advNonconnInd)
		if sr != nil {
			wantType = advScanInd
		}
		if p.AdvertisingType != wantType || p.AdvertisingIntervalMin != 0x00A0 || p.AdvertisingIntervalMax != 0x00F0 ||
			p.OwnAddressType != 1 || p.AdvertisingChannelMap != 7 {
			t.Errorf("Advertise #%d parameters %+v", i, p)
		}
		ra := f.sent[len(f.sent)-2].(*cmd.LESetRandomAddress).RandomAddress
		if ra[5]&0xC0 != 0 {
			t.Errorf("random address %x is not non-resolvable private (MSBs %02b)", ra, ra[5]>>6)
		}
	}
	// Public address: no LE Set Random Address, own address type public.
	h, f = testHCI(t, &HCIOpts{IntervalMin: 200 * time.Millisecond, IntervalMax: 200 * time.Millisecond})
	if err := h.Advertise(t.Context(), adv, nil); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(f.takeOps()); got != fmt.Sprintf("[stop send *cmd.LESetAdvertisingParameters set %x/ advertise]", adv) {
		t.Errorf("public-address ops %s", got)
	}
	if p := f.sent[0].(*cmd.LESetAdvertisingParameters); p.OwnAddressType != 0 || p.AdvertisingIntervalMin != 320 {
		t.Errorf("parameters %+v", p)
	}
}

func TestHCIErrorsAreNotSwallowed(t *testing.T) {
	adv := []byte{2, 1, 6}
	refused := hci.ErrCommand(0x12) // Invalid HCI Command Parameters
	for _, step := range []string{"stop", "send *cmd.LESetRandomAddress", "send *cmd.LESetAdvertisingParameters", fmt.Sprintf("set %x/", adv), "advertise"} {
		h, f := testHCI(t, nil)
		f.fail[step] = refused
		err := h.Advertise(t.Context(), adv, nil)
		if !errors.Is(err, ErrRadio) || !errors.Is(err, refused) {
			t.Errorf("Advertise with %q failing = %v, want ErrRadio wrapping %v", step, err, refused)
		}
		ops := f.takeOps()
		if ops[len(ops)-1] != step {
			t.Errorf("with %q failing, ops went on: %v", step, ops)
		}
	}
	// Command Disallowed on stop (advertising already off, Bluetooth 4.x) is fine.
	h, f := testHCI(t, nil)
	f.fail["stop"] = hci.ErrDisallowed
	if err := h.Advertise(t.Context(), adv, nil); err != nil {
		t.Errorf("Advertise with stop disallowed = %v", err)
	}
	if err := h.Stop(); err != nil {
		t.Errorf("Stop disallowed = %v", err)
	}
	if err := h.Advertise(t.Context(), make([]byte, 32), nil); !errors.Is(err, ErrTooLong) {
		t.Errorf("Advertise(32 bytes) = %v, want ErrTooLong", err)
	}
	f.fail["close"] = errors.New("ebadf")
	if err := h.Close(); err == nil {
		t.Error("Close swallowed the close error")
	}
	if err := h.Advertise(t.Context(), adv, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Advertise after Close = %v, want ErrClosed", err)
	}
}

// fakeAdv is a go-ble advertisement with raw bytes, as *hci.Advertisement.
type fakeAdv struct {
	goble.Advertisement // nil: methods not overridden panic, like go-ble's on a bad event
	addr                string
	data, sr            []byte
}

func (a fakeAdv) Addr() goble.Addr {
	m, _ := net.ParseMAC(a.addr)
	return m
}
func (a fakeAdv) RSSI() int            { return -61 }
func (a fakeAdv) Data() []byte         { return a.data }
func (a fakeAdv) ScanResponse() []byte { return a.sr }

type panicAdv struct{ fakeAdv }

func (panicAdv) Data() []byte { panic("index out of range") }

func TestHCIScanReports(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	h, f := testHCI(t, &HCIOpts{ActiveScan: true, Now: func() time.Time { return at }})
	ctx, cancel := context.WithCancel(t.Context())
	got := make(chan Report, 10)
	errc := make(chan error, 1)
	go func() { errc <- h.Scan(ctx, func(r Report) { got <- r }) }()
	for h.scanFnSet() == false {
		time.Sleep(time.Millisecond)
	}
	f.handler(fakeAdv{addr: "c0:01:02:03:04:05", data: []byte{2, 1, 6}, sr: []byte{2, 9, 'x'}})
	f.handler(panicAdv{})
	f.handler(nil)
	r := <-got
	if r.Addr != "c0:01:02:03:04:05" || r.RSSI != -61 || string(r.Data) != "\x02\x01\x06" || string(r.ScanResp) != "\x02\x09x" || !r.At.Equal(at) {
		t.Errorf("report %+v", r)
	}
	if n := h.Malformed(); n != 2 {
		t.Errorf("Malformed() = %d, want 2", n)
	}
	if err := h.Scan(ctx, func(Report) {}); !errors.Is(err, ErrRunning) {
		t.Errorf("second Scan = %v, want ErrRunning", err)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("Scan() = %v", err)
	}
	// go-ble delivers reports on goroutines that may run after Scan returned.
	f.handler(fakeAdv{addr: "c0:01:02:03:04:05", data: []byte{2, 1, 6}})
	if len(got) != 0 {
		t.Error("report delivered after Scan returned")
	}
	ops := f.takeOps()
	if want := "[stop scan send *cmd.LESetScanParameters scan dup=true stop scan]"; fmt.Sprint(ops) != want {
		t.Errorf("ops %v, want %s", ops, want)
	}
	if p := f.sent[0].(*cmd.LESetScanParameters); p.LEScanType != 1 {
		t.Errorf("scan parameters %+v, want active", p)
	}

	// The adapter failing ends Scan with ErrRadio.
	h, f = testHCI(t, nil)
	close(f.done)
	if err := h.Scan(t.Context(), func(Report) {}); !errors.Is(err, ErrRadio) {
		t.Errorf("Scan on a failed adapter = %v, want ErrRadio", err)
	}
}

func (h *HCI) scanFnSet() bool {
	h.scanMu.Lock()
	defer h.scanMu.Unlock()
	return h.scanFn != nil
}

func TestAdvInterval(t *testing.T) {
	for _, tc := range []struct {
		lo, hi   time.Duration
		min, max uint16
		ok       bool
	}{
		{0, 0, 0x00A0, 0x00F0, true},
		{20 * time.Millisecond, 20 * time.Millisecond, 0x0020, 0x0020, true},
		{200 * time.Millisecond, 0, 320, 320, true},
		{10240 * time.Millisecond, 10240 * time.Millisecond, 0x4000, 0x4000, true},
		{10 * time.Millisecond, 0, 0, 0, false},
		{200 * time.Millisecond, 100 * time.Millisecond, 0, 0, false},
		{time.Second, 11 * time.Second, 0, 0, false},
	} {
		min, max, err := advInterval(&HCIOpts{IntervalMin: tc.lo, IntervalMax: tc.hi})
		if (err == nil) != tc.ok || min != tc.min || max != tc.max {
			t.Errorf("advInterval(%v, %v) = %#x, %#x, %v", tc.lo, tc.hi, min, max, err)
		}
	}
}

// TestOpenHCIWithoutBluetooth checks that opening an adapter on a kernel
// without Bluetooth fails with a clear error instead of hanging. Where the
// kernel has Bluetooth it would take an adapter away from bluetoothd, so it
// does not run there (the qemu/btvirt suite covers that case).
func TestOpenHCIWithoutBluetooth(t *testing.T) {
	fd, err := unix.Socket(unix.AF_BLUETOOTH, unix.SOCK_RAW, unix.BTPROTO_HCI)
	if err == nil {
		unix.Close(fd)
		t.Skip("this kernel has Bluetooth; opening an adapter is the btvirt suite's job")
	}
	h, err := OpenHCI(0, nil)
	if err == nil {
		h.Close()
		t.Fatal("OpenHCI succeeded without Bluetooth")
	}
	if !errors.Is(err, ErrRadio) {
		t.Errorf("OpenHCI = %v, want ErrRadio", err)
	}
	if _, err := OpenHCI(0, &HCIOpts{IntervalMin: time.Millisecond}); !errors.Is(err, ErrConfig) {
		t.Errorf("OpenHCI(1 ms) = %v, want ErrConfig", err)
	}
}

func TestNRPA(t *testing.T) {
	seen := map[[6]byte]bool{}
	for range 1000 {
		a := nrpa()
		if a[5]&0xC0 != 0 {
			t.Fatalf("nrpa() = %x: top bits set", a)
		}
		seen[a] = true
	}
	if len(seen) < 990 {
		t.Errorf("nrpa() repeated: %d distinct of 1000", len(seen))
	}
}

func TestHCIRandomAddressWhileScanning(t *testing.T) {
	h, f := testHCI(t, nil)
	h.scanning = true // first Advertise during a scan: public address
	if err := h.Advertise(t.Context(), []byte{2, 1, 6}, nil); err != nil {
		t.Fatal(err)
	}
	if p := f.sent[0].(*cmd.LESetAdvertisingParameters); p.OwnAddressType != 0 || len(f.sent) != 1 {
		t.Errorf("while scanning, before any random address: sent %v", f.sent)
	}
	h.scanning = false
	h.Advertise(t.Context(), []byte{2, 1, 6}, nil)
	h.scanning = true // later: keep the random address set before
	f.sent = nil
	h.Advertise(t.Context(), []byte{2, 1, 6}, nil)
	if p := f.sent[0].(*cmd.LESetAdvertisingParameters); p.OwnAddressType != 1 || len(f.sent) != 1 {
		t.Errorf("while scanning, after a random address: sent %v", f.sent)
	}
}
