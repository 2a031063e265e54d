package broker

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
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
	// DefaultNATSJSAPITimeout is mqtt.js_api_timeout when
	// NATSNode.JSAPITimeout is 0: how long a node waits for JetStream
	// while it sets up an MQTT session or subscription. nats-server's own
	// 5 s is reached in a connect storm (a node lost, a third of the fleet
	// reconnecting at once); the node then refuses the QoS 1 subscription
	// (SUBACK 0x80) while the consumer it asked for is still created, the
	// device retries with a new consumer, and the orphans (kept for the
	// session expiry) feed the storm. Not longer: a request lost while
	// JetStream's leaders move after a node's death is only given up after
	// this wait, and the client with it (boards wait 20 s for a SUBACK and
	// 25 s for a CONNACK, controller/uplink).
	DefaultNATSJSAPITimeout = 15 * time.Second
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
	// JSAPITimeout is mqtt.js_api_timeout: 0 means DefaultNATSJSAPITimeout.
	JSAPITimeout time.Duration
	// MaxMemory and MaxStore bound JetStream (0: 256 MiB and 8 GiB).
	MaxMemory, MaxStore int64
	// Auth is the auth callout; nil leaves the cluster open (every client
	// in the fleet account without credentials): for benchmarks only.
	Auth *NATSAuth
	// TLS puts the node's certificate on its client and MQTT listeners
	// and mutual TLS on its routes; nil: plain TCP everywhere, which
	// [NATSFiles.Write] refuses off loopback unless NATSFiles.Plaintext.
	TLS *NATSTLS
}

// NATSTLS is a node's TLS, as absolute paths of PEM files on the node.
// Clients (devices over ssl://, the cloud over tls://) verify CertFile
// against the CA they were given; it must name the host they dial.
// Routes are mutual: each node presents RouteCertFile to the others and
// verifies theirs against CAFile (nats-server forces verify on routes), so
// the route certificate needs both the server and the client
// authentication usage and must name the node's route host.
type NATSTLS struct {
	CertFile, KeyFile string // the client and MQTT listeners' certificate and key
	// CAFile is the CA that issued every node's route certificate;
	// required on a cluster (routes), unused on a single node. Any
	// certificate it issued may join the cluster: a private CA of the
	// nodes only, never a public one.
	CAFile string
	// RouteCertFile and RouteKeyFile default to CertFile and KeyFile.
	RouteCertFile, RouteKeyFile string
}

func (t NATSTLS) routeCert() (string, string) {
	if t.RouteCertFile == "" {
		return t.CertFile, t.KeyFile
	}
	return t.RouteCertFile, t.RouteKeyFile
}

func checkPEMPath(field, s string) error {
	if !filepath.IsAbs(s) || strings.ContainsAny(s, "\"\n\\") {
		return vend.Errorf(ErrOptions, "nats config: tls %s %q: want an absolute path", field, clipLog(s))
	}
	return nil
}

func (t NATSTLS) check(routes bool) error {
	if (t.RouteCertFile == "") != (t.RouteKeyFile == "") {
		return vend.Errorf(ErrOptions, "nats config: tls route cert and key: give both or neither")
	}
	rc, rk := t.routeCert()
	for _, x := range []struct{ f, v string }{{"cert", t.CertFile}, {"key", t.KeyFile}, {"route cert", rc}, {"route key", rk}} {
		if err := checkPEMPath(x.f, x.v); err != nil {
			return err
		}
	}
	if routes || t.CAFile != "" {
		if err := checkPEMPath("ca", t.CAFile); err != nil {
			return err
		}
	}
	return nil
}

