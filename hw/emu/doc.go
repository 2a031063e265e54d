// Package emu emulates a Modbus RTU I/O board and the machines wired to it,
// on a real pseudo-terminal (hw/pty), so the controller's drivers, its tests
// and the demo run real serial code (go.bug.st/serial) without hardware.
// cmd hwsim (hw/cmd/hwsim) is the program around it.
//
// # The board
//
// A [Board] follows a board profile (hw/profile): its coils are the
// profile's outputs, its discrete inputs the profile's inputs, its input and
// holding registers the profile's counters (16- or 32-bit, words in the
// profile's order) and, if the profile has one, its watchdog register. It
// answers function codes 01, 02, 03, 04, 05, 06, 0F and 10 as the Modbus
// Application Protocol v1.1b3 specifies (https://modbus.org/specs.php),
// with exception 01 for other function codes, 02 when any address of a
// request is not on the board, and 03 for a bad quantity, byte count or coil
// value. A discrete input reads its electrical level: an active_low sensor
// reads 1 when idle and 0 when active. Writing a holding counter sets it (a
// controller may zero it); input counters are read-only, as on real boards.
//
// [Board.Serve] is the RTU slave: a pty delivers bytes in arbitrary chunks,
// so requests are framed by the length their function code implies (8
// bytes for 01-06, 9 + byte count for 0F and 10) rather than by the 3.5
// character silence of a real line; the read deadline (Opts.FrameGap, 50ms)
// only ends unknown-length frames and drops leftovers. A frame with a bad
// CRC gets no reply, as from a real slave, and the slave resynchronises by
// sliding one byte at a time to the next valid frame; frames for another
// address are ignored; broadcasts (address 0) execute writes silently.
//
// # Fail-safe outputs: watchdog and communication loss
//
// A profile's watchdog register is an output lease: writing N > 0 arms it
// for N × unit_ms; if it is not written again before that, every coil goes
// OFF by itself and the trip is counted; 0 disarms it. Independently, a
// communication-loss timeout (SimConfig.CommTimeout, hwsim -comm-timeout)
// switches every coil OFF when no valid request for this slave arrives
// within it. Both take effect at the instant they lapse: a water valve's
// flow stops being counted exactly then, even if nobody polls.
//
// This is what a real installation needs twice over: a board whose outputs
// drop on their own when the master goes quiet (a lease register as
// emulated here, or a board's "communication timeout" setting), and a
// hardware watchdog on the controller itself, so a hung kernel or daemon
// resets the board instead of leaving a relay energised: on Linux boards the
// SoC watchdog through /dev/watchdog, petted by systemd (RuntimeWatchdogSec=
// in /etc/systemd/system.conf, plus WatchdogSec= and sd_notify WATCHDOG=1 in
// the controller's unit so a stuck daemon is restarted). With only the
// second, the I/O board keeps its relays as they were while the controller
// reboots (or forever, if it never comes back), so boards without an output
// lease need their relay supply switched through an enable line that the
// controller's watchdog drops. The emulator lets tests prove the controller
// refreshes the lease and that outputs really drop when it stops.
//
// # Machine models
//
// Models compute their state from elapsed time on the Opts.Now clock (a
// seam: tests run them under testing/synctest), brought up to date on every
// request, control command and [Board.Tick]:
//
//   - water: while the valve output is ON, flow accumulates at flow_lpm;
//     the meter counter holds floor(volume × k_factor) pulses. Volume is
//     kept exactly (integer mL·ns/min), so pulses never drift however often
//     the controller polls; the status reports the true delivered volume
//     (mL and µL) and pulses.
//   - washer: the coin output is pulsed like a coin acceptor's signal; a
//     pulse is valid if ON for pulse_min..pulse_max (20-200ms by default).
//     After credit valid pulses the running input goes active for cycle,
//     then inactive, and a completed cycle is counted. Pulses out of range
//     are counted invalid; valid pulses during a cycle are counted ignored
//     (the machine swallowed the money).
//   - vending: one motor output per slot, one shared drop-sensor input. A
//     motor that stays ON for drop_after drops one item (and another every
//     further drop_after), making the drop sensor active for drop_pulse
//     (300ms by default, long enough for a 50-100ms poll). A jammed slot's
//     motor turns and nothing drops. With drop_counter (a counter of the
//     profile, e.g. count1 of pulse-io-4) the board also counts each item
//     dropped on that counter, as a DI board counting its drop input's
//     pulses in hardware does.
//
// Any number of machines share one board, e.g. four washers on
// generic-relay-8 or ten slots on generic-relay-16 (testdata/*.yaml).
//
// # Sim config
//
// A [SimConfig] is YAML; unknown fields are errors and every name must exist
// on the profile ([NewBoard] says which field is wrong):
//
//	profile: pulse-io-4      # built-in name or path; hwsim -profile overrides it
//	comm_timeout: 3s         # optional
//	machines:
//	  - {name: tap, kind: water, valve: out1, flow: count1, flow_lpm: 8, k_factor: 450}
//	  - {name: w1, kind: washer, coin: out2, running: in2, credit: 4, cycle: 30m, pulse_min: 20ms, pulse_max: 200ms}
//	                         # credit 4: the controller's wiring says pulses_per_credit: 4
//	  - name: snacks
//	    kind: vending
//	    drop: in4
//	    drop_counter: count4     # optional: one pulse per item dropped
//	    drop_after: 800ms
//	    drop_pulse: 300ms
//	    slots: [{name: A1, motor: out3}, {name: A2, motor: out4, jammed: true}]
//
// The files under testdata are built in: [LoadSimConfig]("water"),
// ("washers"), ("vending").
//
// # Control protocol
//
// [Emulator] listens on a Unix socket ([Emulator.ControlPath]). Each line
// in is a JSON [Request], each line out a JSON [Response]:
// {"ok":true,"status":{...}} with the state after the command, or
// {"ok":false,"error":"emu: control request: ..."}. Commands (the Cmd*
// constants): status; corrupt_crc {count | probability}; no_reply {count |
// probability}; delay {delay_ms}; stuck_input {input, level} (no level
// releases); expire_lease; jam {machine, slot, jammed}; flow_rate {machine,
// lpm}; clear_faults; deliveries {since} (the delivery log, below).
// [Board.HandleCommand] lets a program add commands
// (hwsim adds modem_* ones). [Dial] returns a typed Go client, [Control],
// for other packages' tests; [Status] is the truth they compare against.
//
// # Delivery log
//
// Besides the running totals in [Status], each board keeps a bounded log
// of what its machines gave, one [Delivery] per valve opening (with the
// volume that flowed), vending motor run (with the items dropped) and
// washer coin pulse (valid or not, swallowed during a cycle, or the one
// that started a cycle), with start and end on the Opts.Now clock. It is
// the truth a soak harness compares each session's bill with
// ([Board.Deliveries], or the deliveries command with since = the last
// Seq already read).
//
// A program that runs the board in process can also be told of every coil
// change as it happens, with its instant on the Opts.Now clock
// (Opts.OnCoil): a load harness times a phone's request to the moment a
// valve opens this way.
package emu
