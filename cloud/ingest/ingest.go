package ingest

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/vend"
)

// Defaults for [Options].
const (
	DefaultWorkers        = 4
	DefaultQueueLen       = 256              // messages waiting per worker before the MQTT client is held back
	DefaultKeepAlive      = 30 * time.Second // MQTT keepalive
	DefaultConnectTimeout = 10 * time.Second
	// DefaultPubAckStall is how long a command waits for its PUBACK before
	// the ingest gives up on the connection it went out on
	// (Options.PubAckStall).
	DefaultPubAckStall          = 3 * time.Second
	DefaultMaxReconnectInterval = 30 * time.Second // the reconnect backoff doubles from 1 s up to this
	DefaultSubscribeTimeout     = 10 * time.Second
	DefaultAckTimeout           = 30 * time.Second // how long an automatic Ack's PUBACK is waited for before counting an error
)

// Ingest errors.
var (
	ErrOptions    = vend.E(vend.Invalid, "ingest.options", "ingest: invalid options")
	ErrNotRunning = vend.E(vend.Transient, "ingest.not_running", "ingest: not running")
	ErrNotCommand = vend.E(vend.Invalid, "ingest.not_command", "ingest: not a cloud-to-device message")
	ErrPublish    = vend.E(vend.Transient, "ingest.publish", "ingest: publish failed")
	ErrSubscribe  = vend.E(vend.Internal, "ingest.subscribe", "ingest: subscription refused")
	// ErrGroup: on NATS, the work-queue stream already has another cloud
	// group's consumer (every cloud instance of a fleet uses one group).
	ErrGroup = vend.E(vend.Invalid, "ingest.group", "ingest: another cloud group consumes the uplinks")
)

// Handler receives every decoded, validated uplink. deviceID comes from
// the topic (the broker ACL guarantees the publisher is that device), leaf
// says which uplink, and msg is one of *mqttapi.State, *mqttapi.Telemetry,
// *mqttapi.Event, *mqttapi.Usage or *mqttapi.Reply. Calls for one device
// are sequential and in arrival order; different devices are handled
// concurrently (Options.Workers). An error is counted and logged, the id is
// forgotten by the Deduper and no Ack is sent, so the device's outbox sends
// the message again.
type Handler interface {
	Handle(ctx context.Context, deviceID string, leaf mqttapi.Leaf, msg mqttapi.Message) error
}

// HandlerFunc adapts a function to [Handler].
type HandlerFunc func(ctx context.Context, deviceID string, leaf mqttapi.Leaf, msg mqttapi.Message) error

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, deviceID string, leaf mqttapi.Leaf, msg mqttapi.Message) error {
	return f(ctx, deviceID, leaf, msg)
}

// Options configure an [Ingest]. URL, ClientID, Username, Password and
// Handler are required.
type Options struct {
	URL string // broker, e.g. "tcp://127.0.0.1:1883" or "ssl://mqtt.example.com:8883"
	// FallbackURLs are tried after URL, in order, on every (re)connect:
	// the other MQTT listeners of a cluster, so that commands and state
	// survive the loss of URL's node.
	FallbackURLs []string
	ClientID     string // fixed per instance so its persistent session survives restarts; must not be a valid device id (e.g. "_cloud-1")
	Username     string // the cloud service user (broker.DefaultCloudUser)
	Password     string
	TLS          *tls.Config // for ssl:// URLs; nil uses the system roots

	// Group is the shared-subscription group of the cloud instances
	// ("$share/<Group>/…"); empty subscribes unshared (one instance).
	Group string
	Tree  mqttapi.Tree // topic prefix; the zero Tree is mqttapi.DefaultPrefix

	// NATS, when set, consumes evt, usage, reply and telemetry from NATS
	// (see [NATSOptions]) and subscribes over MQTT to state only; URL is
	// then one of the cluster's MQTT listeners, used for state and for
	// commands.
	NATS *NATSOptions

	Handler Handler // required
	Dedup   Deduper // default: NewMemoryDedup(DefaultDedupCapacity)
	// DisableAutoAck stops the ingest from sending the application-level
	// Ack for the messages [Acked] names (usage, events but progress) the
	// Handler stored, and for their duplicates. The Handler then acks with
	// [Ingest.Ack] itself.
	DisableAutoAck bool

	Workers              int           // concurrent handlers, sharded by device; default DefaultWorkers
	QueueLen             int           // per worker; default DefaultQueueLen
	KeepAlive            time.Duration // default DefaultKeepAlive
	ConnectTimeout       time.Duration // default DefaultConnectTimeout
	MaxReconnectInterval time.Duration // default DefaultMaxReconnectInterval
	// PubAckStall: a command not acknowledged by the broker within this
	// long closes the connection it went out on (once per connection), so
	// that paho reconnects and sends it again with the DUP flag on a new
	// one. A broker answers the PUBACKs of a connection in order, and a
	// NATS node holds them all while one store waits for JetStream (up to
	// its js_api_timeout, while the leaders move after a node's death):
	// without this every command behind it waits too. The device answers a
	// repeated command id without acting twice. Default
	// DefaultPubAckStall; negative: never.
	PubAckStall time.Duration
	Now         func() time.Time
	Logger      *slog.Logger // default: discard
}

