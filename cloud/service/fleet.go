package service

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"time"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/store"
)

// ErrFleetFilter is a fleet filter naming a state that does not exist.
var ErrFleetFilter = vend.E(vend.Invalid, "request.field", "fleet: invalid field: state (want online, fault or offline)")

// Fleet statuses: what the operator console shows and filters by. Every
// device has exactly one.
const (
	FleetOnline  = "online"  // connected, no fault reported
	FleetFault   = "fault"   // connected, the board link or a machine reports a fault
	FleetOffline = "offline" // not connected (will, disconnect, shutdown, or silent past the presence bound)
)

// HistoryOptions bound the telemetry and presence histories the device
// page charts.
type HistoryOptions struct {
	// Every is the sampling period of telemetry: at most one sample per
	// device per period is kept; 5 min when zero.
	Every time.Duration
	// Keep is how long samples and presence changes are kept; 48 h when
	// zero.
	Keep time.Duration
}

func (o *HistoryOptions) defaults() {
	if o.Every <= 0 {
		o.Every = 5 * time.Minute
	}
	if o.Keep <= 0 {
		o.Keep = 48 * time.Hour
	}
}

// FleetFilter narrows Fleet.
type FleetFilter struct {
	State string // "", FleetOnline, FleetFault or FleetOffline
	// Query is matched, case-insensitively, as a substring of the device
	// ID, name and location and of its machines' IDs and names.
	Query string
}

// Signal is what a cellular modem last reported.
type Signal struct {
	RSSIdBm      *int   // nil when unknown
	CSQ          int    // 0-31, 99 unknown
	Registration string // home, roaming, searching, denied, unknown
	Network      string // operator name or MCC+MNC
	Tech         string // lte, nb-iot, …
}

// Fault is one fault a device reports: the board link (Machine empty) or
// a machine, with its code.
type Fault struct {
	Machine string
	Code    string // e.g. modbus.timeout (board), machine.fault, slot.jammed
	Detail  string // the jammed slots, the consecutive failures
}

// FleetMachine is one machine as the fleet shows it.
type FleetMachine struct {
	ID, Name string
	Kind     vend.MachineKind
	Unit     vend.Unit
	Price    vend.Price
	Currency vend.Currency
	Slots    []store.Slot
	// State is idle, busy, fault or offline (the device is offline, or
	// the machine was not in its last telemetry).
	State    string
	Session  vend.SessionID // the running session, if any
	Jammed   []string
	LastSale time.Time // zero: none within store.LastSaleWindow
	Sessions uint64    // sessions ended (lifetime counter)
}

// FleetDevice is one device as the fleet shows it.
type FleetDevice struct {
	ID, Name, Location string
	Disabled           bool   // the operator disabled it
	Status             string // FleetOnline, FleetFault or FleetOffline
	// Since is when the device came online (online, fault) or was last
	// lost (offline); zero when it was never heard.
	Since       time.Time
	Heard       time.Time // last uplink; zero when never
	Signal      *Signal   // nil: no modem, or no telemetry yet
	OutboxDepth uint32
	UptimeS     uint64
	Faults      []Fault
	Machines    []FleetMachine
	LastSale    time.Time // newest of the machines' last sales
}

// FleetSummary counts an operator's devices by status.
type FleetSummary struct {
	Total, Online, Fault, Offline int
}

// Fleet returns operator's devices that pass f, ordered by ID, and the
// counts of all of them. Another operator's devices are never read.
// Errors: ErrForbidden (the actor in ctx may not view), ErrFleetFilter,
// the store's.
func (s *Service) Fleet(ctx context.Context, operator string, f FleetFilter) ([]FleetDevice, FleetSummary, error) {
	if err := s.Authorize(ctx, PermView); err != nil {
		return nil, FleetSummary{}, err
	}
	switch f.State {
	case "", FleetOnline, FleetFault, FleetOffline:
	default:
		return nil, FleetSummary{}, vend.Errorf(ErrFleetFilter, "%q", clipString(f.State))
	}
	ds, err := s.st.FleetDevices(ctx, operator)
	if err != nil {
		return nil, FleetSummary{}, err
	}
	q := strings.ToLower(strings.TrimSpace(f.Query))
	var out []FleetDevice
	var sum FleetSummary
	for _, d := range ds {
		v := fleetDevice(d)
		sum.Total++
		switch v.Status {
		case FleetOnline:
			sum.Online++
		case FleetFault:
			sum.Fault++
		default:
			sum.Offline++
		}
		if (f.State == "" || f.State == v.Status) && v.matches(q) {
			out = append(out, v)
		}
	}
	return out, sum, nil
}

