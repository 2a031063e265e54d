package clusterfault

import (
	"io"
	"net"
	"sync"
	"time"
)

// balancer is a loopback TCP load balancer in front of several backends
// (the brokers' MQTT listeners, the cloud instances' HTTP listeners), as a
// deployment puts one in front of a cluster: each new connection goes to
// the next backend that accepts it; a connection whose backend dies is
// closed on both sides, so its client reconnects through the balancer to
// a live backend.
type balancer struct {
	ln       net.Listener
	backends []string

	mu    sync.Mutex
	next  int
	conns map[net.Conn]struct{}
	done  bool
}

func newBalancer(backends []string) (*balancer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &balancer{ln: ln, backends: backends, conns: map[net.Conn]struct{}{}}
	go b.accept()
	return b, nil
}

// Addr is the balancer's host:port.
func (b *balancer) Addr() string { return b.ln.Addr().String() }

func (b *balancer) accept() {
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		go b.serve(c)
	}
}

func (b *balancer) serve(c net.Conn) {
	b.mu.Lock()
	start := b.next
	b.next++
	b.mu.Unlock()
	var up net.Conn
	for i := range b.backends {
		var err error
		if up, err = net.DialTimeout("tcp", b.backends[(start+i)%len(b.backends)], time.Second); err == nil {
			break
		}
	}
	if up == nil {
		c.Close()
		return
	}
	if !b.track(c, up) {
		c.Close()
		up.Close()
		return
	}
	var wg sync.WaitGroup
	wg.Add(2)
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		// Either side gone: close both, the client reconnects.
		dst.Close()
		src.Close()
	}
	go pipe(up, c)
	go pipe(c, up)
	wg.Wait()
	b.mu.Lock()
	delete(b.conns, c)
	delete(b.conns, up)
	b.mu.Unlock()
}

func (b *balancer) track(cs ...net.Conn) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return false
	}
	for _, c := range cs {
		b.conns[c] = struct{}{}
	}
	return true
}

// Close stops accepting and closes every connection.
func (b *balancer) Close() {
	b.ln.Close()
	b.mu.Lock()
	b.done = true
	for c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
}
