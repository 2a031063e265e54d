package console

import (
	"crypto/rand"
	"encoding/hex"
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

// moneyRoutes registers the console's pages of sessions, revenue, exports
// and refunds on m. Every change goes through the service method the JSON
// operator API uses (which authorizes and audits it); a change is always
// shown on a review page first and confirmed there.
func (c *Console) moneyRoutes(m *http.ServeMux) {
	m.HandleFunc("GET /console/sessions", c.allow(service.PermView, c.sessionsPage))
	m.HandleFunc("GET /console/sessions/{id}", c.allow(service.PermView, c.sessionPage))
	m.HandleFunc("POST /console/sessions/{id}/refund/review", c.allow(service.PermRefund, c.refundReview))
	m.HandleFunc("POST /console/sessions/{id}/refund", c.allow(service.PermRefund, c.refundConfirm))
	m.HandleFunc("POST /console/sessions/{id}/settle/review", c.allow(service.PermSettle, c.settleReview))
	m.HandleFunc("POST /console/sessions/{id}/settle", c.allow(service.PermSettle, c.settleConfirm))
	m.HandleFunc("POST /console/sessions/{id}/void", c.allow(service.PermSettle, c.voidConfirm))
	m.HandleFunc("GET /console/refunds", c.allow(service.PermView, c.refundsPage))
	m.HandleFunc("POST /console/refunds/{id}/approve", c.allow(service.PermApproveRefund, c.refundApprove))
	m.HandleFunc("POST /console/refunds/{id}/reject", c.allow(service.PermApproveRefund, c.refundReject))
	m.HandleFunc("POST /console/refunds/threshold", c.allow(service.PermApproveRefund, c.refundThreshold))
	m.HandleFunc("GET /console/revenue", c.allow(service.PermView, c.revenuePage))
	m.HandleFunc("GET /console/exports/{kind}", c.allow(service.PermExport, c.export))
}

// done are the messages a page shows after a confirmed change redirected to it.
var done = map[string]string{
	"refunded":  "The refund was made.",
	"approval":  "The refund is above the approval threshold: it now waits for an owner's approval.",
	"settled":   "The session was settled.",
	"voided":    "The session was voided: its hold was released.",
	"approved":  "The refund was approved and made.",
	"rejected":  "The refund was rejected; nothing was refunded.",
	"threshold": "The approval threshold was saved.",
}

// sessionStates are the states a search can pick.
var sessionStates = []store.State{store.Pending, store.Authorized, store.Running, store.Ending, store.Settled, store.Refunded,
	store.Failed, store.Unreported, store.Voided}

// sessionsView is the sessions page's data.
type sessionsView struct {
	Q        url.Values
	States   []store.State
	Outcomes []vend.Outcome
	Sessions []store.Session
	Next     string // the next page's URL, or ""
	First    string // the first page's URL when this is not it, or ""
	Approval int    // open refund approvals
}

// parseDay reads a YYYY-MM-DD (or RFC 3339) form value; zero when empty.
func parseDay(name, v string) (time.Time, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	return time.Time{}, vend.Errorf(service.ErrMoneyInput, "%s: want a date as YYYY-MM-DD", name)
}

// sessionQuery reads a search from a query string: device, machine, from,
// to (days, to inclusive), state, outcome, payer, cursor.
func sessionQuery(q url.Values) (store.SessionQuery, error) {
	sq := store.SessionQuery{Device: strings.TrimSpace(q.Get("device")), Machine: strings.TrimSpace(q.Get("machine")),
		State: store.State(q.Get("state")), Payer: q.Get("payer"), Cursor: q.Get("cursor")}
	var err error
	if sq.Since, err = parseDay("from", q.Get("from")); err != nil {
		return sq, err
	}
	if sq.Until, err = parseDay("to", q.Get("to")); err != nil {
		return sq, err
	}
	if !sq.Until.IsZero() && len(strings.TrimSpace(q.Get("to"))) == len(time.DateOnly) {
		sq.Until = sq.Until.Add(24 * time.Hour) // the whole last day
	}
	if o := q.Get("outcome"); o != "" {
		for _, x := range outcomes() {
			if x.String() == o {
				sq.Outcome = x
			}
		}
		if sq.Outcome == 0 {
			return sq, vend.Errorf(service.ErrMoneyInput, "outcome: unknown %q", clip(o))
		}
	}
	return sq, nil
}

func (c *Console) sessionsPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	sq, err := sessionQuery(q)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	p, err := c.svc.SearchSessions(r.Context(), sq)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	v := sessionsView{Q: q, States: sessionStates, Sessions: p.Sessions, Outcomes: outcomes()}
	if p.Next != "" {
		n := cloneValues(q)
		n.Set("cursor", p.Next)
		v.Next = "/console/sessions?" + n.Encode()
	}
	if q.Get("cursor") != "" {
		n := cloneValues(q)
		n.Del("cursor")
		v.First = "/console/sessions?" + n.Encode()
	}
	if aps, err := c.svc.RefundApprovals(r.Context()); err == nil {
		v.Approval = len(aps)
	}
	c.render(w, r, http.StatusOK, "sessions", "Sessions", "sessions", v)
}

