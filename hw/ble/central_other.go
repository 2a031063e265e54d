//go:build !linux

package ble

import (
	"context"
	"time"
)

// CentralOpts configures HCI.DialGATT, which exists only on Linux.
type CentralOpts struct {
	MTU        int
	OpTimeout  time.Duration
	PublicAddr bool
}

// DefaultCentralMTU is the ATT_MTU a central asks for.
const DefaultCentralMTU = 247

// DialGATT returns ErrUnsupported outside Linux.
func (*HCI) DialGATT(context.Context, string, *CentralOpts) (GATTLink, error) {
	return nil, ErrUnsupported
}
