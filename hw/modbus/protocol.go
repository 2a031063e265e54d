package modbus

import (
	"context"
	"fmt"

	"beaconvend/app-protocol/vend"
)

// Function codes this package speaks.
const (
	FuncReadCoils              = 0x01
	FuncReadDiscreteInputs     = 0x02
	FuncReadHoldingRegisters   = 0x03
	FuncReadInputRegisters     = 0x04
	FuncWriteSingleCoil        = 0x05
	FuncWriteSingleRegister    = 0x06
	FuncWriteMultipleCoils     = 0x0F
	FuncWriteMultipleRegisters = 0x10
)

// Protocol limits (Modbus Application Protocol v1.1b3 §6).
const (
	MaxReadBits       = 2000
	MaxReadRegisters  = 125
	MaxWriteBits      = 1968
	MaxWriteRegisters = 123
	MaxADU            = 256 // an RTU frame: address, PDU (≤ 253), CRC
)

// Exception codes.
const (
	ExIllegalFunction    = 0x01
	ExIllegalDataAddress = 0x02
	ExIllegalDataValue   = 0x03
	ExServerFailure      = 0x04
	ExAcknowledge        = 0x05
	ExServerBusy         = 0x06
)

// Errors. Every failed exchange returns one of these, wrapped with the
// request it belongs to ("modbus: read coils 0-7 from 1: crc mismatch").
var (
	ErrTimeout      = vend.E(vend.Transient, "modbus.timeout", "modbus: no response")
	ErrCRC          = vend.E(vend.Transient, "modbus.crc", "modbus: crc mismatch")
	ErrSlaveID      = vend.E(vend.Transient, "modbus.slave_id", "modbus: response from another slave")
	ErrLength       = vend.E(vend.Transient, "modbus.length", "modbus: response length mismatch")
	ErrFunction     = vend.E(vend.Transient, "modbus.function", "modbus: response for another function")
	ErrEcho         = vend.E(vend.Transient, "modbus.echo", "modbus: write response does not echo the request")
	ErrRequest      = vend.E(vend.Invalid, "modbus.request", "modbus: invalid request")
	ErrClosed       = vend.E(vend.Transient, "modbus.closed", "modbus: port closed")
	ErrExceptionAny = vend.E(vend.Transient, "modbus.exception", "modbus: exception response")
)

// Exception is a Modbus exception response. errors.Is(err, ErrExceptionAny)
// matches every exception.
type Exception struct {
	Function byte // the request's function code
	Code     byte // exception code, e.g. ExIllegalDataAddress
}

func (e *Exception) Error() string {
	names := map[byte]string{
		ExIllegalFunction: "illegal function", ExIllegalDataAddress: "illegal data address",
		ExIllegalDataValue: "illegal data value", ExServerFailure: "server device failure",
		ExAcknowledge: "acknowledge", ExServerBusy: "server device busy",
	}
	n, ok := names[e.Code]
	if !ok {
		n = fmt.Sprintf("code 0x%02X", e.Code)
	}
	return fmt.Sprintf("modbus: exception %s (function 0x%02X)", n, e.Function)
}

// Is makes errors.Is(err, ErrExceptionAny) true for every exception.
func (e *Exception) Is(target error) bool { return target == ErrExceptionAny }

// Unwrap gives exceptions their kind for vend.KindOf.
func (e *Exception) Unwrap() error { return ErrExceptionAny }

// Bus is what a driver above Modbus needs: the eight function codes against
// one slave address. *Master implements it over RTU on a serial port.
// Addresses are 0-based protocol addresses (coil 0 is "00001" in the
// 1-based Modicon notation some datasheets use).
type Bus interface {
	ReadCoils(ctx context.Context, slave byte, addr, qty uint16) ([]bool, error)
	ReadDiscreteInputs(ctx context.Context, slave byte, addr, qty uint16) ([]bool, error)
	ReadHoldingRegisters(ctx context.Context, slave byte, addr, qty uint16) ([]uint16, error)
	ReadInputRegisters(ctx context.Context, slave byte, addr, qty uint16) ([]uint16, error)
	WriteSingleCoil(ctx context.Context, slave byte, addr uint16, on bool) error
	WriteSingleRegister(ctx context.Context, slave byte, addr, value uint16) error
	WriteMultipleCoils(ctx context.Context, slave byte, addr uint16, values []bool) error
	WriteMultipleRegisters(ctx context.Context, slave byte, addr uint16, values []uint16) error
}