func (d FleetDevice) matches(q string) bool {
	if q == "" {
		return true
	}
	hay := []string{d.ID, d.Name, d.Location}
	for _, m := range d.Machines {
		hay = append(hay, m.ID, m.Name)
	}
	for _, h := range hay {
		if strings.Contains(strings.ToLower(h), q) {
			return true
		}
	}
	return false
}

// fleetDevice reads a device's last telemetry into its fleet view. The
// stored telemetry is what a device sent and the ingest validated; a
// payload that does not decode is shown as no telemetry.
func fleetDevice(d store.FleetDevice) FleetDevice {
	v := FleetDevice{ID: d.ID, Name: d.Name, Location: d.Location, Disabled: d.State == store.DeviceDisabled, Heard: d.Heard}
	var t mqttapi.Telemetry
	hasTel := len(d.Telemetry) > 2 && json.Unmarshal(d.Telemetry, &t) == nil
	states := map[string]mqttapi.MachineStatus{}
	if hasTel {
		v.OutboxDepth, v.UptimeS = t.OutboxDepth, t.UptimeS
		if m := t.Modem; m != nil {
			v.Signal = &Signal{RSSIdBm: m.RSSIdBm, CSQ: m.CSQ, Registration: string(m.Registration), Network: m.Operator, Tech: m.Tech}
		}
		if t.Board.Status != "" && t.Board.Status != "ok" {
			v.Faults = append(v.Faults, Fault{Code: t.Board.FaultCode, Detail: failures(t.Board.ConsecutiveFailures)})
		}
		for _, ms := range t.Machines {
			states[ms.ID] = ms
		}
	}
	for _, m := range d.Machines {
		fm := FleetMachine{ID: m.ID, Name: m.Name, Kind: m.Kind, Unit: m.Unit, Price: m.Price, Currency: m.Currency, Slots: m.Slots,
			State: string(mqttapi.MachineOffline), LastSale: d.LastSale[m.ID]}
		if ms, ok := states[m.ID]; ok {
			fm.Session, fm.Jammed, fm.Sessions = ms.Session, ms.Jammed, ms.Counters.SessionsTotal
			if d.Online {
				fm.State = string(ms.State)
			}
			if ms.State == mqttapi.MachineFault {
				v.Faults = append(v.Faults, Fault{Machine: m.ID, Code: ErrMachineFault.Code})
			}
			if len(ms.Jammed) > 0 {
				v.Faults = append(v.Faults, Fault{Machine: m.ID, Code: ErrSlotJammed.Code, Detail: "slots " + strings.Join(ms.Jammed, ", ")})
			}
		}
		if fm.LastSale.After(v.LastSale) {
			v.LastSale = fm.LastSale
		}
		v.Machines = append(v.Machines, fm)
	}
	switch {
	case !d.Online:
		v.Status, v.Since = FleetOffline, d.OfflineAt
		if v.Since.IsZero() {
			v.Since = d.Heard
		}
	case len(v.Faults) > 0:
		v.Status, v.Since = FleetFault, d.OnlineSince
	default:
		v.Status, v.Since = FleetOnline, d.OnlineSince
	}
	return v
}

func failures(n uint32) string {
	switch n {
	case 0:
		return ""
	case 1:
		return "1 failed transaction"
	}
	return strconv.FormatUint(uint64(n), 10) + " failed transactions in a row"
}

// DeviceDetail is what the console's device page shows.
type DeviceDetail struct {
	FleetDevice
	Sessions  []store.Session         // the newest sessions, newest first
	Telemetry []store.TelemetrySample // the history within HistoryOptions.Keep, oldest first
	Presence  []store.PresenceChange  // state history, newest first
	Keep      time.Duration           // how far back the histories go
}

// DeviceSessions is how many recent sessions DeviceDetail carries.
const DeviceSessions = 20

// FleetDevice returns one of operator's devices with its recent
// sessions, telemetry history and state history. Errors:
// ErrForbidden, store.ErrDeviceNotFound (also for another operator's
// device), the store's.
func (s *Service) FleetDevice(ctx context.Context, operator, id string) (DeviceDetail, error) {
	if err := s.Authorize(ctx, PermView); err != nil {
		return DeviceDetail{}, err
	}
	d, err := s.st.FleetDevice(ctx, operator, id)
	if err != nil {
		return DeviceDetail{}, err
	}
	out := DeviceDetail{FleetDevice: fleetDevice(d)}
	if out.Sessions, err = s.st.OperatorSessions(ctx, operator, store.SessionFilter{Device: id, Limit: DeviceSessions}); err != nil {
		return DeviceDetail{}, err
	}
	h := s.opts.History
	h.defaults()
	out.Keep = h.Keep
	if out.Telemetry, err = s.st.TelemetryHistory(ctx, operator, id, s.now().Add(-h.Keep), 0); err != nil {
		return DeviceDetail{}, err
	}
	if out.Presence, err = s.st.PresenceHistory(ctx, operator, id, 20); err != nil {
		return DeviceDetail{}, err
	}
	return out, nil
}

