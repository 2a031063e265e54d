package main_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"beaconvend/app-protocol/beacon"
	"beaconvend/app-protocol/gattapi"
	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/provision"
	"beaconvend/app-protocol/proxid"
	"beaconvend/app-protocol/vend"
	"beaconvend/controller/claim"
	controller "beaconvend/controller/cmd/controller"
	"beaconvend/controller/internal/testrig"
	"beaconvend/hw/ble"
	goble "beaconvend/hw/ble/goble"
	"beaconvend/hw/ble/goble/linux"
	"beaconvend/hw/ble/goble/linux/hci/hcitest"
	"beaconvend/hw/emu"
	"beaconvend/hw/profile"
)

const gwait = 5 * time.Second

// scriptedRadio is the board's radio in registration mode, on the fork's
// real HCI/L2CAP/ATT stack over its scripted controller: what it is asked
// to advertise is recorded, and ServeGATT serves the service through the
// real ATT server to a central the test scripts.
type scriptedRadio struct {
	t       *testing.T
	mu      sync.Mutex
	adv     [][]byte
	stopped bool
	closed  bool
	serving chan *scriptedLink // one per ServeGATT
}

type scriptedLink struct {
	ctl *hcitest.Controller
	svc *goble.Service
}

var _ claim.Radio = (*scriptedRadio)(nil)

func (r *scriptedRadio) Advertise(context.Context, []byte, []byte) error { return nil }
func (r *scriptedRadio) AdvertiseConnectable(_ context.Context, adv, _ []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.adv = append(r.adv, append([]byte(nil), adv...))
	r.stopped = false
	return nil
}
func (r *scriptedRadio) Stop() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped = true
	return nil
}
func (r *scriptedRadio) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	return nil
}

func (r *scriptedRadio) ServeGATT(ctx context.Context, svc *goble.Service, _ *ble.GATTOpts, link func(ble.Link)) error {
	ctl := hcitest.New(nil)
	d, err := linux.NewDeviceWithNameAndHandler("beaconvend", nil, goble.OptTransport(ctl))
	if err != nil {
		return err
	}
	defer d.Stop()
	if err := d.AddService(svc); err != nil {
		return err
	}
	r.serving <- &scriptedLink{ctl: ctl, svc: svc}
	<-ctx.Done()
	return ctx.Err()
}

// phone is the installer's phone on a scripted link.
type phone struct {
	t *testing.T
	l *scriptedLink
	h uint16
}

func (p *phone) att(req []byte) []byte {
	p.t.Helper()
	p.l.ctl.SendATT(p.h, req)
	b, err := p.l.ctl.ReadATT(p.h, gwait)
	if err != nil {
		p.t.Fatalf("ATT % x: %v", req[:min(8, len(req))], err)
	}
	return b
}

func connectPhone(t *testing.T, l *scriptedLink) *phone {
	t.Helper()
	p := &phone{t: t, l: l, h: 0x40}
	l.ctl.Connect(p.h, hcitest.RolePeripheral)
	if got := p.att([]byte{0x02, 0x05, 0x02}); got[0] != 0x03 {
		t.Fatalf("MTU exchange: % x", got)
	}
	return p
}

func (p *phone) claimInfo() gattapi.ClaimInfo {
	p.t.Helper()
	h := p.l.svc.Characteristics[0].ValueHandle
	got := p.att([]byte{0x0a, byte(h), byte(h >> 8)})
	var ci gattapi.ClaimInfo
	if got[0] != 0x0b || ci.UnmarshalBinary(got[1:]) != nil {
		p.t.Fatalf("ClaimInfo read: % x", got)
	}
	return ci
}

// writeBundle writes sealed in 250-byte chunks and returns the answers (0
// for accepted, else the ATT error).
func (p *phone) writeBundle(sealed []byte) []byte {
	p.t.Helper()
	h := p.l.svc.Characteristics[1].ValueHandle
	chunks, err := gattapi.Chunk(sealed, 250, gattapi.MaxBundle)
	if err != nil {
		p.t.Fatal(err)
	}
	var out []byte
	for _, c := range chunks {
		got := p.att(append([]byte{0x12, byte(h), byte(h >> 8)}, c...))
		switch {
		case bytes.Equal(got, []byte{0x13}):
			out = append(out, 0)
		case len(got) == 5 && got[0] == 0x01:
			out = append(out, got[4])
		default:
			p.t.Fatalf("bundle chunk answered % x", got)
		}
	}
	return out
}

