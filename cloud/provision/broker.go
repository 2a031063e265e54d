package provision

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"beaconvend/cloud/broker"
	"beaconvend/cloud/store"
)

// Defaults of [Mosquitto].
const (
	DefaultMosquittoListen      = "127.0.0.1:1883"     // loopback plaintext listener for a cloud on the broker's host
	DefaultMosquittoPersistence = "/var/lib/mosquitto" // Debian's, owned by the mosquitto user
	DefaultMosquittoUser        = "mosquitto"
)

// Mosquitto says where and how the site broker's files are written.
type Mosquitto struct {
	Dir string // directory of passwords, acl, mosquitto.conf; made absolute
	// BrokerURL is the devices' broker URL: an ssl:// URL puts the TLS
	// listener on its port (all interfaces); a tcp:// URL (loopback, a
	// development broker) puts the plaintext listener on its address.
	BrokerURL string
	// Listen is the loopback plaintext listener for a cloud on the
	// broker's host; "" none. Ignored with a tcp:// BrokerURL.
	Listen string
	// CertFile, KeyFile and CAFile are the TLS listener's PEM files;
	// empty: Dir/server.crt, Dir/server.key, Dir/ca.crt. They must exist
	// (the broker does not start without them).
	CertFile, KeyFile, CAFile string
	PersistenceDir            string // persistence_location; empty: no persistence
	User                      string // the account Mosquitto runs as (mosquitto.conf "user")
	Group                     string // group the files are readable by (0640); "" owner only
	PIDFile                   string // when set, the broker's PID file: it is sent SIGHUP after the files are written
}

// abs resolves m's paths against the working directory and fills the
// certificate defaults.
func (m *Mosquitto) abs() error {
	var err error
	if m.Dir == "" {
		return bad("mosquitto directory required")
	}
	if m.Dir, err = filepath.Abs(m.Dir); err != nil {
		return bad("mosquitto directory: %v", err)
	}
	def := map[*string]string{&m.CertFile: "server.crt", &m.KeyFile: "server.key", &m.CAFile: "ca.crt"}
	for p, name := range def {
		if *p == "" {
			*p = filepath.Join(m.Dir, name)
		}
		if *p, err = filepath.Abs(*p); err != nil {
			return bad("mosquitto %s: %v", name, err)
		}
	}
	if m.PersistenceDir != "" {
		if m.PersistenceDir, err = filepath.Abs(m.PersistenceDir); err != nil {
			return bad("mosquitto persistence: %v", err)
		}
	}
	return nil
}

// config is the mosquitto.conf for m.
func (m *Mosquitto) config() (broker.MosquittoConfig, error) {
	u, err := CheckBrokerURL(m.BrokerURL)
	if err != nil {
		return broker.MosquittoConfig{}, err
	}
	c := broker.MosquittoConfig{PersistenceDir: m.PersistenceDir, User: m.User}
	if u.Scheme == "tcp" || u.Scheme == "mqtt" {
		c.Addr = u.Host
		return c, nil
	}
	c.Addr, c.TLSAddr = m.Listen, ":"+u.Port()
	c.TLSCertFile, c.TLSKeyFile, c.TLSCAFile = m.CertFile, m.KeyFile, m.CAFile
	return c, nil
}

