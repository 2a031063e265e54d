package main

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"beaconvend/app-protocol/proxid"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/broker"
	"beaconvend/cloud/internal/atomicfile"
	"beaconvend/cloud/provision"
	"beaconvend/cloud/store"
)

type deviceFlags struct {
	ID, Operator, Kind, Name, Currency, Price, Slots string
	Machines                                         int
	K                                                uint
	Out, MQTTURL, MQTTCA                             string
	Mosq                                             mosquittoFlags
	BrokerOut                                        string        // operator broker-credentials: password file
	Status                                           bool          // rotate-key: only print where the rotation stands
	Wait                                             time.Duration // rotate-key: wait this long for the promotion
	BrokerKind                                       string        // add: mqtt or nats; default -config's broker.kind
}

// mosquittoFlags say where the site Mosquitto's files go (cloud/provision
// Mosquitto).
type mosquittoFlags struct {
	Dir, Listen, Cert, Key, CA, Persistence, User, Group, PIDFile string
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
	fs.IntVar(&d.Machines, "machines", 1, "machines of that kind on the board (vending: 1)")
	fs.StringVar(&d.Currency, "currency", "EUR", "ISO 4217 currency")
	fs.StringVar(&d.Price, "price", "", "price MINOR/PER, e.g. 50/1000 (0.50 per litre); default by kind")
	fs.StringVar(&d.Slots, "slots", "", "vending slots ID:NAME:MINOR,… (default A1:Item A1:150,A2:Item A2:150)")
	fs.UintVar(&d.K, "k", proxid.DefaultK, "proximity-ID rotation exponent (2^k s windows)")
	fs.StringVar(&d.Out, "out", "", "directory for bundle.json; must not exist or be empty (required)")
	fs.StringVar(&d.BrokerKind, "broker-kind", "", "the devices' broker: mqtt (embedded, Mosquitto) or nats (refuses ids holding '.'); default -config's broker.kind. Without either, an id holding '.' is refused")
	d.brokerURLFlags(fs)
	d.Mosq.flags(fs)
}

// brokerURLFlags are the devices' broker URL and its CA.
func (d *deviceFlags) brokerURLFlags(fs *flag.FlagSet) {
	fs.StringVar(&d.MQTTURL, "mqtt-url", "", "broker URL the board connects to: ssl://host:port (tcp:// only to a loopback broker) (required)")
	fs.StringVar(&d.MQTTCA, "mqtt-ca", "", "PEM file of the CA the broker's certificate chains to, put in the bundle (default: the board's system roots)")
}

func (f *mosquittoFlags) flags(fs *flag.FlagSet) {
	fs.StringVar(&f.Dir, "mosquitto-dir", "", "also (re)write the site Mosquitto's passwords, acl and mosquitto.conf here")
	fs.StringVar(&f.Listen, "mosquitto-listen", provision.DefaultMosquittoListen, "Mosquitto's plaintext listener for a cloud on its host: a loopback address, or empty for none")
	fs.StringVar(&f.Cert, "mosquitto-cert", "", "Mosquitto's TLS certificate chain (default MOSQUITTO-DIR/server.crt)")
	fs.StringVar(&f.Key, "mosquitto-key", "", "Mosquitto's TLS key (default MOSQUITTO-DIR/server.key)")
	fs.StringVar(&f.CA, "mosquitto-ca", "", "Mosquitto's cafile (default MOSQUITTO-DIR/ca.crt)")
	fs.StringVar(&f.Persistence, "mosquitto-persistence", provision.DefaultMosquittoPersistence, "Mosquitto's persistence_location (empty: no persistence)")
	fs.StringVar(&f.User, "mosquitto-user", provision.DefaultMosquittoUser, "the account Mosquitto runs as")
	fs.StringVar(&f.Group, "mosquitto-group", broker.DefaultMosquittoGroup, "the group that may read the files (Mosquitto's); empty: owner only")
	fs.StringVar(&f.PIDFile, "mosquitto-pid", "", "Mosquitto's PID file (e.g. /run/mosquitto/mosquitto.pid): send it SIGHUP after writing")
}

