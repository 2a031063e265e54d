package phoneapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
)

const specPath = "../openapi.yaml"

var (
	specOnce sync.Once
	specDoc  *openapi3.T
	specErr  error
)

// mustSpec loads and validates openapi.yaml once per test binary.
func mustSpec(tb testing.TB) *openapi3.T {
	tb.Helper()
	specOnce.Do(func() {
		l := openapi3.NewLoader()
		specDoc, specErr = l.LoadFromFile(specPath)
		if specErr == nil {
			specErr = specDoc.Validate(context.Background())
		}
	})
	if specErr != nil {
		tb.Fatalf("openapi.yaml: %v", specErr)
	}
	return specDoc
}

// operation is one operation of the spec.
type operation struct {
	method, path string
	op           *openapi3.Operation
}

func operations(tb testing.TB) map[string]operation {
	tb.Helper()
	doc := mustSpec(tb)
	ops := map[string]operation{}
	for path, item := range doc.Paths.Map() {
		if operatorPath(path) {
			continue // the operator API: cloud/httpapi checks it
		}
		for method, op := range item.Operations() {
			if op.OperationID == "" {
				tb.Errorf("%s %s: no operationId", method, path)
				continue
			}
			if _, dup := ops[op.OperationID]; dup {
				tb.Errorf("operationId %s used twice", op.OperationID)
			}
			ops[op.OperationID] = operation{method, path, op}
		}
	}
	return ops
}

// operatorPath reports whether path is of the operator API, whose
// operations and Operator… schemas have Go types in cloud/httpapi, which
// checks them against this file; the tests here cover the phone API.
func operatorPath(path string) bool { return strings.HasPrefix(path, "/v1/operator/") }

// phoneSchemas returns the names of the phone API's schemas: all but the
// operator API's (Operator…).
func phoneSchemas(doc *openapi3.T) []string {
	var out []string
	for _, n := range sortedKeys(doc.Components.Schemas) {
		if !strings.HasPrefix(n, "Operator") {
			out = append(out, n)
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	k := make([]string, 0, len(m))
	for n := range m {
		k = append(k, n)
	}
	sort.Strings(k)
	return k
}

func TestSpecIsOpenAPI31(t *testing.T) {
	doc := mustSpec(t)
	if !doc.IsOpenAPI31OrLater() {
		t.Errorf("openapi = %q, want 3.1.x", doc.OpenAPI)
	}
}

// clientOperations returns the exported methods of *Client whose first
// parameter is a context.Context: the operations.
func clientOperations() map[string]bool {
	ctxType := reflect.TypeFor[context.Context]()
	ct := reflect.TypeFor[*phoneapi.Client]()
	ops := map[string]bool{}
	for m := range ct.Methods() {
		if m.Type.NumIn() > 1 && m.Type.In(1) == ctxType {
			ops[m.Name] = true
		}
	}
	return ops
}

func TestOperationIDsMatchClientMethods(t *testing.T) {
	spec := operations(t)
	client := clientOperations()
	for _, id := range sortedKeys(spec) {
		if !client[id] {
			t.Errorf("operationId %s (%s %s) has no Client method of that name taking a context", id, spec[id].method, spec[id].path)
		}
	}
	for _, m := range sortedKeys(client) {
		if _, ok := spec[m]; !ok {
			t.Errorf("Client.%s takes a context but is no operationId in openapi.yaml", m)
		}
	}
}

func TestSchemasMatchGoTypes(t *testing.T) {
	doc := mustSpec(t)
	goTypes := phoneapi.Schemas()
	for _, name := range phoneSchemas(doc) {
		if _, ok := goTypes[name]; !ok {
			t.Errorf("schema %s has no Go type in Schemas()", name)
		}
	}
	for _, name := range sortedKeys(goTypes) {
		if _, ok := doc.Components.Schemas[name]; !ok {
			t.Errorf("Schemas()[%q] (%T) has no schema in openapi.yaml", name, goTypes[name])
		}
		// Types of this package carry the schema's name; the others are
		// aliases of package vend's (phoneapi.Amount = vend.Amount).
		gt := reflect.TypeOf(goTypes[name])
		if gt.PkgPath() == reflect.TypeFor[phoneapi.Client]().PkgPath() && gt.Name() != name {
			t.Errorf("Schemas()[%q] is a %s; want a type named %s", name, gt.Name(), name)
		}
	}
}

// jsonField is a struct field as encoding/json sees it.
type jsonField struct {
	name     string
	optional bool // omitempty or omitzero
	typ      reflect.Type
}

func jsonFields(t reflect.Type) map[string]jsonField {
	out := map[string]jsonField{}
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" {
			name = f.Name
		}
		optional := slices.Contains(strings.Split(opts, ","), "omitempty") || slices.Contains(strings.Split(opts, ","), "omitzero")
		out[name] = jsonField{name, optional, f.Type}
	}
	return out
}

