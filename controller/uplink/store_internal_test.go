package uplink

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

// paho v1.5.0 resumes the messages in its store when a connection comes
// up and sets Dup on the packet the store returns, while its writer may be
// writing that very packet (a publish made as the connection came up):
// eclipse-paho/paho.mqtt.golang#703, seen here as a race report in the
// daemon's link-loss test. The uplink's store keeps its own copy, so the
// packet paho resumes is never the one on the wire.
func TestStoreKeepsItsOwnCopy(t *testing.T) {
	s := newStore()
	s.Open()
	defer s.Close()
	p := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
	p.TopicName, p.Qos, p.MessageID, p.Payload = "bv/v1/dev/d/evt", 1, 7, []byte(`{"v":1}`)
	s.Put("o.7", p)
	got, ok := s.Get("o.7").(*packets.PublishPacket)
	if !ok || got == p {
		t.Fatalf("Get returned %p (%T), the packet Put was given is %p: the store must keep a copy", got, s.Get("o.7"), p)
	}
	got.Dup = true // what paho's resume does to what Get returns
	if p.Dup {
		t.Fatal("setting Dup on the stored packet changed the packet being sent")
	}
	var a, b bytes.Buffer
	got.Dup = false
	if err := p.Write(&a); err != nil {
		t.Fatal(err)
	}
	if err := got.Write(&b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatalf("stored copy %x differs from the packet %x", b.Bytes(), a.Bytes())
	}
}

// After a reconnect paho resumes its stored messages in the order the
// store lists them: that must be the order they were published in (a usage
// report before the ended event that follows it). paho's plain MemoryStore
// lists them in map order.
func TestStoreListsInPublishOrder(t *testing.T) {
	s := newStore()
	s.Open()
	defer s.Close()
	var want []string
	for i := 1; i <= 64; i++ {
		p := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
		p.TopicName, p.Qos, p.MessageID = "bv/v1/dev/d/evt", 1, uint16(i)
		key := fmt.Sprintf("o.%d", i)
		s.Put(key, p)
		want = append(want, key)
	}
	if got := s.All(); !slices.Equal(got, want) {
		t.Fatalf("All() = %v, want the publish order %v", got, want)
	}
}
