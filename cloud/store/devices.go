package store

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"beaconvend/app-protocol/proxid"
	"beaconvend/app-protocol/vend"
)

// DeviceState is whether a device may start sessions.
type DeviceState string

// Device states.
const (
	DeviceActive   DeviceState = "active"
	DeviceDisabled DeviceState = "disabled"
)

// Device is a controller board with its keys and machines.
type Device struct {
	ID          string            // vend.ValidateDeviceID
	OperatorID  string            // the tenant that owns it
	Name        string            // operator's label
	State       DeviceState       // "" means active on create
	IdentityKey proxid.Key        // secret proximity identity key; encrypted at rest when Opts.KeyEncKey is set
	K           uint8             // proximity rotation exponent, 0-15
	SignKey     ed25519.PublicKey // current usage-signing key
	SignKeyNext ed25519.PublicKey // next key during a rotation, or nil
	MQTTHash    string            // hash of the device's MQTT credential (the broker chooses the scheme); never the secret
	Machines    []Machine
	Online      bool
	Telemetry   json.RawMessage // last telemetry payload, "{}" when none
	LastSeen    time.Time       // zero when never seen
	Created     time.Time
	Updated     time.Time
}

// Machine is one machine a device drives, with its price.
type Machine struct {
	ID       string           // vend.ValidateMachineID
	Kind     vend.MachineKind // water, washer, dryer, vending
	Name     string
	Unit     vend.Unit     // what is metered; Kind.Unit() when zero on create
	Price    vend.Price    // per Unit; slots may override
	Currency vend.Currency // ISO 4217
	Slots    []Slot        // vending products; none for other kinds
	// WebCheckout is whether the machine's QR web checkout may start
	// sessions without a proximity ID (SetWebCheckout); off by default.
	WebCheckout bool
}

// Slot is a product slot of a vending machine with its own price.
type Slot struct {
	ID    string // vend.ValidateSlotID, non-empty
	Name  string
	Price vend.Price
}

// DeviceKey is what the proximity resolver and the usage verifier need
// for one active device.
type DeviceKey struct {
	DeviceID    string
	IdentityKey proxid.Key
	K           uint8
	SignKeys    []ed25519.PublicKey // current, then next when rotating
}

func (m *Machine) validate() error {
	if err := vend.ValidateMachineID(m.ID); err != nil {
		return fmt.Errorf("store: machine: %w", err)
	}
	if m.Unit == 0 {
		m.Unit = m.Kind.Unit()
	}
	switch {
	case m.Kind.Unit() == 0:
		return vend.Errorf(ErrInput, "machine %s: kind %q", m.ID, clip(string(m.Kind)))
	case !m.Unit.Valid():
		return vend.Errorf(ErrInput, "machine %s: unit %d", m.ID, m.Unit)
	case len(m.Name) > 200:
		return vend.Errorf(ErrInput, "machine %s: name longer than 200 bytes", m.ID)
	}
	if err := m.Price.Validate(); err != nil {
		return fmt.Errorf("store: machine %s: %w", m.ID, err)
	}
	if err := m.Currency.Validate(); err != nil {
		return fmt.Errorf("store: machine %s: %w", m.ID, err)
	}
	seen := map[string]bool{}
	for _, sl := range m.Slots {
		if sl.ID == "" || vend.ValidateSlotID(sl.ID) != nil {
			return vend.Errorf(ErrInput, "machine %s: slot id %q", m.ID, clip(sl.ID))
		}
		if seen[sl.ID] {
			return vend.Errorf(ErrInput, "machine %s: slot %s twice", m.ID, sl.ID)
		}
		seen[sl.ID] = true
		if err := sl.Price.Validate(); err != nil {
			return fmt.Errorf("store: machine %s slot %s: %w", m.ID, sl.ID, err)
		}
	}
	return nil
}

