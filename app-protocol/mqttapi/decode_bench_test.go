package mqttapi_test

import (
	"testing"

	"beaconvend/app-protocol/mqttapi"
)

// benchPayloads returns the encoded golden sample of each uplink kind the
// cloud ingests, keyed by leaf.
func benchPayloads(tb testing.TB) []struct {
	leaf    mqttapi.Leaf
	payload []byte
} {
	tb.Helper()
	s := samples()
	var out []struct {
		leaf    mqttapi.Leaf
		payload []byte
	}
	for _, name := range []string{"Telemetry", "Usage", "Reply", "Event"} {
		e, _ := entryByName(name)
		b, err := mqttapi.Encode(s[name])
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, struct {
			leaf    mqttapi.Leaf
			payload []byte
		}{e.Leaf, b})
	}
	return out
}

// BenchmarkDecode decodes one real message of each uplink kind.
func BenchmarkDecode(b *testing.B) {
	for _, p := range benchPayloads(b) {
		b.Run(string(p.leaf), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(p.payload)))
			for b.Loop() {
				if _, err := mqttapi.Decode(p.leaf, p.payload); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecodeAs decodes the telemetry and usage samples with DecodeAs.
func BenchmarkDecodeAs(b *testing.B) {
	ps := benchPayloads(b)
	b.Run("telemetry", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := mqttapi.DecodeAs[mqttapi.Telemetry](ps[0].payload); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("usage", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := mqttapi.DecodeAs[mqttapi.Usage](ps[1].payload); err != nil {
				b.Fatal(err)
			}
		}
	})
}
