package modbus_test

import (
	"testing"

	"beaconvend/hw/modbus"
)

// Frames from the Modbus over Serial Line spec and common device manuals.
func TestCRC16(t *testing.T) {
	cases := []struct {
		frame []byte
		want  uint16
	}{
		{[]byte{0x01, 0x03, 0x00, 0x00, 0x00, 0x01}, 0x0A84}, // read holding 0, qty 1 → 84 0A on the wire
		{[]byte{0x02, 0x07}, 0x1241},                         // spec §6.2.2 example: CRC 0x1241 → 41 12
		{[]byte{0x01, 0x05, 0x00, 0x00, 0xFF, 0x00}, 0x3A8C}, // coil 0 ON → 8C 3A
	}
	for _, tc := range cases {
		if got := modbus.CRC16(tc.frame); got != tc.want {
			t.Errorf("CRC16(% x) = %04X, want %04X", tc.frame, got, tc.want)
		}
		f := modbus.AppendCRC(append([]byte(nil), tc.frame...))
		if !modbus.CheckCRC(f) {
			t.Errorf("CheckCRC(% x) = false", f)
		}
		f[0] ^= 1
		if modbus.CheckCRC(f) {
			t.Errorf("CheckCRC(% x) = true after corruption", f)
		}
	}
}
