package natscluster_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"beaconvend/cloud/broker"
	"beaconvend/cloud/broker/natscluster"
)

const cloudPW = "cloud-secret"

// creds is an in-memory device credential table.
type creds struct {
	mu sync.Mutex
	m  map[string]broker.Credential
}

func newCreds(t testing.TB, ids ...string) *creds {
	t.Helper()
	c := &creds{m: map[string]broker.Credential{}}
	h, err := broker.HashPassword("pw")
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		c.m[id] = broker.Credential{PasswordHash: h, Enabled: true}
	}
	return c
}

func (c *creds) DeviceCredential(_ context.Context, id string) (broker.Credential, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cr, ok := c.m[id]
	if !ok {
		return broker.Credential{}, broker.ErrUnknown
	}
	return cr, nil
}

// ops is one operator account, "op_a", owning d2.
type ops struct{ hash string }

func (o ops) BrokerAccountHash(_ context.Context, op string) (string, error) {
	if op != "op_a" {
		return "", broker.ErrUnknown
	}
	return o.hash, nil
}

func (o ops) OperatorDeviceIDs(_ context.Context, op string) ([]string, error) {
	return []string{"d2"}, nil
}

func authOpts(c *creds) *natscluster.Auth {
	return &natscluster.Auth{Credentials: c, CloudPassword: cloudPW}
}

type client struct {
	paho.Client
	got chan paho.Message
}

func mqttConnect(t testing.TB, url, id, user, pass string, clean bool) (*client, error) {
	t.Helper()
	c := &client{got: make(chan paho.Message, 1000)}
	o := paho.NewClientOptions().AddBroker(url).SetClientID(id).SetUsername(user).SetPassword(pass).
		// As long as a board waits for its CONNACK (controller/uplink's
		// HandshakeTimeout): a node sets a new session up in JetStream
		// first, up to its js_api_timeout when busy.
		SetCleanSession(clean).SetAutoReconnect(false).SetConnectTimeout(25 * time.Second).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { c.got <- m })
	c.Client = paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(30 * time.Second) {
		return nil, fmt.Errorf("connect %s: timeout", id)
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c, nil
}

func mustMQTT(t testing.TB, url, id, user, pass string, clean bool) *client {
	t.Helper()
	c, err := mqttConnect(t, url, id, user, pass, clean)
	if err != nil {
		t.Fatalf("mqtt %s: %v", id, err)
	}
	return c
}

// subscribe returns the granted QoS codes.
func (c *client) subscribe(t testing.TB, filter string, qos byte) byte {
	t.Helper()
	tok := c.Subscribe(filter, qos, nil)
	if !tok.WaitTimeout(10 * time.Second) {
		t.Fatalf("subscribe %s: timeout", filter)
	}
	st := tok.(*paho.SubscribeToken)
	return st.Result()[filter]
}

func (c *client) publish(t testing.TB, topic string, qos byte, retained bool, payload string) {
	t.Helper()
	c.publishWithin(t, topic, qos, retained, payload, 10*time.Second)
}

// tryPublish publishes and waits up to d for the broker's PUBACK.
func (c *client) tryPublish(topic string, qos byte, retained bool, payload string, d time.Duration) error {
	tok := c.Publish(topic, qos, retained, payload)
	if !tok.WaitTimeout(d) {
		return fmt.Errorf("no PUBACK within %v", d)
	}
	return tok.Error()
}

func (c *client) publishWithin(t testing.TB, topic string, qos byte, retained bool, payload string, d time.Duration) {
	t.Helper()
	tok := c.Publish(topic, qos, retained, payload)
	if !tok.WaitTimeout(d) {
		t.Fatalf("publish %s: timeout", topic)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
}

func expectMsg(t testing.TB, ch <-chan paho.Message, topic, payload string, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case m := <-ch:
			if m.Topic() == topic && string(m.Payload()) == payload {
				return
			}
		case <-deadline:
			t.Fatalf("no message %q on %s within %v", payload, topic, d)
		}
	}
}

