package signed

import (
	"sync"

	"beaconvend/app-protocol/vend"
)

// Replay errors.
var (
	ErrUsageConflict = vend.E(vend.Conflict, "usage.conflict", "signed: a different report was already accepted for this session")
	ErrSeqReused     = vend.E(vend.Conflict, "usage.seq_reused", "signed: sequence number already used by another session")
)

// Disposition is what a receiver does with a verified usage report.
type Disposition int

// Dispositions.
const (
	Fresh     Disposition = 1 // first report for its session: settle it
	Duplicate Disposition = 2 // the same report again (redelivery, replay): acknowledge, move no money
)

// UsageGuard is the reference implementation of the cloud's replay rule for
// verified usage reports, per device; the cloud's SQL store enforces the
// same rule with unique keys on (session) and (device, seq):
//
//  1. a session is settled by at most one report; the same signed bytes
//     again are a Duplicate (acknowledged so the device's outbox drains, no
//     money moves);
//  2. a different report for an accepted session is ErrUsageConflict;
//  3. a sequence number already used by another session is ErrSeqReused.
//
// Sequence numbers are not required to arrive in order: with shared
// subscriptions two cloud instances may finish them out of order, and
// refusing an older number would strand a true report. Gaps in a device's
// numbers are what an operator audits. Safe for concurrent use.
type UsageGuard struct {
	mu        sync.Mutex
	bySession map[vend.SessionID][32]byte
	bySeq     map[devSeq]vend.SessionID
}

type devSeq struct {
	dev string
	seq uint64
}

// Accept applies the rule to a report already verified by OpenUsage, and
// records it when Fresh. digest is Digest of the signed bytes.
func (g *UsageGuard) Accept(u Usage, digest [32]byte) (Disposition, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.bySession == nil {
		g.bySession = make(map[vend.SessionID][32]byte)
		g.bySeq = make(map[devSeq]vend.SessionID)
	}
	if d, ok := g.bySession[u.Session]; ok {
		if d == digest {
			return Duplicate, nil
		}
		return 0, vend.Errorf(ErrUsageConflict, "session %s", u.Session)
	}
	k := devSeq{u.Device, u.Seq}
	if s, ok := g.bySeq[k]; ok {
		return 0, vend.Errorf(ErrSeqReused, "device %s seq %d used by session %s", u.Device, u.Seq, s)
	}
	g.bySession[u.Session] = digest
	g.bySeq[k] = u.Session
	return Fresh, nil
}
