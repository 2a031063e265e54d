package uplink

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/vend"
)

// Errors.
var (
	ErrOffline = vend.E(vend.Transient, "uplink.offline", "uplink: not connected to the broker")
	ErrTimeout = vend.E(vend.Transient, "uplink.timeout", "uplink: broker did not acknowledge in time")
)

// Opts configures an Uplink.
type Opts struct {
	Broker   string      // tcp://host:1883, ssl://host:8883
	DeviceID string      // also the MQTT client ID, so the broker keeps one persistent session per device
	Username string      // default DeviceID
	Password string      //
	TLS      *tls.Config // for ssl:// brokers
	Tree     mqttapi.Tree
	Firmware string // reported in the online State

	KeepAlive      time.Duration // default 30 s
	ConnectTimeout time.Duration // TCP (and TLS) dial, default 10 s
	// HandshakeTimeout bounds a whole connection attempt up to the
	// broker's CONNACK, default 25 s: a NATS node answers a CONNECT only
	// once the session is set up in JetStream, which takes up to its
	// js_api_timeout (15 s as cloud broker nats-files writes it) in a
	// reconnect storm; giving up sooner makes the board connect again
	// and the node set the session up twice.
	HandshakeTimeout time.Duration
	MaxBackoff       time.Duration // reconnect backoff cap, default 15 s: a board is back within 15 s of its link returning
	PublishTimeout   time.Duration // how long Publish waits for the PUBACK, default 10 s
	// SubscribeTimeout is how long the cmd subscription waits for its
	// SUBACK before it is sent again, default 20 s: a NATS node answers
	// only once the session's JetStream consumer exists, which takes up to
	// its js_api_timeout (15 s as cloud broker nats-files writes it) in a
	// reconnect storm; asking again sooner only queues more work there.
	SubscribeTimeout time.Duration

	// OnCommand receives every payload on the device's cmd topic, in
	// order, from paho's delivery goroutine: it must hand the work off
	// quickly (the daemon queues it).
	OnCommand func(payload []byte)
	// OnConnect runs after every (re)connection, once the cmd subscription
	// is in place and the online state is published; the daemon drains its
	// outbox from here.
	OnConnect func()
	Logger    *slog.Logger
	Now       func() time.Time
}

// Uplink is the device's MQTT connection: a persistent session (clean
// session off, client ID = device ID, QoS 1) that reconnects with backoff,
// registers a retained offline State as last will, publishes a retained
// online State on every connect, and subscribes to the device's cmd topic.
//
// It is not a queue. Publish fails fast when the link is down instead of
// letting paho park the message in its in-memory store (which a power cut
// loses, and whose tokens after a reconnect prove nothing); the controller's
// journal outbox is the queue, and it keeps each message until the cloud
// acknowledges it by message ID.
type Uplink struct {
	o      Opts
	client mqtt.Client
	log    *slog.Logger

	connected  atomic.Bool
	closing    atomic.Bool
	gen        atomic.Uint64 // connection generation, so a stale establish gives up
	connects   atomic.Uint64
	lost       atomic.Uint64
	published  atomic.Uint64
	pubErrors  atomic.Uint64
	closeOnce  sync.Once
	cmdTopic   string
	stateTopic string
}

// Stats are counters for telemetry and tests.
type Stats struct {
	Connected bool
	Connects  uint64
	Lost      uint64
	Published uint64
	PubErrors uint64
}

