package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/proxid"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/broker"
	"beaconvend/cloud/store"
	"beaconvend/controller/config"
)

type deviceFlags struct {
	ID, Operator, Kind, Name, Currency, Price, Slots string
	Board                                            string // vending: the I/O board profile
	Machines                                         int
	K                                                uint
	Out, MosquittoDir, MQTTURL, Port                 string
	Status                                           bool          // rotate-key: only print where the rotation stands
	Wait                                             time.Duration // rotate-key: wait this long for the promotion
}

func (d *deviceFlags) rotateFlags(fs *flag.FlagSet) {
	fs.StringVar(&d.ID, "id", "", "device id")
	fs.BoolVar(&d.Status, "status", false, "print where the device's key rotation stands; change nothing")
	fs.DurationVar(&d.Wait, "wait", 0, "wait up to this long for the running cloud to complete the rotation (0: return at once)")
}

func (d *deviceFlags) addFlags(fs *flag.FlagSet) {
	fs.StringVar(&d.ID, "id", "", "device id (a-z 0-9 . _ -)")
	fs.StringVar(&d.Operator, "operator", "", "owning operator: its id (op_…) or its name")
	fs.StringVar(&d.Kind, "kind", "water", "machine kind: water, washer, dryer or vending")
	fs.StringVar(&d.Name, "name", "", "device label (default: the id)")
	fs.IntVar(&d.Machines, "machines", 1, "machines of that kind on the board (not for vending)")
	fs.StringVar(&d.Currency, "currency", "EUR", "ISO 4217 currency")
	fs.StringVar(&d.Price, "price", "", "price MINOR/PER, e.g. 50/1000 (0.50 per litre); default by kind")
	fs.StringVar(&d.Slots, "slots", "A1:Item A1:150,A2:Item A2:150", "vending slots ID:NAME:MINOR,…")
	fs.StringVar(&d.Board, "board", "generic-relay-16", "vending: I/O board profile, generic-relay-16 (drop sensor in16, motors relay1-15) "+
		"or pulse-io-4 (drop sensor in1, counted by count1 as the drop_counter, motors out1-4)")
	fs.UintVar(&d.K, "k", proxid.DefaultK, "proximity-ID rotation exponent (2^k s windows)")
	fs.StringVar(&d.Out, "out", "", "directory for the controller config and its key files (required)")
	fs.StringVar(&d.MQTTURL, "mqtt-url", "tcp://127.0.0.1:1883", "broker URL written into the controller config")
	fs.StringVar(&d.Port, "port", "/dev/ttyUSB0", "serial port of the I/O board")
	fs.StringVar(&d.MosquittoDir, "mosquitto-dir", "", "also write Mosquitto password_file, acl_file and mosquitto.conf here")
}

func (m *Main) printJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(m.Stdout, string(b))
	return err
}

func parsePrice(s string) (vend.Price, error) {
	a, b, ok := strings.Cut(s, "/")
	minor, err1 := strconv.ParseInt(a, 10, 64)
	per, err2 := strconv.ParseUint(b, 10, 32)
	p := vend.Price{Minor: minor, Per: uint32(per)}
	if !ok || err1 != nil || err2 != nil || p.Validate() != nil {
		return p, fmt.Errorf("cloud: price %q: want MINOR/PER such as 50/1000", s)
	}
	return p, nil
}

// controllerYAML mirrors the parts of controller/config.Config that a
// provisioned device needs; config.Load checks the result.
type controllerYAML struct {
	DeviceID string `yaml:"device_id"`
	Keys     struct {
		IdentityKeyFile string   `yaml:"identity_key_file"`
		DeviceKeyFile   string   `yaml:"device_key_file"`
		CloudPublicKeys []string `yaml:"cloud_public_keys"`
	} `yaml:"keys"`
	MQTT struct {
		Broker       string `yaml:"broker"`
		Username     string `yaml:"username"`
		PasswordFile string `yaml:"password_file"`
	} `yaml:"mqtt"`
	Journal string `yaml:"journal"`
	Board   struct {
		Profile string `yaml:"profile"`
		Port    string `yaml:"port"`
	} `yaml:"board"`
	Beacon struct {
		Backend string `yaml:"backend"`
		K       uint8  `yaml:"k"`
		Name    string `yaml:"name,omitempty"`
	} `yaml:"beacon"`
	Machines []map[string]any `yaml:"machines"`
}

