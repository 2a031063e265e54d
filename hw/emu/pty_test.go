package emu_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"testing"
	"time"

	smb "github.com/simonvetter/modbus"
	"go.bug.st/serial"

	"beaconvend/hw/emu"
	"beaconvend/hw/modbus"
	"beaconvend/hw/profile"
)

func startEmulator(tb testing.TB, p *profile.Profile, cfg *emu.SimConfig, o *emu.Opts) *emu.Emulator {
	tb.Helper()
	e, err := emu.Open(p, cfg, o)
	if err != nil {
		tb.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- e.Run(context.Background()) }()
	tb.Cleanup(func() {
		if err := e.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
		if err := <-errc; err != nil {
			tb.Errorf("Run: %v", err)
		}
	})
	return e
}

func openSerial(tb testing.TB, path string) serial.Port {
	tb.Helper()
	port, err := serial.Open(path, &serial.Mode{BaudRate: 9600})
	if err != nil {
		tb.Fatalf("serial.Open(%s): %v", path, err)
	}
	tb.Cleanup(func() { port.Close() })
	return port
}

// portReader reads a go.bug.st/serial port until a deadline: its Read
// returns (0, nil) on its read timeout.
type portReader struct {
	p        serial.Port
	deadline time.Time
}

func (r *portReader) Read(b []byte) (int, error) {
	for time.Now().Before(r.deadline) {
		n, err := r.p.Read(b)
		if n > 0 || err != nil {
			return n, err
		}
	}
	return 0, io.ErrNoProgress
}

// exchange writes raw bytes and returns the reply frame, or nil when none
// came within wait.
func exchange(tb testing.TB, port serial.Port, raw []byte, wait time.Duration) []byte {
	tb.Helper()
	port.ResetInputBuffer()
	if _, err := port.Write(raw); err != nil {
		tb.Fatal(err)
	}
	port.SetReadTimeout(20 * time.Millisecond)
	adu, err := readADU(&portReader{p: port, deadline: time.Now().Add(wait)})
	if errors.Is(err, io.ErrNoProgress) {
		return nil
	}
	if err != nil {
		tb.Fatalf("% x: reply %x: %v", raw, adu, err)
	}
	return adu
}

func adu(slave byte, pdu ...byte) []byte { return modbus.AppendCRC(append([]byte{slave}, pdu...)) }

// Raw frames through go.bug.st/serial on the pty slave, as a controller's
// driver sends them.
func TestRawFramesOnPty(t *testing.T) {
	p := mustProfile(t, "generic-relay-4")
	e := startEmulator(t, p, nil, nil)
	port := openSerial(t, e.BoardPath())
	badCRC := adu(1, 0x01, 0, 0, 0, 4)
	badCRC[len(badCRC)-1] ^= 0xFF
	tests := []struct {
		name string
		send []byte
		want []byte // nil: no reply
	}{
		{"write coil 2 ON", adu(1, 0x05, 0, 1, 0xFF, 0), adu(1, 0x05, 0, 1, 0xFF, 0)},
		{"read coils 0-3", adu(1, 0x01, 0, 0, 0, 4), adu(1, 0x01, 1, 0x02)},
		{"read inputs 0-3", adu(1, 0x02, 0, 0, 0, 4), adu(1, 0x02, 1, 0x00)},
		{"read coils past the end", adu(1, 0x01, 0, 2, 0, 3), adu(1, 0x81, modbus.ExIllegalDataAddress)},
		{"read zero coils", adu(1, 0x01, 0, 0, 0, 0), adu(1, 0x81, modbus.ExIllegalDataValue)},
		{"coil value not FF00/0000", adu(1, 0x05, 0, 0, 0x12, 0x34), adu(1, 0x85, modbus.ExIllegalDataValue)},
		{"no holding registers", adu(1, 0x03, 0, 0, 0, 1), adu(1, 0x83, modbus.ExIllegalDataAddress)},
		{"unknown function", adu(1, 0x2B, 0x0E, 0x01, 0x00), adu(1, 0xAB, modbus.ExIllegalFunction)},
		{"write coils 0-3", adu(1, 0x0F, 0, 0, 0, 4, 1, 0x09), adu(1, 0x0F, 0, 0, 0, 4)},
		{"byte count mismatch", adu(1, 0x0F, 0, 0, 0, 4, 2, 0x09, 0), adu(1, 0x8F, modbus.ExIllegalDataValue)},
		{"read back", adu(1, 0x01, 0, 0, 0, 4), adu(1, 0x01, 1, 0x09)},
		{"bad CRC: silence", badCRC, nil},
		{"other slave: silence", adu(2, 0x01, 0, 0, 0, 4), nil},
		{"broadcast write coil 1: silence", adu(0, 0x05, 0, 1, 0xFF, 0), nil},
		{"garbage then request", append([]byte{0x00, 0xFF, 0x13, 0x37, 0x01}, adu(1, 0x01, 0, 0, 0, 4)...), adu(1, 0x01, 1, 0x0B)},
		{"bad CRC then request", append(append([]byte(nil), badCRC...), adu(1, 0x01, 0, 0, 0, 4)...), adu(1, 0x01, 1, 0x0B)},
	}
	for _, tt := range tests {
		wait := 2 * time.Second
		if tt.want == nil {
			wait = 300 * time.Millisecond
		}
		got := exchange(t, port, tt.send, wait)
		if !bytes.Equal(got, tt.want) {
			t.Errorf("%s: % x → % x, want % x", tt.name, tt.send, got, tt.want)
		}
	}
	// A request split into chunks with pauses shorter than the frame gap.
	req := adu(1, 0x01, 0, 0, 0, 4)
	port.Write(req[:3])
	time.Sleep(10 * time.Millisecond)
	if got := exchange(t, port, req[3:], 2*time.Second); !bytes.Equal(got, adu(1, 0x01, 1, 0x0B)) {
		t.Errorf("chunked request → % x", got)
	}
	s := e.Board.Status()
	if s.Stats.CRCErrors < 2 || s.Stats.OtherSlave != 1 || s.Stats.Broadcasts != 1 || s.Stats.Exceptions != 6 || s.Stats.GarbageBytes == 0 {
		t.Errorf("stats = %+v", s.Stats)
	}
}