// sealKey encrypts an identity key for storage: 0x00 ‖ key in clear, or
// 0x01 ‖ nonce ‖ AES-256-GCM(key) with the device ID as additional data.
func (s *Store) sealKey(device string, k proxid.Key) ([]byte, error) {
	if s.keyEnc == nil {
		return append([]byte{0}, k[:]...), nil
	}
	g, err := gcm(s.keyEnc)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 1+g.NonceSize(), 1+g.NonceSize()+len(k)+g.Overhead())
	out[0] = 1
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, err
	}
	return g.Seal(out, out[1:], k[:], []byte(device)), nil
}

func (s *Store) openKey(device string, b []byte) (proxid.Key, error) {
	var k proxid.Key
	switch {
	case len(b) == 1+proxid.KeySize && b[0] == 0:
		copy(k[:], b[1:])
		return k, nil
	case len(b) > 0 && b[0] == 1:
		if s.keyEnc == nil && len(s.keyPrev) == 0 {
			return k, fmt.Errorf("store: device %s: identity key is encrypted and no KeyEncKey is configured", device)
		}
		k, _, err := s.openSealed(device, b)
		return k, err
	}
	return k, fmt.Errorf("store: device %s: identity key has unknown format", device)
}

func gcm(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("store: key encryption: %w", err)
	}
	return cipher.NewGCM(b)
}

// CreateDevice registers a device and its machines for d.OperatorID in one
// transaction. Errors: vend.ErrDeviceID, ErrInput, ErrOperatorNotFound,
// ErrDeviceExists; nothing is written on error.
func (s *Store) CreateDevice(ctx context.Context, d Device) error {
	return s.createDevice(ctx, d, nil, nil)
}

// createDevice is CreateDevice; pre and post, when set, run in the same
// transaction before and after the device's rows (CreateClaimedDevice).
func (s *Store) createDevice(ctx context.Context, d Device, pre, post func(tx *sql.Tx, now int64) error) error {
	if err := vend.ValidateDeviceID(d.ID); err != nil {
		return fmt.Errorf("store: create device: %w", err)
	}
	if d.State == "" {
		d.State = DeviceActive
	}
	switch {
	case d.State != DeviceActive && d.State != DeviceDisabled:
		return vend.Errorf(ErrInput, "device %s: state %q", d.ID, clip(string(d.State)))
	case proxid.ValidateK(d.K) != nil:
		return vend.Errorf(ErrInput, "device %s: rotation exponent %d", d.ID, d.K)
	case len(d.SignKey) != ed25519.PublicKeySize:
		return vend.Errorf(ErrInput, "device %s: signing key of %d bytes", d.ID, len(d.SignKey))
	case d.SignKeyNext != nil && len(d.SignKeyNext) != ed25519.PublicKeySize:
		return vend.Errorf(ErrInput, "device %s: next signing key of %d bytes", d.ID, len(d.SignKeyNext))
	case len(d.Name) > 200 || len(d.MQTTHash) > 500:
		return vend.Errorf(ErrInput, "device %s: name or mqtt hash too long", d.ID)
	}
	seen := map[string]bool{}
	for i := range d.Machines {
		if err := d.Machines[i].validate(); err != nil {
			return err
		}
		if seen[d.Machines[i].ID] {
			return vend.Errorf(ErrInput, "device %s: machine %s twice", d.ID, d.Machines[i].ID)
		}
		seen[d.Machines[i].ID] = true
	}
	sealed, err := s.sealKey(d.ID, d.IdentityKey)
	if err != nil {
		return err
	}
	var next []byte
	if d.SignKeyNext != nil {
		next = d.SignKeyNext
	}
	return s.tx(ctx, "create device", func(tx *sql.Tx) error {
		if pre != nil {
			if err := pre(tx, s.nowMs()); err != nil {
				return err
			}
		}
		var one int
		if err := tx.QueryRowContext(ctx, `SELECT 1 FROM operators WHERE id = $1`, d.OperatorID).Scan(&one); errors.Is(err, sql.ErrNoRows) {
			return vend.Errorf(ErrOperatorNotFound, "%q", clip(d.OperatorID))
		} else if err != nil {
			return err
		}
		if err := tx.QueryRowContext(ctx, `SELECT 1 FROM devices WHERE id = $1`, d.ID).Scan(&one); err == nil {
			return vend.Errorf(ErrDeviceExists, "%s", d.ID)
		} else if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		now := s.nowMs()
		if _, err := tx.ExecContext(ctx, `INSERT INTO devices (id, operator_id, name, state, identity_key, rotation_k,
			sign_key, sign_key_next, mqtt_hash, created_ms, updated_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)`,
			d.ID, d.OperatorID, d.Name, string(d.State), sealed, int(d.K), []byte(d.SignKey), next, d.MQTTHash, now); err != nil {
			return err
		}
		for _, m := range d.Machines {
			if err := s.putMachine(ctx, tx, d.ID, m, now); err != nil {
				return err
			}
		}
		if post != nil {
			return post(tx, now)
		}
		return nil
	})
}

