package wiring

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"

	"beaconvend/app-protocol/provision"
	"beaconvend/app-protocol/vend"
	"beaconvend/controller/config"
	"beaconvend/hw/profile"
)

// File names Import writes into its directory.
const (
	ConfigFile      = "controller.yaml"
	IdentityKeyFile = "identity.key"
	DeviceKeyFile   = "device.key"
	PasswordFile    = "mqtt.pass"
	CAFile          = "ca.pem"
)

// Opts tunes Import.
type Opts struct {
	// Beacon is the beacon backend written: "hci" (default, the board's
	// radio) or "sim" (the simulated air, for development only).
	Beacon string
	// Force replaces an existing config and key files.
	Force bool
	// Plaintext allows a tcp:// broker URL to a host other than loopback
	// (the device's password would cross the network in clear): for a
	// development broker only.
	Plaintext bool
}

// File is one file Build makes: its name in the output directory and its
// contents. Every one is written with mode 0600.
type File struct {
	Name string
	Data []byte
}

// Build makes the controller's files from a bundle and the board's wiring,
// in memory: the key files first and controller.yaml last. The config is
// checked with config.Parse (as if in dir). Errors name the wiring field or
// the bundle's machine.
func Build(b *provision.Bundle, w *Wiring, dir string, o Opts) ([]File, error) {
	if err := b.Validate(); err != nil {
		return nil, err
	}
	switch o.Beacon {
	case "":
		o.Beacon = "hci"
	case "hci", "sim":
	default:
		return nil, bad("beacon", "backend %q: want hci (the board's radio) or sim (development only)", o.Beacon)
	}
	if o.Beacon == "hci" && w.Beacon.SimAddr != "" {
		return nil, bad("beacon.sim_addr", "only for the sim backend")
	}
	if o.Beacon == "hci" && w.Beacon.SimRSSI != 0 {
		return nil, bad("beacon.sim_rssi", "only for the sim backend")
	}
	if o.Beacon != "hci" && w.Beacon.GATT {
		return nil, bad("beacon.gatt", "only for the hci backend (a radio that can take connections)")
	}
	if u, err := url.Parse(b.MQTT.URL); err == nil && (u.Scheme == "tcp" || u.Scheme == "mqtt") && !o.Plaintext && !loopback(u.Hostname()) {
		return nil, vend.Errorf(ErrWiring, "bundle: mqtt.url %s: plaintext to a remote broker sends the device's password in clear; provision with an ssl:// URL (or allow plaintext for a development broker)", b.MQTT.URL)
	}
	if b.MQTT.CAPEM != "" && !x509.NewCertPool().AppendCertsFromPEM([]byte(b.MQTT.CAPEM)) {
		return nil, vend.Errorf(ErrWiring, "bundle: mqtt.ca_pem: no PEM certificate in it")
	}
	prof, err := w.profilePath()
	if err != nil {
		return nil, bad("profile", "%v", err)
	}
	p, err := profile.Resolve(prof)
	if err != nil {
		return nil, bad("profile", "%v", err)
	}
	wired, err := w.machines(b, p)
	if err != nil {
		return nil, err
	}

	c := yConfig{DeviceID: b.DeviceID, Journal: w.Journal, GrantSkew: "30s"}
	if c.Journal == "" {
		c.Journal = DefaultJournal
	}
	c.Keys.IdentityKeyFile, c.Keys.DeviceKeyFile = IdentityKeyFile, DeviceKeyFile
	for _, k := range b.CloudPublicKeys {
		c.Keys.CloudPublicKeys = append(c.Keys.CloudPublicKeys, hex.EncodeToString(k))
	}
	c.MQTT.Broker, c.MQTT.Username, c.MQTT.PasswordFile = b.MQTT.URL, b.MQTT.Username, PasswordFile
	files := []File{
		{IdentityKeyFile, []byte(b.IdentityKey.String() + "\n")},
		{DeviceKeyFile, []byte(hex.EncodeToString(b.DeviceKey) + "\n")},
		{PasswordFile, []byte(b.MQTT.Password + "\n")},
	}
	if b.MQTT.CAPEM != "" {
		c.MQTT.TLS = &yTLS{CAFile: CAFile}
		files = append(files, File{CAFile, []byte(strings.TrimRight(b.MQTT.CAPEM, "\n") + "\n")})
	}
	c.Board.Profile, c.Board.Port, c.Board.PollInterval = prof, w.Port, dur(w.PollInterval)
	if w.Modem != nil {
		c.Modem = &yModem{Port: w.Modem.Port, PollInterval: dur(w.Modem.PollInterval)}
	}
	k := b.K
	c.Beacon = yBeacon{Backend: o.Beacon, HCIDevice: w.Beacon.HCIDevice, CompanyID: w.Beacon.CompanyID, K: &k,
		TxPower: w.Beacon.TxPower, Name: w.Beacon.Name, Offline: w.Beacon.Offline, SimAddr: w.Beacon.SimAddr, SimRSSI: w.Beacon.SimRSSI,
		GATT: w.Beacon.GATT, GATTIdleTimeout: dur(w.Beacon.GATTIdleTimeout)}
	for _, bm := range b.Machines {
		m := wired[bm.ID]
		y := yMachine{ID: bm.ID, Kind: string(bm.Kind), Name: bm.Name, Currency: string(bm.Currency)}
		switch bm.Kind {
		case vend.KindWater:
			kf := m.KFactor
			if kf == "" {
				kf = DefaultKFactor
			}
			y.Price = &yPrice{bm.Price.Minor, bm.Price.Per}
			y.Water = &yWater{Valve: m.Valve, Flow: m.Flow, KFactor: kf, NoFlow: dur(m.NoFlow), PauseAllowance: dur(m.PauseAllowance)}
		case vend.KindWasher, vend.KindDryer:
			y.Price = &yPrice{bm.Price.Minor, bm.Price.Per}
			y.Washer = &yWasher{Coin: m.Coin, Running: m.Running, PulseWidth: dur(m.PulseWidth), PulseGap: dur(m.PulseGap),
				PulsesPerCredit: m.PulsesPerCredit, StartTimeout: dur(m.StartTimeout), Debounce: dur(m.Debounce)}
		case vend.KindVending:
			y.Vending = &yVending{Drop: m.Drop, DropCounter: m.DropCounter, DropTimeout: dur(m.DropTimeout)}
			for _, s := range bm.Slots {
				y.Slots = append(y.Slots, ySlot{ID: s.ID, Name: s.Name, Output: m.Slots[s.ID], Price: yPrice{s.Price.Minor, s.Price.Per}})
			}
		}
		c.Machines = append(c.Machines, y)
	}
	var body bytes.Buffer
	enc := yaml.NewEncoder(&body)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return nil, fmt.Errorf("wiring: encode config: %w", err)
	}
	head := fmt.Sprintf("# beaconvend controller config for device %s, made by `controller import-bundle`\n"+
		"# from its provisioning bundle and the board's wiring. To change the wiring,\n"+
		"# edit the wiring file and import again with -force.\n", b.DeviceID)
	text := append([]byte(head), body.Bytes()...)
	if _, err := config.Parse(bytes.NewReader(text), dir); err != nil {
		return nil, fmt.Errorf("wiring: the config made from this wiring does not load: %w", err)
	}
	return append(files, File{ConfigFile, text}), nil
}

