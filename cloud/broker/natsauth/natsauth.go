package natsauth

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/broker"
)

// AuthSubject is where nats-server sends auth callout requests.
const AuthSubject = "$SYS.REQ.USER.AUTH"

// DefaultQueue is the queue group of the responders.
const DefaultQueue = "beaconvend-auth"

// DefaultUserTTL is how long an issued user JWT is valid: a connection
// outliving it is closed by the server and must reconnect (and be
// checked again), which bounds how long a disabled device stays on.
const DefaultUserTTL = time.Hour

// ErrOptions reports bad Options.
var ErrOptions = vend.E(vend.Invalid, "natsauth.options", "natsauth: bad options")

// Operators looks up operators' read-only accounts: their password hash
// and the devices they own. Both return an error of kind vend.NotFound
// for an unknown operator.
type Operators interface {
	BrokerAccountHash(ctx context.Context, operatorID string) (string, error)
	OperatorDeviceIDs(ctx context.Context, operatorID string) ([]string, error)
}

// Options configure a [Responder].
type Options struct {
	URLs     []string // nats:// or tls:// URLs of the cluster's client listeners, tried in this order; required
	Password string   // of the broker.NATSAuthUser user in the AUTH account; required
	// TLS is the client TLS of a cluster whose listeners serve TLS
	// (RootCAs: the CA of the nodes' certificates). It is used for
	// tls:// URLs and for a node that requires TLS; nil: the system roots.
	TLS *tls.Config
	// IssuerSeed is the seed ("SA…") of the account nkey whose public key
	// the nodes' auth_callout.issuer names; required.
	IssuerSeed []byte
	Account    string // the account clients are placed in; default broker.NATSFleetAccount
	Queue      string // default DefaultQueue

	Tree              mqttapi.Tree       // the zero Tree is mqttapi.DefaultPrefix
	Credentials       broker.Credentials // device lookups; required
	Operators         Operators          // nil: operator accounts refused
	CloudUser         string             // default broker.DefaultCloudUser
	CloudPasswordHash string             // "$7$" hash; required
	UserTTL           time.Duration      // default DefaultUserTTL
	LookupTimeout     time.Duration      // default 2s
	Name              string             // NATS connection name (logs), default "beaconvend-auth"
	Logger            *slog.Logger       // default: discard
}

// Responder answers auth callout requests until Close.
type Responder struct {
	o      Options
	kp     nkeys.KeyPair
	prefix string // the tree's prefix as a subject
	nc     *nats.Conn
	log    *slog.Logger

	mu    sync.Mutex
	stats Stats
}

// Stats count a responder's answers.
type Stats struct {
	Admitted, Refused uint64
}

// Start connects to the cluster as the auth user and subscribes to
// AuthSubject in the queue group; a cluster not reachable yet is retried
// in the background (as is a lost node). It returns ErrOptions for missing or
// bad options and the connection's error.
func Start(o Options) (*Responder, error) {
	if len(o.URLs) == 0 || o.Password == "" || o.Credentials == nil || o.CloudPasswordHash == "" {
		return nil, vend.Errorf(ErrOptions, "urls, password, credentials and cloud password hash are required")
	}
	kp, err := nkeys.FromSeed(o.IssuerSeed)
	if err != nil {
		return nil, vend.Errorf(ErrOptions, "issuer seed: %v", err)
	}
	if pub, _ := kp.PublicKey(); !strings.HasPrefix(pub, "A") {
		return nil, vend.Errorf(ErrOptions, "issuer seed: want an account seed")
	}
	if err := broker.ValidateHash(o.CloudPasswordHash); err != nil {
		return nil, vend.Errorf(ErrOptions, "cloud password hash: %v", err)
	}
	if o.Account == "" {
		o.Account = broker.NATSFleetAccount
	}
	if o.Queue == "" {
		o.Queue = DefaultQueue
	}
	if o.CloudUser == "" {
		o.CloudUser = broker.DefaultCloudUser
	}
	if o.UserTTL <= 0 {
		o.UserTTL = DefaultUserTTL
	}
	if o.LookupTimeout <= 0 {
		o.LookupTimeout = 2 * time.Second
	}
	if o.Name == "" {
		o.Name = "beaconvend-auth"
	}
	prefix, err := SubjectPrefix(o.Tree)
	if err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Responder{o: o, kp: kp, prefix: prefix, log: log}
	nc, err := nats.Connect(strings.Join(o.URLs, ","), nats.UserInfo(broker.NATSAuthUser, o.Password), nats.Name(o.Name), nats.DontRandomize(),
		nats.MaxReconnects(-1), nats.ReconnectWait(200*time.Millisecond), nats.RetryOnFailedConnect(true), TLSOption(o.TLS))
	if err != nil {
		return nil, fmt.Errorf("natsauth: connect: %w", err)
	}
	if _, err := nc.QueueSubscribe(AuthSubject, o.Queue, r.handle); err != nil {
		nc.Close()
		return nil, fmt.Errorf("natsauth: subscribe: %w", err)
	}
	if err := nc.Flush(); err != nil && !errors.Is(err, nats.ErrConnectionReconnecting) {
		log.Warn("natsauth: flush", "err", err)
	}
	r.nc = nc
	return r, nil
}