func newSimonvetter(tb testing.TB, path string, slave byte) *smb.ModbusClient {
	tb.Helper()
	c, err := smb.NewClient(&smb.ClientConfiguration{
		URL: "rtu://" + path, Speed: 9600, DataBits: 8, Parity: smb.PARITY_NONE, StopBits: 1,
		Timeout: 3 * time.Second, Logger: log.New(io.Discard, "", 0),
	})
	if err != nil {
		tb.Fatal(err)
	}
	if err := c.Open(); err != nil {
		tb.Fatalf("simonvetter Open(%s): %v", path, err)
	}
	tb.Cleanup(func() { c.Close() })
	c.SetUnitId(slave)
	return c
}

// An independent Modbus RTU client (github.com/simonvetter/modbus) drives
// every function code the board implements.
func TestIndependentClientAllFunctions(t *testing.T) {
	p := mustProfile(t, testProfile)
	e := startEmulator(t, p, nil, nil)
	c := newSimonvetter(t, e.BoardPath(), p.SlaveID)
	check := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	check("FC05 WriteCoil", c.WriteCoil(1, true))
	check("FC0F WriteCoils", c.WriteCoils(2, []bool{true, false}))
	coils, err := c.ReadCoils(0, 4) // FC01
	check("FC01 ReadCoils", err)
	if want := []bool{false, true, true, false}; !equalBools(coils, want) {
		t.Errorf("FC01 ReadCoils(0, 4) = %v, want %v", coils, want)
	}
	ins, err := c.ReadDiscreteInputs(0, 3) // FC02; i2 is active-low, so idle reads high
	check("FC02 ReadDiscreteInputs", err)
	if want := []bool{false, true, false}; !equalBools(ins, want) {
		t.Errorf("FC02 ReadDiscreteInputs(0, 3) = %v, want %v", ins, want)
	}
	check("FC06 WriteRegister", c.WriteRegister(10, 0xBEEF))
	check("FC10 WriteRegisters", c.WriteRegisters(11, []uint16{0x5678, 0x1234}))
	hold, err := c.ReadRegisters(10, 3, smb.HOLDING_REGISTER) // FC03
	check("FC03 ReadRegisters", err)
	if want := []uint16{0xBEEF, 0x5678, 0x1234}; !equalU16(hold, want) {
		t.Errorf("FC03 ReadRegisters(10, 3) = %x, want %x", hold, want)
	}
	in, err := c.ReadRegisters(0, 2, smb.INPUT_REGISTER) // FC04
	check("FC04 ReadRegisters", err)
	if want := []uint16{0, 0}; !equalU16(in, want) {
		t.Errorf("FC04 ReadRegisters(0, 2) = %x, want %x", in, want)
	}
	check("FC10 WriteRegisters watchdog", c.WriteRegisters(20, []uint16{50}))
	if s := e.Board.Status(); s.Counters["h32"] != 0x12345678 || s.Counters["h16"] != 0xBEEF || !s.Watchdog.Armed || s.Watchdog.Value != 50 {
		t.Errorf("status counters %v watchdog %+v", s.Counters, s.Watchdog)
	}

	// Exceptions.
	if _, err := c.ReadCoils(3, 2); !errors.Is(err, smb.ErrIllegalDataAddress) {
		t.Errorf("ReadCoils(3, 2) past the last coil: %v, want %v", err, smb.ErrIllegalDataAddress)
	}
	if err := c.WriteRegister(0, 1); !errors.Is(err, smb.ErrIllegalDataAddress) {
		t.Errorf("WriteRegister(0) (an input register): %v, want %v", err, smb.ErrIllegalDataAddress)
	}
	if _, err := c.ReadRegisters(0, 3, smb.INPUT_REGISTER); !errors.Is(err, smb.ErrIllegalDataAddress) {
		t.Errorf("ReadRegisters(0, 3) past the counter: %v, want %v", err, smb.ErrIllegalDataAddress)
	}
	if err := c.WriteCoil(9, true); !errors.Is(err, smb.ErrIllegalDataAddress) {
		t.Errorf("WriteCoil(9): %v, want %v", err, smb.ErrIllegalDataAddress)
	}
}

