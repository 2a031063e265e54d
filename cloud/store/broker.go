package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"beaconvend/app-protocol/vend"
)

// ErrBrokerAccountNotFound is returned for an operator without a broker
// account.
var ErrBrokerAccountNotFound = vend.E(vend.NotFound, "broker.account_not_found", "store: broker account not found")

// BrokerDevice is what a broker needs of one active device: its username
// (the device id), its password hash and its owner.
type BrokerDevice struct {
	ID         string
	OperatorID string
	MQTTHash   string
}

// BrokerAccount is an operator's read-only broker account.
type BrokerAccount struct {
	OperatorID string
	MQTTHash   string // "$7$" hash of its password
}

// BrokerDevices returns every active device with its MQTT hash and owner,
// ordered by id: the devices a generated Mosquitto password file admits.
func (s *Store) BrokerDevices(ctx context.Context) ([]BrokerDevice, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, operator_id, mqtt_hash FROM devices WHERE state = 'active' ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("store: broker devices: %w", err)
	}
	defer rows.Close()
	var out []BrokerDevice
	for rows.Next() {
		var d BrokerDevice
		if err := rows.Scan(&d.ID, &d.OperatorID, &d.MQTTHash); err != nil {
			return nil, fmt.Errorf("store: broker devices: %w", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: broker devices: %w", err)
	}
	return out, nil
}

// SetBrokerAccount creates or replaces operator's read-only broker
// account with the password hash hash (a new password invalidates the
// old one). Errors: ErrInput (empty or overlong hash), ErrOperatorNotFound.
func (s *Store) SetBrokerAccount(ctx context.Context, operator, hash string) error {
	if hash == "" || len(hash) > 500 {
		return vend.Errorf(ErrInput, "broker account: hash of %d bytes", len(hash))
	}
	return s.tx(ctx, "set broker account", func(tx *sql.Tx) error {
		var one int
		if err := tx.QueryRowContext(ctx, `SELECT 1 FROM operators WHERE id = $1`, operator).Scan(&one); errors.Is(err, sql.ErrNoRows) {
			return vend.Errorf(ErrOperatorNotFound, "%q", clip(operator))
		} else if err != nil {
			return err
		}
		now := s.nowMs()
		_, err := tx.ExecContext(ctx, `INSERT INTO broker_accounts (operator_id, mqtt_hash, created_ms, updated_ms) VALUES ($1, $2, $3, $3)
			ON CONFLICT (operator_id) DO UPDATE SET mqtt_hash = excluded.mqtt_hash, updated_ms = excluded.updated_ms`, operator, hash, now)
		return err
	})
}

// BrokerAccounts returns every operator's broker account, ordered by
// operator id.
func (s *Store) BrokerAccounts(ctx context.Context) ([]BrokerAccount, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT operator_id, mqtt_hash FROM broker_accounts ORDER BY operator_id`)
	if err != nil {
		return nil, fmt.Errorf("store: broker accounts: %w", err)
	}
	defer rows.Close()
	var out []BrokerAccount
	for rows.Next() {
		var a BrokerAccount
		if err := rows.Scan(&a.OperatorID, &a.MQTTHash); err != nil {
			return nil, fmt.Errorf("store: broker accounts: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: broker accounts: %w", err)
	}
	return out, nil
}

// BrokerAccountHash returns the password hash of operator's broker
// account (the embedded broker's lookup at CONNECT). Errors:
// ErrBrokerAccountNotFound.
func (s *Store) BrokerAccountHash(ctx context.Context, operator string) (string, error) {
	var h string
	err := s.db.QueryRowContext(ctx, `SELECT mqtt_hash FROM broker_accounts WHERE operator_id = $1`, operator).Scan(&h)
	if errors.Is(err, sql.ErrNoRows) {
		return "", vend.Errorf(ErrBrokerAccountNotFound, "%q", clip(operator))
	}
	if err != nil {
		return "", fmt.Errorf("store: broker account: %w", err)
	}
	return h, nil
}

// DeviceOperator returns the operator owning device, in any state (the
// embedded broker's check of an operator account's SUBSCRIBE). Errors:
// ErrDeviceNotFound.
func (s *Store) DeviceOperator(ctx context.Context, device string) (string, error) {
	var op string
	err := s.db.QueryRowContext(ctx, `SELECT operator_id FROM devices WHERE id = $1`, device).Scan(&op)
	if errors.Is(err, sql.ErrNoRows) {
		return "", vend.Errorf(ErrDeviceNotFound, "%q", clip(device))
	}
	if err != nil {
		return "", fmt.Errorf("store: device operator: %w", err)
	}
	return op, nil
}

// OperatorDeviceIDs returns the ids of every device operator owns, in
// any state, ordered by id: the subtrees its read-only broker account may
// read (a NATS auth callout grants them at CONNECT, cloud/broker/natsauth).
// An operator without devices gets an empty list, not an error.
func (s *Store) OperatorDeviceIDs(ctx context.Context, operator string) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM devices WHERE operator_id = $1 ORDER BY id`, operator)
	if err != nil {
		return nil, fmt.Errorf("store: operator device ids: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("store: operator device ids: %w", err)
		}
		out = append(out, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: operator device ids: %w", err)
	}
	return out, nil
}
