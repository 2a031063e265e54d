package emu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"beaconvend/hw/modbus"
)

// Port is the emulator's end of a serial line: the pty master (*os.File)
// satisfies it. Read must honour SetReadDeadline.
type Port interface {
	io.Reader
	io.Writer
	SetReadDeadline(t time.Time) error
}

// requestLen returns the length of the RTU request frame at the start of
// b: n > 0 when known, n == 0 when more bytes are needed to know it, and
// known == false for a function code whose request length this slave
// cannot know (such a frame ends at the next line silence).
func requestLen(b []byte) (n int, known bool) {
	if len(b) < 2 {
		return 0, true
	}
	switch b[1] {
	case modbus.FuncReadCoils, modbus.FuncReadDiscreteInputs, modbus.FuncReadHoldingRegisters,
		modbus.FuncReadInputRegisters, modbus.FuncWriteSingleCoil, modbus.FuncWriteSingleRegister:
		return 8, true
	case modbus.FuncWriteMultipleCoils, modbus.FuncWriteMultipleRegisters:
		if len(b) < 7 {
			return 0, true
		}
		return 9 + int(b[6]), true
	}
	return 0, false
}

// Serve answers Modbus RTU requests on p until ctx is done (it returns
// nil) or p fails (it returns the error, wrapped). Requests are framed by
// their function code's length, since a pty delivers bytes in arbitrary
// chunks; a frame with a bad CRC gets no reply and the slave resynchronises
// by sliding past it; bytes that form no frame are dropped after
// Opts.FrameGap of silence; frames for other addresses are ignored;
// broadcasts (address 0) are executed without a reply.
func (b *Board) Serve(ctx context.Context, p Port) error {
	var buf []byte
	tmp := make([]byte, 512)
	resync := false
	for {
		// Take every complete frame off the front of buf.
		for len(buf) > 0 {
			n, known := requestLen(buf)
			if !known {
				if !resync {
					break // an unknown function: wait for the line to go quiet
				}
				buf = buf[1:]
				b.count(func(s *Stats) { s.GarbageBytes++ })
				continue
			}
			if n == 0 || len(buf) < n {
				break
			}
			if !modbus.CheckCRC(buf[:n]) {
				if !resync {
					b.count(func(s *Stats) { s.CRCErrors++ })
					resync = true
				}
				buf = buf[1:]
				b.count(func(s *Stats) { s.GarbageBytes++ })
				continue
			}
			resync = false
			frame := append([]byte(nil), buf[:n]...)
			buf = buf[n:]
			if err := b.dispatch(ctx, p, frame); err != nil {
				return err
			}
		}
		if err := ctx.Err(); err != nil {
			return nil
		}
		if err := p.SetReadDeadline(time.Now().Add(b.o.FrameGap)); err != nil {
			return fmt.Errorf("emu: set read deadline: %w", err)
		}
		n, err := p.Read(tmp)
		if n > 0 {
			buf = append(buf, tmp[:n]...)
			if len(buf) > 4*modbus.MaxADU { // nothing valid is this long
				b.count(func(s *Stats) { s.GarbageBytes += uint64(len(buf)) })
				buf, resync = buf[:0], true
			}
			continue
		}
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			if len(buf) > 0 {
				var ferr error
				buf, ferr = b.flush(ctx, p, buf, resync)
				if ferr != nil {
					return ferr
				}
				resync = false
			}
		case err != nil:
			if ctx.Err() != nil || errors.Is(err, os.ErrClosed) {
				return nil
			}
			return fmt.Errorf("emu: read: %w", err)
		}
	}
}

// flush handles what is left in buf when the line has gone quiet: a whole
// frame of an unknown function code gets an exception; otherwise any valid
// frame inside it is served (a request that followed garbage) and the rest
// is dropped.
func (b *Board) flush(ctx context.Context, p Port, buf []byte, resync bool) ([]byte, error) {
	if _, known := requestLen(buf); !known && !resync && len(buf) >= 4 && modbus.CheckCRC(buf) {
		return buf[:0], b.dispatch(ctx, p, append([]byte(nil), buf...))
	}
	dropped := 0
	for i := 0; i < len(buf); {
		n, known := requestLen(buf[i:])
		if known && n > 0 && len(buf)-i >= n && modbus.CheckCRC(buf[i:i+n]) {
			if err := b.dispatch(ctx, p, append([]byte(nil), buf[i:i+n]...)); err != nil {
				return buf[:0], err
			}
			i += n
			continue
		}
		dropped++
		i++
	}
	if dropped > 0 {
		b.count(func(s *Stats) {
			s.GarbageBytes += uint64(dropped)
			if !resync {
				s.CRCErrors++ // an incomplete or corrupt frame
			}
		})
	}
	return buf[:0], nil
}

// dispatch executes a frame with a valid CRC and writes the reply.
func (b *Board) dispatch(ctx context.Context, p Port, frame []byte) error {
	addr := frame[0]
	if addr != b.prof.SlaveID && addr != 0 {
		b.count(func(s *Stats) { s.OtherSlave++ })
		return nil
	}
	pdu := frame[1 : len(frame)-2]
	if addr == 0 {
		switch pdu[0] {
		case modbus.FuncWriteSingleCoil, modbus.FuncWriteSingleRegister, modbus.FuncWriteMultipleCoils, modbus.FuncWriteMultipleRegisters:
			b.handle(pdu, true)
		}
		return nil
	}
	resp := b.handle(pdu, false)
	drop, corrupt, delay := b.replyFault()
	if drop {
		return nil
	}
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
	adu := modbus.AppendCRC(append([]byte{addr}, resp...))
	if corrupt {
		adu[len(adu)-1] ^= 0xA5
	}
	if _, err := p.Write(adu); err != nil {
		if ctx.Err() != nil || errors.Is(err, os.ErrClosed) {
			return nil
		}
		return fmt.Errorf("emu: write reply: %w", err)
	}
	return nil
}
