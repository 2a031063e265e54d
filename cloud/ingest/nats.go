package ingest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/vend"
)

// Defaults for [NATSOptions].
const (
	DefaultNATSStream     = "BV_UPLINKS"
	DefaultNATSGroup      = "cloud"          // durable consumer and queue group when Options.Group is empty
	DefaultNATSAckWait    = 30 * time.Second // an unacked uplink goes to another instance after this
	DefaultNATSMaxDeliver = 20               // deliveries before a failing uplink is terminated
	DefaultNATSNakDelay   = time.Second      // redelivery delay after a Handler error
	DefaultNATSMaxAge     = 24 * time.Hour   // an uplink nobody consumed is dropped after this (the device outbox resends until acked)
	DefaultNATSPull       = 256              // messages buffered per instance
)

// NATSLeaves are the uplinks consumed from the JetStream work queue when
// Options.NATS is set: what the board keeps in its outbox until the cloud
// acks it, and the replies to commands.
var NATSLeaves = []mqttapi.Leaf{mqttapi.LeafEvt, mqttapi.LeafUsage, mqttapi.LeafReply}

// NATSOptions make the ingest consume device uplinks NATS-natively, for a
// NATS cluster whose MQTT listener the devices use (NATS has no MQTT
// shared subscriptions: it grants "$share/…" and delivers nothing).
//
// Events, usage reports and replies come from the JetStream stream Stream
// (work-queue retention, over the NATS subjects the MQTT listener maps
// their topics to: bv/v1/dev/+/usage ↔ bv.v1.dev.*.usage), through ONE
// durable pull consumer named after Options.Group that every instance of
// the group binds to, so each message goes to one instance. The stream
// takes no second group: an instance of another group stops at start
// with ErrGroup (every cloud instance of a fleet uses one group). It is acked
// after the Handler returned nil (or the Deduper called it a duplicate);
// a Handler error naks it (redelivered after NakDelay), an instance that
// dies leaves it unacked (redelivered to another after AckWait), and
// after MaxDeliver deliveries, or when it cannot be decoded at all, it is
// terminated, logged and counted in Stats.Terminated: the board's outbox
// still holds it and resends. Telemetry comes from a core NATS queue
// group (lossy; the next one supersedes it). State stays an unshared MQTT
// subscription, so each instance gets every device's retained state, and
// commands and acks are MQTT QoS 1 publishes that reach the device's
// persistent session on whichever node it is.
type NATSOptions struct {
	URLs     []string    // nats://host:4222 of the cluster; required
	User     string      // default Options.Username
	Password string      // default Options.Password
	TLS      *tls.Config // for tls:// URLs and nodes serving TLS (RootCAs: broker.ca_file); default Options.TLS

	Stream     string        // default DefaultNATSStream
	Replicas   int           // of the stream and the consumer; default 1 (3 on a three-node cluster)
	AckWait    time.Duration // default DefaultNATSAckWait
	MaxDeliver int           // default DefaultNATSMaxDeliver
	NakDelay   time.Duration // default DefaultNATSNakDelay
	MaxAge     time.Duration // default DefaultNATSMaxAge
}

func (o *NATSOptions) defaults(opts Options) error {
	if len(o.URLs) == 0 {
		return vend.Errorf(ErrOptions, "NATS without URLs")
	}
	if o.User == "" {
		o.User, o.Password = opts.Username, opts.Password
	}
	if o.TLS == nil {
		o.TLS = opts.TLS
	}
	if o.Stream == "" {
		o.Stream = DefaultNATSStream
	}
	if strings.ContainsAny(o.Stream, ". *>/\\") {
		return vend.Errorf(ErrOptions, "NATS stream name %q", o.Stream)
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.AckWait <= 0 {
		o.AckWait = DefaultNATSAckWait
	}
	if o.MaxDeliver <= 0 {
		o.MaxDeliver = DefaultNATSMaxDeliver
	}
	if o.NakDelay <= 0 {
		o.NakDelay = DefaultNATSNakDelay
	}
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultNATSMaxAge
	}
	return nil
}

// Subject returns the NATS subject the MQTT listener maps an MQTT topic
// or filter to: levels joined by "." instead of "/", "+" as "*", "#" as
// ">". Device ids contain no "." (NATS refuses such client ids).
func Subject(topic string) string {
	levels := strings.Split(topic, "/")
	for i, l := range levels {
		switch l {
		case "+":
			levels[i] = "*"
		case "#":
			levels[i] = ">"
		}
	}
	return strings.Join(levels, ".")
}

