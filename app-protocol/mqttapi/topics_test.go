package mqttapi_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/vend"
)

func TestTopic(t *testing.T) {
	tests := []struct {
		prefix, dev string
		leaf        mqttapi.Leaf
		want        string
		err         error
	}{
		{"", "wd-0042", mqttapi.LeafState, "bv/v1/dev/wd-0042/state", nil},
		{"", "wd-0042", mqttapi.LeafCmd, "bv/v1/dev/wd-0042/cmd", nil},
		{"staging/bv/v1/dev", "a", mqttapi.LeafUsage, "staging/bv/v1/dev/a/usage", nil},
		{"", "WD-1", mqttapi.LeafState, "", vend.ErrDeviceID},
		{"", "a/b", mqttapi.LeafState, "", vend.ErrDeviceID},
		{"", "+", mqttapi.LeafState, "", vend.ErrDeviceID},
		{"", "", mqttapi.LeafState, "", vend.ErrDeviceID},
		{"", strings.Repeat("a", 65), mqttapi.LeafState, "", vend.ErrDeviceID},
		{"", "a", "status", "", mqttapi.ErrLeaf},
		{"", "a", "", "", mqttapi.ErrLeaf},
		{"bv/+/dev", "a", mqttapi.LeafState, "", mqttapi.ErrPrefix},
		{"$SYS", "a", mqttapi.LeafState, "", mqttapi.ErrPrefix},
		{"bv//dev", "a", mqttapi.LeafState, "", mqttapi.ErrPrefix},
		{"/bv", "a", mqttapi.LeafState, "", mqttapi.ErrPrefix},
		{"bv/", "a", mqttapi.LeafState, "", mqttapi.ErrPrefix},
	}
	for _, tt := range tests {
		got, err := mqttapi.Topic(tt.prefix, tt.dev, tt.leaf)
		if got != tt.want || !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) {
			t.Errorf("Topic(%q, %q, %q) = %q, %v; want %q, %v", tt.prefix, tt.dev, tt.leaf, got, err, tt.want, tt.err)
		}
	}
}

func TestParseTopic(t *testing.T) {
	tests := []struct {
		topic string
		dev   string
		leaf  mqttapi.Leaf
		err   error
	}{
		{"bv/v1/dev/wd-0042/state", "wd-0042", mqttapi.LeafState, nil},
		{"bv/v1/dev/a.b_c-9/telemetry", "a.b_c-9", mqttapi.LeafTelemetry, nil},
		{"bv/v1/dev/x/evt", "x", mqttapi.LeafEvt, nil},
		{"bv/v1/dev/x/usage", "x", mqttapi.LeafUsage, nil},
		{"bv/v1/dev/x/reply", "x", mqttapi.LeafReply, nil},
		{"bv/v1/dev/x/cmd", "x", mqttapi.LeafCmd, nil},
		{"", "", "", mqttapi.ErrTopic},
		{"bv/v1/dev/+/usage", "", "", mqttapi.ErrTopic},
		{"bv/v1/dev/x/#", "", "", mqttapi.ErrTopic},
		{"bv/v1/dev/#", "", "", mqttapi.ErrTopic},
		{"$share/g/bv/v1/dev/x/usage", "", "", mqttapi.ErrTopic},
		{"bv/v1/dev/x/cmd/extra", "", "", mqttapi.ErrTopic},
		{"bv/v1/dev/x", "", "", mqttapi.ErrTopic},
		{"bv/v1/dev/x/", "", "", mqttapi.ErrLeaf},
		{"bv/v1/dev//state", "", "", vend.ErrDeviceID},
		{"bv/v2/dev/x/state", "", "", mqttapi.ErrTopic},
		{"/bv/v1/dev/x/state", "", "", mqttapi.ErrTopic},
		{"bv/v1/dev/X/state", "", "", vend.ErrDeviceID},
		{"bv/v1/dev/x/State", "", "", mqttapi.ErrLeaf},
		{"bv/v1/dev/x/state\x00", "", "", mqttapi.ErrTopic},
		{"bv/v1/dev/" + strings.Repeat("a", 300) + "/state", "", "", mqttapi.ErrTopic},
	}
	for _, tt := range tests {
		dev, leaf, err := mqttapi.ParseTopic(tt.topic)
		if dev != tt.dev || leaf != tt.leaf || !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) {
			t.Errorf("ParseTopic(%q) = %q, %q, %v; want %q, %q, %v", tt.topic, dev, leaf, err, tt.dev, tt.leaf, tt.err)
		}
		if err != nil && vend.KindOf(err) != vend.Invalid {
			t.Errorf("ParseTopic(%q): kind %s, want invalid", tt.topic, vend.KindOf(err))
		}
	}
	// Round trip for every leaf.
	for _, l := range mqttapi.Leaves {
		top, err := mqttapi.Topic("", "dev-1", l)
		if err != nil {
			t.Fatal(err)
		}
		if d, gl, err := mqttapi.ParseTopic(top); d != "dev-1" || gl != l || err != nil {
			t.Errorf("ParseTopic(Topic(dev-1, %s)) = %q, %q, %v", l, d, gl, err)
		}
	}
}

