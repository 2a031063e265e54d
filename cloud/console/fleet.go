package console

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/console/chart"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

// FleetPoll is how often an open fleet or device page's event stream
// re-reads the store even when no change was announced (changes are
// announced at once on this instance and, on PostgreSQL, from the other
// instances: service.FleetEvents). A notification lost while the
// listener reconnected, and the passing minutes of "since", show within
// it; the stream ends within it once the console session ended.
const FleetPoll = 5 * time.Second

// FleetRows bounds the devices one fleet page (and each of its live
// updates) lists; the page says how many more match and the filter and
// search narrow it.
const FleetRows = 500

// fleetDebounce gathers the changes of a burst (a broker restart drops
// every board at once) into one message.
const fleetDebounce = 150 * time.Millisecond

// fleetRoutes registers the console's pages of the fleet: devices and
// machines, live on m.
func (c *Console) fleetRoutes(m *http.ServeMux) {
	m.HandleFunc("GET /console/fleet", c.allow(service.PermView, c.fleetPage))
	m.HandleFunc("GET /console/fleet/events", c.allow(service.PermView, c.fleetEvents))
	m.HandleFunc("GET /console/fleet/{device}", c.allow(service.PermView, c.devicePage))
}

// fleetFilter reads the page's filter from the query: state and q.
func fleetFilter(r *http.Request) service.FleetFilter {
	q := r.URL.Query()
	return service.FleetFilter{State: q.Get("state"), Query: strings.TrimSpace(q.Get("q"))}
}

// fleetView is the data of the fleet page and its live table.
type fleetView struct {
	Filter  service.FleetFilter
	Summary service.FleetSummary
	Rows    []deviceRow
	More    int    // devices that match but are not listed (beyond FleetRows)
	Events  string // the event stream's URL, with the filter
	Updated string // when the table was read, to the minute (so an unchanged table is not sent again)
}

// deviceRow is one device as the table shows it, every text prepared.
type deviceRow struct {
	D          service.FleetDevice
	Status     statusView
	Since      string // absolute, UTC; "" never heard
	SinceISO   string
	For        string // how long, in words: "12 min"
	Signal     string
	SignalNote string // registration, network, technology
	LastSale   string
	Machines   []machineRow
	Faults     []string
}

type machineRow struct {
	M        service.FleetMachine
	State    statusView
	Price    string
	Slots    []string // "A1 chips: 1.50 EUR"
	LastSale string
}

// statusView is a status as words and a shape, never colour alone.
type statusView struct {
	Key, Label, Glyph string
}

func deviceStatus(s string) statusView {
	switch s {
	case service.FleetOnline:
		return statusView{"online", "Online", "●"}
	case service.FleetFault:
		return statusView{"fault", "Fault", "▲"}
	}
	return statusView{"offline", "Offline", "○"}
}

func machineStatus(s string) statusView {
	switch s {
	case "idle":
		return statusView{"online", "Idle", "●"}
	case "busy":
		return statusView{"busy", "In use", "■"}
	case "fault":
		return statusView{"fault", "Fault", "▲"}
	}
	return statusView{"offline", "Offline", "○"}
}

