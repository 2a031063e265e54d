package modbus_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/hw/modbus"
	"beaconvend/hw/profile"
	"beaconvend/hw/pty"
)

// call is one Bus call in a fixture, returning what it read (nil for writes).
type call func(ctx context.Context, m *modbus.Master) (any, error)

func readCoils(slave byte, addr, qty uint16) call {
	return func(ctx context.Context, m *modbus.Master) (any, error) { return m.ReadCoils(ctx, slave, addr, qty) }
}
func readInputs(slave byte, addr, qty uint16) call {
	return func(ctx context.Context, m *modbus.Master) (any, error) {
		return m.ReadDiscreteInputs(ctx, slave, addr, qty)
	}
}
func readHolding(slave byte, addr, qty uint16) call {
	return func(ctx context.Context, m *modbus.Master) (any, error) {
		return m.ReadHoldingRegisters(ctx, slave, addr, qty)
	}
}
func readInputRegs(slave byte, addr, qty uint16) call {
	return func(ctx context.Context, m *modbus.Master) (any, error) {
		return m.ReadInputRegisters(ctx, slave, addr, qty)
	}
}
func writeCoil(slave byte, addr uint16, on bool) call {
	return func(ctx context.Context, m *modbus.Master) (any, error) {
		return nil, m.WriteSingleCoil(ctx, slave, addr, on)
	}
}
func writeReg(slave byte, addr, v uint16) call {
	return func(ctx context.Context, m *modbus.Master) (any, error) {
		return nil, m.WriteSingleRegister(ctx, slave, addr, v)
	}
}
func writeCoils(slave byte, addr uint16, v ...bool) call {
	return func(ctx context.Context, m *modbus.Master) (any, error) {
		return nil, m.WriteMultipleCoils(ctx, slave, addr, v)
	}
}
func writeRegs(slave byte, addr uint16, v ...uint16) call {
	return func(ctx context.Context, m *modbus.Master) (any, error) {
		return nil, m.WriteMultipleRegisters(ctx, slave, addr, v)
	}
}

func bits(s string) []bool { // "10100101" → coil 0 first
	b := make([]bool, len(s))
	for i, c := range s {
		b[i] = c == '1'
	}
	return b
}

