package simdev

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/broker"
)

// Defaults of [FloodConfig] and [RawConfig].
const (
	DefaultInflight      = 32               // unacknowledged QoS 1 PUBLISHes per publisher
	DefaultAckWait       = 10 * time.Second // after a flood, bound on waiting for outstanding PUBACKs
	DefaultFloodConnect  = 10 * time.Second // bound on connecting every client of a flood
	DefaultRawPublishers = 4                // publishers of a RawBrokerRate run
	DefaultRawDuration   = 5 * time.Second  // flood length of a RawBrokerRate run without Count
	DefaultRawDrain      = 5 * time.Second  // after a flood, bound on waiting for the subscriber to catch up
	rawQuiet             = time.Second      // the drain also ends when nothing arrived for this long
	// MaxFloodDuration bounds a flood given only a Count.
	MaxFloodDuration = 10 * time.Minute
	maxFloodErrors   = 8 // errors kept in FloodResult.Errors
	brokerStopWait   = 10 * time.Second
)

// Flood errors.
var (
	ErrFloodConfig = vend.E(vend.Invalid, "simdev.flood_config", "simdev: invalid flood config")
	ErrNoMosquitto = vend.E(vend.NotFound, "simdev.no_mosquitto", "simdev: mosquitto binary not found")
)

// FloodPub is one flooding MQTT client.
type FloodPub struct {
	URL      string // broker, "tcp://host:port"; required
	ClientID string // default "flood-<n>-<random>"
	Username string // empty for an anonymous broker
	Password string
	Topic    string // where every message goes; required
}

// FloodConfig is one [Flood]: every publisher sends QoS 1 messages as fast
// as the broker acknowledges them, keeping at most Inflight unacknowledged,
// until Duration has passed or Count messages have been sent in total.
type FloodConfig struct {
	Publishers []FloodPub // at least one
	// Payload returns the payload of message seq (0, 1, …) of publisher
	// pub (an index into Publishers); required. It is called from the
	// publisher's goroutine, concurrently for different publishers; the
	// slice must not change afterwards (it may be the same slice each time).
	Payload  func(pub int, seq uint64) []byte
	Inflight int           // per publisher; default DefaultInflight
	Duration time.Duration // how long to publish; 0 with a Count means MaxFloodDuration
	Count    int           // messages in total over all publishers; 0 means no limit
	AckWait  time.Duration // after publishing stops, bound on outstanding PUBACKs; default DefaultAckWait
	Connect  time.Duration // bound on connecting all publishers; default DefaultFloodConnect
}

// FloodResult is what a [Flood] measured.
type FloodResult struct {
	Sent    int           // PUBLISHes handed to the clients
	Acked   int           // answered by a PUBACK
	Failed  int           // completed with an error, or no PUBACK within AckWait
	Start   time.Time     // the first PUBLISH (every publisher connected by then)
	Elapsed time.Duration // Start to the last PUBACK (to the end when none came)
	Errors  []error       // the first few failures
}

// AckedPerSec is Acked over Elapsed, messages per second; 0 when nothing
// was acknowledged.
func (r FloodResult) AckedPerSec() float64 {
	if r.Acked == 0 || r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Acked) / r.Elapsed.Seconds()
}

