package gattsvc

import (
	"log/slog"
	"sync"
	"time"

	"beaconvend/app-protocol/gattapi"
	"beaconvend/app-protocol/vend"
	goble "beaconvend/hw/ble/goble"
)

// Relay is what the service needs of the controller: the verdict on a
// relayed grant, the progress and receipt of the last relayed session,
// and the acknowledgement of its receipt. Its methods are called from the
// ATT server's goroutine (Grant, Receipt, Ack) and the notifier's
// (Progress); they must be safe for concurrent use and should return
// within a journal commit or two.
type Relay interface {
	// Grant takes a reassembled RelayGrant message (at most
	// gattapi.MaxRelayGrant bytes) and starts its session, or returns why
	// not: an error with a code of gattapi.ATTCodes, others are answered
	// as board.internal (0x9F).
	Grant(msg []byte) error
	// Progress is the state of the last relayed session.
	Progress() gattapi.Progress
	// Receipt is the signed usage report of the last relayed session once
	// it has ended.
	Receipt() gattapi.Receipt
	// Ack takes an acknowledgement of the receipt; errors as for Grant.
	Ack(gattapi.Ack) error
}

// Opts configures New. Zero values take the defaults.
type Opts struct {
	// ClaimInfo, when set, returns the claimed board's ClaimInfo value
	// (gattapi.ClaimInfo encoded); the service then has the ClaimInfo
	// characteristic.
	ClaimInfo func() []byte
	// Poll is how often a subscribed central's Progress is looked at for
	// changes. Default 200 ms.
	Poll time.Duration
	// NotifyEvery is the least time between two notifications of a
	// running session whose state has not changed. Default 1 s.
	NotifyEvery time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives refused writes (debug) and internal errors.
	// Default: discard.
	Logger *slog.Logger
}

// UUIDs of the service and its characteristics (gattapi's, parsed).
var (
	ServiceUUID   = goble.MustParse(gattapi.ServiceUUID)
	GrantUUID     = goble.MustParse(gattapi.GrantUUID)
	ProgressUUID  = goble.MustParse(gattapi.ProgressUUID)
	ReceiptUUID   = goble.MustParse(gattapi.ReceiptUUID)
	AckUUID       = goble.MustParse(gattapi.AckUUID)
	ClaimInfoUUID = goble.MustParse(gattapi.ClaimInfoUUID)
)

// Service is the board's relay service. Its characteristics' handles are
// set once a server has built its database from Service.
type Service struct {
	// Service is what ble.NewGATTHost serves.
	Service *goble.Service
	// Grant, Progress, Receipt, Ack and ClaimInfo (nil without
	// Opts.ClaimInfo) are its characteristics.
	Grant, Progress, Receipt, Ack, ClaimInfo *goble.Characteristic

	relay Relay
	o     Opts

	mu      sync.Mutex
	conn    goble.Conn          // the central the reassembly state belongs to
	re      gattapi.Reassembler // the Grant message being written
	receipt []byte              // the Receipt value a long read is serving
	claim   []byte              // the ClaimInfo value a long read is serving
}

