package mqttapi

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"

	"beaconvend/app-protocol/vend"
)

// Payload errors. Each is of kind vend.Invalid with a stable code; decoders
// wrap them with detail, so test with errors.Is or vend.CodeOf. A device
// refusing a command replies with that code.
var (
	ErrTooLarge  = vend.E(vend.Invalid, "payload.too_large", "mqttapi: payload too large")
	ErrMalformed = vend.E(vend.Invalid, "payload.malformed", "mqttapi: malformed payload")
	ErrVersion   = vend.E(vend.Invalid, "payload.version", "mqttapi: unsupported payload version")
	ErrType      = vend.E(vend.Invalid, "payload.type", "mqttapi: unknown message type for this topic")
	ErrID        = vend.E(vend.Invalid, "payload.id", "mqttapi: missing or invalid message id")
	ErrField     = vend.E(vend.Invalid, "payload.field", "mqttapi: invalid field")
)

// Entry describes one message type.
type Entry struct {
	Name string         // Go type name and AsyncAPI message name, e.g. "SetPrices"
	Type string         // wire type, e.g. "set_prices"
	Leaf Leaf           // the only topic leaf it travels on
	Dir  Direction      // Uplink (device publishes) or Downlink (cloud publishes)
	New  func() Message // returns a new zero value, e.g. &SetPrices{}
}

var registry = []Entry{
	{"State", TypeState, LeafState, Uplink, func() Message { return &State{} }},
	{"Telemetry", TypeTelemetry, LeafTelemetry, Uplink, func() Message { return &Telemetry{} }},
	{"Event", TypeEvent, LeafEvt, Uplink, func() Message { return &Event{} }},
	{"Usage", TypeUsage, LeafUsage, Uplink, func() Message { return &Usage{} }},
	{"Reply", TypeReply, LeafReply, Uplink, func() Message { return &Reply{} }},
	{"Authorize", TypeAuthorize, LeafCmd, Downlink, func() Message { return &Authorize{} }},
	{"Stop", TypeStop, LeafCmd, Downlink, func() Message { return &Stop{} }},
	{"SetPrices", TypeSetPrices, LeafCmd, Downlink, func() Message { return &SetPrices{} }},
	{"TestOutput", TypeTestOutput, LeafCmd, Downlink, func() Message { return &TestOutput{} }},
	{"Reboot", TypeReboot, LeafCmd, Downlink, func() Message { return &Reboot{} }},
	{"RotateKey", TypeRotateKey, LeafCmd, Downlink, func() Message { return &RotateKey{} }},
	{"Ack", TypeAck, LeafCmd, Downlink, func() Message { return &Ack{} }},
}

// Registry returns every message type, in a fixed order. The slice is a copy.
func Registry() []Entry { return append([]Entry(nil), registry...) }

func lookup(leaf Leaf, typ string) (Entry, bool) {
	for _, e := range registry {
		if e.Leaf == leaf && e.Type == typ {
			return e, true
		}
	}
	return Entry{}, false
}

// lookupBytes is lookup for a type name still in the payload's bytes.
func lookupBytes(leaf Leaf, typ []byte) (Entry, bool) {
	for _, e := range registry {
		if e.Leaf == leaf && e.Type == string(typ) {
			return e, true
		}
	}
	return Entry{}, false
}

// Decode parses payload received on a topic with the given leaf and returns
// the validated message (a pointer such as *Usage). Checks, in order, each
// failing with its own error: size (ErrTooLarge, before any parsing), leaf
// (ErrLeaf), JSON syntax, a top-level object and no duplicate keys
// (ErrMalformed), "v" (ErrVersion), "type" allowed on leaf (ErrType), "id"
// (ErrID), then every member: unknown, mistyped or out-of-range members are a
// *FieldError (ErrField) naming the member's JSON path. Members match their
// names exactly (encoding/json alone would accept "ID" for "id"). Decode
// never panics.
//
// A well-formed payload takes a fast path (fastFill): one scan and
// one json.Unmarshal. Anything the fast path does not accept is decoded again
// by the strict path, which alone decides the error, so both paths accept
// and reject the same payloads with the same errors.
func Decode(leaf Leaf, payload []byte) (Message, error) {
	if len(payload) <= MaxPayload && leaf.Valid() {
		if typ, ok := fastType(payload); ok {
			if e, ok := lookupBytes(leaf, typ); ok {
				if m := e.New(); fastFill(payload, m) {
					return m, nil
				}
			}
		}
	}
	return decodeStrict(leaf, payload)
}

