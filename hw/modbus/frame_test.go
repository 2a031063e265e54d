package modbus_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"

	"go.bug.st/serial"

	"beaconvend/app-protocol/vend"
	"beaconvend/hw/modbus"
	"beaconvend/hw/profile"
)

func TestAppendADU(t *testing.T) {
	for _, tc := range []struct {
		req  modbus.Request
		want string
	}{
		{modbus.Request{Slave: 1, Function: modbus.FuncReadHoldingRegisters, Qty: 1}, "01 03 00 00 00 01 84 0A"},
		{modbus.Request{Slave: 1, Function: modbus.FuncWriteSingleCoil, Qty: 1, Value: 0xFF00}, "01 05 00 00 FF 00 8C 3A"},
		{modbus.Request{Slave: 0x11, Function: modbus.FuncWriteMultipleCoils, Addr: 0x13, Qty: 10, Data: []byte{0xCD, 0x01}},
			"11 0F 00 13 00 0A 02 CD 01 BF 0B"},
		{modbus.Request{Slave: 0x11, Function: modbus.FuncWriteMultipleRegisters, Addr: 1, Qty: 2,
			Data: modbus.PackRegisters([]uint16{10, 0x102})}, "11 10 00 01 00 02 04 00 0A 01 02 C6 F0"},
	} {
		got, err := tc.req.AppendADU(nil)
		if want := frame(t, tc.want); err != nil || !bytes.Equal(got, want) {
			t.Errorf("AppendADU(%s) = % X, %v; want % X", tc.req.String(), got, err, want)
		}
		if n := tc.req.ADULen(); n != len(got) {
			t.Errorf("ADULen(%s) = %d, want %d", tc.req.String(), n, len(got))
		}
	}
}

func TestRequestValidate(t *testing.T) {
	ok := []modbus.Request{
		{Slave: 1, Function: 1, Addr: 65535, Qty: 1},
		{Slave: 247, Function: 2, Addr: 0, Qty: 2000},
		{Slave: 1, Function: 3, Addr: 65411, Qty: 125},
		{Slave: 1, Function: 4, Qty: 125},
		{Slave: 0, Function: 5, Qty: 1, Value: 0},
		{Slave: 1, Function: 6, Addr: 65535, Qty: 1, Value: 0xFFFF},
		{Slave: 1, Function: 15, Qty: 1968, Data: make([]byte, 246)},
		{Slave: 0, Function: 16, Qty: 123, Data: make([]byte, 246)},
	}
	for _, r := range ok {
		if err := r.Validate(); err != nil {
			t.Errorf("Validate(%s) = %v, want nil", r.String(), err)
		}
	}
	bad := []modbus.Request{
		{Slave: 1, Function: 1, Qty: 0},
		{Slave: 1, Function: 1, Qty: 2001},
		{Slave: 1, Function: 1, Addr: 65535, Qty: 2},
		{Slave: 1, Function: 3, Qty: 126},
		{Slave: 0, Function: 3, Qty: 1},
		{Slave: 248, Function: 6, Qty: 1},
		{Slave: 1, Function: 5, Qty: 1, Value: 1},
		{Slave: 1, Function: 5, Qty: 2, Value: 0xFF00},
		{Slave: 1, Function: 15, Qty: 9, Data: []byte{1}},
		{Slave: 1, Function: 16, Qty: 124, Data: make([]byte, 248)},
		{Slave: 1, Function: 16, Addr: 65535, Qty: 2, Data: make([]byte, 4)},
		{Slave: 1, Function: 3, Qty: 1, Data: []byte{1}},
		{Slave: 1, Function: 0x2B, Qty: 1},
	}
	for _, r := range bad {
		err := r.Validate()
		if !errors.Is(err, modbus.ErrRequest) || vend.KindOf(err) != vend.Invalid {
			t.Errorf("Validate(%+v) = %v, want ErrRequest", r, err)
		}
		if _, err := r.AppendADU(nil); err == nil {
			t.Errorf("AppendADU(%+v) succeeded", r)
		}
	}
}

