package provision

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"beaconvend/app-protocol/gattapi"
	pb "beaconvend/app-protocol/provision"
	"beaconvend/app-protocol/proxid"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/broker"
	"beaconvend/cloud/store"
)

// BundleFile is the name of the bundle in the output directory.
const BundleFile = "bundle.json"

// MaxMachines bounds the machines of one kind on one board.
const MaxMachines = 16

// Errors. Each carries a vend kind and a stable code.
var (
	ErrInput  = vend.E(vend.Invalid, "provision.input", "provision: invalid input")
	ErrOutDir = vend.E(vend.Conflict, "provision.out_dir", "provision: output directory is not empty")
)

// DefaultPrice is the price of a machine kind when the request names none.
var DefaultPrice = map[vend.MachineKind]vend.Price{
	vend.KindWater:   {Minor: 50, Per: 1000}, // 0.50 per litre
	vend.KindWasher:  {Minor: 350, Per: 1},   // 3.50 per cycle
	vend.KindDryer:   {Minor: 100, Per: 600}, // 1.00 per 10 minutes
	vend.KindVending: {Minor: 150, Per: 1},
}

// DefaultSlots are a vending machine's slots when the request names none.
var DefaultSlots = []pb.Slot{{ID: "A1", Name: "Item A1", Price: vend.Price{Minor: 150, Per: 1}}, {ID: "A2", Name: "Item A2", Price: vend.Price{Minor: 150, Per: 1}}}

// Provisioner adds devices and keeps the site broker's files in step with
// the store.
type Provisioner struct {
	Store *store.Store
	// CloudKeys are the grant verification keys written into bundles
	// (the cloud's current signing key first).
	CloudKeys []ed25519.PublicKey
	// CloudUser and CloudPassword are the cloud's own broker account,
	// written into the Mosquitto password file; CloudUser defaults to
	// broker.DefaultCloudUser.
	CloudUser     string
	CloudPassword string
	// NATS, when set, is a NATS broker (broker.kind: nats): it refuses MQTT
	// client ids holding '.', and a subject token would split there, so
	// such device ids are refused.
	NATS   bool
	Logger *slog.Logger // default: discard

	// beforeRename, when set (tests), runs after the registration and
	// before the bundle is renamed into place; an error stands for the
	// process dying there.
	beforeRename func() error
}

// DeviceRequest is what `cloud device add` asks for.
type DeviceRequest struct {
	ID         string           // vend.ValidateDeviceID
	OperatorID string           // owning operator's id
	Name       string           // label; default the ID
	Kind       vend.MachineKind // water, washer, dryer or vending
	Machines   int              // machines of that kind (not vending), 1-MaxMachines; 0 means 1
	Price      *vend.Price      // per unit; nil: DefaultPrice
	Currency   vend.Currency    // ISO 4217
	Slots      []pb.Slot        // vending only; nil: DefaultSlots
	K          uint8            // proximity-ID rotation exponent
	MQTTURL    string           // ssl://host:port (tcp:// only to a loopback broker)
	CAPEM      string           // PEM CA certificates of the broker; empty: the system roots
	Out        string           // directory for bundle.json: must not exist or be empty
	// SealKey, when set, is the X25519 public key of a board claimed in
	// the field (registration mode): bundle.json is then written sealed to
	// it (pb.Seal, never in the clear) and the device is registered
	// together with its claim (store.CreateClaimedDevice), so a key is
	// claimed once. ClaimedBy names the operator account claiming it.
	SealKey   []byte
	ClaimedBy string
}

// Result is what AddDevice did.
type Result struct {
	Device    string `json:"device"`
	Operator  string `json:"operator"`
	Bundle    string `json:"bundle"`              // path of bundle.json
	Recovered bool   `json:"recovered,omitempty"` // an interrupted add was completed
	Mosquitto string `json:"mosquitto,omitempty"` // directory of the rewritten broker files
	Reloaded  bool   `json:"reloaded,omitempty"`  // the broker was sent SIGHUP
}

