package daemon_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
	"beaconvend/controller/config"
	"beaconvend/controller/daemon"
	"beaconvend/hw/emu"
)

// broker is a real embedded MQTT broker on a loopback port.
type broker struct {
	addr    string
	srv     *mochi.Server
	stopped bool
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func startBroker(t *testing.T, addr string) *broker {
	t.Helper()
	s := mochi.New(&mochi.Options{InlineClient: false, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := s.AddHook(new(auth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.AddListener(listeners.NewTCP(listeners.Config{ID: "t", Address: addr})); err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	// Wait until it accepts.
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return &broker{addr: addr, srv: s}
}

func (b *broker) stop() {
	if b.stopped {
		return
	}
	b.stopped = true
	b.srv.Close()
}

// cloud is the test's stand-in for the cloud: it signs grants with a test
// key, sends commands, collects replies, events and usage reports, and
// acknowledges uplinks (unless told not to).
type cloud struct {
	t      *testing.T
	key    ed25519.PrivateKey
	client mqtt.Client
	tree   mqttapi.Tree
	noAck  bool

	mu      sync.Mutex
	replies map[string]*mqttapi.Reply
	events  []*mqttapi.Event
	usage   []*mqttapi.Usage
	order   []string // uplink message types and ids in arrival order
	states  []*mqttapi.State
	telem   int
}

func newCloud(t *testing.T, addr string, key ed25519.PrivateKey) *cloud {
	t.Helper()
	c := &cloud{t: t, key: key, replies: map[string]*mqttapi.Reply{}}
	o := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("test-cloud").
		SetCleanSession(false).SetAutoReconnect(true).SetConnectRetry(true).
		SetConnectRetryInterval(200 * time.Millisecond).SetMaxReconnectInterval(500 * time.Millisecond).
		SetOnConnectHandler(func(cl mqtt.Client) {
			cl.Subscribe("bv/v1/dev/+/+", 1, c.onMessage).Wait()
		})
	c.client = mqtt.NewClient(o)
	if tok := c.client.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("cloud connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.client.Disconnect(100) })
	return c
}

func (c *cloud) onMessage(_ mqtt.Client, m mqtt.Message) {
	dev, leaf, err := mqttapi.ParseTopic(m.Topic())
	if err != nil || leaf == mqttapi.LeafCmd {
		return
	}
	msg, err := mqttapi.Decode(leaf, m.Payload())
	if err != nil {
		c.t.Errorf("cloud: bad %s payload %s: %v", leaf, m.Payload(), err)
		return
	}
	c.mu.Lock()
	ackID := ""
	switch x := msg.(type) {
	case *mqttapi.Reply:
		c.replies[x.CmdID] = x
	case *mqttapi.Event:
		c.events = append(c.events, x)
		c.order = append(c.order, "evt:"+string(x.Kind)+":"+x.ID)
		ackID = x.ID
	case *mqttapi.Usage:
		c.usage = append(c.usage, x)
		c.order = append(c.order, "usage:"+x.ID)
		ackID = x.ID
	case *mqttapi.State:
		c.states = append(c.states, x)
	case *mqttapi.Telemetry:
		c.telem++
	}
	noAck := c.noAck
	c.mu.Unlock()
	if ackID != "" && !noAck && msg.(mqttapi.Message) != nil {
		c.send(dev, &mqttapi.Ack{Envelope: mqttapi.NewEnvelope(time.Now()), IDs: []string{ackID}})
	}
}

func (c *cloud) send(dev string, msg mqttapi.Message) string {
	c.t.Helper()
	p, err := c.tree.Publication(dev, msg)
	if err != nil {
		c.t.Fatalf("encode %T: %v", msg, err)
	}
	c.client.Publish(p.Topic, p.QoS, false, p.Payload).WaitTimeout(5 * time.Second)
	return msg.Head().ID
}

func (c *cloud) sendRaw(dev string, payload []byte) {
	topic, _ := c.tree.Topic(dev, mqttapi.LeafCmd)
	c.client.Publish(topic, 1, false, payload).WaitTimeout(5 * time.Second)
}

func (c *cloud) grant(dev, machine, slot string, unit vend.Unit, price vend.Price, capUnits uint64, ttl time.Duration) (signed.Grant, []byte) {
	c.t.Helper()
	cost, err := price.Cost(capUnits)
	if err != nil {
		c.t.Fatal(err)
	}
	now := time.Now()
	g := signed.Grant{Session: vend.NewSessionID(), Device: dev, Machine: machine, Slot: slot, Unit: unit, Price: price,
		Currency: "EUR", CapUnits: capUnits, CapMoney: cost, IssuedAt: now, ExpiresAt: now.Add(ttl), Window: uint32(now.Unix()) &^ 31, WindowK: 5}
	b, err := signed.SignGrant(c.key, g)
	if err != nil {
		c.t.Fatal(err)
	}
	return g, b
}

func (c *cloud) authorize(dev, machine string, grant []byte) string {
	return c.send(dev, &mqttapi.Authorize{Envelope: mqttapi.NewEnvelope(time.Now()), Machine: machine, Grant: grant})
}

func (c *cloud) waitReply(id string) *mqttapi.Reply {
	c.t.Helper()
	var r *mqttapi.Reply
	eventually(c.t, "reply to "+id, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		r = c.replies[id]
		return r != nil
	})
	return r
}

// waitUsage waits for the usage report of a session and returns it verified.
func (c *cloud) waitUsage(session vend.SessionID, devKey ed25519.PublicKey) signed.Usage {
	c.t.Helper()
	var got []byte
	eventually(c.t, "usage for "+session.String(), func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, u := range c.usage {
			if u.Session == session {
				got = u.Report
				return true
			}
		}
		return false
	})
	keys, _ := signed.NewKeys(devKey)
	u, err := signed.OpenUsage(got, keys)
	if err != nil {
		c.t.Fatalf("usage report does not verify: %v", err)
	}
	return u
}

func (c *cloud) usageCount(session vend.SessionID) (n int, distinctIDs int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := map[string]bool{}
	for _, u := range c.usage {
		if u.Session == session {
			n++
			ids[u.ID] = true
		}
	}
	return n, len(ids)
}

func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// rig is one controller on an emulated board with a broker and a cloud.
type rig struct {
	t       *testing.T
	dir     string
	emu     *emu.Emulator
	ctl     *emu.Control
	broker  *broker
	cloud   *cloud
	cfgPath string
	devPub  ed25519.PublicKey
	d       *daemon.Daemon
	cancel  context.CancelFunc
	done    chan struct{}
}

const waterCfg = `machines:
  - id: m1
    kind: water
    currency: EUR
    price: {minor: 50, per: 1000}
    water: {valve: out1, flow: count1, k_factor: "450", no_flow: 2s}
`

const waterSim = `profile: pulse-io-4
machines:
  - {name: tap, kind: water, valve: out1, flow: count1, flow_lpm: 12, k_factor: 450}
`

func newRig(t *testing.T, profileName, simYAML, machinesYAML string) *rig {
	t.Helper()
	dir := t.TempDir()
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
	ectx, ecancel := context.WithCancel(context.Background())
	go e.Run(ectx)
	ctl, err := emu.Dial(e.ControlPath())
	if err != nil {
		t.Fatal(err)
	}
	_, cloudKey, _ := ed25519.GenerateKey(rand.Reader)
	devPub, devPriv, _ := ed25519.GenerateKey(rand.Reader)
	id := make([]byte, 16)
	rand.Read(id)
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(config.WriteSecret(filepath.Join(dir, "identity.key"), []byte(hex.EncodeToString(id))))
	must(config.WriteSecret(filepath.Join(dir, "device.key"), []byte(hex.EncodeToString(devPriv.Seed()))))
	addr := freeAddr(t)
	cfg := fmt.Sprintf(`device_id: dev-1
keys:
  identity_key_file: identity.key
  device_key_file: device.key
  cloud_public_keys: [%s]
mqtt: {broker: "tcp://%s", telemetry_interval: 1s, drain_rate: 50}
journal: journal.db
board: {profile: %s, port: %s, poll_interval: 50ms}
beacon: {backend: none}
grant_skew: 5s
`, hex.EncodeToString(cloudKey.Public().(ed25519.PublicKey)), addr, profileName, e.BoardPath()) + machinesYAML
	cfgPath := filepath.Join(dir, "controller.yaml")
	must(os.WriteFile(cfgPath, []byte(cfg), 0o644))
	r := &rig{t: t, dir: dir, emu: e, ctl: ctl, cfgPath: cfgPath, devPub: devPub}
	r.broker = startBroker(t, addr)
	r.cloud = newCloud(t, addr, cloudKey)
	t.Cleanup(func() {
		r.stopDaemon()
		r.broker.stop()
		ctl.Close()
		ecancel()
		e.Close()
	})
	return r
}

func (r *rig) startDaemon() {
	r.t.Helper()
	cfg, err := config.Load(r.cfgPath)
	if err != nil {
		r.t.Fatal(err)
	}
	var log *slog.Logger
	if os.Getenv("VEND_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	d, err := daemon.Open(context.Background(), cfg, daemon.Opts{ProgressEvery: 200 * time.Millisecond, AckTimeout: 2 * time.Second, ShutdownGrace: 3 * time.Second, Logger: log})
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.d, r.cancel, r.done = d, cancel, make(chan struct{})
	go func() { defer close(r.done); d.Run(ctx) }()
	eventually(r.t, "controller online", func() bool { return d.Stats().Uplink.Connected })
}

func (r *rig) stopDaemon() {
	if r.d == nil {
		return
	}
	r.cancel()
	<-r.done
	r.d.Close()
	r.d = nil
}

func (r *rig) status() *emu.Status {
	r.t.Helper()
	s, err := r.ctl.Status()
	if err != nil {
		r.t.Fatal(err)
	}
	return s
}

func ed25519GenerateKey() (ed25519.PublicKey, ed25519.PrivateKey, error) {
	return ed25519.GenerateKey(rand.Reader)
}
