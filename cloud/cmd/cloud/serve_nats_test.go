package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	natsserver "github.com/nats-io/nats-server/v2/server"

	pb "beaconvend/app-protocol/provision"
	"beaconvend/cloud/broker/brokertest"
)

// The production path on one real node: `cloud broker nats-files` writes
// the node's configuration and the auth callout secrets; nats-server runs
// that configuration; `cloud serve` with broker.nats_auth naming the two
// files runs the responders and is admitted by them (it is ready only once
// its consumers are subscribed); `cloud device add -config` refuses an id
// holding '.' and writes a bundle whose password admits the board to its
// own subtree only, and nothing else is admitted with it.
func TestServeNATSFilesAuth(t *testing.T) {
	dir, data := t.TempDir(), t.TempDir()
	cp, clp, mp := brokertest.FreePort(t), brokertest.FreePort(t), brokertest.FreePort(t)
	natsFiles(t, "-out", dir, "-nodes", "1", "-client-port", strconv.Itoa(cp), "-cluster-port", strconv.Itoa(clp),
		"-mqtt-port", strconv.Itoa(mp), "-store", filepath.Join(dir, "js"))
	o, err := natsserver.ProcessConfigFile(filepath.Join(dir, "n0", "nats-server.conf"))
	if err != nil {
		t.Fatal(err)
	}
	o.NoSigs, o.NoLog = true, true
	ns, err := natsserver.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}

	cfgFile := filepath.Join(t.TempDir(), "cloud.yaml")
	mqttURL := fmt.Sprintf("tcp://127.0.0.1:%d", mp)
	cfg := fmt.Sprintf(`development: true
payments: {channels: [sandbox_card]}
broker:
  kind: nats
  url: %s
  nats_urls: [nats://127.0.0.1:%d]
  nats_auth: {issuer_seed_file: %s, password_file: %s}
`, mqttURL, cp, filepath.Join(dir, natsIssuerSeedFile), filepath.Join(dir, natsAuthPassFile))
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	serveInProcess(t, "-config", cfgFile, "-data", data)

	runCLI(t, data, "operator", "add", "-name", "Acme", "-email", "ops@acme.example", "-password-file", passwordFile(t, "acme-password-1"))
	out := t.TempDir()
	add := []string{"device", "add", "-config", cfgFile, "-operator", "Acme", "-mqtt-url", mqttURL}
	if err := runCLIErr(t, data, append(add, "-id", "nd.1", "-out", filepath.Join(out, "dot"))...); err == nil || !strings.Contains(err.Error(), "NATS") {
		t.Fatalf("device add nd.1 on NATS: %v, want refused", err)
	}
	res := runCLI(t, data, append(add, "-id", "nd-1", "-out", filepath.Join(out, "nd-1"))...)
	raw, err := os.ReadFile(res["bundle"])
	if err != nil {
		t.Fatal(err)
	}
	b, err := pb.Decode(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}

	dial := func(id, user, pass string) (paho.Client, error) {
		c := paho.NewClient(paho.NewClientOptions().AddBroker(mqttURL).SetClientID(id).SetUsername(user).SetPassword(pass).
			SetAutoReconnect(false).SetConnectTimeout(5 * time.Second))
		tok := c.Connect()
		if !tok.WaitTimeout(10 * time.Second) {
			return nil, fmt.Errorf("connect %s: timeout", id)
		}
		if err := tok.Error(); err != nil {
			return nil, err
		}
		t.Cleanup(func() { c.Disconnect(50) })
		return c, nil
	}
	if _, err := dial("nd-1", "nd-1", b.MQTT.Password+"x"); err == nil {
		t.Error("nd-1 with a wrong password admitted")
	}
	c, err := dial("nd-1", b.MQTT.Username, b.MQTT.Password)
	if err != nil {
		t.Fatalf("nd-1 with its bundle's password: %v", err)
	}
	for filter, want := range map[string]byte{"bv/v1/dev/nd-1/cmd": 1, "bv/v1/dev/nd-2/cmd": 0x80, "bv/v1/dev/+/usage": 0x80} {
		tok := c.Subscribe(filter, 1, nil)
		if !tok.WaitTimeout(10 * time.Second) {
			t.Fatalf("subscribe %s: timeout", filter)
		}
		if got := tok.(*paho.SubscribeToken).Result()[filter]; got != want {
			t.Errorf("nd-1 subscribe %s granted %#x, want %#x", filter, got, want)
		}
	}
}