// Close unsubscribes, answers the requests already received and
// disconnects (at most 5 s).
func (r *Responder) Close() {
	done := make(chan struct{})
	r.nc.SetClosedHandler(func(*nats.Conn) { close(done) })
	if err := r.nc.Drain(); err != nil {
		r.nc.Close()
		return
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		r.nc.Close()
	}
}

// Connected reports whether the responder's connection is up.
func (r *Responder) Connected() bool { return r.nc.IsConnected() }

// Stats returns the responder's counts.
func (r *Responder) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

// SubjectPrefix is the NATS subject of tree's prefix: its topic levels
// joined by '.'.
func SubjectPrefix(tree mqttapi.Tree) (string, error) {
	f, err := tree.Filter(mqttapi.LeafCmd) // validates the prefix: "<prefix>/+/cmd"
	if err != nil {
		return "", err
	}
	p := strings.TrimSuffix(f, "/+/"+string(mqttapi.LeafCmd))
	if strings.ContainsAny(p, ".*> \t") {
		return "", vend.Errorf(ErrOptions, "topic prefix %q: holds a character NATS reads as a subject token", p)
	}
	return strings.ReplaceAll(p, "/", "."), nil
}

// Subject is the NATS subject of device's leaf under prefix (a
// [SubjectPrefix]); device "*" gives the wildcard of every device.
func Subject(prefix, device string, leaf mqttapi.Leaf) string {
	return prefix + "." + device + "." + string(leaf)
}

// DevicePermissions are a device's rights: publish on its own uplink
// leaves, subscribe on its own cmd leaf.
func DevicePermissions(prefix, device string) jwt.Permissions {
	var p jwt.Permissions
	for _, l := range mqttapi.Leaves {
		if l.Direction() == mqttapi.Uplink {
			p.Pub.Allow.Add(Subject(prefix, device, l))
		}
	}
	p.Sub.Allow.Add(Subject(prefix, device, mqttapi.LeafCmd))
	return p
}

// CloudPermissions are the cloud user's rights: every device's uplinks
// to read, every device's cmd to write, and JetStream's API, acks, flow
// control and reply inboxes.
func CloudPermissions(prefix string) jwt.Permissions {
	var p jwt.Permissions
	p.Pub.Allow.Add(Subject(prefix, "*", mqttapi.LeafCmd), "$JS.API.>", "$JS.ACK.>", "$JS.FC.>", "_INBOX.>")
	for _, l := range mqttapi.Leaves {
		if l.Direction() == mqttapi.Uplink {
			p.Sub.Allow.Add(Subject(prefix, "*", l))
		}
	}
	p.Sub.Allow.Add("_INBOX.>", "$JS.FC.>")
	return p
}

// OperatorPermissions are an operator account's rights: read the
// [broker.OperatorLeaves] of its own devices, publish nothing.
func OperatorPermissions(prefix string, devices []string) jwt.Permissions {
	var p jwt.Permissions
	p.Pub.Deny.Add(">")
	for _, d := range devices {
		for _, l := range broker.OperatorLeaves {
			p.Sub.Allow.Add(Subject(prefix, d, l))
		}
	}
	if len(devices) == 0 {
		p.Sub.Deny.Add(">")
	}
	return p
}

func (r *Responder) handle(m *nats.Msg) {
	req, err := jwt.DecodeAuthorizationRequestClaims(string(m.Data))
	if err != nil {
		r.log.Warn("natsauth: undecodable request", "err", err)
		return
	}
	perms, types, name, why := r.decide(req)
	resp := jwt.NewAuthorizationResponseClaims(req.UserNkey)
	resp.Audience = req.Server.ID
	log := r.log.With("user", clip(req.ConnectOptions.Username), "mqtt_id", clip(req.ClientInformation.MQTT), "host", req.ClientInformation.Host, "server", req.Server.Name)
	if why != "" {
		resp.Error = "not authorized"
		r.count(false)
		log.Info("natsauth: connect refused: " + why)
	} else {
		uc := jwt.NewUserClaims(req.UserNkey)
		uc.Name = name
		uc.Audience = r.o.Account
		uc.Expires = time.Now().Add(r.o.UserTTL).Unix()
		uc.Permissions = perms
		uc.AllowedConnectionTypes.Add(types...)
		ujwt, err := uc.Encode(r.kp)
		if err != nil {
			log.Error("natsauth: encode user", "err", err)
			resp.Error = "not authorized"
			r.count(false)
		} else {
			resp.Jwt = ujwt
			r.count(true)
		}
	}
	tok, err := resp.Encode(r.kp)
	if err != nil {
		log.Error("natsauth: encode response", "err", err)
		return
	}
	if err := m.Respond([]byte(tok)); err != nil {
		log.Warn("natsauth: respond", "err", err)
	}
}

