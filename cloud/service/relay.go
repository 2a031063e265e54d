package service

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/store"
)

// Relay errors: a usage report the phone uploads that the cloud refuses.
// Besides these, the store's usage.conflict (another report settled the
// session: an altered or replayed one), usage.seq_reused and
// usage.mismatch (the report departs from the grant) are answered as is.
var (
	// ErrUsageMalformed: the upload is not a signed usage report.
	ErrUsageMalformed = vend.E(vend.Invalid, "usage.malformed", "relay: not a signed usage report")
	// ErrUsageSignature: no key of the session's device verifies it
	// (forged, altered, or signed by another device's key).
	ErrUsageSignature = vend.E(vend.Invalid, "usage.signature", "relay: the usage report does not verify under the device's keys")
	// ErrUsageDevice: the report names another device than the session's.
	ErrUsageDevice = vend.E(vend.Invalid, "usage.device", "relay: the usage report is from another device")
	// ErrUsageSession: the report is for another session than the URL's.
	ErrUsageSession = vend.E(vend.Invalid, "usage.session", "relay: the usage report is for another session")
)

// Relay reasons, the "reason" label of beaconvend_relay_grants_total.
const (
	RelayOffline = "offline"  // presence says the device is offline
	RelayNoReply = "no_reply" // the device did not answer the Authorize in time
	RelayAlways  = "always"   // the operator relays every session of the device or machine
)

// offerRelay gives a pending session a relay ticket (once: a retried start
// gets the stored one) so the phone can carry its grant to the board over
// BLE (app-protocol/GATT.md). The ticket binds the grant (by digest) to
// its device and a fresh random nonce, and is signed with the grant's
// key. For an offline device (or relay always) store.SetRelayTicket also
// moves the pending session's deadline to its unreported bound: the
// phone's upload after the run is then the only acknowledgement. After
// no reply the deadline stays: a board that takes the relayed grant while
// its link works reports its events over MQTT, which acknowledge the
// session; if none come, the session expires at its start-by bound like
// any unacknowledged one, and a report after that is a late capture.
func (s *Service) offerRelay(ctx context.Context, ss store.Session, reason string) (store.Session, error) {
	if len(ss.Grant) == 0 {
		return ss, nil
	}
	if ss.RelayTicket == nil {
		tk := signed.RelayTicket{Session: ss.ID, Device: ss.Device, Grant: signed.Digest(ss.Grant), ExpiresAt: ss.GrantExp}
		if _, err := rand.Read(tk.Nonce[:]); err != nil {
			return ss, err
		}
		b, err := signed.SignRelayTicket(s.opts.CloudKey, tk)
		if err != nil {
			return ss, err
		}
		if ss.RelayTicket, err = s.st.SetRelayTicket(ctx, ss.ID, b, reason != RelayNoReply); err != nil {
			return ss, err
		}
		s.Metrics.relayGrants.WithLabelValues(reason).Inc()
		s.log.Info("service: grant offered for relay by the phone", "session", ss.ID, "device", ss.Device, "reason", reason)
	}
	return ss, nil
}

// phoneRelay is the relay part of a phone session, nil when none.
func phoneRelay(ss store.Session) *phoneapi.Relay {
	if ss.RelayTicket == nil || len(ss.Grant) == 0 || ss.State != store.Pending {
		return nil
	}
	return &phoneapi.Relay{Grant: ss.Grant, Ticket: ss.RelayTicket, ExpiresAt: ss.GrantExp.UTC()}
}

