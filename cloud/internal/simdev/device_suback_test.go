package simdev_test

import (
	"bytes"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/cloud/broker"
	"beaconvend/cloud/internal/simdev"
)

// refuseSubs is a mochi hook that refuses the first n subscriptions to
// a cmd topic (SUBACK 0x80, as a NATS node answers a QoS 1 subscription
// whose JetStream consumer it could not create within its API timeout).
type refuseSubs struct {
	auth.AllowHook
	left atomic.Int32
}

func (h *refuseSubs) ID() string { return "refuse-subs" }

func (h *refuseSubs) Provides(b byte) bool {
	return b == mqtt.OnACLCheck || h.AllowHook.Provides(b)
}

func (h *refuseSubs) OnACLCheck(_ *mqtt.Client, topic string, write bool) bool {
	if !write && strings.HasSuffix(topic, "/cmd") && h.left.Add(-1) >= 0 {
		return false
	}
	return true
}

// TestDeviceRetriesARefusedCmdSubscription: a broker that refuses the
// device's cmd subscription leaves it deaf to every Authorize; the
// device must see the refusal in the SUBACK, retry, and announce online
// only once it can hear commands (as the controller's uplink does). The
// fleet benchmark on a NATS cluster lost every start on such devices
// (device.no_reply) before they checked.
func TestDeviceRetriesARefusedCmdSubscription(t *testing.T) {
	srv := mqtt.New(&mqtt.Options{Capabilities: broker.Capabilities(broker.Options{}), Logger: slog.New(slog.DiscardHandler)})
	h := new(refuseSubs)
	h.left.Store(2)
	if err := srv.AddHook(h, nil); err != nil {
		t.Fatal(err)
	}
	ln := broker.NewListener("plain", "127.0.0.1:0", nil)
	if err := srv.AddListener(ln); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	url := "tcp://" + ln.Address()

	var tree mqttapi.Tree
	stateTopic, _ := tree.Topic("suback-1", mqttapi.LeafState)
	cmdTopic, _ := tree.Topic("suback-1", mqttapi.LeafCmd)
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID("cloud-test"))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("cloud client connect: %v", tok.Error())
	}
	defer c.Disconnect(50)
	var onlineAt atomic.Int64
	if tok := c.Subscribe(stateTopic, 1, func(_ paho.Client, m paho.Message) {
		if bytes.Contains(m.Payload(), []byte(`"online"`)) {
			onlineAt.CompareAndSwap(0, time.Now().UnixNano())
		}
	}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe state: %v", tok.Error())
	}

	d := simdev.New(simdev.Identity{ID: "suback-1", Password: "x"}, simdev.Options{})
	defer d.Close()
	if err := d.Connect(url); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); onlineAt.Load() == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			r, _ := d.SubscribeFailures()
			t.Fatalf("no online state within 10 s (%d subscriptions refused)", r)
		}
	}
	if r, u := d.SubscribeFailures(); r != 2 || u != 0 {
		t.Fatalf("SubscribeFailures = %d refused, %d unanswered; want 2 refused (the broker refused two), 0 unanswered", r, u)
	}
	// Online means it hears: one command, published once, reaches it.
	payload, err := mqttapi.Encode(&mqttapi.Ack{Envelope: mqttapi.NewEnvelope(time.Now()), IDs: []string{"probe"}})
	if err != nil {
		t.Fatal(err)
	}
	if tok := c.Publish(cmdTopic, 1, false, payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish cmd: %v", tok.Error())
	}
	for deadline := time.Now().Add(5 * time.Second); d.LastCommand().IsZero(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a device that announced online did not get a command published after it")
		}
	}
}
