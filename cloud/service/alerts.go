package service

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/cloud/store"
)

// AlertKind says what an alert is about (store.AlertKind).
type AlertKind = store.AlertKind

// The alert kinds; store.AlertKinds documents each one's condition and
// when the engine resolves it.
const (
	AlertOffline      = store.AlertOffline      // device.offline
	AlertFault        = store.AlertFault        // machine.fault
	AlertNoFlow       = store.AlertNoFlow       // water.no_flow
	AlertVendFailures = store.AlertVendFailures // vend.failures
	AlertUnreported   = store.AlertUnreported   // session.unreported
	AlertLowStock     = store.AlertLowStock     // stock.low
	AlertChannel      = store.AlertChannel      // channel
)

// AlertInput is an alert another part of the cloud raises or resolves
// (the inventory's low stock). At most one alert per dedup key
// (Kind|Device|Machine|Slot|Ref) is open at a time.
type AlertInput struct {
	Operator string    // required: whose inbox
	Kind     AlertKind // required
	Severity string    // info, warning (when "") or critical
	Device   string
	Machine  string
	Slot     string
	Ref      string // distinguishes alerts of one kind on one machine; "" for one per machine
	Code     string // a stable dotted code
	Summary  string // one line, required to raise, at most 200 bytes
	Detail   string // at most 2000 bytes
}

func (a AlertInput) new() store.NewAlert {
	return store.NewAlert{Operator: a.Operator, Kind: a.Kind, Severity: a.Severity, Device: a.Device, Machine: a.Machine,
		Slot: a.Slot, Ref: a.Ref, Code: a.Code, Summary: a.Summary, Detail: a.Detail}
}

// RaiseAlert opens an alert in the operator's inbox and queues its
// e-mail and webhook deliveries, unless an alert with the same dedup key
// is open or acknowledged: then it does nothing (idempotent while open,
// on any number of instances). Errors: store.ErrInput naming the field.
func (s *Service) RaiseAlert(ctx context.Context, a AlertInput) error {
	al, created, err := s.st.RaiseAlert(ctx, a.new())
	if err != nil {
		return err
	}
	if created {
		s.log.Info("service: alert raised", "alert", al.ID, "operator", al.Operator, "kind", al.Kind, "device", al.Device)
	}
	return nil
}

// ResolveAlert resolves the open alert with a's dedup key (Operator,
// Kind, Device, Machine, Slot, Ref; the rest is ignored), if any: the
// condition cleared (a slot was restocked). Resolving nothing is not an
// error.
func (s *Service) ResolveAlert(ctx context.Context, a AlertInput) error {
	by := ""
	if ac, ok := ActorFrom(ctx); ok {
		by = ac.Email
	}
	_, err := s.st.ResolveAlert(ctx, a.Operator, a.new().DedupKey(), by)
	return err
}

// Alerts lists the actor's operator's alerts (PermView), newest first,
// and the next page's cursor. Errors: ErrNoOperator, ErrForbidden,
// store.ErrInput.
func (s *Service) Alerts(ctx context.Context, f store.AlertFilter) ([]store.Alert, string, error) {
	a, err := s.opActor(ctx, PermView)
	if err != nil {
		return nil, "", err
	}
	return s.st.ListAlerts(ctx, a.Operator, f)
}

// Alert returns one of the actor's operator's alerts with its deliveries
// (PermView). Errors: store.ErrAlertNotFound.
func (s *Service) Alert(ctx context.Context, id string) (store.Alert, []store.Delivery, error) {
	a, err := s.opActor(ctx, PermView)
	if err != nil {
		return store.Alert{}, nil, err
	}
	al, err := s.st.GetAlert(ctx, a.Operator, id)
	if err != nil {
		return al, nil, err
	}
	ds, err := s.st.AlertDeliveries(ctx, a.Operator, id)
	return al, ds, err
}

// OpenAlertCount counts the actor's operator's open (unacknowledged)
// alerts, for the console's navigation.
func (s *Service) OpenAlertCount(ctx context.Context) (int, error) {
	a, err := s.opActor(ctx, PermView)
	if err != nil {
		return 0, err
	}
	return s.st.CountOpenAlerts(ctx, a.Operator)
}