// Record/replay fixtures: what the master must write, what the board
// answers, and what the call returns. Exact frames with their CRCs are from
// the Modbus spec's and Simply Modbus' worked examples; "crc" computes one.
var fixtures = []struct {
	name     string
	call     call
	steps    []step
	want     any
	wantErr  error // a sentinel, or *modbus.Exception{Code: ...}
	attempts int   // OpError.Attempts when wantErr is set
	waits    bool  // some attempt waits the response timeout out: use shortTimeout
	msg      string
}{
	{name: "FC01 read coils", call: readCoils(0x11, 0x13, 0x25),
		steps: []step{{Want: "11 01 00 13 00 25 0E 84", Reply: []string{"11 01 05 CD 6B B2 0E 1B 45 E6"}}},
		want:  bits("1011001111010110010011010111000011011")},
	{name: "FC02 read discrete inputs", call: readInputs(0x11, 0xC4, 0x16),
		steps: []step{{Want: "11 02 00 C4 00 16 BA A9", Reply: []string{"11 02 03 AC DB 35 20 18"}}},
		want:  bits("0011010111011011101011")},
	{name: "FC03 read holding registers", call: readHolding(0x11, 0x6B, 3),
		steps: []step{{Want: "11 03 00 6B 00 03 76 87", Reply: []string{"11 03 06 AE 41 56 52 43 40 49 AD"}}},
		want:  []uint16{0xAE41, 0x5652, 0x4340}},
	{name: "FC04 read input registers", call: readInputRegs(0x11, 8, 1),
		steps: []step{{Want: "11 04 00 08 00 01 B2 98", Reply: []string{"11 04 02 00 0A F8 F4"}}},
		want:  []uint16{10}},
	{name: "FC05 write coil", call: writeCoil(0x11, 0xAC, true),
		steps: []step{{Want: "11 05 00 AC FF 00 4E 8B", Reply: []string{"11 05 00 AC FF 00 4E 8B"}}}},
	{name: "FC05 coil off", call: writeCoil(1, 0, false),
		steps: []step{{Want: "01 05 00 00 00 00 crc", Reply: []string{"01 05 00 00 00 00 crc"}}}},
	{name: "FC06 write register", call: writeReg(0x11, 1, 3),
		steps: []step{{Want: "11 06 00 01 00 03 9A 9B", Reply: []string{"11 06 00 01 00 03 9A 9B"}}}},
	{name: "FC0F write coils", call: writeCoils(0x11, 0x13, bits("1011001110")...),
		steps: []step{{Want: "11 0F 00 13 00 0A 02 CD 01 BF 0B", Reply: []string{"11 0F 00 13 00 0A 26 99"}}}},
	{name: "FC10 write registers", call: writeRegs(0x11, 1, 0x000A, 0x0102),
		steps: []step{{Want: "11 10 00 01 00 02 04 00 0A 01 02 C6 F0", Reply: []string{"11 10 00 01 00 02 12 98"}}}},
	{name: "broadcast write gets no reply", call: writeCoil(0, 3, true),
		steps: []step{{Want: "00 05 00 03 FF 00 crc"}}},

	// A pty delivers bytes as they come: one at a time, or in pieces.
	{name: "reply one byte at a time", call: readHolding(1, 0, 2),
		steps: []step{{Want: "01 03 00 00 00 02 crc", Reply: []string{"01 03 04 12 34 AB CD crc"}, Bytewise: true}},
		want:  []uint16{0x1234, 0xABCD}},
	{name: "reply in three pieces", call: readInputRegs(1, 4, 2),
		steps: []step{{Want: "01 04 00 04 00 02 crc", Reply: []string{"01 | 04 04 00 | 01 00 02 crc"}}},
		want:  []uint16{1, 2}},

	// Resynchronisation: the reply is found after stray bytes.
	{name: "garbage before the reply", call: readInputRegs(1, 0, 2),
		steps: []step{{Want: "01 04 00 00 00 02 crc", Reply: []string{"FF 00 FE 01", "01 04 04 00 01 00 02 crc"}}},
		want:  []uint16{1, 2}},
	{name: "garbage that looks like a reply header", call: readCoils(1, 0, 8),
		steps: []step{{Want: "01 01 00 00 00 08 crc", Reply: []string{"01 01 01 77", "01 01 01 A5 crc"}}},
		want:  bits("10100101")},
	{name: "another slave's frame, then ours", call: readHolding(1, 0, 1),
		steps: []step{{Want: "01 03 00 00 00 01 84 0A", Reply: []string{"02 03 02 00 07 crc", "01 03 02 00 09 crc"}}},
		want:  []uint16{9}},

	// Transient failures are retried.
	{name: "bad crc, good on retry", call: readHolding(1, 0, 1),
		steps: []step{
			{Want: "01 03 00 00 00 01 84 0A", Reply: []string{"01 03 02 00 07 bad"}},
			{Want: "01 03 00 00 00 01 84 0A", Reply: []string{"01 03 02 00 07 crc"}},
		},
		want: []uint16{7}},
	{name: "silence, answer on retry", waits: true, call: writeReg(1, 2, 5),
		steps: []step{
			{Want: "01 06 00 02 00 05 crc"},
			{Want: "01 06 00 02 00 05 crc", Reply: []string{"01 06 00 02 00 05 crc"}},
		}},
	{name: "silence on every attempt", waits: true, call: readCoils(1, 0, 8),
		steps:   []step{{Want: "01 01 00 00 00 08 crc"}, {Want: "01 01 00 00 00 08 crc"}, {Want: "01 01 00 00 00 08 crc"}},
		wantErr: modbus.ErrTimeout, attempts: 3,
		msg: "modbus: read coils 0-7 from slave 1: no response: nothing within 250ms (3 attempts)"},
	{name: "bad crc on every attempt", call: readCoils(1, 0, 8),
		steps: []step{
			{Want: "01 01 00 00 00 08 crc", Reply: []string{"01 01 01 05 bad"}},
			{Want: "01 01 00 00 00 08 crc", Reply: []string{"01 01 01 05 bad"}},
			{Want: "01 01 00 00 00 08 crc", Reply: []string{"01 01 01 05 bad"}},
		},
		wantErr: modbus.ErrCRC, attempts: 3},
	{name: "reply from the wrong slave", waits: true, call: readHolding(1, 0, 1),
		steps: []step{
			{Want: "01 03 00 00 00 01 crc", Reply: []string{"02 03 02 00 07 crc"}},
			{Want: "01 03 00 00 00 01 crc", Reply: []string{"02 03 02 00 07 crc"}},
			{Want: "01 03 00 00 00 01 crc", Reply: []string{"02 03 02 00 07 crc"}},
		},
		wantErr: modbus.ErrSlaveID, attempts: 3,
		msg: "modbus: read holding registers 0 from slave 1: response from another slave: reply from slave 2 (3 attempts)"},
	{name: "reply for another function", waits: true, call: readHolding(1, 0, 1),
		steps: []step{
			{Want: "01 03 00 00 00 01 crc", Reply: []string{"01 04 02 00 07 crc"}},
			{Want: "01 03 00 00 00 01 crc", Reply: []string{"01 03 02 00 07 crc"}},
		},
		want: []uint16{7}},
	{name: "wrong byte count", call: readHolding(1, 0, 1),
		steps: []step{
			{Want: "01 03 00 00 00 01 crc", Reply: []string{"01 03 04 00 07 00 08 crc"}},
			{Want: "01 03 00 00 00 01 crc", Reply: []string{"01 03 04 00 07 00 08 crc"}},
			{Want: "01 03 00 00 00 01 crc", Reply: []string{"01 03 04 00 07 00 08 crc"}},
		},
		wantErr: modbus.ErrLength, attempts: 3},

	// Not retried: the slave answered, and said no or something else.
	{name: "exception", call: readCoils(1, 100, 8),
		steps:   []step{{Want: "01 01 00 64 00 08 crc", Reply: []string{"01 81 02 crc"}}},
		wantErr: &modbus.Exception{Function: 1, Code: modbus.ExIllegalDataAddress}, attempts: 1,
		msg: "modbus: read coils 100-107 from slave 1: exception illegal data address (function 0x01)"},
	{name: "exception split and after garbage", call: writeRegs(1, 0, 1, 2),
		steps:   []step{{Want: "01 10 00 00 00 02 04 00 01 00 02 crc", Reply: []string{"00 00", "01 90 04 crc"}, Bytewise: true}},
		wantErr: &modbus.Exception{Function: 0x10, Code: modbus.ExServerFailure}, attempts: 1},
	{name: "write echo mismatch", waits: true, call: writeReg(1, 2, 5),
		steps:   []step{{Want: "01 06 00 02 00 05 crc", Reply: []string{"01 06 00 02 00 06 crc"}}},
		wantErr: modbus.ErrEcho, attempts: 1,
		msg: "modbus: write register 2 to slave 1: write response does not echo the request: echo 2/0x0006, want 2/0x0005"},
}

