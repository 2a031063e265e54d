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

// bufferedConn reads its connection through a buffer.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

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
