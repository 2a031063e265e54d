package broker

import (
	"errors"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"beaconvend/app-protocol/vend"
)

// takeoverSettle is how long the presence hook waits before reporting a
// disconnect, so that a connection replaced by a newer one of the same
// device (a session takeover, where mochi ends the old connection while
// the new one is being set up) is recognised as such and not reported.
const takeoverSettle = 100 * time.Millisecond

// presenceHook reports the end of a device's connection to
// Options.OnDisconnect: the broker knows at once when a connection
// closes (a killed process's socket is reset by its kernel), and, unlike
// the last will, this does not depend on the will reaching the cloud's
// client. Not reported: the cloud's own clients, a connection taken over
// by a newer one of the same device, and the disconnects of the broker's
// own shutdown (the devices are not dead; the staleness bound covers
// those that do not come back).
type presenceHook struct {
	mqtt.HookBase
	b *Broker
}

func (h *presenceHook) ID() string { return "beaconvend-presence" }

func (h *presenceHook) Provides(b byte) bool { return b == mqtt.OnDisconnect || b == mqtt.OnWill }

// droppedWillTopic is where the will of a taken-over connection goes
// instead of the device's state topic: a $ topic no filter of the
// contract matches, not retained, so nobody receives it.
const droppedWillTopic = "$beaconvend/dropped-will"

// replaced reports whether cl's connection was taken over by a newer
// one of the same client id, waiting up to takeoverSettle for the
// takeover to show (mochi closes the old connection before it marks it
// taken over and registers the new one).
func (h *presenceHook) replaced(cl *mqtt.Client) bool {
	deadline := time.Now().Add(takeoverSettle)
	for {
		if takenOver(cl, nil) {
			return true
		}
		if cur, ok := h.b.srv.Clients.Get(cl.ID); ok && cur != cl && !cur.Closed() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-h.b.done:
			return false
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// OnWill drops the will of a device connection that a newer connection
// of the same device took over: mochi publishes it from the old
// connection's goroutine, which can be after the new connection's online
// state, and it would then mark a connected device offline. Every other
// will (the connection died) goes out unchanged, at most takeoverSettle
// later.
func (h *presenceHook) OnWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	if vend.ValidateDeviceID(cl.ID) != nil || !h.replaced(cl) {
		return will, nil
	}
	h.b.log.Info("broker: will of a taken-over connection dropped", "device", cl.ID)
	will.TopicName, will.Retain = droppedWillTopic, false
	return will, nil
}

func takenOver(cl *mqtt.Client, err error) bool {
	return cl.IsTakenOver() || errors.Is(err, packets.ErrSessionTakenOver) || errors.Is(cl.StopCause(), packets.ErrSessionTakenOver)
}

func shuttingDown(cl *mqtt.Client, err error) bool {
	return errors.Is(err, packets.ErrServerShuttingDown) || errors.Is(cl.StopCause(), packets.ErrServerShuttingDown)
}

// OnDisconnect runs on the closing connection's goroutine; the report
// is made from another one after takeoverSettle.
func (h *presenceHook) OnDisconnect(cl *mqtt.Client, err error, _ bool) {
	b := h.b
	if b.opts.OnDisconnect == nil || vend.ValidateDeviceID(cl.ID) != nil || string(cl.Properties.Username) != cl.ID {
		return
	}
	if takenOver(cl, err) || shuttingDown(cl, err) {
		return
	}
	at := b.now()
	b.hooks.Add(1)
	go func() {
		defer b.hooks.Done()
		t := time.NewTimer(takeoverSettle)
		defer t.Stop()
		select {
		case <-t.C:
		case <-b.done:
			return
		}
		if takenOver(cl, nil) || shuttingDown(cl, nil) {
			return
		}
		if cur, ok := b.srv.Clients.Get(cl.ID); ok && cur != cl && !cur.Closed() {
			return // a newer connection of the device is up
		}
		b.log.Info("broker: device connection closed", "device", cl.ID, "err", err)
		b.opts.OnDisconnect(cl.ID, at)
	}()
}
