// Package service is the cloud's money flow, independent of HTTP: it
// resolves proximity IDs, starts and stops paid sessions, handles the
// devices' MQTT uplinks, sweeps sessions to their bounded exits and fans session events
// out to the phone's event streams. cloud/httpapi puts the phone and
// operator APIs in front of it; cloud/ingest feeds it uplinks (Handle has
// the ingest Handler's signature) and publishes its commands (Publisher).
// The flow and the invariants are in /ARCHITECTURE.md; the wire contracts
// in app-protocol (openapi.yaml, asyncapi.yaml).
//
// # Starting a session
//
// StartSession re-resolves the phone's proximity ID (it must name the
// requested device in the current window ± 1), refuses at once an offline
// device, a faulted machine or a jammed slot (by the last telemetry),
// then in one store transaction reads the price (refusing one the phone
// was not shown: price.changed), turns a money cap into units, holds the
// cost (never above the money cap) and signs the grant; it publishes mqttapi.Authorize
// and waits up to Options.ReplyTimeout (5 s) for the device's Reply. The
// reply may be taken by another instance's ingest: every instance saves
// replies with store.SaveCommandReply, and the waiting instance polls the
// store (every Options.ReplyPoll) besides being woken in-process.
//
//   - ok: the session is authorized and returned;
//   - refused: store.Fail releases the whole hold and the device's code is
//     returned as a conflict (machine.busy, machine.fault, …);
//   - no reply in time: the hold is kept, because the device may still get
//     the grant and run the machine before its start-by bound (GrantTTL,
//     20 s; its signed usage then settles exactly what was delivered); the
//     caller gets the pending session with device.no_reply (transient),
//     and the phone waits for it or cancels it (StopSession sends
//     mqttapi.Stop; the board refuses the grant afterwards with
//     grant.cancelled, which ReplyArrived applies even when no start waits).
//     A retry with the same idempotency key resends the Authorize with the
//     same command id (the device answers a repeated id without acting
//     twice). If the device never answers, Sweep (store.ExpireHolds)
//     releases the hold after the start-by bound plus the store's AckBound.
//
// # Bounded exits
//
// Sweep (every SweepInterval, on every instance) applies the store's
// state table: pending past its start-by bound is expired; an
// acknowledged session without a report past its machine's longest run
// plus the offline allowance becomes unreported (the machine is free, the
// hold kept for the settlement window; the gauge
// beaconvend_sessions_unreported counts them); an unreported one past its
// window gets the unreported policy. A valid report for a session closed
// without one is a late capture (beaconvend_late_captures_total).
// Operators settle or void unreported sessions (OperatorSettle,
// OperatorVoid).
//
// # Uplinks and exactly-once
//
// Every uplink handler is idempotent on its own: store.Advance is monotonic
// (a late "started" after "ended" changes nothing), store.Settle settles
// each session once whatever the message id, and store.SaveCommandReply
// keeps the first reply per (device, command id). store.MarkProcessed
// (device, message id) makes the event fan-out happen once across
// instances; progress events are not recorded (they are idempotent and not
// acknowledged). Handle returns nil for anything done or undoable —
// duplicates and reports for sessions already closed included — so the
// ingest acknowledges it and the device's outbox drains; a usage report
// no key of the device verifies is dead-lettered once
// (store.SaveDeadLetter), counted in beaconvend_usage_signature_failures_total
// and beaconvend_dead_letters_total, logged as an error, and acknowledged.
//
// # Relay by the phone, and claims
//
// StartSession offers the grant for the phone to carry over BLE (a relay
// ticket binding it to the device and a fresh nonce, offerRelay) when the
// phone can relay and the device is offline, does not answer, or is set to
// relay always; UploadUsage takes the device-signed report the phone read
// off the board and settles it through store.Settle, the path of the MQTT
// ingest, so a report settles once by either path or both, and answers
// with a cloud-signed usage ack for the board. ClaimDevice makes a device
// for a board in registration mode and seals its bundle to the board's key
// (app-protocol/GATT.md).
//
// # Presence, retention and keys
//
// Presence is ordered by the cloud's clock and the connection epoch (see
// Handle and store.SetDeviceLost); the embedded broker's disconnect hook
// calls DeviceDisconnected; Presence marks devices offline after the
// staleness bound. Janitor prunes bookkeeping tables past their windows
// (store.Retention). KeyRotator drives device-key rotations over the
// device's RotateKey protocol; Handle promotes the new key at the first
// report under it. Each has its own Run; cloud serve runs them.
//
// # Session events
//
// Hub is an in-process fan-out with a short per-session buffer for
// Last-Event-ID. An event handled by another instance does not reach this
// instance's subscribers; the SSE endpoint polls the store every few
// seconds and sends what changed, so a phone sees the state (and the
// ended event) at worst one poll later, without progress totals.
//
// # Fleet
//
// Fleet and FleetDevice are the operator console's fleet views: each
// device's status (online, fault, offline) with since when, faults with
// codes, signal, outbox depth and last sales, read from the stored
// telemetry and presence; the device view adds recent sessions and the
// bounded telemetry and state histories (HistoryOptions) that Handle and
// the presence paths keep. FleetEvents announces every presence change
// and written-through fault to this instance's pages, and to the other
// instances through PostgreSQL notifications.
//
// # Resolver
//
// Resolver keeps one proxid.Resolver per rotation exponent in use, built
// from store.DeviceKeys at start and rebuilt by Refresh (called after a
// device is added, re-keyed or disabled, and every Options.RefreshInterval),
// plus lagged resolvers 3, 6, 9 … windows behind, back to ExpiredHorizon,
// that tell an expired ID (proximity.expired) from an unknown one.
//
// # Payments
//
// Money enters the wallet through payment channels (payments.Channel,
// each wrapped with its limits and breaker in a payments.Guarded; the
// payments.Router picks one). TopUp records the order pending, then
// calls the channel's Create, and answers the order the payer acts on; it
// never picks another channel once the order exists. HandleNotification
// applies a provider's verified notification once per event ID; Payment
// asks the channel (Query) about a pending order whose notification is
// late; SweepPayments (run with the session sweep) closes orders past
// their TTL at the channel and in the records, crediting one the channel
// says was paid after all, and re-asks or re-sends refunds left pending.
// Withdraw and RefundSession return money to the original channel(s),
// oldest paid order first. The development sandbox card
// (payments.Sandbox) pays at once: TopUp queries it right after Create.
//
// # The operator's money
//
// The console and the operator API call the same methods, with the
// signed-in account as the Actor: SearchSessions, SessionDetail (the grant
// checked with the cloud's key, the usage report with the device's),
// Revenue, Export (CSV of sessions, revenue or the account book; money
// as minor units and exact decimals, formula-like text cells prefixed
// with a quote), SettleUnreported and VoidUnreported, ReviewRefund (where
// a refund would go, nothing moved), RequestRefund (once per key; above
// the operator's threshold an approval instead), ApproveRefund and
// RejectRefund (an owner other than the requester), SetRefundThreshold.
// Each authorizes its permission and writes the audit log.
//
// # Checkouts
//
// Checkout pays for one session through a channel instead of the wallet,
// for a signed-in user or a guest (Payer.User ""): a card hold
// (payments.HoldChannel: Authorize, then Capture of exactly the metered
// amount, or Cancel for nothing) or a QR prepayment (Create, then a
// refund of the unused part to the same order). The checkout and its
// order are recorded before the provider is called; the grant goes to the
// board only once the channel holds the money (a notification, a query
// by GetCheckout or WatchCheckout of a late order, or the sweep), and
// the session starts for the checkout's user with key checkout:<id>,
// without a proximity check (checked at Checkout: a proximity ID, or the
// machine's web checkout switch). Every step is idempotent and retried by
// SweepCheckouts (part of Sweep): a checkout past its bound is expired
// (the order cancelled or closed: nothing taken), started, checked
// against its authorization's validity, or settled with the channel. A
// start the machine refuses returns everything; a 3-D Secure never
// completed expires with the order; an unreported card-held session is
// settled by the unreported policy at the authorization's expiry less
// Options.AuthMargin (reason unreported.auth_lapsing), and anything else
// still uncaptured then is alerted (auth.lapsing); a hold that lapsed
// before its capture fails the checkout with an alert (auth.lapsed),
// never silently. A report that arrives after a checkout settled without
// it is a late capture on the payer (the channel's hold is gone, and no
// second capture or incremental authorization is attempted): the payer's
// receivable, alerted as checkout.late_report for an operator to pursue
// or forgive. The receipt is a link (CheckoutReceipt, no account).
//
// # Step-up
//
// A payer may set a PIN (SetPIN: 4-8 digits, weak ones refused; the store
// keeps a bcrypt hash) and thresholds (SetStepUpThresholds, itself behind
// a step-up). StartSession, TopUp (a new order) and Withdraw call
// RequireStepUp: an amount above the payer's threshold, or above the
// operator's limit (Options.StepUp), needs a step-up token in the context
// (WithStepUpToken; the HTTP layer puts the X-Step-Up-Token header
// there), else step_up.required; a payer without a PIN above the
// operator's limit gets step_up.pin_required. StepUp trades the PIN for a
// token (5 min, bound to the user, optionally to a scope, stored hashed)
// that the call it authorizes spends in one conditional UPDATE; a retry
// of the same call (same action and idempotency key) may present it again.
// PIN checks are reserved in the store before bcrypt compares, so
// concurrent guesses on any number of instances get at most
// StepUpOptions.MaxFailures (5) per Window (15 min); then step_up.locked
// (*PINLockedError) until the window ends. The store's login_throttle is
// not used: its check and its count are separate steps, and its count
// resets only after a quiet day.
//
// # Roles and the audit log
//
// The console and the operator API put the signed-in operator account in
// the context (WithActor: operator, account, email, Role, client
// address). Methods that change an operator's business check a
// permission (Authorize; roles.go lists which role has which) and refuse
// with auth.forbidden before changing anything; a context without an
// actor is the cloud's own work or the command line and is allowed. After
// the change they write the audit log (Audit, AuditFor): an entry that
// cannot be written is logged, not turned into a failure of the change.
// Account management (OperatorAccounts, AddOperatorAccount,
// SetAccountRole, SetAccountDisabled) and AuditLog need the owner.
//
// # Alerts
//
// RunAlerts (started by Run) evaluates the alert conditions every
// AlertOptions.Interval (EvaluateAlerts: store.AlertKinds documents each
// kind's condition and when it resolves) and sends what is due
// (DeliverAlerts). Raising is a conditional insert on a dedup key unique
// while the alert is open, so instances never duplicate an alert;
// RaiseAlert and ResolveAlert let other parts (the inventory's low stock)
// do the same. A new alert's e-mail and webhook are queued in the
// alert_deliveries outbox in the raising transaction; senders lease
// them, so a crash between the raise and the send, or during it, leaves
// the delivery to the next run on any instance (at least once; the
// delivery id lets a receiver drop a repeat). Failures retry after
// Backoff×2^(attempt-1), at most 1 h, MaxAttempts (8) times; in the
// operator's quiet period a delivery is held, uncounted, until it ends.
// Webhooks are signed (SignWebhook) with the operator's secret
// (WebhookSecret), derived from AlertOptions.WebhookKey.
//
// # Remote operations and inventory
//
// ChangePrice, TestOutput and Reboot send one command to a device and
// wait up to ReplyTimeout for its Reply (CommandResult: accepted,
// refused with the device's code, or timeout, which is not an error);
// ProvisionDevice adds a device through the provisioner the server
// configures (UseProvisioner) and keeps its bundle in memory for one
// download (TakeBundle). Restock sets a vending slot's count; a settled
// vend decrements it in the settlement (store.Settle), a start on a slot
// counted at zero is slot.empty, and low, empty and short counts raise
// alerts (kind stock.low, codes stock.low, stock.empty, stock.short).
// Each checks the actor's permission and is audited.
//
// # Metrics
//
// See Metrics for the Prometheus series; Registry returns the registry
// that the cloud serves on its admin listener's /metrics (never on the
// public API). Series that need the database (ledger imbalance, devices
// online) are computed by Run every Options.GaugeInterval
// (RefreshGauges), never during a scrape.
package service
