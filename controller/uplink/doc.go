// Package uplink is the controller's MQTT connection (paho.mqtt.golang):
// a persistent session whose client ID is the device ID, auto-reconnect
// with backoff, a retained offline State as last will, a retained online
// State published on every connect, and the subscription to the device's
// cmd topic. It deliberately is not a queue: Publish fails at once while
// the link is down, because paho's in-memory store is lost on a power cut
// and its tokens after a reconnect prove nothing about delivery. The
// controller's journal outbox is the queue (see controller/journal).
package uplink
