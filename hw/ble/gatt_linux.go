package ble

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"beaconvend/app-protocol/vend"
	goble "beaconvend/hw/ble/goble"
	"beaconvend/hw/ble/goble/linux/att"
	"beaconvend/hw/ble/goble/linux/gatt"
)

// gattServe is one ServeGATT call: the attribute database every central
// is served from, the options, and the owner's link callback.
type gattServe struct {
	db     *att.DB
	o      GATTOpts
	link   func(Link)
	linkMu sync.Mutex     // one link call at a time, in order
	conns  sync.WaitGroup // serve goroutines
}

// closeWait bounds how long ServeGATT waits for the last central to go
// after disconnecting it (a Disconnect command times out in go-ble after
// 10 s; a dead controller ends every connection at once).
const closeWait = 12 * time.Second

// startAccept runs the accept loop for the adapter's lifetime. go-ble's
// HCI reader hands every peripheral connection to Accept and waits for it
// to be taken, so the loop never blocks: it refuses or hands the
// connection to a goroutine at once.
func (h *HCI) startAccept() {
	h.accepted.Add(1)
	go func() {
		defer h.accepted.Done()
		for {
			c, err := h.ctl.Accept()
			if err != nil {
				return // the transport ended (Close, or the adapter failed)
			}
			h.mu.Lock()
			g, busy := h.gatt, h.central != nil
			if g != nil && !busy {
				h.central, h.linked = c, true
				h.gstats.Connections++
				g.conns.Add(1)
			} else {
				h.gstats.Refused++
			}
			h.mu.Unlock()
			if g == nil || busy {
				h.log.Info("ble: gatt: central refused", "addr", addrOf(c), "serving", g != nil, "busy", busy)
				go c.Close() // HCI Disconnect; waits for the reader, so not on this goroutine
				continue
			}
			go h.serve(g, c)
		}
	}()
}

func addrOf(c goble.Conn) string {
	if a := c.RemoteAddr(); a != nil {
		return a.String()
	}
	return ""
}

// ServeGATT implements Peripheral on the adapter: see Peripheral. The
// attribute database is svc after go-ble's GAP (o.Name) and GATT services.
// Errors: ErrConfig, ErrRunning (already serving), ErrClosed, ErrRadio
// (the adapter failed).
func (h *HCI) ServeGATT(ctx context.Context, svc *goble.Service, o *GATTOpts, link func(Link)) error {
	if svc == nil || link == nil {
		return vend.Errorf(ErrConfig, "gatt: no service or link callback")
	}
	c, err := o.withDefaults()
	if err != nil {
		return err
	}
	h.mu.Lock()
	switch {
	case h.closed:
		h.mu.Unlock()
		return ErrClosed
	case h.gatt != nil:
		h.mu.Unlock()
		return fmt.Errorf("%w: gatt already served", ErrRunning)
	}
	// Building the database sets the handles in svc: under mu, so that two
	// ServeGATT calls never build it at once.
	srv, err := gatt.NewServerWithName(c.Name)
	if err == nil {
		err = srv.AddService(svc)
	}
	if err != nil {
		h.mu.Unlock()
		return fmt.Errorf("%w: gatt database: %w", ErrRadio, err)
	}
	g := &gattServe{db: srv.DB(), o: c, link: link}
	h.gatt = g
	h.mu.Unlock()

	select {
	case <-ctx.Done():
		err = ctx.Err()
	case <-h.ctl.Done():
		err = fmt.Errorf("%w: adapter failed while serving gatt: %w", ErrRadio, h.ctl.Error())
	}

	h.mu.Lock()
	h.gatt = nil // from now on every central is refused
	central := h.central
	h.mu.Unlock()
	if central != nil {
		central.Close()
	}
	done := make(chan struct{})
	go func() { g.conns.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(closeWait):
		err = errors.Join(err, fmt.Errorf("%w: gatt: central still connected %v after disconnecting it", ErrRadio, closeWait))
	}
	return err
}

// GATTStats returns the GATT host's counters.
func (h *HCI) GATTStats() GATTStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.gstats
}

// serve runs one central: the beacon goes busy and non-connectable, an
// ATT server answers the central from the database, a watchdog drops it
// after IdleTimeout of silence, and once it is gone the beacon goes
// connectable again before the next central can be accepted.
func (h *HCI) serve(g *gattServe, c goble.Conn) {
	defer g.conns.Done()
	log := g.o.Logger.With("addr", addrOf(c))
	log.Info("ble: gatt: central connected")
	ic := &idleConn{Conn: c, now: g.o.Now, sends: g.o.NotifyKeepsAlive}
	ic.touch()
	c.SetContext(context.WithValue(c.Context(), goble.ContextKeyCCC, make(map[uint16]uint16)))
	c.SetRxMTU(goble.MaxMTU)
	if as, err := att.NewServer(g.db, ic); err != nil {
		log.Warn("ble: gatt: att server", "err", err)
		go c.Close()
	} else {
		go as.Loop() // ends when the connection does
	}
	g.linkMu.Lock()
	g.link(LinkConnected)
	g.linkMu.Unlock()

	idle := g.o.IdleTimeout
	t := time.NewTimer(idle)
	defer t.Stop()
wait:
	for {
		select {
		case <-c.Disconnected():
			break wait
		case <-t.C:
			silent := g.o.Now().Sub(ic.last())
			if silent < idle {
				t.Reset(idle - silent)
				continue
			}
			log.Info("ble: gatt: idle central disconnected", "silent", silent)
			h.mu.Lock()
			h.gstats.IdleDrops++
			h.mu.Unlock()
			go c.Close()
			t.Reset(idle) // tries again if the Disconnect was lost
		}
	}
	log.Info("ble: gatt: central gone")
	h.mu.Lock()
	h.linked = false
	serving := h.gatt == g
	h.mu.Unlock()
	if serving { // else ServeGATT is returning and its caller sets the link
		g.linkMu.Lock()
		g.link(LinkListening)
		g.linkMu.Unlock()
	}
	h.mu.Lock()
	h.central = nil // only now may the next central be served
	h.mu.Unlock()
}

// idleConn is a central's connection that notes when the central last
// sent something (an L2CAP SDU read by the ATT server), and with
// NotifyKeepsAlive when the server last notified it.
type idleConn struct {
	goble.Conn
	now    func() time.Time
	sends  bool // notifications (and indications) count too
	lastNs atomic.Int64
}

func (c *idleConn) touch() { c.lastNs.Store(c.now().UnixNano()) }

func (c *idleConn) last() time.Time { return time.Unix(0, c.lastNs.Load()) }

// Write is the ATT server's: a response to a request (which already
// counted) or a notification or indication, which counts with sends.
func (c *idleConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if c.sends && err == nil && len(b) > 0 && (b[0] == 0x1b || b[0] == 0x1d) { // Handle Value Notification, Indication
		c.touch()
	}
	return n, err
}

func (c *idleConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.touch()
	}
	return n, err
}
