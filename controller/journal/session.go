package journal

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
)

// Accept records a new session for a grant the caller has verified
// (signed.VerifyGrant with Seen as its replay check), in one commit with
// its seen entry and any emitted outbox messages. grantBytes is the signed
// grant (canonical body ‖ Ed25519 signature) and must encode grant.
// Errors: ErrInvalid for a grant that fails Validate or does not match
// grantBytes; signed.ErrReplayed (code grant.replayed, kind conflict) for a
// session ID accepted before, even if its record was pruned; ErrBusy (code
// machine.busy) while the machine has a live session; ErrDuplicate for an
// emitted message ID already queued; storage errors.
func (j *Journal) Accept(grant signed.Grant, grantBytes []byte, emit ...Outgoing) error {
	return j.accept(grant, grantBytes, nil, emit)
}

// Relay is the relay ticket's part of a relayed grant that the journal
// keeps: its nonce, accepted once, until its ticket expires.
type Relay struct {
	Nonce     [signed.RelayNonceLen]byte // the ticket's nonce
	ExpiresAt time.Time                  // the ticket's ExpiresAt: PruneNonces may forget the nonce after it
}

// AcceptRelay is Accept for a grant relayed by a phone over GATT: in the
// same commit it records the ticket's nonce in the nonce log, so that a
// crash can never leave the session accepted with its nonce forgotten
// (or the reverse). Errors: those of Accept, and gattapi.ErrNonceReused
// (code relay.nonce_reused) for a nonce already in the log; on any error
// nothing is written.
func (j *Journal) AcceptRelay(grant signed.Grant, grantBytes []byte, r Relay, emit ...Outgoing) error {
	if r.ExpiresAt.IsZero() {
		return vend.Errorf(ErrInvalid, "accept relay %s: no ticket expiry", grant.Session)
	}
	return j.accept(grant, grantBytes, &r, emit)
}

func (j *Journal) accept(grant signed.Grant, grantBytes []byte, relay *Relay, emit []Outgoing) error {
	if err := grant.Validate(); err != nil {
		return vend.Errorf(ErrInvalid, "accept: %v", err)
	}
	body, err := grant.MarshalBinary()
	if err != nil {
		return vend.Errorf(ErrInvalid, "accept: %v", err)
	}
	if len(grantBytes) != len(body)+ed25519.SignatureSize || !bytes.Equal(grantBytes[:len(body)], body) {
		return vend.Errorf(ErrInvalid, "accept %s: grant bytes do not encode the grant", grant.Session)
	}
	for _, o := range emit {
		if err := o.validate(); err != nil {
			return err
		}
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return vend.Errorf(ErrClosed, "accept %s", grant.Session)
	}
	for id, l := range j.live {
		if l.machine == grant.Machine {
			return vend.Errorf(ErrBusy, "machine %s runs session %s (%s)", grant.Machine, id, l.state)
		}
	}
	now := j.now().UTC()
	s := &Session{
		ID: grant.Session, Device: grant.Device, Machine: grant.Machine, Slot: grant.Slot,
		Unit: grant.Unit, CapUnits: grant.CapUnits, Grant: bytes.Clone(grantBytes),
		State: Authorized, AcceptedAt: now, UpdatedAt: now,
		Steps: []Step{{State: Authorized, At: now}},
	}
	err = j.update(kindTransition, func(tx *bolt.Tx) error {
		seen := tx.Bucket(bucketSeen)
		key := grant.Session[:]
		if seen.Get(key) != nil {
			return vend.Errorf(signed.ErrReplayed, "session %s", grant.Session)
		}
		if err := seen.Put(key, encodeSeen(now, grant.ExpiresAt)); err != nil {
			return vend.Errorf(ErrStorage, "put seen %s: %v", grant.Session, err)
		}
		if relay != nil {
			if err := putNonce(tx, *relay, grant.Session); err != nil {
				return err
			}
		}
		if err := putSession(tx, s); err != nil {
			return err
		}
		return enqueueAll(tx, now, emit)
	})
	if err != nil {
		return err
	}
	j.live[s.ID] = &liveSess{machine: s.Machine, state: Authorized, lastCommit: now}
	return nil
}

