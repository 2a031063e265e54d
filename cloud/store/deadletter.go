package store

import (
	"context"
	"fmt"
	"time"

	"beaconvend/app-protocol/vend"
)

// DeadLetter is an uplink the cloud can never handle — a usage report no
// key it holds verifies, or one naming another device — kept with the
// reason so an operator can look at it. The device is acknowledged, so it
// stops resending; the session it was for leaves through its own bounded
// exit.
type DeadLetter struct {
	Device    string
	MessageID string
	Leaf      string // "usage", …
	Code      string // the stable error code, e.g. "signature.unknown_key"
	Detail    string // the error text
	Payload   []byte // the message as received (signed report bytes for usage)
	At        time.Time
}

// SaveDeadLetter stores d under (device, message id) and reports whether
// it is new; a redelivery of the same message keeps the first and returns
// false, so it is alerted on once. Errors: ErrInput.
func (s *Store) SaveDeadLetter(ctx context.Context, d DeadLetter) (bool, error) {
	if d.Device == "" || d.MessageID == "" || len(d.MessageID) > 128 || len(d.Payload) > 64<<10 {
		return false, vend.Errorf(ErrInput, "dead letter needs a device, a message id of 1-128 bytes and a payload under 64 KiB")
	}
	if d.Payload == nil {
		d.Payload = []byte{}
	}
	res, err := s.db.ExecContext(ctx, `INSERT INTO dead_letters (device_id, message_id, leaf, code, detail, payload, at_ms)
		VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (device_id, message_id) DO NOTHING`,
		d.Device, d.MessageID, d.Leaf, d.Code, clipN(d.Detail, 1000), d.Payload, d.At.UnixMilli())
	if err != nil {
		return false, fmt.Errorf("store: dead letter: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("store: dead letter: %w", err)
	}
	return n == 1, nil
}

// DeadLetters returns the dead letters of device ("" for every device),
// oldest first, at most limit (100 when limit <= 0).
func (s *Store) DeadLetters(ctx context.Context, device string, limit int) ([]DeadLetter, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.db.QueryContext(ctx, `SELECT device_id, message_id, leaf, code, detail, payload, at_ms FROM dead_letters
		WHERE ($1 = '' OR device_id = $1) ORDER BY at_ms, device_id, message_id LIMIT $2`, device, limit)
	if err != nil {
		return nil, fmt.Errorf("store: dead letters: %w", err)
	}
	defer rows.Close()
	var out []DeadLetter
	for rows.Next() {
		var d DeadLetter
		var at int64
		if err := rows.Scan(&d.Device, &d.MessageID, &d.Leaf, &d.Code, &d.Detail, &d.Payload, &at); err != nil {
			return nil, fmt.Errorf("store: dead letters: %w", err)
		}
		d.At = time.UnixMilli(at).UTC()
		out = append(out, d)
	}
	return out, rows.Err()
}

func clipN(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
