package mqttapi_test

import (
	"encoding"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"beaconvend/app-protocol/mqttapi"
)

var update = flag.Bool("update", false, "rewrite golden files and the fuzz seed corpus under testdata/")

const specPath = "../asyncapi.yaml"

// spec is the parts of the AsyncAPI document the tests read.
type spec struct {
	AsyncAPI   string                    `yaml:"asyncapi"`
	Channels   map[string]specChannel    `yaml:"channels"`
	Operations map[string]specOperation  `yaml:"operations"`
	Components specComponents            `yaml:"components"`
	Servers    map[string]map[string]any `yaml:"servers"`
}

type specChannel struct {
	Address    string                    `yaml:"address"`
	Parameters map[string]any            `yaml:"parameters"`
	Messages   map[string]map[string]any `yaml:"messages"`
}

type specOperation struct {
	Action   string              `yaml:"action"`
	Channel  map[string]string   `yaml:"channel"`
	Messages []map[string]string `yaml:"messages"`
	Bindings struct {
		MQTT *struct {
			QoS    *int  `yaml:"qos"`
			Retain *bool `yaml:"retain"`
		} `yaml:"mqtt"`
	} `yaml:"bindings"`
}

type specComponents struct {
	Schemas  map[string]any         `yaml:"schemas"`
	Messages map[string]specMessage `yaml:"messages"`
}

type specMessage struct {
	Name     string         `yaml:"name"`
	Payload  map[string]any `yaml:"payload"`
	Examples []struct {
		Name    string         `yaml:"name"`
		Payload map[string]any `yaml:"payload"`
	} `yaml:"examples"`
}

func loadSpec(tb testing.TB) *spec {
	tb.Helper()
	b, err := os.ReadFile(specPath)
	if err != nil {
		tb.Fatal(err)
	}
	var s spec
	if err := yaml.Unmarshal(b, &s); err != nil {
		tb.Fatalf("parse %s: %v", specPath, err)
	}
	if s.AsyncAPI != "3.0.0" {
		tb.Fatalf("asyncapi = %q, want 3.0.0", s.AsyncAPI)
	}
	return &s
}

// refName returns the last element of a local $ref.
func refName(tb testing.TB, ref, wantPrefix string) string {
	tb.Helper()
	if !strings.HasPrefix(ref, wantPrefix) {
		tb.Fatalf("$ref %q: want prefix %q", ref, wantPrefix)
	}
	return ref[strings.LastIndex(ref, "/")+1:]
}

// leafOfAddress checks address is DefaultPrefix/{deviceId}/<leaf> and returns the leaf.
func leafOfAddress(tb testing.TB, addr string) mqttapi.Leaf {
	tb.Helper()
	rest, ok := strings.CutPrefix(addr, mqttapi.DefaultPrefix+"/{deviceId}/")
	if !ok || !mqttapi.Leaf(rest).Valid() {
		tb.Fatalf("channel address %q: want %s/{deviceId}/<leaf>", addr, mqttapi.DefaultPrefix)
	}
	return mqttapi.Leaf(rest)
}

// messageLeaves maps each component message name to the leaves of the
// channels that carry it.
func messageLeaves(t *testing.T, s *spec) map[string][]mqttapi.Leaf {
	t.Helper()
	out := map[string][]mqttapi.Leaf{}
	for cname, ch := range s.Channels {
		leaf := leafOfAddress(t, ch.Address)
		if string(leaf) != cname {
			t.Errorf("channel %q has address %q: name and leaf differ", cname, ch.Address)
		}
		if _, ok := ch.Parameters["deviceId"]; !ok {
			t.Errorf("channel %q: no deviceId parameter", cname)
		}
		for key, m := range ch.Messages {
			ref, _ := m["$ref"].(string)
			name := refName(t, ref, "#/components/messages/")
			if name != key {
				t.Errorf("channel %q message key %q refers to %q", cname, key, name)
			}
			out[name] = append(out[name], leaf)
		}
	}
	return out
}

func TestSpecChannelsCoverLeaves(t *testing.T) {
	s := loadSpec(t)
	seen := map[mqttapi.Leaf]bool{}
	for _, ch := range s.Channels {
		seen[leafOfAddress(t, ch.Address)] = true
	}
	for _, l := range mqttapi.Leaves {
		if !seen[l] {
			t.Errorf("leaf %q has no channel in %s", l, specPath)
		}
	}
	if len(seen) != len(mqttapi.Leaves) || len(s.Channels) != len(mqttapi.Leaves) {
		t.Errorf("spec has %d channels, Go has %d leaves", len(s.Channels), len(mqttapi.Leaves))
	}
}