// decodeStrict is Decode without the fast path: the reference the fast path
// is tested against, and the path that reports every error.
func decodeStrict(leaf Leaf, payload []byte) (Message, error) {
	if len(payload) > MaxPayload {
		return nil, vend.Errorf(ErrTooLarge, "%d bytes: limit %d", len(payload), MaxPayload)
	}
	if !leaf.Valid() {
		return nil, vend.Errorf(ErrLeaf, "%q", clip(string(leaf)))
	}
	if !json.Valid(payload) {
		return nil, vend.Errorf(ErrMalformed, "not a JSON value")
	}
	head, err := readHead(payload)
	if err != nil {
		return nil, err
	}
	e, ok := lookup(leaf, head.Type)
	if !ok {
		return nil, vend.Errorf(ErrType, "%q on %s", clip(head.Type), leaf)
	}
	m := e.New()
	if err := decodeBody(payload, m); err != nil {
		return nil, err
	}
	return m, nil
}

// DecodeAs decodes payload as the message type M, such as
// DecodeAs[Usage](b). It returns ErrType when payload's type is not M's, and
// otherwise the errors of [Decode]. Like Decode it tries the fast path first.
func DecodeAs[M any, PM interface {
	*M
	Message
}](payload []byte) (PM, error) {
	var m PM = new(M)
	if len(payload) <= MaxPayload {
		if typ, ok := fastType(payload); ok && string(typ) == m.TypeName() && fastFill(payload, m) {
			return m, nil
		}
		m = new(M) // the fast path may have filled part of it
	}
	if err := decodeAsStrict(payload, m); err != nil {
		return nil, err
	}
	return m, nil
}

// decodeAsStrict is DecodeAs without the fast path, decoding into the zero
// message m.
func decodeAsStrict(payload []byte, m Message) error {
	if len(payload) > MaxPayload {
		return vend.Errorf(ErrTooLarge, "%d bytes: limit %d", len(payload), MaxPayload)
	}
	if !json.Valid(payload) {
		return vend.Errorf(ErrMalformed, "not a JSON value")
	}
	head, err := readHead(payload)
	if err != nil {
		return err
	}
	if head.Type != m.TypeName() {
		return vend.Errorf(ErrType, "%q: want %q", clip(head.Type), m.TypeName())
	}
	return decodeBody(payload, m)
}

// Encode sets msg's v to Version and type to its TypeName, validates it and
// returns its JSON. The caller sets id and ts (see [NewEnvelope]) and keeps
// the id: it is what replies and acks name. Errors are those of Validate,
// and ErrTooLarge when the result exceeds MaxPayload.
func Encode(msg Message) ([]byte, error) {
	h := msg.Head()
	h.V = Version
	h.Type = msg.TypeName()
	if err := msg.Validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("mqttapi: encode %s: %w", h.Type, err)
	}
	if len(b) > MaxPayload {
		return nil, vend.Errorf(ErrTooLarge, "%s: %d bytes: limit %d", h.Type, len(b), MaxPayload)
	}
	return b, nil
}

// Publication is one MQTT PUBLISH as this contract wants it.
type Publication struct {
	Topic   string // concrete topic, e.g. bv/v1/dev/wd-0042/usage
	Payload []byte // encoded JSON, at most MaxPayload bytes
	QoS     byte   // 0 or 1, the leaf's
	Retain  bool   // true only for state
}

// Publication encodes msg for device deviceID on the leaf its type travels
// on, with that leaf's QoS and retain flag. Errors are those of [Encode] and
// [Tree.Topic].
func (t Tree) Publication(deviceID string, msg Message) (Publication, error) {
	var leaf Leaf
	for _, e := range registry {
		if e.Type == msg.TypeName() {
			leaf = e.Leaf
		}
	}
	topic, err := t.Topic(deviceID, leaf)
	if err != nil {
		return Publication{}, err
	}
	b, err := Encode(msg)
	if err != nil {
		return Publication{}, err
	}
	return Publication{Topic: topic, Payload: b, QoS: leaf.QoS(), Retain: leaf.Retained()}, nil
}

// LastWill returns the will a device registers in its CONNECT: a retained
// QoS 1 offline State with reason "lost" on its state topic, stamped now
// (the broker publishes the payload unchanged when the connection drops, so
// consumers take the time from their own clock). Errors are those of
// [Tree.Publication].
func (t Tree) LastWill(deviceID string, now time.Time) (Publication, error) {
	return t.Publication(deviceID, &State{Envelope: NewEnvelope(now), Status: Offline, Reason: ReasonLost})
}

