package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/broker"
	"beaconvend/cloud/httpapi"
	"beaconvend/cloud/ingest"
	"beaconvend/cloud/server"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

var (
	errUsage = errors.New("cloud: usage")
	errHelp  = errors.New("cloud: help printed")
)

const usageLine = "usage: cloud serve | keys reencrypt | operator add|add-account|role|password|disable|enable|broker-credentials | device add|rotate-key|disable | broker files|nats-files | reconcile | stickers | machine web-checkout  [-h for flags]"

// Main is the cloud program: ParseFlags, Run, Close. Tests run it in
// process (STYLE.md #3).
type Main struct {
	natsArgs []string // broker nats-files
	Stdout   io.Writer
	Stderr   io.Writer
	Logger   *slog.Logger
	Getenv   func(string) string // os.Getenv when nil; the key-encryption key's variable is read through it

	Cmd []string // "serve", "device add", …

	// ConfigFile is -config; Config is what ParseFlags made of it and of
	// the flags given (nil for a command run without -config).
	ConfigFile string
	Config     *server.Config
	DataDir    string
	DSN        string
	JSON       bool
	// Service timing knobs, for tests; zero means the configuration's, then the defaults.
	ServiceOpts service.Options
	HTTPOpts    httpapi.Options
	StoreOpts   store.Opts
	Upkeep      server.UpkeepOptions // presence sweeper, janitor, key rotation

	dev       deviceFlags
	op        operatorFlags
	dryRun    bool     // keys reencrypt
	reconArgs []string // reconcile: its flags, handed to the reconcile package
	web       webFlags // stickers, machine web-checkout (web.go)

	// Set by Run (serve) once listening; Ready is closed then.
	HTTPURL  string
	AdminURL string
	MQTTURL  string
	MQTTTLS  string
	Ready    chan struct{}
	Store    *store.Store
	Service  *service.Service
	Ingest   *ingest.Ingest
	Broker   *broker.Broker

	closers []func() error
}

// NewMain returns a Main writing to the process's stdout and stderr.
func NewMain() *Main {
	return &Main{Stdout: os.Stdout, Stderr: os.Stderr, Ready: make(chan struct{})}
}

// overlay is a serve flag that, when given, overrides the configuration.
type overlay struct {
	name string
	set  func(c *server.Config, v string)
}