// check validates m before anything is written: the configuration, the
// group, the run-as user, the certificate files of a TLS listener and the
// PID file.
func (m *Mosquitto) check(brokerURL string) error {
	if m.BrokerURL == "" {
		m.BrokerURL = brokerURL
	}
	if err := m.abs(); err != nil {
		return err
	}
	c, err := m.config()
	if err != nil {
		return err
	}
	c.PasswordFile, c.ACLFile = filepath.Join(m.Dir, broker.MosquittoPasswordFile), filepath.Join(m.Dir, broker.MosquittoACLFile)
	if _, err := c.WriteTo(discard{}); err != nil {
		return bad("mosquitto: %v", err)
	}
	if m.Group != "" {
		if _, err := user.LookupGroup(m.Group); err != nil {
			return bad("mosquitto group %q (the group Mosquitto runs as): %v", m.Group, err)
		}
	}
	if m.User != "" && m.User != "root" {
		if _, err := user.Lookup(m.User); err != nil {
			return bad("mosquitto user %q: %v", m.User, err)
		}
	}
	if c.TLSAddr != "" {
		for name, f := range map[string]string{"certificate": c.TLSCertFile, "key": c.TLSKeyFile, "CA": c.TLSCAFile} {
			if _, err := os.Stat(f); err != nil {
				return bad("mosquitto TLS %s %s: %v (the broker does not start without it; place it there or name it)", name, f, err)
			}
		}
	}
	if m.PIDFile != "" {
		if _, err := readPID(m.PIDFile); err != nil {
			return err
		}
	}
	return nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func readPID(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, bad("mosquitto pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0, bad("mosquitto pid file %s: %q is not a process id", path, strings.TrimSpace(string(b)))
	}
	return pid, nil
}

// WriteMosquitto rewrites the site broker's password file, ACL and
// configuration from the store: the cloud's account, every active device,
// and every operator account with read on its active devices; then sends
// the broker SIGHUP when m.PIDFile is set, and reports whether it did.
// Errors: ErrInput for bad options, the store's, broker.ErrOptions, the
// file system's, and the signal's.
func (p *Provisioner) WriteMosquitto(ctx context.Context, m Mosquitto) (bool, error) {
	if err := m.check(m.BrokerURL); err != nil {
		return false, err
	}
	cfg, err := m.config()
	if err != nil {
		return false, err
	}
	cloudUser := p.CloudUser
	if cloudUser == "" {
		cloudUser = broker.DefaultCloudUser
	}
	if p.CloudPassword == "" {
		return false, bad("the cloud's broker password is unknown")
	}
	cloudHash, err := broker.HashPassword(p.CloudPassword)
	if err != nil {
		return false, err
	}
	devs, err := p.Store.BrokerDevices(ctx)
	if err != nil {
		return false, err
	}
	accs, err := p.Store.BrokerAccounts(ctx)
	if err != nil {
		return false, err
	}
	entries := []broker.PasswordEntry{{User: cloudUser, Hash: cloudHash}}
	byOp := map[string][]string{}
	for _, d := range devs {
		entries = append(entries, broker.PasswordEntry{User: d.ID, Hash: d.MQTTHash})
		byOp[d.OperatorID] = append(byOp[d.OperatorID], d.ID)
	}
	acl := broker.ACL{CloudUser: cloudUser}
	for _, a := range accs {
		u := broker.OperatorUser(a.OperatorID)
		entries = append(entries, broker.PasswordEntry{User: u, Hash: a.MQTTHash})
		acl.Operators = append(acl.Operators, broker.OperatorACL{User: u, Devices: byOp[a.OperatorID]})
	}
	f := broker.MosquittoFiles{Dir: m.Dir, Group: m.Group, Passwords: entries, ACL: acl, Config: cfg}
	if err := f.Write(); err != nil {
		return false, err
	}
	if m.PIDFile == "" {
		return false, nil
	}
	pid, err := readPID(m.PIDFile)
	if err != nil {
		return false, err
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return false, fmt.Errorf("provision: reload mosquitto (pid %d from %s): %w", pid, m.PIDFile, err)
	}
	p.log().Info("provision: mosquitto reloaded", "pid", pid, "dir", m.Dir)
	return true, nil
}

// BrokerAccount is an operator's read-only broker account as made by
// OperatorBrokerAccount; Password is shown once and stored only hashed.
type BrokerAccount struct {
	Operator string `json:"operator"`
	Username string `json:"username"`
	Password string `json:"password,omitempty"`
}

// OperatorBrokerAccount makes or replaces operator's read-only broker
// account with a fresh random password (the old one stops working), and
// rewrites the site broker's files when m is not nil. Errors:
// store.ErrOperatorNotFound, ErrInput for bad Mosquitto options (checked
// before anything is written), and those of WriteMosquitto.
func (p *Provisioner) OperatorBrokerAccount(ctx context.Context, operator string, m *Mosquitto) (BrokerAccount, error) {
	if m != nil {
		if err := m.check(m.BrokerURL); err != nil {
			return BrokerAccount{}, err
		}
	}
	pwb := make([]byte, 24)
	if _, err := rand.Read(pwb); err != nil {
		return BrokerAccount{}, err
	}
	a := BrokerAccount{Operator: operator, Username: broker.OperatorUser(operator), Password: hex.EncodeToString(pwb)}
	hash, err := broker.HashPassword(a.Password)
	if err != nil {
		return BrokerAccount{}, err
	}
	if err := p.Store.SetBrokerAccount(ctx, operator, hash); err != nil {
		return BrokerAccount{}, err
	}
	if m != nil {
		if _, err := p.WriteMosquitto(ctx, *m); err != nil {
			return a, fmt.Errorf("provision: broker account of %s made, but the broker files were not written: %w", operator, err)
		}
	}
	return a, nil
}

// DisableDevice disables a device (it starts no new sessions; live ones
// finish and settle) and, when m is set, rewrites the site broker's files
// without it, so Mosquitto stops admitting it at its next reload (the
// embedded broker refuses a disabled device at once). It returns whether
// the broker was sent SIGHUP. Errors: store.ErrDeviceNotFound, ErrInput
// for bad Mosquitto options (checked first), and those of WriteMosquitto.
func (p *Provisioner) DisableDevice(ctx context.Context, id string, m *Mosquitto) (bool, error) {
	if m != nil {
		if err := m.check(m.BrokerURL); err != nil {
			return false, err
		}
	}
	op, err := p.Store.DeviceOperator(ctx, id)
	if err != nil {
		return false, err
	}
	if err := p.Store.SetDeviceState(ctx, op, id, store.DeviceDisabled); err != nil {
		return false, err
	}
	if m == nil {
		return false, nil
	}
	reloaded, err := p.WriteMosquitto(ctx, *m)
	if err != nil {
		return false, fmt.Errorf("provision: device %s disabled, but the broker files were not rewritten: %w (run `cloud broker files`)", id, err)
	}
	return reloaded, nil
}
