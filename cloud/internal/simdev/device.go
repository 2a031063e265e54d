package simdev

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/proxid"
	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
)

// Defaults of Options.
const (
	DefaultResendAfter = time.Second
	DefaultConnectWait = 15 * time.Second
	// DefaultSubscribeWait is how long a device waits for its cmd SUBACK
	// before subscribing again, as the controller's uplink does (20 s: a
	// NATS node answers once the session's JetStream consumer exists, up
	// to its js_api_timeout).
	DefaultSubscribeWait = 20 * time.Second
)

// Options tune a Device. The zero value works.
type Options struct {
	// ResendAfter is how long an uplink waits for the cloud's Ack before
	// it is published again (the controller's AckTimeout); default
	// DefaultResendAfter.
	ResendAfter time.Duration
	// UsageDelay returns how long after accepting a grant the device
	// reports its usage; default 0 to 20 ms.
	UsageDelay func() time.Duration
	// Units returns the units delivered for a grant, at most g.CapUnits;
	// default uniform in [0, g.CapUnits].
	Units func(g signed.Grant) uint64
	// Events also queues started and ended events (acked like usage).
	Events bool
	// OnAcked is called (outside the device's lock) when the usage report
	// of a session is acknowledged the first time.
	OnAcked func(d *Device, s vend.SessionID)
	// OnGrant is called (outside the device's lock) when a verified grant
	// for a new session arrives, with the instant its Authorize reached
	// the device's message handler.
	OnGrant func(d *Device, g signed.Grant, at time.Time)
	// Telemetry, when positive, makes Run publish a telemetry message
	// (QoS 0, like the controller's) every Telemetry, the first one after
	// a random part of it so a fleet does not report in lockstep.
	Telemetry time.Duration
}

// Identity is what provisioning gives a device: its id, keys and the
// cloud's public keys.
type Identity struct {
	ID       string
	IDKey    proxid.Key
	K        uint8
	Sign     ed25519.PrivateKey
	Cloud    signed.Keys
	Password string
}

// Record is what the device did for one session.
type Record struct {
	Grant    signed.Grant
	Units    uint64 // units reported
	Amount   int64  // Price.Cost(Units) as signed
	Grants   int    // Authorize commands received for the session
	UsageID  string // message id of the usage report
	Acked    bool   // the usage report was acknowledged
	Resends  int    // times the usage report was published again
	Reported bool   // the usage report was made (signed and queued)
}

type outItem struct {
	id      string
	topic   string
	payload []byte
	sent    time.Time
	session vend.SessionID // for usage reports
	usage   bool
}

// Device is one simulated controller board connected to a broker.
type Device struct {
	Identity
	opts   Options
	tree   mqttapi.Tree
	client paho.Client

	mu       sync.Mutex
	seq      uint64
	sessions map[vend.SessionID]*Record
	outbox   []*outItem
	acks     int
	replies  int
	subFails int // cmd subscriptions refused (SUBACK 0x80), retried
	subWaits int // cmd subscriptions unanswered within DefaultSubscribeWait, sent again
	closed   bool
	timers   []*time.Timer
	started  time.Time
	lastCmd  time.Time // when a message last arrived on the cmd topic
}

// New returns a Device for id; Connect it to a broker.
func New(id Identity, opts Options) *Device {
	if opts.ResendAfter <= 0 {
		opts.ResendAfter = DefaultResendAfter
	}
	if opts.UsageDelay == nil {
		opts.UsageDelay = func() time.Duration { return time.Duration(rand.IntN(20)) * time.Millisecond }
	}
	if opts.Units == nil {
		opts.Units = func(g signed.Grant) uint64 { return rand.Uint64N(g.CapUnits + 1) }
	}
	return &Device{Identity: id, opts: opts, sessions: map[vend.SessionID]*Record{}, started: time.Now()}
}

