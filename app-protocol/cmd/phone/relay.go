package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"beaconvend/app-protocol/gattapi"
	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
	"beaconvend/hw/ble"
)

// Relay errors.
var (
	// ErrNoCentral: the cloud offered the grant for relay, but this phone
	// has no BLE central to carry it (-ble air).
	ErrNoCentral = vend.E(vend.Invalid, "phone.no_central", "phone: the machine is offline and relaying its grant needs a BLE central (-ble hci)")
	// ErrRelay: the relay over BLE did not complete (the board refused,
	// disconnected, or did not answer in time).
	ErrRelay = vend.E(vend.Conflict, "phone.relay", "phone: relay to the board failed")
)

// Dialer connects the phone's BLE central to the board at a device
// address (ble.Report.Addr) and returns the link to its beaconvend
// service. The real one is ble.HCI.DialGATT; tests give a stand-in.
type Dialer func(ctx context.Context, addr string) (ble.GATTLink, error)

// relayPoll is how often the relay reads Progress besides its
// notifications (a notification lost on the air is not a stuck session).
const relayPoll = 2 * time.Second

// refusalHints says what a board's refusal code means to the user.
var refusalHints = map[string]string{
	"grant.replayed":         "the board has already taken this session's grant (relayed before, or delivered over its cloud link); it never runs a grant twice",
	"relay.nonce_reused":     "the board has already used this relay ticket; start a new session",
	"grant.expired":          "the grant expired before the board took it (too slow, or the board's clock is ahead); start a new session",
	"grant.not_yet_valid":    "the board's clock is behind the cloud's, so the grant is not valid on it yet",
	"grant.device":           "the grant is for another board: the phone is connected to a different machine than the one paid for",
	"relay.grant_mismatch":   "the relay ticket does not belong to this grant",
	"relay.machine":          "this board does not drive the machine the grant names",
	"sig.unknown_key":        "the board does not trust the key that signed the grant (a board of another cloud, or its keys are out of date)",
	"sig.invalid":            "the grant's signature does not verify on the board",
	"machine.busy":           "the machine is busy with another session",
	"machine.fault":          "the machine reports a fault",
	"relay.ack_mismatch":     "the acknowledgement names another receipt than the board's",
	"claim.open":             "the bundle is not sealed to this board's key (another board answered, or the claim is for another board)",
	"claim.not_registration": "the board is already claimed; it takes a new bundle only after a factory reset",
	"board.internal":         "the board failed internally",
}

// refusalText is "<code>: <hint>" for a board's refusal, or the error as
// it is.
func refusalText(err error) string {
	var re *ble.RefusedError
	if !errors.As(err, &re) {
		return err.Error()
	}
	hint, ok := refusalHints[re.Code]
	switch {
	case ok:
	case strings.HasPrefix(re.Code, "gatt."), strings.HasPrefix(re.Code, "canon."):
		hint = "the board could not read what the phone wrote"
	default:
		hint = "the board refused it"
	}
	return fmt.Sprintf("the board refused the %s: %s (%s)", re.Op, hint, re.Code)
}

// central is the phone's BLE central, nil when it has none: Main.Dial, or
// with -ble hci the scanning adapter's GATT client.
func (m *Main) central() Dialer {
	if m.Dial != nil {
		return m.Dial
	}
	if m.BLE != ble.BackendHCI {
		return nil
	}
	return func(ctx context.Context, addr string) (ble.GATTLink, error) {
		s, err := m.scanner()
		if err != nil {
			return nil, err
		}
		h, ok := s.(*ble.HCI)
		if !ok {
			return nil, fmt.Errorf("phone: the %s scanner has no central", m.BLE)
		}
		return h.DialGATT(ctx, addr, &ble.CentralOpts{PublicAddr: m.BoardPublic})
	}
}

