package testrig

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"path/filepath"
	"strings"
	"testing"

	"beaconvend/controller/config"
	"beaconvend/hw/emu"
)

// StartEmulator runs the board emulator for simYAML on a pty, with its
// control socket in dir, and closes it when the test ends (after whatever
// the test registers later, such as the controller using it).
func StartEmulator(t testing.TB, dir, simYAML string) (*emu.Emulator, *emu.Control) {
	t.Helper()
	sim, err := emu.ParseSimConfig(strings.NewReader(simYAML))
	if err != nil {
		t.Fatal(err)
	}
	p, err := sim.ResolveProfile("")
	if err != nil {
		t.Fatal(err)
	}
	e, err := emu.Open(p, sim, &emu.Opts{ControlPath: filepath.Join(dir, "emu.sock")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go e.Run(ctx)
	ctl, err := emu.Dial(e.ControlPath())
	if err != nil {
		cancel()
		e.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctl.Close()
		cancel()
		e.Close()
	})
	return e, ctl
}

// Keys are a test device's keys: the cloud's signing key it trusts, its
// own usage key and its proximity identity key.
type Keys struct {
	Cloud     ed25519.PrivateKey
	DevicePub ed25519.PublicKey
	Identity  []byte
}

// WriteKeys generates fresh keys and writes identity.key and device.key
// (mode 0600) into dir, as a controller config names them.
func WriteKeys(t testing.TB, dir string) Keys {
	t.Helper()
	_, cloud, _ := ed25519.GenerateKey(rand.Reader)
	devPub, devPriv, _ := ed25519.GenerateKey(rand.Reader)
	id := make([]byte, 16)
	rand.Read(id)
	for name, data := range map[string]string{"identity.key": hex.EncodeToString(id), "device.key": hex.EncodeToString(devPriv.Seed())} {
		if err := config.WriteSecret(filepath.Join(dir, name), []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	return Keys{Cloud: cloud, DevicePub: devPub, Identity: id}
}

// CloudPublicHex is the cloud key as a controller config lists it.
func (k Keys) CloudPublicHex() string {
	return hex.EncodeToString(k.Cloud.Public().(ed25519.PublicKey))
}
