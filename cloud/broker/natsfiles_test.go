package broker_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/broker"
)

func natsNodes(t *testing.T, dir string) []broker.NATSNode {
	kp, _ := nkeys.CreateAccount()
	pub, _ := kp.PublicKey()
	auth := &broker.NATSAuth{Issuer: pub, PasswordHash: "$2a$04$abcdefghijklmnopqrstuu5Cg8JkCv2u2cEj0Zh1mKDeOn4ruSxXC"}
	routes := []string{"127.0.0.1:6222", "127.0.0.1:6223", "127.0.0.1:6224"}
	var ns []broker.NATSNode
	for i, name := range []string{"n0", "n1", "n2"} {
		ns = append(ns, broker.NATSNode{Name: name, Listen: "127.0.0.1:422" + string(rune('2'+i)), ClusterListen: routes[i],
			MQTTListen: "127.0.0.1:188" + string(rune('3'+i)), Routes: routes, StoreDir: filepath.Join(dir, "js", name),
			MaxConsumers: 5000, SessionExpiry: 48 * time.Hour, Auth: auth})
	}
	return ns
}

// The files nats-server reads carry what the cluster needs: replicated
// MQTT streams, the raised consumer limit, session expiry, the routes and
// the auth callout.
func TestNATSFilesParseAsNATSServerConfig(t *testing.T) {
	dir := t.TempDir()
	if err := (broker.NATSFiles{Dir: dir, Nodes: natsNodes(t, dir)}).Write(); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"n0", "n1", "n2"} {
		path := filepath.Join(dir, n, broker.NATSConfFile)
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", path, err, fi)
		}
		o, err := server.ProcessConfigFile(path)
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		if o.ServerName != n || o.MQTT.StreamReplicas != 3 || o.JetStreamLimits.DefaultMaxConsumers != 5000 ||
			o.MQTT.ConsumerInactiveThreshold != 48*time.Hour || len(o.Routes) != 3 || o.AuthCallout == nil ||
			o.AuthCallout.Account != broker.NATSAuthAccount || o.SystemAccount != broker.NATSSystemAccount {
			t.Fatalf("%s: parsed %+v / mqtt %+v / callout %+v", n, o.JetStreamLimits, o.MQTT, o.AuthCallout)
		}
	}
}

func TestNATSNodeDefaultsAndRefusals(t *testing.T) {
	dir := t.TempDir()
	n := natsNodes(t, dir)[0]
	n.MaxConsumers, n.SessionExpiry = 0, 0
	var b strings.Builder
	if _, err := n.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"default_max_consumers: 100000", "stream_replicas: 3", `consumer_inactive_threshold: "720h0m0s"`, `js_api_timeout: "15s"`, "auth_callout"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("config lacks %q", want)
		}
	}
	for name, edit := range map[string]func(*broker.NATSNode){
		"bad name":       func(n *broker.NATSNode) { n.Name = "n 0" },
		"bad listen":     func(n *broker.NATSNode) { n.Listen = "4222" },
		"bad route":      func(n *broker.NATSNode) { n.Routes = []string{"x"} },
		"relative store": func(n *broker.NATSNode) { n.StoreDir = "js" },
		"quote in store": func(n *broker.NATSNode) { n.StoreDir = "/js\"\ninclude /etc/x" },
		"negative limit": func(n *broker.NATSNode) { n.MaxConsumers = -1 },
		"tiny expiry":    func(n *broker.NATSNode) { n.SessionExpiry = time.Millisecond },
		"tiny js wait":   func(n *broker.NATSNode) { n.JSAPITimeout = time.Millisecond },
		"user key issuer": func(n *broker.NATSNode) {
			n.Auth = &broker.NATSAuth{Issuer: "U" + strings.Repeat("A", 55), PasswordHash: "$2a$x"}
		},
		"plain password":   func(n *broker.NATSNode) { n.Auth = &broker.NATSAuth{Issuer: n.Auth.Issuer, PasswordHash: "secret"} },
		"too many replica": func(n *broker.NATSNode) { n.StreamReplicas = 7 },
	} {
		m := natsNodes(t, dir)[0]
		edit(&m)
		if _, err := m.WriteTo(&strings.Builder{}); vend.CodeOf(err) != broker.ErrOptions.Code {
			t.Errorf("%s: err = %v, want ErrOptions", name, err)
		}
	}
	if err := (broker.NATSFiles{Dir: "rel", Nodes: natsNodes(t, dir)}).Write(); err == nil {
		t.Error("relative dir accepted")
	}
	dup := natsNodes(t, dir)
	dup[1].Name = "n0"
	if err := (broker.NATSFiles{Dir: dir, Nodes: dup}).Write(); err == nil {
		t.Error("duplicate node names accepted")
	}
}
