package console

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

// alertRoutes registers the alerts inbox (everyone: open, acknowledged
// and resolved alerts, filtered by state, kind and device), an alert's
// page with its deliveries, acknowledge and resolve (technician and
// above, audited by the service) and the alert settings (owner only:
// recipients, webhook, thresholds, quiet period).
func (c *Console) alertRoutes(m *http.ServeMux) {
	m.HandleFunc("GET /console/alerts", c.allow(service.PermView, c.alertInbox))
	m.HandleFunc("GET /console/alerts/badge", c.allow(service.PermView, c.alertBadge))
	m.HandleFunc("GET /console/alerts/{alert}", c.allow(service.PermView, c.alertPage))
	m.HandleFunc("POST /console/alerts/{alert}/ack", c.allow(service.PermAckAlert, c.alertAct(true)))
	m.HandleFunc("POST /console/alerts/{alert}/resolve", c.allow(service.PermAckAlert, c.alertAct(false)))
	m.HandleFunc("GET /console/alert-settings", c.allow(service.PermAlertSettings, c.alertSettingsPage))
	m.HandleFunc("POST /console/alert-settings", c.allow(service.PermAlertSettings, c.saveAlertSettings))
}

// alertKindNames are the kinds in words, for filters and tables.
var alertKindNames = map[store.AlertKind]string{
	store.AlertOffline:      "Device offline",
	store.AlertFault:        "Fault",
	store.AlertNoFlow:       "No water flow",
	store.AlertVendFailures: "Repeated vend failures",
	store.AlertUnreported:   "Unreported session",
	store.AlertLowStock:     "Low stock",
	store.AlertChannel:      "Payment channel",
}

// alertKindOption is one kind in the filter.
type alertKindOption struct {
	Value, Name string
}

// alertsView is the inbox's data.
type alertsView struct {
	Alerts     []store.Alert
	Kinds      []alertKindOption
	State      string
	Kind       string
	Device     string
	Next       string // the next page's query, "" at the end
	Open       int    // open (unacknowledged) alerts of the operator
	Notice     string
	KindNames  map[store.AlertKind]string
	ThisPage   string // this page's query, for forms to come back to
	FilterText string // what the filter shows, in words
}

func (c *Console) alertInbox(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	state := q.Get("state")
	if _, ok := q["state"]; !ok {
		state = "open"
	}
	f := store.AlertFilter{State: store.AlertState(state), Kind: store.AlertKind(q.Get("kind")),
		Device: strings.TrimSpace(q.Get("device")), Cursor: q.Get("cursor"), Limit: 50}
	as, next, err := c.svc.Alerts(r.Context(), f)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	open, err := c.svc.OpenAlertCount(r.Context())
	if err != nil {
		c.fail(w, r, err)
		return
	}
	v := alertsView{Alerts: as, State: state, Kind: string(f.Kind), Device: f.Device, Open: open, KindNames: alertKindNames}
	for _, k := range store.AlertKinds {
		v.Kinds = append(v.Kinds, alertKindOption{Value: string(k), Name: alertKindNames[k]})
	}
	page := url.Values{"state": {state}, "kind": {string(f.Kind)}, "device": {f.Device}}
	if next != "" {
		nq := url.Values{"state": {state}, "kind": {string(f.Kind)}, "device": {f.Device}, "cursor": {next}}
		v.Next = nq.Encode()
	}
	v.ThisPage = page.Encode()
	switch q.Get("done") {
	case "ack":
		v.Notice = "Alert acknowledged."
	case "resolve":
		v.Notice = "Alert resolved."
	}
	c.render(w, r, http.StatusOK, "alerts", "Alerts", "alerts", v)
}

// alertBadge is the open-alert count in the navigation (the layout
// loads it with htmx, and again every 30 s): " (3 open)", nothing when
// none are open.
func (c *Console) alertBadge(w http.ResponseWriter, r *http.Request) {
	n, err := c.svc.OpenAlertCount(r.Context())
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.renderPart(w, r, http.StatusOK, "alerts", "badge", n)
}

// alertView is an alert's page data.
type alertView struct {
	Alert      store.Alert
	Deliveries []store.Delivery
	KindName   string
	Notice     string
}

func (c *Console) alertPage(w http.ResponseWriter, r *http.Request) {
	a, ds, err := c.svc.Alert(r.Context(), r.PathValue("alert"))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	v := alertView{Alert: a, Deliveries: ds, KindName: alertKindNames[a.Kind]}
	switch r.URL.Query().Get("done") {
	case "ack":
		v.Notice = "Alert acknowledged."
	case "resolve":
		v.Notice = "Alert resolved."
	}
	c.render(w, r, http.StatusOK, "alerts_alert", a.Summary, "alerts", v)
}