// ParseFlags parses the command line (without the program name) and, for
// serve or -config, builds and validates the configuration. It returns
// errHelp after printing help for -h (to stdout), errUsage after printing
// the usage for an unknown command, and ErrConfig errors naming the field.
func (m *Main) ParseFlags(args []string) error {
	if m.Stdout == nil {
		m.Stdout = os.Stdout
	}
	if m.Stderr == nil {
		m.Stderr = os.Stderr
	}
	if m.Ready == nil {
		m.Ready = make(chan struct{})
	}
	if m.Getenv == nil {
		m.Getenv = os.Getenv
	}
	usage := func() error {
		fmt.Fprintln(m.Stderr, usageLine)
		return errUsage
	}
	if len(args) == 0 {
		return usage()
	}
	if ok, err := m.webCommand(args); ok {
		return err
	}
	if len(args) >= 2 && args[0] == "broker" && args[1] == "nats-files" {
		// No store: the files are the cluster's, not the fleet's.
		m.Cmd, m.natsArgs = args[:2], args[2:]
		return nil
	}
	var fs *flag.FlagSet
	var overlays []overlay
	devMode := false
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(m.Stdout, usageLine)
		return errHelp
	case "serve":
		m.Cmd, args = args[:1], args[1:]
		fs = flag.NewFlagSet("cloud serve", flag.ContinueOnError)
		m.commonFlags(fs)
		fs.BoolVar(&devMode, "dev", false, "development cloud without a config file: sandbox card, keys in clear, plain HTTP and MQTT (logged as such)")
		fs.BoolVar(&m.JSON, "json", false, `print {"http":…,"admin":…,"mqtt":…} as one JSON line once listening`)
		str := func(name, def, help string, set func(c *server.Config, v string)) {
			fs.String(name, def, help+" (overrides the config file)")
			overlays = append(overlays, overlay{name, set})
		}
		str("http", "127.0.0.1:8080", "public HTTP listen address (port 0 picks a free one)", func(c *server.Config, v string) { c.HTTP.Listen = v })
		str("admin", "", "admin listener (/metrics, /healthz detail, /debug/pprof/), e.g. 127.0.0.1:9090; -dev default 127.0.0.1:0", func(c *server.Config, v string) { c.Admin.Listen = v })
		str("debug-addr", "", "the same as -admin", func(c *server.Config, v string) { c.Admin.Listen = v })
		str("broker", "embedded", `"embedded" (mochi-mqtt in process) or the broker URL (tcp://host:1883, ssl://host:8883)`, func(c *server.Config, v string) { c.Broker.URL = v })
		str("mqtt-listen", "127.0.0.1:0", "embedded broker's plain TCP listener (loopback; the cloud's own client)", func(c *server.Config, v string) { c.Broker.Listen = v })
		str("mqtt-tls-listen", "", "embedded broker's TLS listener for devices, e.g. :8883", func(c *server.Config, v string) { c.Broker.DeviceListen = v })
		str("mqtt-tls-cert", "", "PEM certificate chain of the TLS listener", func(c *server.Config, v string) { c.Broker.TLS.CertFile = abs(v) })
		str("mqtt-tls-key", "", "PEM key of the TLS listener", func(c *server.Config, v string) { c.Broker.TLS.KeyFile = abs(v) })
		str("group", "", "MQTT shared-subscription group of the cloud instances (empty: one instance)", func(c *server.Config, v string) { c.Broker.Group = v })
		m.lifecycleFlags(fs)
		m.upkeepFlags(fs)
	case "reconcile":
		// The reconcile package parses its own flags; -config (and -data,
		// -db) come first: cloud reconcile -config cloud.yaml -channel C -day D.
		m.Cmd, args = args[:1], args[1:]
		fs = flag.NewFlagSet("cloud reconcile", flag.ContinueOnError)
		m.commonFlags(fs)
		for _, f := range [][2]string{{"channel", "channel name (wechatpay, alipay)"}, {"day", "the day to reconcile, YYYY-MM-DD in payments.day_zone"},
			{"csv", `write the outcomes as CSV to this file ("-": standard output)`}} {
			fs.Func(f[0], f[1], func(v string) error { m.reconArgs = append(m.reconArgs, "-"+f[0], v); return nil })
		}
	case "keys", "operator", "device", "broker":
		if len(args) < 2 {
			return usage()
		}
		m.Cmd, args = args[:2], args[2:]
		fs = flag.NewFlagSet("cloud "+strings.Join(m.Cmd, " "), flag.ContinueOnError)
		m.commonFlags(fs)
		switch strings.Join(m.Cmd, " ") {
		case "keys reencrypt":
			fs.BoolVar(&m.dryRun, "dry-run", false, "only report what would be sealed or resealed")
		case "operator add", "operator add-account", "operator role", "operator password", "operator disable", "operator enable":
			m.op.flags(fs, m.Cmd[1])
		case "operator broker-credentials":
			m.dev.brokerCredFlags(fs)
		case "broker files":
			m.dev.brokerFilesFlags(fs)
		case "device add":
			m.dev.addFlags(fs)
		case "device rotate-key":
			m.dev.rotateFlags(fs)
		case "device disable":
			m.dev.disableFlags(fs)
		default:
			return usage()
		}
	default:
		return usage()
	}
	fs.SetOutput(m.Stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(m.Stdout)
			fs.PrintDefaults()
			return errHelp
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("cloud: unexpected arguments %q", fs.Args())
	}
	given := map[string]string{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = f.Value.String() })
	if m.Cmd[0] != "serve" && m.ConfigFile == "" {
		if m.Cmd[0] == "keys" {
			return errors.New("cloud: keys reencrypt needs -config (the key-encryption keys are configured there)")
		}
		if m.Cmd[0] == "reconcile" {
			return errors.New("cloud: reconcile needs -config (the payment channels are configured there)")
		}
		if m.DSN == "" {
			m.DSN = "sqlite:" + filepath.Join(m.DataDir, "cloud.db")
		}
		return nil
	}
	return m.buildConfig(given, overlays, devMode)
}

