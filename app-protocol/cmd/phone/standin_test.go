package main

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"sync"
	"time"

	"beaconvend/app-protocol/gattapi"
	pb "beaconvend/app-protocol/provision"
	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
	"beaconvend/hw/ble"
	goble "beaconvend/hw/ble/goble"
)

// standIn is a stand-in for the radio only: it answers the phone's
// central as a board's GATT service would (app-protocol/GATT.md), with
// the contract's own code doing the board's work — gattapi.Reassembler
// for chunks, gattapi.CheckRelay for a relayed grant, signed.SignUsage
// for the receipt, gattapi.CheckAck for the acknowledgement,
// provision.Open and provision.Decode for a claim — and ATT application
// errors (goble.ATTError, as go-ble's client returns them) for refusals.
// The phone's logic and the cloud it talks to are the real ones.
type standIn struct {
	mtu int

	mu        sync.Mutex
	done      chan struct{}
	closeOnce sync.Once

	// Provisioned board (relay).
	device   string
	machines []string
	keys     signed.Keys
	signKey  ed25519.PrivateKey
	seq      uint64
	seen     map[vend.SessionID]bool             // the journal's accepted sessions
	nonces   map[[signed.RelayNonceLen]byte]bool // the nonce log
	now      func() time.Time
	units    uint64 // units the machine delivers (capped by the grant)
	dropAt   int    // disconnect at this Progress notification while running (0: never)
	notified int

	grantR   gattapi.Reassembler
	grants   [][]byte // every RelayGrant message written
	progress gattapi.Progress
	notify   func([]byte)
	session  vend.SessionID
	report   []byte
	status   gattapi.ReceiptStatus
	accepted int
	acks     []gattapi.Ack
	cloudAck bool

	// Registration mode (claim).
	sealPriv  *ecdh.PrivateKey
	bundleR   gattapi.Reassembler
	bundle    *pb.Bundle
	bundleRaw []byte
}

var _ ble.GATTLink = (*standIn)(nil)

func newStandIn() *standIn {
	return &standIn{mtu: ble.DefaultCentralMTU, done: make(chan struct{}), seen: map[vend.SessionID]bool{},
		nonces: map[[signed.RelayNonceLen]byte]bool{}, now: time.Now, units: 500,
		grantR: gattapi.Reassembler{Max: gattapi.MaxRelayGrant}, bundleR: gattapi.Reassembler{Max: gattapi.MaxBundle}}
}

// connect is a new connection to the same board: its journal (seen
// sessions, nonces, claim) stays, the link state starts over.
func (s *standIn) connect() *standIn {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done = make(chan struct{})
	s.closeOnce = sync.Once{}
	s.notify, s.notified = nil, 0
	s.grantR.Reset()
	s.bundleR.Reset()
	return s
}

func (s *standIn) MTU() int { return s.mtu }

func (s *standIn) Done() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.done
}

func (s *standIn) Close() error {
	s.mu.Lock()
	d := s.done
	s.mu.Unlock()
	s.closeOnce.Do(func() { close(d) })
	return nil
}

func (s *standIn) alive(ctx context.Context) error {
	select {
	case <-s.Done():
		return ble.ErrDisconnected
	default:
	}
	return ctx.Err()
}

