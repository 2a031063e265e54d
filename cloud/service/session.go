package service

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/proxid"
	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/store"
)

// Resolve maps a heard proximity ID (16 hex digits) to its device, the
// window it matched and the machines with prices and states. Errors:
// proximity.unknown, proximity.expired, device.not_found.
func (s *Service) Resolve(ctx context.Context, idText string) (phoneapi.ResolveResponse, error) {
	id, err := proxid.ParseID(idText)
	if err != nil {
		return phoneapi.ResolveResponse{}, err
	}
	m, err := s.Res.Resolve(id)
	if err != nil {
		return phoneapi.ResolveResponse{}, err
	}
	d, err := s.st.GetDevice(ctx, m.Device)
	if err != nil {
		return phoneapi.ResolveResponse{}, err
	}
	stocks, err := s.slotStocks(ctx, d.ID)
	if err != nil {
		return phoneapi.ResolveResponse{}, err
	}
	v := deviceView(d, stocks)
	return phoneapi.ResolveResponse{Device: v.Device, Window: phoneapi.ProximityWindow{Start: int64(m.Window), K: m.K}, Machines: v.Machines}, nil
}

// authorizeCmdID is the Authorize command's id for a session: the same for
// every attempt, so a device that already answered replies again without
// acting twice.
func authorizeCmdID(id vend.SessionID) string { return "auth-" + hex.EncodeToString(id[:]) }

func stopCmdID(id vend.SessionID) string { return "stop-" + hex.EncodeToString(id[:]) }

// StartSession starts a paid session for user:
//
//  0. a session already started with idemKey answers a retry at once
//     (store.UserSessionByKey): the same request gets it (pending: the
//     Authorize is resent and waited for again), another request is
//     idempotency.conflict; nothing below is checked again, so a retry
//     after the proximity window or while the device is offline still
//     finds its session;
//  1. the proximity ID is resolved again and must name req.Device in the
//     current window ± 1 (proximity.unknown / proximity.expired);
//  2. the device must be online (machine.offline), the machine not
//     faulted (machine.fault) and the slot not jammed (slot.jammed) by its
//     last telemetry, and a machine with slots needs req.Slot
//     (ErrSlotRequired): each answered at once, nothing held;
//  3. store.StartSession reads the price, turns a money cap into units,
//     holds the cost (never above the money cap) and stores the grant,
//     signed with the cloud key, all in one transaction; a price other
//     than req.ExpectedPrice is price.changed (*store.PriceChangedError);
//  4. mqttapi.Authorize goes to the device (QoS 1) and StartSession waits up
//     to ReplyTimeout for its Reply, which may be saved by another instance
//     (store.GetCommandReply is polled besides the in-process wake-up).
//
// Relay (app-protocol/GATT.md), only when the phone says it can relay
// (req.CanRelay): when the device is offline by presence
// (step 2 then checks the rest on its last telemetry), or the operator set
// the device or machine to relay always (store.RelayAlways), step 4 is
// skipped: the pending session is returned with a relay ticket (offerRelay:
// the grant bound to the device and a fresh nonce) for the phone to carry
// over BLE, and its hold stays until the report settles it or the
// unreported bound expires it. A start with no reply in time is offered
// for relay too (the board accepts the grant once, by whichever path).
//
// OK: the session is advanced to authorized and returned. Refused: the
// hold is released in full (store.Fail) and the device's code returned as
// a conflict (machine.busy, machine.fault, …). No reply in time: the
// pending session is returned WITH ErrDeviceNoReply (transient): the hold
// stays, because the device may still receive the grant and start the
// machine before its start-by bound (GrantTTL); the phone is told to wait
// for the machine, may cancel (StopSession sends mqttapi.Stop, and the
// board then refuses the grant with grant.cancelled), and may say nothing
// was charged only once the session is failed or expired. A retry with
// the same idempotency key finds the session and waits again (the
// Authorize is resent with the same command id). If nothing arrives,
// Sweep releases the hold once the start-by bound plus
// store.Opts.AckBound has passed.
func (s *Service) StartSession(ctx context.Context, user, idemKey string, req phoneapi.StartSessionRequest) (store.Session, error) {
	// A retry finds its session first: the proximity window it was
	// started in may be over by now, and so may the device be offline.
	if prev, err := s.st.UserSessionByKey(ctx, user, idemKey); err == nil {
		return s.retriedStart(ctx, prev, req)
	} else if vend.CodeOf(err) != store.ErrSessionNotFound.Code {
		return store.Session{}, err
	}
	pid, err := proxid.ParseID(string(req.ProximityID))
	if err != nil {
		return store.Session{}, err
	}
	m, err := s.Res.Resolve(pid)
	if err != nil {
		return store.Session{}, err
	}
	if m.Device != string(req.Device) {
		return store.Session{}, errf(ErrProximityUnknown, "%s does not belong to device %s", pid, req.Device)
	}
	if req.Source != "wallet" {
		if _, ok := s.router.Lookup(req.Source); ok {
			return store.Session{}, errf(ErrSourceUnusable, "%s cannot hold funds; top up the wallet from it", req.Source)
		}
		return store.Session{}, errf(ErrSourceNotFound, "%q", req.Source)
	}
	d, mach, offline, err := s.readyMachineRelay(ctx, m.Device, string(req.Machine), string(req.Slot), req.CanRelay)
	if err != nil {
		return store.Session{}, err
	}
	relay := ""
	if offline {
		relay = RelayOffline
	} else if req.CanRelay {
		always, err := s.st.RelayAlways(ctx, d.ID, mach.ID)
		if err != nil {
			return store.Session{}, err
		}
		if always {
			relay = RelayAlways
		}
	}
	if err := s.stepUpSession(ctx, user, idemKey, mach, req); err != nil {
		return store.Session{}, err
	}
	// The price, the units a money cap buys and the hold are decided by
	// the store in one transaction (a price changed meanwhile cannot
	// inflate the hold); the phone's expected price is checked there.
	in := store.StartInput{
		User: user, Device: d.ID, Machine: mach.ID, Slot: string(req.Slot), CapUnits: req.Cap.Units,
		IdemKey: idemKey, Window: m.Window, WindowK: m.K, GrantTTL: s.opts.GrantTTL, ExpectedPrice: req.ExpectedPrice,
		Sign: func(g signed.Grant) ([]byte, error) { return signed.SignGrant(s.opts.CloudKey, g) },
	}
	if req.Cap.Amount != nil {
		in.CapUnits, in.CapAmount, in.CapCurrency = 0, req.Cap.Amount.Minor, req.Cap.Amount.Currency
	}
	ss, err := s.st.StartSession(ctx, in)
	if err != nil {
		return store.Session{}, err
	}
	if ss.State != store.Pending {
		return s.finishedStart(ss)
	}
	if relay != "" {
		return s.offerRelay(ctx, ss, relay)
	}
	return s.authorize(ctx, ss, req.CanRelay)
}