type head struct {
	Type string
}

// readHead checks that payload (valid JSON) is an object without duplicate
// top-level keys, then checks v, type and id, in that order.
func readHead(payload []byte) (head, error) {
	dec := json.NewDecoder(bytes.NewReader(payload))
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return head{}, vend.Errorf(ErrMalformed, "not a JSON object")
	}
	raw := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return head{}, vend.Errorf(ErrMalformed, "%v", err)
		}
		k, _ := tok.(string)
		if _, dup := raw[k]; dup {
			return head{}, vend.Errorf(ErrMalformed, "duplicate key %q", clip(k))
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return head{}, vend.Errorf(ErrMalformed, "%v", err)
		}
		raw[k] = v
	}
	v, ok := raw["v"]
	if !ok {
		return head{}, vend.Errorf(ErrVersion, "missing v")
	}
	var ver int
	if err := json.Unmarshal(v, &ver); err != nil {
		return head{}, vend.Errorf(ErrVersion, "v %s: want an integer", clip(string(v)))
	}
	if ver != Version {
		return head{}, vend.Errorf(ErrVersion, "v %d: this decoder speaks v%d", ver, Version)
	}
	var h head
	t, ok := raw["type"]
	if !ok {
		return head{}, vend.Errorf(ErrType, "missing type")
	}
	if err := json.Unmarshal(t, &h.Type); err != nil {
		return head{}, vend.Errorf(ErrType, "type %s: want a string", clip(string(t)))
	}
	id, ok := raw["id"]
	if !ok {
		return head{}, vend.Errorf(ErrID, "missing id")
	}
	var s string
	if err := json.Unmarshal(id, &s); err != nil {
		return head{}, vend.Errorf(ErrID, "id %s: want a string", clip(string(id)))
	}
	if err := ValidateMessageID(s); err != nil {
		return head{}, err
	}
	return h, nil
}