// Flood connects every publisher (MQTT 3.1.1, clean session, no
// reconnect), then publishes from all at once as described at
// [FloodConfig], waits at most AckWait for the last PUBACKs and
// disconnects. It is always bounded in time: by Duration (or
// MaxFloodDuration) plus AckWait, and by ctx. It returns ErrFloodConfig
// for a bad config, a connect error (no message sent then), or ctx's
// error with the partial result when ctx ended the flood; failed
// publishes are counted in the result, not returned.
func Flood(ctx context.Context, cfg FloodConfig) (FloodResult, error) {
	if err := cfg.check(); err != nil {
		return FloodResult{}, err
	}
	if cfg.Inflight <= 0 {
		cfg.Inflight = DefaultInflight
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = DefaultAckWait
	}
	if cfg.Connect <= 0 {
		cfg.Connect = DefaultFloodConnect
	}
	if cfg.Duration <= 0 {
		cfg.Duration = MaxFloodDuration
	}
	run := randomHex(4)
	clients := make([]paho.Client, len(cfg.Publishers))
	errs := make([]error, len(cfg.Publishers))
	var wg sync.WaitGroup
	for i, p := range cfg.Publishers {
		if p.ClientID == "" {
			p.ClientID = fmt.Sprintf("flood-%d-%s", i, run)
		}
		wg.Go(func() {
			clients[i], errs[i] = connectClient(ctx, p.URL, p.ClientID, p.Username, p.Password, cfg.Connect)
		})
	}
	wg.Wait()
	defer disconnectAll(clients)
	var failed []error
	for _, err := range errs {
		if err != nil {
			failed = append(failed, err)
		}
	}
	switch len(failed) {
	case 0:
	case 1:
		return FloodResult{}, failed[0]
	default:
		return FloodResult{}, fmt.Errorf("%w (and %d more publishers failed to connect)", failed[0], len(failed)-1)
	}

	start := time.Now()
	sendCtx, cancel := context.WithDeadline(ctx, start.Add(cfg.Duration))
	defer cancel()
	f := &flood{cfg: cfg, ctx: ctx, stop: sendCtx.Done()}
	results := make([]pubResult, len(clients))
	for i, c := range clients {
		wg.Go(func() { results[i] = f.publish(i, c) })
	}
	wg.Wait()

	res := FloodResult{Start: start}
	var last time.Time
	for _, r := range results {
		res.Sent += r.sent
		res.Acked += r.acked
		res.Failed += r.failed
		if r.lastAck.After(last) {
			last = r.lastAck
		}
		for _, err := range r.errs {
			if len(res.Errors) < maxFloodErrors {
				res.Errors = append(res.Errors, err)
			}
		}
	}
	if last.IsZero() {
		last = time.Now()
	}
	res.Elapsed = last.Sub(start)
	return res, ctx.Err()
}

func (c FloodConfig) check() error {
	switch {
	case len(c.Publishers) == 0:
		return vend.Errorf(ErrFloodConfig, "no publishers")
	case c.Payload == nil:
		return vend.Errorf(ErrFloodConfig, "no Payload function")
	case c.Duration < 0 || c.Count < 0:
		return vend.Errorf(ErrFloodConfig, "negative Duration or Count")
	case c.Duration == 0 && c.Count == 0:
		return vend.Errorf(ErrFloodConfig, "neither Duration nor Count")
	}
	for i, p := range c.Publishers {
		if p.URL == "" || p.Topic == "" {
			return vend.Errorf(ErrFloodConfig, "publisher %d: URL and Topic required", i)
		}
	}
	return nil
}

// flood is the state the publishers of one Flood share.
type flood struct {
	cfg  FloodConfig
	ctx  context.Context // the caller's: abandons waiting for PUBACKs
	stop <-chan struct{} // closed when publishing ends: Duration or ctx
	sent atomic.Int64    // reserved against cfg.Count
}

type pubResult struct {
	sent, acked, failed int
	lastAck             time.Time
	errs                []error
}

func (r *pubResult) fail(err error) {
	r.failed++
	if len(r.errs) < maxFloodErrors {
		r.errs = append(r.errs, err)
	}
}

// publish runs publisher i: publish while fewer than Inflight are
// unacknowledged, wait for the oldest otherwise, then drain the window.
func (f *flood) publish(i int, c paho.Client) pubResult {
	var r pubResult
	topic := f.cfg.Publishers[i].Topic
	ring := make([]paho.Token, f.cfg.Inflight)
	head, n := 0, 0 // ring[head] is the oldest of n outstanding tokens
	settle := func(tok paho.Token) {
		if err := tok.Error(); err != nil {
			r.fail(fmt.Errorf("simdev: publisher %d: %w", i, err))
			return
		}
		r.acked++
		r.lastAck = time.Now()
	}
	pop := func() paho.Token {
		tok := ring[head]
		ring[head] = nil
		head = (head + 1) % len(ring)
		n--
		return tok
	}
send:
	for seq := uint64(0); ; seq++ {
		if n == len(ring) {
			select {
			case <-ring[head].Done():
				settle(pop())
			case <-f.stop:
				break send
			}
		}
		select {
		case <-f.stop:
			break send
		default:
		}
		if f.cfg.Count > 0 && f.sent.Add(1) > int64(f.cfg.Count) {
			break send
		}
		tok := c.Publish(topic, 1, false, f.cfg.Payload(i, seq))
		r.sent++
		ring[(head+n)%len(ring)] = tok
		n++
	}
	abandon := time.NewTimer(f.cfg.AckWait)
	defer abandon.Stop()
	for n > 0 {
		tok := pop()
		select {
		case <-tok.Done():
			settle(tok)
			continue
		case <-abandon.C:
			r.fail(fmt.Errorf("simdev: publisher %d: %d PUBACKs missing %v after the flood", i, n+1, f.cfg.AckWait))
		case <-f.ctx.Done():
			r.fail(fmt.Errorf("simdev: publisher %d: %d PUBACKs abandoned: %w", i, n+1, f.ctx.Err()))
		}
		r.failed += n // the rest of the window, counted without an error each
		break
	}
	return r
}

