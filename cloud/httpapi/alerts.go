package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

// Operator alert routes (bearer token; roles as in the console):
//
//	GET  /v1/operator/alerts?state=&kind=&device=&cursor=&limit=  OperatorAlertPage (view; newest first; next_cursor "" at the end)
//	GET  /v1/operator/alerts/{alert}                               OperatorAlert with its deliveries (view)
//	POST /v1/operator/alerts/{alert}/ack                           OperatorAlert (ack_alert: technician and above; audited)
//	POST /v1/operator/alerts/{alert}/resolve                       OperatorAlert (ack_alert; audited)
//	GET  /v1/operator/alert-settings                               OperatorAlertSettings (view)
//	PUT  /v1/operator/alert-settings                               OperatorAlertSettings → OperatorAlertSettings (alert_settings: owner; audited)
//
// Another operator's alert is alert.not_found; a resolved alert cannot be
// acknowledged (alert.state).
type (
	// OperatorAlert is one alert in the operator's inbox.
	OperatorAlert struct {
		ID         string                  `json:"id"`
		Kind       string                  `json:"kind"` // device.offline, machine.fault, water.no_flow, vend.failures, session.unreported, stock.low, channel
		Severity   string                  `json:"severity"`
		State      string                  `json:"state"` // open, acknowledged, resolved
		Device     string                  `json:"device,omitempty"`
		Machine    string                  `json:"machine,omitempty"`
		Slot       string                  `json:"slot,omitempty"`
		Ref        string                  `json:"ref,omitempty"`
		Code       string                  `json:"code,omitempty"`
		Summary    string                  `json:"summary"`
		Detail     string                  `json:"detail,omitempty"`
		Created    time.Time               `json:"created_at"`
		Acked      time.Time               `json:"acknowledged_at,omitzero"`
		AckedBy    string                  `json:"acknowledged_by,omitempty"`
		Resolved   time.Time               `json:"resolved_at,omitzero"`
		ResolvedBy string                  `json:"resolved_by,omitempty"` // "" when the condition cleared
		Deliveries []OperatorAlertDelivery `json:"deliveries,omitempty"`
	}
	// OperatorAlertDelivery is one message of an alert.
	OperatorAlertDelivery struct {
		Channel   string    `json:"channel"` // email or webhook
		State     string    `json:"state"`   // pending, sent or failed
		Attempts  int       `json:"attempts"`
		LastError string    `json:"last_error,omitempty"`
		Sent      time.Time `json:"sent_at,omitzero"`
	}
	// OperatorAlertPage is one page of alerts.
	OperatorAlertPage struct {
		Alerts     []OperatorAlert `json:"alerts"`
		NextCursor string          `json:"next_cursor"`
	}
	// OperatorAlertSettings are the operator's alert thresholds, recipients
	// and quiet period; durations in whole seconds. WebhookSecret is
	// returned to owners only, never accepted.
	OperatorAlertSettings struct {
		EmailTo         string `json:"email_to"`
		WebhookURL      string `json:"webhook_url"`
		WebhookSecret   string `json:"webhook_secret,omitempty"`
		OfflineAfterS   int64  `json:"offline_after_s"`
		VendFailCount   int    `json:"vend_fail_count"`
		VendFailWindowS int64  `json:"vend_fail_window_s"`
		LowStockLevel   int    `json:"low_stock_level"`
		QuietStart      string `json:"quiet_start"` // HH:MM or ""
		QuietEnd        string `json:"quiet_end"`
		TimeZone        string `json:"time_zone"`
	}
)

func (s *Server) alertRoutes(m *http.ServeMux) {
	m.HandleFunc("GET /v1/operator/alerts", s.operator(s.opAlerts))
	m.HandleFunc("GET /v1/operator/alerts/{alert}", s.operator(s.opAlert))
	m.HandleFunc("POST /v1/operator/alerts/{alert}/ack", s.operator(s.opAckAlert))
	m.HandleFunc("POST /v1/operator/alerts/{alert}/resolve", s.operator(s.opResolveAlert))
	m.HandleFunc("GET /v1/operator/alert-settings", s.operator(s.opAlertSettings))
	m.HandleFunc("PUT /v1/operator/alert-settings", s.operator(s.opPutAlertSettings))
}