func TestFixtures(t *testing.T) {
	for _, tc := range fixtures {
		t.Run(tc.name, func(t *testing.T) {
			o := testOpts()
			if tc.waits {
				o.ResponseTimeout = shortTimeout
			}
			r := newRig(t, 115200, o)
			pb := play(t, r.Line, tc.steps...)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			got, err := tc.call(ctx, r.M)
			pb.Wait()
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				if tc.want != nil && !reflect.DeepEqual(got, tc.want) {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
				return
			}
			checkErr(t, err, tc.wantErr)
			var oe *modbus.OpError
			if !errors.As(err, &oe) || oe.Attempts != tc.attempts {
				t.Errorf("err = %#v, want an *OpError with %d attempts", err, tc.attempts)
			}
			t.Logf("err = %v", err)
			if tc.msg != "" && err.Error() != tc.msg {
				t.Errorf("err.Error() =\n  %q\nwant\n  %q", err.Error(), tc.msg)
			}
		})
	}
}

func checkErr(t *testing.T, err, want error) {
	t.Helper()
	if wex, ok := want.(*modbus.Exception); ok {
		var ex *modbus.Exception
		if !errors.As(err, &ex) || *ex != *wex {
			t.Fatalf("err = %v, want %v", err, wex)
		}
		if !errors.Is(err, modbus.ErrExceptionAny) {
			t.Errorf("errors.Is(%v, ErrExceptionAny) = false", err)
		}
		return
	}
	if !errors.Is(err, want) {
		t.Fatalf("err = %v, want %v", err, want)
	}
	if !strings.HasPrefix(err.Error(), "modbus: ") {
		t.Errorf("err = %q, want the modbus: prefix", err)
	}
	if k, wk := vend.KindOf(err), vend.KindOf(want); k != wk {
		t.Errorf("KindOf(%v) = %s, want %s", err, k, wk)
	}
}