func (s *Store) putMachine(ctx context.Context, tx *sql.Tx, device string, m Machine, now int64) error {
	if _, err := tx.ExecContext(ctx, `INSERT INTO machines (device_id, id, kind, name, unit, price_minor, price_per, currency, updated_ms)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT (device_id, id) DO UPDATE SET kind = excluded.kind, name = excluded.name, unit = excluded.unit,
			price_minor = excluded.price_minor, price_per = excluded.price_per, currency = excluded.currency, updated_ms = excluded.updated_ms`,
		device, m.ID, string(m.Kind), m.Name, int(m.Unit), m.Price.Minor, int64(m.Price.Per), string(m.Currency), now); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM machine_slots WHERE device_id = $1 AND machine_id = $2`, device, m.ID); err != nil {
		return err
	}
	for _, sl := range m.Slots {
		if _, err := tx.ExecContext(ctx, `INSERT INTO machine_slots (device_id, machine_id, id, name, price_minor, price_per)
			VALUES ($1, $2, $3, $4, $5, $6)`, device, m.ID, sl.ID, sl.Name, sl.Price.Minor, int64(sl.Price.Per)); err != nil {
			return err
		}
	}
	return nil
}

// PutMachine adds or replaces (with its slots) a machine on one of
// operator's devices. Live sessions keep the price they started with.
// Errors: ErrInput, ErrDeviceNotFound (also for another operator's device).
func (s *Store) PutMachine(ctx context.Context, operator, device string, m Machine) error {
	if err := m.validate(); err != nil {
		return err
	}
	return s.tx(ctx, "put machine", func(tx *sql.Tx) error {
		if err := ownDevice(ctx, tx, operator, device); err != nil {
			return err
		}
		return s.putMachine(ctx, tx, device, m, s.nowMs())
	})
}

func ownDevice(ctx context.Context, q queryer, operator, device string) error {
	var one int
	err := q.QueryRowContext(ctx, `SELECT 1 FROM devices WHERE id = $1 AND operator_id = $2`, device, operator).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return vend.Errorf(ErrDeviceNotFound, "%q", clip(device))
	}
	return err
}

// SetPrices changes the price of a machine and, for the slots named in
// slots, of those slots, on one of operator's own devices. The currency
// does not change. Sessions already started keep their price. Errors:
// vend.ErrPrice, ErrDeviceNotFound (also for another operator's device),
// ErrMachineNotFound, ErrSlotNotFound; nothing is written on error.
func (s *Store) SetPrices(ctx context.Context, operator, device, machine string, price vend.Price, slots map[string]vend.Price) error {
	if err := price.Validate(); err != nil {
		return fmt.Errorf("store: set prices: %w", err)
	}
	for id, p := range slots {
		if err := p.Validate(); err != nil {
			return fmt.Errorf("store: set prices: slot %s: %w", clip(id), err)
		}
	}
	ids := make([]string, 0, len(slots))
	for id := range slots {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return s.tx(ctx, "set prices", func(tx *sql.Tx) error {
		if err := ownDevice(ctx, tx, operator, device); err != nil {
			return err
		}
		now := s.nowMs()
		res, err := tx.ExecContext(ctx, `UPDATE machines SET price_minor = $1, price_per = $2, updated_ms = $3
			WHERE device_id = $4 AND id = $5`, price.Minor, int64(price.Per), now, device, machine)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return vend.Errorf(ErrMachineNotFound, "%s/%s", device, clip(machine))
		}
		for _, id := range ids {
			p := slots[id]
			res, err := tx.ExecContext(ctx, `UPDATE machine_slots SET price_minor = $1, price_per = $2
				WHERE device_id = $3 AND machine_id = $4 AND id = $5`, p.Minor, int64(p.Per), device, machine, id)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n != 1 {
				return vend.Errorf(ErrSlotNotFound, "%s/%s/%s", device, machine, clip(id))
			}
		}
		return nil
	})
}

const deviceCols = `id, operator_id, name, state, identity_key, rotation_k, sign_key, sign_key_next, mqtt_hash,
	online, telemetry, last_seen_ms, created_ms, updated_ms`

func (s *Store) scanDevice(sc interface{ Scan(...any) error }) (Device, error) {
	var d Device
	var state, tel string
	var key, sk, skn []byte
	var k, online int
	var seen, created, updated int64
	if err := sc.Scan(&d.ID, &d.OperatorID, &d.Name, &state, &key, &k, &sk, &skn, &d.MQTTHash,
		&online, &tel, &seen, &created, &updated); err != nil {
		return Device{}, err
	}
	ik, err := s.openKey(d.ID, key)
	if err != nil {
		return Device{}, err
	}
	d.State, d.IdentityKey, d.K = DeviceState(state), ik, uint8(k)
	d.SignKey = ed25519.PublicKey(sk)
	if len(skn) > 0 {
		d.SignKeyNext = ed25519.PublicKey(skn)
	}
	d.Online, d.Telemetry = online == 1, json.RawMessage(tel)
	if seen != 0 {
		d.LastSeen = time.UnixMilli(seen).UTC()
	}
	d.Created, d.Updated = time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
	return d, nil
}

// GetDevice returns a device with its machines and keys, for the cloud's
// own use (ingest, resolver, session start); it is not tenant-scoped, so
// never hand its result to an operator as is. Errors: ErrDeviceNotFound.
func (s *Store) GetDevice(ctx context.Context, id string) (Device, error) {
	d, err := s.scanDevice(s.db.QueryRowContext(ctx, `SELECT `+deviceCols+` FROM devices WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Device{}, vend.Errorf(ErrDeviceNotFound, "%q", clip(id))
	}
	if err != nil {
		return Device{}, fmt.Errorf("store: get device: %w", err)
	}
	ms, err := s.machines(ctx, []string{id})
	if err != nil {
		return Device{}, err
	}
	d.Machines = ms[id]
	return d, nil
}

