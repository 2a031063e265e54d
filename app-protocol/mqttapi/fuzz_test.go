package mqttapi_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/vend"
)

// corpusEntry is one seed of FuzzDecode.
type corpusEntry struct {
	name    string
	leaf    string
	payload []byte
}

const corpusDir = "testdata/fuzz/FuzzDecode"

// seeds returns the checked-in seed corpus: every spec example, every
// golden sample, and malformed payloads.
func seeds(tb testing.TB) []corpusEntry {
	tb.Helper()
	out := specExamples(tb)
	for _, e := range mqttapi.Registry() {
		b, err := mqttapi.Encode(samples()[e.Name])
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, corpusEntry{"golden-" + e.Name, string(e.Leaf), b})
	}
	bad := []corpusEntry{
		{"empty", "usage", nil},
		{"not-json", "usage", []byte("hello")},
		{"truncated", "usage", []byte(okUsage[:50])},
		{"array", "cmd", []byte(`[{"v":1}]`)},
		{"v2", "usage", []byte(strings.Replace(okUsage, `"v":1`, `"v":2`, 1))},
		{"dup-key", "usage", []byte(strings.Replace(okUsage, `"seq":1`, `"seq":1,"seq":2`, 1))},
		{"wrong-leaf", "cmd", []byte(okUsage)},
		{"bad-leaf", "nope", []byte(okUsage)},
		{"no-id", "usage", []byte(strings.Replace(okUsage, `"id":"abc",`, ``, 1))},
		{"unknown-field", "usage", []byte(strings.Replace(okUsage, `"seq":1`, `"seq":1,"x":{}`, 1))},
		{"nested-null", "telemetry", []byte(`{"v":1,"id":"a","ts":1,"type":"telemetry","uptime_s":1,"modem":null,"board":null,"outbox_depth":0,"machines":[null]}`)},
		{"deep", "evt", []byte(`{"v":1,"id":"a","ts":1,"type":"event","kind":"door","detail":` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `}`)},
		{"unicode", "reply", []byte(`{"v":1,"id":"a","ts":1,"type":"reply","cmd_id":"c","ok":false,"code":"x","message":"\ud800 \u00e9 \xff"}`)},
		{"big-number", "cmd", []byte(`{"v":1,"id":"a","ts":1e300,"type":"reboot","delay_s":18446744073709551616}`)},
	}
	return append(out, bad...)
}

func corpusFile(e corpusEntry) []byte {
	return []byte("go test fuzz v1\nstring(" + strconv.Quote(e.leaf) + ")\n[]byte(" + strconv.Quote(string(e.payload)) + ")\n")
}

// TestFuzzCorpus checks that the checked-in seed corpus holds every seed (so
// a new spec example or message type cannot be forgotten there); -update
// rewrites it.
func TestFuzzCorpus(t *testing.T) {
	for _, e := range seeds(t) {
		path := filepath.Join(corpusDir, e.name)
		if *update {
			writeFile(t, path, corpusFile(e))
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("%v (run go test -update)", err)
			continue
		}
		if !bytes.Equal(got, corpusFile(e)) {
			t.Errorf("%s is stale (run go test -update)", path)
		}
	}
}

// FuzzDecode: Decode never panics; it either returns a message that
// validates and re-encodes to a fixed point, or an invalid-kind error of this
// package's vocabulary.
func FuzzDecode(f *testing.F) {
	f.Add("usage", []byte(okUsage))
	f.Fuzz(func(t *testing.T, leaf string, payload []byte) {
		m, err := mqttapi.Decode(mqttapi.Leaf(leaf), payload)
		if err != nil {
			if m != nil {
				t.Fatalf("Decode returned a message and %v", err)
			}
			if vend.KindOf(err) != vend.Invalid {
				t.Fatalf("Decode error %v has kind %s", err, vend.KindOf(err))
			}
			var ve *vend.Error
			if !errors.As(err, &ve) {
				t.Fatalf("Decode error %v carries no *vend.Error", err)
			}
			if !strings.HasPrefix(err.Error(), "mqttapi: ") && !strings.HasPrefix(err.Error(), "vend: ") {
				t.Fatalf("error %q does not begin with the package", err)
			}
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("decoded message does not validate: %v", err)
		}
		b1, err := mqttapi.Encode(m)
		if err != nil {
			t.Fatalf("Encode(Decode(%q)) = %v", payload, err)
		}
		m2, err := mqttapi.Decode(mqttapi.Leaf(leaf), b1)
		if err != nil {
			t.Fatalf("Decode(Encode(…)) of %s = %v", b1, err)
		}
		b2, err := mqttapi.Encode(m2)
		if err != nil || !bytes.Equal(b1, b2) {
			t.Fatalf("not a fixed point: %s then %s (%v)", b1, b2, err)
		}
	})
}
