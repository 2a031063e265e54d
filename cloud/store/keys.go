package store

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"beaconvend/app-protocol/vend"
)

// Device-key rotation.
//
// A device signs its usage reports with its device key; the cloud verifies
// them with the public keys it holds. The rotation is driven by the cloud
// over the device's in-band protocol (mqttapi.RotateKey, propose then
// commit) and walks the devices.rotation column:
//
//	from       event                                     to          store call
//	""         operator asks for a rotation              requested   RequestRotation
//	requested  device proposed a key (reply with it)     proposed    RotationProposed (sign_key_next = the key)
//	proposed   device committed (reply ok)               committed   RotationCommitted
//	proposed   device lost its pending key (key.mismatch) requested  RotationRestart (a new propose)
//	committed  first report verified under sign_key_next ""          PromoteSignKey
//
// From "proposed" on, reports under either key verify, so nothing the
// device signs is ever under a key the cloud does not know; a key an
// earlier attempt proposed (the device may have committed it and the
// reply been lost) keeps verifying too, as a retired key dated at the
// promotion. The old key is
// promoted away only after the device has reported under the new one, and
// it is then kept as a retired key: a report the board queued under it
// before the switch (for a session created before the promotion) still
// verifies for RetiredKeyWindow after the promotion. A report that no key
// verifies is dead-lettered (SaveDeadLetter) and acknowledged.

// RetiredKeyWindow is how long a promoted-away device key still verifies
// reports of sessions created before its promotion: longer than a board
// stays offline with a full outbox in any case the operator supports.
const RetiredKeyWindow = 7 * 24 * time.Hour

// RotationState is where a device-key rotation stands.
type RotationState string

// Rotation states; see the table above.
const (
	RotationNone      RotationState = ""
	RotationRequested RotationState = "requested"
	RotationProposed  RotationState = "proposed"
	RotationCommitted RotationState = "committed"
)

// Rotation is a device's key rotation in progress.
type Rotation struct {
	Device string
	State  RotationState
	N      int64             // attempt number: command ids are made from it
	Next   ed25519.PublicKey // the proposed key, from RotationProposed on
	SentAt time.Time         // when the current step's command was last sent; zero when never
}

// ErrRotation is returned for a rotation step that does not follow from
// the device's current rotation state.
var ErrRotation = vend.E(vend.Conflict, "rotation.state", "store: key rotation is not in a state that allows this")

// RequestRotation starts a device-key rotation: the next key the device
// proposes will replace the current one. A rotation already under way is
// left as it is (the call is idempotent). Errors: ErrDeviceNotFound.
func (s *Store) RequestRotation(ctx context.Context, device string) (Rotation, error) {
	_, err := s.db.ExecContext(ctx, `UPDATE devices SET rotation = 'requested', rotation_n = rotation_n + 1, rotation_sent_ms = 0, updated_ms = $1
		WHERE id = $2 AND rotation = ''`, s.nowMs(), device)
	if err != nil {
		return Rotation{}, fmt.Errorf("store: request rotation: %w", err)
	}
	return s.GetRotation(ctx, device)
}

// GetRotation returns a device's rotation (State RotationNone when none is
// under way). Errors: ErrDeviceNotFound.
func (s *Store) GetRotation(ctx context.Context, device string) (Rotation, error) {
	r := Rotation{Device: device}
	var st string
	var next []byte
	var sent int64
	err := s.db.QueryRowContext(ctx, `SELECT rotation, rotation_n, sign_key_next, rotation_sent_ms FROM devices WHERE id = $1`, device).
		Scan(&st, &r.N, &next, &sent)
	if errors.Is(err, sql.ErrNoRows) {
		return Rotation{}, vend.Errorf(ErrDeviceNotFound, "%q", clip(device))
	}
	if err != nil {
		return Rotation{}, fmt.Errorf("store: rotation: %w", err)
	}
	r.State = RotationState(st)
	if len(next) > 0 && r.State != RotationRequested {
		r.Next = ed25519.PublicKey(next)
	}
	if sent != 0 {
		r.SentAt = time.UnixMilli(sent).UTC()
	}
	return r, nil
}

