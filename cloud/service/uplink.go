package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/store"
)

// Ingest results, the "result" label of beaconvend_ingest_messages_total.
const (
	ResultOK        = "ok"        // handled
	ResultDuplicate = "duplicate" // seen before; acknowledged again, nothing done
	ResultIgnored   = "ignored"   // nothing to do (unknown session, already closed); acknowledged
	ResultRefused   = "refused"   // bad signature or a report that can never settle
	ResultError     = "error"     // a store failure; not acknowledged, the device resends
	// ResultDeadLetter: a report no key verifies; stored in dead_letters,
	// alerted on, acknowledged.
	ResultDeadLetter = "dead_letter"
)

// Handle is the ingest handler for device uplinks (it has the signature of
// cloud/ingest's Handler). The ingest acknowledges the evt and usage
// messages the device keeps in its outbox (every one but progress events,
// see ingest.Acked) for which it returns nil, so it returns nil for
// everything that is done or can never be done (duplicates, reports for
// sessions already closed, reports no key verifies: dead-lettered), and
// an error only when a retry may succeed (a store failure).
//
// Presence and ordering use the cloud's clock (now), never the envelope's
// ts: a device clock may be off by minutes, or years after a reset. An
// envelope ts more than MaxClockSkew ahead of the cloud's clock is
// counted (beaconvend_envelope_ts_skewed_total) and clamped to the cloud's
// clock wherever a device time is kept (session start and end).
//
//   - state: online begins a connection epoch, offline shutdown/reboot
//     ends it, offline lost (the last will) ends the epoch it belongs to,
//     the one the cloud holds when it hears the will (store.SetDeviceLost);
//   - telemetry: store.SetDeviceStatus with the payload as last telemetry,
//     written through when board or machine states changed, otherwise
//     coalesced per device and written once per TelemetryFlush
//     (telemetryBuffer); both stamped with the cloud's clock;
//   - evt: authorized/started/ended advance the session (store.Advance is
//     monotonic, so reordered events are harmless), progress and ended go
//     to SSE subscribers; store.MarkProcessed makes the fan-out once per id
//     for every event but progress, which is idempotent, neither recorded
//     nor acknowledged (one commit and one downlink per second per running
//     machine saved);
//   - usage: verified with the device's keys (store.UsageKeys: current,
//     next during a rotation, retired ones for sessions created before
//     their promotion), settled with store.Settle (exactly once), the
//     final session sent to subscribers; a report under the next key
//     promotes it (the device has switched); a report no key verifies is
//     dead-lettered once, alerted on, and acknowledged;
//   - reply: store.SaveCommandReply under (device, command id) and a
//     wake-up of a waiting StartSession.
func (s *Service) Handle(ctx context.Context, device string, leaf mqttapi.Leaf, msg mqttapi.Message) error {
	result, err := s.handle(ctx, device, leaf, msg)
	s.Metrics.ingest.WithLabelValues(string(leaf), result).Inc()
	return err
}

