package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"beaconvend/app-protocol/beacon"
	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/proxid"
	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
	"beaconvend/controller/config"
	"beaconvend/controller/janitor"
	"beaconvend/controller/journal"
	"beaconvend/controller/uplink"
	"beaconvend/hw/machine"
	"beaconvend/hw/modbus"
	"beaconvend/hw/modem"
)

// Firmware is reported in the online state.
var Firmware = "beaconvend-controller/1"

// Beacon is what the daemon needs of a BLE beacon (hw/ble.Beacon): state
// bits to show, and a lifecycle. NoBeacon serves boards without one.
type Beacon interface {
	SetState(beacon.State)
	Run(ctx context.Context) error
	Close() error
}

// Opts carries what a caller (the main, a test) injects.
type Opts struct {
	Logger *slog.Logger
	Now    func() time.Time
	// Beacon, when set, replaces the backend the config names (tests pass a
	// recording fake or a simulated-air beacon).
	Beacon Beacon
	// ShutdownGrace bounds how long Close waits for running sessions to end
	// after their stop; what is still running then is left to recovery.
	ShutdownGrace time.Duration
	// ProgressEvery is the interval of progress events. Default 1 s.
	ProgressEvery time.Duration
	// AckTimeout is how long a sent uplink may wait for the cloud's Ack
	// before the outbox sends it again (a broker that lost its queue, a
	// cloud that was not subscribed). Default 30 s.
	AckTimeout time.Duration
	// OnReboot is called after a Reboot command has been acknowledged and
	// every machine is idle, at most once however many reboot commands
	// come; the main exits so that its supervisor restarts it.
	OnReboot func()
	// ClaimInfo, when set, is the ClaimInfo value (gattapi.ClaimInfo) the
	// GATT relay service serves: the claim state of a board claimed in
	// registration mode (controller/claim). nil: no ClaimInfo.
	ClaimInfo func() []byte
}

// Daemon is one controller: a journal, a board with its machines, an
// uplink, a modem monitor and a beacon.
type Daemon struct {
	cfg  *config.Config
	sec  *config.Secrets
	opts Opts
	log  *slog.Logger
	now  func() time.Time
	tree mqttapi.Tree

	j      *journal.Journal
	master *modbus.Master
	board  atomic.Pointer[machine.Board] // nil until the board first answers (boardLoop retries)
	modem  *modem.Monitor
	up     *uplink.Uplink
	bcn    Beacon

	machines map[string]*mach
	order    []string

	cmds      chan inCmd
	kick      chan struct{}
	telemKick chan struct{} // publish telemetry now (a state change)
	clock     *cloudClock
	jfault    atomic.Bool // a journal write failed: a board fault until restart
	probe     atomic.Bool // the start-up clock probe is still to be sent
	stopsMu   sync.Mutex
	stops     map[vend.SessionID]int // Stops waiting in cmds, by session
	started   time.Time
	replies   *replyCache
	keysMu    sync.RWMutex
	pendingDK []byte // proposed device key seed
	stopping  atomic.Bool
	rebooting atomic.Bool // a reboot command waits for the machines to be idle
	resume    []resumed   // credited sessions recovery left to complete (Run starts them)
	relay     relayState  // the last relayed session (relay.go)
	wg        sync.WaitGroup
	sessWG    sync.WaitGroup
	cancel    context.CancelFunc
	ctx       context.Context
}

