package wiring_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"beaconvend/app-protocol/provision"
	"beaconvend/app-protocol/proxid"
	"beaconvend/app-protocol/vend"
	"beaconvend/controller/config"
	"beaconvend/controller/wiring"
)

// testCA is a self-signed CA certificate (PEM), made once.
var testCA = func() string {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "wiring test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}()

// bundle makes a valid bundle with fresh keys and the given machines.
func bundle(t testing.TB, machines ...provision.Machine) *provision.Bundle {
	t.Helper()
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	var id proxid.Key
	rand.Read(id[:])
	seed := make([]byte, ed25519.SeedSize)
	rand.Read(seed)
	b := &provision.Bundle{Version: provision.Version, DeviceID: "dev-1", OperatorID: "op_1", IdentityKey: id, DeviceKey: seed, K: 3,
		CloudPublicKeys: []ed25519.PublicKey{pub},
		MQTT:            provision.MQTT{URL: "ssl://broker.example:8883", Username: "dev-1", Password: "pw-secret", CAPEM: testCA},
		Machines:        machines}
	if err := b.Validate(); err != nil {
		t.Fatal(err)
	}
	return b
}

func machines(kind vend.MachineKind, n int) []provision.Machine {
	var ms []provision.Machine
	price := map[vend.MachineKind]vend.Price{vend.KindWater: {Minor: 50, Per: 1000}, vend.KindWasher: {Minor: 350, Per: 1},
		vend.KindDryer: {Minor: 100, Per: 600}, vend.KindVending: {Minor: 150, Per: 1}}[kind]
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("%s%d", kind, i)
		if kind == vend.KindWater {
			id = fmt.Sprintf("tap%d", i)
		}
		m := provision.Machine{ID: id, Kind: kind, Name: id, Unit: kind.Unit(), Currency: "EUR", Price: price}
		if kind == vend.KindVending {
			m.ID = "vm1"
			for j := 1; j <= 3; j++ {
				m.Slots = append(m.Slots, provision.Slot{ID: fmt.Sprintf("A%d", j), Name: "item", Price: vend.Price{Minor: int64(100 + j), Per: 1}})
			}
		}
		ms = append(ms, m)
	}
	return ms
}

func parseWiring(t testing.TB, text string) *wiring.Wiring {
	t.Helper()
	w, err := wiring.Parse(strings.NewReader(text), t.TempDir())
	if err != nil {
		t.Fatalf("Parse(%q): %v", text, err)
	}
	return w
}

// importTo imports into a fresh directory and loads the result back.
func importTo(t *testing.T, b *provision.Bundle, w *wiring.Wiring, o wiring.Opts) (*config.Config, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "etc")
	path, err := wiring.Import(b, w, dir, o)
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return c, dir
}