func opAlert(a store.Alert, ds []store.Delivery) OperatorAlert {
	o := OperatorAlert{ID: a.ID, Kind: string(a.Kind), Severity: a.Severity, State: string(a.State), Device: a.Device,
		Machine: a.Machine, Slot: a.Slot, Ref: a.Ref, Code: a.Code, Summary: a.Summary, Detail: a.Detail, Created: a.Created,
		Acked: a.Acked, AckedBy: a.AckedBy, Resolved: a.Resolved, ResolvedBy: a.ResolvedBy}
	for _, d := range ds {
		o.Deliveries = append(o.Deliveries, OperatorAlertDelivery{Channel: d.Channel, State: d.State, Attempts: d.Attempts,
			LastError: d.LastError, Sent: d.Sent})
	}
	return o
}

func (s *Server) opAlerts(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := store.AlertFilter{State: store.AlertState(q.Get("state")), Kind: store.AlertKind(q.Get("kind")),
		Device: q.Get("device"), Cursor: q.Get("cursor")}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			s.fail(w, r, vend.Errorf(store.ErrInput, "alerts: limit %q: want a number 1-500", v))
			return
		}
		f.Limit = n
	}
	as, next, err := s.svc.Alerts(r.Context(), f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := OperatorAlertPage{Alerts: []OperatorAlert{}, NextCursor: next}
	for _, a := range as {
		out.Alerts = append(out.Alerts, opAlert(a, nil))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) opAlert(w http.ResponseWriter, r *http.Request) {
	a, ds, err := s.svc.Alert(r.Context(), r.PathValue("alert"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, opAlert(a, ds))
}

func (s *Server) opAckAlert(w http.ResponseWriter, r *http.Request) {
	a, err := s.svc.AckAlert(r.Context(), r.PathValue("alert"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, opAlert(a, nil))
}

func (s *Server) opResolveAlert(w http.ResponseWriter, r *http.Request) {
	a, err := s.svc.CloseAlert(r.Context(), r.PathValue("alert"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, opAlert(a, nil))
}

func (s *Server) alertSettingsOut(r *http.Request, a store.AlertSettings) OperatorAlertSettings {
	o := OperatorAlertSettings{EmailTo: a.EmailTo, WebhookURL: a.WebhookURL, OfflineAfterS: int64(a.OfflineAfter / time.Second),
		VendFailCount: a.VendFailCount, VendFailWindowS: int64(a.VendFailWindow / time.Second), LowStockLevel: a.LowStockLevel,
		QuietStart: a.QuietStart, QuietEnd: a.QuietEnd, TimeZone: a.TimeZone}
	if sec, err := s.svc.WebhookSecret(r.Context()); err == nil {
		o.WebhookSecret = sec
	}
	return o
}

func (s *Server) opAlertSettings(w http.ResponseWriter, r *http.Request) {
	a, err := s.svc.AlertSettings(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.alertSettingsOut(r, a))
}

func (s *Server) opPutAlertSettings(w http.ResponseWriter, r *http.Request) {
	if err := s.svc.Authorize(r.Context(), service.PermAlertSettings); err != nil {
		s.fail(w, r, err)
		return
	}
	var req OperatorAlertSettings
	if err := s.decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if req.WebhookSecret != "" {
		s.fail(w, r, vend.Errorf(store.ErrInput, "alert settings: webhook_secret is derived by the cloud and cannot be set"))
		return
	}
	a, err := s.svc.PutAlertSettings(r.Context(), store.AlertSettings{EmailTo: req.EmailTo, WebhookURL: req.WebhookURL,
		OfflineAfter: time.Duration(req.OfflineAfterS) * time.Second, VendFailCount: req.VendFailCount,
		VendFailWindow: time.Duration(req.VendFailWindowS) * time.Second, LowStockLevel: req.LowStockLevel,
		QuietStart: req.QuietStart, QuietEnd: req.QuietEnd, TimeZone: req.TimeZone})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.alertSettingsOut(r, a))
}