// TestSpecRegistryNoDrift: every Registry type is a spec message on the
// channel of its leaf, and every spec message is a Registry type.
func TestSpecRegistryNoDrift(t *testing.T) {
	s := loadSpec(t)
	leaves := messageLeaves(t, s)
	reg := map[string]mqttapi.Entry{}
	for _, e := range mqttapi.Registry() {
		reg[e.Name] = e
		m, ok := s.Components.Messages[e.Name]
		if !ok {
			t.Errorf("Registry type %s (%s) is not in components.messages", e.Name, e.Type)
			continue
		}
		if m.Name != e.Name {
			t.Errorf("message %s has name %q", e.Name, m.Name)
		}
		if got := leaves[e.Name]; !slices.Equal(got, []mqttapi.Leaf{e.Leaf}) {
			t.Errorf("message %s is on channels %v, want exactly [%s]", e.Name, got, e.Leaf)
		}
		if e.Dir != e.Leaf.Direction() {
			t.Errorf("Registry %s: direction %s, leaf %s is %s", e.Name, e.Dir, e.Leaf, e.Leaf.Direction())
		}
		if got := e.New().TypeName(); got != e.Type {
			t.Errorf("Registry %s: New().TypeName() = %q, want %q", e.Name, got, e.Type)
		}
		if got := reflect.TypeOf(e.New()).Elem().Name(); got != e.Name {
			t.Errorf("Registry %s: Go type is %s", e.Name, got)
		}
		props, _ := m.Payload["properties"].(map[string]any)
		typ, _ := props["type"].(map[string]any)
		if typ["const"] != e.Type {
			t.Errorf("message %s: payload type const = %v, want %q", e.Name, typ["const"], e.Type)
		}
	}
	for name := range s.Components.Messages {
		if _, ok := reg[name]; !ok {
			t.Errorf("spec message %s has no Registry type", name)
		}
	}
	for name := range leaves {
		if _, ok := reg[name]; !ok {
			t.Errorf("channel message %s has no Registry type", name)
		}
	}
}

// TestSpecOperations: qos and retain in the mqtt bindings equal the Go
// constants, and the action matches the direction (device's point of view).
func TestSpecOperations(t *testing.T) {
	s := loadSpec(t)
	covered := map[mqttapi.Leaf]bool{}
	for name, op := range s.Operations {
		cname := refName(t, op.Channel["$ref"], "#/channels/")
		ch, ok := s.Channels[cname]
		if !ok {
			t.Errorf("operation %s: no channel %q", name, cname)
			continue
		}
		leaf := leafOfAddress(t, ch.Address)
		covered[leaf] = true
		wantAction := "send"
		if leaf.Direction() == mqttapi.Downlink {
			wantAction = "receive"
		}
		if op.Action != wantAction {
			t.Errorf("operation %s on %s: action %q, want %q (device's point of view)", name, leaf, op.Action, wantAction)
		}
		b := op.Bindings.MQTT
		if b == nil || b.QoS == nil {
			t.Errorf("operation %s: no bindings.mqtt.qos", name)
			continue
		}
		if *b.QoS != int(leaf.QoS()) {
			t.Errorf("operation %s on %s: qos %d, Go says %d", name, leaf, *b.QoS, leaf.QoS())
		}
		retain := b.Retain != nil && *b.Retain
		if retain != leaf.Retained() {
			t.Errorf("operation %s on %s: retain %v, Go says %v", name, leaf, retain, leaf.Retained())
		}
		var got []string
		for _, m := range op.Messages {
			got = append(got, refName(t, m["$ref"], "#/channels/"+cname+"/messages/"))
		}
		var want []string
		for k := range ch.Messages {
			want = append(want, k)
		}
		sort.Strings(got)
		sort.Strings(want)
		if !slices.Equal(got, want) {
			t.Errorf("operation %s messages %v, channel %s has %v", name, got, cname, want)
		}
	}
	for _, l := range mqttapi.Leaves {
		if !covered[l] {
			t.Errorf("no operation on leaf %s", l)
		}
	}
	// The last will in the server binding.
	for name, srv := range s.Servers {
		mq, _ := srv["bindings"].(map[string]any)["mqtt"].(map[string]any)
		lw, _ := mq["lastWill"].(map[string]any)
		if lw == nil {
			t.Errorf("server %s: no bindings.mqtt.lastWill", name)
			continue
		}
		if lw["topic"] != mqttapi.DefaultPrefix+"/{deviceId}/"+string(mqttapi.LeafState) ||
			lw["qos"] != int(mqttapi.LeafState.QoS()) || lw["retain"] != true {
			t.Errorf("server %s lastWill = %v", name, lw)
		}
	}
}

