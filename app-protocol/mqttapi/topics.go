package mqttapi

import (
	"strings"

	"beaconvend/app-protocol/vend"
)

// DefaultPrefix is the topic prefix every device subtree hangs under:
// "bv/v1/dev/<device-id>/<leaf>". The "v1" names the topic layout, not the
// payload schema version (that is the envelope's "v").
const DefaultPrefix = "bv/v1/dev"

// MaxTopicLen bounds a topic this package builds or accepts, in bytes. MQTT
// allows 65535; ours are never longer than prefix + 64-byte id + leaf.
const MaxTopicLen = 256

// Leaf is the last level of a device topic. Each leaf carries a fixed set of
// message types in one direction with one QoS and retain flag.
type Leaf string

// The leaves of a device's topic tree.
const (
	LeafState     Leaf = "state"     // device→cloud, QoS 1, retained; last will is a retained offline State
	LeafTelemetry Leaf = "telemetry" // device→cloud, QoS 0, not retained; periodic, lossy by design
	LeafEvt       Leaf = "evt"       // device→cloud, QoS 1; session and machine events, acked by Ack
	LeafUsage     Leaf = "usage"     // device→cloud, QoS 1; signed usage reports, acked by Ack
	LeafReply     Leaf = "reply"     // device→cloud, QoS 1; the device's answer to each command
	LeafCmd       Leaf = "cmd"       // cloud→device, QoS 1; commands and the cloud's Ack
)

// Leaves lists every leaf, uplinks first.
var Leaves = []Leaf{LeafState, LeafTelemetry, LeafEvt, LeafUsage, LeafReply, LeafCmd}

// Direction says who publishes on a leaf.
type Direction string

// Directions.
const (
	Uplink   Direction = "uplink"   // the device publishes, the cloud subscribes
	Downlink Direction = "downlink" // the cloud publishes, the device subscribes
)

// Valid reports whether l is one of [Leaves].
func (l Leaf) Valid() bool {
	switch l {
	case LeafState, LeafTelemetry, LeafEvt, LeafUsage, LeafReply, LeafCmd:
		return true
	}
	return false
}

// QoS returns the MQTT QoS level (0, 1 or 2) that publishers and
// subscribers use on l: 0 for telemetry, 1 for every other leaf.
func (l Leaf) QoS() byte {
	if l == LeafTelemetry {
		return 0
	}
	return 1
}

// Retained reports whether messages on l are published with the retain
// flag: true only for state.
func (l Leaf) Retained() bool { return l == LeafState }

// Direction returns who publishes on l: Downlink for cmd, Uplink otherwise.
func (l Leaf) Direction() Direction {
	if l == LeafCmd {
		return Downlink
	}
	return Uplink
}

// Topic errors.
var (
	ErrTopic  = vend.E(vend.Invalid, "topic.invalid", "mqttapi: invalid topic")
	ErrLeaf   = vend.E(vend.Invalid, "topic.leaf", "mqttapi: unknown topic leaf")
	ErrPrefix = vend.E(vend.Invalid, "topic.prefix", "mqttapi: invalid topic prefix")
	ErrGroup  = vend.E(vend.Invalid, "topic.share_group", "mqttapi: invalid shared-subscription group")
)

// Tree is a device topic tree under Prefix. The zero Tree uses
// [DefaultPrefix]; a staging or per-tenant deployment sets its own prefix
// (one or more non-empty levels without wildcards, '$' or surrounding '/').
type Tree struct {
	Prefix string
}

func (t Tree) prefix() (string, error) {
	p := t.Prefix
	if p == "" {
		return DefaultPrefix, nil
	}
	if len(p) > MaxTopicLen/2 || p[0] == '$' || strings.ContainsAny(p, "+#\x00") {
		return "", vend.Errorf(ErrPrefix, "%q", clip(p))
	}
	for _, lvl := range strings.Split(p, "/") {
		if lvl == "" {
			return "", vend.Errorf(ErrPrefix, "%q: empty level", clip(p))
		}
	}
	return p, nil
}

// Topic returns prefix/<deviceID>/<leaf>. It returns ErrPrefix for a bad
// prefix, vend.ErrDeviceID for a bad device id and ErrLeaf for an unknown leaf.
func (t Tree) Topic(deviceID string, leaf Leaf) (string, error) {
	p, err := t.prefix()
	if err != nil {
		return "", err
	}
	if err := vend.ValidateDeviceID(deviceID); err != nil {
		return "", err
	}
	if !leaf.Valid() {
		return "", vend.Errorf(ErrLeaf, "%q", clip(string(leaf)))
	}
	return p + "/" + deviceID + "/" + string(leaf), nil
}

