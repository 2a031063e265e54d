package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"beaconvend/app-protocol/vend"
)

// LastSaleWindow bounds how far back FleetDevices looks for a device's
// last sale: a sale older than this shows as none, so the fleet list
// reads a bounded slice of the session table.
const LastSaleWindow = 30 * 24 * time.Hour

// FleetDevice is a device as the operator console's fleet list shows it:
// its status with the presence epoch's bounds, where it stands, and when
// each machine last sold.
type FleetDevice struct {
	DeviceStatus
	Location    string
	OnlineSince time.Time // when the current connection epoch began; zero when never online
	OfflineAt   time.Time // when the last connection was lost; zero when never
	Heard       time.Time // the last uplink of any kind; zero when never
	// LastSale is the end of the newest session that captured money on
	// each machine (by machine id) within LastSaleWindow.
	LastSale map[string]time.Time
}

const fleetCols = statusCols + `, location, online_since_ms, offline_ms, heard_ms`

func scanFleet(sc interface{ Scan(...any) error }) (FleetDevice, error) {
	var d FleetDevice
	var state, tel string
	var online int
	var seen, since, off, heard int64
	if err := sc.Scan(&d.ID, &d.Name, &state, &online, &tel, &seen, &d.Location, &since, &off, &heard); err != nil {
		return FleetDevice{}, err
	}
	d.State, d.Online, d.Telemetry = DeviceState(state), online == 1, []byte(tel)
	d.LastSeen, d.OnlineSince, d.OfflineAt, d.Heard = msTime(seen), msTime(since), msTime(off), msTime(heard)
	d.LastSale = map[string]time.Time{}
	return d, nil
}