const schemaRefPrefix = "#/components/schemas/"

func refName(ref string) string {
	if i := strings.Index(ref, schemaRefPrefix); i >= 0 {
		return ref[i+len(schemaRefPrefix):]
	}
	return ""
}

// checkGoType reports how Go type gt fails to hold values of schema sr, or "".
func checkGoType(sr *openapi3.SchemaRef, gt reflect.Type) string {
	goTypes := phoneapi.Schemas()
	if gt.Kind() == reflect.Pointer {
		gt = gt.Elem()
	}
	if n := refName(sr.Ref); n != "" {
		want := reflect.TypeOf(goTypes[n])
		if gt != want {
			return "Go type " + gt.String() + ", schema $ref " + n + " is " + want.String()
		}
		return ""
	}
	s := sr.Value
	switch {
	case s.Type.Is("array"):
		if gt.Kind() != reflect.Slice {
			return "array in the spec, " + gt.String() + " in Go"
		}
		return checkGoType(s.Items, gt.Elem())
	case s.Type.Is("string") && s.Format == "date-time":
		if gt != reflect.TypeFor[time.Time]() {
			return "date-time in the spec, " + gt.String() + " in Go"
		}
	case s.Type.Is("string") && s.Format == "byte":
		if gt != reflect.TypeFor[[]byte]() {
			return "base64 bytes in the spec, " + gt.String() + " in Go"
		}
	case s.Type.Is("string"):
		if gt.Kind() != reflect.String {
			return "string in the spec, " + gt.String() + " in Go"
		}
	case s.Type.Is("integer"):
		switch gt.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		default:
			return "integer in the spec, " + gt.String() + " in Go"
		}
	case s.Type.Is("boolean"):
		if gt.Kind() != reflect.Bool {
			return "boolean in the spec, " + gt.String() + " in Go"
		}
	default:
		return "inline schema of type " + strings.Join(s.Type.Slice(), ",") + ": use a $ref"
	}
	return ""
}

// TestSchemaPropertiesMatchGoFields compares, both ways, each object
// schema's properties with the JSON names of its Go type's fields, its
// required list with the fields that are not omitempty/omitzero, and each
// property's schema with the field's Go type.
func TestSchemaPropertiesMatchGoFields(t *testing.T) {
	doc := mustSpec(t)
	goTypes := phoneapi.Schemas()
	for _, name := range phoneSchemas(doc) {
		s := doc.Components.Schemas[name].Value
		gv, ok := goTypes[name]
		if !ok {
			continue // reported by TestSchemasMatchGoTypes
		}
		gt := reflect.TypeOf(gv)
		if !s.Type.Is("object") {
			if gt.Kind() == reflect.Struct && gt != reflect.TypeFor[vend.SessionID]() {
				t.Errorf("schema %s is %v, Go type %s is a struct", name, s.Type.Slice(), gt)
			}
			continue
		}
		if gt.Kind() != reflect.Struct {
			t.Errorf("schema %s is an object, Go type %s is not a struct", name, gt)
			continue
		}
		fields := jsonFields(gt)
		required := map[string]bool{}
		for _, r := range s.Required {
			required[r] = true
		}
		for _, p := range sortedKeys(s.Properties) {
			f, ok := fields[p]
			if !ok {
				t.Errorf("%s: property %q has no field in Go type %s", name, p, gt)
				continue
			}
			if f.optional == required[p] {
				t.Errorf("%s.%s: required in spec = %v, but Go field optional (omitempty/omitzero) = %v", name, p, required[p], f.optional)
			}
			if msg := checkGoType(s.Properties[p], f.typ); msg != "" {
				t.Errorf("%s.%s: %s", name, p, msg)
			}
		}
		for _, fn := range sortedKeys(fields) {
			if _, ok := s.Properties[fn]; !ok {
				t.Errorf("%s: Go field %q of %s is not a property in the spec", name, fn, gt)
			}
		}
		for r := range required {
			if _, ok := s.Properties[r]; !ok {
				t.Errorf("%s: required %q is not a property", name, r)
			}
		}
	}
}

