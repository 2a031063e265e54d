package claim

import (
	"context"
	"fmt"

	"beaconvend/hw/profile"
)

// InputReader reads discrete inputs of a Modbus slave; *modbus.Master is
// one.
type InputReader interface {
	ReadDiscreteInputs(ctx context.Context, slave byte, addr, qty uint16) ([]bool, error)
}

// ClaimHeld reads the profile's claim input through r and reports whether
// it is active (held), honouring its active_low. A profile without a claim
// input is never held. Errors: the bus's (the caller decides; the
// controller then starts as the board is, without a reset).
func ClaimHeld(ctx context.Context, r InputReader, p *profile.Profile) (bool, error) {
	if p.ClaimInput == "" {
		return false, nil
	}
	in, ok := p.Input(p.ClaimInput)
	if !ok {
		return false, fmt.Errorf("claim: claim input %q is not one of profile %s's inputs", p.ClaimInput, p.Name)
	}
	v, err := r.ReadDiscreteInputs(ctx, p.SlaveID, in.Input, 1)
	if err != nil {
		return false, fmt.Errorf("claim: read claim input %s: %w", in.Name, err)
	}
	if len(v) != 1 {
		return false, fmt.Errorf("claim: read claim input %s: %d values", in.Name, len(v))
	}
	return v[0] != in.ActiveLow, nil
}
