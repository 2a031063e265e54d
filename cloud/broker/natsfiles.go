package broker

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/internal/atomicfile"
)

// NATS cluster defaults written by [NATSNode.WriteTo].
const (
	// NATSFleetAccount is the account devices and the cloud are placed in
	// by the auth callout; its MQTT sessions live in its JetStream.
	NATSFleetAccount = "FLEET"
	// NATSAuthAccount is the account of the auth callout responders.
	NATSAuthAccount = "AUTH"
	// NATSSystemAccount is the cluster's system account.
	NATSSystemAccount = "SYS"
	// NATSAuthUser is the username the auth callout responders connect as.
	NATSAuthUser = "auth"
	// DefaultNATSMaxConsumers is the per-stream consumer limit written when
	// NATSNode.MaxConsumers is 0. Every persistent MQTT session with a QoS 1
	// subscription is one durable consumer on the $MQTT_msgs stream, and
	// nats-server's own default (1,000) refuses the 1,000th device.
	DefaultNATSMaxConsumers = 100_000
	// DefaultNATSSessionExpiry is how long the durable consumer of a
	// session whose device stays away is kept (nats-server's
	// consumer_inactive_threshold) when NATSNode.SessionExpiry is 0: a
	// decommissioned device is refused at CONNECT, so its session's
	// consumer is removed after this long.
	DefaultNATSSessionExpiry = 30 * 24 * time.Hour
	// NATSConfFile is the name of a node's configuration file written by
	// [NATSFiles.Write] in the node's directory.
	NATSConfFile = "nats-server.conf"
)

// NATSNode is one nats-server of a cluster: its client, route and MQTT
// listeners, the routes to every node, its JetStream store, and the auth
// callout that admits devices and the cloud.
type NATSNode struct {
	Name          string   // server_name, unique in the cluster: 1-64 of A-Z a-z 0-9 _ -
	ClusterName   string   // the cluster's name, the same on every node (default "beaconvend")
	Listen        string   // host:port of NATS clients (the cloud's native consumers, the responders)
	ClusterListen string   // host:port of routes
	Routes        []string // host:port of every node's ClusterListen (this node's own is allowed); none: a single server
	MQTTListen    string   // host:port of MQTT clients (devices, the cloud's command publisher)
	HTTPListen    string   // optional host:port of the monitoring endpoint (/healthz, /varz); keep it private
	StoreDir      string   // absolute: the JetStream store
	// StreamReplicas of the MQTT streams (sessions, messages, retained):
	// 0 means 3 for a cluster of three nodes or more, else the node count.
	// One replica loses every session on the node that dies.
	StreamReplicas int
	// MaxConsumers is the per-stream consumer limit
	// (jetstream.limits.default_max_consumers): 0 means
	// DefaultNATSMaxConsumers; it bounds the persistent sessions.
	MaxConsumers int
	// SessionExpiry is mqtt.consumer_inactive_threshold: 0 means
	// DefaultNATSSessionExpiry.
	SessionExpiry time.Duration
	// MaxMemory and MaxStore bound JetStream (0: 256 MiB and 8 GiB).
	MaxMemory, MaxStore int64
	// Auth is the auth callout; nil leaves the cluster open (every client
	// in the fleet account without credentials): for benchmarks only.
	Auth *NATSAuth
}

// NATSAuth is the auth callout of a node: the public account nkey that
// signs responses, and the responders' user in the AUTH account.
type NATSAuth struct {
	Issuer       string // public account nkey ("A…") whose seed the responders sign with
	PasswordHash string // bcrypt hash ("$2a$…") of the NATSAuthUser password
}

func validNodeName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

func checkHostPort(field, s string) error {
	h, p, err := net.SplitHostPort(s)
	if err != nil || h == "" || strings.ContainsAny(h, "\"\n\\") {
		return vend.Errorf(ErrOptions, "nats config: %s %q: want host:port", field, clipLog(s))
	}
	if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
		return vend.Errorf(ErrOptions, "nats config: %s %q: want a port 1-65535", field, clipLog(s))
	}
	return nil
}