// machines returns the machines (with slots) of the given devices.
func (s *Store) machines(ctx context.Context, devices []string) (map[string][]Machine, error) {
	out := map[string][]Machine{}
	if len(devices) == 0 {
		return out, nil
	}
	args := make([]any, len(devices))
	for i, d := range devices {
		args[i] = d
	}
	rows, err := s.db.QueryContext(ctx, `SELECT device_id, id, kind, name, unit, price_minor, price_per, currency, web_checkout
		FROM machines WHERE device_id IN `+in(1, len(devices))+` ORDER BY device_id, id`, args...)
	if err != nil {
		return nil, fmt.Errorf("store: machines: %w", err)
	}
	type key struct{ d, m string }
	idx := map[key]int{}
	for rows.Next() {
		var dev, kind, cur string
		var m Machine
		var unit int
		var per, web int64
		if err := rows.Scan(&dev, &m.ID, &kind, &m.Name, &unit, &m.Price.Minor, &per, &cur, &web); err != nil {
			rows.Close()
			return nil, fmt.Errorf("store: machines: %w", err)
		}
		m.Kind, m.Unit, m.Price.Per, m.Currency = vend.MachineKind(kind), vend.Unit(unit), uint32(per), vend.Currency(cur)
		m.WebCheckout = web != 0
		idx[key{dev, m.ID}] = len(out[dev])
		out[dev] = append(out[dev], m)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: machines: %w", err)
	}
	rows, err = s.db.QueryContext(ctx, `SELECT device_id, machine_id, id, name, price_minor, price_per
		FROM machine_slots WHERE device_id IN `+in(1, len(devices))+` ORDER BY device_id, machine_id, id`, args...)
	if err != nil {
		return nil, fmt.Errorf("store: slots: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var dev, mach string
		var sl Slot
		var per int64
		if err := rows.Scan(&dev, &mach, &sl.ID, &sl.Name, &sl.Price.Minor, &per); err != nil {
			return nil, fmt.Errorf("store: slots: %w", err)
		}
		sl.Price.Per = uint32(per)
		if i, ok := idx[key{dev, mach}]; ok {
			out[dev][i].Slots = append(out[dev][i].Slots, sl)
		}
	}
	return out, rows.Err()
}

// DeviceKeys returns the keys of every active device: what a cloud
// instance loads into its proximity resolver and usage verifier at start.
func (s *Store) DeviceKeys(ctx context.Context) ([]DeviceKey, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, identity_key, rotation_k, sign_key, sign_key_next FROM devices WHERE state = 'active' ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("store: device keys: %w", err)
	}
	defer rows.Close()
	var out []DeviceKey
	for rows.Next() {
		var dk DeviceKey
		var key, sk, skn []byte
		var k int
		if err := rows.Scan(&dk.DeviceID, &key, &k, &sk, &skn); err != nil {
			return nil, fmt.Errorf("store: device keys: %w", err)
		}
		if dk.IdentityKey, err = s.openKey(dk.DeviceID, key); err != nil {
			return nil, err
		}
		dk.K = uint8(k)
		dk.SignKeys = append(dk.SignKeys, ed25519.PublicKey(sk))
		if len(skn) > 0 {
			dk.SignKeys = append(dk.SignKeys, ed25519.PublicKey(skn))
		}
		out = append(out, dk)
	}
	return out, rows.Err()
}

