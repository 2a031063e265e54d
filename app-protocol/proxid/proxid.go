package proxid

import (
	"crypto/aes"
	"encoding/binary"
	"encoding/hex"
	"time"

	"beaconvend/app-protocol/vend"
)

// Size is the length of a proximity ID in bytes, as in Eddystone-EID.
const Size = 8

// KeySize is the length of a device identity key in bytes (AES-128).
const KeySize = 16

// DefaultK is the default rotation exponent: IDs rotate every 2^5 = 32 s.
// See the package documentation for why.
const DefaultK = 5

// MaxK is the largest rotation exponent, as in Eddystone-EID (2^15 s ≈ 9 h).
const MaxK = 15

// ID is a rotating proximity ID: the first 8 bytes of an AES-128 block.
type ID [Size]byte

// Key is a device's 16-byte identity key. Only the device and the cloud's
// resolver know it; it never leaves either.
type Key [KeySize]byte

// Errors.
var (
	ErrK       = vend.E(vend.Invalid, "proximity.k", "proxid: rotation exponent out of range 0-15")
	ErrIDText  = vend.E(vend.Invalid, "proximity.id_text", "proxid: proximity id must be 16 hex digits")
	ErrKeyText = vend.E(vend.Invalid, "proximity.key_text", "proxid: identity key must be 32 hex digits")
)

// String returns the ID as 16 lower-case hex digits, the form the phone API uses.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// ParseID parses 16 hex digits (either case), or returns ErrIDText.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 2*Size {
		return id, vend.Errorf(ErrIDText, "got %d characters", len(s))
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return ID{}, vend.Errorf(ErrIDText, "%q", s)
	}
	return id, nil
}

// MarshalText encodes 16 hex digits.
func (id ID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText decodes 16 hex digits.
func (id *ID) UnmarshalText(b []byte) error {
	v, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// ParseKey parses 32 hex digits, or returns ErrKeyText.
func ParseKey(s string) (Key, error) {
	var k Key
	if len(s) != 2*KeySize {
		return k, vend.Errorf(ErrKeyText, "got %d characters", len(s))
	}
	if _, err := hex.Decode(k[:], []byte(s)); err != nil {
		return Key{}, vend.Errorf(ErrKeyText, "not hex")
	}
	return k, nil
}

// String returns the key as 32 hex digits. It is a secret: never log it.
func (k Key) String() string { return hex.EncodeToString(k[:]) }

// ValidateK returns ErrK unless 0 <= k <= MaxK.
func ValidateK(k uint8) error {
	if k > MaxK {
		return vend.Errorf(ErrK, "k=%d", k)
	}
	return nil
}

// Counter returns the time counter for t: Unix seconds as a uint32. The
// counter wraps in 2106.
func Counter(t time.Time) uint32 { return uint32(t.Unix()) }

// WindowStart returns counter with its low k bits cleared: the first second
// of the window that contains it.
func WindowStart(counter uint32, k uint8) uint32 { return counter &^ (1<<k - 1) }

// Window returns the window start for time t under exponent k.
func Window(t time.Time, k uint8) uint32 { return WindowStart(Counter(t), k) }

// Compute returns the proximity ID of the window that contains counter, under
// the identity key and rotation exponent k (which must be valid; see
// ValidateK). It is Eddystone-EID's algorithm:
//
//	tk  = AES-128(key, 0x00×11 ‖ 0xFF ‖ 0x00 0x00 ‖ counter[31:16] big-endian)
//	eid = AES-128(tk,  0x00×11 ‖ k ‖ (counter with low k bits cleared) big-endian)[0:8]
func Compute(key Key, counter uint32, k uint8) ID {
	tk := TempKey(key, counter)
	return computeWithTemp(&tk, counter, k)
}

// TempKey returns the temporary key for the 2^16-second epoch that contains
// counter. Resolvers cache it: it changes only every 18.2 hours.
func TempKey(key Key, counter uint32) Key {
	c, err := aes.NewCipher(key[:])
	if err != nil {
		panic(err) // unreachable: the key is always 16 bytes
	}
	var in, out [16]byte
	in[11] = 0xFF
	in[14] = byte(counter >> 24)
	in[15] = byte(counter >> 16)
	c.Encrypt(out[:], in[:])
	return Key(out)
}

func computeWithTemp(tk *Key, counter uint32, k uint8) ID {
	c, err := aes.NewCipher(tk[:])
	if err != nil {
		panic(err) // unreachable
	}
	var in, out [16]byte
	in[11] = k
	binary.BigEndian.PutUint32(in[12:], WindowStart(counter, k))
	c.Encrypt(out[:], in[:])
	var id ID
	copy(id[:], out[:Size])
	return id
}

// Rotator computes a device's current ID and tells when it next changes. It
// is what the board's beacon runs.
type Rotator struct {
	Key Key
	K   uint8
	Now func() time.Time // defaults to time.Now
}

// Current returns the ID for now, the window start, and the time the next
// window begins.
func (r *Rotator) Current() (id ID, window uint32, next time.Time) {
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	c := Counter(now())
	w := WindowStart(c, r.K)
	return Compute(r.Key, c, r.K), w, time.Unix(int64(w)+int64(1)<<r.K, 0)
}