// TestSpecExamples decodes every example with the Go decoder for its
// channel, re-encodes it and compares, and compares the key sets of example,
// re-encoding, schema and Go struct in both directions.
func TestSpecExamples(t *testing.T) {
	s := loadSpec(t)
	leaves := messageLeaves(t, s)
	for name, m := range s.Components.Messages {
		if len(m.Examples) == 0 {
			t.Errorf("message %s has no example", name)
		}
		e, ok := entryByName(name)
		if !ok {
			continue // reported by TestSpecRegistryNoDrift
		}
		schemaPaths, schemaReq := schemaKeys(t, s, m.Payload, "")
		goPaths, goReq := goKeys(reflect.TypeOf(e.New()), "")
		if d := diff(schemaPaths, goPaths); d != "" {
			t.Errorf("%s: schema properties vs Go fields: %s", name, d)
		}
		if d := diff(schemaReq, goReq); d != "" {
			t.Errorf("%s: schema required vs Go fields without omitempty: %s", name, d)
		}
		for _, ex := range m.Examples {
			t.Run(name+"/"+ex.Name, func(t *testing.T) {
				raw, err := json.Marshal(ex.Payload)
				if err != nil {
					t.Fatal(err)
				}
				for _, leaf := range leaves[name] {
					msg, err := mqttapi.Decode(leaf, raw)
					if err != nil {
						t.Fatalf("Decode(%s, %s) = %v", leaf, raw, err)
					}
					if err := msg.Validate(); err != nil {
						t.Fatalf("Validate = %v", err)
					}
					out, err := mqttapi.Encode(msg)
					if err != nil {
						t.Fatalf("Encode = %v", err)
					}
					exPaths := jsonKeys(t, raw)
					outPaths := jsonKeys(t, out)
					if d := diff(exPaths, outPaths); d != "" {
						t.Errorf("example vs re-encoded keys: %s", d)
					}
					if d := diff(exPaths, intersect(exPaths, schemaPaths)); d != "" {
						t.Errorf("example keys not in the schema: %s", d)
					}
					if d := diff(intersect(schemaReq, exPaths), applicable(schemaReq, exPaths)); d != "" {
						t.Errorf("example lacks required keys: %s", d)
					}
					var a, b any
					json.Unmarshal(raw, &a)
					json.Unmarshal(out, &b)
					if !reflect.DeepEqual(a, b) {
						t.Errorf("re-encoded\n%s\nwant\n%s", out, raw)
					}
				}
			})
		}
	}
}

func entryByName(name string) (mqttapi.Entry, bool) {
	for _, e := range mqttapi.Registry() {
		if e.Name == name {
			return e, true
		}
	}
	return mqttapi.Entry{}, false
}

// schemaKeys returns the property paths of a JSON schema ("a", "a.b",
// "a[].c") and the paths of required properties, resolving local $refs and
// single-element allOf.
func schemaKeys(tb testing.TB, s *spec, node map[string]any, prefix string) (paths, required map[string]bool) {
	tb.Helper()
	paths, required = map[string]bool{}, map[string]bool{}
	node = resolve(tb, s, node)
	if items, ok := node["items"].(map[string]any); ok {
		p, r := schemaKeys(tb, s, items, prefix+"[]")
		merge(paths, p)
		merge(required, r)
	}
	props, _ := node["properties"].(map[string]any)
	if props != nil && node["additionalProperties"] != false {
		tb.Errorf("schema at %q: want additionalProperties: false", prefix)
	}
	req := map[string]bool{}
	if rl, ok := node["required"].([]any); ok {
		for _, r := range rl {
			req[r.(string)] = true
		}
	}
	for k, v := range props {
		p := k
		if prefix != "" {
			p = prefix + "." + k
		}
		paths[p] = true
		if req[k] {
			required[p] = true
		}
		sub, _ := v.(map[string]any)
		cp, cr := schemaKeys(tb, s, sub, p)
		merge(paths, cp)
		merge(required, cr)
	}
	for k := range req {
		if _, ok := props[k]; !ok {
			tb.Errorf("schema at %q requires %q but has no such property", prefix, k)
		}
	}
	return paths, required
}

