package vend

import (
	"crypto/rand"
	"encoding/hex"
)

// SessionID names one session everywhere: in the grant, the usage report,
// the MQTT payloads and the phone API. It is 16 random bytes; its text form
// is the canonical lower-case UUID layout (8-4-4-4-12 hex digits), which app
// platforms parse natively (java.util.UUID, Foundation.UUID).
type SessionID [16]byte

// ErrSessionID reports a session ID that is not 36 characters of UUID text.
var ErrSessionID = E(Invalid, "id.session", "vend: invalid session id")

// NewSessionID returns a random SessionID (version-4 UUID bits set).
func NewSessionID() SessionID {
	var s SessionID
	if _, err := rand.Read(s[:]); err != nil {
		panic("vend: crypto/rand failed: " + err.Error()) // crypto/rand never fails on Linux
	}
	s[6] = s[6]&0x0f | 0x40
	s[8] = s[8]&0x3f | 0x80
	return s
}

// IsZero reports whether s is all zero bytes (no session).
func (s SessionID) IsZero() bool { return s == SessionID{} }

// String returns the UUID text form.
func (s SessionID) String() string {
	var b [36]byte
	hex.Encode(b[0:8], s[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], s[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], s[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], s[8:10])
	b[23] = '-'
	hex.Encode(b[24:36], s[10:16])
	return string(b[:])
}

// ParseSessionID parses the UUID text form (either case), or returns ErrSessionID.
func ParseSessionID(t string) (SessionID, error) {
	var s SessionID
	if len(t) != 36 || t[8] != '-' || t[13] != '-' || t[18] != '-' || t[23] != '-' {
		return s, Errorf(ErrSessionID, "%q", clip(t))
	}
	h := t[0:8] + t[9:13] + t[14:18] + t[19:23] + t[24:36]
	if _, err := hex.Decode(s[:], []byte(h)); err != nil {
		return SessionID{}, Errorf(ErrSessionID, "%q", clip(t))
	}
	return s, nil
}

// MarshalText encodes the UUID text form.
func (s SessionID) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText decodes the UUID text form.
func (s *SessionID) UnmarshalText(b []byte) error {
	v, err := ParseSessionID(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}