func TestAllowed(t *testing.T) {
	const me = "wd-0042"
	tests := []struct {
		topic   string
		publish bool
		want    bool
	}{
		{"bv/v1/dev/wd-0042/state", true, true},
		{"bv/v1/dev/wd-0042/telemetry", true, true},
		{"bv/v1/dev/wd-0042/evt", true, true},
		{"bv/v1/dev/wd-0042/usage", true, true},
		{"bv/v1/dev/wd-0042/reply", true, true},
		{"bv/v1/dev/wd-0042/cmd", true, false}, // a device never commands itself
		{"bv/v1/dev/wd-0042/cmd", false, true},
		{"bv/v1/dev/wd-0042/state", false, false},
		{"bv/v1/dev/wd-0042/usage", false, false},
		{"bv/v1/dev/wd-0042/reply", false, false},
		// another device
		{"bv/v1/dev/wd-0043/usage", true, false},
		{"bv/v1/dev/wd-0043/cmd", false, false},
		{"bv/v1/dev/wd-00420/cmd", false, false},
		{"bv/v1/dev/wd-004/cmd", false, false},
		// wildcards and shared forms
		{"bv/v1/dev/+/cmd", false, false},
		{"bv/v1/dev/wd-0042/+", false, false},
		{"bv/v1/dev/wd-0042/#", false, false},
		{"bv/v1/dev/#", false, false},
		{"#", false, false},
		{"$share/g/bv/v1/dev/wd-0042/cmd", false, false},
		{"$share/g/bv/v1/dev/+/usage", false, false},
		{"$SYS/broker/clients", false, false},
		// shape
		{"bv/v1/dev/wd-0042/cmd/x", false, false},
		{"bv/v1/dev/wd-0042/status", true, false},
		{"bv/v1/dev/wd-0042", true, false},
		{"", true, false},
	}
	for _, tt := range tests {
		if got := mqttapi.Allowed(me, tt.topic, tt.publish); got != tt.want {
			t.Errorf("Allowed(%q, %q, publish=%v) = %v, want %v", me, tt.topic, tt.publish, got, tt.want)
		}
	}
	for _, bad := range []string{"", "+", "#", "WD-0042", "a/b"} {
		if mqttapi.Allowed(bad, "bv/v1/dev/"+bad+"/state", true) {
			t.Errorf("Allowed(%q, …) = true for an invalid device id", bad)
		}
	}
	tree := mqttapi.Tree{Prefix: "site1/bv"}
	if !tree.Allowed(me, "site1/bv/wd-0042/usage", true) || tree.Allowed(me, "bv/v1/dev/wd-0042/usage", true) {
		t.Error("Tree.Allowed does not follow the tree's prefix")
	}
}

func TestFilters(t *testing.T) {
	var tree mqttapi.Tree
	f, err := tree.Filter(mqttapi.LeafUsage)
	if f != "bv/v1/dev/+/usage" || err != nil {
		t.Errorf("Filter(usage) = %q, %v", f, err)
	}
	f, err = tree.SharedFilter("cloud", mqttapi.LeafUsage)
	if f != "$share/cloud/bv/v1/dev/+/usage" || err != nil {
		t.Errorf("SharedFilter(cloud, usage) = %q, %v", f, err)
	}
	for _, g := range []string{"", "a/b", "a+", "#", strings.Repeat("g", 65)} {
		if _, err := tree.SharedFilter(g, mqttapi.LeafUsage); !errors.Is(err, mqttapi.ErrGroup) {
			t.Errorf("SharedFilter(%q) err = %v, want ErrGroup", g, err)
		}
	}
	if _, err := tree.Filter("nope"); !errors.Is(err, mqttapi.ErrLeaf) {
		t.Errorf("Filter(nope) err = %v, want ErrLeaf", err)
	}

	subs, err := tree.CloudSubscriptions("cloud")
	if err != nil {
		t.Fatal(err)
	}
	want := []mqttapi.Subscription{
		{"bv/v1/dev/+/state", 1},
		{"$share/cloud/bv/v1/dev/+/telemetry", 0},
		{"$share/cloud/bv/v1/dev/+/evt", 1},
		{"$share/cloud/bv/v1/dev/+/usage", 1},
		{"$share/cloud/bv/v1/dev/+/reply", 1},
	}
	if !slices.Equal(subs, want) {
		t.Errorf("CloudSubscriptions(cloud) =\n%v\nwant\n%v", subs, want)
	}
	subs, err = tree.CloudSubscriptions("")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range subs {
		if strings.HasPrefix(s.Filter, "$share/") {
			t.Errorf("CloudSubscriptions(\"\") has shared %q", s.Filter)
		}
	}
	// No device may subscribe to any cloud filter.
	for _, s := range want {
		if mqttapi.Allowed("wd-0042", s.Filter, false) {
			t.Errorf("a device may subscribe to %q", s.Filter)
		}
	}
}

func TestLeafProperties(t *testing.T) {
	for _, l := range mqttapi.Leaves {
		wantQoS := byte(1)
		if l == mqttapi.LeafTelemetry {
			wantQoS = 0
		}
		if l.QoS() != wantQoS || l.Retained() != (l == mqttapi.LeafState) ||
			(l.Direction() == mqttapi.Downlink) != (l == mqttapi.LeafCmd) {
			t.Errorf("leaf %s: qos %d retain %v dir %s", l, l.QoS(), l.Retained(), l.Direction())
		}
	}
}
