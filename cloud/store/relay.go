package store

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"beaconvend/app-protocol/vend"
)

// Relay and claim errors.
var (
	// ErrKeyClaimed: a board sealing key that was claimed before (by
	// another operator, or for another device).
	ErrKeyClaimed = vend.E(vend.Conflict, "claim.key_claimed", "store: board key already claimed")
	// ErrClaimNotFound: no claim for that key.
	ErrClaimNotFound = vend.E(vend.NotFound, "claim.not_found", "store: no claim for that board key")
)

// SetRelayTicket stores the relay ticket of a session once and returns the
// stored one: a session that has one keeps it (a retried start gets the
// same ticket and nonce). With outlast, a pending session's deadline moves
// to its unreported bound (start-by bound + longest run + offline
// allowance): when the phone is the only path (the device is offline), a
// relayed grant is acknowledged only by the report the phone uploads
// after the run, so the hold must outlast the run; a grant never used is
// then expired and released by ExpireHolds as any unacknowledged one, and
// a report after that is a late capture. Errors: ErrInput (empty or
// oversized ticket), ErrSessionNotFound.
func (s *Store) SetRelayTicket(ctx context.Context, id vend.SessionID, ticket []byte, outlast bool) ([]byte, error) {
	if len(ticket) == 0 || len(ticket) > 512 {
		return nil, vend.Errorf(ErrInput, "relay ticket of %d bytes", len(ticket))
	}
	ext := 0
	if outlast {
		ext = 1
	}
	var out []byte
	err := s.tx(ctx, "set relay ticket", func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE sessions SET relay_ticket = $2,
			deadline_ms = CASE WHEN $3 = 1 AND state = 'pending' AND unreported_ms > deadline_ms THEN unreported_ms ELSE deadline_ms END
			WHERE id = $1 AND relay_ticket IS NULL`, id.String(), ticket, ext); err != nil {
			return err
		}
		err := tx.QueryRowContext(ctx, `SELECT relay_ticket FROM sessions WHERE id = $1`, id.String()).Scan(&out)
		if errors.Is(err, sql.ErrNoRows) {
			return vend.Errorf(ErrSessionNotFound, "%s", id)
		}
		return err
	})
	return out, err
}

// RelayAlways reports whether the operator set the device, or the machine
// on it, to relay every session over the phone. Errors:
// ErrDeviceNotFound, ErrMachineNotFound.
func (s *Store) RelayAlways(ctx context.Context, device, machine string) (bool, error) {
	var dev, mach int
	err := s.db.QueryRowContext(ctx, `SELECT d.relay_always, m.relay_always FROM devices d JOIN machines m ON m.device_id = d.id
		WHERE d.id = $1 AND m.id = $2`, device, machine).Scan(&dev, &mach)
	if errors.Is(err, sql.ErrNoRows) {
		if ok, derr := s.DeviceExists(ctx, device); derr == nil && !ok {
			return false, vend.Errorf(ErrDeviceNotFound, "%s", device)
		}
		return false, vend.Errorf(ErrMachineNotFound, "%s/%s", device, machine)
	}
	if err != nil {
		return false, err
	}
	return dev != 0 || mach != 0, nil
}

// SetRelayAlways sets relay-always on one of operator's devices (machine
// "") or on one machine of it. Errors: ErrDeviceNotFound (also another
// operator's device), ErrMachineNotFound.
func (s *Store) SetRelayAlways(ctx context.Context, operator, device, machine string, on bool) error {
	v := 0
	if on {
		v = 1
	}
	return s.tx(ctx, "set relay always", func(tx *sql.Tx) error {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM devices WHERE id = $1 AND operator_id = $2`, device, operator).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return vend.Errorf(ErrDeviceNotFound, "%s", device)
		}
		if err != nil {
			return err
		}
		var res sql.Result
		if machine == "" {
			res, err = tx.ExecContext(ctx, `UPDATE devices SET relay_always = $2, updated_ms = $3 WHERE id = $1`, device, v, s.nowMs())
		} else {
			res, err = tx.ExecContext(ctx, `UPDATE machines SET relay_always = $3 WHERE device_id = $1 AND id = $2`, device, machine, v)
		}
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return vend.Errorf(ErrMachineNotFound, "%s/%s", device, machine)
		}
		return nil
	})
}

// Claim is a board claimed for an operator by its sealing key.
type Claim struct {
	SealKey   string    // the board's X25519 public key, lower-case hex
	Device    string    // the device it became
	Operator  string    // the owning operator
	ClaimedBy string    // the operator account that claimed it
	Sealed    []byte    // the provisioning bundle sealed to SealKey
	At        time.Time // when, by the cloud's clock
}

// GetClaim returns the claim of a board key. Errors: ErrClaimNotFound.
func (s *Store) GetClaim(ctx context.Context, sealKey string) (Claim, error) {
	c := Claim{SealKey: sealKey}
	var ms int64
	err := s.db.QueryRowContext(ctx, `SELECT device_id, operator_id, claimed_by, sealed, claimed_ms FROM device_claims WHERE seal_key = $1`,
		sealKey).Scan(&c.Device, &c.Operator, &c.ClaimedBy, &c.Sealed, &ms)
	if errors.Is(err, sql.ErrNoRows) {
		return Claim{}, vend.Errorf(ErrClaimNotFound, "%s", clip(sealKey))
	}
	if err != nil {
		return Claim{}, err
	}
	c.At = time.UnixMilli(ms).UTC()
	return c, nil
}

// CreateClaimedDevice registers d (as CreateDevice) and its claim in one
// transaction: a key claimed before is ErrKeyClaimed and nothing is
// written, so two claims of one key racing make one device. c.Device and
// c.Operator are taken from d. Errors: those of CreateDevice,
// ErrKeyClaimed, ErrInput (no key or no sealed bundle).
func (s *Store) CreateClaimedDevice(ctx context.Context, d Device, c Claim) error {
	if len(c.SealKey) != 64 || len(c.Sealed) == 0 || c.ClaimedBy == "" {
		return vend.Errorf(ErrInput, "claim of device %s: key, sealed bundle and claimant required", d.ID)
	}
	return s.createDevice(ctx, d, func(tx *sql.Tx, now int64) error {
		var dev string
		err := tx.QueryRowContext(ctx, `SELECT device_id FROM device_claims WHERE seal_key = $1`, c.SealKey).Scan(&dev)
		if err == nil {
			return vend.Errorf(ErrKeyClaimed, "as device %s", dev)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		return nil
	}, func(tx *sql.Tx, now int64) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO device_claims (seal_key, device_id, operator_id, claimed_by, sealed, claimed_ms)
			VALUES ($1, $2, $3, $4, $5, $6)`, c.SealKey, d.ID, d.OperatorID, c.ClaimedBy, c.Sealed, now)
		return err
	})
}
