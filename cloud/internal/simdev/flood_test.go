package simdev_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/cloud/internal/simdev"
	"beaconvend/cloud/internal/svctest"
)

// startMochi runs a plain mochi broker for the test.
func startMochi(t testing.TB) string {
	t.Helper()
	url, stop, err := simdev.StartPlainMochi("")
	if err != nil {
		t.Fatalf("StartPlainMochi: %v", err)
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("stop mochi: %v", err)
		}
	})
	return url
}

// startMosquitto runs a plain mosquitto for the test, or fails or skips
// per svctest when there is none.
func startMosquitto(t testing.TB) string {
	t.Helper()
	bin, err := simdev.MosquittoBinary()
	if err != nil {
		svctest.Missing(t, "Mosquitto 2", "run scripts/mosquitto.sh (or set VEND_MOSQUITTO to the binary)")
	}
	dir := t.TempDir()
	url, stop, err := simdev.StartPlainMosquitto(bin, dir)
	if err != nil {
		t.Fatalf("StartPlainMosquitto: %v", err)
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("stop mosquitto: %v", err)
		}
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "mosquitto.log"))
			t.Logf("mosquitto log:\n%s", b)
		}
	})
	return url
}

func TestRawBrokerRate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start func(testing.TB) string
	}{
		{"mochi", startMochi},
		{"mosquitto", startMosquitto},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := tc.start(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			// At most 5000 messages: fewer than either broker queues for a
			// subscriber (mochi 8192, Mosquitto 10000) before dropping, so
			// nothing may be lost however slow the subscriber is here.
			res, err := simdev.RawBrokerRate(ctx, simdev.RawConfig{URL: url, Publishers: 4, Duration: time.Second, Count: 5000})
			if err != nil {
				t.Fatalf("RawBrokerRate: %v", err)
			}
			t.Logf("%s: %d publishers, %d-byte payload, inflight %d: sent %d, acked %d, received %d in %v: %.0f msgs/s",
				tc.name, res.Publishers, res.PayloadBytes, res.Inflight, res.Sent, res.Acked, res.Received, res.Elapsed.Round(time.Millisecond), res.PerSec)
			if res.Flood.Failed != 0 || res.Acked != res.Sent {
				t.Errorf("sent %d, acked %d, failed %d (%v); want every message acked", res.Sent, res.Acked, res.Flood.Failed, res.Flood.Errors)
			}
			if res.Received != res.Acked || res.Lost != 0 {
				t.Errorf("received %d, acked %d, lost %d; want all received (QoS 1 to one subscriber)", res.Received, res.Acked, res.Lost)
			}
			if res.PerSec <= 0 || res.Elapsed <= 0 {
				t.Errorf("PerSec = %v, Elapsed = %v; want > 0", res.PerSec, res.Elapsed)
			}
			if want := int64(res.Received) * int64(res.PayloadBytes); res.Bytes != want {
				t.Errorf("Bytes = %d, want %d", res.Bytes, want)
			}
		})
	}
}