// normalize turns any JSON-able value into the generic form json.Unmarshal makes.
func normalize(tb testing.TB, v any) any {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatalf("marshal %v: %v", v, err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		tb.Fatalf("unmarshal %s: %v", b, err)
	}
	return out
}

// checkExample decodes example into the Go type of schema name with unknown
// fields disallowed, runs its Validate method, and checks that Go marshals it
// back to the same JSON (so Go emits exactly the example's property names)
// and that the marshalled JSON still passes the schema.
func checkExample(t *testing.T, where, name string, example any) {
	t.Helper()
	doc := mustSpec(t)
	gv, ok := phoneapi.Schemas()[name]
	if !ok {
		t.Errorf("%s: schema %s has no Go type", where, name)
		return
	}
	raw, err := json.Marshal(example)
	if err != nil {
		t.Errorf("%s: example does not marshal: %v", where, err)
		return
	}
	p := reflect.New(reflect.TypeOf(gv))
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(p.Interface()); err != nil {
		t.Errorf("%s: example %s does not decode into %T: %v", where, raw, gv, err)
		return
	}
	if v, ok := p.Interface().(interface{ Validate() error }); ok {
		if err := v.Validate(); err != nil {
			t.Errorf("%s: example %s decodes into %T but fails Validate: %v", where, raw, gv, err)
		}
	}
	back := normalize(t, p.Elem().Interface())
	if want := normalize(t, example); !reflect.DeepEqual(back, want) {
		got, _ := json.Marshal(back)
		t.Errorf("%s: Go marshals example of %s as\n%s\nwant\n%s", where, name, got, raw)
	}
	if err := doc.Components.Schemas[name].Value.VisitJSON(back, openapi3.EnableJSONSchema2020()); err != nil {
		t.Errorf("%s: Go's JSON for %s fails the schema: %v", where, name, err)
	}
}

// TestSchemaExamples checks every schema's examples (which kin-openapi's
// Validate leaves alone in 3.1 documents) against the schema and the Go type.
func TestSchemaExamples(t *testing.T) {
	doc := mustSpec(t)
	for _, name := range phoneSchemas(doc) {
		s := doc.Components.Schemas[name].Value
		if len(s.Examples) == 0 {
			t.Errorf("schema %s has no examples", name)
		}
		for i, ex := range s.Examples {
			where := "components.schemas." + name + ".examples[" + strconv.Itoa(i) + "]"
			if err := s.VisitJSON(normalize(t, ex), openapi3.EnableJSONSchema2020()); err != nil {
				t.Errorf("%s: fails its schema: %v", where, err)
			}
			checkExample(t, where, name, ex)
		}
	}
}

// mediaExamples returns the examples of a media type, by name.
func mediaExamples(mt *openapi3.MediaType) map[string]any {
	out := map[string]any{}
	if mt.Example != nil {
		out["example"] = mt.Example
	}
	for n, e := range mt.Examples {
		if e.Value != nil {
			out["examples."+n] = e.Value.Value
		}
	}
	return out
}