// SignKeys returns a device's current signing key and, during a rotation,
// its next one: what a usage report is verified with, in one small read.
// Errors: ErrDeviceNotFound.
func (s *Store) SignKeys(ctx context.Context, device string) ([]ed25519.PublicKey, error) {
	var sk, skn []byte
	err := s.db.QueryRowContext(ctx, `SELECT sign_key, sign_key_next FROM devices WHERE id = $1`, device).Scan(&sk, &skn)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, vend.Errorf(ErrDeviceNotFound, "%q", clip(device))
	}
	if err != nil {
		return nil, fmt.Errorf("store: sign keys: %w", err)
	}
	keys := []ed25519.PublicKey{sk}
	if len(skn) > 0 {
		keys = append(keys, skn)
	}
	return keys, nil
}

// SetDeviceState enables or disables one of operator's devices. A disabled
// device starts no new sessions; live ones finish and settle. Errors:
// ErrInput, ErrDeviceNotFound.
func (s *Store) SetDeviceState(ctx context.Context, operator, device string, st DeviceState) error {
	if st != DeviceActive && st != DeviceDisabled {
		return vend.Errorf(ErrInput, "device state %q", clip(string(st)))
	}
	res, err := s.db.ExecContext(ctx, `UPDATE devices SET state = $1, updated_ms = $2 WHERE id = $3 AND operator_id = $4`,
		string(st), s.nowMs(), device, operator)
	if err != nil {
		return fmt.Errorf("store: set device state: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return vend.Errorf(ErrDeviceNotFound, "%q", clip(device))
	}
	return nil
}

// Presence is decided by the cloud's clock and the connection, never by
// a device's timestamp (a board's clock may be wrong by minutes, or years
// after a reset). Every presence write below takes at from the cloud's
// clock when the message was received. A device has a connection epoch:
// online_since, when the cloud received its online state (or its first
// message after being offline). An online state, telemetry or an offline
// state the device published itself are ordered by when they were heard
// (heard_ms; with several instances the later receipt wins). A lost
// connection (the broker's last will, the embedded broker's disconnect
// hook) ends only the epoch it belongs to: SetDeviceLost applies only when
// the current epoch began at or before the loss (minus an optional
// grace), so a loss reported late, after the device reconnected and the
// cloud heard it, never takes down the connection that replaced it. Telemetry
// heard before the device was marked offline, but written after (a
// coalesced flush), refreshes the stored telemetry but cannot bring the
// device back online. A device not heard from for the staleness bound is
// marked offline by ExpirePresence.

// SetDeviceStatus records a device's presence heard at at (the cloud's
// clock): online with telemetry nil is an online state (a new connection
// epoch begins), online with telemetry is telemetry (which proves the
// connection; the stored telemetry is replaced), and offline is an
// offline state the device published itself (shutdown, reboot). A status
// heard before the one stored is ignored, so out-of-order deliveries and
// other instances cannot flip a device back. Errors: ErrInput (telemetry
// not a JSON object or over 16 KiB), ErrDeviceNotFound.
func (s *Store) SetDeviceStatus(ctx context.Context, device string, online bool, telemetry json.RawMessage, at time.Time) error {
	u := StatusUpdate{Device: device, Online: online, Telemetry: telemetry, At: at}
	if err := u.check(); err != nil {
		return err
	}
	q, args := u.stmt()
	res, err := s.db.ExecContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("store: device status: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return s.deviceExists(ctx, device)
	}
	return nil
}

// The three presence updates of StatusUpdate, $1 = at (ms), $2 = device,
// $3 = telemetry.
const (
	// An online state: a new epoch, unless the device was marked offline
	// after at (this state is older than that loss).
	statusOnlineSQL = `UPDATE devices SET
		online = CASE WHEN offline_ms <= $1 THEN 1 ELSE online END,
		online_since_ms = CASE WHEN offline_ms <= $1 THEN $1 ELSE online_since_ms END,
		heard_ms = $1, last_seen_ms = $1
		WHERE id = $2 AND heard_ms <= $1`
	// Telemetry: online again only when heard after the last loss; a
	// device that was offline starts a new epoch.
	statusTelemetrySQL = `UPDATE devices SET
		online_since_ms = CASE WHEN online = 0 AND offline_ms < $1 THEN $1 ELSE online_since_ms END,
		online = CASE WHEN offline_ms < $1 THEN 1 ELSE online END,
		heard_ms = $1, last_seen_ms = $1, telemetry = $3
		WHERE id = $2 AND heard_ms <= $1`
	// An offline state the device published on its own connection.
	statusOfflineSQL = `UPDATE devices SET online = 0, offline_ms = $1, heard_ms = $1, last_seen_ms = $1
		WHERE id = $2 AND heard_ms <= $1`
)

// StatusUpdate is one device's presence and last telemetry for
// SetDeviceStatuses; At is the cloud's clock when it was heard.
type StatusUpdate struct {
	Device    string
	Online    bool
	Telemetry json.RawMessage // nil keeps the stored telemetry
	At        time.Time
}

func (u StatusUpdate) check() error {
	if u.Telemetry != nil {
		var m map[string]any
		if len(u.Telemetry) > 16<<10 || json.Unmarshal(u.Telemetry, &m) != nil || m == nil {
			return vend.Errorf(ErrInput, "telemetry must be a JSON object of at most 16 KiB")
		}
	}
	return nil
}

func (u StatusUpdate) stmt() (string, []any) {
	at := u.At.UnixMilli()
	switch {
	case !u.Online:
		return statusOfflineSQL, []any{at, u.Device}
	case u.Telemetry == nil:
		return statusOnlineSQL, []any{at, u.Device}
	}
	return statusTelemetrySQL, []any{at, u.Device, string(u.Telemetry)}
}

// deviceExists returns nil when device is registered, ErrDeviceNotFound
// when it is not, and the database's error when the question could not
// be answered (never "absent" for a failed read).
func (s *Store) deviceExists(ctx context.Context, device string) error {
	ok, err := s.DeviceExists(ctx, device)
	if err != nil {
		return err
	}
	if !ok {
		return vend.Errorf(ErrDeviceNotFound, "%q", clip(device))
	}
	return nil
}

// DeviceExists reports whether a device with this id is registered, in
// any state. A failed read is an error, never "absent".
func (s *Store) DeviceExists(ctx context.Context, device string) (bool, error) {
	var one int
	err := s.db.QueryRowContext(ctx, `SELECT 1 FROM devices WHERE id = $1`, device).Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("store: device exists: %w", err)
	}
	return true, nil
}

