package clusterfault

import (
	"fmt"
	"path/filepath"
	"strings"

	"beaconvend/cloud/broker/natscluster"
	"beaconvend/cloud/internal/atomicfile"
)

// natsBrokers is a three-node NATS cluster, each node its own
// nats-server process (SIGKILLed and restarted on its store). The nodes
// trust an auth callout issuer whose seed and auth password are written
// here as `cloud broker nats-files` writes them; the cloud instances run
// the responders (broker.nats_auth, two each, backed by their store), so
// killing an instance also kills its responders, as in production.
type natsBrokers struct {
	c                *natscluster.Cluster
	seedFile, pwFile string
}

func startNATS(dir string) (brokers, error) {
	c, err := natscluster.StartProcs(natscluster.Options{Nodes: 3, Dir: filepath.Join(dir, "nats"), Auth: &natscluster.Auth{External: true}})
	if err != nil {
		return nil, fmt.Errorf("clusterfault: nats cluster: %w", err)
	}
	n := &natsBrokers{c: c, seedFile: filepath.Join(dir, "auth-issuer.seed"), pwFile: filepath.Join(dir, "auth-user.password")}
	for _, f := range []struct {
		path string
		data []byte
	}{{n.seedFile, []byte(string(c.IssuerSeed))}, {n.pwFile, []byte(c.AuthPassword)}} {
		if err := atomicfile.Write(f.path, append(f.data, '\n')); err != nil {
			c.Close()
			return nil, fmt.Errorf("clusterfault: nats auth secrets: %w", err)
		}
	}
	return n, nil
}

func (n *natsBrokers) addrs() []string {
	var out []string
	for _, u := range n.c.MQTTURLs {
		out = append(out, strings.TrimPrefix(u, "tcp://"))
	}
	return out
}

func (n *natsBrokers) kill(i int) error    { return n.c.Kill(i) }
func (n *natsBrokers) restart(i int) error { return n.c.Restart(i) }
func (n *natsBrokers) close()              { n.c.Close() }

func (n *natsBrokers) pids() []int {
	var out []int
	for i := range n.c.MQTTURLs {
		if p := n.c.Pid(i); p > 0 {
			out = append(out, p)
		}
	}
	return out
}

// cloudConfig names the cluster to the cloud: its NATS-native consumers
// (uplinks from JetStream) use nats_urls, and so do its auth callout
// responders (nats_auth); commands go through the MQTT url given on the
// command line.
func (n *natsBrokers) cloudConfig() string {
	var b strings.Builder
	b.WriteString("development: true\npayments:\n  channels:\n    - name: sandbox_card\nbroker:\n  kind: nats\n  nats_urls:\n")
	for _, u := range n.c.NATSURLs {
		fmt.Fprintf(&b, "    - %s\n", u)
	}
	fmt.Fprintf(&b, "  nats_auth:\n    issuer_seed_file: %s\n    password_file: %s\n    responders: 2\n", n.seedFile, n.pwFile)
	return b.String()
}
