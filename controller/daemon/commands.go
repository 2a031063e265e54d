package daemon

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/signed"
	"beaconvend/app-protocol/vend"
	"beaconvend/controller/config"
	"beaconvend/controller/journal"
)

// inCmd is a command payload waiting in the queue, with the board time it
// arrived (an Ack's arrival time feeds the cloud-clock estimate).
type inCmd struct {
	payload []byte
	at      time.Time
}

// enqueueCommand is the uplink's OnCommand: it queues the payload for the
// command loop and returns at once, so paho's delivery goroutine never waits
// on the board or the journal. A full queue drops the command; the cloud
// resends commands it has no reply for. A Stop is noted by session as it
// is queued, so that an Authorize for the same session handled before it
// is refused (the Stop wins).
func (d *Daemon) enqueueCommand(payload []byte) {
	c := inCmd{payload: append([]byte(nil), payload...), at: d.now()}
	var stop vend.SessionID
	if msg, err := mqttapi.Decode(mqttapi.LeafCmd, c.payload); err == nil {
		switch m := msg.(type) {
		case *mqttapi.Stop:
			stop = m.Session
		case *mqttapi.Ack:
			// The clock sample is taken as the Ack arrives, not when the
			// command loop reaches it: an Authorize being judged may be
			// waiting for exactly this sample (syncClock).
			d.clock.acked(m.IDs, m.TS, c.at)
		}
	}
	if !stop.IsZero() {
		d.stopsMu.Lock()
		d.stops[stop]++
		d.stopsMu.Unlock()
	}
	select {
	case d.cmds <- c:
	default:
		if !stop.IsZero() {
			d.stopDequeued(stop)
		}
		d.log.Warn("command queue full; dropped (the cloud retries)")
	}
}

// stopQueued reports whether a Stop for session waits in the queue.
func (d *Daemon) stopQueued(session vend.SessionID) bool {
	d.stopsMu.Lock()
	defer d.stopsMu.Unlock()
	return d.stops[session] > 0
}

func (d *Daemon) stopDequeued(session vend.SessionID) {
	d.stopsMu.Lock()
	defer d.stopsMu.Unlock()
	if d.stops[session]--; d.stops[session] <= 0 {
		delete(d.stops, session)
	}
}

func (d *Daemon) commandLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case c := <-d.cmds:
			d.handle(c)
		}
	}
}

// handle decodes and executes one command and publishes its reply. A
// command whose ID was seen recently gets the same reply again without
// being executed twice.
func (d *Daemon) handle(c inCmd) {
	payload := c.payload
	msg, err := mqttapi.Decode(mqttapi.LeafCmd, payload)
	if err != nil {
		// Reply to what can be identified; the reason names the problem.
		if id := envelopeID(payload); id != "" {
			d.reply(id, err)
		}
		d.log.Warn("refused command", "err", err)
		return
	}
	if stop, ok := msg.(*mqttapi.Stop); ok {
		defer d.stopDequeued(stop.Session)
	}
	if ack, ok := msg.(*mqttapi.Ack); ok {
		if _, err := d.j.Ack(ack.IDs...); err != nil {
			d.log.Error("ack", "err", err)
		}
		return // acks are not replied to
	}
	id := msg.Head().ID
	if r, ok := d.replies.get(id); ok {
		d.publishDirect(again(r, d.env()))
		return
	}
	var cerr error
	switch m := msg.(type) {
	case *mqttapi.Authorize:
		cerr = d.authorize(m)
	case *mqttapi.Stop:
		cerr = d.stopSession(m)
	case *mqttapi.SetPrices:
		cerr = d.setPrices(m)
	case *mqttapi.TestOutput:
		cerr = d.testOutput(m)
	case *mqttapi.Reboot:
		d.reply(id, nil)
		// One reboot at a time: a second command while one waits is
		// answered ok and joins it.
		if d.opts.OnReboot != nil && d.rebooting.CompareAndSwap(false, true) {
			go d.rebootWhenIdle(time.Duration(m.DelayS) * time.Second)
		}
		return
	case *mqttapi.RotateKey:
		var pub []byte
		pub, cerr = d.rotateKey(m)
		r := mqttapi.NewReply(d.env(), id, cerr)
		r.PublicKey = pub
		d.replies.put(id, r)
		d.publishDirect(r)
		return
	default:
		cerr = vend.Errorf(errUnsupported, "%s", msg.TypeName())
	}
	if cerr != nil {
		d.log.Info("command refused", "type", msg.TypeName(), "id", id, "code", vend.CodeOf(cerr), "err", cerr)
	}
	d.reply(id, cerr)
}

