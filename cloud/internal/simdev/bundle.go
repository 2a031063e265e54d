package simdev

import (
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"time"

	pb "beaconvend/app-protocol/provision"
	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
	"beaconvend/controller/config"
	"beaconvend/controller/wiring"
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
// and its key files through the controller's own bundle import
// (controller/wiring, what `controller import-bundle` runs), with the
// wiring the harness's emulated boards have: water on pulse-io-4 (valve
// outN, flow countN, 450 pulses per litre), washers and dryers on
// generic-relay-8 (coin relayN, running inN), vending per w.VendingBoard.
// The beacon is the simulated air; the journal is dir/journal.db.
func WriteController(dir string, w Wiring) error {
	b, err := ReadBundle(dir)
	if err != nil {
		return err
	}
	wr := &wiring.Wiring{Port: w.Port, Journal: filepath.Join(dir, "journal.db"), Machines: map[string]*wiring.Machine{}}
	for i, m := range b.Machines {
		n := i + 1
		switch m.Kind {
		case vend.KindWater:
			wr.Profile = "pulse-io-4"
			wr.Machines[m.ID] = &wiring.Machine{Valve: fmt.Sprintf("out%d", n), Flow: fmt.Sprintf("count%d", n), KFactor: "450",
				NoFlow: config.Duration(5 * time.Second), PauseAllowance: config.Duration(30 * time.Second)}
		case vend.KindWasher, vend.KindDryer:
			wr.Profile = "generic-relay-8"
			wr.Machines[m.ID] = &wiring.Machine{Coin: fmt.Sprintf("relay%d", n), Running: fmt.Sprintf("in%d", n)}
		case vend.KindVending:
			x, motor := &wiring.Machine{Drop: "in16", DropTimeout: config.Duration(5 * time.Second), Slots: map[string]string{}}, "relay%d"
			wr.Profile = "generic-relay-16"
			switch w.VendingBoard {
			case "", "generic-relay-16":
			case "pulse-io-4":
				x.Drop, x.DropCounter, motor = "in1", "count1", "out%d"
				wr.Profile = "pulse-io-4"
			default:
				return fmt.Errorf("simdev: vending board %q: want generic-relay-16 or pulse-io-4", w.VendingBoard)
			}
			for j, s := range m.Slots {
				x.Slots[s.ID] = fmt.Sprintf(motor, j+1)
			}
			wr.Machines[m.ID] = x
		}
	}
	if _, err := wiring.Import(b, wr, dir, wiring.Opts{Beacon: "sim", Force: true}); err != nil {
		return fmt.Errorf("simdev: %s: %w", dir, err)
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