// New builds the client; Start connects it.
func New(o Opts) (*Uplink, error) {
	if err := vend.ValidateDeviceID(o.DeviceID); err != nil {
		return nil, err
	}
	if o.Username == "" {
		o.Username = o.DeviceID
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.KeepAlive, 30*time.Second)
	def(&o.ConnectTimeout, 10*time.Second)
	def(&o.HandshakeTimeout, 25*time.Second)
	o.HandshakeTimeout = max(o.HandshakeTimeout, o.ConnectTimeout)
	def(&o.MaxBackoff, 15*time.Second)
	def(&o.PublishTimeout, 10*time.Second)
	def(&o.SubscribeTimeout, 20*time.Second)
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Firmware == "" {
		o.Firmware = "beaconvend"
	}
	u := &Uplink{o: o, log: o.Logger}
	var err error
	if u.cmdTopic, err = o.Tree.Topic(o.DeviceID, mqttapi.LeafCmd); err != nil {
		return nil, err
	}
	if u.stateTopic, err = o.Tree.Topic(o.DeviceID, mqttapi.LeafState); err != nil {
		return nil, err
	}
	will, err := o.Tree.LastWill(o.DeviceID, o.Now())
	if err != nil {
		return nil, err
	}
	co := mqtt.NewClientOptions().
		AddBroker(o.Broker).
		SetClientID(o.DeviceID).
		SetUsername(o.Username).
		SetPassword(o.Password).
		SetCleanSession(false).
		SetOrderMatters(true).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(o.MaxBackoff).
		SetKeepAlive(o.KeepAlive).
		SetDialer(&net.Dialer{Timeout: o.ConnectTimeout}).
		SetConnectTimeout(o.HandshakeTimeout).
		SetWriteTimeout(o.PublishTimeout).
		SetResumeSubs(true).
		SetStore(newStore()).
		SetBinaryWill(will.Topic, will.Payload, will.QoS, will.Retain).
		SetOnConnectHandler(u.onConnect).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			u.gen.Add(1)
			u.connected.Store(false)
			u.lost.Add(1)
			u.log.Warn("mqtt connection lost", "err", err)
		})
	if o.TLS != nil {
		co.SetTLSConfig(o.TLS)
	}
	u.client = mqtt.NewClient(co)
	return u, nil
}

// Start begins connecting in the background; paho retries with backoff
// until Close.
func (u *Uplink) Start() { u.client.Connect() }

func (u *Uplink) onConnect(c mqtt.Client) {
	u.connects.Add(1)
	gen := u.gen.Add(1)
	go u.establish(c, gen)
}

// establish subscribes to the command topic — retrying, because a broker
// may refuse a subscribe right after a session takeover (mochi answers
// 0x91 "packet identifier in use") and a refused SUBACK is not an error
// to paho — then publishes the online state and reports the connection.
// Until it succeeds the uplink stays "not connected", so nothing is
// published to a device the cloud cannot command.
func (u *Uplink) establish(c mqtt.Client, gen uint64) {
	for attempt := 1; ; attempt++ {
		if u.closing.Load() || u.gen.Load() != gen || !c.IsConnectionOpen() {
			return
		}
		err := u.subscribe(c)
		if err == nil {
			break
		}
		u.log.Warn("subscribe to commands failed; retrying", "topic", u.cmdTopic, "attempt", attempt, "err", err)
		time.Sleep(retryDelay(attempt))
	}
	if err := u.publishState(mqttapi.Online, ""); err != nil {
		u.log.Warn("publish online state", "err", err)
	}
	if u.gen.Load() != gen {
		return
	}
	u.connected.Store(true)
	u.log.Info("mqtt connected", "broker", u.o.Broker, "device", u.o.DeviceID)
	if u.o.OnConnect != nil {
		u.o.OnConnect()
	}
}

// retryDelay is the pause before subscribe attempt+1: growing by 200 ms
// per attempt up to 5 s, spread by ±50 % so that boards refused together
// (a broker node lost, its devices reconnecting at once) do not ask again
// in step.
func retryDelay(attempt int) time.Duration {
	d := min(time.Duration(attempt)*200*time.Millisecond, 5*time.Second)
	return d/2 + rand.N(d)
}

func (u *Uplink) subscribe(c mqtt.Client) error {
	tok := c.Subscribe(u.cmdTopic, 1, func(_ mqtt.Client, m mqtt.Message) {
		if u.o.OnCommand != nil {
			u.o.OnCommand(m.Payload())
		}
	})
	if !tok.WaitTimeout(u.o.SubscribeTimeout) {
		return ErrTimeout
	}
	if err := tok.Error(); err != nil {
		return err
	}
	if st, ok := tok.(*mqtt.SubscribeToken); ok {
		for topic, code := range st.Result() {
			if code > 2 {
				return fmt.Errorf("uplink: subscribe %s refused with code 0x%02X", topic, code)
			}
		}
	}
	return nil
}

