package claim

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"beaconvend/app-protocol/beacon"
	"beaconvend/hw/ble"
)

// Radio is what registration mode needs of the board's radio: advertising,
// connectable while it waits for a phone, and a GATT server. *ble.HCI is
// one.
type Radio interface {
	ble.ConnectableAdvertiser
	ble.Peripheral
}

// DefaultLinger is how long Serve keeps the service up after the claim, so
// that the last chunk's Write Response reaches the phone before the
// central is disconnected.
const DefaultLinger = time.Second

// DefaultTxPower is the calibrated TX power the unclaimed frame carries
// when the wiring names none (dBm at 0 m).
const DefaultTxPower = -59

// RadioOpts configures Serve. Zero values mean the defaults.
type RadioOpts struct {
	CompanyID uint16        // the frame's company ID; 0 means beacon.DefaultCompanyID
	TxPower   int8          // 0 means DefaultTxPower
	GATT      *ble.GATTOpts // nil means ble.DefaultGATTOpts
	Linger    time.Duration // 0 means DefaultLinger
	Logger    *slog.Logger  // nil discards
}

// Frame returns the unclaimed beacon frame (beacon version 2) b advertises:
// the claim tag of its sealing key.
func Frame(b *Board, o RadioOpts) []byte {
	if o.CompanyID == 0 {
		o.CompanyID = beacon.DefaultCompanyID
	}
	if o.TxPower == 0 {
		o.TxPower = DefaultTxPower
	}
	return beacon.Unclaimed{CompanyID: o.CompanyID, TxPower: o.TxPower, Tag: beacon.ClaimTag(b.SealKey())}.Encode()
}

// Serve runs registration mode on r: it advertises b's unclaimed frame
// connectable (re-advertising at every connection and disconnection; the
// radio advertises non-connectable while a central is connected) and
// serves s until b is claimed; then, after o.Linger, it stops the GATT
// server and the advertising and returns nil. It returns ctx.Err() when
// ctx ends first, or the radio's error (advertising refused, GATT server
// failed); advertising is stopped on every return.
func Serve(ctx context.Context, r Radio, b *Board, s *Service, o RadioOpts) error {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.Linger == 0 {
		o.Linger = DefaultLinger
	}
	frame := Frame(b, o)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := r.AdvertiseConnectable(sctx, frame, nil); err != nil {
		return errors.Join(err, r.Stop())
	}
	log.Info("claim: registration mode: advertising unclaimed", "frame", frame)
	claimed := make(chan struct{})
	go func() {
		select {
		case <-b.Claimed():
			close(claimed)
			t := time.NewTimer(o.Linger)
			defer t.Stop()
			select {
			case <-t.C:
			case <-sctx.Done():
			}
			cancel()
		case <-sctx.Done():
		}
	}()
	err := r.ServeGATT(sctx, s.Service, o.GATT, func(l ble.Link) {
		if sctx.Err() != nil {
			return
		}
		if aerr := r.AdvertiseConnectable(sctx, frame, nil); aerr != nil && sctx.Err() == nil {
			log.Warn("claim: re-advertise", "link", l.String(), "err", aerr)
		}
	})
	cancel()
	stop := r.Stop()
	select {
	case <-claimed:
		log.Info("claim: registration mode: claimed, advertising stopped")
		return stop
	default:
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return errors.Join(err, stop)
}