// SetDeviceStatuses applies many SetDeviceStatus updates in one
// transaction: one commit (one WAL flush) for a whole batch of telemetry
// instead of one per message. Updates heard before what is stored are
// ignored as in SetDeviceStatus, and unknown devices are skipped; an
// invalid update fails the batch with ErrInput before anything is written.
func (s *Store) SetDeviceStatuses(ctx context.Context, us []StatusUpdate) error {
	for _, u := range us {
		if err := u.check(); err != nil {
			return vend.Errorf(ErrInput, "device %q: %v", clip(u.Device), err)
		}
	}
	if len(us) == 0 {
		return nil
	}
	return s.tx(ctx, "device statuses", func(tx *sql.Tx) error {
		for _, u := range us {
			q, args := u.stmt()
			if _, err := tx.ExecContext(ctx, q, args...); err != nil {
				return err
			}
		}
		return nil
	})
}

// SetDeviceLost marks a device offline because its connection was lost at
// at (the cloud's clock): the broker published its last will, or the
// embedded broker saw the connection end. It applies only to the epoch
// the loss belongs to: when the current epoch began after at-grace, the
// loss is of an older connection (a will the broker published late, after
// the device had reconnected) and is ignored. It reports whether the
// device went from online to offline. Errors: ErrDeviceNotFound.
func (s *Store) SetDeviceLost(ctx context.Context, device string, at time.Time, grace time.Duration) (bool, error) {
	ms := at.UnixMilli()
	res, err := s.db.ExecContext(ctx, `UPDATE devices SET online = 0, offline_ms = $1
		WHERE id = $2 AND online = 1 AND online_since_ms <= $3`, ms, device, ms-grace.Milliseconds())
	if err != nil {
		return false, fmt.Errorf("store: device lost: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return true, nil
	}
	return false, s.deviceExists(ctx, device)
}

// ExpirePresence marks offline every online device not heard from since
// before (the staleness bound: a board that died without its will
// reaching the cloud, or whose broker went away with it), and returns
// their ids.
func (s *Store) ExpirePresence(ctx context.Context, before time.Time) ([]string, error) {
	// The loss is dated at the last uplink: anything heard after it
	// (a coalesced flush included) proves the device alive again.
	rows, err := s.db.QueryContext(ctx, `UPDATE devices SET online = 0, offline_ms = heard_ms
		WHERE online = 1 AND heard_ms < $1 RETURNING id`, before.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("store: expire presence: %w", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("store: expire presence: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: expire presence: %w", err)
	}
	return ids, nil
}

// OnlineDevices counts the devices the database holds online: what the
// beaconvend_devices_online gauge reads, so the two always agree.
func (s *Store) OnlineDevices(ctx context.Context) (int, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM devices WHERE online = 1`).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: online devices: %w", err)
	}
	return n, nil
}

// DeviceStatus is an operator's view of a device: no keys.
type DeviceStatus struct {
	ID        string
	Name      string
	State     DeviceState
	Online    bool
	Telemetry json.RawMessage
	LastSeen  time.Time
	Machines  []Machine
}