// Import builds the files (see Build) and writes them into dir (created
// 0700 if missing): each to a temporary file in dir with mode 0600,
// fsynced; then, all written, renamed into place with controller.yaml last,
// and the directory fsynced. Without o.Force it refuses, before writing
// anything, when dir already holds any of them (ErrExists). The written
// config is loaded back with its keys (config.Load, LoadSecrets). It
// returns the config's path.
func Import(b *provision.Bundle, w *Wiring, dir string, o Opts) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("wiring: %w", err)
	}
	files, err := Build(b, w, abs, o)
	if err != nil {
		return "", err
	}
	if !o.Force {
		var present []string
		for _, name := range []string{ConfigFile, IdentityKeyFile, DeviceKeyFile, PasswordFile, CAFile} {
			if _, err := os.Lstat(filepath.Join(abs, name)); err == nil {
				present = append(present, name)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return "", fmt.Errorf("wiring: %w", err)
			}
		}
		if len(present) > 0 {
			return "", vend.Errorf(ErrExists, "%s already holds %s: a board is set up there (import with -force to replace it)", abs, strings.Join(present, ", "))
		}
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return "", fmt.Errorf("wiring: %w", err)
	}
	if err := writeAll(abs, files); err != nil {
		return "", err
	}
	path := filepath.Join(abs, ConfigFile)
	c, err := config.Load(path)
	if err != nil {
		return "", fmt.Errorf("wiring: written config does not load: %w", err)
	}
	if _, err := c.LoadSecrets(); err != nil {
		return "", fmt.Errorf("wiring: written keys do not load: %w", err)
	}
	return path, nil
}

