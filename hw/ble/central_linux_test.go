package ble

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"sync"
	"testing"
	"time"

	"beaconvend/app-protocol/gattapi"
	"beaconvend/app-protocol/vend"
	goble "beaconvend/hw/ble/goble"
	"beaconvend/hw/ble/goble/linux/hci/hcitest"
)

// These tests run the central (HCI.DialGATT, Board) on go-ble's real HCI,
// L2CAP, ATT and GATT client code against the fork's real ATT server: two
// HCI stacks, each on a scripted controller (hcitest), with the test
// carrying ATT PDUs between the controllers as the air would. The
// peripheral serves a scripted board service (testBoard) with ServeGATT,
// as the board's GATT host does.

const (
	hCentral    = 0x40
	hPeripheral = 0x41
)

// air bridges a central's and a peripheral's scripted controllers.
type air struct {
	c, p   *hcitest.Controller
	mu     sync.Mutex
	paused bool // PDUs from the central are dropped: a peripheral that stopped answering
	stop   chan struct{}
	wg     sync.WaitGroup
}

func newAir(t *testing.T) *air {
	t.Helper()
	a := &air{stop: make(chan struct{})}
	a.c = hcitest.New(&hcitest.Opts{OnCommand: func(op uint16, p []byte) ([][]byte, bool) {
		switch op {
		case hcitest.OpLECreateConn:
			a.p.Connect(hPeripheral, hcitest.RolePeripheral)
			return [][]byte{hcitest.CommandStatus(op, 0), hcitest.ConnectionComplete(hCentral, hcitest.RoleCentral, 0)}, true
		case hcitest.OpDisconnect:
			a.p.Disconnect(hPeripheral)
		}
		return nil, false
	}})
	a.p = hcitest.New(&hcitest.Opts{OnCommand: func(op uint16, p []byte) ([][]byte, bool) {
		if op == hcitest.OpDisconnect {
			a.c.Disconnect(hCentral)
		}
		return nil, false
	}})
	pump := func(from, to *hcitest.Controller, hf, ht uint16, central bool) {
		defer a.wg.Done()
		for {
			select {
			case <-a.stop:
				return
			default:
			}
			pdu, err := from.ReadATT(hf, 20*time.Millisecond)
			if errors.Is(err, hcitest.ErrClosed) {
				return
			}
			if err != nil {
				continue
			}
			a.mu.Lock()
			drop := central && a.paused
			a.mu.Unlock()
			if !drop {
				to.SendATT(ht, pdu)
			}
		}
	}
	a.wg.Add(2)
	go pump(a.c, a.p, hCentral, hPeripheral, true)
	go pump(a.p, a.c, hPeripheral, hCentral, false)
	t.Cleanup(func() { close(a.stop); a.wg.Wait() })
	return a
}

func (a *air) pause(on bool) { a.mu.Lock(); a.paused = on; a.mu.Unlock() }

// drop ends the link from the peripheral's side (it went out of range).
func (a *air) drop() {
	a.p.Disconnect(hPeripheral)
	a.c.Disconnect(hCentral)
}

