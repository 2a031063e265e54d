package clusterfault

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"beaconvend/cloud/broker"
	"beaconvend/cloud/broker/natscluster"
	"beaconvend/cloud/store"
)

// natsBrokers is a three-node NATS cluster, each node its own
// nats-server process (SIGKILLed and restarted on its store), with two
// auth-callout responders (cloud/broker/natsauth) looking devices up in
// the cloud's store as the embedded broker does.
type natsBrokers struct {
	c *natscluster.Cluster
}

func startNATS(cfg Config, st *store.Store, cloudPassword string, dir string) (brokers, error) {
	creds := broker.CredentialsFunc(func(ctx context.Context, id string) (broker.Credential, error) {
		d, err := st.GetDevice(ctx, id)
		if err != nil {
			return broker.Credential{}, err
		}
		return broker.Credential{PasswordHash: d.MQTTHash, Enabled: d.State != store.DeviceDisabled}, nil
	})
	c, err := natscluster.StartProcs(natscluster.Options{Nodes: 3, Dir: filepath.Join(dir, "nats"),
		Auth: &natscluster.Auth{Credentials: creds, CloudPassword: cloudPassword, Responders: 2}})
	if err != nil {
		return nil, fmt.Errorf("clusterfault: nats cluster: %w", err)
	}
	return &natsBrokers{c: c}, nil
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
// (uplinks from JetStream) use nats_urls; commands go through the MQTT
// url given on the command line.
func (n *natsBrokers) cloudConfig() string {
	var b strings.Builder
	b.WriteString("development: true\npayments:\n  channels:\n    - name: sandbox_card\nbroker:\n  kind: nats\n  nats_urls:\n")
	for _, u := range n.c.NATSURLs {
		fmt.Fprintf(&b, "    - %s\n", u)
	}
	return b.String()
}
