-- 0001: the initial schema. {{ID}} and {{BYTES}} are replaced per dialect
-- (dialect.go); everything else is the same text on SQLite and PostgreSQL.
-- Times are BIGINT Unix milliseconds (UTC); money is BIGINT minor units.

CREATE TABLE operators (
	id         TEXT PRIMARY KEY,
	name       TEXT NOT NULL,
	created_ms BIGINT NOT NULL
);

CREATE TABLE operator_accounts (
	id          TEXT PRIMARY KEY,
	operator_id TEXT NOT NULL REFERENCES operators(id),
	email       TEXT NOT NULL UNIQUE,
	pw_hash     TEXT NOT NULL,
	created_ms  BIGINT NOT NULL
);

CREATE TABLE devices (
	id            TEXT PRIMARY KEY,
	operator_id   TEXT NOT NULL REFERENCES operators(id),
	name          TEXT NOT NULL,
	state         TEXT NOT NULL CHECK (state IN ('active', 'disabled')),
	identity_key  {{BYTES}} NOT NULL,
	rotation_k    INTEGER NOT NULL CHECK (rotation_k BETWEEN 0 AND 15),
	sign_key      {{BYTES}} NOT NULL,
	sign_key_next {{BYTES}},
	mqtt_hash     TEXT NOT NULL,
	online        INTEGER NOT NULL DEFAULT 0,
	telemetry     TEXT NOT NULL DEFAULT '{}',
	last_seen_ms  BIGINT NOT NULL DEFAULT 0,
	created_ms    BIGINT NOT NULL,
	updated_ms    BIGINT NOT NULL
);
CREATE INDEX devices_operator ON devices (operator_id);

CREATE TABLE machines (
	device_id   TEXT NOT NULL REFERENCES devices(id),
	id          TEXT NOT NULL,
	kind        TEXT NOT NULL,
	name        TEXT NOT NULL,
	unit        INTEGER NOT NULL,
	price_minor BIGINT NOT NULL CHECK (price_minor >= 0),
	price_per   BIGINT NOT NULL CHECK (price_per >= 1),
	currency    TEXT NOT NULL,
	updated_ms  BIGINT NOT NULL,
	PRIMARY KEY (device_id, id)
);

CREATE TABLE machine_slots (
	device_id   TEXT NOT NULL,
	machine_id  TEXT NOT NULL,
	id          TEXT NOT NULL,
	name        TEXT NOT NULL,
	price_minor BIGINT NOT NULL CHECK (price_minor >= 0),
	price_per   BIGINT NOT NULL CHECK (price_per >= 1),
	PRIMARY KEY (device_id, machine_id, id),
	FOREIGN KEY (device_id, machine_id) REFERENCES machines (device_id, id)
);

CREATE TABLE users (
	id         TEXT PRIMARY KEY,
	email      TEXT NOT NULL UNIQUE,
	pw_hash    TEXT NOT NULL,
	created_ms BIGINT NOT NULL
);

CREATE TABLE tokens (
	hash       {{BYTES}} PRIMARY KEY,
	user_id    TEXT NOT NULL REFERENCES users(id),
	expires_ms BIGINT NOT NULL,
	revoked    INTEGER NOT NULL DEFAULT 0,
	created_ms BIGINT NOT NULL
);
CREATE INDEX tokens_user ON tokens (user_id);

-- The ledger. An account's balance is the sum of its entries; it is kept
-- on the row and changed in the same transaction as the entries.
-- may_go_negative is 1 only for channel_clearing accounts.
CREATE TABLE accounts (
	id              {{ID}},
	kind            TEXT NOT NULL CHECK (kind IN ('user_wallet', 'user_holds', 'operator_revenue', 'channel_clearing')),
	owner           TEXT NOT NULL,
	currency        TEXT NOT NULL,
	balance         BIGINT NOT NULL DEFAULT 0,
	may_go_negative INTEGER NOT NULL DEFAULT 0,
	created_ms      BIGINT NOT NULL,
	UNIQUE (kind, owner, currency),
	CHECK (may_go_negative = 1 OR balance >= 0)
);

