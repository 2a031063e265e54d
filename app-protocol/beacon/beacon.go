package beacon

import (
	"encoding/binary"
	"fmt"

	"beaconvend/app-protocol/proxid"
	"beaconvend/app-protocol/vend"
)

// Frame constants.
const (
	MaxAdvLen        = 31     // legacy advertising data limit, bytes
	DefaultCompanyID = 0xFFFF // Bluetooth SIG value reserved for tests; operators set their own
	Magic            = 0xBC   // first payload byte after the company ID: "this is a beaconvend frame"
	Version1         = 1      // the frame layout this package writes
	payloadLenV1     = 12     // magic, version, state, tx power, 8-byte ID
	// FrameLen is the length of an encoded advertisement: Flags AD (3) +
	// Manufacturer Specific Data AD (1 length + 1 type + 2 company + 12).
	FrameLen = 3 + 4 + payloadLenV1

	adFlags       = 0x01
	adShortName   = 0x08
	adCompleteNam = 0x09
	adManufData   = 0xFF
	// FlagsValue is what the Flags AD carries: LE General Discoverable Mode
	// (bit 1) and BR/EDR Not Supported (bit 2).
	FlagsValue = 0x06

	stateMask      = 0x03
	offlineCapable = 0x04
	reservedMask   = 0xF8
)

// Decoding errors. Each has a stable code that the test vectors name.
var (
	ErrTooLong   = vend.E(vend.Invalid, "frame.too_long", "beacon: advertising data longer than 31 bytes")
	ErrTruncated = vend.E(vend.Invalid, "frame.truncated", "beacon: truncated AD structure")
	ErrNoFrame   = vend.E(vend.NotFound, "frame.absent", "beacon: no manufacturer data for this company id")
	ErrMagic     = vend.E(vend.Invalid, "frame.magic", "beacon: manufacturer data is not a beaconvend frame")
	ErrVersion   = vend.E(vend.Invalid, "frame.version", "beacon: unknown frame version")
	ErrLength    = vend.E(vend.Invalid, "frame.length", "beacon: wrong payload length for frame version")
	ErrReserved  = vend.E(vend.Invalid, "frame.reserved", "beacon: reserved state bits set")
	ErrFlags     = vend.E(vend.Invalid, "frame.flags", "beacon: malformed flags AD")
	ErrState     = vend.E(vend.Invalid, "frame.state", "beacon: unknown machine state")
	ErrName      = vend.E(vend.Invalid, "frame.name", "beacon: invalid local name")
)

// State is the controller's machine state as the beacon shows it, so that a
// phone can grey out a busy machine before asking the cloud.
type State uint8

// Machine states (2 bits on the air).
const (
	Idle    State = 0 // ready to sell
	Busy    State = 1 // every machine behind this beacon is in a session
	Fault   State = 2 // the board or machine reports a fault; do not sell
	Offline State = 3 // the controller has no cloud link (it may still accept phone-relayed grants when OfflineCapable)
)

var stateNames = [...]string{"idle", "busy", "fault", "offline"}

// String returns the wire name: idle, busy, fault, offline.
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// MarshalText encodes the wire name.
func (s State) MarshalText() ([]byte, error) {
	if int(s) >= len(stateNames) {
		return nil, vend.Errorf(ErrState, "%d", uint8(s))
	}
	return []byte(s.String()), nil
}

// UnmarshalText decodes a wire name, or returns ErrState.
func (s *State) UnmarshalText(b []byte) error {
	for i, n := range stateNames {
		if n == string(b) {
			*s = State(i)
			return nil
		}
	}
	return vend.Errorf(ErrState, "%q", string(b))
}

// Frame is one beaconvend advertisement.
type Frame struct {
	CompanyID      uint16    // Bluetooth SIG company identifier (little-endian on air)
	Version        uint8     // frame layout version; Encode writes Version1 when zero
	State          State     // machine state
	OfflineCapable bool      // the controller accepts grants relayed by the phone while its cloud link is down
	TxPower        int8      // calibrated TX power: RSSI in dBm measured at 0 m, as in Eddystone, for distance estimates
	ID             proxid.ID // the rotating proximity ID of the current window
}

// Encode returns the advertising data: a Flags AD followed by one
// Manufacturer Specific Data AD, FrameLen (19) bytes, well inside the 31-byte
// legacy limit so that every phone and scanner hears it.
func (f Frame) Encode() ([]byte, error) {
	md, err := f.ManufacturerData()
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, FrameLen)
	b = append(b, 2, adFlags, FlagsValue)
	b = append(b, byte(1+len(md)), adManufData)
	return append(b, md...), nil
}

// ManufacturerData returns the Manufacturer Specific Data field contents:
// the company ID (little-endian) followed by the payload. It is what
// iOS reports as kCBAdvDataManufacturerData and what go-ble's
// adv.ManufacturerData takes apart. Android's ScanRecord
// getManufacturerSpecificData(companyID) returns it without the first two bytes.
//
// Payload, version 1 (12 bytes):
//
//	0     magic 0xBC
//	1     version (1)
//	2     bits 0-1 state (0 idle, 1 busy, 2 fault, 3 offline), bit 2 offline-capable, bits 3-7 zero
//	3     calibrated TX power at 0 m, int8 dBm
//	4-11  proximity ID
func (f Frame) ManufacturerData() ([]byte, error) {
	v := f.Version
	if v == 0 {
		v = Version1
	}
	if v != Version1 {
		return nil, vend.Errorf(ErrVersion, "cannot encode version %d", v)
	}
	if f.State > Offline {
		return nil, vend.Errorf(ErrState, "%d", uint8(f.State))
	}
	b := make([]byte, 2, 2+payloadLenV1)
	binary.LittleEndian.PutUint16(b, f.CompanyID)
	st := byte(f.State)
	if f.OfflineCapable {
		st |= offlineCapable
	}
	b = append(b, Magic, v, st, byte(f.TxPower))
	return append(b, f.ID[:]...), nil
}

