package mqttapi

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// TestPlans checks that the fast path covers every message type (no
// planOther reachable) and that every json name it accepts is a field to
// encoding/json too (the fast path unmarshals without DisallowUnknownFields).
func TestPlans(t *testing.T) {
	var walk func(t *testing.T, typ reflect.Type, path string)
	walk = func(t *testing.T, typ reflect.Type, path string) {
		p := planOf(typ, 0)
		for typ.Kind() == reflect.Pointer {
			typ = typ.Elem()
		}
		switch p.kind {
		case planOther:
			t.Errorf("%s: %v has no fast plan", path, typ)
		case planSlice:
			walk(t, typ.Elem(), path+"[]")
		case planStruct:
			for i, name := range p.names {
				dec := json.NewDecoder(bytes.NewReader([]byte(`{"` + name + `":null}`)))
				dec.DisallowUnknownFields()
				if err := dec.Decode(reflect.New(typ).Interface()); err != nil {
					t.Errorf("%s.%s: encoding/json: %v", path, name, err)
				}
				if p.fields[i] != planOf(jsonFields(typ)[name], 0) {
					t.Errorf("%s.%s: plan is not the cached one", path, name)
				}
				walk(t, jsonFields(typ)[name], path+"."+name)
			}
		}
	}
	for _, e := range registry {
		walk(t, reflect.TypeOf(e.New()), e.Name)
	}
}
