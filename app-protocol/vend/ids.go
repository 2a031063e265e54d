package vend

// Identifier limits. Identifiers appear in MQTT topics and in the canonical
// signed encodings, so they are short printable ASCII with no separators
// that MQTT or a URL path would interpret ('/', '+', '#', spaces).
const (
	MaxDeviceIDLen  = 64 // bytes
	MaxMachineIDLen = 32 // bytes; also the limit for slot IDs
)

// Identifier errors.
var (
	ErrDeviceID  = E(Invalid, "id.device", "vend: invalid device id")
	ErrMachineID = E(Invalid, "id.machine", "vend: invalid machine id")
	ErrSlotID    = E(Invalid, "id.slot", "vend: invalid slot id")
)

// ValidateDeviceID returns ErrDeviceID unless id is 1..64 bytes of
// [a-z0-9._-] starting with a letter or digit.
func ValidateDeviceID(id string) error {
	if !validID(id, MaxDeviceIDLen, false) {
		return Errorf(ErrDeviceID, "%q: want 1-%d of a-z 0-9 . _ -", clip(id), MaxDeviceIDLen)
	}
	return nil
}

// ValidateMachineID returns ErrMachineID unless id is 1..32 bytes of
// [A-Za-z0-9._-] starting with a letter or digit.
func ValidateMachineID(id string) error {
	if !validID(id, MaxMachineIDLen, true) {
		return Errorf(ErrMachineID, "%q: want 1-%d of A-Z a-z 0-9 . _ -", clip(id), MaxMachineIDLen)
	}
	return nil
}

// ValidateSlotID is ValidateMachineID for slots, except that the empty slot
// (a machine without slots) is valid.
func ValidateSlotID(id string) error {
	if id != "" && !validID(id, MaxMachineIDLen, true) {
		return Errorf(ErrSlotID, "%q: want 0-%d of A-Z a-z 0-9 . _ -", clip(id), MaxMachineIDLen)
	}
	return nil
}

func validID(s string, max int, upper bool) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case upper && c >= 'A' && c <= 'Z':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// clip shortens s for an error message so a hostile input cannot make logs huge.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
