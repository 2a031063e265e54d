package service

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/cloud/store"
)

// KeyRotatorOptions configure a [KeyRotator].
type KeyRotatorOptions struct {
	Interval time.Duration // how often rotations under way are looked at; 2 s when zero
	Resend   time.Duration // how long a step's command waits for its reply before it is sent again (same id); 30 s when zero
}

// KeyRotator drives device-key rotations over the device's in-band
// protocol (mqttapi.RotateKey), the one way a device key changes. An
// operator asks for a rotation (store.RequestRotation: `cloud device
// rotate-key`); the rotator, on whichever instance runs it, then walks the
// store's rotation states (store/keys.go):
//
//   - requested: it sends RotateKey{which: device} (propose), command id
//     "rotk-<n>-propose"; the device replies with its new public key, which
//     is stored as the next key (reports under it verify from then on);
//   - proposed: it sends RotateKey{which: device, public_key} (commit),
//     command id "rotk-<n>-commit"; on ok the device signs with the new
//     key; on key.mismatch (the device restarted and lost its pending key)
//     the rotation starts again with a new proposal (attempt n+1);
//   - committed: nothing to send; the first usage report that verifies
//     under the new key promotes it (Handle), and the old key is kept,
//     retired, for the reports the board queued under it.
//
// A command without its reply is sent again, with the same id, every
// Resend; the device answers a repeated id with the same reply without
// acting twice. Replies are read from the store (they may land on another
// instance), matched by device and command id.
type KeyRotator struct {
	s    *Service
	opts KeyRotatorOptions
}

// KeyRotator returns the service's rotation driver.
func (s *Service) KeyRotator(opts KeyRotatorOptions) *KeyRotator {
	if opts.Interval <= 0 {
		opts.Interval = 2 * time.Second
	}
	if opts.Resend <= 0 {
		opts.Resend = 30 * time.Second
	}
	return &KeyRotator{s: s, opts: opts}
}

// Run steps every Interval until ctx is done; it returns nil.
func (k *KeyRotator) Run(ctx context.Context) error {
	t := time.NewTicker(k.opts.Interval)
	defer t.Stop()
	for {
		if err := k.Step(ctx); err != nil && ctx.Err() == nil {
			k.s.log.Error("service: key rotation", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Step advances every rotation under way by what its device has replied,
// and sends the commands that are due. It returns the first error; the
// other rotations are still stepped.
func (k *KeyRotator) Step(ctx context.Context) error {
	rs, err := k.s.st.Rotations(ctx)
	if err != nil {
		return err
	}
	var first error
	for _, r := range rs {
		if err := k.step(ctx, r); err != nil && first == nil {
			first = fmt.Errorf("service: rotation of %s: %w", r.Device, err)
		}
	}
	return first
}

func (k *KeyRotator) step(ctx context.Context, r store.Rotation) error {
	var cmd *mqttapi.RotateKey
	var cmdID string
	switch r.State {
	case store.RotationRequested:
		cmdID = fmt.Sprintf("rotk-%d-propose", r.N)
		cmd = &mqttapi.RotateKey{Which: mqttapi.KeyDevice}
	case store.RotationProposed:
		cmdID = fmt.Sprintf("rotk-%d-commit", r.N)
		cmd = &mqttapi.RotateKey{Which: mqttapi.KeyDevice, PublicKey: r.Next}
	default:
		return nil // committed: promoted by the first report under the new key
	}
	rep, err := k.s.st.GetCommandReply(ctx, r.Device, cmdID)
	switch {
	case errors.Is(err, store.ErrCommandNotFound):
		now := k.s.now()
		if !r.SentAt.IsZero() && now.Sub(r.SentAt) < k.opts.Resend {
			return nil
		}
		cmd.Envelope = mqttapi.NewEnvelope(now)
		cmd.ID = cmdID
		if err := k.s.pub.Publish(ctx, r.Device, cmd); err != nil {
			return err
		}
		if r.SentAt.IsZero() {
			k.s.Metrics.rotation.WithLabelValues(map[store.RotationState]string{
				store.RotationRequested: "propose_sent", store.RotationProposed: "commit_sent"}[r.State]).Inc()
		}
		return k.s.st.RotationSent(ctx, r.Device, r.N, now)
	case err != nil:
		return err
	}
	var m mqttapi.Reply
	if err := json.Unmarshal([]byte(rep.Body), &m); err != nil {
		return fmt.Errorf("reply %s: %w", cmdID, err)
	}
	switch {
	case r.State == store.RotationRequested && m.OK && len(m.PublicKey) == ed25519.PublicKeySize:
		err = k.s.st.RotationProposed(ctx, r.Device, r.N, ed25519.PublicKey(m.PublicKey))
		k.step2(err, "proposed", r)
	case r.State == store.RotationRequested:
		k.s.log.Error("service: device refused to propose a signing key; rotation abandoned", "device", r.Device, "code", m.Code, "message", m.Message)
		err = k.s.st.RotationAbort(ctx, r.Device, r.N)
		k.step2(err, "refused", r)
	case m.OK:
		err = k.s.st.RotationCommitted(ctx, r.Device, r.N)
		k.step2(err, "committed", r)
	default:
		// key.mismatch: the device lost its pending key (a restart).
		k.s.log.Warn("service: device refused the key commit; proposing again", "device", r.Device, "code", m.Code)
		err = k.s.st.RotationRestart(ctx, r.Device, r.N)
		k.step2(err, "restarted", r)
	}
	if errors.Is(err, store.ErrRotation) {
		return nil // another instance took the step
	}
	return err
}

func (k *KeyRotator) step2(err error, step string, r store.Rotation) {
	if err == nil {
		k.s.Metrics.rotation.WithLabelValues(step).Inc()
		k.s.log.Info("service: key rotation step", "device", r.Device, "attempt", r.N, "step", step)
	}
}