// Seen reports whether session id was ever accepted or cancelled. It has
// the signature of signed.GrantCheck.Seen.
func (j *Journal) Seen(id vend.SessionID) (bool, error) {
	seen, _, err := j.SeenState(id)
	return seen, err
}

// SeenState reports whether session id has a seen entry and whether that
// entry is a cancellation (Cancel) rather than an accepted grant.
func (j *Journal) SeenState(id vend.SessionID) (seen, cancelled bool, err error) {
	err = j.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketSeen).Get(id[:])
		if v == nil {
			return nil
		}
		e, err := decodeSeen(id[:], v)
		if err != nil {
			return err
		}
		seen, cancelled = true, e.cancelled
		return nil
	})
	return seen, cancelled, err
}

// Cancel records, in one commit, that the cloud cancelled session id
// before this device started it: a seen entry marked cancelled that
// PruneSeen may delete once until has passed, so a later Accept of its
// grant is refused (signed.ErrReplayed) and the caller can tell a
// cancellation (SeenState) from a replay. When id was already accepted it
// writes nothing and returns accepted true (the caller stops the live
// session, or it has ended). Cancelling again keeps the later bound.
// Errors: ErrClosed; storage errors.
func (j *Journal) Cancel(id vend.SessionID, until time.Time) (accepted bool, err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return false, vend.Errorf(ErrClosed, "cancel %s", id)
	}
	now := j.now().UTC()
	err = j.update(kindTransition, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSeen)
		if v := b.Get(id[:]); v != nil {
			e, err := decodeSeen(id[:], v)
			if err != nil {
				return err
			}
			if !e.cancelled {
				accepted = true
				return errNoop
			}
			if !until.After(e.expires) {
				return errNoop
			}
			now = e.accepted
		}
		if err := b.Put(bytes.Clone(id[:]), encodeCancelled(now, until)); err != nil {
			return vend.Errorf(ErrStorage, "put seen %s: %v", id, err)
		}
		return nil
	})
	return accepted, err
}

// Transition moves session id to state to, if the transition table allows
// it, in one commit that also stores the latest pending meter reading,
// applies update (which may set StartedAt, MeterStart, MeterCounter, Outcome, FaultCode,
// EndedAt, and Units, MeterLast and CoinPulses upwards, and nothing else)
// and enqueues emit. Entering
// Running sets StartedAt to now if update left it zero; entering an ended
// state sets EndedAt to now if zero and a default Outcome (expired:
// not_started, failed: fault, refunded: vend_failed; ending needs one from
// update). Errors: ErrNotFound; ErrTransition for a move the table refuses
// (Reported is reached only by EndSession); ErrInvalid when update changes
// a field it may not; ErrMeter; ErrDuplicate; storage errors. On any error
// nothing is written.
func (j *Journal) Transition(id vend.SessionID, to State, update func(*Session), emit ...Outgoing) error {
	if to == Reported {
		return vend.Errorf(ErrTransition, "session %s: to reported only through EndSession", id)
	}
	for _, o := range emit {
		if err := o.validate(); err != nil {
			return err
		}
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return vend.Errorf(ErrClosed, "transition %s", id)
	}
	l := j.live[id]
	var pend *reading
	if l != nil {
		pend = l.pend
	}
	now := j.now().UTC()
	var out *Session
	err := j.update(kindTransition, func(tx *bolt.Tx) error {
		s, err := getSession(tx, id)
		if err != nil {
			return err
		}
		if !Allowed(s.State, to) {
			return vend.Errorf(ErrTransition, "session %s: %s to %s", id, s.State, to)
		}
		if pend != nil {
			s.Units, s.MeterLast = pend.units, pend.meter
		}
		if update != nil {
			if err := applyUpdate(s, update); err != nil {
				return err
			}
		}
		if err := enter(s, to, now); err != nil {
			return err
		}
		if err := putSession(tx, s); err != nil {
			return err
		}
		if err := enqueueAll(tx, now, emit); err != nil {
			return err
		}
		out = s
		return nil
	})
	if err != nil {
		return err
	}
	j.afterWrite(out, now)
	return nil
}