func TestParseResponse(t *testing.T) {
	rd := modbus.Request{Slave: 1, Function: modbus.FuncReadHoldingRegisters, Addr: 0, Qty: 2}
	coils := modbus.Request{Slave: 1, Function: modbus.FuncReadCoils, Addr: 0, Qty: 10}
	wr := modbus.Request{Slave: 1, Function: modbus.FuncWriteMultipleRegisters, Addr: 5, Qty: 2, Data: make([]byte, 4)}
	for _, tc := range []struct {
		name  string
		req   modbus.Request
		frame string
		want  any   // []uint16 or []bool for reads
		err   error // sentinel, or *Exception
	}{
		{"registers", rd, "01 03 04 00 01 FF FF crc", []uint16{1, 0xFFFF}, nil},
		{"coils with padding", coils, "01 01 02 FF 03 crc", bits("1111111111"), nil},
		{"write echo", wr, "01 10 00 05 00 02 crc", nil, nil},
		{"exception", rd, "01 83 02 crc", nil, &modbus.Exception{Function: 3, Code: 2}},
		{"exception, unknown code", rd, "01 83 0B crc", nil, &modbus.Exception{Function: 3, Code: 0x0B}},
		{"bad crc", rd, "01 03 04 00 01 FF FF bad", nil, modbus.ErrCRC},
		{"other slave", rd, "02 03 04 00 01 FF FF crc", nil, modbus.ErrSlaveID},
		{"other function", rd, "01 04 04 00 01 FF FF crc", nil, modbus.ErrFunction},
		{"short byte count", rd, "01 03 02 00 01 crc", nil, modbus.ErrLength},
		{"byte count beyond frame", rd, "01 03 04 00 01 crc", nil, modbus.ErrLength},
		{"extra bytes", rd, "01 03 04 00 01 FF FF 00 crc", nil, modbus.ErrLength},
		{"long exception", rd, "01 83 02 00 crc", nil, modbus.ErrLength},
		{"echo address", wr, "01 10 00 06 00 02 crc", nil, modbus.ErrEcho},
		{"echo quantity", wr, "01 10 00 05 00 03 crc", nil, modbus.ErrEcho},
		{"short write reply", wr, "01 10 00 05 00 crc", nil, modbus.ErrLength},
		{"empty", rd, "", nil, modbus.ErrLength},
		{"four bytes", rd, "01 83 crc", nil, modbus.ErrLength},
		{"over MaxADU", rd, "01 03 " + strings.Repeat("00 ", 253) + "crc", nil, modbus.ErrLength},
		{"invalid request", modbus.Request{Slave: 1, Function: 3}, "01 03 00 crc", nil, modbus.ErrRequest},
		{"broadcast", modbus.Request{Slave: 0, Function: 6, Qty: 1}, "00 06 00 00 00 00 crc", nil, modbus.ErrRequest},
	} {
		f := frame(t, tc.frame)
		resp, err := modbus.ParseResponse(tc.req, f)
		if tc.err == nil {
			if err != nil {
				t.Errorf("%s: ParseResponse(% x) = %v", tc.name, f, err)
				continue
			}
			var got any
			switch w := tc.want.(type) {
			case []uint16:
				got = resp.Registers(nil)
			case []bool:
				got = resp.Bits(nil)
			case nil:
				if resp.Addr != tc.req.Addr || resp.Value != tc.req.Qty {
					t.Errorf("%s: echo %d/%d, want %d/%d", tc.name, resp.Addr, resp.Value, tc.req.Addr, tc.req.Qty)
				}
				continue
			default:
				t.Fatalf("bad want %T", w)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("%s: ParseResponse(% x) = %v, want %v", tc.name, f, got, tc.want)
			}
			continue
		}
		if wex, ok := tc.err.(*modbus.Exception); ok {
			var ex *modbus.Exception
			if !errors.As(err, &ex) || *ex != *wex {
				t.Errorf("%s: ParseResponse(% x) = %v, want %v", tc.name, f, err, wex)
			}
			continue
		}
		if !errors.Is(err, tc.err) {
			t.Errorf("%s: ParseResponse(% x) = %v, want %v", tc.name, f, err, tc.err)
		}
	}
}

// Parsing a good reply allocates nothing: Data aliases the frame.
func TestParseResponseAllocs(t *testing.T) {
	req := modbus.Request{Slave: 1, Function: modbus.FuncReadInputRegisters, Qty: 2}
	f := frame(t, "01 04 04 00 01 00 02 crc")
	n := testing.AllocsPerRun(100, func() {
		if _, err := modbus.ParseResponse(req, f); err != nil {
			t.Fatal(err)
		}
	})
	if n != 0 {
		t.Errorf("ParseResponse allocates %v times per call, want 0", n)
	}
}

