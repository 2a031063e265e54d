package store

import (
	"context"
	"fmt"
	"strings"

	"beaconvend/app-protocol/vend"
)

// SetDeviceLocation sets where one of operator's devices stands (free
// text of at most 100 bytes, trimmed; "" clears it). Errors:
// ErrInput, ErrDeviceNotFound (also for another operator's device).
func (s *Store) SetDeviceLocation(ctx context.Context, operator, device, location string) error {
	location = strings.TrimSpace(location)
	if len(location) > 100 {
		return vend.Errorf(ErrInput, "a location is at most 100 bytes")
	}
	res, err := s.db.ExecContext(ctx, `UPDATE devices SET location = $1, updated_ms = $2 WHERE id = $3 AND operator_id = $4`,
		location, s.nowMs(), device, operator)
	if err != nil {
		return fmt.Errorf("store: device location: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return vend.Errorf(ErrDeviceNotFound, "%q", clip(device))
	}
	return nil
}

