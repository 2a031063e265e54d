package server

import (
	"bytes"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/store"
)

// Errors.
var (
	// ErrConfig is a configuration that cannot run; the message names the field.
	ErrConfig = vend.E(vend.Invalid, "config.invalid", "server: config")
	// ErrKeyFile is a key-encryption key that cannot be read or is not 64 hex digits.
	ErrKeyFile = vend.E(vend.Invalid, "config.key_file", "server: key-encryption key")
	// ErrKeyPerms is a key file readable by group or others.
	ErrKeyPerms = vend.E(vend.Unauthorized, "config.key_perms", "server: key file readable by others")
)

// ChannelSandboxCard is the development sandbox card (payments.Sandbox):
// it always pays, so only a development configuration may enable it.
const ChannelSandboxCard = "sandbox_card"

// Config is the cloud's one YAML file (`cloud serve -config cloud.yaml`).
// Load fills in defaults and validates it; every error names the field.
//
// A production configuration (development: false, the default) must say
// which payment channels to enable, where the key-encryption key for the
// devices' identity keys comes from, how the phone API and the devices'
// broker listener get TLS (certificate files, or an explicit statement
// that a proxy terminates it), and where the admin listener is.
type Config struct {
	// Development allows what a production cloud refuses: the sandbox
	// card, identity keys in clear, plain HTTP and MQTT, no admin listener
	// address (a free loopback port). The cloud logs a warning at start.
	Development bool `yaml:"development"`

	DataDir  string `yaml:"data_dir"` // cloud.key, mqtt-cloud.secret, mqtt-client-id; default ./cloud-data beside the file
	Database string `yaml:"database"` // postgres://… or sqlite:PATH; default sqlite:<data_dir>/cloud.db
	// DatabaseSwitchWait bounds how long a write transaction that failed
	// on a PostgreSQL switch-over is run again before its error reaches
	// the caller (store.Opts.SwitchWait); default 30s, at most 10m. Set it
	// above the failover time of the database's manager (README:
	// PostgreSQL failover).
	DatabaseSwitchWait Duration `yaml:"database_switch_wait"`

	HTTP          HTTP          `yaml:"http"`
	Admin         Admin         `yaml:"admin"`
	Broker        Broker        `yaml:"broker"`
	Payments      Payments      `yaml:"payments"`
	KeyEncryption KeyEncryption `yaml:"key_encryption"`
	Sessions      Sessions      `yaml:"sessions"`
	Upkeep        Upkeep        `yaml:"upkeep"`
	StepUp        StepUp        `yaml:"step_up"` // the step-up PIN's token life, lock-out and operator limits (stepup.go)
	Alerts        Alerts        `yaml:"alerts"`  // alert e-mail (SMTP) and the webhooks' signing key (alerts.go)

	dir string // the file's directory, for relative paths
}

// HTTP is the public listener: the phone and operator API, /healthz and
// /readyz, nothing else.
type HTTP struct {
	Listen string `yaml:"listen"` // default 127.0.0.1:8080; port 0 picks a free one
	TLS    TLS    `yaml:"tls"`
	// TrustedProxies are the CIDR prefixes of the proxies whose
	// X-Forwarded-For the per-address rate limits believe
	// (httpapi.Limits.TrustedProxies). Required when a proxy terminates
	// TLS in production: otherwise every client counts as the proxy.
	TrustedProxies []string `yaml:"trusted_proxies"`

	proxies []netip.Prefix
}

// Admin is the private listener: /metrics, detailed /healthz and
// /debug/pprof/. Keep it on loopback or a management network.
type Admin struct {
	Listen string `yaml:"listen"` // required in production; development default 127.0.0.1:0
}

// TLS is a listener's certificate, or the statement that a proxy in front
// of it terminates TLS (then the listener speaks plain TCP to the proxy).
type TLS struct {
	CertFile          string `yaml:"cert_file"` // PEM chain
	KeyFile           string `yaml:"key_file"`  // PEM key, mode 0600
	TerminatedByProxy bool   `yaml:"terminated_by_proxy"`
}

// On reports whether the listener itself serves TLS.
func (t TLS) On() bool { return t.CertFile != "" }

