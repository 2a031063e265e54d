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

	mu        sync.Mutex
	ln        net.Listener
	closed    bool
	serveDone chan struct{} // closed when Serve's accept loop returns
	// starting counts accepted connections whose establish has not yet
	// read from the connection. mochi's attachClient calls
	// ClientsWg.Add(1) before its first read, and Server.Close waits on
	// ClientsWg: an Add racing that Wait is a data race (and may be
	// missed), so Close waits for starting to drain before the clients are
	// closed and the server waits.
	starting sync.WaitGroup
	// conns are the accepted connections still being served; Close
	// closes them itself (see Close).
	conns map[net.Conn]struct{}
}

var _ listeners.Listener = (*tcpListener)(nil)

// NewListener returns the broker's plain TCP (tlsCfg nil) or TLS mochi
// listener on addr, for a mochi server other than the broker's own (a
// bare yardstick broker): unlike mochi's listeners.TCP it has no data race
// on accept errors and closes without racing the server's client wait.
func NewListener(id, addr string, tlsCfg *tls.Config) listeners.Listener {
	return newTCPListener(id, addr, tlsCfg)
}

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
	if ln == nil || l.closed {
		l.mu.Unlock()
		return
	}
	done := make(chan struct{})
	l.serveDone = done
	l.mu.Unlock()
	defer close(done)
	for {
		conn, err := ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				log.Error("broker: accept failed; listener stops", "listener", l.id, "err", err)
			}
			return
		}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			conn.Close()
			return
		}
		l.starting.Add(1)
		if l.conns == nil {
			l.conns = map[net.Conn]struct{}{}
		}
		l.conns[conn] = struct{}{}
		l.mu.Unlock()
		go func(c *startConn) {
			defer func() {
				l.mu.Lock()
				delete(l.conns, c.Conn)
				l.mu.Unlock()
			}()
			defer c.started()
			if err := establish(l.id, c); err != nil {
				log.Debug("broker: connection ended", "listener", l.id, "remote", c.RemoteAddr().String(), "err", err)
			}
		}(&startConn{Conn: conn, wg: &l.starting})
	}
}

// startConn marks its connection as started at the first Read: by then
// mochi has registered the client with its ClientsWg.
type startConn struct {
	net.Conn
	once sync.Once
	wg   *sync.WaitGroup
}

func (c *startConn) started() { c.once.Do(c.wg.Done) }

// ConnectionState exposes the TLS state of a TLS connection (the zero
// value otherwise), so the auth hook can read client certificates.
func (c *startConn) ConnectionState() tls.ConnectionState {
	if tc, ok := c.Conn.(*tls.Conn); ok {
		return tc.ConnectionState()
	}
	return tls.ConnectionState{}
}

// Listener IDs: the auth hook asks for client certificates only on the TLS one.
const (
	tcpListenerID = "tcp"
	tlsListenerID = "tls"
)

func (c *startConn) Read(p []byte) (int, error) {
	c.started()
	return c.Conn.Read(p)
}

// Close stops accepting, then closes this listener's connections, which
// ends their clients (each removes itself from the server as its read
// fails). It does not call mochi's closeClients: in mochi v2.7.9
// Clients.GetByListener takes the clients' read lock twice (Len inside
// RLock), so a client removing itself at that moment (a writer waiting
// between the two) deadlocks the server's Close for good — seen as a
// 20-minute hang of TestEmbeddedTLSClientCert under load.
func (l *tcpListener) Close(_ listeners.CloseFn) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	ln, done := l.ln, l.serveDone
	l.mu.Unlock()
	// Stop accepting first, then let every accepted connection reach
	// mochi's client registration, then close the clients.
	if ln != nil {
		_ = ln.Close()
	}
	if done != nil {
		<-done
	}
	l.starting.Wait()
	l.mu.Lock()
	conns := make([]net.Conn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}
