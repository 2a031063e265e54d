package ble

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	goble "beaconvend/hw/ble/goble"
	"beaconvend/hw/ble/goble/linux/hci"
	"beaconvend/hw/ble/goble/linux/hci/cmd"
)

// HCI advertising PDU types (LE Set Advertising Parameters, Advertising_Type).
const (
	advInd        = 0x00 // ADV_IND: connectable and scannable
	advScanInd    = 0x02 // ADV_SCAN_IND: scannable, not connectable
	advNonconnInd = 0x03 // ADV_NONCONN_IND: neither
)

// controller is the part of go-ble's *hci.HCI the backend drives; tests
// replace it with a fake that records the command sequence.
type controller interface {
	Send(c hci.Command, r hci.CommandRP) error
	SetAdvertisement(ad, sr []byte) error
	Scan(allowDup bool) error
	StopScanning() error
	SetAdvHandler(h goble.AdvHandler) error
	Accept() (goble.Conn, error)
	Done() <-chan bool
	Error() error
	Close() error
}

var _ controller = (*hci.HCI)(nil)

// HCIOpts configures the go-ble backend. Zero durations mean their defaults.
type HCIOpts struct {
	// IntervalMin and IntervalMax bound the advertising interval, 20 ms to
	// 10.24 s in steps of 0.625 ms; defaults 100 ms and 150 ms. Controllers
	// older than Bluetooth 5 refuse less than 100 ms for the
	// non-connectable PDUs the beacon sends.
	IntervalMin, IntervalMax time.Duration
	// RandomAddress advertises from a fresh non-resolvable private address
	// on every Advertise, so the device address never outlives a proximity
	// ID; false advertises from the adapter's public address. While the
	// same adapter scans the address cannot change and is kept.
	RandomAddress bool
	// ActiveScan sends scan requests while scanning so that Reports carry
	// scan responses (see the go-ble caveats in the package doc).
	ActiveScan bool
	Now        func() time.Time // Report timestamps; nil means time.Now
	Logger     *slog.Logger     // nil discards
}

// DefaultHCIOpts returns 100–150 ms advertising with random addresses and
// passive scanning.
func DefaultHCIOpts() *HCIOpts {
	return &HCIOpts{IntervalMin: 100 * time.Millisecond, IntervalMax: 150 * time.Millisecond, RandomAddress: true}
}

// HCI is the radio backend: an Advertiser and Scanner on a Linux HCI
// adapter through go-ble, holding the adapter's HCI user channel.
type HCI struct {
	ctl       controller
	o         HCIOpts
	min, max  uint16 // advertising interval, 0.625 ms units
	log       *slog.Logger
	malformed atomic.Uint64

	mu       sync.Mutex // serialises commands; guards the fields below
	closed   bool
	scanning bool
	randSet  bool // a random address has been set

	scanMu sync.Mutex // serialises fn calls; guards scanFn
	scanFn func(Report)

	// The GATT host (gatt_linux.go), guarded by mu.
	gatt     *gattServe // the service being served, nil when none
	central  goble.Conn // the connected central, until its link(LinkListening) returned
	linked   bool       // a central is connected: advertise non-connectable whatever is asked
	gstats   GATTStats
	accepted sync.WaitGroup // the accept loop
}

// OpenHCI opens adapter hci<index> (-1: the first one free) through go-ble's
// linux.NewDevice, which binds the HCI user channel: the process needs root
// or CAP_NET_ADMIN, and bluetoothd must not hold the
// adapter (go-ble downs it first; stop bluetoothd or tell it to leave the
// adapter alone). nil o means DefaultHCIOpts. Errors: ErrConfig, and
// ErrRadio wrapping go-ble's.
func OpenHCI(index int, o *HCIOpts) (*HCI, error) {
	if o == nil {
		o = DefaultHCIOpts()
	}
	min, max, err := advInterval(o)
	if err != nil {
		return nil, err
	}
	dev, err := initHCI(goble.OptDeviceID(index))
	if err != nil {
		return nil, fmt.Errorf("%w: open hci%d (needs root or CAP_NET_ADMIN, and bluetoothd not holding it): %w", ErrRadio, index, err)
	}
	h := newHCI(dev, o, min, max)
	h.startAccept()
	return h, nil
}

