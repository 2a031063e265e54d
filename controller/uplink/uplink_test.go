package uplink_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/controller/internal/testrig"
	"beaconvend/controller/uplink"
)

func TestUplinkStateCommandsAndOffline(t *testing.T) {
	addr := testrig.FreeAddr(t)
	b := testrig.StartBroker(t, addr)
	defer b.Stop()
	_, key, _ := testrig.GenerateKey()
	cloud := testrig.NewCloud(t, addr, key)
	cmds := make(chan []byte, 4)
	connects := make(chan struct{}, 4)
	u, err := uplink.New(uplink.Opts{Broker: "tcp://" + addr, DeviceID: "dev-u", Firmware: "test/1",
		OnCommand: func(p []byte) { cmds <- p }, OnConnect: func() { connects <- struct{}{} },
		PublishTimeout: 2 * time.Second, MaxBackoff: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	u.Start()
	defer u.Close()
	<-connects
	// The retained online state, with the firmware version.
	testrig.Eventually(t, "online state", func() bool {
		cloud.Mu.Lock()
		defer cloud.Mu.Unlock()
		for _, s := range cloud.States {
			if s.Status == mqttapi.Online && s.Firmware == "test/1" {
				return true
			}
		}
		return false
	})
	// Commands on the device's own cmd topic reach OnCommand.
	id := cloud.Send("dev-u", &mqttapi.Reboot{Envelope: mqttapi.NewEnvelope(time.Now())})
	select {
	case p := <-cmds:
		m, err := mqttapi.Decode(mqttapi.LeafCmd, p)
		if err != nil || m.Head().ID != id {
			t.Fatalf("command %s: %v", p, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no command delivered")
	}
	// With the broker gone, Publish fails at once instead of queueing.
	b.Stop()
	testrig.Eventually(t, "disconnect noticed", func() bool { return !u.Connected() })
	start := time.Now()
	topic, _ := mqttapi.Topic(mqttapi.DefaultPrefix, "dev-u", mqttapi.LeafEvt)
	err = u.Publish(context.Background(), mqttapi.Publication{Topic: topic, Payload: []byte("{}"), QoS: 1})
	if !errors.Is(err, uplink.ErrOffline) || time.Since(start) > time.Second {
		t.Fatalf("Publish offline = %v after %s, want ErrOffline at once", err, time.Since(start))
	}
	// It reconnects by itself when the broker returns.
	b2 := testrig.StartBroker(t, addr)
	defer b2.Stop()
	select {
	case <-connects:
	case <-time.After(15 * time.Second):
		t.Fatal("no reconnect")
	}
	if st := u.Stats(); st.Connects < 2 || st.Lost < 1 {
		t.Errorf("stats %+v", st)
	}
}
