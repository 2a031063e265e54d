package gattapi

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"encoding/binary"

	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
)

// UUIDs, in the canonical text form BLE stacks take. They share the
// service's random (version 4) base 35c5xxxx-b36f-42b0-b79c-73280a4cc67c,
// generated once for beaconvend; only the first 16 bits differ.
const (
	ServiceUUID   = "35c50547-b36f-42b0-b79c-73280a4cc67c" // the beaconvend board service
	GrantUUID     = "35c50001-b36f-42b0-b79c-73280a4cc67c" // write (chunked): RelayGrant
	ProgressUUID  = "35c50002-b36f-42b0-b79c-73280a4cc67c" // read, notify: Progress (19 bytes)
	ReceiptUUID   = "35c50003-b36f-42b0-b79c-73280a4cc67c" // read (long read): Receipt
	AckUUID       = "35c50004-b36f-42b0-b79c-73280a4cc67c" // write: Ack
	ClaimInfoUUID = "35c50005-b36f-42b0-b79c-73280a4cc67c" // read: ClaimInfo
	BundleUUID    = "35c50006-b36f-42b0-b79c-73280a4cc67c" // write (chunked): a sealed provisioning bundle
)

// Limits.
const (
	// MaxValue is the longest attribute value (Core Spec Vol 3 Part F
	// §3.2.9). A value written or read in one ATT operation (with long
	// writes and blob reads where the MTU is smaller) never exceeds it.
	MaxValue = 512
	// ChunkHeader is the length of a chunk's header (index u16, count u16).
	ChunkHeader = 4
	// MaxChunkData is the most message bytes one chunk carries.
	MaxChunkData = MaxValue - ChunkHeader
	// MaxRelayGrant bounds a RelayGrant message (two signed messages and
	// their framing).
	MaxRelayGrant = 1 + 2 + signed.MaxSigned + 2 + signed.MaxSigned
	// MaxBundle bounds a sealed bundle message: what a board reassembles
	// on BundleUUID at most (a few machines with slots and a CA chain).
	MaxBundle = 16 << 10
	// MaxChunks bounds the chunks of any message.
	MaxChunks = (MaxBundle + MaxChunkData - 1) / MaxChunkData
	// ProgressLen is the length of a Progress value: it fits the 20 bytes
	// of a notification at the default ATT_MTU of 23.
	ProgressLen = 19
	// Version is the layout version of every message in this package.
	Version = 1
)

// Errors. Codes are stable and named by the vectors; the board answers a
// refused write with the ATT application error of ATTCode.
var (
	ErrEmpty     = vend.E(vend.Invalid, "gatt.empty", "gattapi: empty value")
	ErrTooLong   = vend.E(vend.Invalid, "gatt.too_long", "gattapi: value or message too long")
	ErrTruncated = vend.E(vend.Invalid, "gatt.truncated", "gattapi: value too short")
	ErrTrailing  = vend.E(vend.Invalid, "gatt.trailing", "gattapi: bytes after the last field")
	ErrVersion   = vend.E(vend.Invalid, "gatt.version", "gattapi: unknown layout version")
	ErrField     = vend.E(vend.Invalid, "gatt.field", "gattapi: invalid field")
	ErrChunk     = vend.E(vend.Invalid, "gatt.chunk", "gattapi: chunk out of order or inconsistent")
	// ErrGrantMismatch: the ticket names another grant or session than the
	// grant it travels with.
	ErrGrantMismatch = vend.E(vend.Unauthorized, "relay.grant_mismatch", "gattapi: relay ticket does not match the grant")
	// ErrNonceReused: the ticket's nonce was accepted before.
	ErrNonceReused = vend.E(vend.Conflict, "relay.nonce_reused", "gattapi: relay nonce already used")
	// ErrMachine: the grant names a machine this board does not drive.
	ErrMachine = vend.E(vend.Unauthorized, "relay.machine", "gattapi: grant names a machine this board does not drive")
	// ErrAckMismatch: an acknowledgement names another report than the
	// board's receipt.
	ErrAckMismatch = vend.E(vend.Invalid, "relay.ack_mismatch", "gattapi: acknowledgement does not match the receipt")
	// ErrNotRegistration: a bundle written to a board that is not in
	// registration mode (claimed already; a factory reset is needed).
	ErrNotRegistration = vend.E(vend.Conflict, "claim.not_registration", "gattapi: the board is not in registration mode")
)