// CoinPulse records, in one commit, that coin pulse n (1-based) of
// credited session id is about to be driven, so that after a crash the
// journal never counts fewer pulses than were driven (pulse n itself may
// not have been). Call it before each pulse; the credited transition may
// record the first (update sets CoinPulses). A count not above the
// recorded one writes nothing. Errors: ErrNotFound; ErrState for a session
// not credited; ErrInvalid for n < 1; ErrClosed; storage errors.
func (j *Journal) CoinPulse(id vend.SessionID, n int) error {
	if n < 1 {
		return vend.Errorf(ErrInvalid, "session %s: coin pulse %d", id, n)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return vend.Errorf(ErrClosed, "coin pulse %s", id)
	}
	now := j.now().UTC()
	return j.update(kindTransition, func(tx *bolt.Tx) error {
		s, err := getSession(tx, id)
		if err != nil {
			return err
		}
		if s.State != Credited {
			return vend.Errorf(ErrState, "session %s is %s, not credited", id, s.State)
		}
		if n <= s.CoinPulses {
			return errNoop
		}
		s.CoinPulses, s.UpdatedAt = n, now
		return putSession(tx, s)
	})
}

// enter sets the state and its defaults and appends the step.
func enter(s *Session, to State, now time.Time) error {
	switch to {
	case Running:
		if s.StartedAt.IsZero() {
			s.StartedAt = now
		}
		if s.MeterLast < s.MeterStart {
			s.MeterLast = s.MeterStart
		}
	case Ending, Expired, Failed, Refunded:
		if s.EndedAt.IsZero() {
			s.EndedAt = now
		}
		if s.Outcome == 0 {
			switch to {
			case Expired:
				s.Outcome = vend.OutcomeNotStarted
			case Failed:
				s.Outcome = vend.OutcomeFault
			case Refunded:
				s.Outcome = vend.OutcomeVendFailed
			default:
				return vend.Errorf(ErrInvalid, "session %s: ending needs an outcome", s.ID)
			}
		}
		if !s.Outcome.Valid() {
			return vend.Errorf(ErrInvalid, "session %s: %s", s.ID, s.Outcome)
		}
	}
	s.State = to
	s.UpdatedAt = now
	s.Steps = append(s.Steps, Step{State: to, At: now})
	return nil
}

// applyUpdate runs update on s and refuses changes to fields it does not own.
func applyUpdate(s *Session, update func(*Session)) error {
	before := *s
	before.Grant = bytes.Clone(s.Grant)
	before.Usage = bytes.Clone(s.Usage)
	before.Steps = append([]Step(nil), s.Steps...)
	update(s)
	bad := ""
	switch {
	case s.ID != before.ID:
		bad = "id"
	case s.Device != before.Device, s.Machine != before.Machine, s.Slot != before.Slot,
		s.Unit != before.Unit, s.CapUnits != before.CapUnits, !bytes.Equal(s.Grant, before.Grant):
		bad = "grant fields"
	case s.State != before.State:
		bad = "state"
	case s.UsageSeq != before.UsageSeq, !bytes.Equal(s.Usage, before.Usage), s.UsageMsgID != before.UsageMsgID:
		bad = "usage fields"
	case !s.AcceptedAt.Equal(before.AcceptedAt), len(s.Steps) != len(before.Steps):
		bad = "history"
	}
	if bad != "" {
		return vend.Errorf(ErrInvalid, "session %s: update may not change %s", before.ID, bad)
	}
	if s.Units < before.Units {
		return vend.Errorf(ErrMeter, "session %s: units %d below %d", s.ID, s.Units, before.Units)
	}
	if s.MeterLast < before.MeterLast {
		return vend.Errorf(ErrMeter, "session %s: meter reading %d below %d", s.ID, s.MeterLast, before.MeterLast)
	}
	if s.CoinPulses < before.CoinPulses {
		return vend.Errorf(ErrInvalid, "session %s: coin pulses %d below %d", s.ID, s.CoinPulses, before.CoinPulses)
	}
	s.StartedAt, s.EndedAt = s.StartedAt.UTC(), s.EndedAt.UTC()
	return nil
}