// connectClient connects a paho client with the options every flood
// client uses: MQTT 3.1.1, clean session, no reconnect, bounded writes.
func connectClient(ctx context.Context, url, id, user, password string, within time.Duration) (paho.Client, error) {
	o := paho.NewClientOptions().AddBroker(url).SetClientID(id).
		SetUsername(user).SetPassword(password).
		SetProtocolVersion(4).SetCleanSession(true).
		SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(within).SetWriteTimeout(within).
		SetKeepAlive(30 * time.Second).SetOrderMatters(true)
	c := paho.NewClient(o)
	tok := c.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
	}
	// paho bounds the attempt by ConnectTimeout: wait for its end, so that
	// no client connects after this returns.
	if !tok.WaitTimeout(within + 5*time.Second) {
		c.Disconnect(0)
		return nil, fmt.Errorf("simdev: connect %s as %s: no CONNACK within %v", url, id, within)
	}
	if err := tok.Error(); err != nil {
		return nil, fmt.Errorf("simdev: connect %s as %s: %w", url, id, err)
	}
	if err := ctx.Err(); err != nil {
		c.Disconnect(0)
		return nil, fmt.Errorf("simdev: connect %s as %s: %w", url, id, err)
	}
	return c, nil
}

func disconnectAll(clients []paho.Client) {
	var wg sync.WaitGroup
	for _, c := range clients {
		if c != nil {
			wg.Go(func() { c.Disconnect(100) })
		}
	}
	wg.Wait()
}

// RawConfig is one [RawBrokerRate] run.
type RawConfig struct {
	URL        string        // broker, "tcp://host:port"; required
	Username   string        // for every client; empty for an anonymous broker
	Password   string        // likewise
	Publishers int           // default DefaultRawPublishers
	Inflight   int           // per publisher; default DefaultInflight
	Duration   time.Duration // flood length; default DefaultRawDuration unless Count is set
	Count      int           // messages in total; 0 means until Duration
	Drain      time.Duration // after the flood, bound on the subscriber catching up; default DefaultRawDrain
	Tree       mqttapi.Tree  // topic prefix; the zero Tree is mqttapi.DefaultPrefix
	// Payload, when set, is what every publisher sends again and again;
	// by default each sends one real telemetry message of its own
	// ([TelemetryPublication]), again and again.
	Payload []byte
}

// RawResult is the broker's own throughput with one plain subscriber.
type RawResult struct {
	Publishers   int
	Inflight     int
	PayloadBytes int           // of the first message of publisher 0
	Sent         int           // PUBLISHes sent
	Acked        int           // PUBACKed by the broker
	Received     int           // delivered to the subscriber
	Lost         int           // Acked - Received: dropped by the broker or not delivered within Drain
	Bytes        int64         // payload bytes delivered to the subscriber
	Elapsed      time.Duration // first PUBLISH to the last delivery
	PerSec       float64       // Received / Elapsed, messages per second
	Flood        FloodResult   // the publishers' side
}

