// Package ingest is the cloud's MQTT client (eclipse/paho.mqtt.golang,
// MQTT 3.1.1): it receives every device uplink from any broker — the
// embedded one over loopback or Mosquitto — decodes it with mqttapi's
// strict decoders, drops duplicates, hands it to a [Handler], acknowledges
// it to the device, and publishes commands. The contract is
// app-protocol/mqttapi (doc.go).
//
// # Session and reconnects
//
// Each instance connects with a fixed client id (Options.ClientID, e.g.
// "_cloud-<instance>"; not a valid device id) and CleanSession false, so
// the broker queues QoS 1 uplinks while the instance is away. Paho
// reconnects on its own with a backoff doubling from 1 s up to
// Options.MaxReconnectInterval. The subscriptions are made again after
// every CONNACK (a broker that lost the session — restarted without
// persistence, or Mosquitto with a $share subscription — would otherwise
// send nothing), and messages that arrive from the stored session before
// that SUBACK go through the same default handler. A SUBACK refusal is
// retried a few times and then ends [Ingest.Run] with ErrSubscribe: it
// means the broker ACL does not give the cloud its rights.
//
// # Shared subscriptions
//
// With Options.Group set, evt, usage, reply and telemetry are subscribed
// as $share/<group>/prefix/+/<leaf>, so N instances split device traffic
// (tested with 2 instances on mochi and Mosquitto 2). State is subscribed
// unshared by every instance: a new shared subscription gets no retained
// messages, and each instance needs every device's retained presence;
// state handling is idempotent (the cloud orders presence by its own
// clock and the connection epoch, never by the device's ts).
//
// # NATS
//
// NATS's MQTT listener grants "$share/…" subscriptions and delivers
// nothing to them. With Options.NATS set ([NATSOptions]) the ingest
// consumes evt, usage and reply from a JetStream work-queue stream
// through one durable pull consumer per group (each message to one
// instance, acked after the Handler returned nil, redelivered after a
// Handler error or, when an instance dies, after AckWait; terminated
// after MaxDeliver), telemetry from a core NATS queue group, and keeps
// MQTT for the retained state (unshared) and for commands and acks (QoS
// 1, to the device's persistent session). The Handler, Deduper and ack
// contract is the same. The stream takes one group: an instance of a
// second group ends Run with ErrGroup at start, naming both groups.
// Whatever the broker, a SUBACK that grants a lower QoS than asked, or
// refuses, ends Run with ErrSubscribe at once.
//
// # Idempotency and acks
//
// Delivery is at least once: paho acks a PUBLISH once it is queued here,
// a PUBACK lost in a disconnect brings the message again, a shared
// subscription may redeliver to another instance, and devices resend
// from their outbox until acked. So usage, reply and every event but
// progress pass through a
// [Deduper] keyed by (device, message id): Seen records atomically and
// reports a duplicate; Forget undoes it when the Handler fails, so the
// resend is handled. The store implements Deduper durably and shared by
// all instances (ideally in the Handler's own transaction); [MemoryDedup]
// is a bounded LRU for tests and a single instance. The ack decision is
// [Acked]: exactly what the device keeps in its outbox, usage reports and
// every event but progress. After the Handler returns nil for such a
// message — and again for each duplicate — the ingest publishes an
// [mqttapi.Ack] of its id to the device's cmd topic
// (Options.DisableAutoAck leaves that to the Handler, with [Ingest.Ack]).
// State, telemetry and replies are not acked; progress events are
// neither deduplicated nor acked: the board publishes them outside its
// outbox, each supersedes the last, and an ack would cost a cellular
// downlink per second per running machine.
//
// # Bad input
//
// A bad topic, an oversized payload (over mqttapi.MaxPayload), bad JSON,
// a wrong version, type or id, or a bad field is logged and counted in
// Stats.Dropped under its stable code ("payload.too_large",
// "payload.malformed", …) and dropped; nothing panics, and a panicking
// Handler is recovered and counted.
//
// # Ordering and concurrency
//
// Paho's callback only parses the topic and queues; Options.Workers
// goroutines, sharded by device id, decode and handle, so one device's
// messages are handled in order while devices proceed in parallel. A full
// queue holds paho back (backpressure). Automatic Acks are not waited for
// on a worker (a worker waiting on paho while paho waits on that worker's
// queue would deadlock); a watcher counts failures.
//
// # Metrics
//
// [Ingest.Stats] returns counters: received by leaf, dropped by reason,
// handled, duplicates, handler errors, ack errors, connects, connections
// lost and subscription failures; export them with prometheus CounterFuncs
// in the cloud main.
//
// # What the lead wires
//
//   - a Handler that writes to the store (usage → settlement, evt →
//     session events, reply → command replies, state → presence);
//   - the store's durable Deduper;
//   - cloud main: New with the broker URL and the cloud credential, go
//     Run(ctx); [Ingest.Publish] for commands from whichever instance took
//     the phone's request.
package ingest
