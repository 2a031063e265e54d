package main_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/provision"
	"beaconvend/app-protocol/proxid"
	"beaconvend/app-protocol/vend"
	controller "beaconvend/controller/cmd/controller"
	"beaconvend/controller/internal/testrig"
	"beaconvend/hw/emu"
)

// A board set up the way a new operator does it: a bundle as `cloud
// device add -kind washer -machines 4` makes it, the minimal wiring
// (profile and port) and `controller import-bundle`, on the emulator's
// built-in four-washer board. The controller comes online, and the first
// washer purchase starts a cycle.
func TestImportBundleThenFirstWasherPurchaseStarts(t *testing.T) {
	bin := buildController(t)
	dir := t.TempDir()
	example, ok := emu.Example("washers")
	if !ok {
		t.Fatal("no built-in washers sim config")
	}
	e, ctl := testrig.StartEmulator(t, dir, string(example))
	addr := testrig.FreeAddr(t)
	broker := testrig.StartBroker(t, addr)
	defer broker.Stop()
	_, cloudKey, _ := ed25519.GenerateKey(rand.Reader)
	_, devPriv, _ := ed25519.GenerateKey(rand.Reader)
	var idKey proxid.Key
	rand.Read(idKey[:])
	b := &provision.Bundle{Version: provision.Version, DeviceID: "laundry-1", OperatorID: "op_1", IdentityKey: idKey,
		DeviceKey: devPriv.Seed(), K: 5, CloudPublicKeys: []ed25519.PublicKey{cloudKey.Public().(ed25519.PublicKey)},
		MQTT: provision.MQTT{URL: "tcp://" + addr, Username: "laundry-1", Password: "pw"}}
	for i := 1; i <= 4; i++ {
		b.Machines = append(b.Machines, provision.Machine{ID: fmt.Sprintf("washer%d", i), Kind: vend.KindWasher, Name: fmt.Sprintf("washer %d", i),
			Unit: vend.UnitCycle, Currency: "EUR", Price: vend.Price{Minor: 350, Per: 1}})
	}
	var buf bytes.Buffer
	if err := b.Encode(&buf); err != nil {
		t.Fatal(err)
	}
	bundlePath, wiringPath, out := filepath.Join(dir, "bundle.json"), filepath.Join(dir, "wiring.yaml"), filepath.Join(dir, "etc")
	os.WriteFile(bundlePath, buf.Bytes(), 0o600)
	os.WriteFile(wiringPath, []byte(fmt.Sprintf("profile: generic-relay-8\nport: %s\njournal: %s\nbeacon: {sim_addr: '239.255.66.9:47499'}\n",
		e.BoardPath(), filepath.Join(dir, "journal.db"))), 0o644)

	importCmd := func() (string, string, error) {
		cmd := exec.Command(bin, "import-bundle", "-bundle", bundlePath, "-wiring", wiringPath, "-out", out, "-beacon", "sim")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		return stdout.String(), stderr.String(), err
	}
	stdout, stderr, err := importCmd()
	if err != nil {
		t.Fatalf("import-bundle: %v\n%s", err, stderr)
	}
	var res struct{ Device, Config string }
	if err := json.Unmarshal([]byte(stdout), &res); err != nil || res.Device != "laundry-1" || res.Config != filepath.Join(out, "controller.yaml") {
		t.Fatalf("import-bundle printed %q (%v)", stdout, err)
	}
	// A second import over the live board is refused and changes nothing.
	before, _ := os.ReadFile(filepath.Join(out, "identity.key"))
	if _, stderr, err := importCmd(); err == nil || !strings.Contains(stderr, "already holds") {
		t.Errorf("second import-bundle: %v, %q; want a refusal", err, stderr)
	}
	if after, _ := os.ReadFile(filepath.Join(out, "identity.key")); !bytes.Equal(before, after) {
		t.Error("a refused import changed identity.key")
	}

	cloud := testrig.NewCloud(t, addr, cloudKey)
	logf, _ := os.Create(filepath.Join(dir, "controller.log"))
	defer logf.Close()
	proc := exec.Command(bin, "-config", res.Config, "-log-level", "debug")
	proc.Stdout, proc.Stderr = logf, logf
	if err := proc.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { proc.Wait(); close(exited) }()
	defer func() {
		proc.Process.Signal(syscall.SIGTERM)
		<-exited
		if t.Failed() {
			log, _ := os.ReadFile(logf.Name())
			t.Logf("controller log:\n%s", log)
		}
	}()
	testrig.Eventually(t, "controller online", func() bool {
		cloud.Mu.Lock()
		defer cloud.Mu.Unlock()
		for _, s := range cloud.States {
			if s.Status == mqttapi.Online {
				return true
			}
		}
		return false
	})
	g, gb := cloud.Grant("laundry-1", "washer1", "", vend.UnitCycle, vend.Price{Minor: 350, Per: 1}, 1, time.Minute)
	if rep := cloud.WaitReply(cloud.Authorize("laundry-1", "washer1", gb)); !rep.OK {
		t.Fatalf("authorize: %+v", rep)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, err := ctl.Status()
		if err != nil {
			t.Fatal(err)
		}
		var w *emu.WasherStatus
		for _, m := range s.Machines {
			if m.Name == "washer-1" {
				w = m.Washer
			}
		}
		if w == nil {
			t.Fatalf("no washer-1 in the emulator: %+v", s.Machines)
		}
		if w.CyclesStarted == 1 && w.Running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("first purchase (session %s): washer-1 got %d coin pulses, credit %d, %d cycles started; want a running cycle",
				g.Session, w.CoinPulses, w.Credit, w.CyclesStarted)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// import-bundle's flags: -bundle and -wiring are required, nothing else is
// accepted, and the daemon's flags are not import-bundle's.
func TestImportBundleFlags(t *testing.T) {
	for _, args := range [][]string{
		{"import-bundle"},
		{"import-bundle", "-bundle", "b.json"},
		{"import-bundle", "-bundle", "b.json", "-wiring", "w.yaml", "extra"},
		{"import-bundle", "-bundle", "b.json", "-wiring", "w.yaml", "-config", "c.yaml"},
	} {
		var stderr bytes.Buffer
		m := &controller.Main{Stderr: &stderr}
		if err := m.ParseFlags(args); err == nil || m.Import != nil {
			t.Errorf("ParseFlags(%q) = %v, import %+v; want an error", args, err, m.Import)
		}
		if !strings.Contains(stderr.String(), "usage: controller import-bundle") {
			t.Errorf("ParseFlags(%q) printed %q, want the usage", args, stderr.String())
		}
	}
	m := &controller.Main{Stderr: io.Discard}
	if err := m.ParseFlags([]string{"import-bundle", "-bundle", "b.json", "-wiring", "w.yaml", "-out", "o", "-force", "-beacon", "sim"}); err != nil {
		t.Fatal(err)
	}
	if f := m.Import; f.Bundle != "b.json" || f.Wiring != "w.yaml" || f.Out != "o" || !f.Force || f.Beacon != "sim" || f.Plaintext {
		t.Errorf("flags %+v", *f)
	}
}