// initHCI opens and initialises go-ble's HCI layer, without go-ble's
// Device: its accept loop would serve every central go-ble's way, while
// the GATT host here decides who is served (gatt_linux.go).
func initHCI(opts ...goble.Option) (*hci.HCI, error) {
	dev, err := hci.NewHCI(opts...)
	if err != nil {
		return nil, err
	}
	if err := dev.Init(); err != nil {
		dev.Close()
		return nil, err
	}
	return dev, nil
}

func newHCI(ctl controller, o *HCIOpts, min, max uint16) *HCI {
	h := &HCI{ctl: ctl, o: *o, min: min, max: max, log: o.Logger}
	if h.o.Now == nil {
		h.o.Now = time.Now
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	// Installed once, before any scan can deliver reports: go-ble reads
	// the handler without a lock.
	ctl.SetAdvHandler(h.onAdv)
	return h
}

// advInterval converts the options' interval to 0.625 ms units.
func advInterval(o *HCIOpts) (min, max uint16, err error) {
	lo, hi := o.IntervalMin, o.IntervalMax
	if lo == 0 {
		lo = 100 * time.Millisecond
	}
	if hi == 0 {
		hi = max2(lo, 150*time.Millisecond)
	}
	const unit = 625 * time.Microsecond
	if lo < 20*time.Millisecond || hi > 10240*time.Millisecond || lo > hi {
		return 0, 0, fmt.Errorf("%w: advertising interval %v–%v, want 20 ms ≤ min ≤ max ≤ 10.24 s", ErrConfig, lo, hi)
	}
	return uint16(lo / unit), uint16(hi / unit), nil
}

func max2(a, b time.Duration) time.Duration {
	if a > b {
		return a
	}
	return b
}

// advParams returns the LE Set Advertising Parameters command for adv data
// with (scannable) or without a scan response.
func (h *HCI) advParams(scannable, random bool) *cmd.LESetAdvertisingParameters {
	p := &cmd.LESetAdvertisingParameters{
		AdvertisingIntervalMin:  h.min,
		AdvertisingIntervalMax:  h.max,
		AdvertisingType:         advNonconnInd,
		OwnAddressType:          0x00, // public
		AdvertisingChannelMap:   0x07, // 37, 38, 39
		AdvertisingFilterPolicy: 0x00, // scan requests from anyone
	}
	if scannable {
		p.AdvertisingType = advScanInd
	}
	if random {
		p.OwnAddressType = 0x01 // random: the address set by LE Set Random Address
	}
	return p
}

// nrpa returns a non-resolvable private address (two most significant bits
// 0, the rest random, neither all zeros nor all ones; Core Spec Vol 6 Part B
// §1.3.2.2) in HCI byte order, least significant byte first.
func nrpa() [6]byte {
	for {
		var a [6]byte
		for i := range a {
			a[i] = byte(rand.Uint32())
		}
		a[5] &= 0x3F
		zeros, ones := true, true
		for i, b := range a {
			full := byte(0xFF)
			if i == 5 {
				full = 0x3F
			}
			zeros = zeros && b == 0
			ones = ones && b == full
		}
		if !zeros && !ones {
			return a
		}
	}
}

// Advertise replaces what is on air: it stops advertising, (with
// RandomAddress) sets a new address, sets the parameters (ADV_SCAN_IND with
// a scan response, else ADV_NONCONN_IND), sets the data with
// SetAdvertisement, and starts advertising, checking every command's
// status. Stopping first is what makes a change visible on controllers
// that ignore data replaced while advertising. After an error nothing is on
// air. Errors: ErrTooLong, ErrClosed, ErrRadio.
func (h *HCI) Advertise(ctx context.Context, adv, scanResp []byte) error {
	return h.advertise(ctx, adv, scanResp, false)
}

// AdvertiseConnectable is Advertise with ADV_IND (connectable and
// scannable), for a GATT host waiting for a central. While a central is
// connected it advertises non-connectable instead, so that no second
// central is invited in. Errors as Advertise.
func (h *HCI) AdvertiseConnectable(ctx context.Context, adv, scanResp []byte) error {
	return h.advertise(ctx, adv, scanResp, true)
}

func (h *HCI) advertise(ctx context.Context, adv, scanResp []byte, connectable bool) error {
	if err := checkLen(adv, scanResp); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return ErrClosed
	}
	if err := h.stopLocked(); err != nil {
		return err
	}
	// LE Set Random Address is disallowed while scanning (Core 4.2 Vol 2
	// Part E §7.8.4): keep the current random address then, or advertise
	// from the public one until a random one could be set.
	random := h.o.RandomAddress && (!h.scanning || h.randSet)
	if h.o.RandomAddress && !h.scanning {
		if err := h.ctl.Send(&cmd.LESetRandomAddress{RandomAddress: nrpa()}, nil); err != nil {
			return fmt.Errorf("%w: set random address: %w", ErrRadio, err)
		}
		h.randSet = true
	}
	p := h.advParams(len(scanResp) > 0, random)
	if connectable && !h.linked {
		p.AdvertisingType = advInd
	}
	if err := h.ctl.Send(p, nil); err != nil {
		return fmt.Errorf("%w: set advertising parameters: %w", ErrRadio, err)
	}
	if err := h.ctl.SetAdvertisement(adv, scanResp); err != nil {
		return fmt.Errorf("%w: set advertising data: %w", ErrRadio, err)
	}
	// LE Set Advertising Enable is sent here rather than through go-ble's
	// HCI.Advertise, which records advertising as on: go-ble would then
	// turn it off by itself when a central connects and on again when it
	// goes, racing the busy and connectable re-advertising of the GATT
	// host (hw/ble/goble/FORK.md, "left alone"). This backend alone
	// decides what is on air.
	if err := h.ctl.Send(&cmd.LESetAdvertiseEnable{AdvertisingEnable: 1}, nil); err != nil {
		return fmt.Errorf("%w: enable advertising: %w", ErrRadio, err)
	}
	return nil
}