// Broker is the MQTT side: the embedded broker (URL empty or "embedded")
// or an external one (Mosquitto, a cluster).
type Broker struct {
	URL    string `yaml:"url"`     // "embedded" (default), tcp://host:1883 or ssl://host:8883
	CAFile string `yaml:"ca_file"` // external ssl:// broker: PEM CA of its certificate; default the system roots
	Group  string `yaml:"group"`   // shared-subscription group of the cloud instances; empty: one instance
	// Kind is "mqtt" (default: the embedded broker, Mosquitto) or "nats": a
	// NATS cluster (cloud broker nats-files), whose MQTT listeners url
	// names and whose client listeners nats_urls lists, for the cloud's
	// NATS-native consumers. On nats, device ids holding '.' are refused.
	Kind     string   `yaml:"kind"`
	NATSURLs []string `yaml:"nats_urls"` // nats://host:port (tls:// off this host) of the cluster's nodes; kind nats only
	// FallbackURLs are the cluster's other MQTT listeners, tried after URL
	// on every (re)connect, so that commands and state survive the loss of
	// URL's node (external brokers only; same schemes as URL).
	FallbackURLs []string `yaml:"fallback_urls"`
	// NATSAuth, with kind nats, makes this cloud run the cluster's auth
	// callout responders (NATSAuth). Absent, the cloud runs none and says
	// so at start: another process must answer the nodes' auth callout,
	// or no device, and not the cloud itself, is admitted.
	NATSAuth *NATSAuth `yaml:"nats_auth"`
	// DeviceURL is the broker URL boards dial, written into the
	// provisioning bundles the console and board claims make, when it is
	// not the URL the cloud itself dials (a load balancer, a public name,
	// a NAT). Default: the embedded broker's device TLS listener when it
	// has one, else url (the embedded broker's loopback listener for
	// development). tcp:// off loopback only in development.
	DeviceURL string `yaml:"device_url"`
	// DeviceCAFile is a PEM CA written into those bundles, so that boards
	// trust a broker certificate from a private CA (the embedded broker's
	// device TLS listener has no other way to say it). Default: the
	// external broker's ca_file; none (the board's system roots) for the
	// embedded broker.
	DeviceCAFile string `yaml:"device_ca_file"`

	// Embedded broker only.
	Listen       string `yaml:"listen"`        // plain TCP for the cloud's own client (loopback); default 127.0.0.1:0
	DeviceListen string `yaml:"device_listen"` // the devices' listener, e.g. :8883
	TLS          TLS    `yaml:"tls"`           // of DeviceListen
}

// NATSAuth are the secrets and the count of the NATS auth callout
// responders (cloud/broker/natsauth) the cloud runs beside its ingest:
// they admit devices (username = MQTT client id = device id), the cloud
// and operators' read-only accounts against the store, each device to its
// own subtree only. Both files are what `cloud broker nats-files` writes
// next to the node configurations; each must be mode 0600 (refused
// otherwise, like every key file here). Every cloud instance runs
// Responders of them in one queue group, so with two instances and the
// default, four answer and the loss of a node or an instance does not
// block connects.
//
//	broker:
//	  kind: nats
//	  nats_auth:
//	    issuer_seed_file: /etc/beaconvend/nats/auth-issuer.seed   # 0600, an account seed (SA…)
//	    password_file: /etc/beaconvend/nats/auth-user.password    # 0600, the auth user's password
//	    responders: 2                                             # default 2; production refuses fewer
type NATSAuth struct {
	IssuerSeedFile string `yaml:"issuer_seed_file"` // the account nkey seed the nodes' auth_callout.issuer names; required
	PasswordFile   string `yaml:"password_file"`    // the password of the nodes' auth user (broker.NATSAuthUser); required
	// Responders is how many responders this instance runs, each on its
	// own connection, spread over nats_urls; default 2, at least 1, and
	// at least 2 in production (one connection's node lost would
	// otherwise stall every connect routed to this instance's only one
	// until it reconnects).
	Responders int `yaml:"responders"`
}

// Embedded reports whether the cloud runs its own broker.
func (b Broker) Embedded() bool { return b.URL == "" || b.URL == "embedded" }

