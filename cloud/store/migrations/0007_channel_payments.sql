-- 0007: payments as records. Money enters through a payment channel
-- (WeChat Pay, Alipay, the development sandbox) as an order the cloud
-- records pending, with its own unique order number, before the provider
-- is called; a notification or a query moves it to paid exactly once.
--
--   channel_payments: one row per order; refunded_minor is what refunds
--     (pending or succeeded) have taken from it, never above amount_minor;
--   channel_refunds: one row per refund, against one paid order, recorded
--     pending (with its ledger posting) before the provider is called;
--   channel_events: the provider event IDs already handled, so that a
--     duplicate notification changes nothing;
--   channel_alerts: what a channel reported that the cloud refused to
--     book (an amount or currency that is not the order's, a refund that
--     failed after it succeeded), for an operator to look at;
--   refund_requests, refund_parts: a withdrawal or an operator's session
--     refund (idempotent by key) and the channel refunds it was split into;
--   accounts: kind fees (owner: channel; a provider's fees, may go
--     negative);
--   ledger_tx: kinds chan_refund (wallet or revenue → channel_clearing),
--     chan_refund_reversal (a failed refund back), chan_fee
--     (fees ↔ channel_clearing), session_refund (an operator's refund of
--     a session to the payer's wallet).
--
-- PostgreSQL changes the CHECK constraints in place. SQLite cannot, so it
-- rebuilds accounts, ledger_tx and entries (renaming the old ones first,
-- so that every foreign key moves with them) and copies the rows.

-- only postgres
ALTER TABLE accounts DROP CONSTRAINT accounts_kind_check;
ALTER TABLE accounts ADD CONSTRAINT accounts_kind_check
	CHECK (kind IN ('user_wallet', 'user_holds', 'operator_revenue', 'channel_clearing', 'user_receivable', 'fees'));
ALTER TABLE ledger_tx DROP CONSTRAINT ledger_tx_kind_check;
ALTER TABLE ledger_tx ADD CONSTRAINT ledger_tx_kind_check
	CHECK (kind IN ('topup', 'hold', 'capture', 'release', 'refund', 'late_capture', 'chan_refund', 'chan_refund_reversal', 'chan_fee', 'session_refund'));
-- end only

-- only sqlite
DROP INDEX ledger_tx_session;
DROP INDEX entries_tx;
DROP INDEX entries_account;
ALTER TABLE entries RENAME TO old_entries;
ALTER TABLE ledger_tx RENAME TO old_ledger_tx;
ALTER TABLE accounts RENAME TO old_accounts;

CREATE TABLE accounts (
	id              INTEGER PRIMARY KEY,
	kind            TEXT NOT NULL CHECK (kind IN ('user_wallet', 'user_holds', 'operator_revenue', 'channel_clearing', 'user_receivable', 'fees')),
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

CREATE TABLE ledger_tx (
	id         INTEGER PRIMARY KEY,
	kind       TEXT NOT NULL CHECK (kind IN ('topup', 'hold', 'capture', 'release', 'refund', 'late_capture', 'chan_refund', 'chan_refund_reversal', 'chan_fee', 'session_refund')),
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

DROP TABLE old_entries;
DROP TABLE old_ledger_tx;
DROP TABLE old_accounts;
CREATE INDEX ledger_tx_session ON ledger_tx (session_id);
CREATE INDEX entries_tx ON entries (tx_id);
CREATE INDEX entries_account ON entries (account_id);
-- end only

UPDATE accounts SET may_go_negative = 1 WHERE kind = 'fees';

CREATE TABLE channel_payments (
	order_no       TEXT PRIMARY KEY,
	channel        TEXT NOT NULL,
	user_id        TEXT NOT NULL REFERENCES users(id),
	purpose        TEXT NOT NULL DEFAULT 'topup' CHECK (purpose IN ('topup')),
	amount_minor   BIGINT NOT NULL CHECK (amount_minor > 0),
	currency       TEXT NOT NULL,
	state          TEXT NOT NULL CHECK (state IN ('pending', 'paid', 'closed', 'failed')),
	provider_tx_id TEXT,
	code_url       TEXT,
	idem_key       TEXT,
	created_ms     BIGINT NOT NULL,
	expires_ms     BIGINT NOT NULL,
	paid_ms        BIGINT,
	closed_ms      BIGINT,
	refunded_minor BIGINT NOT NULL DEFAULT 0,
	UNIQUE (channel, provider_tx_id),
	CHECK (refunded_minor >= 0 AND refunded_minor <= amount_minor)
);
CREATE UNIQUE INDEX channel_payments_idem ON channel_payments (user_id, idem_key);
CREATE INDEX channel_payments_user ON channel_payments (user_id, created_ms);
CREATE INDEX channel_payments_pending ON channel_payments (expires_ms) WHERE state = 'pending';
CREATE INDEX channel_payments_day ON channel_payments (channel, created_ms);

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
CREATE INDEX channel_refunds_order ON channel_refunds (order_no);
CREATE INDEX channel_refunds_pending ON channel_refunds (created_ms) WHERE state = 'pending';
CREATE INDEX channel_refunds_session ON channel_refunds (session_id);

CREATE TABLE channel_events (
	channel     TEXT NOT NULL,
	event_id    TEXT NOT NULL,
	received_ms BIGINT NOT NULL,
	PRIMARY KEY (channel, event_id)
);

CREATE TABLE channel_alerts (
	id         {{ID}},
	channel    TEXT NOT NULL,
	order_no   TEXT NOT NULL,
	code       TEXT NOT NULL,
	detail     TEXT NOT NULL,
	created_ms BIGINT NOT NULL
);
CREATE INDEX channel_alerts_order ON channel_alerts (order_no);

CREATE TABLE refund_requests (
	id           TEXT PRIMARY KEY,
	purpose      TEXT NOT NULL CHECK (purpose IN ('withdrawal', 'session_refund')),
	user_id      TEXT NOT NULL REFERENCES users(id),
	session_id   TEXT REFERENCES sessions(id),
	scope        TEXT NOT NULL,
	idem_key     TEXT NOT NULL,
	req_hash     TEXT NOT NULL,
	amount_minor BIGINT NOT NULL CHECK (amount_minor > 0),
	wallet_minor BIGINT NOT NULL DEFAULT 0,
	currency     TEXT NOT NULL,
	reason       TEXT NOT NULL DEFAULT '',
	created_ms   BIGINT NOT NULL,
	UNIQUE (purpose, scope, idem_key)
);
CREATE INDEX refund_requests_session ON refund_requests (session_id);

CREATE TABLE refund_parts (
	request_id TEXT NOT NULL REFERENCES refund_requests(id),
	refund_no  TEXT NOT NULL PRIMARY KEY REFERENCES channel_refunds(refund_no)
);
CREATE INDEX refund_parts_request ON refund_parts (request_id);
