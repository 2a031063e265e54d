-- 0004: broker accounts of operators. An operator's read-only MQTT
-- account (username "_" + operator id, which is never a valid device id)
-- may read the state, telemetry and evt topics of that operator's own
-- devices, on the embedded broker and in the generated Mosquitto ACL.
-- mqtt_hash is the "$7$" PBKDF2-SHA512 hash (cloud/broker); the password
-- itself is shown once when the account is made and never stored.
CREATE TABLE broker_accounts (
	operator_id TEXT PRIMARY KEY REFERENCES operators(id),
	mqtt_hash   TEXT NOT NULL,
	created_ms  BIGINT NOT NULL,
	updated_ms  BIGINT NOT NULL
);