// FleetEvents fans device status changes out to this instance's fleet
// pages: a device ID each time the cloud decides a presence change (an
// online or offline state, a will, a disconnect, the staleness bound) or
// writes telemetry whose board or machine states changed. On PostgreSQL a
// change decided on another instance reaches it through a notification
// (store.ListenDeviceChanges, started by Run), and a change of this
// instance may come twice; a notification lost while the listener
// reconnects is not repeated, so subscribers also re-read the store
// periodically. Safe for concurrent use.
type FleetEvents struct {
	mu   sync.Mutex
	subs map[chan string]struct{}
}

// fleetQueue is how many changes a subscriber may fall behind before it
// is dropped (its channel closed; it re-reads everything).
const fleetQueue = 256

// Subscribe returns a channel of device IDs that changed from now on, and
// a function that ends the subscription. The channel is closed when the
// subscriber falls more than 256 changes behind.
func (f *FleetEvents) Subscribe() (<-chan string, func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.subs == nil {
		f.subs = map[chan string]struct{}{}
	}
	c := make(chan string, fleetQueue)
	f.subs[c] = struct{}{}
	return c, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if _, ok := f.subs[c]; ok {
			delete(f.subs, c)
			close(c)
		}
	}
}

// Subscribers returns how many subscriptions are open.
func (f *FleetEvents) Subscribers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs)
}

func (f *FleetEvents) publish(device string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for c := range f.subs {
		select {
		case c <- device:
		default:
			delete(f.subs, c)
			close(c)
		}
	}
}

// fleetChanged announces a change of device to this instance's fleet
// pages and, through the database, to every other instance's. A failed
// notification is logged: the other instances' pages re-read the store
// within console.FleetPoll.
func (s *Service) fleetChanged(ctx context.Context, device string) {
	s.FleetEvents.publish(device)
	if err := s.st.NotifyDeviceChange(ctx, device); err != nil {
		s.log.Warn("service: device change notification", "device", device, "err", err)
	}
}

// presenceChanged announces a presence change of device and keeps it in
// the device's state history. A failed write is logged: the history is
// for people, the presence itself is already stored.
func (s *Service) presenceChanged(ctx context.Context, device string, online bool, cause string, at time.Time) {
	s.fleetChanged(ctx, device)
	h := s.opts.History
	h.defaults()
	if err := s.st.RecordPresence(ctx, device, store.PresenceChange{At: at, Online: online, Cause: cause}, h.Keep); err != nil {
		s.log.Warn("service: state history", "device", device, "err", err)
	}
}

// telemetrySample queues a sample of m for the device's telemetry
// history, written with the next telemetry flush, when the last one this
// instance took for it is older than the sampling period (the store
// keeps at most one per period across instances).
func (s *Service) telemetrySample(device string, m *mqttapi.Telemetry, at time.Time) {
	h := s.opts.History
	h.defaults()
	smp := store.TelemetrySample{Device: device, At: at, OutboxDepth: m.OutboxDepth}
	if m.Modem != nil {
		smp.RSSIdBm = m.Modem.RSSIdBm
	}
	if m.Board.Status != "ok" {
		smp.Faults++
	}
	for _, ms := range m.Machines {
		if ms.State == mqttapi.MachineFault {
			smp.Faults++
		}
	}
	s.sampleMu.Lock()
	defer s.sampleMu.Unlock()
	if last, ok := s.sampled[device]; ok && at.Sub(last) < h.Every {
		return
	}
	if s.sampled == nil {
		s.sampled = map[string]time.Time{}
	}
	s.sampled[device] = at
	s.samples = append(s.samples, smp)
}

// flushSamples writes the queued telemetry samples in one transaction. A
// failure is logged and the samples dropped: the history is for people.
func (s *Service) flushSamples(ctx context.Context) {
	s.sampleMu.Lock()
	smps := s.samples
	s.samples = nil
	s.sampleMu.Unlock()
	h := s.opts.History
	h.defaults()
	if _, err := s.st.RecordTelemetrySamples(ctx, smps, h.Every, h.Keep); err != nil {
		s.log.Warn("service: telemetry history", "samples", len(smps), "err", err)
	}
}