// UploadUsage takes the device-signed usage report of one of user's
// sessions from the phone that read it off the board over BLE, and settles
// it through the same path as a report over MQTT (store.Settle: exactly
// once per session, keyed by the report's digest), so the report may
// arrive by phone, by MQTT, or both, in any order. It checks, in order:
// the session is the user's (session.not_found), the bytes are a usage
// report (usage.malformed) from the session's device (usage.device), one
// of that device's keys verifies it (usage.signature: forged, altered, or
// another device's key), it is for this session (usage.session), and the
// store's usage.mismatch, usage.conflict (a different report settled the
// session) and usage.seq_reused. A report under the device's next key
// promotes it, as over MQTT. The answer carries the session, the report's
// digest and a cloud-signed usage ack for the phone to write to the
// board (gattapi.Ack), which then drops the report from its outbox.
func (s *Service) UploadUsage(ctx context.Context, user string, id vend.SessionID, report []byte) (phoneapi.UsageAccepted, error) {
	ss, err := s.st.UserSession(ctx, user, id)
	if err != nil {
		return phoneapi.UsageAccepted{}, err
	}
	if len(report) == 0 || len(report) > signed.MaxSigned {
		return phoneapi.UsageAccepted{}, errf(ErrUsageMalformed, "%d bytes", len(report))
	}
	named, err := signed.PeekUsageDevice(report)
	if err != nil {
		return phoneapi.UsageAccepted{}, errf(ErrUsageMalformed, "%v", err)
	}
	if named != ss.Device {
		return phoneapi.UsageAccepted{}, errf(ErrUsageDevice, "report from %q, session on %s", clipString(named), ss.Device)
	}
	keys, err := s.st.UsageKeys(ctx, ss.Device, ss.ID)
	if err != nil {
		return phoneapi.UsageAccepted{}, err
	}
	ks, err := signed.NewKeys(keys.All()...)
	if err != nil {
		return phoneapi.UsageAccepted{}, err
	}
	u, err := signed.OpenUsage(report, ks)
	switch {
	case err == nil:
	case errors.Is(err, signed.ErrSignature), errors.Is(err, signed.ErrUnknownKey):
		s.Metrics.relayUploads.WithLabelValues(ResultRefused).Inc()
		return phoneapi.UsageAccepted{}, errf(ErrUsageSignature, "session %s: %v", id, err)
	default:
		return phoneapi.UsageAccepted{}, errf(ErrUsageMalformed, "%v", err)
	}
	if u.Session != ss.ID {
		s.Metrics.relayUploads.WithLabelValues(ResultRefused).Inc()
		return phoneapi.UsageAccepted{}, errf(ErrUsageSession, "report for %s, uploaded for %s", u.Session, ss.ID)
	}
	if keys.Next != nil && u.KeyID == signed.KeyIDOf(keys.Next) {
		if err := s.st.PromoteSignKey(ctx, ss.Device); err != nil {
			return phoneapi.UsageAccepted{}, err
		}
		s.Metrics.rotation.WithLabelValues("promoted").Inc()
	}
	set, err := s.st.Settle(ctx, u, report)
	if err != nil {
		if k := vend.KindOf(err); k != vend.Transient && k != vend.Internal {
			s.Metrics.relayUploads.WithLabelValues(ResultRefused).Inc()
		}
		return phoneapi.UsageAccepted{}, err
	}
	digest := signed.Digest(report)
	ack, err := signed.SignUsageAck(s.opts.CloudKey, signed.UsageAck{Device: ss.Device, Session: ss.ID, Report: digest})
	if err != nil {
		return phoneapi.UsageAccepted{}, err
	}
	if set.Duplicate {
		s.Metrics.relayUploads.WithLabelValues(ResultDuplicate).Inc()
	} else {
		s.Metrics.relayUploads.WithLabelValues(ResultOK).Inc()
		s.stockSettled(ctx, set.Stock)
		if set.Late {
			s.Metrics.lateCaptures.Inc()
			if set.Receivable > 0 {
				s.Metrics.lateReceivable.Add(float64(set.Receivable))
			}
			s.log.Warn("service: late capture of a relayed report", "device", ss.Device, "session", ss.ID, "state", set.Session.State,
				"amount", set.LateAmount, "receivable", set.Receivable)
		} else {
			s.Metrics.sessions.WithLabelValues(string(set.Session.State)).Inc()
		}
		s.publishSession(set.Session)
	}
	return phoneapi.UsageAccepted{Session: s.PhoneSession(set.Session), ReceiptDigest: hex.EncodeToString(digest[:]),
		CloudAck: ack, Duplicate: set.Duplicate}, nil
}

// SetRelayAlways sets whether every session of one of the actor
// operator's devices (machine "") or of one machine on it gets its grant
// relayed by the phone (PermPrice: it is how the machine sells). Audited
// as device.relay_always. Errors: auth.forbidden, device.not_found (also
// another operator's device), machine.not_found.
func (s *Service) SetRelayAlways(ctx context.Context, device, machine string, on bool) error {
	a, err := s.operatorOf(ctx, PermPrice)
	if err != nil {
		return err
	}
	if err := s.st.SetRelayAlways(ctx, a.Operator, device, machine, on); err != nil {
		return err
	}
	target := device
	if machine != "" {
		target += "/" + machine
	}
	s.audited(ctx, a.Operator, "device.relay_always", target, nil, map[string]bool{"on": on})
	return nil
}