// decodeBody checks every key against m's fields, then unmarshals and validates.
func decodeBody(payload []byte, m Message) error {
	dec := json.NewDecoder(bytes.NewReader(payload))
	if err := checkKeys(dec, reflect.TypeOf(m), ""); err != nil {
		return err
	}
	dec = json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(m); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			// encoding/json names embedded structs by their Go name.
			return fieldErr(strings.TrimPrefix(te.Field, "Envelope."), "cannot hold JSON %s", te.Value)
		}
		if strings.HasPrefix(err.Error(), "json: unknown field ") {
			return fieldErr(strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`), "unknown field")
		}
		return vend.Errorf(ErrMalformed, "%v", err)
	}
	return m.Validate()
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

// checkKeys reads one JSON value from dec and checks it against type t: an
// object's keys must be exactly the json names of t's fields, once each; a
// value whose Go type unmarshals from text must be a string it accepts; a
// scalar must fit its Go type.
func checkKeys(dec *json.Decoder, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(textUnmarshaler) {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return vend.Errorf(ErrMalformed, "%v", err)
		}
		var s string
		if json.Unmarshal(raw, &s) != nil {
			if string(raw) == "null" {
				return nil
			}
			return fieldErr(path, "want a string")
		}
		v := reflect.New(t).Interface().(encoding.TextUnmarshaler)
		return wrapField(path, v.UnmarshalText([]byte(s)))
	}
	switch {
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8:
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return vend.Errorf(ErrMalformed, "%v", err)
		}
		var b []byte
		if json.Unmarshal(raw, &b) != nil {
			return fieldErr(path, "want standard base64 in a string")
		}
		return nil
	case t.Kind() == reflect.Struct:
		tok, err := dec.Token()
		if err != nil {
			return vend.Errorf(ErrMalformed, "%v", err)
		}
		if tok == nil {
			return nil // null: encoding/json leaves the zero value; Validate judges it
		}
		if tok != json.Delim('{') {
			return fieldErr(path, "want an object")
		}
		fields := jsonFields(t)
		seen := map[string]bool{}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return vend.Errorf(ErrMalformed, "%v", err)
			}
			k, _ := tok.(string)
			p := k
			if path != "" {
				p = path + "." + k
			}
			ft, ok := fields[k]
			if !ok {
				return fieldErr(p, "unknown field")
			}
			if seen[k] {
				return vend.Errorf(ErrMalformed, "duplicate key %q", clip(p))
			}
			seen[k] = true
			if err := checkKeys(dec, ft, p); err != nil {
				return err
			}
		}
		if _, err := dec.Token(); err != nil { // '}'
			return vend.Errorf(ErrMalformed, "%v", err)
		}
		return nil
	case t.Kind() == reflect.Slice && t.Elem().Kind() != reflect.Uint8:
		tok, err := dec.Token()
		if err != nil {
			return vend.Errorf(ErrMalformed, "%v", err)
		}
		if tok == nil {
			return nil
		}
		if tok != json.Delim('[') {
			return fieldErr(path, "want an array")
		}
		for i := 0; dec.More(); i++ {
			if err := checkKeys(dec, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		if _, err := dec.Token(); err != nil { // ']'
			return vend.Errorf(ErrMalformed, "%v", err)
		}
		return nil
	}
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return vend.Errorf(ErrMalformed, "%v", err)
	}
	// A scalar: decode it alone, so a type or range error names its exact path.
	if err := json.Unmarshal(raw, reflect.New(t).Interface()); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return fieldErr(path, "cannot hold JSON %s", te.Value)
		}
		return fieldErr(path, "%v", err)
	}
	return nil
}

var fieldCache sync.Map // reflect.Type → map[string]reflect.Type

// jsonFields maps the json names of struct t's exported fields (embedded
// structs flattened) to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string]reflect.Type)
	}
	m := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			for k, v := range jsonFields(f.Type) {
				m[k] = v
			}
			continue
		}
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		m[name] = f.Type
	}
	fieldCache.Store(t, m)
	return m
}

// The fast path.
//
// The strict path above parses a payload four times, three of them through
// json.Decoder.Token, which allocates for every token; on the cloud's ingest
// it was nearly all the CPU. The fast path scans the bytes once with the
// small hand-written walker below (encoding/json has no allocation-free way
// to visit keys), checking exactly what checkKeys checks beyond what
// json.Unmarshal and Validate check themselves, then runs one json.Unmarshal
// and Validate. It does not report errors: on anything it is unsure of
// (a syntax error, an unknown or escaped key, a duplicate, a value of the
// wrong shape, a null where checkKeys would call UnmarshalText, a type member
// after a container member, or any error from Unmarshal or Validate) it gives
// up and the caller runs the strict path on the same bytes. So the set of
// payloads it accepts is a subset of the strict path's, decoded by the same
// encoding/json into the same value, and every error comes from the strict
// path. The walker does not check syntax: json.Unmarshal does, after it. On
// valid JSON it sees the same structure as encoding/json; on anything else it
// only has to stop without panicking.

// fastFill walks payload against m's plan and, if every key is one of m's
// json names exactly, once per object, and every value has the shape
// checkKeys wants, unmarshals payload into m and validates it. It reports
// whether all of that succeeded; m is garbage when it did not.
func fastFill(payload []byte, m Message) bool {
	p := planOf(reflect.TypeOf(m), 0)
	w := walker{b: payload}
	if p.kind != planStruct || w.peek() != '{' || !w.object(p) || w.peek() != 0 {
		return false
	}
	return json.Unmarshal(payload, m) == nil && m.Validate() == nil
}

// fastType returns the value of the top-level "type" member, a string
// without escapes, if it comes before any member whose value is an object or
// an array (Encode puts it fourth).
func fastType(payload []byte) ([]byte, bool) {
	w := walker{b: payload}
	if w.peek() != '{' {
		return nil, false
	}
	w.i++
	for {
		if w.peek() != '"' {
			return nil, false
		}
		k, esc, ok := w.str()
		if !ok || esc || w.peek() != ':' {
			return nil, false
		}
		w.i++
		c := w.peek()
		if string(k) == "type" {
			if c != '"' {
				return nil, false
			}
			v, esc, ok := w.str()
			return v, ok && !esc
		}
		if c == '"' {
			if _, _, ok := w.str(); !ok {
				return nil, false
			}
		} else if !w.lit() {
			return nil, false // a container, or not JSON
		}
		if w.peek() != ',' {
			return nil, false
		}
		w.i++
	}
}

// planKind is how checkKeys treats a Go type.
type planKind uint8

const (
	planOther  planKind = iota // a kind the fast path does not handle
	planScalar                 // bool, number or string: a literal
	planText                   // encoding.TextUnmarshaler: a string
	planBytes                  // []byte: a base64 string or null
	planStruct                 // an object of exactly its json fields, or null
	planSlice                  // an array of elem, or null
)

// plan is a Go type as the walker needs it.
type plan struct {
	kind   planKind
	elem   *plan    // planSlice
	names  []string // planStruct: json names, at most 64
	fields []*plan  // planStruct: plans of names
}

var (
	planCache       sync.Map // reflect.Type → *plan
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
)

// planOf returns t's plan, classifying t as checkKeys does. Types it cannot
// vouch for are planOther, so payloads using them take the strict path.
func planOf(t reflect.Type, depth int) *plan {
	if p, ok := planCache.Load(t); ok {
		return p.(*plan)
	}
	key, p := t, &plan{}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case depth > 32, reflect.PointerTo(t).Implements(jsonUnmarshaler):
		// Too deep to be one of ours (or recursive), or decoded by its own
		// UnmarshalJSON, which checkKeys does not look at.
	case reflect.PointerTo(t).Implements(textUnmarshaler):
		p.kind = planText
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8:
		p.kind = planBytes
	case t.Kind() == reflect.Struct:
		fields := jsonFields(t)
		if len(fields) > 64 {
			break
		}
		p.kind = planStruct
		for name, ft := range fields {
			p.names = append(p.names, name)
			p.fields = append(p.fields, planOf(ft, depth+1))
		}
	case t.Kind() == reflect.Slice:
		p.kind = planSlice
		p.elem = planOf(t.Elem(), depth+1)
	case t.Kind() == reflect.Bool, t.Kind() == reflect.String,
		t.Kind() >= reflect.Int && t.Kind() <= reflect.Float64:
		p.kind = planScalar
	}
	q, _ := planCache.LoadOrStore(key, p)
	return q.(*plan)
}

// walker reads JSON from b at i. It does not check syntax (see fastFill).
type walker struct {
	b []byte
	i int
}

// peek skips white space and returns the next byte, or 0 at the end.
func (w *walker) peek() byte {
	for ; w.i < len(w.b); w.i++ {
		switch c := w.b[w.i]; c {
		case ' ', '\t', '\n', '\r':
		default:
			return c
		}
	}
	return 0
}

// str reads the string at i (which is '"') and returns its raw contents and
// whether they hold an escape.
func (w *walker) str() (raw []byte, esc, ok bool) {
	start := w.i + 1
	for j := start; j < len(w.b); j++ {
		switch w.b[j] {
		case '"':
			w.i = j + 1
			return w.b[start:j], esc, true
		case '\\':
			esc = true
			j++
		}
	}
	return nil, false, false
}

// lit reads a number, true, false or null.
func (w *walker) lit() bool {
	j := w.i
	for j < len(w.b) {
		c := w.b[j]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '+' || c == '.') {
			break
		}
		j++
	}
	ok := j > w.i
	w.i = j
	return ok
}

// value reads one value of plan p's shape.
func (w *walker) value(p *plan) bool {
	c := w.peek()
	if c == 'n' && p.kind != planOther && p.kind != planText {
		// null: checkKeys accepts it for these, and so does encoding/json.
		// (For a text type checkKeys calls UnmarshalText("").)
		return w.lit()
	}
	switch p.kind {
	case planScalar:
		switch {
		case c == '"':
			_, _, ok := w.str()
			return ok
		case c == '-' || c >= '0' && c <= '9' || c == 't' || c == 'f':
			return w.lit()
		}
	case planText, planBytes:
		if c == '"' {
			_, _, ok := w.str()
			return ok
		}
	case planStruct:
		if c == '{' {
			return w.object(p)
		}
	case planSlice:
		if c != '[' {
			return false
		}
		w.i++
		if w.peek() == ']' {
			w.i++
			return true
		}
		for {
			if !w.value(p.elem) {
				return false
			}
			switch w.peek() {
			case ',':
				w.i++
			case ']':
				w.i++
				return true
			default:
				return false
			}
		}
	}
	return false
}

// object reads the object at i (which is '{') against struct plan p: every
// key one of p's names exactly, unescaped, at most once.
func (w *walker) object(p *plan) bool {
	w.i++
	if w.peek() == '}' {
		w.i++
		return true
	}
	var seen uint64
	for {
		if w.peek() != '"' {
			return false
		}
		k, esc, ok := w.str()
		if !ok || esc {
			return false
		}
		f := -1
		for j, name := range p.names {
			if name == string(k) {
				f = j
				break
			}
		}
		if f < 0 || seen&(1<<f) != 0 {
			return false
		}
		seen |= 1 << f
		if w.peek() != ':' {
			return false
		}
		w.i++
		if !w.value(p.fields[f]) {
			return false
		}
		switch w.peek() {
		case ',':
			w.i++
		case '}':
			w.i++
			return true
		default:
			return false
		}
	}
}
