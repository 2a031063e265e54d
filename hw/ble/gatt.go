package ble

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"beaconvend/app-protocol/vend"
	goble "beaconvend/hw/ble/goble"
)

// Link is what the beacon is told about the GATT side of its radio; it
// decides the advertising PDU type and the announced state.
type Link uint8

// Links.
const (
	// LinkNone: no GATT service is served; the beacon advertises
	// non-connectable (ADV_NONCONN_IND, or ADV_SCAN_IND with a scan
	// response) with the machine's state.
	LinkNone Link = iota
	// LinkListening: a GATT service waits for a central; the beacon
	// advertises connectable (ADV_IND) with the machine's state.
	LinkListening
	// LinkConnected: a central is connected; the beacon advertises
	// non-connectable with state busy, so that no second phone tries
	// and every phone shows the machine taken.
	LinkConnected
)

func (l Link) String() string {
	switch l {
	case LinkNone:
		return "none"
	case LinkListening:
		return "listening"
	case LinkConnected:
		return "connected"
	}
	return fmt.Sprintf("link(%d)", uint8(l))
}

// DefaultIdleTimeout is how long a connected central may stay silent
// (send no ATT PDU) before the host disconnects it (GATTOpts.IdleTimeout).
const DefaultIdleTimeout = 30 * time.Second

// DefaultGATTName is the GAP device name the GATT host serves.
const DefaultGATTName = "beaconvend"

// ConnectableAdvertiser is an Advertiser that can also advertise
// connectable (ADV_IND, scannable too). AdvertiseConnectable is Advertise
// with that PDU type; an implementation serving a central advertises
// non-connectable instead, whatever it is asked.
type ConnectableAdvertiser interface {
	Advertiser
	AdvertiseConnectable(ctx context.Context, adv, scanResp []byte) error
}

// Peripheral is the GATT side of a radio: it serves one GATT service to
// one central at a time.
//
// ServeGATT serves svc (its characteristics' handlers are the caller's)
// until ctx is done and returns ctx.Err(), or earlier with the error that
// stopped it (radio gone: ErrRadio; already serving: ErrRunning; closed:
// ErrClosed). link is called, one call at a time and in order, with
// LinkConnected when a central has connected and LinkListening when it has
// gone; it must not call ServeGATT. A second central while one is
// connected is disconnected at once; a central that sends nothing for
// o.IdleTimeout is disconnected. On return the central, if any, has been
// disconnected and no more link calls come. nil o means DefaultGATTOpts.
type Peripheral interface {
	ServeGATT(ctx context.Context, svc *goble.Service, o *GATTOpts, link func(Link)) error
}

// GATTOpts configures a GATT host. Zero values mean the defaults.
type GATTOpts struct {
	// IdleTimeout disconnects a central that has sent no ATT PDU for
	// this long (its own notifications received do not count); 0 means
	// DefaultIdleTimeout. A phone following a long session by
	// notifications alone must write or read within it.
	IdleTimeout time.Duration
	// NotifyKeepsAlive counts notifications and indications sent to the
	// central as activity too, for a service whose central may follow a
	// long session by notifications alone (the relay's Progress); a
	// central out of range still goes by the link's supervision timeout.
	NotifyKeepsAlive bool
	// Name is the GAP Device Name characteristic; empty means
	// DefaultGATTName.
	Name   string
	Now    func() time.Time // clock of the idle timeout; nil means time.Now
	Logger *slog.Logger     // nil discards
}

// DefaultGATTOpts returns the defaults: DefaultIdleTimeout, DefaultGATTName.
func DefaultGATTOpts() *GATTOpts {
	return &GATTOpts{IdleTimeout: DefaultIdleTimeout, Name: DefaultGATTName}
}

// withDefaults validates o and fills in its defaults. Errors: ErrConfig.
func (o *GATTOpts) withDefaults() (GATTOpts, error) {
	var c GATTOpts
	if o != nil {
		c = *o
	}
	if c.IdleTimeout < 0 {
		return c, vend.Errorf(ErrConfig, "gatt idle timeout %v", c.IdleTimeout)
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.Name == "" {
		c.Name = DefaultGATTName
	}
	if len(c.Name) > 248 {
		return c, vend.Errorf(ErrConfig, "gatt device name of %d bytes, want at most 248", len(c.Name))
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// GATTStats counts what a Peripheral's GATT host did.
type GATTStats struct {
	Connections uint64 // centrals served
	Refused     uint64 // centrals disconnected at once: one already connected, or no service served
	IdleDrops   uint64 // centrals disconnected for silence
}

// GATTHost serves a GATT service beside a Beacon on one radio: the beacon
// advertises connectable while the host waits for a central, and
// non-connectable with state busy while one is connected (see the package
// doc). The host knows nothing of the machine's outputs: it only calls the
// service's handlers and the Beacon's SetLink.
type GATTHost struct {
	p   Peripheral
	b   *Beacon
	svc *goble.Service
	o   GATTOpts
}

// NewGATTHost returns a host serving svc on p next to b, whose Advertiser
// must be a ConnectableAdvertiser (normally p itself). nil o means
// DefaultGATTOpts. Errors: ErrConfig (a nil argument, bad options),
// ErrUnsupported (b's Advertiser cannot advertise connectable).
func NewGATTHost(p Peripheral, b *Beacon, svc *goble.Service, o *GATTOpts) (*GATTHost, error) {
	if p == nil || b == nil || svc == nil {
		return nil, vend.Errorf(ErrConfig, "gatt host needs a peripheral, a beacon and a service")
	}
	if _, ok := b.adv.(ConnectableAdvertiser); !ok {
		return nil, vend.Errorf(ErrUnsupported, "gatt host: the beacon's advertiser (%T) cannot advertise connectable", b.adv)
	}
	c, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	return &GATTHost{p: p, b: b, svc: svc, o: c}, nil
}

// Run serves the service until ctx is done: it tells the beacon to
// advertise connectable, relays every connection and disconnection to it,
// and on return tells it to advertise non-connectable again. Beacon errors
// are logged (Beacon.Run retries them). It returns ctx.Err() or
// Peripheral.ServeGATT's error, joined with the last SetLink's.
func (g *GATTHost) Run(ctx context.Context) error {
	log := g.o.Logger
	if err := g.b.SetLink(LinkListening); err != nil {
		log.Warn("ble: gatt host: advertise connectable", "err", err)
	}
	err := g.p.ServeGATT(ctx, g.svc, &g.o, func(l Link) {
		log.Info("ble: gatt host link", "link", l.String())
		if err := g.b.SetLink(l); err != nil {
			log.Warn("ble: gatt host: re-advertise", "link", l.String(), "err", err)
		}
	})
	if lerr := g.b.SetLink(LinkNone); lerr != nil && !errors.Is(lerr, ErrClosed) {
		err = errors.Join(err, fmt.Errorf("ble: gatt host: advertise non-connectable: %w", lerr))
	}
	return err
}
