package service

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"time"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/cloud/store"
)

// telemetryBuffer coalesces device telemetry before it reaches the store.
//
// A fleet reports every few seconds per device, almost always the same
// states with counters a little further on. Writing each message costs a
// commit (a WAL flush on PostgreSQL, the single writer's turn on SQLite),
// so at fleet scale telemetry alone would take more commits than every
// money-moving step together. What matters at once is a change that
// StartSession reads — a machine going to fault or back, a board link
// failing — so a message whose board and machine states differ from what
// this instance last wrote for the device is written through, and so is
// every message that reports a fault; the others keep only the newest
// message per device and are written in one transaction per
// TelemetryFlush. The stored telemetry is then at most one flush behind on
// counters, and never behind on a fault.
//
// Faults are written through even when this instance last wrote the same
// states because with several instances a device's messages are spread
// over all of them (shared subscriptions deal out messages, not devices):
// another instance may since have stored the device as healthy, and
// comparing with what this one wrote would then hold the fault back for up
// to a flush. A recovery can lag that way by one flush, which only delays
// a start that would be refused anyway.
type telemetryBuffer struct {
	mu      sync.Mutex
	pending map[string]pendingTelemetry // device → newest coalesced message
	written map[string]string           // device → signature last written
}

// pendingTelemetry is a coalesced message, encoded for the store only when
// it is flushed: a device that reports faster than TelemetryFlush costs
// one encoding per flush, not one per message.
type pendingTelemetry struct {
	msg *mqttapi.Telemetry
	at  time.Time
}

func newTelemetryBuffer() *telemetryBuffer {
	return &telemetryBuffer{pending: map[string]pendingTelemetry{}, written: map[string]string{}}
}

// faulted reports whether m reports the board link or any machine faulted.
func faulted(m *mqttapi.Telemetry) bool {
	if m.Board.Status != "ok" {
		return true
	}
	for _, ms := range m.Machines {
		if ms.State == mqttapi.MachineFault {
			return true
		}
	}
	return false
}

// signature is what decides write-through: the board status and every
// machine's state.
func signature(m *mqttapi.Telemetry) string {
	var b strings.Builder
	b.WriteString(m.Board.Status)
	b.WriteByte('|')
	b.WriteString(m.Board.FaultCode)
	for _, ms := range m.Machines {
		b.WriteByte('|')
		b.WriteString(ms.ID)
		b.WriteByte('=')
		b.WriteString(string(ms.State))
	}
	return b.String()
}

// add queues m when it reports no fault and its signature equals the one
// last written for the device, and reports whether it did; otherwise the
// caller writes m through and calls wrote.
func (t *telemetryBuffer) add(device string, m *mqttapi.Telemetry, at time.Time, sig string) bool {
	if faulted(m) {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if w, ok := t.written[device]; !ok || w != sig {
		return false
	}
	if p, ok := t.pending[device]; !ok || !at.Before(p.at) {
		t.pending[device] = pendingTelemetry{msg: m, at: at}
	}
	return true
}

// wrote records the signature of a written-through update and drops a
// queued one it supersedes.
func (t *telemetryBuffer) wrote(u store.StatusUpdate, sig string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.written[u.Device] = sig
	if p, ok := t.pending[u.Device]; ok && !p.at.After(u.At) {
		delete(t.pending, u.Device)
	}
}

// take empties the queue and returns it ordered by device id, so that two
// instances flushing overlapping devices lock rows in the same order.
func (t *telemetryBuffer) take() []store.StatusUpdate {
	t.mu.Lock()
	taken := t.pending
	t.pending = make(map[string]pendingTelemetry, len(taken))
	t.mu.Unlock()
	out := make([]store.StatusUpdate, 0, len(taken))
	for device, p := range taken {
		b, err := json.Marshal(p.msg)
		if err != nil {
			continue // a decoded message always encodes
		}
		out = append(out, store.StatusUpdate{Device: device, Online: true, Telemetry: b, At: p.at})
	}
	slices.SortFunc(out, func(a, b store.StatusUpdate) int { return strings.Compare(a.Device, b.Device) })
	return out
}

// flushTelemetry writes the coalesced telemetry in one transaction. A
// failure is logged and the batch dropped: each device sends fresh
// telemetry within its period.
func (s *Service) flushTelemetry(ctx context.Context) {
	s.flushSamples(ctx)
	batch := s.tel.take()
	if len(batch) == 0 {
		return
	}
	t0 := time.Now()
	err := s.st.SetDeviceStatuses(ctx, batch)
	s.Metrics.telFlush.Observe(time.Since(t0).Seconds())
	if err != nil {
		s.log.Error("service: telemetry flush", "devices", len(batch), "err", err)
		s.Metrics.telDropped.Add(float64(len(batch)))
	}
}
