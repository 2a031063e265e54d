-- 0004: operator authentication. Console log-ins become server-side
-- sessions that can be revoked; operator accounts can be disabled;
-- operator (tenant) names are unique, case-insensitively.

-- An account with disabled_ms > 0 (when it was disabled, the cloud's
-- clock) cannot log in, and its sessions are refused at once.
ALTER TABLE operator_accounts ADD COLUMN disabled_ms BIGINT NOT NULL DEFAULT 0;

-- name_key is the name as CreateOperator compares it: trimmed and lower-
-- cased (Go's strings.ToLower). Rows made before this migration get SQL
-- LOWER, which on SQLite folds ASCII letters only. Names that already
-- collide are kept on the oldest operator; each later one is renamed to
-- "<name> (<id>)" so that the unique index can be built and no tenant is
-- lost; the operator can rename it afterwards.
ALTER TABLE operators ADD COLUMN name_key TEXT NOT NULL DEFAULT '';
UPDATE operators SET name = TRIM(name) || ' (' || id || ')'
	WHERE EXISTS (SELECT 1 FROM operators o WHERE LOWER(TRIM(o.name)) = LOWER(TRIM(operators.name))
		AND (o.created_ms < operators.created_ms OR (o.created_ms = operators.created_ms AND o.id < operators.id)));
UPDATE operators SET name_key = LOWER(TRIM(name));
CREATE UNIQUE INDEX operators_name_key ON operators (name_key);

-- A console session: the SHA-256 of its bearer token (the token itself,
-- 256 random bits, is given to the client only), its account, and its
-- bounds (Unix ms, the cloud's clock): expires_ms is absolute; idle_ms is
-- the longest gap between two uses, counted from last_used_ms. A revoked
-- session keeps its row (revoked_ms > 0 and why: logout, password,
-- disabled) until the janitor prunes it after expires_ms.
CREATE TABLE console_sessions (
	hash          {{BYTES}} PRIMARY KEY,
	account_id    TEXT NOT NULL REFERENCES operator_accounts(id),
	created_ms    BIGINT NOT NULL,
	last_used_ms  BIGINT NOT NULL,
	idle_ms       BIGINT NOT NULL CHECK (idle_ms > 0),
	expires_ms    BIGINT NOT NULL,
	revoked_ms    BIGINT NOT NULL DEFAULT 0,
	revoke_reason TEXT NOT NULL DEFAULT ''
);
CREATE INDEX console_sessions_account ON console_sessions (account_id);
CREATE INDEX console_sessions_expires ON console_sessions (expires_ms);