func natsCloud(t testing.TB, c *natscluster.Cluster, node int) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(c.NATSURLs[node], nats.UserInfo(c.CloudUser, cloudPW))
	if err != nil {
		t.Fatalf("cloud nats connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// A device publishes QoS 1 on one node; the cloud's NATS subscriber on
// another gets it; a device reaches nothing outside its own subtree; a
// wrong password is refused; retained state is read on a third node.
func TestClusterDeviceAuthACLAndCrossNode(t *testing.T) {
	cr := newCreds(t, "d1", "d2")
	a := authOpts(cr)
	a.Operators = ops{hash: cr.m["d1"].PasswordHash}
	c := natscluster.Start(t, natscluster.Options{Auth: a})

	nc := natsCloud(t, c, 1)
	sub, err := nc.SubscribeSync("bv.v1.dev.*.usage")
	if err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	d1 := mustMQTT(t, c.MQTTURLs[0], "d1", "d1", "pw", true)
	// Interest propagates over routes asynchronously.
	time.Sleep(200 * time.Millisecond)
	d1.publish(t, "bv/v1/dev/d1/usage", 1, false, "u1")
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil || string(m.Data) != "u1" || m.Subject != "bv.v1.dev.d1.usage" {
		t.Fatalf("cloud on node 1: %v %v", m, err)
	}

	// ACL: another device's subtree, wildcards, the cloud's leaves.
	for _, f := range []string{"bv/v1/dev/d2/cmd", "bv/v1/dev/+/cmd", "#", "bv/v1/dev/d1/usage", "$MQTT/sub/#", "$MQTT/#"} {
		if q := d1.subscribe(t, f, 1); q != 0x80 {
			t.Errorf("device subscribe %s granted %#x, want refused 0x80", f, q)
		}
	}
	d1.publish(t, "bv/v1/dev/d2/usage", 1, false, "forged")
	if m, err := sub.NextMsg(time.Second); err == nil {
		t.Fatalf("forged publish delivered: %s %s", m.Subject, m.Data)
	}
	// The cloud cannot speak for a device either.
	_ = nc.Publish("bv.v1.dev.d2.usage", []byte("cloud-forged"))
	if m, err := sub.NextMsg(time.Second); err == nil {
		t.Fatalf("cloud's forged uplink delivered: %s %s", m.Subject, m.Data)
	}
	// Nor read a device's session by a NATS subscription on its deliveries.
	if _, err := nc.SubscribeSync("$MQTT.sub.>"); err == nil {
		if err := nc.Flush(); err == nil && nc.LastError() == nil {
			time.Sleep(200 * time.Millisecond)
		}
		if nc.LastError() == nil {
			t.Errorf("cloud subscription on $MQTT.sub.> not refused")
		}
	}

	// Wrong password, unknown device, client id not the device id, cloud
	// client id a device id, a disabled device, a wrong cloud password.
	cr.mu.Lock()
	cr.m["d3"] = broker.Credential{PasswordHash: cr.m["d1"].PasswordHash, Enabled: false}
	cr.mu.Unlock()
	for _, x := range []struct{ id, user, pass string }{{"d2", "d2", "bad"}, {"d9", "d9", "pw"}, {"d1", "d2", "pw"},
		{"d2", c.CloudUser, cloudPW}, {"d3", "d3", "pw"}, {"_c", c.CloudUser, "bad"}, {"d2", "", ""}} {
		if _, err := mqttConnect(t, c.MQTTURLs[2], x.id, x.user, x.pass, true); err == nil {
			t.Errorf("connect id=%s user=%s pass=%s admitted", x.id, x.user, x.pass)
		}
	}

	// Retained state across nodes.
	d2 := mustMQTT(t, c.MQTTURLs[1], "d2", "d2", "pw", true)
	d2.publish(t, "bv/v1/dev/d2/state", 1, true, "online")
	cl := mustMQTT(t, c.MQTTURLs[2], "_cloud-1", c.CloudUser, cloudPW, true)
	if q := cl.subscribe(t, "bv/v1/dev/+/state", 1); q != 1 {
		t.Fatalf("cloud state subscribe granted %#x", q)
	}
	expectMsg(t, cl.got, "bv/v1/dev/d2/state", "online", 5*time.Second)
	if q := cl.subscribe(t, "bv/v1/dev/+/cmd", 1); q != 0x80 {
		t.Errorf("cloud subscribe to cmd granted %#x, want refused", q)
	}

	// An operator's read-only account reads its own device's state only.
	op := mustMQTT(t, c.MQTTURLs[0], "_op_a-1", "_op_a", "pw", true)
	if q := op.subscribe(t, "bv/v1/dev/d2/state", 1); q != 1 {
		t.Errorf("operator subscribe to its device's state granted %#x", q)
	}
	expectMsg(t, op.got, "bv/v1/dev/d2/state", "online", 5*time.Second)
	for _, f := range []string{"bv/v1/dev/d1/state", "bv/v1/dev/d2/usage", "bv/v1/dev/d2/cmd"} {
		if q := op.subscribe(t, f, 1); q != 0x80 {
			t.Errorf("operator subscribe %s granted %#x, want refused", f, q)
		}
	}
	if _, err := mqttConnect(t, c.MQTTURLs[0], "_op_b-1", "_op_b", "pw", true); err == nil {
		t.Error("unknown operator admitted")
	}
}

// NATS grants a $share subscription and delivers nothing: the cloud must
// not rely on MQTT shared subscriptions on NATS.
func TestClusterSharedSubscriptionDeliversNothing(t *testing.T) {
	cr := newCreds(t, "d1")
	c := natscluster.Start(t, natscluster.Options{Nodes: 1, Auth: authOpts(cr)})
	cl := mustMQTT(t, c.MQTTURLs[0], "_cloud-a", c.CloudUser, cloudPW, true)
	q := cl.subscribe(t, "$share/g/bv/v1/dev/+/usage", 1)
	t.Logf("$share SUBACK %#x", q)
	d1 := mustMQTT(t, c.MQTTURLs[0], "d1", "d1", "pw", true)
	d1.publish(t, "bv/v1/dev/d1/usage", 1, false, "u1")
	select {
	case m := <-cl.got:
		t.Fatalf("a $share subscription delivered %s: NATS behaviour changed, revisit the ingest", m.Topic())
	case <-time.After(2 * time.Second):
	}
}

// Closing one responder leaves connects answered by the other.
func TestClusterResponderLoss(t *testing.T) {
	ids := []string{"d0", "d1", "d2", "d3", "d4", "d5"}
	cr := newCreds(t, ids...)
	c := natscluster.Start(t, natscluster.Options{Auth: authOpts(cr)})
	c.Responders[0].Close()
	// Distinct devices, each connecting at once after the loss. A request
	// routed in the moment the lost responder's interest is still known
	// to a node times out (auth timeout): the device retries, as devices
	// do; every one must be admitted by the other responder.
	retries := 0
	for i, id := range ids {
		for try := 0; ; try++ {
			cl, err := mqttConnect(t, c.MQTTURLs[i%3], id, id, "pw", true)
			if err == nil {
				cl.Disconnect(50)
				break
			}
			if try == 3 {
				t.Fatalf("%s never admitted: %v", id, err)
			}
			retries++
		}
	}
	t.Logf("%d connects retried after the responder loss", retries)
	if s := c.Responders[1].Stats(); s.Admitted < uint64(len(ids)) {
		t.Fatalf("second responder admitted %d, want ≥ %d", s.Admitted, len(ids))
	}
}

// The per-stream consumer limit: with a limit of 4 the 5th persistent
// QoS 1 session is refused; with 12 all 8 are accepted (scaled form of
// nats-server's default of 1,000 refusing the 1,000th device).
func TestClusterConsumerLimit(t *testing.T) {
	for _, x := range []struct {
		limit, devices int
		refused        bool
	}{{4, 5, true}, {12, 8, false}} {
		t.Run(fmt.Sprintf("limit%d", x.limit), func(t *testing.T) {
			var ids []string
			for i := range x.devices {
				ids = append(ids, fmt.Sprintf("d%d", i))
			}
			cr := newCreds(t, ids...)
			c := natscluster.Start(t, natscluster.Options{Nodes: 1, MaxConsumers: x.limit, Auth: authOpts(cr)})
			refused := 0
			for _, id := range ids {
				d := mustMQTT(t, c.MQTTURLs[0], id, id, "pw", false)
				if q := d.subscribe(t, "bv/v1/dev/"+id+"/cmd", 1); q == 0x80 {
					refused++
				}
			}
			if x.refused && refused == 0 {
				t.Fatalf("limit %d: all %d sessions accepted, want refusals", x.limit, x.devices)
			}
			if !x.refused && refused != 0 {
				t.Fatalf("limit %d: %d of %d sessions refused", x.limit, refused, x.devices)
			}
		})
	}
}

// A persistent QoS 1 session survives the SIGKILL of its node: commands
// published while the device is away arrive when it reconnects to
// another node. Nodes run as processes.
func TestClusterProcsSessionResumedAfterKill(t *testing.T) {
	cr := newCreds(t, "d1")
	c, err := natscluster.StartProcs(natscluster.Options{Dir: t.TempDir(), Auth: authOpts(cr)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d := mustMQTT(t, c.MQTTURLs[0], "d1", "d1", "pw", false)
	if q := d.subscribe(t, "bv/v1/dev/d1/cmd", 1); q != 1 {
		t.Fatalf("subscribe granted %#x", q)
	}
	if err := c.Kill(0); err != nil {
		t.Fatal(err)
	}
	// Connects are still answered with node 0 (and any responder
	// connected through it) gone.
	for i := range 4 {
		retryMQTT(t, c.MQTTURLs[1+i%2], "_probe", c.CloudUser, cloudPW, true).Disconnect(50)
	}
	// Right after the kill, the JetStream leaders move: connects retry,
	// and so do the commands, as the cloud's publisher does (a node drops
	// a client whose QoS 1 publish it cannot store yet: "connection lost
	// before Publish completed"). A retried command may arrive twice; the
	// device is idempotent on the message ID.
	var cl *client
	for i := range 3 {
		payload := fmt.Sprintf("c%d", i)
		deadline := time.Now().Add(60 * time.Second)
		for {
			if cl == nil || !cl.IsConnectionOpen() {
				cl = retryMQTT(t, c.MQTTURLs[1], "_cloud-1", c.CloudUser, cloudPW, true)
			}
			err := cl.tryPublish("bv/v1/dev/d1/cmd", 1, false, payload, 10*time.Second)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("publish %s: %v", payload, err)
			}
			t.Logf("publish %s: %v; again", payload, err)
			time.Sleep(300 * time.Millisecond)
		}
	}
	d2 := retryMQTT(t, c.MQTTURLs[2], "d1", "d1", "pw", false)
	for i := range 3 {
		expectMsg(t, d2.got, "bv/v1/dev/d1/cmd", fmt.Sprintf("c%d", i), 20*time.Second)
	}
	// The killed node comes back on its store and serves again.
	if err := c.Restart(0); err != nil {
		t.Fatal(err)
	}
	nc := natsCloud(t, c, 0)
	if !strings.HasPrefix(nc.ConnectedUrl(), "nats://127.0.0.1") {
		t.Fatalf("connected to %s", nc.ConnectedUrl())
	}
}

func retryMQTT(t testing.TB, url, id, user, pass string, clean bool) *client {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := mqttConnect(t, url, id, user, pass, clean)
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("mqtt %s on %s: %v", id, url, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// Many sessions on processes: VEND_NATS_SESSIONS devices (the long form:
// 1100, past nats-server's default of 1,000; default 40) each hold a persistent
// session with a QoS 1 subscription on a 3-node cluster of processes
// with the generated (raised) limit; none is refused. It prints the
// nodes' resident memory per session.
func TestClusterProcsManySessions(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("VEND_NATS_SESSIONS"))
	if n <= 0 {
		n = 40
	}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("m%05d", i)
	}
	cr := newCreds(t, ids...)
	// VEND_NATS_MAX_CONSUMERS=1000 shows nats-server's own default
	// refusing the sessions past it.
	limit, _ := strconv.Atoi(os.Getenv("VEND_NATS_MAX_CONSUMERS"))
	c, err := natscluster.StartProcs(natscluster.Options{Dir: t.TempDir(), MaxConsumers: limit, Auth: authOpts(cr)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	before := rss(t, c)
	start := time.Now()
	var refused, failed, retried atomic.Int64
	var errMu sync.Mutex
	errs := map[string]int{}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i, id := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			// A device retries a refused connect (as the controller does):
			// count the retries, fail on a device never admitted.
			var d *client
			var err error
			for try := range 3 {
				if d, err = mqttConnect(t, c.MQTTURLs[i%3], id, id, "pw", false); err == nil {
					break
				}
				errMu.Lock()
				errs[err.Error()]++
				errMu.Unlock()
				retried.Add(1)
				time.Sleep(time.Duration(try+1) * 500 * time.Millisecond)
			}
			if err != nil {
				failed.Add(1)
				return
			}
			if q := d.subscribe(t, "bv/v1/dev/"+id+"/cmd", 1); q != 1 {
				refused.Add(1)
			}
		}()
	}
	wg.Wait()
	after := rss(t, c)
	t.Logf("%d sessions in %v: %d refused, %d connects retried %v, %d devices never admitted", n, time.Since(start).Round(time.Millisecond), refused.Load(), retried.Load(), errs, failed.Load())
	for i := range before {
		t.Logf("node %d RSS %d MiB → %d MiB: %.1f KiB per session", i, before[i]>>20, after[i]>>20, float64(after[i]-before[i])/1024/float64(n))
	}
	if failed.Load() != 0 {
		t.Fatalf("%d devices never admitted", failed.Load())
	}
	switch {
	case limit > 0 && limit < n:
		if refused.Load() != int64(n-limit) {
			t.Fatalf("limit %d: %d of %d sessions refused, want %d", limit, refused.Load(), n, n-limit)
		}
	case refused.Load() != 0:
		t.Fatalf("%d sessions refused", refused.Load())
	}
}

func rss(t *testing.T, c *natscluster.Cluster) []int64 {
	var out []int64
	for i := range 3 {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.Pid(i)))
		if err != nil {
			t.Fatal(err)
		}
		var kb int64
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "VmRSS:") {
				kb, _ = strconv.ParseInt(strings.Fields(l)[1], 10, 64)
			}
		}
		out = append(out, kb<<10)
	}
	return out
}

