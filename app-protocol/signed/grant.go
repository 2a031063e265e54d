package signed

import (
	"crypto/ed25519"
	"time"

	"beaconvend/app-protocol/proxid"
	"beaconvend/app-protocol/vend"
)

// Tags: the first byte of every canonical body names its type, the second
// its layout version. A signature over one type can therefore never verify
// as another.
const (
	TagGrant     = 'G'
	TagUsage     = 'U'
	GrantVersion = 1
	UsageVersion = 1
	// MaxSigned bounds any signed message: decoders refuse longer input
	// before looking at it. Both bodies are under 230 bytes.
	MaxSigned = 512
)

// Grant authorizes one session on one machine of one device, up to a cap,
// at a price. The cloud signs it; the device verifies it with only the
// cloud's public key (VerifyGrant). Every field is covered by the signature.
type Grant struct {
	KeyID     KeyID          // the signing cloud key; set by SignGrant
	Session   vend.SessionID // unique per session; a device accepts each once
	Device    string         // device ID the grant is for
	Machine   string         // machine ID on that device
	Slot      string         // slot or product; "" when the machine has none
	Unit      vend.Unit      // what is metered
	Price     vend.Price     // money per units
	Currency  vend.Currency  // ISO 4217
	CapUnits  uint64         // stop at this many units
	CapMoney  int64          // minor units held for the session; Price.Cost(CapUnits) never exceeds it
	IssuedAt  time.Time      // millisecond precision
	ExpiresAt time.Time      // the machine must have started by then, else the session ends not_started
	Window    uint32         // start (Unix s) of the proximity-ID window the phone's ID was resolved in
	WindowK   uint8          // that window's rotation exponent
}

// MarshalBinary returns the canonical encoding (big-endian integers, strings
// as a length byte then ASCII, times as Unix milliseconds):
//
//	tag 'G' u8 | version u8 | key id [8] | session [16] | device str | machine str | slot str |
//	unit u8 | price minor i64 | price per u32 | currency [3] | cap units u64 | cap money i64 |
//	issued ms i64 | expires ms i64 | window u32 | window k u8
//
// It returns the first rule the grant breaks (see Validate).
func (g *Grant) MarshalBinary() ([]byte, error) {
	if err := g.Validate(); err != nil {
		return nil, err
	}
	e := enc{b: make([]byte, 0, 96+len(g.Device)+len(g.Machine)+len(g.Slot))}
	e.u8(TagGrant)
	e.u8(GrantVersion)
	e.raw(g.KeyID[:])
	e.raw(g.Session[:])
	e.str(g.Device)
	e.str(g.Machine)
	e.str(g.Slot)
	e.u8(uint8(g.Unit))
	e.i64(g.Price.Minor)
	e.u32(g.Price.Per)
	e.cur(g.Currency)
	e.u64(g.CapUnits)
	e.i64(g.CapMoney)
	e.i64(g.IssuedAt.UnixMilli())
	e.i64(g.ExpiresAt.UnixMilli())
	e.u32(g.Window)
	e.u8(g.WindowK)
	return e.b, nil
}

// UnmarshalBinary decodes a canonical grant body strictly: wrong tag,
// unknown version, short input, trailing bytes and any field that breaks
// Validate are errors, so each grant has exactly one encoding.
func (g *Grant) UnmarshalBinary(b []byte) error {
	if len(b) > MaxSigned {
		return vend.Errorf(ErrTooLong, "grant of %d bytes", len(b))
	}
	d := dec{b: b, msg: "grant"}
	if t := d.u8("tag"); d.err == nil && t != TagGrant {
		return vend.Errorf(ErrType, "tag 0x%02X, want grant 0x%02X", t, TagGrant)
	}
	if v := d.u8("version"); d.err == nil && v != GrantVersion {
		return vend.Errorf(ErrVersion, "grant version %d", v)
	}
	var n Grant
	copy(n.KeyID[:], d.need(8, "key id"))
	copy(n.Session[:], d.need(16, "session"))
	n.Device = d.str("device")
	n.Machine = d.str("machine")
	n.Slot = d.str("slot")
	n.Unit = vend.Unit(d.u8("unit"))
	n.Price.Minor = d.i64("price minor")
	n.Price.Per = d.u32("price per")
	n.Currency = d.cur("currency")
	n.CapUnits = d.u64("cap units")
	n.CapMoney = d.i64("cap money")
	n.IssuedAt = time.UnixMilli(d.i64("issued")).UTC()
	n.ExpiresAt = time.UnixMilli(d.i64("expires")).UTC()
	n.Window = d.u32("window")
	n.WindowK = d.u8("window k")
	if err := d.end(); err != nil {
		return err
	}
	if err := n.Validate(); err != nil {
		return err
	}
	*g = n
	return nil
}