// Open starts a controller in the order the invariants want: outputs OFF
// first (the board is opened, which drives and reads back every output
// OFF), then the journal, then sessions left open by a power cut are
// finished and reported (queued in the outbox): with their last committed
// reading, or what the board's flow counter says when it answers, while
// credited sessions it can complete are kept for Run (package doc,
// Recovery); then the uplink, modem and beacon start. A board that does not
// answer does not stop the controller: it runs with the board in fault,
// sells nothing, and retries.
func Open(ctx context.Context, cfg *config.Config, opts Opts) (*Daemon, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ShutdownGrace <= 0 {
		opts.ShutdownGrace = 5 * time.Second
	}
	if opts.ProgressEvery <= 0 {
		opts.ProgressEvery = time.Second
	}
	if opts.AckTimeout <= 0 {
		opts.AckTimeout = 30 * time.Second
	}
	sec, err := cfg.LoadSecrets()
	if err != nil {
		return nil, err
	}
	d := &Daemon{
		cfg: cfg, sec: sec, opts: opts, log: opts.Logger, now: opts.Now,
		tree: mqttapi.Tree{Prefix: cfg.MQTT.Prefix}, machines: map[string]*mach{},
		cmds: make(chan inCmd, 64), kick: make(chan struct{}, 1), telemKick: make(chan struct{}, 1), clock: newCloudClock(),
		stops: map[vend.SessionID]int{}, started: opts.Now(), replies: newReplyCache(256),
	}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	d.probe.Store(true)
	d.loadExtraCloudKeys()

	// 1. Outputs OFF.
	m, err := modbus.Open(cfg.Board.Port, cfg.Profile().Serial, nil)
	if err != nil {
		return nil, fmt.Errorf("controller: board port %s: %w", cfg.Board.Port, err)
	}
	d.master = m
	if err := d.openBoard(ctx); err != nil {
		d.log.Error("board did not answer at start; outputs could not be confirmed OFF (the board watchdog is the backstop); retrying", "err", err)
	}

	// 2. Journal, 3. recovery.
	d.j, err = journal.Open(cfg.Path(cfg.Journal), &journal.Opts{Logger: d.log, Now: d.now})
	if err != nil {
		d.closeHW()
		return nil, err
	}
	for _, mc := range cfg.Machines {
		d.machines[mc.ID] = newMach(mc)
		d.order = append(d.order, mc.ID)
	}
	if b := d.board.Load(); b != nil {
		if err := d.bindMachines(b); err != nil {
			d.closeHW()
			d.j.Close()
			return nil, err
		}
	}
	resume, err := d.recover()
	if err != nil {
		d.closeHW()
		d.j.Close()
		return nil, err
	}
	d.holdResumed(resume)
	d.loadRelay()

	// 4. Uplink, modem, beacon.
	tlsCfg, err := d.tlsConfig()
	if err != nil {
		d.closeHW()
		d.j.Close()
		return nil, err
	}
	d.up, err = uplink.New(uplink.Opts{
		Broker: cfg.MQTT.Broker, DeviceID: cfg.DeviceID, Username: cfg.MQTT.Username, Password: sec.MQTTPass,
		TLS: tlsCfg, Tree: d.tree, Firmware: Firmware, KeepAlive: cfg.MQTT.KeepAlive.D(),
		OnCommand: d.enqueueCommand, OnConnect: d.onConnect, Logger: d.log, Now: d.now,
	})
	if err != nil {
		d.closeHW()
		d.j.Close()
		return nil, err
	}
	if cfg.Modem.Port != "" {
		mo, err := modem.Open(cfg.Modem.Port, &modem.Opts{Interval: cfg.Modem.PollInterval.D(), Timeout: 2 * time.Second, ReopenAfter: 3, Logger: d.log})
		if err != nil {
			d.log.Warn("modem port unavailable; telemetry goes without it", "port", cfg.Modem.Port, "err", err)
		} else {
			d.modem = mo
		}
	}
	d.bcn = opts.Beacon
	if d.bcn == nil {
		if d.bcn, err = newBeacon(cfg, sec, d.log, d.now, d.Relay(), opts.ClaimInfo); err != nil {
			d.closeHW()
			d.j.Close()
			return nil, err
		}
	}
	return d, nil
}

func (d *Daemon) openBoard(ctx context.Context) error {
	b, err := machine.Open(ctx, d.master, d.cfg.Profile(), &machine.Opts{PollInterval: d.cfg.Board.PollInterval.D(), Logger: d.log})
	if err != nil {
		return err
	}
	d.board.Store(b)
	return nil
}

// bindMachines builds the machine drivers on the open board.
func (d *Daemon) bindMachines(b *machine.Board) error {
	for _, id := range d.order {
		mc := d.machines[id]
		if err := mc.bind(b); err != nil {
			return err
		}
	}
	return nil
}

// Run serves until ctx is cancelled or Close: commands, sessions,
// telemetry, outbox draining, beacon state, board retry, and the journal's
// janitor (settled sessions and old seen entries pruned hourly).
func (d *Daemon) Run(ctx context.Context) error {
	d.up.Start()
	loops := []func(context.Context){d.commandLoop, d.drainLoop, d.telemetryLoop, d.beaconStateLoop, d.boardLoop}
	for _, f := range loops {
		d.wg.Add(1)
		go func() { defer d.wg.Done(); f(d.ctx) }()
	}
	d.wg.Add(1)
	go func() { defer d.wg.Done(); _ = d.j.Run(d.ctx) }()
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		_ = janitor.New(d.j, janitor.Opts{Now: d.now, Logger: d.log}).Run(d.ctx)
	}()
	if d.modem != nil {
		d.wg.Add(1)
		go func() { defer d.wg.Done(); _ = d.modem.Run(d.ctx) }()
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		if err := d.bcn.Run(d.ctx); err != nil && d.ctx.Err() == nil {
			d.log.Error("beacon stopped", "err", err)
		}
	}()
	d.startResumed()
	d.kickDrain()
	select {
	case <-ctx.Done():
	case <-d.ctx.Done():
	}
	return nil
}

