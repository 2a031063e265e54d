// Package modbus is a Modbus RTU master (client) for the I/O boards that
// switch a machine's relays: the eight function codes a relay or I/O board
// needs (01 read coils, 02 read discrete inputs, 03 read holding registers,
// 04 read input registers, 05 write single coil, 06 write single register,
// 0F write multiple coils, 10 write multiple registers) over a serial line
// opened with go.bug.st/serial.
//
// Specs: Modbus Application Protocol v1.1b3 (PDUs, limits, exceptions) and
// Modbus over Serial Line v1.02 (RTU framing, timing, CRC), both at
// https://modbus.org/specs.php.
//
// # Use
//
//	m, err := modbus.Open("/dev/ttyUSB0", prof.Serial, nil) // DefaultOpts, baud from the profile
//	...
//	defer m.Close()
//	err = m.WriteSingleCoil(ctx, prof.SlaveID, 0, true)
//	in, err := m.ReadDiscreteInputs(ctx, prof.SlaveID, 0, 4)
//
// [New] takes any [Port] (serial.Port satisfies it) and [Opts]; [Master]
// implements [Bus], which is what drivers above this package depend on.
// Addresses are 0-based protocol addresses. Slave 0 broadcasts a write: it
// gets no reply, and [Master.Do] returns after Opts.BroadcastDelay.
//
// # Framing
//
// RTU marks frames by silence: 3.5 character times between frames, 1.5
// inside one. A Linux program cannot rely on that. A kernel pty, which the
// tests and the emulators use, delivers bytes in arbitrary chunks and
// ignores the baud rate; USB serial adapters buffer for milliseconds
// (an FTDI's latency timer is 16 ms); the scheduler adds its own pauses.
// So the master frames a reply by the length its first bytes announce, as
// [Request.ResponseLen] gives it: slave and function code first; an
// exception (function | 0x80) is 5 bytes; a read reply is 5 bytes plus the
// byte count in its third byte, which must be the one the request asks for;
// a write reply is 8 bytes. The reply's deadline is the request's wire time
// plus Opts.ResponseTimeout plus the expected reply's wire time. Reads use
// the port's read timeout in slices of at most 20 ms, because
// go.bug.st/serial's Read returns (0, nil) when its timeout passes (io.ReadFull
// would spin) and so that a cancelled context is noticed.
//
// [ParseResponse] checks one complete frame against its request: length
// (never more than MaxADU bytes), CRC, slave, function, byte count, and for
// writes the echoed address and value or quantity. It does not allocate on
// success; the fuzz target FuzzParseResponse, with its seed corpus in
// testdata/fuzz/FuzzParseResponse, checks that no input makes it panic and
// that whatever it accepts re-encodes to the same bytes.
//
// # Timing
//
// Before every request the master waits until the line has been quiet for
// the inter-frame gap ([FrameGap]: 3.5 characters of 11 bits at Opts.Baud,
// 4.01 ms at 9600 baud; a fixed 1.75 ms above 19200 baud) since the end of
// the previous exchange, reading and discarding anything that arrives
// meanwhile; every stray byte restarts the gap, and a line that never
// falls quiet is given up on after the response timeout. The wait is a read
// with a timeout, which the kernel times to the microsecond, where Go's
// timers overshoot sub-millisecond sleeps. One request is on the line at a
// time: concurrent callers queue for the line (a context ends the wait).
//
// # Resynchronisation
//
// A serial line picks up noise, and a slave that answered late leaves its
// reply in the way of the next request. The master
//
//   - flushes the port's input buffer (ResetInputBuffer) and reads away
//     anything left before it sends, so a late reply to an earlier request
//     is not taken for the reply to this one;
//   - scans the received bytes for a frame that starts with the slave
//     address and the function code, has the announced length and a good
//     CRC, wherever it starts, so stray bytes, another slave's frame or a
//     late reply to another function before the reply do not fail the
//     request;
//   - ends an attempt early, once the line has been quiet for the
//     inter-frame gap, when what arrived claims to be the reply (right
//     slave and function) but is broken: a bad CRC, a wrong length. Frames
//     of another conversation (another slave or function, a write reply
//     echoing another write) do not end the wait, since the reply may
//     follow them; if nothing better arrives by the deadline they give the
//     error instead of ErrTimeout;
//   - before a retry, waits for the line to be quiet again, discarding the
//     rest of a late or broken reply.
//
// A frame equal to the request itself is ignored when explaining a failure,
// for RS-485 adapters that echo what the master sends. RTU has no
// transaction IDs: a late reply to an identical earlier request that
// arrives after the flush is indistinguishable from the reply, and is
// taken.
//
// # Retries and errors
//
// Every error is an [*OpError] naming the request and wrapping what went
// wrong, so errors.Is, errors.As and vend.KindOf see the cause:
// "modbus: read coils 0-7 from slave 1: crc mismatch: got 01 01 01 05 91 de (3 attempts)".
//
//   - ErrRequest (kind invalid): the request breaks the protocol — a
//     quantity of 0 or over the limit (2000 bits or 125 registers to read,
//     1968 bits or 123 registers to write), a range past address 65535, a
//     reserved slave address, a broadcast read. Nothing is sent.
//   - ErrTimeout, ErrCRC, ErrLength, ErrSlaveID, ErrFunction (transient):
//     retried up to Opts.Retries times (default 2, at most MaxRetries).
//   - *Exception (errors.Is(err, ErrExceptionAny)): the slave refused; not
//     retried, since asking again gets the same answer.
//   - ErrEcho: a write reply that does not echo the request; not retried.
//   - ErrClosed: the port was closed (Master.Close) or is gone (a USB
//     adapter unplugged reads as EIO); other port errors are wrapped as
//     they are.
//   - ctx.Err(): the caller's context ended; not retried.
//
// [Master.Stats] counts exchanges, retries, failures and failed attempts by
// cause, for telemetry.
//
// # Tests
//
// The tests run the real go.bug.st/serial code on kernel ptys (hw/pty), no
// fake port: record/replay fixtures (the bytes the master must write, the
// chunks the board sends back: split one byte at a time, garbage before the
// reply, a bad CRC then a good one, exceptions, silence, another slave's
// reply) and an in-test I/O board for concurrency and the benchmarks.
//
// TestInteropModbusSerial checks the master against an RTU server this
// project did not write: ServerSerial of the npm package modbus-serial
// 8.0.25 under Node.js. The test installs the package once into
// $XDG_CACHE_HOME/beaconvend/npm-modbus (~/.cache/...; npm install
// --no-audit --no-fund --prefix DIR modbus-serial@8.0.25; the serial
// bindings come prebuilt for linux-x64), writes a small server script into
// a temporary directory, and joins two ptys with a null modem: the server
// opens pty A's slave, the Master pty B's slave, and a goroutine copies
// bytes between the two master ends (both sides need a serial path to
// open). All eight function codes pass against it, including 2000-coil and
// 125-register reads, exceptions for addresses outside its tables, and a
// timeout for a slave ID it does not answer. Without node or npm the test
// is skipped with a loud message, or fails when VEND_REQUIRE_SERVICES is
// set (as .ci/run sets it). Observed in that server: it does not check a
// request's CRC (it overwrites the received CRC with the computed one
// before checking), and it frames requests by 30 ms of silence.
//
// # Benchmarks
//
// A poll as the controller runs it, read 8 coils then 2 input registers
// (31 bytes on the wire), against the in-test board on a pty, which waits as
// long as each request and reply would take on the wire at the baud rate
// (10 bits per character). line-rate-ratio is the wire time of those 31
// bytes at baud/10 characters per second divided by the measured time per
// poll; the rest goes to the two inter-frame gaps and the scheduler.
//
//	go test -run='^$' -bench=. -benchtime=3s -count=2 ./hw/modbus/
//
// Measured on the 2-core development machine (Intel Xeon, Go 1.26, shared
// with other jobs, load average about 9), two runs each:
//
//	benchmark              time/poll        polls/s    line-rate-ratio  B/op  allocs/op
//	Poll at 9600 baud      41.1-42.0 ms     23.8-24.4  0.77-0.79        1750  25
//	Poll at 115200 baud    6.77-6.85 ms     146-148    0.39-0.40        1745  25
//	ParseResponse (255 B)  460-476 ns/op    -          -                0     0
//
// The ceiling is set by the line, not the code: at 9600 baud the 31 bytes
// take 32.3 ms and the two gaps 8.0 ms, so a perfect master reaches a ratio
// of 0.80; at 115200 baud 2.7 ms of bytes and 3.5 ms of gaps give 0.43.
// Of the 25 allocations per poll, the master makes 2 (the returned []bool
// and []uint16); go.bug.st/serial's Read makes about 3 per call (its
// select wrapper), and the in-test board about 3 per poll.
package modbus