func fieldErr(msg, field, why string) error {
	return vend.Errorf(ErrField, "%s %s: %s", msg, field, why)
}

// ATT application error codes (0x80-0x9F) a board answers a refused write
// with, so that a phone shows why without a second round trip. The
// Progress value carries the same reason after a refused grant.
var ATTCodes = map[string]byte{
	ErrEmpty.Code: 0x80, ErrTooLong.Code: 0x81, ErrTruncated.Code: 0x82, ErrTrailing.Code: 0x83,
	ErrVersion.Code: 0x84, ErrField.Code: 0x85, ErrChunk.Code: 0x86,
	signed.ErrUnknownKey.Code: 0x87, signed.ErrSignature.Code: 0x88, signed.ErrWrongDevice.Code: 0x89,
	ErrMachine.Code: 0x8A, signed.ErrNotYetValid.Code: 0x8B, signed.ErrExpired.Code: 0x8C,
	signed.ErrReplayed.Code: 0x8D, ErrNonceReused.Code: 0x8E, ErrGrantMismatch.Code: 0x8F,
	ErrAckMismatch.Code: 0x90, "machine.busy": 0x91, "machine.fault": 0x92, ErrNotRegistration.Code: 0x93,
	"claim.open": 0x94, "board.internal": 0x9F,
}

// ATTCode returns the ATT application error code for err (0x9F for an
// error with no code of its own).
func ATTCode(err error) byte {
	if c, ok := ATTCodes[vend.CodeOf(err)]; ok {
		return c
	}
	return 0x9F
}

// ---- chunked messages ----

// Chunk splits msg into chunks of at most size bytes each (header
// included; size ChunkHeader+1..MaxValue) for writes to GrantUUID and
// BundleUUID. Each chunk is
//
//	index u16 BE | count u16 BE | data (1..size-4 bytes)
//
// index runs 0..count-1; the phone writes them in order, each with a
// Write Request (a long write when the chunk exceeds ATT_MTU-3), and the
// board answers each write; it answers the last with the message's
// verdict. Errors: ErrEmpty, ErrTooLong (message longer than max or
// needing more than MaxChunks), ErrField (bad size).
func Chunk(msg []byte, size, max int) ([][]byte, error) {
	if size <= ChunkHeader || size > MaxValue {
		return nil, fieldErr("chunk", "size", "want 5-512")
	}
	if len(msg) == 0 {
		return nil, vend.Errorf(ErrEmpty, "message")
	}
	if len(msg) > max {
		return nil, vend.Errorf(ErrTooLong, "message of %d bytes, limit %d", len(msg), max)
	}
	per := size - ChunkHeader
	n := (len(msg) + per - 1) / per
	if n > MaxChunks {
		return nil, vend.Errorf(ErrTooLong, "%d chunks, limit %d", n, MaxChunks)
	}
	out := make([][]byte, 0, n)
	for i := 0; i < n; i++ {
		d := msg[i*per : min(len(msg), (i+1)*per)]
		c := make([]byte, ChunkHeader, ChunkHeader+len(d))
		binary.BigEndian.PutUint16(c, uint16(i))
		binary.BigEndian.PutUint16(c[2:], uint16(n))
		out = append(out, append(c, d...))
	}
	return out, nil
}

// Reassembler collects the chunks of one message. A chunk with index 0
// starts a new message (dropping any unfinished one), so a phone that
// lost its place starts over; anything else out of order is ErrChunk and
// drops the unfinished message. It holds at most Max bytes. The zero value
// is not usable: set Max.
type Reassembler struct {
	Max   int // message limit, bytes (MaxRelayGrant, MaxBundle)
	buf   []byte
	next  int
	count int
}