// Connect connects to the broker at url as the real controller does
// (username and client id = device id, last will, automatic reconnect)
// and after every connect subscribes to its cmd topic, checking the
// SUBACK and retrying a refusal, then publishes its retained online
// state. Unlike the controller it uses a clean session: paho
// v1.5.0 races (go test -race) between resuming a persistent session's
// stored publishes (setting their DUP flag) and writing a publish made in
// the OnConnect handler; the outbox, not the broker session, is what
// makes uplinks durable here.
func (d *Device) Connect(url string) error {
	will, err := d.tree.LastWill(d.ID, time.Now())
	if err != nil {
		return err
	}
	cmd, err := d.tree.Topic(d.ID, mqttapi.LeafCmd)
	if err != nil {
		return err
	}
	o := paho.NewClientOptions().AddBroker(url).SetClientID(d.ID).SetUsername(d.ID).SetPassword(d.Password).
		SetProtocolVersion(4).SetCleanSession(true).SetAutoReconnect(true).SetMaxReconnectInterval(time.Second).
		SetConnectTimeout(10*time.Second).SetOrderMatters(false).
		SetBinaryWill(will.Topic, will.Payload, will.QoS, will.Retain)
	o.SetOnConnectHandler(func(c paho.Client) {
		// Subscribe again after every connect (a broker may have lost the
		// session) and announce online only once the broker granted it,
		// retrying a refusal, as the controller's uplink does: a device
		// online but deaf to its commands would fail every start.
		for attempt := 1; ; attempt++ {
			err := subscribeCmd(c, cmd, d.onCmd)
			if err == nil {
				break
			}
			d.mu.Lock()
			if errors.Is(err, errNoSubAck) {
				d.subWaits++
			} else {
				d.subFails++
			}
			closed := d.closed
			d.mu.Unlock()
			if closed || !c.IsConnectionOpen() {
				return
			}
			pause := min(time.Duration(attempt)*200*time.Millisecond, 5*time.Second)
			time.Sleep(pause/2 + rand.N(pause))
		}
		d.publishState()
	})
	d.client = paho.NewClient(o)
	tok := d.client.Connect()
	if !tok.WaitTimeout(DefaultConnectWait) {
		return fmt.Errorf("simdev: %s: connect timed out", d.ID)
	}
	if tok.Error() != nil {
		return fmt.Errorf("simdev: %s: connect: %w", d.ID, tok.Error())
	}
	return nil
}

// errNoSubAck is a SUBACK that did not come within DefaultSubscribeWait.
var errNoSubAck = errors.New("simdev: no SUBACK")

// subscribeCmd subscribes to the cmd topic at QoS 1 and checks the
// SUBACK: a refusal (0x80) or no answer within DefaultSubscribeWait
// (errNoSubAck) is an error.
func subscribeCmd(c paho.Client, topic string, h paho.MessageHandler) error {
	tok := c.Subscribe(topic, 1, h)
	if !tok.WaitTimeout(DefaultSubscribeWait) {
		return fmt.Errorf("%w for %s within %s", errNoSubAck, topic, DefaultSubscribeWait)
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("simdev: subscribe %s: %w", topic, err)
	}
	if st, ok := tok.(*paho.SubscribeToken); ok {
		for t, code := range st.Result() {
			if code > 2 {
				return fmt.Errorf("simdev: subscribe %s refused with code 0x%02X", t, code)
			}
		}
	}
	return nil
}

// SubscribeFailures is how many times the broker refused the device's
// cmd subscription (SUBACK 0x80) and how many times it did not answer
// within DefaultSubscribeWait; each was sent again.
func (d *Device) SubscribeFailures() (refused, unanswered int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.subFails, d.subWaits
}

func (d *Device) publishState() {
	p, err := d.tree.Publication(d.ID, &mqttapi.State{Envelope: mqttapi.NewEnvelope(time.Now()), Status: mqttapi.Online, Firmware: "simdev-1"})
	if err == nil {
		d.client.Publish(p.Topic, p.QoS, p.Retain, p.Payload)
	}
}

// Close stops the resend loop's timers and disconnects.
func (d *Device) Close() {
	d.mu.Lock()
	d.closed = true
	for _, t := range d.timers {
		t.Stop()
	}
	d.timers = nil
	d.mu.Unlock()
	if d.client != nil {
		d.client.Disconnect(50)
	}
}

// Run resends unacknowledged uplinks, oldest first, every ResendAfter,
// and publishes telemetry every Options.Telemetry, until ctx is done.
func (d *Device) Run(ctx context.Context) {
	t := time.NewTicker(d.opts.ResendAfter / 2)
	defer t.Stop()
	var tel <-chan time.Time
	if p := d.opts.Telemetry; p > 0 {
		first := time.NewTimer(time.Duration(rand.Int64N(int64(p))))
		defer first.Stop()
		select {
		case <-ctx.Done():
			return
		case <-first.C:
		}
		d.publishTelemetry()
		tt := time.NewTicker(p)
		defer tt.Stop()
		tel = tt.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			d.resend()
		case <-tel:
			d.publishTelemetry()
		}
	}
}

