package signed

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"

	"beaconvend/app-protocol/vend"
)

// KeyID names a public key: the first 8 bytes of SHA-256 over its 32 bytes.
// Grants carry the cloud key's ID and usage reports the device key's, so a
// verifier holding several keys (during a rotation) picks the right one
// without trying each.
type KeyID [8]byte

// KeyIDOf returns the KeyID of an Ed25519 public key.
func KeyIDOf(pub ed25519.PublicKey) KeyID {
	h := sha256.Sum256(pub)
	var id KeyID
	copy(id[:], h[:8])
	return id
}

// String returns 16 hex digits.
func (k KeyID) String() string { return hex.EncodeToString(k[:]) }

// Keys is a set of trusted public keys, by KeyID. A device holds the cloud's
// current key and, during a rotation, the next; the cloud holds each
// device's.
type Keys map[KeyID]ed25519.PublicKey

// NewKeys returns a Keys holding pubs. It returns ErrKey for a key that is
// not 32 bytes.
func NewKeys(pubs ...ed25519.PublicKey) (Keys, error) {
	ks := make(Keys, len(pubs))
	for _, p := range pubs {
		if len(p) != ed25519.PublicKeySize {
			return nil, vend.Errorf(ErrKey, "public key of %d bytes", len(p))
		}
		ks[KeyIDOf(p)] = p
	}
	return ks, nil
}

// Seal returns body ‖ Ed25519(priv, body): the signed form of a canonical body.
func seal(priv ed25519.PrivateKey, body []byte) ([]byte, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, vend.Errorf(ErrKey, "private key of %d bytes", len(priv))
	}
	sig := ed25519.Sign(priv, body)
	return append(body, sig...), nil
}

// open splits signed into body and signature and checks the signature under
// the key named by the KeyID at keyOff in the body.
func open(signed []byte, keys Keys, keyOff int, what string) ([]byte, error) {
	if len(signed) > MaxSigned {
		return nil, vend.Errorf(ErrTooLong, "%s of %d bytes, limit %d", what, len(signed), MaxSigned)
	}
	if len(signed) < ed25519.SignatureSize+keyOff+8 {
		return nil, vend.Errorf(ErrTruncated, "%s of %d bytes", what, len(signed))
	}
	body, sig := signed[:len(signed)-ed25519.SignatureSize], signed[len(signed)-ed25519.SignatureSize:]
	var id KeyID
	copy(id[:], body[keyOff:keyOff+8])
	pub, ok := keys[id]
	if !ok {
		return nil, vend.Errorf(ErrUnknownKey, "%s signed by key %s", what, id)
	}
	if !ed25519.Verify(pub, body, sig) {
		return nil, vend.Errorf(ErrSignature, "%s", what)
	}
	return body, nil
}
