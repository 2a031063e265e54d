package ingest

import (
	"fmt"
	"slices"
	"testing"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

// After a reconnect paho resumes the cloud's stored commands in the order
// the store lists them, which must be the order they were published in
// (an Authorize before the Stop that follows it); and the packet it
// resumes (and marks Dup) must not be the one its writer may be sending.
func TestStoreOrderAndCopy(t *testing.T) {
	s := newStore()
	s.Open()
	defer s.Close()
	var want []string
	var first *packets.PublishPacket
	for i := 1; i <= 64; i++ {
		p := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
		p.TopicName, p.Qos, p.MessageID, p.Payload = "bv/v1/dev/d/cmd", 1, uint16(i), []byte(`{"v":1}`)
		key := fmt.Sprintf("o.%d", i)
		s.Put(key, p)
		want = append(want, key)
		if first == nil {
			first = p
		}
	}
	if got := s.All(); !slices.Equal(got, want) {
		t.Fatalf("All() = %v, want the publish order %v", got, want)
	}
	got := s.Get("o.1").(*packets.PublishPacket)
	if got == first {
		t.Fatal("Get returned the packet Put was given: the store must keep a copy")
	}
	got.Dup = true
	if first.Dup {
		t.Fatal("marking the stored packet Dup changed the packet being sent")
	}
}
