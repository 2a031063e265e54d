// Package store is the cloud's database: tenants and their devices and
// machines, phone users and their tokens, sessions, a double-entry ledger
// and the idempotency records that make every money-moving step happen
// once. It is the SQL adapter of the cloud (STYLE.md §1): it speaks in
// terms of app-protocol (vend, signed, proxid) and of nothing else in
// cloud/.
//
// # Two databases, one SQL layer
//
// [Open] picks the driver from the DSN: "postgres://…" uses PostgreSQL
// through pgx's database/sql driver (production, several cloud instances
// at once); "sqlite:/path/file.db" or a bare path uses SQLite through the
// pure-Go modernc.org/sqlite (the default for one machine). Queries are
// the same text for both: $n placeholders, ON CONFLICT … DO NOTHING/UPDATE,
// RETURNING and partial unique indexes work in both. The differences live
// in one dialect struct (dialect.go):
//
//	                      SQLite                          PostgreSQL
//	auto-increment key    INTEGER PRIMARY KEY             BIGINT GENERATED ALWAYS AS IDENTITY
//	byte strings          BLOB                            BYTEA
//	write transactions    BEGIN IMMEDIATE (_txlock):      READ COMMITTED; row locks from the
//	                      one writer at a time, others    conditional UPDATEs, taken in
//	                      queue on busy_timeout (10 s)    account-ID order (no deadlocks)
//	retried errors        SQLITE_BUSY, SQLITE_LOCKED      40001, 40P01
//	unique violation      2067, 1555                      23505
//	connection            WAL, foreign_keys, synchronous  pool of 16 by default
//	                      NORMAL; pool of 8
//
// Times are BIGINT Unix milliseconds (UTC) and money is BIGINT minor
// units in both, so no type mapping differs. Every write operation runs
// in one transaction and is retried whole (a few times, with a short
// jittered back-off) on a busy database, a deadlock, a serialization
// failure or a unique key taken by a concurrent transaction; the checks
// at the top of each operation then see the winner's row and answer
// "duplicate", "busy" or "conflict" precisely.
//
// Schema migrations are numbered files under migrations/ (embedded), each
// applied in a transaction together with its schema_migrations row; Open
// applies the missing ones and refuses ([ErrSchemaNewer]) a database newer
// than the binary.
//
// # Tenants
//
// An operator is a tenant; operator accounts (console logins) belong to
// one. Devices belong to one operator, machines to one device. Every
// operator-facing call takes the operator ID and puts it in the WHERE
// clause: another operator's device is [ErrDeviceNotFound], never
// "forbidden", so IDs cannot be probed. Phone users are a separate table
// from operator accounts. GetDevice, GetSession and DeviceKeys are for the
// cloud's own use (ingest, resolver) and are not tenant-scoped.
//
// Device identity keys (the proximity secret) are encrypted at rest with
// AES-256-GCM when [Opts].KeyEncKey is set (device ID as associated data);
// without it they are stored in clear, acceptable for a pilot only.
// Passwords are bcrypt hashes; bearer tokens are stored as SHA-256 only.
//
// # The ledger
//
// Accounts have a kind, an owner and a currency, and a balance that is
// the sum of their entries, kept on the row and changed in the same
// transaction as the entries. Every ledger transaction has exactly two
// entries that sum to zero. Positive balances are what the platform owes
// (wallets, holds, revenue); a channel's clearing account goes negative
// by what it has paid in, and is the only kind allowed to.
//
//	operation     ledger_tx kind   debit (−)          credit (+)         idempotency key
//	TopUp         topup            channel_clearing   user_wallet        topup:<user>:<key>
//	StartSession  hold             user_wallet        user_holds         hold:<session>
//	Settle        capture          user_holds         operator_revenue   capture:<session>
//	Settle        release          user_holds         user_wallet        release:<session>
//	Fail, Expire  release          user_holds         user_wallet        release:<session>
//
// A wallet never goes negative: the balance changes with
// "UPDATE accounts SET balance = balance + $d WHERE id = $a AND
// (may_go_negative = 1 OR balance + $d >= 0)", and zero rows affected is
// [ErrFunds] and a rollback; a CHECK constraint backs it up. No SELECT …
// FOR UPDATE is needed, so the same SQL serves SQLite. [Store.LedgerImbalance]
// (sum of entries per currency; each transaction on its own) and
// [Store.CheckBalances] (stored balance against the entries) feed the
// Prometheus gauge and the tests.
//
// # Sessions
//
//	pending ──► authorized ──► running ──► ending
//	   │  ╲          │            │          │
//	   │   ╲─────────┴────────────┴──────────┴──► settled   (usage, capture > 0)
//	   │                                      └─► refunded  (usage, nothing to charge:
//	   │                                                      jam, not started, 0 units)
//	   ├──► failed   (device refused the grant; Fail)
//	   └──► expired  (pending/authorized past grant expiry + AckBound; ExpireHolds)
//
// pending, authorized, running and ending are live: they hold funds, and
// a partial unique index on sessions(device_id, machine_id) WHERE state
// is live lets a machine have only one ([ErrMachineBusy]). The start
// request's idempotency key is UNIQUE per user. StartSession builds the
// grant from the session it writes and, given a signer, stores the signed
// grant with it, so what is held and what the device is told always agree.
//
// # Exactly-once settlement
//
// Settle takes a usage report already verified by signed.OpenUsage and
// applies signed.UsageGuard's rule with unique keys: usage_reports has
// PRIMARY KEY (session_id) and UNIQUE (device_id, seq), and keeps the
// report's digest. The same signed bytes again are a duplicate (the first
// Settlement is returned, no money moves); another report for the session
// is [ErrUsageConflict]; a reused sequence number is [ErrSeqReused]. The
// session's state changes with a conditional UPDATE … WHERE state is live,
// and the capture and release transactions have the session-keyed unique
// idempotency keys above, so two settlements of one session cannot both
// commit on either database, whatever the interleaving: the loser's
// transaction fails on a unique key or finds the session closed, rolls
// back, and on retry sees the winner's report. Capture is min(amount,
// hold), where amount is Price.Cost(units) as the device signed it and the
// price and currency must equal the session's.
//
// ExpireHolds is safe to run from every instance at once: each candidate
// is closed by a conditional UPDATE that only one transaction can win.
//
// # Other idempotency records
//
// processed_messages (device, message id) makes MQTT ingest idempotent
// ([Store.MarkProcessed]); command_replies keeps the first reply per
// (device, command ID); idempotency (user, key, request hash, status, response)
// lets the phone API answer a retried POST with its first response and
// refuse the same key with a different body ([ErrIdemConflict]). How long
// each is kept is in [Retention] ([Store.Prune]).
//
// # Tests and benchmark
//
// The same suite runs on SQLite (a file under t.TempDir) and on
// PostgreSQL (a scratch database per run, a schema per test) when
// VEND_PG_DSN is set; scripts/pg.sh starts or installs PostgreSQL and
// prints it. Without it the PostgreSQL half is skipped loudly, or fails
// when VEND_REQUIRE_SERVICES is set.
//
//	export "$(scripts/pg.sh | tail -n1)"
//	go test -run XXX -bench StartSettle -benchtime 3s ./cloud/store/
//
// On the 2-core x86-64 development machine (Go 1.26, PostgreSQL 15 on
// loopback with default settings, shared with other jobs), one session's
// start and settle (two transactions, including signing and verifying the
// usage report, about 60 µs), sequentially on one machine:
//
//	BenchmarkStartSettle/sqlite-2     1.04 ms/op    966 sessions/s
//	BenchmarkStartSettle/postgres-2   4.94 ms/op    203 sessions/s
//
// PostgreSQL's figure is bound by round trips and a synchronous commit per
// transaction; concurrent sessions on different machines scale with the
// pool, as TestManySessionsOneWallet shows.
package store
