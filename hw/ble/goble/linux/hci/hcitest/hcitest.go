// Package hcitest is a scripted, in-process Bluetooth controller for
// tests of the go-ble fork's HCI, L2CAP, ATT and GATT layers without a
// radio.
//
// A [Controller] is an io.ReadWriteCloser carrying H4 packets, the same
// transport interface go-ble's HCI layer reads and writes on a Linux HCI
// user channel socket: install it with hci.HCI.SetTransport or
// ble.OptTransport before Init. It sits behind that interface and nothing
// else; everything above it (command flow control, connection handling,
// fragmentation, ATT) is the fork's real code.
//
// The controller answers every command with Command Complete (status 0,
// the return parameters Init reads: BD_ADDR, buffer sizes, TX power), LE
// Create Connection and Disconnect with Command Status; Disconnect is
// followed by Disconnection Complete. Tests inject LE Connection Complete,
// ACL data and Disconnection Complete, and read what the host sent.
// Sent ACL packets are acknowledged with Number Of Completed Packets
// unless Opts.HoldCompleted is set (a link that stopped moving).
//
// The HCI specification is Bluetooth Core Vol 4 Part E (HCI) and Vol 3
// Part A (L2CAP).
package hcitest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// Opcodes the controller treats specially (OGF<<10 | OCF).
const (
	OpDisconnect         = 0x0406
	OpReadBufferSize     = 0x1005
	OpReadBDADDR         = 0x1009
	OpLEReadBufferSize   = 0x2002
	OpLEReadAdvTxPower   = 0x2007
	OpLESetAdvEnable     = 0x200A
	OpLECreateConn       = 0x200D
	OpLECreateConnCancel = 0x200E
	cidATT               = 0x0004
	evtCommandComplete   = 0x0E
	evtCommandStatus     = 0x0F
	evtDisconnComplete   = 0x05
	evtNumCompletedPkts  = 0x13
	evtLEMeta            = 0x3E
	subLEConnComplete    = 0x01
	pktCommand           = 0x01
	pktACL               = 0x02
	pktEvent             = 0x04
	pbfStartFromHost     = 0x00
	pbfContinuing        = 0x01
	pbfStartFromCtrl     = 0x02
	defaultLEBufSize     = 27
	defaultLEBufCnt      = 4
)

// Roles of a connection, as LE Connection Complete reports the local
// device's role.
const (
	RoleCentral    = 0x00 // the local device dialled (go-ble's "master")
	RolePeripheral = 0x01 // a central connected to the local device ("slave")
)

// ErrTimeout is returned when the host did not send what a test waits for.
var ErrTimeout = errors.New("hcitest: timed out waiting for the host")

// ErrClosed is returned after Close.
var ErrClosed = errors.New("hcitest: closed")

// Opts configures a Controller. Zero values mean the defaults.
type Opts struct {
	LEBufSize int // LE ACL data packet length, default 27
	LEBufCnt  int // number of LE ACL buffers, default 4
	// HoldCompleted keeps the controller from acknowledging sent ACL
	// packets (no Number Of Completed Packets), as a link whose peer
	// stopped listening.
	HoldCompleted bool
	// OnCommand, if set, is called for every command before the default
	// answer; returning handled true replaces that answer by the events
	// it returns (each an H4 event packet, see Event).
	OnCommand func(op uint16, params []byte) (events [][]byte, handled bool)
}

// Command is a command the host sent.
type Command struct {
	Op     uint16
	Params []byte
}

// Controller is the scripted controller. Its methods are safe for
// concurrent use.
type Controller struct {
	o   Opts
	out chan []byte // to the host
	mu  sync.Mutex
	// closed is closed by Close.
	closed  chan struct{}
	once    sync.Once
	cmds    []Command
	cmdCond chan struct{} // closed and replaced on every command
	acl     map[uint16]*aclState
	aclCond chan struct{}
	sentACL int
	hold    atomic.Bool
}

type aclState struct {
	partial []byte // L2CAP PDU being reassembled
	pdus    [][]byte
}

// New returns a controller; nil o means the defaults.
func New(o *Opts) *Controller {
	c := &Controller{out: make(chan []byte, 1024), closed: make(chan struct{}),
		cmdCond: make(chan struct{}), acl: map[uint16]*aclState{}, aclCond: make(chan struct{})}
	if o != nil {
		c.o = *o
	}
	if c.o.LEBufSize == 0 {
		c.o.LEBufSize = defaultLEBufSize
	}
	if c.o.LEBufCnt == 0 {
		c.o.LEBufCnt = defaultLEBufCnt
	}
	c.hold.Store(c.o.HoldCompleted)
	return c
}

