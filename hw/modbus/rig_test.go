package modbus_test

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"beaconvend/hw/modbus"
	"beaconvend/hw/profile"
	"beaconvend/hw/pty"
)

// frame parses a frame written as hex bytes separated by spaces; the token
// "crc" appends the CRC of the bytes before it, "bad" a wrong one, and "|"
// is ignored (chunks() splits there).
func frame(tb testing.TB, s string) []byte {
	tb.Helper()
	var b []byte
	for _, tok := range strings.Fields(s) {
		switch tok {
		case "|":
		case "crc":
			b = modbus.AppendCRC(b)
		case "bad":
			b = modbus.AppendCRC(b)
			b[len(b)-1] ^= 0x55
		default:
			v, err := hex.DecodeString(tok)
			if err != nil {
				tb.Fatalf("frame %q: %v", s, err)
			}
			b = append(b, v...)
		}
	}
	return b
}

// rig is a Master on the slave side of a kernel pty; the test holds the
// master side (Line), as an I/O board on a cable would.
type rig struct {
	Line *os.File
	M    *modbus.Master
}

// testOpts are settings for fixture tests: 115200 baud (1.75 ms gap), 2
// retries, and a response timeout of 2 s, so that a loaded machine (CI runs
// packages in parallel on 2 cores) does not turn a prompt reply into a
// timeout. Tests that must wait a timeout out use shortTimeout.
func testOpts() *modbus.Opts {
	o := modbus.DefaultOpts
	o.Baud = 115200
	o.ResponseTimeout = 2 * time.Second
	o.BroadcastDelay = 20 * time.Millisecond
	return &o
}

// shortTimeout is the response timeout for tests that wait it out.
const shortTimeout = 250 * time.Millisecond

func newRig(tb testing.TB, baud int, opts *modbus.Opts) *rig {
	tb.Helper()
	p, err := pty.Open()
	if err != nil {
		tb.Fatal(err)
	}
	m, err := modbus.Open(p.SlavePath, profile.Serial{Baud: baud, Parity: "none", DataBits: 8, StopBits: 1}, opts)
	if err != nil {
		p.Close()
		tb.Fatalf("modbus.Open(%s): %v", p.SlavePath, err)
	}
	tb.Cleanup(func() {
		m.Close()
		p.Close()
	})
	return &rig{Line: p.Master, M: m}
}

// step is one recorded exchange: the request the master must write, and
// the reply chunks the board sends back (none: silence).
type step struct {
	Want     string   // request, in frame() notation
	Reply    []string // reply frames in frame() notation, written 2 ms apart; "|" splits one into chunks 2 ms apart
	Bytewise bool     // write the reply one byte at a time, 200 µs apart
}

// playback answers the master with steps, in order, from a goroutine. The
// returned func waits for it, checks that every step was used and that the
// master wrote nothing more, and returns when each request arrived and
// each reply was finished.
type playback struct {
	tb      testing.TB
	line    *os.File
	steps   []step
	want    [][]byte   // parsed step requests
	replies [][][]byte // parsed step reply chunks
	done    chan error
	gotAt   []time.Time // when each request's last byte arrived
	replyAt []time.Time // when each reply's last byte was written
}

func play(tb testing.TB, line *os.File, steps ...step) *playback {
	tb.Helper()
	p := &playback{tb: tb, line: line, steps: steps, done: make(chan error, 1)}
	for _, s := range steps {
		p.want = append(p.want, frame(tb, s.Want))
		var r [][]byte
		for _, c := range s.Reply {
			f := frame(tb, c)
			for _, part := range strings.Split(c, "|") {
				n := len(frame(tb, strings.ReplaceAll(strings.ReplaceAll(part, "crc", "00 00"), "bad", "00 00")))
				r = append(r, f[:n])
				f = f[n:]
			}
		}
		p.replies = append(p.replies, r)
	}
	go func() { p.done <- p.run() }()
	return p
}

func (p *playback) run() error {
	for i, s := range p.steps {
		want := p.want[i]
		got := make([]byte, len(want))
		p.line.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(p.line, got); err != nil {
			return fmt.Errorf("step %d: reading request % x: %v", i, want, err)
		}
		p.gotAt = append(p.gotAt, time.Now())
		if !bytes.Equal(got, want) {
			return fmt.Errorf("step %d: master wrote % x, want % x", i, got, want)
		}
		for j, b := range p.replies[i] {
			if j > 0 {
				time.Sleep(2 * time.Millisecond)
			}
			if !s.Bytewise {
				if _, err := p.line.Write(b); err != nil {
					return err
				}
				continue
			}
			for k := range b {
				if k > 0 {
					time.Sleep(200 * time.Microsecond)
				}
				if _, err := p.line.Write(b[k : k+1]); err != nil {
					return err
				}
			}
		}
		p.replyAt = append(p.replyAt, time.Now())
	}
	return nil
}

