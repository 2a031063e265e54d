// Package natscluster runs a NATS cluster on loopback for tests, the
// cluster fault test and the fleet benchmark: N nats-server nodes joined
// by routes, with JetStream, MQTT listeners (stream_replicas 3 from three
// nodes, the per-stream consumer limit raised, session expiry) and,
// when asked, the auth callout answered by the cloud's responders
// (cloud/broker/natsauth). Every node's configuration is written by
// [broker.NATSNode], the generator `cloud broker nats-files` uses.
//
// With Options.TLS every node serves TLS on its client and MQTT listeners
// (tls:// and ssl:// URLs; the responders and Cluster.ClientTLS trust
// the given CA) and its routes are mutual TLS: a node presenting a
// certificate of another CA, or a peer in clear, is refused.
//
// [Start] runs the nodes in this process; [StartProcs] runs each as its
// own nats-server process built from the module (so a node can be killed
// with SIGKILL and restarted on its store).
//
// What the tests show of NATS (nats-server v2.15.3), which the cloud
// must design around: a $share/… MQTT subscription is granted and
// delivers nothing (uplinks are consumed through NATS itself); with the
// default per-stream consumer limit, persistent sessions past it are
// refused at SUBSCRIBE (SUBACK 0x80); a persistent QoS 1 session and
// retained messages survive the SIGKILL of a node (stream_replicas 3);
// a device reconnecting at once to another node may briefly be refused
// while JetStream leaders move, and retries.
package natscluster