// Read returns the next packet for the host, blocking until there is one;
// after Close it returns io.EOF.
func (c *Controller) Read(p []byte) (int, error) {
	select {
	case <-c.closed:
		return 0, io.EOF
	case b := <-c.out:
		select {
		case <-c.closed:
			return 0, io.EOF
		default:
		}
		return copy(p, b), nil
	}
}

// Write takes one packet from the host.
func (c *Controller) Write(p []byte) (int, error) {
	select {
	case <-c.closed:
		return 0, ErrClosed
	default:
	}
	if len(p) == 0 {
		return 0, errors.New("hcitest: empty packet")
	}
	b := append([]byte(nil), p...)
	switch b[0] {
	case pktCommand:
		if len(b) < 4 || int(b[3]) != len(b)-4 {
			return 0, fmt.Errorf("hcitest: malformed command % x", b)
		}
		c.command(binary.LittleEndian.Uint16(b[1:3]), b[4:])
	case pktACL:
		if len(b) < 5 || int(binary.LittleEndian.Uint16(b[3:5])) != len(b)-5 {
			return 0, fmt.Errorf("hcitest: malformed ACL packet % x", b)
		}
		c.acldata(b[1:])
	default:
		return 0, fmt.Errorf("hcitest: unexpected packet type %#x", b[0])
	}
	return len(p), nil
}

// Close makes Read return io.EOF and Write fail. Later calls return nil.
func (c *Controller) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

// Closed reports whether Close was called (the host closes its transport
// on HCI.Close).
func (c *Controller) Closed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

func (c *Controller) send(pkt []byte) {
	select {
	case c.out <- pkt:
	case <-c.closed:
	}
}

// Event returns an H4 event packet with the given code and parameters.
func Event(code byte, params ...byte) []byte {
	return append([]byte{pktEvent, code, byte(len(params))}, params...)
}

func commandComplete(op uint16, ret ...byte) []byte {
	return Event(evtCommandComplete, append([]byte{1, byte(op), byte(op >> 8)}, ret...)...)
}

// CommandStatus returns a Command Status event for op.
func CommandStatus(op uint16, status byte) []byte {
	return Event(evtCommandStatus, status, 1, byte(op), byte(op>>8))
}

func (c *Controller) command(op uint16, params []byte) {
	c.mu.Lock()
	c.cmds = append(c.cmds, Command{op, params})
	close(c.cmdCond)
	c.cmdCond = make(chan struct{})
	c.mu.Unlock()
	if c.o.OnCommand != nil {
		if evs, ok := c.o.OnCommand(op, params); ok {
			for _, e := range evs {
				c.send(e)
			}
			return
		}
	}
	switch op {
	case OpReadBDADDR:
		c.send(commandComplete(op, 0, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01))
	case OpReadBufferSize: // ACL len 27, SCO 0, ACL count 1, SCO 0
		c.send(commandComplete(op, 0, 27, 0, 0, 1, 0, 0, 0))
	case OpLEReadBufferSize:
		n := uint16(c.o.LEBufSize)
		c.send(commandComplete(op, 0, byte(n), byte(n>>8), byte(c.o.LEBufCnt)))
	case OpLEReadAdvTxPower:
		c.send(commandComplete(op, 0, 0))
	case OpLECreateConn:
		c.send(CommandStatus(op, 0))
	case OpDisconnect:
		c.send(CommandStatus(op, 0))
		if len(params) >= 3 {
			c.DisconnectReason(binary.LittleEndian.Uint16(params), 0x16) // local host
		}
	default:
		c.send(commandComplete(op, 0))
	}
}

func (c *Controller) acldata(b []byte) {
	h := binary.LittleEndian.Uint16(b) & 0x0fff
	pbf := (b[1] >> 4) & 0x3
	data := b[4:]
	c.mu.Lock()
	c.sentACL++
	st := c.acl[h]
	if st == nil {
		st = &aclState{}
		c.acl[h] = st
	}
	if pbf == pbfContinuing {
		st.partial = append(st.partial, data...)
	} else {
		st.partial = append([]byte(nil), data...)
	}
	if len(st.partial) >= 4 && len(st.partial) >= 4+int(binary.LittleEndian.Uint16(st.partial)) {
		st.pdus = append(st.pdus, st.partial)
		st.partial = nil
		close(c.aclCond)
		c.aclCond = make(chan struct{})
	}
	c.mu.Unlock()
	if !c.hold.Load() {
		c.Completed(h, 1)
	}
}

// Hold turns acknowledging sent ACL packets off (true) or on (false), as
// Opts.HoldCompleted.
func (c *Controller) Hold(on bool) { c.hold.Store(on) }