// writeAll stages every file, then renames them in order.
func writeAll(dir string, files []File) error {
	var tmps []string
	defer func() {
		for _, t := range tmps {
			os.Remove(t) // those not renamed
		}
	}()
	for _, f := range files {
		t, err := stage(dir, f.Data)
		if t != "" {
			tmps = append(tmps, t)
		}
		if err != nil {
			return fmt.Errorf("wiring: write %s: %w", filepath.Join(dir, f.Name), err)
		}
	}
	for i, f := range files {
		if err := os.Rename(tmps[i], filepath.Join(dir, f.Name)); err != nil {
			return fmt.Errorf("wiring: write %s: %w", filepath.Join(dir, f.Name), err)
		}
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("wiring: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("wiring: sync %s: %w", dir, err)
	}
	return nil
}

func stage(dir string, data []byte) (string, error) {
	f, err := os.CreateTemp(dir, ".import-*")
	if err != nil {
		return "", err
	}
	name := f.Name()
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return name, err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return name, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return name, err
	}
	return name, f.Close()
}

// ImportFiles reads a bundle and a wiring file and imports them into dir
// (see Import).
func ImportFiles(bundlePath, wiringPath, dir string, o Opts) (string, error) {
	f, err := os.Open(bundlePath)
	if err != nil {
		return "", fmt.Errorf("wiring: bundle: %w", err)
	}
	defer f.Close()
	b, err := provision.Decode(f)
	if err != nil {
		return "", fmt.Errorf("%s: %w", bundlePath, err)
	}
	w, err := Load(wiringPath)
	if err != nil {
		return "", err
	}
	return Import(b, w, dir, o)
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func dur(d config.Duration) string {
	if d == 0 {
		return ""
	}
	return d.D().String()
}

// The config as written: controller/config's layout with empty fields left
// out, so the file shows what was chosen and defaults stay the
// controller's.
type yConfig struct {
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
		TLS          *yTLS  `yaml:"tls,omitempty"`
	} `yaml:"mqtt"`
	Journal string `yaml:"journal"`
	Board   struct {
		Profile      string `yaml:"profile"`
		Port         string `yaml:"port"`
		PollInterval string `yaml:"poll_interval,omitempty"`
	} `yaml:"board"`
	Modem     *yModem    `yaml:"modem,omitempty"`
	Beacon    yBeacon    `yaml:"beacon"`
	GrantSkew string     `yaml:"grant_skew"`
	Machines  []yMachine `yaml:"machines"`
}

type yTLS struct {
	CAFile string `yaml:"ca_file"`
}

type yModem struct {
	Port         string `yaml:"port"`
	PollInterval string `yaml:"poll_interval,omitempty"`
}

type yBeacon struct {
	Backend         string `yaml:"backend"`
	HCIDevice       int    `yaml:"hci_device"`
	SimAddr         string `yaml:"sim_addr,omitempty"`
	SimRSSI         int    `yaml:"sim_rssi,omitempty"`
	CompanyID       uint16 `yaml:"company_id,omitempty"`
	K               *uint8 `yaml:"k"`
	TxPower         int8   `yaml:"tx_power,omitempty"`
	Name            string `yaml:"name,omitempty"`
	Offline         bool   `yaml:"offline_capable,omitempty"`
	GATT            bool   `yaml:"gatt,omitempty"`
	GATTIdleTimeout string `yaml:"gatt_idle_timeout,omitempty"`
}

type yPrice struct {
	Minor int64  `yaml:"minor"`
	Per   uint32 `yaml:"per"`
}

type yMachine struct {
	ID       string    `yaml:"id"`
	Kind     string    `yaml:"kind"`
	Name     string    `yaml:"name,omitempty"`
	Currency string    `yaml:"currency"`
	Price    *yPrice   `yaml:"price,omitempty"`
	Water    *yWater   `yaml:"water,omitempty"`
	Washer   *yWasher  `yaml:"washer,omitempty"`
	Vending  *yVending `yaml:"vending,omitempty"`
	Slots    []ySlot   `yaml:"slots,omitempty"`
}

type yWater struct {
	Valve          string `yaml:"valve"`
	Flow           string `yaml:"flow"`
	KFactor        string `yaml:"k_factor"`
	NoFlow         string `yaml:"no_flow,omitempty"`
	PauseAllowance string `yaml:"pause_allowance,omitempty"`
}

type yWasher struct {
	Coin            string `yaml:"coin"`
	Running         string `yaml:"running"`
	PulseWidth      string `yaml:"pulse_width,omitempty"`
	PulseGap        string `yaml:"pulse_gap,omitempty"`
	PulsesPerCredit int    `yaml:"pulses_per_credit,omitempty"`
	StartTimeout    string `yaml:"start_timeout,omitempty"`
	Debounce        string `yaml:"debounce,omitempty"`
}

type yVending struct {
	Drop        string `yaml:"drop"`
	DropCounter string `yaml:"drop_counter,omitempty"`
	DropTimeout string `yaml:"drop_timeout,omitempty"`
}

type ySlot struct {
	ID     string `yaml:"id"`
	Name   string `yaml:"name,omitempty"`
	Output string `yaml:"output"`
	Price  yPrice `yaml:"price"`
}
