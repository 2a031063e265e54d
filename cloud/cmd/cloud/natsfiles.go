package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nkeys"
	"golang.org/x/crypto/bcrypt"

	"beaconvend/cloud/broker"
	"beaconvend/cloud/internal/atomicfile"
)

// NATS secrets written next to the node configurations by
// `cloud broker nats-files` (mode 0600): the responders' issuer seed and
// auth user password. They are reused when present.
const (
	natsIssuerSeedFile = "auth-issuer.seed"
	natsAuthPassFile   = "auth-user.password"
)

// natsFilesHelp heads the flags in `cloud broker nats-files -h`.
const natsFilesHelp = `usage: cloud broker nats-files -out DIR [flags]

Writes DIR/<node>/nats-server.conf for each node of a NATS cluster and the
auth callout responders' secrets (DIR/auth-issuer.seed, DIR/auth-user.password),
and prints the cluster's URLs as JSON.

TLS: -tls-cert and -tls-key put each node's certificate on its NATS client
listener (the cloud connects with tls://) and its MQTT listener (devices
connect with ssl://); plain clients are refused. Routes between nodes are
mutual TLS: each node presents -route-cert (default -tls-cert, which then
needs both the server and the client authentication usage) and verifies the
others' against -tls-ca, required on a cluster: any certificate that CA
issued may join, so make it a private CA of the nodes, never a public one.
The cloud's broker.ca_file
and the devices' mqtt.tls.ca_file are the CA of -tls-cert. "{node}" in a
path stands for the node's name (n0, n1, ...). The files must be readable
here: each key is checked against its certificate, each certificate against
-tls-ca and the node's host, and the paths are written absolute (keep them
the same on the nodes).

Without -tls-cert the nodes listen in plain TCP, which is refused when a
host is not loopback: passwords would cross the network in clear. -plaintext
allows it on a private lab network.

Flags:
`

// natsFilesCommand is `cloud broker nats-files`: it writes each node's
// nats-server configuration of a cluster (routes, JetStream store, MQTT
// listener with stream_replicas, the raised consumer limit, session
// expiry, auth callout, TLS) under -out, and the responders' secrets.
func natsFilesCommand(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cloud broker nats-files", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), natsFilesHelp)
		fs.PrintDefaults()
	}
	out := fs.String("out", "", "directory for <node>/nats-server.conf and the auth secrets (required)")
	nodes := fs.Int("nodes", 3, "nodes in the cluster")
	hosts := fs.String("hosts", "", "comma-separated host of each node (default 127.0.0.1 for every node, ports offset by node)")
	clientPort := fs.Int("client-port", 4222, "NATS client port")
	clusterPort := fs.Int("cluster-port", 6222, "route port")
	mqttPort := fs.Int("mqtt-port", 1883, "MQTT port")
	store := fs.String("store", "/var/lib/nats", "JetStream store directory (each node under <store>/<node>)")
	maxc := fs.Int("max-consumers", broker.DefaultNATSMaxConsumers, "per-stream consumer limit: bounds the persistent device sessions")
	expiry := fs.Duration("session-expiry", broker.DefaultNATSSessionExpiry, "a session whose device stays away this long loses its consumer")
	replicas := fs.Int("stream-replicas", 0, "replicas of the MQTT streams (0: 3 from three nodes)")
	tlsCert := fs.String("tls-cert", "", "PEM certificate of the client and MQTT listeners, naming the node's host ({node}: the node's name)")
	tlsKey := fs.String("tls-key", "", "PEM key of -tls-cert")
	tlsCA := fs.String("tls-ca", "", "PEM CA that issued every node's route certificate (required with -tls-cert on a cluster)")
	routeCert := fs.String("route-cert", "", "PEM certificate of the routes, server and client usage (default -tls-cert)")
	routeKey := fs.String("route-key", "", "PEM key of -route-cert")
	plaintext := fs.Bool("plaintext", false, "allow hosts off loopback without TLS (a private lab network only)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("cloud: unexpected arguments %q", fs.Args())
	}
	if *out == "" || *nodes < 1 || *nodes > 9 {
		return errors.New("cloud: broker nats-files: want -out DIR and -nodes 1-9")
	}
	dir, err := filepath.Abs(*out)
	if err != nil {
		return err
	}
	var hs []string
	step := 0
	if *hosts == "" {
		for range *nodes {
			hs = append(hs, "127.0.0.1")
		}
		step = 1 // one machine: node i listens on port+i
	} else {
		hs = strings.Split(*hosts, ",")
		if len(hs) != *nodes {
			return fmt.Errorf("cloud: broker nats-files: %d hosts for %d nodes", len(hs), *nodes)
		}
	}
	tlsFor, err := natsFilesTLS(*nodes, hs, *tlsCert, *tlsKey, *tlsCA, *routeCert, *routeKey, *plaintext)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	seed, err := readOrMake(filepath.Join(dir, natsIssuerSeedFile), func() (string, error) {
		kp, err := nkeys.CreateAccount()
		if err != nil {
			return "", err
		}
		s, err := kp.Seed()
		return string(s), err
	})
	if err != nil {
		return err
	}
	kp, err := nkeys.FromSeed([]byte(seed))
	if err != nil {
		return fmt.Errorf("cloud: broker nats-files: %s: %v", natsIssuerSeedFile, err)
	}
	pub, _ := kp.PublicKey()
	pw, err := readOrMake(filepath.Join(dir, natsAuthPassFile), func() (string, error) {
		return strconv.FormatInt(time.Now().UnixNano(), 36) + "-" + randToken(), nil
	})
	if err != nil {
		return err
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), 11)
	if err != nil {
		return err
	}
	hp := func(i, port int) string { return fmt.Sprintf("%s:%d", hs[i], port+i*step) }
	var routes []string
	if *nodes > 1 {
		for i := range *nodes {
			routes = append(routes, hp(i, *clusterPort))
		}
	}
	f := broker.NATSFiles{Dir: dir, Plaintext: *plaintext}
	var mqttURLs, natsURLs []string
	mqttScheme, natsScheme := "tcp://", "nats://"
	if *tlsCert != "" {
		mqttScheme, natsScheme = "ssl://", "tls://"
	}
	for i := range *nodes {
		name := "n" + strconv.Itoa(i)
		f.Nodes = append(f.Nodes, broker.NATSNode{Name: name, Listen: hp(i, *clientPort), ClusterListen: hp(i, *clusterPort),
			MQTTListen: hp(i, *mqttPort), Routes: routes, StoreDir: filepath.Join(*store, name), StreamReplicas: *replicas,
			MaxConsumers: *maxc, SessionExpiry: *expiry, Auth: &broker.NATSAuth{Issuer: pub, PasswordHash: string(h)},
			TLS: tlsFor(i)})
		mqttURLs = append(mqttURLs, mqttScheme+hp(i, *mqttPort))
		natsURLs = append(natsURLs, natsScheme+hp(i, *clientPort))
	}
	if err := f.Write(); err != nil {
		return err
	}
	res := map[string]any{"dir": dir, "nodes": *nodes, "mqtt_urls": mqttURLs, "nats_urls": natsURLs,
		"issuer": pub, "issuer_seed_file": filepath.Join(dir, natsIssuerSeedFile), "auth_password_file": filepath.Join(dir, natsAuthPassFile)}
	if *tlsCA != "" {
		res["ca_file"] = tlsFor(0).CAFile
	}
	b, _ := json.Marshal(res)
	_, err = fmt.Fprintln(stdout, string(b))
	return err
}