// Wait checks that the playback ran to its end and that the master then
// stayed silent for 30 ms.
func (p *playback) Wait() {
	p.tb.Helper()
	if err := <-p.done; err != nil {
		p.tb.Fatal(err)
	}
	p.line.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	var b [64]byte
	if n, _ := p.line.Read(b[:]); n > 0 {
		p.tb.Fatalf("master wrote % x after the last step", b[:n])
	}
}

// board is a small in-test I/O board on the master side of a pty: 64 coils,
// 64 discrete inputs (coil i inverted), 64 holding registers and 64 input
// registers (register i + 1000). With Baud set it sleeps as long as the
// request and the reply would take on a wire (10 bits per character).
type board struct {
	ID    byte
	Baud  int
	mu    sync.Mutex
	coils [64]bool
	hold  [64]uint16
}

// serve answers requests on line until it is closed.
func (b *board) serve(line io.ReadWriter) error {
	buf := make([]byte, modbus.MaxADU)
	for {
		if _, err := io.ReadFull(line, buf[:7]); err != nil {
			return err
		}
		n := 8
		if buf[1] == modbus.FuncWriteMultipleCoils || buf[1] == modbus.FuncWriteMultipleRegisters {
			n = 9 + int(buf[6])
		}
		if _, err := io.ReadFull(line, buf[7:n]); err != nil {
			return err
		}
		req := buf[:n]
		reply := b.handle(req)
		if b.Baud > 0 {
			// nanosleep, not time.Sleep: the runtime's timers round
			// sub-millisecond waits up to a millisecond or more.
			d := time.Duration(len(req)+len(reply)) * 10 * time.Second / time.Duration(b.Baud)
			ts := unix.NsecToTimespec(d.Nanoseconds())
			for unix.Nanosleep(&ts, &ts) == unix.EINTR {
			}
		}
		if reply != nil {
			if _, err := line.Write(reply); err != nil {
				return err
			}
		}
	}
}

func (b *board) handle(req []byte) []byte {
	if !modbus.CheckCRC(req) || (req[0] != b.ID && req[0] != 0) {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	fc := req[1]
	addr := int(binary.BigEndian.Uint16(req[2:]))
	qty := int(binary.BigEndian.Uint16(req[4:]))
	exc := func(code byte) []byte { return modbus.AppendCRC([]byte{b.ID, fc | 0x80, code}) }
	out := []byte{b.ID, fc}
	switch fc {
	case modbus.FuncReadCoils, modbus.FuncReadDiscreteInputs:
		if addr+qty > 64 {
			return exc(modbus.ExIllegalDataAddress)
		}
		data := make([]byte, (qty+7)/8)
		for i := range qty {
			if b.coils[addr+i] != (fc == modbus.FuncReadDiscreteInputs) {
				data[i/8] |= 1 << (i % 8)
			}
		}
		out = append(append(out, byte(len(data))), data...)
	case modbus.FuncReadHoldingRegisters, modbus.FuncReadInputRegisters:
		if addr+qty > 64 {
			return exc(modbus.ExIllegalDataAddress)
		}
		out = append(out, byte(2*qty))
		for i := range qty {
			v := b.hold[addr+i]
			if fc == modbus.FuncReadInputRegisters {
				v = uint16(addr + i + 1000)
			}
			out = binary.BigEndian.AppendUint16(out, v)
		}
	case modbus.FuncWriteSingleCoil:
		if addr >= 64 {
			return exc(modbus.ExIllegalDataAddress)
		}
		b.coils[addr] = qty == 0xFF00
		out = append(out, req[2:6]...)
	case modbus.FuncWriteSingleRegister:
		if addr >= 64 {
			return exc(modbus.ExIllegalDataAddress)
		}
		b.hold[addr] = uint16(qty)
		out = append(out, req[2:6]...)
	case modbus.FuncWriteMultipleCoils:
		if addr+qty > 64 {
			return exc(modbus.ExIllegalDataAddress)
		}
		for i := range qty {
			b.coils[addr+i] = req[7+i/8]&(1<<(i%8)) != 0
		}
		out = append(out, req[2:6]...)
	case modbus.FuncWriteMultipleRegisters:
		if addr+qty > 64 {
			return exc(modbus.ExIllegalDataAddress)
		}
		for i := range qty {
			b.hold[addr+i] = binary.BigEndian.Uint16(req[7+2*i:])
		}
		out = append(out, req[2:6]...)
	default:
		return exc(modbus.ExIllegalFunction)
	}
	if req[0] == 0 {
		return nil // broadcast: no reply
	}
	return modbus.AppendCRC(out)
}

// serveBoard runs b on line until the test ends.
func serveBoard(tb testing.TB, line *os.File, b *board) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := b.serve(line)
		if err != nil && !errors.Is(err, os.ErrClosed) && !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "input/output error") {
			tb.Errorf("board: %v", err)
		}
	}()
	tb.Cleanup(func() {
		line.Close()
		wg.Wait()
	})
}
