package gattapi

import (
	"slices"
	"time"

	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
)

// RelayCheck is what a board checks a relayed grant against. It is the
// relay's counterpart of signed.GrantCheck: the machine is not named by a
// command but by the grant, so the board gives the machines it drives.
type RelayCheck struct {
	Keys     signed.Keys   // trusted cloud keys (from the bundle, rotated over MQTT)
	Device   string        // this board's device ID
	Machines []string      // the machines this board drives
	Now      time.Time     // the board's clock
	Skew     time.Duration // tolerated for the grant's IssuedAt, as in signed.GrantCheck
	// Seen reports whether a session was accepted before (by MQTT or by
	// relay), from the journal.
	Seen func(vend.SessionID) (bool, error)
	// NonceSeen reports whether a relay nonce was accepted before. The
	// board keeps each accepted nonce until its ticket's ExpiresAt has
	// passed (after that the grant is refused as expired anyway), so the
	// nonce log is bounded by the grants live at once.
	NonceSeen func([signed.RelayNonceLen]byte) (bool, error)
}

// CheckRelay decodes a RelayGrant written to GrantUUID and checks it, in
// this order, returning the first failure:
//
//  1. framing (gattapi decoding errors);
//  2. the ticket's signature under c.Keys (sig.unknown_key, sig.invalid,
//     canon.*);
//  3. the ticket names this device (grant.device);
//  4. the ticket's grant digest is signed.Digest of the grant bytes and the
//     grant's session is the ticket's (relay.grant_mismatch);
//  5. the grant's machine is one of c.Machines (relay.machine);
//  6. signed.VerifyGrant with that machine: signature, device, issued not
//     beyond Skew ahead (grant.not_yet_valid), not expired (grant.expired:
//     Now at or after ExpiresAt), session never seen (grant.replayed — a
//     grant relayed twice, or relayed after MQTT delivered it);
//  7. the nonce never accepted (relay.nonce_reused).
//
// It returns the grant and the ticket only when all pass; it changes
// nothing. The board then records the session and the nonce (kept until
// ticket.ExpiresAt) in the journal transaction that accepts the grant,
// before any output switches on.
func CheckRelay(value []byte, c RelayCheck) (signed.Grant, signed.RelayTicket, error) {
	var rg RelayGrant
	if err := rg.UnmarshalBinary(value); err != nil {
		return signed.Grant{}, signed.RelayTicket{}, err
	}
	tk, err := signed.OpenRelayTicket(rg.Ticket, c.Keys)
	if err != nil {
		return signed.Grant{}, signed.RelayTicket{}, err
	}
	if tk.Device != c.Device {
		return signed.Grant{}, signed.RelayTicket{}, vend.Errorf(signed.ErrWrongDevice, "relay ticket for %q, this is %q", tk.Device, c.Device)
	}
	if tk.Grant != signed.Digest(rg.Grant) {
		return signed.Grant{}, signed.RelayTicket{}, vend.Errorf(ErrGrantMismatch, "grant digest differs")
	}
	g, err := signed.OpenGrant(rg.Grant, c.Keys)
	if err != nil {
		return signed.Grant{}, signed.RelayTicket{}, err
	}
	if g.Session != tk.Session {
		return signed.Grant{}, signed.RelayTicket{}, vend.Errorf(ErrGrantMismatch, "ticket for session %s, grant for %s", tk.Session, g.Session)
	}
	if !slices.Contains(c.Machines, g.Machine) {
		return signed.Grant{}, signed.RelayTicket{}, vend.Errorf(ErrMachine, "%q", g.Machine)
	}
	g, err = signed.VerifyGrant(rg.Grant, signed.GrantCheck{Keys: c.Keys, Device: c.Device, Machine: g.Machine, Now: c.Now, Skew: c.Skew, Seen: c.Seen})
	if err != nil {
		return signed.Grant{}, signed.RelayTicket{}, err
	}
	if c.NonceSeen == nil {
		return signed.Grant{}, signed.RelayTicket{}, vend.Errorf(ErrNonceReused, "no nonce log to check against")
	}
	seen, err := c.NonceSeen(tk.Nonce)
	if err != nil {
		return signed.Grant{}, signed.RelayTicket{}, err
	}
	if seen {
		return signed.Grant{}, signed.RelayTicket{}, vend.Errorf(ErrNonceReused, "%x", tk.Nonce)
	}
	return g, tk, nil
}
