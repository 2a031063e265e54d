package config

import (
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"beaconvend/app-protocol/proxid"
	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
)

// Secrets are the keys the controller runs with, read from the key files.
type Secrets struct {
	Identity  proxid.Key         // proximity identity key
	Device    ed25519.PrivateKey // usage signing key
	Cloud     signed.Keys        // trusted cloud keys
	MQTTPass  string             // broker password ("" when none)
	TLSKeyPEM []byte             // client TLS key, when configured
}

// LoadSecrets reads every key file, refusing any secret file that group or
// others can read or write (mode must be 0600 or 0400): a controller in an
// unattended cabinet must not leak its keys to another local user.
func (c *Config) LoadSecrets() (*Secrets, error) {
	var s Secrets
	raw, err := readSecret("keys.identity_key_file", c.Path(c.Keys.IdentityKeyFile))
	if err != nil {
		return nil, err
	}
	if s.Identity, err = proxid.ParseKey(strings.TrimSpace(string(raw))); err != nil {
		return nil, vend.Errorf(ErrKeyFile, "keys.identity_key_file: %v", err)
	}
	raw, err = readSecret("keys.device_key_file", c.Path(c.Keys.DeviceKeyFile))
	if err != nil {
		return nil, err
	}
	seed, err := hex.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, vend.Errorf(ErrKeyFile, "keys.device_key_file: want 64 hex digits (an Ed25519 seed)")
	}
	s.Device = ed25519.NewKeyFromSeed(seed)
	var pubs []ed25519.PublicKey
	for _, k := range c.Keys.CloudPublicKeys {
		b, _ := hex.DecodeString(k) // validated by Load
		pubs = append(pubs, ed25519.PublicKey(b))
	}
	if s.Cloud, err = signed.NewKeys(pubs...); err != nil {
		return nil, err
	}
	if c.MQTT.PasswordFile != "" {
		raw, err := readSecret("mqtt.password_file", c.Path(c.MQTT.PasswordFile))
		if err != nil {
			return nil, err
		}
		s.MQTTPass = strings.TrimRight(string(raw), "\r\n")
	}
	if c.MQTT.TLS.KeyFile != "" {
		if s.TLSKeyPEM, err = readSecret("mqtt.tls.key_file", c.Path(c.MQTT.TLS.KeyFile)); err != nil {
			return nil, err
		}
	}
	return &s, nil
}

func readSecret(field, path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, vend.Errorf(ErrKeyFile, "%s: %v", field, err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, vend.Errorf(ErrKeyPerms, "%s: %s has mode %04o; run chmod 600 %s", field, path, perm, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, vend.Errorf(ErrKeyFile, "%s: %v", field, err)
	}
	if len(b) > 4096 {
		return nil, vend.Errorf(ErrKeyFile, "%s: %s is %d bytes, too large for a key", field, path, len(b))
	}
	return b, nil
}

// WriteSecret writes a secret file atomically with mode 0600: a temporary
// file in the same directory, fsync, rename, fsync of the directory.
func WriteSecret(path string, data []byte) error {
	return writeAtomic(path, data, 0o600)
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("config: write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("config: write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("config: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("config: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("config: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("config: write %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// WriteFile writes a non-secret file (a config) atomically with mode 0644.
func WriteFile(path string, data []byte) error { return writeAtomic(path, data, 0o644) }