// Close stops new work, stops running sessions (valves and motors OFF,
// reports queued), waits up to ShutdownGrace, drives every output OFF,
// publishes an offline state and closes the journal. A session still
// running after the grace (a washer mid-cycle) stays open in the journal
// and is finished at the next start.
func (d *Daemon) Close() error {
	if !d.stopping.CompareAndSwap(false, true) {
		return nil
	}
	for _, id := range d.order {
		d.machines[id].stop(vend.OutcomeInterrupted)
	}
	done := make(chan struct{})
	go func() { d.sessWG.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d.opts.ShutdownGrace):
		d.log.Warn("sessions still running at shutdown; left to recovery")
	}
	// Give the outbox one chance to send the final reports.
	if d.up != nil && d.up.Connected() {
		dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, _ = d.j.Drain(dctx, d.send, journal.Rate{PerSecond: float64(d.cfg.MQTT.DrainRate), Burst: 5})
		cancel()
	}
	d.cancel()
	d.wg.Wait()
	if d.up != nil {
		d.up.Close()
	}
	if d.bcn != nil {
		d.bcn.Close()
	}
	if d.modem != nil {
		d.modem.Close()
	}
	err := d.closeHW()
	if jerr := d.j.Close(); err == nil {
		err = jerr
	}
	return err
}

func (d *Daemon) closeHW() error {
	var err error
	if b := d.board.Load(); b != nil {
		err = b.Close()
	}
	if d.master != nil {
		d.master.Close()
	}
	return err
}

// boardReady returns the board when it has answered and is not in fault,
// and the journal can write: the only state in which anything may be
// switched on.
func (d *Daemon) boardReady() (*machine.Board, bool) {
	b := d.board.Load()
	return b, b != nil && !b.Status().Fault && d.journalOK()
}

// cloudNow is the cloud's clock as estimated from Acks (see cloudClock),
// or the board's own clock without a fresh estimate. Grants are judged by
// it: their start-by bound (ExpiresAt) and their issue time.
func (d *Daemon) cloudNow() time.Time { return d.clock.now(d.now()) }

// boardLoop retries a board that did not answer at start.
func (d *Daemon) boardLoop(ctx context.Context) {
	for d.board.Load() == nil {
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
		if err := d.openBoard(ctx); err != nil {
			continue
		}
		if err := d.bindMachines(d.board.Load()); err != nil {
			d.log.Error("bind machines", "err", err)
		}
		d.log.Info("board answered; outputs confirmed OFF")
	}
}

