package ingest_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"

	"beaconvend/cloud/broker/brokertest"
	"beaconvend/cloud/ingest"
)

// TestSharedSubscriptionDowngradeFails runs the ingest against a real
// broker that grants less than QoS 1: a bare mochi with its maximum QoS
// capped at 0, which answers every SUBSCRIBE with SUBACK 0x00. Before,
// any code up to 2 was taken for a success and the instance ran on,
// losing what a broken connection carried; now Run ends with ErrSubscribe
// at once (a downgrade is not retried), naming the filter and the QoS.
func TestSharedSubscriptionDowngradeFails(t *testing.T) {
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumQos = 0
	srv := mqtt.New(&mqtt.Options{Capabilities: caps, Logger: slog.New(slog.DiscardHandler)})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", brokertest.FreePort(t))
	if err := srv.AddListener(listeners.NewTCP(listeners.Config{ID: "t", Address: addr})); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })

	for _, group := range []string{"cloud", ""} {
		in, err := ingest.New(ingest.Options{URL: "tcp://" + addr, ClientID: "_cloud-qos", Username: "_cloud", Group: group,
			Handler: newRecorder().handler("a"), Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		start := time.Now()
		err = in.Run(ctx)
		cancel()
		if !errors.Is(err, ingest.ErrSubscribe) || !strings.Contains(err.Error(), "QoS 0, asked 1") {
			t.Fatalf("group %q: Run = %v, want ErrSubscribe naming QoS 0, asked 1", group, err)
		}
		if group != "" && !strings.Contains(err.Error(), "shared subscription") {
			t.Errorf("group %q: Run = %v, want it to say a shared subscription was downgraded", group, err)
		}
		if d := time.Since(start); d > wait/2 {
			t.Errorf("group %q: Run took %v to fail", group, d)
		}
		if s := in.Stats(); s.SubscribeFails != 1 {
			t.Errorf("group %q: SubscribeFails = %d, want 1", group, s.SubscribeFails)
		}
	}
}
