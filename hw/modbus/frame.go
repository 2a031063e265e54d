package modbus

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// Slave addresses (Modbus over Serial Line v1.02 §2.2).
const (
	BroadcastSlave = 0   // write requests to address 0 reach every slave; none replies
	MaxSlave       = 247 // highest unicast address; 248-255 are reserved
)

// Request is one Modbus request to one slave: what a [Master] puts on the
// wire and what [ParseResponse] checks a reply against. The Bus methods of
// Master build it; tests and the fuzz target build it directly.
type Request struct {
	Slave    byte   // 1-247, or BroadcastSlave (0) for writes
	Function byte   // one of the Func* constants
	Addr     uint16 // 0-based address of the first coil, input or register
	Qty      uint16 // coils, inputs or registers to read or write; 1 for FC 05 and 06
	Value    uint16 // FC 05: 0xFF00 (on) or 0x0000 (off); FC 06: the register value
	Data     []byte // FC 0F: coils packed LSB first; FC 10: registers big-endian
}

// Response is a checked reply. Data aliases the frame it was parsed from;
// copy it out with [Response.Bits] or [Response.Registers] before the frame
// buffer is reused.
type Response struct {
	Slave    byte   // the replying slave, equal to the request's
	Function byte   // the request's function code
	Qty      uint16 // for reads: how many bits or registers Data holds
	Data     []byte // for reads: the data bytes after the byte count
	Addr     uint16 // for writes: the echoed address
	Value    uint16 // for writes: the echoed value (FC 05, 06) or quantity (FC 0F, 10)
}

// OpError is the error of a failed request: which request, which sentinel
// (ErrTimeout, ErrCRC, ..., or an *Exception, or the context's error) and
// what was seen. errors.Is and errors.As see through it to Err, so
// vend.KindOf reports the sentinel's kind. It reads
// "modbus: read coils 0-7 from slave 1: crc mismatch: got 01 01 01 05 ff ff".
type OpError struct {
	Op       string // the request, e.g. "read coils 0-7 from slave 1"
	Err      error  // a sentinel of this package, an *Exception, or a context error
	Detail   string // what was seen, may be empty
	Attempts int    // how many times the request was sent; 0 when it never reached the wire
}

// Error returns the message, lowercase and beginning with "modbus: ".
func (e *OpError) Error() string {
	var b strings.Builder
	b.WriteString("modbus: ")
	b.WriteString(e.Op)
	b.WriteString(": ")
	b.WriteString(strings.TrimPrefix(e.Err.Error(), "modbus: "))
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	if e.Attempts > 1 {
		fmt.Fprintf(&b, " (%d attempts)", e.Attempts)
	}
	return b.String()
}

// Unwrap returns Err.
func (e *OpError) Unwrap() error { return e.Err }

func opErr(req *Request, err error, format string, args ...any) *OpError {
	e := &OpError{Op: req.String(), Err: err}
	if format != "" {
		e.Detail = fmt.Sprintf(format, args...)
	}
	return e
}

var funcNames = map[byte]string{
	FuncReadCoils:              "read coils",
	FuncReadDiscreteInputs:     "read discrete inputs",
	FuncReadHoldingRegisters:   "read holding registers",
	FuncReadInputRegisters:     "read input registers",
	FuncWriteSingleCoil:        "write coil",
	FuncWriteSingleRegister:    "write register",
	FuncWriteMultipleCoils:     "write coils",
	FuncWriteMultipleRegisters: "write registers",
}

// String describes the request for error messages and logs:
// "read coils 0-7 from slave 1", "write register 40 to slave 3".
func (r *Request) String() string {
	name, ok := funcNames[r.Function]
	if !ok {
		name = fmt.Sprintf("function 0x%02X", r.Function)
	}
	dir := "from"
	if isWrite(r.Function) {
		dir = "to"
	}
	slave := fmt.Sprintf("slave %d", r.Slave)
	if r.Slave == BroadcastSlave {
		slave = "all slaves"
	}
	switch {
	case r.Function == FuncWriteSingleCoil || r.Function == FuncWriteSingleRegister || r.Qty == 1:
		return fmt.Sprintf("%s %d %s %s", name, r.Addr, dir, slave)
	case r.Qty == 0:
		return fmt.Sprintf("%s %d-? %s %s", name, r.Addr, dir, slave)
	default:
		return fmt.Sprintf("%s %d-%d %s %s", name, r.Addr, uint32(r.Addr)+uint32(r.Qty)-1, dir, slave)
	}
}

func isWrite(fc byte) bool {
	switch fc {
	case FuncWriteSingleCoil, FuncWriteSingleRegister, FuncWriteMultipleCoils, FuncWriteMultipleRegisters:
		return true
	}
	return false
}

