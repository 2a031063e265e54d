package mqttapi_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/vend"
)

// decodeFunc decodes a payload one way; the message is nil on error.
type decodeFunc func(payload []byte) (mqttapi.Message, error)

// decodeAs returns DecodeAs[M] and the strict DecodeAs for M.
func decodeAs[M any, PM interface {
	*M
	mqttapi.Message
}]() [2]decodeFunc {
	fast := func(b []byte) (mqttapi.Message, error) {
		m, err := mqttapi.DecodeAs[M, PM](b)
		if m == nil {
			return nil, err
		}
		return m, err
	}
	strict := func(b []byte) (mqttapi.Message, error) {
		var m PM = new(M)
		if err := mqttapi.DecodeAsStrict(b, m); err != nil {
			return nil, err
		}
		return m, nil
	}
	return [2]decodeFunc{fast, strict}
}

// asByName holds DecodeAs and its reference per Registry name.
var asByName = func() map[string][2]decodeFunc {
	return map[string][2]decodeFunc{
		"State":      decodeAs[mqttapi.State](),
		"Telemetry":  decodeAs[mqttapi.Telemetry](),
		"Event":      decodeAs[mqttapi.Event](),
		"Usage":      decodeAs[mqttapi.Usage](),
		"Reply":      decodeAs[mqttapi.Reply](),
		"Authorize":  decodeAs[mqttapi.Authorize](),
		"Stop":       decodeAs[mqttapi.Stop](),
		"SetPrices":  decodeAs[mqttapi.SetPrices](),
		"TestOutput": decodeAs[mqttapi.TestOutput](),
		"Reboot":     decodeAs[mqttapi.Reboot](),
		"RotateKey":  decodeAs[mqttapi.RotateKey](),
		"Ack":        decodeAs[mqttapi.Ack](),
	}
}()

// sameResult fails unless the fast and strict results agree: both accept
// with deeply equal messages, or both refuse with the same error text, kind,
// code and field.
func sameResult(tb testing.TB, what string, payload []byte, fm mqttapi.Message, ferr error, sm mqttapi.Message, serr error) {
	tb.Helper()
	switch {
	case (ferr == nil) != (serr == nil):
		tb.Errorf("%s(%q): fast = %v, strict = %v", what, payload, ferr, serr)
	case ferr != nil:
		if ferr.Error() != serr.Error() || vend.CodeOf(ferr) != vend.CodeOf(serr) ||
			vend.KindOf(ferr) != vend.KindOf(serr) || mqttapi.FieldOf(ferr) != mqttapi.FieldOf(serr) {
			tb.Errorf("%s(%q): fast error %v (code %s field %q), strict %v (code %s field %q)", what, payload,
				ferr, vend.CodeOf(ferr), mqttapi.FieldOf(ferr), serr, vend.CodeOf(serr), mqttapi.FieldOf(serr))
		}
		if fm != nil || sm != nil {
			tb.Errorf("%s(%q): a message with an error", what, payload)
		}
	case !reflect.DeepEqual(fm, sm):
		tb.Errorf("%s(%q): fast = %+v, strict = %+v", what, payload, fm, sm)
	}
}

// compareDecoders runs payload through Decode and DecodeStrict on leaf, and
// through DecodeAs and its reference for the type payload names, or with
// all, for every type on leaf (for a leaf without types, one picked by the
// payload's length).
func compareDecoders(tb testing.TB, leaf mqttapi.Leaf, payload []byte, all bool) {
	tb.Helper()
	fm, ferr := mqttapi.Decode(leaf, payload)
	sm, serr := mqttapi.DecodeStrict(leaf, payload)
	sameResult(tb, "Decode("+string(leaf)+")", payload, fm, ferr, sm, serr)
	reg := mqttapi.Registry()
	var head struct{ Type string }
	json.Unmarshal(payload, &head)
	var names []string
	for _, e := range reg {
		if e.Leaf == leaf && (all || e.Type == head.Type) {
			names = append(names, e.Name)
		}
	}
	if len(names) == 0 {
		names = []string{reg[len(payload)%len(reg)].Name}
	}
	for _, n := range names {
		fns := asByName[n]
		fm, ferr := fns[0](payload)
		sm, serr := fns[1](payload)
		sameResult(tb, "DecodeAs["+n+"]", payload, fm, ferr, sm, serr)
	}
}

