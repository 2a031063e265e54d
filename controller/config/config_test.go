package config_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"beaconvend/controller/config"
)

// fixture writes key files and returns a valid config text and its directory.
func fixture(t *testing.T) (string, string) {
	t.Helper()
	dir := t.TempDir()
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	seed := make([]byte, 32)
	rand.Read(seed)
	id := make([]byte, 16)
	rand.Read(id)
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(config.WriteSecret(filepath.Join(dir, "identity.key"), []byte(hex.EncodeToString(id)+"\n")))
	must(config.WriteSecret(filepath.Join(dir, "device.key"), []byte(hex.EncodeToString(seed)+"\n")))
	must(config.WriteSecret(filepath.Join(dir, "mqtt.pass"), []byte("s3cret\n")))
	cfg := `device_id: dev-0001
keys:
  identity_key_file: identity.key
  device_key_file: device.key
  cloud_public_keys: [` + hex.EncodeToString(pub) + `]
mqtt:
  broker: tcp://127.0.0.1:1883
  password_file: mqtt.pass
journal: journal.db
board: {profile: pulse-io-4, port: /dev/ttyUSB0}
beacon: {backend: sim, name: Water 1}
machines:
  - id: m1
    kind: water
    currency: EUR
    price: {minor: 50, per: 1000}
    water: {valve: out1, flow: count1, k_factor: "450.5", no_flow: 5s}
`
	return cfg, dir
}

func TestLoadValid(t *testing.T) {
	text, dir := fixture(t)
	path := filepath.Join(dir, "controller.yaml")
	os.WriteFile(path, []byte(text), 0o644)
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.MQTT.Username != "dev-0001" || c.Profile().Name != "pulse-io-4" || *c.Beacon.K != 5 || c.Path("journal.db") != filepath.Join(dir, "journal.db") {
		t.Errorf("defaults/paths: %+v", c)
	}
	s, err := c.LoadSecrets()
	if err != nil {
		t.Fatal(err)
	}
	if s.MQTTPass != "s3cret" || len(s.Cloud) != 1 || len(s.Device) != ed25519.PrivateKeySize {
		t.Errorf("secrets: pass %q, %d cloud keys", s.MQTTPass, len(s.Cloud))
	}
}

// Validation errors name the field.
func TestErrorsNameTheField(t *testing.T) {
	text, dir := fixture(t)
	cases := []struct{ from, to, field string }{
		{"device_id: dev-0001", "device_id: Dev/1", "device_id"},
		{"broker: tcp://127.0.0.1:1883", "broker: http://x:1", "mqtt.broker"},
		{"broker: tcp://127.0.0.1:1883", "broker: nowhere", "mqtt.broker"},
		{"journal: journal.db", "journal: ''", "journal"},
		{"profile: pulse-io-4", "profile: no-such-board", "board.profile"},
		{"port: /dev/ttyUSB0", "port: ''", "board.port"},
		{"backend: sim", "backend: bluetooth", "beacon.backend"},
		{"backend: sim", "backend: sim, gatt: true", "beacon.gatt"},
		{"backend: sim", "backend: hci, gatt: true, gatt_idle_timeout: 1s", "beacon.gatt_idle_timeout"},
		{"currency: EUR", "currency: euro", "machines[0].currency"},
		{"kind: water", "kind: oven", "machines[0].kind"},
		{"valve: out1", "valve: out9", "machines[0].water.valve"},
		{"flow: count1", "flow: in1", "machines[0].water.flow"},
		{`k_factor: "450.5"`, `k_factor: "450.5555"`, "machines[0].water.k_factor"},
		{"price: {minor: 50, per: 1000}", "price: {minor: 50, per: 0}", "machines[0].price"},
		{"no_flow: 5s", "no_flow: five", "line"},
		{"cloud_public_keys: [", "cloud_public_keys: [abcd, ", "keys.cloud_public_keys[0]"},
		{"journal: journal.db", "journal: journal.db\nunknown_field: 1", "unknown_field"},
	}
	for _, tc := range cases {
		if !strings.Contains(text, tc.from) {
			t.Fatalf("fixture lacks %q", tc.from)
		}
		_, err := config.Parse(strings.NewReader(strings.Replace(text, tc.from, tc.to, 1)), dir)
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s → %s: error %v, want one naming %q", tc.from, tc.to, err, tc.field)
		}
	}
}

// Key files readable by group or others stop the daemon with a reason.
func TestKeyFilePermissions(t *testing.T) {
	text, dir := fixture(t)
	c, err := config.Parse(strings.NewReader(text), dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"identity.key", "device.key", "mqtt.pass"} {
		p := filepath.Join(dir, f)
		os.Chmod(p, 0o644)
		_, err := c.LoadSecrets()
		if !errors.Is(err, config.ErrKeyPerms) || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("%s at 0644: %v", f, err)
		}
		os.Chmod(p, 0o600)
	}
	if _, err := c.LoadSecrets(); err != nil {
		t.Errorf("all 0600: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "device.key"), []byte("not hex"), 0o600)
	if _, err := c.LoadSecrets(); !errors.Is(err, config.ErrKeyFile) {
		t.Errorf("bad device key: %v", err)
	}
}

func TestParseKFactor(t *testing.T) {
	good := map[string]uint64{"450": 450000, "450.5": 450500, "7.125": 7125, "1": 1000, "100000": 100000000}
	for s, want := range good {
		if got, err := config.ParseKFactor(s); err != nil || got != want {
			t.Errorf("ParseKFactor(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "0.5", "450.1234", "-1", "4e2", "1.x", "100001"} {
		if _, err := config.ParseKFactor(s); err == nil {
			t.Errorf("ParseKFactor(%q) accepted", s)
		}
	}
}

// A vending machine may name the counter its drop input is counted on;
// a counter the board does not have is refused, naming the field.
func TestVendingDropCounter(t *testing.T) {
	text, dir := fixture(t)
	const water = "    water: {valve: out1, flow: count1, k_factor: \"450.5\", no_flow: 5s}\n"
	vm := func(counter string) string {
		return water + "  - id: vm\n    kind: vending\n    currency: EUR\n    vending: {drop: in2, drop_counter: " + counter + "}\n" +
			"    slots: [{id: A1, output: out2, price: {minor: 150, per: 1}}]\n"
	}
	if !strings.Contains(text, water) {
		t.Fatalf("fixture lacks %q", water)
	}
	c, err := config.Parse(strings.NewReader(strings.Replace(text, water, vm("count2"), 1)), dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Machines[1].Vending.DropCounter; got != "count2" {
		t.Errorf("drop_counter = %q, want count2", got)
	}
	_, err = config.Parse(strings.NewReader(strings.Replace(text, water, vm("count9"), 1)), dir)
	if err == nil || !strings.Contains(err.Error(), "machines[1].vending.drop_counter") {
		t.Errorf("drop_counter count9: error %v, want one naming machines[1].vending.drop_counter", err)
	}
}