// outcomes lists the known session outcomes.
func outcomes() []vend.Outcome {
	var out []vend.Outcome
	for o := vend.Outcome(1); o < 255; o++ {
		if o.Valid() {
			out = append(out, o)
		}
	}
	return out
}

func cloneValues(q url.Values) url.Values {
	n := url.Values{}
	for k, vs := range q {
		n[k] = append([]string{}, vs...)
	}
	return n
}

// sessionView is the session page's data.
type sessionView struct {
	service.SessionDetail
	Done        string
	Unreported  bool
	Refundable  bool
	RefundInput string // the decimal amount to prefill
	Hold        vend.Amount
}

func sessionID(r *http.Request) (vend.SessionID, error) {
	id, err := vend.ParseSessionID(r.PathValue("id"))
	if err != nil {
		return vend.SessionID{}, vend.Errorf(store.ErrSessionNotFound, "%q is no session ID", clip(r.PathValue("id")))
	}
	return id, nil
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

func (c *Console) sessionPage(w http.ResponseWriter, r *http.Request) {
	id, err := sessionID(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	d, err := c.svc.SessionDetail(r.Context(), id)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	v := sessionView{SessionDetail: d, Done: done[r.URL.Query().Get("done")], Unreported: d.Session.State == store.Unreported,
		Refundable: d.Refundable.Minor > 0, RefundInput: service.Decimal(d.Refundable.Minor, d.Refundable.Currency),
		Hold: vend.Amount{Minor: d.Session.Hold, Currency: d.Session.Currency}}
	c.render(w, r, http.StatusOK, "sessions_detail", "Session "+id.String(), "sessions", v)
}

// refundForm is what the refund form and its review page post.
type refundForm struct {
	Session vend.SessionID
	Amount  vend.Amount
	Decimal string // Amount as typed back
	Reason  string
	Key     string // the idempotency key of this form: one refund however often it is posted
}

// readRefund reads a refund form of session ss: "full" or an amount
// typed as a decimal, and a reason.
func readRefund(r *http.Request, d service.SessionDetail) (refundForm, error) {
	cur := d.Session.Currency
	f := refundForm{Session: d.Session.ID, Reason: strings.TrimSpace(r.PostFormValue("reason")), Key: r.PostFormValue("key")}
	if r.PostFormValue("part") == "full" {
		f.Amount = d.Refundable
	} else {
		n, err := service.ParseDecimal(r.PostFormValue("amount"), cur)
		if err != nil {
			return f, err
		}
		f.Amount = vend.Amount{Minor: n, Currency: cur}
	}
	if f.Reason == "" || len(f.Reason) > 200 {
		return f, vend.Errorf(service.ErrMoneyInput, "reason: say why, in at most 200 bytes")
	}
	f.Decimal = service.Decimal(f.Amount.Minor, cur)
	return f, nil
}

// refundReviewView is the refund review page's data.
type refundReviewView struct {
	Form   refundForm
	Review service.RefundReview
}

func (c *Console) refundReview(w http.ResponseWriter, r *http.Request) {
	id, err := sessionID(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	d, err := c.svc.SessionDetail(r.Context(), id)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	f, err := readRefund(r, d)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	rv, err := c.svc.ReviewRefund(r.Context(), id, f.Amount)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	f.Key = newFormKey()
	c.render(w, r, http.StatusOK, "sessions_review", "Review the refund", "sessions", refundReviewView{Form: f, Review: rv})
}

// newFormKey returns a fresh idempotency key for one confirm form.
func newFormKey() string {
	var b [16]byte
	rand.Read(b[:])
	return "console-" + hex.EncodeToString(b[:])
}

func (c *Console) refundConfirm(w http.ResponseWriter, r *http.Request) {
	id, err := sessionID(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	minor, err := strconv.ParseInt(r.PostFormValue("minor"), 10, 64)
	if err != nil {
		c.fail(w, r, vend.Errorf(service.ErrMoneyInput, "amount: missing; start the refund again from the session"))
		return
	}
	cur := vend.Currency(r.PostFormValue("currency"))
	out, err := c.svc.RequestRefund(r.Context(), id, r.PostFormValue("key"), vend.Amount{Minor: minor, Currency: cur}, r.PostFormValue("reason"))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	what := "refunded"
	if out.Approval != nil {
		what = "approval"
	}
	http.Redirect(w, r, "/console/sessions/"+id.String()+"?done="+what, http.StatusSeeOther)
}

// settleView is the settle/void confirm page's data.
type settleView struct {
	Session store.Session
	Void    bool
	Amount  vend.Amount
	Decimal string
	Reason  string
	Release vend.Amount
}

func (c *Console) settleReview(w http.ResponseWriter, r *http.Request) {
	id, err := sessionID(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	d, err := c.svc.SessionDetail(r.Context(), id)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	ss := d.Session
	if ss.State != store.Unreported {
		c.fail(w, r, vend.Errorf(store.ErrSessionState, "session is %s, not unreported", ss.State))
		return
	}
	v := settleView{Session: ss, Void: r.PostFormValue("action") == "void", Reason: strings.TrimSpace(r.PostFormValue("reason"))}
	if v.Reason == "" || len(v.Reason) > 200 {
		c.fail(w, r, vend.Errorf(service.ErrMoneyInput, "reason: say why, in at most 200 bytes"))
		return
	}
	if !v.Void {
		n, err := service.ParseDecimal(r.PostFormValue("amount"), ss.Currency)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		if n > ss.Hold {
			c.fail(w, r, vend.Errorf(service.ErrMoneyInput, "amount: at most the hold, %s", vend.Amount{Minor: ss.Hold, Currency: ss.Currency}))
			return
		}
		v.Amount = vend.Amount{Minor: n, Currency: ss.Currency}
	} else {
		v.Amount = vend.Amount{Currency: ss.Currency}
	}
	v.Decimal = service.Decimal(v.Amount.Minor, ss.Currency)
	v.Release = vend.Amount{Minor: ss.Hold - v.Amount.Minor, Currency: ss.Currency}
	title := "Confirm: settle the session"
	if v.Void {
		title = "Confirm: void the session"
	}
	c.render(w, r, http.StatusOK, "sessions_settle", title, "sessions", v)
}

// ended answers a settle or void: a repeat of the same confirmation (a
// double click) finds the session already ended with this reason and is
// shown as done.
func (c *Console) ended(w http.ResponseWriter, r *http.Request, id vend.SessionID, what string, err error) {
	if err != nil && vend.CodeOf(err) == store.ErrSessionState.Code {
		if d, derr := c.svc.SessionDetail(r.Context(), id); derr == nil && strings.HasSuffix(d.Session.Reason, ": "+strings.TrimSpace(r.PostFormValue("reason"))) {
			err = nil
		}
	}
	if err != nil {
		c.fail(w, r, err)
		return
	}
	http.Redirect(w, r, "/console/sessions/"+id.String()+"?done="+what, http.StatusSeeOther)
}

func (c *Console) settleConfirm(w http.ResponseWriter, r *http.Request) {
	id, err := sessionID(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	minor, err := strconv.ParseInt(r.PostFormValue("minor"), 10, 64)
	if err != nil {
		c.fail(w, r, vend.Errorf(service.ErrMoneyInput, "amount: missing; start again from the session"))
		return
	}
	_, err = c.svc.SettleUnreported(r.Context(), id, vend.Amount{Minor: minor, Currency: vend.Currency(r.PostFormValue("currency"))}, strings.TrimSpace(r.PostFormValue("reason")))
	c.ended(w, r, id, "settled", err)
}

func (c *Console) voidConfirm(w http.ResponseWriter, r *http.Request) {
	id, err := sessionID(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	_, err = c.svc.VoidUnreported(r.Context(), id, strings.TrimSpace(r.PostFormValue("reason")))
	c.ended(w, r, id, "voided", err)
}

// refundsView is the refund approvals page's data.
type refundsView struct {
	Done      string
	Approvals []store.RefundApproval
	Threshold *vend.Amount
	Decimal   string
	Currency  vend.Currency
}

func (c *Console) refundsPage(w http.ResponseWriter, r *http.Request) {
	aps, err := c.svc.RefundApprovals(r.Context())
	if err != nil {
		c.fail(w, r, err)
		return
	}
	v := refundsView{Done: done[r.URL.Query().Get("done")], Approvals: aps, Currency: c.svc.Currency()}
	th, ok, err := c.svc.RefundThreshold(r.Context())
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if ok {
		v.Threshold, v.Decimal, v.Currency = &th, service.Decimal(th.Minor, th.Currency), th.Currency
	}
	c.render(w, r, http.StatusOK, "refunds", "Refund approvals", "sessions", v)
}

func (c *Console) refundApprove(w http.ResponseWriter, r *http.Request) {
	if _, err := c.svc.ApproveRefund(r.Context(), r.PathValue("id"), strings.TrimSpace(r.PostFormValue("note"))); err != nil {
		c.fail(w, r, err)
		return
	}
	http.Redirect(w, r, "/console/refunds?done=approved", http.StatusSeeOther)
}

func (c *Console) refundReject(w http.ResponseWriter, r *http.Request) {
	if _, err := c.svc.RejectRefund(r.Context(), r.PathValue("id"), strings.TrimSpace(r.PostFormValue("note"))); err != nil {
		c.fail(w, r, err)
		return
	}
	http.Redirect(w, r, "/console/refunds?done=rejected", http.StatusSeeOther)
}

func (c *Console) refundThreshold(w http.ResponseWriter, r *http.Request) {
	var limit *vend.Amount
	if v := strings.TrimSpace(r.PostFormValue("amount")); v != "" {
		cur := vend.Currency(r.PostFormValue("currency"))
		n, err := service.ParseDecimal(v, cur)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		limit = &vend.Amount{Minor: n, Currency: cur}
	}
	if err := c.svc.SetRefundThreshold(r.Context(), limit); err != nil {
		c.fail(w, r, err)
		return
	}
	http.Redirect(w, r, "/console/refunds?done=threshold", http.StatusSeeOther)
}

// revenueView is the revenue page's data.
type revenueView struct {
	From, To   string // YYYY-MM-DD, To inclusive
	Charts     []revenueChart
	ExportQS   string // from=…&to=… for the export links
	Currencies []vend.Currency
}

// revenueChart is one grouping of revenue: its chart and its table.
type revenueChart struct {
	Title string
	Group store.RevenueGroup
	SVG   any // template.HTML from package chart
	Lines []store.RevenueLine
}

// revenueRange reads from and to (days, to inclusive) of r; the last 30
// days by default. It returns [from, to) and the days as typed back.
func revenueRange(r *http.Request, now time.Time) (time.Time, time.Time, string, string, error) {
	q := r.URL.Query()
	from, err := parseDay("from", q.Get("from"))
	if err != nil {
		return from, from, "", "", err
	}
	to, err := parseDay("to", q.Get("to"))
	if err != nil {
		return from, to, "", "", err
	}
	if to.IsZero() {
		to = now.UTC().Truncate(24 * time.Hour)
	}
	if from.IsZero() {
		from = to.Add(-29 * 24 * time.Hour)
	}
	if to.Before(from) {
		return from, to, "", "", vend.Errorf(service.ErrMoneyInput, "to: the range ends before it starts")
	}
	if to.Sub(from) > 3700*24*time.Hour {
		return from, to, "", "", vend.Errorf(service.ErrMoneyInput, "from: at most ten years at once")
	}
	return from, to.Add(24 * time.Hour), from.Format(time.DateOnly), to.Format(time.DateOnly), nil
}

func (c *Console) revenuePage(w http.ResponseWriter, r *http.Request) {
	from, to, f, t, err := revenueRange(r, time.Now())
	if err != nil {
		c.fail(w, r, err)
		return
	}
	v := revenueView{From: f, To: t, ExportQS: url.Values{"from": {f}, "to": {t}}.Encode()}
	for _, g := range []struct {
		group store.RevenueGroup
		title string
	}{{store.ByDay, "Net revenue by day"}, {store.ByDevice, "Net revenue by device"}, {store.ByLocation, "Net revenue by location"}} {
		ls, err := c.svc.Revenue(r.Context(), g.group, from, to)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		var bars []chart.Bar
		for _, l := range ls {
			label := l.Key
			if label == "" {
				label = "(none)"
			}
			if len(v.Currencies) > 0 && l.Currency != v.Currencies[0] {
				label += " " + string(l.Currency)
			}
			if len(v.Currencies) == 0 {
				v.Currencies = append(v.Currencies, l.Currency)
			}
			// The chart's heights are drawn from major units; the text
			// (tooltip and table) is the exact amount.
			bars = append(bars, chart.Bar{Label: label, Value: float64(l.Net) / 100, Text: service.Decimal(l.Net, l.Currency) + " " + string(l.Currency)})
		}
		v.Charts = append(v.Charts, revenueChart{Title: g.title, Group: g.group, Lines: ls,
			SVG: chart.Bars(bars, chart.Opts{Title: g.title, ID: "rev-" + string(g.group), Empty: "No revenue in this range.",
				YFormat: func(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }})})
	}
	c.render(w, r, http.StatusOK, "revenue", "Revenue", "revenue", v)
}

// export streams a CSV export: /console/exports/{sessions,revenue,ledger}?from=&to=[&group=].
func (c *Console) export(w http.ResponseWriter, r *http.Request) {
	kind := r.PathValue("kind")
	from, to, f, t, err := revenueRange(r, time.Now())
	if err != nil {
		c.fail(w, r, err)
		return
	}
	rg := service.ExportRange{From: from, To: to, Group: store.RevenueGroup(r.URL.Query().Get("group"))}
	if kind == service.ExportSessions {
		if rg.Query, err = sessionQuery(r.URL.Query()); err != nil {
			c.fail(w, r, err)
			return
		}
	}
	switch rg.Group {
	case "", store.ByDay, store.ByDevice, store.ByLocation:
	default:
		c.fail(w, r, vend.Errorf(service.ErrMoneyInput, "group: want day, device or location"))
		return
	}
	switch kind {
	case service.ExportSessions, service.ExportRevenue, service.ExportMovements:
	default:
		c.fail(w, r, vend.Errorf(service.ErrMoneyInput, "export: unknown kind %q (want sessions, revenue or ledger)", clip(kind)))
		return
	}
	if err := c.svc.Authorize(r.Context(), service.PermExport); err != nil {
		c.fail(w, r, err)
		return
	}
	secureHeaders(w)
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s-%s-%s.csv"`, kind, f, t))
	if err := c.svc.Export(r.Context(), kind, rg, w); err != nil {
		// Headers are gone once rows are streamed: the error goes in the
		// file's last line and the log, so a cut export is visibly cut.
		c.log.Error("console: export", "kind", kind, "err", err)
		fmt.Fprintf(w, "\n# export failed: %s\n", vend.CodeOf(err))
	}
}
