package provision

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"

	"beaconvend/app-protocol/proxid"
	"beaconvend/app-protocol/vend"
)

// Version is the bundle format this package reads and writes.
const Version = 1

// ErrBundle is the error code of a bundle that does not decode or validate.
const ErrBundle = "provision.bundle_invalid"

// MaxSize bounds a bundle document (a few machines with slots and a CA
// chain fit easily).
const MaxSize = 1 << 20

// Bundle is what a board needs from the cloud to join the fleet.
type Bundle struct {
	Version         int                 `json:"version"`
	DeviceID        string              `json:"device_id"`
	OperatorID      string              `json:"operator_id"`
	IdentityKey     proxid.Key          `json:"-"` // secret proximity identity key (identity_key, hex)
	DeviceKey       []byte              `json:"-"` // ed25519 seed of the device signing key (device_key, hex)
	K               uint8               `json:"k"` // proximity-ID rotation exponent
	CloudPublicKeys []ed25519.PublicKey `json:"-"` // grant verification keys (cloud_public_keys, hex)
	MQTT            MQTT                `json:"mqtt"`
	Machines        []Machine           `json:"machines"`
}

// MQTT is how the board reaches its broker.
type MQTT struct {
	URL      string `json:"url"`              // ssl://host:8883 (tcp:// only for a loopback or development broker)
	Username string `json:"username"`         // the device ID
	Password string `json:"password"`         // secret
	CAPEM    string `json:"ca_pem,omitempty"` // PEM CA certificates the broker's certificate chains to; empty: the system roots
}

// Machine is one sellable machine on the board, as the cloud prices it.
type Machine struct {
	ID       string           `json:"id"`
	Kind     vend.MachineKind `json:"kind"`
	Name     string           `json:"name"`
	Unit     vend.Unit        `json:"unit"`
	Currency vend.Currency    `json:"currency"`
	Price    vend.Price       `json:"price"`
	Slots    []Slot           `json:"slots,omitempty"` // vending only
}

// Slot is a vending product slot with its own price.
type Slot struct {
	ID    string     `json:"id"`
	Name  string     `json:"name"`
	Price vend.Price `json:"price"`
}

// wire is Bundle with its keys as hex text.
type wire struct {
	Version         int       `json:"version"`
	DeviceID        string    `json:"device_id"`
	OperatorID      string    `json:"operator_id"`
	IdentityKey     string    `json:"identity_key"`
	DeviceKey       string    `json:"device_key"`
	K               uint8     `json:"k"`
	CloudPublicKeys []string  `json:"cloud_public_keys"`
	MQTT            MQTT      `json:"mqtt"`
	Machines        []Machine `json:"machines"`
}

func bad(field, format string, args ...any) error {
	return vend.E(vend.Invalid, ErrBundle, fmt.Sprintf("provision: bundle: %s: %s", field, fmt.Sprintf(format, args...)))
}