// Validate returns ErrField naming the first field that breaks a rule:
// session non-zero; device, machine and slot IDs valid; a known unit; a
// valid price and currency; CapUnits > 0; 0 <= Price.Cost(CapUnits) <=
// CapMoney; ExpiresAt after IssuedAt; a valid window exponent and a window
// start aligned to it.
func (g *Grant) Validate() error {
	switch {
	case g.Session.IsZero():
		return fieldErr("grant", "session", "zero")
	case vend.ValidateDeviceID(g.Device) != nil:
		return fieldErr("grant", "device", vend.ValidateDeviceID(g.Device).Error())
	case vend.ValidateMachineID(g.Machine) != nil:
		return fieldErr("grant", "machine", vend.ValidateMachineID(g.Machine).Error())
	case vend.ValidateSlotID(g.Slot) != nil:
		return fieldErr("grant", "slot", vend.ValidateSlotID(g.Slot).Error())
	case !g.Unit.Valid():
		return fieldErr("grant", "unit", g.Unit.String())
	case g.Price.Validate() != nil:
		return fieldErr("grant", "price", g.Price.Validate().Error())
	case g.Currency.Validate() != nil:
		return fieldErr("grant", "currency", g.Currency.Validate().Error())
	case g.CapUnits == 0:
		return fieldErr("grant", "cap_units", "zero")
	case g.CapMoney < 0:
		return fieldErr("grant", "cap_money", "negative")
	case g.ExpiresAt.UnixMilli() <= g.IssuedAt.UnixMilli():
		return fieldErr("grant", "expires_at", "not after issued_at")
	case proxid.ValidateK(g.WindowK) != nil:
		return fieldErr("grant", "window_k", proxid.ValidateK(g.WindowK).Error())
	case proxid.WindowStart(g.Window, g.WindowK) != g.Window:
		return fieldErr("grant", "window", "not aligned to 2^window_k seconds")
	}
	cost, err := g.Price.Cost(g.CapUnits)
	if err != nil {
		return fieldErr("grant", "cap_units", err.Error())
	}
	if cost > g.CapMoney {
		return fieldErr("grant", "cap_money", "less than the cost of cap_units")
	}
	return nil
}

// SignGrant sets g.KeyID from priv, encodes g canonically and returns
// body ‖ 64-byte Ed25519 signature. Errors: ErrKey, and Validate's.
func SignGrant(priv ed25519.PrivateKey, g Grant) ([]byte, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, vend.Errorf(ErrKey, "private key of %d bytes", len(priv))
	}
	g.KeyID = KeyIDOf(priv.Public().(ed25519.PublicKey))
	body, err := g.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return seal(priv, body)
}

// OpenGrant checks a signed grant's signature under one of keys and decodes
// it, without checking whom it is for (VerifyGrant does that). Errors:
// ErrTooLong, ErrTruncated, ErrUnknownKey, ErrSignature and the decoding ones.
func OpenGrant(signedGrant []byte, keys Keys) (Grant, error) {
	body, err := open(signedGrant, keys, 2, "grant")
	if err != nil {
		return Grant{}, err
	}
	var g Grant
	if err := g.UnmarshalBinary(body); err != nil {
		return Grant{}, err
	}
	return g, nil
}

// GrantCheck is what a device checks a grant against.
type GrantCheck struct {
	Keys    Keys      // trusted cloud keys
	Device  string    // this device
	Machine string    // the machine the command names; must equal the grant's
	Now     time.Time // the device's clock
	// Skew tolerated between the cloud's and the device's clocks for
	// IssuedAt (a grant issued "in the future" by more than this is refused).
	Skew time.Duration
	// Seen reports whether a session ID was accepted before. The device
	// answers from its journal; a grant for a seen session is a replay. The
	// caller records the session in the same transaction that starts it.
	Seen func(vend.SessionID) (bool, error)
}

// VerifyGrant opens signedGrant and checks it against c, in this order:
// signature (ErrUnknownKey, ErrSignature, decoding errors), device
// (ErrWrongDevice), machine (ErrWrongMachine), not issued in the future
// beyond Skew (ErrNotYetValid), not expired (ErrExpired), never seen
// (ErrReplayed). It returns the grant only when all pass.
func VerifyGrant(signedGrant []byte, c GrantCheck) (Grant, error) {
	g, err := OpenGrant(signedGrant, c.Keys)
	if err != nil {
		return Grant{}, err
	}
	if g.Device != c.Device {
		return Grant{}, vend.Errorf(ErrWrongDevice, "grant for %q, this is %q", g.Device, c.Device)
	}
	if g.Machine != c.Machine {
		return Grant{}, vend.Errorf(ErrWrongMachine, "grant for machine %q, command names %q", g.Machine, c.Machine)
	}
	if g.IssuedAt.After(c.Now.Add(c.Skew)) {
		return Grant{}, vend.Errorf(ErrNotYetValid, "issued %s, now %s", g.IssuedAt.Format(time.RFC3339Nano), c.Now.UTC().Format(time.RFC3339Nano))
	}
	if !c.Now.Before(g.ExpiresAt) {
		return Grant{}, vend.Errorf(ErrExpired, "expired %s, now %s", g.ExpiresAt.Format(time.RFC3339Nano), c.Now.UTC().Format(time.RFC3339Nano))
	}
	if c.Seen == nil {
		return Grant{}, vend.Errorf(ErrReplayed, "no session log to check %s against", g.Session)
	}
	seen, err := c.Seen(g.Session)
	if err != nil {
		return Grant{}, err
	}
	if seen {
		return Grant{}, vend.Errorf(ErrReplayed, "session %s", g.Session)
	}
	return g, nil
}
