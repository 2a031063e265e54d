// Package broker is the cloud's embedded MQTT broker (mochi-mqtt/server
// v2) and the generator of the equivalent Mosquitto 2 configuration, both
// enforcing the contract of app-protocol/mqttapi (see its doc.go: topic
// tree, ACL, QoS and retain per leaf).
//
// # Authentication
//
// A device connects with username = its device id, client id = the same
// device id, and a password. The broker looks the device up through the
// [Credentials] interface (the cloud store implements it) and verifies the
// password against a "$7$" PBKDF2-SHA512 hash ([HashPassword],
// [VerifyPassword]) — the format Mosquitto's password file uses, so one
// stored hash serves both brokers. Device passwords are meant to be 256-bit
// random secrets made at provisioning, so the KDF's work factor
// ([HashIterations]) is not what protects them; it only keeps a leaked
// table from being read directly. Unknown and disabled devices, bad
// passwords and anonymous clients are refused at CONNECT. Two more rules
// close holes mochi leaves open: a device's client id must equal its
// device id (mochi hands a persistent session, subscriptions included, to
// any client presenting its id, without an ACL check), and a device's will
// topic must pass the ACL (mochi publishes wills unchecked).
//
// The cloud service has its own credential (Options.CloudUser, default
// "_cloud", deliberately not a valid device id) with the rights of
// [CloudAllowed]: subscribe to every uplink leaf, plain or as
// $share/<group>/…, and publish to every cmd topic. Its client ids must
// not be valid device ids either, so it can never take over a device's
// session.
//
// # Operator accounts
//
// An operator may have a read-only account (username [OperatorUser]: "_"
// and the operator id, never a valid device id): it may subscribe to the
// [OperatorLeaves] (state, telemetry, evt) of its own devices, by name or
// as prefix/+/<leaf>, and publish nothing. The embedded broker asks
// Options.Operators (the store) for the password hash at CONNECT and for
// a device's owner at each SUBSCRIBE and each delivery (mochi checks
// deliveries through the same hook; owners are cached, a device never
// changes owner), so a wildcard yields only the operator's devices.
// Client ids of operator accounts must not be device ids. In Mosquitto's
// ACL ([WriteACL]) the account's section lists its devices' topics; the
// file is regenerated when devices are added.
//
// # ACL
//
// Devices get exactly [mqttapi.Tree.Allowed]: publish to their own state,
// telemetry, evt, usage and reply; subscribe only to their own cmd, spelled
// out. Mochi refuses a forbidden SUBSCRIBE with SUBACK 0x80 and answers a
// forbidden QoS 1 PUBLISH from an MQTT 3.1.1 client by disconnecting it.
// Mosquitto 2.0 (acl_file from [WriteACLFile]) grants such subscriptions
// but filters every delivery through the read ACL, and drops forbidden
// publishes silently; the tests check both by what is delivered.
//
// # Listeners and TLS
//
// The plain TCP listener (Options.Addr, loopback by default; port 0 picks
// a free one, [Broker.Addr] reports it) is for the cloud's own ingest
// client: the cloud talks to its embedded broker like to any other, so
// there is one ingest path. Devices on cellular connect to the TLS
// listener (Options.TLSAddr, TLS 1.2+), with the server certificate chain
// and key from PEM files; the board pins the CA that signed it. With
// Options.TLSClientCAFile the listener also requires a client certificate
// from that CA whose Common Name or DNS SAN is the device id, in addition
// to the password — a stolen password alone then does not suffice. Tests
// make their CA and certificates at run time (package brokertest); no key
// lives in the repository.
//
// # Persistence
//
// Without Options.DataDir sessions live in memory: a broker restart loses
// the cloud's and the devices' sessions, the clients reconnect and
// subscribe again, and anything that was queued is resent by the device
// outbox until the cloud's Ack (the contract does not rely on the broker
// for durability). Options.DataDir keeps sessions in a bbolt file through
// mochi's bolt hook; with mochi v2.7.9 a session restored that way was
// seen to be reset by the broker right after the client reconnected and
// published, in a loop, so treat DataDir as experimental. Note also that
// mochi logs and drops storage errors inside that hook.
//
// # Mosquitto
//
// For a site broker, [WritePasswordFile] (the "$7$" lines; leave disabled
// devices out), [WriteACL] ("pattern" lines on %u for devices, a user
// section for the cloud and one per operator account, with "topic deny"
// on their own pseudo-subtrees, which the %u patterns would otherwise
// grant) and [MosquittoConfig] (a TLS listener for devices, a plaintext
// one only on loopback, absolute paths, persistence, the run-as user)
// write what Mosquitto 2 needs. [MosquittoFiles] writes all three
// atomically, 0640 in the group Mosquitto runs as: Mosquitto re-reads
// them on SIGHUP as its own user, and files it cannot read make it refuse
// every client.
// scripts/mosquitto.sh installs Mosquitto on Debian. Known gaps with
// Debian's 2.0.11: it does not tie the client id to the username, so a
// device can kick another off by reusing its client id (deliveries are
// still ACL-checked); and after a restart it does not route to a restored
// session's $share subscriptions until the client subscribes again.
//
// # What the lead wires
//
//   - the store implements [Credentials] (device id → hash, enabled) and
//     holds the cloud service's hash ([HashPassword] at provisioning);
//   - cloud main: New, go Run(ctx), point cloud/ingest at [Broker.URL];
//   - production: the same hashes into Mosquitto files, regenerated on
//     device changes (cloud/provision).
package broker
