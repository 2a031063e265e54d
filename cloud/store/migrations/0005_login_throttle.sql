-- 0004: failed log-ins per account, so that the lock-out after repeated
-- failures holds across cloud instances and restarts. scope is 'user' or
-- 'operator'; account is an opaque digest of the email the HTTP layer
-- computes (guessed addresses are not kept in clear). failures counts the
-- consecutive failures (reset by a success, or when the last failure is
-- older than a day); locked_until_ms is the end of the current lock (0:
-- none); updated_ms the last failure. Times are the cloud's clock, BIGINT
-- Unix milliseconds.
CREATE TABLE login_throttle (
	scope           TEXT NOT NULL,
	account         TEXT NOT NULL,
	failures        BIGINT NOT NULL,
	locked_until_ms BIGINT NOT NULL DEFAULT 0,
	updated_ms      BIGINT NOT NULL,
	PRIMARY KEY (scope, account)
);
CREATE INDEX login_throttle_updated ON login_throttle (updated_ms);
