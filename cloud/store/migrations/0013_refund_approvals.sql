-- 0013 (to be numbered after the console's other migrations): money in
-- the operator console.
--
-- operators.refund_approval_minor/_currency is the amount above which an
-- operator's refund of a session needs a second person (an owner) to
-- approve it; NULL minor: never. (Revenue is grouped by devices.location,
-- which the fleet's migration adds.)
--
-- refund_approvals holds refunds waiting for that second person: the
-- request (session, amount, reason, who asked), its state (pending →
-- approving → approved, or pending → rejected; a pending row past
-- expires_ms reads as expired and can no longer be decided: a live state
-- with a bound), who decided and why, and
-- the refund request it became (refund_requests.id, '' until then). A
-- request is made once per (operator, idem_key): the form's key, so a
-- double submission makes one request. Approving claims the row
-- (approving), refunds with key "approval:<id>" (idempotent: a crash
-- between the two steps is finished by approving again), then records
-- the refund. Times are the cloud's clock, BIGINT Unix milliseconds.
ALTER TABLE operators ADD COLUMN refund_approval_minor BIGINT;
ALTER TABLE operators ADD COLUMN refund_approval_currency TEXT NOT NULL DEFAULT '';

CREATE TABLE refund_approvals (
	id              TEXT PRIMARY KEY,
	operator_id     TEXT NOT NULL REFERENCES operators(id),
	session_id      TEXT NOT NULL REFERENCES sessions(id),
	amount_minor    BIGINT NOT NULL CHECK (amount_minor > 0),
	currency        TEXT NOT NULL,
	reason          TEXT NOT NULL,
	idem_key        TEXT NOT NULL,
	req_hash        TEXT NOT NULL,
	requested_by    TEXT NOT NULL,
	requested_email TEXT NOT NULL,
	state           TEXT NOT NULL CHECK (state IN ('pending', 'approving', 'approved', 'rejected', 'expired')),
	decided_by      TEXT NOT NULL DEFAULT '',
	decided_email   TEXT NOT NULL DEFAULT '',
	note            TEXT NOT NULL DEFAULT '',
	refund_id       TEXT NOT NULL DEFAULT '',
	created_ms      BIGINT NOT NULL,
	expires_ms      BIGINT NOT NULL,
	decided_ms      BIGINT NOT NULL DEFAULT 0,
	UNIQUE (operator_id, idem_key)
);
CREATE INDEX refund_approvals_open ON refund_approvals (operator_id, created_ms) WHERE state IN ('pending', 'approving');
CREATE INDEX refund_approvals_session ON refund_approvals (session_id);