func (s *Service) handle(ctx context.Context, device string, leaf mqttapi.Leaf, msg mqttapi.Message) (string, error) {
	now := s.now()
	at := s.deviceTime(msg.Head().TS, now)
	switch m := msg.(type) {
	case *mqttapi.State:
		var err error
		cause := ""
		switch {
		case m.Status == mqttapi.Online:
			err = s.st.SetDeviceStatus(ctx, device, true, nil, now)
		case m.Reason == mqttapi.ReasonLost:
			var changed bool
			// The broker publishes a taken-over connection's will before
			// the new connection's online state (Mosquitto during the new
			// CONNECT; the embedded broker drops such a will), so a will
			// heard now ends the epoch the cloud holds now.
			if changed, err = s.st.SetDeviceLost(ctx, device, now, 0); changed {
				cause = "will"
			}
		default:
			err, cause = s.st.SetDeviceStatus(ctx, device, false, nil, now), "state"
		}
		if errors.Is(err, store.ErrDeviceNotFound) {
			return ResultIgnored, nil
		}
		if err != nil {
			return ResultError, err
		}
		if cause != "" {
			s.Metrics.offline.WithLabelValues(cause).Inc()
		}
		if m.Status == mqttapi.Online || cause != "" {
			if cause == "" {
				cause = "state"
			}
			s.presenceChanged(ctx, device, m.Status == mqttapi.Online, cause, now)
		}
		return ResultOK, nil
	case *mqttapi.Telemetry:
		sig := signature(m)
		s.telemetrySample(device, m, now)
		if s.tel.add(device, m, now, sig) {
			return ResultOK, nil // written with the next flush
		}
		b, err := json.Marshal(m)
		if err != nil {
			return ResultError, err
		}
		u := store.StatusUpdate{Device: device, Online: true, Telemetry: b, At: now}
		err = s.st.SetDeviceStatus(ctx, device, true, b, now)
		if errors.Is(err, store.ErrDeviceNotFound) {
			return ResultIgnored, nil
		}
		if err != nil {
			return ResultError, err
		}
		s.tel.wrote(u, sig)
		s.fleetChanged(ctx, device)
		return ResultOK, nil
	case *mqttapi.Event:
		return s.event(ctx, device, m, at)
	case *mqttapi.Usage:
		return s.usage(ctx, device, m)
	case *mqttapi.Reply:
		status := "ok"
		// grant.replayed means the device already holds this session (it
		// accepted the grant before, and our retry reached it after a
		// restart emptied its reply cache): only the cloud issues session
		// IDs, so that is an acceptance, not a refusal.
		if !m.OK && m.Code != mqttapi.CodeGrantReplayed {
			status = m.Code
			if status == "" {
				status = "refused"
			}
		}
		b, err := json.Marshal(m)
		if err != nil {
			return ResultError, err
		}
		first, err := s.st.SaveCommandReply(ctx, store.CommandReply{CommandID: m.CmdID, Device: device, Status: status, Body: string(b), At: now})
		if err != nil {
			return ResultError, err
		}
		s.notify(m.CmdID)
		if first {
			// A reply no start waits for any more (it came late) still
			// decides a pending session (grant.cancelled, grant.expired…).
			if err := s.ReplyArrived(ctx, device, m.CmdID, status); err != nil {
				return ResultError, err
			}
		}
		if !first {
			return ResultDuplicate, nil
		}
		return ResultOK, nil
	}
	return ResultIgnored, fmt.Errorf("service: unexpected %T on %s", msg, leaf)
}

func (s *Service) event(ctx context.Context, device string, m *mqttapi.Event, at time.Time) (string, error) {
	if m.Session.IsZero() { // fault, door, power_restored: machine-wide, nothing to settle
		return ResultOK, nil
	}
	ss, err := s.st.GetSession(ctx, m.Session)
	if errors.Is(err, store.ErrSessionNotFound) {
		return ResultIgnored, nil
	}
	if err != nil {
		return ResultError, err
	}
	if ss.Device != device {
		s.log.Warn("service: event for another device's session", "device", device, "session", m.Session)
		return ResultRefused, nil
	}
	var to store.State
	switch m.Kind {
	case mqttapi.EventAuthorized:
		to = store.Authorized
	case mqttapi.EventStarted:
		to = store.Running
	case mqttapi.EventEnded:
		to = store.Ending
	}
	if to != "" && ss.State.Live() {
		if err := s.st.Advance(ctx, m.Session, to, at); err != nil && !errors.Is(err, store.ErrSessionState) {
			return ResultError, err
		}
	}
	if m.Kind == mqttapi.EventEnded && m.Units != nil && ss.State.Holds() {
		// Kept for the unreported policy capture_last.
		if err := s.st.RecordEnded(ctx, m.Session, *m.Units); err != nil {
			return ResultError, err
		}
	}
	// Progress is idempotent (the next one supersedes it) and not in the
	// device's outbox: recording its id would cost a commit per second per
	// running machine for nothing.
	if m.Kind != mqttapi.EventProgress {
		first, err := s.st.MarkProcessed(ctx, device, m.ID)
		if err != nil {
			return ResultError, err
		}
		if !first {
			return ResultDuplicate, nil
		}
	}
	if m.Units != nil && m.Amount != nil && (m.Kind == mqttapi.EventProgress || m.Kind == mqttapi.EventEnded) {
		state := phoneapi.StateRunning
		if m.Kind == mqttapi.EventEnded {
			state = phoneapi.StateEnding
		}
		if cur, err := s.st.GetSession(ctx, m.Session); err == nil && !cur.State.Live() {
			return ResultOK, nil // settled already: its ended event was sent
		}
		s.Hub.Publish(m.Session, phoneapi.EventProgress, phoneapi.ProgressEvent{
			Session: m.Session, State: state, Units: *m.Units, Amount: *m.Amount, TS: at.UTC(),
		})
	}
	if to != "" {
		if cur, err := s.st.GetSession(ctx, m.Session); err == nil && cur.State.Live() && cur.State != ss.State {
			s.publishSession(cur)
		}
	}
	return ResultOK, nil
}

