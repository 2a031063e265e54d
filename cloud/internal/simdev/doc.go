// Package simdev simulates beaconvend controller boards and phones against a
// running cloud, for the cloud's end-to-end, crash and broker tests and for
// the cloudbench fleet load harness (cloud/cmd/cloudbench, cloud/LOAD.md).
//
// A Device is a real MQTT client (eclipse/paho.mqtt.golang) with the
// credentials in the bundle `cloud device add` wrote (IdentityFromDir) or
// any Identity. It
// behaves like the controller's uplink as far as money is concerned
// (controller/daemon): it verifies each Authorize's grant with the cloud's
// public keys and replies; a repeated Authorize for a session it knows is
// answered again without acting twice; after Options.UsageDelay it
// "meters" Options.Units, signs the usage report with its device key and puts
// it (and, with Options.Events, the started and ended events) in an outbox
// that is published again every Options.ResendAfter until the cloud's Ack
// names it. With Options.Telemetry it reports telemetry periodically.
// Session records (Device.Sessions) are the device-side truth the tests and
// the harness compare the cloud's ledger with.
//
// The harness (RunBench, bench.go and deploy.go) builds one deployment on
// loopback — the cloud as one or more processes, the embedded broker or
// Mosquitto with the generated password file and ACL, SQLite or PostgreSQL —
// connects thousands of Devices at a set rate, runs load steps of phone
// StartSession calls at target rates, and reports authorize latency (to the
// device's grant and to the phone's answer), settlements and telemetry per
// second, and the CPU and memory of the cloud, Mosquitto and PostgreSQL
// (Sampler, from /proc). Alongside it:
//
//   - Relay (relay.go) provisions real controllers with `cloud device add`
//     (their controller.yaml made from the bundle by WriteController, the
//     wiring of the harness's emulated boards), runs them as processes against boards emulated in this process
//     (hw/emu with its OnCoil hook), and gives the instant a valve coil was
//     switched on: tap-to-relay latency.
//   - Flood and RawBrokerRate (flood.go) measure how fast the cloud ingests
//     telemetry against what a bare broker of the same kind (StartPlainMochi,
//     StartPlainMosquitto) delivers to one plain subscriber.
//
// After the run the store is audited against the devices: every usage
// report a device saw acknowledged must be settled once with its units,
// no session may have two captures or releases, and the ledger must
// balance.
package simdev
