-- 0009: sessions paid through a channel (checkouts) and guest payers.
--
--   users.kind: 'account' (signs in) or 'guest' (one per checkout of a
--     payer without an account; never signs in);
--   machines.web_checkout: whether the machine's QR web checkout may
--     start sessions without a proximity ID (off by default: a printed
--     code proves nothing about presence);
--   channel_payments: purpose 'session' (the cap of one checkout); state
--     'authorized' (a card hold: credited, not captured yet);
--     provider_ref (the provider's own ID of the order); capture_mode
--     ('auto', or 'manual' for a hold captured at settlement);
--     auth_expires_ms (when an authorization lapses); captured_minor
--     (what a hold captured); voided_minor (what a hold released back to
--     the payer, booked chan_void);
--   ledger_tx: kind chan_void (user_wallet → channel_clearing: the part
--     of an authorization that is never captured);
--   checkouts: one row per checkout: the payer, the machine, the cap, the
--     price it was opened with, the channel order, its state and the
--     bound of that state (deadline_ms), the session it started, a
--     SHA-256 of its access token and the receipt link's token.
--
-- PostgreSQL changes the CHECK constraints in place. SQLite cannot, so it
-- rebuilds ledger_tx, entries, channel_payments, channel_refunds and
-- refund_parts (renaming the old ones first, so that every foreign key
-- moves with them) and copies the rows.

ALTER TABLE users ADD COLUMN kind TEXT NOT NULL DEFAULT 'account' CHECK (kind IN ('account', 'guest'));
ALTER TABLE machines ADD COLUMN web_checkout INTEGER NOT NULL DEFAULT 0;

-- only postgres
ALTER TABLE ledger_tx DROP CONSTRAINT ledger_tx_kind_check;
ALTER TABLE ledger_tx ADD CONSTRAINT ledger_tx_kind_check
	CHECK (kind IN ('topup', 'hold', 'capture', 'release', 'refund', 'late_capture', 'chan_refund', 'chan_refund_reversal', 'chan_fee', 'session_refund', 'chan_void'));
ALTER TABLE channel_payments DROP CONSTRAINT channel_payments_purpose_check;
ALTER TABLE channel_payments ADD CONSTRAINT channel_payments_purpose_check CHECK (purpose IN ('topup', 'session'));
ALTER TABLE channel_payments DROP CONSTRAINT channel_payments_state_check;
ALTER TABLE channel_payments ADD CONSTRAINT channel_payments_state_check CHECK (state IN ('pending', 'authorized', 'paid', 'closed', 'failed'));
ALTER TABLE channel_payments ADD COLUMN provider_ref TEXT;
ALTER TABLE channel_payments ADD COLUMN capture_mode TEXT NOT NULL DEFAULT 'auto' CHECK (capture_mode IN ('auto', 'manual'));
ALTER TABLE channel_payments ADD COLUMN auth_expires_ms BIGINT;
ALTER TABLE channel_payments ADD COLUMN captured_minor BIGINT NOT NULL DEFAULT 0;
ALTER TABLE channel_payments ADD COLUMN voided_minor BIGINT NOT NULL DEFAULT 0;
ALTER TABLE channel_payments ADD CONSTRAINT channel_payments_void_check
	CHECK (captured_minor >= 0 AND voided_minor >= 0 AND captured_minor + voided_minor <= amount_minor AND refunded_minor + voided_minor <= amount_minor);
-- end only

-- only sqlite
DROP INDEX ledger_tx_session;
DROP INDEX entries_tx;
DROP INDEX entries_account;
DROP INDEX channel_payments_idem;
DROP INDEX channel_payments_user;
DROP INDEX channel_payments_pending;
DROP INDEX channel_payments_day;
DROP INDEX channel_payments_paid;
DROP INDEX channel_refunds_order;
DROP INDEX channel_refunds_pending;
DROP INDEX channel_refunds_session;
DROP INDEX channel_refunds_done;
DROP INDEX refund_parts_request;
ALTER TABLE entries RENAME TO old_entries;
ALTER TABLE ledger_tx RENAME TO old_ledger_tx;
ALTER TABLE refund_parts RENAME TO old_refund_parts;
ALTER TABLE channel_refunds RENAME TO old_channel_refunds;
ALTER TABLE channel_payments RENAME TO old_channel_payments;

CREATE TABLE ledger_tx (
	id         INTEGER PRIMARY KEY,
	kind       TEXT NOT NULL CHECK (kind IN ('topup', 'hold', 'capture', 'release', 'refund', 'late_capture', 'chan_refund', 'chan_refund_reversal', 'chan_fee', 'session_refund', 'chan_void')),
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

CREATE TABLE channel_payments (
	order_no        TEXT PRIMARY KEY,
	channel         TEXT NOT NULL,
	user_id         TEXT NOT NULL REFERENCES users(id),
	purpose         TEXT NOT NULL DEFAULT 'topup' CHECK (purpose IN ('topup', 'session')),
	amount_minor    BIGINT NOT NULL CHECK (amount_minor > 0),
	currency        TEXT NOT NULL,
	state           TEXT NOT NULL CHECK (state IN ('pending', 'authorized', 'paid', 'closed', 'failed')),
	provider_tx_id  TEXT,
	code_url        TEXT,
	idem_key        TEXT,
	created_ms      BIGINT NOT NULL,
	expires_ms      BIGINT NOT NULL,
	paid_ms         BIGINT,
	closed_ms       BIGINT,
	refunded_minor  BIGINT NOT NULL DEFAULT 0,
	provider_ref    TEXT,
	capture_mode    TEXT NOT NULL DEFAULT 'auto' CHECK (capture_mode IN ('auto', 'manual')),
	auth_expires_ms BIGINT,
	captured_minor  BIGINT NOT NULL DEFAULT 0,
	voided_minor    BIGINT NOT NULL DEFAULT 0,
	UNIQUE (channel, provider_tx_id),
	CHECK (refunded_minor >= 0 AND refunded_minor <= amount_minor),
	CHECK (captured_minor >= 0 AND voided_minor >= 0 AND captured_minor + voided_minor <= amount_minor AND refunded_minor + voided_minor <= amount_minor)
);
INSERT INTO channel_payments (order_no, channel, user_id, purpose, amount_minor, currency, state, provider_tx_id, code_url, idem_key,
	created_ms, expires_ms, paid_ms, closed_ms, refunded_minor)
	SELECT order_no, channel, user_id, purpose, amount_minor, currency, state, provider_tx_id, code_url, idem_key,
	created_ms, expires_ms, paid_ms, closed_ms, refunded_minor FROM old_channel_payments;

CREATE TABLE channel_refunds (
	refund_no          TEXT PRIMARY KEY,
	order_no           TEXT NOT NULL REFERENCES channel_payments(order_no),
	channel            TEXT NOT NULL,
	amount_minor       BIGINT NOT NULL CHECK (amount_minor > 0),
	currency           TEXT NOT NULL,
	purpose            TEXT NOT NULL CHECK (purpose IN ('withdrawal', 'session_refund')),
	session_id         TEXT,
	reason             TEXT NOT NULL DEFAULT '',
	state              TEXT NOT NULL CHECK (state IN ('pending', 'succeeded', 'failed')),
	provider_refund_id TEXT,
	created_ms         BIGINT NOT NULL,
	done_ms            BIGINT
);
INSERT INTO channel_refunds (refund_no, order_no, channel, amount_minor, currency, purpose, session_id, reason, state,
	provider_refund_id, created_ms, done_ms)
	SELECT refund_no, order_no, channel, amount_minor, currency, purpose, session_id, reason, state,
	provider_refund_id, created_ms, done_ms FROM old_channel_refunds;

CREATE TABLE refund_parts (
	request_id TEXT NOT NULL REFERENCES refund_requests(id),
	refund_no  TEXT NOT NULL PRIMARY KEY REFERENCES channel_refunds(refund_no)
);
INSERT INTO refund_parts (request_id, refund_no) SELECT request_id, refund_no FROM old_refund_parts;

DROP TABLE old_entries;
DROP TABLE old_ledger_tx;
DROP TABLE old_refund_parts;
DROP TABLE old_channel_refunds;
DROP TABLE old_channel_payments;
CREATE INDEX ledger_tx_session ON ledger_tx (session_id);
CREATE INDEX entries_tx ON entries (tx_id);
CREATE INDEX entries_account ON entries (account_id);
CREATE UNIQUE INDEX channel_payments_idem ON channel_payments (user_id, idem_key);
CREATE INDEX channel_payments_user ON channel_payments (user_id, created_ms);
CREATE INDEX channel_payments_pending ON channel_payments (expires_ms) WHERE state = 'pending';
CREATE INDEX channel_payments_day ON channel_payments (channel, created_ms);
CREATE INDEX channel_payments_paid ON channel_payments (channel, paid_ms) WHERE state = 'paid';
CREATE INDEX channel_refunds_order ON channel_refunds (order_no);
CREATE INDEX channel_refunds_pending ON channel_refunds (created_ms) WHERE state = 'pending';
CREATE INDEX channel_refunds_session ON channel_refunds (session_id);
CREATE INDEX channel_refunds_done ON channel_refunds (channel, done_ms) WHERE state = 'succeeded';
CREATE INDEX refund_parts_request ON refund_parts (request_id);
-- end only

CREATE TABLE checkouts (
	id             TEXT PRIMARY KEY,
	user_id        TEXT NOT NULL REFERENCES users(id),
	guest          INTEGER NOT NULL DEFAULT 0,
	device_id      TEXT NOT NULL,
	machine_id     TEXT NOT NULL,
	slot_id        TEXT NOT NULL DEFAULT '',
	cap_units      BIGINT NOT NULL CHECK (cap_units > 0),
	cap_minor      BIGINT NOT NULL DEFAULT 0,
	price_minor    BIGINT NOT NULL,
	price_per      BIGINT NOT NULL,
	currency       TEXT NOT NULL,
	hold_minor     BIGINT NOT NULL CHECK (hold_minor > 0),
	channel        TEXT NOT NULL,
	order_no       TEXT NOT NULL UNIQUE REFERENCES channel_payments(order_no),
	mode           TEXT NOT NULL CHECK (mode IN ('authorize', 'prepay')),
	state          TEXT NOT NULL CHECK (state IN ('awaiting_payment', 'action_required', 'starting', 'in_session', 'settling',
	                 'done', 'expired', 'failed', 'cancelled')),
	end_state      TEXT NOT NULL DEFAULT '' CHECK (end_state IN ('', 'done', 'expired', 'failed', 'cancelled')),
	session_id     TEXT UNIQUE REFERENCES sessions(id),
	token_hash     TEXT NOT NULL,
	receipt_token  TEXT NOT NULL UNIQUE,
	idem_scope     TEXT NOT NULL,
	idem_key       TEXT NOT NULL,
	req_hash       TEXT NOT NULL,
	proximity      INTEGER NOT NULL DEFAULT 0,
	client_ip      TEXT NOT NULL DEFAULT '',
	fail_code      TEXT NOT NULL DEFAULT '',
	reason         TEXT NOT NULL DEFAULT '',
	captured_minor BIGINT NOT NULL DEFAULT 0,
	returned_minor BIGINT NOT NULL DEFAULT 0,
	deadline_ms    BIGINT NOT NULL,
	created_ms     BIGINT NOT NULL,
	updated_ms     BIGINT NOT NULL,
	UNIQUE (idem_scope, idem_key)
);
CREATE INDEX checkouts_due ON checkouts (deadline_ms) WHERE state IN ('awaiting_payment', 'action_required', 'starting', 'in_session', 'settling');
CREATE INDEX checkouts_user ON checkouts (user_id, created_ms);