// Counters follow what happened on the line.
func TestStats(t *testing.T) {
	o := testOpts()
	o.ResponseTimeout = shortTimeout
	r := newRig(t, 115200, o)
	ctx := context.Background()
	pb := play(t, r.Line,
		step{Want: "01 03 00 00 00 01 crc", Reply: []string{"01 03 02 00 07 bad"}},
		step{Want: "01 03 00 00 00 01 crc"},
		step{Want: "01 03 00 00 00 01 crc", Reply: []string{"01 03 02 00 07 crc"}},
		step{Want: "01 01 00 00 00 01 crc", Reply: []string{"01 81 02 crc"}},
	)
	if _, err := r.M.ReadHoldingRegisters(ctx, 1, 0, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := r.M.ReadCoils(ctx, 1, 0, 1); !errors.Is(err, modbus.ErrExceptionAny) {
		t.Fatalf("err = %v, want an exception", err)
	}
	if _, err := r.M.ReadCoils(ctx, 1, 0, 0); !errors.Is(err, modbus.ErrRequest) {
		t.Fatalf("err = %v, want ErrRequest", err)
	}
	pb.Wait()
	got := r.M.Stats()
	want := modbus.Stats{Exchanges: 2, Retries: 2, Failed: 1, Invalid: 1, CRCErrors: 1, Timeouts: 1, Exceptions: 1}
	if got != want {
		t.Fatalf("Stats() = %+v\nwant       %+v", got, want)
	}
}

// Requests that break the protocol limits fail with ErrRequest, of kind
// invalid, and nothing reaches the wire.
func TestInvalidRequestsStayOffTheWire(t *testing.T) {
	r := newRig(t, 115200, testOpts())
	pb := play(t, r.Line)
	for _, tc := range []struct {
		name string
		call call
	}{
		{"read 0 coils", readCoils(1, 0, 0)},
		{"read 2001 coils", readCoils(1, 0, 2001)},
		{"read 0 inputs", readInputs(1, 0, 0)},
		{"read 126 registers", readHolding(1, 0, 126)},
		{"read 126 input registers", readInputRegs(1, 0, 126)},
		{"coils past 65535", readCoils(1, 65535, 2)},
		{"registers past 65535", readHolding(1, 65530, 7)},
		{"broadcast read", readCoils(0, 0, 1)},
		{"reserved slave 248", writeCoil(248, 0, true)},
		{"write no coils", writeCoils(1, 0)},
		{"write 1969 coils", writeCoils(1, 0, make([]bool, 1969)...)},
		{"write 124 registers", writeRegs(1, 0, make([]uint16, 124)...)},
		{"write registers past 65535", writeRegs(1, 65535, 1, 2)},
	} {
		_, err := tc.call(context.Background(), r.M)
		if !errors.Is(err, modbus.ErrRequest) || vend.KindOf(err) != vend.Invalid {
			t.Errorf("%s: err = %v, want ErrRequest of kind invalid", tc.name, err)
		}
	}
	pb.Wait()
	if s := r.M.Stats(); s.Invalid != 13 || s.Exchanges != 0 {
		t.Errorf("Stats() = %+v, want 13 invalid, 0 exchanges", s)
	}
}

// A stale reply left on the line (a late answer to an earlier request) is
// flushed before the next request, not taken as its reply.
func TestStaleReplyFlushed(t *testing.T) {
	r := newRig(t, 115200, testOpts())
	r.Line.Write(frame(t, "01 03 02 00 63 crc"))
	time.Sleep(20 * time.Millisecond) // let it reach the port's input buffer
	pb := play(t, r.Line, step{Want: "01 03 00 00 00 01 crc", Reply: []string{"01 03 02 00 07 crc"}})
	got, err := r.M.ReadHoldingRegisters(context.Background(), 1, 0, 1)
	pb.Wait()
	if err != nil || !reflect.DeepEqual(got, []uint16{7}) {
		t.Fatalf("got %v, %v; want [7] (not the stale 0x63)", got, err)
	}
}

// The master keeps the line silent for the inter-frame gap between the end
// of one exchange and the next request: 3.5 characters (4 ms at 9600 baud).
func TestInterFrameGap(t *testing.T) {
	o := testOpts()
	r := newRig(t, 9600, o)
	req := "01 01 00 00 00 08 crc"
	var steps []step
	for range 5 {
		steps = append(steps, step{Want: req, Reply: []string{"01 01 01 0F crc"}})
	}
	pb := play(t, r.Line, steps...)
	for range 5 {
		if _, err := r.M.ReadCoils(context.Background(), 1, 0, 8); err != nil {
			t.Fatal(err)
		}
	}
	pb.Wait()
	gap := modbus.FrameGap(9600)
	for i := 1; i < len(pb.gotAt); i++ {
		// gotAt is when the whole 8-byte request had arrived, so its start
		// was no earlier than gotAt minus its delivery, which on a pty is
		// immediate; allow 0.5 ms for scheduling.
		if d := pb.gotAt[i].Sub(pb.replyAt[i-1]); d < gap-500*time.Microsecond {
			t.Errorf("request %d came %v after the previous reply, want ≥ %v", i, d, gap)
		}
	}
}

// The context bounds a request: a cancelled or expired context ends it
// without waiting for the response timeout.
func TestContextCancels(t *testing.T) {
	o := testOpts()
	o.ResponseTimeout = 2 * time.Second
	r := newRig(t, 115200, o)
	pb := play(t, r.Line, step{Want: "01 01 00 00 00 08 crc"})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := r.M.ReadCoils(ctx, 1, 0, 8)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %v after a 50ms context", d)
	}
	pb.Wait()
	if s := r.M.Stats(); s.Retries != 0 || s.Cancelled != 1 {
		t.Errorf("Stats() = %+v, want no retry, 1 cancelled", s)
	}
}

