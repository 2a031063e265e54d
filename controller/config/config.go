package config

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/proxid"
	"beaconvend/app-protocol/vend"
	"beaconvend/hw/profile"
)

// Errors.
var (
	ErrConfig   = vend.E(vend.Invalid, "config.invalid", "config")
	ErrKeyFile  = vend.E(vend.Invalid, "config.key_file", "config: key file")
	ErrKeyPerms = vend.E(vend.Unauthorized, "config.key_perms", "config: key file readable by others")
)

// Config is the controller's one YAML file.
type Config struct {
	DeviceID string    `yaml:"device_id"`
	Keys     Keys      `yaml:"keys"`
	MQTT     MQTT      `yaml:"mqtt"`
	Board    Board     `yaml:"board"`
	Modem    Modem     `yaml:"modem"`
	Journal  string    `yaml:"journal"` // bbolt file path
	Beacon   Beacon    `yaml:"beacon"`
	Machines []Machine `yaml:"machines"`
	// GrantSkew is the clock skew tolerated for a grant's issue time. Default 30s.
	GrantSkew Duration `yaml:"grant_skew"`

	dir string // directory of the file, for relative paths
}

// Keys names the key files. Every file must be mode 0600 (or stricter)
// and owned by the controller's user: the daemon refuses to start otherwise.
type Keys struct {
	IdentityKeyFile string   `yaml:"identity_key_file"` // 32 hex digits: the AES-128 proximity identity key
	DeviceKeyFile   string   `yaml:"device_key_file"`   // 64 hex digits: the Ed25519 seed that signs usage reports
	CloudPublicKeys []string `yaml:"cloud_public_keys"` // 64 hex digits each: trusted cloud grant keys (public, not secret)
}

// MQTT is the uplink.
type MQTT struct {
	Broker            string   `yaml:"broker"`   // tcp://host:1883, ssl://host:8883 or tls://…
	Username          string   `yaml:"username"` // default: the device ID
	PasswordFile      string   `yaml:"password_file"`
	TLS               TLS      `yaml:"tls"`
	Prefix            string   `yaml:"prefix"`             // topic prefix, default bv/v1/dev
	KeepAlive         Duration `yaml:"keepalive"`          // default 30s
	TelemetryInterval Duration `yaml:"telemetry_interval"` // default 60s
	DrainRate         int      `yaml:"drain_rate"`         // outbox messages per second on reconnect, default 20
}

// TLS configures the broker connection.
type TLS struct {
	CAFile     string `yaml:"ca_file"`
	CertFile   string `yaml:"cert_file"`
	KeyFile    string `yaml:"key_file"` // must be 0600
	ServerName string `yaml:"server_name"`
}

// Board is the Modbus I/O board.
type Board struct {
	Profile      string   `yaml:"profile"` // built-in name or YAML path
	Port         string   `yaml:"port"`    // serial device, e.g. /dev/ttyUSB0
	PollInterval Duration `yaml:"poll_interval"`

	profile *profile.Profile
}

// Modem is the cellular modem's AT port (optional).
type Modem struct {
	Port         string   `yaml:"port"`
	PollInterval Duration `yaml:"poll_interval"`
}

// Beacon is the BLE advertisement.
type Beacon struct {
	Backend   string `yaml:"backend"`    // hci, sim or none
	HCIDevice int    `yaml:"hci_device"` // adapter index for hci
	SimAddr   string `yaml:"sim_addr"`   // simulated air address (see hw/ble) for sim
	SimRSSI   int    `yaml:"sim_rssi"`   // simulated signal at the phone, dBm
	CompanyID uint16 `yaml:"company_id"` // default 0xFFFF
	K         *uint8 `yaml:"k"`          // rotation exponent, default 5
	TxPower   int8   `yaml:"tx_power"`   // calibrated dBm at 0 m, default -59
	Name      string `yaml:"name"`       // scan-response name; optional
	Offline   bool   `yaml:"offline_capable"`
	// GATT serves the board's GATT relay service (app-protocol/GATT.md)
	// beside the beacon, so a phone can relay a cloud grant when the
	// board has no link. Only with backend hci. Default false.
	GATT bool `yaml:"gatt"`
	// GATTIdleTimeout disconnects a central that has sent nothing (and
	// been notified nothing) for this long. Default 30 s; 5s-10m.
	GATTIdleTimeout Duration `yaml:"gatt_idle_timeout"`
}

