package httpapi_test

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"beaconvend/app-protocol/phoneapi"
	pb "beaconvend/app-protocol/provision"
	"beaconvend/app-protocol/proxid"
	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/httpapi"
	"beaconvend/cloud/provision"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

// The phone API of a relayed session: an offline device, a phone that can
// relay: the start answers 201 with the grant and ticket; the phone
// uploads the board's report: settled, with an ack for the board; again:
// duplicate; a forged report: 400 usage.signature.
func TestRelayedSessionOverHTTP(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *opEnv) {
		ctx := context.Background()
		acc, err := e.st.OperatorAccountByEmail(ctx, "ops@acme.example")
		if err != nil {
			t.Fatal(err)
		}
		pub, priv, _ := ed25519.GenerateKey(rand.Reader)
		idk := proxid.Key{7}
		if err := e.st.CreateDevice(ctx, store.Device{ID: "dev-r", OperatorID: acc.OperatorID, Name: "yard", IdentityKey: idk, K: 5, SignKey: pub, MQTTHash: "x",
			Machines: []store.Machine{{ID: "tap1", Kind: vend.KindWater, Name: "t", Price: vend.Price{Minor: 50, Per: 1000}, Currency: "EUR"}}}); err != nil {
			t.Fatal(err)
		}
		if err := e.svc.Res.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		c := phoneapi.New(e.url, &phoneapi.Opts{HTTPClient: &http.Client{Transport: newSpecChecker(t)}})
		tok, err := c.SignUp(ctx, &phoneapi.SignUpRequest{Email: "relay@example.com", Password: "password-123"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.st.TopUp(ctx, tok.User.ID, vend.Amount{Minor: 1000, Currency: "EUR"}, "sandbox_card", "k1"); err != nil {
			t.Fatal(err)
		}
		ss, err := c.StartSession(ctx, phoneapi.NewIdempotencyKey(), &phoneapi.StartSessionRequest{Device: "dev-r", Machine: "tap1",
			ProximityID: phoneapi.ProximityID(proxid.Compute(idk, proxid.Counter(time.Now()), 5).String()), Cap: phoneapi.Cap{Units: 2000},
			Source: "wallet", CanRelay: true})
		if err != nil || ss.State != phoneapi.StatePending || ss.Relay == nil || len(ss.Relay.Grant) == 0 || len(ss.Relay.Ticket) == 0 {
			t.Fatalf("StartSession = %+v, %v; want pending with a relay", ss, err)
		}
		g, err := signed.OpenGrant(ss.Relay.Grant, mustKeys(t, e.ck.Public().(ed25519.PublicKey)))
		if err != nil || g.Session != ss.ID || g.Device != "dev-r" {
			t.Fatalf("relayed grant %+v, %v", g, err)
		}
		rep, err := signed.SignUsage(priv, signed.Usage{Device: "dev-r", Seq: 1, Session: ss.ID, Machine: "tap1", Unit: g.Unit, Units: 1000,
			Price: g.Price, Currency: g.Currency, Amount: 50, StartedAt: time.Now().Add(-time.Minute), EndedAt: time.Now(), MeterEnd: 1000, Outcome: vend.OutcomeCompleted})
		if err != nil {
			t.Fatal(err)
		}
		ua, err := c.UploadUsage(ctx, phoneapi.NewIdempotencyKey(), ss.ID, rep)
		if err != nil || ua.Duplicate || ua.Session.State != phoneapi.StateSettled || ua.Session.Amount.Minor != 50 || len(ua.CloudAck) == 0 {
			t.Fatalf("UploadUsage = %+v, %v", ua, err)
		}
		if _, err := signed.OpenUsageAck(ua.CloudAck, mustKeys(t, e.ck.Public().(ed25519.PublicKey))); err != nil {
			t.Fatalf("cloud ack: %v", err)
		}
		again, err := c.UploadUsage(ctx, phoneapi.NewIdempotencyKey(), ss.ID, rep)
		if err != nil || !again.Duplicate || again.ReceiptDigest != ua.ReceiptDigest {
			t.Fatalf("second upload = %+v, %v", again, err)
		}
		_, forger, _ := ed25519.GenerateKey(rand.Reader)
		forged, _ := signed.SignUsage(forger, signed.Usage{Device: "dev-r", Seq: 2, Session: ss.ID, Machine: "tap1", Unit: g.Unit, Units: 1,
			Price: g.Price, Currency: g.Currency, Amount: 0, EndedAt: time.Now(), Outcome: vend.OutcomeCompleted})
		if _, err := c.UploadUsage(ctx, phoneapi.NewIdempotencyKey(), ss.ID, forged); vend.CodeOf(err) != service.ErrUsageSignature.Code || vend.KindOf(err) != vend.Invalid {
			t.Fatalf("forged upload: %v, want 400 %s", err, service.ErrUsageSignature.Code)
		}
		if _, err := c.UploadUsage(ctx, phoneapi.NewIdempotencyKey(), vend.NewSessionID(), rep); vend.KindOf(err) != vend.NotFound {
			t.Fatalf("upload for an unknown session: %v, want not_found", err)
		}
		if w, err := c.GetWallet(ctx); err != nil || w.Available.Minor != 950 || w.Held.Minor != 0 {
			t.Fatalf("wallet %+v, %v", w, err)
		}
	})
}

