-- 0015: inventory of vending slots. slot_stock holds one slot's counted
-- stock once a restock has set it (a slot without a row is not tracked
-- and never sold out). stock is what the technician counted at the last
-- restock less the items of every vend settled since, never below zero;
-- short counts the items settled while the count was already zero (the
-- count was wrong: the slot is clamped at zero and an alert raised);
-- low_at is the low-stock threshold (0: no alert). restocked_by is the
-- operator account that counted. Times are the cloud's clock, BIGINT Unix
-- milliseconds. Settlement decrements stock in its own transaction, keyed
-- by the session's single usage report, so each vend counts once.
CREATE TABLE slot_stock (
	device_id     TEXT NOT NULL,
	machine_id    TEXT NOT NULL,
	slot_id       TEXT NOT NULL,
	stock         BIGINT NOT NULL CHECK (stock >= 0),
	low_at        BIGINT NOT NULL DEFAULT 0 CHECK (low_at >= 0),
	short         BIGINT NOT NULL DEFAULT 0 CHECK (short >= 0),
	restocked_by  TEXT NOT NULL,
	restocked_ms  BIGINT NOT NULL,
	updated_ms    BIGINT NOT NULL,
	PRIMARY KEY (device_id, machine_id, slot_id),
	FOREIGN KEY (device_id, machine_id, slot_id) REFERENCES machine_slots (device_id, machine_id, id)
);
