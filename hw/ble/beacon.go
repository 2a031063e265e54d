package ble

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"beaconvend/app-protocol/beacon"
	"beaconvend/app-protocol/proxid"
	"beaconvend/app-protocol/vend"
)

// DefaultTxPower is the calibrated TX power a beacon announces when none is
// configured: −59 dBm at 0 m, typical of a 0 dBm radio on a small board.
// Calibrate per board model (measure RSSI at 1 m, add 41 dB).
const DefaultTxPower = -59

// DefaultRecheck is the longest a beacon sleeps between two looks at the
// clock (BeaconOpts.Recheck).
const DefaultRecheck = time.Second

// maxBackoff bounds how long a beacon waits before retrying a failed radio.
const maxBackoff = 30 * time.Second

// ErrRunning: Beacon.Run was called while it already runs.
var ErrRunning = vend.E(vend.Conflict, "ble.running", "ble: beacon already running")

// BeaconOpts configures a Beacon. Zero CompanyID, TxPower and Recheck mean
// their defaults; the zero State is beacon.Idle.
type BeaconOpts struct {
	CompanyID      uint16       // Bluetooth SIG company identifier; 0 means beacon.DefaultCompanyID
	TxPower        int8         // calibrated RSSI at 0 m, dBm; 0 means DefaultTxPower
	State          beacon.State // state announced until SetState says otherwise
	OfflineCapable bool         // the controller accepts grants relayed by the phone while offline
	Name           string       // Complete Local Name for the scan response (1–29 printable ASCII); empty: no scan response
	// Recheck is the longest sleep between two clock readings, so a wall
	// clock stepped by NTP or by the modem's network time is noticed
	// within it; 0 means DefaultRecheck.
	Recheck time.Duration
	Now     func() time.Time // wall clock; nil means the Rotator's, else time.Now
	Logger  *slog.Logger     // nil discards
}

// DefaultBeaconOpts returns the defaults: the test company ID, DefaultTxPower,
// state Offline (fail-safe: phones grey the machine out until the controller
// knows it can sell), no name, DefaultRecheck.
func DefaultBeaconOpts() *BeaconOpts {
	return &BeaconOpts{
		CompanyID: beacon.DefaultCompanyID,
		TxPower:   DefaultTxPower,
		State:     beacon.Offline,
		Recheck:   DefaultRecheck,
	}
}

// BeaconStats counts what a Beacon did.
type BeaconStats struct {
	Updates   uint64 // successful Advertise calls: first frame, rotations, state changes, retries
	Rotations uint64 // times the ID of a new window went on air
	Errors    uint64 // failed Advertise or Stop calls
	LastErr   error  // the most recent of those errors, nil if none
}

// Beacon keeps the beaconvend frame on air: it computes the rotating
// proximity ID, re-advertises at each window boundary and on every state
// change, and stops advertising when it stops. It owns its Advertiser.
type Beacon struct {
	adv Advertiser
	rot proxid.Rotator
	now func() time.Time
	log *slog.Logger
	o   BeaconOpts
	sr  []byte // scan response, nil without a name

	mu       sync.Mutex // serialises advertiser calls and guards the fields below
	state    beacon.State
	link     Link   // the GATT side: decides the PDU type and whether the frame says busy
	onAir    []byte // advertising data on air, nil when not (or unknown after an error)
	onAirCon bool   // onAir went out connectable
	frame    beacon.Frame
	lastWin  uint32
	hadWin   bool
	stats    BeaconStats
	runCtx   context.Context
	cancel   context.CancelFunc
	done     chan struct{}
	closed   bool
	failures int
}

// NewBeacon returns a Beacon that advertises through a and takes IDs from r
// (copied; its clock is replaced by o.Now when set). nil o means
// DefaultBeaconOpts. Errors: proxid.ErrK, beacon.ErrState, beacon.ErrName.
func NewBeacon(a Advertiser, r *proxid.Rotator, o *BeaconOpts) (*Beacon, error) {
	if o == nil {
		o = DefaultBeaconOpts()
	}
	b := &Beacon{adv: a, rot: *r, o: *o, state: o.State}
	if err := proxid.ValidateK(r.K); err != nil {
		return nil, err
	}
	if o.State > beacon.Offline {
		return nil, vend.Errorf(beacon.ErrState, "%d", uint8(o.State))
	}
	if b.o.CompanyID == 0 {
		b.o.CompanyID = beacon.DefaultCompanyID
	}
	if b.o.TxPower == 0 {
		b.o.TxPower = DefaultTxPower
	}
	if b.o.Recheck <= 0 {
		b.o.Recheck = DefaultRecheck
	}
	if o.Name != "" {
		sr, err := beacon.EncodeScanResponse(o.Name)
		if err != nil {
			return nil, err
		}
		b.sr = sr
	}
	switch {
	case o.Now != nil:
		b.rot.Now = o.Now
	case b.rot.Now == nil:
		b.rot.Now = time.Now
	}
	b.now = b.rot.Now
	b.log = o.Logger
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	return b, nil
}

