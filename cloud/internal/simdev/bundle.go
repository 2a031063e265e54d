package simdev

import (
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"

	"gopkg.in/yaml.v3"

	pb "beaconvend/app-protocol/provision"
	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
	"beaconvend/controller/config"
)

// ReadBundle reads the provisioning bundle `cloud device add -out dir`
// wrote (dir/bundle.json).
func ReadBundle(dir string) (*pb.Bundle, error) {
	f, err := os.Open(filepath.Join(dir, "bundle.json"))
	if err != nil {
		return nil, fmt.Errorf("simdev: %w", err)
	}
	defer f.Close()
	return pb.Decode(f)
}

// Wiring is how the harness's emulated boards are wired: what an
// installer gives the controller's bundle import beside the bundle.
type Wiring struct {
	Port string // the board's serial port (the emulator's pty)
	// VendingBoard is the vending board's profile: generic-relay-16
	// (default: drop sensor in16, motors relay1-15) or pulse-io-4 (drop
	// sensor in1 counted by count1, motors out1-4).
	VendingBoard string
}

// WriteController turns dir/bundle.json and w into dir/controller.yaml
// and its key files (identity.key, device.key, mqtt.pass), the wiring the
// harness's emulated boards have: water on pulse-io-4 (valve outN, flow
// countN, 450 pulses per litre), washers and dryers on generic-relay-8
// (coin relayN, running inN), vending per w.VendingBoard. The beacon is
// the simulated air. The controller loads the result, or this fails.
func WriteController(dir string, w Wiring) error {
	b, err := ReadBundle(dir)
	if err != nil {
		return err
	}
	y := map[string]any{"device_id": b.DeviceID, "journal": "journal.db"}
	var cloudKeys []string
	for _, k := range b.CloudPublicKeys {
		cloudKeys = append(cloudKeys, hex.EncodeToString(k))
	}
	y["keys"] = map[string]any{"identity_key_file": "identity.key", "device_key_file": "device.key", "cloud_public_keys": cloudKeys}
	mq := map[string]any{"broker": b.MQTT.URL, "username": b.MQTT.Username, "password_file": "mqtt.pass"}
	files := map[string][]byte{
		"identity.key": []byte(b.IdentityKey.String() + "\n"),
		"device.key":   []byte(hex.EncodeToString(b.DeviceKey) + "\n"),
		"mqtt.pass":    []byte(b.MQTT.Password + "\n"),
	}
	if b.MQTT.CAPEM != "" {
		files["ca.pem"] = []byte(b.MQTT.CAPEM)
		mq["tls"] = map[string]any{"ca_file": "ca.pem"}
	}
	y["mqtt"] = mq
	y["beacon"] = map[string]any{"backend": "sim", "k": b.K}
	board := map[string]any{"port": w.Port}
	var machines []map[string]any
	for i, m := range b.Machines {
		n := i + 1
		x := map[string]any{"id": m.ID, "kind": string(m.Kind), "name": m.Name, "currency": string(m.Currency)}
		switch m.Kind {
		case vend.KindWater:
			board["profile"] = "pulse-io-4"
			x["price"] = m.Price
			x["water"] = map[string]any{"valve": fmt.Sprintf("out%d", n), "flow": fmt.Sprintf("count%d", n), "k_factor": "450", "no_flow": "5s", "pause_allowance": "30s"}
		case vend.KindWasher, vend.KindDryer:
			board["profile"] = "generic-relay-8"
			x["price"] = m.Price
			x["washer"] = map[string]any{"coin": fmt.Sprintf("relay%d", n), "running": fmt.Sprintf("in%d", n)}
		case vend.KindVending:
			vending, motor, maxSlots := map[string]any{"drop": "in16", "drop_timeout": "5s"}, "relay%d", 15
			board["profile"] = "generic-relay-16"
			if w.VendingBoard == "pulse-io-4" {
				vending, motor, maxSlots = map[string]any{"drop": "in1", "drop_counter": "count1", "drop_timeout": "5s"}, "out%d", 4
				board["profile"] = "pulse-io-4"
			} else if w.VendingBoard != "" && w.VendingBoard != "generic-relay-16" {
				return fmt.Errorf("simdev: vending board %q: want generic-relay-16 or pulse-io-4", w.VendingBoard)
			}
			if len(m.Slots) > maxSlots {
				return fmt.Errorf("simdev: %d slots: %s has %d motors", len(m.Slots), board["profile"], maxSlots)
			}
			var slots []map[string]any
			for j, s := range m.Slots {
				slots = append(slots, map[string]any{"id": s.ID, "name": s.Name, "output": fmt.Sprintf(motor, j+1), "price": s.Price})
			}
			x["vending"], x["slots"] = vending, slots
		}
		machines = append(machines, x)
	}
	y["board"], y["machines"] = board, machines
	out, err := yaml.Marshal(y)
	if err != nil {
		return err
	}
	files["controller.yaml"] = append([]byte("# beaconvend controller config made by the fleet harness from bundle.json.\n"), out...)
	for name, data := range files {
		if err := config.WriteSecret(filepath.Join(dir, name), data); err != nil {
			return err
		}
	}
	if _, err := config.Load(filepath.Join(dir, "controller.yaml")); err != nil {
		return fmt.Errorf("simdev: the controller config made from %s does not load: %w", filepath.Join(dir, "bundle.json"), err)
	}
	return nil
}

// IdentityFromDir reads the identity in the bundle that
// `cloud device add -out DIR` wrote.
func IdentityFromDir(dir string) (Identity, error) {
	b, err := ReadBundle(dir)
	if err != nil {
		return Identity{}, err
	}
	cloud, err := signed.NewKeys(b.CloudPublicKeys...)
	if err != nil {
		return Identity{}, fmt.Errorf("simdev: %s: cloud keys: %w", dir, err)
	}
	return Identity{ID: b.DeviceID, IDKey: b.IdentityKey, K: b.K, Sign: ed25519.NewKeyFromSeed(b.DeviceKey), Cloud: cloud, Password: b.MQTT.Password}, nil
}
