package broker_test

import (
	"crypto/tls"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/broker"
	"beaconvend/cloud/broker/brokertest"
	"beaconvend/cloud/broker/natscluster"
)

// natsServerCheck runs the real `nats-server -t -c conf` (built from the
// module) and fails the test when it refuses the file.
func natsServerCheck(t *testing.T, conf string) {
	t.Helper()
	bin, err := natscluster.Binary()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-t", "-c", conf).CombinedOutput(); err != nil {
		t.Fatalf("nats-server -t -c %s: %v\n%s", conf, err, out)
	}
}

func tlsNodes(t *testing.T, dir string, p *brokertest.PKI) []broker.NATSNode {
	cert, key := p.NodeCert(t, "n")
	ns := natsNodes(t, dir)
	for i := range ns {
		ns[i].TLS = &broker.NATSTLS{CertFile: cert, KeyFile: key, CAFile: p.CAFile}
	}
	return ns
}

// With TLS, the files nats-server reads put the node's certificate on
// the client and MQTT listeners and mutual TLS (verify) on the routes;
// the real nats-server accepts each.
func TestNATSFilesTLS(t *testing.T) {
	dir := t.TempDir()
	p := brokertest.NewPKI(t)
	if err := (broker.NATSFiles{Dir: dir, Nodes: tlsNodes(t, dir, p)}).Write(); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"n0", "n1", "n2"} {
		path := filepath.Join(dir, n, broker.NATSConfFile)
		natsServerCheck(t, path)
		o, err := server.ProcessConfigFile(path)
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		if o.TLSConfig == nil || o.AllowNonTLS || o.MQTT.TLSConfig == nil || o.Cluster.TLSConfig == nil ||
			o.Cluster.TLSConfig.ClientAuth != tls.RequireAndVerifyClientCert || o.Cluster.TLSConfig.ClientCAs == nil {
			t.Fatalf("%s: client tls %v (non-tls allowed %v), mqtt tls %v, route tls %+v", n, o.TLSConfig != nil, o.AllowNonTLS,
				o.MQTT.TLSConfig != nil, o.Cluster.TLSConfig)
		}
	}
	// A separate route certificate goes on the routes only.
	ns := tlsNodes(t, dir, p)
	rc, rk := p.NodeCert(t, "route")
	ns[0].TLS.RouteCertFile, ns[0].TLS.RouteKeyFile = rc, rk
	var b strings.Builder
	if _, err := ns[0].WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	if strings.Count(b.String(), rc) != 1 || strings.Count(b.String(), ns[0].TLS.CertFile) != 2 {
		t.Errorf("route certificate not on the routes alone:\n%s", b.String())
	}
}

// Off loopback, a node without TLS is refused unless plaintext is stated;
// bad TLS paths are refused.
func TestNATSFilesTLSRefusals(t *testing.T) {
	dir := t.TempDir()
	p := brokertest.NewPKI(t)
	off := natsNodes(t, dir)
	for i := range off {
		off[i].MQTTListen = "10.0.0.1:1883"
	}
	err := (broker.NATSFiles{Dir: dir, Nodes: off}).Write()
	if vend.CodeOf(err) != broker.ErrOptions.Code || !strings.Contains(err.Error(), "10.0.0.1:1883 without TLS") {
		t.Errorf("plain node on 10.0.0.1: err = %v, want refused", err)
	}
	if _, e := os.Stat(filepath.Join(dir, "n0")); e == nil {
		t.Error("a refused cluster wrote files")
	}
	if err := (broker.NATSFiles{Dir: dir, Nodes: off, Plaintext: true}).Write(); err != nil {
		t.Errorf("plaintext stated: %v", err)
	}
	withTLS := tlsNodes(t, dir, p)
	for i := range withTLS {
		withTLS[i].MQTTListen = "10.0.0.1:1883"
	}
	if err := (broker.NATSFiles{Dir: dir, Nodes: withTLS}).Write(); err != nil {
		t.Errorf("TLS node on 10.0.0.1: %v", err)
	}
	for name, edit := range map[string]func(*broker.NATSTLS){
		"relative cert":       func(x *broker.NATSTLS) { x.CertFile = "node.pem" },
		"no key":              func(x *broker.NATSTLS) { x.KeyFile = "" },
		"no ca on a cluster":  func(x *broker.NATSTLS) { x.CAFile = "" },
		"route cert, no key":  func(x *broker.NATSTLS) { x.RouteCertFile = x.CertFile },
		"quote in route cert": func(x *broker.NATSTLS) { x.RouteCertFile, x.RouteKeyFile = "/x\"\ninclude /y", x.KeyFile },
	} {
		n := tlsNodes(t, dir, p)[0]
		edit(n.TLS)
		if _, err := n.WriteTo(&strings.Builder{}); vend.CodeOf(err) != broker.ErrOptions.Code {
			t.Errorf("%s: err = %v, want ErrOptions", name, err)
		}
	}
	single := tlsNodes(t, dir, p)[0]
	single.Routes, single.TLS.CAFile = nil, ""
	if _, err := single.WriteTo(&strings.Builder{}); err != nil {
		t.Errorf("single node without a CA: %v", err)
	}
}

// CheckFiles finds before deployment what a node would only find at a
// handshake: a key of another certificate, a certificate of another CA,
// one not naming the host, a route certificate that cannot be a client.
func TestNATSTLSCheckFiles(t *testing.T) {
	p := brokertest.NewPKI(t)
	other := brokertest.NewPKI(t)
	cert, key := p.NodeCert(t, "n0")
	good := broker.NATSTLS{CertFile: cert, KeyFile: key, CAFile: p.CAFile}
	if err := good.CheckFiles("127.0.0.1", "localhost"); err != nil {
		t.Fatalf("good files: %v", err)
	}
	ocert, okey := other.NodeCert(t, "n0")
	for name, c := range map[string]struct {
		tls         broker.NATSTLS
		host, route string
		want        string
	}{
		"key of another cert":    {broker.NATSTLS{CertFile: cert, KeyFile: p.ServerKey, CAFile: p.CAFile}, "127.0.0.1", "", "private key does not match"},
		"another CA":             {broker.NATSTLS{CertFile: ocert, KeyFile: okey, CAFile: p.CAFile}, "127.0.0.1", "", "unknown authority"},
		"host not named":         {good, "10.1.2.3", "", "10.1.2.3"},
		"route host not named":   {good, "127.0.0.1", "nats-2.example", "nats-2.example"},
		"server-only route cert": {broker.NATSTLS{CertFile: cert, KeyFile: key, CAFile: p.CAFile, RouteCertFile: p.ServerCert, RouteKeyFile: p.ServerKey}, "127.0.0.1", "127.0.0.1", "as a client certificate"},
		"missing ca":             {broker.NATSTLS{CertFile: cert, KeyFile: key, CAFile: filepath.Join(t.TempDir(), "ca.pem")}, "127.0.0.1", "", "no such file"},
		"ca not PEM":             {broker.NATSTLS{CertFile: cert, KeyFile: key, CAFile: key}, "127.0.0.1", "", "no PEM certificate"},
	} {
		err := c.tls.CheckFiles(c.host, c.route)
		if vend.CodeOf(err) != broker.ErrOptions.Code || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want ErrOptions with %q", name, err, c.want)
		}
	}
}