// stackOn opens an HCI backend on ctl.
func stackOn(t *testing.T, ctl *hcitest.Controller, accept bool) *HCI {
	t.Helper()
	type res struct {
		dev any
		err error
	}
	ch := make(chan res, 1)
	go func() {
		d, err := initHCI(goble.OptTransport(ctl))
		ch <- res{d, err}
	}()
	var r res
	select {
	case r = <-ch:
	case <-time.After(gwait):
		t.Fatal("go-ble's HCI Init did not return")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	ho := DefaultHCIOpts()
	min, max, err := advInterval(ho)
	if err != nil {
		t.Fatal(err)
	}
	h := newHCI(r.dev.(controller), ho, min, max)
	if accept {
		h.startAccept()
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// testBoard is a scripted board service: it reassembles Grant and Bundle
// chunks, refuses a grant whose signed grant starts with 'X' with
// grant.replayed, and after an accepted grant notifies accepted, running
// and ended; its Receipt is receiptLen bytes (longer than ATT_MTU−1).
type testBoard struct {
	svc     *goble.Service
	seal    *ecdh.PrivateKey
	receipt []byte

	mu      sync.Mutex
	grantR  gattapi.Reassembler
	bundleR gattapi.Reassembler
	grants  [][]byte
	bundles [][]byte
	acks    [][]byte
	prog    gattapi.Progress
	changes chan gattapi.Progress
}

func newTestBoard(t *testing.T) *testBoard {
	t.Helper()
	seal, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	usage := make([]byte, 400)
	rand.Read(usage)
	rc, err := gattapi.Receipt{Status: gattapi.ReceiptReady, Usage: usage}.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	b := &testBoard{seal: seal, receipt: rc, changes: make(chan gattapi.Progress, 8),
		grantR: gattapi.Reassembler{Max: gattapi.MaxRelayGrant}, bundleR: gattapi.Reassembler{Max: gattapi.MaxBundle}}
	s := goble.NewService(goble.MustParse(gattapi.ServiceUUID))
	read := func(f func() []byte) goble.ReadHandler {
		return goble.ReadHandlerFunc(func(req goble.Request, rsp goble.ResponseWriter) {
			v := f()
			if req.Offset() > len(v) {
				rsp.SetStatus(goble.ErrInvalidOffset)
				return
			}
			v = v[req.Offset():]
			rsp.Write(v[:min(len(v), rsp.Cap())])
		})
	}
	s.NewCharacteristic(goble.MustParse(gattapi.GrantUUID)).HandleWrite(goble.WriteHandlerFunc(func(req goble.Request, rsp goble.ResponseWriter) {
		b.mu.Lock()
		defer b.mu.Unlock()
		msg, done, err := b.grantR.Add(req.Data())
		if err != nil {
			rsp.SetStatus(goble.ATTError(gattapi.ATTCode(err)))
			return
		}
		if !done {
			return
		}
		b.grants = append(b.grants, msg)
		var rg gattapi.RelayGrant
		if err := rg.UnmarshalBinary(msg); err != nil {
			rsp.SetStatus(goble.ATTError(gattapi.ATTCode(err)))
			return
		}
		if rg.Grant[0] == 'X' {
			b.prog = gattapi.Progress{State: gattapi.StateRefused, Reason: 0x8D}
			rsp.SetStatus(goble.ATTError(0x8D))
			return
		}
		for _, p := range []gattapi.Progress{{State: gattapi.StateAccepted}, {State: gattapi.StateRunning, Units: 10, Amount: 5}, {State: gattapi.StateEnded, Units: 20, Amount: 10}} {
			b.prog = p
			b.changes <- p
		}
	}))
	pc := s.NewCharacteristic(goble.MustParse(gattapi.ProgressUUID))
	pc.HandleRead(read(func() []byte {
		b.mu.Lock()
		defer b.mu.Unlock()
		v, _ := b.prog.MarshalBinary()
		return v
	}))
	pc.HandleNotify(goble.NotifyHandlerFunc(func(req goble.Request, n goble.Notifier) {
		for {
			select {
			case <-n.Context().Done():
				return
			case p := <-b.changes:
				v, _ := p.MarshalBinary()
				if _, err := n.Write(v); err != nil {
					return
				}
			}
		}
	}))
	s.NewCharacteristic(goble.MustParse(gattapi.ReceiptUUID)).HandleRead(read(func() []byte { return b.receipt }))
	s.NewCharacteristic(goble.MustParse(gattapi.AckUUID)).HandleWrite(goble.WriteHandlerFunc(func(req goble.Request, rsp goble.ResponseWriter) {
		b.mu.Lock()
		b.acks = append(b.acks, append([]byte(nil), req.Data()...))
		b.mu.Unlock()
	}))
	s.NewCharacteristic(goble.MustParse(gattapi.ClaimInfoUUID)).HandleRead(read(func() []byte {
		v, _ := gattapi.ClaimInfo{SealKey: b.seal.PublicKey().Bytes()}.MarshalBinary()
		return v
	}))
	s.NewCharacteristic(goble.MustParse(gattapi.BundleUUID)).HandleWrite(goble.WriteHandlerFunc(func(req goble.Request, rsp goble.ResponseWriter) {
		b.mu.Lock()
		defer b.mu.Unlock()
		msg, done, err := b.bundleR.Add(req.Data())
		if err != nil {
			rsp.SetStatus(goble.ATTError(gattapi.ATTCode(err)))
			return
		}
		if done {
			b.bundles = append(b.bundles, msg)
		}
	}))
	b.svc = s
	return b
}

// centralRig is a central and a peripheral serving a testBoard.
type centralRig struct {
	air     *air
	periph  *HCI
	central *HCI
	board   *testBoard
}

// waitFree waits until the peripheral has finished with its last central
// (its disconnection handled): only then is a new central served, not
// refused as a second one.
func (r *centralRig) waitFree(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(gwait); ; time.Sleep(5 * time.Millisecond) {
		r.periph.mu.Lock()
		free := r.periph.central == nil
		r.periph.mu.Unlock()
		if free {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the peripheral never let its central go")
		}
	}
}

func newCentralRig(t *testing.T) *centralRig {
	t.Helper()
	a := newAir(t)
	periph := stackOn(t, a.p, true)
	central := stackOn(t, a.c, false)
	tb := newTestBoard(t)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- periph.ServeGATT(ctx, tb.svc, &GATTOpts{IdleTimeout: time.Minute, NotifyKeepsAlive: true}, func(Link) {})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-served:
		case <-time.After(2 * closeWait):
			t.Error("ServeGATT did not return")
		}
	})
	for deadline := time.Now().Add(gwait); ; time.Sleep(5 * time.Millisecond) {
		periph.mu.Lock()
		serving := periph.gatt != nil
		periph.mu.Unlock()
		if serving {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the peripheral never served")
		}
	}
	return &centralRig{air: a, periph: periph, central: central, board: tb}
}

