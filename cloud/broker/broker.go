package broker

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage/bolt"
	"go.etcd.io/bbolt"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/vend"
)

// Defaults for [Options].
const (
	DefaultAddr          = "127.0.0.1:1883"   // plain TCP listener: loopback only, for the cloud's own client
	DefaultCloudUser     = "_cloud"           // not a valid device id, so it cannot collide with one
	DefaultMaxPacketSize = 64 << 10           // bytes; mqttapi.MaxPayload is 16 KiB, the rest is headroom
	DefaultSessionExpiry = 7 * 24 * time.Hour // how long the broker keeps a disconnected persistent session
	DefaultLookupTimeout = 5 * time.Second    // bound on one Credentials lookup
	// DefaultMaxPendingWrites bounds the packets queued for one client's
	// connection. mochi allocates the queue per client up front (8 bytes a
	// slot); its own default of 8192 cost 64 KiB per device, 650 MiB for
	// 10,000 devices (cloud/LOAD.md). A device has a few commands in
	// flight at most; the cloud's own client, which takes every uplink, is
	// the one that can fill it, and only when it cannot keep up: then the
	// broker drops, devices resend from their outboxes (usage, events),
	// a start whose reply was dropped fails with device.no_reply and is
	// retried, and telemetry is QoS 0 by contract.
	DefaultMaxPendingWrites = 1024
)

// Broker errors.
var (
	ErrOptions     = vend.E(vend.Invalid, "broker.options", "broker: invalid options")
	ErrUnknown     = vend.E(vend.NotFound, "broker.unknown_device", "broker: unknown device")
	ErrClosed      = vend.E(vend.Conflict, "broker.closed", "broker: closed")
	ErrTLSMaterial = vend.E(vend.Invalid, "broker.tls", "broker: invalid TLS material")
)

// Credential is what the broker needs to know about one device to let it
// connect: its password hash (the "$7$" form of [HashPassword]) and whether
// it may connect at all.
type Credential struct {
	PasswordHash string // "$7$<iterations>$<salt>$<key>", PBKDF2-SHA512
	Enabled      bool   // false: refused at CONNECT (decommissioned, stolen, unpaid)
}

// Credentials looks devices up by id. The cloud store implements it; the
// broker calls it once per CONNECT of a device, with a context bounded by
// Options.LookupTimeout. It returns an error wrapping ErrUnknown (or any
// error of kind vend.NotFound) for a device it does not know; any other
// error refuses the connection and is logged at error level.
type Credentials interface {
	DeviceCredential(ctx context.Context, deviceID string) (Credential, error)
}

// CredentialsFunc adapts a function to [Credentials].
type CredentialsFunc func(ctx context.Context, deviceID string) (Credential, error)

// DeviceCredential calls f.
func (f CredentialsFunc) DeviceCredential(ctx context.Context, deviceID string) (Credential, error) {
	return f(ctx, deviceID)
}

// OperatorAccounts looks up operators' read-only broker accounts and who
// owns a device. The cloud store implements it. Both return an error of
// kind vend.NotFound for an unknown operator account or device; any other
// error refuses (and is logged).
type OperatorAccounts interface {
	// BrokerAccountHash returns the "$7$" password hash of operator's account.
	BrokerAccountHash(ctx context.Context, operatorID string) (string, error)
	// DeviceOperator returns the operator owning the device.
	DeviceOperator(ctx context.Context, deviceID string) (string, error)
}