// isLoopback reports whether host (a name or an address) stays on this
// machine: "localhost" or a loopback address.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
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
	jsTimeout := n.JSAPITimeout
	if jsTimeout == 0 {
		jsTimeout = DefaultNATSJSAPITimeout
	}
	if expiry < time.Second {
		return 0, vend.Errorf(ErrOptions, "nats config: session expiry %v: want at least 1s", expiry)
	}
	if jsTimeout < time.Second {
		return 0, vend.Errorf(ErrOptions, "nats config: js api timeout %v: want at least 1s", jsTimeout)
	}
	mem, store := n.MaxMemory, n.MaxStore
	if mem == 0 {
		mem = 256 << 20
	}
	if store == 0 {
		store = 8 << 30
	}
	if n.TLS != nil {
		if err := n.TLS.check(len(n.Routes) > 0); err != nil {
			return 0, err
		}
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
	if n.TLS != nil {
		fmt.Fprintf(&b, "# Clients (the cloud, the responders) over TLS only: a plain client is refused.\n")
		fmt.Fprintf(&b, "tls {\n  cert_file: %q\n  key_file: %q\n  timeout: 5\n}\n", n.TLS.CertFile, n.TLS.KeyFile)
	}
	if n.HTTPListen != "" {
		fmt.Fprintf(&b, "http: %q\n", n.HTTPListen)
	}
	fmt.Fprintf(&b, "max_payload: 65536\n\n")
	if len(n.Routes) > 0 {
		fmt.Fprintf(&b, "cluster {\n  name: %q\n  listen: %q\n", cluster, n.ClusterListen)
		if n.TLS != nil {
			rc, rk := n.TLS.routeCert()
			fmt.Fprintf(&b, "  # Mutual TLS: a node proves itself with a certificate of ca_file, and checks the others'.\n")
			fmt.Fprintf(&b, "  tls {\n    cert_file: %q\n    key_file: %q\n    ca_file: %q\n    verify: true\n    timeout: 5\n  }\n", rc, rk, n.TLS.CAFile)
		}
		fmt.Fprintf(&b, "  routes: [\n")
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
	if n.TLS != nil {
		fmt.Fprintf(&b, "  # Devices connect with ssl:// and the CA of this certificate; a plain client is refused.\n")
		fmt.Fprintf(&b, "  tls {\n    cert_file: %q\n    key_file: %q\n    timeout: 5\n  }\n", n.TLS.CertFile, n.TLS.KeyFile)
	}
	fmt.Fprintf(&b, "  # Sessions, messages and retained state replicated: one replica loses them with its node.\n")
	fmt.Fprintf(&b, "  stream_replicas: %d\n", replicas)
	fmt.Fprintf(&b, "  # A session whose device stays away this long (decommissioned) loses its consumer.\n")
	fmt.Fprintf(&b, "  consumer_inactive_threshold: \"%s\"\n", expiry)
	fmt.Fprintf(&b, "  # Wait this long for JetStream while setting up a session or a subscription\n")
	fmt.Fprintf(&b, "  # (the default 5 s refuses subscriptions in a reconnect storm; boards wait longer).\n")
	fmt.Fprintf(&b, "  js_api_timeout: \"%s\"\n", jsTimeout)
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
	// Plaintext allows a node without TLS to listen off loopback: its
	// devices' and the cloud's passwords would cross the network in
	// clear (a private lab network only).
	Plaintext bool
}

// Write renders every node first, so bad input writes nothing, then
// writes each node's file atomically (mode 0600: it holds the auth
// user's hash). It returns ErrOptions for a relative Dir, no node or
// duplicate names, a node without TLS listening off loopback (unless
// Plaintext), the nodes' errors and the file system's.
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
		if n.TLS == nil && !f.Plaintext {
			for _, a := range []string{n.Listen, n.MQTTListen, n.ClusterListen} {
				if h, _, err := net.SplitHostPort(a); err == nil && !isLoopback(h) {
					return vend.Errorf(ErrOptions, "nats files: node %s listens on %s without TLS: passwords would cross the network in clear; give it TLS (or allow plaintext on a private lab network)", clipLog(n.Name), clipLog(a))
				}
			}
		}
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

// CheckFiles reads t's files and checks what nats-server only finds out
// at a handshake: that each key matches its certificate, that both
// certificates were issued by CAFile (when given) and are valid now, that
// the listeners' certificate names host, and that the route certificate
// names routeHost and serves both as server and as client (routes are
// mutual TLS). It returns ErrOptions naming the file and what is wrong.
func (t NATSTLS) CheckFiles(host, routeHost string) error {
	var roots *x509.CertPool
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return vend.Errorf(ErrOptions, "nats tls: ca %v", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return vend.Errorf(ErrOptions, "nats tls: ca %s: no PEM certificate", clipLog(t.CAFile))
		}
	}
	load := func(what, cf, kf, name string, usages ...x509.ExtKeyUsage) error {
		pair, err := tls.LoadX509KeyPair(cf, kf)
		if err != nil {
			return vend.Errorf(ErrOptions, "nats tls: %s %s: %v", what, clipLog(cf), err)
		}
		leaf := pair.Leaf
		if leaf == nil {
			if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
				return vend.Errorf(ErrOptions, "nats tls: %s %s: %v", what, clipLog(cf), err)
			}
		}
		if err := leaf.VerifyHostname(name); err != nil {
			return vend.Errorf(ErrOptions, "nats tls: %s %s: %v", what, clipLog(cf), err)
		}
		if roots != nil || len(usages) > 1 {
			inter := x509.NewCertPool()
			for _, der := range pair.Certificate[1:] {
				if c, err := x509.ParseCertificate(der); err == nil {
					inter.AddCert(c)
				}
			}
			for _, u := range usages {
				opts := x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{u}}
				if roots == nil {
					opts.Roots = x509.NewCertPool()
					opts.Roots.AddCert(leaf) // usage only: the chain is checked against the system roots by clients
				}
				if _, err := leaf.Verify(opts); err != nil {
					use := "server"
					if u == x509.ExtKeyUsageClientAuth {
						use = "client"
					}
					return vend.Errorf(ErrOptions, "nats tls: %s %s as a %s certificate: %v", what, clipLog(cf), use, err)
				}
			}
		}
		return nil
	}
	if err := load("cert", t.CertFile, t.KeyFile, host, x509.ExtKeyUsageServerAuth); err != nil {
		return err
	}
	if routeHost == "" {
		return nil
	}
	rc, rk := t.routeCert()
	return load("route cert", rc, rk, routeHost, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
}
