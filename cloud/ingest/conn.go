package ingest

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// readBuffer is the read buffer of the broker connection.
const readBuffer = 64 << 10

// bufferedConn reads its connection through a buffer. When connack is
// set, it is given the return code of the broker's first packet, the
// CONNACK of MQTT 3.1.1 (0x20 0x02 flags rc), before paho reads it: paho
// keeps a refusal's reason to its own global logger.
type bufferedConn struct {
	net.Conn
	r       *bufio.Reader
	connack func(rc byte)
}

func (c *bufferedConn) Read(p []byte) (int, error) {
	if f := c.connack; f != nil {
		c.connack = nil
		if b, err := c.r.Peek(4); err == nil && b[0] == 0x20 && b[1] == 0x02 {
			f(b[3])
		}
	}
	return c.r.Read(p)
}

// connackReason names an MQTT 3.1.1 CONNACK return code.
func connackReason(rc byte) string {
	switch rc {
	case 1:
		return "unacceptable protocol version"
	case 2:
		return "client id rejected"
	case 3:
		return "server unavailable"
	case 4:
		return "bad username or password"
	case 5:
		return "not authorized"
	}
	return fmt.Sprintf("return code %d", rc)
}

// dial is dialBuffered that logs why a connection attempt failed: the
// broker unreachable, or its refusal of our CONNECT with the reason.
func (in *Ingest) dial(uri *url.URL, o paho.ClientOptions) (net.Conn, error) {
	c, err := dialBuffered(uri, o)
	if err != nil {
		in.log.Warn("ingest: broker unreachable", "url", uri.String(), "err", err)
		return nil, err
	}
	if bc, ok := c.(*bufferedConn); ok {
		in.conn.Store(bc)
		bc.connack = func(rc byte) {
			if rc != 0 {
				in.log.Error("ingest: broker refused the connection", "url", uri.String(), "user", in.opts.Username,
					"reason", connackReason(rc), "code", rc)
			}
		}
	}
	return c, nil
}

// dialBuffered opens the broker connection as paho's own dialer does for
// tcp:// and ssl:// URLs (and their aliases) and puts a read buffer in
// front of it. paho v1.5 reads every packet straight from the connection:
// one byte for the packet type, one per remaining-length byte, then the
// body, so three or four read system calls for each message; the cloud
// receives every uplink of the fleet, and in the ingest flood those reads
// were a fifth of its CPU (cloud/LOAD.md). Buffered, one read takes many
// packets. Writes are unchanged: paho writes whole packets.
func dialBuffered(uri *url.URL, o paho.ClientOptions) (net.Conn, error) {
	d := &net.Dialer{Timeout: o.ConnectTimeout}
	var c net.Conn
	var err error
	switch uri.Scheme {
	case "tcp", "mqtt":
		c, err = d.Dial("tcp", uri.Host)
	case "ssl", "tls", "mqtts", "mqtt+ssl", "tcps":
		cfg := o.TLSConfig
		if cfg == nil {
			cfg = &tls.Config{}
		}
		c, err = (&tls.Dialer{NetDialer: d, Config: cfg}).Dial("tcp", uri.Host)
	default:
		return nil, fmt.Errorf("ingest: unsupported broker scheme %q (tcp:// or ssl://)", uri.Scheme)
	}
	if err != nil {
		return nil, err
	}
	return &bufferedConn{Conn: c, r: bufio.NewReaderSize(c, readBuffer)}, nil
}
