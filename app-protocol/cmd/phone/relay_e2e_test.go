package main

import (
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"beaconvend/app-protocol/beacon"
	"beaconvend/app-protocol/gattapi"
	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/phoneapi"
	pb "beaconvend/app-protocol/provision"
	"beaconvend/app-protocol/proxid"
	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/broker/brokertest"
	"beaconvend/hw/ble"
)

// relayRig is the real cloud (`cloud serve -dev` as a process) with one
// provisioned water device whose controller never connects: presence says
// it is offline, so a phone that can relay gets its grant. The board's
// beacon (offline, offline-capable) goes out on a simulated air group of
// the test's own; its GATT service is a standIn.
type relayRig struct {
	*rig
	mqtt   string // the cloud's MQTT listener
	bundle *pb.Bundle
	board  *standIn
	adv    *ble.AirAdvertiser
}

func newRelayRig(t *testing.T) *relayRig {
	t.Helper()
	r := &rig{dir: t.TempDir(), bin: bins(t), Sock: map[string]string{}}
	r.Air = fmt.Sprintf("239.255.%d.%d:%d", 1+mrand.IntN(250), 1+mrand.IntN(250), 20000+mrand.IntN(30000))
	data := filepath.Join(r.dir, "cloud")
	pwFile := filepath.Join(r.dir, "operator.pw")
	if err := os.WriteFile(pwFile, []byte("test-operator-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r.run(t, "cloud", "operator", "add", "-data", data, "-name", "test", "-email", "op@test.example", "-password-file", pwFile)
	r.run(t, "cloud", "device", "add", "-data", data, "-operator", "test", "-id", "t-relay", "-kind", "water", "-machines", "3", "-currency", "EUR",
		"-out", filepath.Join(r.dir, "relay"), "-mqtt-url", "tcp://127.0.0.1:1")
	out := r.start(t, "cloud", "cloud", "serve", "-dev", "-data", data, "-http", "127.0.0.1:0", "-json")
	var addrs struct{ HTTP, MQTT string }
	r.jsonLine(t, out, &addrs)
	r.API = addrs.HTTP
	t.Cleanup(func() {
		if t.Failed() {
			r.dumpLogs(t)
		}
	})

	f, err := os.Open(filepath.Join(r.dir, "relay", "bundle.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := pb.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := signed.NewKeys(b.CloudPublicKeys...)
	if err != nil {
		t.Fatal(err)
	}
	board := newStandIn()
	board.device, board.keys, board.signKey = b.DeviceID, keys, ed25519.NewKeyFromSeed(b.DeviceKey)
	for _, m := range b.Machines {
		board.machines = append(board.machines, m.ID)
	}
	adv, err := ble.NewAirAdvertiser(&ble.AirOpts{Group: r.Air, RSSI: -55})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { adv.Close() })
	rr := &relayRig{rig: r, mqtt: addrs.MQTT, bundle: b, board: board, adv: adv}
	rr.beacon(t, beacon.Offline)
	return rr
}

// beacon puts the board's frame for the current proximity window on air:
// in state st, offline-capable.
func (r *relayRig) beacon(t *testing.T, st beacon.State) {
	t.Helper()
	id := proxid.Compute(r.bundle.IdentityKey, proxid.Counter(time.Now()), r.bundle.K)
	fr, err := beacon.Frame{CompanyID: beacon.DefaultCompanyID, State: st, OfflineCapable: true, ID: id}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.adv.Advertise(context.Background(), fr, nil); err != nil {
		t.Fatal(err)
	}
}

// dialer returns a Dialer that connects to board when the phone dials
// the advertiser's address, counting the dials.
func (r *relayRig) dialer(t *testing.T, board *standIn, dials *atomic.Int32) Dialer {
	return func(ctx context.Context, addr string) (ble.GATTLink, error) {
		if dials != nil {
			dials.Add(1)
		}
		if addr != r.adv.Addr() {
			t.Errorf("phone dialled %q, the board advertises from %q", addr, r.adv.Addr())
			return nil, errors.New("no board at that address")
		}
		return board.connect(), nil
	}
}

// runPhone runs the phone's Main in process against the rig with a BLE
// central (dial, when not nil) and an HTTP client (hc, when not nil).
func (r *relayRig) runPhone(t *testing.T, dial Dialer, hc *http.Client, args ...string) (*Main, string, error) {
	t.Helper()
	out := &syncBuffer{}
	m := &Main{Stdout: out, Stderr: out, Dial: dial, HTTPClient: hc}
	base := []string{"-api", r.API, "-air", r.Air, "-token-file", "-", "-scan", "1200ms", "-timeout", "60s", "-progress", "lines"}
	if err := m.ParseFlags(append(base, args...)); err != nil {
		t.Fatalf("phone %q: %v", args, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	err := m.Run(ctx)
	if cerr := m.Close(); err == nil {
		err = cerr
	}
	return m, out.String(), err
}

// buyArgs buys up to 1000 ml from the machine-th tap of the relay board
// (a session the board never reports keeps its tap busy).
func (r *relayRig) buyArgs(user string, machine int) []string {
	return []string{"-email", user, "-password", "password-123", "-signup", "-topup", "5.00", "-device", "t-relay",
		"-machine", r.bundle.Machines[machine].ID, "-cap-units", "1000"}
}

// set changes the board's behaviour for one subtest (the board, its
// journal and its report sequence stay the same) and restores it after.
func (r *relayRig) set(t *testing.T, f func(b *standIn)) {
	r.board.mu.Lock()
	now, dropAt, mtu := r.board.now, r.board.dropAt, r.board.mtu
	f(r.board)
	r.board.mu.Unlock()
	t.Cleanup(func() {
		r.board.mu.Lock()
		r.board.now, r.board.dropAt, r.board.mtu = now, dropAt, mtu
		r.board.mu.Unlock()
	})
}

// lossyUploads forwards every request, but loses the answer of the first
// usage upload: the phone sees a transport error after the cloud has
// settled the report.
type lossyUploads struct {
	lost atomic.Int32
	n    atomic.Int32
}

func (l *lossyUploads) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err == nil && strings.HasSuffix(req.URL.Path, "/usage") {
		l.n.Add(1)
		if l.lost.CompareAndSwap(0, 1) {
			resp.Body.Close()
			return nil, errors.New("connection reset after the request was sent")
		}
	}
	return resp, err
}

// The phone relays a grant to a board the cloud cannot reach, against the
// real cloud: the session settles once at exactly the board's signed
// amount, the board gets the cloud's ack, and every failure reads clearly
// and charges nothing beyond the hold rules.
func TestRelayAgainstCloud(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the cloud")
	}
	r := newRelayRig(t)
	price := r.bundle.Machines[0].Price

	t.Run("settles once", func(t *testing.T) {
		var dials atomic.Int32
		m, out, err := r.runPhone(t, r.dialer(t, r.board, &dials), nil, r.buyArgs("relay1@test.example", 0)...)
		if err != nil {
			t.Fatalf("relayed buy: %v\n%s", err, out)
		}
		for _, want := range []string{"relaying the grant over BLE", "running", "board receipt: 500 ml", "receipt uploaded", "settled"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		amt, _ := price.Cost(500)
		if m.Session.State != phoneapi.StateSettled || m.Receipt == nil || m.Receipt.Captured.Minor != amt {
			t.Fatalf("session %+v receipt %+v, want settled at %d", m.Session, m.Receipt, amt)
		}
		if got := m.WalletBefore.Available.Minor - m.WalletAfter.Available.Minor; got != amt || m.WalletAfter.Held.Minor != 0 {
			t.Fatalf("wallet %v → %v: charged %d, want %d and nothing held", m.WalletBefore, m.WalletAfter, got, amt)
		}
		accepted, acks, cloudAck, report := r.board.snapshot()
		if accepted != 1 || dials.Load() != 1 || len(acks) != 1 || acks[0].Kind != gattapi.AckCloud || !cloudAck {
			t.Fatalf("board: %d grants accepted, %d dials, acks %+v (cloud holds: %v)", accepted, dials.Load(), acks, cloudAck)
		}
		// The same report again (as MQTT would bring it later): a
		// duplicate, nothing charged twice.
		c := phoneapi.New(r.API, nil)
		if _, err := c.LogIn(context.Background(), &phoneapi.LogInRequest{Email: "relay1@test.example", Password: "password-123"}); err != nil {
			t.Fatal(err)
		}
		ua, err := c.UploadUsage(context.Background(), phoneapi.NewIdempotencyKey(), m.Session.ID, report)
		if err != nil || !ua.Duplicate || ua.Session.Amount.Minor != amt {
			t.Fatalf("second upload = %+v, %v; want a duplicate at %d", ua, err, amt)
		}
		w, err := c.GetWallet(context.Background())
		if err != nil || w.Available != m.WalletAfter.Available {
			t.Fatalf("wallet after the duplicate %+v, %v; want %v", w, err, m.WalletAfter.Available)
		}
		// The grant relayed again (a phone replaying it): the board
		// refuses it; it never runs twice.
		r.board.mu.Lock()
		var rg gattapi.RelayGrant
		err = rg.UnmarshalBinary(r.board.grants[0])
		r.board.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		err = ble.NewBoard(r.board.connect()).WriteGrant(context.Background(), rg)
		if vend.CodeOf(err) != "grant.replayed" {
			t.Fatalf("relayed twice: %v, want grant.replayed", err)
		}
	})

	t.Run("upload retried settles once", func(t *testing.T) {
		// At the default ATT_MTU of 23 the grant goes in 16-byte chunks.
		r.set(t, func(b *standIn) { b.mtu = 23 })
		board := r.board
		grantsBefore := len(board.grants)
		acksBefore := len(board.acks)
		lossy := &lossyUploads{}
		m, out, err := r.runPhone(t, r.dialer(t, board, nil), &http.Client{Transport: lossy}, r.buyArgs("relay2@test.example", 0)...)
		if err != nil {
			t.Fatalf("relayed buy with a lost upload answer: %v\n%s", err, out)
		}
		amt, _ := price.Cost(500)
		if lossy.n.Load() != 2 || m.Session.State != phoneapi.StateSettled {
			t.Fatalf("%d uploads, session %s; want 2 uploads (one answer lost) and settled", lossy.n.Load(), m.Session.State)
		}
		if got := m.WalletBefore.Available.Minor - m.WalletAfter.Available.Minor; got != amt {
			t.Fatalf("charged %d after a retried upload, want %d once", got, amt)
		}
		board.mu.Lock()
		n := len(board.grants) - grantsBefore
		board.mu.Unlock()
		if n != 1 {
			t.Fatalf("%d grants reassembled from small chunks, want 1", n)
		}
		if _, acks, cloudAck, _ := board.snapshot(); len(acks) != acksBefore+1 || !cloudAck {
			t.Fatalf("board acks %+v, cloud holds %v", acks, cloudAck)
		}
	})

	t.Run("refused grant", func(t *testing.T) {
		board := r.board
		before, _, _, _ := board.snapshot()
		r.set(t, func(b *standIn) { b.now = func() time.Time { return time.Now().Add(time.Hour) } }) // the board's clock is an hour ahead
		m, out, err := r.runPhone(t, r.dialer(t, board, nil), nil, r.buyArgs("relay3@test.example", 1)...)
		if err == nil || !errors.Is(err, ErrRelay) || exitCode(err) != ExitMachine {
			t.Fatalf("buy with an expired grant = %v (exit %d), want a relay error\n%s", err, exitCode(err), out)
		}
		for _, want := range []string{"grant.expired", "expired before the board took it", "stays held", "nothing is captured"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error lacks %q: %v", want, err)
			}
		}
		if a, _, _, _ := board.snapshot(); a != before {
			t.Fatalf("board accepted %d grants", a)
		}
		// Nothing captured: the cap's hold is all that left the
		// available balance, and it is held, not charged.
		c := phoneapi.New(r.API, nil)
		if _, err := c.LogIn(context.Background(), &phoneapi.LogInRequest{Email: "relay3@test.example", Password: "password-123"}); err != nil {
			t.Fatal(err)
		}
		s, err := c.GetSession(context.Background(), m.Session.ID)
		if err != nil || s.Amount.Minor != 0 || s.State != phoneapi.StatePending {
			t.Fatalf("session after the refusal %+v, %v; want pending, nothing captured", s, err)
		}
		w, err := c.GetWallet(context.Background())
		if err != nil || w.Available.Minor+w.Held.Minor != 500 || w.Held.Minor != s.Hold.Minor {
			t.Fatalf("wallet %+v, %v: want 5.00 in all, the hold %v held", w, err, s.Hold)
		}
	})

	t.Run("disconnect mid-session", func(t *testing.T) {
		r.set(t, func(b *standIn) { b.dropAt = 2 })
		_, out, err := r.runPhone(t, r.dialer(t, r.board, nil), nil, r.buyArgs("relay4@test.example", 2)...)
		if err == nil || !strings.Contains(err.Error(), "disconnected") || !strings.Contains(err.Error(), "mid-session") ||
			!strings.Contains(err.Error(), "charged only what the board's signed report says") {
			t.Fatalf("buy with a drop mid-session = %v\n%s", err, out)
		}
	})

	t.Run("no central", func(t *testing.T) {
		// Without a BLE central the phone does not offer to relay: the
		// cloud answers that the machine is offline, nothing held.
		_, out, err := r.runPhone(t, nil, nil, r.buyArgs("relay5@test.example", 0)...)
		if err == nil || exitCode(err) != ExitMachine || !strings.Contains(err.Error(), "machine.offline") {
			t.Fatalf("buy without a central = %v\n%s", err, out)
		}
	})
}

// The installer claims a board in registration mode against the real
// cloud's claim endpoint: the stand-in board opens the sealed bundle with
// its own private key and becomes the device; a second claim is refused
// by the board.
func TestClaimAgainstCloud(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the cloud")
	}
	r := newRelayRig(t)
	board := newStandIn()
	var err error
	if board.sealPriv, err = ecdh.X25519().GenerateKey(rand.Reader); err != nil {
		t.Fatal(err)
	}
	adv, err := ble.NewAirAdvertiser(&ble.AirOpts{Group: r.Air, RSSI: -50})
	if err != nil {
		t.Fatal(err)
	}
	defer adv.Close()
	tag := beacon.ClaimTag(board.sealPriv.PublicKey().Bytes())
	if err := adv.Advertise(context.Background(), beacon.Unclaimed{CompanyID: beacon.DefaultCompanyID, Tag: tag}.Encode(), nil); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	dialled := []string{}
	dial := func(ctx context.Context, addr string) (ble.GATTLink, error) {
		mu.Lock()
		dialled = append(dialled, addr)
		mu.Unlock()
		if addr != adv.Addr() {
			return nil, errors.New("not the unclaimed board")
		}
		return board.connect(), nil
	}
	args := []string{"-claim", "-email", "op@test.example", "-password", "test-operator-pw", "-claim-id", "t-claimed", "-claim-kind", "water"}

	// Another board answers at the address the frame came from: its
	// sealing key is not the tag heard, so nothing is claimed.
	other := newStandIn()
	if other.sealPriv, err = ecdh.X25519().GenerateKey(rand.Reader); err != nil {
		t.Fatal(err)
	}
	_, out, err := r.runPhone(t, func(context.Context, string) (ble.GATTLink, error) { return other.connect(), nil }, nil, args...)
	if err == nil || !errors.Is(err, ErrClaim) || !strings.Contains(err.Error(), "another board answered") || other.bundle != nil {
		t.Fatalf("claim answered by another board = %v\n%s", err, out)
	}
	// A tag nobody advertises.
	_, out, err = r.runPhone(t, dial, nil, append(args, "-claim-tag", "0011223344556677")...)
	if err == nil || exitCode(err) != ExitNoMachine {
		t.Fatalf("claim of an unheard tag = %v\n%s", err, out)
	}
	m, out, err := r.runPhone(t, dial, nil, append(args, "-claim-tag", fmt.Sprintf("%x", tag))...)
	if err != nil {
		t.Fatalf("claim: %v\n%s", err, out)
	}
	if m.Claimed == nil || m.Claimed.Device != "t-claimed" || m.Claimed.Addr != adv.Addr() || !strings.Contains(out, "claimed: board") {
		t.Fatalf("claim result %+v\n%s", m.Claimed, out)
	}
	if board.bundle == nil || board.bundle.DeviceID != "t-claimed" || len(board.bundle.CloudPublicKeys) == 0 || len(board.bundle.DeviceKey) == 0 {
		t.Fatalf("board's bundle %+v", board.bundle)
	}
	// Claimed now: the phone reads it and refuses to claim it again.
	_, out, err = r.runPhone(t, dial, nil, append(args, "-board-addr", adv.Addr())...)
	if err == nil || !errors.Is(err, ErrClaim) || !strings.Contains(err.Error(), "already device t-claimed") {
		t.Fatalf("second claim = %v\n%s", err, out)
	}
	// A bundle the cloud sealed written again: the board refuses it.
	err = ble.NewBoard(board.connect()).WriteBundle(context.Background(), []byte(strings.Repeat("x", 700)))
	if vend.CodeOf(err) != "claim.not_registration" || !strings.Contains(refusalText(err), "factory reset") {
		t.Fatalf("bundle to a claimed board: %v (%s)", err, refusalText(err))
	}
}

// A board the cloud can reach but that does not answer the grant: the
// cloud answers device.no_reply with the pending session and its relay,
// and the phone relays it; the session settles once at the board's
// amount.
func TestRelayAfterNoReply(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the cloud")
	}
	r := newRelayRig(t)
	// The device's MQTT link, up but deaf: it says online and never
	// answers a command.
	o := brokertest.ClientOptions(r.mqtt, r.bundle.DeviceID, r.bundle.MQTT.Username, r.bundle.MQTT.Password, nil)
	dev := brokertest.MustConnect(t, o)
	on, err := mqttapi.Tree{}.Publication(r.bundle.DeviceID, &mqttapi.State{Envelope: mqttapi.NewEnvelope(time.Now()), Status: mqttapi.Online, Firmware: "test-1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := brokertest.Done(dev.Publish(on.Topic, on.QoS, on.Retain, on.Payload)); err != nil {
		t.Fatal(err)
	}
	r.beacon(t, beacon.Idle)
	c := phoneapi.New(r.API, nil)
	if _, err := c.SignUp(context.Background(), &phoneapi.SignUpRequest{Email: "probe@test.example", Password: "password-123"}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		d, err := c.GetDevice(context.Background(), phoneapi.DeviceID(r.bundle.DeviceID))
		if err == nil && d.Device.State != phoneapi.DeviceOffline {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the device is not online: %+v, %v", d, err)
		}
	}
	m, out, err := r.runPhone(t, r.dialer(t, r.board, nil), nil, r.buyArgs("noreply@test.example", 0)...)
	if err != nil {
		t.Fatalf("buy after no reply: %v\n%s", err, out)
	}
	amt, _ := r.bundle.Machines[0].Price.Cost(500)
	if m.Session.State != phoneapi.StateSettled || m.Receipt == nil || m.Receipt.Captured.Minor != amt || !strings.Contains(out, "relaying the grant over BLE") {
		t.Fatalf("session %+v receipt %+v, want settled at %d\n%s", m.Session, m.Receipt, amt, out)
	}
	if got := m.WalletBefore.Available.Minor - m.WalletAfter.Available.Minor; got != amt {
		t.Fatalf("charged %d, want %d", got, amt)
	}
	// The cloud offered it after no reply, not because it was offline.
	if b, _ := os.ReadFile(filepath.Join(r.dir, "cloud.log")); !strings.Contains(string(b), "reason=no_reply") {
		t.Fatalf("the cloud did not offer the grant after no reply:\n%s", b)
	}
}
