package broker

import (
	"bytes"
	"context"
	"crypto/tls"
	"log/slog"
	"slices"
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/vend"
)

// dummyHash is verified against when a device is unknown or disabled, so
// that refusing one costs as much time as checking a real password.
var dummyHash, _ = hashWith("beaconvend-dummy", make([]byte, HashSaltLen), HashIterations)

// authHook is the mochi hook that authenticates every CONNECT and checks
// every SUBSCRIBE filter and PUBLISH topic against the contract's ACL.
type authHook struct {
	mqtt.HookBase
	b *Broker
}

func (h *authHook) ID() string { return "beaconvend-auth" }

func (h *authHook) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}

// OnConnectAuthenticate admits the cloud user with its password, and a
// device whose username is its device id, whose client id equals that
// device id, whose password matches its enabled Credential, whose will (if
// any) is on a topic it may publish to, and, on a listener that verifies
// client certificates, whose certificate names the device.
func (h *authHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	b := h.b
	user := string(pk.Connect.Username)
	pass := string(pk.Connect.Password)
	log := b.log.With("client", cl.ID, "user", clipLog(user), "remote", cl.Net.Remote, "listener", cl.Net.Listener)
	if !pk.Connect.UsernameFlag || user == "" {
		log.Info("broker: connect refused: anonymous")
		return false
	}
	if user == b.opts.CloudUser {
		ok, err := VerifyPassword(b.opts.CloudPasswordHash, pass)
		if err != nil {
			log.Error("broker: connect refused: cloud password hash", "err", err)
			return false
		}
		if !ok {
			log.Warn("broker: connect refused: bad cloud password")
			return false
		}
		// A cloud client must not take over a device's session by its id.
		if vend.ValidateDeviceID(cl.ID) == nil {
			log.Warn("broker: connect refused: cloud client id is a device id")
			return false
		}
		if pk.Connect.WillFlag {
			log.Warn("broker: connect refused: cloud clients register no will")
			return false
		}
		return true
	}
	if op, ok := OperatorOf(user); ok {
		return h.authOperator(cl, pk, op, pass, log)
	}
	if err := vend.ValidateDeviceID(user); err != nil {
		_, _ = VerifyPassword(dummyHash, pass)
		log.Info("broker: connect refused: username is not a device id")
		return false
	}
	// The client id is the device id: otherwise one device could take over
	// another's persistent session (and its subscriptions) by naming its id.
	if cl.ID != user {
		log.Warn("broker: connect refused: client id is not the device id")
		return false
	}
	if pk.Connect.WillFlag && !b.opts.Tree.Allowed(user, pk.Connect.WillTopic, true) {
		log.Warn("broker: connect refused: will topic not allowed", "will_topic", clipLog(pk.Connect.WillTopic))
		return false
	}
	if !h.certNames(cl, user) {
		log.Warn("broker: connect refused: client certificate does not name the device")
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.opts.LookupTimeout)
	defer cancel()
	cred, err := b.opts.Credentials.DeviceCredential(ctx, user)
	switch {
	case err != nil && errIsNotFound(err):
		_, _ = VerifyPassword(dummyHash, pass)
		log.Info("broker: connect refused: unknown device")
		return false
	case err != nil:
		log.Error("broker: connect refused: credential lookup failed", "err", err)
		return false
	}
	ok, err := VerifyPassword(cred.PasswordHash, pass)
	if err != nil {
		log.Error("broker: connect refused: stored hash", "err", err)
		return false
	}
	if !ok {
		log.Info("broker: connect refused: bad password")
		return false
	}
	if !cred.Enabled {
		log.Info("broker: connect refused: device disabled")
		return false
	}
	return true
}

// authOperator admits an operator's read-only account: its password
// matches the stored hash, its client id is not a device id (so it can
// never take over a device's session), and it registers no will.
func (h *authHook) authOperator(cl *mqtt.Client, pk packets.Packet, operator, pass string, log *slog.Logger) bool {
	b := h.b
	if b.opts.Operators == nil {
		_, _ = VerifyPassword(dummyHash, pass)
		log.Info("broker: connect refused: operator accounts are not enabled")
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.opts.LookupTimeout)
	defer cancel()
	hash, err := b.opts.Operators.BrokerAccountHash(ctx, operator)
	switch {
	case err != nil && errIsNotFound(err):
		_, _ = VerifyPassword(dummyHash, pass)
		log.Info("broker: connect refused: unknown operator account")
		return false
	case err != nil:
		log.Error("broker: connect refused: operator account lookup failed", "err", err)
		return false
	}
	ok, err := VerifyPassword(hash, pass)
	if err != nil {
		log.Error("broker: connect refused: stored operator hash", "err", err)
		return false
	}
	if !ok {
		log.Info("broker: connect refused: bad operator password")
		return false
	}
	if vend.ValidateDeviceID(cl.ID) == nil {
		log.Warn("broker: connect refused: operator client id is a device id (pick one starting with '_', e.g. the username)")
		return false
	}
	if pk.Connect.WillFlag {
		log.Warn("broker: connect refused: operator accounts register no will")
		return false
	}
	return true
}