// Machine is one machine behind this controller.
type Machine struct {
	ID       string           `yaml:"id"`
	Kind     vend.MachineKind `yaml:"kind"`
	Name     string           `yaml:"name"`
	Currency vend.Currency    `yaml:"currency"`
	Price    *vend.Price      `yaml:"price"` // water, washer, dryer
	Water    *Water           `yaml:"water"`
	Washer   *Washer          `yaml:"washer"`
	Vending  *Vending         `yaml:"vending"`
	Slots    []Slot           `yaml:"slots"` // vending
}

// Water wires a dispenser.
type Water struct {
	Valve          string   `yaml:"valve"`
	Flow           string   `yaml:"flow"`
	KFactor        string   `yaml:"k_factor"` // pulses per litre, up to 3 decimals: "450.5"
	NoFlow         Duration `yaml:"no_flow"`
	PauseAllowance Duration `yaml:"pause_allowance"`
}

// Washer wires a washer or dryer.
type Washer struct {
	Coin            string   `yaml:"coin"`
	Running         string   `yaml:"running"`
	PulseWidth      Duration `yaml:"pulse_width"`
	PulseGap        Duration `yaml:"pulse_gap"`
	PulsesPerCredit int      `yaml:"pulses_per_credit"`
	StartTimeout    Duration `yaml:"start_timeout"`
	Debounce        Duration `yaml:"debounce"`
}

// Vending wires a vending machine.
type Vending struct {
	Drop        string   `yaml:"drop"`
	DropTimeout Duration `yaml:"drop_timeout"`
	// DropCounter, optional, is a counter of the board that counts the
	// drop input's pulses in hardware (one per item; wire the drop sensor
	// to that counter's input). With it, a vend journals the counter at
	// its start, and recovery after a crash bills the items the counter
	// counted while the motor was left turning.
	DropCounter string `yaml:"drop_counter"`
}

// Slot is one vending slot.
type Slot struct {
	ID     string     `yaml:"id"`
	Name   string     `yaml:"name"`
	Output string     `yaml:"output"`
	Price  vend.Price `yaml:"price"`
}

// Duration is a time.Duration written as "100ms", "5s".
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration like 100ms or 5s", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Load reads, defaults and validates a config file. Relative paths in it
// are relative to the file's directory. Errors name the field.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(bytes.NewReader(b), filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Parse reads a config from r; dir resolves relative paths.
func Parse(r io.Reader, dir string) (*Config, error) {
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, vend.Errorf(ErrConfig, "%v", err)
	}
	c.dir = dir
	c.defaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *Config) defaults() {
	if c.MQTT.Username == "" {
		c.MQTT.Username = c.DeviceID
	}
	if c.MQTT.Prefix == "" {
		c.MQTT.Prefix = mqttapi.DefaultPrefix
	}
	if c.MQTT.KeepAlive == 0 {
		c.MQTT.KeepAlive = Duration(30 * time.Second)
	}
	if c.MQTT.TelemetryInterval == 0 {
		c.MQTT.TelemetryInterval = Duration(60 * time.Second)
	}
	if c.MQTT.DrainRate == 0 {
		c.MQTT.DrainRate = 20
	}
	if c.Board.PollInterval == 0 {
		c.Board.PollInterval = Duration(100 * time.Millisecond)
	}
	if c.Modem.PollInterval == 0 {
		c.Modem.PollInterval = Duration(30 * time.Second)
	}
	if c.Beacon.Backend == "" {
		c.Beacon.Backend = "sim"
	}
	if c.Beacon.CompanyID == 0 {
		c.Beacon.CompanyID = 0xFFFF
	}
	if c.Beacon.K == nil {
		k := uint8(proxid.DefaultK)
		c.Beacon.K = &k
	}
	if c.Beacon.TxPower == 0 {
		c.Beacon.TxPower = -59
	}
	if c.Beacon.SimRSSI == 0 {
		c.Beacon.SimRSSI = -55
	}
	if c.GrantSkew == 0 {
		c.GrantSkew = Duration(30 * time.Second)
	}
}

func bad(field, format string, args ...any) error {
	return vend.Errorf(ErrConfig, "%s: %s", field, fmt.Sprintf(format, args...))
}

