// Package mqttapi is the MQTT contract between a beaconvend controller (the
// "device", one Linux board per machine cabinet) and the cloud: the topic
// tree, the QoS and retain flag of each topic, the broker ACL, and the JSON
// payloads with their decoders. The written specification is
// app-protocol/asyncapi.yaml (AsyncAPI 3.0.0); this package's tests load it
// and fail when the two drift apart in either direction.
//
// The package imports only the standard library and app-protocol/vend.
//
// # Topics
//
// Every device has one subtree, DefaultPrefix/<device-id>/<leaf>, that is
// "bv/v1/dev/<device-id>/<leaf>", where the device id passes
// vend.ValidateDeviceID (so it holds no '/', '+' or '#') and the leaf is one
// of:
//
//	leaf       direction     QoS  retain  acked by    what
//	state      device→cloud  1    yes     –           online/offline presence; the last will
//	telemetry  device→cloud  0    no      –           periodic health: modem, I/O board, outbox, counters
//	evt        device→cloud  1    no      Ack         session and machine events
//	usage      device→cloud  1    no      Ack         signed usage reports
//	reply      device→cloud  1    no      –           the answer to each command, by command id
//	cmd        cloud→device  1    no      Reply       commands, and the cloud's Ack of uplinks
//
// The "v1" in the prefix is the topic layout; the payload schema version is
// the envelope's "v". A deployment may use another prefix ([Tree]).
// [Tree.Topic] builds topics, [Tree.Parse] splits received ones and refuses
// wildcards, '$' forms, extra levels and bad ids.
//
// # Broker ACL
//
// A device, authenticated as <device-id> (client certificate or
// username), may publish only to its own state, telemetry, evt, usage and
// reply topics, and may subscribe only to its own cmd topic, spelled out in
// full: no '+' or '#' filters, no '$share/…' forms, nothing under another
// device id. The broker adapters (cloud/broker for mochi-mqtt, the Mosquitto
// ACL file generator) call [Allowed] and nothing else; Mosquitto's pattern
// form of the same rule is
//
//	pattern write bv/v1/dev/%u/state   (and telemetry, evt, usage, reply)
//	pattern read  bv/v1/dev/%u/cmd
//
// The cloud's client has its own credentials, with read on
// bv/v1/dev/+/{state,telemetry,evt,usage,reply} and write on bv/v1/dev/+/cmd.
//
// # Cloud subscriptions
//
// [Tree.CloudSubscriptions] lists what each cloud instance subscribes to. At
// fleet scale N instances share the uplink work with MQTT 5 shared
// subscriptions, "$share/<group>/bv/v1/dev/+/usage" and so on, so each
// message reaches one instance of the group. State is the exception: it is
// subscribed unshared by every instance, because brokers do not deliver
// retained messages to a new shared subscription (MQTT 5.0 §4.8.2) and a
// starting instance needs the retained presence of every device; handling
// state is idempotent, so N copies cost nothing but traffic. Commands are
// published to the device's cmd topic by whichever instance took the phone's
// request; the reply may land on another instance, so replies are written to
// the store, where the waiting instance finds them.
//
// # QoS, retain, persistent sessions
//
// Everything that matters travels at QoS 1 (at least once) with persistent
// sessions (clean start false, a session expiry of days), so a device that
// was offline receives its queued commands and the cloud receives uplinks
// published while it restarted. QoS 2 is not used: it costs two more round
// trips on cellular and still does not give end-to-end exactly-once, which
// comes from idempotency on message ids instead (below).
//
// Telemetry is QoS 0 and not retained on purpose: it is periodic, each
// report supersedes the last, and on a metered, lossy cellular link a lost
// one is cheaper than a retransmission and the broker-side queue that QoS 1
// would keep for an offline cloud. Nothing that is billed or acted on is
// carried only by telemetry; its lifetime counters are cumulative, so a
// missed report loses nothing.
//
// Only state is retained, so a subscriber learns every device's presence at
// once. Commands are never retained (a retained Reboot would fire again at
// every reconnect).
//
// # Last will and presence
//
// In its CONNECT the device registers [Tree.LastWill]: a retained QoS 1
// State{status: offline, reason: lost} on its state topic. Right after the
// CONNACK it publishes a retained State{status: online, firmware, machines},
// and before an orderly DISCONNECT a retained State{offline, shutdown or
// reboot} (MQTT 3.1.1 brokers do not publish the will on a clean DISCONNECT).
// The broker publishes the will's payload unchanged, so its ts is when the
// device made it (the controller: at process start), older than the
// telemetry the connection sent since.
//
// Consumers therefore decide presence by their own clock and the
// connection, never by ts (a board's clock may be minutes off, or years
// after a reset without a real-time clock). The cloud holds a connection
// epoch per device, begun when it hears an online state (or telemetry
// from a device it holds offline); an offline state the device published,
// its will, or the embedded broker's report of the connection closing ends
// the epoch the cloud holds when it hears it. This relies on no broker
// delivering a taken-over connection's will after the new connection's
// online state: Mosquitto 2.0 publishes no will on a takeover, and the
// embedded broker (cloud/broker) drops it. A device from which nothing was
// heard for a staleness bound (by default three telemetry periods) is
// offline whatever its retained state says, and a ts more than ten minutes
// ahead of the consumer's clock is counted and clamped.
//
// # Payloads
//
// Every payload is a JSON object whose first members are the envelope:
//
//	{"v":1,"id":"3f9c…","ts":1767225600000,"type":"usage", …body}
//
// The envelope members are:
//
//   - v: the schema version, [Version]. Decoders refuse any other with
//     [ErrVersion]. A device announces the version it speaks in the v of its
//     State, and the cloud sends it commands of that version; adding a
//     member, or changing one's meaning, makes a new version.
//   - id: the message id, 1-64 of [A-Za-z0-9_-], made by [NewMessageID]
//     (128 random bits, 32 hex digits). Retransmissions keep the id.
//   - ts: the sender's clock in Unix milliseconds (1..2^53-1, so JavaScript
//     and Swift read it exactly). It is informative; nothing that is billed
//     trusts a device's clock from the envelope.
//   - type: the message type; which types may travel on which leaf is
//     fixed ([Registry]), and anything else is [ErrType].
//
// Decoders are strict: bigger than [MaxPayload] (16 KiB) is [ErrTooLarge]
// before any parsing; bad JSON, a non-object or a duplicate key is
// [ErrMalformed]; a missing or bad id is [ErrID]; an unknown member, a
// member of the wrong JSON type or a value out of range is a [*FieldError]
// (code "payload.field") naming the member's JSON path, e.g.
// "prices[1].price". Member names match exactly. Unknown members are refused
// rather than ignored because a misspelt optional member ("delay_sec") on a
// board that switches valves is better refused with a clear code than
// silently dropped; the version in v is how the contract grows. Every error
// is of kind vend.Invalid with a stable code (vend.CodeOf), and a device
// refusing a command puts that code in its Reply.
//
// Binary members (Usage.report, Authorize.grant, keys, signatures) are
// standard base64 with padding, as encoding/json writes []byte. Their bytes
// come from app-protocol/signed and are opaque here: the JSON around them is
// not signed, so a consumer acts only on what the signature covers; the
// unsigned copies (Usage.session, Authorize.machine) are for routing and
// logs.
//
// # Idempotency and acknowledgements
//
// Every consumer is idempotent on the message id: delivery is at least
// once, and retransmissions, replays after a reconnect and a broker
// redelivering to another shared subscriber are all the same id.
//
//   - Uplinks that matter (usage, events but progress) sit in the device's bbolt outbox until
//     the cloud names their id in an [Ack] on cmd, sent after the cloud has
//     stored them. A PUBACK only says the broker has the message, which can
//     still be lost with a broker or a cloud instance. The outbox drains in
//     order after every reconnect; the cloud records ids it has handled and
//     acks duplicates again without acting twice. The device does not reply
//     to an Ack and ignores ids it does not hold.
//   - Progress events are left out of the outbox (they are superseded by
//     the next one and by the usage report) and the cloud neither records
//     nor acks them; it acks exactly what the device keeps in its outbox.
//   - A usage report no key of the device verifies (nor a retired key, for a
//     session created before that key was replaced) can never settle: the
//     cloud keeps it as a dead letter and acks it once, so the device stops
//     resending it.
//   - Commands are answered by a [Reply] naming the command's id, ok or with
//     a reason code (grant.expired, machine.busy, payload.field…). The device
//     keeps the reply of each recent command id and sends the same reply
//     again for a repeated id without acting again, so the cloud may resend
//     a command with the same id until it has its reply. Replies are not in
//     the outbox and not acked: a lost one is recovered by that resend.
//   - State and telemetry are not acked: the next one supersedes them.
//
// Money is never carried by the unsigned JSON alone: Authorize carries a
// signed grant and Usage a signed report, and settlement is once per session
// id inside the report, whatever the message id.
package mqttapi