// readyMachine reads a device and one of its machines and checks what
// every start checks after presence: the machine exists, a machine with
// slots is given one, the device is online (machine.offline), the machine
// not faulted (machine.fault) and the slot not jammed (slot.jammed) by its
// last telemetry, nor counted sold out (slot.empty, inventory.go).
// StartSession and checkouts share it.
func (s *Service) readyMachine(ctx context.Context, device, machine, slot string) (store.Device, store.Machine, error) {
	d, mach, _, err := s.readyMachineRelay(ctx, device, machine, slot, false)
	return d, mach, err
}

// readyMachineRelay is readyMachine; with relay, an active device that is
// offline passes (offline reports it) and the remaining checks are made
// on its last telemetry: the phone may carry the grant to it over BLE.
func (s *Service) readyMachineRelay(ctx context.Context, device, machine, slot string, relay bool) (store.Device, store.Machine, bool, error) {
	d, mach, err := s.readyMachineChecks(ctx, device, machine, slot, relay)
	return d, mach, err == nil && !d.Online, err
}

func (s *Service) readyMachineChecks(ctx context.Context, device, machine, slot string, relay bool) (store.Device, store.Machine, error) {
	d, err := s.st.GetDevice(ctx, device)
	if err != nil {
		return store.Device{}, store.Machine{}, err
	}
	mach, ok := machineOf(d, machine)
	if !ok {
		return d, mach, errf(store.ErrMachineNotFound, "no machine %s on device %s", machine, d.ID)
	}
	if len(mach.Slots) > 0 && slot == "" {
		return d, mach, errf(ErrSlotRequired, "machine %s vends from slots; name one", mach.ID)
	}
	if d.State == store.DeviceDisabled || (!d.Online && !relay) {
		return d, mach, errf(ErrMachineOffline, "device %s is offline", d.ID)
	}
	if machineStates(d.Telemetry)[mach.ID] == string(mqttapi.MachineFault) {
		return d, mach, errf(ErrMachineFault, "machine %s", mach.ID)
	}
	if slot != "" && slices.Contains(jammedSlots(d.Telemetry)[mach.ID], slot) {
		return d, mach, errf(ErrSlotJammed, "slot %s of machine %s", slot, mach.ID)
	}
	if err := s.checkStock(ctx, d.ID, mach.ID, slot); err != nil { // slot.empty
		return d, mach, err
	}
	return d, mach, nil
}

