package journal

import (
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"beaconvend/app-protocol/gattapi"
	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
)

// bucketNonces is the relay nonce log: nonce [16] → ticket expiry, ms
// since the epoch, i64 big-endian | session [16]. AcceptRelay writes an entry in the
// commit that accepts its grant; PruneNonces deletes it once the expiry
// has passed (the grant is refused as expired after that anyway), so the
// log holds at most the relayed grants live at once.
var bucketNonces = []byte("nonces")

const nonceLen = 8 + 16

func putNonce(tx *bolt.Tx, r Relay, session vend.SessionID) error {
	b := tx.Bucket(bucketNonces)
	if b.Get(r.Nonce[:]) != nil {
		return vend.Errorf(gattapi.ErrNonceReused, "nonce %x", r.Nonce)
	}
	v := make([]byte, 8, nonceLen)
	binary.BigEndian.PutUint64(v, uint64(r.ExpiresAt.UnixMilli()))
	v = append(v, session[:]...)
	k := r.Nonce // a copy: bbolt keeps the key slice until the commit
	if err := b.Put(k[:], v); err != nil {
		return vend.Errorf(ErrStorage, "put nonce %x: %v", r.Nonce, err)
	}
	return nil
}

func decodeNonce(k, v []byte) (time.Time, vend.SessionID, error) {
	if len(k) != signed.RelayNonceLen {
		return time.Time{}, vend.SessionID{}, corrupt(bucketNonces, k, fmt.Errorf("key of %d bytes, want %d", len(k), signed.RelayNonceLen))
	}
	if len(v) != nonceLen {
		return time.Time{}, vend.SessionID{}, corrupt(bucketNonces, k, fmt.Errorf("%d bytes, want %d", len(v), nonceLen))
	}
	return time.UnixMilli(int64(binary.BigEndian.Uint64(v))).UTC(), vend.SessionID(v[8:]), nil
}

// LastRelayed returns the session of the relayed grant accepted last (the
// nonce entry with the latest ticket expiry, ties broken by the later
// session record), or a zero ID when the log is empty. The controller
// shows it on the GATT service again after a restart, so a phone can
// still read its receipt. Errors: ErrCorrupt, ErrClosed, storage.
func (j *Journal) LastRelayed() (vend.SessionID, error) {
	var last vend.SessionID
	var lastExp time.Time
	var lastAt time.Time
	err := j.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketNonces).ForEach(func(k, v []byte) error {
			exp, id, err := decodeNonce(k, v)
			if err != nil {
				return err
			}
			var at time.Time
			if s, err := getSession(tx, id); err == nil {
				at = s.AcceptedAt
			}
			if last.IsZero() || exp.After(lastExp) || (exp.Equal(lastExp) && at.After(lastAt)) {
				last, lastExp, lastAt = id, exp, at
			}
			return nil
		})
	})
	return last, err
}

// NonceSeen reports whether a relay nonce is in the nonce log (accepted
// and not yet pruned). It has the signature of gattapi.RelayCheck's
// NonceSeen. Errors: ErrCorrupt, ErrClosed, storage.
func (j *Journal) NonceSeen(n [signed.RelayNonceLen]byte) (bool, error) {
	seen := false
	err := j.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketNonces).Get(n[:])
		if v == nil {
			return nil
		}
		if _, _, err := decodeNonce(n[:], v); err != nil {
			return err
		}
		seen = true
		return nil
	})
	return seen, err
}

// Nonces returns how many nonces the log holds.
func (j *Journal) Nonces() (int, error) {
	n := 0
	err := j.view(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketNonces).Stats().KeyN
		return nil
	})
	return n, err
}

// PruneNonces deletes, in one commit, the nonces whose ticket expired
// before before, and returns how many. Pass now minus the tolerated
// clock skew: a grant is refused as expired from its ExpiresAt on, so a
// nonce older than that can never be presented with a grant that passes.
func (j *Journal) PruneNonces(before time.Time) (int, error) {
	return j.deleteWhere(bucketNonces, "nonce", func(_ *bolt.Tx, k, v []byte) (bool, error) {
		exp, _, err := decodeNonce(k, v)
		if err != nil {
			return false, err
		}
		return exp.Before(before), nil
	})
}