// Faults injected through the control socket reach a client on the pty.
func TestControlSocketFaults(t *testing.T) {
	p := mustProfile(t, "pulse-io-4")
	e := startEmulator(t, p, mustSim(t, `
machines:
  - {name: tap, kind: water, valve: out1, flow: count1}
`), nil)
	c := newSimonvetter(t, e.BoardPath(), 1)
	ctl, err := emu.Dial(e.ControlPath())
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()

	if _, err := c.ReadCoils(0, 4); err != nil {
		t.Fatalf("healthy read: %v", err)
	}
	if err := ctl.CorruptCRC(1); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadCoils(0, 4); !errors.Is(err, smb.ErrBadCRC) {
		t.Errorf("corrupt_crc 1: %v, want %v", err, smb.ErrBadCRC)
	}
	if _, err := c.ReadCoils(0, 4); err != nil {
		t.Errorf("after the corrupted reply: %v", err)
	}
	if err := ctl.NoReply(1); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadCoils(0, 4); !errors.Is(err, smb.ErrRequestTimedOut) {
		t.Errorf("no_reply 1: %v, want %v", err, smb.ErrRequestTimedOut)
	}
	if err := ctl.Delay(150 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := c.ReadCoils(0, 4); err != nil {
		t.Errorf("delayed read: %v", err)
	} else if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("delayed read took %v, want >= 150ms", d)
	}
	if err := ctl.StuckInput("in3", true); err != nil {
		t.Fatal(err)
	}
	if err := ctl.ClearFaults(); err != nil {
		t.Fatal(err)
	}
	if err := ctl.StuckInput("in2", true); err != nil {
		t.Fatal(err)
	}
	if ins, err := c.ReadDiscreteInputs(0, 4); err != nil || !equalBools(ins, []bool{false, true, false, false}) {
		t.Errorf("stuck in2: %v, %v", ins, err)
	}
	if err := ctl.ReleaseInput("in2"); err != nil {
		t.Fatal(err)
	}
	if err := ctl.SetFlowRate("tap", 12); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteCoil(0, true); err != nil {
		t.Fatal(err)
	}
	if err := ctl.ExpireLease(); err != nil {
		t.Fatal(err)
	}
	if on, err := c.ReadCoil(0); err != nil || on {
		t.Errorf("after expire_lease: coil 0 = %v, %v", on, err)
	}
	st, err := ctl.Status()
	if err != nil {
		t.Fatal(err)
	}
	w := st.Machines[0].Water
	if st.ForcedOffs != 1 || st.Stats.RepliesCorrupted != 1 || st.Stats.RepliesDropped != 1 || st.Stats.RepliesDelayed != 1 ||
		st.Faults.DelayMS != 0 || len(st.Faults.Stuck) != 0 || w.FlowLPM != 12 || w.ValveOpen || w.Opens != 1 || st.Stats.Requests < 8 {
		t.Errorf("status = %+v, water %+v", st, w)
	}

	// Refusals come back as ErrRequest; the connection stays usable.
	for _, err := range []error{
		ctl.Jam("tap", "A1", true),
		ctl.SetFlowRate("nope", 1),
		ctl.StuckInput("in9", true),
		ctl.CorruptCRCProbability(2),
	} {
		if !errors.Is(err, emu.ErrRequest) {
			t.Errorf("bad request: %v, want ErrRequest", err)
		}
	}
	if _, err := ctl.Do(emu.Request{Cmd: "reboot"}); !errors.Is(err, emu.ErrRequest) {
		t.Errorf("unknown command: %v", err)
	}
	if _, err := ctl.Status(); err != nil {
		t.Errorf("status after refusals: %v", err)
	}
}

// Probabilistic faults: with probability 1 every reply is corrupt.
func TestCorruptProbability(t *testing.T) {
	e := startEmulator(t, mustProfile(t, "generic-relay-4"), nil, nil)
	c := newSimonvetter(t, e.BoardPath(), 1)
	ctl, err := emu.Dial(e.ControlPath())
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	if err := ctl.CorruptCRCProbability(1); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := c.ReadCoils(0, 1); !errors.Is(err, smb.ErrBadCRC) {
			t.Errorf("probability 1: %v", err)
		}
	}
	if err := ctl.CorruptCRC(0); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadCoils(0, 1); err != nil {
		t.Errorf("cleared: %v", err)
	}
}

func equalBools(a, b []bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func equalU16(a, b []uint16) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