// Ingest is the cloud's MQTT client: it subscribes to the device uplinks,
// decodes them strictly, drops duplicates and hands the rest to a Handler;
// it also publishes commands. Make it with [New], start it with
// [Ingest.Run].
type Ingest struct {
	opts   Options
	log    *slog.Logger
	subs   map[string]byte
	stats  *counters
	client atomic.Pointer[paho.Client]
	conn   atomic.Pointer[bufferedConn] // the broker connection paho uses now

	mu      sync.Mutex
	ready   chan struct{} // closed while subscribed; replaced when the connection is lost
	closing bool
	queues  []chan job
	fatal   chan error
	ran     bool

	workers sync.WaitGroup
	acks    sync.WaitGroup

	nc        atomic.Pointer[nats.Conn]
	natsReady chan struct{} // closed once the JetStream consumer runs (or at once without NATS)
	natsStop  func()
}

type job struct {
	device  string
	leaf    mqttapi.Leaf
	payload []byte
	settle  func(outcome) // JetStream messages: ack, nak or terminate; nil for MQTT
}

// New checks opts and returns an Ingest that is not yet connected. It
// returns ErrOptions for missing options, a ClientID that is a valid device
// id, or a bad Group or Tree.
func New(opts Options) (*Ingest, error) {
	switch {
	case opts.URL == "":
		return nil, vend.Errorf(ErrOptions, "no URL")
	case opts.ClientID == "":
		return nil, vend.Errorf(ErrOptions, "no ClientID")
	case vend.ValidateDeviceID(opts.ClientID) == nil:
		return nil, vend.Errorf(ErrOptions, "ClientID %q is a valid device id; the embedded broker refuses it for the cloud (use e.g. \"_cloud-1\")", opts.ClientID)
	case opts.Username == "":
		return nil, vend.Errorf(ErrOptions, "no Username")
	case opts.Handler == nil:
		return nil, vend.Errorf(ErrOptions, "no Handler")
	}
	subs, err := opts.Tree.CloudSubscriptions(opts.Group)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrOptions, err)
	}
	if opts.NATS != nil {
		n := *opts.NATS
		if err := n.defaults(opts); err != nil {
			return nil, err
		}
		opts.NATS = &n
		// Only state over MQTT: unshared, with the retained messages.
		f, err := opts.Tree.Filter(mqttapi.LeafState)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrOptions, err)
		}
		subs = []mqttapi.Subscription{{Filter: f, QoS: 1}}
	}
	if opts.Dedup == nil {
		opts.Dedup = NewMemoryDedup(0)
	}
	if opts.Workers <= 0 {
		opts.Workers = DefaultWorkers
	}
	if opts.QueueLen <= 0 {
		opts.QueueLen = DefaultQueueLen
	}
	if opts.KeepAlive <= 0 {
		opts.KeepAlive = DefaultKeepAlive
	}
	if opts.PubAckStall == 0 {
		opts.PubAckStall = DefaultPubAckStall
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = DefaultConnectTimeout
	}
	if opts.MaxReconnectInterval <= 0 {
		opts.MaxReconnectInterval = DefaultMaxReconnectInterval
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	in := &Ingest{
		opts:  opts,
		log:   log.With("client", opts.ClientID),
		subs:  map[string]byte{},
		stats: newCounters(),
		ready: make(chan struct{}),
		fatal: make(chan error, 1),

		natsReady: make(chan struct{}),
	}
	if opts.NATS == nil {
		close(in.natsReady)
	}
	for _, s := range subs {
		in.subs[s.Filter] = s.QoS
	}
	return in, nil
}

