package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"beaconvend/app-protocol/mqttapi"
	pb "beaconvend/app-protocol/provision"
	"beaconvend/cloud/broker"
	"beaconvend/cloud/broker/brokertest"
	"beaconvend/cloud/internal/simdev"
	"beaconvend/cloud/internal/svctest"
)

// syncBuffer is an output sink safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// siteMosquitto is Mosquitto started as root from the generated
// mosquitto.conf, dropping to its own user as a site broker does.
type siteMosquitto struct {
	cmd *exec.Cmd
	log *syncBuffer
	pid string // PID file
}

func (s *siteMosquitto) reloads() int { return strings.Count(s.log.String(), "Reloading config") }

// waitReloads waits until Mosquitto has logged n reloads, and a moment
// more for it to apply them to the connected clients.
func (s *siteMosquitto) waitReloads(t *testing.T, n int) {
	t.Helper()
	eventually(t, fmt.Sprintf("%d mosquitto reloads", n), func() bool { return s.reloads() >= n })
	time.Sleep(500 * time.Millisecond)
}

// bundleOf reads the bundle `device add` wrote into dir.
func bundleOf(t *testing.T, dir string) *pb.Bundle {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "bundle.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := pb.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// bundleClient connects as a board would from its bundle: the broker URL,
// username and password, and the bundle's CA as the only root.
func bundleClient(t *testing.T, b *pb.Bundle, clientID string) (paho.Client, error) {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(b.MQTT.CAPEM)) {
		t.Fatalf("%s: bundle CA does not parse", b.DeviceID)
	}
	return brokertest.Connect(t, brokertest.ClientOptions(b.MQTT.URL, clientID, b.MQTT.Username, b.MQTT.Password, &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
}

// copyTo writes src's content to dst, 0640 in group gid.
func copyTo(t *testing.T, src, dst string, gid int) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dst, 0, gid); err != nil {
		t.Fatal(err)
	}
}