// buildConfig decodes -config (or starts from an empty configuration),
// applies the flags given, fills in defaults and validates.
func (m *Main) buildConfig(given map[string]string, overlays []overlay, devMode bool) error {
	c := &server.Config{}
	if m.ConfigFile != "" {
		f, err := os.Open(m.ConfigFile)
		if err != nil {
			return fmt.Errorf("cloud: -config: %w", err)
		}
		c, err = server.Decode(f, filepath.Dir(m.ConfigFile))
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", m.ConfigFile, err)
		}
	} else if devMode {
		c.Payments.Channels = []server.ChannelConfig{{Name: server.ChannelSandboxCard}}
	}
	if devMode {
		c.Development = true
	}
	if v, ok := given["data"]; ok {
		c.DataDir = abs(v)
	} else if c.DataDir == "" && m.ConfigFile == "" {
		c.DataDir = abs(m.DataDir)
	}
	if v, ok := given["db"]; ok {
		c.Database = v
	}
	for _, o := range overlays {
		if v, ok := given[o.name]; ok {
			o.set(c, v)
		} else if m.ConfigFile == "" && o.name == "http" {
			o.set(c, "127.0.0.1:8080")
		}
	}
	if err := c.Complete(); err != nil {
		if m.ConfigFile == "" {
			return fmt.Errorf("cloud: give -config cloud.yaml (README: Fleet), or -dev for a development cloud: %w", err)
		}
		return fmt.Errorf("%s: %w", m.ConfigFile, err)
	}
	m.Config, m.DataDir, m.DSN = c, c.DataDir, c.Database
	return nil
}

