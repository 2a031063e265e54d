// Package simdev simulates beaconvend controller boards and phones against a
// running cloud, for the cloud's end-to-end, crash and broker tests and for
// the cloudbench load generator (cloud/cmd/cloudbench).
//
// A Device is a real MQTT client (eclipse/paho.mqtt.golang) with the
// credentials `cloud device add` made (IdentityFromDir) or any Identity. It
// behaves like the controller's uplink as far as money is concerned
// (controller/daemon): it verifies each Authorize's grant with the cloud's
// public keys and replies; a repeated Authorize for a session it knows is
// answered again without acting twice; after Options.UsageDelay it
// "meters" Options.Units, signs the usage report with its device key and puts
// it (and, with Options.Events, the started and ended events) in an outbox
// that is published again every Options.ResendAfter until the cloud's Ack
// names it. Session records (Device.Sessions) are the device-side truth the
// tests compare the cloud's ledger with.
//
// Bench (bench.go) drives many devices and phones against one cloud and
// reports authorize latency percentiles, settled throughput and errors by
// kind.
package simdev
