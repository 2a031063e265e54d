package beacon

import (
	"crypto/sha256"
	"encoding/binary"

	"beaconvend/app-protocol/vend"
)

// VersionUnclaimed is the frame layout of a board in registration mode: it
// has no device ID, identity key or proximity ID yet, so it shows a tag of
// its sealing key instead. It shares the magic, the length and the place
// of the version byte with Version1, so one scan hears both: Decode
// answers ErrVersion for it (old apps ignore it) and DecodeUnclaimed
// decodes it.
const VersionUnclaimed = 2

// ClaimTagLen is the length of an unclaimed frame's claim tag.
const ClaimTagLen = 8

// Unclaimed is the frame of a board in registration mode. It advertises
// connectable; the installer's phone connects, reads gattapi.ClaimInfo and
// checks that ClaimTag(info.SealKey) is the tag it heard.
//
// Payload, version 2 (12 bytes):
//
//	0     magic 0xBC
//	1     version (2)
//	2     reserved, zero
//	3     calibrated TX power at 0 m, int8 dBm
//	4-11  claim tag: the first 8 bytes of SHA-256 over the board's 32-byte X25519 sealing public key
type Unclaimed struct {
	CompanyID uint16
	TxPower   int8
	Tag       [ClaimTagLen]byte
}

// ClaimTag returns the claim tag of a board's sealing public key.
func ClaimTag(sealKey []byte) [ClaimTagLen]byte {
	sum := sha256.Sum256(sealKey)
	var t [ClaimTagLen]byte
	copy(t[:], sum[:])
	return t
}

// ManufacturerData returns the Manufacturer Specific Data contents (company
// ID little-endian, then the payload).
func (u Unclaimed) ManufacturerData() []byte {
	b := make([]byte, 2, 2+payloadLenV1)
	binary.LittleEndian.PutUint16(b, u.CompanyID)
	b = append(b, Magic, VersionUnclaimed, 0, byte(u.TxPower))
	return append(b, u.Tag[:]...)
}

// Encode returns the advertising data: Flags AD and Manufacturer Specific
// Data AD, FrameLen (19) bytes, like Frame.Encode.
func (u Unclaimed) Encode() []byte {
	md := u.ManufacturerData()
	b := make([]byte, 0, FrameLen)
	b = append(b, 2, adFlags, FlagsValue, byte(1+len(md)), adManufData)
	return append(b, md...)
}

// DecodeUnclaimed finds and decodes an unclaimed frame under companyID in
// raw advertising data. Errors: as Decode; ErrVersion for any version but
// VersionUnclaimed (a Version1 frame included), ErrReserved for a non-zero
// reserved byte.
func DecodeUnclaimed(adv []byte, companyID uint16) (Unclaimed, error) {
	ads, err := ParseAD(adv)
	if err != nil {
		return Unclaimed{}, err
	}
	var md []byte
	for _, a := range ads {
		switch a.Type {
		case adFlags:
			if len(a.Data) != 1 {
				return Unclaimed{}, vend.Errorf(ErrFlags, "length %d, want 1", len(a.Data))
			}
		case adManufData:
			if len(a.Data) >= 2 && binary.LittleEndian.Uint16(a.Data) == companyID && md == nil {
				md = a.Data
			}
		}
	}
	if md == nil {
		return Unclaimed{}, vend.Errorf(ErrNoFrame, "company 0x%04X", companyID)
	}
	return DecodeUnclaimedManufacturerData(md)
}

// DecodeUnclaimedManufacturerData decodes Manufacturer Specific Data
// contents holding an unclaimed frame. Errors: ErrTruncated, ErrMagic,
// ErrVersion, ErrLength, ErrReserved.
func DecodeUnclaimedManufacturerData(md []byte) (Unclaimed, error) {
	if len(md) < 4 {
		return Unclaimed{}, vend.Errorf(ErrTruncated, "manufacturer data of %d bytes", len(md))
	}
	u := Unclaimed{CompanyID: binary.LittleEndian.Uint16(md)}
	p := md[2:]
	if p[0] != Magic {
		return Unclaimed{}, vend.Errorf(ErrMagic, "0x%02X", p[0])
	}
	if p[1] != VersionUnclaimed {
		return Unclaimed{}, vend.Errorf(ErrVersion, "%d, want unclaimed %d", p[1], VersionUnclaimed)
	}
	if len(p) != payloadLenV1 {
		return Unclaimed{}, vend.Errorf(ErrLength, "%d bytes, want %d", len(p), payloadLenV1)
	}
	if p[2] != 0 {
		return Unclaimed{}, vend.Errorf(ErrReserved, "0x%02X", p[2])
	}
	u.TxPower = int8(p[3])
	copy(u.Tag[:], p[4:])
	return u, nil
}
