-- 0014 (0012 in the agreed order; renumbered where the fleet and refund
-- approval migrations landed first): operator alerts, their deliveries and the operators' alert
-- settings.
--
-- alerts: one row per raised alert. dedup_key (kind|device|machine|slot|ref)
-- is unique while the alert is not resolved (resolved_ms = 0), so a raise
-- on any number of instances inserts one row (INSERT … ON CONFLICT DO
-- NOTHING) and a condition that clears and comes back opens a new one.
-- state: open → acknowledged (acked_by, acked_ms) → resolved (by the
-- engine when the condition clears, or by an operator). Times are the
-- cloud's clock, BIGINT Unix milliseconds.
CREATE TABLE alerts (
	id          TEXT PRIMARY KEY,
	operator_id TEXT NOT NULL REFERENCES operators(id),
	kind        TEXT NOT NULL,
	severity    TEXT NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
	dedup_key   TEXT NOT NULL,
	device_id   TEXT NOT NULL DEFAULT '',
	machine_id  TEXT NOT NULL DEFAULT '',
	slot_id     TEXT NOT NULL DEFAULT '',
	ref         TEXT NOT NULL DEFAULT '',
	code        TEXT NOT NULL DEFAULT '',
	summary     TEXT NOT NULL,
	detail      TEXT NOT NULL DEFAULT '',
	state       TEXT NOT NULL CHECK (state IN ('open', 'acknowledged', 'resolved')),
	created_ms  BIGINT NOT NULL,
	acked_ms    BIGINT NOT NULL DEFAULT 0,
	acked_by    TEXT NOT NULL DEFAULT '',
	resolved_ms BIGINT NOT NULL DEFAULT 0,
	resolved_by TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX alerts_open_key ON alerts (dedup_key) WHERE resolved_ms = 0;
CREATE INDEX alerts_operator ON alerts (operator_id, created_ms);
CREATE INDEX alerts_open_kind ON alerts (kind) WHERE resolved_ms = 0;

-- alert_deliveries is the outbox: one row per alert and channel ('email',
-- 'webhook'), written in the transaction that raises the alert, so a
-- process that dies between the raise and the send leaves the delivery
-- for the next sweep on any instance. A sender claims a row by moving
-- lease_ms forward (one conditional UPDATE); a claim whose lease passed
-- without a result is claimed again, so a message may be sent twice but
-- never lost (each carries its delivery id for the receiver to
-- deduplicate). state: pending → sent, or failed after the last attempt;
-- next_ms is when the next attempt may start (backoff, quiet period).
CREATE TABLE alert_deliveries (
	id          TEXT PRIMARY KEY,
	alert_id    TEXT NOT NULL REFERENCES alerts(id),
	operator_id TEXT NOT NULL REFERENCES operators(id),
	channel     TEXT NOT NULL CHECK (channel IN ('email', 'webhook')),
	target      TEXT NOT NULL,
	state       TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
	attempts    INTEGER NOT NULL DEFAULT 0,
	next_ms     BIGINT NOT NULL,
	lease_ms    BIGINT NOT NULL DEFAULT 0,
	last_error  TEXT NOT NULL DEFAULT '',
	sent_ms     BIGINT NOT NULL DEFAULT 0,
	created_ms  BIGINT NOT NULL,
	UNIQUE (alert_id, channel)
);
CREATE INDEX alert_deliveries_due ON alert_deliveries (next_ms) WHERE state = 'pending';

-- alert_settings: one operator's thresholds, recipients and quiet period.
-- A missing row means the defaults (store.DefaultAlertSettings). quiet_start
-- and quiet_end are 'HH:MM' in time_zone (an IANA name), both '' for none.
CREATE TABLE alert_settings (
	operator_id       TEXT PRIMARY KEY REFERENCES operators(id),
	email_to          TEXT NOT NULL DEFAULT '',
	webhook_url       TEXT NOT NULL DEFAULT '',
	offline_after_s   BIGINT NOT NULL,
	vend_fail_count   INTEGER NOT NULL,
	vend_fail_window_s BIGINT NOT NULL,
	low_stock_level   INTEGER NOT NULL,
	quiet_start       TEXT NOT NULL DEFAULT '',
	quiet_end         TEXT NOT NULL DEFAULT '',
	time_zone         TEXT NOT NULL DEFAULT 'UTC',
	updated_ms        BIGINT NOT NULL
);

-- alert_cursors: how far a mirrored source (channel_alerts) was read.
CREATE TABLE alert_cursors (
	name TEXT PRIMARY KEY,
	pos  BIGINT NOT NULL
);

-- The alert engine looks at each machine's latest sessions by the cloud's
-- clock (no-flow, repeated vend failures).
CREATE INDEX sessions_machine_updated ON sessions (device_id, machine_id, updated_ms);
CREATE INDEX sessions_updated ON sessions (updated_ms);
