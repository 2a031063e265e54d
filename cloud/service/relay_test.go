package service_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"beaconvend/app-protocol/gattapi"
	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/proxid"
	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/internal/svctest"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

// relayEnv is one cloud with two water devices of one operator, offline
// unless a test brings them online, whose signing keys the test holds
// (it plays the board), and one payer with 10.00 EUR.
type relayEnv struct {
	t       *testing.T
	ctx     context.Context
	st      *store.Store
	svc     *service.Service
	pub     *FakePublisher
	op      string
	user    string
	cloud   ed25519.PrivateKey
	devKeys map[string]ed25519.PrivateKey
	idKeys  map[string]proxid.Key
	seq     uint64
	noRelay bool // the phone cannot relay (an older app, or a board without the offline-capable bit)
}

func forEachRelayDB(t *testing.T, fn func(t *testing.T, e *relayEnv)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, newRelayEnv(t, filepath.Join(t.TempDir(), "c.db"))) })
	t.Run("postgres", func(t *testing.T) {
		if os.Getenv("VEND_PG_DSN") == "" {
			svctest.Missing(t, "PostgreSQL (VEND_PG_DSN) for the PostgreSQL half of the relay tests", "run `export \"$(scripts/pg.sh | tail -n1)\"`")
		}
		fn(t, newRelayEnv(t, svctest.PostgresDSN(t, "relay")))
	})
}

