package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/cloud/broker"
	"beaconvend/cloud/broker/natsauth"
	"beaconvend/cloud/console"
	"beaconvend/cloud/httpapi"
	"beaconvend/cloud/ingest"
	"beaconvend/cloud/payments/reconcile"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
	"beaconvend/cloud/webcheckout"
)

// UpkeepOptions are the knobs of the service's background components that
// run beside the ingest and the HTTP API.
type UpkeepOptions struct {
	Presence service.PresenceOptions
	Janitor  service.JanitorOptions
	Keys     service.KeyRotatorOptions
}

// Options configure a Server. Config and Store are required; the store
// must have been opened with Config.StoreOptions (its key-encryption key).
// Service, HTTP and Upkeep carry timing knobs (tests set them); what the
// configuration decides (channels, currency, keys) overrides them.
type Options struct {
	Config  *Config
	Store   *store.Store
	Logger  *slog.Logger // discard when nil
	Service service.Options
	HTTP    httpapi.Options
	Upkeep  UpkeepOptions
}

// Server is one running cloud: the embedded broker (or a client of an
// external one), the MQTT ingest, the service and its upkeep, the public
// HTTP API and the admin listener.
type Server struct {
	opts Options
	cfg  *Config
	log  *slog.Logger

	// Set by Run before it calls ready.
	HTTPURL  string // the public API, https:// when it serves TLS itself
	AdminURL string // /metrics, /healthz detail, /debug/pprof/
	MQTTURL  string // the broker the cloud's own client uses
	MQTTTLS  string // the embedded broker's device TLS listener, host:port; empty when none
	Service  *service.Service
	Ingest   *ingest.Ingest
	Broker   *broker.Broker // nil with an external broker
	// AuthResponders are the NATS auth callout responders this cloud
	// runs (broker.nats_auth), closed when Run returns; nil without.
	AuthResponders []*natsauth.Responder
}