// alertAct acknowledges (ack) or resolves an alert, then goes back to
// where the form came from: the inbox with its filter, or the alert.
func (c *Console) alertAct(ack bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("alert")
		var err error
		done := "resolve"
		if ack {
			done = "ack"
			_, err = c.svc.AckAlert(r.Context(), id)
		} else {
			_, err = c.svc.CloseAlert(r.Context(), id)
		}
		if err != nil {
			c.fail(w, r, err)
			return
		}
		back := "/console/alerts/" + url.PathEscape(id) + "?done=" + done
		if r.PostFormValue("back") == "inbox" {
			q, _ := url.ParseQuery(r.PostFormValue("page"))
			page := url.Values{"state": {q.Get("state")}, "kind": {q.Get("kind")}, "device": {q.Get("device")}, "done": {done}}
			back = "/console/alerts?" + page.Encode()
		}
		http.Redirect(w, r, back, http.StatusSeeOther)
	}
}

// alertSettingsView is the settings page's data.
type alertSettingsView struct {
	Set           store.AlertSettings
	OfflineMin    string
	WindowMin     string
	WebhookSecret string
	Notice        string
	Header        string
}

func minutes(d time.Duration) string {
	return strconv.FormatFloat(d.Minutes(), 'f', -1, 64)
}

func (c *Console) alertSettingsPage(w http.ResponseWriter, r *http.Request) {
	set, err := c.svc.AlertSettings(r.Context())
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.renderAlertSettings(w, r, http.StatusOK, set, r.URL.Query().Get("done") == "saved", "")
}

func (c *Console) renderAlertSettings(w http.ResponseWriter, r *http.Request, status int, set store.AlertSettings, saved bool, problem string) {
	sec, err := c.svc.WebhookSecret(r.Context())
	if err != nil {
		c.fail(w, r, err)
		return
	}
	v := alertSettingsView{Set: set, OfflineMin: minutes(set.OfflineAfter), WindowMin: minutes(set.VendFailWindow),
		WebhookSecret: sec, Header: service.WebhookSignatureHeader}
	if saved {
		v.Notice = "Alert settings saved."
	}
	if problem != "" {
		v.Notice = ""
	}
	c.render(w, r, status, "alerts_settings", "Alert settings", "alerts", struct {
		alertSettingsView
		Problem string
	}{v, problem})
}

func (c *Console) saveAlertSettings(w http.ResponseWriter, r *http.Request) {
	f := r.PostForm
	num := func(name string) (float64, bool) {
		v, err := strconv.ParseFloat(strings.TrimSpace(f.Get(name)), 64)
		return v, err == nil && v >= 0 && v < 1e7
	}
	set := store.AlertSettings{EmailTo: f.Get("email_to"), WebhookURL: f.Get("webhook_url"),
		QuietStart: strings.TrimSpace(f.Get("quiet_start")), QuietEnd: strings.TrimSpace(f.Get("quiet_end")),
		TimeZone: strings.TrimSpace(f.Get("time_zone"))}
	off, ok1 := num("offline_after_min")
	cnt, ok2 := num("vend_fail_count")
	win, ok3 := num("vend_fail_window_min")
	low, ok4 := num("low_stock_level")
	set.OfflineAfter = time.Duration(off * float64(time.Minute))
	set.VendFailCount, set.VendFailWindow, set.LowStockLevel = int(cnt), time.Duration(win*float64(time.Minute)), int(low)
	var err error
	switch {
	case !ok1:
		err = vend.Errorf(store.ErrInput, "alert settings: offline after: want a number of minutes")
	case !ok2 || cnt != float64(int(cnt)):
		err = vend.Errorf(store.ErrInput, "alert settings: failed sessions: want a whole number")
	case !ok3:
		err = vend.Errorf(store.ErrInput, "alert settings: failure window: want a number of minutes")
	case !ok4 || low != float64(int(low)):
		err = vend.Errorf(store.ErrInput, "alert settings: low-stock level: want a whole number")
	default:
		_, err = c.svc.PutAlertSettings(r.Context(), set)
	}
	if err != nil {
		if vend.KindOf(err) == vend.Invalid {
			c.renderAlertSettings(w, r, http.StatusBadRequest, set, false, err.Error())
			return
		}
		c.fail(w, r, err)
		return
	}
	http.Redirect(w, r, "/console/alert-settings?done=saved", http.StatusSeeOther)
}
