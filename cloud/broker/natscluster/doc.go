// Package natscluster runs a NATS cluster on loopback for tests, the
// cluster fault test and the fleet benchmark: N nats-server nodes joined
// by routes, with JetStream, MQTT listeners (stream_replicas 3 from three
// nodes, the per-stream consumer limit raised, session expiry) and,
// when asked, the auth callout answered by the cloud's responders
// (cloud/broker/natsauth). Every node's configuration is written by
// [broker.NATSNode], the generator `cloud broker nats-files` uses.
//
// [Start] runs the nodes in this process; [StartProcs] runs each as its
// own nats-server process built from the module (so a node can be killed
// with SIGKILL and restarted on its store).
package natscluster