func TestSerialMode(t *testing.T) {
	m, err := modbus.SerialMode(profile.Serial{Baud: 19200, Parity: "even", DataBits: 8, StopBits: 1})
	if err != nil || *m != (serial.Mode{BaudRate: 19200, DataBits: 8, Parity: serial.EvenParity, StopBits: serial.OneStopBit}) {
		t.Errorf("SerialMode(19200 8E1) = %+v, %v", m, err)
	}
	m, err = modbus.SerialMode(profile.Serial{Parity: "odd", StopBits: 2})
	if err != nil || *m != (serial.Mode{BaudRate: 9600, DataBits: 8, Parity: serial.OddParity, StopBits: serial.TwoStopBits}) {
		t.Errorf("SerialMode(zero 8O2) = %+v, %v", m, err)
	}
	for _, s := range []profile.Serial{{Parity: "mark"}, {DataBits: 7}, {StopBits: 3}, {Baud: -1}} {
		if _, err := modbus.SerialMode(s); !errors.Is(err, modbus.ErrRequest) {
			t.Errorf("SerialMode(%+v) = %v, want ErrRequest", s, err)
		}
	}
	if _, err := modbus.Open("/dev/nonexistent-tty", profile.Serial{}, nil); err == nil {
		t.Error("Open(/dev/nonexistent-tty) succeeded")
	}
}

func TestFrameGap(t *testing.T) {
	for _, tc := range []struct {
		baud int
		want string
	}{{9600, "4.010415ms"}, {19200, "2.005206ms"}, {38400, "1.75ms"}, {115200, "1.75ms"}} {
		if got := modbus.FrameGap(tc.baud).String(); got != tc.want {
			t.Errorf("FrameGap(%d) = %s, want %s", tc.baud, got, tc.want)
		}
	}
}

// FuzzParseResponse checks that no frame makes ParseResponse panic, that
// every error is an *OpError with a kind and the package prefix, and that
// an accepted frame re-encodes to itself. Seeds live in
// testdata/fuzz/FuzzParseResponse.
func FuzzParseResponse(f *testing.F) {
	f.Add(byte(1), byte(3), uint16(0), uint16(2), uint16(0), frame(f, "01 03 04 00 01 FF FF crc"))
	f.Fuzz(func(t *testing.T, slave, fc byte, addr, qty, value uint16, fr []byte) {
		req := modbus.Request{Slave: slave, Function: fc, Addr: addr, Qty: qty, Value: value}
		if qty <= modbus.MaxWriteBits {
			switch fc {
			case modbus.FuncWriteMultipleCoils:
				req.Data = make([]byte, (int(qty)+7)/8)
			case modbus.FuncWriteMultipleRegisters:
				req.Data = make([]byte, 2*int(qty))
			}
		}
		resp, err := modbus.ParseResponse(req, fr)
		if err != nil {
			var oe *modbus.OpError
			if !errors.As(err, &oe) {
				t.Fatalf("ParseResponse(%s, % x) = %T %v, want an *OpError", req.String(), fr, err, err)
			}
			if k := vend.KindOf(err); k != vend.Transient && k != vend.Invalid {
				t.Fatalf("KindOf(%v) = %s", err, k)
			}
			if !strings.HasPrefix(err.Error(), "modbus: ") {
				t.Fatalf("error %q lacks the modbus: prefix", err)
			}
			return
		}
		if len(fr) > modbus.MaxADU || !modbus.CheckCRC(fr) || fr[0] != slave || fr[1] != fc {
			t.Fatalf("ParseResponse(%s, % x) accepted a bad frame", req.String(), fr)
		}
		// Re-encode what was parsed; it must give the frame back.
		back := []byte{resp.Slave, resp.Function}
		switch fc {
		case modbus.FuncReadCoils, modbus.FuncReadDiscreteInputs:
			b := resp.Bits(nil)
			if len(b) != int(qty) {
				t.Fatalf("%d bits, want %d", len(b), qty)
			}
			back = append(back, byte(len(resp.Data)))
			back = append(back, resp.Data...)
		case modbus.FuncReadHoldingRegisters, modbus.FuncReadInputRegisters:
			r := resp.Registers(nil)
			if len(r) != int(qty) {
				t.Fatalf("%d registers, want %d", len(r), qty)
			}
			back = append(back, byte(2*len(r)))
			back = append(back, modbus.PackRegisters(r)...)
		default:
			back = binary.BigEndian.AppendUint16(back, resp.Addr)
			back = binary.BigEndian.AppendUint16(back, resp.Value)
		}
		if back = modbus.AppendCRC(back); !bytes.Equal(back, fr) {
			t.Fatalf("ParseResponse(%s, % x) re-encodes to % x", req.String(), fr, back)
		}
	})
}
