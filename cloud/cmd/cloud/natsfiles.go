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

// natsFilesCommand is `cloud broker nats-files`: it writes each node's
// nats-server configuration of a cluster (routes, JetStream store, MQTT
// listener with stream_replicas, the raised consumer limit, session
// expiry, auth callout) under -out, and the responders' secrets.
func natsFilesCommand(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cloud broker nats-files", flag.ContinueOnError)
	fs.SetOutput(stderr)
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
	f := broker.NATSFiles{Dir: dir}
	var mqttURLs, natsURLs []string
	for i := range *nodes {
		name := "n" + strconv.Itoa(i)
		f.Nodes = append(f.Nodes, broker.NATSNode{Name: name, Listen: hp(i, *clientPort), ClusterListen: hp(i, *clusterPort),
			MQTTListen: hp(i, *mqttPort), Routes: routes, StoreDir: filepath.Join(*store, name), StreamReplicas: *replicas,
			MaxConsumers: *maxc, SessionExpiry: *expiry, Auth: &broker.NATSAuth{Issuer: pub, PasswordHash: string(h)}})
		mqttURLs = append(mqttURLs, "tcp://"+hp(i, *mqttPort))
		natsURLs = append(natsURLs, "nats://"+hp(i, *clientPort))
	}
	if err := f.Write(); err != nil {
		return err
	}
	b, _ := json.Marshal(map[string]any{"dir": dir, "nodes": *nodes, "mqtt_urls": mqttURLs, "nats_urls": natsURLs,
		"issuer": pub, "issuer_seed_file": filepath.Join(dir, natsIssuerSeedFile), "auth_password_file": filepath.Join(dir, natsAuthPassFile)})
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
