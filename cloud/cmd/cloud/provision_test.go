package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pb "beaconvend/app-protocol/provision"
	"beaconvend/cloud/broker"
	"beaconvend/cloud/broker/brokertest"
)

// runCLIErr runs one CLI command and returns its error (ParseFlags or Run).
func runCLIErr(t *testing.T, data string, args ...string) error {
	t.Helper()
	m := NewMain()
	m.Stdout, m.Stderr = io.Discard, io.Discard
	m.StoreOpts.BcryptCost = 4
	err := m.ParseFlags(append(args, "-data", data))
	if err == nil {
		err = m.Run(t.Context())
	}
	if cerr := m.Close(); err == nil {
		err = cerr
	}
	return err
}

// `cloud device add` prints {"device","operator","bundle"} and writes a
// bundle the controller's import reads; the cloud no longer takes board
// flags; a second add of the same id, or into a non-empty directory, is
// refused without touching anything.
func TestDeviceAddBundle(t *testing.T) {
	data, out := t.TempDir(), t.TempDir()
	op := runCLI(t, data, "operator", "add", "-name", "Acme", "-email", "ops@acme.example", "-password-file", passwordFile(t, "acme-password-1"))
	dir := filepath.Join(out, "vm-1")
	res := runCLI(t, data, "device", "add", "-id", "vm-1", "-operator", "Acme", "-kind", "vending", "-slots", "A1:Cola:150,B5:Cookies:140",
		"-out", dir, "-mqtt-url", "ssl://broker.example:8883")
	if res["device"] != "vm-1" || res["operator"] != op["operator"] || res["bundle"] != filepath.Join(dir, "bundle.json") {
		t.Fatalf("device add printed %v", res)
	}
	raw, err := os.ReadFile(res["bundle"])
	if err != nil {
		t.Fatal(err)
	}
	b, err := pb.Decode(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if b.MQTT.URL != "ssl://broker.example:8883" || len(b.Machines) != 1 || len(b.Machines[0].Slots) != 2 || b.Machines[0].Slots[1].ID != "B5" {
		t.Errorf("bundle %+v", b)
	}
	for name, args := range map[string][]string{
		"-board":                  {"-id", "vm-2", "-board", "pulse-io-4"},
		"-port":                   {"-id", "vm-2", "-port", "/dev/ttyUSB0"},
		"no -mqtt-url":            {"-id", "vm-2", "-mqtt-url", ""},
		"same id":                 {"-id", "vm-1", "-out", filepath.Join(out, "again")},
		"same directory":          {"-id", "vm-3", "-out", dir},
		"plaintext remote broker": {"-id", "vm-4", "-mqtt-url", "tcp://broker.example:1883"},
	} {
		full := append([]string{"device", "add", "-operator", "Acme", "-kind", "vending", "-out", filepath.Join(out, "new"), "-mqtt-url", "ssl://b.example:8883"}, args...)
		if err := runCLIErr(t, data, full...); err == nil {
			t.Errorf("%s: no error", name)
		} else if strings.Contains(err.Error(), "panic") {
			t.Errorf("%s: %v", name, err)
		}
	}
	if after, _ := os.ReadFile(res["bundle"]); !bytes.Equal(after, raw) {
		t.Error("a refused add changed the existing bundle")
	}
	for _, d := range []string{"new", "again"} {
		if _, err := os.Stat(filepath.Join(out, d)); err == nil {
			t.Errorf("a refused add made %s", d)
		}
	}
}

// An operator's broker credentials on the embedded broker, checked
// through the store: the account reads its own devices' telemetry
// (through a wildcard), not another operator's, and publishes nothing.
func TestOperatorBrokerCredentialsEmbedded(t *testing.T) {
	data, out := t.TempDir(), t.TempDir()
	runCLI(t, data, "operator", "add", "-name", "Acme", "-email", "ops@acme.example", "-password-file", passwordFile(t, "acme-password-1"))
	runCLI(t, data, "operator", "add", "-name", "Other", "-email", "ops@other.example", "-password-file", passwordFile(t, "other-password-1"))
	for id, op := range map[string]string{"own-1": "Acme", "other-1": "Other"} {
		runCLI(t, data, "device", "add", "-id", id, "-operator", op, "-kind", "water", "-out", filepath.Join(out, id), "-mqtt-url", "tcp://127.0.0.1:1883")
	}
	cred := runCLI(t, data, "operator", "broker-credentials", "-operator", "Acme")
	if cred["password"] == "" || !strings.HasPrefix(cred["username"], broker.OperatorUserPrefix) {
		t.Fatalf("broker-credentials printed %v", cred)
	}
	// A second call replaces the password.
	again := runCLI(t, data, "operator", "broker-credentials", "-operator", "Acme", "-out", filepath.Join(out, "acme.pass"))
	pw, err := os.ReadFile(filepath.Join(out, "acme.pass"))
	if err != nil || again["password"] != "" || again["password_file"] == "" {
		t.Fatalf("broker-credentials -out printed %v (%v)", again, err)
	}
	if st, _ := os.Stat(filepath.Join(out, "acme.pass")); st.Mode().Perm() != 0o600 {
		t.Errorf("password file mode %v", st.Mode().Perm())
	}
	m := serveInProcess(t, "-data", data)
	if _, err := brokertest.Connect(t, brokertest.ClientOptions(m.MQTTURL, "_acme-old", cred["username"], cred["password"], nil)); err == nil {
		t.Error("the replaced password still works")
	}
	opSpy := &spy{}
	opc := brokertest.MustConnect(t, brokertest.ClientOptions(m.MQTTURL, "_acme-sub", cred["username"], strings.TrimSpace(string(pw)), nil))
	if err := brokertest.Done(opc.Subscribe("bv/v1/dev/+/telemetry", 1, opSpy.handler)); err != nil {
		t.Fatal(err)
	}
	cmdSpy := &spy{}
	for _, id := range []string{"own-1", "other-1"} {
		b := bundleOf(t, filepath.Join(out, id))
		c := brokertest.MustConnect(t, brokertest.ClientOptions(m.MQTTURL, id, id, b.MQTT.Password, nil))
		if err := brokertest.Done(c.Subscribe("bv/v1/dev/"+id+"/cmd", 1, cmdSpy.handler)); err != nil {
			t.Fatal(err)
		}
		if err := brokertest.Done(c.Publish("bv/v1/dev/"+id+"/telemetry", 0, false, "tel-from-"+id)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the operator hears its device", func() bool { return opSpy.count("tel-from-own-1") == 1 })
	_ = brokertest.Done(opc.Publish("bv/v1/dev/own-1/cmd", 1, false, "forged-by-operator"))
	time.Sleep(300 * time.Millisecond)
	if opSpy.count("tel-from-other-1") != 0 || cmdSpy.count("forged-by-operator") != 0 {
		t.Errorf("operator read %d of another operator's messages; its command delivered %d times", opSpy.count("tel-from-other-1"), cmdSpy.count("forged-by-operator"))
	}
}

// `cloud broker files` regenerates the site broker's files from the
// database, and `device disable -mosquitto-dir` takes the device out.
func TestBrokerFilesAndDisable(t *testing.T) {
	data, out := t.TempDir(), t.TempDir()
	mosq := filepath.Join(out, "mosq")
	site := []string{"-mqtt-url", "tcp://127.0.0.1:1883", "-mosquitto-dir", mosq, "-mosquitto-group", "", "-mosquitto-user", ""}
	runCLI(t, data, "operator", "add", "-name", "Acme", "-email", "ops@acme.example", "-password-file", passwordFile(t, "acme-password-1"))
	runCLI(t, data, "device", "add", "-id", "wd-1", "-operator", "Acme", "-out", filepath.Join(out, "wd-1"), "-mqtt-url", "tcp://127.0.0.1:1883")
	if err := runCLIErr(t, data, "broker", "files", "-mosquitto-dir", mosq); err == nil {
		t.Error("broker files without -mqtt-url: no error")
	}
	if res := runCLI(t, data, append([]string{"broker", "files"}, site...)...); res["mosquitto"] != mosq {
		t.Errorf("broker files printed %v", res)
	}
	pw, err := os.ReadFile(filepath.Join(mosq, "passwords"))
	if err != nil || !strings.Contains(string(pw), "wd-1:$7$") || !strings.Contains(string(pw), broker.DefaultCloudUser+":$7$") {
		t.Fatalf("passwords %q, %v", pw, err)
	}
	if res := runCLI(t, data, append([]string{"device", "disable", "-id", "wd-1"}, site...)...); res["state"] != "disabled" {
		t.Errorf("device disable printed %v", res)
	}
	if pw, _ := os.ReadFile(filepath.Join(mosq, "passwords")); strings.Contains(string(pw), "wd-1") {
		t.Errorf("a disabled device is still in the password file:\n%s", pw)
	}
}

// A device id holding '.' cannot connect to a NATS broker. Without
// -config, device add used to accept one whatever the broker; now the
// kind comes from -broker-kind or -config's broker.kind, and with
// neither such an id is refused, before anything is written.
func TestDeviceAddBrokerKind(t *testing.T) {
	data, out := t.TempDir(), t.TempDir()
	runCLI(t, data, "operator", "add", "-name", "Acme", "-email", "ops@acme.example", "-password-file", passwordFile(t, "acme-password-1"))
	natsCfg := filepath.Join(t.TempDir(), "cloud.yaml")
	if err := os.WriteFile(natsCfg, []byte("development: true\npayments: {channels: [sandbox_card]}\n"+
		"broker: {kind: nats, url: \"tcp://127.0.0.1:1\", nats_urls: [\"nats://127.0.0.1:2\"]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	add := func(id string, extra ...string) error {
		args := append([]string{"device", "add", "-id", id, "-operator", "Acme", "-out", filepath.Join(out, id), "-mqtt-url", "ssl://b.example:8883"}, extra...)
		return runCLIErr(t, data, args...)
	}
	for _, tc := range []struct {
		name, id string
		extra    []string
		refused  string // "" when admitted
	}{
		{"dot, kind unknown", "wd.1", nil, "-broker-kind"},
		{"no dot, kind unknown", "wd-1", nil, ""},
		{"dot on mqtt", "wd.2", []string{"-broker-kind", "mqtt"}, ""},
		{"dot on nats", "wd.3", []string{"-broker-kind", "nats"}, "NATS"},
		{"no dot on nats", "wd-3", []string{"-broker-kind", "nats"}, ""},
		{"unknown kind", "wd-4", []string{"-broker-kind", "kafka"}, "-broker-kind"},
		{"dot, config nats", "wd.5", []string{"-config", natsCfg}, "NATS"},
		{"flag against config", "wd-6", []string{"-config", natsCfg, "-broker-kind", "mqtt"}, "broker.kind nats"},
		{"flag agrees with config", "wd-7", []string{"-config", natsCfg, "-broker-kind", "nats"}, ""},
	} {
		err := add(tc.id, tc.extra...)
		_, statErr := os.Stat(filepath.Join(out, tc.id, "bundle.json"))
		switch {
		case tc.refused == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.refused == "" && statErr != nil:
			t.Errorf("%s: no bundle: %v", tc.name, statErr)
		case tc.refused != "" && (err == nil || !strings.Contains(err.Error(), tc.refused)):
			t.Errorf("%s: %v, want an error naming %q", tc.name, err, tc.refused)
		case tc.refused != "" && statErr == nil:
			t.Errorf("%s: refused, but a bundle was written", tc.name)
		}
	}
}
