-- 0002: the session lifecycle's bounded exits (see the state table in doc.go).
--
--   sessions: states unreported (the machine is free, the hold stays for a
--   settlement window), released (the window passed; policy release) and
--   voided (an operator released it); cap_minor (the payer's money cap),
--   unreported_ms (when an acknowledged session without a report becomes
--   unreported), reason (the audit reason of the last transition the cloud
--   made on its own), last_units (units of the device's ended event),
--   late, late_minor and receivable_minor (a report that arrived after the
--   session was closed without it);
--   accounts: kind user_receivable (what a payer owes after a late capture
--   the wallet could not cover; may go negative);
--   ledger_tx: kind late_capture.
--
-- PostgreSQL changes the CHECK constraints in place. SQLite cannot, so it
-- rebuilds the five tables involved (renaming the old ones first, so that
-- every foreign key moves with them and none is ever violated) and copies
-- the rows; on a large SQLite database this takes a while, once.

-- only postgres
ALTER TABLE accounts DROP CONSTRAINT accounts_kind_check;
ALTER TABLE accounts ADD CONSTRAINT accounts_kind_check
	CHECK (kind IN ('user_wallet', 'user_holds', 'operator_revenue', 'channel_clearing', 'user_receivable'));
ALTER TABLE sessions DROP CONSTRAINT sessions_state_check;
ALTER TABLE sessions ADD CONSTRAINT sessions_state_check
	CHECK (state IN ('pending', 'authorized', 'running', 'ending', 'unreported', 'settled', 'refunded', 'failed', 'expired', 'released', 'voided'));
ALTER TABLE sessions ADD COLUMN cap_minor BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN unreported_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN reason TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN last_units BIGINT NOT NULL DEFAULT -1;
ALTER TABLE sessions ADD COLUMN late INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN late_minor BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN receivable_minor BIGINT NOT NULL DEFAULT 0;
ALTER TABLE ledger_tx DROP CONSTRAINT ledger_tx_kind_check;
ALTER TABLE ledger_tx ADD CONSTRAINT ledger_tx_kind_check
	CHECK (kind IN ('topup', 'hold', 'capture', 'release', 'refund', 'late_capture'));
DROP INDEX sessions_deadline;
-- end only

-- only sqlite
DROP INDEX sessions_live_machine;
DROP INDEX sessions_deadline;
DROP INDEX sessions_operator;
DROP INDEX sessions_user;
DROP INDEX ledger_tx_session;
DROP INDEX entries_tx;
DROP INDEX entries_account;
ALTER TABLE entries RENAME TO old_entries;
ALTER TABLE usage_reports RENAME TO old_usage_reports;
ALTER TABLE ledger_tx RENAME TO old_ledger_tx;
ALTER TABLE sessions RENAME TO old_sessions;
ALTER TABLE accounts RENAME TO old_accounts;

CREATE TABLE accounts (
	id              INTEGER PRIMARY KEY,
	kind            TEXT NOT NULL CHECK (kind IN ('user_wallet', 'user_holds', 'operator_revenue', 'channel_clearing', 'user_receivable')),
	owner           TEXT NOT NULL,
	currency        TEXT NOT NULL,
	balance         BIGINT NOT NULL DEFAULT 0,
	may_go_negative INTEGER NOT NULL DEFAULT 0,
	created_ms      BIGINT NOT NULL,
	UNIQUE (kind, owner, currency),
	CHECK (may_go_negative = 1 OR balance >= 0)
);
INSERT INTO accounts (id, kind, owner, currency, balance, may_go_negative, created_ms)
	SELECT id, kind, owner, currency, balance, may_go_negative, created_ms FROM old_accounts;

CREATE TABLE sessions (
	id            TEXT PRIMARY KEY,
	user_id       TEXT NOT NULL REFERENCES users(id),
	device_id     TEXT NOT NULL REFERENCES devices(id),
	operator_id   TEXT NOT NULL REFERENCES operators(id),
	machine_id    TEXT NOT NULL,
	slot_id       TEXT NOT NULL DEFAULT '',
	state         TEXT NOT NULL CHECK (state IN ('pending', 'authorized', 'running', 'ending', 'unreported', 'settled', 'refunded', 'failed', 'expired', 'released', 'voided')),
	unit          INTEGER NOT NULL,
	price_minor   BIGINT NOT NULL,
	price_per     BIGINT NOT NULL,
	currency      TEXT NOT NULL,
	cap_units     BIGINT NOT NULL,
	hold_minor    BIGINT NOT NULL CHECK (hold_minor >= 0),
	grant_bytes   BLOB,
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
	cap_minor        BIGINT NOT NULL DEFAULT 0,
	unreported_ms    BIGINT NOT NULL DEFAULT 0,
	reason           TEXT NOT NULL DEFAULT '',
	last_units       BIGINT NOT NULL DEFAULT -1,
	late             INTEGER NOT NULL DEFAULT 0,
	late_minor       BIGINT NOT NULL DEFAULT 0,
	receivable_minor BIGINT NOT NULL DEFAULT 0,
	UNIQUE (user_id, idem_key),
	CHECK (captured + released <= hold_minor)
);
INSERT INTO sessions (id, user_id, device_id, operator_id, machine_id, slot_id, state, unit, price_minor, price_per, currency,
	cap_units, hold_minor, grant_bytes, grant_exp_ms, deadline_ms, win, win_k, idem_key, units, captured, released, outcome,
	fault, created_ms, updated_ms, started_ms, ended_ms)
	SELECT id, user_id, device_id, operator_id, machine_id, slot_id, state, unit, price_minor, price_per, currency,
	cap_units, hold_minor, grant_bytes, grant_exp_ms, deadline_ms, win, win_k, idem_key, units, captured, released, outcome,
	fault, created_ms, updated_ms, started_ms, ended_ms FROM old_sessions;

CREATE TABLE ledger_tx (
	id         INTEGER PRIMARY KEY,
	kind       TEXT NOT NULL CHECK (kind IN ('topup', 'hold', 'capture', 'release', 'refund', 'late_capture')),
	idem_key   TEXT NOT NULL UNIQUE,
	session_id TEXT REFERENCES sessions(id),
	req_hash   TEXT NOT NULL DEFAULT '',
	created_ms BIGINT NOT NULL
);
INSERT INTO ledger_tx (id, kind, idem_key, session_id, req_hash, created_ms)
	SELECT id, kind, idem_key, session_id, req_hash, created_ms FROM old_ledger_tx;

CREATE TABLE entries (
	id         INTEGER PRIMARY KEY,
	tx_id      BIGINT NOT NULL REFERENCES ledger_tx(id),
	account_id BIGINT NOT NULL REFERENCES accounts(id),
	amount     BIGINT NOT NULL CHECK (amount <> 0),
	currency   TEXT NOT NULL
);
INSERT INTO entries (id, tx_id, account_id, amount, currency)
	SELECT id, tx_id, account_id, amount, currency FROM old_entries;

CREATE TABLE usage_reports (
	session_id  TEXT PRIMARY KEY REFERENCES sessions(id),
	device_id   TEXT NOT NULL,
	seq         BIGINT NOT NULL,
	digest      BLOB NOT NULL,
	signed      BLOB NOT NULL,
	received_ms BIGINT NOT NULL,
	UNIQUE (device_id, seq)
);
INSERT INTO usage_reports (session_id, device_id, seq, digest, signed, received_ms)
	SELECT session_id, device_id, seq, digest, signed, received_ms FROM old_usage_reports;

DROP TABLE old_entries;
DROP TABLE old_usage_reports;
DROP TABLE old_ledger_tx;
DROP TABLE old_sessions;
DROP TABLE old_accounts;

CREATE UNIQUE INDEX sessions_live_machine ON sessions (device_id, machine_id)
	WHERE state IN ('pending', 'authorized', 'running', 'ending');
CREATE INDEX sessions_operator ON sessions (operator_id, created_ms);
CREATE INDEX sessions_user ON sessions (user_id, created_ms);
CREATE INDEX ledger_tx_session ON ledger_tx (session_id);
CREATE INDEX entries_tx ON entries (tx_id);
CREATE INDEX entries_account ON entries (account_id);
-- end only

-- The sweeper's three queries: pending past its start-by bound,
-- acknowledged past its longest run, unreported past its window.
CREATE INDEX sessions_pending_deadline ON sessions (deadline_ms) WHERE state = 'pending';
CREATE INDEX sessions_live_unreported ON sessions (unreported_ms) WHERE state IN ('authorized', 'running', 'ending');
CREATE INDEX sessions_unreported_deadline ON sessions (deadline_ms) WHERE state = 'unreported';
CREATE INDEX sessions_unreported_operator ON sessions (operator_id, deadline_ms) WHERE state = 'unreported';
-- Sessions live when this migration runs get the longest bound the
-- defaults allow (24 h run + 30 min allowance after their old deadline)
-- before they can become unreported.
UPDATE sessions SET unreported_ms = deadline_ms + 88200000
	WHERE unreported_ms = 0 AND state IN ('pending', 'authorized', 'running', 'ending');
-- The receivable kind may go negative (the payer owes it).
UPDATE accounts SET may_go_negative = 1 WHERE kind = 'user_receivable';
