package claim

import (
	"log/slog"
	"sync"

	"beaconvend/app-protocol/gattapi"
	goble "beaconvend/hw/ble/goble"
)

// UUIDs of the registration-mode service, parsed from gattapi's.
var (
	ServiceUUID   = goble.MustParse(gattapi.ServiceUUID)
	ClaimInfoUUID = goble.MustParse(gattapi.ClaimInfoUUID)
	BundleUUID    = goble.MustParse(gattapi.BundleUUID)
)

// Service is the registration-mode GATT service of a Board: the beaconvend
// service UUID with two characteristics, in this order in
// Service.Characteristics:
//
//	ClaimInfo  read   gattapi.ClaimInfo (long reads past ATT_MTU-1)
//	Bundle     write  chunks of a sealed bundle (gattapi.Chunk), at most gattapi.MaxBundle
//
// Bundle reassembles the chunks of one central with a gattapi.Reassembler:
// index 0 starts over, a chunk out of step is refused with gatt.chunk and
// drops the unfinished bundle, as does a disconnect or a write from another
// central. Each chunk's Write Response is the answer; the last one's is
// Board.Accept's verdict. A refused write is answered with the ATT
// application error gattapi.ATTCode gives (0x86 gatt.chunk, 0x93
// claim.not_registration, 0x94 claim.open, 0x85 gatt.field, 0x9F for a
// board fault).
type Service struct {
	Service *goble.Service

	b   *Board
	log *slog.Logger

	mu      sync.Mutex
	r       gattapi.Reassembler
	central goble.Conn // whose chunks r holds
	stats   ServiceStats
}

// ServiceStats counts what the service answered.
type ServiceStats struct {
	Chunks   uint64 // chunks accepted (not the last)
	Accepted uint64 // bundles accepted
	Refused  uint64 // writes refused
}

// NewService returns the registration-mode service for b. nil log
// discards.
func NewService(b *Board, log *slog.Logger) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{b: b, log: log, r: gattapi.Reassembler{Max: gattapi.MaxBundle}}
	svc := goble.NewService(ServiceUUID)
	svc.NewCharacteristic(ClaimInfoUUID).HandleRead(goble.ReadHandlerFunc(s.readInfo))
	svc.NewCharacteristic(BundleUUID).HandleWrite(goble.WriteHandlerFunc(s.writeBundle))
	s.Service = svc
	return s
}

// Stats returns the service's counters.
func (s *Service) Stats() ServiceStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

func (s *Service) readInfo(req goble.Request, rsp goble.ResponseWriter) {
	v, err := s.b.Info().MarshalBinary()
	if err != nil {
		s.log.Error("claim: gatt: claim info", "err", err)
		rsp.SetStatus(goble.ATTError(gattapi.ATTCode(err)))
		return
	}
	if req.Offset() > len(v) {
		rsp.SetStatus(goble.ErrInvalidOffset)
		return
	}
	v = v[req.Offset():]
	rsp.Write(v[:min(len(v), rsp.Cap())])
}

func (s *Service) writeBundle(req goble.Request, rsp goble.ResponseWriter) {
	c := req.Conn()
	s.mu.Lock()
	if s.central != c {
		s.r.Reset()
		s.central = c
		if c != nil {
			go s.dropOnDisconnect(c)
		}
	}
	msg, done, err := s.r.Add(req.Data())
	if err != nil || !done {
		if err != nil {
			s.stats.Refused++
		} else {
			s.stats.Chunks++
		}
		s.mu.Unlock()
		if err != nil {
			s.refuse(rsp, "chunk", err)
		}
		return
	}
	s.mu.Unlock()
	// The verdict: Accept serialises claims itself, so a second bundle
	// reassembled meanwhile is refused as claimed.
	path, err := s.b.Accept(msg)
	s.mu.Lock()
	if err != nil {
		s.stats.Refused++
	} else {
		s.stats.Accepted++
	}
	s.mu.Unlock()
	if err != nil {
		s.refuse(rsp, "bundle", err)
		return
	}
	s.log.Info("claim: gatt: bundle accepted", "config", path)
}

func (s *Service) refuse(rsp goble.ResponseWriter, what string, err error) {
	code := gattapi.ATTCode(err)
	if code == gattapi.ATTCodes["board.internal"] {
		s.log.Error("claim: gatt: "+what+" refused", "err", err)
	} else {
		s.log.Info("claim: gatt: "+what+" refused", "code", code, "err", err)
	}
	rsp.SetStatus(goble.ATTError(code))
}

// dropOnDisconnect drops c's unfinished bundle when c disconnects; it ends
// with the connection.
func (s *Service) dropOnDisconnect(c goble.Conn) {
	<-c.Disconnected()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.central == c {
		s.r.Reset()
		s.central = nil
	}
}