// TestOperationExamples checks that every JSON request and response of every
// operation names a components schema, has an example, and that the example
// decodes into the Go type, validates and round-trips; error examples must
// carry the kind that maps to their status; the event-stream example must
// parse into session events.
func TestOperationExamples(t *testing.T) {
	ops := operations(t)
	for _, id := range sortedKeys(ops) {
		o := ops[id]
		var media []struct {
			where string
			mt    *openapi3.MediaType
			ct    string
			code  int
		}
		if rb := o.op.RequestBody; rb != nil {
			for ct, mt := range rb.Value.Content {
				media = append(media, struct {
					where string
					mt    *openapi3.MediaType
					ct    string
					code  int
				}{id + ".requestBody." + ct, mt, ct, 0})
			}
		}
		for code, r := range o.op.Responses.Map() {
			n, _ := strconv.Atoi(code)
			for ct, mt := range r.Value.Content {
				media = append(media, struct {
					where string
					mt    *openapi3.MediaType
					ct    string
					code  int
				}{id + ".responses." + code + "." + ct, mt, ct, n})
			}
		}
		for _, m := range media {
			exs := mediaExamples(m.mt)
			if len(exs) == 0 {
				t.Errorf("%s: no example", m.where)
			}
			if m.ct == "text/event-stream" {
				for n, ex := range exs {
					s, ok := ex.(string)
					if !ok {
						t.Errorf("%s.%s: event-stream example is %T, want a string", m.where, n, ex)
						continue
					}
					checkEventStreamExample(t, m.where+"."+n, s)
				}
				continue
			}
			if m.ct != "application/json" {
				t.Errorf("%s: content type %s, want application/json", m.where, m.ct)
				continue
			}
			name := refName(m.mt.Schema.Ref)
			if name == "" {
				t.Errorf("%s: schema is inline; want a $ref to components/schemas", m.where)
				continue
			}
			for _, n := range sortedKeys(exs) {
				checkExample(t, m.where+"."+n, name, exs[n])
				if m.code >= 400 {
					var er phoneapi.ErrorResponse
					if err := json.Unmarshal([]byte(mustJSON(t, exs[n])), &er); err == nil {
						if got := phoneapi.ErrorStatus(er.Error.Kind, er.Error.Code); got != m.code {
							t.Errorf("%s.%s: kind %s maps to %d, example is under %d", m.where, n, er.Error.Kind, got, m.code)
						}
					}
				}
			}
			if m.code >= 400 && name != "ErrorResponse" {
				t.Errorf("%s: error response schema %s, want ErrorResponse", m.where, name)
			}
		}
		for code := range o.op.Responses.Map() {
			if n, _ := strconv.Atoi(code); n >= 400 && n != phoneapi.HTTPStatus(phoneapi.KindForStatus(n)) && n != 415 && n != 429 && n != 403 {
				t.Errorf("%s: response %s is no status of an error kind", id, code)
			}
		}
	}
}

func mustJSON(tb testing.TB, v any) string {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

func checkEventStreamExample(t *testing.T, where, stream string) {
	t.Helper()
	r := phoneapi.NewSSEReader(strings.NewReader(stream), 0, 0)
	seen := map[string]int{}
	for {
		ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Errorf("%s: %v", where, err)
			return
		}
		seen[ev.Type]++
		var data any
		if err := json.Unmarshal([]byte(ev.Data), &data); err != nil {
			t.Errorf("%s: event %s data is not JSON: %v", where, ev.ID, err)
			continue
		}
		switch ev.Type {
		case phoneapi.EventProgress:
			checkExample(t, where+" event "+ev.ID, "ProgressEvent", data)
		case phoneapi.EventState, phoneapi.EventEnded:
			checkExample(t, where+" event "+ev.ID, "Session", data)
		default:
			t.Errorf("%s: unknown event type %q", where, ev.Type)
		}
		if ev.ID == "" {
			t.Errorf("%s: event %s has no id", where, ev.Type)
		}
	}
	for _, ty := range []string{phoneapi.EventProgress, phoneapi.EventState, phoneapi.EventEnded} {
		if seen[ty] == 0 {
			t.Errorf("%s: no %s event in the example", where, ty)
		}
	}
	if r.Retry() != 2*time.Second {
		t.Errorf("%s: retry = %v, want the documented 2s", where, r.Retry())
	}
}