// claimRig is a board in its box: the emulated I/O board (four washers on
// a generic-relay-8 whose in8 is wired to a claim button), the installer's
// wiring, no config yet; a broker and the cloud's device side.
type claimRig struct {
	t                          *testing.T
	dir, cfg, claimDir, wiring string
	ctl                        *emu.Control
	cloud                      *testrig.Cloud
	cloudKey                   ed25519.PrivateKey
	addr                       string
	logMu                      sync.Mutex
	log                        bytes.Buffer
}

func newClaimRig(t *testing.T) *claimRig {
	t.Helper()
	r := &claimRig{t: t, dir: t.TempDir()}
	example, _ := emu.Example("washers")
	e, ctl := testrig.StartEmulator(t, r.dir, string(example))
	r.ctl = ctl
	r.addr = testrig.FreeAddr(t)
	broker := testrig.StartBroker(t, r.addr)
	t.Cleanup(broker.Stop)
	_, r.cloudKey, _ = ed25519.GenerateKey(rand.Reader)
	r.cloud = testrig.NewCloud(t, r.addr, r.cloudKey)
	// The board's profile: generic-relay-8 with its last input as the
	// claim button.
	p, err := profile.Builtin("generic-relay-8")
	if err != nil || p.Inputs[7].Name != "in8" {
		t.Fatalf("generic-relay-8: %v", err)
	}
	prof := fmt.Sprintf("name: claim-relay-8\nslave_id: %d\nserial: {baud: %d}\noutputs:\n", p.SlaveID, p.Serial.Baud)
	for _, o := range p.Outputs {
		prof += fmt.Sprintf("  - {name: %s, coil: %d}\n", o.Name, o.Coil)
	}
	prof += "inputs:\n"
	for _, in := range p.Inputs {
		prof += fmt.Sprintf("  - {name: %s, input: %d}\n", in.Name, in.Input)
	}
	prof += "claim_input: in8\n"
	os.WriteFile(filepath.Join(r.dir, "claim-relay-8.yaml"), []byte(prof), 0o644)
	r.wiring = filepath.Join(r.dir, "wiring.yaml")
	os.WriteFile(r.wiring, []byte(fmt.Sprintf("profile: claim-relay-8.yaml\nport: %s\njournal: %s\nbeacon: {sim_addr: '239.255.66.9:47497', company_id: 0x1234}\n",
		e.BoardPath(), filepath.Join(r.dir, "journal.db"))), 0o644)
	r.cfg = filepath.Join(r.dir, "etc", "controller.yaml")
	r.claimDir = filepath.Join(r.dir, "claim")
	t.Cleanup(func() {
		if t.Failed() {
			r.logMu.Lock()
			t.Logf("controller log:\n%s", r.log.String())
			r.logMu.Unlock()
		}
	})
	return r
}

func (r *claimRig) Write(b []byte) (int, error) {
	r.logMu.Lock()
	defer r.logMu.Unlock()
	return r.log.Write(b)
}

// run is `controller -config … -wiring … -claim-dir … -claim-beacon sim`,
// in-process, with the scripted radio.
type running struct {
	m      *controller.Main
	radio  *scriptedRadio
	cancel context.CancelFunc
	done   chan error
}

func (r *claimRig) run() *running {
	r.t.Helper()
	radio := &scriptedRadio{t: r.t, serving: make(chan *scriptedLink, 4)}
	m := &controller.Main{Stderr: r, Stdout: io.Discard}
	if err := m.ParseFlags([]string{"-config", r.cfg, "-wiring", r.wiring, "-claim-dir", r.claimDir, "-claim-beacon", "sim", "-log-level", "debug"}); err != nil {
		r.t.Fatal(err)
	}
	m.Radio = func(index int, _ *slog.Logger) (claim.Radio, error) {
		if index != 0 {
			return nil, fmt.Errorf("hci%d opened, want hci0", index)
		}
		return radio, nil
	}
	m.Registered = make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	run := &running{m: m, radio: radio, cancel: cancel, done: make(chan error, 1)}
	go func() { run.done <- m.Run(ctx) }()
	r.t.Cleanup(func() { run.stop(r.t) })
	return run
}

