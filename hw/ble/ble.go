package ble

import (
	"context"
	"time"

	"beaconvend/app-protocol/beacon"
	"beaconvend/app-protocol/vend"
)

// Advertiser puts legacy advertising data on the air.
//
// Advertise sets or replaces what is on air: adv is the advertising data and
// scanResp the scan response (nil for none), each at most 31 bytes. An
// implementation makes every change visible to scanners; on an HCI controller
// that means stop advertising, set the data, advertise again, because some
// controllers (virtual ones among them) keep sending the old data when it is
// replaced while advertising. ctx bounds the call only, not how long the data
// stays on air. Stop takes the advertisement off the air; Close stops and
// releases the radio. Implementations are safe for concurrent use.
type Advertiser interface {
	Advertise(ctx context.Context, adv, scanResp []byte) error
	Stop() error
	Close() error
}

// Scanner listens to advertisements.
//
// Scan calls fn once per received advertisement, from one goroutine at a
// time, until ctx is done, and then returns ctx.Err(); it returns earlier
// with the error that stopped it (radio gone, socket closed). fn is never
// called after Scan has returned. Each Report's slices are its own: fn may
// keep them.
type Scanner interface {
	Scan(ctx context.Context, fn func(Report)) error
}

// Report is one received advertisement.
type Report struct {
	Addr     string    // advertiser's device address, "aa:bb:cc:dd:ee:ff" (lower-case hex, most significant byte first)
	RSSI     int       // received signal strength, dBm
	Data     []byte    // raw advertising data, as beacon.Decode takes it
	ScanResp []byte    // raw scan response data; nil when none was received
	At       time.Time // when the report arrived
}

// Frame decodes the beaconvend frame for companyID in the report's
// advertising data; see beacon.Decode for its errors.
func (r Report) Frame(companyID uint16) (beacon.Frame, error) {
	return beacon.Decode(r.Data, companyID)
}

// Errors.
var (
	// ErrTooLong: advertising or scan response data over 31 bytes.
	ErrTooLong = vend.E(vend.Invalid, "ble.too_long", "ble: advertising data longer than 31 bytes")
	// ErrDatagram: a simulated-air datagram is malformed (ParseDatagram).
	ErrDatagram = vend.E(vend.Invalid, "ble.datagram", "ble: malformed air datagram")
	// ErrConfig: an option or configuration value is out of range.
	ErrConfig = vend.E(vend.Invalid, "ble.config", "ble: invalid configuration")
	// ErrClosed: the advertiser, scanner or beacon is closed.
	ErrClosed = vend.E(vend.Conflict, "ble.closed", "ble: closed")
	// ErrUnsupported: the backend does not exist on this operating system.
	ErrUnsupported = vend.E(vend.Invalid, "ble.unsupported", "ble: backend not supported on this system")
	// ErrRadio: the radio (HCI controller) failed or refused a command.
	ErrRadio = vend.E(vend.Transient, "ble.radio", "ble: radio command failed")
)

func checkLen(adv, scanResp []byte) error {
	if len(adv) > beacon.MaxAdvLen {
		return vend.Errorf(ErrTooLong, "advertising data of %d bytes", len(adv))
	}
	if len(scanResp) > beacon.MaxAdvLen {
		return vend.Errorf(ErrTooLong, "scan response of %d bytes", len(scanResp))
	}
	return nil
}