// WriteTo writes n as a nats-server configuration file. It returns
// ErrOptions for a bad name, listener, route, store directory or auth
// setting, and w's error.
func (n NATSNode) WriteTo(w io.Writer) (int64, error) {
	if !validNodeName(n.Name) {
		return 0, vend.Errorf(ErrOptions, "nats config: node name %q: want 1-64 of A-Z a-z 0-9 _ -", clipLog(n.Name))
	}
	cluster := n.ClusterName
	if cluster == "" {
		cluster = "beaconvend"
	}
	if !validNodeName(cluster) {
		return 0, vend.Errorf(ErrOptions, "nats config: cluster name %q: want 1-64 of A-Z a-z 0-9 _ -", clipLog(cluster))
	}
	for _, x := range []struct{ f, v string }{{"listen", n.Listen}, {"mqtt listen", n.MQTTListen}} {
		if err := checkHostPort(x.f, x.v); err != nil {
			return 0, err
		}
	}
	if n.HTTPListen != "" {
		if err := checkHostPort("http listen", n.HTTPListen); err != nil {
			return 0, err
		}
	}
	if len(n.Routes) > 0 {
		if err := checkHostPort("cluster listen", n.ClusterListen); err != nil {
			return 0, err
		}
	}
	for _, r := range n.Routes {
		if err := checkHostPort("route", r); err != nil {
			return 0, err
		}
	}
	if !filepath.IsAbs(n.StoreDir) || strings.ContainsAny(n.StoreDir, "\"\n\\") {
		return 0, vend.Errorf(ErrOptions, "nats config: store dir %q: want an absolute path", clipLog(n.StoreDir))
	}
	replicas := n.StreamReplicas
	if replicas == 0 {
		replicas = min(3, max(1, len(n.Routes)))
	}
	if replicas < 1 || replicas > 5 {
		return 0, vend.Errorf(ErrOptions, "nats config: stream replicas %d: want 1-5", replicas)
	}
	maxc := n.MaxConsumers
	if maxc == 0 {
		maxc = DefaultNATSMaxConsumers
	}
	if maxc < 1 {
		return 0, vend.Errorf(ErrOptions, "nats config: max consumers %d: want a positive bound", maxc)
	}
	expiry := n.SessionExpiry
	if expiry == 0 {
		expiry = DefaultNATSSessionExpiry
	}
	if expiry < time.Second {
		return 0, vend.Errorf(ErrOptions, "nats config: session expiry %v: want at least 1s", expiry)
	}
	mem, store := n.MaxMemory, n.MaxStore
	if mem == 0 {
		mem = 256 << 20
	}
	if store == 0 {
		store = 8 << 30
	}
	if n.Auth != nil {
		if len(n.Auth.Issuer) != 56 || n.Auth.Issuer[0] != 'A' {
			return 0, vend.Errorf(ErrOptions, "nats config: auth issuer %q: want a public account nkey", clipLog(n.Auth.Issuer))
		}
		if !strings.HasPrefix(n.Auth.PasswordHash, "$2") || strings.ContainsAny(n.Auth.PasswordHash, "\"\n\\") {
			return 0, vend.Errorf(ErrOptions, "nats config: auth password hash: want a bcrypt hash")
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# beaconvend NATS node %s (generated by cloud/broker; do not edit).\n", n.Name)
	fmt.Fprintf(&b, "server_name: %q\n", n.Name)
	fmt.Fprintf(&b, "listen: %q\n", n.Listen)
	if n.HTTPListen != "" {
		fmt.Fprintf(&b, "http: %q\n", n.HTTPListen)
	}
	fmt.Fprintf(&b, "max_payload: 65536\n\n")
	if len(n.Routes) > 0 {
		fmt.Fprintf(&b, "cluster {\n  name: %q\n  listen: %q\n  routes: [\n", cluster, n.ClusterListen)
		for _, r := range n.Routes {
			fmt.Fprintf(&b, "    \"nats-route://%s\"\n", r)
		}
		fmt.Fprintf(&b, "  ]\n}\n\n")
	}
	fmt.Fprintf(&b, "jetstream {\n  store_dir: %q\n  max_memory_store: %d\n  max_file_store: %d\n", n.StoreDir, mem, store)
	fmt.Fprintf(&b, "  # Every persistent MQTT session is a durable consumer on one stream:\n")
	fmt.Fprintf(&b, "  # the default per-stream limit (1000) would refuse the 1000th device.\n")
	fmt.Fprintf(&b, "  limits { default_max_consumers: %d }\n}\n\n", maxc)
	fmt.Fprintf(&b, "mqtt {\n  listen: %q\n", n.MQTTListen)
	fmt.Fprintf(&b, "  # Sessions, messages and retained state replicated: one replica loses them with its node.\n")
	fmt.Fprintf(&b, "  stream_replicas: %d\n", replicas)
	fmt.Fprintf(&b, "  # A session whose device stays away this long (decommissioned) loses its consumer.\n")
	fmt.Fprintf(&b, "  consumer_inactive_threshold: \"%s\"\n", expiry)
	fmt.Fprintf(&b, "  max_ack_pending: 100\n}\n\n")
	fmt.Fprintf(&b, "system_account: %s\n", NATSSystemAccount)
	if n.Auth == nil {
		fmt.Fprintf(&b, "# No auth callout: every client lands in %s without credentials (benchmarks only).\n", NATSFleetAccount)
		fmt.Fprintf(&b, "accounts {\n  %s {}\n  %s { jetstream: enabled, users: [ { user: open } ] }\n}\n", NATSSystemAccount, NATSFleetAccount)
		fmt.Fprintf(&b, "no_auth_user: open\n")
	} else {
		fmt.Fprintf(&b, "accounts {\n  %s {}\n  %s { jetstream: enabled }\n", NATSSystemAccount, NATSFleetAccount)
		fmt.Fprintf(&b, "  %s { users: [ { user: %q, password: %q } ] }\n}\n\n", NATSAuthAccount, NATSAuthUser, n.Auth.PasswordHash)
		fmt.Fprintf(&b, "# Devices and the cloud are admitted by the cloud's responders (cloud/broker/natsauth).\n")
		fmt.Fprintf(&b, "authorization {\n  timeout: 3s\n  auth_callout {\n    issuer: %q\n    account: %s\n    auth_users: [ %q ]\n  }\n}\n", n.Auth.Issuer, NATSAuthAccount, NATSAuthUser)
	}
	bw := bufio.NewWriter(w)
	k, err := bw.WriteString(b.String())
	if err != nil {
		return int64(k), err
	}
	return int64(k), bw.Flush()
}

// NATSFiles are the configurations of every node of a cluster, each
// written to Dir/<node name>/nats-server.conf.
type NATSFiles struct {
	Dir   string // absolute
	Nodes []NATSNode
}

// Write renders every node first, so bad input writes nothing, then
// writes each node's file atomically (mode 0600: it holds the auth
// user's hash). It returns ErrOptions for a relative Dir, no node or
// duplicate names, the nodes' errors and the file system's.
func (f NATSFiles) Write() error {
	if !filepath.IsAbs(f.Dir) {
		return vend.Errorf(ErrOptions, "nats files: directory %q: want an absolute path", clipLog(f.Dir))
	}
	if len(f.Nodes) == 0 {
		return vend.Errorf(ErrOptions, "nats files: no node")
	}
	seen := map[string]bool{}
	confs := make([][]byte, len(f.Nodes))
	for i, n := range f.Nodes {
		if seen[n.Name] {
			return vend.Errorf(ErrOptions, "nats files: duplicate node %q", clipLog(n.Name))
		}
		seen[n.Name] = true
		var b strings.Builder
		if _, err := n.WriteTo(&b); err != nil {
			return err
		}
		confs[i] = []byte(b.String())
	}
	for i, n := range f.Nodes {
		if err := os.MkdirAll(filepath.Join(f.Dir, n.Name), 0o700); err != nil {
			return fmt.Errorf("broker: nats files: %w", err)
		}
		if err := atomicfile.Write(filepath.Join(f.Dir, n.Name, NATSConfFile), confs[i]); err != nil {
			return fmt.Errorf("broker: nats files: %w", err)
		}
	}
	return nil
}
