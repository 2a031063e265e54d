package ingest_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	natsserver "github.com/nats-io/nats-server/v2/server"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/cloud/broker/brokertest"
	"beaconvend/cloud/broker/natscluster"
	"beaconvend/cloud/ingest"
)

// natsNode is one in-process nats-server with JetStream and its MQTT
// listener, no authentication (the auth callout is tested with the
// cluster).
type natsNode struct {
	srv      *natsserver.Server
	NATSURL  string
	MQTTURL  string
	storeDir string
	user     string // "" for the single node without auth; the cluster's no_auth_user otherwise
}

func startNATS(t *testing.T) *natsNode {
	t.Helper()
	n := &natsNode{storeDir: t.TempDir()}
	np, mp := brokertest.FreePort(t), brokertest.FreePort(t)
	opts := &natsserver.Options{
		ServerName: "n0", Host: "127.0.0.1", Port: np, JetStream: true, StoreDir: n.storeDir,
		NoLog: true, NoSigs: true,
		MQTT: natsserver.MQTTOpts{Host: "127.0.0.1", Port: mp},
	}
	s, err := natsserver.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(s.Shutdown)
	n.srv = s
	n.NATSURL = fmt.Sprintf("nats://127.0.0.1:%d", np)
	n.MQTTURL = fmt.Sprintf("tcp://127.0.0.1:%d", mp)
	return n
}

type natsInstance struct {
	in   *ingest.Ingest
	stop func()
}

func startNATSIngest(t *testing.T, n *natsNode, clientID, group string, h ingest.Handler, d ingest.Deduper, no ingest.NATSOptions) natsInstance {
	t.Helper()
	no.URLs = []string{n.NATSURL}
	in, err := ingest.New(ingest.Options{
		URL: n.MQTTURL, ClientID: clientID, Username: cmp.Or(n.user, "_cloud"), Group: group, Handler: h, Dedup: d,
		NATS: &no, MaxReconnectInterval: 2 * time.Second, Logger: testLogger(t),
	})
	if err != nil {
		t.Fatalf("ingest.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("ingest %s Run: %v", clientID, err)
				}
			case <-time.After(wait):
				t.Errorf("ingest %s Run did not return within %v", clientID, wait)
			}
		})
	}
	t.Cleanup(stop)
	wctx, wcancel := context.WithTimeout(ctx, wait)
	defer wcancel()
	if err := in.WaitSubscribed(wctx); err != nil {
		t.Fatalf("ingest %s not subscribed: %v", clientID, err)
	}
	return natsInstance{in: in, stop: stop}
}

func natsDevice(t *testing.T, n *natsNode, dev string, clean bool) paho.Client {
	t.Helper()
	o := brokertest.ClientOptions(n.MQTTURL, dev, cmp.Or(n.user, dev), "x", nil)
	if n.user != "" {
		o.SetPassword("")
	}
	o.SetCleanSession(clean)
	return brokertest.MustConnect(t, o)
}

// TestNATSGroupSplitsUplinks: two instances of one group on NATS each
// handle a share of the devices' events, together all of them once, and
// every device gets the Ack of each over MQTT.
func TestNATSGroupSplitsUplinks(t *testing.T) {
	n := startNATS(t)
	rec := newRecorder()
	dd := ingest.NewMemoryDedup(0)
	a := startNATSIngest(t, n, "_cloud-a", "cloud", rec.handler("a"), dd, ingest.NATSOptions{})
	b := startNATSIngest(t, n, "_cloud-b", "cloud", rec.handler("b"), dd, ingest.NATSOptions{})
	var keys []string
	acks := map[string]*ackCounts{}
	for _, dev := range devices {
		d := natsDevice(t, n, dev, true)
		acks[dev] = listenAcks(t, d, dev)
		keys = append(keys, publishEvents(t, d, dev, "e", 25)...)
	}
	waitUntil(t, "every event handled", rec.notify, func() bool { return rec.handled(keys) })
	rec.checkOnce(t, keys)
	rec.mu.Lock()
	if rec.by["a"] == 0 || rec.by["b"] == 0 || rec.by["a"]+rec.by["b"] != len(keys) {
		t.Errorf("handled by a %d, b %d; want both > 0 and %d in all", rec.by["a"], rec.by["b"], len(keys))
	}
	rec.mu.Unlock()
	waitUntil(t, "every ack at its device", rec.notify, func() bool {
		for _, k := range keys {
			dev, id, _ := strings.Cut(k, "/")
			if acks[dev].counts()[id] == 0 {
				return false
			}
		}
		return true
	})
	for _, in := range []*ingest.Ingest{a.in, b.in} {
		if s := in.Stats(); s.Naks != 0 || s.Terminated != 0 || s.AckErrors != 0 {
			t.Errorf("stats %+v: want no naks, terminations or ack errors", s)
		}
	}
}

