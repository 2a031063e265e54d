package server

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"beaconvend/cloud/internal/atomicfile"
)

// Secrets are the cloud's own keys in the data directory, made on first
// start (LoadSecrets).
type Secrets struct {
	CloudKey     ed25519.PrivateKey // signs grants (cloud.key)
	MQTTPassword string             // the cloud's broker password (mqtt-cloud.secret)
}

// LoadSecrets reads the secrets in dataDir, creating the missing ones
// (0600, written atomically). Errors name the file.
func LoadSecrets(dataDir string) (Secrets, error) {
	seed, err := ReadOrCreate(filepath.Join(dataDir, "cloud.key"), ed25519.SeedSize)
	if err == nil && len(seed) != ed25519.SeedSize {
		err = fmt.Errorf("%d bytes, want %d", len(seed), ed25519.SeedSize)
	}
	if err != nil {
		return Secrets{}, fmt.Errorf("server: cloud.key: %w", err)
	}
	pw, err := ReadOrCreate(filepath.Join(dataDir, "mqtt-cloud.secret"), 32)
	if err != nil {
		return Secrets{}, fmt.Errorf("server: mqtt-cloud.secret: %w", err)
	}
	return Secrets{CloudKey: ed25519.NewKeyFromSeed(seed), MQTTPassword: hex.EncodeToString(pw)}, nil
}

// ReadOrCreate returns the hex secret in file, creating it (0600) with n
// random bytes when it does not exist.
func ReadOrCreate(file string, n int) ([]byte, error) {
	b, err := os.ReadFile(file)
	if err == nil {
		return hex.DecodeString(strings.TrimSpace(string(b)))
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	raw := make([]byte, n)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	if err := WriteSecret(file, []byte(hex.EncodeToString(raw)+"\n")); err != nil {
		return nil, err
	}
	return raw, nil
}

// WriteSecret writes data to path with mode 0600, atomically
// (cloud/internal/atomicfile): a crash leaves the old file or the new
// one, never a partial one.
func WriteSecret(path string, data []byte) error {
	if err := atomicfile.Write(path, data); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	return nil
}