func (d *Daemon) reply(cmdID string, err error) {
	r := mqttapi.NewReply(d.env(), cmdID, err)
	d.replies.put(cmdID, r)
	d.publishDirect(r)
}

func (d *Daemon) stopSession(m *mqttapi.Stop) error {
	mc, ok := d.machines[m.Machine]
	if !ok {
		return vend.Errorf(errMachineUnknown, "%q", m.Machine)
	}
	mc.mu.Lock()
	running := mc.session == m.Session
	mc.mu.Unlock()
	if running && mc.stop(vend.OutcomeUserStop) {
		return nil
	}
	// Stopping a session that already ended is fine.
	s, err := d.j.Get(m.Session)
	if err == nil {
		if s.Machine == m.Machine {
			return nil
		}
		return vend.Errorf(errSessionUnknown, "%s is not on %s", m.Session, m.Machine)
	}
	if !errors.Is(err, journal.ErrNotFound) {
		return err
	}
	// A session this board has not started (nor seen yet): the cloud
	// cancels it. Remember it, so that its grant, if it comes later, is
	// refused with grant.cancelled. A pruned session's seen entry says it
	// was accepted: then it has ended already.
	if _, err := d.j.Cancel(m.Session, d.cloudNow().Add(cancelHold+d.cfg.GrantSkew.D())); err != nil {
		return err
	}
	d.log.Info("session cancelled before it started", "session", m.Session, "machine", m.Machine)
	return nil
}

// cancelHold is how long a cancellation for a session whose grant this
// board has not seen is remembered (judged by the cloud's clock, plus the
// grant skew): longer than any grant's start-by bound (the cloud's grants
// live 20 s by default). A grant that comes for it later extends the entry
// to that grant's own expiry.
const cancelHold = time.Hour

func (d *Daemon) setPrices(m *mqttapi.SetPrices) error {
	by := map[string][]mqttapi.PriceEntry{}
	for _, p := range m.Prices {
		if _, ok := d.machines[p.Machine]; !ok {
			return vend.Errorf(errMachineUnknown, "%q", p.Machine)
		}
		by[p.Machine] = append(by[p.Machine], p)
	}
	for id, mc := range d.machines {
		mc.mu.Lock()
		mc.prices = by[id]
		mc.mu.Unlock()
	}
	return nil
}

// testOutput switches one of a machine's outputs on for a bounded time,
// for a technician checking the wiring. Refused while the machine sells.
func (d *Daemon) testOutput(m *mqttapi.TestOutput) error {
	mc, ok := d.machines[m.Machine]
	if !ok {
		return vend.Errorf(errMachineUnknown, "%q", m.Machine)
	}
	if !outputOf(mc.cfg, m.Output) {
		return vend.Errorf(errOutputUnknown, "%q on %s", m.Output, m.Machine)
	}
	board, ok := d.boardReady()
	if !ok {
		return vend.Errorf(errMachineFault, "board not ready")
	}
	mc.mu.Lock()
	if !mc.session.IsZero() || mc.testing {
		mc.mu.Unlock()
		return vend.Errorf(errMachineBusy, "%s", m.Machine)
	}
	mc.testing = true
	mc.mu.Unlock()
	dur := time.Duration(m.DurationMS) * time.Millisecond
	ctx, cancel := context.WithTimeout(d.ctx, 2*time.Second)
	err := board.Set(ctx, m.Output, true, dur+500*time.Millisecond)
	cancel()
	if err != nil {
		mc.mu.Lock()
		mc.testing = false
		mc.mu.Unlock()
		return err
	}
	// A motor output that switched on and read back clears its slot's jam.
	if mc.unjamOutput(m.Output) {
		d.log.Info("jammed slot cleared by an output test", "machine", m.Machine, "output", m.Output)
		d.stateChanged()
	}
	go func() {
		select {
		case <-time.After(dur):
		case <-d.ctx.Done():
		}
		octx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = board.Set(octx, m.Output, false, 0)
		mc.mu.Lock()
		mc.testing = false
		mc.mu.Unlock()
	}()
	return nil
}

func outputOf(c config.Machine, out string) bool {
	switch {
	case c.Water != nil:
		return out == c.Water.Valve
	case c.Washer != nil:
		return out == c.Washer.Coin
	}
	for _, s := range c.Slots {
		if s.Output == out {
			return true
		}
	}
	return false
}

