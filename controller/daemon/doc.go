// Package daemon is the controller: it wires the journal (bbolt), the I/O
// board and its machines (hw/machine over hw/modbus), the uplink (MQTT),
// the modem monitor and the BLE beacon, and runs each machine's sessions.
//
// # Start-up order (Invariants 1 and 3)
//
//  1. The board is opened, which drives every output OFF and reads it back;
//     a board that does not answer leaves the controller up, selling
//     nothing, and is retried.
//  2. The journal is opened, and sessions a power cut left open are
//     finished — authorized ones as not_started, running ones as
//     interrupted, credited ones as below — and reported: their signed
//     usage goes to the outbox. A running washer or dryer (seen running:
//     it cannot be stopped from here and runs what its credit bought) is
//     billed for its credit, a washer's cycle or a dryer's authorized time,
//     even when the crash came before a metered reading was committed.
//  3. Only then do the uplink, the modem monitor, the beacon and the
//     journal's janitor (controller/janitor) start, and credited sessions
//     being completed (below) resume.
//
// # Recovery: what the board says after a crash
//
// A power cut resets the I/O board with the controller: its outputs drop
// at once and its counters restart from zero. A crash, an out-of-memory
// kill or a SIGKILL of the controller alone does not: the board keeps its
// power, a valve keeps flowing until the board's own watchdog drops it
// (machine.Opts.WatchdogTimeout) or the restarted controller drives it
// OFF, and the flow counter keeps counting. When the board answers at
// start and is not in fault, recovery therefore asks it:
//
//   - A running water session is billed what the flow counter counted
//     since the session's start (journaled MeterStart, the raw counter
//     when the valve opened), capped at the grant's cap, instead of the
//     last journaled reading (up to a second old). The counter is read
//     only once the valve reads OFF and it has not moved for 300 ms (at
//     most 5 s; still moving then, its reading is taken as it is), and
//     only when it is consistent with the journal: not below the last
//     journaled reading modulo the counter's width (a counter that went
//     backwards was reset by a power cut, which closed the valve at once,
//     or belongs to another board) and not below the journaled units.
//     Otherwise, and without a board, the last journaled reading is billed.
//   - A running vending session whose machine has a drop counter
//     (config vending.drop_counter: a board counter that counts the drop
//     input's pulses in hardware, one per item) is billed the items the
//     counter counted since the vend's start (journaled MeterStart, with
//     MeterCounter naming the counter), capped at the grant's cap: a motor
//     left turning by the crash drops items until the board drops it, and
//     the drop input alone cannot tell the restarted controller what fell.
//     The counter is read once every motor output reads OFF and it has not
//     moved for 300 ms (at most 5 s), and only when it is consistent with
//     the journal (not gone backwards, the same counter as journaled).
//     Otherwise, without a drop counter, and without a board, the
//     journaled units are billed (0 for a vend that had not yet seen its
//     drop).
//   - A credited session (a washer or dryer whose coin pulses may have
//     been given) is completed, not ended. Every coin pulse is committed
//     (journal.CoinPulse) before it is driven, so the journal knows pulses
//     1 to n-1 were given and pulse n may have been (a pulse cut by the
//     crash may also have been too long for the coin input). The
//     remaining pulses are driven (each committed first); if the machine
//     does not start within its start timeout and pulse n was in doubt,
//     that one pulse is driven again, once. A machine already running
//     with the whole train recorded is the session's cycle. The cycle is
//     then metered and billed as any other (outcome completed); a machine
//     that never starts ends not_started, nothing billed, as in a session
//     the controller watched. The session holds its machine from start.
//     Without a board, with a board in fault, for a record without a
//     pulse count (written before it existed), or when the completion
//     cannot begin (a machine running with part of the train not given,
//     a board fault while pulsing), the crash policy applies: ended
//     interrupted and billed for the credit (a washer's cycle, a dryer's
//     authorized time; never not_started, never disputed), since the
//     credit may be in the machine.
//
// # A session
//
// An Authorize command's grant is verified (signature under a trusted cloud
// key, this device, the machine the command names, not issued in the
// future, start-by bound ExpiresAt not passed, session never seen:
// signed.VerifyGrant with the journal's seen log), the session must not be
// cancelled, the machine must be idle (a vending slot not jammed) and its
// board and journal healthy, and the session is committed with its
// "authorized" event in one journal transaction before the reply goes out.
//
// # A grant relayed by a phone (GATT)
//
// With beacon.gatt (backend hci) the radio also serves the board's GATT
// relay service (controller/gattsvc, app-protocol/GATT.md) beside the
// beacon, for a phone to bring the cloud's grant when the board has no
// link. A relayed grant is checked by gattapi.CheckRelay (ticket signed by
// a cloud key, for this device, bound to the grant; the grant's machine
// one of this board's; the grant as over MQTT, judged by the cloud's
// clock; its session and its ticket's nonce never accepted), then starts
// exactly as an Authorize does (the same start path: board, slot, unit,
// busy checks), the nonce recorded in the commit that accepts the grant
// (journal.AcceptRelay). A session accepted by either path is refused by
// the other (grant.replayed). Progress shows the last relayed session
// (from its journal record), the Receipt its signed report as the outbox
// holds it; the cloud's usage ack brought by the phone drops that report
// from the outbox as an MQTT Ack would, the phone's own ack only marks
// the receipt acknowledged. A connection or a disconnection never touches
// an output: the session runs to its cap or end as any other.
//
// # Committed before energised (Invariant 7)
//
// No output switches on unless the step that makes the session billable is
// committed: running (water, before the valve opens; vending, before the
// motor turns) or credited (a washer or dryer, before the first coin
// pulse). A start that cannot be committed switches nothing on. A journal
// write that fails with a storage error (full or read-only flash) while
// selling is a board fault: every running session is stopped with outcome
// fault (outputs OFF; a washer already running cannot be stopped and is
// metered to its end), a fault event (fault code board.journal) is
// published directly, telemetry shows every machine in fault and every
// start is refused with machine.fault until the controller restarts. Each
// session's end and report are still attempted; what cannot be written is
// finished from the last committed reading at the next start.
//
// # Stops and atomic steps
//
// A Stop ends a pour at once. A vend is atomic once the motor turns: the
// Stop is answered ok and the vend ends on the drop (billed) or the jam
// timeout (vend_failed, nothing billed). A washer's purchase is atomic once
// the first coin pulse is driven: the whole pulse train is given, and the
// session waits for the machine to run (the cycle is metered and billed) or
// for its start timeout (outcome not_started, nothing billed). A credit
// given but never seen running is billed only after a crash the
// controller cannot complete it from (see Recovery), when it could not
// watch.
//
// A Stop for a session this board has not started — authorized but not yet
// switched on, or never seen (the grant is still in the broker) — is
// answered ok: a live one ends not_started, an unseen one is recorded as
// cancelled in the journal's seen set (journal.Cancel), kept for an hour
// plus the grant skew by the cloud's clock and extended to the grant's
// expiry when the grant comes. A later Authorize for it is refused with
// grant.cancelled, across restarts. A Stop already waiting in the command
// queue when its Authorize is handled wins the same way.
//
// # The cloud's clock
//
// A grant's start-by bound (ExpiresAt) and its issue time are judged by the
// cloud's clock, so that a board whose own clock is minutes off neither
// refuses a fresh grant nor starts a stale one. The estimate comes from
// Acks: when an uplink sent by the outbox (or the power_restored event sent
// directly after start, the first sample) is acknowledged within 2 s, the
// Ack's envelope time is taken as the cloud's time at its arrival (error at
// most the round trip), and cloud time later is that plus the board's
// monotonic elapsed time. An estimate is fresh for 6 hours. While there is
// no fresh one the board asks for it: each telemetry publication comes
// with a clock probe (an event of kind clock, sent directly, which the cloud
// acknowledges), and a grant waits up to 2 s for a probe's Ack before it is
// judged; without any answer the board's own clock is used. The
// controller's -clock-skew flag (tests only) shifts the daemon's clock to
// exercise this.
//
// # Telemetry
//
// Telemetry is published every telemetry interval and at once on a change:
// at every connection (so the first telemetry after a restart shows the
// current, recovered state), a board fault or recovery, the board link
// failing or recovering, a journal fault, a vending slot jammed or cleared.
// A slot whose vend saw no drop is listed in MachineStatus.Jammed and
// refused on this board until a successful test_output of its motor (a
// technician freed the spiral and ran it) or a controller restart clears
// it.
// The machine driver then runs (a pour to the cap, a washer cycle, a vend);
// metered readings reach the journal at most once a second; progress events
// go out directly, outside the outbox (lossy: never retried, and the cloud
// does not acknowledge them); the end — cap reached, user stop, no flow, cycle
// end, drop or jam, board fault, grant expiry — is committed with its
// outcome, and the signed usage report and "ended" event are queued in the
// outbox in the same commit. Everything runs without the cloud: a session
// that loses its link finishes within its cap and its report waits.
//
// # Outbox
//
// Uplinks the cloud must see (events, usage reports) leave the outbox only
// when the cloud's Ack names their message ID. They are sent in order at a
// bounded rate after every (re)connection, and sent again when the oldest
// has waited AckTimeout without an Ack (a broker that lost its queue, a
// cloud that was not subscribed). A broker PUBACK proves nothing here.
//
// # Commands
//
// authorize, stop, set_prices, test_output, reboot and rotate_key are
// answered on the reply topic by command ID; a command seen recently gets
// its stored reply again without acting twice; malformed, oversized or
// unknown-version payloads are refused with the decoder's code. A reboot
// waits for every machine to be idle; further reboot commands while it
// waits are answered ok and join it.
package daemon
