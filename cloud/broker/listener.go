package broker

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"

	"github.com/mochi-mqtt/server/v2/listeners"
)

// tcpListener is a mochi listener for plain TCP or TLS. It replaces
// mochi's listeners.TCP, whose Serve writes one error variable from every
// connection goroutine (a data race the race detector reports), and it
// logs establish errors with the listener's id.
type tcpListener struct {
	id, addr string
	tlsCfg   *tls.Config
	log      *slog.Logger

	mu     sync.Mutex
	ln     net.Listener
	closed bool
}

var _ listeners.Listener = (*tcpListener)(nil)

func newTCPListener(id, addr string, tlsCfg *tls.Config) *tcpListener {
	return &tcpListener{id: id, addr: addr, tlsCfg: tlsCfg}
}

func (l *tcpListener) ID() string { return l.id }

func (l *tcpListener) Protocol() string { return "tcp" }

// Address returns the bound address once Init has run.
func (l *tcpListener) Address() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ln != nil {
		return l.ln.Addr().String()
	}
	return l.addr
}

// Init binds the address.
func (l *tcpListener) Init(log *slog.Logger) error {
	ln, err := net.Listen("tcp", l.addr)
	if err != nil {
		return err
	}
	if l.tlsCfg != nil {
		ln = tls.NewListener(ln, l.tlsCfg)
	}
	l.mu.Lock()
	l.ln, l.log = ln, log
	l.mu.Unlock()
	return nil
}

// Serve accepts until Close.
func (l *tcpListener) Serve(establish listeners.EstablishFn) {
	l.mu.Lock()
	ln, log := l.ln, l.log
	l.mu.Unlock()
	if ln == nil {
		return
	}
	for {
		conn, err := ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				log.Error("broker: accept failed; listener stops", "listener", l.id, "err", err)
			}
			return
		}
		go func(c net.Conn) {
			if err := establish(l.id, c); err != nil {
				log.Debug("broker: connection ended", "listener", l.id, "remote", c.RemoteAddr().String(), "err", err)
			}
		}(conn)
	}
}

// Close closes the clients of this listener, then the socket.
func (l *tcpListener) Close(closeClients listeners.CloseFn) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	ln := l.ln
	l.mu.Unlock()
	closeClients(l.id)
	if ln != nil {
		_ = ln.Close()
	}
}
