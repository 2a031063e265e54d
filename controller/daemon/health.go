package daemon

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/controller/journal"
)

// faultCodeJournal is the fault event's code when the journal cannot
// write (full or read-only flash).
const faultCodeJournal = "board.journal"

// journalFailed handles an error from a journal write. A storage failure
// (the commit did not reach the file: full or read-only flash) is a board
// fault: the controller stops selling (authorize answers machine.fault),
// every running session is stopped with outcome fault, so every output
// goes OFF (a washer already running cannot be stopped and is metered to
// its end), a fault event is published directly (the outbox may not be
// writable) and telemetry shows every machine in fault. Each session's end
// and report are still attempted, and are queued if the journal can write
// them; what it cannot write is finished from the journal's last commit
// at the next start. The fault lasts until the controller restarts. Other
// errors (a closed journal at shutdown, a refused transition) are not
// storage faults and are ignored here.
func (d *Daemon) journalFailed(err error, log interface{ Error(string, ...any) }) {
	if err == nil || !errors.Is(err, journal.ErrStorage) {
		return
	}
	if !d.jfault.CompareAndSwap(false, true) {
		return
	}
	log.Error("journal cannot write: board fault, every output off", "err", err)
	for _, id := range d.order {
		d.machines[id].stop(vend.OutcomeFault)
	}
	d.publishDirect(&mqttapi.Event{Envelope: d.env(), Kind: mqttapi.EventFault, FaultCode: faultCodeJournal,
		Detail: clipText(fmt.Sprintf("journal write failed: %v", err))})
	d.stateChanged()
}

// journalOK reports whether the journal has not failed a write.
func (d *Daemon) journalOK() bool { return !d.jfault.Load() }

func clipText(s string) string {
	if len(s) > 200 {
		s = s[:200]
	}
	return strings.ToValidUTF8(s, "?")
}

// stateChanged asks the telemetry loop to publish now: a machine fault or
// recovery, a slot jammed or cleared, the board link failing or recovering.
func (d *Daemon) stateChanged() {
	select {
	case d.telemKick <- struct{}{}:
	default:
	}
}

// healthSig is what, when it changes, is published as telemetry at once.
func (d *Daemon) healthSig() string {
	var b strings.Builder
	bd := d.board.Load()
	switch {
	case bd == nil:
		b.WriteString("absent")
	default:
		st := bd.Status()
		fmt.Fprintf(&b, "fault=%v failing=%v", st.Fault, st.ConsecutiveFailures > 0)
	}
	fmt.Fprintf(&b, " journal=%v", d.journalOK())
	for _, id := range d.order {
		fmt.Fprintf(&b, " %s:%v", id, d.machines[id].jammedSlots())
	}
	return b.String()
}

// jam marks a vending slot out of service after a vend that saw no drop.
// It stays listed in telemetry (MachineStatus.Jammed) and refused on this
// board until cleared: by a successful test_output of its motor output (a
// technician who freed the spiral runs it once) or by a controller
// restart. The set lives in memory only.
func (m *mach) jam(slot string) {
	if slot == "" {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.jammed == nil {
		m.jammed = map[string]bool{}
	}
	m.jammed[slot] = true
}

// unjamOutput clears the jam of the slots driven by output.
func (m *mach) unjamOutput(output string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	changed := false
	for _, s := range m.cfg.Slots {
		if s.Output == output && m.jammed[s.ID] {
			delete(m.jammed, s.ID)
			changed = true
		}
	}
	return changed
}

func (m *mach) isJammed(slot string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.jammed[slot]
}

// jammedSlots returns the jammed slots, sorted, at most MaxJammedSlots.
func (m *mach) jammedSlots() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for s := range m.jammed {
		out = append(out, s)
	}
	slices.Sort(out)
	if len(out) > mqttapi.MaxJammedSlots {
		out = out[:mqttapi.MaxJammedSlots]
	}
	return out
}