// rotateKey handles both rotations. Device: a command without a key
// proposes (a new key pair, pending, its public key in the reply; the same
// one again for a repeat), a command with the pending public key commits it
// (the seed is written atomically to the device key file, then used).
// Cloud: a new cloud public key signed by a key the device trusts is added
// to the trusted set (and written to the config directory's
// cloud_keys.extra file so it survives a restart).
func (d *Daemon) rotateKey(m *mqttapi.RotateKey) ([]byte, error) {
	switch m.Which {
	case mqttapi.KeyDevice:
		d.keysMu.Lock()
		defer d.keysMu.Unlock()
		if m.PublicKey == nil {
			if d.pendingDK == nil {
				seed := make([]byte, ed25519.SeedSize)
				if _, err := rand.Read(seed); err != nil {
					return nil, err
				}
				d.pendingDK = seed
			}
			return ed25519.NewKeyFromSeed(d.pendingDK).Public().(ed25519.PublicKey), nil
		}
		if d.pendingDK == nil {
			return nil, vend.Errorf(errKeyMismatch, "no pending key")
		}
		next := ed25519.NewKeyFromSeed(d.pendingDK)
		if string(next.Public().(ed25519.PublicKey)) != string(m.PublicKey) {
			return nil, vend.Errorf(errKeyMismatch, "commit names %x", m.PublicKey)
		}
		if err := config.WriteSecret(d.cfg.Path(d.cfg.Keys.DeviceKeyFile), []byte(hex.EncodeToString(d.pendingDK)+"\n")); err != nil {
			return nil, err
		}
		d.sec.Device, d.pendingDK = next, nil
		return nil, nil
	case mqttapi.KeyCloud:
		d.keysMu.Lock()
		defer d.keysMu.Unlock()
		if _, err := signed.VerifyKeyRotation(d.sec.Cloud, m.PublicKey, m.Signature); err != nil {
			return nil, err
		}
		keys := signed.Keys{}
		for k, v := range d.sec.Cloud {
			keys[k] = v
		}
		keys[signed.KeyIDOf(m.PublicKey)] = ed25519.PublicKey(append([]byte(nil), m.PublicKey...))
		d.sec.Cloud = keys
		return nil, d.saveExtraCloudKey(m.PublicKey)
	}
	return nil, vend.Errorf(errUnsupported, "rotate %q", m.Which)
}

// envelopeID fishes the message ID out of a payload that did not decode,
// so that the refusal can name the command.
func envelopeID(payload []byte) string {
	var e struct {
		ID string `json:"id"`
	}
	if len(payload) > mqttapi.MaxPayload || json.Unmarshal(payload, &e) != nil || mqttapi.ValidateMessageID(e.ID) != nil {
		return ""
	}
	return e.ID
}

// replyCache remembers recent replies by command ID, so a command the
// cloud resends (its reply was lost) is answered the same way and not
// executed twice.
type replyCache struct {
	mu    sync.Mutex
	max   int
	order []string
	m     map[string]*mqttapi.Reply
}

func newReplyCache(n int) *replyCache { return &replyCache{max: n, m: map[string]*mqttapi.Reply{}} }

func (c *replyCache) get(id string) (*mqttapi.Reply, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.m[id]
	return r, ok
}

func (c *replyCache) put(id string, r *mqttapi.Reply) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[id]; !ok {
		c.order = append(c.order, id)
	}
	c.m[id] = r
	for len(c.order) > c.max {
		delete(c.m, c.order[0])
		c.order = c.order[1:]
	}
}

// again returns a copy of a stored reply under a fresh envelope.
func again(r *mqttapi.Reply, env mqttapi.Envelope) *mqttapi.Reply {
	c := *r
	c.Envelope = env
	return &c
}

// rebootWhenIdle waits delay, then for every machine to be idle (a reboot
// never interrupts a session), then asks the main to restart.
func (d *Daemon) rebootWhenIdle(delay time.Duration) {
	select {
	case <-time.After(delay):
	case <-d.ctx.Done():
		return
	}
	for {
		idle := true
		for _, id := range d.order {
			idle = idle && !d.machines[id].busy()
		}
		if idle {
			d.log.Info("rebooting on command")
			d.opts.OnReboot()
			return
		}
		select {
		case <-time.After(time.Second):
		case <-d.ctx.Done():
			return
		}
	}
}