func (p *Provisioner) log() *slog.Logger {
	if p.Logger != nil {
		return p.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func bad(format string, args ...any) error { return vend.Errorf(ErrInput, format, args...) }

// machines builds the bundle's machines for req, or names what is wrong.
func (req *DeviceRequest) machines() ([]pb.Machine, error) {
	kind := req.Kind
	if kind.Unit() == 0 {
		return nil, bad("kind %q: want water, washer, dryer or vending", kind)
	}
	if err := req.Currency.Validate(); err != nil {
		return nil, bad("currency %q: %v", req.Currency, err)
	}
	price := DefaultPrice[kind]
	if req.Price != nil {
		price = *req.Price
	}
	if err := price.Validate(); err != nil {
		return nil, bad("price %+v: %v", price, err)
	}
	n := req.Machines
	if n == 0 {
		n = 1
	}
	if kind == vend.KindVending {
		if n != 1 {
			return nil, bad("machines %d: a vending board has one machine (its slots are the products)", req.Machines)
		}
		slots := req.Slots
		if slots == nil {
			slots = DefaultSlots
		}
		if len(slots) == 0 {
			return nil, bad("slots: a vending machine needs at least one")
		}
		return []pb.Machine{{ID: "vm1", Kind: kind, Name: "Vending", Unit: kind.Unit(), Currency: req.Currency, Price: price, Slots: slots}}, nil
	}
	if len(req.Slots) > 0 {
		return nil, bad("slots: only a vending machine has slots")
	}
	if n < 1 || n > MaxMachines {
		return nil, bad("machines %d: want 1-%d", req.Machines, MaxMachines)
	}
	var ms []pb.Machine
	for i := 1; i <= n; i++ {
		m := pb.Machine{Kind: kind, Unit: kind.Unit(), Currency: req.Currency, Price: price}
		switch kind {
		case vend.KindWater:
			m.ID, m.Name = fmt.Sprintf("tap%d", i), fmt.Sprintf("Water %d", i)
		default:
			m.ID, m.Name = fmt.Sprintf("%s%d", kind, i), fmt.Sprintf("%s %d", kind, i)
		}
		ms = append(ms, m)
	}
	return ms, nil
}

// CheckBrokerURL accepts ssl://, tls:// or mqtts://host:port, and
// tcp:// or mqtt:// only to a loopback host (a development broker on the
// board's own machine): a board must not send its password in clear.
func CheckBrokerURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.Port() == "" {
		return nil, bad("broker url %q: want ssl://host:port", s)
	}
	if p, err := strconv.Atoi(u.Port()); err != nil || p < 1 || p > 65535 {
		return nil, bad("broker url %q: port: want 1-65535", s)
	}
	switch u.Scheme {
	case "ssl", "tls", "mqtts":
		return u, nil
	case "tcp", "mqtt":
		h := u.Hostname()
		if ip := net.ParseIP(h); h == "localhost" || (ip != nil && ip.IsLoopback()) {
			return u, nil
		}
		return nil, bad("broker url %q: plaintext only to a loopback broker; devices connect with ssl://host:port", s)
	}
	return nil, bad("broker url %q: scheme %q: want ssl://host:port", s, u.Scheme)
}

// CheckCA returns an error unless pemText holds at least one X.509
// certificate and nothing else.
func CheckCA(pemText string) error {
	rest, n := []byte(pemText), 0
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			return bad("broker CA: a %q block; want certificates only", blk.Type)
		}
		if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
			return bad("broker CA: certificate %d: %v", n+1, err)
		}
		n++
	}
	if n == 0 || strings.TrimSpace(string(rest)) != "" {
		return bad("broker CA: want PEM certificates")
	}
	return nil
}

// checkOut returns whether dir exists and the temporary bundles left in
// it by an add that died before its registration; an error when it is not
// a directory or holds anything else.
func checkOut(dir string) (bool, []string, error) {
	if dir == "" {
		return false, nil, bad("output directory required")
	}
	f, err := os.Open(dir)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil, nil
	}
	if err != nil {
		return false, nil, fmt.Errorf("provision: output directory: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return false, nil, fmt.Errorf("provision: output directory: %w", err)
	}
	if !st.IsDir() {
		return false, nil, vend.Errorf(ErrOutDir, "%s is not a directory", dir)
	}
	names, err := f.Readdirnames(-1)
	if err != nil && !errors.Is(err, io.EOF) {
		return false, nil, fmt.Errorf("provision: output directory: %w", err)
	}
	var stale []string
	for _, n := range names {
		if !strings.HasPrefix(n, tempPrefix) {
			return true, nil, vend.Errorf(ErrOutDir, "%s holds %s; pick a new directory (a bundle is never written over another)", dir, n)
		}
		stale = append(stale, filepath.Join(dir, n))
	}
	return true, stale, nil
}