// afterWrite updates the live set after a committed change of s.
func (j *Journal) afterWrite(s *Session, now time.Time) {
	if !s.State.holdsMachine() {
		delete(j.live, s.ID)
		return
	}
	l := j.live[s.ID]
	if l == nil {
		l = &liveSess{machine: s.Machine}
		j.live[s.ID] = l
	}
	l.state, l.units, l.pend, l.lastCommit = s.State, s.Units, nil, now
}

// Meter records that session id has delivered units so far, with the raw
// meter reading meterReading. A session must be Running or Ending. To
// spare flash the reading is committed at once only when the session's
// last commit is at least Opts.MeterInterval old; otherwise it is kept in
// memory and committed by the next due Meter, FlushDue (Run), Flush, a
// Transition or EndSession (same commit) or Close. A nil error therefore
// means "accepted"; call Flush for "durable". Errors: ErrNotFound; ErrState
// when the session is not metering; ErrMeter when units go below an earlier
// value; storage errors (the reading stays pending).
func (j *Journal) Meter(id vend.SessionID, units, meterReading uint64) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	l, err := j.metering(id)
	if err != nil {
		return err
	}
	prev := l.units
	if l.pend != nil {
		prev = l.pend.units
	}
	if units < prev {
		return vend.Errorf(ErrMeter, "session %s: units %d below %d", id, units, prev)
	}
	l.pend = &reading{units: units, meter: meterReading}
	if j.now().Sub(l.lastCommit) < j.interval {
		return nil
	}
	return j.flushLocked(func(x *liveSess) bool { return x == l })
}

// metering returns the live session id if it may be metered. j.mu is held.
func (j *Journal) metering(id vend.SessionID) (*liveSess, error) {
	if j.closed {
		return nil, vend.Errorf(ErrClosed, "meter %s", id)
	}
	l := j.live[id]
	if l == nil {
		if _, err := j.Get(id); err != nil {
			return nil, err
		}
		return nil, vend.Errorf(ErrState, "session %s is not live", id)
	}
	if l.state != Running && l.state != Ending {
		return nil, vend.Errorf(ErrState, "session %s is %s, not metering", id, l.state)
	}
	return l, nil
}

// Flush commits session id's pending reading now, if it has one (no
// commit otherwise). Errors: ErrNotFound, ErrState as for Meter; storage.
func (j *Journal) Flush(id vend.SessionID) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	l, err := j.metering(id)
	if err != nil {
		return err
	}
	return j.flushLocked(func(x *liveSess) bool { return x == l })
}

// FlushDue commits, in one transaction, the pending readings of every
// session whose last commit is at least Opts.MeterInterval old. Run calls
// it periodically; a controller without Run calls it from its own tick.
func (j *Journal) FlushDue() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return vend.Errorf(ErrClosed, "flush")
	}
	now := j.now()
	return j.flushLocked(func(l *liveSess) bool { return now.Sub(l.lastCommit) >= j.interval })
}

// Run calls FlushDue every MeterInterval/10 (at least every 10 ms) until
// ctx is done, so that a reading is durable within MeterInterval plus one
// tick even when no further Meter call comes. It logs and keeps going on
// errors and returns ctx's error.
func (j *Journal) Run(ctx context.Context) error {
	tick := j.interval / 10
	if tick < 10*time.Millisecond {
		tick = 10 * time.Millisecond
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			if err := j.FlushDue(); err != nil {
				j.log.Error("journal: flush", "err", err)
				if errors.Is(err, ErrClosed) {
					return err
				}
			}
		}
	}
}