func (in *Ingest) natsGroup() string {
	if in.opts.Group != "" {
		return in.opts.Group
	}
	return DefaultNATSGroup
}

func (in *Ingest) natsSubjects(leaves ...mqttapi.Leaf) ([]string, error) {
	var out []string
	for _, l := range leaves {
		f, err := in.opts.Tree.Filter(l)
		if err != nil {
			return nil, err
		}
		out = append(out, Subject(f))
	}
	return out, nil
}

// natsRun connects to NATS, makes sure the stream and the group's durable
// consumer exist (retrying until JetStream answers), and consumes until
// ctx is done. It returns the connection (for closing after the workers
// drained) through in.nc, and the stop function of the consumers.
func (in *Ingest) natsStart(ctx context.Context) error {
	o := in.opts.NATS
	nopts := []nats.Option{
		nats.Name(in.opts.ClientID), nats.UserInfo(o.User, o.Password),
		nats.MaxReconnects(-1), nats.ReconnectWait(time.Second), nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err == nil {
				return // closed by us
			}
			in.stats.add(func(s *Stats) { s.ConnectionLost++ })
			in.log.Warn("ingest: nats disconnected", "err", err)
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			in.stats.add(func(s *Stats) { s.Connects++ })
			in.log.Info("ingest: nats reconnected", "url", c.ConnectedUrl())
		}),
	}
	if o.TLS != nil {
		// Not nats.Secure, which would demand TLS of a plain loopback
		// node when the MQTT side alone has a CA: a tls:// URL demands
		// it, and a node serving TLS refuses a plain client anyway.
		nopts = append(nopts, func(no *nats.Options) error { no.TLSConfig = o.TLS; return nil })
	}
	nc, err := nats.Connect(strings.Join(o.URLs, ","), nopts...)
	if err != nil {
		return fmt.Errorf("ingest: nats connect: %w", err)
	}
	in.nc.Store(nc)
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("ingest: jetstream: %w", err)
	}
	work, err := in.natsSubjects(NATSLeaves...)
	if err != nil {
		return err
	}
	tele, err := in.natsSubjects(mqttapi.LeafTelemetry)
	if err != nil {
		return err
	}
	group := in.natsGroup()
	var cons jetstream.Consumer
	for attempt := 1; ; attempt++ {
		cons, err = in.natsEnsure(ctx, js, work, group)
		if err == nil {
			break
		}
		if errors.Is(err, ErrGroup) {
			return err
		}
		in.log.Warn("ingest: jetstream stream or consumer not ready; retrying", "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(min(time.Duration(attempt)*500*time.Millisecond, 5*time.Second)):
		}
	}
	cc, err := cons.Consume(in.onNATS,
		jetstream.PullMaxMessages(DefaultNATSPull),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			in.log.Warn("ingest: jetstream consume", "err", err)
		}))
	if err != nil {
		return fmt.Errorf("ingest: jetstream consume: %w", err)
	}
	sub, err := nc.QueueSubscribe(tele[0], group, func(m *nats.Msg) {
		in.enqueueSubject(m.Subject, m.Data, nil)
	})
	if err != nil {
		cc.Stop()
		return fmt.Errorf("ingest: nats telemetry queue: %w", err)
	}
	in.mu.Lock()
	in.natsStop = func() {
		_ = sub.Unsubscribe()
		cc.Stop()
		select {
		case <-cc.Closed():
		case <-time.After(5 * time.Second):
		}
	}
	close(in.natsReady)
	in.mu.Unlock()
	in.log.Info("ingest: consuming from jetstream", "stream", in.opts.NATS.Stream, "consumer", group, "subjects", work)
	return nil
}