// Payments are the channels money comes in through, besides the wallet.
type Payments struct {
	Currency vend.Currency `yaml:"currency"` // the wallet currency; default EUR
	// Channels to enable, each a bare name or a mapping (ChannelConfig:
	// enabled, base_url, priority, params, credentials, limits).
	// Production must list them, possibly as an empty list ([]: wallets
	// are funded by no channel). Known: sandbox_card (development only)
	// and whatever RegisterChannel added (wechatpay, alipay).
	Channels []ChannelConfig `yaml:"channels"`
	// PublicURL is the cloud's base URL as the providers reach it
	// (https://api.example.com); providers POST notifications to
	// PublicURL/v1/channels/<channel>/notify. Required in production
	// when a channel other than the sandbox is enabled.
	PublicURL string `yaml:"public_url"`
	// DayZone is the time zone whose midnight starts a day for the
	// channels' daily limits (IANA name); default UTC.
	DayZone string `yaml:"day_zone"`
	// SandboxMaxPayment is the sandbox card's per-top-up limit in minor
	// units; default 50000.
	SandboxMaxPayment int64 `yaml:"sandbox_max_payment"`
}

// KeyEncryption names where the 32-byte key-encryption key (64 hex
// digits) that seals the devices' identity keys in the database comes
// from: a file (mode 0600) or an environment variable. The previous key,
// during a rotation, is read too: rows still sealed under it are served,
// and `cloud keys reencrypt` reseals them.
type KeyEncryption struct {
	KeyFile         string `yaml:"key_file"`
	KeyEnv          string `yaml:"key_env"`
	PreviousKeyFile string `yaml:"previous_key_file"`
	PreviousKeyEnv  string `yaml:"previous_key_env"`
}

// Sessions are the bounds of a session's life (store.Lifecycle and the
// grant's start-by bound); zero values keep the defaults.
type Sessions struct {
	GrantTTL         Duration            `yaml:"grant_ttl"`         // the board must start the machine within it; default 20s
	AckBound         Duration            `yaml:"ack_bound"`         // skew allowed after the start-by bound; default 10s
	OfflineAllowance Duration            `yaml:"offline_allowance"` // added to a machine's longest run; default 30m
	SettleWindow     Duration            `yaml:"settle_window"`     // how long an unreported session keeps its hold; default 72h
	UnreportedPolicy string              `yaml:"unreported_policy"` // release (default) or capture_last
	RunPerUnit       map[string]Duration `yaml:"run_per_unit"`      // longest time one cap unit may take, by machine kind
}

// Upkeep are the background jobs' periods.
type Upkeep struct {
	PresenceStale   Duration `yaml:"presence_stale"`   // a device silent this long is offline; default service.DefaultStaleAfter
	JanitorInterval Duration `yaml:"janitor_interval"` // how often expired bookkeeping rows are pruned; default 10m
	GaugeInterval   Duration `yaml:"gauge_interval"`   // how often the database-derived gauges are computed; default 30s
}

// Duration is a time.Duration written as "500ms", "30s", "72h".
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil || v < 0 {
		return fmt.Errorf("line %d: %q is not a duration like 500ms or 30s", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Load reads, defaults and validates a config file; relative paths in it
// are relative to the file's directory. Errors: ErrConfig naming the
// field, and the file system's.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("server: config: %w", err)
	}
	c, err := Parse(bytes.NewReader(b), filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Parse reads a config from r (Decode), then fills in defaults and
// validates it (Complete).
func Parse(r io.Reader, dir string) (*Config, error) {
	c, err := Decode(r, dir)
	if err != nil {
		return nil, err
	}
	if err := c.Complete(); err != nil {
		return nil, err
	}
	return c, nil
}

// Decode reads a config from r strictly (an unknown field is an error,
// naming its line) without defaults or validation; relative paths in it
// will resolve against dir. A caller that overrides fields (command-line
// flags) calls Complete after. Errors: ErrConfig.
func Decode(r io.Reader, dir string) (*Config, error) {
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	var c Config
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, vend.Errorf(ErrConfig, "empty file")
		}
		return nil, vend.Errorf(ErrConfig, "%v", err)
	}
	c.dir = dir
	return &c, nil
}

// Complete fills in defaults, makes paths absolute against the file's
// directory (or the working directory for a Config built in code) and
// validates. Errors: ErrConfig naming the field.
func (c *Config) Complete() error {
	c.defaults()
	return c.Validate()
}

func (c *Config) path(p string) string {
	if p == "" || filepath.IsAbs(p) || c.dir == "" {
		return p
	}
	return filepath.Join(c.dir, p)
}

