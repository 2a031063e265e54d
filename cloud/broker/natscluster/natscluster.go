package natscluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
	"golang.org/x/crypto/bcrypt"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/cloud/broker"
	"beaconvend/cloud/broker/natsauth"
)

// ServerVersion is the nats-server module StartProcs builds.
const ServerVersion = "v2.15.3"

// Options configure a cluster. The zero Options is three open nodes.
type Options struct {
	Nodes          int           // default 3
	Dir            string        // where node stores, configs and logs go; default a temporary directory
	StreamReplicas int           // 0: 3 from three nodes, else the node count
	MaxConsumers   int           // per-stream consumer limit; 0: broker.DefaultNATSMaxConsumers
	SessionExpiry  time.Duration // 0: broker.DefaultNATSSessionExpiry
	Auth           *Auth         // nil: no auth callout, every client in the fleet account
	// TLS gives every node these files: TLS on the client and MQTT
	// listeners (MQTTURLs ssl://, NATSURLs tls://) and mutual TLS on the
	// routes. The certificate must name 127.0.0.1 and serve as a server
	// and a client; CAFile is its CA. nil: plain TCP.
	TLS *broker.NATSTLS
	// Log, when set, receives the in-process nodes' logs (Start) or each
	// node process's output (StartProcs); default: nothing in this
	// process, a node.log in the node's directory for a process.
	Log io.Writer
}

// Auth wires the auth callout: the nodes trust a fresh issuer key and
// Responders responders ([natsauth.Responder]) answer with it.
type Auth struct {
	Credentials   broker.Credentials // required
	Operators     natsauth.Operators // optional
	CloudUser     string             // default broker.DefaultCloudUser
	CloudPassword string             // required: the cloud's password (hashed here)
	Tree          mqttapi.Tree
	Responders    int // default 2
	// External: the nodes trust the issuer, but no responder runs here
	// (Credentials and CloudPassword are not needed): whoever runs them,
	// `cloud serve` with broker.nats_auth, takes Cluster.IssuerSeed and
	// AuthPassword.
	External bool
}

// Cluster is a running cluster.
type Cluster struct {
	MQTTURLs []string // tcp://127.0.0.1:port of each node's MQTT listener
	NATSURLs []string // nats://127.0.0.1:port of each node's client listener
	HTTPURLs []string // http://127.0.0.1:port of each node's monitoring endpoint
	// ClientTLS trusts Options.TLS's CA, for clients of the listeners
	// (the responders use it); nil without Options.TLS.
	ClientTLS *tls.Config

	// Auth side, empty without Options.Auth.
	Responders   []*natsauth.Responder
	AuthPassword string // the broker.NATSAuthUser password
	IssuerSeed   []byte // the account seed the nodes trust as auth callout issuer
	CloudUser    string

	Dir string

	o        Options
	confs    []string
	procs    bool
	bin      string
	mu       sync.Mutex
	servers  []*server.Server // Start
	cmds     []*exec.Cmd      // StartProcs
	waits    []chan struct{}
	ownDir   bool
	closed   bool
	respOpts natsauth.Options
}