// AckAlert acknowledges an open alert (PermAckAlert: technician and
// above) and audits it (alert.ack). Acknowledging it again is a no-op.
// Errors: ErrForbidden, store.ErrAlertNotFound, store.ErrAlertState (it
// is resolved).
func (s *Service) AckAlert(ctx context.Context, id string) (store.Alert, error) {
	a, err := s.opActor(ctx, PermAckAlert)
	if err != nil {
		return store.Alert{}, err
	}
	before, err := s.st.GetAlert(ctx, a.Operator, id)
	if err != nil {
		return before, err
	}
	after, err := s.st.AckAlert(ctx, a.Operator, id, a.Email)
	if err != nil || before.State == after.State {
		return after, err
	}
	return after, s.Audit(ctx, "alert.ack", "alert:"+id, alertAudit(before), alertAudit(after))
}

// CloseAlert resolves an alert by hand (PermAckAlert) and audits it
// (alert.resolve); the engine opens a new one if its condition persists.
// Errors: ErrForbidden, store.ErrAlertNotFound, store.ErrAlertState.
func (s *Service) CloseAlert(ctx context.Context, id string) (store.Alert, error) {
	a, err := s.opActor(ctx, PermAckAlert)
	if err != nil {
		return store.Alert{}, err
	}
	before, err := s.st.GetAlert(ctx, a.Operator, id)
	if err != nil {
		return before, err
	}
	after, err := s.st.ResolveAlertID(ctx, a.Operator, id, a.Email)
	if err != nil {
		return after, err
	}
	return after, s.Audit(ctx, "alert.resolve", "alert:"+id, alertAudit(before), alertAudit(after))
}

func alertAudit(a store.Alert) map[string]any {
	return map[string]any{"kind": a.Kind, "state": a.State, "acked_by": a.AckedBy, "resolved_by": a.ResolvedBy}
}

// AlertSettings returns the actor's operator's alert settings
// (PermView).
func (s *Service) AlertSettings(ctx context.Context) (store.AlertSettings, error) {
	a, err := s.opActor(ctx, PermView)
	if err != nil {
		return store.AlertSettings{}, err
	}
	return s.st.AlertSettings(ctx, a.Operator)
}

// PutAlertSettings replaces the actor's operator's alert settings
// (PermAlertSettings: owner) and audits it (alert.settings). Errors:
// ErrForbidden, store.ErrInput naming the field.
func (s *Service) PutAlertSettings(ctx context.Context, set store.AlertSettings) (store.AlertSettings, error) {
	a, err := s.opActor(ctx, PermAlertSettings)
	if err != nil {
		return set, err
	}
	before, err := s.st.AlertSettings(ctx, a.Operator)
	if err != nil {
		return set, err
	}
	after, err := s.st.PutAlertSettings(ctx, a.Operator, set)
	if err != nil {
		return after, err
	}
	return after, s.Audit(ctx, "alert.settings", "operator:"+a.Operator, before, after)
}

// WebhookSecret returns the actor's operator's webhook signing secret
// (PermAlertSettings): whsec_ and 64 hex digits, derived from the
// cloud's webhook key, so every instance signs alike and nothing secret
// is stored per operator.
func (s *Service) WebhookSecret(ctx context.Context) (string, error) {
	a, err := s.opActor(ctx, PermAlertSettings)
	if err != nil {
		return "", err
	}
	return s.webhookSecret(a.Operator), nil
}

func (s *Service) webhookSecret(operator string) string {
	m := hmac.New(sha256.New, s.alertKey())
	m.Write([]byte("beaconvend alert webhook\x00" + operator))
	return "whsec_" + hex.EncodeToString(m.Sum(nil))
}

// alertKey is AlertOptions.WebhookKey, or else a key derived from the
// cloud key (the same on every instance).
func (s *Service) alertKey() []byte {
	if k := s.opts.Alerts.WebhookKey; len(k) > 0 {
		return k
	}
	h := sha256.Sum256(append([]byte("beaconvend alert webhook key\x00"), s.opts.CloudKey.Seed()...))
	return h[:]
}