// Validate checks the request against the protocol limits without touching
// any wire. It returns an *OpError wrapping ErrRequest for an unknown
// function code, a quantity of 0 or above the limit for its function
// (MaxReadBits, MaxReadRegisters, MaxWriteBits, MaxWriteRegisters), a range
// that runs past address 65535, Data of the wrong length, a coil value other
// than 0xFF00 or 0x0000, a read addressed to the broadcast address, or a
// slave address above MaxSlave.
func (r *Request) Validate() error {
	bad := func(format string, args ...any) error { return opErr(r, ErrRequest, format, args...) }
	var max uint16
	switch r.Function {
	case FuncReadCoils, FuncReadDiscreteInputs:
		max = MaxReadBits
	case FuncReadHoldingRegisters, FuncReadInputRegisters:
		max = MaxReadRegisters
	case FuncWriteSingleCoil:
		if r.Value != 0xFF00 && r.Value != 0x0000 {
			return bad("coil value 0x%04X: want 0xFF00 or 0x0000", r.Value)
		}
		max = 1
	case FuncWriteSingleRegister:
		max = 1
	case FuncWriteMultipleCoils:
		max = MaxWriteBits
	case FuncWriteMultipleRegisters:
		max = MaxWriteRegisters
	default:
		return bad("unsupported function code 0x%02X", r.Function)
	}
	if r.Slave > MaxSlave {
		return bad("slave address %d: want 1-%d, or 0 to broadcast a write", r.Slave, MaxSlave)
	}
	if r.Slave == BroadcastSlave && !isWrite(r.Function) {
		return bad("a read cannot be broadcast (slave 0)")
	}
	if r.Qty == 0 || r.Qty > max {
		return bad("quantity %d: want 1-%d", r.Qty, max)
	}
	if uint32(r.Addr)+uint32(r.Qty) > 0x10000 {
		return bad("address %d + quantity %d runs past 65535", r.Addr, r.Qty)
	}
	switch r.Function {
	case FuncWriteMultipleCoils:
		if want := (int(r.Qty) + 7) / 8; len(r.Data) != want {
			return bad("%d data bytes for %d coils, want %d", len(r.Data), r.Qty, want)
		}
	case FuncWriteMultipleRegisters:
		if want := 2 * int(r.Qty); len(r.Data) != want {
			return bad("%d data bytes for %d registers, want %d", len(r.Data), r.Qty, want)
		}
	default:
		if len(r.Data) != 0 {
			return bad("function 0x%02X carries no data bytes", r.Function)
		}
	}
	return nil
}

// AppendADU validates the request and appends its RTU frame (address, PDU,
// CRC) to b. It returns ErrRequest (see Validate) and b unchanged for an
// invalid request.
func (r *Request) AppendADU(b []byte) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return b, err
	}
	start := len(b)
	b = append(b, r.Slave, r.Function)
	b = binary.BigEndian.AppendUint16(b, r.Addr)
	switch r.Function {
	case FuncWriteSingleCoil, FuncWriteSingleRegister:
		b = binary.BigEndian.AppendUint16(b, r.Value)
	case FuncWriteMultipleCoils, FuncWriteMultipleRegisters:
		b = binary.BigEndian.AppendUint16(b, r.Qty)
		b = append(b, byte(len(r.Data)))
		b = append(b, r.Data...)
	default:
		b = binary.BigEndian.AppendUint16(b, r.Qty)
	}
	c := CRC16(b[start:])
	return append(b, byte(c), byte(c>>8)), nil
}

// ADULen is the length in bytes of the request's RTU frame.
func (r *Request) ADULen() int {
	if r.Function == FuncWriteMultipleCoils || r.Function == FuncWriteMultipleRegisters {
		return 9 + len(r.Data)
	}
	return 8
}

// ResponseLen is the length in bytes of a normal (not exception) reply to a
// valid request: 5 + the byte count for reads, 8 for writes.
func (r *Request) ResponseLen() int {
	switch r.Function {
	case FuncReadCoils, FuncReadDiscreteInputs:
		return 5 + (int(r.Qty)+7)/8
	case FuncReadHoldingRegisters, FuncReadInputRegisters:
		return 5 + 2*int(r.Qty)
	}
	return 8
}

// replyLen returns the length the frame starting at f must have if it is a
// reply to r, from its first bytes: 5 for an exception, the byte count for a
// read, 8 for a write. It returns 0 when f needs more bytes to tell, and -1
// when f cannot start a reply to r (another slave or function, or a byte
// count that does not fit the request).
func (r *Request) replyLen(f []byte) int {
	if len(f) < 2 {
		return 0
	}
	if f[0] != r.Slave {
		return -1
	}
	switch f[1] {
	case r.Function | 0x80:
		return 5
	case r.Function:
	default:
		return -1
	}
	n := r.ResponseLen()
	switch r.Function {
	case FuncReadCoils, FuncReadDiscreteInputs, FuncReadHoldingRegisters, FuncReadInputRegisters:
		if len(f) < 3 {
			return 0
		}
		if int(f[2]) != n-5 {
			return -1
		}
	}
	return n
}

