package profile_test

import (
	"errors"
	"strings"
	"testing"

	"beaconvend/hw/profile"
)

func TestBuiltinProfilesLoad(t *testing.T) {
	names := profile.Names()
	want := []string{"generic-relay-16", "generic-relay-4", "generic-relay-8", "pulse-io-4"}
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Fatalf("Names = %v, want %v", names, want)
	}
	for _, n := range names {
		p, err := profile.Builtin(n)
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		if p.Name != n {
			t.Errorf("%s: name %q", n, p.Name)
		}
	}
	p, _ := profile.Builtin("pulse-io-4")
	c, ok := p.Counter("count2")
	if !ok || c.Register != 2 || c.Width != 32 || p.Watchdog == nil || p.Serial.Parity != "even" {
		t.Errorf("pulse-io-4 = %+v", p)
	}
	if _, err := profile.Builtin("nope"); !errors.Is(err, profile.ErrProfile) {
		t.Errorf("Builtin(nope) = %v", err)
	}
}

// A profile with a mistake gets an error that names the field.
func TestProfileErrorsNameTheField(t *testing.T) {
	base := `name: b
slave_id: 1
serial: {baud: 9600}
outputs: [{name: o1, coil: 0}, {name: o2, coil: 1}]
inputs: [{name: i1, input: 0}]
counters: [{name: c1, register: 0, width: 32}]
`
	cases := []struct {
		yaml, field string
	}{
		{strings.Replace(base, "slave_id: 1", "slave_id: 0", 1), "slave_id"},
		{strings.Replace(base, "slave_id: 1", "slave_id: 248", 1), "slave_id"},
		{strings.Replace(base, "baud: 9600", "baud: 9601", 1), "serial.baud"},
		{strings.Replace(base, "baud: 9600", "baud: 9600, parity: mark", 1), "serial.parity"},
		{strings.Replace(base, "baud: 9600", "baud: 9600, data_bits: 7", 1), "serial.data_bits"},
		{strings.Replace(base, "coil: 1", "coil: 0", 1), "outputs[1].coil"},
		{strings.Replace(base, "name: o2", "name: o1", 1), "outputs[1].name"},
		{strings.Replace(base, "name: i1", "name: o1", 1), "inputs[0].name"},
		{strings.Replace(base, "width: 32", "width: 24", 1), "counters[0].width"},
		{strings.Replace(base, "width: 32", "width: 32, word_order: middle", 1), "counters[0].word_order"},
		{strings.Replace(base, "register: 0, width: 32", "register: 0, width: 32, table: coil", 1), "counters[0].table"},
		{strings.Replace(base, "width: 32}]", "width: 32}, {name: c2, register: 1}]", 1), "counters[1].register"},
		{base + "watchdog: {register: 5, unit_ms: 0}\n", "watchdog.unit_ms"},
		{strings.Replace(base, "outputs: [{name: o1, coil: 0}, {name: o2, coil: 1}]", "outputs: []", 1), "outputs"},
		{base + "colis: []\n", "colis"},
		{base + "claim_input: o1\n", "claim_input"},
		{base + "claim_input: in9\n", "claim_input"},
		{"name: [", "yaml"},
	}
	for _, tc := range cases {
		_, err := profile.Parse(strings.NewReader(tc.yaml))
		if !errors.Is(err, profile.ErrProfile) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("want error naming %q, got %v\n%s", tc.field, err, tc.yaml)
		}
	}
	if _, err := profile.Parse(strings.NewReader(base)); err != nil {
		t.Fatalf("base profile: %v", err)
	}
	p, err := profile.Parse(strings.NewReader(base + "claim_input: i1\n"))
	if err != nil || p.ClaimInput != "i1" {
		t.Fatalf("profile with claim_input i1: %+v, %v", p, err)
	}
}

func TestCounterWords(t *testing.T) {
	for _, c := range []profile.Counter{
		{Width: 16}, {Width: 32, WordOrder: "high_first"}, {Width: 32, WordOrder: "low_first"},
	} {
		v := uint32(0x0001_2345)
		if c.Width == 16 {
			v = 0x2345
		}
		if got := c.Value(c.Words(v)); got != v {
			t.Errorf("%+v: Value(Words(%x)) = %x", c, v, got)
		}
	}
	hi := profile.Counter{Width: 32, WordOrder: "high_first"}
	if w := hi.Words(0x00012345); w[0] != 0x0001 || w[1] != 0x2345 {
		t.Errorf("high_first words = %x", w)
	}
}