func (c *Config) defaults() {
	if c.DataDir == "" {
		c.DataDir = "cloud-data"
	}
	c.DataDir = c.path(c.DataDir)
	if c.Database == "" {
		c.Database = "sqlite:" + filepath.Join(c.DataDir, "cloud.db")
	} else if rest, ok := strings.CutPrefix(c.Database, "sqlite:"); ok {
		c.Database = "sqlite:" + c.path(rest)
	}
	if c.HTTP.Listen == "" {
		c.HTTP.Listen = "127.0.0.1:8080"
	}
	if c.Admin.Listen == "" && c.Development {
		c.Admin.Listen = "127.0.0.1:0"
	}
	if c.Broker.URL == "" {
		c.Broker.URL = "embedded"
	}
	if c.Broker.Embedded() && c.Broker.Listen == "" {
		c.Broker.Listen = "127.0.0.1:0"
	}
	if c.Payments.Currency == "" {
		c.Payments.Currency = "EUR"
	}
	if c.Payments.SandboxMaxPayment == 0 {
		c.Payments.SandboxMaxPayment = 50000
	}
	for _, t := range []*TLS{&c.HTTP.TLS, &c.Broker.TLS} {
		t.CertFile, t.KeyFile = c.path(t.CertFile), c.path(t.KeyFile)
	}
	c.Broker.CAFile = c.path(c.Broker.CAFile)
	c.Broker.DeviceCAFile = c.path(c.Broker.DeviceCAFile)
	if a := c.Broker.NATSAuth; a != nil {
		a.IssuerSeedFile, a.PasswordFile = c.path(a.IssuerSeedFile), c.path(a.PasswordFile)
		if a.Responders == 0 {
			a.Responders = DefaultNATSAuthResponders
		}
	}
	k := &c.KeyEncryption
	k.KeyFile, k.PreviousKeyFile = c.path(k.KeyFile), c.path(k.PreviousKeyFile)
}

func bad(field, format string, args ...any) error {
	return vend.Errorf(ErrConfig, "%s: %s", field, fmt.Sprintf(format, args...))
}

// production names what a development configuration may leave out.
const production = " (a production cloud needs it; development: true for a development cloud)"

// Validate checks the configuration; it expects defaults filled in
// (Complete). It reports every group's first problem at once (public
// listener, admin listener, broker, payments, keys, sessions), one line
// each. Errors: ErrConfig naming the field.
func (c *Config) Validate() error {
	return errors.Join(c.validateDatabase(), c.validateHTTP(), c.validateAdmin(), c.validateBroker(), c.validateNATSAuth(), c.validatePayments(),
		c.validateKeys(), c.validateSessions(), c.validateStepUp(), c.validateAlerts())
}

// MaxDatabaseSwitchWait bounds database_switch_wait: a request holds its
// connection and the payer waits while a transaction is run again.
const MaxDatabaseSwitchWait = 10 * time.Minute

func (c *Config) validateDatabase() error {
	if c.DatabaseSwitchWait.D() > MaxDatabaseSwitchWait {
		return bad("database_switch_wait", "%s: at most %s (requests wait that long for the database)", c.DatabaseSwitchWait.D(), MaxDatabaseSwitchWait)
	}
	return nil
}

func (c *Config) validateHTTP() error {
	if err := c.validateTLS("http.tls", c.HTTP.TLS); err != nil {
		return err
	}
	if _, _, err := net.SplitHostPort(c.HTTP.Listen); err != nil {
		return bad("http.listen", "%q: want host:port", c.HTTP.Listen)
	}
	if !c.Development && !c.HTTP.TLS.On() && !c.HTTP.TLS.TerminatedByProxy {
		return bad("http.tls", "missing: give cert_file and key_file, or terminated_by_proxy: true"+production)
	}
	c.HTTP.proxies = nil
	for i, p := range c.HTTP.TrustedProxies {
		pfx, err := netip.ParsePrefix(p)
		if err != nil {
			return bad(fmt.Sprintf("http.trusted_proxies[%d]", i), "%q: want a CIDR prefix such as 10.0.0.0/8", p)
		}
		c.HTTP.proxies = append(c.HTTP.proxies, pfx.Masked())
	}
	if !c.Development && c.HTTP.TLS.TerminatedByProxy && len(c.HTTP.proxies) == 0 {
		return bad("http.trusted_proxies", "missing: a proxy terminates TLS, so name it, or every client counts as the proxy in the per-address rate limits"+production)
	}
	return nil
}

