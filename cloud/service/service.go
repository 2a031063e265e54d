package service

import (
	"context"
	"crypto/ed25519"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/payments"
	"beaconvend/cloud/store"
)

// Errors of the service. Each carries a vend kind and the stable code the
// phone API answers with; the service wraps them with detail.
var (
	ErrProximityUnknown = vend.E(vend.NotFound, "proximity.unknown", "proximity: unknown id")
	ErrProximityExpired = vend.E(vend.NotFound, "proximity.expired", "proximity: id is from an expired window")
	ErrMachineOffline   = vend.E(vend.Conflict, "machine.offline", "sessions: the device has not been heard from")
	ErrMachineFault     = vend.E(vend.Conflict, "machine.fault", "sessions: the machine reports a fault")
	ErrCapTooSmall      = vend.E(vend.Invalid, "cap.too_small", "sessions: the cap does not buy one unit")
	ErrSourceNotFound   = vend.E(vend.NotFound, "source.not_found", "payments: no such payment source")
	ErrSourceUnusable   = vend.E(vend.Invalid, "request.field", "payments: invalid field: source")
	ErrSourceLimit      = vend.E(vend.Conflict, "source.limit", "payments: the channel's limit is reached")
	ErrDeviceNoReply    = vend.E(vend.Transient, "device.no_reply", "sessions: the device did not answer the grant in time")
	ErrDeviceRefused    = vend.E(vend.Conflict, "device.refused", "sessions: the device refused the grant")
	ErrUnavailable      = vend.E(vend.Transient, "service.unavailable", "cloud: command could not be sent")
	ErrNotSettled       = vend.E(vend.Conflict, "session.not_settled", "sessions: no receipt before settlement")
	ErrSlotJammed       = vend.E(vend.Conflict, "slot.jammed", "sessions: the slot is jammed")
)

// Publisher sends a command to one device's cmd topic at QoS 1 and returns
// once the broker has it. *ingest.Ingest implements it.
type Publisher interface {
	Publish(ctx context.Context, deviceID string, cmd mqttapi.Message) error
}

// DefaultGaugeInterval is Options.GaugeInterval's default.
const DefaultGaugeInterval = 30 * time.Second

// Options configure a Service. Store, Publisher and CloudKey are required.
type Options struct {
	Store     *store.Store
	Publisher Publisher
	CloudKey  ed25519.PrivateKey // signs grants
	Logger    *slog.Logger       // discard when nil
	Now       func() time.Time   // time.Now when nil
	// Registry receives the metrics; a new registry when nil (see Service.Registry).
	Registry *prometheus.Registry

	Currency        vend.Currency // the wallet currency; "EUR" when empty
	ReplyTimeout    time.Duration // how long StartSession waits for the device's reply; 5 s
	ReplyPoll       time.Duration // how often the store is polled for a reply that landed on another instance (besides PostgreSQL notifications); 200 ms
	GrantTTL        time.Duration // the grant's start-by bound: how long the device may take to start the machine; 20 s
	SweepInterval   time.Duration // the sweeper's period (expired holds, unreported sessions); 5 s
	RefreshInterval time.Duration // full resolver rebuild period; 1 min
	TelemetryFlush  time.Duration // how often coalesced telemetry is written; 1 s (see telemetryBuffer)
	GaugeInterval   time.Duration // how often the ledger-imbalance and online-devices gauges are recomputed (RefreshGauges); 30 s
	// Channels are the payment channels besides the wallet, each with its
	// limits, priority and breaker; DefaultChannels (the sandbox card)
	// when nil, none when empty.
	Channels []*payments.Guarded
	// PublicURL is the cloud's base URL as providers reach it
	// (https://api.example.com): orders carry
	// PublicURL/v1/channels/<channel>/notify as their notification URL.
	PublicURL string
	// PaymentTTL is how long a payer has to pay a top-up order before it
	// is closed; 15 min.
	PaymentTTL time.Duration
	// PaymentLate is the age after which a pending order's notification
	// counts as late, so that GetPayment asks the channel (Query); 5 s.
	PaymentLate time.Duration
	// RefundRetry is the age after which a pending refund is asked of its
	// channel again by the payment sweep; 1 min.
	RefundRetry time.Duration
	// PaymentDay is the zone whose midnight starts a day for the
	// channels' daily limits; UTC when nil.
	PaymentDay *time.Location
	// AuthMargin is how long before a card authorization lapses the
	// session it funds is settled (an unreported one by the unreported
	// policy, whatever its settlement window) or, when that cannot be, an
	// alert (auth.lapsing) is raised; 24 h.
	AuthMargin time.Duration
	// StepUp configures the step-up PIN: token life, lock-out, the
	// operator's limits (see StepUpOptions; the zero value: defaults, no limits).
	StepUp StepUpOptions
	// History bounds the telemetry and state histories of the console's
	// device page (see HistoryOptions; the zero value: defaults).
	History HistoryOptions
}