// escapeCases are payloads that take the strict path on purpose: escaped
// keys and values, nulls where checkKeys calls UnmarshalText, reordered
// members. Each says whether Decode accepts it (today's behaviour: keys are
// compared after unescaping, so "\u0076" is "v").
var escapeCases = []struct {
	leaf    mqttapi.Leaf
	payload string
	ok      bool
}{
	{"usage", strings.Replace(okUsage, `"v":1`, `"\u0076":1`, 1), true},
	{"usage", strings.Replace(okUsage, `"seq":1`, `"s\u0065q":1`, 1), true},
	{"usage", strings.Replace(okUsage, `"seq":1`, `"s\u0045q":1`, 1), false},
	{"usage", strings.Replace(okUsage, `"seq":1`, `"seq":1,"s\u0065q":1`, 1), false},
	{"usage", strings.Replace(okUsage, `"type":"usage"`, `"type":"\u0075sage"`, 1), true},
	{"usage", strings.Replace(okUsage, `"type":"usage"`, `"\u0074ype":"usage"`, 1), true},
	{"usage", strings.Replace(okUsage, `"id":"abc"`, `"id":"a\u0062c"`, 1), true},
	{"usage", strings.Replace(okUsage, `"report":"AQID"`, `"report":"AQ\nID"`, 1), true}, // base64 skips \n
	{"usage", strings.Replace(okUsage, `"report":"AQID"`, `"report":"AQ\\nID"`, 1), false},
	{"usage", strings.Replace(okUsage, `"report":"AQID"`, `"report":null`, 1), false},
	{"usage", strings.Replace(okUsage, `"session":"4c12ef51-7541-4eb9-9e31-1c83635c7a61"`, `"session":null`, 1), false},
	{"usage", `{"report":"AQID","seq":1,"session":"4c12ef51-7541-4eb9-9e31-1c83635c7a61","type":"usage","ts":1767225600000,"id":"abc","v":1}`, true},
	{"usage", " \n\t" + okUsage + "\r\n ", true},
	{"telemetry", `{"v":1,"id":"a","ts":1,"machines":[],"board":{"status":"ok","consecutive_failures":0},"type":"telemetry","uptime_s":1,"modem":null,"outbox_depth":0}`, true},
	{"telemetry", `{"v":1,"id":"a","ts":1,"type":"telemetry","uptime_s":1,"modem":null,"board":null,"outbox_depth":0,"machines":[null]}`, false},
	{"evt", `{"v":1,"id":"a","ts":1,"type":"event","kind":"ended","session":"4c12ef51-7541-4eb9-9e31-1c83635c7a61","machine":"m","units":1,"unit":null,"amount":{"minor":1,"currency":"EUR"},"outcome":"ok"}`, false},
}

// diffCorpus returns every payload the other tests use: the fuzz seeds (spec
// examples, golden samples, malformed ones), the checked-in fuzz corpus,
// the golden files, the error table and escapeCases.
func diffCorpus(tb testing.TB) []corpusEntry {
	tb.Helper()
	out := seeds(tb)
	for _, c := range decodeErrorCases() {
		out = append(out, corpusEntry{"error-" + c.name, string(c.leaf), []byte(c.payload)})
	}
	for i, c := range escapeCases {
		out = append(out, corpusEntry{"escape-" + strconv.Itoa(i), string(c.leaf), []byte(c.payload)})
	}
	files, _ := filepath.Glob(filepath.Join(corpusDir, "*"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		lines := strings.Split(string(b), "\n")
		if len(lines) < 3 || !strings.HasPrefix(lines[1], "string(") || !strings.HasPrefix(lines[2], "[]byte(") {
			tb.Fatalf("%s: not a FuzzDecode corpus file", f)
		}
		leaf, err1 := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "string("), ")"))
		payload, err2 := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[2], "[]byte("), ")"))
		if err1 != nil || err2 != nil {
			tb.Fatalf("%s: %v %v", f, err1, err2)
		}
		out = append(out, corpusEntry{"fuzz-" + filepath.Base(f), leaf, []byte(payload)})
	}
	for _, e := range mqttapi.Registry() {
		b, err := os.ReadFile(filepath.Join("testdata", "golden", e.Name+".json"))
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, corpusEntry{"golden-file-" + e.Name, string(e.Leaf), b})
	}
	return out
}

// token is a span of a payload: a key (without its colon) or a scalar value.
type token struct {
	start, end int
	key        bool
}

// tokens finds the keys and scalar values of payload, however broken.
func tokens(b []byte) []token {
	var out []token
	for i := 0; i < len(b); {
		switch c := b[i]; {
		case c == '"':
			j := i + 1
			for j < len(b) && b[j] != '"' {
				if b[j] == '\\' {
					j++
				}
				j++
			}
			j = min(j+1, len(b))
			k := j
			for k < len(b) && strings.IndexByte(" \t\r\n", b[k]) >= 0 {
				k++
			}
			out = append(out, token{i, j, k < len(b) && b[k] == ':'})
			i = j
		case c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z':
			j := i
			for j < len(b) && strings.IndexByte("+-.eE0123456789abcdefghijklmnopqrstuvwxyz", b[j]) >= 0 {
				j++
			}
			out = append(out, token{i, j, false})
			i = j
		default:
			i++
		}
	}
	return out
}

