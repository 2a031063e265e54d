package service

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"time"

	pb "beaconvend/app-protocol/provision"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/provision"
	"beaconvend/cloud/store"
)

// ClaimedDevice answers a claim: the device made for the board and its
// provisioning bundle sealed to the board's key (pb.Seal), which the
// installer's phone writes to the board over BLE (app-protocol/GATT.md).
type ClaimedDevice struct {
	Device    string    `json:"device"`
	Sealed    []byte    `json:"sealed_bundle"` // base64 in JSON
	ClaimedAt time.Time `json:"claimed_at"`
	Replayed  bool      `json:"replayed"` // the same claim was made before: its bundle is given again
}

// ClaimDevice creates a device for the actor's operator from a board in
// registration mode, identified by its X25519 sealing public key
// (sealKey), with provision.Provisioner.AddDevice (the checks, keys and
// registration of `cloud device add`), and answers with the bundle sealed
// to that key; the clear bundle never leaves the process. Needs
// PermProvision (manager and owner: a claim makes a device and its keys,
// as device add does). Audited as device.claim (the request and the key,
// never the bundle). The same claim again (same key, same operator, same
// device ID) gets the stored sealed bundle (a lost answer can be fetched
// again); any other claim of a key claimed before is claim.key_claimed.
// Errors: auth.forbidden, claim.key (malformed key), claim.key_claimed,
// device.exists, provision.input naming the field, provision.unavailable.
func (s *Service) ClaimDevice(ctx context.Context, sealKey []byte, req provision.DeviceRequest) (ClaimedDevice, error) {
	a, err := s.operatorOf(ctx, PermProvision)
	if err != nil {
		return ClaimedDevice{}, err
	}
	if _, err := pb.ParseSealKey(sealKey); err != nil {
		return ClaimedDevice{}, err
	}
	keyHex := hex.EncodeToString(sealKey)
	if c, err := s.st.GetClaim(ctx, keyHex); err == nil {
		if c.Operator != a.Operator || c.Device != req.ID {
			return ClaimedDevice{}, vend.Errorf(store.ErrKeyClaimed, "board key %s…", keyHex[:16])
		}
		return ClaimedDevice{Device: c.Device, Sealed: c.Sealed, ClaimedAt: c.At, Replayed: true}, nil
	} else if vend.CodeOf(err) != store.ErrClaimNotFound.Code {
		return ClaimedDevice{}, err
	}
	p := s.provisioner()
	if p == nil || p.Add == nil {
		return ClaimedDevice{}, errf(ErrNoProvisioner, "start the cloud with a broker URL for devices")
	}
	dir, err := os.MkdirTemp(p.TempDir, "vend-claim-")
	if err != nil {
		return ClaimedDevice{}, fmt.Errorf("provision: %w", err)
	}
	defer os.RemoveAll(dir)
	req.OperatorID, req.MQTTURL, req.CAPEM, req.Out = a.Operator, p.MQTTURL, p.CAPEM, filepath.Join(dir, "bundle")
	req.SealKey, req.ClaimedBy = sealKey, a.Account
	if req.ClaimedBy == "" {
		req.ClaimedBy = a.Operator
	}
	if _, err := p.Add(ctx, req); err != nil {
		return ClaimedDevice{}, err
	}
	c, err := s.st.GetClaim(ctx, keyHex)
	if err != nil {
		return ClaimedDevice{}, fmt.Errorf("provision: device %s claimed, but its claim could not be read: %w", req.ID, err)
	}
	// The board comes online as soon as it opens the bundle: let its
	// proximity IDs resolve on this instance now (the others refresh
	// periodically).
	if err := s.Res.Refresh(ctx); err != nil {
		s.log.Warn("service: resolver not refreshed after a claim", "device", req.ID, "err", err)
	}
	s.audited(ctx, a.Operator, "device.claim", req.ID, nil, map[string]any{"device": req.ID, "name": req.Name, "kind": req.Kind,
		"machines": req.Machines, "currency": req.Currency, "k": req.K, "board_key": keyHex, "mqtt_url": req.MQTTURL})
	return ClaimedDevice{Device: c.Device, Sealed: c.Sealed, ClaimedAt: c.At}, nil
}
