package service_test

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"sync"
	"testing"

	pb "beaconvend/app-protocol/provision"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/provision"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

func (e *relayEnv) useProvisioner(t *testing.T) {
	t.Helper()
	p := &provision.Provisioner{Store: e.st, CloudKeys: []ed25519.PublicKey{e.cloud.Public().(ed25519.PublicKey)}}
	e.svc.UseProvisioner(service.Provisioning{
		Add: func(ctx context.Context, req provision.DeviceRequest) (provision.Result, error) {
			return p.AddDevice(ctx, req, nil)
		},
		MQTTURL: "tcp://127.0.0.1:1883", TempDir: t.TempDir(),
	})
}

func boardKeyPair(t *testing.T) *ecdh.PrivateKey {
	t.Helper()
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func washerReq(id string) provision.DeviceRequest {
	return provision.DeviceRequest{ID: id, Name: "Laundry " + id, Kind: vend.KindWasher, Machines: 2, Currency: "EUR", K: 10}
}

// A manager claims a board by its key: the device is made for the
// operator, its bundle opens only with the board's private key and holds
// the device key the cloud registered; the claim is audited; the same
// claim again gets the same sealed bundle; any other claim of the key is
// a conflict; malformed keys and other roles are refused, writing nothing.
func TestClaimSealsBundleToBoard(t *testing.T) {
	forEachRelayDB(t, func(t *testing.T, e *relayEnv) {
		e.useProvisioner(t)
		board := boardKeyPair(t)
		key := board.PublicKey().Bytes()
		mgr := as(e.op, service.RoleManager)
		cd, err := e.svc.ClaimDevice(mgr, key, washerReq("wash-1"))
		if err != nil || cd.Device != "wash-1" || cd.Replayed || len(cd.Sealed) == 0 {
			t.Fatalf("ClaimDevice = %+v, %v", cd, err)
		}
		if bytes.Contains(cd.Sealed, []byte("wash-1")) || bytes.Contains(cd.Sealed, []byte("mqtt")) {
			t.Fatal("the sealed bundle shows its contents")
		}
		doc, err := pb.Open(board, cd.Sealed)
		if err != nil {
			t.Fatalf("the board cannot open its bundle: %v", err)
		}
		b, err := pb.Decode(bytes.NewReader(doc))
		if err != nil {
			t.Fatal(err)
		}
		d, err := e.st.GetDevice(e.ctx, "wash-1")
		if err != nil {
			t.Fatal(err)
		}
		if b.DeviceID != "wash-1" || b.OperatorID != e.op || d.OperatorID != e.op || len(b.Machines) != 2 ||
			!ed25519.NewKeyFromSeed(b.DeviceKey).Public().(ed25519.PublicKey).Equal(d.SignKey) || b.IdentityKey != d.IdentityKey {
			t.Fatalf("bundle %+v does not match the registered device %+v", b, d)
		}
		if _, err := pb.Open(boardKeyPair(t), cd.Sealed); vend.CodeOf(err) != pb.ErrOpen.Code {
			t.Fatalf("opened with another board's key: %v", err)
		}
		es, err := e.st.AuditLog(e.ctx, e.op, store.AuditFilter{Action: "device.claim"})
		if err != nil || len(es) != 1 || es[0].Target != "wash-1" {
			t.Fatalf("audit: %+v, %v", es, err)
		}
		if strings.Contains(string(es[0].After), "device_key") || strings.Contains(string(es[0].After), "password") {
			t.Fatalf("the audit keeps secrets: %s", es[0].After)
		}
		again, err := e.svc.ClaimDevice(mgr, key, washerReq("wash-1"))
		if err != nil || !again.Replayed || !bytes.Equal(again.Sealed, cd.Sealed) {
			t.Fatalf("the same claim again = %+v, %v; want the same sealed bundle", again, err)
		}
		if _, err := e.svc.ClaimDevice(mgr, key, washerReq("wash-2")); vend.CodeOf(err) != store.ErrKeyClaimed.Code || vend.KindOf(err) != vend.Conflict {
			t.Fatalf("the key for another device: %v, want %s", err, store.ErrKeyClaimed.Code)
		}
		other, err := e.st.CreateOperator(e.ctx, "other")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.ClaimDevice(as(other.ID, service.RoleOwner), key, washerReq("wash-1")); vend.CodeOf(err) != store.ErrKeyClaimed.Code {
			t.Fatalf("the key by another operator: %v, want %s", err, store.ErrKeyClaimed.Code)
		}
		for name, k := range map[string][]byte{"short": key[:31], "long": append(bytes.Clone(key), 0), "low order": make([]byte, 32)} {
			if _, err := e.svc.ClaimDevice(mgr, k, washerReq("wash-3")); vend.CodeOf(err) != pb.ErrSealKey.Code {
				t.Errorf("%s key: %v, want %s", name, err, pb.ErrSealKey.Code)
			}
		}
		if _, err := e.svc.ClaimDevice(as(e.op, service.RoleTechnician), boardKeyPair(t).PublicKey().Bytes(), washerReq("wash-3")); vend.CodeOf(err) != service.ErrForbidden.Code {
			t.Fatalf("technician: %v, want %s", err, service.ErrForbidden.Code)
		}
		if ok, _ := e.st.DeviceExists(e.ctx, "wash-2"); ok {
			t.Fatal("a refused claim made a device")
		}
		if ok, _ := e.st.DeviceExists(e.ctx, "wash-3"); ok {
			t.Fatal("a refused claim made a device")
		}
	})
}

// Claims of one key racing on two requests make one device.
func TestClaimRace(t *testing.T) {
	forEachRelayDB(t, func(t *testing.T, e *relayEnv) {
		e.useProvisioner(t)
		key := boardKeyPair(t).PublicKey().Bytes()
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = e.svc.ClaimDevice(as(e.op, service.RoleManager), key, washerReq("race-"+string(rune('a'+i))))
			}()
		}
		wg.Wait()
		ok := 0
		for i, err := range errs {
			switch {
			case err == nil:
				ok++
			case vend.CodeOf(err) != store.ErrKeyClaimed.Code:
				t.Errorf("claim %d: %v, want success or %s", i, err, store.ErrKeyClaimed.Code)
			}
		}
		n := 0
		for i := range errs {
			if ex, _ := e.st.DeviceExists(e.ctx, "race-"+string(rune('a'+i))); ex {
				n++
			}
		}
		if ok != 1 || n != 1 {
			t.Fatalf("%d claims succeeded, %d devices made; want 1 and 1", ok, n)
		}
	})
}
