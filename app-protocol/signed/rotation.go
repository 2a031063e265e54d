package signed

import (
	"crypto/ed25519"

	"beaconvend/app-protocol/vend"
)

// TagKeyRotation starts the body a cloud key rotation signs.
const (
	TagKeyRotation     = 'K'
	KeyRotationVersion = 1
)

// keyRotationBody is 'K' ‖ version ‖ signer key id [8] ‖ new public key [32].
func keyRotationBody(signer KeyID, next ed25519.PublicKey) []byte {
	b := make([]byte, 0, 2+8+ed25519.PublicKeySize)
	b = append(b, TagKeyRotation, KeyRotationVersion)
	b = append(b, signer[:]...)
	return append(b, next...)
}

// SignKeyRotation returns the current cloud key's signature introducing
// next as a trusted cloud key: what an MQTT RotateKey{which: cloud} command
// carries in its signature field, so that only the holder of a key the
// device already trusts can add another. Errors: ErrKey.
func SignKeyRotation(current ed25519.PrivateKey, next ed25519.PublicKey) ([]byte, error) {
	if len(current) != ed25519.PrivateKeySize || len(next) != ed25519.PublicKeySize {
		return nil, vend.Errorf(ErrKey, "private key of %d bytes, next public key of %d bytes", len(current), len(next))
	}
	body := keyRotationBody(KeyIDOf(current.Public().(ed25519.PublicKey)), next)
	return ed25519.Sign(current, body), nil
}

// VerifyKeyRotation checks that sig introduces next and was made by one of
// the trusted keys, and returns that key's ID. Errors: ErrKey for a
// malformed key or signature, ErrSignature when no trusted key made it.
func VerifyKeyRotation(trusted Keys, next ed25519.PublicKey, sig []byte) (KeyID, error) {
	if len(next) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize {
		return KeyID{}, vend.Errorf(ErrKey, "next public key of %d bytes, signature of %d bytes", len(next), len(sig))
	}
	for id, pub := range trusted {
		if ed25519.Verify(pub, keyRotationBody(id, next), sig) {
			return id, nil
		}
	}
	return KeyID{}, vend.Errorf(ErrSignature, "key rotation to %s", KeyIDOf(next))
}
