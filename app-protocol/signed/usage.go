package signed

import (
	"crypto/ed25519"
	"crypto/sha256"
	"time"

	"beaconvend/app-protocol/vend"
)

// Usage is a device's final, signed account of one session: what it
// metered and what that costs at the grant's price. The cloud captures
// exactly Amount (never more than the hold) from it.
type Usage struct {
	KeyID      KeyID          // the signing device key; set by SignUsage
	Device     string         // device ID
	Seq        uint64         // per-device sequence number, +1 for each report the device signs (never reused)
	Session    vend.SessionID // the session the grant named
	Machine    string         // machine ID
	Slot       string         // slot or ""
	Unit       vend.Unit      // metered unit
	Units      uint64         // units delivered
	Price      vend.Price     // the grant's price
	Currency   vend.Currency  // the grant's currency
	Amount     int64          // Price.Cost(Units), minor units
	StartedAt  time.Time      // machine started (zero time when it never did), ms precision
	EndedAt    time.Time      // session ended, ms precision
	MeterStart uint64         // raw meter reading (pulse counter, cycle counter) at start
	MeterEnd   uint64         // raw meter reading at end
	Outcome    vend.Outcome   // how it ended
	FaultCode  uint16         // board or machine fault code; 0 for none
}

// MarshalBinary returns the canonical encoding:
//
//	tag 'U' u8 | version u8 | key id [8] | device str | seq u64 | session [16] | machine str |
//	slot str | unit u8 | units u64 | price minor i64 | price per u32 | currency [3] |
//	amount i64 | started ms i64 | ended ms i64 | meter start u64 | meter end u64 |
//	outcome u8 | fault code u16
//
// A zero StartedAt is encoded as 0. It returns the first rule broken (Validate).
func (u *Usage) MarshalBinary() ([]byte, error) {
	if err := u.Validate(); err != nil {
		return nil, err
	}
	e := enc{b: make([]byte, 0, 112+len(u.Device)+len(u.Machine)+len(u.Slot))}
	e.u8(TagUsage)
	e.u8(UsageVersion)
	e.raw(u.KeyID[:])
	e.str(u.Device)
	e.u64(u.Seq)
	e.raw(u.Session[:])
	e.str(u.Machine)
	e.str(u.Slot)
	e.u8(uint8(u.Unit))
	e.u64(u.Units)
	e.i64(u.Price.Minor)
	e.u32(u.Price.Per)
	e.cur(u.Currency)
	e.i64(u.Amount)
	e.i64(msOrZero(u.StartedAt))
	e.i64(u.EndedAt.UnixMilli())
	e.u64(u.MeterStart)
	e.u64(u.MeterEnd)
	e.u8(uint8(u.Outcome))
	e.u16(u.FaultCode)
	return e.b, nil
}

func msOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// UnmarshalBinary decodes a canonical usage body strictly (see
// Grant.UnmarshalBinary).
func (u *Usage) UnmarshalBinary(b []byte) error {
	if len(b) > MaxSigned {
		return vend.Errorf(ErrTooLong, "usage of %d bytes", len(b))
	}
	d := dec{b: b, msg: "usage"}
	if t := d.u8("tag"); d.err == nil && t != TagUsage {
		return vend.Errorf(ErrType, "tag 0x%02X, want usage 0x%02X", t, TagUsage)
	}
	if v := d.u8("version"); d.err == nil && v != UsageVersion {
		return vend.Errorf(ErrVersion, "usage version %d", v)
	}
	var n Usage
	copy(n.KeyID[:], d.need(8, "key id"))
	n.Device = d.str("device")
	n.Seq = d.u64("seq")
	copy(n.Session[:], d.need(16, "session"))
	n.Machine = d.str("machine")
	n.Slot = d.str("slot")
	n.Unit = vend.Unit(d.u8("unit"))
	n.Units = d.u64("units")
	n.Price.Minor = d.i64("price minor")
	n.Price.Per = d.u32("price per")
	n.Currency = d.cur("currency")
	n.Amount = d.i64("amount")
	if ms := d.i64("started"); ms != 0 {
		n.StartedAt = time.UnixMilli(ms).UTC()
	}
	n.EndedAt = time.UnixMilli(d.i64("ended")).UTC()
	n.MeterStart = d.u64("meter start")
	n.MeterEnd = d.u64("meter end")
	n.Outcome = vend.Outcome(d.u8("outcome"))
	n.FaultCode = d.u16("fault code")
	if err := d.end(); err != nil {
		return err
	}
	if err := n.Validate(); err != nil {
		return err
	}
	*u = n
	return nil
}