func (c *Config) validateAdmin() error {
	if c.Admin.Listen == "" {
		return bad("admin.listen", "missing: /metrics, health detail and profiles are served only there"+production)
	}
	if _, _, err := net.SplitHostPort(c.Admin.Listen); err != nil {
		return bad("admin.listen", "%q: want host:port", c.Admin.Listen)
	}
	if c.Admin.Listen == c.HTTP.Listen && !strings.HasSuffix(c.Admin.Listen, ":0") {
		return bad("admin.listen", "%q is the public listener too: metrics must stay off it", c.Admin.Listen)
	}
	return nil
}

func (c *Config) validateKeys() error {
	k := c.KeyEncryption
	if k.KeyFile != "" && k.KeyEnv != "" {
		return bad("key_encryption", "key_file and key_env both set; give one")
	}
	if k.PreviousKeyFile != "" && k.PreviousKeyEnv != "" {
		return bad("key_encryption", "previous_key_file and previous_key_env both set; give one")
	}
	if !c.Development && k.KeyFile == "" && k.KeyEnv == "" {
		return bad("key_encryption", "missing: give key_file or key_env, the key that seals device identity keys in the database"+production)
	}
	if k.KeyFile == "" && k.KeyEnv == "" && (k.PreviousKeyFile != "" || k.PreviousKeyEnv != "") {
		return bad("key_encryption", "a previous key without a current one")
	}
	return nil
}

func (c *Config) validateSessions() error {
	s := c.Sessions
	switch store.UnreportedPolicy(s.UnreportedPolicy) {
	case "", store.PolicyRelease, store.PolicyCaptureLast:
	default:
		return bad("sessions.unreported_policy", "%q: want release or capture_last", s.UnreportedPolicy)
	}
	for k, d := range s.RunPerUnit {
		if vend.MachineKind(k).Unit() == 0 {
			return bad("sessions.run_per_unit", "%q is not a machine kind (water, washer, dryer, vending)", k)
		}
		if d <= 0 {
			return bad("sessions.run_per_unit."+k, "must be positive")
		}
	}
	return nil
}

func (c *Config) validateTLS(field string, t TLS) error {
	if (t.CertFile == "") != (t.KeyFile == "") {
		return bad(field, "cert_file and key_file go together")
	}
	if t.On() && t.TerminatedByProxy {
		return bad(field, "cert_file and terminated_by_proxy: true both set; give one")
	}
	for _, f := range []struct{ name, path string }{{"cert_file", t.CertFile}, {"key_file", t.KeyFile}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			return bad(field+"."+f.name, "%v", err)
		}
	}
	return nil
}

// NATS reports whether the broker is a NATS cluster.
func (b Broker) NATS() bool { return b.Kind == "nats" }

