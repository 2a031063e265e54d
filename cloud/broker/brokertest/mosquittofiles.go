package brokertest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"beaconvend/cloud/broker"
)

// StartMosquittoFiles runs mosquitto on a free loopback port with the password
// and ACL files in dir (as `cloud device add -mosquitto-dir` wrote them)
// and returns its URL. Only the listener, the run-as user and the log are
// this test's: the generated mosquitto.conf is a site broker's (TLS, its own user).
func StartMosquittoFiles(t testing.TB, dir string) string {
	t.Helper()
	bin := MosquittoPath(t)
	port := FreePort(t)
	logFile := filepath.Join(t.TempDir(), "mosquitto.log")
	cfg := broker.MosquittoConfig{Addr: fmt.Sprintf("127.0.0.1:%d", port), PasswordFile: filepath.Join(dir, "passwords"),
		ACLFile: filepath.Join(dir, "acl"), User: "root", LogFile: logFile}
	var conf bytes.Buffer
	if _, err := cfg.WriteTo(&conf); err != nil {
		t.Fatal(err)
	}
	confPath := filepath.Join(t.TempDir(), "mosquitto.conf")
	if err := os.WriteFile(confPath, conf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", confPath)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(logFile)
			t.Logf("mosquitto log:\n%s", tailBytes(b, 4000))
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.DialTimeout("tcp", cfg.Addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-exited:
			t.Fatalf("mosquitto exited: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("mosquitto not listening on %s: %v", cfg.Addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "tcp://" + cfg.Addr
}

func tailBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
