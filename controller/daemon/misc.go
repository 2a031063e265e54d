package daemon

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"time"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/signed"
	"beaconvend/controller/config"
)

// extraCloudKeysFile holds cloud keys added by rotation, one hex key a line,
// beside the device key file.
func (d *Daemon) extraCloudKeysFile() string {
	return filepath.Join(filepath.Dir(d.cfg.Path(d.cfg.Keys.DeviceKeyFile)), "cloud_keys.extra")
}

func (d *Daemon) saveExtraCloudKey(pub []byte) error {
	path := d.extraCloudKeysFile()
	old, _ := os.ReadFile(path)
	return config.WriteFile(path, append(old, []byte(hex.EncodeToString(pub)+"\n")...))
}

// loadExtraCloudKeys adds keys saved by earlier rotations.
func (d *Daemon) loadExtraCloudKeys() {
	b, err := os.ReadFile(d.extraCloudKeysFile())
	if err != nil {
		return
	}
	for _, line := range strings.Fields(string(b)) {
		k, err := hex.DecodeString(line)
		if err != nil || len(k) != ed25519.PublicKeySize {
			d.log.Warn("ignoring malformed line in cloud_keys.extra")
			continue
		}
		pub := ed25519.PublicKey(k)
		d.sec.Cloud[signed.KeyIDOf(pub)] = pub
	}
}

// telemetryLoop publishes health every telemetry interval (QoS 0), and at
// once when stateChanged asks (a fault, a recovery, a jam, a reconnection),
// at most once a second.
func (d *Daemon) telemetryLoop(ctx context.Context) {
	t := time.NewTicker(d.cfg.MQTT.TelemetryInterval.D())
	defer t.Stop()
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-d.telemKick:
			// At most one a second, so a flapping link cannot flood.
			if wait := time.Second - time.Since(last); wait > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
			}
		}
		if d.up.Connected() {
			last = time.Now()
			d.publishDirect(d.telemetry())
			if d.probe.CompareAndSwap(true, false) {
				d.publishProbe()
			} else if !d.clock.fresh(d.now()) {
				d.publishClockProbe()
			}
		}
	}
}

// publishProbe publishes a power_restored event directly (not through the
// outbox) after the controller starts. The cloud acknowledges it like every
// event but progress, and its Ack is the first sample of the cloud's clock
// (cloudClock), so that a board with a wrong clock judges its first grant
// by the cloud's time.
//
// A sample lost that way (the link dropped, the cloud was down) is asked
// for again: while the board has no fresh estimate, every telemetry
// publication (each connection, each state change, each period) comes
// with a clock probe (publishClockProbe), and a grant waits for one
// (syncClock).
func (d *Daemon) publishProbe() {
	ev := &mqttapi.Event{Envelope: d.env(), Kind: mqttapi.EventPowerRestored, Detail: "controller started"}
	d.clock.sentNow(ev.ID, d.now())
	d.publishDirect(ev)
}

func (d *Daemon) telemetry() *mqttapi.Telemetry {
	tm := &mqttapi.Telemetry{Envelope: d.env(), UptimeS: uint64(d.now().Sub(d.started) / time.Second)}
	depth, _ := d.j.Depth()
	tm.OutboxDepth = uint32(depth)
	if b := d.board.Load(); b != nil {
		st := b.Status()
		tm.Board = mqttapi.Board{Status: "ok", ConsecutiveFailures: uint32(st.ConsecutiveFailures)}
		if st.Fault {
			tm.Board.Status, tm.Board.FaultCode = "fault", faultCodeBoard
		}
	} else {
		tm.Board = mqttapi.Board{Status: "fault", FaultCode: "board.absent"}
	}
	if d.modem != nil {
		ms := d.modem.Status()
		mm := &mqttapi.Modem{Registration: registration(string(ms.Registration)), Operator: ms.Operator, Tech: tech(string(ms.Tech)), CSQ: 99}
		if ms.OK && ms.CSQ >= 0 && ms.CSQ <= 31 {
			dbm := int(ms.SignalDBm)
			mm.CSQ, mm.RSSIdBm = ms.CSQ, &dbm
		}
		tm.Modem = mm
	}
	_, boardOK := d.boardReady()
	for _, id := range d.order {
		mc := d.machines[id]
		mc.mu.Lock()
		st := mqttapi.MachineStatus{ID: id, State: mqttapi.MachineIdle, Session: mc.session, Counters: mc.counters}
		if !mc.session.IsZero() || mc.testing {
			st.State = mqttapi.MachineBusy
		}
		mc.mu.Unlock()
		st.Jammed = mc.jammedSlots()
		if !boardOK {
			st.State = mqttapi.MachineFault
		}
		tm.Machines = append(tm.Machines, st)
	}
	return tm
}

// registration maps the modem monitor's states onto the telemetry's.
func registration(s string) mqttapi.Registration {
	switch s {
	case "home", "roaming", "searching", "denied":
		return mqttapi.Registration(s)
	}
	return mqttapi.Registration("unknown")
}

// tech maps the modem monitor's access technologies onto the telemetry's.
func tech(t string) string {
	switch t {
	case "gsm", "umts", "lte", "nr":
		return t
	case "nbiot":
		return "nb-iot"
	case "catm":
		return "lte-m"
	}
	return "unknown"
}

// publishClockProbe publishes a clock event directly: the cloud
// acknowledges it, and the Ack is a sample of the cloud's clock.
func (d *Daemon) publishClockProbe() {
	ev := &mqttapi.Event{Envelope: d.env(), Kind: mqttapi.EventClock}
	d.clock.sentNow(ev.ID, d.now())
	d.publishDirect(ev)
}

// clockProbeWait bounds how long a grant waits for a clock sample: the
// longest round trip a sample may have (cloudClock.maxRTT).
const clockProbeWait = 2 * time.Second

// syncClock makes sure a grant is judged by the cloud's clock: without a
// fresh estimate and with a link, it sends a clock probe and waits up to
// clockProbeWait for its Ack (taken as it arrives, see enqueueCommand).
// Without an answer the board's own clock is used, as before.
func (d *Daemon) syncClock() {
	if d.clock.fresh(d.now()) || !d.up.Connected() {
		return
	}
	next := d.clock.next()
	d.publishClockProbe()
	select {
	case <-next:
	case <-time.After(clockProbeWait):
		d.log.Warn("no sample of the cloud's clock; judging the grant by the board's clock")
	}
}