// Claims and relay-always over the operator API.
func TestOperatorClaimAndRelayAlways(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *opEnv) {
		prov := &provision.Provisioner{Store: e.st, CloudKeys: []ed25519.PublicKey{e.ck.Public().(ed25519.PublicKey)}}
		e.svc.UseProvisioner(service.Provisioning{Add: func(ctx context.Context, req provision.DeviceRequest) (provision.Result, error) {
			return prov.AddDevice(ctx, req, nil)
		}, MQTTURL: "tcp://127.0.0.1:1883", TempDir: t.TempDir()})
		owner, tech, mgr := e.logIn("acme-password").Token, e.account("technician"), e.account("manager")
		board, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		claim := func(key, id string) string {
			b, _ := json.Marshal(map[string]any{"board_key": key, "id": id, "kind": "washer", "machines": 2, "currency": "EUR", "k": 10})
			return string(b)
		}
		key := hex.EncodeToString(board.PublicKey().Bytes())
		if code, ec := e.call("POST", "/v1/operator/claims", tech, claim(key, "wash-9"), nil); code != 403 || ec != "auth.forbidden" {
			t.Fatalf("technician's claim = %d %s", code, ec)
		}
		var cd httpapi.OperatorClaimed
		if code, ec := e.call("POST", "/v1/operator/claims", mgr, claim(key, "wash-9"), &cd); code != 201 || cd.Device != "wash-9" || cd.Replayed {
			t.Fatalf("claim = %d %s %+v", code, ec, cd)
		}
		doc, err := pb.Open(board, cd.Sealed)
		if err != nil {
			t.Fatalf("the board cannot open its bundle: %v", err)
		}
		if b, err := pb.Decode(bytes.NewReader(doc)); err != nil || b.DeviceID != "wash-9" || len(b.Machines) != 2 {
			t.Fatalf("bundle %+v, %v", b, err)
		}
		var again httpapi.OperatorClaimed
		if code, ec := e.call("POST", "/v1/operator/claims", owner, claim(key, "wash-9"), &again); code != 200 || !again.Replayed || !bytes.Equal(again.Sealed, cd.Sealed) {
			t.Fatalf("the same claim again = %d %s %+v", code, ec, again)
		}
		if code, ec := e.call("POST", "/v1/operator/claims", mgr, claim(key, "wash-10"), nil); code != 409 || ec != "claim.key_claimed" {
			t.Fatalf("the key claimed again = %d %s", code, ec)
		}
		for name, bad := range map[string]string{"not hex": "zz", "short": key[:62], "low order": hex.EncodeToString(make([]byte, 32))} {
			code, ec := e.call("POST", "/v1/operator/claims", mgr, claim(bad, "wash-11"), nil)
			if code != 400 || (ec != "request.field" && ec != pb.ErrSealKey.Code) {
				t.Errorf("%s key = %d %s, want 400", name, code, ec)
			}
		}
		if es := es(e.audit("device.claim")); es != "device.claim" {
			t.Fatalf("audit = %s", es)
		}

		var ra httpapi.OperatorRelayAlways
		if code, ec := e.call("PUT", "/v1/operator/devices/wash-9/relay-always", mgr, `{"on":true,"machine":"washer1"}`, &ra); code != 200 || !ra.On || ra.Machine != "washer1" {
			t.Fatalf("relay-always = %d %s %+v", code, ec, ra)
		}
		if on, err := e.st.RelayAlways(context.Background(), "wash-9", "washer1"); err != nil || !on {
			t.Fatalf("stored relay-always = %v, %v", on, err)
		}
		if code, ec := e.call("PUT", "/v1/operator/devices/wash-9/relay-always", tech, `{"on":true}`, nil); code != 403 || ec != "auth.forbidden" {
			t.Fatalf("technician's relay-always = %d %s", code, ec)
		}
		if code, ec := e.call("PUT", "/v1/operator/devices/nope/relay-always", mgr, `{"on":true}`, nil); code != 404 || ec != "device.not_found" {
			t.Fatalf("unknown device = %d %s", code, ec)
		}
		if code, ec := e.call("PUT", "/v1/operator/devices/wash-9/relay-always", mgr, `{}`, nil); code != 400 || ec != "request.field" {
			t.Fatalf("no on = %d %s", code, ec)
		}
	})
}

func mustKeys(t *testing.T, pubs ...ed25519.PublicKey) signed.Keys {
	t.Helper()
	k, err := signed.NewKeys(pubs...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