// Add takes one written chunk. It returns the message, copied, when c was
// the last chunk. Errors: ErrEmpty, ErrTruncated (shorter than the header
// plus one byte), ErrTooLong (chunk over MaxValue, message over Max),
// ErrChunk (index or count out of step).
func (r *Reassembler) Add(c []byte) ([]byte, bool, error) {
	switch {
	case len(c) == 0:
		return nil, false, vend.Errorf(ErrEmpty, "chunk")
	case len(c) > MaxValue:
		r.Reset()
		return nil, false, vend.Errorf(ErrTooLong, "chunk of %d bytes, limit %d", len(c), MaxValue)
	case len(c) <= ChunkHeader:
		r.Reset()
		return nil, false, vend.Errorf(ErrTruncated, "chunk of %d bytes, want header and data", len(c))
	}
	idx, cnt := int(binary.BigEndian.Uint16(c)), int(binary.BigEndian.Uint16(c[2:]))
	if cnt == 0 || idx >= cnt || cnt > MaxChunks {
		r.Reset()
		return nil, false, vend.Errorf(ErrChunk, "index %d of %d (at most %d chunks)", idx, cnt, MaxChunks)
	}
	if idx == 0 {
		r.Reset()
		r.count = cnt
	} else if idx != r.next || cnt != r.count {
		want, of := r.next, r.count
		r.Reset()
		return nil, false, vend.Errorf(ErrChunk, "index %d of %d, want %d of %d", idx, cnt, want, of)
	}
	if len(r.buf)+len(c)-ChunkHeader > r.Max {
		r.Reset()
		return nil, false, vend.Errorf(ErrTooLong, "message over %d bytes", r.Max)
	}
	r.buf = append(r.buf, c[ChunkHeader:]...)
	r.next = idx + 1
	if r.next < r.count {
		return nil, false, nil
	}
	msg := r.buf
	r.buf, r.next, r.count = nil, 0, 0
	return msg, true, nil
}

// Reset drops an unfinished message (the board calls it on disconnect).
func (r *Reassembler) Reset() { r.buf, r.next, r.count = nil, 0, 0 }

// ---- RelayGrant ----

// RelayGrant is what the phone writes to GrantUUID (chunked): the grant
// the cloud signed and the relay ticket that binds it to this board and a
// fresh nonce, both exactly as phoneapi.Relay gave them.
type RelayGrant struct {
	Grant  []byte // signed grant (signed.SignGrant)
	Ticket []byte // signed relay ticket (signed.SignRelayTicket)
}

// MarshalBinary encodes version u8 (1) | grant len u16 | grant | ticket len
// u16 | ticket. Errors: ErrEmpty, ErrTooLong for a part over
// signed.MaxSigned.
func (g RelayGrant) MarshalBinary() ([]byte, error) {
	for _, p := range []struct {
		name string
		b    []byte
	}{{"grant", g.Grant}, {"ticket", g.Ticket}} {
		if len(p.b) == 0 {
			return nil, vend.Errorf(ErrEmpty, "relay grant: %s", p.name)
		}
		if len(p.b) > signed.MaxSigned {
			return nil, vend.Errorf(ErrTooLong, "relay grant: %s of %d bytes", p.name, len(p.b))
		}
	}
	b := make([]byte, 0, 5+len(g.Grant)+len(g.Ticket))
	b = append(b, Version)
	b = binary.BigEndian.AppendUint16(b, uint16(len(g.Grant)))
	b = append(b, g.Grant...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(g.Ticket)))
	return append(b, g.Ticket...), nil
}

// UnmarshalBinary decodes a RelayGrant strictly (copying the parts).
// Errors: ErrTooLong, ErrEmpty, ErrTruncated, ErrVersion, ErrTrailing.
func (g *RelayGrant) UnmarshalBinary(b []byte) error {
	if len(b) > MaxRelayGrant {
		return vend.Errorf(ErrTooLong, "relay grant of %d bytes", len(b))
	}
	d := dec{b: b, msg: "relay grant"}
	if v := d.u8("version"); d.err == nil && v != Version {
		return vend.Errorf(ErrVersion, "relay grant version %d", v)
	}
	gr := d.part("grant")
	tk := d.part("ticket")
	if err := d.end(); err != nil {
		return err
	}
	if len(gr) == 0 || len(tk) == 0 {
		return vend.Errorf(ErrEmpty, "relay grant: empty grant or ticket")
	}
	g.Grant, g.Ticket = append([]byte(nil), gr...), append([]byte(nil), tk...)
	return nil
}

// ---- Progress ----

// RelayState is the board's state of the relayed session, in Progress.
type RelayState uint8

