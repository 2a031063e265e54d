package ingest_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/broker"
	"beaconvend/cloud/broker/brokertest"
	"beaconvend/cloud/ingest"
)

const wait = 30 * time.Second

var devices = []string{"dev-0", "dev-1", "dev-2", "dev-3"}

// kinds starts each broker kind with persistence on.
var kinds = []struct {
	name  string
	start func(t *testing.T, acc *brokertest.Accounts) brokertest.Server
	// restartGroup is the share group used across broker restarts. Debian's
	// Mosquitto 2.0.11 restores a persistent session's plain subscriptions
	// after a restart but does not route to its $share ones until the
	// client subscribes again, so messages in that gap are not queued for
	// the cloud (the device outbox resends them until Acked); the restart
	// test therefore checks Mosquitto with plain subscriptions.
	restartGroup string
	// survivesRestart says the broker keeps the cloud's session and
	// queues for it across a restart. The embedded broker runs without
	// DataDir here: with mochi v2.7.9's bolt store a restored persistent
	// session is reset by the broker right after reconnecting, in a loop
	// (see the package doc), so its restarts lose sessions and the device
	// outbox resends.
	survivesRestart bool
}{
	{"embedded", func(t *testing.T, acc *brokertest.Accounts) brokertest.Server {
		return brokertest.NewEmbedded(t, acc, broker.Options{})
	}, "cloud", false},
	{"mosquitto", func(t *testing.T, acc *brokertest.Accounts) brokertest.Server {
		return brokertest.NewMosquitto(t, acc, brokertest.MosquittoOptions{Persistence: true})
	}, "", true},
}

// recorder is a Handler that counts each (device, id) and which instance
// handled it.
type recorder struct {
	mu     sync.Mutex
	counts map[string]int    // device/id → times handled
	by     map[string]int    // instance → messages handled
	leaves map[string]string // device/id → leaf
	notify chan struct{}
}

func newRecorder() *recorder {
	return &recorder{counts: map[string]int{}, by: map[string]int{}, leaves: map[string]string{}, notify: make(chan struct{}, 1)}
}

func (r *recorder) handler(instance string) ingest.Handler {
	return ingest.HandlerFunc(func(_ context.Context, dev string, leaf mqttapi.Leaf, msg mqttapi.Message) error {
		r.mu.Lock()
		k := dev + "/" + msg.Head().ID
		r.counts[k]++
		r.by[instance]++
		r.leaves[k] = string(leaf)
		r.mu.Unlock()
		select {
		case r.notify <- struct{}{}:
		default:
		}
		return nil
	})
}

// waitUntil polls cond whenever a message is handled, or every 50 ms, for
// at most wait.
func waitUntil(t *testing.T, what string, notify <-chan struct{}, cond func() bool) {
	t.Helper()
	deadline := time.After(wait)
	for !cond() {
		select {
		case <-notify:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out after %v waiting for %s", wait, what)
		}
	}
}

func (r *recorder) handled(keys []string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range keys {
		if r.counts[k] == 0 {
			return false
		}
	}
	return true
}

func (r *recorder) checkOnce(t *testing.T, keys []string) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range keys {
		if n := r.counts[k]; n != 1 {
			t.Errorf("message %s handled %d times, want 1", k, n)
		}
	}
}

// testLogger logs to the test's output when VEND_TEST_LOG is set.
func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("VEND_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type instance struct {
	in   *ingest.Ingest
	stop func()
}

// startIngest runs an ingest and stops it at the end of the test (or by stop()).
func startIngest(t *testing.T, srv brokertest.Server, acc *brokertest.Accounts, clientID, group string, h ingest.Handler, d ingest.Deduper) instance {
	t.Helper()
	return runIngest(t, ingest.Options{
		URL: srv.URL(), ClientID: clientID, Username: acc.CloudUser, Password: acc.CloudPassword,
		Group: group, Handler: h, Dedup: d, MaxReconnectInterval: 2 * time.Second,
		Logger: testLogger(t),
	})
}

// runIngest makes and runs an ingest from o, waits until it is
// subscribed, and stops it at the end of the test (or by stop()).
func runIngest(t *testing.T, o ingest.Options) instance {
	t.Helper()
	in, err := ingest.New(o)
	if err != nil {
		t.Fatalf("ingest.New: %v", err)
	}
	clientID := o.ClientID
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
	return instance{in: in, stop: stop}
}

// ackCounts counts the Acks a device received, by message id.
type ackCounts struct {
	mu sync.Mutex
	n  map[string]int
}

// counts returns a copy of the counts so far.
func (a *ackCounts) counts() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return maps.Clone(a.n)
}