func (c *Config) validate() error {
	if err := vend.ValidateDeviceID(c.DeviceID); err != nil {
		return bad("device_id", "%v", err)
	}
	if c.Keys.IdentityKeyFile == "" {
		return bad("keys.identity_key_file", "missing")
	}
	if c.Keys.DeviceKeyFile == "" {
		return bad("keys.device_key_file", "missing")
	}
	if len(c.Keys.CloudPublicKeys) == 0 {
		return bad("keys.cloud_public_keys", "at least one trusted cloud key is needed")
	}
	for i, k := range c.Keys.CloudPublicKeys {
		if b, err := hex.DecodeString(k); err != nil || len(b) != ed25519.PublicKeySize {
			return bad(fmt.Sprintf("keys.cloud_public_keys[%d]", i), "want 64 hex digits (an Ed25519 public key)")
		}
	}
	u, err := url.Parse(c.MQTT.Broker)
	if err != nil || u.Host == "" {
		return bad("mqtt.broker", "%q: want tcp://host:port, ssl://host:port or tls://host:port", c.MQTT.Broker)
	}
	switch u.Scheme {
	case "tcp", "mqtt", "ssl", "tls", "mqtts":
	default:
		return bad("mqtt.broker", "scheme %q: want tcp, ssl or tls", u.Scheme)
	}
	if (c.MQTT.TLS.CertFile == "") != (c.MQTT.TLS.KeyFile == "") {
		return bad("mqtt.tls", "cert_file and key_file go together")
	}
	if c.MQTT.TelemetryInterval.D() < time.Second {
		return bad("mqtt.telemetry_interval", "%s is below 1s", c.MQTT.TelemetryInterval.D())
	}
	if c.MQTT.DrainRate < 1 || c.MQTT.DrainRate > 1000 {
		return bad("mqtt.drain_rate", "%d: want 1-1000 messages per second", c.MQTT.DrainRate)
	}
	if c.Journal == "" {
		return bad("journal", "missing: the bbolt file that keeps sessions across power cuts")
	}
	if c.Board.Port == "" {
		return bad("board.port", "missing")
	}
	if c.Board.Profile == "" {
		return bad("board.profile", "missing")
	}
	p, err := profile.Resolve(c.path(c.Board.Profile, true))
	if err != nil {
		return bad("board.profile", "%v", err)
	}
	c.Board.profile = p
	if d := c.Board.PollInterval.D(); d < 10*time.Millisecond || d > 5*time.Second {
		return bad("board.poll_interval", "%s: want 10ms-5s", d)
	}
	switch c.Beacon.Backend {
	case "hci", "sim", "none":
	default:
		return bad("beacon.backend", "%q: want hci, sim or none", c.Beacon.Backend)
	}
	if c.Beacon.GATT && c.Beacon.Backend != "hci" {
		return bad("beacon.gatt", "needs backend hci, not %q", c.Beacon.Backend)
	}
	if c.Beacon.GATTIdleTimeout == 0 {
		c.Beacon.GATTIdleTimeout = Duration(30 * time.Second)
	}
	if d := c.Beacon.GATTIdleTimeout.D(); d < 5*time.Second || d > 10*time.Minute {
		return bad("beacon.gatt_idle_timeout", "%s: want 5s-10m", d)
	}
	if err := proxid.ValidateK(*c.Beacon.K); err != nil {
		return bad("beacon.k", "%v", err)
	}
	if len(c.Machines) == 0 {
		return bad("machines", "at least one machine")
	}
	ids := map[string]bool{}
	for i := range c.Machines {
		if err := c.Machines[i].validate(fmt.Sprintf("machines[%d]", i), p); err != nil {
			return err
		}
		if ids[c.Machines[i].ID] {
			return bad(fmt.Sprintf("machines[%d].id", i), "%q is used twice", c.Machines[i].ID)
		}
		ids[c.Machines[i].ID] = true
	}
	return nil
}