// Relay states.
const (
	StateIdle     RelayState = 0 // no relayed grant on this connection yet
	StateAccepted RelayState = 1 // the grant passed CheckRelay and is journaled
	StateRunning  RelayState = 2 // the machine runs
	StateEnded    RelayState = 3 // the session ended; the receipt is readable
	StateRefused  RelayState = 4 // the grant was refused; Reason says why
)

// Progress is the value of ProgressUUID, notified at every state change
// and at most once a second while running.
type Progress struct {
	State  RelayState
	Reason byte   // ATTCode of the refusal for StateRefused, else 0
	Units  uint64 // units delivered so far
	Amount int64  // their cost, minor units of the grant's currency
}

// MarshalBinary encodes version u8 | state u8 | reason u8 | units u64 |
// amount i64: ProgressLen bytes. Errors: ErrField.
func (p Progress) MarshalBinary() ([]byte, error) {
	if p.State > StateRefused {
		return nil, fieldErr("progress", "state", "unknown")
	}
	if p.Amount < 0 {
		return nil, fieldErr("progress", "amount", "negative")
	}
	if (p.State == StateRefused) != (p.Reason != 0) {
		return nil, fieldErr("progress", "reason", "set exactly when refused")
	}
	b := make([]byte, 0, ProgressLen)
	b = append(b, Version, byte(p.State), p.Reason)
	b = binary.BigEndian.AppendUint64(b, p.Units)
	return binary.BigEndian.AppendUint64(b, uint64(p.Amount)), nil
}

// UnmarshalBinary decodes a Progress value strictly.
func (p *Progress) UnmarshalBinary(b []byte) error {
	if len(b) > ProgressLen {
		return vend.Errorf(ErrTooLong, "progress of %d bytes", len(b))
	}
	d := dec{b: b, msg: "progress"}
	if v := d.u8("version"); d.err == nil && v != Version {
		return vend.Errorf(ErrVersion, "progress version %d", v)
	}
	n := Progress{State: RelayState(d.u8("state")), Reason: d.u8("reason"), Units: d.u64("units"), Amount: int64(d.u64("amount"))}
	if err := d.end(); err != nil {
		return err
	}
	if _, err := n.MarshalBinary(); err != nil {
		return err
	}
	*p = n
	return nil
}

// ---- Receipt ----

// ReceiptStatus says whether the board has a receipt to give.
type ReceiptStatus uint8

// Receipt statuses.
const (
	ReceiptNone  ReceiptStatus = 0 // no ended relayed session on this connection
	ReceiptReady ReceiptStatus = 1 // Usage holds the signed report
	ReceiptAcked ReceiptStatus = 2 // the phone acknowledged it (Usage still given)
)

// Receipt is the value of ReceiptUUID: the signed usage report of the
// relayed session, byte for byte what the board's outbox sends over MQTT.
type Receipt struct {
	Status ReceiptStatus
	Usage  []byte // signed usage report; empty for ReceiptNone
}

// MarshalBinary encodes version u8 | status u8 | usage len u16 | usage
// (at most MaxValue bytes in all). Errors: ErrField, ErrTooLong.
func (r Receipt) MarshalBinary() ([]byte, error) {
	if r.Status > ReceiptAcked {
		return nil, fieldErr("receipt", "status", "unknown")
	}
	if (r.Status == ReceiptNone) != (len(r.Usage) == 0) {
		return nil, fieldErr("receipt", "usage", "present exactly when ready or acknowledged")
	}
	if 4+len(r.Usage) > MaxValue {
		return nil, vend.Errorf(ErrTooLong, "receipt usage of %d bytes", len(r.Usage))
	}
	b := make([]byte, 0, 4+len(r.Usage))
	b = append(b, Version, byte(r.Status))
	b = binary.BigEndian.AppendUint16(b, uint16(len(r.Usage)))
	return append(b, r.Usage...), nil
}

// UnmarshalBinary decodes a Receipt strictly (copying the report).
func (r *Receipt) UnmarshalBinary(b []byte) error {
	if len(b) > MaxValue {
		return vend.Errorf(ErrTooLong, "receipt of %d bytes", len(b))
	}
	d := dec{b: b, msg: "receipt"}
	if v := d.u8("version"); d.err == nil && v != Version {
		return vend.Errorf(ErrVersion, "receipt version %d", v)
	}
	n := Receipt{Status: ReceiptStatus(d.u8("status"))}
	u := d.part("usage")
	if err := d.end(); err != nil {
		return err
	}
	if len(u) > 0 {
		n.Usage = append([]byte(nil), u...)
	}
	if _, err := n.MarshalBinary(); err != nil {
		return err
	}
	*r = n
	return nil
}