// listenAcks subscribes d to its own cmd topic and counts the Acks on it.
func listenAcks(t *testing.T, d paho.Client, dev string) *ackCounts {
	t.Helper()
	a := &ackCounts{n: map[string]int{}}
	cmd, _ := mqttapi.Topic("", dev, mqttapi.LeafCmd)
	if err := brokertest.Done(d.Subscribe(cmd, 1, func(_ paho.Client, m paho.Message) {
		ack, err := mqttapi.DecodeAs[mqttapi.Ack](m.Payload())
		if err != nil {
			t.Errorf("device got a bad cmd: %v", err)
			return
		}
		a.mu.Lock()
		for _, id := range ack.IDs {
			a.n[id]++
		}
		a.mu.Unlock()
	})); err != nil {
		t.Fatal(err)
	}
	return a
}

func device(t *testing.T, srv brokertest.Server, acc *brokertest.Accounts, dev string) paho.Client {
	t.Helper()
	return brokertest.MustConnect(t, brokertest.ClientOptions(srv.URL(), dev, dev, acc.Password(dev), nil))
}

func evtTopic(dev string) string {
	tp, _ := mqttapi.Topic("", dev, mqttapi.LeafEvt)
	return tp
}

// event returns an encoded power_restored event with id.
func event(t *testing.T, id string) []byte {
	t.Helper()
	b, err := mqttapi.Encode(&mqttapi.Event{Envelope: mqttapi.Envelope{ID: id, TS: time.Now().UnixMilli()}, Kind: mqttapi.EventPowerRestored})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// publishEvents publishes n events from dev with ids <prefix>-<i> and
// returns their dev/id keys.
func publishEvents(t *testing.T, c paho.Client, dev, prefix string, n int) []string {
	t.Helper()
	var keys []string
	for i := range n {
		id := fmt.Sprintf("%s-%d", prefix, i)
		if err := brokertest.Done(c.Publish(evtTopic(dev), 1, false, event(t, id))); err != nil {
			t.Fatalf("publish %s: %v", id, err)
		}
		keys = append(keys, dev+"/"+id)
	}
	return keys
}

func TestSharedSplitDedupAck(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			acc := brokertest.NewAccounts(t, devices...)
			srv := k.start(t, acc)
			rec, dedup := newRecorder(), ingest.NewMemoryDedup(1000)
			i1 := startIngest(t, srv, acc, "_cloud-1", "cloud", rec.handler("1"), dedup)
			i2 := startIngest(t, srv, acc, "_cloud-2", "cloud", rec.handler("2"), dedup)

			// Device 0 listens for its Acks.
			d0 := device(t, srv, acc, devices[0])
			acks := listenAcks(t, d0, devices[0])

			var keys []string
			for _, dev := range devices {
				c := d0
				if dev != devices[0] {
					c = device(t, srv, acc, dev)
				}
				keys = append(keys, publishEvents(t, c, dev, "m", 50)...)
			}
			waitUntil(t, "200 messages handled", rec.notify, func() bool { return rec.handled(keys) })
			rec.checkOnce(t, keys)
			rec.mu.Lock()
			n1, n2 := rec.by["1"], rec.by["2"]
			rec.mu.Unlock()
			t.Logf("split: instance 1 handled %d, instance 2 handled %d", n1, n2)
			if n1 == 0 || n2 == 0 || n1+n2 != len(keys) {
				t.Errorf("split %d + %d, want both > 0 and a sum of %d", n1, n2, len(keys))
			}

			// The same id three times: handled once, two duplicates, acked each time.
			for range 3 {
				if err := brokertest.Done(d0.Publish(evtTopic(devices[0]), 1, false, event(t, "dup-1"))); err != nil {
					t.Fatal(err)
				}
			}
			dupKey := []string{devices[0] + "/dup-1"}
			waitUntil(t, "two duplicates counted", rec.notify, func() bool {
				return i1.in.Stats().Duplicates+i2.in.Stats().Duplicates == 2 && rec.handled(dupKey)
			})
			rec.checkOnce(t, dupKey)

			waitUntil(t, "acks of device 0's messages", rec.notify, func() bool {
				acked := acks.counts()
				for i := range 50 {
					if acked[fmt.Sprintf("m-%d", i)] == 0 {
						return false
					}
				}
				return acked["dup-1"] == 3
			})
			s1, s2 := i1.in.Stats(), i2.in.Stats()
			if s1.HandlerErrors+s2.HandlerErrors+s1.AckErrors+s2.AckErrors != 0 {
				t.Errorf("stats: %+v / %+v: want no handler or ack errors", s1, s2)
			}
		})
	}
}

