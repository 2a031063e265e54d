-- 0003: presence by the cloud's clock and the connection epoch, command
-- replies keyed by (device, command), retired signing keys and the
-- device-key rotation state, dead letters, and the indexes the janitor
-- prunes by. Times are the cloud's clock, BIGINT Unix milliseconds.

-- online_since_ms: when the current connection epoch began (the cloud
-- received the device's online state, or its first message after being
-- offline); offline_ms: when the connection was lost (the will or the
-- disconnect was heard; for the staleness bound, the last uplink); heard_ms:
-- the last uplink of any kind, which the staleness bound is measured from.
ALTER TABLE devices ADD COLUMN online_since_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN offline_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN heard_ms BIGINT NOT NULL DEFAULT 0;

-- The device-key rotation the cloud drives (store.Rotation): rotation is
-- '' (none), 'requested', 'proposed' (sign_key_next holds the key the
-- device proposed) or 'committed' (the device signs with sign_key_next;
-- promoted at its first report under it); rotation_n numbers the attempts
-- (command ids), rotation_sent_ms is when its command was last sent.
ALTER TABLE devices ADD COLUMN rotation TEXT NOT NULL DEFAULT '';
ALTER TABLE devices ADD COLUMN rotation_n BIGINT NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN rotation_sent_ms BIGINT NOT NULL DEFAULT 0;

-- A key replaced by PromoteSignKey verifies reports of sessions created
-- before retired_ms, for a bounded window after it.
CREATE TABLE retired_sign_keys (
	device_id  TEXT NOT NULL REFERENCES devices(id),
	sign_key   {{BYTES}} NOT NULL,
	retired_ms BIGINT NOT NULL,
	PRIMARY KEY (device_id, sign_key)
);

-- Replies are matched by (device, command id): a reply another device
-- publishes under the same command id is its own row and decides nothing.
CREATE TABLE command_replies_v3 (
	device_id  TEXT NOT NULL,
	command_id TEXT NOT NULL,
	status     TEXT NOT NULL,
	body       TEXT NOT NULL,
	at_ms      BIGINT NOT NULL,
	PRIMARY KEY (device_id, command_id)
);
INSERT INTO command_replies_v3 (device_id, command_id, status, body, at_ms)
	SELECT device_id, command_id, status, body, at_ms FROM command_replies;
DROP TABLE command_replies;
ALTER TABLE command_replies_v3 RENAME TO command_replies;
CREATE INDEX command_replies_at ON command_replies (at_ms);

-- Uplinks that can never be handled (a usage report no known key
-- verifies): kept for an operator, acknowledged to the device once.
CREATE TABLE dead_letters (
	device_id  TEXT NOT NULL,
	message_id TEXT NOT NULL,
	leaf       TEXT NOT NULL,
	code       TEXT NOT NULL,
	detail     TEXT NOT NULL,
	payload    {{BYTES}} NOT NULL,
	at_ms      BIGINT NOT NULL,
	PRIMARY KEY (device_id, message_id)
);

CREATE INDEX processed_messages_at ON processed_messages (at_ms);
CREATE INDEX idempotency_created ON idempotency (created_ms);
CREATE INDEX tokens_expires ON tokens (expires_ms);
