package provision_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	pb "beaconvend/app-protocol/provision"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/broker"
	"beaconvend/cloud/internal/svctest"
	"beaconvend/cloud/provision"
	"beaconvend/cloud/store"
)

type env struct {
	ctx context.Context
	st  *store.Store
	p   *provision.Provisioner
	op  string
	out string
	pub ed25519.PublicKey
	dsn string
}

// forEachDB runs fn on a fresh SQLite store and a fresh PostgreSQL one.
func forEachDB(t *testing.T, fn func(t *testing.T, e *env)) {
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			dsn := "sqlite:" + filepath.Join(t.TempDir(), "cloud.db")
			if db == "postgres" {
				dsn = svctest.PostgresDSN(t, "vend_provision_test")
			}
			ctx := context.Background()
			st, err := store.Open(ctx, dsn, &store.Opts{BcryptCost: 4})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			op, err := st.CreateOperator(ctx, "Acme")
			if err != nil {
				t.Fatal(err)
			}
			pub, _, _ := ed25519.GenerateKey(nil)
			e := &env{ctx: ctx, st: st, op: op.ID, out: t.TempDir(), pub: pub, dsn: dsn,
				p: &provision.Provisioner{Store: st, CloudKeys: []ed25519.PublicKey{pub}, CloudPassword: "cloud-secret"}}
			fn(t, e)
		})
	}
}

func (e *env) req(id string) provision.DeviceRequest {
	return provision.DeviceRequest{ID: id, OperatorID: e.op, Kind: vend.KindWater, Machines: 2, Currency: "EUR", K: 10,
		MQTTURL: "ssl://broker.example:8883", Out: filepath.Join(e.out, id)}
}

func readBundle(t *testing.T, dir string) *pb.Bundle {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, provision.BundleFile))
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

// A device add writes a bundle (0600) that decodes, whose keys and
// password are the registered ones, with the machines and prices asked
// for and the broker URL; the store holds the same machines.
func TestAddDevice(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		res, err := e.p.AddDevice(e.ctx, e.req("wd-1"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Device != "wd-1" || res.Operator != e.op || res.Bundle != filepath.Join(e.out, "wd-1", "bundle.json") || res.Recovered {
			t.Errorf("result %+v", res)
		}
		st, err := os.Stat(res.Bundle)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("bundle mode: %v %v", st, err)
		}
		b := readBundle(t, filepath.Dir(res.Bundle))
		d, err := e.st.GetDevice(e.ctx, "wd-1")
		if err != nil {
			t.Fatal(err)
		}
		pub := ed25519.NewKeyFromSeed(b.DeviceKey).Public().(ed25519.PublicKey)
		if ok, _ := broker.VerifyPassword(d.MQTTHash, b.MQTT.Password); !ok || !pub.Equal(d.SignKey) || d.IdentityKey != b.IdentityKey || d.K != 10 {
			t.Error("the bundle's keys are not the registered device's")
		}
		if b.MQTT.URL != "ssl://broker.example:8883" || b.MQTT.Username != "wd-1" || !b.CloudPublicKeys[0].Equal(e.pub) || b.OperatorID != e.op {
			t.Errorf("bundle mqtt %+v, operator %s", b.MQTT, b.OperatorID)
		}
		if len(b.Machines) != 2 || b.Machines[1].ID != "tap2" || b.Machines[1].Price != provision.DefaultPrice[vend.KindWater] ||
			len(d.Machines) != 2 || d.Machines[1].ID != "tap2" || d.Machines[1].Price != b.Machines[1].Price {
			t.Errorf("machines: bundle %+v, store %+v", b.Machines, d.Machines)
		}

		r := e.req("vm-1")
		r.Kind, r.Machines = vend.KindVending, 0
		if r.Slots, err = provision.ParseSlots("A1:Cola:150,B5:Cookies:140"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.p.AddDevice(e.ctx, r, nil); err != nil {
			t.Fatal(err)
		}
		vb := readBundle(t, r.Out)
		if len(vb.Machines) != 1 || len(vb.Machines[0].Slots) != 2 || vb.Machines[0].Slots[1].Price.Minor != 140 {
			t.Errorf("vending machines %+v", vb.Machines)
		}
	})
}