func msTime(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// FleetDevices returns all of operator's devices, ordered by ID, with
// machines, presence bounds and last sales. It reads no keys, and never
// another operator's devices.
func (s *Store) FleetDevices(ctx context.Context, operator string) ([]FleetDevice, error) {
	return s.fleet(ctx, operator, "")
}

// FleetDevice returns one of operator's devices as FleetDevices does.
// Errors: ErrDeviceNotFound (also for another operator's device).
func (s *Store) FleetDevice(ctx context.Context, operator, id string) (FleetDevice, error) {
	ds, err := s.fleet(ctx, operator, id)
	if err != nil {
		return FleetDevice{}, err
	}
	if len(ds) == 0 {
		return FleetDevice{}, vend.Errorf(ErrDeviceNotFound, "%q", clip(id))
	}
	return ds[0], nil
}

func (s *Store) fleet(ctx context.Context, operator, id string) ([]FleetDevice, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+fleetCols+` FROM devices
		WHERE operator_id = $1 AND ($2 = '' OR id = $2) ORDER BY id`, operator, id)
	if err != nil {
		return nil, fmt.Errorf("store: fleet: %w", err)
	}
	var out []FleetDevice
	var ids []string
	at := map[string]int{}
	for rows.Next() {
		d, err := scanFleet(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("store: fleet: %w", err)
		}
		at[d.ID] = len(out)
		out = append(out, d)
		ids = append(ids, d.ID)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: fleet: %w", err)
	}
	if len(out) == 0 {
		return nil, nil
	}
	ms, err := s.machines(ctx, ids)
	if err != nil {
		return nil, err
	}
	for i := range out {
		out[i].Machines = ms[out[i].ID]
	}
	rows, err = s.db.QueryContext(ctx, `SELECT device_id, machine_id, MAX(ended_ms) FROM sessions
		WHERE operator_id = $1 AND ($2 = '' OR device_id = $2) AND created_ms >= $3 AND captured > 0 AND ended_ms > 0
		GROUP BY device_id, machine_id`, operator, id, s.now().Add(-LastSaleWindow).UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("store: fleet last sales: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var dev, mach string
		var ended int64
		if err := rows.Scan(&dev, &mach, &ended); err != nil {
			return nil, fmt.Errorf("store: fleet last sales: %w", err)
		}
		if i, ok := at[dev]; ok {
			out[i].LastSale[mach] = msTime(ended)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: fleet last sales: %w", err)
	}
	return out, nil
}

// TelemetrySample is one point of a device's telemetry history.
type TelemetrySample struct {
	Device      string
	At          time.Time // the cloud's clock
	RSSIdBm     *int      // nil: no modem, or the modem did not know
	OutboxDepth uint32
	Faults      int // the board link and the machines reporting a fault
}

// RecordTelemetrySample keeps smp in the device's history unless one was
// kept within every before it, and drops the device's samples older than
// keep before smp.At, so a device holds at most keep/every samples
// whatever its telemetry rate and however many instances hear it. It
// reports whether smp was kept. Errors: ErrInput (every or keep not
// positive), ErrDeviceNotFound.
func (s *Store) RecordTelemetrySample(ctx context.Context, smp TelemetrySample, every, keep time.Duration) (bool, error) {
	n, err := s.RecordTelemetrySamples(ctx, []TelemetrySample{smp}, every, keep)
	if err != nil {
		return false, err
	}
	if n == 0 {
		if err := s.deviceExists(ctx, smp.Device); err != nil {
			return false, err
		}
	}
	return n == 1, nil
}

// RecordTelemetrySamples is RecordTelemetrySample for many samples in one
// transaction (one commit for a flush's worth); samples of unknown
// devices are skipped. It returns how many were kept. Errors: ErrInput.
func (s *Store) RecordTelemetrySamples(ctx context.Context, smps []TelemetrySample, every, keep time.Duration) (int, error) {
	if every <= 0 || keep <= 0 {
		return 0, vend.Errorf(ErrInput, "telemetry sample: period and retention must be positive")
	}
	if len(smps) == 0 {
		return 0, nil
	}
	var kept int
	err := s.tx(ctx, "telemetry samples", func(tx *sql.Tx) error {
		kept = 0
		for _, smp := range smps {
			at := smp.At.UnixMilli()
			var rssi any
			if smp.RSSIdBm != nil {
				rssi = *smp.RSSIdBm
			}
			res, err := tx.ExecContext(ctx, `INSERT INTO telemetry_samples (device_id, at_ms, rssi_dbm, outbox_depth, faults)
				SELECT $1, $2, $3, $4, $5 FROM devices d WHERE d.id = $1 AND NOT EXISTS
				(SELECT 1 FROM telemetry_samples t WHERE t.device_id = $1 AND t.at_ms > $6 AND t.at_ms <= $2)
				ON CONFLICT DO NOTHING`, smp.Device, at, rssi, int64(smp.OutboxDepth), smp.Faults, at-every.Milliseconds())
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n != 1 {
				continue
			}
			kept++
			if _, err := tx.ExecContext(ctx, `DELETE FROM telemetry_samples WHERE device_id = $1 AND at_ms < $2`,
				smp.Device, at-keep.Milliseconds()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return kept, nil
}

// TelemetryHistory returns the samples of one of operator's devices taken
// at or after since, oldest first, at most limit (the newest ones; 0
// means 1000, capped at 10,000). Errors: ErrDeviceNotFound (also for
// another operator's device).
func (s *Store) TelemetryHistory(ctx context.Context, operator, device string, since time.Time, limit int) ([]TelemetrySample, error) {
	if err := s.ownsDevice(ctx, operator, device); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = 1000
	}
	limit = min(limit, 10000)
	rows, err := s.db.QueryContext(ctx, `SELECT at_ms, rssi_dbm, outbox_depth, faults FROM telemetry_samples
		WHERE device_id = $1 AND at_ms >= $2 ORDER BY at_ms DESC LIMIT $3`, device, since.UnixMilli(), limit)
	if err != nil {
		return nil, fmt.Errorf("store: telemetry history: %w", err)
	}
	defer rows.Close()
	var out []TelemetrySample
	for rows.Next() {
		var at, depth int64
		var rssi sql.NullInt64
		smp := TelemetrySample{Device: device}
		if err := rows.Scan(&at, &rssi, &depth, &smp.Faults); err != nil {
			return nil, fmt.Errorf("store: telemetry history: %w", err)
		}
		smp.At, smp.OutboxDepth = msTime(at), uint32(depth)
		if rssi.Valid {
			v := int(rssi.Int64)
			smp.RSSIdBm = &v
		}
		out = append(out, smp)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: telemetry history: %w", err)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

// PresenceChange is one entry of a device's state history.
type PresenceChange struct {
	At     time.Time // the cloud's clock
	Online bool
	Cause  string // state, will, disconnect, stale
}

// RecordPresence keeps a presence change the cloud decided in the
// device's state history and drops the device's entries older than keep
// before at. A change already kept (same device, time and direction) is
// kept once. Errors: ErrInput (keep not positive, cause empty or longer
// than 32 bytes), ErrDeviceNotFound.
func (s *Store) RecordPresence(ctx context.Context, device string, c PresenceChange, keep time.Duration) error {
	if keep <= 0 || c.Cause == "" || len(c.Cause) > 32 {
		return vend.Errorf(ErrInput, "presence change: retention must be positive and the cause 1-32 bytes")
	}
	at := c.At.UnixMilli()
	online := 0
	if c.Online {
		online = 1
	}
	var n int64
	err := s.tx(ctx, "presence change", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO presence_log (device_id, at_ms, online, cause)
			SELECT $1, $2, $3, $4 FROM devices WHERE id = $1 ON CONFLICT DO NOTHING`, device, at, online, c.Cause)
		if err != nil {
			return err
		}
		n, _ = res.RowsAffected()
		_, err = tx.ExecContext(ctx, `DELETE FROM presence_log WHERE device_id = $1 AND at_ms < $2`, device, at-keep.Milliseconds())
		return err
	})
	if err != nil {
		return err
	}
	if n == 0 {
		return s.deviceExists(ctx, device)
	}
	return nil
}

// PresenceHistory returns the newest limit presence changes of one of
// operator's devices, newest first (limit 0 means 50, capped at 1000).
// Errors: ErrDeviceNotFound (also for another operator's device).
func (s *Store) PresenceHistory(ctx context.Context, operator, device string, limit int) ([]PresenceChange, error) {
	if err := s.ownsDevice(ctx, operator, device); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = 50
	}
	limit = min(limit, 1000)
	rows, err := s.db.QueryContext(ctx, `SELECT at_ms, online, cause FROM presence_log
		WHERE device_id = $1 ORDER BY at_ms DESC, online LIMIT $2`, device, limit)
	if err != nil {
		return nil, fmt.Errorf("store: presence history: %w", err)
	}
	defer rows.Close()
	var out []PresenceChange
	for rows.Next() {
		var at int64
		var online int
		var c PresenceChange
		if err := rows.Scan(&at, &online, &c.Cause); err != nil {
			return nil, fmt.Errorf("store: presence history: %w", err)
		}
		c.At, c.Online = msTime(at), online == 1
		out = append(out, c)
	}
	return out, rows.Err()
}

func (s *Store) ownsDevice(ctx context.Context, operator, device string) error {
	if err := ownDevice(ctx, s.db, operator, device); err != nil && vend.KindOf(err) != vend.NotFound {
		return fmt.Errorf("store: device owner: %w", err)
	} else if err != nil {
		return err
	}
	return nil
}

// deviceChannel is the PostgreSQL notification channel NotifyDeviceChange
// notifies on, with the device id as payload.
const deviceChannel = "beaconvend_device"

// NotifyDeviceChange tells every instance listening with
// ListenDeviceChanges that device's status changed (a presence change, a
// fault). On databases without notifications (SQLite, one instance) it
// does nothing.
func (s *Store) NotifyDeviceChange(ctx context.Context, device string) error {
	if s.d.name != "postgres" {
		return nil
	}
	if _, err := s.db.ExecContext(ctx, `SELECT pg_notify($1, $2)`, deviceChannel, device); err != nil {
		return fmt.Errorf("store: notify device change: %w", err)
	}
	return nil
}

// ListenDeviceChanges calls fn with the device id of every
// NotifyDeviceChange any instance makes from now on (its own included),
// until ctx is done; it then returns nil. It reconnects as ListenReplies
// does, and a change notified while it reconnects is not announced, so
// callers re-read the store periodically as well. Other databases than
// PostgreSQL return ErrNoNotify at once.
func (s *Store) ListenDeviceChanges(ctx context.Context, fn func(device string)) error {
	return s.listen(ctx, deviceChannel, "device change", fn)
}
