package provision

import (
	"crypto/ecdh"
	"crypto/hpke"

	"beaconvend/app-protocol/vend"
)

// Sealing a bundle to a board (registration mode).
//
// An unclaimed board generates an X25519 key pair at first boot and shows
// the public key (gattapi.ClaimInfo, and a tag of it in the unclaimed
// beacon frame). The cloud seals the bundle document (Encode's JSON) to
// that key with HPKE (RFC 9180) in base mode with the suite
// DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305 (KEM 0x0020,
// KDF 0x0001, AEAD 0x0003) and info SealInfo; the sealed form is the
// 32-byte encapsulated key followed by the ciphertext. HPKE is a published
// standard with implementations for the phone platforms and in Go's
// standard library (crypto/hpke), so no part of the construction is ours;
// the KEM binds the recipient's public key, the AEAD authenticates the
// whole bundle, and only the holder of the board's private key opens it.
// The phone only carries the sealed bytes: it learns neither the device
// key, nor the identity key, nor the broker password inside.
const SealInfo = "beaconvend bundle v1"

// SealKeyLen is the length of a board's X25519 sealing public key.
const SealKeyLen = 32

// Sealing errors.
var (
	ErrSealKey = vend.E(vend.Invalid, "claim.key", "provision: malformed board sealing key")
	ErrOpen    = vend.E(vend.Unauthorized, "claim.open", "provision: sealed bundle does not open with this key")
)

func suite() (hpke.KDF, hpke.AEAD) { return hpke.HKDFSHA256(), hpke.ChaCha20Poly1305() }

// ParseSealKey checks a board's X25519 public key (32 bytes, not a
// low-order point). Errors: ErrSealKey.
func ParseSealKey(b []byte) (*ecdh.PublicKey, error) {
	if len(b) != SealKeyLen {
		return nil, vend.Errorf(ErrSealKey, "%d bytes, want %d", len(b), SealKeyLen)
	}
	pub, err := ecdh.X25519().NewPublicKey(b)
	if err != nil {
		return nil, vend.Errorf(ErrSealKey, "%v", err)
	}
	// A low-order point gives an all-zero shared secret: refuse it here
	// rather than in Seal.
	probe, err := ecdh.X25519().GenerateKey(nil)
	if err != nil {
		return nil, err
	}
	if _, err := probe.ECDH(pub); err != nil {
		return nil, vend.Errorf(ErrSealKey, "low-order point")
	}
	return pub, nil
}

// Seal seals a bundle document to a board's X25519 public key. Errors:
// ErrSealKey, and the HPKE library's.
func Seal(boardKey []byte, doc []byte) ([]byte, error) {
	pub, err := ParseSealKey(boardKey)
	if err != nil {
		return nil, err
	}
	pk, err := hpke.NewDHKEMPublicKey(pub)
	if err != nil {
		return nil, vend.Errorf(ErrSealKey, "%v", err)
	}
	kdf, aead := suite()
	return hpke.Seal(pk, kdf, aead, []byte(SealInfo), doc)
}

// Open opens a sealed bundle with the board's private key and returns the
// document (decode it with Decode). Errors: ErrOpen (another key, altered
// or truncated bytes).
func Open(board *ecdh.PrivateKey, sealed []byte) ([]byte, error) {
	if board == nil || board.Curve() != ecdh.X25519() {
		return nil, vend.Errorf(ErrSealKey, "not an X25519 private key")
	}
	if len(sealed) > MaxSize {
		return nil, vend.Errorf(ErrOpen, "sealed bundle of %d bytes, limit %d", len(sealed), MaxSize)
	}
	k, err := hpke.NewDHKEMPrivateKey(board)
	if err != nil {
		return nil, vend.Errorf(ErrSealKey, "%v", err)
	}
	kdf, aead := suite()
	doc, err := hpke.Open(k, kdf, aead, []byte(SealInfo), sealed)
	if err != nil {
		return nil, vend.Errorf(ErrOpen, "%v", err)
	}
	return doc, nil
}