// RawBrokerRate measures a broker by itself: it connects one plain
// subscriber (QoS 1, clean session) on the telemetry filter of cfg.Tree
// (prefix/+/telemetry), floods with cfg.Publishers publishers on the
// telemetry topics of made-up devices ("raw-<run>-<n>"), waits at most
// Drain after the flood for the subscriber to receive everything the
// broker acknowledged, and reports the rate at which the subscriber
// received. Messages on other devices' topics are not counted.
//
// Both brokers drop QoS 1 messages for a subscriber that falls too far
// behind (mochi beyond 8192 unacknowledged, Mosquitto beyond 20 in flight
// plus 10000 queued), so a flood faster than the subscriber shows up as
// Lost, and the drain ends early when nothing arrives for a second. It
// returns ErrFloodConfig for a bad config, and connect, subscribe and
// ctx errors.
func RawBrokerRate(ctx context.Context, cfg RawConfig) (RawResult, error) {
	if cfg.URL == "" {
		return RawResult{}, vend.Errorf(ErrFloodConfig, "raw: no URL")
	}
	if cfg.Publishers <= 0 {
		cfg.Publishers = DefaultRawPublishers
	}
	if cfg.Inflight <= 0 {
		cfg.Inflight = DefaultInflight
	}
	if cfg.Duration <= 0 && cfg.Count <= 0 {
		cfg.Duration = DefaultRawDuration
	}
	if cfg.Drain <= 0 {
		cfg.Drain = DefaultRawDrain
	}
	filter, err := cfg.Tree.Filter(mqttapi.LeafTelemetry)
	if err != nil {
		return RawResult{}, fmt.Errorf("%w: %w", ErrFloodConfig, err)
	}
	run := randomHex(4)
	now := time.Now()
	pubs := make([]FloodPub, cfg.Publishers)
	payloads := make([][]byte, cfg.Publishers)
	ours := make(map[string]bool, cfg.Publishers)
	for i := range pubs {
		dev := fmt.Sprintf("raw-%s-%03d", run, i)
		p, err := TelemetryPublication(cfg.Tree, dev, now)
		if err != nil {
			return RawResult{}, err
		}
		pubs[i] = FloodPub{URL: cfg.URL, ClientID: dev, Username: cfg.Username, Password: cfg.Password, Topic: p.Topic}
		payloads[i] = p.Payload
		ours[p.Topic] = true
	}
	payload := func(pub int, _ uint64) []byte { return payloads[pub] }
	if cfg.Payload != nil {
		payload = func(int, uint64) []byte { return cfg.Payload }
	}

	var received, bytes, lastAt atomic.Int64
	base := time.Now()
	sub, err := connectClient(ctx, cfg.URL, "raw-sub-"+run, cfg.Username, cfg.Password, DefaultFloodConnect)
	if err != nil {
		return RawResult{}, err
	}
	defer disconnectAll([]paho.Client{sub})
	tok := sub.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) {
		if !ours[m.Topic()] {
			return
		}
		received.Add(1)
		bytes.Add(int64(len(m.Payload())))
		lastAt.Store(int64(time.Since(base)))
	})
	if !tok.WaitTimeout(DefaultFloodConnect) {
		return RawResult{}, fmt.Errorf("simdev: subscribe %s: no SUBACK within %v", filter, DefaultFloodConnect)
	}
	if err := tok.Error(); err != nil {
		return RawResult{}, fmt.Errorf("simdev: subscribe %s: %w", filter, err)
	}

	fr, err := Flood(ctx, FloodConfig{Publishers: pubs, Payload: payload, Inflight: cfg.Inflight, Duration: cfg.Duration, Count: cfg.Count})
	res := RawResult{Publishers: cfg.Publishers, Inflight: cfg.Inflight, PayloadBytes: len(payload(0, 0)), Flood: fr,
		Sent: fr.Sent, Acked: fr.Acked}
	if err != nil {
		return res, err
	}
	drain := time.NewTimer(cfg.Drain)
	defer drain.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	seen, quietSince := received.Load(), time.Now()
wait:
	for received.Load() < int64(fr.Acked) {
		select {
		case <-tick.C:
		case <-drain.C:
			break wait
		case <-ctx.Done():
			break wait
		}
		if n := received.Load(); n != seen {
			seen, quietSince = n, time.Now()
		} else if time.Since(quietSince) >= rawQuiet {
			break wait
		}
	}
	res.Received, res.Bytes = int(received.Load()), bytes.Load()
	res.Lost = res.Acked - res.Received
	if res.Received > 0 {
		res.Elapsed = time.Duration(lastAt.Load()) - fr.Start.Sub(base)
		if res.Elapsed > 0 {
			res.PerSec = float64(res.Received) / res.Elapsed.Seconds()
		}
	}
	return res, ctx.Err()
}