// Options configure a [Broker]. Credentials and CloudPasswordHash are
// required; everything else has a default.
type Options struct {
	// Addr is the plain-TCP listen address, default DefaultAddr; port 0
	// picks a free port ([Broker.Addr] reports it). Keep it on loopback:
	// it carries passwords in clear.
	Addr string

	// TLSAddr, when not empty, opens a TLS listener there (e.g. ":8883")
	// with the certificate chain in TLSCertFile and key in TLSKeyFile (PEM).
	// Devices on cellular connect here.
	TLSAddr     string
	TLSCertFile string
	TLSKeyFile  string
	// TLSClientCAFile, when set, makes the TLS listener require a client
	// certificate signed by one of its CAs (PEM), and a device's
	// certificate must name the device id as its Common Name or as a DNS
	// SAN, in addition to the password.
	TLSClientCAFile string

	Credentials Credentials // device lookups; required
	// Operators, when set, admits operators' read-only accounts
	// (username [OperatorUser]): read on [OperatorLeaves] of their own
	// devices, nothing else. Nil: such usernames are refused.
	Operators         OperatorAccounts
	CloudUser         string // the cloud service's username, default DefaultCloudUser
	CloudPasswordHash string // its "$7$" hash; required

	Tree          mqttapi.Tree  // topic prefix; the zero Tree is mqttapi.DefaultPrefix
	DataDir       string        // when set, sessions, queued and retained messages persist in DataDir/broker.db (bbolt)
	MaxPacketSize uint32        // largest MQTT packet accepted, bytes; default DefaultMaxPacketSize
	SessionExpiry time.Duration // default DefaultSessionExpiry
	LookupTimeout time.Duration // default DefaultLookupTimeout
	// MaxPendingWrites is the per-client queue of outbound packets;
	// default DefaultMaxPendingWrites.
	MaxPendingWrites int
	Logger           *slog.Logger // default: discard

	// OnDisconnect, when set, is called (from its own goroutine) when a
	// device's connection ends other than by a takeover by a newer
	// connection of the same device or by the broker's shutdown, with the
	// time it ended (Now): the cloud marks the device offline for the
	// connection epoch that ended (cloud/service DeviceDisconnected). A
	// will, if the device registered one, is published as well.
	OnDisconnect func(deviceID string, at time.Time)
	Now          func() time.Time // default time.Now
}

// Capabilities are the mochi server capabilities New gives the broker for
// opts (zero fields take their defaults): the packet size and session
// expiry limits, QoS 1 at most (the contract uses 0 and 1), and the
// per-client outbound queue. Exported so that a bare mochi used as a
// yardstick (cloudbench's raw broker rate) runs with the same ones.
func Capabilities(opts Options) *mqtt.Capabilities {
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = cmp.Or(opts.MaxPacketSize, DefaultMaxPacketSize)
	caps.MaximumSessionExpiryInterval = uint32(min(cmp.Or(opts.SessionExpiry, DefaultSessionExpiry)/time.Second, 1<<32-1))
	caps.MaximumQos = 1
	caps.MaximumClientWritesPending = int32(min(cmp.Or(max(opts.MaxPendingWrites, 0), DefaultMaxPendingWrites), 1<<20))
	return caps
}

// Broker is the embedded MQTT broker (mochi-mqtt). Create it with [New],
// serve with [Broker.Run], stop with [Broker.Close].
type Broker struct {
	opts    Options
	log     *slog.Logger
	srv     *mqtt.Server
	tcp     *tcpListener
	tls     *tcpListener
	done    chan struct{}
	closeMu sync.Mutex
	closed  bool
	served  bool
	err     error
	hooks   sync.WaitGroup // presence reports in flight
	owners  sync.Map       // device id → operator id, for operator accounts' ACL
	ownersN atomic.Int64
}

func (b *Broker) now() time.Time {
	if b.opts.Now != nil {
		return b.opts.Now()
	}
	return time.Now()
}