// relay carries the session's grant to the board over BLE and follows it
// to its receipt: connect, subscribe to Progress, write the RelayGrant,
// show progress until the board says ended, read the Receipt, upload it
// (UploadUsage, one idempotency key for every retry), and write the Ack
// (the cloud's signed ack when the upload gave one, else the phone's: the
// receipt's hash). It returns the session as the upload left it.
func (m *Main) relay(ctx context.Context, t target, s *phoneapi.Session) (*phoneapi.Session, error) {
	dial := m.central()
	if dial == nil {
		return nil, vend.Errorf(ErrNoCentral, "session %s is pending with %s held; the cloud releases it when the grant expires unused", s.ID, s.Hold)
	}
	if t.n.Addr == "" {
		return nil, vend.Errorf(ErrRelay, "no device address heard for %s", t.n.Device.ID)
	}
	fmt.Fprintf(m.out, "the machine is offline: relaying the grant over BLE to %s (%s)\n", t.n.Device.ID, t.n.Addr)
	link, err := dial(ctx, t.n.Addr)
	if err != nil {
		return nil, m.relayFailed(s, "connect", err)
	}
	board := ble.NewBoard(link)
	defer board.Close()

	// The newest Progress, from notifications and reads.
	var mu sync.Mutex
	var latest gattapi.Progress
	seen := false
	changed := make(chan struct{}, 1)
	note := func(p gattapi.Progress) {
		mu.Lock()
		if !seen || p != latest {
			latest, seen = p, true
			select {
			case changed <- struct{}{}:
			default:
			}
		}
		mu.Unlock()
	}
	if err := board.SubscribeProgress(ctx, note); err != nil {
		return nil, m.relayFailed(s, "subscribe", err)
	}
	if err := board.WriteGrant(ctx, gattapi.RelayGrant{Grant: s.Relay.Grant, Ticket: s.Relay.Ticket}); err != nil {
		return nil, m.relayFailed(s, "grant", err)
	}

	m.inSession.Store(true)
	view := m.newView(s)
	cur := *s
	cur.State = phoneapi.StateAuthorized
	view.Update(cur)
	poll := time.NewTicker(relayPoll)
	defer poll.Stop()
	stopNoted := false
	var end gattapi.Progress
	for done := false; !done; {
		select {
		case <-ctx.Done():
			view.Finish()
			m.inSession.Store(false)
			why := fmt.Errorf("not ended within %s (last %s): %w", m.Timeout, cur.State, ctx.Err())
			if errors.Is(ctx.Err(), context.Canceled) {
				why = fmt.Errorf("interrupted while the machine ran (last %s): %w", cur.State, ctx.Err())
			}
			return nil, m.relayFailed(s, "progress", why)
		case <-board.Done():
			view.Finish()
			m.inSession.Store(false)
			return nil, m.relayFailed(s, "progress", vend.Errorf(ble.ErrDisconnected, "mid-session after %s"+
				"; the board keeps the receipt and reports it over its cloud link, or to a phone that reconnects", formatUnits(cur.Units, cur.Unit)))
		case <-m.stopReq:
			if !stopNoted {
				stopNoted = true
				view.Note("the board takes no stop over BLE: the session runs to its cap")
			}
		case <-poll.C:
			if p, err := board.ReadProgress(ctx); err == nil {
				note(p)
			}
		case <-changed:
		}
		mu.Lock()
		p := latest
		mu.Unlock()
		switch p.State {
		case gattapi.StateRefused:
			view.Finish()
			m.inSession.Store(false)
			return nil, m.relayFailed(s, "grant", &ble.RefusedError{Op: "grant", ATT: p.Reason, Code: ble.ATTCodeName(p.Reason)})
		case gattapi.StateRunning:
			cur.State = phoneapi.StateRunning
		case gattapi.StateEnded:
			cur.State = phoneapi.StateEnding
			done = true
		}
		if p.State >= gattapi.StateRunning {
			cur.Units, cur.Amount = p.Units, vend.Amount{Minor: p.Amount, Currency: s.Currency}
		}
		view.Update(cur)
		end = p
	}
	view.Finish()
	m.inSession.Store(false)

	rc, err := board.ReadReceipt(ctx)
	if err != nil {
		return nil, m.relayFailed(s, "receipt", err)
	}
	if rc.Status == gattapi.ReceiptNone {
		return nil, m.relayFailed(s, "receipt", errors.New("the board says it has no receipt"))
	}
	m.BoardReceipt = rc.Usage
	fmt.Fprintf(m.out, "board receipt: %s, %s (%d bytes, signed by the device)\n",
		formatUnits(end.Units, s.Unit), vend.Amount{Minor: end.Amount, Currency: s.Currency}, len(rc.Usage))

	key := phoneapi.NewIdempotencyKey()
	ua, uerr := retry(ctx, func(ctx context.Context) (*phoneapi.UsageAccepted, error) {
		return m.client.UploadUsage(ctx, key, s.ID, rc.Usage)
	})
	ack := gattapi.Ack{Kind: gattapi.AckPhone, Session: s.ID, Digest: signed.Digest(rc.Usage)}
	if uerr == nil && len(ua.CloudAck) > 0 {
		ack = gattapi.Ack{Kind: gattapi.AckCloud, CloudAck: ua.CloudAck}
	}
	if err := board.WriteAck(ctx, ack); err != nil {
		// The report is the cloud's (or will be, over MQTT) either way:
		// the board keeps it in its outbox without the cloud's ack.
		fmt.Fprintf(m.out, "  note: %s; the board keeps the report and sends it over its cloud link\n", refusalText(err))
	}
	if uerr != nil {
		return nil, vend.Errorf(ErrRelay, "session %s: the machine ran, but the upload of its receipt failed (%v); the board keeps the report and sends it when its link is back, and the cloud settles it once", s.ID, uerr)
	}
	m.Relayed = ua
	how := "settled"
	if ua.Duplicate {
		how = "already held by the cloud (settled once)"
	}
	fmt.Fprintf(m.out, "receipt uploaded: session %s %s, receipt %s…\n", ua.Session.ID, how, ua.ReceiptDigest[:min(16, len(ua.ReceiptDigest))])
	return &ua.Session, nil
}

// relayFailed is the error of a relay that stopped at step: a board's
// refusal in words, and what happens to the money.
func (m *Main) relayFailed(s *phoneapi.Session, step string, err error) error {
	money := fmt.Sprintf("session %s stays pending and %s stays held until the cloud releases it (the grant was not run, so nothing is captured)", s.ID, s.Hold)
	if step == "progress" || step == "receipt" {
		money = fmt.Sprintf("session %s is charged only what the board's signed report says, once it reaches the cloud", s.ID)
	}
	return vend.Errorf(ErrRelay, "%s: %s; %s", step, refusalText(err), money)
}