func (r *centralRig) dial(t *testing.T, o *CentralOpts) *Board {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), gwait)
	defer cancel()
	l, err := r.central.DialGATT(ctx, "11:22:33:44:55:66", o)
	if err != nil {
		t.Fatalf("DialGATT: %v", err)
	}
	b := NewBoard(l)
	t.Cleanup(func() { b.Close() })
	return b
}

func grantOf(n int, first byte) gattapi.RelayGrant {
	g := bytes.Repeat([]byte{'g'}, n)
	g[0] = first
	return gattapi.RelayGrant{Grant: g, Ticket: bytes.Repeat([]byte{'t'}, 150)}
}

// The happy path at MTU 247: the grant in Write Request chunks, Progress
// notified to the end, the receipt read whole past ATT_MTU−1, the ack and
// the claim info; a refused grant comes back as its gattapi code.
func TestCentralRelayOverATT(t *testing.T) {
	r := newCentralRig(t)
	b := r.dial(t, nil)
	if mtu := b.l.MTU(); mtu != DefaultCentralMTU {
		t.Fatalf("MTU %d, want %d", mtu, DefaultCentralMTU)
	}
	ctx, cancel := context.WithTimeout(context.Background(), gwait)
	defer cancel()
	got := make(chan gattapi.Progress, 8)
	if err := b.SubscribeProgress(ctx, func(p gattapi.Progress) { got <- p }); err != nil {
		t.Fatalf("SubscribeProgress: %v", err)
	}
	g := grantOf(400, 'G')
	if err := b.WriteGrant(ctx, g); err != nil {
		t.Fatalf("WriteGrant: %v", err)
	}
	want, _ := g.MarshalBinary()
	r.board.mu.Lock()
	if len(r.board.grants) != 1 || !bytes.Equal(r.board.grants[0], want) {
		t.Fatalf("the board reassembled %d grants", len(r.board.grants))
	}
	r.board.mu.Unlock()
	for _, st := range []gattapi.RelayState{gattapi.StateAccepted, gattapi.StateRunning, gattapi.StateEnded} {
		select {
		case p := <-got:
			if p.State != st {
				t.Fatalf("notified %+v, want state %d", p, st)
			}
		case <-time.After(gwait):
			t.Fatalf("no notification of state %d", st)
		}
	}
	rc, err := b.ReadReceipt(ctx)
	if err != nil || rc.Status != gattapi.ReceiptReady || len(rc.Usage) != 400 {
		t.Fatalf("ReadReceipt = %d bytes status %d, %v", len(rc.Usage), rc.Status, err)
	}
	if v, _ := rc.MarshalBinary(); !bytes.Equal(v, r.board.receipt) {
		t.Fatal("the receipt read differs from the board's")
	}
	if err := b.WriteAck(ctx, gattapi.Ack{Kind: gattapi.AckCloud, CloudAck: []byte("signed ack")}); err != nil {
		t.Fatalf("WriteAck: %v", err)
	}
	ci, err := b.ReadClaimInfo(ctx)
	if err != nil || !bytes.Equal(ci.SealKey, r.board.seal.PublicKey().Bytes()) {
		t.Fatalf("ReadClaimInfo = %+v, %v", ci, err)
	}
	err = b.WriteGrant(ctx, grantOf(400, 'X'))
	var re *RefusedError
	if !errors.As(err, &re) || re.Code != "grant.replayed" || re.ATT != 0x8D || vend.CodeOf(err) != "grant.replayed" || vend.KindOf(err) != vend.Conflict {
		t.Fatalf("refused grant: %v, want grant.replayed", err)
	}
	if p, err := b.ReadProgress(ctx); err != nil || p.State != gattapi.StateRefused || ATTCodeName(p.Reason) != "grant.replayed" {
		t.Fatalf("ReadProgress after the refusal = %+v, %v", p, err)
	}
}

