package simdev_test

import (
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/cloud/internal/simdev"
)

// TestDeviceConnectedAndLastCommand: a device's own view of its link (what
// the cluster fault test's audit compares with the store's online flag):
// connected while its broker is up, a command arriving is timestamped,
// and once the broker is gone the device says it is not connected.
func TestDeviceConnectedAndLastCommand(t *testing.T) {
	url, stop, err := simdev.StartPlainMochi("")
	if err != nil {
		t.Fatalf("StartPlainMochi: %v", err)
	}
	defer stop()
	d := simdev.New(simdev.Identity{ID: "conn-1", Password: "x"}, simdev.Options{})
	defer d.Close()
	if d.Connected() {
		t.Fatal("Connected before Connect = true, want false")
	}
	if err := d.Connect(url); err != nil {
		t.Fatal(err)
	}
	if !d.Connected() {
		t.Fatal("Connected after Connect = false, want true")
	}
	if !d.LastCommand().IsZero() {
		t.Fatalf("LastCommand before any = %s, want zero", d.LastCommand())
	}

	// The cloud's side: an Ack of an id the device never sent.
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID("cloud-test"))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("cloud client connect: %v", tok.Error())
	}
	defer c.Disconnect(50)
	var tree mqttapi.Tree
	topic, err := tree.Topic("conn-1", mqttapi.LeafCmd)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := mqttapi.Encode(&mqttapi.Ack{Envelope: mqttapi.NewEnvelope(time.Now()), IDs: []string{"probe"}})
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	// The device subscribes in its connect handler: publish until it hears.
	for deadline := time.Now().Add(5 * time.Second); d.LastCommand().IsZero(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no command reached the device within 5 s")
		}
		c.Publish(topic, 1, false, payload).WaitTimeout(time.Second)
	}
	if at := d.LastCommand(); at.Before(before) {
		t.Fatalf("LastCommand = %s, before the publish at %s", at, before)
	}

	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); d.Connected(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("Connected still true 5 s after the broker stopped")
		}
	}
}
