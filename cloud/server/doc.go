// Package server runs one cloud instance from its configuration: the
// embedded MQTT broker (cloud/broker) or a client of an external one, the
// ingest (cloud/ingest), the service and its upkeep (cloud/service: the
// sweeper, presence, janitor, key rotation, the gauges), the public HTTP
// API (cloud/httpapi) and the admin listener. `cloud serve` is a thin
// main around it (cloud/cmd/cloud).
//
// On a NATS cluster (broker.kind: nats) with broker.nats_auth, Run also
// starts the cluster's auth callout responders (cloud/broker/natsauth)
// before anything else, since they admit the cloud's own connections
// too, and closes them after every other part: devices are looked up in
// the store as the embedded broker looks them up, operators' read-only
// accounts through the store's BrokerAccountHash and OperatorDeviceIDs.
// Their answers are on /metrics (beaconvend_nats_auth_answers_total,
// beaconvend_nats_auth_responders_connected). Without nats_auth the
// cloud runs none and logs so at start.
//
// # Configuration
//
// Config is one YAML file, decoded strictly: an unknown field, a bad value
// or a missing requirement is an ErrConfig error naming the field
// (payments.channels, http.tls, …), as the controller's configuration
// does. A production configuration (the default) must say which payment
// channels to enable (possibly none), where the key-encryption key that
// seals the devices' identity keys comes from (a 0600 file or an
// environment variable; store.Opts.KeyEncKey), how the public API and the
// devices' broker listener get TLS (certificate files, or
// terminated_by_proxy: true), and the admin listener's address.
// development: true relaxes each of these — the always-paying sandbox card
// (shown to phones as a test source), identity keys in clear, plain HTTP
// and MQTT — and Run logs every relaxation in force at WARN when it
// starts. The README's fleet section shows the production example
// (testdata/cloud.prod.yaml, which the tests start); scripts/demo.sh runs
// testdata/cloud.dev.yaml.
//
// # Listeners
//
// The public listener serves the phone and operator API with /healthz and
// /readyz that say only a status, and the web checkout at the machines
// (cloud/webcheckout: /m/… and /r/…), whose forms' key is derived from
// the cloud key so any instance accepts a form another rendered. The admin listener serves /metrics,
// /healthz with detail (Health) and Go's profiles under /debug/pprof/:
// keep it on loopback or a management network. Metrics never reach the
// public listener.
//
// # Keys
//
// Secrets in the data directory (the grant-signing key, the cloud's broker
// password, the MQTT client ID) are made on first start and written
// atomically with mode 0600 (WriteSecret). Identity keys written before a
// key-encryption key was configured, or under a retired one, are resealed
// by `cloud keys reencrypt` (store.ReencryptIdentityKeys); Run warns at
// start while any are left.
//
// Errors of this package begin with "server: ".
package server
