// Package testrig holds what the controller's tests share: a real embedded
// MQTT broker on a loopback port, a stand-in for the cloud that signs
// grants with a test key and collects what the device sends, and a bounded
// wait. It is imported only by tests.
package testrig

import (
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	"net"
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
)

// Broker is a real embedded MQTT broker (mochi) on a loopback port that
// accepts any client.
type Broker struct {
	Addr    string
	srv     *mochi.Server
	stopped bool
}

// FreeAddr returns a free loopback TCP address.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// StartBroker starts a broker on addr and waits until it accepts.
func StartBroker(t testing.TB, addr string) *Broker {
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
	return &Broker{Addr: addr, srv: s}
}

// Stop closes the broker; a second Stop does nothing.
func (b *Broker) Stop() {
	if b.stopped {
		return
	}
	b.stopped = true
	b.srv.Close()
}

// Cloud is the tests' stand-in for the cloud: it signs grants with a test
// key, sends commands, collects replies, events and usage reports, and
// acknowledges uplinks as the cloud does (every event but progress, and
// usage reports), unless told not to.
type Cloud struct {
	t      testing.TB
	Key    ed25519.PrivateKey
	client mqtt.Client
	tree   mqttapi.Tree
	NoAck  bool

	Mu      sync.Mutex
	Replies map[string]*mqttapi.Reply
	Events  []*mqttapi.Event
	Usage   []*mqttapi.Usage
	Order   []string // uplink message types and ids in arrival order
	States  []*mqttapi.State
	Telem   int
	// Telemetry holds every telemetry message, in arrival order.
	Telemetry []*mqttapi.Telemetry
}

// NewCloud connects a cloud stand-in that signs grants with key.
func NewCloud(t testing.TB, addr string, key ed25519.PrivateKey) *Cloud {
	t.Helper()
	c := &Cloud{t: t, Key: key, Replies: map[string]*mqttapi.Reply{}}
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

func (c *Cloud) onMessage(_ mqtt.Client, m mqtt.Message) {
	dev, leaf, err := mqttapi.ParseTopic(m.Topic())
	if err != nil || leaf == mqttapi.LeafCmd {
		return
	}
	msg, err := mqttapi.Decode(leaf, m.Payload())
	if err != nil {
		c.t.Errorf("cloud: bad %s payload %s: %v", leaf, m.Payload(), err)
		return
	}
	c.Mu.Lock()
	ackID := ""
	switch x := msg.(type) {
	case *mqttapi.Reply:
		c.Replies[x.CmdID] = x
	case *mqttapi.Event:
		c.Events = append(c.Events, x)
		c.Order = append(c.Order, "evt:"+string(x.Kind)+":"+x.ID)
		if x.Kind != mqttapi.EventProgress { // as the cloud: progress is never acknowledged
			ackID = x.ID
		}
	case *mqttapi.Usage:
		c.Usage = append(c.Usage, x)
		c.Order = append(c.Order, "usage:"+x.ID)
		ackID = x.ID
	case *mqttapi.State:
		c.States = append(c.States, x)
	case *mqttapi.Telemetry:
		c.Telem++
		c.Telemetry = append(c.Telemetry, x)
	}
	noAck := c.NoAck
	c.Mu.Unlock()
	if ackID != "" && !noAck {
		// Never wait for a PUBACK inside paho's message handler: with
		// ordered delivery the handler holds the router, and waiting here
		// stalls every later message (the broker's PUBACK still arrives,
		// but the states, replies and reports behind it queue up).
		p, err := c.tree.Publication(dev, &mqttapi.Ack{Envelope: mqttapi.NewEnvelope(time.Now()), IDs: []string{ackID}})
		if err == nil {
			c.client.Publish(p.Topic, p.QoS, false, p.Payload)
		}
	}
}

// LastTelemetry returns the latest telemetry and how many arrived, or nil.
func (c *Cloud) LastTelemetry() (*mqttapi.Telemetry, int) {
	c.Mu.Lock()
	defer c.Mu.Unlock()
	if len(c.Telemetry) == 0 {
		return nil, 0
	}
	return c.Telemetry[len(c.Telemetry)-1], len(c.Telemetry)
}

// Send publishes a command to a device and returns its message ID.
func (c *Cloud) Send(dev string, msg mqttapi.Message) string {
	c.t.Helper()
	p, err := c.tree.Publication(dev, msg)
	if err != nil {
		c.t.Fatalf("encode %T: %v", msg, err)
	}
	c.client.Publish(p.Topic, p.QoS, false, p.Payload).WaitTimeout(5 * time.Second)
	return msg.Head().ID
}

// SendRaw publishes raw bytes on a device's cmd topic.
func (c *Cloud) SendRaw(dev string, payload []byte) {
	topic, _ := c.tree.Topic(dev, mqttapi.LeafCmd)
	c.client.Publish(topic, 1, false, payload).WaitTimeout(5 * time.Second)
}

// Grant returns a grant signed with the cloud key.
func (c *Cloud) Grant(dev, machine, slot string, unit vend.Unit, price vend.Price, capUnits uint64, ttl time.Duration) (signed.Grant, []byte) {
	c.t.Helper()
	cost, err := price.Cost(capUnits)
	if err != nil {
		c.t.Fatal(err)
	}
	now := time.Now()
	g := signed.Grant{Session: vend.NewSessionID(), Device: dev, Machine: machine, Slot: slot, Unit: unit, Price: price,
		Currency: "EUR", CapUnits: capUnits, CapMoney: cost, IssuedAt: now, ExpiresAt: now.Add(ttl), Window: uint32(now.Unix()) &^ 31, WindowK: 5}
	b, err := signed.SignGrant(c.Key, g)
	if err != nil {
		c.t.Fatal(err)
	}
	return g, b
}

// Authorize sends an Authorize command and returns its ID.
func (c *Cloud) Authorize(dev, machine string, grant []byte) string {
	return c.Send(dev, &mqttapi.Authorize{Envelope: mqttapi.NewEnvelope(time.Now()), Machine: machine, Grant: grant})
}

// WaitReply waits for the reply to command id.
func (c *Cloud) WaitReply(id string) *mqttapi.Reply {
	c.t.Helper()
	var r *mqttapi.Reply
	Eventually(c.t, "reply to "+id, func() bool {
		c.Mu.Lock()
		defer c.Mu.Unlock()
		r = c.Replies[id]
		return r != nil
	})
	return r
}

// WaitUsage waits for the usage report of a session and returns it verified.
func (c *Cloud) WaitUsage(session vend.SessionID, devKey ed25519.PublicKey) signed.Usage {
	c.t.Helper()
	var got []byte
	Eventually(c.t, "usage for "+session.String(), func() bool {
		c.Mu.Lock()
		defer c.Mu.Unlock()
		for _, u := range c.Usage {
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

// UsageCount returns the usage deliveries for a session and how many distinct message IDs they had.
func (c *Cloud) UsageCount(session vend.SessionID) (n int, distinctIDs int) {
	c.Mu.Lock()
	defer c.Mu.Unlock()
	ids := map[string]bool{}
	for _, u := range c.Usage {
		if u.Session == session {
			n++
			ids[u.ID] = true
		}
	}
	return n, len(ids)
}

// Eventually polls cond for up to 20 s and fails the test if it never holds.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// GenerateKey returns a fresh Ed25519 key pair.
func GenerateKey() (ed25519.PublicKey, ed25519.PrivateKey, error) {
	return ed25519.GenerateKey(rand.Reader)
}