// flushLocked commits the pending readings of the live sessions pick
// selects, all in one transaction. j.mu is held.
func (j *Journal) flushLocked(pick func(*liveSess) bool) error {
	type job struct {
		id vend.SessionID
		l  *liveSess
		r  reading
	}
	var jobs []job
	for id, l := range j.live {
		if l.pend != nil && pick(l) {
			jobs = append(jobs, job{id, l, *l.pend})
		}
	}
	if len(jobs) == 0 {
		return nil
	}
	now := j.now()
	err := j.update(kindMeter, func(tx *bolt.Tx) error {
		for _, jb := range jobs {
			s, err := getSession(tx, jb.id)
			if err != nil {
				return err
			}
			if jb.r.units < s.Units {
				return vend.Errorf(ErrMeter, "session %s: units %d below %d", jb.id, jb.r.units, s.Units)
			}
			s.Units, s.MeterLast, s.UpdatedAt = jb.r.units, jb.r.meter, now.UTC()
			if err := putSession(tx, s); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, jb := range jobs {
		jb.l.units, jb.l.lastCommit = jb.r.units, now
		if jb.l.pend != nil && *jb.l.pend == jb.r {
			jb.l.pend = nil
		}
	}
	return nil
}

// Signer signs a usage report: typically
// func(u signed.Usage) ([]byte, error) { return signed.SignUsage(key, u) }.
type Signer func(signed.Usage) ([]byte, error)

// EndSession reports a session that has ended (Ending, Expired, Failed or
// Refunded), in one commit: it stores the pending meter reading, allocates
// the next usage sequence number, builds the usage report from the record
// and its grant (units billed are capped at the grant's CapUnits; the
// record keeps what was metered), signs it with sign, stores the signed
// bytes, queues the mqttapi.Usage message on leaf usage, queues emit, and
// moves the session to Reported, freeing its machine. If anything fails,
// nothing is written and the sequence number is not consumed. Errors:
// ErrNotFound; ErrState for a session not ended; ErrInvalid when the
// report does not validate; sign's error; storage errors.
func (j *Journal) EndSession(id vend.SessionID, sign Signer, emit ...Outgoing) (Session, error) {
	for _, o := range emit {
		if err := o.validate(); err != nil {
			return Session{}, err
		}
	}
	if sign == nil {
		return Session{}, vend.Errorf(ErrInvalid, "end session %s: no signer", id)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return Session{}, vend.Errorf(ErrClosed, "end session %s", id)
	}
	var pend *reading
	if l := j.live[id]; l != nil {
		pend = l.pend
	}
	now := j.now().UTC()
	var out *Session
	err := j.update(kindTransition, func(tx *bolt.Tx) error {
		s, err := getSession(tx, id)
		if err != nil {
			return err
		}
		if !s.State.ended() {
			return vend.Errorf(ErrState, "session %s is %s, not ended", id, s.State)
		}
		if pend != nil && pend.units >= s.Units {
			s.Units, s.MeterLast = pend.units, pend.meter
		}
		g, err := grantOf(s)
		if err != nil {
			return err
		}
		seq, err := nextUsageSeq(tx)
		if err != nil {
			return err
		}
		u := signed.Usage{
			Device: g.Device, Seq: seq, Session: s.ID, Machine: s.Machine, Slot: s.Slot,
			Unit: g.Unit, Units: min(s.Units, g.CapUnits), Price: g.Price, Currency: g.Currency,
			StartedAt: s.StartedAt, EndedAt: s.EndedAt, MeterStart: s.MeterStart, MeterEnd: s.MeterLast,
			Outcome: s.Outcome, FaultCode: s.FaultCode,
		}
		if u.EndedAt.IsZero() {
			u.EndedAt = now
		}
		if u.Amount, err = g.Price.Cost(u.Units); err != nil {
			return vend.Errorf(ErrInvalid, "session %s: %v", id, err)
		}
		if err := u.Validate(); err != nil {
			return vend.Errorf(ErrInvalid, "session %s: usage: %v", id, err)
		}
		rep, err := sign(u)
		if err != nil {
			return fmt.Errorf("journal: session %s: sign usage: %w", id, err)
		}
		msg := &mqttapi.Usage{Envelope: mqttapi.NewEnvelope(now), Session: s.ID, Seq: seq, Report: rep}
		payload, err := mqttapi.Encode(msg)
		if err != nil {
			return vend.Errorf(ErrInvalid, "session %s: usage message: %v", id, err)
		}
		s.UsageSeq, s.Usage, s.UsageMsgID = seq, bytes.Clone(rep), msg.ID
		if err := enter(s, Reported, now); err != nil {
			return err
		}
		if err := putSession(tx, s); err != nil {
			return err
		}
		it := Outgoing{Leaf: mqttapi.LeafUsage, MsgID: msg.ID, Payload: payload, Session: s.ID}
		if err := enqueueAll(tx, now, append([]Outgoing{it}, emit...)); err != nil {
			return err
		}
		out = s
		return nil
	})
	if err != nil {
		return Session{}, err
	}
	j.afterWrite(out, now)
	return *out, nil
}

// DecodeGrant decodes the signed grant stored in the record (without
// checking its signature, which Accept's caller did). Errors: ErrCorrupt.
func (s *Session) DecodeGrant() (signed.Grant, error) { return grantOf(s) }

// grantOf decodes the grant stored in s.
func grantOf(s *Session) (signed.Grant, error) {
	var g signed.Grant
	if len(s.Grant) <= ed25519.SignatureSize {
		return g, corrupt(bucketSessions, s.ID[:], fmt.Errorf("grant of %d bytes", len(s.Grant)))
	}
	if err := g.UnmarshalBinary(s.Grant[:len(s.Grant)-ed25519.SignatureSize]); err != nil {
		return g, corrupt(bucketSessions, s.ID[:], fmt.Errorf("grant: %v", err))
	}
	return g, nil
}

// Get returns the committed record of session id (pending meter readings
// are not in it). Errors: ErrNotFound; ErrCorrupt; storage errors.
func (j *Journal) Get(id vend.SessionID) (Session, error) {
	var s *Session
	err := j.view(func(tx *bolt.Tx) error {
		var err error
		s, err = getSession(tx, id)
		return err
	})
	if err != nil {
		return Session{}, err
	}
	return *s, nil
}

// Live returns the committed records of the sessions that are not yet
// reported (Authorized, Credited, Running, Ending, Expired, Failed,
// Refunded), oldest accepted first: what the controller must finish at
// start, with their last committed readings. Errors: ErrCorrupt, storage errors.
func (j *Journal) Live() ([]Session, error) {
	j.mu.Lock()
	ids := make([]vend.SessionID, 0, len(j.live))
	for id := range j.live {
		ids = append(ids, id)
	}
	j.mu.Unlock()
	var out []Session
	err := j.view(func(tx *bolt.Tx) error {
		for _, id := range ids {
			s, err := getSession(tx, id)
			if err != nil {
				return err
			}
			if s.State.holdsMachine() {
				out = append(out, *s)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sortSessions(out)
	return out, nil
}

// Unsettled returns the sessions reported but not yet acknowledged by the
// cloud, oldest accepted first. It scans every record.
func (j *Journal) Unsettled() ([]Session, error) {
	var out []Session
	err := j.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSessions).ForEach(func(k, v []byte) error {
			s, err := decodeSession(k, v)
			if err != nil {
				return err
			}
			if s.State == Reported {
				out = append(out, *s)
			}
			return nil
		})
	})
	sortSessions(out)
	return out, err
}

// Sessions returns every session record in the file, settled ones
// included (until Prune deletes them), oldest accepted first: what a
// harness reads after the controller stopped to check that every report
// the cloud acknowledged (Settled) was settled there. It scans every
// record. Errors: ErrCorrupt, storage errors.
func (j *Journal) Sessions() ([]Session, error) {
	var out []Session
	err := j.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSessions).ForEach(func(k, v []byte) error {
			s, err := decodeSession(k, v)
			if err != nil {
				return err
			}
			out = append(out, *s)
			return nil
		})
	})
	sortSessions(out)
	return out, err
}

func sortSessions(ss []Session) {
	slices.SortFunc(ss, func(a, b Session) int {
		if c := a.AcceptedAt.Compare(b.AcceptedAt); c != 0 {
			return c
		}
		return bytes.Compare(a.ID[:], b.ID[:])
	})
}

// ByMachine returns the live session of machine, or ErrNotFound when the
// machine has none (it is free for a new grant).
func (j *Journal) ByMachine(machine string) (Session, error) {
	j.mu.Lock()
	var id vend.SessionID
	found := false
	for k, l := range j.live {
		if l.machine == machine {
			id, found = k, true
			break
		}
	}
	j.mu.Unlock()
	if !found {
		return Session{}, vend.Errorf(ErrNotFound, "machine %q has no live session", machine)
	}
	return j.Get(id)
}

// Prune deletes the records of Settled sessions last updated before
// before, in one commit, and returns how many it deleted. Their seen
// entries stay, so their grants are still refused as replays.
func (j *Journal) Prune(before time.Time) (int, error) {
	return j.deleteWhere(bucketSessions, "session", func(_ *bolt.Tx, k, v []byte) (bool, error) {
		s, err := decodeSession(k, v)
		if err != nil {
			return false, err
		}
		return s.State == Settled && s.UpdatedAt.Before(before), nil
	})
}

// PruneSeen deletes seen entries of sessions without a record whose grant
// expired before before, in one commit, and returns how many. A grant past
// its expiry is refused by signed.VerifyGrant (grant.expired) anyway, so
// pass now minus the tolerated clock skew and a margin.
func (j *Journal) PruneSeen(before time.Time) (int, error) {
	return j.deleteWhere(bucketSeen, "seen", func(tx *bolt.Tx, k, v []byte) (bool, error) {
		e, err := decodeSeen(k, v)
		if err != nil {
			return false, err
		}
		return e.expires.Before(before) && tx.Bucket(bucketSessions).Get(k) == nil, nil
	})
}

// deleteWhere deletes, in one commit, the records of bucket that match
// says to, and returns how many. Nothing is written when none match.
func (j *Journal) deleteWhere(bucket []byte, what string, match func(tx *bolt.Tx, k, v []byte) (bool, error)) (int, error) {
	n := 0
	err := j.update(kindOther, func(tx *bolt.Tx) error {
		n = 0
		b := tx.Bucket(bucket)
		var del [][]byte
		err := b.ForEach(func(k, v []byte) error {
			ok, err := match(tx, k, v)
			if ok {
				del = append(del, bytes.Clone(k))
			}
			return err
		})
		if err != nil {
			return err
		}
		if len(del) == 0 {
			return errNoop
		}
		for _, k := range del {
			if err := b.Delete(k); err != nil {
				return vend.Errorf(ErrStorage, "delete %s: %v", what, err)
			}
		}
		n = len(del)
		return nil
	})
	return n, err
}

func getSession(tx *bolt.Tx, id vend.SessionID) (*Session, error) {
	v := tx.Bucket(bucketSessions).Get(id[:])
	if v == nil {
		return nil, vend.Errorf(ErrNotFound, "session %s", id)
	}
	return decodeSession(id[:], v)
}

func putSession(tx *bolt.Tx, s *Session) error {
	b, err := encodeSession(s)
	if err != nil {
		return err
	}
	if err := tx.Bucket(bucketSessions).Put(bytes.Clone(s.ID[:]), b); err != nil {
		return vend.Errorf(ErrStorage, "put session %s: %v", s.ID, err)
	}
	return nil
}
