// Package claim is the board's side of registration mode: how an unclaimed
// board is claimed for an operator over BLE (app-protocol/GATT.md, "Claim
// (registration mode)").
//
// # State
//
// The claim state lives in a state directory (e.g. /var/lib/beaconvend/claim)
// and in the controller's config directory (e.g. /etc/beaconvend):
//
//	<state>/seal.key             the board's X25519 sealing private key (hex, mode 0600)
//	<state>/reset.pending        a factory reset under way: the journals to set aside
//	<config>/controller.yaml     present: the board is claimed (written last)
//	<config>/replaced-<stamp>/   configs set aside by a factory reset
//
// At first boot (no seal.key) Open generates the sealing key pair with
// crypto/ecdh and writes it atomically (temporary file, fsync, rename, fsync
// of the directory). The board is claimed exactly when controller.yaml exists
// in the config directory; there is no second flag that could disagree with
// it. Info gives the gattapi.ClaimInfo value: unclaimed with the sealing
// public key, or claimed with the device ID and the device's Ed25519 public
// key read back from the config and its key file. A claimed board whose
// config no longer loads still opens (ConfigErr says why), so that a
// factory reset can recover it.
//
// # Accepting a bundle
//
// Accept takes a bundle sealed to the board's key by the cloud
// (provision.Seal, `POST /v1/operator/claims`). In this order:
//
//  1. the board must be unclaimed (registration mode); else
//     gattapi.ErrNotRegistration (claim.not_registration), even for a
//     bundle validly sealed to this board: a board is never claimed twice
//     without a factory reset;
//  2. provision.Open with the board's private key (claim.open for another
//     key, altered, truncated or garbage bytes);
//  3. provision.Decode and Validate (gatt.field: the cloud sent something
//     this board cannot take);
//  4. wiring.Import of the bundle and the board's installed wiring file into
//     a staging directory inside the config directory (gatt.field when the
//     bundle's machines do not fit the wiring); Import writes every file
//     0600, fsynced, and loads the config back;
//  5. a journal file already at the path the new config names is renamed
//     to <journal>.replaced-<stamp>: a new device never inherits another
//     one's outbox;
//  6. the staged files are renamed into the config directory, the key files
//     first and controller.yaml last, and the directory is fsynced: the
//     rename of controller.yaml is the commit point.
//
// A crash (or a failed write) at any point before the commit leaves an
// unclaimed board with the same sealing key: Open removes staging
// directories, and the next Accept sets key files left by an interrupted
// promotion aside (never deleting them) before promoting its own. After the
// commit the board is claimed and complete. So the board is either the
// unclaimed one or the complete claimed one, never a partial config.
//
// # Registration mode and factory reset
//
// The board is in registration mode exactly when it is unclaimed:
//
//   - at first boot (no config yet), and
//   - after a factory reset: the board profile's claim input (hw/profile,
//     claim_input: a discrete input, e.g. a push button on the I/O board) is
//     held at power-up (ClaimHeld reads it). Reset then draws a new sealing
//     key (so that a bundle sealed to the old key, copied off a phone, can
//     never be replayed), stores a reset intent naming the journals to set
//     aside, and only then sets the old set aside: the journal file is
//     renamed to <journal>.replaced-<stamp> (its unsent reports are signed
//     by the old device key and must not be sent as the new device's), and
//     every file Import writes moves, controller.yaml first, into
//     <config>/replaced-<UTC stamp>/. Nothing is deleted: an installer can
//     recover the old set by moving it back.
//
// A crash during Reset before the intent is stored leaves the claimed board
// with a new sealing key (it runs as before; hold the input again); after
// it, the next Open finishes the reset (every step is idempotent), so the
// board comes up unclaimed.
//
// # GATT
//
// Service returns the registration-mode GATT service: the beaconvend service
// UUID with only ClaimInfo (read) and Bundle (write, chunks reassembled with
// gattapi.Reassembler). Every refused write is answered with the ATT
// application error gattapi.ATTCode gives; the last chunk gets Accept's
// verdict.
//
// Serve runs registration mode on a Radio (*ble.HCI on the board): the
// unclaimed beacon frame (beacon version 2: company ID, TX power, the claim
// tag of the sealing key) advertised connectable, the service served, until
// the board is claimed; then it stops advertising and returns, and the
// controller starts its daemon from the new config. Registration mode has no
// time bound by design: an unclaimed board has nothing else to do; power
// and the claim input are its exits.
package claim