// TelemetryPublication is a telemetry message of device deviceID as the
// simulated devices send it (one water machine, a healthy board, an LTE-M
// modem), stamped now, encoded on its topic. Errors are those of
// [mqttapi.Tree.Publication].
func TelemetryPublication(tree mqttapi.Tree, deviceID string, now time.Time) (mqttapi.Publication, error) {
	return tree.Publication(deviceID, waterTelemetry(now, 24*time.Hour, 0, mqttapi.MachineIdle, 1250000, 2500))
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails on Linux
	return hex.EncodeToString(b)
}

// FreeLoopbackAddr returns "127.0.0.1:<port>" with a port that was free a
// moment ago (another process may take it before the caller binds it).
func FreeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("simdev: free port: %w", err)
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}

// StartPlainMochi runs an in-process mochi-mqtt broker with the
// capabilities and listener cloud/broker gives its own (broker.Capabilities,
// broker.NewListener; no $SYS updates), but letting every client connect,
// publish and subscribe (mochi's auth.AllowHook), on one plain TCP
// listener at addr ("127.0.0.1:0" when empty: keep it on loopback). It
// returns the URL for paho and a stop function, safe to call more than
// once, that disconnects the clients and closes the listener.
func StartPlainMochi(addr string) (url string, stop func() error, err error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	srv := mqtt.New(&mqtt.Options{
		Capabilities:           broker.Capabilities(broker.Options{}),
		Logger:                 slog.New(slog.DiscardHandler),
		SysTopicResendInterval: 0,
	})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		return "", nil, fmt.Errorf("simdev: mochi: add hook: %w", err)
	}
	ln := broker.NewListener("plain", addr, nil)
	if err := srv.AddListener(ln); err != nil {
		_ = srv.Close()
		return "", nil, fmt.Errorf("simdev: mochi: listen %s: %w", addr, err)
	}
	if err := srv.Serve(); err != nil {
		_ = srv.Close()
		return "", nil, fmt.Errorf("simdev: mochi: serve: %w", err)
	}
	return "tcp://" + ln.Address(), sync.OnceValue(srv.Close), nil
}

// MosquittoBinary returns the mosquitto program as cloud/broker/brokertest
// finds it: $VEND_MOSQUITTO, then PATH, then /usr/sbin and
// /usr/local/sbin. It returns ErrNoMosquitto when there is none.
func MosquittoBinary() (string, error) {
	if p := os.Getenv("VEND_MOSQUITTO"); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", vend.Errorf(ErrNoMosquitto, "not in $VEND_MOSQUITTO, PATH, /usr/sbin or /usr/local/sbin (run scripts/mosquitto.sh)")
}

// plainMosquittoConf is the configuration cloud/broker.MosquittoConfig
// writes (packet size, queue length, no persistence), with anonymous
// access instead of password and ACL files. Its log keeps Mosquitto's
// default types, as the deployed broker logging to stderr does: "log_type
// all" would log every PUBLISH and measure the disk instead.
func plainMosquittoConf(port int, logFile string, root bool) string {
	var b strings.Builder
	b.WriteString("# plain mosquitto.conf for raw broker throughput (generated by cloud/internal/simdev)\n")
	b.WriteString("per_listener_settings false\n")
	b.WriteString("allow_anonymous true\n")
	fmt.Fprintf(&b, "max_packet_size %d\n", broker.DefaultMaxPacketSize)
	b.WriteString("max_queued_messages 10000\n")
	b.WriteString("persistent_client_expiration 7d\n")
	if root {
		b.WriteString("user root\n")
	}
	b.WriteString("persistence false\n")
	fmt.Fprintf(&b, "log_dest file %s\n", logFile)
	for _, t := range []string{"error", "warning", "notice", "information"} {
		fmt.Fprintf(&b, "log_type %s\n", t)
	}
	b.WriteString("log_timestamp_format %Y-%m-%dT%H:%M:%S\n")
	fmt.Fprintf(&b, "\nlistener %d 127.0.0.1\n", port)
	return b.String()
}