// Run connects (retrying with backoff until the broker answers), keeps the
// subscriptions in place across reconnects and handles messages until ctx
// is done; then it disconnects, lets the workers finish what was queued
// and returns nil. It returns ErrSubscribe when the broker refuses a
// subscription (a broker ACL that does not give the cloud its rights),
// ErrGroup on NATS when the uplink stream already has another group's
// consumer, and ErrOptions when called twice.
func (in *Ingest) Run(ctx context.Context) error {
	in.mu.Lock()
	if in.ran {
		in.mu.Unlock()
		return vend.Errorf(ErrOptions, "Run called twice")
	}
	in.ran = true
	in.queues = make([]chan job, in.opts.Workers)
	for i := range in.queues {
		in.queues[i] = make(chan job, in.opts.QueueLen)
	}
	in.mu.Unlock()

	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	for _, q := range in.queues {
		in.workers.Add(1)
		go in.work(hctx, q)
	}

	var err error
	c := paho.NewClient(in.clientOptions())
	in.client.Store(&c)
	tok := c.Connect()
	if in.opts.NATS != nil { // after the MQTT client exists: the acks go through it
		if err = in.natsStart(ctx); err != nil {
			c.Disconnect(250)
			in.shutdown()
			return err
		}
	}
	select {
	case <-tok.Done():
		if err = tok.Error(); err != nil {
			err = fmt.Errorf("ingest: connect %s: %w", in.opts.URL, err)
		}
	case <-ctx.Done():
	}
	if err == nil {
		select {
		case <-ctx.Done():
		case err = <-in.fatal:
		}
	}
	c.Disconnect(250)
	in.shutdown()
	return err
}

// shutdown stops the NATS consumers, lets the workers finish (and settle)
// what was queued, then closes the NATS connection.
func (in *Ingest) shutdown() {
	in.mu.Lock()
	stop := in.natsStop
	in.mu.Unlock()
	if stop != nil {
		stop()
	}
	in.mu.Lock()
	in.closing = true
	for _, q := range in.queues {
		close(q)
	}
	in.mu.Unlock()
	in.workers.Wait()
	in.acks.Wait()
	if nc := in.nc.Load(); nc != nil {
		_ = nc.Drain()
	}
	in.log.Info("ingest: stopped", "stats", in.Stats())
}

func (in *Ingest) clientOptions() *paho.ClientOptions {
	o := paho.NewClientOptions().
		AddBroker(in.opts.URL).
		SetClientID(in.opts.ClientID).
		SetUsername(in.opts.Username).
		SetPassword(in.opts.Password).
		SetProtocolVersion(4).
		SetCleanSession(false). // persistent session: uplinks queue at the broker while we are away
		SetOrderMatters(true).  // the callback only queues, so it never blocks on paho itself
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(in.opts.MaxReconnectInterval).
		SetKeepAlive(in.opts.KeepAlive).
		SetPingTimeout(10 * time.Second).
		SetConnectTimeout(in.opts.ConnectTimeout).
		SetWriteTimeout(10 * time.Second).
		SetResumeSubs(false). // we subscribe again on every connect instead
		SetStore(newStore()). // ordered, and a copy of each packet (store.go)
		SetDefaultPublishHandler(in.onMessage).
		SetCustomOpenConnectionFn(in.dial).
		SetOnConnectHandler(in.onConnect).
		SetConnectionLostHandler(in.onLost).
		SetReconnectingHandler(func(paho.Client, *paho.ClientOptions) {
			in.log.Info("ingest: reconnecting", "url", in.opts.URL)
		})
	for _, u := range in.opts.FallbackURLs {
		o.AddBroker(u)
	}
	if in.opts.TLS != nil {
		o.SetTLSConfig(in.opts.TLS)
	}
	return o
}

