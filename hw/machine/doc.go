// Package machine is the machine I/O of a beaconvend controller: a fail-safe
// owner of one Modbus RTU I/O board ([Board]) and, on top of it, the three
// kinds of machine the controller sells from — a water dispenser ([Water]:
// valve and flow meter), a coin-operated washer or dryer ([Washer]: coin
// pulses and a running input) and a vending machine ([Vending]: a motor per
// slot and a drop sensor).
//
// # Fail-safe outputs
//
// A water valve must never stay open because a process died. Board enforces,
// in layers:
//
//  1. Open drives every output OFF and reads the coils back before anything
//     else; Close drives them OFF again.
//  2. An output is ON only under a lease. The machine drivers renew their
//     output's lease after every poll; a driver that hangs or panics stops
//     renewing and the poll loop switches the output off within a lease
//     (five polls, at least 500 ms).
//  3. Every poll reads the coils back. An output that reads ON and is not
//     meant to be is switched off; one meant to be ON that reads OFF is
//     rewritten, and a write that does not read back faults the board.
//  4. After MaxFailures consecutive failed polls the board is in fault:
//     every output is driven OFF (best effort: the board may be gone), every
//     driver's run ends with StopFault, and nothing is switched on again
//     until RecoverPolls good polls have cleared the fault.
//  5. The board's own watchdog (profile.Watchdog), when it has one, is
//     re-armed on every poll, so if the controller's process or its whole
//     OS dies, the board drops its outputs by itself.
//
// What a real installation needs beyond this: layers 2–4 live in the
// controller process, so they cannot act when that process or the kernel
// hangs. Use (a) an I/O board with an output watchdog or a
// "communication-loss: all outputs off" setting (described in the profile,
// emulated by hwsim), and (b) the controller SoC's hardware watchdog
// (/dev/watchdog, armed by systemd's RuntimeWatchdogSec, with the
// controller's unit using WatchdogSec and sd_notify), so that a hung board
// reboots, and Open's all-off runs first thing after the reboot. For valves
// that must close on power loss, use normally-closed valves: the relay off
// is the valve closed.
//
// # Atomic steps
//
// Some steps, once begun, must finish whatever the caller says, or the
// payer gets goods without paying (or pays for nothing): a vend is atomic
// once its motor turns (Vending.Vend ignores cancellation from then on and
// ends on the drop, the jam timeout or a fault, so a spiral never stops
// mid-turn), and a washer's purchase is atomic once its first coin pulse is
// driven (Washer.Cycle gives the whole credit and waits for the machine to
// run, or for its start timeout). Before that point a cancelled context
// ends the run with StopRequested and nothing switched on. The controller
// commits the step that makes the session billable before calling them.
//
// Washer.Buy is Cycle with a hook called before each coin pulse, so the
// controller can journal every pulse before it is driven. After a crash of
// the controller alone (the board kept its power), Washer.Resume completes
// a purchase from the last pulse recorded: it drives the rest of the
// train, and the pulse in doubt once more, at most once, if the machine
// does not start, so the machine ends with exactly the purchase's credit.
// Water.Settled reads the flow counter once the valve is off and the
// counter still, and Water.Flowed adds what it counted after the last
// journaled reading, refusing a counter that went backwards (a power cut
// resets a board's counters), so recovery bills what flowed while the
// valve ran on until the board's watchdog dropped it. A vending machine
// may name a DropCounter, a board counter that counts the drop input's
// pulses in hardware (one per item; pulse-io-4 counts in1-in4 on
// count1-count4): Vending.Settled reads it once every motor is off and the
// counter still, and Vending.Dropped returns the items it counted since
// the journaled start, so recovery bills what a motor left turning
// dropped, which the drop input polled by a dead controller cannot tell.
//
// # Metering
//
// Water is metered in pulses of the flow meter's hardware counter, extended
// past 16- or 32-bit wrap, and converted to millilitres with an integer
// K-factor in pulses per 1000 litres (450.5 pulses/L is 450500): no floats.
// A pour closes the valve at exactly PulsesFor(cap) pulses; pulses that
// arrive while the valve closes are reported as Delivered but Units (what is
// billed) never exceeds the cap. A washer is metered in cycles (or, for a
// dryer, in seconds of running); a vend in items, counted only on a drop
// sensor transition after the motor started (the drop counter serves
// recovery only).
package machine