func (c *Config) validateBroker() error {
	b := c.Broker
	switch b.Kind {
	case "", "mqtt":
		if len(b.NATSURLs) > 0 {
			return bad("broker.nats_urls", "only with kind: nats")
		}
	case "nats":
		if b.Embedded() {
			return bad("broker.url", "kind nats: want the tcp:// or ssl:// url of the cluster's MQTT listeners, not the embedded broker")
		}
		if len(b.NATSURLs) == 0 {
			return bad("broker.nats_urls", "missing: the nats:// urls of the cluster's nodes (kind nats)")
		}
		for _, s := range b.NATSURLs {
			u, err := url.Parse(s)
			if err != nil || u.Host == "" || u.User != nil {
				return bad("broker.nats_urls", "%q: want nats://host:port or tls://host:port (no credentials)", s)
			}
			switch u.Scheme {
			case "nats":
				if !c.Development && !loopback(u.Hostname()) {
					return bad("broker.nats_urls", "%q sends the cloud's password in clear off this host: use tls://"+production, s)
				}
			case "tls":
			default:
				return bad("broker.nats_urls", "%q: want nats://host:port or tls://host:port", s)
			}
		}
	default:
		return bad("broker.kind", "%q: want mqtt or nats", b.Kind)
	}
	if b.Embedded() && len(b.FallbackURLs) > 0 {
		return bad("broker.fallback_urls", "only with an external broker.url")
	}
	if b.DeviceCAFile != "" {
		pemText, err := os.ReadFile(b.DeviceCAFile)
		if err != nil {
			return bad("broker.device_ca_file", "%v", err)
		}
		if blk, _ := pem.Decode(pemText); blk == nil || blk.Type != "CERTIFICATE" {
			return bad("broker.device_ca_file", "%s: no PEM certificate", b.DeviceCAFile)
		}
	}
	if b.DeviceURL != "" {
		u, err := url.Parse(b.DeviceURL)
		if err != nil || u.Host == "" || u.Port() == "" {
			return bad("broker.device_url", "%q: want tcp://host:port or ssl://host:port", b.DeviceURL)
		}
		switch u.Scheme {
		case "tcp":
			if !c.Development && !loopback(u.Hostname()) {
				return bad("broker.device_url", "%q sends the devices' broker passwords in clear off this host: use ssl://"+production, b.DeviceURL)
			}
		case "ssl":
		default:
			return bad("broker.device_url", "%q: want tcp://host:port or ssl://host:port", b.DeviceURL)
		}
	}
	for _, f := range b.FallbackURLs {
		u, err := url.Parse(f)
		if err != nil || u.Host == "" {
			return bad("broker.fallback_urls", "%q: want tcp://host:port or ssl://host:port", f)
		}
		switch u.Scheme {
		case "tcp", "mqtt":
			if !c.Development && !loopback(u.Hostname()) {
				return bad("broker.fallback_urls", "%q sends the cloud's broker password in clear off this host: use ssl://"+production, f)
			}
		case "ssl", "tls", "mqtts", "tcps":
		default:
			return bad("broker.fallback_urls", "%q: want tcp://host:port or ssl://host:port", f)
		}
	}
	if !b.Embedded() {
		u, err := url.Parse(b.URL)
		if err != nil || u.Host == "" {
			return bad("broker.url", "%q: want embedded, tcp://host:port or ssl://host:port", b.URL)
		}
		switch u.Scheme {
		case "tcp", "mqtt":
			if !c.Development && !loopback(u.Hostname()) {
				return bad("broker.url", "%q sends the cloud's broker password in clear off this host: use ssl://"+production, b.URL)
			}
		case "ssl", "tls", "mqtts", "tcps":
		default:
			return bad("broker.url", "%q: want embedded, tcp://host:port or ssl://host:port", b.URL)
		}
		if b.Listen != "" || b.DeviceListen != "" || b.TLS != (TLS{}) {
			return bad("broker", "listen, device_listen and tls configure the embedded broker; the broker at url %s has its own", b.URL)
		}
		if b.CAFile != "" {
			if _, err := os.Stat(b.CAFile); err != nil {
				return bad("broker.ca_file", "%v", err)
			}
		}
		return nil
	}
	if b.CAFile != "" {
		return bad("broker.ca_file", "only for an external ssl:// broker")
	}
	host, _, err := net.SplitHostPort(b.Listen)
	if err != nil {
		return bad("broker.listen", "%q: want host:port", b.Listen)
	}
	if err := c.validateTLS("broker.tls", b.TLS); err != nil {
		return err
	}
	if b.TLS.On() && b.DeviceListen == "" {
		return bad("broker.device_listen", "missing: the listener broker.tls is for")
	}
	if b.DeviceListen != "" {
		if _, _, err := net.SplitHostPort(b.DeviceListen); err != nil {
			return bad("broker.device_listen", "%q: want host:port", b.DeviceListen)
		}
		if !b.TLS.On() {
			return bad("broker.tls", "device_listen %s needs cert_file and key_file (a proxy that terminates TLS forwards to broker.listen instead)", b.DeviceListen)
		}
	}
	if !c.Development {
		if !b.TLS.On() && !b.TLS.TerminatedByProxy {
			return bad("broker.tls", "missing: give device_listen with cert_file and key_file, or terminated_by_proxy: true"+production)
		}
		if !loopback(host) && !b.TLS.TerminatedByProxy {
			return bad("broker.listen", "%q: the plain listener carries passwords in clear; keep it on loopback (or state tls.terminated_by_proxy: true)", b.Listen)
		}
	}
	return nil
}