// Validate returns ErrField naming the first field that breaks a rule:
// device, machine, slot IDs valid; seq >= 1; session non-zero; known unit
// and outcome; valid price and currency; Amount == Price.Cost(Units);
// EndedAt not before StartedAt; MeterEnd >= MeterStart.
func (u *Usage) Validate() error {
	switch {
	case vend.ValidateDeviceID(u.Device) != nil:
		return fieldErr("usage", "device", vend.ValidateDeviceID(u.Device).Error())
	case u.Seq == 0:
		return fieldErr("usage", "seq", "zero")
	case u.Session.IsZero():
		return fieldErr("usage", "session", "zero")
	case vend.ValidateMachineID(u.Machine) != nil:
		return fieldErr("usage", "machine", vend.ValidateMachineID(u.Machine).Error())
	case vend.ValidateSlotID(u.Slot) != nil:
		return fieldErr("usage", "slot", vend.ValidateSlotID(u.Slot).Error())
	case !u.Unit.Valid():
		return fieldErr("usage", "unit", u.Unit.String())
	case u.Price.Validate() != nil:
		return fieldErr("usage", "price", u.Price.Validate().Error())
	case u.Currency.Validate() != nil:
		return fieldErr("usage", "currency", u.Currency.Validate().Error())
	case !u.Outcome.Valid():
		return fieldErr("usage", "outcome", u.Outcome.String())
	case !u.StartedAt.IsZero() && u.EndedAt.Before(u.StartedAt):
		return fieldErr("usage", "ended_at", "before started_at")
	case u.MeterEnd < u.MeterStart:
		return fieldErr("usage", "meter_end", "below meter_start")
	}
	cost, err := u.Price.Cost(u.Units)
	if err != nil {
		return fieldErr("usage", "units", err.Error())
	}
	if cost != u.Amount {
		return fieldErr("usage", "amount", "not price × units")
	}
	return nil
}

// SignUsage sets u.KeyID from priv, encodes u canonically and returns
// body ‖ 64-byte Ed25519 signature. Errors: ErrKey, and Validate's.
func SignUsage(priv ed25519.PrivateKey, u Usage) ([]byte, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, vend.Errorf(ErrKey, "private key of %d bytes", len(priv))
	}
	u.KeyID = KeyIDOf(priv.Public().(ed25519.PublicKey))
	body, err := u.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return seal(priv, body)
}

// usageKeyOff is where the key ID sits in a usage body.
const usageKeyOff = 2

// OpenUsage checks a signed usage report's signature under one of keys
// (the sending device's) and decodes it. Errors: ErrTooLong, ErrTruncated,
// ErrUnknownKey, ErrSignature and the decoding ones.
func OpenUsage(signedUsage []byte, keys Keys) (Usage, error) {
	body, err := open(signedUsage, keys, usageKeyOff, "usage")
	if err != nil {
		return Usage{}, err
	}
	var u Usage
	if err := u.UnmarshalBinary(body); err != nil {
		return Usage{}, err
	}
	return u, nil
}

// Digest returns SHA-256 over the whole signed report: what the cloud stores
// to tell a duplicate delivery (same digest) from a conflicting one.
func Digest(signedMsg []byte) [32]byte { return sha256.Sum256(signedMsg) }

// PeekUsageDevice returns the device ID of a usage body without verifying
// it, so a receiver can look up the device's keys first. It returns an
// error for input too short or too long to hold one.
func PeekUsageDevice(signedUsage []byte) (string, error) {
	if len(signedUsage) > MaxSigned {
		return "", vend.Errorf(ErrTooLong, "usage of %d bytes", len(signedUsage))
	}
	d := dec{b: signedUsage, msg: "usage"}
	if t := d.u8("tag"); d.err == nil && t != TagUsage {
		return "", vend.Errorf(ErrType, "tag 0x%02X", t)
	}
	d.u8("version")
	d.need(8, "key id")
	dev := d.str("device")
	if d.err != nil {
		return "", d.err
	}
	if err := vend.ValidateDeviceID(dev); err != nil {
		return "", fieldErr("usage", "device", err.Error())
	}
	return dev, nil
}

// CheckAgainstGrant returns ErrMismatch naming the first field in which a
// verified usage report departs from the grant the cloud issued for its
// session: device, machine, slot, unit, price, currency, units above the
// cap, amount above the cap in money.
func CheckAgainstGrant(u Usage, g Grant) error {
	switch {
	case u.Session != g.Session:
		return vend.Errorf(ErrMismatch, "session %s, grant %s", u.Session, g.Session)
	case u.Device != g.Device:
		return vend.Errorf(ErrMismatch, "device %q, grant %q", u.Device, g.Device)
	case u.Machine != g.Machine:
		return vend.Errorf(ErrMismatch, "machine %q, grant %q", u.Machine, g.Machine)
	case u.Slot != g.Slot:
		return vend.Errorf(ErrMismatch, "slot %q, grant %q", u.Slot, g.Slot)
	case u.Unit != g.Unit:
		return vend.Errorf(ErrMismatch, "unit %s, grant %s", u.Unit, g.Unit)
	case u.Price != g.Price:
		return vend.Errorf(ErrMismatch, "price %d/%d, grant %d/%d", u.Price.Minor, u.Price.Per, g.Price.Minor, g.Price.Per)
	case u.Currency != g.Currency:
		return vend.Errorf(ErrMismatch, "currency %s, grant %s", u.Currency, g.Currency)
	case u.Units > g.CapUnits:
		return vend.Errorf(ErrMismatch, "units %d above cap %d", u.Units, g.CapUnits)
	case u.Amount > g.CapMoney:
		return vend.Errorf(ErrMismatch, "amount %d above cap %d", u.Amount, g.CapMoney)
	}
	return nil
}
