-- Daily reconciliation of each payment channel against its statement
-- (cloud/payments/reconcile):
--
--   recon_runs: one row per (channel, day): the statement's totals, ours,
--     the clearing account's movement for the day's records, the fees
--     posted, counts, and the run's status (balanced, discrepancies, or
--     provisional while a boundary row waits for the next day's
--     statement);
--   recon_outcomes: one row per statement row and per record of ours
--     that no statement row names: its kind (matched, missing_in_ours,
--     missing_in_theirs, amount_mismatch, status_mismatch,
--     currency_mismatch, duplicate, deferred), both sides' amounts and
--     states, the action it calls for, and whether an operator has
--     resolved it.
--
-- Re-running a day replaces its run and outcomes in one transaction.
-- day is the calendar day in the provider's time zone, YYYY-MM-DD.

CREATE TABLE recon_runs (
	channel        TEXT NOT NULL,
	day            TEXT NOT NULL,
	status         TEXT NOT NULL CHECK (status IN ('balanced', 'discrepancies', 'provisional')),
	currency       TEXT NOT NULL,
	stmt_payments  BIGINT NOT NULL,
	stmt_refunds   BIGINT NOT NULL,
	stmt_fees      BIGINT NOT NULL,
	stmt_rows      INTEGER NOT NULL,
	our_payments   BIGINT NOT NULL,
	our_refunds    BIGINT NOT NULL,
	clearing_net   BIGINT NOT NULL,
	fees_posted    BIGINT NOT NULL,
	totals_ok      INTEGER NOT NULL,
	totals_detail  TEXT NOT NULL DEFAULT '',
	matched        INTEGER NOT NULL,
	discrepancies  INTEGER NOT NULL,
	deferred       INTEGER NOT NULL,
	started_ms     BIGINT NOT NULL,
	finished_ms    BIGINT NOT NULL,
	PRIMARY KEY (channel, day)
);

CREATE TABLE recon_outcomes (
	channel         TEXT NOT NULL,
	day             TEXT NOT NULL,
	seq             INTEGER NOT NULL,
	kind            TEXT NOT NULL CHECK (kind IN ('matched', 'missing_in_ours', 'missing_in_theirs', 'amount_mismatch',
	                  'status_mismatch', 'currency_mismatch', 'duplicate', 'deferred')),
	row_kind        TEXT NOT NULL CHECK (row_kind IN ('payment', 'refund')),
	stmt_row        INTEGER NOT NULL,
	order_no        TEXT NOT NULL DEFAULT '',
	refund_no       TEXT NOT NULL DEFAULT '',
	provider_id     TEXT NOT NULL DEFAULT '',
	at_ms           BIGINT NOT NULL DEFAULT 0,
	their_minor     BIGINT,
	their_currency  TEXT NOT NULL DEFAULT '',
	their_status    TEXT NOT NULL DEFAULT '',
	our_minor       BIGINT,
	our_currency    TEXT NOT NULL DEFAULT '',
	our_status      TEXT NOT NULL DEFAULT '',
	fee_minor       BIGINT NOT NULL DEFAULT 0,
	action          TEXT NOT NULL DEFAULT '',
	detail          TEXT NOT NULL DEFAULT '',
	resolved_ms     BIGINT,
	resolution      TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (channel, day, seq),
	FOREIGN KEY (channel, day) REFERENCES recon_runs (channel, day)
);
CREATE INDEX recon_outcomes_open ON recon_outcomes (channel, kind) WHERE resolved_ms IS NULL;
CREATE INDEX recon_outcomes_order ON recon_outcomes (order_no);

-- A day's records by channel, for reconciliation.
CREATE INDEX channel_payments_paid ON channel_payments (channel, paid_ms) WHERE state = 'paid';
CREATE INDEX channel_refunds_done ON channel_refunds (channel, done_ms) WHERE state = 'succeeded';