// onConnect runs in its own goroutine after every CONNACK. A broker
// without persistence (or after session expiry) has forgotten our
// subscriptions, so they are made again every time; subscribing again to
// the same filter is harmless.
func (in *Ingest) onConnect(c paho.Client) {
	in.stats.add(func(s *Stats) { s.Connects++ })
	in.log.Info("ingest: connected", "url", in.opts.URL)
	// No callback: everything goes to the default handler, including
	// messages the broker sends from the stored session before this
	// SUBSCRIBE is answered. A refusal is retried a few times: mochi
	// (v2.7.9) answers 0x91 "packet identifier in use" when our SUBSCRIBE's
	// id equals one of its own QoS 1 messages still in flight to us after a
	// restart, which clears as soon as we ack those.
	var err error
	for attempt := 1; attempt <= subscribeAttempts; attempt++ {
		if err = in.subscribe(c); err == nil || !c.IsConnectionOpen() || errors.Is(err, errDowngraded) {
			break
		}
		in.log.Warn("ingest: subscribe refused; retrying", "attempt", attempt, "err", err)
		time.Sleep(time.Duration(attempt) * 200 * time.Millisecond)
	}
	if err != nil {
		in.stats.add(func(s *Stats) { s.SubscribeFails++ })
		if !c.IsConnectionOpen() {
			in.log.Warn("ingest: subscribe interrupted by a lost connection", "err", err)
			return // the next connect subscribes again
		}
		in.log.Error("ingest: subscribe failed", "err", err)
		select {
		case in.fatal <- err:
		default:
		}
		return
	}
	in.mu.Lock()
	select {
	case <-in.ready:
	default:
		close(in.ready)
	}
	in.mu.Unlock()
	in.log.Info("ingest: subscribed", "filters", len(in.subs), "group", in.opts.Group)
}

const subscribeAttempts = 8

func (in *Ingest) subscribe(c paho.Client) error {
	tok := c.SubscribeMultiple(in.subs, nil)
	if !tok.WaitTimeout(DefaultSubscribeTimeout) {
		return vend.Errorf(ErrSubscribe, "no SUBACK within %v", DefaultSubscribeTimeout)
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("%w: %w", ErrSubscribe, err)
	}
	return checkGranted(in.subs, tok.(*paho.SubscribeToken).Result())
}

// errDowngraded marks a SUBACK that granted less than asked: not a
// transient refusal, so it is not retried.
var errDowngraded = errors.New("granted a lower QoS than asked")

// checkGranted compares each SUBACK return code with the QoS asked for
// its filter. A refusal (0x80, or any code above 2) is ErrSubscribe; so is
// a grant below the asked QoS, wrapping errDowngraded: a shared filter
// granted QoS 0 loses every uplink a broken connection was carrying (and
// NATS, which has no shared subscriptions, grants "$share/…" and then
// delivers nothing; consume uplinks with Options.NATS there), so it is an
// error, not a degraded success.
func checkGranted(asked map[string]byte, granted map[string]byte) error {
	filters := slices.Collect(maps.Keys(asked))
	slices.SortFunc(filters, func(a, b string) int { // shared ones first, then in order
		unshared := func(f string) int {
			if strings.HasPrefix(f, "$share/") {
				return 0
			}
			return 1
		}
		return cmp.Or(cmp.Compare(unshared(a), unshared(b)), strings.Compare(a, b))
	})
	for _, f := range filters {
		qos := asked[f]
		code, ok := granted[f]
		switch {
		case !ok:
			return vend.Errorf(ErrSubscribe, "%q: no return code in the SUBACK", f)
		case code > 2:
			return vend.Errorf(ErrSubscribe, "%q: refused, SUBACK %#x", f, code)
		case code < qos:
			shared := ""
			if strings.HasPrefix(f, "$share/") {
				shared = " for a shared subscription (a broker without shared subscriptions, such as NATS, answers so: use broker.kind nats)"
			}
			return fmt.Errorf("%w: %q: %w: QoS %d, asked %d%s", ErrSubscribe, f, errDowngraded, code, qos, shared)
		}
	}
	return nil
}