func (run *running) stop(t *testing.T) error {
	if run.cancel == nil {
		return nil
	}
	run.cancel()
	run.cancel = nil
	var err error
	select {
	case err = <-run.done:
	case <-time.After(15 * time.Second):
		t.Error("controller did not stop")
	}
	return errors.Join(err, run.m.Close())
}

func (run *running) link(t *testing.T) *scriptedLink {
	t.Helper()
	select {
	case l := <-run.radio.serving:
		return l
	case err := <-run.done:
		t.Fatalf("controller ended before registration mode: %v", err)
	case <-time.After(gwait):
		t.Fatal("registration mode never served its GATT service")
	}
	return nil
}

func (r *claimRig) bundle(device string) []byte {
	r.t.Helper()
	_, dev, _ := ed25519.GenerateKey(rand.Reader)
	var id proxid.Key
	rand.Read(id[:])
	b := &provision.Bundle{Version: provision.Version, DeviceID: device, OperatorID: "op_1", IdentityKey: id,
		DeviceKey: dev.Seed(), K: 5, CloudPublicKeys: []ed25519.PublicKey{r.cloudKey.Public().(ed25519.PublicKey)},
		MQTT: provision.MQTT{URL: "tcp://" + r.addr, Username: device, Password: "pw"}}
	for i := 1; i <= 4; i++ {
		b.Machines = append(b.Machines, provision.Machine{ID: fmt.Sprintf("washer%d", i), Kind: vend.KindWasher,
			Unit: vend.UnitCycle, Currency: "EUR", Price: vend.Price{Minor: 350, Per: 1}})
	}
	var buf bytes.Buffer
	if err := b.Encode(&buf); err != nil {
		r.t.Fatal(err)
	}
	return buf.Bytes()
}

func (r *claimRig) online(device string, since int) {
	r.t.Helper()
	testrig.Eventually(r.t, device+" online", func() bool {
		r.cloud.Mu.Lock()
		defer r.cloud.Mu.Unlock()
		for _, s := range r.cloud.States[min(since, len(r.cloud.States)):] {
			if s.Status == mqttapi.Online {
				return true
			}
		}
		return false
	})
}

func (r *claimRig) states() int {
	r.cloud.Mu.Lock()
	defer r.cloud.Mu.Unlock()
	return len(r.cloud.States)
}

// claimOver claims the board in registration mode through its GATT
// service, as the installer's phone does, and returns the seal key read.
func (r *claimRig) claimOver(run *running, device string) []byte {
	r.t.Helper()
	l := run.link(r.t)
	p := connectPhone(r.t, l)
	ci := p.claimInfo()
	if ci.State != gattapi.Unclaimed {
		r.t.Fatalf("ClaimInfo %+v, want unclaimed", ci)
	}
	// The beacon said so too: the unclaimed frame with the key's tag.
	run.radio.mu.Lock()
	adv := append([][]byte(nil), run.radio.adv...)
	run.radio.mu.Unlock()
	if len(adv) == 0 {
		r.t.Fatal("nothing advertised in registration mode")
	}
	if u, err := beacon.DecodeUnclaimed(adv[0], 0x1234); err != nil || u.Tag != beacon.ClaimTag(ci.SealKey) {
		r.t.Fatalf("advertised % x: %+v, %v; want the unclaimed frame for key %x", adv[0], u, err, ci.SealKey)
	}
	sealed, err := provision.Seal(ci.SealKey, r.bundle(device))
	if err != nil {
		r.t.Fatal(err)
	}
	if answers := p.writeBundle(sealed); !bytes.Equal(answers, make([]byte, len(answers))) {
		r.t.Fatalf("bundle answers % x, want every chunk accepted", answers)
	}
	return ci.SealKey
}

