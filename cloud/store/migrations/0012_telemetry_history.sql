-- 0012: what the operator console's fleet pages read besides the latest
-- telemetry: a device's location (searched and shown), a bounded history
-- of telemetry samples (the device page's chart) and of presence changes
-- (its state history). Both histories are pruned per device as they are
-- written (store.RecordTelemetrySample, store.RecordPresence).

-- devices.location: where the device stands (free text, searched).
ALTER TABLE devices ADD COLUMN location TEXT NOT NULL DEFAULT '';

-- One sample per device at most every sampling period (the service's
-- TelemetryHistory options): signal, outbox depth and faults at at_ms
-- (the cloud's clock). rssi_dbm is NULL when the device has no modem or
-- the modem did not know it.
CREATE TABLE telemetry_samples (
	device_id    TEXT NOT NULL REFERENCES devices(id),
	at_ms        BIGINT NOT NULL,
	rssi_dbm     INTEGER,
	outbox_depth BIGINT NOT NULL,
	faults       INTEGER NOT NULL,
	PRIMARY KEY (device_id, at_ms)
);

-- Presence changes the cloud decided (online, offline) with their cause
-- (state, will, disconnect, stale), at the cloud's clock.
CREATE TABLE presence_log (
	device_id TEXT NOT NULL REFERENCES devices(id),
	at_ms     BIGINT NOT NULL,
	online    INTEGER NOT NULL,
	cause     TEXT NOT NULL,
	PRIMARY KEY (device_id, at_ms, online)
);
