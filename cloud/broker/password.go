package broker

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"strconv"
	"strings"

	"beaconvend/app-protocol/vend"
)

// Password hash parameters. The format is Mosquitto 2's PBKDF2-SHA512 form,
// "$7$<iterations>$<base64 salt>$<base64 key>", so one stored hash serves
// the embedded broker and a Mosquitto password file alike.
const (
	HashIterations = 1000 // PBKDF2 rounds written by HashPassword (Mosquitto's own default is 101)
	HashSaltLen    = 12   // bytes of random salt, as mosquitto_passwd writes
	hashKeyLen     = 64   // bytes of derived key: one SHA-512 block
	maxIterations  = 1_000_000
	maxPasswordLen = 1024 // bytes; longer passwords are refused before hashing
)

// Credential errors.
var (
	ErrHashFormat = vend.E(vend.Invalid, "broker.hash_format", "broker: invalid password hash")
	ErrPassword   = vend.E(vend.Invalid, "broker.password", "broker: invalid password")
)

// HashPassword returns the Mosquitto "$7$" PBKDF2-SHA512 hash of password
// with a fresh 12-byte salt and [HashIterations] rounds. It returns
// ErrPassword for an empty password or one longer than 1024 bytes.
func HashPassword(password string) (string, error) {
	salt := make([]byte, HashSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	return hashWith(password, salt, HashIterations)
}

func hashWith(password string, salt []byte, iter int) (string, error) {
	if password == "" || len(password) > maxPasswordLen {
		return "", vend.Errorf(ErrPassword, "length %d: want 1-%d bytes", len(password), maxPasswordLen)
	}
	key, err := pbkdf2.Key(sha512.New, password, salt, iter, hashKeyLen)
	if err != nil {
		return "", vend.Errorf(ErrPassword, "%v", err)
	}
	return "$7$" + strconv.Itoa(iter) + "$" + base64.StdEncoding.EncodeToString(salt) + "$" +
		base64.StdEncoding.EncodeToString(key), nil
}

type parsedHash struct {
	iter      int
	salt, key []byte
}

func parseHash(hash string) (parsedHash, error) {
	rest, ok := strings.CutPrefix(hash, "$7$")
	if !ok {
		return parsedHash{}, vend.Errorf(ErrHashFormat, "want the $7$ (PBKDF2-SHA512) form")
	}
	parts := strings.Split(rest, "$")
	if len(parts) != 3 {
		return parsedHash{}, vend.Errorf(ErrHashFormat, "want $7$<iterations>$<salt>$<key>")
	}
	iter, err := strconv.Atoi(parts[0])
	if err != nil || iter < 1 || iter > maxIterations {
		return parsedHash{}, vend.Errorf(ErrHashFormat, "iterations %q: want 1-%d", parts[0], maxIterations)
	}
	salt, err := base64.StdEncoding.DecodeString(parts[1])
	if err != nil || len(salt) == 0 {
		return parsedHash{}, vend.Errorf(ErrHashFormat, "salt: want standard base64")
	}
	key, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(key) != hashKeyLen {
		return parsedHash{}, vend.Errorf(ErrHashFormat, "key: want %d bytes of standard base64", hashKeyLen)
	}
	return parsedHash{iter: iter, salt: salt, key: key}, nil
}

// ValidateHash returns ErrHashFormat unless hash is a well-formed "$7$" hash.
func ValidateHash(hash string) error {
	_, err := parseHash(hash)
	return err
}

// VerifyPassword reports whether password matches hash, comparing in
// constant time. It returns ErrHashFormat when hash is not a "$7$" hash; a
// wrong password is (false, nil).
func VerifyPassword(hash, password string) (bool, error) {
	h, err := parseHash(hash)
	if err != nil {
		return false, err
	}
	if password == "" || len(password) > maxPasswordLen {
		return false, nil
	}
	key, err := pbkdf2.Key(sha512.New, password, h.salt, h.iter, hashKeyLen)
	if err != nil {
		return false, vend.Errorf(ErrPassword, "%v", err)
	}
	return subtle.ConstantTimeCompare(key, h.key) == 1, nil
}