func (s *Service) usage(ctx context.Context, device string, m *mqttapi.Usage) (string, error) {
	named, err := signed.PeekUsageDevice(m.Report)
	if err != nil || named != device {
		if err == nil {
			err = vend.Errorf(ErrUsageUnverifiable, "report from %s names device %q", device, clipString(named))
		}
		return s.deadLetter(ctx, device, m, err)
	}
	keys, err := s.st.UsageKeys(ctx, device, m.Session)
	if errors.Is(err, store.ErrDeviceNotFound) {
		return ResultIgnored, nil
	}
	if err != nil {
		return ResultError, err
	}
	ks, err := signed.NewKeys(keys.All()...)
	if err != nil {
		return ResultError, err
	}
	u, err := signed.OpenUsage(m.Report, ks)
	if err == nil && u.Session != m.Session && retired(keys, u.KeyID) {
		// The retired keys were chosen for the session the unsigned copy
		// names; the signed report names another one: check that one.
		again, kerr := s.st.UsageKeys(ctx, device, u.Session)
		if kerr != nil {
			return ResultError, kerr
		}
		if !retired(again, u.KeyID) {
			err = vend.Errorf(ErrUsageUnverifiable, "report for session %s under a key retired before it", u.Session)
		}
	}
	if err != nil {
		return s.deadLetter(ctx, device, m, err)
	}
	if keys.Next != nil && u.KeyID == signed.KeyIDOf(keys.Next) {
		// The device reports under its new key: it has switched, so the
		// old one is retired (still valid for its earlier sessions).
		if err := s.st.PromoteSignKey(ctx, device); err != nil {
			return ResultError, err
		}
		s.Metrics.rotation.WithLabelValues("promoted").Inc()
		s.log.Info("service: device key promoted after the first report under it", "device", device, "key", u.KeyID)
	}
	set, err := s.st.Settle(ctx, u, m.Report)
	switch {
	case err == nil:
	case vend.KindOf(err) == vend.Transient || vend.KindOf(err) == vend.Internal:
		return ResultError, err
	case errors.Is(err, store.ErrSessionNotFound), errors.Is(err, store.ErrSessionState):
		// Unknown, or closed in a way no report can change: acknowledge
		// so the outbox drains.
		s.log.Warn("service: usage report for a closed or unknown session", "device", device, "session", u.Session, "err", err)
		return ResultIgnored, nil
	default: // usage.conflict, usage.seq_reused, usage.mismatch: can never settle
		s.log.Error("service: usage report refused by the ledger", "device", device, "session", u.Session, "err", err)
		return ResultRefused, nil
	}
	if set.Duplicate {
		return ResultDuplicate, nil
	}
	if set.Late {
		// The session was closed without this report (expired, released,
		// voided…): captured late, once (store key late:<session>).
		s.Metrics.lateCaptures.Inc()
		if set.Receivable > 0 {
			s.Metrics.lateReceivable.Add(float64(set.Receivable))
		}
		s.log.Warn("service: late capture", "device", device, "session", u.Session, "state", set.Session.State,
			"amount", set.LateAmount, "receivable", set.Receivable)
	} else {
		s.Metrics.sessions.WithLabelValues(string(set.Session.State)).Inc()
	}
	s.publishSession(set.Session)
	return ResultOK, nil
}

// retired reports whether id names one of k's retired keys.
func retired(k store.UsageKeys, id signed.KeyID) bool {
	for _, p := range k.Retired {
		if signed.KeyIDOf(p) == id {
			return true
		}
	}
	return false
}

// deadLetter stores a usage report that can never verify, alerts once per
// message (error log, beaconvend_dead_letters_total) and lets the ingest
// acknowledge it, so the device stops resending it; the session it was
// for leaves through its own bounded exit.
func (s *Service) deadLetter(ctx context.Context, device string, m *mqttapi.Usage, cause error) (string, error) {
	s.Metrics.sigFails.Inc()
	code := vend.CodeOf(cause)
	if code == "" {
		code = "usage.unverifiable"
	}
	first, err := s.st.SaveDeadLetter(ctx, store.DeadLetter{Device: device, MessageID: m.ID, Leaf: string(mqttapi.LeafUsage),
		Code: code, Detail: cause.Error(), Payload: m.Report, At: s.now()})
	if err != nil {
		return ResultError, err
	}
	if !first {
		return ResultDuplicate, nil
	}
	s.Metrics.deadLetters.WithLabelValues(code).Inc()
	s.log.Error("service: usage report dead-lettered: no key verifies it; acknowledged so the device stops resending",
		"device", device, "id", m.ID, "session", m.Session, "code", code, "err", cause)
	return ResultDeadLetter, nil
}
