package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"beaconvend/cloud/store"
)

// `cloud -h` and `cloud serve -h` print help on stdout and exit 0; an
// unknown command prints the usage on stderr and exits 2. The program
// runs for real: this test binary re-executes itself as main.
func TestHelpExitCodes(t *testing.T) {
	if args := os.Getenv("BEACONVEND_CLOUD_MAIN"); args != "" {
		os.Args = append([]string{"cloud"}, strings.Fields(args)...)
		main()
		os.Exit(0)
	}
	for _, tc := range []struct {
		args   string
		code   int
		stdout string
	}{
		{"-h", 0, "usage: cloud serve"},
		{"serve -h", 0, "-config"},
		{"keys reencrypt -h", 0, "-dry-run"},
		{"frobnicate", 2, ""},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelpExitCodes$")
		cmd.Env = append(os.Environ(), "BEACONVEND_CLOUD_MAIN="+tc.args)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.code || !strings.Contains(out.String(), tc.stdout) {
			t.Errorf("cloud %s: exit %d, stdout %q; want exit %d with %q (stderr %q)", tc.args, code, out.String(), tc.code, tc.stdout, errb.String())
		}
	}
}

// `cloud serve` without -config or -dev refuses to start, saying what to
// give; with a production file missing a requirement it names the field.
func TestServeNeedsConfigOrDev(t *testing.T) {
	m := NewMain()
	m.Stderr = io.Discard
	err := m.ParseFlags([]string{"serve", "-data", t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "-config") || !strings.Contains(err.Error(), "-dev") {
		t.Fatalf("serve without a configuration: %v", err)
	}
	cfg := filepath.Join(t.TempDir(), "cloud.yaml")
	os.WriteFile(cfg, []byte("payments: {channels: [sandbox_card]}\n"), 0o644)
	m = NewMain()
	m.Stderr = io.Discard
	err = m.ParseFlags([]string{"serve", "-config", cfg})
	if err == nil || !strings.Contains(err.Error(), cfg) || !strings.Contains(err.Error(), "payments.channels") {
		t.Fatalf("serve with a production file enabling the sandbox: %v", err)
	}
}

// `cloud keys reencrypt -config` seals the identity keys of devices that
// `cloud device add` wrote without a key-encryption key, reports what it
// did as JSON, and changes nothing when run again; `device add -config`
// seals from the start. On both databases.
func TestKeysReencryptCommand(t *testing.T) {
	for _, b := range []struct {
		name string
		dsn  func(t *testing.T) string
	}{
		{"sqlite", func(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "cloud.db") }},
		{"postgres", pgScratchDSN},
	} {
		t.Run(b.name, func(t *testing.T) {
			dsn, data, out := b.dsn(t), t.TempDir(), t.TempDir()
			kek := filepath.Join(t.TempDir(), "kek")
			if err := os.WriteFile(kek, []byte(hex.EncodeToString(bytes.Repeat([]byte{9}, 32))), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg := filepath.Join(t.TempDir(), "cloud.yaml")
			if err := os.WriteFile(cfg, []byte("development: true\nkey_encryption: {key_file: "+kek+"}\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			run := func(args ...string) map[string]any {
				t.Helper()
				var stdout bytes.Buffer
				m := NewMain()
				m.Stdout, m.Stderr = &stdout, io.Discard
				m.StoreOpts.BcryptCost = 4
				if err := m.ParseFlags(append(args, "-data", data, "-db", dsn)); err != nil {
					t.Fatal(err)
				}
				err := m.Run(context.Background())
				if cerr := m.Close(); err == nil {
					err = cerr
				}
				if err != nil {
					t.Fatalf("cloud %s: %v", strings.Join(args, " "), err)
				}
				var res map[string]any
				if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
					t.Fatalf("cloud %s printed %q", strings.Join(args, " "), stdout.String())
				}
				return res
			}
			rawKey := func(id string) []byte {
				t.Helper()
				st, err := store.Open(context.Background(), dsn, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer st.Close()
				var raw []byte
				if err := st.DB().QueryRow(`SELECT identity_key FROM devices WHERE id = $1`, id).Scan(&raw); err != nil {
					t.Fatal(err)
				}
				return raw
			}
			run("operator", "add", "-name", "Acme", "-email", "ops@acme.example", "-password-file", passwordFile(t, "acme-password-1"))
			run("device", "add", "-id", "wd-clear", "-operator", "Acme", "-kind", "water", "-out", filepath.Join(out, "a"), "-mqtt-url", "tcp://127.0.0.1:1883")
			if raw := rawKey("wd-clear"); raw[0] != 0 {
				t.Fatalf("setup: device added without -config stored %x, want clear", raw)
			}
			run("device", "add", "-config", cfg, "-id", "wd-sealed", "-operator", "Acme", "-kind", "water", "-out", filepath.Join(out, "b"), "-mqtt-url", "tcp://127.0.0.1:1883")
			if raw := rawKey("wd-sealed"); raw[0] != 1 {
				t.Fatalf("device add -config stored %x, want sealed", raw)
			}
			dry := run("keys", "reencrypt", "-config", cfg, "-dry-run")
			if dry["sealed"] != 1.0 || dry["current"] != 1.0 || rawKey("wd-clear")[0] != 0 {
				t.Fatalf("dry run: %v", dry)
			}
			res := run("keys", "reencrypt", "-config", cfg)
			if res["sealed"] != 1.0 || res["current"] != 1.0 || rawKey("wd-clear")[0] != 1 {
				t.Fatalf("reencrypt: %v, row %x", res, rawKey("wd-clear"))
			}
			again := run("keys", "reencrypt", "-config", cfg)
			if again["sealed"] != 0.0 || again["current"] != 2.0 {
				t.Fatalf("second run: %v", again)
			}
		})
	}
}
