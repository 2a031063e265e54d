package modbus

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"go.bug.st/serial"

	"beaconvend/hw/profile"
)

// Port is the serial line a Master talks over; go.bug.st/serial's
// serial.Port satisfies it. Read must return (0, nil) when the read timeout
// passes with nothing received, as serial.Port does, and a read timeout of
// 0 must mean "return at once".
type Port interface {
	Read(p []byte) (n int, err error)
	Write(p []byte) (n int, err error)
	// SetReadTimeout bounds how long one Read waits for the first byte.
	SetReadTimeout(t time.Duration) error
	// ResetInputBuffer discards bytes received but not yet read.
	ResetInputBuffer() error
	Close() error
}

var _ Port = serial.Port(nil)

// Open opens the serial device at path (e.g. /dev/ttyUSB0, or a pty's
// slave path) with the line setting s (baud, parity, data and stop bits; a
// profile.Serial as loaded from a board profile, zero fields meaning 9600,
// none, 8 and 1) and returns a Master on it. opts may be nil for
// DefaultOpts; its Baud is replaced by s's, since that is the rate the line
// runs at. It returns ErrRequest for a setting the port cannot take, and the
// port's error, wrapped with the path, when the device cannot be opened.
func Open(path string, s profile.Serial, opts *Opts) (*Master, error) {
	mode, err := SerialMode(s)
	if err != nil {
		return nil, err
	}
	o := DefaultOpts
	if opts != nil {
		o = *opts
	}
	o.Baud = mode.BaudRate
	p, err := serial.Open(path, mode)
	if err != nil {
		return nil, fmt.Errorf("modbus: open %s: %w", path, err)
	}
	return New(p, &o), nil
}

// SerialMode translates a profile's line setting into go.bug.st/serial's
// Mode. Zero fields take the Modbus defaults (9600 baud, no parity, 8 data
// bits, 1 stop bit). It returns ErrRequest for a parity other than none,
// even or odd, data bits other than 8, stop bits other than 1 or 2, or a
// negative baud rate.
func SerialMode(s profile.Serial) (*serial.Mode, error) {
	bad := func(format string, args ...any) error {
		return &OpError{Op: "serial setting", Err: ErrRequest, Detail: fmt.Sprintf(format, args...)}
	}
	m := &serial.Mode{BaudRate: s.Baud, DataBits: s.DataBits}
	if m.BaudRate == 0 {
		m.BaudRate = 9600
	}
	if m.BaudRate < 0 {
		return nil, bad("baud %d", s.Baud)
	}
	if m.DataBits == 0 {
		m.DataBits = 8
	}
	if m.DataBits != 8 {
		return nil, bad("data bits %d: Modbus RTU needs 8", s.DataBits)
	}
	switch s.Parity {
	case "", "none":
		m.Parity = serial.NoParity
	case "even":
		m.Parity = serial.EvenParity
	case "odd":
		m.Parity = serial.OddParity
	default:
		return nil, bad("parity %q: want none, even or odd", s.Parity)
	}
	switch s.StopBits {
	case 0, 1:
		m.StopBits = serial.OneStopBit
	case 2:
		m.StopBits = serial.TwoStopBits
	default:
		return nil, bad("stop bits %d: want 1 or 2", s.StopBits)
	}
	return m, nil
}

// isClosed reports whether a port error means the port is gone: closed by
// us, or the device unplugged (a pty master closed reads as EIO).
func isClosed(err error) bool {
	var pe *serial.PortError
	if errors.As(err, &pe) && pe.Code() == serial.PortClosed {
		return true
	}
	return errors.Is(err, os.ErrClosed) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.EIO) || errors.Is(err, syscall.EBADF) || errors.Is(err, syscall.ENXIO)
}