func (s *standIn) Read(ctx context.Context, uuid string) ([]byte, error) {
	if err := s.alive(ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch uuid {
	case gattapi.ProgressUUID:
		return s.progress.MarshalBinary()
	case gattapi.ReceiptUUID:
		return gattapi.Receipt{Status: s.status, Usage: s.report}.MarshalBinary()
	case gattapi.ClaimInfoUUID:
		ci := gattapi.ClaimInfo{SealKey: s.sealPriv.PublicKey().Bytes()}
		if s.bundle != nil {
			ci.State, ci.Device = gattapi.Claimed, s.bundle.DeviceID
			ci.SignKey = ed25519.NewKeyFromSeed(s.bundle.DeviceKey).Public().(ed25519.PublicKey)
		}
		return ci.MarshalBinary()
	}
	return nil, goble.ErrReadNotPerm
}

func (s *standIn) Subscribe(ctx context.Context, uuid string, fn func([]byte)) error {
	if err := s.alive(ctx); err != nil {
		return err
	}
	if uuid != gattapi.ProgressUUID {
		return goble.ErrReqNotSupp
	}
	s.mu.Lock()
	s.notify = fn
	s.mu.Unlock()
	return nil
}

func refuse(err error) error { return goble.ATTError(gattapi.ATTCode(err)) }

func (s *standIn) Write(ctx context.Context, uuid string, v []byte) error {
	if err := s.alive(ctx); err != nil {
		return err
	}
	if len(v) > gattapi.MaxValue { // a long write is at most 512 bytes
		return goble.ErrInvalAttrValueLen
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch uuid {
	case gattapi.GrantUUID:
		msg, ok, err := s.grantR.Add(v)
		if err != nil {
			return refuse(err)
		}
		if ok {
			s.grants = append(s.grants, msg)
			return s.grantLocked(msg)
		}
		return nil
	case gattapi.AckUUID:
		var a gattapi.Ack
		if err := a.UnmarshalBinary(v); err != nil {
			return refuse(err)
		}
		cloud, err := gattapi.CheckAck(a, s.device, s.session, s.report, s.keys)
		if err != nil {
			return refuse(err)
		}
		s.acks = append(s.acks, a)
		s.cloudAck = s.cloudAck || cloud
		s.status = gattapi.ReceiptAcked
		return nil
	case gattapi.BundleUUID:
		msg, ok, err := s.bundleR.Add(v)
		if err != nil {
			return refuse(err)
		}
		if !ok {
			return nil
		}
		if s.bundle != nil {
			return refuse(gattapi.ErrNotRegistration)
		}
		doc, err := pb.Open(s.sealPriv, msg)
		if err != nil {
			return refuse(err)
		}
		b, err := pb.Decode(bytes.NewReader(doc))
		if err != nil {
			return goble.ATTError(0x9F)
		}
		s.bundle, s.bundleRaw = b, doc
		return nil
	}
	return goble.ErrWriteNotPerm
}

// grantLocked checks a relayed grant as the board does and, accepted,
// runs the machine in the background.
func (s *standIn) grantLocked(msg []byte) error {
	g, tk, err := gattapi.CheckRelay(msg, gattapi.RelayCheck{Keys: s.keys, Device: s.device, Machines: s.machines, Now: s.now(), Skew: time.Minute,
		Seen:      func(id vend.SessionID) (bool, error) { return s.seen[id], nil },
		NonceSeen: func(n [signed.RelayNonceLen]byte) (bool, error) { return s.nonces[n], nil }})
	if err != nil {
		s.progress = gattapi.Progress{State: gattapi.StateRefused, Reason: gattapi.ATTCode(err)}
		s.notifyLocked()
		return refuse(err)
	}
	s.seen[g.Session], s.nonces[tk.Nonce] = true, true
	s.accepted++
	s.session, s.report, s.status = g.Session, nil, gattapi.ReceiptNone
	s.progress = gattapi.Progress{State: gattapi.StateAccepted}
	s.notifyLocked()
	go s.run(g, s.done)
	return nil
}

func (s *standIn) notifyLocked() {
	if s.notify == nil {
		return
	}
	b, _ := s.progress.MarshalBinary()
	s.notify(b)
	if s.progress.State == gattapi.StateRunning {
		s.notified++
		if s.dropAt > 0 && s.notified >= s.dropAt {
			s.closeOnce.Do(func() { close(s.done) })
		}
	}
}

// run delivers the grant's units in five steps, then signs the report.
func (s *standIn) run(g signed.Grant, done <-chan struct{}) {
	started := s.now()
	total := min(s.units, g.CapUnits)
	for i := uint64(1); i <= 5; i++ {
		select {
		case <-done:
			// The link is gone; the board would go on and report over
			// MQTT. The stand-in stops here.
			return
		case <-time.After(50 * time.Millisecond):
		}
		s.mu.Lock()
		u := total * i / 5
		amt, _ := g.Price.Cost(u)
		s.progress = gattapi.Progress{State: gattapi.StateRunning, Units: u, Amount: amt}
		s.notifyLocked()
		s.mu.Unlock()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	amt, _ := g.Price.Cost(total)
	rep, err := signed.SignUsage(s.signKey, signed.Usage{Device: s.device, Seq: s.seq, Session: g.Session, Machine: g.Machine, Slot: g.Slot,
		Unit: g.Unit, Units: total, Price: g.Price, Currency: g.Currency, Amount: amt, StartedAt: started, EndedAt: s.now(),
		MeterEnd: total, Outcome: vend.OutcomeCompleted})
	if err != nil {
		s.progress = gattapi.Progress{State: gattapi.StateRefused, Reason: 0x9F}
		s.notifyLocked()
		return
	}
	s.report, s.status = rep, gattapi.ReceiptReady
	s.progress = gattapi.Progress{State: gattapi.StateEnded, Units: total, Amount: amt}
	s.notifyLocked()
}

func (s *standIn) snapshot() (accepted int, acks []gattapi.Ack, cloudAck bool, report []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted, append([]gattapi.Ack(nil), s.acks...), s.cloudAck, append([]byte(nil), s.report...)
}
