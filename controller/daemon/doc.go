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
//     finished with their last committed reading — authorized ones as
//     not_started, running ones as interrupted — and reported: their signed
//     usage goes to the outbox.
//  3. Only then do the uplink, the modem monitor and the beacon start.
//
// # A session
//
// An Authorize command's grant is verified (signature under a trusted cloud
// key, this device, the machine the command names, not expired, session
// never seen: signed.VerifyGrant with the journal's seen log), the machine
// must be idle and its board healthy, and the session is committed with its
// "authorized" event in one journal transaction before the reply goes out.
// The machine driver then runs (a pour to the cap, a washer cycle, a vend);
// metered readings reach the journal at most once a second; progress events
// go out directly (lossy); the end — cap reached, user stop, no flow, cycle
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
// unknown-version payloads are refused with the decoder's code.
package daemon
