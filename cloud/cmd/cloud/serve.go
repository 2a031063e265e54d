package main

import (
	"beaconvend/controller/config"
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/broker"
	"beaconvend/cloud/httpapi"
	"beaconvend/cloud/ingest"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

var errUsage = errors.New("cloud: usage")

// Main is the cloud program: ParseFlags, Run, Close. Tests run it in
// process (STYLE.md #3).
type Main struct {
	Stdout io.Writer
	Stderr io.Writer
	Logger *slog.Logger

	Cmd []string // "serve", "device add", …

	// serve
	DataDir       string
	DSN           string
	HTTPAddr      string
	BrokerURL     string // "embedded" or tcp://… / ssl://…
	MQTTListen    string
	MQTTTLSListen string
	MQTTTLSCert   string
	MQTTTLSKey    string
	Group         string
	JSON          bool
	DebugAddr     string // net/http/pprof listener; empty: none
	// Service timing knobs, for tests; zero means the defaults.
	ServiceOpts service.Options
	HTTPOpts    httpapi.Options
	StoreOpts   store.Opts
	Upkeep      upkeepOptions // presence sweeper, janitor, key rotation (main.go)

	dev deviceFlags
	op  operatorFlags

	// Set by Run (serve) once listening; Ready is closed then.
	HTTPURL string
	MQTTURL string
	MQTTTLS string
	Ready   chan struct{}
	Store   *store.Store
	Service *service.Service
	Ingest  *ingest.Ingest
	Broker  *broker.Broker

	closers []func() error
}

// NewMain returns a Main writing to the process's stdout and stderr.
func NewMain() *Main {
	return &Main{Stdout: os.Stdout, Stderr: os.Stderr, Ready: make(chan struct{})}
}

// ParseFlags parses the command line (without the program name).
// It returns errUsage after printing help for -h or an unknown command.
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
	usage := func() error {
		fmt.Fprintln(m.Stderr, "usage: cloud serve | operator add | operator broker-credentials | device add | device rotate-key | device disable | broker files  [-h for flags]")
		return errUsage
	}
	if len(args) == 0 {
		return usage()
	}
	var fs *flag.FlagSet
	switch args[0] {
	case "serve":
		m.Cmd, args = args[:1], args[1:]
		fs = flag.NewFlagSet("cloud serve", flag.ContinueOnError)
		m.commonFlags(fs)
		fs.StringVar(&m.HTTPAddr, "http", "127.0.0.1:8080", "HTTP listen address (port 0 picks a free one)")
		fs.StringVar(&m.BrokerURL, "broker", "embedded", `"embedded" (mochi-mqtt in process) or the broker URL (tcp://host:1883, ssl://host:8883)`)
		fs.StringVar(&m.MQTTListen, "mqtt-listen", "127.0.0.1:0", "embedded broker's plain TCP listener (loopback; the cloud's own client)")
		fs.StringVar(&m.MQTTTLSListen, "mqtt-tls-listen", "", "embedded broker's TLS listener for devices, e.g. :8883")
		fs.StringVar(&m.MQTTTLSCert, "mqtt-tls-cert", "", "PEM certificate chain of the TLS listener")
		fs.StringVar(&m.MQTTTLSKey, "mqtt-tls-key", "", "PEM key of the TLS listener")
		fs.StringVar(&m.Group, "group", "", "MQTT shared-subscription group of the cloud instances (empty: one instance)")
		fs.StringVar(&m.DebugAddr, "debug-addr", "", "serve Go's net/http/pprof profiles on this address (loopback, e.g. 127.0.0.1:6060); empty: off")
		fs.BoolVar(&m.JSON, "json", false, `print {"http":…,"mqtt":…} as one JSON line once listening`)
		m.lifecycleFlags(fs)
		m.upkeepFlags(fs)
	case "operator", "device", "broker":
		if len(args) < 2 {
			return usage()
		}
		m.Cmd, args = args[:2], args[2:]
		fs = flag.NewFlagSet("cloud "+strings.Join(m.Cmd, " "), flag.ContinueOnError)
		m.commonFlags(fs)
		switch strings.Join(m.Cmd, " ") {
		case "operator add":
			m.op.flags(fs)
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
			return errUsage
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("cloud: unexpected arguments %q", fs.Args())
	}
	if m.DSN == "" {
		m.DSN = "sqlite:" + filepath.Join(m.DataDir, "cloud.db")
	}
	return nil
}

func (m *Main) commonFlags(fs *flag.FlagSet) {
	fs.StringVar(&m.DataDir, "data", "./cloud-data", "data directory: cloud signing key, MQTT secret, default SQLite file")
	fs.StringVar(&m.DSN, "db", "", "database: postgres://… or sqlite:PATH (default sqlite under -data)")
}

// Run runs the command. serve runs until ctx is done.
func (m *Main) Run(ctx context.Context) error {
	if m.Logger == nil {
		m.Logger = slog.New(slog.NewTextHandler(m.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	if err := os.MkdirAll(m.DataDir, 0o700); err != nil {
		return fmt.Errorf("cloud: data dir: %w", err)
	}
	so := m.StoreOpts
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
	case "operator add":
		return m.operatorAdd(ctx)
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

// secrets are the cloud's own keys in the data directory, made on first start.
type secrets struct {
	CloudKey     ed25519.PrivateKey
	MQTTPassword string
	OperatorKey  []byte
}

// readOrCreate returns the hex secret in file, creating it (0600) with n
// random bytes when missing.
func readOrCreate(file string, n int) ([]byte, error) {
	b, err := os.ReadFile(file)
	if err == nil {
		return hex.DecodeString(strings.TrimSpace(string(b)))
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	raw := make([]byte, n)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	if err := config.WriteSecret(file, []byte(hex.EncodeToString(raw)+"\n")); err != nil {
		return nil, err
	}
	return raw, nil
}

func (m *Main) secrets() (secrets, error) {
	seed, err := readOrCreate(filepath.Join(m.DataDir, "cloud.key"), ed25519.SeedSize)
	if err != nil || len(seed) != ed25519.SeedSize {
		return secrets{}, fmt.Errorf("cloud: cloud.key: %v", err)
	}
	pw, err := readOrCreate(filepath.Join(m.DataDir, "mqtt-cloud.secret"), 32)
	if err != nil {
		return secrets{}, fmt.Errorf("cloud: mqtt-cloud.secret: %w", err)
	}
	mac := hmac.New(sha256.New, seed)
	mac.Write([]byte("beaconvend operator tokens v1"))
	return secrets{CloudKey: ed25519.NewKeyFromSeed(seed), MQTTPassword: hex.EncodeToString(pw), OperatorKey: mac.Sum(nil)}, nil
}

func (m *Main) serve(ctx context.Context) error {
	sec, err := m.secrets()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	goRun := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("cloud: %s: %w", name, err)
			}
		}()
	}
	defer wg.Wait()
	defer cancel()

	onDisconnect, presenceTo := disconnectHook()
	url := m.BrokerURL
	if url == "embedded" {
		hash, err := broker.HashPassword(sec.MQTTPassword)
		if err != nil {
			return err
		}
		b, err := broker.New(broker.Options{
			Addr: m.MQTTListen, TLSAddr: m.MQTTTLSListen, TLSCertFile: m.MQTTTLSCert, TLSKeyFile: m.MQTTTLSKey,
			Credentials: broker.CredentialsFunc(func(ctx context.Context, id string) (broker.Credential, error) {
				d, err := m.Store.GetDevice(ctx, id)
				if err != nil {
					return broker.Credential{}, err
				}
				return broker.Credential{PasswordHash: d.MQTTHash, Enabled: d.State != store.DeviceDisabled}, nil
			}),
			CloudPasswordHash: hash,
			Operators:         m.Store,
			OnDisconnect:      onDisconnect,
			Logger:            m.Logger.With("part", "broker"),
		})
		if err != nil {
			return err
		}
		m.Broker = b
		url = b.URL()
		m.MQTTTLS = b.TLSAddr()
		goRun("broker", b.Run)
	}
	m.MQTTURL = url

	var svc *service.Service
	// A stable client ID per data directory (per instance): a restarted
	// cloud resumes its persistent broker session instead of leaving the
	// old one, with its subscriptions and queued uplinks, to expire.
	idRaw, err := readOrCreate(filepath.Join(m.DataDir, "mqtt-client-id"), 6)
	if err != nil {
		return err
	}
	clientID := "_cloud-" + hex.EncodeToString(idRaw)
	in, err := ingest.New(ingest.Options{
		URL: url, ClientID: clientID, Username: broker.DefaultCloudUser, Password: sec.MQTTPassword, Group: m.Group,
		Handler: ingest.HandlerFunc(func(ctx context.Context, dev string, leaf mqttapi.Leaf, msg mqttapi.Message) error {
			return svc.Handle(ctx, dev, leaf, msg)
		}),
		Logger: m.Logger.With("part", "ingest"),
	})
	if err != nil {
		return err
	}
	m.Ingest = in

	so := m.ServiceOpts
	so.Store, so.Publisher, so.CloudKey = m.Store, in, sec.CloudKey
	if so.Logger == nil {
		so.Logger = m.Logger.With("part", "service")
	}
	svc, err = service.New(ctx, so)
	if err != nil {
		return err
	}
	m.Service = svc
	presenceTo(svc)

	ho := m.HTTPOpts
	ho.Service, ho.OperatorKey, ho.BrokerConnected = svc, sec.OperatorKey, in.Connected
	if ho.Logger == nil {
		ho.Logger = m.Logger.With("part", "http")
	}
	api, err := httpapi.New(ho)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", m.HTTPAddr)
	if err != nil {
		return fmt.Errorf("cloud: http listen: %w", err)
	}
	srv := &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second}
	m.HTTPURL = "http://" + ln.Addr().String()

	goRun("ingest", in.Run)
	goRun("service", svc.Run)
	goRun("upkeep", runUpkeep(svc, m.Upkeep))
	goRun("http", func(ctx context.Context) error {
		go func() {
			<-ctx.Done()
			sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
			defer c()
			_ = srv.Shutdown(sctx)
		}()
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	debugURL := ""
	if m.DebugAddr != "" {
		dln, err := net.Listen("tcp", m.DebugAddr)
		if err != nil {
			return fmt.Errorf("cloud: debug listen: %w", err)
		}
		dsrv := &http.Server{Handler: pprofMux(), ReadHeaderTimeout: 10 * time.Second}
		goRun("debug", func(ctx context.Context) error {
			go func() { <-ctx.Done(); _ = dsrv.Close() }()
			if err := dsrv.Serve(dln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
		debugURL = "http://" + dln.Addr().String()
		m.Logger.Info("cloud: profiles", "url", debugURL+"/debug/pprof/")
	}
	wctx, wcancel := context.WithTimeout(ctx, 15*time.Second)
	err = in.WaitSubscribed(wctx)
	wcancel()
	if err != nil {
		return fmt.Errorf("cloud: mqtt not subscribed: %w", err)
	}
	if m.JSON {
		line := map[string]string{"http": m.HTTPURL, "mqtt": m.MQTTURL}
		if m.MQTTTLS != "" {
			line["mqtt_tls"] = m.MQTTTLS
		}
		if debugURL != "" {
			line["debug"] = debugURL
		}
		b, _ := json.Marshal(line)
		fmt.Fprintln(m.Stdout, string(b))
	} else {
		m.Logger.Info("cloud: serving", "http", m.HTTPURL, "mqtt", m.MQTTURL)
	}
	close(m.Ready)
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		return err
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// pprofMux serves Go's runtime profiles (net/http/pprof) on their own
// listener, apart from the phone and operator API, so they are never
// reachable where the API is published.
func pprofMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
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