// AddDevice checks req (and m, when not nil), then registers the device
// and writes its bundle to req.Out/bundle.json, then rewrites the site
// broker's files when m is set. Errors: ErrInput naming the bad field;
// store.ErrDeviceExists; ErrOutDir; store.ErrOperatorNotFound; the
// database's and file system's errors. An error from the broker files
// comes after the device and its bundle were made, and says so.
func (p *Provisioner) AddDevice(ctx context.Context, req DeviceRequest, m *Mosquitto) (Result, error) {
	res := Result{Device: req.ID, Operator: req.OperatorID, Bundle: filepath.Join(req.Out, BundleFile)}
	if err := vend.ValidateDeviceID(req.ID); err != nil {
		return res, bad("device id: %v", err)
	}
	if p.NATS && strings.Contains(req.ID, ".") {
		return res, bad("device id %q: holds '.', which a NATS broker refuses in a client id", req.ID)
	}
	if req.OperatorID == "" {
		return res, bad("operator required")
	}
	if err := proxid.ValidateK(req.K); err != nil {
		return res, bad("k %d: %v", req.K, err)
	}
	if len(req.Name) > 200 {
		return res, bad("name longer than 200 bytes")
	}
	machines, err := req.machines()
	if err != nil {
		return res, err
	}
	if _, err := CheckBrokerURL(req.MQTTURL); err != nil {
		return res, err
	}
	if req.CAPEM != "" {
		if err := CheckCA(req.CAPEM); err != nil {
			return res, err
		}
	}
	if len(p.CloudKeys) == 0 {
		return res, bad("no cloud public key")
	}
	if req.SealKey != nil {
		if _, err := pb.ParseSealKey(req.SealKey); err != nil {
			return res, err
		}
		if req.ClaimedBy == "" {
			return res, bad("claim of %s: claimed_by required", req.ID)
		}
	}
	if m != nil {
		if err := m.check(req.MQTTURL); err != nil {
			return res, err
		}
	}
	exists, err := p.Store.DeviceExists(ctx, req.ID)
	if err != nil {
		return res, fmt.Errorf("provision: device %s: %w", req.ID, err)
	}
	if exists {
		ok, err := p.recover(ctx, req)
		if err != nil || !ok {
			if err == nil {
				err = vend.Errorf(store.ErrDeviceExists, "%s", req.ID)
			}
			return res, err
		}
		res.Recovered = true
	} else {
		if err := p.create(ctx, req, machines); err != nil {
			return res, err
		}
	}
	if m != nil {
		res.Mosquitto = m.Dir
		if res.Reloaded, err = p.WriteMosquitto(ctx, *m); err != nil {
			return res, fmt.Errorf("provision: device %s registered and its bundle written to %s, but the broker files were not: %w "+
				"(fix it and run `cloud broker files`: until then the broker does not admit the device)", req.ID, res.Bundle, err)
		}
	}
	return res, nil
}