// Everything is checked before anything is written: a bad request, an
// existing device, a non-empty output directory and bad Mosquitto
// options leave no device and no file. Before, `device add` wrote the key
// files over a live device's before failing on "exists".
func TestAddDeviceChecksFirst(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		if _, err := e.p.AddDevice(e.ctx, e.req("wd-1"), nil); err != nil {
			t.Fatal(err)
		}
		live := filepath.Join(e.out, "wd-1", "bundle.json")
		before, _ := os.ReadFile(live)

		full := filepath.Join(e.out, "full")
		os.MkdirAll(full, 0o700)
		os.WriteFile(filepath.Join(full, "controller.yaml"), []byte("x"), 0o600)
		cases := []struct {
			name string
			edit func(*provision.DeviceRequest, **provision.Mosquitto)
			code string
		}{
			{"existing device, its own directory", func(r *provision.DeviceRequest, _ **provision.Mosquitto) { r.ID = "wd-1" }, store.ErrDeviceExists.Code},
			{"existing device, new directory", func(r *provision.DeviceRequest, _ **provision.Mosquitto) {
				r.ID, r.Out = "wd-1", filepath.Join(e.out, "fresh")
			}, store.ErrDeviceExists.Code},
			{"non-empty directory", func(r *provision.DeviceRequest, _ **provision.Mosquitto) { r.Out = full }, provision.ErrOutDir.Code},
			{"output is a file", func(r *provision.DeviceRequest, _ **provision.Mosquitto) {
				r.Out = filepath.Join(full, "controller.yaml")
			}, provision.ErrOutDir.Code},
			{"bad id", func(r *provision.DeviceRequest, _ **provision.Mosquitto) { r.ID = "Bad/Id" }, provision.ErrInput.Code},
			{"bad kind", func(r *provision.DeviceRequest, _ **provision.Mosquitto) { r.Kind = "toaster" }, provision.ErrInput.Code},
			{"bad currency", func(r *provision.DeviceRequest, _ **provision.Mosquitto) { r.Currency = "euro" }, provision.ErrInput.Code},
			{"too many machines", func(r *provision.DeviceRequest, _ **provision.Mosquitto) { r.Machines = 17 }, provision.ErrInput.Code},
			{"slots on water", func(r *provision.DeviceRequest, _ **provision.Mosquitto) { r.Slots = provision.DefaultSlots }, provision.ErrInput.Code},
			{"plaintext to a remote broker", func(r *provision.DeviceRequest, _ **provision.Mosquitto) { r.MQTTURL = "tcp://broker.example:1883" }, provision.ErrInput.Code},
			{"url without port", func(r *provision.DeviceRequest, _ **provision.Mosquitto) { r.MQTTURL = "ssl://broker.example" }, provision.ErrInput.Code},
			{"bad CA", func(r *provision.DeviceRequest, _ **provision.Mosquitto) { r.CAPEM = "not a certificate" }, provision.ErrInput.Code},
			{"bad k", func(r *provision.DeviceRequest, _ **provision.Mosquitto) { r.K = 99 }, provision.ErrInput.Code},
			{"unknown operator", func(r *provision.DeviceRequest, _ **provision.Mosquitto) { r.OperatorID = "op_nope" }, store.ErrOperatorNotFound.Code},
			{"mosquitto certificate missing", func(_ *provision.DeviceRequest, m **provision.Mosquitto) {
				*m = &provision.Mosquitto{Dir: filepath.Join(e.out, "mosq")}
			}, provision.ErrInput.Code},
			{"mosquitto unknown group", func(r *provision.DeviceRequest, m **provision.Mosquitto) {
				r.MQTTURL = "tcp://127.0.0.1:1883"
				*m = &provision.Mosquitto{Dir: filepath.Join(e.out, "mosq"), Group: "no-such-group-here"}
			}, provision.ErrInput.Code},
			{"mosquitto plaintext off loopback", func(_ *provision.DeviceRequest, m **provision.Mosquitto) {
				*m = &provision.Mosquitto{Dir: filepath.Join(e.out, "mosq"), Listen: "0.0.0.0:1883"}
			}, provision.ErrInput.Code},
		}
		for _, c := range cases {
			r := e.req("wd-new")
			var m *provision.Mosquitto
			c.edit(&r, &m)
			_, err := e.p.AddDevice(e.ctx, r, m)
			if vend.CodeOf(err) != c.code || !strings.HasPrefix(err.Error(), "provision: ") && !strings.HasPrefix(err.Error(), "store: ") {
				t.Errorf("%s: err = %v (code %s), want code %s", c.name, err, vend.CodeOf(err), c.code)
			}
			if r.ID != "wd-1" {
				if ok, err := e.st.DeviceExists(e.ctx, r.ID); ok || err != nil {
					t.Errorf("%s: device %s registered (%v)", c.name, r.ID, err)
				}
			}
		}
		if after, _ := os.ReadFile(live); string(after) != string(before) {
			t.Error("the live device's bundle changed")
		}
		for _, dir := range []string{"wd-new", "fresh", "mosq"} {
			if _, err := os.Stat(filepath.Join(e.out, dir)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s was created by a refused add (%v)", dir, err)
			}
		}
		if ents, _ := os.ReadDir(full); len(ents) != 1 {
			t.Errorf("the non-empty directory now holds %d entries", len(ents))
		}
	})
}