// TestIdempotencyAndAuth checks which operations the spec marks as moving
// money (a required Idempotency-Key header) and which need no token.
func TestIdempotencyAndAuth(t *testing.T) {
	ops := operations(t)
	var keyed, open []string
	for _, id := range sortedKeys(ops) {
		op := ops[id].op
		for _, p := range op.Parameters {
			if p.Value.In == "header" && p.Value.Name == "Idempotency-Key" {
				if !p.Value.Required {
					t.Errorf("%s: Idempotency-Key not required", id)
				}
				if ops[id].method != "POST" {
					t.Errorf("%s: Idempotency-Key on %s", id, ops[id].method)
				}
				keyed = append(keyed, id)
			}
		}
		if op.Security != nil && len(*op.Security) == 0 {
			open = append(open, id)
		}
	}
	if want := []string{"CreateCheckout", "StartSession", "StopSession", "TopUp", "UploadUsage", "Withdraw"}; !slices.Equal(keyed, want) {
		t.Errorf("operations with Idempotency-Key = %v, want %v", keyed, want)
	}
	if want := []string{"GetCheckoutReceipt", "Health", "LogIn", "SignUp"}; !slices.Equal(open, want) {
		t.Errorf("operations without auth = %v, want %v", open, want)
	}
}

// TestErrorKindTable checks that the ErrorKind enum of the spec is exactly
// the kinds of HTTPStatus, and the documented status of each.
func TestErrorKindTable(t *testing.T) {
	doc := mustSpec(t)
	want := map[vend.Kind]int{
		vend.Invalid: 400, vend.Unauthorized: 401, vend.NotFound: 404,
		vend.Conflict: 409, vend.Transient: 503, vend.Internal: 500,
	}
	enum := doc.Components.Schemas["ErrorKind"].Value.Enum
	if len(enum) != len(want) {
		t.Errorf("ErrorKind enum = %v, want the %d kinds", enum, len(want))
	}
	for _, e := range enum {
		k := vend.Kind(e.(string))
		s, ok := want[k]
		if !ok {
			t.Errorf("ErrorKind enum has %q, no vend kind", k)
			continue
		}
		if got := phoneapi.HTTPStatus(k); got != s {
			t.Errorf("HTTPStatus(%s) = %d, want %d", k, got, s)
		}
		if got := phoneapi.KindForStatus(s); got != k {
			t.Errorf("KindForStatus(%d) = %s, want %s", s, got, k)
		}
	}
	for k, s := range want {
		row := "| " + string(k)
		if !strings.Contains(doc.Info.Description, row) || !strings.Contains(doc.Info.Description, strconv.Itoa(s)) {
			t.Errorf("info.description lacks the table row for %s -> %d", k, s)
		}
	}
}

// TestLimitCodes checks the codes whose status is not their kind's: each
// is in the spec's error table, ErrorStatus gives its status, and every
// 429 the spec declares carries a Retry-After header.
func TestLimitCodes(t *testing.T) {
	doc := mustSpec(t)
	for _, tc := range []struct {
		kind   vend.Kind
		code   string
		status int
	}{
		{vend.Transient, "rate.limited", 429},
		{vend.Transient, "auth.locked", 429},
		{vend.Transient, "stream.limit", 429},
		{vend.Transient, "step_up.locked", 429},
		{vend.Unauthorized, "step_up.required", 403},
		{vend.Unauthorized, "step_up.invalid", 403},
		{vend.Unauthorized, "step_up.pin_required", 403},
		{vend.Unauthorized, "step_up.wrong_pin", 403},
		{vend.Invalid, "request.content_type", 415},
		{vend.NotFound, "route.not_found", 404},
		{vend.Transient, "service.unavailable", 503},
		{vend.Invalid, "rate.limited", 400}, // a code under a foreign kind keeps the kind's status
	} {
		if got := phoneapi.ErrorStatus(tc.kind, tc.code); got != tc.status {
			t.Errorf("ErrorStatus(%s, %s) = %d, want %d", tc.kind, tc.code, got, tc.status)
		}
		if row := "| " + tc.code + " "; !strings.Contains(doc.Info.Description, row) {
			t.Errorf("the error table has no row for %s", tc.code)
		}
	}
	ops := operations(t)
	for _, id := range sortedKeys(ops) {
		for code, r := range ops[id].op.Responses.Map() {
			if code == "429" && r.Value.Headers["Retry-After"] == nil {
				t.Errorf("%s: 429 without a Retry-After header", id)
			}
		}
	}
}