// New returns the service over r. It returns nil for a nil r.
func New(r Relay, o *Opts) *Service {
	if r == nil {
		return nil
	}
	var c Opts
	if o != nil {
		c = *o
	}
	if c.Poll <= 0 {
		c.Poll = 200 * time.Millisecond
	}
	if c.NotifyEvery <= 0 {
		c.NotifyEvery = time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{relay: r, o: c, re: gattapi.Reassembler{Max: gattapi.MaxRelayGrant}}
	svc := goble.NewService(ServiceUUID)
	s.Grant = svc.NewCharacteristic(GrantUUID)
	s.Grant.HandleWrite(goble.WriteHandlerFunc(s.writeGrant))
	s.Progress = svc.NewCharacteristic(ProgressUUID)
	s.Progress.HandleRead(goble.ReadHandlerFunc(s.readProgress))
	s.Progress.HandleNotify(goble.NotifyHandlerFunc(s.notifyProgress))
	s.Receipt = svc.NewCharacteristic(ReceiptUUID)
	s.Receipt.HandleRead(goble.ReadHandlerFunc(s.readReceipt))
	s.Ack = svc.NewCharacteristic(AckUUID)
	s.Ack.HandleWrite(goble.WriteHandlerFunc(s.writeAck))
	if c.ClaimInfo != nil {
		s.ClaimInfo = svc.NewCharacteristic(ClaimInfoUUID)
		s.ClaimInfo.HandleRead(goble.ReadHandlerFunc(s.readClaimInfo))
	}
	s.Service = svc
	return s
}

// errInternal answers what has no code of its own.
var errInternal = vend.E(vend.Internal, "board.internal", "gattsvc: internal error")

// refuse answers a request with err's ATT application error.
func (s *Service) refuse(rsp goble.ResponseWriter, what string, err error) {
	code := gattapi.ATTCode(err)
	if code == gattapi.ATTCodes[errInternal.Code] && vend.KindOf(err) == vend.Internal {
		s.o.Logger.Error("gattsvc: "+what, "err", err)
	} else {
		s.o.Logger.Debug("gattsvc: refused "+what, "code", code, "err", err)
	}
	rsp.SetStatus(goble.ATTError(code))
}

// central notes the connection a request came on: a new central starts
// with no unfinished message and no long read, and its disconnection
// drops them (the watch ends with the connection).
func (s *Service) central(c goble.Conn) {
	if c == nil || s.conn == c {
		return
	}
	s.conn = c
	s.re.Reset()
	s.receipt, s.claim = nil, nil
	if done := c.Disconnected(); done != nil {
		go func() {
			<-done
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.conn == c {
				s.conn = nil
				s.re.Reset()
				s.receipt, s.claim = nil, nil
			}
		}()
	}
}

// writeGrant takes one chunk; the last one is answered with the verdict.
func (s *Service) writeGrant(req goble.Request, rsp goble.ResponseWriter) {
	s.mu.Lock()
	s.central(req.Conn())
	msg, done, err := s.re.Add(req.Data())
	s.mu.Unlock()
	if err != nil {
		s.refuse(rsp, "grant chunk", err)
		return
	}
	if !done {
		return
	}
	if err := s.relay.Grant(msg); err != nil {
		s.refuse(rsp, "grant", err)
	}
}

func (s *Service) readProgress(req goble.Request, rsp goble.ResponseWriter) {
	v, err := s.relay.Progress().MarshalBinary()
	if err != nil {
		s.refuse(rsp, "progress", vend.Errorf(errInternal, "progress: %v", err))
		return
	}
	serve(rsp, v, req.Offset())
}

// readReceipt serves the Receipt value: a snapshot taken at offset 0, read
// on by Read Blob.
func (s *Service) readReceipt(req goble.Request, rsp goble.ResponseWriter) {
	s.mu.Lock()
	s.central(req.Conn())
	v := s.receipt
	s.mu.Unlock()
	if req.Offset() == 0 || v == nil {
		var err error
		if v, err = s.relay.Receipt().MarshalBinary(); err != nil {
			s.refuse(rsp, "receipt", vend.Errorf(errInternal, "receipt: %v", err))
			return
		}
		s.mu.Lock()
		s.receipt = v
		s.mu.Unlock()
	}
	serve(rsp, v, req.Offset())
}

func (s *Service) readClaimInfo(req goble.Request, rsp goble.ResponseWriter) {
	s.mu.Lock()
	s.central(req.Conn())
	v := s.claim
	s.mu.Unlock()
	if req.Offset() == 0 || v == nil {
		v = s.o.ClaimInfo()
		if len(v) == 0 || len(v) > gattapi.MaxValue {
			s.refuse(rsp, "claim info", vend.Errorf(errInternal, "claim info of %d bytes", len(v)))
			return
		}
		s.mu.Lock()
		s.claim = v
		s.mu.Unlock()
	}
	serve(rsp, v, req.Offset())
}

// serve answers a read of v from off with as much as the response holds.
func serve(rsp goble.ResponseWriter, v []byte, off int) {
	if off < 0 || off > len(v) {
		rsp.SetStatus(goble.ErrInvalidOffset)
		return
	}
	v = v[off:]
	if n := rsp.Cap(); len(v) > n {
		v = v[:n]
	}
	if _, err := rsp.Write(v); err != nil {
		rsp.SetStatus(goble.ErrUnlikely)
	}
}

func (s *Service) writeAck(req goble.Request, rsp goble.ResponseWriter) {
	s.mu.Lock()
	s.central(req.Conn())
	s.mu.Unlock()
	var a gattapi.Ack
	if err := a.UnmarshalBinary(req.Data()); err != nil {
		s.refuse(rsp, "ack", err)
		return
	}
	if err := s.relay.Ack(a); err != nil {
		s.refuse(rsp, "ack", err)
	}
}

// notifyProgress sends Progress to a subscribed central: at once, at every
// state change, and while running when it changed, at most once per
// NotifyEvery; until the central unsubscribes or goes.
func (s *Service) notifyProgress(req goble.Request, n goble.Notifier) {
	t := time.NewTicker(s.o.Poll)
	defer t.Stop()
	var last gattapi.Progress
	var lastAt time.Time
	first := true
	for {
		p := s.relay.Progress()
		now := s.o.Now()
		due := first || p.State != last.State || p.Reason != last.Reason ||
			(p != last && now.Sub(lastAt) >= s.o.NotifyEvery)
		if due {
			v, err := p.MarshalBinary()
			if err != nil {
				s.o.Logger.Error("gattsvc: progress", "err", err)
			} else if _, err := n.Write(v); err != nil {
				return // the central went, or unsubscribed
			}
			first, last, lastAt = false, p, now
		}
		select {
		case <-n.Context().Done():
			return
		case <-t.C:
		}
	}
}
