package simdev

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"beaconvend/cloud/broker"
	"beaconvend/cloud/broker/natscluster"
	"beaconvend/cloud/store"
)

// natsBench is the fleet benchmark's "nats-cluster" broker: three
// nats-server processes (natscluster.StartProcs) with JetStream, their
// MQTT listeners and two auth-callout responders answering from the
// store's device credentials, as `cloud serve` does for its embedded
// broker.
type natsBench struct {
	c   *natscluster.Cluster
	st  *store.Store
	dir string
}

func startNATSBench(ctx context.Context, dsn, cloudPassword, dir string) (*natsBench, error) {
	st, err := store.Open(ctx, dsn, &store.Opts{MaxOpenConns: 4})
	if err != nil {
		return nil, err
	}
	creds := broker.CredentialsFunc(func(ctx context.Context, id string) (broker.Credential, error) {
		d, err := st.GetDevice(ctx, id)
		if err != nil {
			return broker.Credential{}, err
		}
		return broker.Credential{PasswordHash: d.MQTTHash, Enabled: d.State != store.DeviceDisabled}, nil
	})
	c, err := natscluster.StartProcs(natscluster.Options{Nodes: 3, Dir: dir,
		Auth: &natscluster.Auth{Credentials: creds, CloudPassword: cloudPassword, Responders: 2}})
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("simdev: nats cluster: %w", err)
	}
	return &natsBench{c: c, st: st, dir: dir}, nil
}

func (n *natsBench) close() {
	n.c.Close()
	n.st.Close()
}

// cloudConfig writes the cloud's configuration naming the cluster
// (broker.kind nats, its nats:// URLs) into dir and returns its path;
// the MQTT url and the rest come from the command line.
func (n *natsBench) cloudConfig(dir string) (string, error) {
	var b strings.Builder
	b.WriteString("development: true\npayments:\n  channels:\n    - name: sandbox_card\nbroker:\n  kind: nats\n  nats_urls:\n")
	for _, u := range n.c.NATSURLs {
		fmt.Fprintf(&b, "    - %s\n", u)
	}
	p := filepath.Join(dir, "cloud-nats.yaml")
	return p, os.WriteFile(p, []byte(b.String()), 0o600)
}

func (n *natsBench) pids() []int {
	var out []int
	for i := range n.c.MQTTURLs {
		if p := n.c.Pid(i); p > 0 {
			out = append(out, p)
		}
	}
	return out
}

// deviceURL is the broker URL device i connects to: on the NATS cluster
// the devices spread over the nodes.
func (f *fleet) deviceURL(i int) string {
	if f.nats != nil {
		return f.nats.c.MQTTURLs[i%len(f.nats.c.MQTTURLs)]
	}
	return f.mqttURL
}

// brokerPIDs returns the broker processes' PIDs, nil for the embedded
// broker (inside the cloud).
func (f *fleet) brokerPIDs() func() []int {
	switch {
	case f.mosq != nil:
		return PIDs(f.mosq.pid)
	case f.nats != nil:
		return f.nats.pids
	}
	return nil
}

// rssOf is the summed resident memory of pids.
func rssOf(pids []int) uint64 {
	var sum uint64
	for _, p := range pids {
		if st, err := ReadProc(p); err == nil {
			sum += st.RSS
		}
	}
	return sum
}

// StartPlainNATSCluster starts a bare three-node NATS cluster (JetStream,
// MQTT listeners, no auth) as processes under dir and returns node 0's
// MQTT URL: the yardstick of the nats-cluster deployment's ingest.
func StartPlainNATSCluster(dir string) (url string, stop func() error, err error) {
	c, err := natscluster.StartProcs(natscluster.Options{Nodes: 3, Dir: dir})
	if err != nil {
		return "", nil, err
	}
	return c.MQTTURLs[0], func() error { c.Close(); return nil }, nil
}