// TestMosquittoReloadKeepsFleet provisions against a Mosquitto that runs
// as its own user, from the files `cloud device add -mosquitto-dir`
// writes: with the cloud, an existing device and an operator's read-only
// account connected, adding devices (each add reloads the broker with
// SIGHUP) keeps them connected, the new devices connect over TLS with
// their bundles, the operator account follows the added device, and a
// real controller configured from its bundle comes online over TLS. It
// ends with the defect as it was: the password file rewritten root-only,
// the same reload refuses the cloud.
func TestMosquittoReloadKeepsFleet(t *testing.T) {
	bin := brokertest.MosquittoPath(t)
	if os.Geteuid() != 0 {
		svctest.Missing(t, "root (to start Mosquitto that drops to its own user)", "run the suite as root, as CI does")
	}
	mu, err := user.Lookup("mosquitto")
	if err != nil {
		svctest.Missing(t, "the mosquitto user", "run scripts/mosquitto.sh (the Debian package makes it)")
	}
	uid, _ := strconv.Atoi(mu.Uid)
	gid, _ := strconv.Atoi(mu.Gid)

	base := t.TempDir()
	// Let the broker's user reach its directory under the test's temp dir.
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	data, out, mosq, persist := filepath.Join(base, "data"), filepath.Join(base, "out"), filepath.Join(base, "mosq"), filepath.Join(base, "persist")
	for _, d := range []string{mosq, persist} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(mosq, 0, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(persist, uid, gid); err != nil {
		t.Fatal(err)
	}
	pki := brokertest.NewPKI(t)
	copyTo(t, pki.CAFile, filepath.Join(mosq, "ca.crt"), gid)
	copyTo(t, pki.ServerCert, filepath.Join(mosq, "server.crt"), gid)
	copyTo(t, pki.ServerKey, filepath.Join(mosq, "server.key"), gid)
	tlsPort, plainPort := brokertest.FreePort(t), brokertest.FreePort(t)
	devURL := fmt.Sprintf("ssl://127.0.0.1:%d", tlsPort)
	cloudURL := fmt.Sprintf("tcp://127.0.0.1:%d", plainPort)
	pidFile := filepath.Join(base, "mosquitto.pid")
	site := []string{"-mqtt-url", devURL, "-mqtt-ca", pki.CAFile, "-mosquitto-dir", mosq, "-mosquitto-listen", fmt.Sprintf("127.0.0.1:%d", plainPort),
		"-mosquitto-persistence", persist}
	reload := append(append([]string(nil), site...), "-mosquitto-pid", pidFile)

	opA := runCLI(t, data, "operator", "add", "-name", "Site A", "-email", "ops@a.example", "-password-file", passwordFile(t, "site-a-password"))
	runCLI(t, data, "operator", "add", "-name", "Site B", "-email", "ops@b.example", "-password-file", passwordFile(t, "site-b-password"))
	runCLI(t, data, append([]string{"device", "add", "-id", "old-1", "-operator", "Site A", "-kind", "water", "-out", filepath.Join(out, "old-1")}, site...)...)

	conf, err := os.ReadFile(filepath.Join(mosq, "mosquitto.conf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{fmt.Sprintf("listener %d\ncertfile %s", tlsPort, filepath.Join(mosq, "server.crt")), fmt.Sprintf("listener %d 127.0.0.1\n", plainPort),
		"user mosquitto\n", "persistence true\n", "password_file " + filepath.Join(mosq, "passwords") + "\n"} {
		if !strings.Contains(string(conf), want) {
			t.Fatalf("mosquitto.conf lacks %q:\n%s", want, conf)
		}
	}

	s := &siteMosquitto{log: &syncBuffer{}, pid: pidFile}
	s.cmd = exec.Command(bin, "-c", filepath.Join(mosq, "mosquitto.conf"))
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { s.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			s.cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("mosquitto log:\n%s", s.log.String())
		}
	})
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(s.cmd.Process.Pid)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	eventually(t, "mosquitto listening", func() bool {
		return strings.Contains(s.log.String(), fmt.Sprintf("port %d", tlsPort)) && strings.Contains(s.log.String(), fmt.Sprintf("port %d", plainPort))
	})
	// It runs as its own user, not as root.
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil || !strings.Contains(string(st), fmt.Sprintf("Uid:\t%d\t", uid)) {
		t.Fatalf("mosquitto does not run as the mosquitto user (%v):\n%s", err, st)
	}

	// The fleet as it stands: the cloud (serve), a second cloud client
	// watching every telemetry, the old device over TLS.
	m := serveInProcess(t, "-data", data, "-broker", cloudURL)
	if err := m.Ingest.WaitSubscribed(t.Context()); err != nil {
		t.Fatal(err)
	}
	secret, err := os.ReadFile(filepath.Join(data, "mqtt-cloud.secret"))
	if err != nil {
		t.Fatal(err)
	}
	watch := &spy{}
	watcher := brokertest.MustConnect(t, brokertest.ClientOptions(cloudURL, "_cloud-watch", broker.DefaultCloudUser, strings.TrimSpace(string(secret)), nil))
	if err := brokertest.Done(watcher.Subscribe("bv/v1/dev/+/telemetry", 1, watch.handler)); err != nil {
		t.Fatal(err)
	}
	oldB := bundleOf(t, filepath.Join(out, "old-1"))
	old, err := bundleClient(t, oldB, "old-1")
	if err != nil {
		t.Fatalf("the existing device cannot connect over TLS from its bundle: %v", err)
	}

	// An operator's read-only account, made (and the broker reloaded)
	// while everything runs.
	pwFile := filepath.Join(base, "op-a.pass")
	cred := runCLI(t, data, append([]string{"operator", "broker-credentials", "-operator", "Site A", "-out", pwFile}, reload...)...)
	s.waitReloads(t, 1)
	opPass, err := os.ReadFile(pwFile)
	if err != nil || cred["username"] != broker.OperatorUser(opA["operator"]) {
		t.Fatalf("broker-credentials printed %v; password file: %v", cred, err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(oldB.MQTT.CAPEM))
	opSpy := &spy{}
	opc := brokertest.MustConnect(t, brokertest.ClientOptions(devURL, cred["username"]+"-sub", cred["username"], strings.TrimSpace(string(opPass)),
		&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
	if err := brokertest.Done(opc.Subscribe("bv/v1/dev/+/telemetry", 1, opSpy.handler)); err != nil {
		t.Fatal(err)
	}

	// Two devices added, each add reloading the broker.
	// (Mosquitto folds SIGHUPs that arrive before it handled the first
	// into one reload, so each add waits for its own.)
	n := s.reloads()
	runCLI(t, data, append([]string{"device", "add", "-id", "new-1", "-operator", "Site A", "-kind", "washer", "-out", filepath.Join(out, "new-1")}, reload...)...)
	s.waitReloads(t, n+1)
	runCLI(t, data, append([]string{"device", "add", "-id", "b-1", "-operator", "Site B", "-kind", "dryer", "-out", filepath.Join(out, "b-1")}, reload...)...)
	s.waitReloads(t, n+2)
	for _, f := range []string{"passwords", "acl"} {
		fi, err := os.Stat(filepath.Join(mosq, f))
		if err != nil || fi.Mode().Perm() != 0o640 || int(fi.Sys().(*syscall.Stat_t).Gid) != gid {
			t.Errorf("%s: %v %v, want 0640 in the mosquitto group", f, fi.Mode(), err)
		}
	}

	if !watcher.IsConnectionOpen() || !old.IsConnectionOpen() || !opc.IsConnectionOpen() {
		t.Fatalf("after the reloads: cloud watcher connected %v, old device %v, operator %v",
			watcher.IsConnectionOpen(), old.IsConnectionOpen(), opc.IsConnectionOpen())
	}
	if st := m.Ingest.Stats(); st.Connects != 1 || st.ConnectionLost != 0 {
		t.Errorf("the cloud's ingest: %d connects, %d lost; want 1, 0", st.Connects, st.ConnectionLost)
	}
	newB, bB := bundleOf(t, filepath.Join(out, "new-1")), bundleOf(t, filepath.Join(out, "b-1"))
	nc, err := bundleClient(t, newB, "new-1")
	if err != nil {
		t.Fatalf("the new device cannot connect over TLS from its bundle: %v", err)
	}
	bc, err := bundleClient(t, bB, "b-1")
	if err != nil {
		t.Fatalf("b-1: %v", err)
	}
	newCmd := &spy{}
	if err := brokertest.Done(nc.Subscribe("bv/v1/dev/new-1/cmd", 1, newCmd.handler)); err != nil {
		t.Fatal(err)
	}
	for id, c := range map[string]paho.Client{"old-1": old, "new-1": nc, "b-1": bc} {
		tp, _ := mqttapi.Tree{}.Topic(id, mqttapi.LeafTelemetry)
		if err := brokertest.Done(c.Publish(tp, 0, false, "tel-from-"+id)); err != nil {
			t.Fatal(err)
		}
	}
	_ = brokertest.Done(opc.Publish("bv/v1/dev/new-1/cmd", 1, false, "forged-by-operator"))
	eventually(t, "the cloud hears every device", func() bool {
		return watch.count("tel-from-old-1") == 1 && watch.count("tel-from-new-1") == 1 && watch.count("tel-from-b-1") == 1
	})
	eventually(t, "the operator hears its devices, the one added later included", func() bool {
		return opSpy.count("tel-from-old-1") == 1 && opSpy.count("tel-from-new-1") == 1
	})
	time.Sleep(300 * time.Millisecond)
	if opSpy.count("tel-from-b-1") != 0 {
		t.Error("the operator read another operator's device")
	}
	if newCmd.count("forged-by-operator") != 0 {
		t.Error("the operator account published a command")
	}
	// The old device can reconnect after the reloads.
	old.Disconnect(50)
	if _, err := bundleClient(t, oldB, "old-1"); err != nil {
		t.Errorf("the old device cannot reconnect: %v", err)
	}

	// A real controller on an emulated board, configured from its bundle,
	// dials the generated TLS listener with the bundle's CA, and the
	// cloud hears it.
	bins := presenceBins(t)
	n = s.reloads()
	runCLI(t, data, append([]string{"device", "add", "-id", "ctl-1", "-operator", "Site A", "-kind", "water", "-out", filepath.Join(out, "ctl-1")}, reload...)...)
	s.waitReloads(t, n+1)
	sim := filepath.Join(base, "water.yaml")
	if err := os.WriteFile(sim, []byte(presenceWaterSim), 0o644); err != nil {
		t.Fatal(err)
	}
	hw := startProc(t, base, bins, "hwsim", "-sim", sim, "-json", "-control", filepath.Join(base, "water.sock"))
	var paths struct{ Board string }
	hw.firstLine(t, &paths)
	if err := simdev.WriteController(filepath.Join(out, "ctl-1"), simdev.Wiring{Port: paths.Board}); err != nil {
		t.Fatal(err)
	}
	startProc(t, base, bins, "controller", "-config", filepath.Join(out, "ctl-1", "controller.yaml"))
	eventually(t, "the controller online over TLS", func() bool {
		d, err := m.Store.GetDevice(t.Context(), "ctl-1")
		return err == nil && d.Online
	})

	// The defect as it was: files root-only, the reload refuses everyone.
	if err := os.Chmod(filepath.Join(mosq, "passwords"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(mosq, "passwords"), 0, 0); err != nil {
		t.Fatal(err)
	}
	n = s.reloads()
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	s.waitReloads(t, n+1)
	if _, err := brokertest.Connect(t, brokertest.ClientOptions(cloudURL, "_cloud-after", broker.DefaultCloudUser, strings.TrimSpace(string(secret)), nil)); err == nil {
		t.Error("control: with a root-only password file the reloaded broker still admitted the cloud; this test would not see the defect")
	}
}
