package server_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"beaconvend/cloud/broker"
	"beaconvend/cloud/broker/natscluster"
	"beaconvend/cloud/server"
	"beaconvend/cloud/store"
)

// natsAuthFiles writes a cluster's auth callout secrets as `cloud broker
// nats-files` does (0600) and returns their paths.
func natsAuthFiles(t *testing.T, c *natscluster.Cluster, dir string) (seedFile, pwFile string) {
	t.Helper()
	seedFile, pwFile = filepath.Join(dir, "auth-issuer.seed"), filepath.Join(dir, "auth-user.password")
	if err := os.WriteFile(seedFile, append(c.IssuerSeed, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pwFile, []byte(c.AuthPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return seedFile, pwFile
}

type mqttClient struct {
	paho.Client
	got chan paho.Message
}

// mqttDial connects once (no automatic reconnect) as user with client id
// id.
func mqttDial(t *testing.T, url, id, user, pass string) (*mqttClient, error) {
	t.Helper()
	c := &mqttClient{got: make(chan paho.Message, 100)}
	o := paho.NewClientOptions().AddBroker(url).SetClientID(id).SetUsername(user).SetPassword(pass).
		SetCleanSession(true).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { c.got <- m })
	c.Client = paho.NewClient(o)
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

// mqttDialRetry connects, retrying a few times: in the moment after a
// responder is lost a node may still route one request to it, and that
// connect times out (natsauth's doc); a device retries.
func mqttDialRetry(t *testing.T, url, id, user, pass string) (*mqttClient, int) {
	t.Helper()
	for try := 0; ; try++ {
		c, err := mqttDial(t, url, id, user, pass)
		if err == nil {
			return c, try
		}
		if try == 3 {
			t.Fatalf("%s never admitted: %v", id, err)
		}
	}
}

func (c *mqttClient) suback(t *testing.T, filter string) byte {
	t.Helper()
	tok := c.Subscribe(filter, 1, nil)
	if !tok.WaitTimeout(10 * time.Second) {
		t.Fatalf("subscribe %s: timeout", filter)
	}
	return tok.(*paho.SubscribeToken).Result()[filter]
}

func (c *mqttClient) publish(t *testing.T, topic, payload string, retained bool) {
	t.Helper()
	tok := c.Publish(topic, 1, retained, payload)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// `cloud serve` with broker.kind nats and broker.nats_auth runs the auth
// callout responders itself, backed by its store, on three real NATS
// nodes that run none of their own: the cloud is admitted (it becomes
// ready only once its consumers are subscribed); a device with its
// password gets its own subtree and nothing else; a wrong password, an
// unknown device and a disabled device are refused; an operator's
// read-only account reads its own devices only; with one of the two
// responders closed, devices are still admitted; the answers are
// exported on /metrics.
func TestServeRunsNATSAuthResponders(t *testing.T) {
	c := natscluster.Start(t, natscluster.Options{Auth: &natscluster.Auth{External: true}})
	dir := t.TempDir()
	seedFile, pwFile := natsAuthFiles(t, c, dir)
	cfg, _, _, err := prodConfig(t, dir, func(cfg *server.Config) {
		cfg.Broker = server.Broker{URL: c.MQTTURLs[0], FallbackURLs: c.MQTTURLs[1:], Kind: "nats", NATSURLs: c.NATSURLs, Group: "fleet",
			NATSAuth: &server.NATSAuth{IssuerSeedFile: seedFile, PasswordFile: pwFile}}
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Broker.NATSAuth.Responders != 2 {
		t.Fatalf("responders default %d, want 2", cfg.Broker.NATSAuth.Responders)
	}
	ctx := context.Background()
	st := openStore(t, cfg)

	// Operator A owns na1 and the disabled na2; operator B owns nb1. A
	// has a read-only broker account.
	hash := func(pw string) string {
		h, err := broker.HashPassword(pw)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	opA, err := st.CreateOperator(ctx, "A")
	if err != nil {
		t.Fatal(err)
	}
	opB, err := st.CreateOperator(ctx, "B")
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	for _, d := range []store.Device{{ID: "na1", OperatorID: opA.ID, MQTTHash: hash("pw-na1")},
		{ID: "na2", OperatorID: opA.ID, MQTTHash: hash("pw-na2"), State: store.DeviceDisabled},
		{ID: "nb1", OperatorID: opB.ID, MQTTHash: hash("pw-nb1")}, {ID: "nb2", OperatorID: opB.ID, MQTTHash: hash("pw-nb2")}} {
		d.K, d.SignKey = 5, pub
		if err := st.CreateDevice(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.SetBrokerAccount(ctx, opA.ID, hash("pw-opa")); err != nil {
		t.Fatal(err)
	}

	srv, err := server.New(server.Options{Config: cfg, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	stop, err := runServer(srv, 30*time.Second)
	defer func() {
		if err := stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
		for i, r := range srv.AuthResponders {
			if r.Connected() {
				t.Errorf("responder %d still connected after Run returned", i)
			}
		}
	}()
	if err != nil {
		t.Fatalf("the cloud did not start on NATS with its own responders: %v", err)
	}
	if len(srv.AuthResponders) != 2 {
		t.Fatalf("%d responders, want 2", len(srv.AuthResponders))
	}

	// A device: its own subtree only.
	na1, err := mqttDial(t, c.MQTTURLs[1], "na1", "na1", "pw-na1")
	if err != nil {
		t.Fatalf("na1 with its password: %v", err)
	}
	if q := na1.suback(t, "bv/v1/dev/na1/cmd"); q != 1 {
		t.Errorf("na1 subscribe to its own cmd granted %#x, want 1", q)
	}
	for _, f := range []string{"bv/v1/dev/nb1/cmd", "bv/v1/dev/+/cmd", "#", "bv/v1/dev/na1/usage", "bv/v1/dev/nb1/state"} {
		if q := na1.suback(t, f); q != 0x80 {
			t.Errorf("na1 subscribe %s granted %#x, want refused 0x80", f, q)
		}
	}
	// Refused: a wrong password, an unknown device, a disabled device
	// with its right password, a device under another's client id.
	for _, x := range []struct{ id, user, pass, why string }{
		{"nb1", "nb1", "pw-na1", "wrong password"}, {"nz9", "nz9", "pw-na1", "unknown device"},
		{"na2", "na2", "pw-na2", "disabled device"}, {"nb1", "na1", "pw-na1", "client id not the username"}} {
		if _, err := mqttDial(t, c.MQTTURLs[2], x.id, x.user, x.pass); err == nil {
			t.Errorf("%s (id %s user %s) admitted", x.why, x.id, x.user)
		}
	}

	// The operator's read-only account: its own devices' state, not B's.
	na1.publish(t, "bv/v1/dev/na1/state", "online-na1", true)
	nb1, err := mqttDial(t, c.MQTTURLs[0], "nb1", "nb1", "pw-nb1")
	if err != nil {
		t.Fatalf("nb1: %v", err)
	}
	nb1.publish(t, "bv/v1/dev/nb1/state", "online-nb1", true)
	op, err := mqttDial(t, c.MQTTURLs[2], broker.OperatorUser(opA.ID)+"-1", broker.OperatorUser(opA.ID), "pw-opa")
	if err != nil {
		t.Fatalf("operator A's account: %v", err)
	}
	if q := op.suback(t, "bv/v1/dev/na1/state"); q != 1 {
		t.Errorf("operator A subscribe to na1's state granted %#x, want 1", q)
	}
	select {
	case m := <-op.got:
		if m.Topic() != "bv/v1/dev/na1/state" || string(m.Payload()) != "online-na1" {
			t.Errorf("operator A got %s %q", m.Topic(), m.Payload())
		}
	case <-time.After(5 * time.Second):
		t.Error("operator A did not get na1's retained state")
	}
	for _, f := range []string{"bv/v1/dev/nb1/state", "bv/v1/dev/+/state", "bv/v1/dev/na1/cmd", "bv/v1/dev/na1/usage"} {
		if q := op.suback(t, f); q != 0x80 {
			t.Errorf("operator A subscribe %s granted %#x, want refused 0x80", f, q)
		}
	}
	if _, err := mqttDial(t, c.MQTTURLs[0], broker.OperatorUser(opA.ID)+"-2", broker.OperatorUser(opA.ID), "wrong"); err == nil {
		t.Error("operator A with a wrong password admitted")
	}
	if _, err := mqttDial(t, c.MQTTURLs[0], broker.OperatorUser(opB.ID)+"-1", broker.OperatorUser(opB.ID), "pw-opa"); err == nil {
		t.Error("operator B without a broker account admitted")
	}

	// One responder closed: devices are still admitted, by the other.
	r0, r1 := srv.AuthResponders[0], srv.AuthResponders[1]
	before := r1.Stats().Admitted
	r0.Close()
	retries := 0
	for i, id := range []string{"nb2", "na1", "nb1"} {
		_, n := mqttDialRetry(t, c.MQTTURLs[i%3], id, id, "pw-"+id)
		retries += n
	}
	t.Logf("%d connects retried after a responder was closed", retries)
	if got := r1.Stats().Admitted - before; got < 3 {
		t.Errorf("the remaining responder admitted %d, want ≥ 3", got)
	}

	// The answers on /metrics.
	resp, err := http.Get(srv.AdminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	metric := func(re string) float64 {
		m := regexp.MustCompile(`(?m)^` + re + ` (\S+)$`).FindStringSubmatch(string(body))
		if m == nil {
			t.Fatalf("/metrics has no %s", re)
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}
	if a := metric(`beaconvend_nats_auth_answers_total\{result="admitted"\}`); a < 6 {
		t.Errorf("admitted answers on /metrics %v, want ≥ 6 (the cloud's connections, three devices, an operator)", a)
	}
	if r := metric(`beaconvend_nats_auth_answers_total\{result="refused"\}`); r < 6 {
		t.Errorf("refused answers on /metrics %v, want ≥ 6", r)
	}
	if n := metric(`beaconvend_nats_auth_responders_connected`); n != 1 {
		t.Errorf("responders connected on /metrics %v, want 1 after one was closed", n)
	}
}