// Completed reports n ACL packets of handle h as sent (Number Of Completed
// Packets), returning the host's buffers.
func (c *Controller) Completed(h uint16, n int) {
	c.send(Event(evtNumCompletedPkts, 1, byte(h), byte(h>>8), byte(n), byte(n>>8)))
}

// Connect reports a new connection with handle h in the given local role
// (LE Connection Complete, status 0), peer address 11:22:33:44:55:66.
func (c *Controller) Connect(h uint16, role byte) {
	c.send(ConnectionComplete(h, role, 0))
}

// ConnectionComplete returns an LE Connection Complete event.
func ConnectionComplete(h uint16, role, status byte) []byte {
	return Event(evtLEMeta, subLEConnComplete, status, byte(h), byte(h>>8), role,
		0x00, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, // public peer address
		0x18, 0x00, 0x00, 0x00, 0xc8, 0x00, 0x00) // interval 30 ms, latency 0, timeout 2 s, SCA
}

// Disconnect reports that connection h ended because the remote user
// terminated it (reason 0x13).
func (c *Controller) Disconnect(h uint16) { c.DisconnectReason(h, 0x13) }

// DisconnectReason reports Disconnection Complete for h with reason.
func (c *Controller) DisconnectReason(h uint16, reason byte) {
	c.send(Event(evtDisconnComplete, 0, byte(h), byte(h>>8), reason))
}

// SendACL sends one raw ACL data packet to the host: handle h, packet
// boundary flag pbf (0x02 first, 0x01 continuing) and data as is.
func (c *Controller) SendACL(h uint16, pbf byte, data []byte) {
	b := []byte{pktACL, byte(h), byte(h>>8&0x0f) | pbf<<4, byte(len(data)), byte(len(data) >> 8)}
	c.send(append(b, data...))
}

// SendRaw sends b to the host as is (a whole H4 packet).
func (c *Controller) SendRaw(b []byte) { c.send(append([]byte(nil), b...)) }

// SendATT sends an ATT PDU from the peer on connection h: an L2CAP B-frame
// on the ATT channel, fragmented into ACL packets of at most 27 bytes.
func (c *Controller) SendATT(h uint16, pdu []byte) {
	l2 := make([]byte, 4, 4+len(pdu))
	binary.LittleEndian.PutUint16(l2, uint16(len(pdu)))
	binary.LittleEndian.PutUint16(l2[2:], cidATT)
	l2 = append(l2, pdu...)
	pbf := byte(pbfStartFromCtrl)
	for len(l2) > 0 {
		n := min(len(l2), 27)
		c.SendACL(h, pbf, l2[:n])
		pbf = pbfContinuing
		l2 = l2[n:]
	}
}

// ReadATT returns the next ATT PDU the host sent on connection h (the
// payload of a reassembled L2CAP frame on the ATT channel), waiting up to
// timeout. Frames on other channels are skipped.
func (c *Controller) ReadATT(h uint16, timeout time.Duration) ([]byte, error) {
	deadline := time.After(timeout)
	for {
		c.mu.Lock()
		st := c.acl[h]
		for st != nil && len(st.pdus) > 0 {
			p := st.pdus[0]
			st.pdus = st.pdus[1:]
			if binary.LittleEndian.Uint16(p[2:]) == cidATT {
				c.mu.Unlock()
				return p[4:], nil
			}
		}
		wait := c.aclCond
		c.mu.Unlock()
		select {
		case <-wait:
		case <-deadline:
			return nil, ErrTimeout
		case <-c.closed:
			return nil, ErrClosed
		}
	}
}

// DrainATT drops every ATT PDU received so far on h.
func (c *Controller) DrainATT(h uint16) {
	c.mu.Lock()
	if st := c.acl[h]; st != nil {
		st.pdus = nil
	}
	c.mu.Unlock()
}

// Commands returns the commands the host sent so far.
func (c *Controller) Commands() []Command {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Command(nil), c.cmds...)
}

// WaitCommand waits up to timeout for the host to send a command op (at
// index from or later in Commands) that satisfies match (nil: any), and
// returns its index.
func (c *Controller) WaitCommand(op uint16, from int, match func(params []byte) bool, timeout time.Duration) (int, error) {
	deadline := time.After(timeout)
	for {
		c.mu.Lock()
		for i := from; i < len(c.cmds); i++ {
			if c.cmds[i].Op == op && (match == nil || match(c.cmds[i].Params)) {
				c.mu.Unlock()
				return i, nil
			}
		}
		wait := c.cmdCond
		c.mu.Unlock()
		select {
		case <-wait:
		case <-deadline:
			return 0, fmt.Errorf("%w: command %#04x", ErrTimeout, op)
		case <-c.closed:
			return 0, ErrClosed
		}
	}
}

// SentACL returns how many ACL packets the host sent.
func (c *Controller) SentACL() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sentACL
}
