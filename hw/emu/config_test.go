package emu_test

import (
	"errors"
	"strings"
	"testing"

	"beaconvend/hw/emu"
)

// Every built-in example loads, names its profile, and fits it.
func TestExamplesFitTheirProfiles(t *testing.T) {
	names := emu.ExampleNames()
	if len(names) < 3 {
		t.Fatalf("ExampleNames() = %v", names)
	}
	for _, n := range names {
		c, err := emu.LoadSimConfig(n)
		if err != nil {
			t.Fatalf("LoadSimConfig(%q): %v", n, err)
		}
		p, err := c.ResolveProfile("")
		if err != nil {
			t.Fatalf("%s: profile: %v", n, err)
		}
		if _, err := emu.NewBoard(p, c, nil); err != nil {
			t.Errorf("%s on %s: %v", n, p.Name, err)
		}
	}
	if _, err := emu.LoadSimConfig("testdata/water.yaml"); err != nil {
		t.Errorf("by path: %v", err)
	}
}

func TestSimConfigErrors(t *testing.T) {
	tests := []struct {
		profile, yaml, want string
	}{
		{"generic-relay-4", "machines: [{name: a, kind: water, valve: relay1, flow: count1}]", `machines[0].flow: no counter "count1"`},
		{"pulse-io-4", "machines: [{name: a, kind: water, valve: out9, flow: count1}]", `machines[0].valve: no output "out9"`},
		{"generic-relay-4", "machines: [{name: a, kind: washer, coin: relay1, running: in1}, {name: b, kind: washer, coin: relay1, running: in2}]", `machines[1].coin: output "relay1" is already used by machines[0].coin`},
		{"generic-relay-4", "machines: [{name: a, kind: washer, coin: relay1, running: in1, flow_lpm: 3}]", "machines[0].flow_lpm: not used by a washer machine"},
		{"generic-relay-4", "machines: [{name: a, kind: dryer}]", `machines[0].kind: "dryer"`},
		{"generic-relay-4", "machines: [{name: a, kind: vending, drop: in4}]", "machines[0].slots: a vending machine needs at least one slot"},
		{"generic-relay-4", "machines: [{name: a, kind: washer, coin: relay1, running: in1, pulse_min: 300ms}]", "pulse_min <= pulse_max"},
		{"generic-relay-4", "machines: [{name: a, kind: washer, coin: relay1, running: in1}, {name: a, kind: washer, coin: relay2, running: in2}]", `machines[1].name: "a" is used twice`},
		{"pulse-io-4", "machines: [{name: a, kind: water, valve: out1, flow: count1, k_factor: -1}]", "machines[0].k_factor"},
		{"generic-relay-4", "machines: [{name: a, kind: vending, drop: in4, drop_counter: count1, slots: [{name: A1, motor: relay1}]}]", `machines[0].drop_counter: no counter "count1"`},
		{"pulse-io-4", "machines: [{name: a, kind: water, valve: out1, flow: count1}, {name: b, kind: vending, drop: in1, drop_counter: count1, slots: [{name: A1, motor: out2}]}]", `machines[1].drop_counter: counter "count1" is already used by machines[0]`},
		{"pulse-io-4", "machines: [{name: a, kind: water, valve: out1, flow: count1, drop_counter: count2}]", "machines[0].drop_counter: not used by a water machine"},
	}
	for _, tt := range tests {
		_, err := emu.NewBoard(mustProfile(t, tt.profile), mustSim(t, tt.yaml), nil)
		if !errors.Is(err, emu.ErrConfig) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s on %s: %v, want ErrConfig containing %q", tt.yaml, tt.profile, err, tt.want)
		}
	}
	if _, err := emu.ParseSimConfig(strings.NewReader("machines: [{name: a, kind: water, valvee: x}]")); !errors.Is(err, emu.ErrConfig) {
		t.Errorf("unknown field: %v", err)
	}
	if _, err := emu.LoadSimConfig("nope"); !errors.Is(err, emu.ErrConfig) {
		t.Errorf("unknown example: %v", err)
	}
}