// Service is the money flow of the cloud: proximity resolution, session
// start and stop, device uplink handling, the hold sweeper, the session
// event hub and the metrics. It is safe for concurrent use.
type Service struct {
	opts    Options
	st      *store.Store
	pub     Publisher
	log     *slog.Logger
	now     func() time.Time
	Metrics *Metrics  // Prometheus collectors
	Hub     *Hub      // in-process session event fan-out
	Res     *Resolver // proximity-ID resolver

	router *payments.Router

	mu      sync.Mutex
	waiters map[string][]chan struct{} // command id → waiting StartSession calls
	coWatch map[string][]chan struct{} // checkout id → WatchCheckout calls
	bg      sync.WaitGroup             // checkout steps started in the background (kickCheckout)
	tel     *telemetryBuffer

	wg sync.WaitGroup

	// FleetEvents fans device status changes out to the console's fleet
	// pages on this instance.
	FleetEvents *FleetEvents
	sampleMu    sync.Mutex
	sampled     map[string]time.Time    // device → last telemetry sample this instance took
	samples     []store.TelemetrySample // taken, written with the next telemetry flush
}

// refLooker is a channel that needs the provider's own ID of an order
// (payments.Action.ProviderRef) to query, capture or cancel it.
type refLooker interface {
	SetLookupIntent(func(ctx context.Context, orderNo string) (string, error))
}

// providerRef is the provider's ID recorded for an order: "" for an
// order the cloud does not know or that has none (the channel then
// searches the provider by order number).
func (s *Service) providerRef(ctx context.Context, orderNo string) (string, error) {
	ref, err := s.st.PaymentRef(ctx, orderNo)
	if errors.Is(err, store.ErrPaymentNotFound) {
		return "", nil
	}
	return ref, err
}