// A board with only its wiring is claimed over BLE and comes online in the
// same process: registration mode ends, advertising stops, the daemon
// starts from the config the claim wrote and takes a purchase. Restarted,
// it goes straight to the daemon.
func TestRegistrationModeThenOnline(t *testing.T) {
	r := newClaimRig(t)
	run := r.run()
	before := r.states()
	r.claimOver(run, "laundry-1")
	select {
	case <-run.m.Registered:
	case err := <-run.done:
		t.Fatalf("controller ended after the claim: %v", err)
	case <-time.After(gwait):
		t.Fatal("registration mode did not end after the claim")
	}
	run.radio.mu.Lock()
	stopped, closed := run.radio.stopped, run.radio.closed
	run.radio.mu.Unlock()
	if !stopped || !closed {
		t.Errorf("after the claim: advertising stopped %v, radio closed %v; want both", stopped, closed)
	}
	r.online("laundry-1", before)
	_, gb := r.cloud.Grant("laundry-1", "washer1", "", vend.UnitCycle, vend.Price{Minor: 350, Per: 1}, 1, time.Minute)
	if rep := r.cloud.WaitReply(r.cloud.Authorize("laundry-1", "washer1", gb)); !rep.OK {
		t.Fatalf("first purchase after the claim refused: %+v", rep)
	}
	run.stop(t)

	// Power-up again, button not held: claimed, no registration mode.
	before = r.states()
	run = r.run()
	select {
	case <-run.m.Registered:
	case <-time.After(gwait):
		t.Fatal("a claimed board did not go straight to the daemon")
	}
	select {
	case <-run.radio.serving:
		t.Fatal("a claimed board ran registration mode")
	default:
	}
	r.online("laundry-1", before)
}

// The claim button held at power-up returns a claimed board to
// registration mode with a new key, its config set aside; claimed again,
// it comes online as the new device.
func TestClaimButtonAtPowerUp(t *testing.T) {
	r := newClaimRig(t)
	run := r.run()
	oldKey := r.claimOver(run, "laundry-1")
	<-run.m.Registered
	r.online("laundry-1", 0)
	run.stop(t)

	if err := r.ctl.StuckInput("in8", true); err != nil {
		t.Fatal(err)
	}
	run = r.run()
	l := run.link(t)
	ci := connectPhone(t, l).claimInfo()
	if ci.State != gattapi.Unclaimed || bytes.Equal(ci.SealKey, oldKey) {
		t.Fatalf("after the button: ClaimInfo %+v; want unclaimed with a new key (old %x)", ci, oldKey)
	}
	if _, err := os.Stat(r.cfg); err == nil {
		t.Fatal("the old config is still in place")
	}
	aside, _ := filepath.Glob(filepath.Join(filepath.Dir(r.cfg), "replaced-*", "controller.yaml"))
	if len(aside) != 1 {
		t.Fatalf("old config set aside: %v, want one", aside)
	}
	if old, _ := os.ReadFile(aside[0]); !strings.Contains(string(old), "laundry-1") {
		t.Errorf("set-aside config is not the old one:\n%s", old)
	}
	if j, _ := filepath.Glob(filepath.Join(r.dir, "journal.db.replaced-*")); len(j) != 1 {
		t.Errorf("old journal set aside: %v, want one", j)
	}
	r.ctl.ReleaseInput("in8")
	// Stopped (SIGTERM) in registration mode: a clean exit.
	if err := run.stop(t); err != nil {
		t.Errorf("controller stopped in registration mode: %v", err)
	}

	// Claimed again (by a phone that reads the new key).
	before := r.states()
	run = r.run()
	r.claimOver(run, "laundry-2")
	<-run.m.Registered
	r.online("laundry-2", before)
	_, gb := r.cloud.Grant("laundry-2", "washer2", "", vend.UnitCycle, vend.Price{Minor: 350, Per: 1}, 1, time.Minute)
	if rep := r.cloud.WaitReply(r.cloud.Authorize("laundry-2", "washer2", gb)); !rep.OK {
		t.Fatalf("purchase on the re-claimed board refused: %+v", rep)
	}
}