func (r *Responder) count(ok bool) {
	r.mu.Lock()
	if ok {
		r.stats.Admitted++
	} else {
		r.stats.Refused++
	}
	r.mu.Unlock()
}

// dummyHash is verified against when a user is unknown, so that refusing
// one costs as much time as checking a real password.
var dummyHash, _ = broker.HashPassword("beaconvend-dummy")

// decide returns the permissions, allowed connection types and name of
// an admitted client, or why it is refused.
func (r *Responder) decide(req *jwt.AuthorizationRequestClaims) (jwt.Permissions, []string, string, string) {
	user, pass := req.ConnectOptions.Username, req.ConnectOptions.Password
	mqttID := req.ClientInformation.MQTT
	isMQTT := req.ClientInformation.Type == jwt.ConnectionTypeMqtt || mqttID != ""
	ctx, cancel := context.WithTimeout(context.Background(), r.o.LookupTimeout)
	defer cancel()
	switch {
	case user == "":
		return jwt.Permissions{}, nil, "", "anonymous"
	case user == r.o.CloudUser:
		ok, err := broker.VerifyPassword(r.o.CloudPasswordHash, pass)
		if err != nil || !ok {
			return jwt.Permissions{}, nil, "", "bad cloud password"
		}
		if isMQTT && vend.ValidateDeviceID(mqttID) == nil {
			return jwt.Permissions{}, nil, "", "cloud client id is a device id"
		}
		return CloudPermissions(r.prefix), []string{jwt.ConnectionTypeStandard, jwt.ConnectionTypeMqtt}, user, ""
	}
	if op, ok := broker.OperatorOf(user); ok {
		if r.o.Operators == nil {
			_, _ = broker.VerifyPassword(dummyHash, pass)
			return jwt.Permissions{}, nil, "", "operator accounts are not enabled"
		}
		hash, err := r.o.Operators.BrokerAccountHash(ctx, op)
		if err != nil {
			_, _ = broker.VerifyPassword(dummyHash, pass)
			return jwt.Permissions{}, nil, "", "operator account: " + err.Error()
		}
		if ok, err := broker.VerifyPassword(hash, pass); err != nil || !ok {
			return jwt.Permissions{}, nil, "", "bad operator password"
		}
		if isMQTT && vend.ValidateDeviceID(mqttID) == nil {
			return jwt.Permissions{}, nil, "", "operator client id is a device id"
		}
		devs, err := r.o.Operators.OperatorDeviceIDs(ctx, op)
		if err != nil {
			return jwt.Permissions{}, nil, "", "operator devices: " + err.Error()
		}
		return OperatorPermissions(r.prefix, devs), []string{jwt.ConnectionTypeMqtt}, user, ""
	}
	if err := vend.ValidateDeviceID(user); err != nil || strings.Contains(user, ".") {
		_, _ = broker.VerifyPassword(dummyHash, pass)
		return jwt.Permissions{}, nil, "", "username is not a device id usable on NATS"
	}
	// The client id is the device id: otherwise one device could take
	// over another's persistent session by naming its id.
	if !isMQTT || mqttID != user {
		_, _ = broker.VerifyPassword(dummyHash, pass)
		return jwt.Permissions{}, nil, "", "device not on MQTT with client id = device id"
	}
	cred, err := r.o.Credentials.DeviceCredential(ctx, user)
	if err != nil {
		_, _ = broker.VerifyPassword(dummyHash, pass)
		if vend.KindOf(err) == vend.NotFound || errors.Is(err, broker.ErrUnknown) {
			return jwt.Permissions{}, nil, "", "unknown device"
		}
		r.log.Error("natsauth: credential lookup failed", "device", user, "err", err)
		return jwt.Permissions{}, nil, "", "credential lookup failed"
	}
	if ok, err := broker.VerifyPassword(cred.PasswordHash, pass); err != nil || !ok {
		return jwt.Permissions{}, nil, "", "bad password"
	}
	if !cred.Enabled {
		return jwt.Permissions{}, nil, "", "device disabled"
	}
	return DevicePermissions(r.prefix, user), []string{jwt.ConnectionTypeMqtt}, user, ""
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// TLSOption gives a NATS connection c for its TLS handshakes without
// forcing TLS: a tls:// URL requires it, and so does a node whose
// listener serves TLS (a plain client is refused there), while a nats://
// node on loopback without TLS stays plain. A nil c leaves the defaults
// (the system roots).
func TLSOption(c *tls.Config) nats.Option {
	return func(o *nats.Options) error {
		if c != nil {
			o.TLSConfig = c
		}
		return nil
	}
}
