package ingest

import (
	"bytes"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// copyStore is paho's OrderedMemoryStore keeping its own copy of each
// outbound packet: the in-flight window of the cloud's persistent session
// (commands to devices, acks).
//
// Ordered: after a reconnect paho resumes the messages in its store in the
// order the store lists them, and its plain MemoryStore lists them in Go
// map order, so an Authorize and the Stop that follows it could reach a
// board swapped. OrderedMemoryStore lists them as they were put.
//
// A copy: paho v1.5.0's resume sets Dup on the packet the store returns,
// which with paho's stores is the very packet its writer may be writing
// at that moment: a data race (eclipse-paho/paho.mqtt.golang#703). Put is
// called before paho hands the packet to its writer, so copying there is
// race-free.
//
// The controller's uplink has the same store (controller/uplink); the
// cloud may not import the controller, and the two stay small.
type copyStore struct{ *paho.OrderedMemoryStore }

func newStore() *copyStore { return &copyStore{paho.NewOrderedMemoryStore()} }

// Put stores a copy of p (serialized and read back).
func (s *copyStore) Put(key string, p packets.ControlPacket) {
	var b bytes.Buffer
	if err := p.Write(&b); err == nil {
		if cp, err := packets.ReadPacket(&b); err == nil {
			p = cp
		}
	}
	s.OrderedMemoryStore.Put(key, p)
}