// The cloud's grant is enough for a NATS-native shared consumer: it
// creates a replicated work-queue stream over the devices' uplinks and a
// durable consumer; a device's QoS 1 MQTT publish on one node lands in
// it and is fetched through another node, once.
func TestClusterCloudWorkQueueOfUplinks(t *testing.T) {
	cr := newCreds(t, "d1")
	c := natscluster.Start(t, natscluster.Options{Auth: authOpts(cr)})
	nc := natsCloud(t, c, 1)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "UPLINKS", Subjects: []string{"bv.v1.dev.*.usage", "bv.v1.dev.*.evt", "bv.v1.dev.*.reply"},
		Retention: jetstream.WorkQueuePolicy, Replicas: 3})
	if err != nil {
		t.Fatalf("create stream as the cloud: %v", err)
	}
	cons, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "cloud", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatalf("create consumer as the cloud: %v", err)
	}
	d1 := mustMQTT(t, c.MQTTURLs[0], "d1", "d1", "pw", true)
	d1.publish(t, "bv/v1/dev/d1/usage", 1, false, "u1")
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for m := range batch.Messages() {
		n++
		if m.Subject() != "bv.v1.dev.d1.usage" || string(m.Data()) != "u1" {
			t.Fatalf("fetched %s %q", m.Subject(), m.Data())
		}
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n != 1 {
		t.Fatalf("fetched %d messages: %v", n, batch.Error())
	}
	// A device cannot reach the stream's API: its credentials admit MQTT
	// connections only.
	if dnc, err := nats.Connect(c.NATSURLs[2], nats.UserInfo("d1", "pw")); err == nil {
		dnc.Close()
		t.Fatal("a device admitted on a NATS connection")
	}
}