func (m *Main) deviceAdd(ctx context.Context) error {
	f := m.dev
	if f.ID == "" || f.Operator == "" || f.Out == "" {
		return errors.New("cloud: device add needs -id, -operator and -out")
	}
	if err := vend.ValidateDeviceID(f.ID); err != nil {
		return err
	}
	if err := proxid.ValidateK(uint8(f.K)); err != nil || f.K > proxid.MaxK {
		return fmt.Errorf("cloud: -k %d: %v", f.K, err)
	}
	opID, err := m.operatorID(ctx, f.Operator)
	if err != nil {
		return err
	}
	sec, err := m.secrets()
	if err != nil {
		return err
	}
	cur := vend.Currency(f.Currency)
	if err := cur.Validate(); err != nil {
		return err
	}
	kind := vend.MachineKind(f.Kind)
	defPrice := map[vend.MachineKind]string{vend.KindWater: "50/1000", vend.KindWasher: "350/1", vend.KindDryer: "100/600", vend.KindVending: "150/1"}
	if f.Price == "" {
		f.Price = defPrice[kind]
	}
	if kind.Unit() == 0 {
		return fmt.Errorf("cloud: -kind %q: want water, washer, dryer or vending", f.Kind)
	}
	price, err := parsePrice(f.Price)
	if err != nil {
		return err
	}
	y := controllerYAML{DeviceID: f.ID, Journal: "journal.db"}
	y.Keys.IdentityKeyFile, y.Keys.DeviceKeyFile = "identity.key", "device.key"
	y.Keys.CloudPublicKeys = []string{hex.EncodeToString(sec.CloudKey.Public().(ed25519.PublicKey))}
	y.MQTT.Broker, y.MQTT.Username, y.MQTT.PasswordFile = f.MQTTURL, f.ID, "mqtt.pass"
	y.Board.Port = f.Port
	y.Beacon.Backend, y.Beacon.K = "sim", uint8(f.K)
	var machines []store.Machine
	n := f.Machines
	switch kind {
	case vend.KindWater:
		y.Board.Profile = "pulse-io-4"
		n = min(max(n, 1), 4)
		for i := 1; i <= n; i++ {
			id := fmt.Sprintf("tap%d", i)
			machines = append(machines, store.Machine{ID: id, Kind: kind, Name: fmt.Sprintf("Water %d", i), Unit: kind.Unit(), Price: price, Currency: cur})
			y.Machines = append(y.Machines, map[string]any{"id": id, "kind": "water", "name": fmt.Sprintf("Water %d", i), "currency": string(cur),
				"price": price, "water": map[string]any{"valve": fmt.Sprintf("out%d", i), "flow": fmt.Sprintf("count%d", i), "k_factor": "450", "no_flow": "5s", "pause_allowance": "30s"}})
		}
	case vend.KindWasher, vend.KindDryer:
		y.Board.Profile = "generic-relay-8"
		n = min(max(n, 1), 8)
		for i := 1; i <= n; i++ {
			id := fmt.Sprintf("%s%d", kind, i)
			machines = append(machines, store.Machine{ID: id, Kind: kind, Name: fmt.Sprintf("%s %d", kind, i), Unit: kind.Unit(), Price: price, Currency: cur})
			y.Machines = append(y.Machines, map[string]any{"id": id, "kind": string(kind), "name": fmt.Sprintf("%s %d", kind, i), "currency": string(cur),
				"price": price, "washer": map[string]any{"coin": fmt.Sprintf("relay%d", i), "running": fmt.Sprintf("in%d", i)}})
		}
	case vend.KindVending:
		// The drop sensor and the motors by board; on a board that counts
		// its inputs the drop sensor's counter is named too, so that the
		// controller's recovery can count what a motor left turning dropped.
		vending := map[string]any{"drop": "in16", "drop_timeout": "5s"}
		motor, maxSlots := "relay%d", 15
		switch f.Board {
		case "generic-relay-16":
		case "pulse-io-4":
			vending = map[string]any{"drop": "in1", "drop_counter": "count1", "drop_timeout": "5s"}
			motor, maxSlots = "out%d", 4
		default:
			return fmt.Errorf("cloud: -board %q: want generic-relay-16 or pulse-io-4", f.Board)
		}
		y.Board.Profile = f.Board
		mach := store.Machine{ID: "vm1", Kind: kind, Name: "Vending", Unit: kind.Unit(), Price: price, Currency: cur}
		var slots []map[string]any
		for i, spec := range strings.Split(f.Slots, ",") {
			parts := strings.Split(spec, ":")
			if len(parts) != 3 || i >= maxSlots {
				return fmt.Errorf("cloud: -slots %q: want up to %d ID:NAME:MINOR on %s", spec, maxSlots, f.Board)
			}
			minor, err := strconv.ParseInt(parts[2], 10, 64)
			if err != nil || minor < 0 {
				return fmt.Errorf("cloud: -slots %q: bad price", spec)
			}
			sp := vend.Price{Minor: minor, Per: 1}
			mach.Slots = append(mach.Slots, store.Slot{ID: parts[0], Name: parts[1], Price: sp})
			slots = append(slots, map[string]any{"id": parts[0], "name": parts[1], "output": fmt.Sprintf(motor, i+1), "price": sp})
		}
		machines = append(machines, mach)
		y.Machines = append(y.Machines, map[string]any{"id": "vm1", "kind": "vending", "name": "Vending", "currency": string(cur),
			"vending": vending, "slots": slots})
	}

	var idKey proxid.Key
	if _, err := rand.Read(idKey[:]); err != nil {
		return err
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	pw := randHex(32)
	hash, err := broker.HashPassword(pw)
	if err != nil {
		return err
	}
	name := f.Name
	if name == "" {
		name = f.ID
	}
	if err := os.MkdirAll(f.Out, 0o700); err != nil {
		return err
	}
	// Write the files first (into a fresh directory), then register, so a
	// failure leaves no device without its secrets.
	yb, err := yaml.Marshal(y)
	if err != nil {
		return err
	}
	files := []struct {
		name string
		data []byte
	}{
		{"identity.key", []byte(idKey.String() + "\n")},
		{"device.key", []byte(hex.EncodeToString(priv.Seed()) + "\n")},
		{"mqtt.pass", []byte(pw + "\n")},
		{"controller.yaml", append([]byte("# beaconvend controller config made by `cloud device add`.\n"), yb...)},
	}
	for _, fl := range files {
		if err := config.WriteSecret(filepath.Join(f.Out, fl.name), fl.data); err != nil {
			return err
		}
	}
	if _, err := config.Load(filepath.Join(f.Out, "controller.yaml")); err != nil {
		return fmt.Errorf("cloud: generated controller config does not load: %w", err)
	}
	if err := m.Store.CreateDevice(ctx, store.Device{ID: f.ID, OperatorID: opID, Name: name, IdentityKey: idKey, K: uint8(f.K), SignKey: pub, MQTTHash: hash, Machines: machines}); err != nil {
		return err
	}
	if f.MosquittoDir != "" {
		if err := m.writeMosquitto(ctx, f.MosquittoDir); err != nil {
			return err
		}
	}
	return m.printJSON(map[string]string{"device": f.ID, "operator": opID, "config": filepath.Join(f.Out, "controller.yaml")})
}

// writeMosquitto writes password_file (every active device and the cloud
// user), acl_file and mosquitto.conf for a site Mosquitto 2 broker.
func (m *Main) writeMosquitto(ctx context.Context, dir string) error {
	sec, err := m.secrets()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	cloudHash, err := broker.HashPassword(sec.MQTTPassword)
	if err != nil {
		return err
	}
	entries := []broker.PasswordEntry{{User: broker.DefaultCloudUser, Hash: cloudHash}}
	keys, err := m.Store.DeviceKeys(ctx)
	if err != nil {
		return err
	}
	for _, k := range keys {
		d, err := m.Store.GetDevice(ctx, k.DeviceID)
		if err != nil {
			return err
		}
		entries = append(entries, broker.PasswordEntry{User: d.ID, Hash: d.MQTTHash})
	}
	var pw, acl, conf bytes.Buffer
	if err := broker.WritePasswordFile(&pw, entries); err != nil {
		return err
	}
	if err := broker.WriteACLFile(&acl, mqttapi.Tree{}, broker.DefaultCloudUser); err != nil {
		return err
	}
	cfg := broker.MosquittoConfig{Addr: "0.0.0.0:1883", PasswordFile: filepath.Join(dir, "passwords"), ACLFile: filepath.Join(dir, "acl")}
	if _, err := cfg.WriteTo(&conf); err != nil {
		return err
	}
	for name, b := range map[string][]byte{"passwords": pw.Bytes(), "acl": acl.Bytes(), "mosquitto.conf": conf.Bytes()} {
		if err := config.WriteSecret(filepath.Join(dir, name), b); err != nil {
			return err
		}
	}
	return nil
}

// deviceRotate asks for a rotation of the device's signing key. The
// running cloud (`cloud serve`, its key-rotation driver) carries it out
// over the device's in-band protocol: the board makes the new key pair
// itself and proposes its public key, the cloud records it and commits,
// and the new key is promoted at the board's first report under it; the
// old key stays valid for reports of sessions created before (store
// RetiredKeyWindow). No private key ever leaves the board. It prints the
// rotation's state, after waiting with -wait.
func (m *Main) deviceRotate(ctx context.Context) error {
	f := m.dev
	if f.ID == "" {
		return errors.New("cloud: device rotate-key needs -id")
	}
	var r store.Rotation
	var err error
	if f.Status {
		r, err = m.Store.GetRotation(ctx, f.ID)
	} else {
		r, err = m.Store.RequestRotation(ctx, f.ID)
	}
	if err != nil {
		return err
	}
	if f.Wait > 0 && !f.Status {
		deadline := time.Now().Add(f.Wait)
		for r.State != store.RotationNone && time.Now().Before(deadline) {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(500 * time.Millisecond):
			}
			if r, err = m.Store.GetRotation(ctx, f.ID); err != nil {
				return err
			}
		}
	}
	state := string(r.State)
	if state == "" {
		state = "none"
	}
	out := map[string]any{"device": f.ID, "rotation": state, "attempt": r.N}
	if r.Next != nil {
		out["next_key"] = hex.EncodeToString(r.Next)
	}
	if d, err := m.Store.GetDevice(ctx, f.ID); err == nil {
		out["key"] = hex.EncodeToString(d.SignKey)
	}
	if f.Wait > 0 && !f.Status && r.State != store.RotationNone {
		_ = m.printJSON(out)
		return fmt.Errorf("cloud: rotation of %s not complete after %v (state %s): is `cloud serve` running and the device online? It goes on in the background", f.ID, f.Wait, state)
	}
	return m.printJSON(out)
}

func (m *Main) deviceDisable(ctx context.Context) error {
	if m.dev.ID == "" {
		return errors.New("cloud: device disable needs -id")
	}
	d, err := m.Store.GetDevice(ctx, m.dev.ID)
	if err != nil {
		return err
	}
	if err := m.Store.SetDeviceState(ctx, d.OperatorID, d.ID, store.DeviceDisabled); err != nil {
		return err
	}
	return m.printJSON(map[string]string{"device": d.ID, "state": string(store.DeviceDisabled)})
}