func newRelayEnv(t *testing.T, dsn string) *relayEnv {
	t.Helper()
	e := &relayEnv{t: t, ctx: context.Background(), devKeys: map[string]ed25519.PrivateKey{}, idKeys: map[string]proxid.Key{}}
	// Short bounds: a pending relayed session of 2000 ml lasts its grant
	// TTL + AckBound + 2000 µs + the offline allowance.
	st, err := store.Open(e.ctx, dsn, &store.Opts{BcryptCost: 4, AckBound: 100 * time.Millisecond,
		Lifecycle: store.Lifecycle{PerUnit: map[vend.MachineKind]time.Duration{vend.KindWater: time.Microsecond}, OfflineAllowance: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e.st = st
	op, err := st.CreateOperator(e.ctx, "op")
	if err != nil {
		t.Fatal(err)
	}
	e.op = op.ID
	for _, id := range []string{"wd-1", "wd-2"} {
		var key proxid.Key
		rand.Read(key[:])
		pub, priv, _ := ed25519.GenerateKey(rand.Reader)
		e.devKeys[id], e.idKeys[id] = priv, key
		if err := st.CreateDevice(e.ctx, store.Device{ID: id, OperatorID: op.ID, Name: id, IdentityKey: key, K: 5, SignKey: pub, MQTTHash: "x",
			Machines: []store.Machine{{ID: "tap1", Kind: vend.KindWater, Name: "t", Price: vend.Price{Minor: 50, Per: 1000}, Currency: "EUR"},
				{ID: "tap2", Kind: vend.KindWater, Name: "t2", Price: vend.Price{Minor: 50, Per: 1000}, Currency: "EUR"}}}); err != nil {
			t.Fatal(err)
		}
	}
	u, err := st.CreateUser(e.ctx, "a@example.com", "password-123")
	if err != nil {
		t.Fatal(err)
	}
	e.user = u.ID
	if _, err := st.TopUp(e.ctx, u.ID, vend.Amount{Minor: 1000, Currency: "EUR"}, "sandbox_card", "k1"); err != nil {
		t.Fatal(err)
	}
	_, e.cloud, _ = ed25519.GenerateKey(rand.Reader)
	e.pub = &FakePublisher{}
	e.svc, err = service.New(e.ctx, service.Options{Store: st, Publisher: e.pub, CloudKey: e.cloud, ReplyTimeout: 300 * time.Millisecond, GrantTTL: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *relayEnv) start(key, device, machine string) (store.Session, error) {
	e.t.Helper()
	return e.svc.StartSession(e.ctx, e.user, key, phoneapi.StartSessionRequest{Device: phoneapi.DeviceID(device), Machine: phoneapi.MachineID(machine),
		Cap: phoneapi.Cap{Units: 2000}, Source: "wallet", CanRelay: !e.noRelay,
		ProximityID: phoneapi.ProximityID(proxid.Compute(e.idKeys[device], proxid.Counter(time.Now()), 5).String())})
}

// report is what the board signs after delivering units of ss, with the
// key of signer (the session's device unless a test forges).
func (e *relayEnv) report(ss store.Session, units uint64, signer ed25519.PrivateKey) []byte {
	e.t.Helper()
	e.seq++
	amount, _ := ss.Price.Cost(units)
	now := time.Now().UTC()
	b, err := signed.SignUsage(signer, signed.Usage{Device: ss.Device, Seq: e.seq, Session: ss.ID, Machine: ss.Machine, Unit: ss.Unit,
		Units: units, Price: ss.Price, Currency: ss.Currency, Amount: amount, StartedAt: now.Add(-time.Second), EndedAt: now,
		MeterStart: 10, MeterEnd: 10 + units, Outcome: vend.OutcomeCompleted})
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

func (e *relayEnv) wallet() phoneapi.Wallet {
	e.t.Helper()
	w, err := e.svc.Wallet(e.ctx, e.user)
	if err != nil {
		e.t.Fatal(err)
	}
	return w
}

func (e *relayEnv) balanced() {
	e.t.Helper()
	if imb, err := e.st.LedgerImbalance(e.ctx); err != nil || len(imb) != 0 {
		e.t.Fatalf("ledger imbalance %v, %v", imb, err)
	}
}

// boardCheck is the board's state for gattapi.CheckRelay: wd-1 with tap1
// and tap2, trusting the cloud's key, with seen sessions and nonces.
func (e *relayEnv) boardCheck(device string, seen map[vend.SessionID]bool, nonces map[[16]byte]bool) gattapi.RelayCheck {
	keys, err := signed.NewKeys(e.cloud.Public().(ed25519.PublicKey))
	if err != nil {
		e.t.Fatal(err)
	}
	return gattapi.RelayCheck{Keys: keys, Device: device, Machines: []string{"tap1", "tap2"}, Now: time.Now(), Skew: 5 * time.Second,
		Seen:      func(id vend.SessionID) (bool, error) { return seen[id], nil },
		NonceSeen: func(n [16]byte) (bool, error) { return nonces[n], nil }}
}

func relayValue(t *testing.T, r *phoneapi.Relay) []byte {
	t.Helper()
	if r == nil {
		t.Fatal("no relay in the phone's session")
	}
	v, err := gattapi.RelayGrant{Grant: r.Grant, Ticket: r.Ticket}.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// An offline device: the start holds the money and returns the grant for
// the phone to relay, with no MQTT command; the board's check accepts it
// once; a retry returns the same ticket (same nonce).
func TestRelayStartWhenOffline(t *testing.T) {
	forEachRelayDB(t, func(t *testing.T, e *relayEnv) {
		e.noRelay = true
		if _, err := e.start("key-relay-0", "wd-1", "tap1"); vend.CodeOf(err) != service.ErrMachineOffline.Code {
			t.Fatalf("start without can_relay on an offline device = %v, want machine.offline", err)
		}
		if w := e.wallet(); w.Held.Minor != 0 {
			t.Fatalf("held %d for a refused start", w.Held.Minor)
		}
		e.noRelay = false
		ss, err := e.start("key-relay-1", "wd-1", "tap1")
		if err != nil || ss.State != store.Pending || ss.RelayTicket == nil {
			t.Fatalf("StartSession = %+v, %v; want pending with a relay ticket", ss, err)
		}
		if len(e.pub.Sent) != 0 {
			t.Fatalf("%d MQTT commands sent to an offline device", len(e.pub.Sent))
		}
		if w := e.wallet(); w.Held.Minor != 100 || w.Available.Minor != 900 {
			t.Fatalf("wallet %+v, want 1.00 held", w)
		}
		ps := e.svc.PhoneSession(ss)
		v := relayValue(t, ps.Relay)
		g, tk, err := gattapi.CheckRelay(v, e.boardCheck("wd-1", nil, nil))
		if err != nil || g.Session != ss.ID || tk.Device != "wd-1" || g.CapUnits != 2000 {
			t.Fatalf("board check = %+v, %+v, %v", g, tk, err)
		}
		if _, _, err := gattapi.CheckRelay(v, e.boardCheck("wd-2", nil, nil)); vend.CodeOf(err) != signed.ErrWrongDevice.Code {
			t.Fatalf("relayed to another board: %v, want %s", err, signed.ErrWrongDevice.Code)
		}
		if _, _, err := gattapi.CheckRelay(v, e.boardCheck("wd-1", map[vend.SessionID]bool{ss.ID: true}, nil)); vend.CodeOf(err) != signed.ErrReplayed.Code {
			t.Fatalf("relayed twice: %v, want %s", err, signed.ErrReplayed.Code)
		}
		if _, _, err := gattapi.CheckRelay(v, e.boardCheck("wd-1", nil, map[[16]byte]bool{tk.Nonce: true})); vend.CodeOf(err) != gattapi.ErrNonceReused.Code {
			t.Fatalf("reused nonce: %v, want %s", err, gattapi.ErrNonceReused.Code)
		}
		late := e.boardCheck("wd-1", nil, nil)
		late.Now = ss.GrantExp
		if _, _, err := gattapi.CheckRelay(v, late); vend.CodeOf(err) != signed.ErrExpired.Code {
			t.Fatalf("after expiry: %v, want %s", err, signed.ErrExpired.Code)
		}
		again, err := e.start("key-relay-1", "wd-1", "tap1")
		if err != nil || again.ID != ss.ID || !bytes.Equal(again.RelayTicket, ss.RelayTicket) || len(e.pub.Sent) != 0 {
			t.Fatalf("retry = %+v, %v; want the same session and ticket, no command", again, err)
		}
		if w := e.wallet(); w.Held.Minor != 100 {
			t.Fatalf("retry held %d more", w.Held.Minor-100)
		}
		// A second session gets another nonce.
		other, err := e.start("key-relay-2", "wd-1", "tap2")
		if err != nil {
			t.Fatal(err)
		}
		_, tk2, err := gattapi.CheckRelay(relayValue(t, e.svc.PhoneSession(other).Relay), e.boardCheck("wd-1", nil, nil))
		if err != nil || tk2.Nonce == tk.Nonce {
			t.Fatalf("second session's ticket: %v, nonce %x (first %x)", err, tk2.Nonce, tk.Nonce)
		}
		e.balanced()
	})
}

// An online device set to relay always (the machine, then the whole
// device) gets no MQTT command either; one that does not answer gets the
// command and the start is offered for relay with device.no_reply.
func TestRelayAlwaysAndNoReply(t *testing.T) {
	forEachRelayDB(t, func(t *testing.T, e *relayEnv) {
		if err := e.st.SetDeviceStatus(e.ctx, "wd-1", true, nil, time.Now()); err != nil {
			t.Fatal(err)
		}
		if err := e.st.SetRelayAlways(e.ctx, e.op, "wd-1", "tap1", true); err != nil {
			t.Fatal(err)
		}
		ss, err := e.start("key-always-1", "wd-1", "tap1")
		if err != nil || ss.RelayTicket == nil || len(e.pub.Sent) != 0 {
			t.Fatalf("relay-always machine: %+v, %v, %d commands", ss, err, len(e.pub.Sent))
		}
		if err := e.st.SetRelayAlways(e.ctx, "op_other", "wd-1", "", true); vend.CodeOf(err) != store.ErrDeviceNotFound.Code {
			t.Fatalf("another operator's device: %v", err)
		}
		ss2, err := e.start("key-always-2", "wd-1", "tap2")
		if vend.CodeOf(err) != service.ErrDeviceNoReply.Code || ss2.RelayTicket == nil || len(e.pub.Sent) != 1 {
			t.Fatalf("silent device: %+v, %v, %d commands; want device.no_reply with a relay ticket", ss2, err, len(e.pub.Sent))
		}
		bc := e.boardCheck("wd-1", nil, nil)
		bc.Now = ss2.GrantExp.Add(-time.Millisecond) // the test's grant TTL (200 ms) is shorter than its reply timeout
		if _, _, err := gattapi.CheckRelay(relayValue(t, e.svc.PhoneSession(ss2).Relay), bc); err != nil {
			t.Fatalf("board check of the no-reply relay: %v", err)
		}
		e.balanced()
	})
}

// The phone uploads the report: settled once; again: duplicate, nothing
// more captured; the same report over MQTT later: acknowledged
// (duplicate), not settled again. The cloud's ack verifies on the board.
func TestUploadSettlesOnceThenMQTT(t *testing.T) {
	forEachRelayDB(t, func(t *testing.T, e *relayEnv) {
		ss, err := e.start("key-up-1", "wd-1", "tap1")
		if err != nil {
			t.Fatal(err)
		}
		rep := e.report(ss, 1500, e.devKeys["wd-1"])
		acc, err := e.svc.UploadUsage(e.ctx, e.user, ss.ID, rep)
		if err != nil || acc.Duplicate || acc.Session.State != phoneapi.StateSettled || acc.Session.Amount.Minor != 75 {
			t.Fatalf("UploadUsage = %+v, %v; want settled at 0.75", acc, err)
		}
		d := signed.Digest(rep)
		if acc.ReceiptDigest != hex.EncodeToString(d[:]) {
			t.Fatalf("receipt digest %s", acc.ReceiptDigest)
		}
		keys, _ := signed.NewKeys(e.cloud.Public().(ed25519.PublicKey))
		if holds, err := gattapi.CheckAck(gattapi.Ack{Kind: gattapi.AckCloud, CloudAck: acc.CloudAck}, "wd-1", ss.ID, rep, keys); err != nil || !holds {
			t.Fatalf("board's check of the cloud ack = %v, %v", holds, err)
		}
		if _, err := gattapi.CheckAck(gattapi.Ack{Kind: gattapi.AckCloud, CloudAck: acc.CloudAck}, "wd-2", ss.ID, rep, keys); vend.CodeOf(err) != gattapi.ErrAckMismatch.Code {
			t.Fatalf("cloud ack on another board: %v", err)
		}
		if w := e.wallet(); w.Held.Minor != 0 || w.Available.Minor != 925 {
			t.Fatalf("wallet %+v, want 9.25 available", w)
		}
		dup, err := e.svc.UploadUsage(e.ctx, e.user, ss.ID, rep)
		if err != nil || !dup.Duplicate || dup.ReceiptDigest != acc.ReceiptDigest {
			t.Fatalf("second upload = %+v, %v; want duplicate", dup, err)
		}
		env := mqttapi.NewEnvelope(time.Now())
		if err := e.svc.Handle(e.ctx, "wd-1", mqttapi.LeafUsage, &mqttapi.Usage{Envelope: env, Session: ss.ID, Report: rep}); err != nil {
			t.Fatalf("the board's report over MQTT after the upload: %v (not acknowledged)", err)
		}
		if w := e.wallet(); w.Available.Minor != 925 {
			t.Fatalf("after MQTT: available %d, want 925 (not settled twice)", w.Available.Minor)
		}
		e.balanced()
	})
}

// The report over MQTT first, then the phone's upload: duplicate, the
// same amount, an ack for the board all the same.
func TestMQTTThenUpload(t *testing.T) {
	forEachRelayDB(t, func(t *testing.T, e *relayEnv) {
		ss, err := e.start("key-mq-1", "wd-1", "tap1")
		if err != nil {
			t.Fatal(err)
		}
		rep := e.report(ss, 2000, e.devKeys["wd-1"])
		if err := e.svc.Handle(e.ctx, "wd-1", mqttapi.LeafUsage, &mqttapi.Usage{Envelope: mqttapi.NewEnvelope(time.Now()), Session: ss.ID, Report: rep}); err != nil {
			t.Fatal(err)
		}
		acc, err := e.svc.UploadUsage(e.ctx, e.user, ss.ID, rep)
		if err != nil || !acc.Duplicate || acc.Session.Amount.Minor != 100 || len(acc.CloudAck) == 0 {
			t.Fatalf("upload after MQTT = %+v, %v; want duplicate at 1.00 with an ack", acc, err)
		}
		if w := e.wallet(); w.Available.Minor != 900 || w.Held.Minor != 0 {
			t.Fatalf("wallet %+v", w)
		}
		e.balanced()
	})
}

// Refused uploads, each with its code, none of which changes anything.
func TestUploadRefused(t *testing.T) {
	forEachRelayDB(t, func(t *testing.T, e *relayEnv) {
		ss, err := e.start("key-bad-1", "wd-1", "tap1")
		if err != nil {
			t.Fatal(err)
		}
		other, err := e.start("key-bad-2", "wd-1", "tap2")
		if err != nil {
			t.Fatal(err)
		}
		_, forger, _ := ed25519.GenerateKey(rand.Reader)
		altered := e.report(ss, 100, e.devKeys["wd-1"])
		// units 100 → 2000 in the signed bytes (and the amount with it):
		// the signature no longer verifies.
		u, _ := signed.OpenUsage(altered, mustKeys(t, e.devKeys["wd-1"]))
		u.Units, u.Amount = 2000, 100
		body, _ := u.MarshalBinary()
		altered = append(body, altered[len(altered)-ed25519.SignatureSize:]...)
		ss2 := ss
		ss2.Device = "wd-2"
		cases := []struct {
			name   string
			id     vend.SessionID
			report []byte
			code   string
		}{
			{"forged signature", ss.ID, e.report(ss, 100, forger), service.ErrUsageSignature.Code},
			{"other device's key", ss.ID, e.report(ss, 100, e.devKeys["wd-2"]), service.ErrUsageSignature.Code},
			{"other device's report", ss.ID, e.report(ss2, 100, e.devKeys["wd-2"]), service.ErrUsageDevice.Code},
			{"altered units", ss.ID, altered, service.ErrUsageSignature.Code},
			{"report for another session", ss.ID, e.report(other, 100, e.devKeys["wd-1"]), service.ErrUsageSession.Code},
			{"not a report", ss.ID, []byte("garbage"), service.ErrUsageMalformed.Code},
			{"another user's session", vend.NewSessionID(), e.report(ss, 100, e.devKeys["wd-1"]), store.ErrSessionNotFound.Code},
		}
		for _, c := range cases {
			if _, err := e.svc.UploadUsage(e.ctx, e.user, c.id, c.report); vend.CodeOf(err) != c.code {
				t.Errorf("%s: %v (code %q), want %s", c.name, err, vend.CodeOf(err), c.code)
			}
		}
		if cur, _ := e.st.GetSession(e.ctx, ss.ID); cur.State != store.Pending {
			t.Fatalf("after refused uploads the session is %s, want pending", cur.State)
		}
		if w := e.wallet(); w.Held.Minor != 200 {
			t.Fatalf("held %d, want 200 untouched", w.Held.Minor)
		}
		// A different, validly signed report after the first settled: refused.
		if _, err := e.svc.UploadUsage(e.ctx, e.user, ss.ID, e.report(ss, 100, e.devKeys["wd-1"])); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.UploadUsage(e.ctx, e.user, ss.ID, e.report(ss, 2000, e.devKeys["wd-1"])); vend.CodeOf(err) != store.ErrUsageConflict.Code {
			t.Fatalf("a second, different report: %v, want %s", err, store.ErrUsageConflict.Code)
		}
		if w := e.wallet(); w.Available.Minor != 1000-5-100 {
			t.Fatalf("available %d, want %d", w.Available.Minor, 1000-5-100)
		}
		e.balanced()
	})
}

// A relayed grant that is never used: the sweeper expires the session and
// releases the hold once its bound passes; a report after that is a late
// capture, once.
func TestRelayUnusedGrantReleased(t *testing.T) {
	forEachRelayDB(t, func(t *testing.T, e *relayEnv) {
		ss, err := e.start("key-unused-1", "wd-1", "tap1")
		if err != nil {
			t.Fatal(err)
		}
		if n, err := e.svc.Sweep(e.ctx); err != nil || n != 0 {
			t.Fatalf("early Sweep = %d, %v; want nothing released", n, err)
		}
		cur, _ := e.st.GetSession(e.ctx, ss.ID)
		if !cur.Deadline.After(ss.GrantExp.Add(100 * time.Millisecond)) {
			t.Fatalf("deadline %s not beyond the start-by bound %s: the hold would not outlast the run", cur.Deadline, ss.GrantExp)
		}
		time.Sleep(time.Until(cur.Deadline) + 50*time.Millisecond)
		if n, err := e.svc.Sweep(e.ctx); err != nil || n != 1 {
			t.Fatalf("Sweep = %d, %v; want 1", n, err)
		}
		if cur, _ := e.st.GetSession(e.ctx, ss.ID); cur.State != store.Expired {
			t.Fatalf("state %s, want expired", cur.State)
		}
		if w := e.wallet(); w.Held.Minor != 0 || w.Available.Minor != 1000 {
			t.Fatalf("wallet %+v, want all released", w)
		}
		e.balanced()
	})
}

func mustKeys(t *testing.T, priv ed25519.PrivateKey) signed.Keys {
	t.Helper()
	k, err := signed.NewKeys(priv.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	return k
}