func TestMalformedDropped(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			acc := brokertest.NewAccounts(t, devices...)
			srv := k.start(t, acc)
			rec := newRecorder()
			in := startIngest(t, srv, acc, "_cloud-m", "", rec.handler("1"), nil)
			d := device(t, srv, acc, devices[1])
			dev := devices[1]
			big := `{"v":1,"id":"big","ts":1,"type":"event","kind":"power_restored","detail":"` + strings.Repeat("x", mqttapi.MaxPayload) + `"}`
			cases := map[string]string{
				"not json": "payload.malformed",
				"[1,2]":    "payload.malformed",
				big:        "payload.too_large",
				`{"v":2,"id":"a","ts":1,"type":"event","kind":"power_restored"}`:           "payload.version",
				`{"v":1,"id":"a","ts":1,"type":"usage","kind":"power_restored"}`:           "payload.type",
				`{"v":1,"id":"a b","ts":1,"type":"event","kind":"power_restored"}`:         "payload.id",
				`{"v":1,"id":"a","ts":1,"type":"event","kind":"power_restored","extra":1}`: "payload.field",
				`{"v":1,"id":"a","ts":1,"type":"event","kind":"power_restored","id":"b"}`:  "payload.malformed",
			}
			want := map[string]uint64{}
			for p, code := range cases {
				if err := brokertest.Done(d.Publish(evtTopic(dev), 1, false, p)); err != nil {
					t.Fatalf("publish: %v", err)
				}
				want[code]++
			}
			// Same device, same worker, in order: once the marker is
			// handled, every bad payload before it has been counted.
			keys := publishEvents(t, d, dev, "ok", 1)
			waitUntil(t, "marker handled", rec.notify, func() bool { return rec.handled(keys) && in.in.Stats().Handled == 1 })
			s := in.in.Stats()
			for code, n := range want {
				if s.Dropped[code] != n {
					t.Errorf("Dropped[%s] = %d, want %d (all: %v)", code, s.Dropped[code], n, s.Dropped)
				}
			}
			if s.Received[mqttapi.LeafEvt] != uint64(len(cases)+1) || s.Handled != 1 {
				t.Errorf("Received[evt] = %d, Handled = %d; want %d, 1", s.Received[mqttapi.LeafEvt], s.Handled, len(cases)+1)
			}
		})
	}
}

func TestReconnectPersistentSession(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			acc := brokertest.NewAccounts(t, devices...)
			srv := k.start(t, acc)
			// One Deduper across the three lives of the instance, as the
			// durable store would be: a message handled just before a
			// disconnect may come again when its PUBACK did not get out.
			rec, dedup := newRecorder(), ingest.NewMemoryDedup(0)
			const id = "_cloud-p"
			dev := devices[2]
			group := k.restartGroup

			// A: the cloud is away, the broker stays: the session queues.
			first := startIngest(t, srv, acc, id, group, rec.handler("a"), dedup)
			first.stop()
			d := device(t, srv, acc, dev)
			keysA := publishEvents(t, d, dev, "away", 10)
			d.Disconnect(50)
			second := startIngest(t, srv, acc, id, group, rec.handler("b"), dedup)
			waitUntil(t, "messages published while the cloud was away", rec.notify, func() bool { return rec.handled(keysA) })

			// B: the broker restarts under a running ingest, which reconnects.
			before := second.in.Stats().Connects
			srv.Stop(t)
			srv.Start(t)
			waitUntil(t, "ingest reconnected", rec.notify, func() bool { return second.in.Stats().Connects > before })
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			if err := second.in.WaitSubscribed(ctx); err != nil {
				t.Fatal(err)
			}
			d = device(t, srv, acc, dev)
			keysB := publishEvents(t, d, dev, "after-restart", 10)
			waitUntil(t, "messages after the broker restart", rec.notify, func() bool { return rec.handled(keysB) })

			if !k.survivesRestart {
				rec.checkOnce(t, append(keysA, keysB...))
				return
			}
			// C: cloud away and broker restarted: the persisted session
			// still holds the subscription and queues for the cloud.
			second.stop()
			d.Disconnect(50)
			srv.Stop(t)
			srv.Start(t)
			d = device(t, srv, acc, dev)
			keysC := publishEvents(t, d, dev, "restart-away", 10)
			third := startIngest(t, srv, acc, id, group, rec.handler("c"), dedup)
			waitUntil(t, "messages queued across a broker restart", rec.notify, func() bool { return rec.handled(keysC) })
			if s := third.in.Stats(); s.HandlerErrors != 0 {
				t.Errorf("stats %+v", s)
			}
			rec.checkOnce(t, append(append(keysA, keysB...), keysC...))
		})
	}
}

