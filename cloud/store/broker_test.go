package store_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/store"
)

// A device lookup that cannot read the database is an error, never
// "absent": the check behind SetDeviceStatus/SetDeviceLost answered nil
// ("exists") on a closed database, and provisioning needs DeviceExists to
// tell a failed read from a free id.
func TestDeviceExistsReportsDatabaseErrors(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		if ok, err := e.s.DeviceExists(e.ctx, "dev-a"); !ok || err != nil {
			t.Fatalf("DeviceExists(dev-a) = %v, %v; want true", ok, err)
		}
		if ok, err := e.s.DeviceExists(e.ctx, "nope"); ok || err != nil {
			t.Fatalf("DeviceExists(nope) = %v, %v; want false, nil", ok, err)
		}
		wantCode(t, store.DeviceExistsOrNotFound(e.s, e.ctx, "nope"), store.ErrDeviceNotFound.Code)
		e.s.Close()
		if ok, err := e.s.DeviceExists(e.ctx, "nope"); err == nil {
			t.Errorf("DeviceExists on a closed database = %v, nil; want an error", ok)
		}
		if err := store.DeviceExistsOrNotFound(e.s, e.ctx, "dev-a"); err == nil || vend.KindOf(err) == vend.NotFound {
			t.Errorf("deviceExists on a closed database = %v; want the database error", err)
		}
	})
}

// An operator's broker account: created, replaced by a new password,
// listed; the devices a broker admits with their owners.
func TestBrokerAccounts(t *testing.T) {
	forEachDB(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil)
		if _, err := e.s.BrokerAccountHash(e.ctx, e.opA.ID); vend.CodeOf(err) != store.ErrBrokerAccountNotFound.Code {
			t.Fatalf("BrokerAccountHash before any = %v, want %s", err, store.ErrBrokerAccountNotFound.Code)
		}
		wantCode(t, e.s.SetBrokerAccount(e.ctx, "op_missing", "$7$h"), store.ErrOperatorNotFound.Code)
		wantCode(t, e.s.SetBrokerAccount(e.ctx, e.opA.ID, ""), store.ErrInput.Code)
		must(t, e.s.SetBrokerAccount(e.ctx, e.opA.ID, "$7$first"))
		must(t, e.s.SetBrokerAccount(e.ctx, e.opA.ID, "$7$second"))
		if h, err := e.s.BrokerAccountHash(e.ctx, e.opA.ID); h != "$7$second" || err != nil {
			t.Fatalf("BrokerAccountHash = %q, %v; want the replaced hash", h, err)
		}
		accs, err := e.s.BrokerAccounts(e.ctx)
		if err != nil || len(accs) != 1 || accs[0] != (store.BrokerAccount{OperatorID: e.opA.ID, MQTTHash: "$7$second"}) {
			t.Fatalf("BrokerAccounts = %+v, %v", accs, err)
		}
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		must(t, e.s.CreateDevice(e.ctx, store.Device{ID: "dev-off", OperatorID: e.opA.ID, K: 5, SignKey: pub, MQTTHash: "h2", State: store.DeviceDisabled}))
		devs, err := e.s.BrokerDevices(e.ctx)
		if err != nil || len(devs) != 1 || devs[0] != (store.BrokerDevice{ID: "dev-a", OperatorID: e.opA.ID, MQTTHash: "x"}) {
			t.Fatalf("BrokerDevices = %+v, %v; want only the active dev-a", devs, err)
		}
		if op, err := e.s.DeviceOperator(e.ctx, "dev-off"); op != e.opA.ID || err != nil {
			t.Fatalf("DeviceOperator(dev-off) = %q, %v", op, err)
		}
		wantCode(t, func() error { _, err := e.s.DeviceOperator(e.ctx, "nope"); return err }(), store.ErrDeviceNotFound.Code)
		// An operator account reads its own devices, disabled ones too,
		// and no other operator's.
		opB, err := e.s.CreateOperator(e.ctx, "Operator B")
		must(t, err)
		must(t, e.s.CreateDevice(e.ctx, store.Device{ID: "dev-b", OperatorID: opB.ID, K: 5, SignKey: pub, MQTTHash: "h3"}))
		if ids, err := e.s.OperatorDeviceIDs(e.ctx, e.opA.ID); err != nil || strings.Join(ids, ",") != "dev-a,dev-off" {
			t.Fatalf("OperatorDeviceIDs(A) = %q, %v; want dev-a,dev-off", ids, err)
		}
		if ids, err := e.s.OperatorDeviceIDs(e.ctx, "op_missing"); err != nil || len(ids) != 0 {
			t.Fatalf("OperatorDeviceIDs(missing) = %q, %v; want none", ids, err)
		}
	})
}
