package ble

import (
	"context"
	"fmt"
	"sync"
	"time"

	"beaconvend/app-protocol/gattapi"
	goble "beaconvend/hw/ble/goble"
	"beaconvend/hw/ble/goble/linux/gatt"
	"beaconvend/hw/ble/goble/linux/hci"
)

// CentralOpts configures HCI.DialGATT. Zero values mean their defaults.
type CentralOpts struct {
	// MTU is the ATT_MTU asked for in the MTU exchange; default 247 (a
	// 244-byte notification or write, one LE Data Length Extension PDU).
	MTU int
	// OpTimeout bounds the connection, the discovery, and each operation
	// whose ctx has no earlier deadline; default 10 s. An operation cut
	// short disconnects the link (its ATT bearer cannot be reused).
	OpTimeout time.Duration
	// PublicAddr dials the address as a public device address; false (the
	// default) dials it as a random one, which boards advertise from
	// (HCIOpts.RandomAddress).
	PublicAddr bool
}

// DefaultCentralMTU is the ATT_MTU a central asks for.
const DefaultCentralMTU = 247

func (o *CentralOpts) withDefaults() CentralOpts {
	var c CentralOpts
	if o != nil {
		c = *o
	}
	if c.MTU == 0 {
		c.MTU = DefaultCentralMTU
	}
	if c.OpTimeout <= 0 {
		c.OpTimeout = 10 * time.Second
	}
	return c
}

type dialer interface {
	Dial(ctx context.Context, a goble.Addr) (goble.Client, error)
}