// Start runs the cluster in this process; it is closed at the end of
// the test. It fails the test when a node does not come up.
func Start(t testing.TB, o Options) *Cluster {
	t.Helper()
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	c, err := setup(o, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	for i := range c.confs {
		if err := c.startNode(i); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.ready(); err != nil {
		t.Fatal(err)
	}
	return c
}

// StartProcs runs each node as a nats-server process built from the
// module (once, into the user cache directory). Close stops them.
func StartProcs(o Options) (*Cluster, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	c, err := setup(o, true)
	if err != nil {
		return nil, err
	}
	c.bin = bin
	for i := range c.confs {
		if err := c.startNode(i); err != nil {
			c.Close()
			return nil, err
		}
	}
	if err := c.ready(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

var buildMu sync.Mutex

// Binary returns the path of nats-server ServerVersion built from the
// module into the user cache directory (built on first use, with the go
// command found in PATH, from the current module).
func Binary() (string, error) {
	buildMu.Lock()
	defer buildMu.Unlock()
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	bin := filepath.Join(cache, "beaconvend", "nats-server-"+ServerVersion)
	if fi, err := os.Stat(bin); err == nil && fi.Mode().IsRegular() {
		return bin, nil
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", fmt.Errorf("natscluster: %w", err)
	}
	tmp := fmt.Sprintf("%s.%d.tmp", bin, os.Getpid())
	cmd := exec.Command("go", "build", "-o", tmp, "github.com/nats-io/nats-server/v2")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("natscluster: go build nats-server: %v: %s", err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", fmt.Errorf("natscluster: %w", err)
	}
	return bin, nil
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("natscluster: free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func setup(o Options, procs bool) (*Cluster, error) {
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	if o.Nodes < 1 || o.Nodes > 9 {
		return nil, fmt.Errorf("natscluster: %d nodes: want 1-9", o.Nodes)
	}
	c := &Cluster{o: o, procs: procs}
	if o.Dir == "" {
		d, err := os.MkdirTemp("", "natscluster-")
		if err != nil {
			return nil, fmt.Errorf("natscluster: %w", err)
		}
		o.Dir, c.ownDir = d, true
		c.o.Dir = d
	}
	c.Dir = o.Dir
	ports, err := freePorts(4 * o.Nodes)
	if err != nil {
		return nil, err
	}
	addr := func(p int) string { return "127.0.0.1:" + strconv.Itoa(p) }
	var routes []string
	for i := range o.Nodes {
		if o.Nodes == 1 {
			break // a single server: no cluster block
		}
		routes = append(routes, addr(ports[4*i+1]))
	}
	var auth *broker.NATSAuth
	if o.Auth != nil {
		if !o.Auth.External && (o.Auth.Credentials == nil || o.Auth.CloudPassword == "") {
			return nil, errors.New("natscluster: auth: credentials and cloud password are required")
		}
		kp, err := nkeys.CreateAccount()
		if err != nil {
			return nil, fmt.Errorf("natscluster: %w", err)
		}
		seed, _ := kp.Seed()
		pub, _ := kp.PublicKey()
		pw := "auth-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			return nil, fmt.Errorf("natscluster: %w", err)
		}
		auth = &broker.NATSAuth{Issuer: pub, PasswordHash: string(h)}
		c.IssuerSeed, c.AuthPassword = seed, pw
		c.CloudUser = o.Auth.CloudUser
		if c.CloudUser == "" {
			c.CloudUser = broker.DefaultCloudUser
		}
	}
	mqttScheme, natsScheme := "tcp://", "nats://"
	if o.TLS != nil {
		pem, err := os.ReadFile(o.TLS.CAFile)
		if err != nil {
			return nil, fmt.Errorf("natscluster: tls ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("natscluster: tls ca %s: no PEM certificate", o.TLS.CAFile)
		}
		c.ClientTLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		mqttScheme, natsScheme = "ssl://", "tls://"
	}
	var nodes []broker.NATSNode
	for i := range o.Nodes {
		name := "n" + strconv.Itoa(i)
		n := broker.NATSNode{
			Name: name, Listen: addr(ports[4*i]), ClusterListen: addr(ports[4*i+1]), MQTTListen: addr(ports[4*i+2]),
			HTTPListen: addr(ports[4*i+3]), Routes: routes, StoreDir: filepath.Join(o.Dir, name, "js"),
			StreamReplicas: o.StreamReplicas, MaxConsumers: o.MaxConsumers, SessionExpiry: o.SessionExpiry,
			MaxMemory: 64 << 20, MaxStore: 1 << 30, Auth: auth, TLS: o.TLS,
		}
		nodes = append(nodes, n)
		c.MQTTURLs = append(c.MQTTURLs, mqttScheme+n.MQTTListen)
		c.NATSURLs = append(c.NATSURLs, natsScheme+n.Listen)
		c.HTTPURLs = append(c.HTTPURLs, "http://"+n.HTTPListen)
		c.confs = append(c.confs, filepath.Join(o.Dir, name, broker.NATSConfFile))
	}
	if err := (broker.NATSFiles{Dir: o.Dir, Nodes: nodes}).Write(); err != nil {
		return nil, err
	}
	c.servers = make([]*server.Server, o.Nodes)
	c.cmds = make([]*exec.Cmd, o.Nodes)
	c.waits = make([]chan struct{}, o.Nodes)
	return c, nil
}

func (c *Cluster) logTo(i int) (io.Writer, error) {
	if c.o.Log != nil {
		return c.o.Log, nil
	}
	f, err := os.OpenFile(filepath.Join(c.o.Dir, "n"+strconv.Itoa(i), "node.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("natscluster: %w", err)
	}
	return f, nil
}

func (c *Cluster) startNode(i int) error {
	if c.procs {
		w, err := c.logTo(i)
		if err != nil {
			return err
		}
		cmd := exec.Command(c.bin, "-c", c.confs[i])
		cmd.Stdout, cmd.Stderr = w, w
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("natscluster: start node %d: %w", i, err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		c.mu.Lock()
		c.cmds[i], c.waits[i] = cmd, done
		c.mu.Unlock()
		return nil
	}
	opts, err := server.ProcessConfigFile(c.confs[i])
	if err != nil {
		return fmt.Errorf("natscluster: node %d config: %w", i, err)
	}
	opts.NoSigs = true
	s, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("natscluster: node %d: %w", i, err)
	}
	if c.o.Log != nil {
		s.SetLoggerV2(newLogger(c.o.Log, "n"+strconv.Itoa(i)), false, false, false)
	}
	go s.Start()
	c.mu.Lock()
	c.servers[i] = s
	c.mu.Unlock()
	return nil
}

// ready waits until every running node answers /healthz (JetStream
// current) and, with auth, the responders are connected.
func (c *Cluster) ready() error {
	deadline := time.Now().Add(90 * time.Second)
	for i := range c.confs {
		if err := c.WaitHealthy(i, time.Until(deadline)); err != nil {
			return err
		}
	}
	if c.o.Auth != nil && !c.o.Auth.External && len(c.Responders) == 0 {
		a := c.o.Auth
		h, err := broker.HashPassword(a.CloudPassword)
		if err != nil {
			return err
		}
		c.respOpts = natsauth.Options{URLs: c.NATSURLs, Password: c.AuthPassword, TLS: c.ClientTLS, IssuerSeed: c.IssuerSeed,
			Tree: a.Tree, Credentials: a.Credentials, Operators: a.Operators, CloudUser: c.CloudUser, CloudPasswordHash: h}
		n := a.Responders
		if n == 0 {
			n = 2
		}
		for range n {
			if _, err := c.AddResponder(); err != nil {
				return err
			}
		}
	}
	if c.o.Auth != nil && c.o.Auth.External {
		return nil // no responder here: nobody to admit the warm-up client
	}
	for i := range c.confs {
		if err := c.warmMQTT(i, deadline); err != nil {
			return err
		}
	}
	return nil
}

// warmMQTT connects one MQTT client to node i, retrying until deadline.
// A node sets up its fleet account's MQTT streams on the first MQTT
// connect (JetStream requests bounded by js_api_timeout) and drops that
// client when they time out: on a loaded machine the first connect after
// a start has been seen to wait 15 s and end in EOF. A board retries;
// the cluster is ready for tests once every node has done that once.
func (c *Cluster) warmMQTT(i int, deadline time.Time) error {
	o := paho.NewClientOptions().AddBroker(c.MQTTURLs[i]).SetClientID("_warm-n" + strconv.Itoa(i)).
		SetCleanSession(true).SetAutoReconnect(false).SetConnectTimeout(25 * time.Second)
	if c.o.Auth != nil {
		o.SetUsername(c.CloudUser).SetPassword(c.o.Auth.CloudPassword)
	}
	if c.ClientTLS != nil {
		o.SetTLSConfig(c.ClientTLS)
	}
	var last error
	for time.Now().Before(deadline) {
		cl := paho.NewClient(o)
		tok := cl.Connect()
		if !tok.WaitTimeout(30 * time.Second) {
			last = errors.New("connect: timeout")
		} else if last = tok.Error(); last == nil {
			cl.Disconnect(100)
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("natscluster: node %d: no MQTT connect: %v", i, last)
}

// AddResponder starts one more auth callout responder; responder i
// connects to node i mod N first, so the responders spread over nodes.
func (c *Cluster) AddResponder() (*natsauth.Responder, error) {
	o := c.respOpts
	k := len(c.Responders)
	o.Name = "beaconvend-auth-" + strconv.Itoa(k)
	k %= len(o.URLs)
	o.URLs = append(append([]string(nil), o.URLs[k:]...), o.URLs[:k]...)
	r, err := natsauth.Start(o)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.Responders = append(c.Responders, r)
	c.mu.Unlock()
	return r, nil
}

// WaitHealthy waits up to d for node i's /healthz to answer 200.
func (c *Cluster) WaitHealthy(i int, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.HTTPURLs[i]+"/healthz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("status %s", resp.Status)
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("natscluster: node %d not healthy: %v", i, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Kill stops node i at once: SIGKILL for a process, an immediate
// shutdown in this process (its store stays for Restart).
func (c *Cluster) Kill(i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i < 0 || i >= len(c.confs) {
		return fmt.Errorf("natscluster: no node %d", i)
	}
	if c.procs {
		cmd := c.cmds[i]
		if cmd == nil {
			return fmt.Errorf("natscluster: node %d is not running", i)
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			return fmt.Errorf("natscluster: kill node %d: %w", i, err)
		}
		<-c.waits[i]
		c.cmds[i] = nil
		return nil
	}
	s := c.servers[i]
	if s == nil {
		return fmt.Errorf("natscluster: node %d is not running", i)
	}
	s.Shutdown()
	s.WaitForShutdown()
	c.servers[i] = nil
	return nil
}

// Restart starts node i again on its store and ports and waits until it
// is healthy.
func (c *Cluster) Restart(i int) error {
	c.mu.Lock()
	running := c.procs && c.cmds[i] != nil || !c.procs && c.servers[i] != nil
	c.mu.Unlock()
	if running {
		return fmt.Errorf("natscluster: node %d is running", i)
	}
	if err := c.startNode(i); err != nil {
		return err
	}
	return c.WaitHealthy(i, 60*time.Second)
}

// Pid returns the process id of node i (StartProcs), 0 when it is not
// running or runs in this process.
func (c *Cluster) Pid(i int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.procs && c.cmds[i] != nil {
		return c.cmds[i].Process.Pid
	}
	return 0
}

// Server returns in-process node i (Start), nil otherwise.
func (c *Cluster) Server(i int) *server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.servers[i]
}

// Close stops the responders and every node, and removes the directory
// when it made it.
func (c *Cluster) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	rs := c.Responders
	c.mu.Unlock()
	for _, r := range rs {
		r.Close()
	}
	for i := range c.confs {
		c.mu.Lock()
		if c.procs && c.cmds[i] != nil {
			_ = c.cmds[i].Process.Signal(syscall.SIGTERM)
			select {
			case <-c.waits[i]:
			case <-time.After(10 * time.Second):
				_ = c.cmds[i].Process.Signal(syscall.SIGKILL)
				<-c.waits[i]
			}
			c.cmds[i] = nil
		}
		s := c.servers[i]
		c.servers[i] = nil
		c.mu.Unlock()
		if s != nil {
			s.Shutdown()
			s.WaitForShutdown()
		}
	}
	if c.ownDir {
		_ = os.RemoveAll(c.o.Dir)
	}
}