// retriedStart answers a start whose idempotency key already has a
// session: the same request gets that session (waiting again for the
// device while it is pending), another request is idempotency.conflict.
func (s *Service) retriedStart(ctx context.Context, prev store.Session, req phoneapi.StartSessionRequest) (store.Session, error) {
	sameCap := prev.CapAmount == 0 && req.Cap.Units == prev.CapUnits
	if req.Cap.Amount != nil {
		sameCap = prev.CapAmount == req.Cap.Amount.Minor && prev.Currency == req.Cap.Amount.Currency
	}
	if prev.Device != string(req.Device) || prev.Machine != string(req.Machine) || prev.Slot != string(req.Slot) || !sameCap {
		return store.Session{}, errf(store.ErrIdemConflict, "start key %q holds another request", prev.IdemKey)
	}
	prev.Duplicate = true
	if prev.State != store.Pending {
		return s.finishedStart(prev)
	}
	if prev.RelayTicket != nil {
		// Offered for relay: while the device is still out of reach or
		// set to relay always, the phone gets the same grant and ticket
		// again; otherwise the Authorize is resent as well.
		d, err := s.st.GetDevice(ctx, prev.Device)
		if err != nil {
			return prev, err
		}
		always, err := s.st.RelayAlways(ctx, prev.Device, prev.Machine)
		if err != nil {
			return prev, err
		}
		if !d.Online || always {
			return prev, nil
		}
	}
	return s.authorize(ctx, prev, req.CanRelay)
}

// finishedStart answers a retried start whose session is past pending.
func (s *Service) finishedStart(ss store.Session) (store.Session, error) {
	if ss.State == store.Failed {
		return ss, refusal(ss.Fault, "")
	}
	return ss, nil
}

// jammedSlots reads each machine's jammed slots from a device's last telemetry.
func jammedSlots(tel json.RawMessage) map[string][]string {
	var t mqttapi.Telemetry
	_ = json.Unmarshal(tel, &t)
	out := map[string][]string{}
	for _, m := range t.Machines {
		out[m.ID] = m.Jammed
	}
	return out
}

// refusal turns a device's reply code into the phone's error.
func refusal(code, msg string) error {
	switch code {
	case mqttapi.CodeMachineBusy:
		return errf(store.ErrMachineBusy, "the device reports the machine busy: %s", msg)
	case mqttapi.CodeMachineFault:
		return errf(ErrMachineFault, "the device reports a fault: %s", msg)
	case mqttapi.CodeMachineUnknown:
		return errf(store.ErrMachineNotFound, "the device does not know the machine: %s", msg)
	}
	if code != "" {
		return &vend.Error{Kind: vend.Conflict, Code: code, Msg: "sessions: the device refused the grant: " + code + ": " + msg}
	}
	return errf(ErrDeviceRefused, "%s", msg)
}

