-- 0011: the operator console's roles and audit log.

-- Every operator account has a role: owner > manager > technician >
-- viewer (cloud/service roles.go says what each may do). Accounts made
-- before roles existed could do everything: they become owners.
ALTER TABLE operator_accounts ADD COLUMN role TEXT NOT NULL DEFAULT 'owner'
	CHECK (role IN ('owner', 'manager', 'technician', 'viewer'));

-- The audit log: one row per change an operator account (or the cloud's
-- command line, account '') made to its operator's business, written by
-- the service method that made the change. before_json and after_json are
-- the changed state as JSON ('null' for none); at_ms is the cloud's clock
-- (Unix ms); ip the client address as the HTTP layer saw it. Rows are
-- never updated or deleted by the cloud.
CREATE TABLE audit_log (
	id          {{ID}},
	operator_id TEXT NOT NULL,
	account_id  TEXT NOT NULL DEFAULT '',
	email       TEXT NOT NULL DEFAULT '',
	role        TEXT NOT NULL DEFAULT '',
	action      TEXT NOT NULL,
	target      TEXT NOT NULL DEFAULT '',
	before_json TEXT NOT NULL DEFAULT 'null',
	after_json  TEXT NOT NULL DEFAULT 'null',
	at_ms       BIGINT NOT NULL,
	ip          TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_operator_at ON audit_log (operator_id, at_ms, id);
CREATE INDEX audit_log_operator_action ON audit_log (operator_id, action, at_ms);
