-- 0010 (numbered 0009 until the checkouts migration lands before it): the
-- step-up PIN. step_up_pins holds one payer's PIN as a bcrypt hash (never
-- the PIN), the payer's thresholds (minor units and currency; NULL minor:
-- no step-up for that action by the payer's choice) and the PIN guesses of
-- the current window: attempts counts the checks reserved since
-- window_start_ms (reset by a right PIN, or when the window has passed);
-- a check is reserved by one conditional UPDATE, so concurrent guesses on
-- any number of instances never get more than the limit per window.
-- step_up_tokens are the short-lived tokens a right PIN buys, stored as
-- SHA-256 (hash), bound to the user and a scope ('' any), spent once:
-- used_ms is when, used_for the action and idempotency key that spent it
-- (a retry of that same request may present it again). Times are the
-- cloud's clock, BIGINT Unix milliseconds.
CREATE TABLE step_up_pins (
	user_id           TEXT PRIMARY KEY REFERENCES users(id),
	pin_hash          TEXT NOT NULL,
	session_minor     BIGINT,
	session_currency  TEXT NOT NULL DEFAULT '',
	top_up_minor      BIGINT,
	top_up_currency   TEXT NOT NULL DEFAULT '',
	withdrawal_minor  BIGINT,
	withdrawal_currency TEXT NOT NULL DEFAULT '',
	attempts          BIGINT NOT NULL DEFAULT 0,
	window_start_ms   BIGINT NOT NULL DEFAULT 0,
	updated_ms        BIGINT NOT NULL
);

CREATE TABLE step_up_tokens (
	hash       {{BYTES}} PRIMARY KEY,
	user_id    TEXT NOT NULL REFERENCES users(id),
	scope      TEXT NOT NULL,
	expires_ms BIGINT NOT NULL,
	used_ms    BIGINT NOT NULL DEFAULT 0,
	used_for   TEXT NOT NULL DEFAULT '',
	created_ms BIGINT NOT NULL
);
CREATE INDEX step_up_tokens_expires ON step_up_tokens (expires_ms);