// telemetry is the device's telemetry message now: one water machine,
// idle or busy as its sessions say, a healthy board and modem.
func (d *Device) telemetry(now time.Time) *mqttapi.Telemetry {
	d.mu.Lock()
	busy, served := false, uint64(0)
	for _, r := range d.sessions {
		if !r.Reported {
			busy = true
		}
		served += r.Units
	}
	pending, sessions := len(d.outbox), len(d.sessions)
	d.mu.Unlock()
	state := mqttapi.MachineIdle
	if busy {
		state = mqttapi.MachineBusy
	}
	return waterTelemetry(now, time.Since(d.started), pending, state, served, sessions)
}

// waterTelemetry is the telemetry of a simulated board with one water
// machine ("tap1"), a healthy board link and an LTE-M modem.
func waterTelemetry(now time.Time, uptime time.Duration, outbox int, state mqttapi.MachineState, units uint64, sessions int) *mqttapi.Telemetry {
	rssi := -71
	return &mqttapi.Telemetry{
		Envelope: mqttapi.NewEnvelope(now), UptimeS: uint64(uptime.Seconds()),
		Modem:       &mqttapi.Modem{RSSIdBm: &rssi, CSQ: 21, Registration: mqttapi.RegHome, Operator: "26201", Tech: "lte-m"},
		Board:       mqttapi.Board{Status: "ok"},
		OutboxDepth: uint32(outbox),
		Machines: []mqttapi.MachineStatus{{ID: "tap1", State: state,
			Counters: mqttapi.Counters{Unit: vend.KindWater.Unit(), UnitsTotal: units, SessionsTotal: uint64(sessions)}}},
	}
}

func (d *Device) publishTelemetry() {
	p, err := d.tree.Publication(d.ID, d.telemetry(time.Now()))
	if err == nil {
		d.client.Publish(p.Topic, p.QoS, p.Retain, p.Payload)
	}
}

func (d *Device) resend() {
	now := time.Now()
	var due []*outItem
	d.mu.Lock()
	for _, it := range d.outbox {
		if now.Sub(it.sent) >= d.opts.ResendAfter {
			it.sent = now
			due = append(due, it)
			if it.usage {
				if r := d.sessions[it.session]; r != nil {
					r.Resends++
				}
			}
		}
	}
	d.mu.Unlock()
	for _, it := range due {
		d.client.Publish(it.topic, 1, false, it.payload) // not waited for: the Ack is what counts
	}
}

// ProximityID is the ID the device's beacon broadcasts at t.
func (d Identity) ProximityID(at time.Time) phoneapi.ProximityID {
	return phoneapi.ProximityID(proxid.Compute(d.IDKey, proxid.Counter(at), d.K).String())
}

// Sessions returns a copy of the device's session records.
func (d *Device) Sessions() map[vend.SessionID]Record {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[vend.SessionID]Record, len(d.sessions))
	for id, r := range d.sessions {
		out[id] = *r
	}
	return out
}

// Pending is the number of uplinks waiting for an Ack.
func (d *Device) Pending() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.outbox)
}

// Connected reports whether the device's MQTT client has its connection
// to the broker open now, as paho sees it: false before Connect, while it
// reconnects and after Close. A harness compares it with what the cloud's
// store believes.
func (d *Device) Connected() bool {
	return d.client != nil && d.client.IsConnectionOpen()
}

// LastCommand returns when a message (a command or the cloud's Ack) last
// arrived on the device's cmd topic, on this process's clock; zero when
// none has.
func (d *Device) LastCommand() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lastCmd
}

func (d *Device) onCmd(_ paho.Client, m paho.Message) {
	d.mu.Lock()
	d.lastCmd = time.Now()
	d.mu.Unlock()
	msg, err := mqttapi.Decode(mqttapi.LeafCmd, m.Payload())
	if err != nil {
		return // a real board logs and drops it
	}
	switch c := msg.(type) {
	case *mqttapi.Ack:
		d.onAck(c)
		return
	case *mqttapi.Authorize:
		err = d.onAuthorize(c, time.Now())
	}
	d.mu.Lock()
	d.replies++
	d.mu.Unlock()
	p, perr := d.tree.Publication(d.ID, mqttapi.NewReply(mqttapi.NewEnvelope(time.Now()), msg.Head().ID, err))
	if perr == nil {
		d.client.Publish(p.Topic, p.QoS, p.Retain, p.Payload)
	}
}