// ParseResponse checks that frame, one complete RTU frame with its CRC, is
// the reply to req and returns its content. It never panics, does not
// allocate on success, and reads no more than MaxADU bytes of frame.
//
// Errors, each an *OpError naming the request: ErrRequest (req is invalid
// or a broadcast, which gets no reply), ErrLength (frame shorter than 5 or
// longer than MaxADU bytes, or not the length or byte count the request
// asks for), ErrCRC, ErrSlaveID, ErrFunction, ErrEcho (a write reply that
// does not echo the address, value or quantity), or an *Exception for an
// exception reply.
func ParseResponse(req Request, frame []byte) (Response, error) {
	if err := req.Validate(); err != nil {
		return Response{}, err
	}
	if req.Slave == BroadcastSlave {
		return Response{}, opErr(&req, ErrRequest, "a broadcast gets no reply")
	}
	if len(frame) > MaxADU {
		return Response{}, opErr(&req, ErrLength, "%d bytes, over the %d-byte limit", len(frame), MaxADU)
	}
	if len(frame) < 5 {
		return Response{}, opErr(&req, ErrLength, "%d bytes, want at least 5: % x", len(frame), frame)
	}
	if !CheckCRC(frame) {
		return Response{}, opErr(&req, ErrCRC, "got % x", clip(frame))
	}
	if frame[0] != req.Slave {
		return Response{}, opErr(&req, ErrSlaveID, "reply from slave %d", frame[0])
	}
	if frame[1] == req.Function|0x80 {
		if len(frame) != 5 {
			return Response{}, opErr(&req, ErrLength, "exception reply of %d bytes, want 5", len(frame))
		}
		return Response{}, &OpError{Op: req.String(), Err: &Exception{Function: req.Function, Code: frame[2]}}
	}
	if frame[1] != req.Function {
		return Response{}, opErr(&req, ErrFunction, "reply for function 0x%02X", frame[1])
	}
	want := req.ResponseLen()
	resp := Response{Slave: frame[0], Function: frame[1]}
	switch req.Function {
	case FuncReadCoils, FuncReadDiscreteInputs, FuncReadHoldingRegisters, FuncReadInputRegisters:
		if int(frame[2]) != want-5 {
			return Response{}, opErr(&req, ErrLength, "byte count %d, want %d", frame[2], want-5)
		}
		if len(frame) != want {
			return Response{}, opErr(&req, ErrLength, "%d bytes, want %d", len(frame), want)
		}
		resp.Qty = req.Qty
		resp.Data = frame[3 : len(frame)-2]
		return resp, nil
	}
	if len(frame) != want {
		return Response{}, opErr(&req, ErrLength, "%d bytes, want %d", len(frame), want)
	}
	resp.Addr = binary.BigEndian.Uint16(frame[2:])
	resp.Value = binary.BigEndian.Uint16(frame[4:])
	wantValue := req.Qty
	if req.Function == FuncWriteSingleCoil || req.Function == FuncWriteSingleRegister {
		wantValue = req.Value
	}
	if resp.Addr != req.Addr || resp.Value != wantValue {
		return Response{}, opErr(&req, ErrEcho, "echo %d/0x%04X, want %d/0x%04X", resp.Addr, resp.Value, req.Addr, wantValue)
	}
	return resp, nil
}

// clip limits a frame shown in an error message to 32 bytes.
func clip(b []byte) []byte {
	if len(b) > 32 {
		return b[:32]
	}
	return b
}

// Bits appends the Qty bits of a read-coils or read-discrete-inputs reply
// to dst (coil Addr first) and returns the extended slice.
func (r Response) Bits(dst []bool) []bool {
	for i := 0; i < int(r.Qty) && i/8 < len(r.Data); i++ {
		dst = append(dst, r.Data[i/8]&(1<<(i%8)) != 0)
	}
	return dst
}

// Registers appends the Qty registers of a read-registers reply to dst and
// returns the extended slice.
func (r Response) Registers(dst []uint16) []uint16 {
	for i := 0; i < int(r.Qty) && 2*i+1 < len(r.Data); i++ {
		dst = append(dst, binary.BigEndian.Uint16(r.Data[2*i:]))
	}
	return dst
}

// PackBits packs coil values LSB first, as FC 0F carries them in
// Request.Data.
func PackBits(values []bool) []byte {
	b := make([]byte, (len(values)+7)/8)
	for i, v := range values {
		if v {
			b[i/8] |= 1 << (i % 8)
		}
	}
	return b
}

// PackRegisters encodes register values big-endian, as FC 10 carries them
// in Request.Data.
func PackRegisters(values []uint16) []byte {
	b := make([]byte, 0, 2*len(values))
	for _, v := range values {
		b = binary.BigEndian.AppendUint16(b, v)
	}
	return b
}
