package signed

import (
	"crypto/ed25519"
	"time"

	"beaconvend/app-protocol/vend"
)

// Tags of the relay messages (see Grant for the tag rule).
const (
	TagRelay      = 'R'
	TagAck        = 'A'
	RelayVersion  = 1
	AckVersion    = 1
	RelayNonceLen = 16
)

// RelayTicket binds a grant the phone relays over BLE to one device and to
// one fresh nonce. The cloud signs it with the same key as the grant; the
// board checks it with gattapi.CheckRelay. Every field is covered by the
// signature, so a phone can neither move the grant to another board nor
// change the nonce.
type RelayTicket struct {
	KeyID     KeyID               // the signing cloud key; set by SignRelayTicket
	Session   vend.SessionID      // the grant's session
	Device    string              // the grant's device
	Nonce     [RelayNonceLen]byte // random, fresh for this relay; the board accepts each nonce once
	Grant     [32]byte            // Digest of the signed grant it travels with
	ExpiresAt time.Time           // the grant's ExpiresAt, ms precision; the board forgets the nonce after it
}

// MarshalBinary returns the canonical encoding:
//
//	tag 'R' u8 | version u8 | key id [8] | session [16] | device str | nonce [16] | grant digest [32] | expires ms i64
func (r *RelayTicket) MarshalBinary() ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	e := enc{b: make([]byte, 0, 84+len(r.Device))}
	e.u8(TagRelay)
	e.u8(RelayVersion)
	e.raw(r.KeyID[:])
	e.raw(r.Session[:])
	e.str(r.Device)
	e.raw(r.Nonce[:])
	e.raw(r.Grant[:])
	e.i64(r.ExpiresAt.UnixMilli())
	return e.b, nil
}

// UnmarshalBinary decodes a canonical relay ticket strictly (see
// Grant.UnmarshalBinary).
func (r *RelayTicket) UnmarshalBinary(b []byte) error {
	if len(b) > MaxSigned {
		return vend.Errorf(ErrTooLong, "relay ticket of %d bytes", len(b))
	}
	d := dec{b: b, msg: "relay ticket"}
	if t := d.u8("tag"); d.err == nil && t != TagRelay {
		return vend.Errorf(ErrType, "tag 0x%02X, want relay ticket 0x%02X", t, TagRelay)
	}
	if v := d.u8("version"); d.err == nil && v != RelayVersion {
		return vend.Errorf(ErrVersion, "relay ticket version %d", v)
	}
	var n RelayTicket
	copy(n.KeyID[:], d.need(8, "key id"))
	copy(n.Session[:], d.need(16, "session"))
	n.Device = d.str("device")
	copy(n.Nonce[:], d.need(RelayNonceLen, "nonce"))
	copy(n.Grant[:], d.need(32, "grant digest"))
	n.ExpiresAt = time.UnixMilli(d.i64("expires")).UTC()
	if err := d.end(); err != nil {
		return err
	}
	if err := n.Validate(); err != nil {
		return err
	}
	*r = n
	return nil
}

// Validate returns ErrField naming the first field that breaks a rule:
// session non-zero, device ID valid, nonce and grant digest not all zero.
func (r *RelayTicket) Validate() error {
	switch {
	case r.Session.IsZero():
		return fieldErr("relay ticket", "session", "zero")
	case vend.ValidateDeviceID(r.Device) != nil:
		return fieldErr("relay ticket", "device", vend.ValidateDeviceID(r.Device).Error())
	case r.Nonce == [RelayNonceLen]byte{}:
		return fieldErr("relay ticket", "nonce", "zero")
	case r.Grant == [32]byte{}:
		return fieldErr("relay ticket", "grant", "zero")
	}
	return nil
}

// SignRelayTicket sets r.KeyID from priv and returns body ‖ Ed25519
// signature. Errors: ErrKey, and Validate's.
func SignRelayTicket(priv ed25519.PrivateKey, r RelayTicket) ([]byte, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, vend.Errorf(ErrKey, "private key of %d bytes", len(priv))
	}
	r.KeyID = KeyIDOf(priv.Public().(ed25519.PublicKey))
	body, err := r.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return seal(priv, body)
}