func (d *Daemon) tlsConfig() (*tls.Config, error) {
	t := d.cfg.MQTT.TLS
	if t.CAFile == "" && t.CertFile == "" && t.ServerName == "" {
		return nil, nil
	}
	c := &tls.Config{ServerName: t.ServerName, MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pem, err := os.ReadFile(d.cfg.Path(t.CAFile))
		if err != nil {
			return nil, fmt.Errorf("controller: mqtt.tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("controller: mqtt.tls.ca_file: no certificates in %s", t.CAFile)
		}
		c.RootCAs = pool
	}
	if t.CertFile != "" {
		certPEM, err := os.ReadFile(d.cfg.Path(t.CertFile))
		if err != nil {
			return nil, fmt.Errorf("controller: mqtt.tls.cert_file: %w", err)
		}
		cert, err := tls.X509KeyPair(certPEM, d.sec.TLSKeyPEM)
		if err != nil {
			return nil, fmt.Errorf("controller: mqtt.tls: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// signer signs usage reports with the current device key.
func (d *Daemon) signer(u signed.Usage) ([]byte, error) {
	d.keysMu.RLock()
	k := d.sec.Device
	d.keysMu.RUnlock()
	return signed.SignUsage(k, u)
}

func (d *Daemon) cloudKeys() signed.Keys {
	d.keysMu.RLock()
	defer d.keysMu.RUnlock()
	return d.sec.Cloud
}

// Stats is what tests and telemetry read.
type Stats struct {
	Journal journal.Stats
	Board   machine.Status
	Uplink  uplink.Stats
	Outbox  int
}

// Stats returns counters.
func (d *Daemon) Stats() Stats {
	s := Stats{Journal: d.j.Stats(), Uplink: d.up.Stats()}
	if b := d.board.Load(); b != nil {
		s.Board = b.Status()
	}
	s.Outbox, _ = d.j.Depth()
	return s
}

// Journal exposes the journal to tests.
func (d *Daemon) Journal() *journal.Journal { return d.j }

func (d *Daemon) kickDrain() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// onConnect runs at every (re)connection: the outbox is sent again from
// its oldest message, and telemetry goes out at once so that the cloud's
// view of this board (faults, jams, recovery) is current from the start.
func (d *Daemon) onConnect() {
	d.j.RewindDrain()
	d.kickDrain()
	d.stateChanged()
}

// drainLoop sends the outbox in order whenever kicked or every second, and
// sends again from the oldest message when it has waited AckTimeout for the
// cloud's Ack.
func (d *Daemon) drainLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	rate := journal.Rate{PerSecond: float64(d.cfg.MQTT.DrainRate), Burst: 5}
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.kick:
		case <-t.C:
		}
		if !d.up.Connected() {
			continue
		}
		if items, err := d.j.Pending(1); err == nil && len(items) == 1 {
			if la := items[0].LastAttempt; !la.IsZero() && d.now().Sub(la) > d.opts.AckTimeout {
				d.log.Info("no ack for the oldest uplink; sending the outbox again", "msg", items[0].MsgID, "attempts", items[0].Attempts)
				d.j.RewindDrain()
			}
		}
		if _, err := d.j.Drain(ctx, d.send, rate); err != nil && ctx.Err() == nil {
			d.log.Debug("outbox drain paused", "err", err)
		}
	}
}

func (d *Daemon) send(it journal.Item) error {
	topic, err := d.tree.Topic(d.cfg.DeviceID, it.Leaf)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(d.ctx, 10*time.Second)
	defer cancel()
	d.clock.sentNow(it.MsgID, d.now())
	return d.up.Publish(ctx, mqttapi.Publication{Topic: topic, Payload: it.Payload, QoS: 1})
}

// publishDirect sends a message that is not queued (progress events,
// telemetry, replies): lossy by design; what matters is in the outbox.
func (d *Daemon) publishDirect(msg mqttapi.Message) {
	p, err := d.tree.Publication(d.cfg.DeviceID, msg)
	if err != nil {
		d.log.Error("encode", "type", msg.TypeName(), "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(d.ctx, 5*time.Second)
	defer cancel()
	if err := d.up.Publish(ctx, p); err != nil && !errors.Is(err, uplink.ErrOffline) {
		d.log.Debug("publish", "type", msg.TypeName(), "err", err)
	}
}

// outgoing encodes an acked uplink (event) for the outbox.
func (d *Daemon) outgoing(msg mqttapi.Message, session vend.SessionID) (journal.Outgoing, error) {
	p, err := d.tree.Publication(d.cfg.DeviceID, msg)
	if err != nil {
		return journal.Outgoing{}, err
	}
	leaf := mqttapi.LeafEvt
	if _, ok := msg.(*mqttapi.Usage); ok {
		leaf = mqttapi.LeafUsage
	}
	return journal.Outgoing{Leaf: leaf, MsgID: msg.Head().ID, Payload: p.Payload, Session: session}, nil
}

func (d *Daemon) env() mqttapi.Envelope { return mqttapi.NewEnvelope(d.now()) }

// beaconStateLoop shows the controller's state on the beacon, and asks
// for telemetry at once when the board's health changes (fault, recovery,
// a failing link).
func (d *Daemon) beaconStateLoop(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	last := d.healthSig()
	for {
		d.bcn.SetState(d.beaconState())
		if sig := d.healthSig(); sig != last {
			last = sig
			d.stateChanged()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (d *Daemon) beaconState() beacon.State {
	if _, ok := d.boardReady(); !ok {
		return beacon.Fault
	}
	if !d.up.Connected() {
		return beacon.Offline
	}
	for _, id := range d.order {
		if !d.machines[id].busy() {
			return beacon.Idle
		}
	}
	return beacon.Busy
}

// NoBeacon is a Beacon that shows nothing (backend "none").
type NoBeacon struct{}

// SetState does nothing.
func (NoBeacon) SetState(beacon.State) {}

// Run waits for ctx.
func (NoBeacon) Run(ctx context.Context) error { <-ctx.Done(); return nil }

// Close does nothing.
func (NoBeacon) Close() error { return nil }

var _ Beacon = NoBeacon{}

// identityRotator is the proximity-ID source for beacon backends.
func identityRotator(sec *config.Secrets, cfg *config.Config, now func() time.Time) *proxid.Rotator {
	return &proxid.Rotator{Key: sec.Identity, K: *cfg.Beacon.K, Now: now}
}