// authorize sends the Authorize and waits for the device's reply; with
// canRelay, a start that gets no reply in time is offered for relay.
func (s *Service) authorize(ctx context.Context, ss store.Session, canRelay bool) (store.Session, error) {
	cmdID := authorizeCmdID(ss.ID)
	wake := s.wait(cmdID)
	defer s.unwait(cmdID, wake)
	env := mqttapi.NewEnvelope(s.now())
	env.ID = cmdID
	t0 := time.Now()
	pctx, cancel := context.WithTimeout(ctx, s.opts.ReplyTimeout)
	defer cancel()
	if err := s.pub.Publish(pctx, ss.Device, &mqttapi.Authorize{Envelope: env, Machine: ss.Machine, Grant: ss.Grant}); err != nil {
		if ctx.Err() != nil {
			return ss, ctx.Err()
		}
		return ss, errf(ErrUnavailable, "authorize %s: %v", ss.ID, err)
	}
	poll := time.NewTicker(s.opts.ReplyPoll)
	defer poll.Stop()
	// A new session's reply cannot be stored yet: wait for the in-process
	// wake-up (the waiter was registered before publishing) or the first
	// poll instead of asking the store at once. A retried start looks
	// first: its reply may be there from the earlier attempt.
	check := ss.Duplicate
	for {
		if check {
			r, err := s.st.GetCommandReply(ctx, ss.Device, cmdID)
			if err == nil {
				s.Metrics.authorize.Observe(time.Since(t0).Seconds())
				return s.applyReply(ctx, ss, r)
			}
			if !errors.Is(err, store.ErrCommandNotFound) {
				return ss, err
			}
		}
		check = true
		select {
		case <-wake:
		case <-poll.C:
		case <-pctx.Done():
			if ctx.Err() != nil {
				return ss, ctx.Err()
			}
			// The device may still act on the grant: keep the hold
			// (see StartSession) and tell the phone to retry.
			if cur, err := s.st.GetSession(ctx, ss.ID); err == nil && cur.State != store.Pending {
				return s.finishedStart(cur)
			}
			// The phone may carry the grant instead: the board accepts
			// it once, whichever way it comes first (GATT.md).
			if canRelay {
				if rs, err := s.offerRelay(ctx, ss, RelayNoReply); err == nil {
					ss = rs
				} else {
					s.log.Warn("service: relay not offered", "session", ss.ID, "err", err)
				}
			}
			return ss, errf(ErrDeviceNoReply, "session %s: no reply within %s: waiting for the machine; the hold stays until it answers "+
				"or its start-by bound %s passes; POST /v1/sessions/%s/stop cancels", ss.ID, s.opts.ReplyTimeout, ss.GrantExp.Format(time.RFC3339), ss.ID)
		}
	}
}