// ago says how long d is in words, to the minute ("under a minute",
// "12 min", "3 h 5 min", "4 d 2 h").
func ago(d time.Duration) string {
	switch {
	case d < time.Minute:
		return "under a minute"
	case d < time.Hour:
		return fmt.Sprintf("%d min", int(d/time.Minute))
	case d < 24*time.Hour:
		return fmt.Sprintf("%d h %d min", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	return fmt.Sprintf("%d d %d h", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

// quantity writes n units of u for a person: litres, minutes, cycles, items.
func quantity(u vend.Unit, n uint64) string {
	switch u {
	case vend.UnitML:
		if n%1000 == 0 {
			return fmt.Sprintf("%d L", n/1000)
		}
		return fmt.Sprintf("%d ml", n)
	case vend.UnitSecond:
		if n%60 == 0 {
			return fmt.Sprintf("%d min", n/60)
		}
		return fmt.Sprintf("%d s", n)
	case vend.UnitCycle:
		return plural(n, "cycle")
	case vend.UnitItem:
		return plural(n, "item")
	}
	return fmt.Sprintf("%d %s", n, u)
}

func plural(n uint64, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func priceText(p vend.Price, u vend.Unit, cur vend.Currency) string {
	return formatMinor(p.Minor, string(cur)) + " per " + quantity(u, uint64(p.Per))
}

func rowOf(d service.FleetDevice, now time.Time) deviceRow {
	r := deviceRow{D: d, Status: deviceStatus(d.Status), Since: stamp(d.Since), LastSale: stamp(d.LastSale)}
	if !d.Since.IsZero() {
		r.SinceISO = d.Since.UTC().Format(time.RFC3339)
		r.For = ago(now.Sub(d.Since))
	}
	if s := d.Signal; s != nil {
		switch {
		case s.RSSIdBm != nil:
			r.Signal = fmt.Sprintf("%d dBm", *s.RSSIdBm)
		case s.CSQ != 99:
			r.Signal = fmt.Sprintf("CSQ %d", s.CSQ)
		default:
			r.Signal = "unknown"
		}
		var note []string
		for _, v := range []string{s.Registration, s.Network, s.Tech} {
			if v != "" && v != "unknown" {
				note = append(note, v)
			}
		}
		r.SignalNote = strings.Join(note, ", ")
	}
	for _, f := range d.Faults {
		t := f.Code
		if f.Machine != "" {
			t = f.Machine + ": " + t
		} else {
			t = "board: " + t
		}
		if f.Detail != "" {
			t += " (" + f.Detail + ")"
		}
		r.Faults = append(r.Faults, t)
	}
	for _, m := range d.Machines {
		mr := machineRow{M: m, State: machineStatus(m.State), Price: priceText(m.Price, m.Unit, m.Currency), LastSale: stamp(m.LastSale)}
		for _, sl := range m.Slots {
			name := sl.ID
			if sl.Name != "" {
				name += " " + sl.Name
			}
			mr.Slots = append(mr.Slots, name+": "+priceText(sl.Price, m.Unit, m.Currency))
		}
		r.Machines = append(r.Machines, mr)
	}
	return r
}

func (c *Console) fleetData(ctx context.Context, f service.FleetFilter) (fleetView, error) {
	a, _ := service.ActorFrom(ctx)
	ds, sum, err := c.svc.Fleet(ctx, a.Operator, f)
	if err != nil {
		return fleetView{}, err
	}
	now := time.Now()
	v := fleetView{Filter: f, Summary: sum, Updated: now.UTC().Format("15:04 UTC")}
	q := url.Values{}
	if f.State != "" {
		q.Set("state", f.State)
	}
	if f.Query != "" {
		q.Set("q", f.Query)
	}
	v.Events = "/console/fleet/events"
	if len(q) > 0 {
		v.Events += "?" + q.Encode()
	}
	if len(ds) > FleetRows {
		v.More, ds = len(ds)-FleetRows, ds[:FleetRows]
	}
	for _, d := range ds {
		v.Rows = append(v.Rows, rowOf(d, now))
	}
	return v, nil
}

// fleetPage is GET /console/fleet: every device with its machines,
// filtered by state and searched by q, kept live by /console/fleet/events.
func (c *Console) fleetPage(w http.ResponseWriter, r *http.Request) {
	v, err := c.fleetData(r.Context(), fleetFilter(r))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, "fleet", "Fleet", "fleet", v)
}

// deviceView is the data of the device page.
type deviceView struct {
	Row       deviceRow
	Detail    service.DeviceDetail
	Signal    any // chart HTML
	Outbox    any
	Sessions  []sessionRow
	Presence  []presenceRow
	Events    string
	Keep      string // how far back the histories go, in words
	PriceLink func(machine string) string
}

type sessionRow struct {
	ID, Machine, State, Created, Amount, Units string
}

type presenceRow struct {
	Status statusView
	At     string
	Cause  string
}

// causeText says why a presence changed.
func causeText(c string, online bool) string {
	switch c {
	case "will":
		return "connection lost (last will)"
	case "disconnect":
		return "connection closed"
	case "stale":
		return "nothing heard within the presence bound"
	case "state":
		if online {
			return "connected"
		}
		return "shut down or rebooting"
	}
	return c
}

// PriceChangeURL is where a machine's price is changed: its form on the
// operations page of the device, which reviews and confirms the change.
func PriceChangeURL(device, machine string) string {
	return "/console/ops/devices/" + url.PathEscape(device) + "#price-" + url.PathEscape(machine)
}

func (c *Console) deviceData(ctx context.Context, id string) (deviceView, error) {
	a, _ := service.ActorFrom(ctx)
	d, err := c.svc.FleetDevice(ctx, a.Operator, id)
	if err != nil {
		return deviceView{}, err
	}
	now := time.Now()
	v := deviceView{Row: rowOf(d.FleetDevice, now), Detail: d, Events: "/console/fleet/events?device=" + url.QueryEscape(id)}
	var sig, box []chart.Point
	for _, s := range d.Telemetry {
		if s.RSSIdBm != nil {
			sig = append(sig, chart.Point{X: s.At, Y: float64(*s.RSSIdBm)})
		}
		box = append(box, chart.Point{X: s.At, Y: float64(s.OutboxDepth)})
	}
	v.Signal = chart.Line([]chart.Series{{Name: "Signal (dBm)", Points: sig}}, chart.Opts{
		Title: "Cellular signal (dBm)", ID: "chart-signal", Height: 200,
		YFormat: func(f float64) string { return strconv.FormatFloat(f, 'f', 0, 64) + " dBm" },
		Empty:   "No signal readings yet (no modem, or nothing heard).",
	})
	v.Outbox = chart.Line([]chart.Series{{Name: "Outbox depth", Points: box}}, chart.Opts{
		Title: "Outbox depth (messages waiting for the cloud)", ID: "chart-outbox", Height: 200, ZeroBased: true,
		YFormat: func(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) },
		Empty:   "No telemetry kept yet.",
	})
	for _, s := range d.Sessions {
		row := sessionRow{ID: s.ID.String(), Machine: s.Machine, State: string(s.State), Created: stamp(s.Created)}
		if s.Slot != "" {
			row.Machine += " / " + s.Slot
		}
		row.Amount = formatMinor(s.Captured, string(s.Currency))
		if s.Units > 0 {
			row.Units = quantity(s.Unit, s.Units)
		}
		v.Sessions = append(v.Sessions, row)
	}
	for _, p := range d.Presence {
		st := service.FleetOffline
		if p.Online {
			st = service.FleetOnline
		}
		v.Presence = append(v.Presence, presenceRow{Status: deviceStatus(st), At: p.At.UTC().Format("2006-01-02 15:04:05 UTC"), Cause: causeText(p.Cause, p.Online)})
	}
	v.Keep = strings.TrimSuffix(strings.TrimSuffix(ago(d.Keep), " 0 min"), " 0 h")
	if d.Keep%(24*time.Hour) == 0 && d.Keep <= 7*24*time.Hour {
		v.Keep = fmt.Sprintf("%d h", int(d.Keep/time.Hour))
	}
	v.PriceLink = func(machine string) string { return PriceChangeURL(id, machine) }
	return v, nil
}

// devicePage is GET /console/fleet/{device}: one device with its
// machines and prices, recent sessions, telemetry charts and state
// history. Another operator's device is not found.
func (c *Console) devicePage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("device")
	if vend.ValidateDeviceID(id) != nil {
		c.fail(w, r, vend.Errorf(store.ErrDeviceNotFound, "%q", clip(id)))
		return
	}
	v, err := c.deviceData(r.Context(), id)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	title := "Device " + id
	if v.Detail.Name != "" {
		title += " · " + v.Detail.Name
	}
	c.render(w, r, http.StatusOK, "fleet_device", title, "fleet", v)
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// fleetEvents is GET /console/fleet/events: a Server-Sent Events stream
// for htmx-ext-sse. With ?device=ID it sends event "device" (the device
// page's status part); otherwise event "fleet" (the fleet table for the
// page's state and q). A message is sent when what it would show
// changed: at once (debounced) when this instance announces a device
// change, else at the next FleetPoll. The stream ends when the client
// goes, or at the first poll after the console session ended.
func (c *Console) fleetEvents(w http.ResponseWriter, r *http.Request) {
	device := r.URL.Query().Get("device")
	f := fleetFilter(r)
	ctx := r.Context()
	event, page, part := "fleet", "fleet", "fleet-live"
	if device != "" {
		event, page, part = "device", "fleet_device", "device-live"
	}
	renderNow := func() (string, error) {
		if device != "" {
			v, err := c.deviceData(ctx, device)
			if err != nil {
				return "", err
			}
			return c.part(r, page, part, v)
		}
		v, err := c.fleetData(ctx, f)
		if err != nil {
			return "", err
		}
		return c.part(r, page, part, v)
	}
	// The first render decides the answer: a bad filter or another
	// operator's device is an error page, not a stream.
	first, err := renderNow()
	if err != nil {
		c.fail(w, r, err)
		return
	}
	changes, stop := c.svc.FleetEvents.Subscribe()
	defer func() { stop() }()
	s, err := c.stream(w, r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	defer s.Close()
	last := ""
	send := func(html string) error {
		if html == last {
			return nil
		}
		last = html
		return s.Send(event, html)
	}
	if send(first) != nil {
		return
	}
	poll := time.NewTicker(FleetPoll)
	defer poll.Stop()
	keep := time.NewTicker(s.KeepAliveEvery())
	defer keep.Stop()
	var debounce <-chan time.Time
	// refresh sends what the part shows now; false ends the stream (the
	// tab has gone, or the device is no longer the operator's).
	refresh := func() bool {
		html, err := renderNow()
		if err != nil {
			if ctx.Err() == nil {
				c.log.Warn("console: fleet stream", "err", err)
			}
			return vend.KindOf(err) == vend.Transient || vend.KindOf(err) == vend.Internal
		}
		return send(html) == nil
	}
	for {
		select {
		case <-ctx.Done():
			return
		case _, open := <-changes:
			if !open { // fell behind: subscribe again and re-read everything
				changes, stop = c.svc.FleetEvents.Subscribe()
			}
			if debounce == nil {
				debounce = time.After(fleetDebounce)
			}
		case <-debounce:
			debounce = nil
			if !refresh() {
				return
			}
		case <-poll.C:
			if _, _, err := c.session(r); err != nil {
				return // logged out, revoked or expired: the page's next request signs in again
			}
			if !refresh() {
				return
			}
		case <-keep.C:
			if s.KeepAlive() != nil {
				return
			}
		}
	}
}