func TestPublishCommand(t *testing.T) {
	acc := brokertest.NewAccounts(t, devices...)
	srv := kinds[0].start(t, acc)
	in := startIngest(t, srv, acc, "_cloud-cmd", "", newRecorder().handler("1"), nil)
	d := device(t, srv, acc, devices[3])
	got := make(chan mqttapi.Message, 4)
	cmd, _ := mqttapi.Topic("", devices[3], mqttapi.LeafCmd)
	if err := brokertest.Done(d.Subscribe(cmd, 1, func(_ paho.Client, m paho.Message) {
		msg, err := mqttapi.Decode(mqttapi.LeafCmd, m.Payload())
		if err != nil {
			t.Errorf("device: decode cmd: %v", err)
			return
		}
		got <- msg
	})); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	reboot := &mqttapi.Reboot{Envelope: mqttapi.NewEnvelope(time.Now())}
	if err := in.in.Publish(ctx, devices[3], reboot); err != nil {
		t.Fatalf("Publish(Reboot): %v", err)
	}
	ids := make([]string, mqttapi.MaxAckIDs+1)
	for i := range ids {
		ids[i] = fmt.Sprintf("u%d", i)
	}
	if err := in.in.Ack(ctx, devices[3], ids...); err != nil {
		t.Fatalf("Ack: %v", err)
	}
	var n int
	for n < len(ids) {
		select {
		case m := <-got:
			switch m := m.(type) {
			case *mqttapi.Reboot:
				if m.ID != reboot.ID {
					t.Errorf("Reboot id %q, want %q", m.ID, reboot.ID)
				}
			case *mqttapi.Ack:
				n += len(m.IDs)
			}
		case <-ctx.Done():
			t.Fatalf("device got %d of %d acked ids", n, len(ids))
		}
	}
	usage := &mqttapi.Event{Envelope: mqttapi.NewEnvelope(time.Now()), Kind: mqttapi.EventPowerRestored}
	if err := in.in.Publish(ctx, devices[3], usage); !errors.Is(err, ingest.ErrNotCommand) {
		t.Errorf("Publish(Event) = %v, want ErrNotCommand", err)
	}
}

func TestMemoryDedup(t *testing.T) {
	d := ingest.NewMemoryDedup(2)
	steps := []struct {
		dev, id string
		want    bool
	}{
		{"a", "1", false}, {"a", "1", true}, {"b", "1", false}, {"a", "2", false},
		{"b", "1", true}, // still held (a/1 was evicted as least recent)
		{"a", "1", false},
	}
	for i, s := range steps {
		if got, err := d.Seen(s.dev, s.id); got != s.want || err != nil {
			t.Errorf("step %d: Seen(%s, %s) = %v, %v; want %v", i, s.dev, s.id, got, err, s.want)
		}
	}
	_ = d.Forget("a", "1")
	if got, _ := d.Seen("a", "1"); got {
		t.Error("Seen after Forget = true, want false")
	}
}

// Progress events are handled but neither deduplicated nor acknowledged;
// every other event and usage report is acknowledged. Counted over a
// running machine's minute of progress (one a second): before this rule
// it cost 60 acks (and 60 dedup records); now it costs none.
func TestProgressNotAcked(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			acc := brokertest.NewAccounts(t, devices[0])
			srv := k.start(t, acc)
			rec, dedup := newRecorder(), ingest.NewMemoryDedup(1000)
			in := startIngest(t, srv, acc, "_cloud-1", "", rec.handler("1"), dedup)
			d0 := device(t, srv, acc, devices[0])
			acks := listenAcks(t, d0, devices[0])
			session := vend.NewSessionID()
			var keys []string
			for i := range 60 {
				units := uint64(100 * (i + 1))
				amount := vend.Amount{Minor: int64(5 * (i + 1)), Currency: "EUR"}
				id := fmt.Sprintf("p-%d", i)
				b, err := mqttapi.Encode(&mqttapi.Event{Envelope: mqttapi.Envelope{ID: id, TS: time.Now().UnixMilli()}, Kind: mqttapi.EventProgress,
					Session: session, Machine: "tap1", Units: &units, Unit: vend.UnitML, Amount: &amount})
				if err != nil {
					t.Fatal(err)
				}
				if err := brokertest.Done(d0.Publish(evtTopic(devices[0]), 1, false, b)); err != nil {
					t.Fatal(err)
				}
				keys = append(keys, devices[0]+"/"+id)
			}
			keys = append(keys, publishEvents(t, d0, devices[0], "e", 1)...)
			waitUntil(t, "61 events handled", rec.notify, func() bool { return rec.handled(keys) })
			waitUntil(t, "the ack of the other event", rec.notify, func() bool {
				return acks.counts()["e-0"] == 1
			})
			progressAcks := len(acks.counts()) - 1
			t.Logf("60 progress events (one running machine, one minute): %d acks, %d dedup records", progressAcks, dedup.Len()-1)
			if progressAcks != 0 || dedup.Len() != 1 {
				t.Fatalf("progress acked %d times, %d dedup records; want 0 and only the other event's", progressAcks, dedup.Len())
			}
			if s := in.in.Stats(); s.Handled != 61 {
				t.Fatalf("handled %d, want 61", s.Handled)
			}
		})
	}
}