// ReplyArrived applies a device's reply to an Authorize that no start is
// waiting for any more (it came after ReplyTimeout): a refusal —
// grant.cancelled after the phone cancelled, grant.expired, any other code
// — fails the pending session and releases its hold; an acceptance
// advances it to authorized. The ingest path calls it for every saved
// reply; replies to other commands are ignored.
func (s *Service) ReplyArrived(ctx context.Context, device, cmdID, status string) error {
	hexID, ok := strings.CutPrefix(cmdID, "auth-")
	if !ok {
		return nil
	}
	raw, err := hex.DecodeString(hexID)
	if err != nil || len(raw) != len(vend.SessionID{}) {
		return nil
	}
	var id vend.SessionID
	copy(id[:], raw)
	ss, err := s.st.GetSession(ctx, id)
	if errors.Is(err, store.ErrSessionNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if ss.Device != device || ss.State != store.Pending {
		return nil
	}
	body, _ := json.Marshal(mqttapi.Reply{})
	_, err = s.applyReply(ctx, ss, store.CommandReply{CommandID: cmdID, Device: device, Status: status, Body: string(body)})
	if vend.KindOf(err) == vend.Internal || vend.KindOf(err) == vend.Transient {
		return err
	}
	return nil
}

func (s *Service) applyReply(ctx context.Context, ss store.Session, r store.CommandReply) (store.Session, error) {
	var rep mqttapi.Reply
	_ = json.Unmarshal([]byte(r.Body), &rep)
	if r.Status == "ok" {
		cur, err := s.st.AdvanceSession(ctx, ss.ID, store.Authorized, s.now())
		if err != nil && !errors.Is(err, store.ErrSessionState) {
			return ss, err
		}
		s.publishSession(cur)
		return s.finishedStart(cur)
	}
	set, err := s.st.Fail(ctx, ss.ID, r.Status)
	if err != nil {
		if errors.Is(err, store.ErrSessionState) { // it started or ended meanwhile
			cur, gerr := s.st.GetSession(ctx, ss.ID)
			if gerr != nil {
				return ss, gerr
			}
			return s.finishedStart(cur)
		}
		return ss, err
	}
	if !set.Duplicate {
		s.Metrics.sessions.WithLabelValues(string(store.Failed)).Inc()
	}
	s.publishSession(set.Session)
	return set.Session, refusal(r.Status, rep.Message)
}

func (s *Service) wait(cmdID string) chan struct{} {
	c := make(chan struct{}, 1)
	s.mu.Lock()
	s.waiters[cmdID] = append(s.waiters[cmdID], c)
	s.mu.Unlock()
	return c
}

func (s *Service) unwait(cmdID string, c chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ws := s.waiters[cmdID]
	for i, w := range ws {
		if w == c {
			ws = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(ws) == 0 {
		delete(s.waiters, cmdID)
	} else {
		s.waiters[cmdID] = ws
	}
}

func (s *Service) notify(cmdID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.waiters[cmdID] {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// StopSession asks the device to end one of user's sessions now
// (mqttapi.Stop, always with the same command id per session, so repeats
// are harmless). A session that has ended (or is unreported) is returned
// unchanged. A running session is advanced to ending (the device reports
// its usage from its outbox). A pending one is a cancel: the board, on
// Stop for a session it has not started, refuses that grant afterwards
// (grant.cancelled, which fails the session and releases the hold); the
// session stays pending until the board answers or its start-by bound
// plus AckBound passes and the sweeper releases it. Errors:
// session.not_found, service.unavailable (the broker did not take the
// command).
func (s *Service) StopSession(ctx context.Context, user string, id vend.SessionID) (store.Session, error) {
	ss, err := s.st.UserSession(ctx, user, id)
	if err != nil {
		return store.Session{}, err
	}
	if !ss.State.Live() {
		return ss, nil
	}
	env := mqttapi.NewEnvelope(s.now())
	env.ID = stopCmdID(id)
	pctx, cancel := context.WithTimeout(ctx, s.opts.ReplyTimeout)
	defer cancel()
	if err := s.pub.Publish(pctx, ss.Device, &mqttapi.Stop{Envelope: env, Session: id, Machine: ss.Machine}); err != nil {
		return ss, errf(ErrUnavailable, "stop %s: %v", id, err)
	}
	if ss.State == store.Running {
		if err := s.st.Advance(ctx, id, store.Ending, s.now()); err != nil && !errors.Is(err, store.ErrSessionState) {
			return ss, err
		}
	}
	cur, err := s.st.UserSession(ctx, user, id)
	if err != nil {
		return ss, err
	}
	if cur.State != ss.State {
		s.publishSession(cur)
	}
	return cur, nil
}

// OperatorSettle settles one of operator's unreported sessions by hand
// (store.OperatorSettle: amount ≤ hold captured, the rest released, reason
// kept) and tells the session's subscribers. Errors: money.currency_mismatch
// and the store's.
func (s *Service) OperatorSettle(ctx context.Context, operator string, id vend.SessionID, amount vend.Amount, reason string) (store.Session, error) {
	if err := s.authorizeFor(ctx, operator, PermSettle); err != nil {
		return store.Session{}, err
	}
	cur, err := s.st.GetSession(ctx, id)
	if err != nil {
		return store.Session{}, err
	}
	if cur.Operator == operator && amount.Currency != cur.Currency {
		return store.Session{}, vend.Errorf(store.ErrCurrency, "amount in %s, the session is in %s", amount.Currency, cur.Currency)
	}
	set, err := s.st.OperatorSettle(ctx, operator, id, amount.Minor, reason)
	if err != nil {
		return store.Session{}, err
	}
	s.audited(ctx, operator, "session.settle", id.String(), auditSession(cur),
		map[string]any{"state": set.Session.State, "captured": vend.Amount{Minor: set.Session.Captured, Currency: set.Session.Currency}, "reason": reason})
	s.Metrics.sessions.WithLabelValues(string(set.Session.State)).Inc()
	s.publishSession(set.Session)
	return set.Session, nil
}

// OperatorVoid releases one of operator's unreported sessions in full
// (store.OperatorVoid, reason kept) and tells the session's subscribers.
// Errors: the store's.
func (s *Service) OperatorVoid(ctx context.Context, operator string, id vend.SessionID, reason string) (store.Session, error) {
	if err := s.authorizeFor(ctx, operator, PermSettle); err != nil {
		return store.Session{}, err
	}
	cur, _ := s.st.GetSession(ctx, id) // for the audit's before; the void decides
	set, err := s.st.OperatorVoid(ctx, operator, id, reason)
	if err != nil {
		return store.Session{}, err
	}
	s.audited(ctx, operator, "session.void", id.String(), auditSession(cur), map[string]any{"state": set.Session.State, "reason": reason})
	s.Metrics.sessions.WithLabelValues(string(set.Session.State)).Inc()
	s.publishSession(set.Session)
	return set.Session, nil
}

// SetPrices changes a machine's (and the named slots') price on one of
// operator's devices in the store, then sends the device its whole new
// price table (mqttapi.SetPrices). Errors: the store's (device.not_found
// also for another operator's device, machine.not_found, slot.not_found,
// money.price) and service.unavailable when the command could not be
// published (the store is changed; sending again is harmless).
func (s *Service) SetPrices(ctx context.Context, operator, device, machine string, price vend.Price, slots map[string]vend.Price) error {
	if err := s.authorizeFor(ctx, operator, PermPrice); err != nil {
		return err
	}
	old, _ := s.st.OperatorDevice(ctx, operator, device) // for the audit's before; SetPrices decides
	if err := s.st.SetPrices(ctx, operator, device, machine, price, slots); err != nil {
		return err
	}
	d, err := s.st.GetDevice(ctx, device)
	if err != nil {
		return err
	}
	s.audited(ctx, operator, "price.set", device+"/"+machine, machinePrices(old.Machines, machine), machinePrices(d.Machines, machine))
	msg := s.pricesMsg(d)
	pctx, cancel := context.WithTimeout(ctx, s.opts.ReplyTimeout)
	defer cancel()
	if err := s.pub.Publish(pctx, device, msg); err != nil {
		return errf(ErrUnavailable, "set_prices %s: %v", device, err)
	}
	return nil
}

// publishSession sends a state event, or the ended event for a final
// session, to the session's subscribers on this instance.
func (s *Service) publishSession(ss store.Session) {
	typ := phoneapi.EventState
	if !ss.State.Holds() { // final; an unreported session may still settle
		typ = phoneapi.EventEnded
	}
	s.Hub.Publish(ss.ID, typ, s.PhoneSession(ss))
	s.sessionEnded(ss)
}

// auditSession is what the audit log keeps of a session before an
// operator's change.
func auditSession(ss store.Session) map[string]any {
	if ss.ID == (vend.SessionID{}) {
		return nil
	}
	return map[string]any{"state": ss.State, "hold": vend.Amount{Minor: ss.Hold, Currency: ss.Currency},
		"captured": vend.Amount{Minor: ss.Captured, Currency: ss.Currency}, "device": ss.Device, "machine": ss.Machine}
}

// auditPrices is what the audit log keeps of a machine's prices.
type auditPrices struct {
	Price vend.Price            `json:"price"`
	Slots map[string]vend.Price `json:"slots,omitempty"`
}

// machinePrices returns machine's prices among ms, nil when absent.
func machinePrices(ms []store.Machine, machine string) *auditPrices {
	for _, m := range ms {
		if m.ID != machine {
			continue
		}
		p := &auditPrices{Price: m.Price}
		for _, sl := range m.Slots {
			if p.Slots == nil {
				p.Slots = map[string]vend.Price{}
			}
			p.Slots[sl.ID] = sl.Price
		}
		return p
	}
	return nil
}

// SetWebCheckout turns the QR web checkout of a machine on one of
// operator's devices on or off (PermPrice), audited as
// machine.web_checkout. Errors: auth.forbidden, device.not_found (also
// another operator's device), machine.not_found.
func (s *Service) SetWebCheckout(ctx context.Context, operator, device, machine string, on bool) error {
	if err := s.authorizeFor(ctx, operator, PermPrice); err != nil {
		return err
	}
	d, err := s.st.OperatorDevice(ctx, operator, device)
	if err != nil {
		return err
	}
	was, found := false, false
	for _, m := range d.Machines {
		if m.ID == machine {
			was, found = m.WebCheckout, true
		}
	}
	if !found {
		return vend.Errorf(store.ErrMachineNotFound, "%s/%s", device, machine)
	}
	if err := s.st.SetWebCheckout(ctx, device, machine, on); err != nil {
		return err
	}
	if was != on {
		s.audited(ctx, operator, "machine.web_checkout", device+"/"+machine, map[string]bool{"on": was}, map[string]bool{"on": on})
	}
	return nil
}