func (d *Device) onAck(c *mqttapi.Ack) {
	var acked []vend.SessionID
	d.mu.Lock()
	d.acks++
	for _, id := range c.IDs {
		for i, it := range d.outbox {
			if it.id != id {
				continue
			}
			d.outbox = append(d.outbox[:i], d.outbox[i+1:]...)
			if it.usage {
				if r := d.sessions[it.session]; r != nil && !r.Acked {
					r.Acked = true
					acked = append(acked, it.session)
				}
			}
			break
		}
	}
	d.mu.Unlock()
	if d.opts.OnAcked != nil {
		for _, s := range acked {
			d.opts.OnAcked(d, s)
		}
	}
}

// errGrant is the refusal of a grant that does not verify.
var errGrant = errors.New("simdev: grant does not verify")

func (d *Device) onAuthorize(c *mqttapi.Authorize, at time.Time) error {
	g, err := signed.OpenGrant(c.Grant, d.Cloud)
	if err != nil || g.Device != d.ID {
		return &vend.Error{Kind: vend.Invalid, Code: "grant.invalid", Msg: errGrant.Error()}
	}
	if d.accept(g) && d.opts.OnGrant != nil {
		d.opts.OnGrant(d, g, at)
	}
	return nil
}

// accept records a new session and schedules its usage report; false for
// a resent Authorize (answered again, not acted on twice).
func (d *Device) accept(g signed.Grant) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if r, ok := d.sessions[g.Session]; ok {
		r.Grants++
		return false
	}
	d.sessions[g.Session] = &Record{Grant: g, Grants: 1}
	if d.closed {
		return true
	}
	t := time.AfterFunc(d.opts.UsageDelay(), func() { d.finish(g) })
	d.timers = append(d.timers, t)
	if len(d.timers) > 64 {
		d.timers = d.timers[len(d.timers)-64:]
	}
	return true
}

// finish meters the session and queues its events and signed usage report
// in the outbox.
func (d *Device) finish(g signed.Grant) {
	units := min(d.opts.Units(g), g.CapUnits)
	cost, err := g.Price.Cost(units)
	if err != nil {
		return
	}
	now := time.Now()
	outcome := vend.OutcomeUserStop
	started := now.Add(-time.Second)
	if units == 0 {
		outcome, started = vend.OutcomeNotStarted, time.Time{}
	} else if units == g.CapUnits {
		outcome = vend.OutcomeCapReached
	}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.seq++
	seq := d.seq
	d.mu.Unlock()
	rep, err := signed.SignUsage(d.Sign, signed.Usage{Device: d.ID, Seq: seq, Session: g.Session, Machine: g.Machine, Slot: g.Slot,
		Unit: g.Unit, Units: units, Price: g.Price, Currency: g.Currency, Amount: cost, StartedAt: started, EndedAt: now,
		MeterStart: 1000, MeterEnd: 1000 + units, Outcome: outcome})
	if err != nil {
		return
	}
	var msgs []mqttapi.Message
	if d.opts.Events && units > 0 {
		msgs = append(msgs, &mqttapi.Event{Envelope: mqttapi.NewEnvelope(started), Kind: mqttapi.EventStarted, Session: g.Session, Machine: g.Machine})
		u := units
		msgs = append(msgs, &mqttapi.Event{Envelope: mqttapi.NewEnvelope(now), Kind: mqttapi.EventEnded, Session: g.Session, Machine: g.Machine,
			Units: &u, Unit: g.Unit, Amount: &vend.Amount{Minor: cost, Currency: g.Currency}, Outcome: outcome})
	}
	usage := &mqttapi.Usage{Envelope: mqttapi.NewEnvelope(now), Session: g.Session, Seq: seq, Report: rep}
	msgs = append(msgs, usage)
	var items []*outItem
	for _, m := range msgs {
		p, err := d.tree.Publication(d.ID, m)
		if err != nil {
			continue
		}
		_, isUsage := m.(*mqttapi.Usage)
		items = append(items, &outItem{id: m.Head().ID, topic: p.Topic, payload: p.Payload, sent: now, session: g.Session, usage: isUsage})
	}
	d.mu.Lock()
	r := d.sessions[g.Session]
	r.Units, r.Amount, r.UsageID, r.Reported = units, cost, usage.ID, true
	d.outbox = append(d.outbox, items...)
	d.mu.Unlock()
	for _, it := range items {
		d.client.Publish(it.topic, 1, false, it.payload)
	}
}

// Record returns the device's record of session id.
func (d *Device) Record(id vend.SessionID) (Record, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	r, ok := d.sessions[id]
	if !ok {
		return Record{}, false
	}
	return *r, true
}