func readOrMake(path string, mk func() (string, error)) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b)), nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	s, err := mk()
	if err != nil {
		return "", err
	}
	return s, atomicfile.Write(path, []byte(s+"\n"))
}

func randToken() string {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return ""
	}
	p, _ := kp.PublicKey()
	return strings.ToLower(p[1:33])
}

// natsFilesTLS checks the TLS flags and every node's files, and returns
// each node's TLS (nil for all without -tls-cert). It refuses partial
// flags, -plaintext with TLS, a cluster without -tls-ca and bad files.
func natsFilesTLS(nodes int, hosts []string, cert, key, ca, routeCert, routeKey string, plaintext bool) (func(int) *broker.NATSTLS, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("cloud: broker nats-files: "+format, args...)
	}
	if cert == "" {
		if key != "" || ca != "" || routeCert != "" || routeKey != "" {
			return nil, bad("-tls-key, -tls-ca, -route-cert and -route-key need -tls-cert")
		}
		return func(int) *broker.NATSTLS { return nil }, nil
	}
	if plaintext {
		return nil, bad("-plaintext with -tls-cert: choose one")
	}
	if key == "" {
		return nil, bad("-tls-cert needs -tls-key")
	}
	if (routeCert == "") != (routeKey == "") {
		return nil, bad("-route-cert and -route-key: give both or neither")
	}
	if nodes > 1 && ca == "" {
		return nil, bad("-tls-ca missing: the routes between nodes verify each other's certificate against it")
	}
	abs := func(s string) string {
		if s == "" {
			return ""
		}
		a, err := filepath.Abs(s)
		if err != nil {
			return s
		}
		return a
	}
	ts := make([]*broker.NATSTLS, nodes)
	for i := range nodes {
		sub := func(s string) string { return abs(strings.ReplaceAll(s, "{node}", "n"+strconv.Itoa(i))) }
		ts[i] = &broker.NATSTLS{CertFile: sub(cert), KeyFile: sub(key), CAFile: abs(ca), RouteCertFile: sub(routeCert), RouteKeyFile: sub(routeKey)}
		routeHost := hosts[i]
		if nodes == 1 {
			routeHost = ""
		}
		if err := ts[i].CheckFiles(hosts[i], routeHost); err != nil {
			return nil, bad("node n%d: %v", i, err)
		}
	}
	return func(i int) *broker.NATSTLS { return ts[i] }, nil
}