// brokerCredFlags are the flags of `operator broker-credentials`.
func (d *deviceFlags) brokerCredFlags(fs *flag.FlagSet) {
	fs.StringVar(&d.Operator, "operator", "", "operator: its id (op_…) or its name")
	fs.StringVar(&d.BrokerOut, "out", "", "write the password to this file (0600) instead of printing it")
	d.brokerURLFlags(fs)
	d.Mosq.flags(fs)
}

// brokerFilesFlags are the flags of `broker files`.
func (d *deviceFlags) brokerFilesFlags(fs *flag.FlagSet) {
	d.brokerURLFlags(fs)
	d.Mosq.flags(fs)
}

// mosquitto returns the Mosquitto options, or nil without -mosquitto-dir.
func (d *deviceFlags) mosquitto() *provision.Mosquitto {
	f := d.Mosq
	if f.Dir == "" {
		return nil
	}
	return &provision.Mosquitto{Dir: f.Dir, BrokerURL: d.MQTTURL, Listen: f.Listen, CertFile: f.Cert, KeyFile: f.Key, CAFile: f.CA,
		PersistenceDir: f.Persistence, User: f.User, Group: f.Group, PIDFile: f.PIDFile}
}

// provisioner is the cloud's provisioning with its keys from the data
// directory; nats says the devices' broker is NATS.
func (m *Main) provisioner(nats bool) (*provision.Provisioner, error) {
	sec, err := m.secrets()
	if err != nil {
		return nil, err
	}
	return &provision.Provisioner{Store: m.Store, CloudKeys: []ed25519.PublicKey{sec.CloudKey.Public().(ed25519.PublicKey)},
		CloudPassword: sec.MQTTPassword, NATS: nats, Logger: m.Logger}, nil
}

// configNATS reports whether -config names a NATS broker.
func (m *Main) configNATS() bool { return m.Config != nil && m.Config.Broker.NATS() }

// brokerKind is the devices' broker kind for device add: -broker-kind,
// else -config's broker.kind; "" when neither says. Errors: a kind other
// than mqtt or nats, or one that contradicts -config.
func (m *Main) brokerKind() (string, error) {
	k := m.dev.BrokerKind
	switch k {
	case "", "mqtt", "nats":
	default:
		return "", fmt.Errorf("cloud: -broker-kind %q: want mqtt or nats", k)
	}
	if m.Config == nil {
		return k, nil
	}
	ck := "mqtt"
	if m.configNATS() {
		ck = "nats"
	}
	if k != "" && k != ck {
		return "", fmt.Errorf("cloud: -broker-kind %s, but %s says broker.kind %s", k, m.ConfigFile, ck)
	}
	return ck, nil
}

func (m *Main) printJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(m.Stdout, string(b))
	return err
}

// deviceAdd registers a device and writes its provisioning bundle
// (cloud/provision AddDevice), and the site Mosquitto's files with
// -mosquitto-dir.
func (m *Main) deviceAdd(ctx context.Context) error {
	f := m.dev
	if f.ID == "" || f.Operator == "" || f.Out == "" || f.MQTTURL == "" {
		return errors.New("cloud: device add needs -id, -operator, -out and -mqtt-url")
	}
	if f.K > proxid.MaxK {
		return fmt.Errorf("cloud: -k %d: want 0-%d", f.K, proxid.MaxK)
	}
	req := provision.DeviceRequest{ID: f.ID, Name: f.Name, Kind: vend.MachineKind(f.Kind), Machines: f.Machines, Currency: vend.Currency(f.Currency),
		K: uint8(f.K), MQTTURL: f.MQTTURL, Out: f.Out}
	if f.Price != "" {
		p, err := provision.ParsePrice(f.Price)
		if err != nil {
			return err
		}
		req.Price = &p
	}
	if f.Slots != "" {
		s, err := provision.ParseSlots(f.Slots)
		if err != nil {
			return err
		}
		req.Slots = s
	}
	if f.MQTTCA != "" {
		b, err := os.ReadFile(f.MQTTCA)
		if err != nil {
			return fmt.Errorf("cloud: -mqtt-ca: %w", err)
		}
		req.CAPEM = string(b)
	}
	kind, err := m.brokerKind()
	if err != nil {
		return err
	}
	if kind == "" && strings.Contains(f.ID, ".") {
		// A NATS broker refuses the id as an MQTT client id: the board
		// could never connect. Neither flag nor file says which broker.
		return fmt.Errorf("cloud: device add: id %q holds '.', which a NATS broker refuses; give -broker-kind mqtt (or nats), or -config with broker.kind", f.ID)
	}
	if req.OperatorID, err = m.operatorID(ctx, f.Operator); err != nil {
		return err
	}
	p, err := m.provisioner(kind == "nats")
	if err != nil {
		return err
	}
	res, err := p.AddDevice(ctx, req, f.mosquitto())
	if err != nil {
		return err
	}
	return m.printJSON(res)
}