// On a NATS broker a device id holding '.' is refused (NATS refuses it
// as an MQTT client id); without one it is a valid id.
func TestAddDeviceNATSRefusesDot(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		e.p.NATS = true
		if _, err := e.p.AddDevice(e.ctx, e.req("wd.1"), nil); vend.CodeOf(err) != provision.ErrInput.Code || !strings.Contains(err.Error(), "NATS") {
			t.Fatalf("wd.1 on NATS: %v", err)
		}
		if ok, _ := e.st.DeviceExists(e.ctx, "wd.1"); ok {
			t.Fatal("wd.1 registered")
		}
		if _, err := e.p.AddDevice(e.ctx, e.req("wd-2"), nil); err != nil {
			t.Fatalf("wd-2 on NATS: %v", err)
		}
		e.p.NATS = false
		if _, err := e.p.AddDevice(e.ctx, e.req("wd.3"), nil); err != nil {
			t.Fatalf("wd.3 on MQTT: %v", err)
		}
	})
}

// A database that cannot answer whether the device exists is an error,
// not "absent": nothing is written.
func TestAddDeviceDatabaseDown(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		e.st.Close()
		r := e.req("wd-1")
		_, err := e.p.AddDevice(e.ctx, r, nil)
		if err == nil || vend.KindOf(err) == vend.NotFound {
			t.Fatalf("AddDevice on a closed database = %v", err)
		}
		if _, err := os.Stat(r.Out); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("output directory made: %v", err)
		}
	})
}

// A registration that fails removes the bundle and the directory it
// made: no bundle for an unregistered device.
func TestAddDeviceRegistrationFails(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		r := e.req("wd-1")
		r.OperatorID = "op_missing" // only the registration finds it missing
		if _, err := e.p.AddDevice(e.ctx, r, nil); vend.CodeOf(err) != store.ErrOperatorNotFound.Code {
			t.Fatalf("err = %v", err)
		}
		if _, err := os.Stat(r.Out); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("output directory left behind: %v", err)
		}
		// An existing empty directory stays, empty.
		os.MkdirAll(r.Out, 0o700)
		if _, err := e.p.AddDevice(e.ctx, r, nil); err == nil {
			t.Fatal("no error")
		}
		if ents, _ := os.ReadDir(r.Out); len(ents) != 0 {
			t.Errorf("the directory holds %d entries after a failed registration", len(ents))
		}
	})
}

// A process that dies between the registration and the rename leaves the
// bundle under its temporary name; the same command again completes it.
// Another device's temporary bundle, or a tampered one, is not taken.
func TestAddDeviceRecovers(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		died := errors.New("killed")
		provision.SetBeforeRename(e.p, func() error { return died })
		r := e.req("wd-1")
		if _, err := e.p.AddDevice(e.ctx, r, nil); !errors.Is(err, died) {
			t.Fatalf("err = %v", err)
		}
		provision.SetBeforeRename(e.p, nil)
		if _, err := os.Stat(filepath.Join(r.Out, "bundle.json")); !errors.Is(err, os.ErrNotExist) {
			t.Fatal("bundle in place before the rename")
		}
		// Run into another directory: the device exists, no recovery.
		other := r
		other.Out = filepath.Join(e.out, "elsewhere")
		if _, err := e.p.AddDevice(e.ctx, other, nil); vend.CodeOf(err) != store.ErrDeviceExists.Code {
			t.Fatalf("add into another directory: %v", err)
		}
		res, err := e.p.AddDevice(e.ctx, r, nil)
		if err != nil || !res.Recovered {
			t.Fatalf("re-run: %+v, %v", res, err)
		}
		b := readBundle(t, r.Out)
		d, _ := e.st.GetDevice(e.ctx, "wd-1")
		if ok, _ := broker.VerifyPassword(d.MQTTHash, b.MQTT.Password); !ok {
			t.Error("the recovered bundle's password is not the registered one")
		}
		if ents, _ := os.ReadDir(r.Out); len(ents) != 1 {
			t.Errorf("directory holds %d entries, want just bundle.json", len(ents))
		}
		// Now complete: a third run is "exists".
		if _, err := e.p.AddDevice(e.ctx, r, nil); vend.CodeOf(err) != store.ErrDeviceExists.Code {
			t.Fatalf("third run: %v", err)
		}
	})
}

