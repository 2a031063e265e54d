package brokertest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// PKI is a test certificate authority with a server certificate for
// 127.0.0.1 and localhost, all as PEM files in a temp dir.
type PKI struct {
	Dir        string
	CAFile     string // CA certificate, PEM
	ServerCert string // server certificate, PEM
	ServerKey  string // server key, PEM (PKCS#8)

	ca    *x509.Certificate
	caKey *ecdsa.PrivateKey
}

// NewPKI makes a CA and a server certificate under tb.TempDir().
func NewPKI(tb testing.TB) *PKI {
	tb.Helper()
	p := &PKI{Dir: tb.TempDir()}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "beaconvend test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	if p.ca, err = x509.ParseCertificate(der); err != nil {
		tb.Fatal(err)
	}
	p.caKey = key
	p.CAFile = filepath.Join(p.Dir, "ca.pem")
	writePEM(tb, p.CAFile, "CERTIFICATE", der)
	p.ServerCert, p.ServerKey = p.issue(tb, "server", "localhost", true)
	return p
}

// ClientCert issues a client certificate with Common Name cn and returns
// its certificate and key files.
func (p *PKI) ClientCert(tb testing.TB, cn string) (certFile, keyFile string) {
	tb.Helper()
	return p.issue(tb, "client-"+cn, cn, false)
}

// ClientTLS returns a client tls.Config trusting the CA, with the client
// certificate of cn when cn is not empty.
func (p *PKI) ClientTLS(tb testing.TB, cn string) *tls.Config {
	tb.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(p.ca)
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12, ServerName: "localhost"}
	if cn != "" {
		cf, kf := p.ClientCert(tb, cn)
		c, err := tls.LoadX509KeyPair(cf, kf)
		if err != nil {
			tb.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	return cfg
}

// NodeCert issues a certificate for 127.0.0.1 and localhost usable both
// as a server and as a client certificate (a NATS node's routes are
// mutual TLS), and returns its certificate and key files.
func (p *PKI) NodeCert(tb testing.TB, name string) (certFile, keyFile string) {
	tb.Helper()
	return p.issueUsage(tb, "node-"+name, name, true, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
}

var serial = big.NewInt(100)

func (p *PKI) issue(tb testing.TB, name, cn string, server bool) (string, string) {
	if server {
		return p.issueUsage(tb, name, cn, true, x509.ExtKeyUsageServerAuth)
	}
	return p.issueUsage(tb, name, cn, false, x509.ExtKeyUsageClientAuth)
}

func (p *PKI) issueUsage(tb testing.TB, name, cn string, server bool, usage ...x509.ExtKeyUsage) (string, string) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	sn, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	tmpl := &x509.Certificate{
		SerialNumber: sn.Add(sn, serial),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  usage,
	}
	if server {
		tmpl.DNSNames = []string{"localhost"}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		tb.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	cf, kf := filepath.Join(p.Dir, name+".pem"), filepath.Join(p.Dir, name+"-key.pem")
	writePEM(tb, cf, "CERTIFICATE", der)
	writePEM(tb, kf, "PRIVATE KEY", kder)
	return cf, kf
}

func writePEM(tb testing.TB, file, typ string, der []byte) {
	tb.Helper()
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
}