// StartPlainMosquitto runs Mosquitto 2 (bin; [MosquittoBinary] when empty)
// on a free loopback port, anonymous and without persistence (see
// plainMosquittoConf), with its configuration and log (mosquitto.log) in
// dir (a temporary directory removed by stop when empty). The process
// gets SIGKILL if this one dies. It waits at most 10 s for the port to
// accept connections, retrying with another port if mosquitto exits
// first. stop sends SIGTERM, kills the process after 10 s and reports
// that as an error; it is safe to call more than once. Errors: those of
// MosquittoBinary, of writing dir, and a start failure with the log.
func StartPlainMosquitto(bin, dir string) (url string, stop func() error, err error) {
	if bin == "" {
		if bin, err = MosquittoBinary(); err != nil {
			return "", nil, err
		}
	}
	cleanup := func() {}
	if dir == "" {
		if dir, err = os.MkdirTemp("", "simdev-mosquitto-"); err != nil {
			return "", nil, fmt.Errorf("simdev: mosquitto: %w", err)
		}
		cleanup = func() { _ = os.RemoveAll(dir) }
	}
	logFile := filepath.Join(dir, "mosquitto.log")
	m, err := runMosquitto(bin, dir, func(port int) ([]byte, error) {
		return []byte(plainMosquittoConf(port, logFile, os.Geteuid() == 0)), nil
	})
	if err != nil {
		cleanup()
		return "", nil, err
	}
	return m.url, sync.OnceValue(func() error { defer cleanup(); return m.stop() }), nil
}

// mosquittoProc is a running Mosquitto.
type mosquittoProc struct {
	url  string // tcp://127.0.0.1:<port>
	dir  string // its configuration, output and log
	pid  int
	stop func() error // SIGTERM, killed after brokerStopWait (an error then); safe to call again
}

// runMosquitto runs bin with the configuration conf returns for a free
// loopback port, written to dir/mosquitto.conf, its output in
// dir/mosquitto.out (and whatever log conf names). The process gets
// SIGKILL if this one dies. It waits at most 10 s for the port to accept
// connections, and tries another port (up to 5) when mosquitto exits
// first, which it does when the port was taken meanwhile.
func runMosquitto(bin, dir string, conf func(port int) ([]byte, error)) (*mosquittoProc, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("simdev: mosquitto: %w", err)
	}
	confFile, outFile := filepath.Join(dir, "mosquitto.conf"), filepath.Join(dir, "mosquitto.out")
	var lastErr error
	for range 5 {
		addr, err := FreeLoopbackAddr()
		if err != nil {
			return nil, err
		}
		_, portStr, _ := net.SplitHostPort(addr)
		port, _ := strconv.Atoi(portStr)
		b, err := conf(port)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(confFile, b, 0o600); err != nil {
			return nil, fmt.Errorf("simdev: mosquitto: %w", err)
		}
		out, err := os.Create(outFile)
		if err != nil {
			return nil, fmt.Errorf("simdev: mosquitto: %w", err)
		}
		cmd := exec.Command(bin, "-c", confFile)
		cmd.Stdout, cmd.Stderr = out, out
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		err = cmd.Start()
		out.Close()
		if err != nil {
			return nil, fmt.Errorf("simdev: start %s: %w", bin, err)
		}
		exited := make(chan struct{}) // closed when Wait returns
		go func() { _ = cmd.Wait(); close(exited) }()
		if err := waitAccepting(addr, exited, 10*time.Second); err != nil {
			_ = cmd.Process.Kill()
			<-exited
			o, _ := os.ReadFile(outFile)
			lastErr = fmt.Errorf("simdev: mosquitto on %s: %w; output: %s", addr, err, tailString(o, 2000))
			continue
		}
		stop := sync.OnceValue(func() error {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
				return nil
			case <-time.After(brokerStopWait):
				_ = cmd.Process.Kill()
				<-exited
				return fmt.Errorf("simdev: mosquitto did not stop within %v of SIGTERM; killed", brokerStopWait)
			}
		})
		return &mosquittoProc{url: "tcp://" + addr, dir: dir, pid: cmd.Process.Pid, stop: stop}, nil
	}
	return nil, lastErr
}

// waitAccepting dials addr until it answers, the process exits or within
// has passed.
func waitAccepting(addr string, exited <-chan struct{}, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return c.Close()
		}
		select {
		case <-exited:
			return errors.New("exited before listening")
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not accepting within %v: %w", within, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tailString(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}
