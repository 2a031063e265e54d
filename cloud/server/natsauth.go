package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/nats-io/nkeys"
	"github.com/prometheus/client_golang/prometheus"

	"beaconvend/cloud/broker"
	"beaconvend/cloud/broker/natsauth"
	"beaconvend/cloud/store"
)

// NATS auth callout bounds.
const (
	// DefaultNATSAuthResponders is broker.nats_auth.responders when unset.
	DefaultNATSAuthResponders = 2
	// MaxNATSAuthResponders bounds broker.nats_auth.responders.
	MaxNATSAuthResponders = 16
)

// The store answers the auth callout's operator lookups itself
// (BrokerAccountHash, OperatorDeviceIDs).
var _ natsauth.Operators = (*store.Store)(nil)

// storeCredentials is the device lookup of the embedded broker and of the
// NATS auth callout responders: a device's password hash, and whether it
// may connect at all (a disabled device may not). An unknown device is
// the store's ErrDeviceNotFound (kind not_found): refused, not logged.
func storeCredentials(st *store.Store) broker.Credentials {
	return broker.CredentialsFunc(func(ctx context.Context, id string) (broker.Credential, error) {
		d, err := st.GetDevice(ctx, id)
		if err != nil {
			return broker.Credential{}, err
		}
		return broker.Credential{PasswordHash: d.MQTTHash, Enabled: d.State != store.DeviceDisabled}, nil
	})
}

func (c *Config) validateNATSAuth() error {
	a := c.Broker.NATSAuth
	if a == nil {
		return nil
	}
	if !c.Broker.NATS() {
		return bad("broker.nats_auth", "only with kind: nats")
	}
	switch {
	case a.Responders < 1 || a.Responders > MaxNATSAuthResponders:
		return bad("broker.nats_auth.responders", "%d: want 1-%d", a.Responders, MaxNATSAuthResponders)
	case a.Responders < 2 && !c.Development:
		return bad("broker.nats_auth.responders", "%d: want at least 2, so that one lost connection does not stall the connects sent to it"+production, a.Responders)
	}
	_, _, err := c.NATSAuthSecrets()
	return err
}

// NATSAuthSecrets reads broker.nats_auth's files: the issuer's account
// seed and the auth user's password. Errors: ErrConfig naming the field
// (missing, or not what `cloud broker nats-files` writes), ErrKeyFile
// (unreadable), ErrKeyPerms (readable by group or others).
func (c *Config) NATSAuthSecrets() (seed []byte, password string, err error) {
	a := c.Broker.NATSAuth
	if a == nil {
		return nil, "", bad("broker.nats_auth", "missing")
	}
	if a.IssuerSeedFile == "" {
		return nil, "", bad("broker.nats_auth.issuer_seed_file", "missing: the account seed the nodes' auth callout trusts (auth-issuer.seed of cloud broker nats-files)")
	}
	if a.PasswordFile == "" {
		return nil, "", bad("broker.nats_auth.password_file", "missing: the password of the nodes' auth user (auth-user.password of cloud broker nats-files)")
	}
	b, err := readSecretFile("broker.nats_auth.issuer_seed_file", a.IssuerSeedFile)
	if err != nil {
		return nil, "", err
	}
	seed = []byte(strings.TrimSpace(string(b)))
	kp, err := nkeys.FromSeed(seed)
	if err != nil {
		return nil, "", bad("broker.nats_auth.issuer_seed_file", "%s: not an nkey seed: %v", a.IssuerSeedFile, err)
	}
	if pub, _ := kp.PublicKey(); !strings.HasPrefix(pub, "A") {
		return nil, "", bad("broker.nats_auth.issuer_seed_file", "%s: the seed of a %c… key, want an account seed (SA…)", a.IssuerSeedFile, pub[0])
	}
	b, err = readSecretFile("broker.nats_auth.password_file", a.PasswordFile)
	if err != nil {
		return nil, "", err
	}
	password = strings.TrimSpace(string(b))
	if password == "" {
		return nil, "", bad("broker.nats_auth.password_file", "%s is empty", a.PasswordFile)
	}
	return seed, password, nil
}

// authResponders are the NATS auth callout responders this cloud runs.
type authResponders []*natsauth.Responder

// startAuthResponders starts broker.nats_auth.responders responders
// against the store. Responder i dials nats_urls from node (offset+i) mod
// N first, so an instance's responders sit on different nodes and
// instances with different offsets spread over the cluster. Each
// retries the cluster in the background: a node not up yet is no error.
func (s *Server) startAuthResponders(sec Secrets, offset int, clientTLS *tls.Config) (authResponders, error) {
	cfg := s.cfg
	seed, pw, err := cfg.NATSAuthSecrets()
	if err != nil {
		return nil, err
	}
	hash, err := broker.HashPassword(sec.MQTTPassword)
	if err != nil {
		return nil, err
	}
	urls := cfg.Broker.NATSURLs
	var rs authResponders
	for i := range cfg.Broker.NATSAuth.Responders {
		k := (offset + i) % len(urls)
		o := natsauth.Options{URLs: append(append([]string(nil), urls[k:]...), urls[:k]...), Password: pw, IssuerSeed: seed,
			Credentials: storeCredentials(s.opts.Store), Operators: s.opts.Store, CloudPasswordHash: hash, TLS: clientTLS,
			Name: "beaconvend-auth-" + strconv.Itoa(i), Logger: s.log.With("part", "natsauth", "responder", i)}
		r, err := natsauth.Start(o)
		if err != nil {
			rs.Close()
			return nil, fmt.Errorf("server: broker.nats_auth: responder %d: %w", i, err)
		}
		rs = append(rs, r)
	}
	return rs, nil
}

// Close stops every responder (each answers what it already received).
func (rs authResponders) Close() {
	for _, r := range rs {
		r.Close()
	}
}

// register exports the responders' counts on reg:
// beaconvend_nats_auth_answers_total{result} (admitted, refused) and
// beaconvend_nats_auth_responders_connected.
func (rs authResponders) register(reg prometheus.Registerer, log *slog.Logger) {
	sum := func(f func(natsauth.Stats) uint64) func() float64 {
		return func() float64 {
			var n uint64
			for _, r := range rs {
				n += f(r.Stats())
			}
			return float64(n)
		}
	}
	cs := []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "beaconvend_nats_auth_answers_total", ConstLabels: prometheus.Labels{"result": "admitted"},
			Help: "NATS auth callout requests this cloud's responders answered, by result."}, sum(func(s natsauth.Stats) uint64 { return s.Admitted })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "beaconvend_nats_auth_answers_total", ConstLabels: prometheus.Labels{"result": "refused"},
			Help: "NATS auth callout requests this cloud's responders answered, by result."}, sum(func(s natsauth.Stats) uint64 { return s.Refused })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "beaconvend_nats_auth_responders_connected",
			Help: "This cloud's NATS auth callout responders connected to the cluster now."}, func() float64 {
			n := 0
			for _, r := range rs {
				if r.Connected() {
					n++
				}
			}
			return float64(n)
		}),
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			log.Warn("server: nats auth metrics", "err", err)
		}
	}
}