func TestParse(t *testing.T) {
	if p, err := provision.ParsePrice("50/1000"); err != nil || p != (vend.Price{Minor: 50, Per: 1000}) {
		t.Errorf("ParsePrice = %v, %v", p, err)
	}
	for _, bad := range []string{"", "50", "x/1", "50/0", "-1/1"} {
		if _, err := provision.ParsePrice(bad); vend.CodeOf(err) != provision.ErrInput.Code {
			t.Errorf("ParsePrice(%q) = %v", bad, err)
		}
	}
	for _, bad := range []string{"A1:Cola", "A1:Cola:x", "A/1:Cola:1", "A1:a:1,A1:b:2", ":x:1", "A1:x:-5"} {
		if _, err := provision.ParseSlots(bad); vend.CodeOf(err) != provision.ErrInput.Code {
			t.Errorf("ParseSlots(%q) = %v", bad, err)
		}
	}
}

// The site broker's files follow the store: a device added is in the
// password file and its operator's ACL section; disabled, it is out of
// both; an operator account's password is replaced, never kept in clear.
func TestMosquittoFilesFollowStore(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		mq := &provision.Mosquitto{Dir: filepath.Join(e.out, "mosq"), Listen: "127.0.0.1:1883"}
		acct, err := e.p.OperatorBrokerAccount(e.ctx, e.op, mq)
		if err == nil || vend.CodeOf(err) != provision.ErrInput.Code {
			t.Fatalf("account with a TLS listener and no certificates = %v, want refused before anything", err)
		}
		if _, err := e.st.BrokerAccountHash(e.ctx, e.op); vend.CodeOf(err) != store.ErrBrokerAccountNotFound.Code {
			t.Fatalf("a refused call made the account: %v", err)
		}
		mq = &provision.Mosquitto{Dir: filepath.Join(e.out, "mosq"), BrokerURL: "tcp://127.0.0.1:1883"}
		if acct, err = e.p.OperatorBrokerAccount(e.ctx, e.op, mq); err != nil {
			t.Fatal(err)
		}
		r := e.req("wd-1")
		r.MQTTURL = "tcp://127.0.0.1:1883"
		if _, err := e.p.AddDevice(e.ctx, r, mq); err != nil {
			t.Fatal(err)
		}
		read := func(name string) string {
			b, err := os.ReadFile(filepath.Join(mq.Dir, name))
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}
		pw, acl := read("passwords"), read("acl")
		if !strings.Contains(pw, "\nwd-1:$7$") || !strings.Contains(pw, acct.Username+":$7$") || strings.Contains(pw, acct.Password) {
			t.Errorf("passwords:\n%s", pw)
		}
		if !strings.Contains(acl, "user "+acct.Username+"\n") || !strings.Contains(acl, "topic read bv/v1/dev/wd-1/telemetry\n") {
			t.Errorf("acl:\n%s", acl)
		}
		if conf := read("mosquitto.conf"); !strings.Contains(conf, "listener 1883 127.0.0.1\n") || strings.Contains(conf, "certfile") {
			t.Errorf("mosquitto.conf for a loopback broker:\n%s", conf)
		}
		if _, err := e.p.DisableDevice(e.ctx, "wd-1", mq); err != nil {
			t.Fatal(err)
		}
		if pw, acl := read("passwords"), read("acl"); strings.Contains(pw, "wd-1:") || strings.Contains(acl, "wd-1") {
			t.Errorf("a disabled device is still in the broker files:\n%s\n%s", pw, acl)
		}
		if _, err := e.p.DisableDevice(e.ctx, "nope", nil); vend.CodeOf(err) != store.ErrDeviceNotFound.Code {
			t.Errorf("disable unknown: %v", err)
		}
	})
}

// An add that died after writing its temporary bundle and before
// registering left a bundle for an unregistered device: the next add
// into that directory removes it (its keys were never valid) and goes on.
func TestAddDeviceRemovesUnregisteredTemp(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		r := e.req("wd-1")
		if err := os.MkdirAll(r.Out, 0o700); err != nil {
			t.Fatal(err)
		}
		stale := filepath.Join(r.Out, ".bundle.json.tmp-123")
		if err := os.WriteFile(stale, []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := e.p.AddDevice(e.ctx, r, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stale temporary bundle still there: %v", err)
		}
		if ents, _ := os.ReadDir(r.Out); len(ents) != 1 || ents[0].Name() != "bundle.json" {
			t.Errorf("directory holds %v", ents)
		}
	})
}