// ---- Ack ----

// Ack kinds: the first byte of a value written to AckUUID.
const (
	// AckPhone: the phone read the receipt; Digest is signed.Digest of the
	// signed report. The board marks the receipt acknowledged and keeps
	// the report in its outbox.
	AckPhone = 1
	// AckCloud: CloudAck is a signed.UsageAck the cloud gave the phone for
	// an uploaded report. A board that verifies it under its cloud keys
	// drops the report from its outbox, as for an MQTT acknowledgement.
	AckCloud = 2
	// AckPhoneLen is the length of an AckPhone value.
	AckPhoneLen = 1 + 16 + 32
)

// Ack is a value written to AckUUID.
type Ack struct {
	Kind     uint8
	Session  vend.SessionID // AckPhone
	Digest   [32]byte       // AckPhone: signed.Digest of the receipt's report
	CloudAck []byte         // AckCloud: signed.UsageAck
}

// MarshalBinary encodes kind 1 | session [16] | digest [32], or kind 2 |
// signed usage ack. Errors: ErrField, ErrEmpty, ErrTooLong.
func (a Ack) MarshalBinary() ([]byte, error) {
	switch a.Kind {
	case AckPhone:
		if a.Session.IsZero() {
			return nil, fieldErr("ack", "session", "zero")
		}
		b := append([]byte{AckPhone}, a.Session[:]...)
		return append(b, a.Digest[:]...), nil
	case AckCloud:
		if len(a.CloudAck) == 0 {
			return nil, vend.Errorf(ErrEmpty, "ack: cloud ack")
		}
		if 1+len(a.CloudAck) > MaxValue {
			return nil, vend.Errorf(ErrTooLong, "ack: cloud ack of %d bytes", len(a.CloudAck))
		}
		return append([]byte{AckCloud}, a.CloudAck...), nil
	}
	return nil, fieldErr("ack", "kind", "want 1 (phone) or 2 (cloud)")
}

// UnmarshalBinary decodes an Ack strictly. The cloud ack's signature is
// not checked here (CheckCloudAck does).
func (a *Ack) UnmarshalBinary(b []byte) error {
	switch {
	case len(b) == 0:
		return vend.Errorf(ErrEmpty, "ack")
	case len(b) > MaxValue:
		return vend.Errorf(ErrTooLong, "ack of %d bytes", len(b))
	}
	n := Ack{Kind: b[0]}
	switch n.Kind {
	case AckPhone:
		if len(b) < AckPhoneLen {
			return vend.Errorf(ErrTruncated, "phone ack of %d bytes, want %d", len(b), AckPhoneLen)
		}
		if len(b) > AckPhoneLen {
			return vend.Errorf(ErrTrailing, "phone ack of %d bytes, want %d", len(b), AckPhoneLen)
		}
		copy(n.Session[:], b[1:17])
		copy(n.Digest[:], b[17:])
	case AckCloud:
		if len(b) == 1 {
			return vend.Errorf(ErrTruncated, "cloud ack without a body")
		}
		n.CloudAck = append([]byte(nil), b[1:]...)
	}
	if _, err := n.MarshalBinary(); err != nil {
		return err
	}
	*a = n
	return nil
}

// CheckAck checks an acknowledgement of the receipt of session whose
// signed report is report, for device, under the cloud's keys. It returns
// whether the cloud holds the report (AckCloud: the board may drop it from
// its outbox) or only the phone (AckPhone). Errors: ErrAckMismatch (other
// session, other report or other device) and signed's errors for a cloud
// ack that does not verify.
func CheckAck(a Ack, device string, session vend.SessionID, report []byte, keys signed.Keys) (cloudHolds bool, err error) {
	digest := signed.Digest(report)
	switch a.Kind {
	case AckPhone:
		if a.Session != session || a.Digest != digest {
			return false, vend.Errorf(ErrAckMismatch, "phone ack for %s", a.Session)
		}
		return false, nil
	case AckCloud:
		ua, err := signed.OpenUsageAck(a.CloudAck, keys)
		if err != nil {
			return false, err
		}
		if ua.Device != device || ua.Session != session || ua.Report != digest {
			return false, vend.Errorf(ErrAckMismatch, "cloud ack for %s on %q", ua.Session, ua.Device)
		}
		return true, nil
	}
	return false, fieldErr("ack", "kind", "unknown")
}