// Run advertises the current frame and keeps it current until ctx is done:
// it sleeps until the Rotator's next window (at most Recheck at a time, so
// clock steps are noticed), re-reads the clock on every wake and advertises
// whenever the frame bytes differ from what is on air. Advertiser errors are
// logged, counted and retried with backoff (Recheck doubling up to 30 s);
// they do not end Run. On return Run stops advertising. It returns
// ctx.Err() (joined with a Stop error, if any), ErrRunning, or ErrClosed.
func (b *Beacon) Run(ctx context.Context) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	if b.cancel != nil {
		b.mu.Unlock()
		return ErrRunning
	}
	ctx, cancel := context.WithCancel(ctx)
	b.runCtx, b.cancel, b.done = ctx, cancel, make(chan struct{})
	done := b.done
	b.mu.Unlock()
	defer close(done)
	defer cancel()

	t := time.NewTimer(0)
	defer t.Stop()
	<-t.C
	for {
		b.mu.Lock()
		next, err := b.syncLocked(ctx)
		failures := b.failures
		b.mu.Unlock()

		wait := next.Sub(b.now())
		if wait > b.o.Recheck {
			wait = b.o.Recheck
		}
		if wait < time.Millisecond {
			wait = time.Millisecond
		}
		if err != nil {
			wait = b.o.Recheck << min(max(failures-1, 0), 5)
			if wait > maxBackoff {
				wait = maxBackoff
			}
			b.log.Warn("ble: beacon advertise failed", "err", err, "failures", failures, "retry", wait)
		}
		t.Reset(wait)
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), b.stopRun())
		case <-t.C:
		}
	}
}

// stopRun takes the frame off the air at the end of Run.
func (b *Beacon) stopRun() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cancel, b.runCtx = nil, nil
	return b.stopLocked()
}

func (b *Beacon) stopLocked() error {
	b.onAir = nil
	if err := b.adv.Stop(); err != nil {
		b.stats.Errors++
		b.stats.LastErr = err
		return fmt.Errorf("ble: beacon stop: %w", err)
	}
	return nil
}

// syncLocked puts the frame for now on air unless it already is, and
// returns when the next window begins.
func (b *Beacon) syncLocked(ctx context.Context) (time.Time, error) {
	id, win, next := b.rot.Current()
	state := b.state
	if b.link == LinkConnected {
		state = beacon.Busy // a central holds the machine; rotation goes on
	}
	f := beacon.Frame{
		CompanyID:      b.o.CompanyID,
		Version:        beacon.Version1,
		State:          state,
		OfflineCapable: b.o.OfflineCapable,
		TxPower:        b.o.TxPower,
		ID:             id,
	}
	adv, err := f.Encode()
	if err != nil { // unreachable: state and version are validated
		return next, err
	}
	connectable := b.link == LinkListening
	if b.onAir != nil && bytes.Equal(adv, b.onAir) && connectable == b.onAirCon {
		return next, nil
	}
	if connectable {
		ca, ok := b.adv.(ConnectableAdvertiser)
		if !ok { // NewGATTHost checks this; SetLink called directly may not
			err = vend.Errorf(ErrUnsupported, "%T cannot advertise connectable", b.adv)
		} else {
			err = ca.AdvertiseConnectable(ctx, adv, b.sr)
		}
	} else {
		err = b.adv.Advertise(ctx, adv, b.sr)
	}
	if err != nil {
		b.onAir = nil
		b.failures++
		b.stats.Errors++
		b.stats.LastErr = err
		return next, fmt.Errorf("ble: beacon advertise: %w", err)
	}
	if b.hadWin && win != b.lastWin {
		b.stats.Rotations++
		b.log.Debug("ble: beacon rotated", "window", win, "next", next)
	}
	b.failures = 0
	b.stats.Updates++
	b.onAir, b.onAirCon, b.frame, b.lastWin, b.hadWin = adv, connectable, f, win, true
	return next, nil
}

// SetState changes the announced machine state. When it differs from the
// current one and Run is running, the new frame goes on air before SetState
// returns, and the advertiser's error, if any, is returned (Run retries it).
// Errors: beacon.ErrState for an unknown state, ErrClosed, and the
// advertiser's.
func (b *Beacon) SetState(s beacon.State) error {
	if s > beacon.Offline {
		return vend.Errorf(beacon.ErrState, "%d", uint8(s))
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	if s == b.state {
		return nil
	}
	b.state = s
	if b.runCtx == nil {
		return nil
	}
	_, err := b.syncLocked(b.runCtx)
	return err
}

// SetLink tells the beacon about the GATT side of its radio (see Link):
// LinkListening advertises the frame connectable, LinkConnected
// non-connectable with state busy (the machine's own state is kept and
// announced again after), LinkNone non-connectable. When Run is running
// and the link differs, the new advertisement goes on air before SetLink
// returns, even if the bytes are the same (the PDU type changes; a
// controller also stops advertising by itself when a central connects).
// Errors: ErrConfig for an unknown link, ErrClosed, and the advertiser's
// (ErrUnsupported when it cannot advertise connectable); Run retries.
func (b *Beacon) SetLink(l Link) error {
	if l > LinkConnected {
		return vend.Errorf(ErrConfig, "%v", l)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	if l == b.link {
		return nil
	}
	b.link = l
	b.onAir = nil // re-advertise whatever the bytes
	if b.runCtx == nil {
		return nil
	}
	_, err := b.syncLocked(b.runCtx)
	return err
}

// Link returns what SetLink last said.
func (b *Beacon) Link() Link {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.link
}

// State returns the machine state set by BeaconOpts.State or SetState
// (not the busy a connected central announces).
func (b *Beacon) State() beacon.State {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state
}

// OnAir returns the frame last put on air and whether it is on air now
// (false before Run, after it, and after a failed Advertise).
func (b *Beacon) OnAir() (beacon.Frame, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.frame, b.onAir != nil
}

// Stats returns the counters.
func (b *Beacon) Stats() BeaconStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stats
}

// Close ends Run (waiting for it), stops advertising and closes the
// Advertiser. It returns their errors joined; later calls return nil.
func (b *Beacon) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	cancel, done := b.cancel, b.done
	b.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	err := b.stopLocked()
	if cerr := b.adv.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("ble: beacon close: %w", cerr))
	}
	return err
}