// Rotations returns every rotation under way, ordered by device.
func (s *Store) Rotations(ctx context.Context) ([]Rotation, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM devices WHERE rotation <> '' ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("store: rotations: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, fmt.Errorf("store: rotations: %w", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: rotations: %w", err)
	}
	out := make([]Rotation, 0, len(ids))
	for _, id := range ids {
		r, err := s.GetRotation(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// RotationSent records that the command of attempt n's current step was
// sent at at, so that it is resent only after a pause.
func (s *Store) RotationSent(ctx context.Context, device string, n int64, at time.Time) error {
	if _, err := s.db.ExecContext(ctx, `UPDATE devices SET rotation_sent_ms = $1 WHERE id = $2 AND rotation_n = $3`,
		at.UnixMilli(), device, n); err != nil {
		return fmt.Errorf("store: rotation sent: %w", err)
	}
	return nil
}

// rotationStep moves attempt n of device's rotation from one state to
// another with extra assignments; ErrRotation when it is elsewhere.
func (s *Store) rotationStep(ctx context.Context, device string, n int64, from, to RotationState, set string, args ...any) error {
	q := `UPDATE devices SET rotation = $1, rotation_sent_ms = 0, updated_ms = $2` + set + ` WHERE id = $3 AND rotation = $4 AND rotation_n = $5`
	res, err := s.db.ExecContext(ctx, q, append([]any{string(to), s.nowMs(), device, string(from), n}, args...)...)
	if err != nil {
		return fmt.Errorf("store: rotation %s: %w", to, err)
	}
	if k, _ := res.RowsAffected(); k != 1 {
		if _, err := s.GetRotation(ctx, device); err != nil {
			return err
		}
		return vend.Errorf(ErrRotation, "%s attempt %d is not %q", device, n, from)
	}
	return nil
}

// pendingRetired is the retired_ms of a key an earlier attempt of a
// rotation under way proposed: it verifies every report until the
// rotation's promotion dates it (PromoteSignKey).
const pendingRetired = int64(1) << 62

// RotationProposed records the key the device proposed for attempt n:
// from now on reports under it verify. A key an earlier attempt proposed
// (the device may have committed it before its commit reply was lost)
// keeps verifying: it is kept as retired, dated at the promotion. Errors:
// ErrInput, ErrRotation, ErrDeviceNotFound.
func (s *Store) RotationProposed(ctx context.Context, device string, n int64, next ed25519.PublicKey) error {
	if len(next) != ed25519.PublicKeySize {
		return vend.Errorf(ErrInput, "proposed signing key of %d bytes", len(next))
	}
	return s.tx(ctx, "rotation proposed", func(tx *sql.Tx) error {
		var st string
		var rn int64
		var prev []byte
		err := tx.QueryRowContext(ctx, `SELECT rotation, rotation_n, sign_key_next FROM devices WHERE id = $1`, device).Scan(&st, &rn, &prev)
		if errors.Is(err, sql.ErrNoRows) {
			return vend.Errorf(ErrDeviceNotFound, "%q", clip(device))
		}
		if err != nil {
			return err
		}
		if RotationState(st) != RotationRequested || rn != n {
			return vend.Errorf(ErrRotation, "%s attempt %d is not %q", device, n, RotationRequested)
		}
		if len(prev) > 0 && !bytes.Equal(prev, next) {
			if _, err := tx.ExecContext(ctx, `INSERT INTO retired_sign_keys (device_id, sign_key, retired_ms) VALUES ($1, $2, $3)
				ON CONFLICT (device_id, sign_key) DO NOTHING`, device, prev, pendingRetired); err != nil {
				return err
			}
		}
		res, err := tx.ExecContext(ctx, `UPDATE devices SET rotation = 'proposed', sign_key_next = $1, rotation_sent_ms = 0, updated_ms = $2
			WHERE id = $3 AND rotation = 'requested' AND rotation_n = $4`, []byte(next), s.nowMs(), device, n)
		if err != nil {
			return err
		}
		if k, _ := res.RowsAffected(); k != 1 {
			return vend.Errorf(ErrRotation, "%s attempt %d is not %q", device, n, RotationRequested)
		}
		return nil
	})
}

// RotationCommitted records that the device signs with the proposed key.
// Errors: ErrRotation, ErrDeviceNotFound.
func (s *Store) RotationCommitted(ctx context.Context, device string, n int64) error {
	return s.rotationStep(ctx, device, n, RotationProposed, RotationCommitted, ``)
}

// RotationRestart starts attempt n again from a new proposal (the device
// lost its pending key, e.g. in a restart); the key it proposed before
// keeps verifying until the new proposal replaces it. Errors: ErrRotation,
// ErrDeviceNotFound.
func (s *Store) RotationRestart(ctx context.Context, device string, n int64) error {
	return s.rotationStep(ctx, device, n, RotationProposed, RotationRequested, `, rotation_n = rotation_n + 1`)
}

// SetNextSignKey records the key a device will sign with after rotation;
// reports under either key verify until PromoteSignKey. Errors: ErrInput,
// ErrDeviceNotFound.
func (s *Store) SetNextSignKey(ctx context.Context, device string, next ed25519.PublicKey) error {
	if len(next) != ed25519.PublicKeySize {
		return vend.Errorf(ErrInput, "signing key of %d bytes", len(next))
	}
	res, err := s.db.ExecContext(ctx, `UPDATE devices SET sign_key_next = $1, updated_ms = $2 WHERE id = $3`, []byte(next), s.nowMs(), device)
	if err != nil {
		return fmt.Errorf("store: next sign key: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return vend.Errorf(ErrDeviceNotFound, "%q", clip(device))
	}
	return nil
}

// PromoteSignKey makes the next signing key current, ends the rotation,
// and keeps the old key as retired: it verifies reports of sessions
// created before now for RetiredKeyWindow (UsageKeys). A no-op when there
// is no next key. The rotation driver calls it once the device has
// reported under the next key. Errors: ErrDeviceNotFound.
func (s *Store) PromoteSignKey(ctx context.Context, device string) error {
	return s.tx(ctx, "promote sign key", func(tx *sql.Tx) error {
		var cur, next []byte
		err := tx.QueryRowContext(ctx, `SELECT sign_key, sign_key_next FROM devices WHERE id = $1`, device).Scan(&cur, &next)
		if errors.Is(err, sql.ErrNoRows) {
			return vend.Errorf(ErrDeviceNotFound, "%q", clip(device))
		}
		if err != nil {
			return err
		}
		if len(next) == 0 {
			return nil
		}
		now := s.nowMs()
		if !bytes.Equal(cur, next) {
			if _, err := tx.ExecContext(ctx, `INSERT INTO retired_sign_keys (device_id, sign_key, retired_ms) VALUES ($1, $2, $3)
				ON CONFLICT (device_id, sign_key) DO UPDATE SET retired_ms = excluded.retired_ms`, device, cur, now); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE retired_sign_keys SET retired_ms = $1 WHERE device_id = $2 AND retired_ms = $3`,
			now, device, pendingRetired); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM retired_sign_keys WHERE device_id = $1 AND sign_key = $2`, device, next); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE devices SET sign_key = sign_key_next, sign_key_next = NULL, rotation = '', rotation_sent_ms = 0,
			updated_ms = $1 WHERE id = $2`, now, device)
		return err
	})
}

// UsageKeys are the keys a usage report of one device may verify under.
type UsageKeys struct {
	Current ed25519.PublicKey
	Next    ed25519.PublicKey   // during a rotation from "proposed" on; nil otherwise
	Retired []ed25519.PublicKey // retired keys still valid for the session asked about
}

// All returns Current, Next (if any) and Retired.
func (k UsageKeys) All() []ed25519.PublicKey {
	out := []ed25519.PublicKey{k.Current}
	if k.Next != nil {
		out = append(out, k.Next)
	}
	return append(out, k.Retired...)
}

// UsageKeys returns the keys a report of device for session may be
// signed with: the current key, the next one during a rotation, and each
// retired key that was retired after the session was created and less
// than RetiredKeyWindow ago. An unknown session gets no retired keys.
// Errors: ErrDeviceNotFound.
func (s *Store) UsageKeys(ctx context.Context, device string, session vend.SessionID) (UsageKeys, error) {
	var sk, skn []byte
	err := s.db.QueryRowContext(ctx, `SELECT sign_key, sign_key_next FROM devices WHERE id = $1`, device).Scan(&sk, &skn)
	if errors.Is(err, sql.ErrNoRows) {
		return UsageKeys{}, vend.Errorf(ErrDeviceNotFound, "%q", clip(device))
	}
	if err != nil {
		return UsageKeys{}, fmt.Errorf("store: usage keys: %w", err)
	}
	k := UsageKeys{Current: sk}
	if len(skn) > 0 {
		k.Next = skn
	}
	rows, err := s.db.QueryContext(ctx, `SELECT r.sign_key FROM retired_sign_keys r JOIN sessions s ON s.id = $2 AND s.device_id = r.device_id
		WHERE r.device_id = $1 AND r.retired_ms >= s.created_ms AND r.retired_ms > $3 ORDER BY r.retired_ms DESC`,
		device, session.String(), s.nowMs()-RetiredKeyWindow.Milliseconds())
	if err != nil {
		return UsageKeys{}, fmt.Errorf("store: usage keys: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			return UsageKeys{}, fmt.Errorf("store: usage keys: %w", err)
		}
		k.Retired = append(k.Retired, ed25519.PublicKey(b))
	}
	return k, rows.Err()
}

// RotationAbort ends attempt n of a rotation that is still "requested"
// (the device refused to propose a key): nothing changes for the
// device's keys. Errors: ErrRotation, ErrDeviceNotFound.
func (s *Store) RotationAbort(ctx context.Context, device string, n int64) error {
	return s.rotationStep(ctx, device, n, RotationRequested, RotationNone, ``)
}