func (in *Ingest) onLost(_ paho.Client, err error) {
	in.stats.add(func(s *Stats) { s.ConnectionLost++ })
	in.log.Warn("ingest: connection lost", "err", err)
	in.mu.Lock()
	select {
	case <-in.ready:
		in.ready = make(chan struct{})
	default:
	}
	in.mu.Unlock()
}

// WaitSubscribed blocks until the current connection's subscriptions are
// in place, or ctx is done (then it returns ctx.Err()).
func (in *Ingest) WaitSubscribed(ctx context.Context) error {
	select {
	case <-in.natsReady:
	case <-ctx.Done():
		return ctx.Err()
	}
	for {
		in.mu.Lock()
		ready := in.ready
		in.mu.Unlock()
		select {
		case <-ready:
			if c := in.client.Load(); c != nil && (*c).IsConnectionOpen() {
				return nil
			}
			select { // lost meanwhile: wait for the next one
			case <-time.After(10 * time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Stats returns a snapshot of the counters.
func (in *Ingest) Stats() Stats { return in.stats.snapshot() }

func (in *Ingest) drop(reason, device, topic string, err error) {
	in.stats.add(func(s *Stats) { s.Dropped[reason]++ })
	in.log.Warn("ingest: message dropped", "reason", reason, "device", device, "topic", clip(topic), "err", err)
}

// onMessage is paho's callback, on its router goroutine: it only parses
// the topic and queues the payload for the device's worker.
func (in *Ingest) onMessage(_ paho.Client, m paho.Message) {
	in.enqueue(m.Topic(), m.Payload(), nil)
}

// enqueue parses topic and queues payload for the device's worker; settle
// (for JetStream messages) is called with what became of it.
func (in *Ingest) enqueue(topic string, payload []byte, settle func(outcome)) {
	dev, leaf, err := in.opts.Tree.Parse(topic)
	if err != nil {
		in.stats.add(func(s *Stats) { s.Received["?"]++ })
		in.drop(vend.CodeOf(err), "", topic, err)
		if settle != nil {
			settle(outBad)
		}
		return
	}
	in.stats.add(func(s *Stats) { s.Received[leaf]++ })
	if leaf.Direction() != mqttapi.Uplink {
		in.drop(mqttapi.ErrLeaf.Code, dev, topic, vend.Errorf(mqttapi.ErrLeaf, "%s is not an uplink", leaf))
		if settle != nil {
			settle(outBad)
		}
		return
	}
	h := fnv.New32a()
	h.Write([]byte(dev))
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closing {
		in.drop(DropClosing, dev, topic, nil)
		if settle != nil {
			settle(outAgain)
		}
		return
	}
	// Blocking here holds paho (or the JetStream consumer) back, and so
	// the broker: that is the backpressure while the workers are busy.
	in.queues[h.Sum32()%uint32(len(in.queues))] <- job{device: dev, leaf: leaf, payload: payload, settle: settle}
}

func (in *Ingest) work(ctx context.Context, q <-chan job) {
	defer in.workers.Done()
	for j := range q {
		o := in.process(ctx, j)
		if j.settle != nil {
			j.settle(o)
		}
	}
}

// deduped reports whether msg on leaf is checked against the Deduper:
// the messages that are work. State and telemetry are superseded by the
// next one and every instance must see the retained state, so they go
// straight to the Handler; so do progress events, which are idempotent
// (the next one supersedes them) and not acknowledged: remembering their
// ids would only push useful ones out.
func deduped(l mqttapi.Leaf, msg mqttapi.Message) bool {
	switch l {
	case mqttapi.LeafEvt:
		return !isProgress(msg)
	case mqttapi.LeafUsage, mqttapi.LeafReply:
		return true
	}
	return false
}

// Acked reports whether the cloud acknowledges msg, received on leaf:
// exactly what the device keeps in its outbox until acknowledged, that
// is usage reports and every event but progress. Progress events travel
// outside the outbox (no retry); acknowledging them would cost a downlink
// per second per running machine for nothing. State, telemetry and
// replies are never acknowledged.
func Acked(l mqttapi.Leaf, msg mqttapi.Message) bool {
	switch l {
	case mqttapi.LeafUsage:
		return true
	case mqttapi.LeafEvt:
		return !isProgress(msg)
	}
	return false
}

func isProgress(msg mqttapi.Message) bool {
	e, ok := msg.(*mqttapi.Event)
	return ok && e.Kind == mqttapi.EventProgress
}

func (in *Ingest) process(ctx context.Context, j job) (out outcome) {
	defer func() {
		if r := recover(); r != nil { // a Handler bug must not take the ingest down
			in.stats.add(func(s *Stats) { s.HandlerErrors++ })
			in.log.Error("ingest: handler panicked", "device", j.device, "leaf", j.leaf, "panic", r)
			out = outRetry
		}
	}()
	msg, err := mqttapi.Decode(j.leaf, j.payload)
	if err != nil {
		in.drop(vend.CodeOf(err), j.device, string(j.leaf), err)
		return outBad
	}
	id := msg.Head().ID
	if deduped(j.leaf, msg) {
		dup, err := in.opts.Dedup.Seen(j.device, id)
		if err != nil {
			in.stats.add(func(s *Stats) { s.Dropped[DropDedupError]++ })
			in.log.Error("ingest: dedup lookup failed; message not handled", "device", j.device, "id", id, "err", err)
			return outRetry
		}
		if dup {
			in.stats.add(func(s *Stats) { s.Duplicates++ })
			in.log.Debug("ingest: duplicate", "device", j.device, "leaf", j.leaf, "id", id)
			if Acked(j.leaf, msg) && !in.opts.DisableAutoAck {
				in.autoAck(j.device, id)
			}
			return outDone
		}
	}
	if err := in.opts.Handler.Handle(ctx, j.device, j.leaf, msg); err != nil {
		in.stats.add(func(s *Stats) { s.HandlerErrors++ })
		in.log.Error("ingest: handler failed", "device", j.device, "leaf", j.leaf, "id", id, "err", err)
		if deduped(j.leaf, msg) {
			if ferr := in.opts.Dedup.Forget(j.device, id); ferr != nil {
				in.log.Error("ingest: dedup forget failed; a retransmission will be taken for a duplicate", "device", j.device, "id", id, "err", ferr)
			}
		}
		return outRetry
	}
	in.stats.add(func(s *Stats) { s.Handled++ })
	if Acked(j.leaf, msg) && !in.opts.DisableAutoAck {
		in.autoAck(j.device, id)
	}
	return outDone
}

// autoAck publishes an Ack for id without waiting on paho from a worker
// (a worker waiting for a PUBACK while paho waits for that worker's queue
// would deadlock); a watcher counts a failure.
func (in *Ingest) autoAck(device, id string) {
	tok, err := in.publishAck(device, []string{id})
	if err != nil {
		in.stats.add(func(s *Stats) { s.AckErrors++ })
		in.log.Error("ingest: ack not sent", "device", device, "id", id, "err", err)
		return
	}
	in.acks.Add(1)
	go func() {
		defer in.acks.Done()
		if !tok.WaitTimeout(DefaultAckTimeout) || tok.Error() != nil {
			in.stats.add(func(s *Stats) { s.AckErrors++ })
			in.log.Warn("ingest: ack not confirmed; the device will resend and be acked again", "device", device, "id", id, "err", tok.Error())
		}
	}()
}

func (in *Ingest) publishAck(device string, ids []string) (paho.Token, error) {
	return in.publish(device, &mqttapi.Ack{Envelope: mqttapi.NewEnvelope(in.opts.Now()), IDs: ids})
}

func (in *Ingest) publish(device string, msg mqttapi.Message) (paho.Token, error) {
	pub, err := in.opts.Tree.Publication(device, msg)
	if err != nil {
		return nil, err
	}
	if _, leaf, err := in.opts.Tree.Parse(pub.Topic); err != nil || leaf != mqttapi.LeafCmd {
		return nil, vend.Errorf(ErrNotCommand, "%s travels on %s", msg.TypeName(), pub.Topic)
	}
	c := in.client.Load()
	if c == nil {
		return nil, vend.Errorf(ErrNotRunning, "publish before Run")
	}
	return (*c).Publish(pub.Topic, pub.QoS, pub.Retain, pub.Payload), nil
}

// Publish sends a command (Authorize, Stop, SetPrices, TestOutput, Reboot,
// RotateKey or Ack) to deviceID's cmd topic at QoS 1 and waits for the
// broker's PUBACK or ctx. The caller sets the envelope's id and ts
// ([mqttapi.NewEnvelope]) and keeps the id: the device's Reply names it.
// It returns the mqttapi encode errors, ErrNotCommand for an uplink type,
// ErrNotRunning before Run, ErrPublish when the broker cannot be reached
// (paho keeps a QoS 1 message and sends it after reconnecting, so a later
// resend with the same id may arrive twice: devices reply to a repeated id
// without acting again), and ctx.Err() when ctx ends first.
func (in *Ingest) Publish(ctx context.Context, deviceID string, cmd mqttapi.Message) error {
	conn := in.conn.Load()
	tok, err := in.publish(deviceID, cmd)
	if err != nil {
		return err
	}
	var stalled <-chan time.Time
	if in.opts.PubAckStall > 0 {
		t := time.NewTimer(in.opts.PubAckStall)
		defer t.Stop()
		stalled = t.C
	}
	for {
		select {
		case <-tok.Done():
			if err := tok.Error(); err != nil {
				return fmt.Errorf("%w: %s to %s: %w", ErrPublish, cmd.TypeName(), deviceID, err)
			}
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-stalled:
			stalled = nil
			in.dropStalled(conn, cmd, deviceID)
		}
	}
}

// dropStalled drops conn, the connection a command went out on, if paho
// still uses it: the command's PUBACK did not come within PubAckStall.
// paho then reconnects and resends every unacknowledged publish; the
// waiting Publish returns once its resent copy is on its way.
func (in *Ingest) dropStalled(conn *bufferedConn, cmd mqttapi.Message, deviceID string) {
	if conn == nil || !in.conn.CompareAndSwap(conn, nil) {
		return // a connection made since, or already dropped
	}
	in.stats.add(func(s *Stats) { s.PubAckStalls++ })
	in.log.Warn("ingest: no PUBACK in time; dropping the broker connection so that pending commands go out again on a new one",
		"after", in.opts.PubAckStall, "command", cmd.TypeName(), "device", deviceID)
	// Not Close: paho takes a read on a closed connection for its own
	// disconnect and would not reconnect. An expired read deadline fails
	// its read as a lost connection instead.
	_ = conn.SetReadDeadline(time.Now())
}

// Ack sends the application-level acknowledgement of uplink message ids
// to deviceID, in Acks of at most mqttapi.MaxAckIDs ids, each waited for
// like [Ingest.Publish]. The ingest already acks evt and usage messages
// the Handler stored, unless Options.DisableAutoAck is set.
func (in *Ingest) Ack(ctx context.Context, deviceID string, ids ...string) error {
	for len(ids) > 0 {
		n := min(len(ids), mqttapi.MaxAckIDs)
		ack := &mqttapi.Ack{Envelope: mqttapi.NewEnvelope(in.opts.Now()), IDs: append([]string(nil), ids[:n]...)}
		if err := in.Publish(ctx, deviceID, ack); err != nil {
			return err
		}
		ids = ids[n:]
	}
	return nil
}

// Connected reports whether the client has an open connection now.
func (in *Ingest) Connected() bool {
	c := in.client.Load()
	if in.opts.NATS != nil {
		if nc := in.nc.Load(); nc == nil || !nc.IsConnected() {
			return false
		}
	}
	return c != nil && (*c).IsConnectionOpen()
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