// New checks opts and returns a Server; Run starts it.
func New(opts Options) (*Server, error) {
	if opts.Config == nil || opts.Store == nil {
		return nil, errors.New("server: Config and Store are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Server{opts: opts, cfg: opts.Config, log: opts.Logger}, nil
}

// Addrs returns what the server listens on, for `cloud serve -json`:
// http, admin (also as debug, where the profiles are), mqtt and, when
// the embedded broker has one, mqtt_tls.
func (s *Server) Addrs() map[string]string {
	out := map[string]string{"http": s.HTTPURL, "mqtt": s.MQTTURL, "admin": s.AdminURL, "debug": s.AdminURL}
	if s.MQTTTLS != "" {
		out["mqtt_tls"] = s.MQTTTLS
	}
	return out
}

// httpServer is the *http.Server of the admin listener: bounded header
// reading (the public one is httpapi's NewHTTPServer, with every limit).
func httpServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
}

// warnPosture logs, at WARN, every development relaxation in force, so a
// development cloud cannot pass for a production one in its log.
func (s *Server) warnPosture(ctx context.Context) {
	c := s.cfg
	if c.Development {
		s.log.Warn("server: DEVELOPMENT configuration: not for real money or real devices")
	}
	for _, ch := range c.Payments.Channels {
		if ch.Name == ChannelSandboxCard && ch.On() {
			s.log.Warn("server: DEVELOPMENT: the sandbox card is enabled: anyone signed up can mint wallet money", "channel", ch.Name)
		}
	}
	if c.KeyEncryption.KeyFile == "" && c.KeyEncryption.KeyEnv == "" {
		s.log.Warn("server: DEVELOPMENT: no key_encryption: device identity keys are stored in clear")
	} else if rep, err := s.opts.Store.ReencryptIdentityKeys(ctx, true); err != nil {
		s.log.Warn("server: identity keys", "err", err)
	} else if rep.Clear() {
		s.log.Warn("server: identity keys not under the current key-encryption key: run cloud keys reencrypt",
			"in_clear", rep.Sealed, "under_previous_key", rep.Resealed)
	}
	if !c.HTTP.TLS.On() && !c.HTTP.TLS.TerminatedByProxy {
		s.log.Warn("server: DEVELOPMENT: the public API speaks plain HTTP", "listen", c.HTTP.Listen)
	}
	if c.Broker.Embedded() && !c.Broker.TLS.On() && !c.Broker.TLS.TerminatedByProxy {
		s.log.Warn("server: DEVELOPMENT: devices connect over plain MQTT", "listen", c.Broker.Listen)
	}
}

// Run starts every part, calls ready (when not nil) once the MQTT
// subscriptions are in place and every listener is open, and runs until
// ctx is done (then nil) or a part fails (its error).
func (s *Server) Run(ctx context.Context, ready func()) error {
	cfg := s.cfg
	sec, err := LoadSecrets(cfg.DataDir)
	if err != nil {
		return err
	}
	s.warnPosture(ctx)
	// A stable client ID per data directory (per instance): a restarted
	// cloud resumes its persistent broker session instead of leaving the
	// old one, with its subscriptions and queued uplinks, to expire.
	idRaw, err := ReadOrCreate(filepath.Join(cfg.DataDir, "mqtt-client-id"), 6)
	if err != nil {
		return fmt.Errorf("server: mqtt-client-id: %w", err)
	}
	// The auth callout responders come first: on NATS they admit the
	// cloud's own connections too. They close last, after every part.
	var responders authResponders
	// The client TLS of an external broker (broker.ca_file): the cloud's
	// MQTT and NATS connections and its auth callout responders trust it.
	brokerTLS, err := brokerClientTLS(cfg.Broker)
	if err != nil {
		return err
	}
	if cfg.Broker.NATS() && cfg.Broker.NATSAuth == nil {
		s.log.Info("server: broker.nats_auth not set: this cloud runs no NATS auth callout responder; another process must answer the cluster's auth callout")
	} else if cfg.Broker.NATS() {
		offset := 0 // instances spread their responders by their client id
		if len(idRaw) > 0 {
			offset = int(idRaw[0])
		}
		if responders, err = s.startAuthResponders(sec, offset, brokerTLS); err != nil {
			return err
		}
		defer responders.Close()
		s.AuthResponders = responders
		s.log.Info("server: NATS auth callout responders started", "responders", len(responders))
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	goRun := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("server: %s: %w", name, err)
			}
		}()
	}
	defer wg.Wait()
	defer cancel()

	var svcp atomic.Pointer[service.Service]
	url := cfg.Broker.URL
	var clientTLS *tls.Config
	if cfg.Broker.Embedded() {
		b, err := s.embeddedBroker(sec, &svcp)
		if err != nil {
			return err
		}
		s.Broker = b
		url = b.URL()
		s.MQTTTLS = b.TLSAddr()
		goRun("broker", b.Run)
	} else {
		clientTLS = brokerTLS
	}
	s.MQTTURL = url

	var svc *service.Service
	var natsOpts *ingest.NATSOptions
	if cfg.Broker.NATS() {
		// Replicated like the cluster's MQTT streams on three nodes or more.
		natsOpts = &ingest.NATSOptions{URLs: cfg.Broker.NATSURLs, Replicas: 1}
		if len(cfg.Broker.NATSURLs) >= 3 {
			natsOpts.Replicas = 3
		}
	}
	in, err := ingest.New(ingest.Options{
		URL: url, ClientID: "_cloud-" + hex.EncodeToString(idRaw), Username: broker.DefaultCloudUser, Password: sec.MQTTPassword,
		FallbackURLs: cfg.Broker.FallbackURLs, TLS: clientTLS, Group: cfg.Broker.Group, NATS: natsOpts,
		Handler: ingest.HandlerFunc(func(ctx context.Context, dev string, leaf mqttapi.Leaf, msg mqttapi.Message) error {
			return svc.Handle(ctx, dev, leaf, msg)
		}),
		Logger: s.log.With("part", "ingest"),
	})
	if err != nil {
		return err
	}
	s.Ingest = in

	so := s.opts.Service
	so.Store, so.Publisher, so.CloudKey = s.opts.Store, in, sec.CloudKey
	chans, err := cfg.Channels()
	if err != nil {
		return err
	}
	so.Channels, so.Currency, so.PublicURL = chans, cfg.Payments.Currency, cfg.Payments.PublicURL
	if cfg.Payments.DayZone != "" {
		so.PaymentDay, _ = time.LoadLocation(cfg.Payments.DayZone)
	}
	if so.GrantTTL == 0 {
		so.GrantTTL = cfg.Sessions.GrantTTL.D()
	}
	if so.StepUp, err = mergeStepUp(so.StepUp, cfg); err != nil {
		return err
	}
	if so.Alerts, err = mergeAlerts(so.Alerts, cfg); err != nil {
		return err
	}
	if so.GaugeInterval == 0 {
		so.GaugeInterval = cfg.Upkeep.GaugeInterval.D()
	}
	if so.Logger == nil {
		so.Logger = s.log.With("part", "service")
	}
	svc, err = service.New(ctx, so)
	if err != nil {
		return err
	}
	s.Service = svc
	svcp.Store(svc)
	responders.register(svc.Registry(), s.log)
	s.useProvisioner(svc, sec, url) // device provisioning from the console (provisioning.go)

	ho := s.opts.HTTP
	ho.Service, ho.BrokerConnected = svc, in.Connected
	if len(ho.Limits.TrustedProxies) == 0 {
		ho.Limits.TrustedProxies = s.cfg.HTTP.proxies
	}
	if ho.Logger == nil {
		ho.Logger = s.log.With("part", "http")
	}
	api, err := httpapi.New(ho)
	if err != nil {
		return err
	}
	ln, scheme, err := listen("http", cfg.HTTP.Listen, cfg.HTTP.TLS)
	if err != nil {
		return err
	}
	s.HTTPURL = scheme + "://" + ln.Addr().String()
	aln, err := net.Listen("tcp", cfg.Admin.Listen)
	if err != nil {
		ln.Close()
		return fmt.Errorf("server: admin.listen: %w", err)
	}
	s.AdminURL = "http://" + aln.Addr().String()

	goRun("ingest", in.Run)
	goRun("service", svc.Run)
	goRun("upkeep", s.runUpkeep(svc))
	if srcs := reconciled(chans); len(srcs) > 0 {
		job := &reconcile.Job{Reconciler: cfg.reconciler(s.opts.Store, svc, svc.Registry(), s.log.With("part", "reconcile")),
			Channels: func() map[string]reconcile.Source { return srcs }}
		goRun("reconcile", job.Run)
	}
	errLog := slog.NewLogLogger(s.log.With("part", "http").Handler(), slog.LevelDebug) // TLS handshake noise
	pub, adm := api.NewHTTPServer(), httpServer(s.adminHandler(svc, in))
	web, err := s.webCheckout(svc, api, sec, scheme)
	if err != nil {
		ln.Close()
		aln.Close()
		return err
	}
	con, err := s.operatorConsole(svc, api, sec)
	if err != nil {
		ln.Close()
		aln.Close()
		return err
	}
	pub.Handler = console.Mount(con, webcheckout.Mount(web, pub.Handler))
	pub.ErrorLog, adm.ErrorLog = errLog, errLog
	goRun("http", serveUntilDone(pub, ln))
	goRun("admin", serveUntilDone(adm, aln))

	wctx, wcancel := context.WithTimeout(ctx, 15*time.Second)
	err = in.WaitSubscribed(wctx)
	wcancel()
	if err != nil {
		return fmt.Errorf("server: mqtt not subscribed: %w", err)
	}
	s.log.Info("server: serving", "http", s.HTTPURL, "admin", s.AdminURL, "mqtt", s.MQTTURL, "mqtt_tls", s.MQTTTLS, "development", cfg.Development)
	if ready != nil {
		ready()
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		return err
	}
}

