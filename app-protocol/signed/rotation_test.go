package signed_test

import (
	"errors"
	"testing"

	"beaconvend/app-protocol/signed"
)

func TestKeyRotation(t *testing.T) {
	cur, next, stranger := mustKey(t), mustKey(t), mustKey(t)
	trusted := mustKeys(t, pub(cur))
	sig, err := signed.SignKeyRotation(cur, pub(next))
	if err != nil {
		t.Fatal(err)
	}
	id, err := signed.VerifyKeyRotation(trusted, pub(next), sig)
	if err != nil || id != signed.KeyIDOf(pub(cur)) {
		t.Fatalf("VerifyKeyRotation = %s, %v", id, err)
	}
	// The signature does not introduce another key.
	if _, err := signed.VerifyKeyRotation(trusted, pub(stranger), sig); !errors.Is(err, signed.ErrSignature) {
		t.Errorf("other key with the same signature: %v", err)
	}
	// A key the device does not trust cannot introduce one.
	forged, _ := signed.SignKeyRotation(stranger, pub(next))
	if _, err := signed.VerifyKeyRotation(trusted, pub(next), forged); !errors.Is(err, signed.ErrSignature) {
		t.Errorf("untrusted signer: %v", err)
	}
	// A grant signature over other bytes is not a rotation signature.
	sg, _ := signed.SignGrant(cur, testGrant())
	if _, err := signed.VerifyKeyRotation(trusted, pub(next), sg[len(sg)-64:]); !errors.Is(err, signed.ErrSignature) {
		t.Errorf("grant signature reused: %v", err)
	}
	if _, err := signed.VerifyKeyRotation(trusted, pub(next)[:31], sig); !errors.Is(err, signed.ErrKey) {
		t.Errorf("short key: %v", err)
	}
}