// Parse splits a concrete topic (as received, never a filter) into its device
// id and leaf. It returns ErrTopic when the topic is empty, too long, holds a
// wildcard, a NUL or a '$share' form, or is not under the prefix;
// vend.ErrDeviceID for a bad device id; ErrLeaf for an unknown leaf.
func (t Tree) Parse(topic string) (deviceID string, leaf Leaf, err error) {
	p, err := t.prefix()
	if err != nil {
		return "", "", err
	}
	if topic == "" || len(topic) > MaxTopicLen {
		return "", "", vend.Errorf(ErrTopic, "length %d: want 1-%d", len(topic), MaxTopicLen)
	}
	if strings.ContainsAny(topic, "+#\x00") {
		return "", "", vend.Errorf(ErrTopic, "%q: wildcard or NUL in a topic name", clip(topic))
	}
	rest, ok := strings.CutPrefix(topic, p+"/")
	if !ok {
		return "", "", vend.Errorf(ErrTopic, "%q: not under %q", clip(topic), p)
	}
	dev, l, ok := strings.Cut(rest, "/")
	if !ok || strings.Contains(l, "/") {
		return "", "", vend.Errorf(ErrTopic, "%q: want %s/<device-id>/<leaf>", clip(topic), p)
	}
	if err := vend.ValidateDeviceID(dev); err != nil {
		return "", "", err
	}
	if !Leaf(l).Valid() {
		return "", "", vend.Errorf(ErrLeaf, "%q", clip(l))
	}
	return dev, Leaf(l), nil
}

// Allowed is the broker ACL. A device (authenticated as deviceID) may
// publish only to its own state, telemetry, evt, usage and reply topics, and
// subscribe only to its own cmd topic, named exactly: no wildcard filters,
// no '$share' forms, nothing of another device. Anything that does not parse
// is refused. The cloud's own credentials are not checked here.
func (t Tree) Allowed(deviceID, topic string, publish bool) bool {
	if vend.ValidateDeviceID(deviceID) != nil {
		return false
	}
	dev, leaf, err := t.Parse(topic)
	if err != nil || dev != deviceID {
		return false
	}
	if publish {
		return leaf.Direction() == Uplink
	}
	return leaf == LeafCmd
}

// Filter returns the cloud's subscription filter for leaf across all
// devices: prefix/+/<leaf>. It returns ErrPrefix or ErrLeaf.
func (t Tree) Filter(leaf Leaf) (string, error) {
	p, err := t.prefix()
	if err != nil {
		return "", err
	}
	if !leaf.Valid() {
		return "", vend.Errorf(ErrLeaf, "%q", clip(string(leaf)))
	}
	return p + "/+/" + string(leaf), nil
}

// SharedFilter returns the MQTT 5 shared-subscription form of [Tree.Filter]:
// $share/<group>/prefix/+/<leaf>. Each message matching it goes to one
// subscriber of the group, which is how N cloud instances split the work.
// group is 1..64 bytes of [A-Za-z0-9_-]; otherwise ErrGroup.
func (t Tree) SharedFilter(group string, leaf Leaf) (string, error) {
	if !validToken(group, 64) {
		return "", vend.Errorf(ErrGroup, "%q: want 1-64 of A-Z a-z 0-9 _ -", clip(group))
	}
	f, err := t.Filter(leaf)
	if err != nil {
		return "", err
	}
	return "$share/" + group + "/" + f, nil
}

// Subscription is one MQTT subscription: a topic filter and its QoS.
type Subscription struct {
	Filter string // topic filter, possibly $share/<group>/…
	QoS    byte   // requested maximum QoS, the leaf's
}

// CloudSubscriptions returns what every cloud instance subscribes to. The
// uplinks that are work (telemetry, evt, usage, reply) are shared in group,
// so each message is handled by one instance. State is subscribed unshared by
// every instance: brokers do not send retained messages to a new shared
// subscription (MQTT 5.0 §4.8.2), and a starting instance needs the retained
// snapshot; state writes are idempotent, so every instance handling them is
// harmless. An empty group means no sharing (one instance, embedded broker).
// Errors are those of [Tree.Filter] and [Tree.SharedFilter].
func (t Tree) CloudSubscriptions(group string) ([]Subscription, error) {
	var subs []Subscription
	for _, l := range Leaves {
		if l.Direction() != Uplink {
			continue
		}
		var f string
		var err error
		if group == "" || l == LeafState {
			f, err = t.Filter(l)
		} else {
			f, err = t.SharedFilter(group, l)
		}
		if err != nil {
			return nil, err
		}
		subs = append(subs, Subscription{Filter: f, QoS: l.QoS()})
	}
	return subs, nil
}

// Topic returns [DefaultPrefix]/<deviceID>/<leaf>, or the topic under prefix
// when prefix is not empty. Errors are those of [Tree.Topic].
func Topic(prefix, deviceID string, leaf Leaf) (string, error) {
	return Tree{Prefix: prefix}.Topic(deviceID, leaf)
}

// ParseTopic is [Tree.Parse] under [DefaultPrefix].
func ParseTopic(topic string) (deviceID string, leaf Leaf, err error) {
	return Tree{}.Parse(topic)
}

// Allowed is [Tree.Allowed] under [DefaultPrefix]: whether the device
// deviceID may publish to (publish true) or subscribe to (publish false) topic.
func Allowed(deviceID, topic string, publish bool) bool {
	return Tree{}.Allowed(deviceID, topic, publish)
}

// validToken reports whether s is 1..max bytes of [A-Za-z0-9_-].
func validToken(s string, max int) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// clip shortens s for an error message so a hostile input cannot make logs huge.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
