package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"beaconvend/app-protocol/proxid"
)

// KeyReport says what ReencryptIdentityKeys found (or, on a dry run, would
// do) for the devices' identity keys.
type KeyReport struct {
	Sealed   int      // stored in clear, now sealed under KeyEncKey
	Resealed int      // sealed under a previous key, now under KeyEncKey
	Current  int      // already sealed under KeyEncKey; left alone
	Failed   []string // device IDs whose key opens under no configured key
}

// Clear reports whether any row was (before a real run) stored in clear
// or under a retired key.
func (r KeyReport) Clear() bool { return r.Sealed > 0 || r.Resealed > 0 }

// reencryptBatch is how many devices one transaction reseals.
const reencryptBatch = 100

// ReencryptIdentityKeys seals every device's identity key (any state)
// under Opts.KeyEncKey: rows in clear are sealed, rows under one of
// Opts.PrevKeyEncKeys are resealed, rows already under KeyEncKey are left
// alone, so a second run changes nothing. Each batch of devices is one
// transaction, and a row is only replaced if it still holds the bytes
// read (a concurrent rotation is never overwritten). With dryRun nothing
// is written and the report says what a run would do. Rows no configured
// key opens are listed in Failed and returned as an error after the
// others are done. Errors: ErrInput when no KeyEncKey is configured, and
// the database's.
func (s *Store) ReencryptIdentityKeys(ctx context.Context, dryRun bool) (KeyReport, error) {
	var rep KeyReport
	if s.keyEnc == nil {
		return rep, errorf(ErrInput, "re-encrypting identity keys needs a KeyEncKey")
	}
	after := ""
	for {
		var batch KeyReport
		var last string
		n := 0
		err := s.tx(ctx, "reencrypt identity keys", func(tx *sql.Tx) error {
			batch, last, n = KeyReport{}, "", 0
			rows, err := tx.QueryContext(ctx, `SELECT id, identity_key FROM devices WHERE id > $1 ORDER BY id LIMIT `+fmt.Sprint(reencryptBatch), after)
			if err != nil {
				return err
			}
			type row struct {
				id  string
				key []byte
			}
			var todo []row
			for rows.Next() {
				var r row
				if err := rows.Scan(&r.id, &r.key); err != nil {
					rows.Close()
					return err
				}
				todo = append(todo, r)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			for _, r := range todo {
				n, last = n+1, r.id
				k, current, err := s.classifyKey(r.id, r.key)
				switch {
				case err != nil:
					batch.Failed = append(batch.Failed, r.id)
					continue
				case current:
					batch.Current++
					continue
				case len(r.key) > 0 && r.key[0] == 0:
					batch.Sealed++
				default:
					batch.Resealed++
				}
				if dryRun {
					continue
				}
				sealed, err := s.sealKey(r.id, k)
				if err != nil {
					return err
				}
				res, err := tx.ExecContext(ctx, `UPDATE devices SET identity_key = $1 WHERE id = $2 AND identity_key = $3`, sealed, r.id, r.key)
				if err != nil {
					return err
				}
				if c, err := res.RowsAffected(); err != nil || c != 1 {
					return fmt.Errorf("%w: device %s changed while resealing (%d rows, %v)", errRetry, r.id, c, err)
				}
			}
			return nil
		})
		if err != nil {
			return rep, err
		}
		rep.Sealed += batch.Sealed
		rep.Resealed += batch.Resealed
		rep.Current += batch.Current
		rep.Failed = append(rep.Failed, batch.Failed...)
		if n < reencryptBatch {
			break
		}
		after = last
	}
	if len(rep.Failed) > 0 {
		return rep, fmt.Errorf("store: reencrypt identity keys: %d device(s) open under no configured key: %v", len(rep.Failed), rep.Failed)
	}
	return rep, nil
}

// classifyKey opens a stored identity key and says whether it is sealed
// under the current KeyEncKey.
func (s *Store) classifyKey(device string, b []byte) (proxid.Key, bool, error) {
	if len(b) > 0 && b[0] == 1 {
		return s.openSealed(device, b)
	}
	k, err := s.openKey(device, b)
	return k, false, err
}

// openSealed opens a 0x01-sealed identity key with KeyEncKey, then with
// each previous key; current is true when KeyEncKey opened it.
func (s *Store) openSealed(device string, b []byte) (k proxid.Key, current bool, err error) {
	keys := s.keyPrev
	if s.keyEnc != nil {
		keys = append([][]byte{s.keyEnc}, s.keyPrev...)
	}
	for i, key := range keys {
		g, err := gcm(key)
		if err != nil {
			return k, false, err
		}
		n := g.NonceSize()
		if len(b) < 1+n {
			return k, false, fmt.Errorf("store: device %s: identity key ciphertext truncated", device)
		}
		p, err := g.Open(nil, b[1:1+n], b[1+n:], []byte(device))
		if err == nil && len(p) == proxid.KeySize {
			copy(k[:], p)
			return k, i == 0 && s.keyEnc != nil, nil
		}
	}
	return k, false, errors.New("store: device " + device + ": identity key does not decrypt (wrong KeyEncKey?)")
}