// TestNATSHandlerErrorRedelivered: a Handler error naks the message and
// JetStream brings it again; a message failing MaxDeliver times, and one
// that cannot be decoded, are terminated and counted.
func TestNATSHandlerErrorRedelivered(t *testing.T) {
	n := startNATS(t)
	var mu sync.Mutex
	tries := map[string]int{}
	rec := newRecorder()
	ok := rec.handler("a")
	h := ingest.HandlerFunc(func(ctx context.Context, dev string, leaf mqttapi.Leaf, msg mqttapi.Message) error {
		id := msg.Head().ID
		mu.Lock()
		tries[id]++
		k := tries[id]
		mu.Unlock()
		if id == "poison" || (strings.HasPrefix(id, "flaky") && k == 1) {
			return errors.New("test: handler failed")
		}
		return ok.Handle(ctx, dev, leaf, msg)
	})
	a := startNATSIngest(t, n, "_cloud-a", "cloud", h, nil, ingest.NATSOptions{NakDelay: 50 * time.Millisecond, MaxDeliver: 3})
	d := natsDevice(t, n, "dev-0", true)
	keys := publishEvents(t, d, "dev-0", "flaky", 5)
	if err := brokertest.Done(d.Publish(evtTopic("dev-0"), 1, false, event(t, "poison"))); err != nil {
		t.Fatal(err)
	}
	if err := brokertest.Done(d.Publish(evtTopic("dev-0"), 1, false, []byte("{not json"))); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the flaky events handled on their second delivery", rec.notify, func() bool { return rec.handled(keys) })
	rec.checkOnce(t, keys)
	waitUntil(t, "the poison and the undecodable terminated", rec.notify, func() bool { return a.in.Stats().Terminated == 2 })
	mu.Lock()
	if tries["poison"] != 3 {
		t.Errorf("poison tried %d times, want MaxDeliver 3", tries["poison"])
	}
	mu.Unlock()
	if s := a.in.Stats(); s.Naks != 5+2 || s.HandlerErrors != 5+3 {
		t.Errorf("Naks %d, HandlerErrors %d; want 7 and 8", s.Naks, s.HandlerErrors)
	}
}

// commitOnce is the store's Deduper in the Handler's transaction: an id
// is taken for a duplicate only once a Handler committed it, so a crashed
// instance's uncommitted work is done again by another.
type commitOnce struct {
	mu        sync.Mutex
	committed map[string]int
}

func (c *commitOnce) Seen(dev, id string) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.committed[dev+"/"+id] > 0, nil
}

func (c *commitOnce) Forget(string, string) error { return nil }

func (c *commitOnce) commit(dev, id string) {
	c.mu.Lock()
	c.committed[dev+"/"+id]++
	c.mu.Unlock()
}

// TestNATSInstanceKilled: instance a stops mid-traffic with uplinks
// pulled and not acked (its handlers hang, then its NATS connection is
// cut, as a killed process's would be). After AckWait they go to b; every
// uplink is committed exactly once.
func TestNATSInstanceKilled(t *testing.T) {
	n := startNATS(t)
	co := &commitOnce{committed: map[string]int{}}
	hang := make(chan struct{})
	var gotA sync.WaitGroup
	gotA.Add(1)
	var onceA sync.Once
	rec := newRecorder()
	ha := ingest.HandlerFunc(func(ctx context.Context, dev string, leaf mqttapi.Leaf, msg mqttapi.Message) error {
		onceA.Do(gotA.Done)
		<-hang // never commits: the process is gone
		return errors.New("test: killed")
	})
	hb := ingest.HandlerFunc(func(ctx context.Context, dev string, leaf mqttapi.Leaf, msg mqttapi.Message) error {
		co.commit(dev, msg.Head().ID)
		return rec.handler("b").Handle(ctx, dev, leaf, msg)
	})
	no := ingest.NATSOptions{AckWait: 2 * time.Second}
	a := startNATSIngest(t, n, "_cloud-a", "cloud", ha, co, no)
	t.Cleanup(func() { close(hang) })
	var keys []string
	d := natsDevice(t, n, "dev-0", true)
	keys = append(keys, publishEvents(t, d, "dev-0", "before", 20)...)
	gotA.Wait()
	ingest.KillNATS(a.in)
	b := startNATSIngest(t, n, "_cloud-b", "cloud", hb, co, no)
	keys = append(keys, publishEvents(t, d, "dev-0", "after", 20)...)
	waitUntil(t, "every event handled by b", rec.notify, func() bool { return rec.handled(keys) })
	time.Sleep(2 * no.AckWait) // any further redelivery would show now
	rec.checkOnce(t, keys)
	co.mu.Lock()
	for _, k := range keys {
		if co.committed[k] != 1 {
			t.Errorf("%s committed %d times, want 1", k, co.committed[k])
		}
	}
	co.mu.Unlock()
	if s := b.in.Stats(); s.Terminated != 0 {
		t.Errorf("b terminated %d", s.Terminated)
	}
}