// ---- the engine ----

// alertBatch bounds each condition's query per evaluation; what is left
// is found by the next one.
const alertBatch = 200

// EvaluateAlerts raises the alerts whose conditions hold and resolves
// those whose conditions cleared, once; RunAlerts calls it every
// AlertOptions.Interval. Every step is a conditional write, safe on any
// number of instances at once. It returns how many alerts it raised
// (channel alerts mirrored into the inbox not counted) and resolved, and
// the first error (the other steps still run).
func (s *Service) EvaluateAlerts(ctx context.Context) (raised, resolved int, err error) {
	keep := func(e error) {
		if e != nil && err == nil {
			err = e
		}
	}
	raise := func(in store.NewAlert) {
		_, created, e := s.st.RaiseAlert(ctx, in)
		keep(e)
		if created {
			raised++
			s.log.Info("service: alert raised", "operator", in.Operator, "kind", in.Kind, "device", in.Device, "machine", in.Machine)
		}
	}
	done := func(as []store.Alert, e error) {
		keep(e)
		resolved += len(as)
	}

	// Offline longer than the operator's threshold; back online resolves.
	done(s.st.ResolveOnlineDevices(ctx))
	offline, e := s.st.OfflineDevices(ctx, alertBatch)
	keep(e)
	for _, d := range offline {
		raise(store.NewAlert{Operator: d.Operator, Kind: AlertOffline, Severity: store.SeverityCritical, Device: d.Device,
			Code: "device.offline", Summary: fmt.Sprintf("Device %s (%s) is offline", label(d.Name, d.Device), d.Device),
			Detail: fmt.Sprintf("Not connected since %s.", d.Since.UTC().Format("2006-01-02 15:04:05 UTC"))})
	}

	// Faults in the latest telemetry.
	keep(s.evaluateFaults(ctx, raise, &resolved))

	// No flow: the machine's latest session ended no_flow.
	done(s.st.ResolveFlowing(ctx))
	noflow, e := s.st.NoFlowMachines(ctx, 24*time.Hour, alertBatch)
	keep(e)
	for _, m := range noflow {
		raise(store.NewAlert{Operator: m.Operator, Kind: AlertNoFlow, Severity: store.SeverityCritical, Device: m.Device,
			Machine: m.Machine, Code: "water.no_flow",
			Summary: fmt.Sprintf("No water flow on %s of %s", m.Machine, label(m.Name, m.Device)),
			Detail: fmt.Sprintf("Session %s ended because the flow meter counted no pulses within the allowed pause (%s). "+
				"Check the water supply, the valve and the meter.", m.Ref, m.Since.UTC().Format("2006-01-02 15:04:05 UTC"))})
	}

	// Repeated vend failures.
	done(s.st.ResolveVendFailures(ctx))
	fails, e := s.st.VendFailureMachines(ctx, alertBatch)
	keep(e)
	for _, m := range fails {
		raise(store.NewAlert{Operator: m.Operator, Kind: AlertVendFailures, Device: m.Device, Machine: m.Machine,
			Code: "vend.failures", Summary: fmt.Sprintf("%d failed sessions on %s of %s", m.Count, m.Machine, label(m.Name, m.Device)),
			Detail: fmt.Sprintf("The latest failed at %s.", m.Since.UTC().Format("2006-01-02 15:04:05 UTC"))})
	}

	// Unreported sessions.
	done(s.st.ResolveReported(ctx))
	unrep, e := s.st.UnreportedAlertSessions(ctx, alertBatch)
	keep(e)
	for _, u := range unrep {
		raise(store.NewAlert{Operator: u.Operator, Kind: AlertUnreported, Device: u.Device, Machine: u.Machine, Ref: u.Ref,
			Code: "session.unreported", Summary: fmt.Sprintf("Session %s on %s of %s was never reported", u.Ref, u.Machine, label(u.Name, u.Device)),
			Detail: "The device acknowledged the session but sent no usage report; settle or void it, or the unreported policy applies at its settlement deadline."})
	}

	// Channel alerts about the operator's checkouts.
	_, e = s.st.ChannelAlertsAfter(ctx, alertBatch, func(c store.AlertSubject, detail string) store.NewAlert {
		return store.NewAlert{Operator: c.Operator, Kind: AlertChannel, Device: c.Device, Machine: c.Machine, Ref: c.Ref,
			Code: clipCode(c.Code), Summary: fmt.Sprintf("Payment channel: %s", clipCode(c.Code)), Detail: clipN(detail, 2000)}
	})
	keep(e)
	return raised, resolved, err
}

