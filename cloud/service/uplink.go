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
)

// Handle is the ingest handler for device uplinks (it has the signature of
// cloud/ingest's Handler). The ingest acknowledges evt and usage messages
// for which it returns nil, so it returns nil for everything that is done
// or can never be done (duplicates, reports for sessions already closed),
// and an error only when a retry may succeed (a store failure) or when a
// usage report's signature does not verify (refused, counted, not acked).
//
//   - state: online/offline → store.SetDeviceStatus (older states ignored);
//   - telemetry: store.SetDeviceStatus with the payload as last telemetry,
//     written through when board or machine states changed, otherwise
//     coalesced per device and written once per TelemetryFlush
//     (telemetryBuffer);
//   - evt: authorized/started/ended advance the session (store.Advance is
//     monotonic, so reordered events are harmless), progress and ended go
//     to SSE subscribers; store.MarkProcessed makes the fan-out once per id;
//   - usage: verified with the device's keys (signed.OpenUsage), settled
//     with store.Settle (exactly once), the final session sent to
//     subscribers;
//   - reply: store.SaveCommandReply and a wake-up of a waiting StartSession.
func (s *Service) Handle(ctx context.Context, device string, leaf mqttapi.Leaf, msg mqttapi.Message) error {
	result, err := s.handle(ctx, device, leaf, msg)
	s.Metrics.ingest.WithLabelValues(string(leaf), result).Inc()
	return err
}

func (s *Service) handle(ctx context.Context, device string, leaf mqttapi.Leaf, msg mqttapi.Message) (string, error) {
	at := time.UnixMilli(msg.Head().TS)
	switch m := msg.(type) {
	case *mqttapi.State:
		on := m.Status == mqttapi.Online
		err := s.st.SetDeviceStatus(ctx, device, on, nil, at)
		if errors.Is(err, store.ErrDeviceNotFound) {
			return ResultIgnored, nil
		}
		if err != nil {
			return ResultError, err
		}
		s.mu.Lock()
		s.online[device] = on
		s.mu.Unlock()
		return ResultOK, nil
	case *mqttapi.Telemetry:
		sig := signature(m)
		if s.tel.add(device, m, at, sig) {
			return ResultOK, nil // written with the next flush
		}
		b, err := json.Marshal(m)
		if err != nil {
			return ResultError, err
		}
		u := store.StatusUpdate{Device: device, Online: true, Telemetry: b, At: at}
		err = s.st.SetDeviceStatus(ctx, device, true, b, at)
		if errors.Is(err, store.ErrDeviceNotFound) {
			return ResultIgnored, nil
		}
		if err != nil {
			return ResultError, err
		}
		s.tel.wrote(u, sig)
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
		first, err := s.st.SaveCommandReply(ctx, store.CommandReply{CommandID: m.CmdID, Device: device, Status: status, Body: string(b), At: s.now()})
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
	first, err := s.st.MarkProcessed(ctx, device, m.ID)
	if err != nil {
		return ResultError, err
	}
	if !first {
		return ResultDuplicate, nil
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
		s.Metrics.sigFails.Inc()
		return ResultRefused, fmt.Errorf("service: usage report from %s names device %q: %v", device, named, err)
	}
	pubs, err := s.st.SignKeys(ctx, device)
	if errors.Is(err, store.ErrDeviceNotFound) {
		return ResultIgnored, nil
	}
	if err != nil {
		return ResultError, err
	}
	keys, err := signed.NewKeys(pubs...)
	if err != nil {
		return ResultError, err
	}
	u, err := signed.OpenUsage(m.Report, keys)
	if err != nil {
		s.Metrics.sigFails.Inc()
		s.log.Warn("service: usage report refused", "device", device, "id", m.ID, "err", err)
		return ResultRefused, fmt.Errorf("service: usage report %s from %s: %w", m.ID, device, err)
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