// New validates opts, opens the store (when DataDir is set) and binds the
// listeners, so [Broker.Addr] and [Broker.TLSAddr] are known on return;
// clients are served once [Broker.Run] is called. It returns ErrOptions for
// missing or bad options, ErrTLSMaterial for unreadable certificates, and
// the listen or store error otherwise.
func New(opts Options) (*Broker, error) {
	if opts.Credentials == nil {
		return nil, vend.Errorf(ErrOptions, "no Credentials")
	}
	if opts.CloudUser == "" {
		opts.CloudUser = DefaultCloudUser
	}
	if vend.ValidateDeviceID(opts.CloudUser) == nil {
		return nil, vend.Errorf(ErrOptions, "cloud user %q is a valid device id; pick one that is not (e.g. %q)", opts.CloudUser, DefaultCloudUser)
	}
	if _, ok := OperatorOf(opts.CloudUser); ok {
		return nil, vend.Errorf(ErrOptions, "cloud user %q is an operator account's name (%s…); pick another (e.g. %q)", opts.CloudUser, OperatorUserPrefix, DefaultCloudUser)
	}
	if err := ValidateHash(opts.CloudPasswordHash); err != nil {
		return nil, fmt.Errorf("%w: CloudPasswordHash: %w", ErrOptions, err)
	}
	if _, err := opts.Tree.Filter(mqttapi.LeafState); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrOptions, err)
	}
	if opts.Addr == "" {
		opts.Addr = DefaultAddr
	}
	if opts.MaxPacketSize == 0 {
		opts.MaxPacketSize = DefaultMaxPacketSize
	}
	if opts.SessionExpiry <= 0 {
		opts.SessionExpiry = DefaultSessionExpiry
	}
	if opts.LookupTimeout <= 0 {
		opts.LookupTimeout = DefaultLookupTimeout
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var tlsCfg *tls.Config
	if opts.TLSAddr != "" {
		var err error
		if tlsCfg, err = serverTLS(opts); err != nil {
			return nil, err
		}
	}

	caps := Capabilities(opts)
	srv := mqtt.New(&mqtt.Options{
		Capabilities:           caps,
		Logger:                 log.With("component", "mochi"),
		SysTopicResendInterval: 0,
	})
	b := &Broker{opts: opts, log: log, srv: srv, done: make(chan struct{})}

	if err := srv.AddHook(&authHook{b: b}, nil); err != nil {
		return nil, fmt.Errorf("broker: add auth hook: %w", err)
	}
	if err := srv.AddHook(&presenceHook{b: b}, nil); err != nil {
		return nil, fmt.Errorf("broker: add presence hook: %w", err)
	}
	if opts.DataDir != "" {
		if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("broker: data dir: %w", err)
		}
		err := srv.AddHook(new(bolt.Hook), &bolt.Options{
			Path:    filepath.Join(opts.DataDir, "broker.db"),
			Options: &bbolt.Options{Timeout: 5 * time.Second},
		})
		if err != nil {
			return nil, fmt.Errorf("broker: open store %s: %w", filepath.Join(opts.DataDir, "broker.db"), err)
		}
	}
	b.tcp = newTCPListener(tcpListenerID, opts.Addr, nil)
	if err := srv.AddListener(b.tcp); err != nil {
		_ = srv.Close()
		return nil, fmt.Errorf("broker: listen %s: %w", opts.Addr, err)
	}
	if tlsCfg != nil {
		b.tls = newTCPListener(tlsListenerID, opts.TLSAddr, tlsCfg)
		if err := srv.AddListener(b.tls); err != nil {
			_ = srv.Close()
			return nil, fmt.Errorf("broker: listen tls %s: %w", opts.TLSAddr, err)
		}
	}
	return b, nil
}

func serverTLS(opts Options) (*tls.Config, error) {
	if opts.TLSCertFile == "" || opts.TLSKeyFile == "" {
		return nil, vend.Errorf(ErrOptions, "TLSAddr set without TLSCertFile and TLSKeyFile")
	}
	cert, err := tls.LoadX509KeyPair(opts.TLSCertFile, opts.TLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTLSMaterial, err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if opts.TLSClientCAFile != "" {
		pem, err := os.ReadFile(opts.TLSClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrTLSMaterial, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, vend.Errorf(ErrTLSMaterial, "%s: no PEM certificate", opts.TLSClientCAFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// Addr returns the bound address of the plain-TCP listener, host:port.
func (b *Broker) Addr() string { return b.tcp.Address() }

// TLSAddr returns the bound address of the TLS listener, or "" when there is none.
func (b *Broker) TLSAddr() string {
	if b.tls == nil {
		return ""
	}
	return b.tls.Address()
}

// URL returns "tcp://" + Addr(), the form paho clients take.
func (b *Broker) URL() string { return "tcp://" + b.Addr() }

// Run serves clients until ctx is done or Close is called, then closes the
// broker. It returns nil after an orderly stop, ErrClosed when the broker
// was closed before Run, and the error of starting or closing otherwise.
func (b *Broker) Run(ctx context.Context) error {
	b.closeMu.Lock()
	if b.closed || b.served {
		b.closeMu.Unlock()
		return vend.Errorf(ErrClosed, "run after close or a second run")
	}
	b.served = true
	err := b.srv.Serve()
	b.closeMu.Unlock()
	if err != nil {
		_ = b.Close()
		return fmt.Errorf("broker: serve: %w", err)
	}
	b.log.Info("broker: serving", "addr", b.Addr(), "tls_addr", b.TLSAddr())
	select {
	case <-ctx.Done():
	case <-b.done:
	}
	return b.Close()
}

// Close disconnects every client, closes the listeners and the store. It
// is safe to call more than once and from another goroutine than Run; it
// returns the same error each time.
func (b *Broker) Close() error {
	b.closeMu.Lock()
	defer b.closeMu.Unlock()
	if b.closed {
		return b.err
	}
	b.closed = true
	close(b.done)
	if err := b.srv.Close(); err != nil {
		b.err = fmt.Errorf("broker: close: %w", err)
	}
	b.hooks.Wait()
	return b.err
}

// errIsNotFound reports whether err says the device is unknown.
func errIsNotFound(err error) bool {
	return errors.Is(err, ErrUnknown) || vend.KindOf(err) == vend.NotFound
}
