package natscluster_test

import (
	"bufio"
	"bytes"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"beaconvend/cloud/broker"
	"beaconvend/cloud/broker/brokertest"
	"beaconvend/cloud/broker/natscluster"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// logHas reports whether a line of w holds every one of parts.
func logHas(w *syncBuf, parts ...string) bool {
	for line := range strings.Lines(w.String()) {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}

// routePeers names the nodes node s has routes to.
func routePeers(t *testing.T, s *server.Server) []string {
	t.Helper()
	rz, err := s.Routez(nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range rz.Routes {
		if !slices.Contains(names, r.RemoteName) {
			names = append(names, r.RemoteName)
		}
	}
	slices.Sort(names)
	return names
}

// joinNode starts one more in-process node whose only route is the
// cluster's node 0, with the TLS files tf, logging to w.
func joinNode(t *testing.T, c *natscluster.Cluster, name string, tf *broker.NATSTLS, w *syncBuf) *server.Server {
	t.Helper()
	ports := make([]int, 3)
	for i := range ports {
		ports[i] = brokertest.FreePort(t)
	}
	dir := t.TempDir()
	own := "127.0.0.1:" + strconv.Itoa(ports[1])
	n := broker.NATSNode{Name: name, Listen: "127.0.0.1:" + strconv.Itoa(ports[0]), ClusterListen: own,
		MQTTListen: "127.0.0.1:" + strconv.Itoa(ports[2]), Routes: []string{c.Server(0).ClusterAddr().String(), own},
		StoreDir: filepath.Join(dir, "js"), TLS: tf}
	if err := (broker.NATSFiles{Dir: dir, Nodes: []broker.NATSNode{n}}).Write(); err != nil {
		t.Fatal(err)
	}
	o, err := server.ProcessConfigFile(filepath.Join(dir, name, broker.NATSConfFile))
	if err != nil {
		t.Fatal(err)
	}
	o.NoSigs = true
	s, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	s.SetLoggerV2(natscluster.NewLogger(w, name), false, false, false)
	go s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

// TestClusterTLSRoutesMutual: with TLS the nodes route to each other
// over mutual TLS. A node presenting a certificate of another CA (while
// trusting the cluster's, so only the cluster's check can stop it) is
// refused by the node it dials, and a plain-TCP peer on the route port
// is never answered; a node with a certificate of the cluster's CA,
// started the same way, joins.
func TestClusterTLSRoutesMutual(t *testing.T) {
	p := brokertest.NewPKI(t)
	cert, key := p.NodeCert(t, "n")
	var log syncBuf
	c := natscluster.Start(t, natscluster.Options{Nodes: 3, Log: &log,
		TLS: &broker.NATSTLS{CertFile: cert, KeyFile: key, CAFile: p.CAFile}})
	for i := range 3 {
		var want []string
		for j := range 3 {
			if j != i {
				want = append(want, "n"+strconv.Itoa(j))
			}
		}
		if got := routePeers(t, c.Server(i)); !slices.Equal(got, want) {
			t.Fatalf("n%d routes to %v, want %v", i, got, want)
		}
	}

	other := brokertest.NewPKI(t)
	icert, ikey := other.NodeCert(t, "intruder")
	both := filepath.Join(t.TempDir(), "both-cas.pem")
	a, _ := os.ReadFile(other.CAFile)
	b, _ := os.ReadFile(p.CAFile)
	if err := os.WriteFile(both, append(a, b...), 0o600); err != nil {
		t.Fatal(err)
	}
	var ilog syncBuf
	intruder := joinNode(t, c, "intruder", &broker.NATSTLS{CertFile: icert, KeyFile: ikey, CAFile: both}, &ilog)
	deadline := time.Now().Add(30 * time.Second)
	for !logHas(&log, "TLS route handshake error", "CN=intruder") {
		if time.Now().After(deadline) {
			t.Fatalf("node 0 never refused the intruder's certificate; cluster log:\n%s\nintruder log:\n%s", log.String(), ilog.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := intruder.NumRoutes(); n != 0 {
		t.Errorf("intruder has %d routes", n)
	}
	if got := routePeers(t, c.Server(0)); slices.Contains(got, "intruder") {
		t.Errorf("n0 routes to %v", got)
	}

	addr := c.Server(1).ClusterAddr().String()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	// The node expects a TLS handshake first: a CONNECT and PING in clear
	// get no PONG (nor a plain INFO), and the node logs the refusal.
	_, _ = conn.Write([]byte(`CONNECT {"verbose":false,"name":"plain"}` + "\r\nPING\r\n"))
	r := bufio.NewReader(conn)
	var got strings.Builder
	for {
		line, err := r.ReadString('\n')
		got.WriteString(line)
		if strings.Contains(line, "PONG") || (strings.HasPrefix(line, "INFO ") && !strings.Contains(line, `"tls_required":true`)) {
			t.Fatalf("a plain peer on the route port got %q", got.String())
		}
		if err != nil {
			break
		}
	}
	for !logHas(&log, conn.LocalAddr().String()+" - ", "TLS route handshake error") {
		if time.Now().After(deadline) {
			t.Fatalf("no TLS handshake error logged for the plain peer %s; log:\n%s", conn.LocalAddr(), log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	var glog syncBuf
	gcert, gkey := p.NodeCert(t, "good")
	good := joinNode(t, c, "good", &broker.NATSTLS{CertFile: gcert, KeyFile: gkey, CAFile: p.CAFile}, &glog)
	for !slices.Contains(routePeers(t, good), "n0") {
		if time.Now().After(deadline) {
			t.Fatalf("a node of the cluster's CA did not join; its log:\n%s", glog.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