// ---- ClaimInfo ----

// ClaimState is whether a board belongs to an operator.
type ClaimState uint8

// Claim states.
const (
	Unclaimed ClaimState = 0 // registration mode: BundleUUID accepts a bundle sealed to SealKey
	Claimed   ClaimState = 1 // provisioned: Device and SignKey are set; BundleUUID refuses
)

// ClaimInfo is the value of ClaimInfoUUID.
type ClaimInfo struct {
	State   ClaimState
	SealKey []byte            // the board's X25519 public key (32 bytes), generated at first boot
	Device  string            // Claimed: the device ID from its bundle
	SignKey ed25519.PublicKey // Claimed: the device's usage-signing public key
}

// MarshalBinary encodes version u8 | state u8 | seal key [32] | device str
// (u8 length) | sign key len u8 (0 or 32) | sign key. Errors: ErrField.
func (c ClaimInfo) MarshalBinary() ([]byte, error) {
	if _, err := ecdh.X25519().NewPublicKey(c.SealKey); err != nil {
		return nil, fieldErr("claim info", "seal_key", "not a 32-byte X25519 key")
	}
	switch c.State {
	case Unclaimed:
		if c.Device != "" || len(c.SignKey) != 0 {
			return nil, fieldErr("claim info", "device", "set while unclaimed")
		}
	case Claimed:
		if err := vend.ValidateDeviceID(c.Device); err != nil {
			return nil, fieldErr("claim info", "device", err.Error())
		}
		if len(c.SignKey) != ed25519.PublicKeySize {
			return nil, fieldErr("claim info", "sign_key", "want 32 bytes")
		}
	default:
		return nil, fieldErr("claim info", "state", "unknown")
	}
	b := make([]byte, 0, 68+len(c.Device))
	b = append(b, Version, byte(c.State))
	b = append(b, c.SealKey...)
	b = append(b, byte(len(c.Device)))
	b = append(b, c.Device...)
	b = append(b, byte(len(c.SignKey)))
	return append(b, c.SignKey...), nil
}

// UnmarshalBinary decodes a ClaimInfo strictly.
func (c *ClaimInfo) UnmarshalBinary(b []byte) error {
	if len(b) > MaxValue {
		return vend.Errorf(ErrTooLong, "claim info of %d bytes", len(b))
	}
	d := dec{b: b, msg: "claim info"}
	if v := d.u8("version"); d.err == nil && v != Version {
		return vend.Errorf(ErrVersion, "claim info version %d", v)
	}
	n := ClaimInfo{State: ClaimState(d.u8("state"))}
	n.SealKey = append([]byte(nil), d.need(32, "seal key")...)
	n.Device = string(d.need(int(d.u8("device length")), "device"))
	if k := d.need(int(d.u8("sign key length")), "sign key"); len(k) > 0 {
		n.SignKey = append(ed25519.PublicKey(nil), k...)
	}
	if err := d.end(); err != nil {
		return err
	}
	if _, err := n.MarshalBinary(); err != nil {
		return err
	}
	*c = n
	return nil
}

// ---- decoding helper ----

type dec struct {
	b   []byte
	off int
	err error
	msg string
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

func (d *dec) u64(f string) uint64 {
	if s := d.need(8, f); s != nil {
		return binary.BigEndian.Uint64(s)
	}
	return 0
}

// part reads a u16 length and that many bytes, at most signed.MaxSigned.
func (d *dec) part(f string) []byte {
	s := d.need(2, f+" length")
	if s == nil {
		return nil
	}
	n := int(binary.BigEndian.Uint16(s))
	if n > signed.MaxSigned {
		d.err = vend.Errorf(ErrTooLong, "%s: %s of %d bytes, limit %d", d.msg, f, n, signed.MaxSigned)
		return nil
	}
	return d.need(n, f)
}

func (d *dec) end() error {
	if d.err != nil {
		return d.err
	}
	if d.off != len(d.b) {
		return vend.Errorf(ErrTrailing, "%s: %d bytes after the last field", d.msg, len(d.b)-d.off)
	}
	return nil
}
