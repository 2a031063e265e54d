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
//	switch-over errors    none                            class 08, 57P01-3, 25006, a broken
//	                                                      or refused connection (SwitchWait)
//	unique violation      2067, 1555                      23505
//	connection            WAL, foreign_keys, synchronous  pool of 16 by default
//	                      FULL; pool of 8
//
// Times are BIGINT Unix milliseconds (UTC) and money is BIGINT minor
// units in both, so no type mapping differs. Every write operation runs
// in one transaction and is retried whole (a few times, with a short
// jittered back-off) on a busy database, a deadlock, a serialization
// failure or a unique key taken by a concurrent transaction; the checks
// at the top of each operation then see the winner's row and answer
// "duplicate", "busy" or "conflict" precisely.
//
// PostgreSQL failover: the DSN may name several hosts with
// target_session_attrs=read-write (pgx keeps the one that accepts
// writes; README, "PostgreSQL failover"). A write transaction that fails
// on a switch-over (the errors in the table above) is run again with a
// back-off from 50 ms to 1 s for up to Opts.SwitchWait (30 s), on a
// fresh connection: database/sql drops the ones pgx found broken. A
// COMMIT whose connection broke has an unknown outcome; it is resolved
// the same way, by running the transaction again, which finds its own
// earlier write if there is one: money steps are keyed (top-up by
// idempotency key, session by request key, settlement by session, payment
// orders and refunds by their numbers) and answer "duplicate"; a create
// guarded by a unique name (an operator, a device, an e-mail) answers
// "exists" although the first run made it; nothing is written twice
// where a unique key guards it. Single statements outside a transaction (markers, telemetry
// and listing updates) are not repeated: they return the error, and their
// caller's own retry (a redelivered message, a client's request) applies.
//
// Schema migrations are numbered files under migrations/ (embedded), each
// applied in a transaction together with its schema_migrations row; Open
// applies the missing ones and refuses ([ErrSchemaNewer]) a database newer
// than the binary. A block between the lines "-- only sqlite" (or "--
// only postgres") and "-- end only" runs on that dialect alone: SQLite
// cannot change a CHECK constraint, so 0002 rebuilds its tables there.
//
// SQLite runs with synchronous=FULL: in WAL mode NORMAL may lose the last
// committed transactions on a power loss, and a board deletes a usage
// report from its outbox once the cloud acknowledged the commit, so a
// lost commit would be lost money. The cost, measured with the benchmark
// below in one run (the "sqlite-normal" case opens the same store with
// synchronous=NORMAL), on the 2-core development machine (ext4 on a
// virtual disk, shared with other jobs), three runs each:
//
//	go test -run XXX -bench 'StartSettle/sqlite' -benchtime 3s -count 3 ./cloud/store/
//	BenchmarkStartSettle/sqlite-2          FULL     1.62, 1.78, 1.82 ms/op  (549-618 sessions/s)
//	BenchmarkStartSettle/sqlite-normal-2   NORMAL   1.56, 1.56, 1.88 ms/op  (532-641 sessions/s)
//
// that is about 10 % (one more fsync of the WAL per commit, two per
// session), within the noise of a shared machine; one run under heavy load
// from other jobs measured 7.0 ms/op against 2.3 ms/op. A disk with a slow
// fsync pays more: measure it there with the command above.
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
// Operator names are unique, compared case-insensitively
// ([ErrOperatorExists]). The operator's device views (OperatorDevices,
// OperatorDevice) read no keys.
//
// Operator console log-ins are server-side sessions (StartConsoleSession):
// the client holds a random 256-bit token, the store its SHA-256, and
// every request checks it (ConsoleSessionByToken): not revoked, within its
// absolute expiry and idle bound, account enabled. Log-out revokes one
// session; a password change revokes every other session of the account;
// disabling an account revokes them all and refuses its log-ins.
//
// Each account has a role (owner, manager, technician, viewer; the
// schema refuses any other); accounts made before roles are owners. Role
// changes and disabling by ID (SetOperatorAccountRole,
// SetOperatorAccountDisabledByID) hold the operator's row, so concurrent
// changes are serialized, and refuse to leave the operator without an
// enabled owner ([ErrLastOwner]). The audit log (audit_log, AppendAudit,
// AuditLog) keeps one row per change: operator, account, email and role
// then, action, target, before and after as JSON, the time and the client
// address; it is read per operator, newest first, by an ID cursor.
//
// Device identity keys (the proximity secret) are encrypted at rest with
// AES-256-GCM when [Opts].KeyEncKey is set (device ID as associated data);
// without it they are stored in clear, acceptable for a pilot only.
// Passwords are bcrypt hashes; bearer tokens are stored as SHA-256 only.
// A payer's step-up PIN is a bcrypt hash too (step_up_pins, with the
// payer's thresholds); CheckPIN reserves each check with one conditional
// UPDATE before comparing, so concurrent guesses never pass the window's
// limit; step-up tokens (step_up_tokens) are SHA-256 only, spent once by
// a conditional UPDATE (UseStepUpToken).
//
// # The ledger
//
// Accounts have a kind, an owner and a currency, and a balance that is
// the sum of their entries, kept on the row and changed in the same
// transaction as the entries. Every ledger transaction has exactly two
// entries that sum to zero. Positive balances are what the platform owes
// (wallets, holds, revenue); a channel's clearing account goes negative
// by what it has paid in, a payer's receivable goes negative by what a
// late capture could not take from the wallet, and a channel's fees
// account by the fees the provider kept: those three kinds alone may.
//
//	operation     ledger_tx kind   debit (−)          credit (+)         idempotency key
//	TopUp         topup            channel_clearing   user_wallet        topup:<user>:<key>
//	StartSession  hold             user_wallet        user_holds         hold:<session>
//	Settle        capture          user_holds         operator_revenue   capture:<session>
//	Settle        release          user_holds         user_wallet        release:<session>
//	Fail, sweeps  release          user_holds         user_wallet        release:<session>
//	Settle late   late_capture     user_wallet        operator_revenue   late:<session>
//	Settle late   late_capture     user_receivable    operator_revenue   late:<session>:receivable
//	Settle late   refund           operator_revenue   user_wallet        late:<session>
//	MarkPaid      topup            channel_clearing   user_wallet        chan:<channel>:<order>
//	Withdraw      chan_refund      user_wallet        channel_clearing   chanrefund:<channel>:<refund_no>
//	RefundSession chan_refund      operator_revenue   channel_clearing   chanrefund:<channel>:<refund_no>
//	RefundSession session_refund   operator_revenue   user_wallet        sessrefund:<request>
//	ApplyRefund   chan_refund_rev… channel_clearing   wallet or revenue  chanrefundrev:<channel>:<refund_no>
//	PostChannelFee chan_fee        fees               channel_clearing   chanfee:<channel>:<day>:<row>
//	MarkAuthorized topup           channel_clearing   user_wallet        chan:<channel>:<order>
//	session end   chan_void        user_wallet        channel_clearing   chanvoid:<channel>:<order>
//	session end   chan_refund      user_wallet        channel_clearing   chanrefund:<channel>:<refund_no>
//
// # Checkouts
//
// A checkout (checkouts) is one session paid through a channel instead of
// the wallet, by a signed-in user or a guest (users.kind guest, one per
// checkout, made by [Store.CreateCheckout]). Its order (channel_payments,
// purpose session) holds the cap's cost: a card authorization (capture
// mode manual) or a QR prepayment. The order turning authorized
// ([Store.MarkAuthorized]) or paid ([Store.MarkPaid]) credits the payer's
// wallet once under chan:<channel>:<order> and moves the checkout to
// starting in the same transaction; its session, started with the key
// checkout:<id>, holds that money as any session. Whatever ends the
// session (a report, a refusal, a sweep, an operator) settles it in one
// transaction with the return of what it did not charge: for a hold,
// chan_void of the uncaptured part (voided_minor); for a prepayment, a
// pending channel refund against the same order; the checkout becomes
// settling until the channel confirmed the capture ([Store.MarkCaptured]),
// the cancel ([Store.MarkReleased]) or the refund ([Store.FinishCheckout]),
// then done (or failed, when the machine never ran). A checkout whose
// session never started returns everything ([Store.FailCheckout]); money
// that arrives after a checkout expired or was cancelled is returned the
// same way (alert checkout.late_payment). The guest's wallet is zero at
// the end of every path. Reconciliation reads a hold for what it captured
// (amount − voided), which is what the provider's statement shows.
//
// # Channel payments
//
// Money enters through a payment channel as an order (channel_payments),
// recorded pending with the cloud's own order number before the provider
// is called ([Store.CreatePayment]). [Store.MarkPaid] moves it to paid and
// credits the wallet exactly once, whichever of the provider's
// notification and a query comes first; a notification's event ID is
// recorded (channel_events) so a duplicate changes nothing; an amount or
// currency other than the order's is refused and alerted (channel_alerts),
// never credited. Unpaid orders are closed after their TTL
// ([Store.ExpiredPayments], [Store.ClosePayment]). Refunds
// ([Store.Withdraw], [Store.RefundSession]) go against the payer's paid
// orders, oldest first; each takes its part of the order's refunded_minor
// in the same transaction as its ledger posting, under the condition
// refunded_minor + amount <= amount_minor, so concurrent refunds can never
// exceed an order. A refund the provider reports failed is reversed once
// ([Store.ApplyRefund]). A provider's fees post to the fees account
// ([Store.PostChannelFee], or many at once in transactions of 500 with
// [Store.PostChannelFees]); a key posts once, and the same key with another
// amount is [ErrIdemConflict]. Fees may go negative, as clearing accounts.
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
// The session state machine is one table, [Transitions]; the code takes
// each transition's From set from it, TestStateTableWalk walks every row
// on both databases, and TestStateTableDoc keeps this copy equal to
// [StateTable] (<s> is the session ID):
//
//	from                                              event             to         money [idempotency keys]
//	—                                                 start             pending    hold wallet→holds [hold:<s>]
//	pending                                           ack               authorized none
//	pending, authorized                               started           running    none
//	pending, authorized, running                      ended             ending     none
//	pending, authorized                               refused           failed     release holds→wallet [release:<s>]
//	pending, authorized, running, ending, unreported  report            settled    capture holds→revenue, rest holds→wallet [capture:<s>, release:<s>]
//	pending, authorized, running, ending, unreported  report.nothing    refunded   release holds→wallet [release:<s>]
//	expired, failed, released, voided, settled        report.late       (same)     owed−captured wallet→revenue, shortfall receivable→revenue (excess: revenue→wallet) [late:<s>, late:<s>:receivable]
//	pending                                           sweep.start_by    expired    release holds→wallet [release:<s>]
//	authorized, running, ending                       sweep.run_bound   unreported none
//	unreported                                        sweep.window      released   release holds→wallet [release:<s>]
//	unreported                                        sweep.window.last settled    capture holds→revenue, rest holds→wallet [capture:<s>, release:<s>]
//	unreported                                        operator.settle   settled    capture holds→revenue, rest holds→wallet [capture:<s>, release:<s>]
//	unreported                                        operator.void     voided     release holds→wallet [release:<s>]
//
// pending, authorized, running and ending are live: they hold funds, and a
// partial unique index on sessions(device_id, machine_id) WHERE state is
// live lets a machine have only one ([ErrMachineBusy]). unreported holds
// funds but not the machine. Every state that holds funds has a bounded
// exit with an audit reason (Session.Reason):
//
//   - pending: the grant's ExpiresAt is its start-by bound (GrantTTL,
//     default 20 s); a session never acknowledged is expired after
//     ExpiresAt + Opts.AckBound (default 10 s: the allowed skew of a
//     board's clock estimate), reason grant.unacknowledged;
//   - authorized, running, ending: an acknowledged grant is never released
//     at its expiry (the board may be running the machine offline); after
//     the start-by bound + AckBound + the machine's longest run
//     (Lifecycle.PerUnit × cap units: water 2 ml/s, dryer its seconds,
//     washer 2 h a cycle, vending 1 min an item; at most 24 h) + the
//     offline allowance (30 min) without a report it becomes unreported,
//     reason unreported, and its machine is free;
//   - unreported: keeps the hold for Lifecycle.SettleWindow (72 h),
//     waiting for the late report (which settles it exactly once, from the
//     hold) or an operator (OperatorSettle, OperatorVoid, with a reason);
//     then the policy applies: PolicyRelease (default) releases it in full,
//     reason unreported.released; PolicyCaptureLast captures the units of
//     the board's ended event, if it sent one, reason
//     unreported.captured_last.
//
// A valid report for a session closed without one is a late capture,
// flagged on the session (Late, LateAmount, Receivable): what it owes up
// to the hold, less what was captured, is taken from the wallet, the rest
// booked to the payer's user_receivable account, exactly once.
//
// StartSession reads the price once and decides from it the units (a
// money cap turned into units), the hold (never above the money cap) and
// the grant; a price other than the one the phone showed is
// [PriceChangedError]. The start request's idempotency key is UNIQUE per
// user. StartSession builds the grant from the session it writes and,
// given a signer, stores the signed grant with it, so what is held and
// what the device is told always agree.
//
// # The operator's money
//
// [Store.SearchSessions] pages an operator's sessions newest first by an
// opaque cursor (created time and ID), with no cap on the pages, filtered
// by device, machine, time, state, outcome and a payer reference
// ([PayerRef]: a receipt number, a session ID, or a channel order number or
// provider transaction ID of a checkout or a top-up). [Store.RevenueBy]
// sums the revenue account's entries by day, device or location;
// [Store.Movements] streams the account book with the balance after each
// entry (a window sum over the whole account, so a range keeps its
// opening balance). [Store.PlanSessionRefund] computes, without writing,
// what [Store.RefundSession] would send to which order and to the wallet.
// A refund above the operator's threshold ([Store.SetRefundThreshold]) is
// a refund_approvals row, once per (operator, key): pending, claimed by an
// owner other than the requester ([Store.ClaimRefundApproval]: approving),
// refunded with key "approval:<id>", then approved
// ([Store.FinishRefundApproval]); or rejected; it reads as expired
// [ApprovalTTL] after it was asked for.
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
// The sweeps (ExpireHolds, MarkUnreported, CloseUnreported) and the
// operator's settle and void are safe to run from every instance at once,
// and against a report arriving: each locks the session row (FOR UPDATE on
// PostgreSQL; one writer on SQLite) and changes it with a conditional
// UPDATE that only one transaction can win.
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
// # Alerts
//
// alerts holds operators' alerts (RaiseAlert: at most one open per dedup
// key, by a conditional insert on a partial unique index; AckAlert,
// ResolveAlert, ListAlerts with a cursor); alert_deliveries is their
// outbox of e-mails and webhooks (ClaimDeliveries leases, FinishDelivery
// records sent, retry, hold or failed, ignoring a stale attempt's
// result); alert_settings the operators' thresholds, recipients and
// quiet periods. The engine's conditions are queries here
// (OfflineDevices, FaultTelemetry, NoFlowMachines, VendFailureMachines,
// UnreportedAlertSessions, ChannelAlertsAfter) with their resolving
// updates, each bounded and safe on several instances.
//
// # Inventory
//
// slot_stock holds a vending slot's count once a restock has set it
// ([Store.Restock]: the count replaces the slot's, under the row's lock).
// [Store.Settle] decrements it by the report's items in the settlement's
// own transaction, after inserting the report's row (unique per
// session), so a vend counts once however often it is delivered; the
// count never goes below zero, the excess is added to short and returned
// in [Settlement].Stock. A slot without a row is not tracked.
//
// # Relay and claims
//
// sessions.relay_ticket keeps the signed relay ticket a pending session
// was offered to the phone with (app-protocol/GATT.md), set once by
// [Store.SetRelayTicket], which for an offline device also moves the
// pending deadline to the unreported bound so the hold outlasts the run
// the phone reports after. devices.relay_always and machines.relay_always
// are the operator's choice to relay every session ([Store.RelayAlways]).
// device_claims holds one row per board key claimed in the field, the
// device it became and its bundle sealed to the key; a claimed device is
// registered with its claim in one transaction
// ([Store.CreateClaimedDevice]), so a key is claimed once however many
// claims race. A report uploaded by the phone settles through
// [Store.Settle] like one over MQTT: once per session, keyed by digest.
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