// A minimal wiring (profile and port) wires every kind as the all-in-one
// `cloud device add` did, and the result is a config the controller
// starts with: keys from the bundle, files 0600, the real radio.
func TestMinimalWiringEachKind(t *testing.T) {
	type wired struct{ a, b, c string }
	for _, tc := range []struct {
		name, profile string
		ms            []provision.Machine
		want          []wired // water: valve, flow; washer: coin, running; vending: drop, counter, motors
	}{
		{"water", "pulse-io-4", machines(vend.KindWater, 2), []wired{{"out1", "count1", ""}, {"out2", "count2", ""}}},
		{"washers", "generic-relay-8", machines(vend.KindWasher, 4), []wired{{"relay1", "in1", ""}, {"relay2", "in2", ""}, {"relay3", "in3", ""}, {"relay4", "in4", ""}}},
		{"dryer", "generic-relay-8", machines(vend.KindDryer, 1), []wired{{"relay1", "in1", ""}}},
		{"vending-relay-16", "generic-relay-16", machines(vend.KindVending, 1), []wired{{"in16", "", "relay1 relay2 relay3"}}},
		{"vending-pulse-io-4", "pulse-io-4", machines(vend.KindVending, 1), []wired{{"in1", "count1", "out1 out2 out3"}}},
		{"water and vending share a board", "pulse-io-4", append(machines(vend.KindWater, 1), machines(vend.KindVending, 1)...),
			[]wired{{"out1", "count1", ""}, {"in2", "count2", "out2 out3 out4"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := bundle(t, tc.ms...)
			c, dir := importTo(t, b, parseWiring(t, "profile: "+tc.profile+"\nport: /dev/ttyUSB0\n"), wiring.Opts{})
			var got []wired
			for _, m := range c.Machines {
				switch {
				case m.Water != nil:
					got = append(got, wired{m.Water.Valve, m.Water.Flow, ""})
					if m.Water.KFactor != wiring.DefaultKFactor {
						t.Errorf("k_factor %q", m.Water.KFactor)
					}
				case m.Washer != nil:
					got = append(got, wired{m.Washer.Coin, m.Washer.Running, ""})
				case m.Vending != nil:
					var motors []string
					for _, s := range m.Slots {
						motors = append(motors, s.Output)
					}
					got = append(got, wired{m.Vending.Drop, m.Vending.DropCounter, strings.Join(motors, " ")})
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("wired %v, want %v", got, tc.want)
			}
			for i, m := range c.Machines {
				bm := b.Machines[i]
				if m.ID != bm.ID || m.Kind != bm.Kind || m.Currency != bm.Currency {
					t.Errorf("machine %d = %+v, want the bundle's %+v", i, m, bm)
				}
				if bm.Kind != vend.KindVending && (m.Price == nil || *m.Price != bm.Price) {
					t.Errorf("machine %s price %v, want %v", m.ID, m.Price, bm.Price)
				}
				for j, s := range m.Slots {
					if s.ID != bm.Slots[j].ID || s.Price != bm.Slots[j].Price {
						t.Errorf("slot %d = %+v, want %+v", j, s, bm.Slots[j])
					}
				}
			}
			if c.Beacon.Backend != "hci" || *c.Beacon.K != b.K || c.MQTT.Broker != b.MQTT.URL || c.MQTT.Username != b.DeviceID ||
				c.Journal != wiring.DefaultJournal || c.DeviceID != b.DeviceID {
				t.Errorf("config %+v", c)
			}
			sec, err := c.LoadSecrets()
			if err != nil {
				t.Fatal(err)
			}
			if sec.Identity != b.IdentityKey || !bytes.Equal(sec.Device.Seed(), b.DeviceKey) || sec.MQTTPass != b.MQTT.Password {
				t.Errorf("secrets do not match the bundle")
			}
			if ca, _ := os.ReadFile(c.Path(c.MQTT.TLS.CAFile)); string(ca) != testCA {
				t.Errorf("ca.pem = %q", ca)
			}
			ents, _ := os.ReadDir(dir)
			var names []string
			for _, e := range ents {
				fi, _ := e.Info()
				names = append(names, e.Name())
				if fi.Mode().Perm() != 0o600 {
					t.Errorf("%s has mode %04o, want 0600", e.Name(), fi.Mode().Perm())
				}
			}
			if want := []string{"ca.pem", "controller.yaml", "device.key", "identity.key", "mqtt.pass"}; !reflect.DeepEqual(names, want) {
				t.Errorf("files %v, want %v (no temporary files left)", names, want)
			}
		})
	}
}

// The shipped example wiring imports a two-washer bundle with its tuning.
func TestExampleWiring(t *testing.T) {
	w, err := wiring.Load(filepath.Join("..", "testdata", "wiring.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	c, _ := importTo(t, bundle(t, machines(vend.KindWasher, 2)...), w, wiring.Opts{})
	w1 := c.Machines[0].Washer
	if w1.Coin != "relay1" || w1.Running != "in1" || w1.PulsesPerCredit != 4 || w1.PulseWidth.D().String() != "50ms" {
		t.Errorf("washer1 = %+v", w1)
	}
	if c.Modem.Port != "/dev/ttyUSB2" || c.Beacon.Name != "Laundry Main St" || c.Beacon.CompanyID != 0xFFFF {
		t.Errorf("config %+v", c)
	}
}

// A profile given as a file is relative to the wiring file and written as
// an absolute path, so the config loads from wherever it is installed.
func TestProfileFileRelativeToWiring(t *testing.T) {
	dir := t.TempDir()
	prof, err := os.ReadFile(filepath.Join("..", "..", "hw", "profile", "boards", "generic-relay-4.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "myboard.yaml"), bytes.Replace(prof, []byte("name: generic-relay-4"), []byte("name: my-board"), 1), 0o644)
	os.WriteFile(filepath.Join(dir, "wiring.yaml"), []byte("profile: myboard.yaml\nport: /dev/ttyS1\n"), 0o644)
	w, err := wiring.Load(filepath.Join(dir, "wiring.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	c, _ := importTo(t, bundle(t, machines(vend.KindWasher, 1)...), w, wiring.Opts{})
	if c.Profile().Name != "my-board" || !filepath.IsAbs(c.Board.Profile) {
		t.Errorf("profile %q (%s)", c.Board.Profile, c.Profile().Name)
	}
}

func TestErrorsNameTheField(t *testing.T) {
	washers := machines(vend.KindWasher, 2)
	for _, tc := range []struct {
		name   string
		ms     []provision.Machine
		wiring string
		want   string
	}{
		{"no profile", washers, "port: /dev/ttyUSB0\n", "profile: missing"},
		{"no port", washers, "profile: generic-relay-8\n", "port: missing"},
		{"unknown field", washers, "profile: generic-relay-8\nport: x\nbaud: 9600\n", "field baud not found"},
		{"unknown machine field", washers, "profile: generic-relay-8\nport: x\nmachines: {washer1: {coin: relay1, running: in1, coins: 2}, washer2: {coin: relay2, running: in2}}\n", "field coins not found"},
		{"unknown profile", washers, "profile: relay-99\nport: x\n", "profile: "},
		{"machine missing", washers, "profile: generic-relay-8\nport: x\nmachines: {washer1: {coin: relay1, running: in1}}\n", "machines.washer2: missing"},
		{"machine not in bundle", washers, "profile: generic-relay-8\nport: x\nmachines: {washer1: {coin: relay1, running: in1}, washer2: {coin: relay2, running: in2}, washer3: {coin: relay3, running: in3}}\n", "machines.washer3: not a machine of device dev-1"},
		{"field of another kind", washers, "profile: generic-relay-8\nport: x\nmachines: {washer1: {coin: relay1, running: in1, valve: relay5}, washer2: {coin: relay2, running: in2}}\n", "machines.washer1.valve: not a washer field"},
		{"channel missing", washers, "profile: generic-relay-8\nport: x\nmachines: {washer1: {coin: relay1}, washer2: {coin: relay2, running: in2}}\n", "machines.washer1.running: missing"},
		{"no such output", washers, "profile: generic-relay-8\nport: x\nmachines: {washer1: {coin: relay9, running: in1}, washer2: {coin: relay2, running: in2}}\n", `machines[0].washer.coin: no output "relay9"`},
		{"pulses per credit", washers, "profile: generic-relay-8\nport: x\nmachines: {washer1: {coin: relay1, running: in1, pulses_per_credit: 99}, washer2: {coin: relay2, running: in2}}\n", "machines.washer1.pulses_per_credit: 99"},
		{"pulse width", washers, "profile: generic-relay-8\nport: x\nmachines: {washer1: {coin: relay1, running: in1, pulse_width: 5ms}, washer2: {coin: relay2, running: in2}}\n", "machines.washer1.pulse_width: 5ms"},
		{"bad duration", washers, "profile: generic-relay-8\nport: x\nmachines: {washer1: {coin: relay1, running: in1, debounce: soon}, washer2: {coin: relay2, running: in2}}\n", `"soon" is not a duration`},
		{"bad k-factor", machines(vend.KindWater, 1), "profile: pulse-io-4\nport: x\nmachines: {tap1: {valve: out1, flow: count1, k_factor: lots}}\n", "machines[0].water.k_factor"},
		{"slot missing", machines(vend.KindVending, 1), "profile: generic-relay-16\nport: x\nmachines: {vm1: {drop: in16, slots: {A1: relay1, A2: relay2}}}\n", "machines.vm1.slots.A3: missing"},
		{"slot not in bundle", machines(vend.KindVending, 1), "profile: generic-relay-16\nport: x\nmachines: {vm1: {drop: in16, slots: {A1: relay1, A2: relay2, A3: relay3, B9: relay4}}}\n", "machines.vm1.slots.B9: no slot B9"},
		{"output twice", washers, "profile: generic-relay-8\nport: x\nmachines: {washer1: {coin: relay1, running: in1}, washer2: {coin: relay1, running: in2}}\n", "machines.washer2.coin: output relay1 is already machines.washer1.coin"},
		{"input twice", washers, "profile: generic-relay-8\nport: x\nmachines: {washer1: {coin: relay1, running: in1}, washer2: {coin: relay2, running: in1}}\n", "machines.washer2.running: input in1 is already machines.washer1.running"},
		{"motor twice", machines(vend.KindVending, 1), "profile: generic-relay-16\nport: x\nmachines: {vm1: {drop: in16, slots: {A1: relay1, A2: relay2, A3: relay1}}}\n", "machines.vm1.slots.A3: output relay1 is already machines.vm1.slots.A1"},
		{"empty machines", washers, "profile: generic-relay-8\nport: x\nmachines: {}\n", "machines: empty"},
		{"too many for the board", machines(vend.KindWater, 5), "profile: pulse-io-4\nport: x\n", "board pulse-io-4 has no free output (valve) for water \"tap5\""},
		{"water on a board without counters", machines(vend.KindWater, 1), "profile: generic-relay-8\nport: x\n", "no free counter (flow meter)"},
		{"sim signal with hci", washers, "profile: generic-relay-8\nport: x\nbeacon: {sim_rssi: -50}\n", "beacon.sim_rssi: only for the sim backend"},
		{"sim address with hci", washers, "profile: generic-relay-8\nport: x\nbeacon: {sim_addr: '239.1.1.1:5000'}\n", "beacon.sim_addr: only for the sim backend"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "out")
			w, err := wiring.Parse(strings.NewReader(tc.wiring), t.TempDir())
			if err == nil {
				_, err = wiring.Import(bundle(t, tc.ms...), w, dir, wiring.Opts{})
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("import of %q = %v, want an error containing %q", tc.wiring, err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "wiring: ") && !strings.Contains(err.Error(), "wiring") {
				t.Errorf("error %q does not name the package", err)
			}
			if vend.KindOf(err) != vend.Invalid {
				t.Errorf("error kind %v, want invalid", vend.KindOf(err))
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a failed import created %s", dir)
			}
		})
	}
	if _, err := wiring.Import(bundle(t, washers...), parseWiring(t, "profile: generic-relay-8\nport: x\n"), t.TempDir(), wiring.Opts{Beacon: "radio"}); err == nil || !strings.Contains(err.Error(), `backend "radio"`) {
		t.Errorf("Opts{Beacon: radio}: %v", err)
	}

	// The bundle: a CA that is no certificate; plaintext to a remote broker.
	minimal := parseWiring(t, "profile: generic-relay-8\nport: x\n")
	b := bundle(t, washers...)
	b.MQTT.CAPEM = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"
	if _, err := wiring.Import(b, minimal, t.TempDir(), wiring.Opts{}); err == nil || !strings.Contains(err.Error(), "mqtt.ca_pem: no PEM certificate") {
		t.Errorf("bad CA: %v", err)
	}
	for _, tc := range []struct {
		url       string
		plaintext bool
		ok        bool
	}{
		{"tcp://broker.example:1883", false, false},
		{"tcp://broker.example:1883", true, true},
		{"tcp://127.0.0.1:1883", false, true},
		{"tcp://localhost:1883", false, true},
		{"mqtt://10.0.0.5:1883", false, false},
	} {
		b := bundle(t, washers...)
		b.MQTT.URL = tc.url
		_, err := wiring.Import(b, minimal, filepath.Join(t.TempDir(), "out"), wiring.Opts{Plaintext: tc.plaintext})
		if (err == nil) != tc.ok || (err != nil && !strings.Contains(err.Error(), "in clear")) {
			t.Errorf("Import with %s (plaintext allowed: %v) = %v, want ok %v", tc.url, tc.plaintext, err, tc.ok)
		}
	}
}

// An existing board's config and keys are never replaced without Force:
// importing a second bundle over a live device must leave its keys.
func TestImportRefusesToReplace(t *testing.T) {
	w := parseWiring(t, "profile: generic-relay-8\nport: /dev/ttyUSB0\n")
	first, second := bundle(t, machines(vend.KindWasher, 1)...), bundle(t, machines(vend.KindWasher, 1)...)
	dir := t.TempDir()
	path, err := wiring.Import(first, w, dir, wiring.Opts{})
	if err != nil {
		t.Fatal(err)
	}
	keysOf := func() *config.Secrets {
		t.Helper()
		c, err := config.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		s, err := c.LoadSecrets()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if _, err := wiring.Import(second, w, dir, wiring.Opts{}); vend.KindOf(err) != vend.Conflict || !strings.Contains(err.Error(), "controller.yaml, identity.key, device.key, mqtt.pass, ca.pem") {
		t.Fatalf("second import = %v (kind %v), want a conflict naming the files", err, vend.KindOf(err))
	}
	if s := keysOf(); s.Identity != first.IdentityKey {
		t.Fatal("a refused import changed the identity key")
	}
	if _, err := wiring.Import(second, w, dir, wiring.Opts{Force: true}); err != nil {
		t.Fatal(err)
	}
	if s := keysOf(); s.Identity != second.IdentityKey || !bytes.Equal(s.Device.Seed(), second.DeviceKey) {
		t.Fatal("-force did not replace the keys")
	}

	// A stray key file alone (a half set-up board) is refused too.
	dir2 := t.TempDir()
	os.WriteFile(filepath.Join(dir2, "identity.key"), []byte("keep\n"), 0o600)
	if _, err := wiring.Import(first, w, dir2, wiring.Opts{}); !errors.Is(err, wiring.ErrExists) {
		t.Fatalf("import over identity.key = %v, want ErrExists", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir2, "identity.key")); string(b) != "keep\n" {
		t.Fatalf("identity.key overwritten: %q", b)
	}
	if ents, _ := os.ReadDir(dir2); len(ents) != 1 {
		t.Fatalf("refused import left %d files", len(ents))
	}
}

// The sim backend is an explicit choice; a bundle without a CA uses the
// system roots (no tls section, no ca.pem).
func TestSimBeaconAndSystemRoots(t *testing.T) {
	b := bundle(t, machines(vend.KindWasher, 1)...)
	b.MQTT.CAPEM = ""
	c, dir := importTo(t, b, parseWiring(t, "profile: generic-relay-8\nport: x\nbeacon: {sim_addr: '239.1.2.3:4000', sim_rssi: -61}\n"), wiring.Opts{Beacon: "sim"})
	if c.Beacon.Backend != "sim" || c.Beacon.SimAddr != "239.1.2.3:4000" || c.Beacon.SimRSSI != -61 || c.MQTT.TLS.CAFile != "" {
		t.Errorf("config %+v", c)
	}
	if _, err := os.Stat(filepath.Join(dir, "ca.pem")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ca.pem written without a CA in the bundle")
	}
}

// ImportFiles reads the bundle as `cloud device add` writes it.
func TestImportFiles(t *testing.T) {
	dir := t.TempDir()
	b := bundle(t, machines(vend.KindVending, 1)...)
	var buf bytes.Buffer
	if err := b.Encode(&buf); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "bundle.json"), buf.Bytes(), 0o600)
	os.WriteFile(filepath.Join(dir, "wiring.yaml"), []byte("profile: pulse-io-4\nport: /dev/ttyUSB0\n"), 0o644)
	path, err := wiring.ImportFiles(filepath.Join(dir, "bundle.json"), filepath.Join(dir, "wiring.yaml"), filepath.Join(dir, "etc"), wiring.Opts{})
	if err != nil {
		t.Fatal(err)
	}
	if path != filepath.Join(dir, "etc", "controller.yaml") {
		t.Errorf("path %s", path)
	}
	os.WriteFile(filepath.Join(dir, "bad.json"), bytes.Replace(buf.Bytes(), []byte(`"version": 1`), []byte(`"version": 9`), 1), 0o600)
	if _, err := wiring.ImportFiles(filepath.Join(dir, "bad.json"), filepath.Join(dir, "wiring.yaml"), filepath.Join(dir, "etc2"), wiring.Opts{}); err == nil || !strings.Contains(err.Error(), "version") {
		t.Errorf("bad bundle: %v", err)
	}
}

// The GATT relay is wired for the radio only: it reaches the config with
// its idle timeout, and a sim beacon with gatt is refused by name.
func TestGATTRelayWiring(t *testing.T) {
	b := bundle(t, machines(vend.KindWasher, 1)...)
	c, _ := importTo(t, b, parseWiring(t, "profile: generic-relay-8\nport: x\nbeacon: {offline_capable: true, gatt: true, gatt_idle_timeout: 45s}\n"), wiring.Opts{})
	if !c.Beacon.GATT || c.Beacon.GATTIdleTimeout.D() != 45*time.Second || !c.Beacon.Offline || c.Beacon.Backend != "hci" {
		t.Errorf("beacon %+v", c.Beacon)
	}
	c, _ = importTo(t, b, parseWiring(t, "profile: generic-relay-8\nport: x\n"), wiring.Opts{})
	if c.Beacon.GATT {
		t.Errorf("gatt on without the wiring asking: %+v", c.Beacon)
	}
	_, err := wiring.Import(b, parseWiring(t, "profile: generic-relay-8\nport: x\nbeacon: {gatt: true}\n"), filepath.Join(t.TempDir(), "out"), wiring.Opts{Beacon: "sim"})
	if err == nil || !strings.Contains(err.Error(), "beacon.gatt: only for the hci backend") {
		t.Errorf("gatt with the sim backend: %v", err)
	}
}

// The profile's claim input is never a machine's: wired explicitly it is
// refused by name, and the default wiring passes it by. A washer whose
// running input it were would reset the board to registration mode when
// it is still running at power-up.
func TestClaimInputIsNoMachines(t *testing.T) {
	dir := t.TempDir()
	prof, err := os.ReadFile(filepath.Join("..", "..", "hw", "profile", "boards", "generic-relay-8.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	prof = append(bytes.Replace(prof, []byte("name: generic-relay-8"), []byte("name: claimable-8"), 1), []byte("\nclaim_input: in1\n")...)
	if err := os.WriteFile(filepath.Join(dir, "claimable.yaml"), prof, 0o644); err != nil {
		t.Fatal(err)
	}
	b := bundle(t, machines(vend.KindWasher, 2)...)
	explicit := "profile: claimable.yaml\nport: x\nmachines: {washer1: {coin: relay1, running: in1}, washer2: {coin: relay2, running: in2}}\n"
	w, err := wiring.Parse(strings.NewReader(explicit), dir)
	if err == nil {
		_, err = wiring.Import(b, w, filepath.Join(t.TempDir(), "out"), wiring.Opts{})
	}
	if err == nil || !strings.Contains(err.Error(), "machines.washer1.running: input in1 is already the board's claim input") {
		t.Errorf("a machine wired to the claim input: %v", err)
	}
	w, err = wiring.Parse(strings.NewReader("profile: claimable.yaml\nport: x\n"), dir)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := importTo(t, b, w, wiring.Opts{})
	for _, m := range c.Machines {
		if m.Washer == nil || m.Washer.Running == "in1" {
			t.Errorf("default wiring gave %s the claim input: %+v", m.ID, m.Washer)
		}
	}
}