func TestRawPayloadIsRealTelemetry(t *testing.T) {
	p, err := simdev.TelemetryPublication(mqttapi.Tree{}, "wd-0042", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if want := mqttapi.DefaultPrefix + "/wd-0042/telemetry"; p.Topic != want {
		t.Errorf("Topic = %q, want %q", p.Topic, want)
	}
	m, err := mqttapi.Decode(mqttapi.LeafTelemetry, p.Payload)
	if err != nil {
		t.Fatalf("Decode(%s): %v", p.Payload, err)
	}
	if _, ok := m.(*mqttapi.Telemetry); !ok {
		t.Errorf("Decode(%s) = %T, want *mqttapi.Telemetry", p.Payload, m)
	}
}

func TestFloodCount(t *testing.T) {
	url := startMochi(t)
	var pubs []simdev.FloodPub
	for _, dev := range []string{"f1", "f2", "f3"} {
		pubs = append(pubs, simdev.FloodPub{URL: url, Topic: mqttapi.DefaultPrefix + "/" + dev + "/telemetry"})
	}
	payload := []byte(`{"hello":"broker"}`)
	res, err := simdev.Flood(context.Background(), simdev.FloodConfig{
		Publishers: pubs, Inflight: 8, Count: 500,
		Payload: func(int, uint64) []byte { return payload },
	})
	if err != nil {
		t.Fatalf("Flood: %v", err)
	}
	if res.Sent != 500 || res.Acked != 500 || res.Failed != 0 {
		t.Errorf("Flood = sent %d, acked %d, failed %d (%v); want 500, 500, 0", res.Sent, res.Acked, res.Failed, res.Errors)
	}
	if res.AckedPerSec() <= 0 {
		t.Errorf("AckedPerSec = %v, want > 0", res.AckedPerSec())
	}
}

func TestFloodStopsOnContext(t *testing.T) {
	url := startMochi(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	begin := time.Now()
	res, err := simdev.Flood(ctx, simdev.FloodConfig{
		Publishers: []simdev.FloodPub{{URL: url, Topic: "t/1"}},
		Duration:   time.Minute,
		Payload:    func(int, uint64) []byte { return []byte("x") },
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Flood error = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(begin); d > 10*time.Second {
		t.Errorf("Flood took %v after its context ended", d)
	}
	if res.Sent == 0 || res.Acked+res.Failed != res.Sent {
		t.Errorf("Flood = sent %d, acked %d, failed %d; want some sent, each acked or failed", res.Sent, res.Acked, res.Failed)
	}
}

func TestFloodErrors(t *testing.T) {
	closed, err := simdev.FreeLoopbackAddr()
	if err != nil {
		t.Fatal(err)
	}
	payload := func(int, uint64) []byte { return []byte("x") }
	pub := simdev.FloodPub{URL: "tcp://" + closed, Topic: "t/1"}
	for _, tc := range []struct {
		name   string
		cfg    simdev.FloodConfig
		config bool // want ErrFloodConfig
	}{
		{"no publishers", simdev.FloodConfig{Payload: payload, Duration: time.Second}, true},
		{"no payload", simdev.FloodConfig{Publishers: []simdev.FloodPub{pub}, Duration: time.Second}, true},
		{"no bound", simdev.FloodConfig{Publishers: []simdev.FloodPub{pub}, Payload: payload}, true},
		{"negative count", simdev.FloodConfig{Publishers: []simdev.FloodPub{pub}, Payload: payload, Count: -1}, true},
		{"no topic", simdev.FloodConfig{Publishers: []simdev.FloodPub{{URL: pub.URL}}, Payload: payload, Count: 1}, true},
		{"refused", simdev.FloodConfig{Publishers: []simdev.FloodPub{pub}, Payload: payload, Count: 1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := simdev.Flood(context.Background(), tc.cfg)
			if err == nil {
				t.Fatalf("Flood = %+v, nil error; want an error", res)
			}
			if got := errors.Is(err, simdev.ErrFloodConfig); got != tc.config {
				t.Errorf("Flood error %q: errors.Is(ErrFloodConfig) = %v, want %v", err, got, tc.config)
			}
			if res.Sent != 0 {
				t.Errorf("Flood sent %d with an error, want 0", res.Sent)
			}
		})
	}
}

// BenchmarkRawBrokerMochi floods b.N telemetry messages through a plain
// mochi broker to one subscriber.
func BenchmarkRawBrokerMochi(b *testing.B) {
	url := startMochi(b)
	res, err := simdev.RawBrokerRate(context.Background(), simdev.RawConfig{URL: url, Publishers: 4, Count: max(b.N, 100)})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(res.PerSec, "msgs/s")
	b.ReportMetric(float64(res.Lost), "lost") // a subscriber too slow for the flood
}