func label(name, id string) string {
	if name == "" {
		return id
	}
	return name
}

func clipCode(s string) string {
	return clipN(strings.NewReplacer("|", "_", "\n", " ", "\r", " ").Replace(s), 128)
}

func clipN(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// evaluateFaults raises machine.fault for each board or machine fault in
// an online device's latest telemetry (the board's code; a machine's
// code from its latest session that ended with one, else machine.fault),
// and resolves those an online device's telemetry no longer shows.
func (s *Service) evaluateFaults(ctx context.Context, raise func(store.NewAlert), resolved *int) error {
	devs, err := s.st.FaultTelemetry(ctx, alertBatch)
	if err != nil {
		return err
	}
	open, err := s.st.OpenAlertsOf(ctx, AlertFault, 1000)
	if err != nil {
		return err
	}
	byDevice := map[string][]store.Alert{}
	for _, a := range open {
		byDevice[a.Device] = append(byDevice[a.Device], a)
	}
	var first error
	for _, d := range devs {
		if d.Count != 1 {
			continue // offline: its telemetry is stale; keep what is open
		}
		var t mqttapi.Telemetry
		_ = json.Unmarshal([]byte(d.Code), &t)
		now := map[string]bool{}
		if t.Board.Status == "fault" {
			in := store.NewAlert{Operator: d.Operator, Kind: AlertFault, Severity: store.SeverityCritical, Device: d.Device,
				Ref: "board", Code: clipCode(t.Board.FaultCode),
				Summary: fmt.Sprintf("I/O board fault on %s: %s", label(d.Name, d.Device), clipCode(t.Board.FaultCode)),
				Detail:  fmt.Sprintf("%d failed transactions in a row on the serial link.", t.Board.ConsecutiveFailures)}
			now[in.DedupKey()] = true
			raise(in)
		}
		for _, m := range t.Machines {
			if m.State != mqttapi.MachineFault {
				continue
			}
			code, err := s.st.LastFaultCode(ctx, d.Device, m.ID)
			if err != nil && first == nil {
				first = err
			}
			if code == "" {
				code = mqttapi.CodeMachineFault
			}
			in := store.NewAlert{Operator: d.Operator, Kind: AlertFault, Severity: store.SeverityCritical, Device: d.Device,
				Machine: m.ID, Code: clipCode(code),
				Summary: fmt.Sprintf("Machine %s of %s reports a fault: %s", m.ID, label(d.Name, d.Device), clipCode(code)),
				Detail:  fmt.Sprintf("%d faults since commissioning.", m.Counters.FaultsTotal)}
			now[in.DedupKey()] = true
			raise(in)
		}
		for _, a := range byDevice[d.Device] {
			if now[a.DedupKey] {
				continue
			}
			ok, err := s.st.ResolveAlert(ctx, a.Operator, a.DedupKey, "")
			if err != nil && first == nil {
				first = err
			}
			if ok {
				*resolved++
			}
		}
	}
	return first
}

// RunAlerts evaluates the alert conditions and delivers what is due
// every AlertOptions.Interval until ctx is done, then returns nil. Run
// starts it.
func (s *Service) RunAlerts(ctx context.Context) error {
	t := time.NewTicker(s.opts.Alerts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if _, _, err := s.EvaluateAlerts(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("service: alerts", "err", err)
		}
		if _, err := s.DeliverAlerts(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("service: alert delivery", "err", err)
		}
	}
}