// New checks opts, builds the resolver from the store's device keys and
// returns a Service. Call Run to roll windows and sweep holds.
func New(ctx context.Context, opts Options) (*Service, error) {
	if opts.Store == nil || opts.Publisher == nil || len(opts.CloudKey) != ed25519.PrivateKeySize {
		return nil, errors.New("service: Store, Publisher and CloudKey are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	if opts.Currency == "" {
		opts.Currency = "EUR"
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&opts.ReplyTimeout, 5*time.Second)
	def(&opts.ReplyPoll, 200*time.Millisecond)
	def(&opts.GrantTTL, store.DefaultGrantTTL)
	def(&opts.SweepInterval, 5*time.Second)
	def(&opts.RefreshInterval, time.Minute)
	def(&opts.TelemetryFlush, time.Second)
	def(&opts.GaugeInterval, DefaultGaugeInterval)
	def(&opts.PaymentTTL, 15*time.Minute)
	def(&opts.PaymentLate, 5*time.Second)
	def(&opts.RefundRetry, time.Minute)
	def(&opts.AuthMargin, 24*time.Hour)
	if opts.Channels == nil {
		opts.Channels = DefaultChannels()
	}
	s := &Service{
		opts: opts, st: opts.Store, pub: opts.Publisher, log: opts.Logger, now: opts.Now,
		Hub:     NewHub(),
		waiters: map[string][]chan struct{}{},
		coWatch: map[string][]chan struct{}{},
		tel:     newTelemetryBuffer(),
	}
	s.FleetEvents = &FleetEvents{}
	s.router = payments.NewRouter(opts.Channels, opts.Store.PaymentTotal, opts.PaymentDay, opts.Now)
	for _, g := range opts.Channels {
		// A channel that finds an order by its own ID (Stripe's pi_…)
		// reads it from the order's record (Action.ProviderRef).
		if l, ok := g.Channel.(refLooker); ok {
			l.SetLookupIntent(s.providerRef)
		}
	}
	s.Res = NewResolver(opts.Store, opts.Now)
	if err := s.Res.Refresh(ctx); err != nil {
		return nil, err
	}
	s.Metrics = newMetrics(s, opts.Registry)
	if err := s.RefreshGauges(ctx); err != nil {
		s.log.Error("service: gauges", "err", err)
	}
	return s, nil
}

// Registry returns the Prometheus registry holding the service's metrics.
func (s *Service) Registry() *prometheus.Registry { return s.opts.Registry }

// Store returns the store the service works on.
func (s *Service) Store() *store.Store { return s.st }

// Currency returns the wallet currency.
func (s *Service) Currency() vend.Currency { return s.opts.Currency }

// Run listens for replies saved by other instances (store.ListenReplies),
// rolls the resolver's windows, rebuilds it every RefreshInterval,
// releases expired holds every SweepInterval, prunes the event hub and
// writes coalesced telemetry every TelemetryFlush, recomputes the
// database-derived gauges every GaugeInterval, until ctx is done; it
// writes what telemetry is left, then returns nil.
func (s *Service) Run(ctx context.Context) error {
	stop := make(chan struct{})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.Res.Run(stop)
	}()
	// Replies saved by other instances wake this one's waiting starts
	// (PostgreSQL LISTEN); the ReplyPoll remains the fallback.
	lctx, lcancel := context.WithCancel(ctx)
	defer lcancel()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.st.ListenReplies(lctx, s.notify); err != nil && !errors.Is(err, store.ErrNoNotify) {
			s.log.Error("service: reply listener", "err", err)
		}
	}()
	// Device changes decided by other instances reach this one's fleet
	// pages (PostgreSQL LISTEN); the pages' own re-reads are the fallback.
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.st.ListenDeviceChanges(lctx, s.FleetEvents.publish); err != nil && !errors.Is(err, store.ErrNoNotify) {
			s.log.Error("service: device change listener", "err", err)
		}
	}()
	sweep := time.NewTicker(s.opts.SweepInterval)
	refresh := time.NewTicker(s.opts.RefreshInterval)
	flush := time.NewTicker(s.opts.TelemetryFlush)
	gauges := time.NewTicker(s.opts.GaugeInterval)
	defer func() {
		gauges.Stop()
		sweep.Stop()
		refresh.Stop()
		flush.Stop()
		close(stop)
		lcancel()
		s.wg.Wait()
	}()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			s.flushTelemetry(fctx)
			cancel()
			return nil
		case <-flush.C:
			s.flushTelemetry(ctx)
		case <-sweep.C:
			if _, err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("service: sweep", "err", err)
			}
			s.Hub.Prune(s.now())
			if _, err := s.SweepPayments(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("service: payment sweep", "err", err)
			}
		case <-gauges.C:
			if err := s.RefreshGauges(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("service: gauges", "err", err)
			}
		case <-refresh.C:
			if err := s.Res.Refresh(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("service: resolver refresh", "err", err)
			}
		}
	}
}

// Sweep applies the bounded exits of the session state table, each
// batch-wise and safe on several instances at once: pending sessions past
// their start-by bound plus AckBound are expired (store.ExpireHolds);
// acknowledged ones without a report past their longest run plus the
// offline allowance become unreported, freeing the machine
// (store.MarkUnreported); unreported ones past their settlement window
// get the unreported policy (store.CloseUnreported). It tells each
// session's subscribers, refreshes the unreported gauge, gives each
// checkout past its bound its next step (SweepCheckouts), and returns how
// many sessions it changed.
func (s *Service) Sweep(ctx context.Context) (int, error) {
	n := 0
	for _, step := range []func(context.Context, int) ([]store.Settlement, error){
		s.st.ExpireHolds, s.st.MarkUnreported, s.st.CloseUnreported,
	} {
		for {
			done, err := step(ctx, 100)
			for _, st := range done {
				if !st.Session.State.Live() && st.Session.State != store.Unreported {
					s.Metrics.sessions.WithLabelValues(string(st.Session.State)).Inc()
				}
				s.publishSession(st.Session)
			}
			n += len(done)
			if err != nil {
				return n, err
			}
			if len(done) < 100 {
				break
			}
		}
	}
	c, err := s.st.CountUnreported(ctx)
	if err != nil {
		return n, err
	}
	s.Metrics.unreported.Set(float64(c))
	// Checkouts: expiry, starts, authorization margins, settlements.
	if _, err := s.SweepCheckouts(ctx); err != nil {
		return n, err
	}
	return n, nil
}

// Ready reports whether the store answers.
func (s *Service) Ready(ctx context.Context) error {
	return s.st.DB().PingContext(ctx)
}
