package daemon

import (
	"sync"

	"beaconvend/app-protocol/gattapi"
	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
	"beaconvend/controller/gattsvc"
	"beaconvend/controller/journal"
)

// relayState is the board's view of the last relayed session, which the
// GATT service's Progress and Receipt show (app-protocol/GATT.md, Relay).
// It lives in memory, and is found again at start from the journal's
// nonce log (loadRelay); whether the phone acknowledged the receipt is
// not kept (the cloud's ack, which is, settles the session).
type relayState struct {
	mu         sync.Mutex
	session    vend.SessionID // the last relayed session accepted; zero before one
	grant      signed.Grant   // its grant
	digest     [32]byte       // signed.Digest of its signed grant
	refused    byte           // ATT code of the last refused grant write, 0 after an accepted one
	phoneAcked bool           // the phone acknowledged its receipt (Ack kind 1)
}

// Relay is the daemon's side of the board's GATT relay service
// (controller/gattsvc): what a phone relaying a cloud grant writes and
// reads. It is served when beacon.gatt is set; tests drive it directly.
func (d *Daemon) Relay() gattsvc.Relay { return relayer{d} }

// relayer implements gattsvc.Relay on the daemon.
type relayer struct{ d *Daemon }

var _ gattsvc.Relay = relayer{}

func (r relayer) Grant(msg []byte) error     { return r.d.relayGrant(msg) }
func (r relayer) Progress() gattapi.Progress { return r.d.relayProgress() }
func (r relayer) Receipt() gattapi.Receipt   { return r.d.relayReceipt() }
func (r relayer) Ack(a gattapi.Ack) error    { return r.d.relayAck(a) }

// relayGrant checks a relayed grant (gattapi.CheckRelay, judged by the
// cloud's clock, against the journal's seen sessions and nonce log) and
// starts its session exactly as an MQTT Authorize does (start), its nonce
// recorded in the commit that accepts it. It returns the error the ATT
// answer carries; Progress then shows the refusal (unless it is the
// current relayed session's own grant written again, whose progress
// stays on view).
func (d *Daemon) relayGrant(value []byte) error {
	d.syncClock()
	// Decoded once here for the grant's bytes; CheckRelay refuses what
	// does not decode.
	var rg gattapi.RelayGrant
	decoded := rg.UnmarshalBinary(value) == nil
	g, tk, err := gattapi.CheckRelay(value, gattapi.RelayCheck{
		Keys: d.cloudKeys(), Device: d.cfg.DeviceID, Machines: d.order, Now: d.cloudNow(),
		Skew: d.cfg.GrantSkew.D(), Seen: d.j.Seen, NonceSeen: d.j.NonceSeen,
	})
	if err == nil {
		err = d.start(d.machines[g.Machine], g, rg.Grant, &journal.Relay{Nonce: tk.Nonce, ExpiresAt: tk.ExpiresAt})
	}
	d.relay.mu.Lock()
	defer d.relay.mu.Unlock()
	if err == nil {
		d.relay.session, d.relay.grant, d.relay.digest = g.Session, g, signed.Digest(rg.Grant)
		d.relay.refused, d.relay.phoneAcked = 0, false
		d.log.Info("relayed grant accepted", "session", g.Session, "machine", g.Machine)
		return nil
	}
	d.log.Info("relayed grant refused", "code", vend.CodeOf(err), "err", err)
	if vend.CodeOf(err) == signed.ErrReplayed.Code && !d.relay.session.IsZero() &&
		decoded && signed.Digest(rg.Grant) == d.relay.digest {
		return err
	}
	d.relay.refused = gattapi.ATTCode(err)
	return err
}

// loadRelay shows the last relayed session the journal knows (its nonce
// is still logged) after a restart, so that a phone can still follow it
// and read its receipt. A journal that cannot tell leaves Progress idle.
func (d *Daemon) loadRelay() {
	id, err := d.j.LastRelayed()
	if err != nil || id.IsZero() {
		if err != nil {
			d.log.Warn("last relayed session unknown", "err", err)
		}
		return
	}
	s, err := d.j.Get(id)
	if err != nil {
		return
	}
	g, err := s.DecodeGrant()
	if err != nil {
		return
	}
	d.relay.mu.Lock()
	d.relay.session, d.relay.grant, d.relay.digest = id, g, signed.Digest(s.Grant)
	d.relay.mu.Unlock()
}

