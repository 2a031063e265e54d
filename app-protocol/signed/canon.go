package signed

import (
	"encoding/binary"

	"beaconvend/app-protocol/vend"
)

// enc appends canonical fields: big-endian integers, strings as one length
// byte and the bytes.
type enc struct{ b []byte }

func (e *enc) u8(v uint8)          { e.b = append(e.b, v) }
func (e *enc) u16(v uint16)        { e.b = binary.BigEndian.AppendUint16(e.b, v) }
func (e *enc) u32(v uint32)        { e.b = binary.BigEndian.AppendUint32(e.b, v) }
func (e *enc) u64(v uint64)        { e.b = binary.BigEndian.AppendUint64(e.b, v) }
func (e *enc) i64(v int64)         { e.u64(uint64(v)) }
func (e *enc) raw(v []byte)        { e.b = append(e.b, v...) }
func (e *enc) str(v string)        { e.u8(uint8(len(v))); e.b = append(e.b, v...) }
func (e *enc) cur(c vend.Currency) { e.b = append(e.b, c[0], c[1], c[2]) }

// dec reads canonical fields; the first short read sets err and every later
// read returns zero, so decoders check err once per field group.
type dec struct {
	b   []byte
	off int
	err error
	msg string // the message kind, for error text
}

func (d *dec) need(n int, field string) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.b)-d.off < n {
		d.err = vend.Errorf(ErrTruncated, "%s: %s at offset %d needs %d bytes, %d left", d.msg, field, d.off, n, len(d.b)-d.off)
		return nil
	}
	s := d.b[d.off : d.off+n]
	d.off += n
	return s
}

func (d *dec) u8(f string) uint8 {
	if s := d.need(1, f); s != nil {
		return s[0]
	}
	return 0
}
func (d *dec) u16(f string) uint16 {
	if s := d.need(2, f); s != nil {
		return binary.BigEndian.Uint16(s)
	}
	return 0
}
func (d *dec) u32(f string) uint32 {
	if s := d.need(4, f); s != nil {
		return binary.BigEndian.Uint32(s)
	}
	return 0
}
func (d *dec) u64(f string) uint64 {
	if s := d.need(8, f); s != nil {
		return binary.BigEndian.Uint64(s)
	}
	return 0
}
func (d *dec) i64(f string) int64 { return int64(d.u64(f)) }
func (d *dec) str(f string) string {
	n := d.u8(f + " length")
	if s := d.need(int(n), f); s != nil {
		return string(s)
	}
	return ""
}
func (d *dec) cur(f string) vend.Currency {
	if s := d.need(3, f); s != nil {
		return vend.Currency(s)
	}
	return ""
}

// end checks that every byte was consumed.
func (d *dec) end() error {
	if d.err != nil {
		return d.err
	}
	if d.off != len(d.b) {
		return vend.Errorf(ErrTrailing, "%s: %d bytes after the last field", d.msg, len(d.b)-d.off)
	}
	return nil
}