// create writes the bundle under a temporary name, registers the device,
// and renames the bundle into place.
func (p *Provisioner) create(ctx context.Context, req DeviceRequest, machines []pb.Machine) error {
	exists, stale, err := checkOut(req.Out)
	if err != nil {
		return err
	}
	made := !exists
	// Bundles of an add that died before registering: the device does
	// not exist, so their keys were never valid anywhere.
	for _, f := range stale {
		if err := os.Remove(f); err != nil {
			return fmt.Errorf("provision: stale temporary bundle: %w", err)
		}
		p.log().Info("provision: removed the bundle of an add that died before registering", "file", f)
	}
	var idKey proxid.Key
	if _, err := rand.Read(idKey[:]); err != nil {
		return err
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	pwb := make([]byte, 32)
	if _, err := rand.Read(pwb); err != nil {
		return err
	}
	pw := hex.EncodeToString(pwb)
	hash, err := broker.HashPassword(pw)
	if err != nil {
		return err
	}
	b := &pb.Bundle{Version: pb.Version, DeviceID: req.ID, OperatorID: req.OperatorID, IdentityKey: idKey, DeviceKey: priv.Seed(), K: req.K,
		CloudPublicKeys: p.CloudKeys, MQTT: pb.MQTT{URL: req.MQTTURL, Username: req.ID, Password: pw, CAPEM: req.CAPEM}, Machines: machines}
	var buf strings.Builder
	if err := b.Encode(&buf); err != nil {
		return err
	}
	doc := []byte(buf.String())
	if req.SealKey != nil {
		if doc, err = pb.Seal(req.SealKey, doc); err != nil {
			return err
		}
		if len(doc) > gattapi.MaxBundle {
			return bad("device %s: sealed bundle of %d bytes, more than the %d a board takes over BLE (a long CA chain?)", req.ID, len(doc), gattapi.MaxBundle)
		}
	}
	if err := os.MkdirAll(req.Out, 0o700); err != nil {
		return fmt.Errorf("provision: output directory: %w", err)
	}
	tmp, err := writeTemp(req.Out, doc)
	if err != nil {
		if made {
			os.Remove(req.Out)
		}
		return err
	}
	name := req.Name
	if name == "" {
		name = req.ID
	}
	var sm []store.Machine
	for _, m := range machines {
		x := store.Machine{ID: m.ID, Kind: m.Kind, Name: m.Name, Unit: m.Unit, Price: m.Price, Currency: m.Currency}
		for _, s := range m.Slots {
			x.Slots = append(x.Slots, store.Slot{ID: s.ID, Name: s.Name, Price: s.Price})
		}
		sm = append(sm, x)
	}
	dev := store.Device{ID: req.ID, OperatorID: req.OperatorID, Name: name, IdentityKey: idKey, K: req.K, SignKey: pub, MQTTHash: hash, Machines: sm}
	if req.SealKey != nil {
		err = p.Store.CreateClaimedDevice(ctx, dev, store.Claim{SealKey: hex.EncodeToString(req.SealKey), ClaimedBy: req.ClaimedBy, Sealed: doc})
	} else {
		err = p.Store.CreateDevice(ctx, dev)
	}
	if err != nil {
		os.Remove(tmp)
		if made {
			os.Remove(req.Out)
		}
		return err
	}
	if p.beforeRename != nil {
		if err := p.beforeRename(); err != nil {
			return err
		}
	}
	return finish(tmp, req.Out)
}

const tempPrefix = "." + BundleFile + ".tmp-"

// writeTemp writes data to a new 0600 file in dir and syncs it.
func writeTemp(dir string, data []byte) (string, error) {
	f, err := os.CreateTemp(dir, tempPrefix+"*")
	if err != nil {
		return "", fmt.Errorf("provision: bundle: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("provision: bundle: %w", err)
	}
	return f.Name(), nil
}

// finish renames the bundle into place and syncs the directory.
func finish(tmp, dir string) error {
	if err := os.Rename(tmp, filepath.Join(dir, BundleFile)); err != nil {
		return fmt.Errorf("provision: the device is registered and its bundle is in %s, but renaming it failed: %w", tmp, err)
	}
	if d, err := os.Open(dir); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return fmt.Errorf("provision: bundle: sync %s: %w", dir, err)
		}
	}
	return nil
}

// recover completes an add that died between the registration and the
// rename: req.Out holds exactly one temporary bundle, for this device,
// whose keys are the registered ones. It reports whether it did.
func (p *Provisioner) recover(ctx context.Context, req DeviceRequest) (bool, error) {
	tmps, _ := filepath.Glob(filepath.Join(req.Out, tempPrefix+"*"))
	if len(tmps) != 1 {
		return false, nil
	}
	if _, err := os.Stat(filepath.Join(req.Out, BundleFile)); err == nil {
		return false, nil
	}
	f, err := os.Open(tmps[0])
	if err != nil {
		return false, nil
	}
	b, err := pb.Decode(f)
	f.Close()
	if err != nil || b.DeviceID != req.ID {
		return false, nil
	}
	d, err := p.Store.GetDevice(ctx, req.ID)
	if err != nil {
		return false, fmt.Errorf("provision: device %s: %w", req.ID, err)
	}
	pub := ed25519.NewKeyFromSeed(b.DeviceKey).Public().(ed25519.PublicKey)
	ok, err := broker.VerifyPassword(d.MQTTHash, b.MQTT.Password)
	if err != nil || !ok || !pub.Equal(d.SignKey) || d.IdentityKey != b.IdentityKey || d.OperatorID != req.OperatorID {
		return false, nil
	}
	p.log().Info("provision: completing an interrupted add", "device", req.ID, "bundle", tmps[0])
	return true, finish(tmps[0], req.Out)
}