// At the default MTU of 23 a 2000-byte bundle needs more than MaxChunks
// Write Requests, so it goes as 512-byte chunks by long writes; the
// receipt is read with many Read Blobs.
func TestCentralLongWritesAtSmallMTU(t *testing.T) {
	r := newCentralRig(t)
	b := r.dial(t, &CentralOpts{MTU: 23})
	ctx, cancel := context.WithTimeout(context.Background(), 2*gwait)
	defer cancel()
	bundle := make([]byte, 2000)
	rand.Read(bundle)
	if err := b.WriteBundle(ctx, bundle); err != nil {
		t.Fatalf("WriteBundle: %v", err)
	}
	r.board.mu.Lock()
	if len(r.board.bundles) != 1 || !bytes.Equal(r.board.bundles[0], bundle) {
		t.Fatalf("the board reassembled %d bundles", len(r.board.bundles))
	}
	r.board.mu.Unlock()
	if rc, err := b.ReadReceipt(ctx); err != nil || len(rc.Usage) != 400 {
		t.Fatalf("ReadReceipt at MTU 23 = %d bytes, %v", len(rc.Usage), err)
	}
}

// A link that goes down while the phone follows notifications ends every
// later call with ErrDisconnected at once; a peripheral that stops
// answering ends the call with ErrLinkTimeout within the bound and drops
// the link.
func TestCentralDisconnectAndTimeout(t *testing.T) {
	r := newCentralRig(t)
	b := r.dial(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), gwait)
	defer cancel()
	got := make(chan gattapi.Progress, 8)
	if err := b.SubscribeProgress(ctx, func(p gattapi.Progress) { got <- p }); err != nil {
		t.Fatal(err)
	}
	r.board.changes <- gattapi.Progress{State: gattapi.StateRunning, Units: 1, Amount: 1}
	select {
	case <-got:
	case <-time.After(gwait):
		t.Fatal("no notification")
	}
	r.air.drop()
	select {
	case <-b.Done():
	case <-time.After(gwait):
		t.Fatal("Done not closed after the disconnection")
	}
	start := time.Now()
	if _, err := b.ReadReceipt(ctx); !errors.Is(err, ErrDisconnected) || time.Since(start) > time.Second {
		t.Fatalf("ReadReceipt after the drop = %v after %v, want ErrDisconnected at once", err, time.Since(start))
	}

	r.waitFree(t)
	b2 := r.dial(t, &CentralOpts{OpTimeout: 300 * time.Millisecond})
	r.air.pause(true)
	start = time.Now()
	_, err := b2.ReadReceipt(ctx)
	if !errors.Is(err, ErrLinkTimeout) || time.Since(start) > 2*time.Second {
		t.Fatalf("ReadReceipt from a silent peripheral = %v after %v, want ErrLinkTimeout", err, time.Since(start))
	}
	select {
	case <-b2.Done():
	case <-time.After(gwait):
		t.Fatal("the link was not dropped after the timeout")
	}
}