// operatorAllowed is an operator account's ACL: no publish at all; a
// SUBSCRIBE filter prefix/<device>/<leaf> or prefix/+/<leaf> for a leaf
// of [OperatorLeaves]; and each delivery (a topic name, which never holds
// '+') only of a device the operator owns. Mochi checks deliveries
// through the same hook, so a wildcard subscription yields the
// operator's own devices only, as Mosquitto's ACL does.
func (h *authHook) operatorAllowed(operator, topic string, write bool) bool {
	if write {
		return false
	}
	prefix := h.b.opts.Tree.Prefix
	if prefix == "" {
		prefix = mqttapi.DefaultPrefix
	}
	rest, ok := strings.CutPrefix(topic, prefix+"/")
	if !ok {
		return false
	}
	dev, leaf, ok := strings.Cut(rest, "/")
	if !ok || !slices.Contains(OperatorLeaves, mqttapi.Leaf(leaf)) {
		return false
	}
	if dev == "+" {
		return true
	}
	if vend.ValidateDeviceID(dev) != nil {
		return false
	}
	owner, err := h.b.deviceOperator(dev)
	if err != nil {
		if !errIsNotFound(err) {
			h.b.log.Error("broker: acl: device owner lookup failed", "device", dev, "err", err)
		}
		return false
	}
	return owner == operator
}

// deviceOperator returns the owner of a device, from a cache: a device
// never changes owner, and deliveries to operator accounts ask once per
// message.
func (b *Broker) deviceOperator(dev string) (string, error) {
	if v, ok := b.owners.Load(dev); ok {
		return v.(string), nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.opts.LookupTimeout)
	defer cancel()
	op, err := b.opts.Operators.DeviceOperator(ctx, dev)
	if err != nil {
		return "", err
	}
	if b.ownersN.Add(1) > maxOwnerCache {
		b.owners.Clear()
		b.ownersN.Store(0)
	}
	b.owners.Store(dev, op)
	return op, nil
}

// maxOwnerCache bounds the device-owner cache; past it the cache starts
// over.
const maxOwnerCache = 100_000

// certNames reports whether the client's verified certificate names
// deviceID, or true when the listener does not ask for client certificates.
func (h *authHook) certNames(cl *mqtt.Client, deviceID string) bool {
	if h.b.opts.TLSClientCAFile == "" {
		return true
	}
	if cl.Net.Listener != tlsListenerID {
		return true // the plain listener: loopback, password only
	}
	tc, ok := cl.Net.Conn.(interface{ ConnectionState() tls.ConnectionState })
	if !ok {
		return false // a TLS listener connection without TLS state: refuse
	}
	st := tc.ConnectionState()
	if len(st.VerifiedChains) == 0 || len(st.PeerCertificates) == 0 {
		return false
	}
	leaf := st.PeerCertificates[0]
	return leaf.Subject.CommonName == deviceID || slices.Contains(leaf.DNSNames, deviceID)
}

// OnACLCheck applies [mqttapi.Tree.Allowed] to devices and the cloud's
// rights to the cloud user; write is true for PUBLISH, false for SUBSCRIBE.
func (h *authHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	user := string(cl.Properties.Username)
	var ok bool
	if user == h.b.opts.CloudUser {
		ok = cloudAllowed(h.b.opts.Tree, topic, write)
	} else if op, isOp := OperatorOf(user); isOp {
		ok = h.b.opts.Operators != nil && h.operatorAllowed(op, topic, write)
	} else {
		ok = cl.ID == user && h.b.opts.Tree.Allowed(user, topic, write)
	}
	if !ok {
		h.b.log.Info("broker: acl refused", "client", cl.ID, "topic", clipLog(topic), "publish", write)
	}
	return ok
}

// CloudAllowed is the cloud service's ACL: it may publish to any device's
// cmd topic, and subscribe to any uplink leaf of one or all devices, plain
// (prefix/+/<leaf>, prefix/<device>/<leaf>) or shared
// ($share/<group>/prefix/+/<leaf>). Nothing else: no '#', no cmd reads, no
// uplink writes.
func CloudAllowed(tree mqttapi.Tree, topic string, publish bool) bool {
	return cloudAllowed(tree, topic, publish)
}

func cloudAllowed(tree mqttapi.Tree, topic string, publish bool) bool {
	if publish {
		_, leaf, err := tree.Parse(topic)
		return err == nil && leaf == mqttapi.LeafCmd
	}
	if rest, ok := strings.CutPrefix(topic, "$share/"); ok {
		group, filter, ok := strings.Cut(rest, "/")
		if !ok {
			return false
		}
		for _, l := range mqttapi.Leaves {
			if l.Direction() != mqttapi.Uplink {
				continue
			}
			if f, err := tree.SharedFilter(group, l); err == nil && f == "$share/"+group+"/"+filter {
				return true
			}
		}
		return false
	}
	for _, l := range mqttapi.Leaves {
		if l.Direction() != mqttapi.Uplink {
			continue
		}
		if f, err := tree.Filter(l); err == nil && f == topic {
			return true
		}
	}
	_, leaf, err := tree.Parse(topic)
	return err == nil && leaf.Direction() == mqttapi.Uplink
}

// clipLog bounds a client-supplied string before it reaches a log line.
func clipLog(s string) string {
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return string(bytes.ToValidUTF8([]byte(s), []byte("?")))
}
