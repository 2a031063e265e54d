package signed

import "beaconvend/app-protocol/vend"

// Errors. Codes are stable; the test vectors and MQTT nacks name them.
var (
	ErrTruncated    = vend.E(vend.Invalid, "canon.truncated", "signed: message too short")
	ErrTrailing     = vend.E(vend.Invalid, "canon.trailing", "signed: bytes after the last field")
	ErrTooLong      = vend.E(vend.Invalid, "canon.too_long", "signed: message too long")
	ErrType         = vend.E(vend.Invalid, "canon.type", "signed: wrong message type")
	ErrVersion      = vend.E(vend.Invalid, "canon.version", "signed: unknown message version")
	ErrField        = vend.E(vend.Invalid, "canon.field", "signed: invalid field")
	ErrKey          = vend.E(vend.Invalid, "sig.key", "signed: malformed key")
	ErrUnknownKey   = vend.E(vend.Unauthorized, "sig.unknown_key", "signed: signed by an unknown key")
	ErrSignature    = vend.E(vend.Unauthorized, "sig.invalid", "signed: signature does not verify")
	ErrWrongDevice  = vend.E(vend.Unauthorized, "grant.device", "signed: grant is for another device")
	ErrWrongMachine = vend.E(vend.Unauthorized, "grant.machine", "signed: grant is for another machine")
	ErrNotYetValid  = vend.E(vend.Invalid, "grant.not_yet_valid", "signed: grant issued in the future")
	ErrExpired      = vend.E(vend.Invalid, "grant.expired", "signed: grant expired")
	ErrReplayed     = vend.E(vend.Conflict, "grant.replayed", "signed: session already seen")
	ErrMismatch     = vend.E(vend.Invalid, "usage.mismatch", "signed: usage report departs from its grant")
)

func fieldErr(msg, field, why string) error {
	return vend.Errorf(ErrField, "%s %s: %s", msg, field, why)
}