// replacements are what a scalar value is swapped for.
var replacements = []string{
	`null`, `""`, `"x"`, `0`, `-1`, `1`, `2`, `1.5`, `1e3`, `-0`, `18446744073709551616`, `9007199254740992`,
	`true`, `false`, `{}`, `[]`, `[null]`, `{"a":1}`, `"4c12ef51-7541-4eb9-9e31-1c83635c7a61"`, `"ml"`, `"AQID"`,
	`"A\u0051ID"`, `"ended"`, `"\u0000"`, `"\ud800"`, "\"\xff\"", `"AQ=="`, `"usage"`, `"telemetry"`,
}

// mutations returns variants of payload, each broken or bent one way.
func mutations(payload []byte) [][]byte {
	var out [][]byte
	edit := func(start, end int, with string) {
		b := make([]byte, 0, len(payload)+len(with))
		b = append(append(append(b, payload[:start]...), with...), payload[end:]...)
		out = append(out, b)
	}
	// Byte edits mostly make syntax errors, which the fuzz target covers
	// better; spread 64 of them over the payload.
	step := max(1, len(payload)/64)
	for i := 0; i < len(payload); i += step {
		edit(i, i+1, "")                      // drop a byte
		edit(i, i, " ")                       // insert space
		out = append(out, payload[:i:i])      // truncate
		edit(i, min(i+1, len(payload)), "\"") // a stray quote
		edit(i, min(i+1, len(payload)), "\\") // a stray backslash
	}
	for _, c := range []string{"{", ","} {
		for i := 0; i < len(payload); i++ {
			if string(payload[i]) == c {
				edit(i+1, i+1, `"zz":1,`) // an unknown member
			}
		}
	}
	toks := tokens(payload)
	for ti, tk := range toks {
		s := string(payload[tk.start:tk.end])
		if tk.key {
			name := strings.Trim(s, `"`)
			if name == "" {
				continue
			}
			edit(tk.start, tk.end, `"`+strings.ToUpper(name)+`"`)
			edit(tk.start, tk.end, `"`+strings.ToUpper(name[:1])+name[1:]+`"`)
			edit(tk.start, tk.end, `"\u00`+strconv.FormatInt(int64(name[0]), 16)+name[1:]+`"`)
			edit(tk.start, tk.end, `"\u00`+strings.ToUpper(strconv.FormatInt(int64(name[0]), 16))+name[1:]+`"`)
			edit(tk.start, tk.end, `"`+name+`x"`)
			edit(tk.start, tk.end, `"`+name[:len(name)-1]+`"`)
			if ti+1 < len(toks) && !toks[ti+1].key {
				member := string(payload[tk.start:toks[ti+1].end])
				edit(tk.start, tk.start, member+",") // a duplicate
			}
			continue
		}
		for _, r := range replacements {
			if r != s {
				edit(tk.start, tk.end, r)
			}
		}
	}
	return out
}

// TestDecodeDifferential runs the corpus and its mutations through the fast
// and the strict decoders: they must agree on every payload.
func TestDecodeDifferential(t *testing.T) {
	leaves := []mqttapi.Leaf{"nope", "", mqttapi.LeafState, mqttapi.LeafTelemetry, mqttapi.LeafEvt,
		mqttapi.LeafUsage, mqttapi.LeafReply, mqttapi.LeafCmd}
	stride := 1 // every mutation, or with -short or -race one in 5
	if testing.Short() || raceEnabled {
		stride = 5
	}
	n := 0
	for _, c := range diffCorpus(t) {
		for _, leaf := range leaves {
			compareDecoders(t, leaf, c.payload, true)
		}
		for i, m := range mutations(c.payload) {
			if i%stride == 0 {
				compareDecoders(t, mqttapi.Leaf(c.leaf), m, false)
				n++
			}
		}
		if t.Failed() {
			t.Fatalf("corpus entry %s", c.name)
		}
	}
	t.Logf("%d mutations", n)
}

// TestEscapedKeys pins the behaviour the fast path defers to the strict
// path: keys and values are compared after JSON unescaping.
func TestEscapedKeys(t *testing.T) {
	for _, c := range escapeCases {
		m, err := mqttapi.Decode(c.leaf, []byte(c.payload))
		if (err == nil) != c.ok {
			t.Errorf("Decode(%s, %s) = %v, %v; want ok %v", c.leaf, c.payload, m, err, c.ok)
		}
	}
}

// FuzzDecodeDifferential: Decode and DecodeAs agree with the strict
// decoders on every input.
func FuzzDecodeDifferential(f *testing.F) {
	for _, c := range diffCorpus(f) {
		// The few huge seeds (oversized, deep nesting) stall the fuzzer
		// minimizing their offspring; TestDecodeDifferential runs them.
		if len(c.payload) <= 2048 {
			f.Add(c.leaf, c.payload)
		}
	}
	f.Fuzz(func(t *testing.T, leaf string, payload []byte) {
		compareDecoders(t, mqttapi.Leaf(leaf), payload, true)
	})
}