// natsEnsure creates or updates the work-queue stream and the group's
// durable consumer; both calls are idempotent, so every instance makes
// them.
func (in *Ingest) natsEnsure(ctx context.Context, js jetstream.JetStream, subjects []string, group string) (jetstream.Consumer, error) {
	o := in.opts.NATS
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := js.CreateOrUpdateStream(cctx, jetstream.StreamConfig{
		Name: o.Stream, Subjects: subjects, Retention: jetstream.WorkQueuePolicy,
		Storage: jetstream.FileStorage, Replicas: o.Replicas, MaxAge: o.MaxAge,
		Discard: jetstream.DiscardOld, Description: "device uplinks for the cloud (evt, usage, reply)",
	})
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", o.Stream, err)
	}
	c, err := js.CreateOrUpdateConsumer(cctx, o.Stream, jetstream.ConsumerConfig{
		Durable: group, AckPolicy: jetstream.AckExplicitPolicy, AckWait: o.AckWait,
		MaxDeliver: o.MaxDeliver, MaxAckPending: 10 * DefaultNATSPull, Replicas: o.Replicas,
		DeliverPolicy: jetstream.DeliverAllPolicy, Description: "cloud group " + group,
	})
	if err != nil {
		if apiErr, ok := errors.AsType[*jetstream.APIError](err); ok &&
			(apiErr.ErrorCode == jsErrWQMultipleUnfiltered || apiErr.ErrorCode == jsErrWQConsumerNotUnique) {
			return nil, vend.Errorf(ErrGroup, "cloud group %q cannot consume stream %s: it already has the consumer of %s, "+
				"and a work-queue stream gives each uplink to one group; every cloud instance of a fleet uses one broker.group (%v)",
				group, o.Stream, in.natsOtherGroups(cctx, js, group), err)
		}
		return nil, fmt.Errorf("consumer %s: %w", group, err)
	}
	return c, nil
}

// JetStream's refusals of a second consumer over the same subjects of a
// work-queue stream (nats-server's JSConsumerWQMultipleUnfilteredErr and
// JSConsumerWQConsumerNotUniqueErr): permanent, unlike a stream not ready.
const (
	jsErrWQMultipleUnfiltered jetstream.ErrorCode = 10099
	jsErrWQConsumerNotUnique  jetstream.ErrorCode = 10100
)

// natsOtherGroups names the consumers of the stream other than group's,
// quoted, for the error; "another group" when they cannot be listed.
func (in *Ingest) natsOtherGroups(ctx context.Context, js jetstream.JetStream, group string) string {
	s, err := js.Stream(ctx, in.opts.NATS.Stream)
	if err != nil {
		return "another group"
	}
	var names []string
	l := s.ConsumerNames(ctx)
	for n := range l.Name() {
		if n != group {
			names = append(names, strconv.Quote(n))
		}
	}
	if l.Err() != nil || len(names) == 0 {
		return "another group"
	}
	return "group " + strings.Join(names, ", ")
}

// onNATS is the JetStream callback: it queues the message for its
// device's worker, which settles it.
func (in *Ingest) onNATS(m jetstream.Msg) {
	in.enqueueSubject(m.Subject(), m.Data(), m)
}

func (in *Ingest) enqueueSubject(subject string, payload []byte, m jetstream.Msg) {
	var settle func(outcome)
	if m != nil {
		settle = func(o outcome) { in.settle(m, o) }
	}
	in.enqueue(strings.ReplaceAll(subject, ".", "/"), payload, settle)
}

// outcome is what became of a job, for settling a JetStream message.
type outcome int

const (
	outDone  outcome = iota // handled, or a duplicate: ack
	outBad                  // cannot be decoded: terminate
	outRetry                // Handler or Deduper failed: nak, or terminate after MaxDeliver
	outAgain                // not looked at (closing): nak
)

func (in *Ingest) settle(m jetstream.Msg, o outcome) {
	var err error
	switch o {
	case outDone:
		err = m.Ack()
	case outBad:
		in.stats.add(func(s *Stats) { s.Terminated++ })
		in.log.Error("ingest: undecodable uplink terminated in jetstream", "subject", clip(m.Subject()))
		err = m.TermWithReason("undecodable")
	case outRetry:
		md, merr := m.Metadata()
		if merr == nil && md.NumDelivered >= uint64(in.opts.NATS.MaxDeliver) {
			in.stats.add(func(s *Stats) { s.Terminated++ })
			in.log.Error("ingest: uplink failed on every delivery; terminated in jetstream (the device outbox resends it)",
				"subject", clip(m.Subject()), "deliveries", md.NumDelivered)
			err = m.TermWithReason("handler failed")
			break
		}
		in.stats.add(func(s *Stats) { s.Naks++ })
		err = m.NakWithDelay(in.opts.NATS.NakDelay)
	case outAgain:
		err = m.Nak()
	}
	if err != nil && !errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
		in.stats.add(func(s *Stats) { s.AckErrors++ })
		in.log.Warn("ingest: jetstream ack not sent; the message is redelivered after AckWait", "subject", clip(m.Subject()), "err", err)
	}
}