CREATE TABLE sessions (
	id            TEXT PRIMARY KEY,
	user_id       TEXT NOT NULL REFERENCES users(id),
	device_id     TEXT NOT NULL REFERENCES devices(id),
	operator_id   TEXT NOT NULL REFERENCES operators(id),
	machine_id    TEXT NOT NULL,
	slot_id       TEXT NOT NULL DEFAULT '',
	state         TEXT NOT NULL CHECK (state IN ('pending', 'authorized', 'running', 'ending', 'settled', 'refunded', 'failed', 'expired')),
	unit          INTEGER NOT NULL,
	price_minor   BIGINT NOT NULL,
	price_per     BIGINT NOT NULL,
	currency      TEXT NOT NULL,
	cap_units     BIGINT NOT NULL,
	hold_minor    BIGINT NOT NULL CHECK (hold_minor >= 0),
	grant_bytes   {{BYTES}},
	grant_exp_ms  BIGINT NOT NULL,
	deadline_ms   BIGINT NOT NULL,
	win           BIGINT NOT NULL DEFAULT 0,
	win_k         INTEGER NOT NULL DEFAULT 0,
	idem_key      TEXT NOT NULL,
	units         BIGINT NOT NULL DEFAULT 0,
	captured      BIGINT NOT NULL DEFAULT 0,
	released      BIGINT NOT NULL DEFAULT 0,
	outcome       INTEGER NOT NULL DEFAULT 0,
	fault         TEXT NOT NULL DEFAULT '',
	created_ms    BIGINT NOT NULL,
	updated_ms    BIGINT NOT NULL,
	started_ms    BIGINT NOT NULL DEFAULT 0,
	ended_ms      BIGINT NOT NULL DEFAULT 0,
	UNIQUE (user_id, idem_key),
	CHECK (captured + released <= hold_minor)
);
-- At most one live session per machine, enforced by the database.
CREATE UNIQUE INDEX sessions_live_machine ON sessions (device_id, machine_id)
	WHERE state IN ('pending', 'authorized', 'running', 'ending');
CREATE INDEX sessions_deadline ON sessions (deadline_ms) WHERE state IN ('pending', 'authorized');
CREATE INDEX sessions_operator ON sessions (operator_id, created_ms);
CREATE INDEX sessions_user ON sessions (user_id, created_ms);

-- idem_key is UNIQUE across the ledger: "topup:<user>:<key>", "hold:<session>",
-- "capture:<session>", "release:<session>". A second capture of a session
-- cannot be written, whatever the code above it does.
CREATE TABLE ledger_tx (
	id         {{ID}},
	kind       TEXT NOT NULL CHECK (kind IN ('topup', 'hold', 'capture', 'release', 'refund')),
	idem_key   TEXT NOT NULL UNIQUE,
	session_id TEXT REFERENCES sessions(id),
	req_hash   TEXT NOT NULL DEFAULT '',
	created_ms BIGINT NOT NULL
);
CREATE INDEX ledger_tx_session ON ledger_tx (session_id);

CREATE TABLE entries (
	id         {{ID}},
	tx_id      BIGINT NOT NULL REFERENCES ledger_tx(id),
	account_id BIGINT NOT NULL REFERENCES accounts(id),
	amount     BIGINT NOT NULL CHECK (amount <> 0),
	currency   TEXT NOT NULL
);
CREATE INDEX entries_tx ON entries (tx_id);
CREATE INDEX entries_account ON entries (account_id);

-- Usage reports, mirroring signed.UsageGuard: one per session, one per (device, seq).
CREATE TABLE usage_reports (
	session_id  TEXT PRIMARY KEY REFERENCES sessions(id),
	device_id   TEXT NOT NULL,
	seq         BIGINT NOT NULL,
	digest      {{BYTES}} NOT NULL,
	signed      {{BYTES}} NOT NULL,
	received_ms BIGINT NOT NULL,
	UNIQUE (device_id, seq)
);

CREATE TABLE processed_messages (
	device_id  TEXT NOT NULL,
	message_id TEXT NOT NULL,
	at_ms      BIGINT NOT NULL,
	PRIMARY KEY (device_id, message_id)
);

CREATE TABLE command_replies (
	command_id TEXT PRIMARY KEY,
	device_id  TEXT NOT NULL,
	status     TEXT NOT NULL,
	body       TEXT NOT NULL,
	at_ms      BIGINT NOT NULL
);

CREATE TABLE idempotency (
	user_id    TEXT NOT NULL,
	idem_key   TEXT NOT NULL,
	req_hash   {{BYTES}} NOT NULL,
	status     INTEGER NOT NULL,
	response   {{BYTES}} NOT NULL,
	created_ms BIGINT NOT NULL,
	PRIMARY KEY (user_id, idem_key)
);