// AD is one advertising data structure: its type and its data.
type AD struct {
	Type byte
	Data []byte // aliases the input
}

// ParseAD splits advertising data into AD structures (Core Spec Vol 3 Part C
// §11). A zero length byte ends the significant part; what follows must be
// zero padding. It returns ErrTooLong or ErrTruncated.
func ParseAD(adv []byte) ([]AD, error) {
	if len(adv) > MaxAdvLen {
		return nil, vend.Errorf(ErrTooLong, "%d bytes", len(adv))
	}
	var out []AD
	for i := 0; i < len(adv); {
		n := int(adv[i])
		if n == 0 {
			for j := i; j < len(adv); j++ {
				if adv[j] != 0 {
					return nil, vend.Errorf(ErrTruncated, "non-zero byte after terminator at offset %d", j)
				}
			}
			break
		}
		if i+1+n > len(adv) {
			return nil, vend.Errorf(ErrTruncated, "length %d at offset %d runs past the end (%d bytes)", n, i, len(adv))
		}
		out = append(out, AD{Type: adv[i+1], Data: adv[i+2 : i+1+n]})
		i += 1 + n
	}
	return out, nil
}

// Decode finds and decodes the beaconvend frame under companyID in raw
// advertising data. A Flags AD, when present, must be one byte long; other
// AD structures are ignored, so a frame still decodes when a stack adds
// fields. Errors: ErrTooLong, ErrTruncated, ErrFlags, ErrNoFrame, and those
// of DecodeManufacturerData.
func Decode(adv []byte, companyID uint16) (Frame, error) {
	ads, err := ParseAD(adv)
	if err != nil {
		return Frame{}, err
	}
	var md []byte
	for _, a := range ads {
		switch a.Type {
		case adFlags:
			if len(a.Data) != 1 {
				return Frame{}, vend.Errorf(ErrFlags, "length %d, want 1", len(a.Data))
			}
		case adManufData:
			if len(a.Data) >= 2 && binary.LittleEndian.Uint16(a.Data) == companyID && md == nil {
				md = a.Data
			}
		}
	}
	if md == nil {
		return Frame{}, vend.Errorf(ErrNoFrame, "company 0x%04X", companyID)
	}
	return DecodeManufacturerData(md)
}

// DecodeManufacturerData decodes Manufacturer Specific Data contents (company
// ID first, as ManufacturerData writes them). Errors: ErrTruncated (shorter
// than company ID, magic and version), ErrMagic, ErrVersion, ErrLength,
// ErrReserved.
func DecodeManufacturerData(md []byte) (Frame, error) {
	if len(md) < 4 {
		return Frame{}, vend.Errorf(ErrTruncated, "manufacturer data of %d bytes", len(md))
	}
	f := Frame{CompanyID: binary.LittleEndian.Uint16(md)}
	p := md[2:]
	if p[0] != Magic {
		return Frame{}, vend.Errorf(ErrMagic, "0x%02X", p[0])
	}
	f.Version = p[1]
	if f.Version != Version1 {
		return Frame{}, vend.Errorf(ErrVersion, "%d", f.Version)
	}
	if len(p) != payloadLenV1 {
		return Frame{}, vend.Errorf(ErrLength, "%d bytes, want %d", len(p), payloadLenV1)
	}
	if p[2]&reservedMask != 0 {
		return Frame{}, vend.Errorf(ErrReserved, "0x%02X", p[2])
	}
	f.State = State(p[2] & stateMask)
	f.OfflineCapable = p[2]&offlineCapable != 0
	f.TxPower = int8(p[3])
	copy(f.ID[:], p[4:])
	return f, nil
}

// MaxNameLen is the longest local name a scan response carries (31 − 2).
const MaxNameLen = MaxAdvLen - 2

// EncodeScanResponse returns a scan response carrying name as the Complete
// Local Name: 1 to 29 bytes of printable ASCII. Errors: ErrName.
func EncodeScanResponse(name string) ([]byte, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	b := make([]byte, 0, 2+len(name))
	b = append(b, byte(1+len(name)), adCompleteNam)
	return append(b, name...), nil
}

// DecodeScanResponse returns the local name (complete, else shortened) in a
// scan response. Errors: those of ParseAD, ErrName when absent or invalid.
func DecodeScanResponse(sr []byte) (string, error) {
	ads, err := ParseAD(sr)
	if err != nil {
		return "", err
	}
	short := ""
	for _, a := range ads {
		switch a.Type {
		case adCompleteNam:
			n := string(a.Data)
			return n, validName(n)
		case adShortName:
			short = string(a.Data)
		}
	}
	if short == "" {
		return "", vend.Errorf(ErrName, "no local name")
	}
	return short, validName(short)
}

func validName(n string) error {
	if len(n) == 0 || len(n) > MaxNameLen {
		return vend.Errorf(ErrName, "%d bytes, want 1-%d", len(n), MaxNameLen)
	}
	for i := 0; i < len(n); i++ {
		if n[i] < 0x20 || n[i] > 0x7E {
			return vend.Errorf(ErrName, "byte 0x%02X at %d is not printable ASCII", n[i], i)
		}
	}
	return nil
}
