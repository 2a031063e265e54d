package broker

import (
	"bytes"
	"context"
	"crypto/tls"
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