// TestNATSSharedMQTTSubscriptionSilent records why broker.kind nats
// exists: NATS v2.15.3's MQTT listener grants "$share/<group>/…" at the
// asked QoS (so no SUBACK check can tell) and then delivers nothing to it.
// Should a NATS release start delivering, this test fails and the note in
// the README is to be revisited.
func TestNATSSharedMQTTSubscriptionSilent(t *testing.T) {
	n := startNATS(t)
	rec := newRecorder()
	srv := natsMQTT{n}
	startIngest(t, srv, &brokertest.Accounts{CloudUser: "_cloud"}, "_cloud-a", "cloud", rec.handler("a"), nil)
	d := natsDevice(t, n, "dev-0", true)
	keys := publishEvents(t, d, "dev-0", "e", 3)
	time.Sleep(2 * time.Second)
	if rec.handled(keys[:1]) {
		t.Fatalf("NATS delivered to a $share subscription: revisit broker.kind nats")
	}
}

// natsMQTT is a natsNode as a brokertest.Server for startIngest.
type natsMQTT struct{ n *natsNode }

func (s natsMQTT) Name() string        { return "nats" }
func (s natsMQTT) URL() string         { return s.n.MQTTURL }
func (s natsMQTT) Start(tb testing.TB) {}
func (s natsMQTT) Stop(tb testing.TB)  {}

// TestNATSClusterAcksReachSessionOnAnotherNode, on three nodes: two
// instances of one group, on different nodes, share the uplinks of a
// device on the third; the device goes away right after publishing, and
// the Acks queued in its persistent MQTT session reach it when it comes
// back through another node.
func TestNATSClusterAcksReachSessionOnAnotherNode(t *testing.T) {
	c := natscluster.Start(t, natscluster.Options{Nodes: 3})
	rec := newRecorder()
	dd := ingest.NewMemoryDedup(0)
	nodeA := &natsNode{NATSURL: c.NATSURLs[0], MQTTURL: c.MQTTURLs[0], user: "open"}
	nodeB := &natsNode{NATSURL: c.NATSURLs[1], MQTTURL: c.MQTTURLs[1], user: "open"}
	no := ingest.NATSOptions{Replicas: 3}
	// The handlers wait until the device is gone, so that every Ack is
	// published to its session while it is away (an Ack in flight at the
	// disconnect comes back only after the listener's mqtt ack_wait).
	gone := make(chan struct{})
	gated := func(h ingest.Handler) ingest.Handler {
		return ingest.HandlerFunc(func(ctx context.Context, dev string, leaf mqttapi.Leaf, msg mqttapi.Message) error {
			<-gone
			return h.Handle(ctx, dev, leaf, msg)
		})
	}
	startNATSIngest(t, nodeA, "_cloud-a", "cloud", gated(rec.handler("a")), dd, no)
	startNATSIngest(t, nodeB, "_cloud-b", "cloud", gated(rec.handler("b")), dd, no)

	const dev = "dev-0"
	d := natsDevice(t, &natsNode{MQTTURL: c.MQTTURLs[2], user: "open"}, dev, false)
	acks := listenAcks(t, d, dev)
	keys := publishEvents(t, d, dev, "e", 40)
	d.Disconnect(0) // the Acks must wait in the session
	close(gone)
	waitUntil(t, "every event handled", rec.notify, func() bool { return rec.handled(keys) })
	rec.checkOnce(t, keys)
	rec.mu.Lock()
	if rec.by["a"] == 0 || rec.by["b"] == 0 {
		t.Errorf("handled by a %d, b %d; want both > 0", rec.by["a"], rec.by["b"])
	}
	rec.mu.Unlock()

	// Back on node 0 with the same persistent session: every Ack arrives.
	o := brokertest.ClientOptions(c.MQTTURLs[0], dev, "open", "", nil)
	o.SetCleanSession(false)
	o.SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
		ack, err := mqttapi.DecodeAs[mqttapi.Ack](m.Payload())
		if err != nil {
			t.Errorf("device got a bad cmd: %v", err)
			return
		}
		acks.mu.Lock()
		for _, id := range ack.IDs {
			acks.n[id]++
		}
		acks.mu.Unlock()
	})
	brokertest.MustConnect(t, o)
	waitUntil(t, "every Ack at the device on another node", rec.notify, func() bool {
		got := acks.counts()
		for _, k := range keys {
			if _, id, _ := strings.Cut(k, "/"); got[id] == 0 {
				return false
			}
		}
		return true
	})
}