// operatorBrokerCredentials makes (or replaces) an operator's read-only
// broker account and prints its username and password, or writes the
// password to -out.
func (m *Main) operatorBrokerCredentials(ctx context.Context) error {
	f := m.dev
	if f.Operator == "" {
		return errors.New("cloud: operator broker-credentials needs -operator")
	}
	mq := f.mosquitto()
	if mq != nil && f.MQTTURL == "" {
		return errors.New("cloud: operator broker-credentials -mosquitto-dir needs -mqtt-url (the devices' broker URL)")
	}
	op, err := m.operatorID(ctx, f.Operator)
	if err != nil {
		return err
	}
	p, err := m.provisioner(m.configNATS())
	if err != nil {
		return err
	}
	a, err := p.OperatorBrokerAccount(ctx, op, mq)
	if a.Password != "" && f.BrokerOut != "" {
		if werr := atomicfile.Write(f.BrokerOut, []byte(a.Password+"\n")); werr != nil {
			return errors.Join(err, fmt.Errorf("cloud: -out: %w (the account was made; run the command again for a new password)", werr))
		}
		_ = m.printJSON(map[string]string{"operator": a.Operator, "username": a.Username, "password_file": f.BrokerOut})
		return err
	}
	if a.Password != "" {
		_ = m.printJSON(a)
	}
	return err
}

// brokerFiles rewrites the site Mosquitto's files from the store.
func (m *Main) brokerFiles(ctx context.Context) error {
	mq := m.dev.mosquitto()
	if mq == nil || m.dev.MQTTURL == "" {
		return errors.New("cloud: broker files needs -mosquitto-dir and -mqtt-url")
	}
	p, err := m.provisioner(m.configNATS())
	if err != nil {
		return err
	}
	reloaded, err := p.WriteMosquitto(ctx, *mq)
	if err != nil {
		return err
	}
	return m.printJSON(map[string]any{"mosquitto": mq.Dir, "reloaded": reloaded})
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

// deviceDisable disables a device and, with -mosquitto-dir, takes it out
// of the site Mosquitto's files.
func (m *Main) deviceDisable(ctx context.Context) error {
	if m.dev.ID == "" {
		return errors.New("cloud: device disable needs -id")
	}
	mq := m.dev.mosquitto()
	if mq != nil && m.dev.MQTTURL == "" {
		return errors.New("cloud: device disable -mosquitto-dir needs -mqtt-url (the devices' broker URL)")
	}
	p, err := m.provisioner(m.configNATS())
	if err != nil {
		return err
	}
	reloaded, err := p.DisableDevice(ctx, m.dev.ID, mq)
	if err != nil {
		return err
	}
	return m.printJSON(map[string]any{"device": m.dev.ID, "state": string(store.DeviceDisabled), "reloaded": reloaded})
}

// disableFlags are the flags of `device disable`.
func (d *deviceFlags) disableFlags(fs *flag.FlagSet) {
	fs.StringVar(&d.ID, "id", "", "device id")
	d.brokerFilesFlags(fs)
}