// OpenRelayTicket checks a signed relay ticket under one of keys and
// decodes it. Errors: ErrTooLong, ErrTruncated, ErrUnknownKey, ErrSignature
// and the decoding ones.
func OpenRelayTicket(signedTicket []byte, keys Keys) (RelayTicket, error) {
	body, err := open(signedTicket, keys, 2, "relay ticket")
	if err != nil {
		return RelayTicket{}, err
	}
	var r RelayTicket
	if err := r.UnmarshalBinary(body); err != nil {
		return RelayTicket{}, err
	}
	return r, nil
}

// UsageAck is the cloud's word that it holds a usage report: the board may
// drop the report from its outbox when it verifies one, whether it came
// over MQTT or from a phone that uploaded the report. The cloud signs it
// with its grant key.
type UsageAck struct {
	KeyID   KeyID          // the signing cloud key; set by SignUsageAck
	Device  string         // the reporting device
	Session vend.SessionID // the report's session
	Report  [32]byte       // Digest of the signed usage report
}

// MarshalBinary returns the canonical encoding:
//
//	tag 'A' u8 | version u8 | key id [8] | device str | session [16] | report digest [32]
func (a *UsageAck) MarshalBinary() ([]byte, error) {
	if err := a.Validate(); err != nil {
		return nil, err
	}
	e := enc{b: make([]byte, 0, 60+len(a.Device))}
	e.u8(TagAck)
	e.u8(AckVersion)
	e.raw(a.KeyID[:])
	e.str(a.Device)
	e.raw(a.Session[:])
	e.raw(a.Report[:])
	return e.b, nil
}

// UnmarshalBinary decodes a canonical usage ack strictly.
func (a *UsageAck) UnmarshalBinary(b []byte) error {
	if len(b) > MaxSigned {
		return vend.Errorf(ErrTooLong, "usage ack of %d bytes", len(b))
	}
	d := dec{b: b, msg: "usage ack"}
	if t := d.u8("tag"); d.err == nil && t != TagAck {
		return vend.Errorf(ErrType, "tag 0x%02X, want usage ack 0x%02X", t, TagAck)
	}
	if v := d.u8("version"); d.err == nil && v != AckVersion {
		return vend.Errorf(ErrVersion, "usage ack version %d", v)
	}
	var n UsageAck
	copy(n.KeyID[:], d.need(8, "key id"))
	n.Device = d.str("device")
	copy(n.Session[:], d.need(16, "session"))
	copy(n.Report[:], d.need(32, "report digest"))
	if err := d.end(); err != nil {
		return err
	}
	if err := n.Validate(); err != nil {
		return err
	}
	*a = n
	return nil
}

// Validate returns ErrField naming the first field that breaks a rule.
func (a *UsageAck) Validate() error {
	switch {
	case vend.ValidateDeviceID(a.Device) != nil:
		return fieldErr("usage ack", "device", vend.ValidateDeviceID(a.Device).Error())
	case a.Session.IsZero():
		return fieldErr("usage ack", "session", "zero")
	case a.Report == [32]byte{}:
		return fieldErr("usage ack", "report", "zero")
	}
	return nil
}

// SignUsageAck sets a.KeyID from priv and returns body ‖ Ed25519
// signature. Errors: ErrKey, and Validate's.
func SignUsageAck(priv ed25519.PrivateKey, a UsageAck) ([]byte, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, vend.Errorf(ErrKey, "private key of %d bytes", len(priv))
	}
	a.KeyID = KeyIDOf(priv.Public().(ed25519.PublicKey))
	body, err := a.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return seal(priv, body)
}

// OpenUsageAck checks a signed usage ack under one of keys and decodes it.
// Errors: as OpenRelayTicket.
func OpenUsageAck(signedAck []byte, keys Keys) (UsageAck, error) {
	body, err := open(signedAck, keys, 2, "usage ack")
	if err != nil {
		return UsageAck{}, err
	}
	var a UsageAck
	if err := a.UnmarshalBinary(body); err != nil {
		return UsageAck{}, err
	}
	return a, nil
}