// listen opens a TCP listener at addr, with TLS when t has a certificate
// (loaded now, so a bad file fails the start, naming the field).
func listen(field, addr string, t TLS) (net.Listener, string, error) {
	var tc *tls.Config
	if t.On() {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, "", fmt.Errorf("server: %s.tls: %w", field, err)
		}
		tc = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("server: %s.listen: %w", field, err)
	}
	if tc != nil {
		return tls.NewListener(ln, tc), "https", nil
	}
	return ln, "http", nil
}

// serveUntilDone serves srv on ln until ctx is done, then shuts it down
// (5 s for requests in flight).
func serveUntilDone(srv *http.Server, ln net.Listener) func(context.Context) error {
	return func(ctx context.Context) error {
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
	}
}

// embeddedBroker builds the in-process broker: the cloud's plain loopback
// listener, and the devices' TLS listener when configured. Disconnects
// reach the service once svcp holds it (the broker starts first).
func (s *Server) embeddedBroker(sec Secrets, svcp *atomic.Pointer[service.Service]) (*broker.Broker, error) {
	hash, err := broker.HashPassword(sec.MQTTPassword)
	if err != nil {
		return nil, err
	}
	st, b := s.opts.Store, s.cfg.Broker
	return broker.New(broker.Options{
		Addr: b.Listen, TLSAddr: b.DeviceListen, TLSCertFile: b.TLS.CertFile, TLSKeyFile: b.TLS.KeyFile,
		Credentials:       storeCredentials(st),
		CloudPasswordHash: hash,
		Operators:         st,
		OnDisconnect: func(id string, at time.Time) {
			if svc := svcp.Load(); svc != nil {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				svc.DeviceDisconnected(ctx, id, at)
			}
		},
		Logger: s.log.With("part", "broker"),
	})
}

// runUpkeep runs the presence sweeper, the janitor and the key-rotation
// driver until ctx is done, each with its own Run.
func (s *Server) runUpkeep(svc *service.Service) func(context.Context) error {
	o := s.opts.Upkeep
	if o.Presence.StaleAfter == 0 {
		o.Presence.StaleAfter = s.cfg.Upkeep.PresenceStale.D()
	}
	if o.Janitor.Interval == 0 {
		o.Janitor.Interval = s.cfg.Upkeep.JanitorInterval.D()
	}
	return func(ctx context.Context) error {
		runs := []func(context.Context) error{svc.Presence(o.Presence).Run, svc.Janitor(o.Janitor).Run, svc.KeyRotator(o.Keys).Run}
		errc := make(chan error, len(runs))
		for _, run := range runs {
			go func() { errc <- run(ctx) }()
		}
		var errs []error
		for range runs {
			errs = append(errs, <-errc)
		}
		return errors.Join(errs...)
	}
}

// brokerClientTLS is the TLS configuration of the cloud's connections to
// an external broker with broker.ca_file: only that CA is trusted. Nil
// (the system roots for ssl:// and tls:// URLs) without ca_file or with
// the embedded broker.
func brokerClientTLS(b Broker) (*tls.Config, error) {
	if b.Embedded() || b.CAFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(b.CAFile)
	if err != nil {
		return nil, fmt.Errorf("server: broker.ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("server: broker.ca_file %s: no PEM certificate", b.CAFile)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}
