package modbus

import (
	"bytes"
	"testing"
)

// FuzzScan feeds arbitrary received bytes to the master's framing: scan
// and diagnose must not panic, and a reply scan accepts must be a complete
// frame with a good CRC inside what was received.
func FuzzScan(f *testing.F) {
	f.Add(byte(3), uint16(2), []byte{0xFF, 0x01, 0x03, 0x04, 0x00, 0x01, 0x00, 0x02, 0x2A, 0x32})
	f.Add(byte(1), uint16(8), AppendCRC([]byte{0x01, 0x81, 0x02}))
	f.Add(byte(6), uint16(1), AppendCRC([]byte{0x02, 0x06, 0x00, 0x01, 0x00, 0x03}))
	f.Fuzz(func(t *testing.T, fc byte, qty uint16, buf []byte) {
		if len(buf) > 2*MaxADU {
			buf = buf[:2*MaxADU]
		}
		req := Request{Slave: 1, Function: fc, Qty: qty}
		switch fc {
		case FuncWriteSingleCoil:
			req.Qty = 1
		case FuncWriteSingleRegister:
			req.Qty = 1
		case FuncWriteMultipleCoils:
			req.Data = make([]byte, (int(qty)+7)/8)
		case FuncWriteMultipleRegisters:
			req.Data = make([]byte, 2*int(qty))
		}
		if req.Validate() != nil {
			return
		}
		tx, _ := req.AppendADU(nil)
		var noted error
		resp, err, ok := scan(&req, buf, &noted)
		if ok && err == nil && resp.Data != nil && !bytes.Contains(buf, resp.Data) {
			t.Fatalf("scan(% x) returned data % x from outside the buffer", buf, resp.Data)
		}
		diagnose(&req, tx, buf, false)
		diagnose(&req, tx, buf, true)
	})
}