// relaySession returns the last relayed session's ID and grant, the
// refusal code and whether the phone acknowledged the receipt.
func (d *Daemon) relaySession() (vend.SessionID, signed.Grant, byte, bool) {
	d.relay.mu.Lock()
	defer d.relay.mu.Unlock()
	return d.relay.session, d.relay.grant, d.relay.refused, d.relay.phoneAcked
}

// relayProgress is the Progress of the last relayed session, from its
// committed journal record: units metered (committed at least every
// second while running) and their cost at the grant's price, capped.
func (d *Daemon) relayProgress() gattapi.Progress {
	id, g, refused, _ := d.relaySession()
	if refused != 0 {
		return gattapi.Progress{State: gattapi.StateRefused, Reason: refused}
	}
	if id.IsZero() {
		return gattapi.Progress{}
	}
	s, err := d.j.Get(id)
	if err != nil {
		return gattapi.Progress{}
	}
	p := gattapi.Progress{Units: min(s.Units, g.CapUnits)}
	switch s.State {
	case journal.Authorized:
		p.State = gattapi.StateAccepted
	case journal.Running, journal.Credited:
		p.State = gattapi.StateRunning
	default:
		p.State = gattapi.StateEnded
	}
	if c, err := g.Price.Cost(p.Units); err == nil && c >= 0 {
		p.Amount = c
	}
	return p
}

// relayReceipt is the last relayed session's signed usage report, once it
// is reported: the bytes its outbox item carries over MQTT. It is
// acknowledged once the report has left the outbox (the cloud's Ack,
// over MQTT or relayed) or the phone has acknowledged it.
func (d *Daemon) relayReceipt() gattapi.Receipt {
	id, _, _, phoneAcked := d.relaySession()
	if id.IsZero() {
		return gattapi.Receipt{}
	}
	s, err := d.j.Get(id)
	if err != nil || len(s.Usage) == 0 || (s.State != journal.Reported && s.State != journal.Settled) {
		return gattapi.Receipt{}
	}
	r := gattapi.Receipt{Status: gattapi.ReceiptReady, Usage: s.Usage}
	if s.State == journal.Settled || phoneAcked {
		r.Status = gattapi.ReceiptAcked
	}
	return r
}

// relayAck takes an acknowledgement of the receipt (gattapi.CheckAck under
// the cloud keys): a cloud ack drops the report from the outbox as an MQTT
// Ack does (settling the session once); a phone ack is recorded and the
// report stays in the outbox for the cloud to acknowledge over MQTT.
// Errors: relay.ack_mismatch (no receipt yet, another session or report),
// signed's errors for a cloud ack that does not verify, journal errors.
func (d *Daemon) relayAck(a gattapi.Ack) error {
	id, _, _, _ := d.relaySession()
	if id.IsZero() {
		return vend.Errorf(gattapi.ErrAckMismatch, "no relayed session")
	}
	s, err := d.j.Get(id)
	if err != nil {
		return err
	}
	if len(s.Usage) == 0 {
		return vend.Errorf(gattapi.ErrAckMismatch, "session %s has no receipt yet", id)
	}
	cloud, err := gattapi.CheckAck(a, d.cfg.DeviceID, id, s.Usage, d.cloudKeys())
	if err != nil {
		return err
	}
	if cloud {
		if _, err := d.j.Ack(s.UsageMsgID); err != nil {
			return err
		}
		d.log.Info("usage acknowledged by the cloud through the phone", "session", id)
		return nil
	}
	d.relay.mu.Lock()
	if d.relay.session == id {
		d.relay.phoneAcked = true
	}
	d.relay.mu.Unlock()
	return nil
}
