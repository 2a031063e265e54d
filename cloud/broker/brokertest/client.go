package brokertest

import (
	"crypto/tls"
	"fmt"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// ClientOptions returns paho options for a test client: MQTT 3.1.1, no
// auto-reconnect, clean session unless persistent, bounded timeouts.
func ClientOptions(url, clientID, user, password string, tlsCfg *tls.Config) *paho.ClientOptions {
	o := paho.NewClientOptions().AddBroker(url).SetClientID(clientID).
		SetUsername(user).SetPassword(password).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(5 * time.Second).SetWriteTimeout(5 * time.Second).
		SetKeepAlive(30 * time.Second).SetCleanSession(true)
	if tlsCfg != nil {
		o.SetTLSConfig(tlsCfg)
	}
	return o
}

// Connect connects a paho client with o and returns it, or the connect
// error (a refused CONNACK is an error). The client is disconnected at the
// end of the test.
func Connect(tb testing.TB, o *paho.ClientOptions) (paho.Client, error) {
	tb.Helper()
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(Wait) {
		return nil, fmt.Errorf("connect: no CONNACK within %v", Wait)
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	tb.Cleanup(func() { c.Disconnect(50) })
	return c, nil
}

// MustConnect is Connect that fails the test on error.
func MustConnect(tb testing.TB, o *paho.ClientOptions) paho.Client {
	tb.Helper()
	c, err := Connect(tb, o)
	if err != nil {
		tb.Fatalf("connect %s as %s: %v", o.Servers[0], o.ClientID, err)
	}
	return c
}

// Done waits for tok within Wait and returns its error, or a timeout error.
func Done(tok paho.Token) error {
	if !tok.WaitTimeout(Wait) {
		return fmt.Errorf("no answer within %v", Wait)
	}
	return tok.Error()
}
