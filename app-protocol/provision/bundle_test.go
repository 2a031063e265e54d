package provision_test

import (
	"bytes"
	"crypto/ed25519"
	"reflect"
	"strings"
	"testing"

	"beaconvend/app-protocol/provision"
	"beaconvend/app-protocol/proxid"
	"beaconvend/app-protocol/vend"
)

func sample(t testing.TB) *provision.Bundle {
	t.Helper()
	pub, _, _ := ed25519.GenerateKey(nil)
	var id proxid.Key
	id[0], id[15] = 1, 2
	return &provision.Bundle{
		Version: provision.Version, DeviceID: "wash-01", OperatorID: "op_1", IdentityKey: id,
		DeviceKey: bytes.Repeat([]byte{7}, ed25519.SeedSize), K: 10, CloudPublicKeys: []ed25519.PublicKey{pub},
		MQTT: provision.MQTT{URL: "ssl://broker.example:8883", Username: "wash-01", Password: "pw", CAPEM: "-----BEGIN CERTIFICATE-----\n"},
		Machines: []provision.Machine{
			{ID: "washer1", Kind: vend.KindWasher, Name: "Washer 1", Unit: vend.KindWasher.Unit(), Currency: "EUR", Price: vend.Price{Minor: 350, Per: 1}},
			{ID: "vm1", Kind: vend.KindVending, Name: "Vending", Unit: vend.KindVending.Unit(), Currency: "EUR", Price: vend.Price{Minor: 150, Per: 1},
				Slots: []provision.Slot{{ID: "A1", Name: "Water", Price: vend.Price{Minor: 120, Per: 1}}}},
		},
	}
}

func TestRoundTrip(t *testing.T) {
	b := sample(t)
	var buf bytes.Buffer
	if err := b.Encode(&buf); err != nil {
		t.Fatal(err)
	}
	got, err := provision.Decode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, b) {
		t.Fatalf("Decode(Encode(b)) = %+v, want %+v", got, b)
	}
}

func TestDecodeErrorsNameTheField(t *testing.T) {
	var buf bytes.Buffer
	if err := sample(t).Encode(&buf); err != nil {
		t.Fatal(err)
	}
	good := buf.String()
	for _, tc := range []struct{ old, new, field string }{
		{`"version": 1`, `"version": 2`, "version"},
		{`"device_id": "wash-01"`, `"device_id": "wash/01"`, "device_id"},
		{`"identity_key": "01`, `"identity_key": "zz`, "identity_key"},
		{`"k": 10`, `"k": 99`, "k"},
		{`"url": "ssl://broker.example:8883"`, `"url": "http://x"`, "mqtt.url"},
		{`"username": "wash-01"`, `"username": "other"`, "mqtt.username"},
		{`"password": "pw"`, `"password": ""`, "mqtt.password"},
		{`"currency": "EUR"`, `"currency": "euro"`, "machines[0].currency"},
		{`"minor": 350`, `"minor": -1`, "machines[0].price"},
		{`"kind": "washer"`, `"kind": "toaster"`, "machines[0].kind"},
		{`"id": "A1"`, `"id": "A/1"`, "machines[1].slots[0].id"},
		{`"version": 1`, `"version": 1, "extra": true`, "unknown field"},
	} {
		in := strings.Replace(good, tc.old, tc.new, 1)
		if in == good {
			t.Fatalf("%s: substitution %q did not apply", tc.field, tc.old)
		}
		_, err := provision.Decode(strings.NewReader(in))
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("Decode with %s = %v, want an error naming %q", tc.new, err, tc.field)
		} else if tc.field != "unknown field" && vend.KindOf(err) != vend.Invalid {
			t.Errorf("Decode with %s: kind %v, want invalid", tc.new, vend.KindOf(err))
		}
	}
	if _, err := provision.Decode(strings.NewReader(good + "{}")); err == nil {
		t.Error("Decode accepted data after the bundle")
	}
}

func FuzzDecode(f *testing.F) {
	var buf bytes.Buffer
	_ = sample(f).Encode(&buf)
	f.Add(buf.Bytes())
	f.Add([]byte(`{"version":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := provision.Decode(bytes.NewReader(data))
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := b.Encode(&out); err != nil {
			t.Fatalf("a decoded bundle does not encode: %v", err)
		}
		again, err := provision.Decode(&out)
		if err != nil || !reflect.DeepEqual(again, b) {
			t.Fatalf("re-decode = %+v, %v; want %+v", again, err, b)
		}
	})
}