// stopLocked disables advertising. Controllers before Bluetooth 5 may
// answer Command Disallowed when advertising is already off; that is
// success here.
func (h *HCI) stopLocked() error {
	// Sent directly, like the enable in advertise: go-ble's StopAdvertising
	// writes its advertising state without the lock its reader reads it
	// under (a data race).
	if err := h.ctl.Send(&cmd.LESetAdvertiseEnable{AdvertisingEnable: 0}, nil); err != nil && !errors.Is(err, hci.ErrDisallowed) {
		return fmt.Errorf("%w: disable advertising: %w", ErrRadio, err)
	}
	return nil
}

// Stop disables advertising. Errors: ErrRadio.
func (h *HCI) Stop() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil
	}
	return h.stopLocked()
}

// Close disables advertising and scanning and releases the adapter (go-ble
// closes the user channel; the adapter stays down until something brings it
// up). Later calls return nil.
func (h *HCI) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil
	}
	h.closed = true
	err := h.stopLocked()
	if h.scanning {
		if serr := h.ctl.StopScanning(); serr != nil && !errors.Is(serr, hci.ErrDisallowed) {
			err = errors.Join(err, fmt.Errorf("%w: disable scanning: %w", ErrRadio, serr))
		}
	}
	if cerr := h.ctl.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("%w: close: %w", ErrRadio, cerr))
	}
	h.mu.Unlock()
	h.accepted.Wait() // go-ble's Accept returns once its reader has ended
	h.mu.Lock()
	return err
}

