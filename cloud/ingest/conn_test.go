package ingest

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"beaconvend/cloud/broker/brokertest"
)

// dialBuffered speaks plain TCP and TLS (verifying the server against the
// client's roots) and refuses schemes it does not know by name.
func TestDialBuffered(t *testing.T) {
	pki := brokertest.NewPKI(t)
	cert, err := tls.LoadX509KeyPair(pki.ServerCert, pki.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(pki.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	serve := func(ln net.Listener) {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}
	plain, _ := net.Listen("tcp", "127.0.0.1:0")
	defer plain.Close()
	go serve(plain)
	secure, _ := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	defer secure.Close()
	go serve(secure)

	o := paho.NewClientOptions()
	o.ConnectTimeout = 5 * time.Second
	o.TLSConfig = &tls.Config{RootCAs: roots}
	for _, u := range []string{"tcp://" + plain.Addr().String(), "ssl://" + secure.Addr().String()} {
		uri, _ := url.Parse(u)
		c, err := dialBuffered(uri, *o)
		if err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		if _, err := c.Write([]byte("\x30\x02hi")); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 4)
		if _, err := io.ReadFull(c, b); err != nil || string(b) != "\x30\x02hi" {
			t.Fatalf("%s: echo %q, %v", u, b, err)
		}
		c.Close()
	}
	o.TLSConfig = &tls.Config{} // system roots: the test certificate is not trusted
	uri, _ := url.Parse("ssl://" + secure.Addr().String())
	if _, err := dialBuffered(uri, *o); err == nil {
		t.Fatal("an untrusted broker certificate was accepted")
	}
	uri, _ = url.Parse("ws://" + plain.Addr().String())
	if _, err := dialBuffered(uri, *o); err == nil || !strings.Contains(err.Error(), "unsupported broker scheme") {
		t.Fatalf("ws:// = %v, want unsupported scheme", err)
	}
}
