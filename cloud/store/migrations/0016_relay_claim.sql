-- 0016: the phone as relay, and boards claimed in the field.
--
--   devices.relay_always, machines.relay_always: the operator's choice
--     that every session of the device (or of the machine) gets its grant
--     relayed by the phone over BLE, even while the device is online;
--   sessions.relay_ticket: the signed relay ticket (app-protocol/signed,
--     tag 'R') given to the phone with the grant: it binds the grant to
--     the device and a fresh random nonce. Set once (a retried start gets
--     the same ticket); NULL for a session the cloud never offered to relay;
--   device_claims: one row per board claimed by its X25519 sealing key
--     (hex, unique: a key is claimed once), the device it became, the
--     operator and operator account that claimed it, and the bundle
--     sealed to that key (so a retry of the same claim gets the same
--     bundle). Times are the cloud's clock, BIGINT Unix milliseconds.
ALTER TABLE devices ADD COLUMN relay_always INTEGER NOT NULL DEFAULT 0;
ALTER TABLE machines ADD COLUMN relay_always INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN relay_ticket {{BYTES}};
CREATE TABLE device_claims (
	seal_key     TEXT PRIMARY KEY,
	device_id    TEXT NOT NULL UNIQUE REFERENCES devices (id),
	operator_id  TEXT NOT NULL,
	claimed_by   TEXT NOT NULL,
	sealed       {{BYTES}} NOT NULL,
	claimed_ms   BIGINT NOT NULL
);