// Scan scans with duplicates allowed (every advertising event is
// reported, as a phone scanning in low-latency mode sees them) until ctx is
// done, and returns ctx.Err(). One Scan at a time per adapter. Reports come
// from go-ble's goroutines, serialised here, so two reports may arrive out
// of order. Errors: ErrRunning, ErrClosed, ErrRadio (also when the adapter
// fails while scanning).
func (h *HCI) Scan(ctx context.Context, fn func(Report)) error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return ErrClosed
	}
	if h.scanning {
		h.mu.Unlock()
		return fmt.Errorf("%w: scan already running", ErrRunning)
	}
	err := h.startScanLocked(fn)
	if err == nil {
		h.scanning = true
	}
	h.mu.Unlock()
	if err != nil {
		return err
	}

	select {
	case <-ctx.Done():
		err = ctx.Err()
	case <-h.ctl.Done():
		err = fmt.Errorf("%w: adapter failed while scanning: %w", ErrRadio, h.ctl.Error())
	}

	h.mu.Lock()
	if h.scanning && !h.closed {
		if serr := h.ctl.StopScanning(); serr != nil && !errors.Is(serr, hci.ErrDisallowed) && ctx.Err() != nil {
			err = errors.Join(err, fmt.Errorf("%w: disable scanning: %w", ErrRadio, serr))
		}
	}
	h.scanning = false
	h.mu.Unlock()
	h.scanMu.Lock() // waits for a report in flight; none is delivered after this
	h.scanFn = nil
	h.scanMu.Unlock()
	return err
}

func (h *HCI) startScanLocked(fn func(Report)) error {
	if err := h.ctl.StopScanning(); err != nil && !errors.Is(err, hci.ErrDisallowed) {
		return fmt.Errorf("%w: disable scanning: %w", ErrRadio, err)
	}
	p := &cmd.LESetScanParameters{
		LEScanType:           0x00,   // passive
		LEScanInterval:       0x0060, // 60 ms
		LEScanWindow:         0x0060, // 60 ms: listen all the time
		OwnAddressType:       0x00,
		ScanningFilterPolicy: 0x00, // everyone
	}
	if h.o.ActiveScan {
		p.LEScanType = 0x01
	}
	if err := h.ctl.Send(p, nil); err != nil {
		return fmt.Errorf("%w: set scan parameters: %w", ErrRadio, err)
	}
	h.scanMu.Lock()
	h.scanFn = fn
	h.scanMu.Unlock()
	if err := h.ctl.Scan(true); err != nil {
		h.scanMu.Lock()
		h.scanFn = nil
		h.scanMu.Unlock()
		return fmt.Errorf("%w: enable scanning: %w", ErrRadio, err)
	}
	return nil
}

// rawAdv is what go-ble's *hci.Advertisement offers beyond
// goble.Advertisement: the raw bytes, which the backend reports instead of
// go-ble's parsed fields.
type rawAdv interface {
	goble.Advertisement
	Data() []byte
	ScanResponse() []byte
}

// onAdv is go-ble's advertisement handler, called on a new goroutine per
// report.
func (h *HCI) onAdv(a goble.Advertisement) {
	r, ok := reportOf(a, h.o.Now())
	if !ok {
		h.malformed.Add(1)
		return
	}
	h.scanMu.Lock()
	defer h.scanMu.Unlock()
	if h.scanFn != nil {
		h.scanFn(r)
	}
}

// reportOf copies a go-ble advertisement into a Report. go-ble's accessors
// index the HCI event without bounds checks, so a malformed event panics
// in them; that is reported as not ok.
func reportOf(a goble.Advertisement, at time.Time) (r Report, ok bool) {
	defer func() {
		if recover() != nil {
			r, ok = Report{}, false
		}
	}()
	ra, isRaw := a.(rawAdv)
	if !isRaw {
		return Report{}, false
	}
	r = Report{Addr: a.Addr().String(), RSSI: a.RSSI(), Data: append([]byte{}, ra.Data()...), At: at}
	if sr := ra.ScanResponse(); len(sr) > 0 {
		r.ScanResp = append([]byte(nil), sr...)
	}
	return r, true
}

// Malformed returns how many reports go-ble delivered that could not be
// read.
func (h *HCI) Malformed() uint64 { return h.malformed.Load() }

// Interface guards.
var (
	_ Advertiser            = (*HCI)(nil)
	_ ConnectableAdvertiser = (*HCI)(nil)
	_ Scanner               = (*HCI)(nil)
	_ Peripheral            = (*HCI)(nil)
)

// openHCI is OpenHCI behind the portable config helpers.
func openHCI(index int, o *HCIOpts) (*HCI, error) { return OpenHCI(index, o) }