func (c *Config) validatePayments() error {
	p := c.Payments
	if len(p.Currency) != 3 || strings.ToUpper(string(p.Currency)) != string(p.Currency) {
		return bad("payments.currency", "%q: want an ISO 4217 code such as EUR", p.Currency)
	}
	if p.Channels == nil && !c.Development {
		return bad("payments.channels", "missing: list the channels to enable ([] for none)"+production)
	}
	if err := c.validateChannels(); err != nil {
		return err
	}
	real := false
	for _, ch := range p.Channels {
		real = real || (ch.On() && ch.Name != ChannelSandboxCard)
	}
	if p.PublicURL != "" && !strings.HasPrefix(p.PublicURL, "https://") && !strings.HasPrefix(p.PublicURL, "http://") {
		return bad("payments.public_url", "%q: want an http(s) URL", p.PublicURL)
	}
	if real && p.PublicURL == "" && !c.Development {
		return bad("payments.public_url", "missing: the providers need the URL they send notifications to"+production)
	}
	if p.DayZone != "" {
		if _, err := time.LoadLocation(p.DayZone); err != nil {
			return bad("payments.day_zone", "%q: %v", p.DayZone, err)
		}
	}
	if p.SandboxMaxPayment < 0 {
		return bad("payments.sandbox_max_payment", "must be positive")
	}
	return nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// KeyEncKeys reads the key-encryption key and the previous one, if
// configured (nil when not), through getenv for the environment variables.
// Errors: ErrKeyFile, ErrKeyPerms.
func (c *Config) KeyEncKeys(getenv func(string) string) (cur, prev []byte, err error) {
	k := c.KeyEncryption
	if cur, err = readKey("key_encryption.key", k.KeyFile, k.KeyEnv, getenv); err != nil {
		return nil, nil, err
	}
	if prev, err = readKey("key_encryption.previous_key", k.PreviousKeyFile, k.PreviousKeyEnv, getenv); err != nil {
		return nil, nil, err
	}
	return cur, prev, nil
}

func readKey(field, file, env string, getenv func(string) string) ([]byte, error) {
	var text string
	switch {
	case file != "":
		st, err := os.Stat(file)
		if err != nil {
			return nil, vend.Errorf(ErrKeyFile, "%s_file: %v", field, err)
		}
		if st.Mode().Perm()&0o077 != 0 {
			return nil, vend.Errorf(ErrKeyPerms, "%s_file %s has mode %o, want 0600", field, file, st.Mode().Perm())
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, vend.Errorf(ErrKeyFile, "%s_file: %v", field, err)
		}
		text = string(b)
		field += "_file " + file
	case env != "":
		text = getenv(env)
		if text == "" {
			return nil, vend.Errorf(ErrKeyFile, "%s_env: environment variable %s is empty or unset", field, env)
		}
		field += "_env " + env
	default:
		return nil, nil
	}
	key, err := hex.DecodeString(strings.TrimSpace(text))
	if err != nil || len(key) != 32 {
		return nil, vend.Errorf(ErrKeyFile, "%s: want 64 hex digits (32 bytes)", field)
	}
	return key, nil
}

// StoreOptions returns base with what the configuration sets: the
// key-encryption keys (read through getenv), the session bounds and the
// database switch-over wait; a field base already sets (a test's timing)
// is kept.
func (c *Config) StoreOptions(base store.Opts, getenv func(string) string) (store.Opts, error) {
	cur, prev, err := c.KeyEncKeys(getenv)
	if err != nil {
		return base, err
	}
	if cur != nil {
		base.KeyEncKey = cur
	}
	if prev != nil {
		base.PrevKeyEncKeys = append(base.PrevKeyEncKeys, prev)
	}
	s := c.Sessions
	set := func(d *time.Duration, v Duration) {
		if *d == 0 {
			*d = v.D()
		}
	}
	set(&base.AckBound, s.AckBound)
	set(&base.SwitchWait, c.DatabaseSwitchWait)
	set(&base.Lifecycle.OfflineAllowance, s.OfflineAllowance)
	set(&base.Lifecycle.SettleWindow, s.SettleWindow)
	if base.Lifecycle.Policy == "" {
		base.Lifecycle.Policy = store.UnreportedPolicy(s.UnreportedPolicy)
	}
	for k, d := range s.RunPerUnit {
		if base.Lifecycle.PerUnit == nil {
			base.Lifecycle.PerUnit = map[vend.MachineKind]time.Duration{}
		}
		if _, ok := base.Lifecycle.PerUnit[vend.MachineKind(k)]; !ok {
			base.Lifecycle.PerUnit[vend.MachineKind(k)] = d.D()
		}
	}
	return base, nil
}