// Validate checks every field and names the first that is wrong.
func (b *Bundle) Validate() error {
	if b.Version != Version {
		return bad("version", "%d: this build reads version %d", b.Version, Version)
	}
	if err := vend.ValidateDeviceID(b.DeviceID); err != nil {
		return bad("device_id", "%v", err)
	}
	if b.OperatorID == "" {
		return bad("operator_id", "missing")
	}
	if b.IdentityKey == (proxid.Key{}) {
		return bad("identity_key", "missing or all zero")
	}
	if len(b.DeviceKey) != ed25519.SeedSize {
		return bad("device_key", "want a %d-byte ed25519 seed, got %d bytes", ed25519.SeedSize, len(b.DeviceKey))
	}
	if err := proxid.ValidateK(b.K); err != nil {
		return bad("k", "%v", err)
	}
	if len(b.CloudPublicKeys) == 0 {
		return bad("cloud_public_keys", "missing")
	}
	for i, k := range b.CloudPublicKeys {
		if len(k) != ed25519.PublicKeySize {
			return bad(fmt.Sprintf("cloud_public_keys[%d]", i), "want %d bytes, got %d", ed25519.PublicKeySize, len(k))
		}
	}
	u, err := url.Parse(b.MQTT.URL)
	if err != nil || u.Host == "" || (u.Scheme != "ssl" && u.Scheme != "tls" && u.Scheme != "mqtts" && u.Scheme != "tcp" && u.Scheme != "mqtt") {
		return bad("mqtt.url", "%q: want ssl://host:port (or tcp://host:port for a development broker)", b.MQTT.URL)
	}
	if b.MQTT.Username != b.DeviceID {
		return bad("mqtt.username", "%q: must be the device ID %q", b.MQTT.Username, b.DeviceID)
	}
	if b.MQTT.Password == "" {
		return bad("mqtt.password", "missing")
	}
	if len(b.Machines) == 0 {
		return bad("machines", "none")
	}
	seen := map[string]bool{}
	for i, m := range b.Machines {
		f := fmt.Sprintf("machines[%d]", i)
		if err := vend.ValidateMachineID(m.ID); err != nil {
			return bad(f+".id", "%v", err)
		}
		if seen[m.ID] {
			return bad(f+".id", "%q twice", m.ID)
		}
		seen[m.ID] = true
		if m.Kind.Unit() == 0 {
			return bad(f+".kind", "%q: want water, washer, dryer or vending", m.Kind)
		}
		if m.Unit != m.Kind.Unit() {
			return bad(f+".unit", "%v: a %s is metered in %v", m.Unit, m.Kind, m.Kind.Unit())
		}
		if err := m.Currency.Validate(); err != nil {
			return bad(f+".currency", "%v", err)
		}
		if err := m.Price.Validate(); err != nil {
			return bad(f+".price", "%v", err)
		}
		if (m.Kind == vend.KindVending) != (len(m.Slots) > 0) {
			return bad(f+".slots", "a vending machine has slots, other kinds none")
		}
		slots := map[string]bool{}
		for j, s := range m.Slots {
			sf := fmt.Sprintf("%s.slots[%d]", f, j)
			if err := vend.ValidateSlotID(s.ID); err != nil || s.ID == "" {
				return bad(sf+".id", "%q: %v", s.ID, err)
			}
			if slots[s.ID] {
				return bad(sf+".id", "%q twice", s.ID)
			}
			slots[s.ID] = true
			if err := s.Price.Validate(); err != nil {
				return bad(sf+".price", "%v", err)
			}
		}
	}
	return nil
}

// Encode validates b and writes it as indented JSON.
func (b *Bundle) Encode(w io.Writer) error {
	if err := b.Validate(); err != nil {
		return err
	}
	x := wire{Version: b.Version, DeviceID: b.DeviceID, OperatorID: b.OperatorID, IdentityKey: b.IdentityKey.String(),
		DeviceKey: hex.EncodeToString(b.DeviceKey), K: b.K, MQTT: b.MQTT, Machines: b.Machines}
	for _, k := range b.CloudPublicKeys {
		x.CloudPublicKeys = append(x.CloudPublicKeys, hex.EncodeToString(k))
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(x); err != nil {
		return fmt.Errorf("provision: encode: %w", err)
	}
	return nil
}

// Decode reads one bundle (at most MaxSize bytes), strictly: unknown
// fields, trailing data and any invalid field are errors naming the field.
func Decode(r io.Reader) (*Bundle, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("provision: read bundle: %w", err)
	}
	if len(data) > MaxSize {
		return nil, bad("document", "larger than %d bytes", MaxSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var x wire
	if err := dec.Decode(&x); err != nil {
		return nil, bad("document", "%v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, bad("document", "data after the bundle")
	}
	b := &Bundle{Version: x.Version, DeviceID: x.DeviceID, OperatorID: x.OperatorID, K: x.K, MQTT: x.MQTT, Machines: x.Machines}
	if b.IdentityKey, err = proxid.ParseKey(x.IdentityKey); err != nil {
		return nil, bad("identity_key", "%v", err)
	}
	if b.DeviceKey, err = hex.DecodeString(x.DeviceKey); err != nil {
		return nil, bad("device_key", "not hex")
	}
	for i, s := range x.CloudPublicKeys {
		k, err := hex.DecodeString(s)
		if err != nil {
			return nil, bad(fmt.Sprintf("cloud_public_keys[%d]", i), "not hex")
		}
		b.CloudPublicKeys = append(b.CloudPublicKeys, ed25519.PublicKey(k))
	}
	if err := b.Validate(); err != nil {
		return nil, err
	}
	return b, nil
}