func resolve(tb testing.TB, s *spec, node map[string]any) map[string]any {
	tb.Helper()
	for range 10 {
		if ref, ok := node["$ref"].(string); ok {
			name := refName(tb, ref, "#/components/schemas/")
			n, ok := s.Components.Schemas[name].(map[string]any)
			if !ok {
				tb.Fatalf("$ref %q: no such schema", ref)
			}
			node = n
			continue
		}
		if all, ok := node["allOf"].([]any); ok && len(all) == 1 {
			node = all[0].(map[string]any)
			continue
		}
		return node
	}
	tb.Fatalf("$ref chain too long")
	return nil
}

var textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()

// goKeys returns the JSON paths of a Go type as encoding/json writes it, and
// those of fields without omitempty/omitzero.
func goKeys(t reflect.Type, prefix string) (paths, required map[string]bool) {
	paths, required = map[string]bool{}, map[string]bool{}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Implements(textMarshaler) {
		return
	}
	switch t.Kind() {
	case reflect.Slice:
		if t.Elem().Kind() != reflect.Uint8 {
			return goKeys(t.Elem(), prefix+"[]")
		}
	case reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if f.Anonymous {
				p, r := goKeys(f.Type, prefix)
				merge(paths, p)
				merge(required, r)
				continue
			}
			name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			p := name
			if prefix != "" {
				p = prefix + "." + name
			}
			paths[p] = true
			if !strings.Contains(opts, "omitempty") && !strings.Contains(opts, "omitzero") {
				required[p] = true
			}
			cp, cr := goKeys(f.Type, p)
			merge(paths, cp)
			merge(required, cr)
		}
	}
	return
}

// jsonKeys returns the key paths of a JSON document.
func jsonKeys(tb testing.TB, b []byte) map[string]bool {
	tb.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		tb.Fatalf("%s: %v", b, err)
	}
	out := map[string]bool{}
	var walk func(v any, prefix string)
	walk = func(v any, prefix string) {
		switch v := v.(type) {
		case map[string]any:
			for k, c := range v {
				p := k
				if prefix != "" {
					p = prefix + "." + k
				}
				out[p] = true
				walk(c, p)
			}
		case []any:
			for _, c := range v {
				walk(c, prefix+"[]")
			}
		}
	}
	walk(v, "")
	return out
}

// applicable returns the required paths whose parent object is present in have.
func applicable(required, have map[string]bool) map[string]bool {
	out := map[string]bool{}
	for k := range required {
		parent := k[:max(strings.LastIndex(k, "."), 0)]
		parent = strings.TrimSuffix(parent, "[]")
		if parent == "" || have[parent] {
			out[k] = true
		}
	}
	return out
}

func merge(dst, src map[string]bool) {
	for k := range src {
		dst[k] = true
	}
}

func intersect(a, b map[string]bool) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		if b[k] {
			out[k] = true
		}
	}
	return out
}

// diff describes the keys only in a and only in b, or "" when equal.
func diff(a, b map[string]bool) string {
	var onlyA, onlyB []string
	for k := range a {
		if !b[k] {
			onlyA = append(onlyA, k)
		}
	}
	for k := range b {
		if !a[k] {
			onlyB = append(onlyB, k)
		}
	}
	if len(onlyA)+len(onlyB) == 0 {
		return ""
	}
	sort.Strings(onlyA)
	sort.Strings(onlyB)
	return "only in first " + strings.Join(onlyA, ",") + "; only in second " + strings.Join(onlyB, ",")
}

// specExamples returns (leaf, payload) of every example in the spec.
func specExamples(tb testing.TB) []corpusEntry {
	tb.Helper()
	s := loadSpec(tb)
	var out []corpusEntry
	names := make([]string, 0, len(s.Components.Messages))
	for n := range s.Components.Messages {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		e, ok := entryByName(n)
		if !ok {
			tb.Fatalf("spec message %s has no Registry type", n)
		}
		for _, ex := range s.Components.Messages[n].Examples {
			raw, err := json.Marshal(ex.Payload)
			if err != nil {
				tb.Fatal(err)
			}
			out = append(out, corpusEntry{name: "spec-" + n + "-" + ex.Name, leaf: string(e.Leaf), payload: raw})
		}
	}
	return out
}

func writeFile(tb testing.TB, path string, b []byte) {
	tb.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		tb.Fatal(err)
	}
}