func (m *Machine) validate(f string, p *profile.Profile) error {
	if err := vend.ValidateMachineID(m.ID); err != nil {
		return bad(f+".id", "%v", err)
	}
	if err := m.Currency.Validate(); err != nil {
		return bad(f+".currency", "%v", err)
	}
	out := func(field, name string) error {
		if _, ok := p.Output(name); !ok {
			return bad(field, "no output %q on board %s", name, p.Name)
		}
		return nil
	}
	in := func(field, name string) error {
		if _, ok := p.Input(name); !ok {
			return bad(field, "no input %q on board %s", name, p.Name)
		}
		return nil
	}
	price := func() error {
		if m.Price == nil {
			return bad(f+".price", "missing")
		}
		if err := m.Price.Validate(); err != nil {
			return bad(f+".price", "%v", err)
		}
		return nil
	}
	switch m.Kind {
	case vend.KindWater:
		if m.Water == nil {
			return bad(f+".water", "missing for kind water")
		}
		if err := price(); err != nil {
			return err
		}
		if err := out(f+".water.valve", m.Water.Valve); err != nil {
			return err
		}
		if _, ok := p.Counter(m.Water.Flow); !ok {
			return bad(f+".water.flow", "no counter %q on board %s", m.Water.Flow, p.Name)
		}
		if _, err := ParseKFactor(m.Water.KFactor); err != nil {
			return bad(f+".water.k_factor", "%v", err)
		}
	case vend.KindWasher, vend.KindDryer:
		if m.Washer == nil {
			return bad(f+".washer", "missing for kind %s", m.Kind)
		}
		if err := price(); err != nil {
			return err
		}
		if err := out(f+".washer.coin", m.Washer.Coin); err != nil {
			return err
		}
		if err := in(f+".washer.running", m.Washer.Running); err != nil {
			return err
		}
	case vend.KindVending:
		if m.Vending == nil {
			return bad(f+".vending", "missing for kind vending")
		}
		if err := in(f+".vending.drop", m.Vending.Drop); err != nil {
			return err
		}
		if c := m.Vending.DropCounter; c != "" {
			if _, ok := p.Counter(c); !ok {
				return bad(f+".vending.drop_counter", "no counter %q on board %s", c, p.Name)
			}
		}
		if len(m.Slots) == 0 {
			return bad(f+".slots", "a vending machine needs slots")
		}
		seen := map[string]bool{}
		for j, s := range m.Slots {
			sf := fmt.Sprintf("%s.slots[%d]", f, j)
			if s.ID == "" || vend.ValidateSlotID(s.ID) != nil {
				return bad(sf+".id", "%q: want 1-32 of A-Z a-z 0-9 . _ -", s.ID)
			}
			if seen[s.ID] {
				return bad(sf+".id", "%q is used twice", s.ID)
			}
			seen[s.ID] = true
			if err := out(sf+".output", s.Output); err != nil {
				return err
			}
			if err := s.Price.Validate(); err != nil {
				return bad(sf+".price", "%v", err)
			}
		}
	default:
		return bad(f+".kind", "%q: want water, washer, dryer or vending", m.Kind)
	}
	return nil
}

// Profile returns the board profile resolved during validation.
func (c *Config) Profile() *profile.Profile { return c.Board.profile }

// Path resolves a path from the config relative to the config's directory.
func (c *Config) Path(p string) string { return c.path(p, false) }

func (c *Config) path(p string, maybeName bool) string {
	if p == "" || filepath.IsAbs(p) || c.dir == "" {
		return p
	}
	if maybeName && !strings.ContainsRune(p, '/') && !strings.HasSuffix(p, ".yaml") {
		return p // a built-in profile name
	}
	return filepath.Join(c.dir, p)
}

// ParseKFactor parses pulses per litre with up to three decimals ("450",
// "450.5", "7.125") into pulses per 1000 litres, exactly.
func ParseKFactor(s string) (uint64, error) {
	whole, frac, _ := strings.Cut(strings.TrimSpace(s), ".")
	if whole == "" || len(frac) > 3 {
		return 0, fmt.Errorf("%q: want pulses per litre with at most 3 decimals, e.g. 450.5", s)
	}
	w, err := strconv.ParseUint(whole, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%q: want pulses per litre with at most 3 decimals, e.g. 450.5", s)
	}
	f := uint64(0)
	if frac != "" {
		frac += strings.Repeat("0", 3-len(frac))
		if f, err = strconv.ParseUint(frac, 10, 16); err != nil {
			return 0, fmt.Errorf("%q: want pulses per litre with at most 3 decimals, e.g. 450.5", s)
		}
	}
	k := w*1000 + f
	if k < 1000 || k > 100_000_000 {
		return 0, fmt.Errorf("%q: want 1-100000 pulses per litre", s)
	}
	return k, nil
}