// DialGATT connects to the board at addr ("aa:bb:cc:dd:ee:ff", as in
// Report.Addr) as a central, exchanges the MTU, and discovers the
// beaconvend service (gattapi.ServiceUUID) and its characteristics. Scan
// must not run meanwhile (stop it first: its ctx). Errors: ErrConfig (bad
// address), ErrLinkTimeout (no connection or answer in time), ErrNoService,
// ErrDisconnected, ErrClosed, ErrRadio.
func (h *HCI) DialGATT(ctx context.Context, addr string, o *CentralOpts) (GATTLink, error) {
	c := o.withDefaults()
	if _, err := ParseAddr(addr); err != nil {
		return nil, err
	}
	h.mu.Lock()
	closed := h.closed
	h.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	d, ok := h.ctl.(dialer)
	if !ok {
		return nil, fmt.Errorf("%w: this controller cannot dial", ErrRadio)
	}
	var a goble.Addr = goble.NewAddr(addr)
	if !c.PublicAddr {
		a = hci.RandomAddress{Addr: a}
	}
	dctx, cancel := context.WithTimeout(ctx, c.OpTimeout)
	defer cancel()
	cl, err := d.Dial(dctx, a)
	if err != nil {
		if dctx.Err() != nil {
			return nil, fmt.Errorf("%w: connect to %s: %w", ErrLinkTimeout, addr, err)
		}
		return nil, fmt.Errorf("%w: connect to %s: %w", ErrRadio, addr, err)
	}
	gc, ok := cl.(*gatt.Client)
	if !ok {
		cl.Conn().Close()
		return nil, fmt.Errorf("%w: unexpected GATT client %T", ErrRadio, cl)
	}
	l := &hciLink{c: gc, conn: gc.Conn(), addr: addr, timeout: c.OpTimeout, chars: map[string]*goble.Characteristic{}}
	if err := l.setUp(dctx, c.MTU); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// hciLink is a GATTLink over go-ble's GATT client. It watches and cuts
// the connection (conn) directly: go-ble's Client methods take the
// client's lock, which a pending request holds for up to 30 s.
type hciLink struct {
	c       *gatt.Client
	conn    goble.Conn
	addr    string
	timeout time.Duration

	mu    sync.Mutex
	chars map[string]*goble.Characteristic
}

// call runs f bounded by ctx, the link's timeout and the link's lifetime.
// A call cut short disconnects: go-ble's ATT client would otherwise wait
// up to 30 s for the answer while holding the bearer; the disconnection
// ends that wait, and f's goroutine with it.
func call[T any](ctx context.Context, l *hciLink, what string, f func() (T, error)) (T, error) {
	var zero T
	select {
	case <-l.conn.Disconnected():
		return zero, fmt.Errorf("%w: %s: %s", ErrDisconnected, l.addr, what)
	default:
	}
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	type res struct {
		v   T
		err error
	}
	done := make(chan res, 1)
	go func() {
		v, err := f()
		done <- res{v, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			select {
			case <-l.conn.Disconnected():
				return zero, fmt.Errorf("%w: %s: %s: %w", ErrDisconnected, l.addr, what, r.err)
			default:
			}
		}
		return r.v, r.err
	case <-l.conn.Disconnected():
		return zero, fmt.Errorf("%w: %s: %s", ErrDisconnected, l.addr, what)
	case <-ctx.Done():
		l.conn.Close()
		return zero, fmt.Errorf("%w: %s: %s: %w", ErrLinkTimeout, l.addr, what, ctx.Err())
	}
}

func (l *hciLink) do(ctx context.Context, what string, f func() error) error {
	_, err := call(ctx, l, what, func() (struct{}, error) { return struct{}{}, f() })
	return err
}

func (l *hciLink) setUp(ctx context.Context, mtu int) error {
	return l.do(ctx, "set up", func() error {
		srv, err := l.c.ExchangeMTU(mtu)
		if err != nil {
			return fmt.Errorf("%w: %s: exchange MTU: %w", ErrRadio, l.addr, err)
		}
		// ATT_MTU is the smaller of the two (Core Vol 3 Part F §3.4.2.2);
		// go-ble's client takes the server's as it is, and would then
		// send PDUs the server may not take and stop Read Blob early.
		l.conn.SetTxMTU(max(goble.DefaultMTU, min(srv, mtu)))
		svcUUID := goble.MustParse(gattapi.ServiceUUID)
		ss, err := l.c.DiscoverServices([]goble.UUID{svcUUID})
		if err != nil {
			return fmt.Errorf("%w: %s: discover services: %w", ErrRadio, l.addr, err)
		}
		var svc *goble.Service
		for _, s := range ss {
			if s.UUID.Equal(svcUUID) {
				svc = s
			}
		}
		if svc == nil {
			return fmt.Errorf("%w: %s", ErrNoService, l.addr)
		}
		cs, err := l.c.DiscoverCharacteristics(nil, svc)
		if err != nil {
			return fmt.Errorf("%w: %s: discover characteristics: %w", ErrRadio, l.addr, err)
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, ch := range cs {
			for _, u := range []string{gattapi.GrantUUID, gattapi.ProgressUUID, gattapi.ReceiptUUID, gattapi.AckUUID, gattapi.ClaimInfoUUID, gattapi.BundleUUID} {
				if ch.UUID.Equal(goble.MustParse(u)) {
					l.chars[u] = ch
				}
			}
		}
		if p := l.chars[gattapi.ProgressUUID]; p != nil {
			if _, err := l.c.DiscoverDescriptors(nil, p); err != nil {
				return fmt.Errorf("%w: %s: discover descriptors: %w", ErrRadio, l.addr, err)
			}
		}
		return nil
	})
}

func (l *hciLink) char(uuid string) (*goble.Characteristic, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c := l.chars[uuid]; c != nil {
		return c, nil
	}
	return nil, fmt.Errorf("%w: %s has no characteristic %s", ErrNoService, l.addr, uuid)
}

func (l *hciLink) MTU() int { return l.conn.TxMTU() }

func (l *hciLink) Read(ctx context.Context, uuid string) ([]byte, error) {
	ch, err := l.char(uuid)
	if err != nil {
		return nil, err
	}
	return call(ctx, l, "read "+uuid, func() ([]byte, error) { return l.c.ReadLongCharacteristic(ch) })
}

func (l *hciLink) Write(ctx context.Context, uuid string, v []byte) error {
	ch, err := l.char(uuid)
	if err != nil {
		return err
	}
	return l.do(ctx, "write "+uuid, func() error {
		if len(v) > l.MTU()-3 {
			return l.c.WriteLongCharacteristic(ch, v)
		}
		return l.c.WriteCharacteristic(ch, v, false)
	})
}

func (l *hciLink) Subscribe(ctx context.Context, uuid string, fn func([]byte)) error {
	ch, err := l.char(uuid)
	if err != nil {
		return err
	}
	return l.do(ctx, "subscribe "+uuid, func() error {
		return l.c.Subscribe(ch, false, func(v []byte) { fn(append([]byte(nil), v...)) })
	})
}

func (l *hciLink) Done() <-chan struct{} { return l.conn.Disconnected() }

// Close disconnects and waits (at most the link's timeout) for the
// disconnection to complete.
func (l *hciLink) Close() error {
	select {
	case <-l.conn.Disconnected():
		return nil
	default:
	}
	err := l.conn.Close()
	select {
	case <-l.conn.Disconnected():
	case <-time.After(l.timeout):
		if err == nil {
			err = fmt.Errorf("%w: %s: disconnection not confirmed within %s", ErrLinkTimeout, l.addr, l.timeout)
		}
	}
	return err
}
