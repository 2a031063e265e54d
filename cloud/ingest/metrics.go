package ingest

import (
	"sync"

	"beaconvend/app-protocol/mqttapi"
)

// Drop reasons in [Stats.Dropped] besides the mqttapi decode codes
// ("payload.too_large", "payload.malformed", "payload.field", …) and the
// topic codes ("topic.invalid", "topic.leaf", "id.device").
const (
	DropDedupError = "dedup.error" // the Deduper failed; the message was not handled (the device resends it)
	DropClosing    = "closing"     // arrived while the ingest was stopping
)

// Stats is a snapshot of the ingest's counters since it was made.
type Stats struct {
	Received       map[mqttapi.Leaf]uint64 // messages arrived, by leaf (before any check)
	Dropped        map[string]uint64       // messages dropped, by reason code
	Handled        uint64                  // messages the Handler returned nil for
	Duplicates     uint64                  // messages skipped because their id was Seen
	HandlerErrors  uint64                  // Handler returned an error
	AckErrors      uint64                  // automatic Acks that failed to publish
	Connects       uint64                  // successful connections, the first included (MQTT; with NATS also its reconnections)
	ConnectionLost uint64                  // connections lost (MQTT, and NATS)
	SubscribeFails uint64                  // subscriptions the broker refused or that timed out
	Naks           uint64                  // JetStream uplinks given back after a Handler or Deduper error (redelivered after NATSOptions.NakDelay)
	Terminated     uint64                  // JetStream uplinks terminated: undecodable, or failed on NATSOptions.MaxDeliver deliveries
	PubAckStalls   uint64                  // broker connections closed because a command's PUBACK did not come (Options.PubAckStall)
}

// counters is the mutable side of Stats.
type counters struct {
	mu sync.Mutex
	s  Stats
}

func newCounters() *counters {
	return &counters{s: Stats{Received: map[mqttapi.Leaf]uint64{}, Dropped: map[string]uint64{}}}
}

func (c *counters) add(f func(s *Stats)) {
	c.mu.Lock()
	f(&c.s)
	c.mu.Unlock()
}

func (c *counters) snapshot() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.s
	s.Received = make(map[mqttapi.Leaf]uint64, len(c.s.Received))
	for k, v := range c.s.Received {
		s.Received[k] = v
	}
	s.Dropped = make(map[string]uint64, len(c.s.Dropped))
	for k, v := range c.s.Dropped {
		s.Dropped[k] = v
	}
	return s
}