func (u *Uplink) publishState(st mqttapi.Status, reason string) error {
	m := &mqttapi.State{Envelope: mqttapi.NewEnvelope(u.o.Now()), Status: st, Reason: reason}
	if st == mqttapi.Online {
		m.Firmware = u.o.Firmware
	}
	p, err := u.o.Tree.Publication(u.o.DeviceID, m)
	if err != nil {
		return err
	}
	tok := u.client.Publish(p.Topic, p.QoS, p.Retain, p.Payload)
	if !tok.WaitTimeout(u.o.PublishTimeout) {
		return ErrTimeout
	}
	return tok.Error()
}

// Connected reports whether the session is up and subscribed.
func (u *Uplink) Connected() bool { return u.connected.Load() && u.client.IsConnectionOpen() }

// Publish sends one message at its leaf's QoS and retain flag and, for QoS
// 1, waits for the broker's PUBACK (which says only that the broker has it;
// delivery to the cloud is proven by the cloud's Ack). It returns
// ErrOffline at once when the link is down.
func (u *Uplink) Publish(ctx context.Context, p mqttapi.Publication) error {
	if !u.Connected() {
		return ErrOffline
	}
	tok := u.client.Publish(p.Topic, p.QoS, p.Retain, p.Payload)
	t := time.NewTimer(u.o.PublishTimeout)
	defer t.Stop()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		u.pubErrors.Add(1)
		return ctx.Err()
	case <-t.C:
		u.pubErrors.Add(1)
		return ErrTimeout
	}
	if err := tok.Error(); err != nil {
		u.pubErrors.Add(1)
		if errors.Is(err, mqtt.ErrNotConnected) {
			return ErrOffline
		}
		return vend.Errorf(ErrOffline, "%v", err)
	}
	u.published.Add(1)
	return nil
}

// Stats returns counters.
func (u *Uplink) Stats() Stats {
	return Stats{Connected: u.Connected(), Connects: u.connects.Load(), Lost: u.lost.Load(), Published: u.published.Load(), PubErrors: u.pubErrors.Load()}
}

// Close publishes a retained offline State (reason "shutdown") when
// connected and disconnects. After Close the Uplink is done.
func (u *Uplink) Close() {
	u.closeOnce.Do(func() {
		u.closing.Store(true)
		if u.Connected() {
			if err := u.publishState(mqttapi.Offline, "shutdown"); err != nil {
				u.log.Warn("publish offline state", "err", err)
			}
		}
		u.connected.Store(false)
		u.client.Disconnect(250)
	})
}

// copyStore is paho's OrderedMemoryStore keeping its own copy of each
// outbound packet.
//
// Ordered: paho resumes the messages in its store after a reconnect in the
// order the store lists them, and its plain MemoryStore lists them in Go
// map order, so a usage report and the ended event that follows it could
// reach the cloud swapped; OrderedMemoryStore lists them as they were put.
//
// A copy: paho v1.5.0's resume sets Dup on the packet the store returns,
// which with paho's stores is the very packet its writer may be writing at
// that moment (a publish made while the connection came up): a data race,
// eclipse-paho/paho.mqtt.golang#703. Put is called before paho hands the
// packet to its writer, so copying there is race-free; the resumed copy
// travels alone. (The board's own outbox, in the journal, is what makes
// delivery reliable; this store only serves paho's in-flight window.)
type copyStore struct{ *mqtt.OrderedMemoryStore }

func newStore() *copyStore { return &copyStore{mqtt.NewOrderedMemoryStore()} }

// Put stores a copy of p (serialized and read back).
func (s *copyStore) Put(key string, p packets.ControlPacket) {
	var b bytes.Buffer
	if err := p.Write(&b); err == nil {
		if cp, err := packets.ReadPacket(&b); err == nil {
			p = cp
		}
	}
	s.OrderedMemoryStore.Put(key, p)
}
