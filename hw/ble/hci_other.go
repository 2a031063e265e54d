//go:build !linux

package ble

import (
	"context"
	"log/slog"
	"time"

	goble "beaconvend/hw/ble/goble"
)

// HCIOpts configures the go-ble backend, which exists only on Linux.
type HCIOpts struct {
	IntervalMin, IntervalMax time.Duration
	RandomAddress            bool
	ActiveScan               bool
	Now                      func() time.Time
	Logger                   *slog.Logger
}

// DefaultHCIOpts returns the Linux defaults.
func DefaultHCIOpts() *HCIOpts {
	return &HCIOpts{IntervalMin: 100 * time.Millisecond, IntervalMax: 150 * time.Millisecond, RandomAddress: true}
}

// HCI is the go-ble backend; outside Linux it cannot be opened.
type HCI struct{}

// OpenHCI returns ErrUnsupported outside Linux.
func OpenHCI(int, *HCIOpts) (*HCI, error) { return nil, ErrUnsupported }

func openHCI(index int, o *HCIOpts) (*HCI, error) { return OpenHCI(index, o) }

// Advertise returns ErrUnsupported.
func (*HCI) Advertise(context.Context, []byte, []byte) error { return ErrUnsupported }

// Stop returns ErrUnsupported.
func (*HCI) Stop() error { return ErrUnsupported }

// Close returns nil.
func (*HCI) Close() error { return nil }

// Scan returns ErrUnsupported.
func (*HCI) Scan(context.Context, func(Report)) error { return ErrUnsupported }

// AdvertiseConnectable returns ErrUnsupported.
func (*HCI) AdvertiseConnectable(context.Context, []byte, []byte) error { return ErrUnsupported }

// ServeGATT returns ErrUnsupported.
func (*HCI) ServeGATT(context.Context, *goble.Service, *GATTOpts, func(Link)) error {
	return ErrUnsupported
}

// GATTStats returns zeros.
func (*HCI) GATTStats() GATTStats { return GATTStats{} }