// Close ends a request in flight with ErrClosed, and every later one.
func TestClose(t *testing.T) {
	o := testOpts()
	o.ResponseTimeout = 5 * time.Second
	r := newRig(t, 115200, o)
	pb := play(t, r.Line, step{Want: "01 01 00 00 00 08 crc"})
	errc := make(chan error, 1)
	go func() {
		_, err := r.M.ReadCoils(context.Background(), 1, 0, 8)
		errc <- err
	}()
	pb.Wait()
	r.M.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, modbus.ErrClosed) {
			t.Fatalf("in flight: err = %v, want ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("request in flight did not end on Close")
	}
	if err := r.M.WriteSingleCoil(context.Background(), 1, 0, false); !errors.Is(err, modbus.ErrClosed) {
		t.Fatalf("after Close: err = %v, want ErrClosed", err)
	}
}

// Losing the line (the pty's master end closes, as when a USB adapter is
// unplugged) fails the request with ErrClosed instead of spinning.
func TestLineGone(t *testing.T) {
	p, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	o := testOpts()
	o.ResponseTimeout = 5 * time.Second
	m, err := modbus.Open(p.SlavePath, profile.Serial{Baud: 115200}, o)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	go func() {
		time.Sleep(50 * time.Millisecond)
		p.Close()
	}()
	start := time.Now()
	_, err = m.ReadCoils(context.Background(), 1, 0, 8)
	if !errors.Is(err, modbus.ErrClosed) {
		t.Fatalf("err = %v, want ErrClosed", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v", d)
	}
}

// Concurrent callers take turns on the line; each gets its own answer.
func TestConcurrentCallers(t *testing.T) {
	r := newRig(t, 115200, testOpts())
	b := &board{ID: 7}
	serveBoard(t, r.Line, b)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 15 {
				reg := uint16(g*8 + i%8)
				v := uint16(g*1000 + i)
				if err := r.M.WriteSingleRegister(ctx, 7, reg, v); err != nil {
					errs <- err
					return
				}
				// Only goroutine g writes reg, so it reads back its own value.
				got, err := r.M.ReadHoldingRegisters(ctx, 7, reg, 1)
				if err != nil || got[0] != v {
					errs <- fmt.Errorf("goroutine %d: read back %v, %v; want %d", g, got, err, v)
					return
				}
				in, err := r.M.ReadInputRegisters(ctx, 7, 60, 4)
				if err != nil || !reflect.DeepEqual(in, []uint16{1060, 1061, 1062, 1063}) {
					errs <- fmt.Errorf("goroutine %d: input registers %v, %v", g, in, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if s := r.M.Stats(); s.Exchanges != 4*15*3 || s.Retries != 0 || s.Failed != 0 {
		t.Errorf("Stats() = %+v, want %d clean exchanges", s, 4*15*3)
	}
}

// Every function code against the in-test board, through the pty.
func TestAllFunctionsAgainstBoard(t *testing.T) {
	r := newRig(t, 115200, testOpts())
	serveBoard(t, r.Line, &board{ID: 3})
	ctx := context.Background()
	m := r.M
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	pattern := bits("1100101011110000101")
	must(m.WriteMultipleCoils(ctx, 3, 40, pattern))
	must(m.WriteSingleCoil(ctx, 3, 63, true))
	coils, err := m.ReadCoils(ctx, 3, 40, 19)
	must(err)
	if !reflect.DeepEqual(coils, pattern) {
		t.Errorf("coils = %v, want %v", coils, pattern)
	}
	in, err := m.ReadDiscreteInputs(ctx, 3, 62, 2)
	must(err)
	if !reflect.DeepEqual(in, []bool{true, false}) {
		t.Errorf("inputs 62-63 = %v, want [true false]", in)
	}
	must(m.WriteMultipleRegisters(ctx, 3, 10, []uint16{1, 0xFFFF, 0x8000}))
	must(m.WriteSingleRegister(ctx, 3, 13, 42))
	regs, err := m.ReadHoldingRegisters(ctx, 3, 10, 4)
	must(err)
	if !reflect.DeepEqual(regs, []uint16{1, 0xFFFF, 0x8000, 42}) {
		t.Errorf("holding 10-13 = %v", regs)
	}
	ir, err := m.ReadInputRegisters(ctx, 3, 0, 2)
	must(err)
	if !reflect.DeepEqual(ir, []uint16{1000, 1001}) {
		t.Errorf("input registers 0-1 = %v", ir)
	}
	_, err = m.ReadHoldingRegisters(ctx, 3, 60, 10)
	var ex *modbus.Exception
	if !errors.As(err, &ex) || ex.Code != modbus.ExIllegalDataAddress {
		t.Errorf("read past the board's end: err = %v, want illegal data address", err)
	}
}