// abs makes a path given on the command line absolute, so the
// configuration's relative-path rule (against its file) does not apply.
func abs(p string) string {
	if p == "" {
		return p
	}
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

func (m *Main) commonFlags(fs *flag.FlagSet) {
	fs.StringVar(&m.ConfigFile, "config", "", "the cloud's YAML configuration (README: Fleet); flags given override it")
	fs.StringVar(&m.DataDir, "data", "./cloud-data", "data directory: cloud signing key, MQTT secret, default SQLite file")
	fs.StringVar(&m.DSN, "db", "", "database: postgres://… or sqlite:PATH (default sqlite under -data)")
}

// Run runs the command. serve runs until ctx is done.
func (m *Main) Run(ctx context.Context) error {
	if strings.Join(m.Cmd, " ") == "broker nats-files" {
		return natsFilesCommand(m.natsArgs, m.Stdout, m.Stderr)
	}
	if m.Logger == nil {
		m.Logger = slog.New(slog.NewTextHandler(m.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	if err := os.MkdirAll(m.DataDir, 0o700); err != nil {
		return fmt.Errorf("cloud: data dir: %w", err)
	}
	so := m.StoreOpts
	if m.Config != nil {
		var err error
		if so, err = m.Config.StoreOptions(so, m.Getenv); err != nil {
			return err
		}
	}
	if so.Logger == nil {
		so.Logger = m.Logger
	}
	st, err := store.Open(ctx, m.DSN, &so)
	if err != nil {
		return err
	}
	m.Store = st
	m.closers = append(m.closers, st.Close)
	switch strings.Join(m.Cmd, " ") {
	case "serve":
		return m.serve(ctx)
	case "reconcile":
		return server.ReconcileCommand(ctx, m.Config, st, m.reconArgs, m.Stdout, m.Logger)
	case "keys reencrypt":
		rep, err := st.ReencryptIdentityKeys(ctx, m.dryRun)
		if perr := m.printJSON(map[string]any{"sealed": rep.Sealed, "resealed": rep.Resealed, "current": rep.Current,
			"failed": rep.Failed, "dry_run": m.dryRun}); err == nil {
			err = perr
		}
		return err
	case "operator add", "operator add-account", "operator role", "operator password", "operator disable", "operator enable":
		return m.operatorRun(ctx, m.Cmd[1])
	case "operator broker-credentials":
		return m.operatorBrokerCredentials(ctx)
	case "broker files":
		return m.brokerFiles(ctx)
	case "device add":
		return m.deviceAdd(ctx)
	case "device rotate-key":
		return m.deviceRotate(ctx)
	case "device disable":
		return m.deviceDisable(ctx)
	}
	if ok, err := m.webRun(ctx); ok {
		return err
	}
	return errUsage
}

// Close releases what Run opened, in reverse order.
func (m *Main) Close() error {
	var errs []error
	for i := len(m.closers) - 1; i >= 0; i-- {
		errs = append(errs, m.closers[i]())
	}
	m.closers = nil
	return errors.Join(errs...)
}

// secrets are the cloud's own keys in the data directory (server.Secrets).
type secrets = server.Secrets

func (m *Main) secrets() (secrets, error) { return server.LoadSecrets(m.DataDir) }

func (m *Main) serve(ctx context.Context) error {
	srv, err := server.New(server.Options{Config: m.Config, Store: m.Store, Logger: m.Logger,
		Service: m.ServiceOpts, HTTP: m.HTTPOpts, Upkeep: m.Upkeep})
	if err != nil {
		return err
	}
	return srv.Run(ctx, func() {
		m.HTTPURL, m.AdminURL, m.MQTTURL, m.MQTTTLS = srv.HTTPURL, srv.AdminURL, srv.MQTTURL, srv.MQTTTLS
		m.Service, m.Ingest, m.Broker = srv.Service, srv.Ingest, srv.Broker
		if m.JSON {
			b, _ := json.Marshal(srv.Addrs())
			fmt.Fprintln(m.Stdout, string(b))
		}
		close(m.Ready)
	})
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// upkeepFlags adds the serve flags of the upkeep options; zero keeps the
// configuration's (then the default).
func (m *Main) upkeepFlags(fs *flag.FlagSet) {
	fs.DurationVar(&m.Upkeep.Presence.StaleAfter, "presence-stale", m.Upkeep.Presence.StaleAfter,
		"a device heard from for this long is offline (0: "+service.DefaultStaleAfter.String()+", three times the boards' telemetry period)")
	fs.DurationVar(&m.Upkeep.Janitor.Interval, "janitor-interval", m.Upkeep.Janitor.Interval, "how often expired bookkeeping rows are pruned (0: 10m)")
}

// lifecycleFlags are the session bounds of serve (store.Lifecycle and the
// grant's start-by bound); a value set on m before ParseFlags is the
// default, so tests keep theirs.
func (m *Main) lifecycleFlags(fs *flag.FlagSet) {
	fs.DurationVar(&m.ServiceOpts.GrantTTL, "grant-ttl", m.ServiceOpts.GrantTTL, "a grant's start-by bound: the board must start the machine within it (0: 20s)")
	fs.DurationVar(&m.StoreOpts.AckBound, "ack-bound", m.StoreOpts.AckBound, "allowed skew after the start-by bound before an unacknowledged (pending) session is released (0: 10s)")
	fs.DurationVar(&m.StoreOpts.Lifecycle.OfflineAllowance, "offline-allowance", m.StoreOpts.Lifecycle.OfflineAllowance,
		"added to a machine's longest run before an acknowledged session without a report becomes unreported (0: 30m)")
	fs.DurationVar(&m.StoreOpts.Lifecycle.SettleWindow, "settle-window", m.StoreOpts.Lifecycle.SettleWindow,
		"how long an unreported session keeps its hold before the unreported policy applies (0: 72h)")
	fs.Func("unreported-policy", "after the settle window: release (in full; default) or capture_last (the units of the board's ended event)", func(v string) error {
		switch p := store.UnreportedPolicy(v); p {
		case store.PolicyRelease, store.PolicyCaptureLast:
			m.StoreOpts.Lifecycle.Policy = p
			return nil
		}
		return fmt.Errorf("want release or capture_last, not %q", v)
	})
	fs.Func("run-per-unit", "longest time one cap unit may take, per machine kind, e.g. water=500ms,washer=2h,dryer=1s,vending=1m (defaults those)", func(v string) error {
		if m.StoreOpts.Lifecycle.PerUnit == nil {
			m.StoreOpts.Lifecycle.PerUnit = map[vend.MachineKind]time.Duration{}
		}
		for _, kv := range strings.Split(v, ",") {
			k, d, ok := strings.Cut(strings.TrimSpace(kv), "=")
			dur, err := time.ParseDuration(d)
			if !ok || err != nil || dur <= 0 {
				return fmt.Errorf("%q: want kind=duration", kv)
			}
			m.StoreOpts.Lifecycle.PerUnit[vend.MachineKind(k)] = dur
		}
		return nil
	})
}
