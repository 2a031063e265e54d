package console

import (
	"encoding/csv"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

// auditRoutes registers the audit log page and its CSV export (owner
// only: service.PermAudit).
func (c *Console) auditRoutes(m *http.ServeMux) {
	m.HandleFunc("GET /console/audit", c.allow(service.PermAudit, c.audit))
	m.HandleFunc("GET /console/audit.csv", c.allow(service.PermAudit, c.auditCSV))
}

// ErrFilter is a filter field of a list page that does not parse.
var ErrFilter = vend.E(vend.Invalid, "request.field", "console: invalid filter")

// auditFilter reads the page's filter: action, account (email or ID),
// from and to (YYYY-MM-DD, UTC days, to inclusive) and the cursor before.
func auditFilter(r *http.Request) (store.AuditFilter, auditQuery, error) {
	q := r.URL.Query()
	aq := auditQuery{Action: strings.TrimSpace(q.Get("action")), Account: strings.TrimSpace(q.Get("account")),
		From: q.Get("from"), To: q.Get("to")}
	f := store.AuditFilter{Action: aq.Action, Account: aq.Account}
	if len(f.Action) > store.MaxAuditField || len(f.Account) > store.MaxAuditField {
		return f, aq, vend.Errorf(ErrFilter, "action and account are at most %d bytes", store.MaxAuditField)
	}
	day := func(name, v string) (time.Time, error) {
		if v == "" {
			return time.Time{}, nil
		}
		t, err := time.Parse(time.DateOnly, v)
		if err != nil {
			return time.Time{}, vend.Errorf(ErrFilter, "%s %q: want a date, YYYY-MM-DD", name, v)
		}
		return t, nil
	}
	var err error
	if f.Since, err = day("from", aq.From); err != nil {
		return f, aq, err
	}
	if f.Until, err = day("to", aq.To); err != nil {
		return f, aq, err
	}
	if !f.Until.IsZero() {
		f.Until = f.Until.Add(24 * time.Hour) // the whole last day
	}
	if v := q.Get("before"); v != "" {
		if f.Before, err = strconv.ParseInt(v, 10, 64); err != nil || f.Before < 1 {
			return f, aq, vend.Errorf(ErrFilter, "before %q: want an entry number", v)
		}
	}
	return f, aq, nil
}

// auditQuery is the filter as the form shows it.
type auditQuery struct {
	Action, Account, From, To string
}

// encode returns the filter as a query string (without the cursor).
func (q auditQuery) encode() string {
	v := make([]string, 0, 4)
	for _, kv := range [][2]string{{"action", q.Action}, {"account", q.Account}, {"from", q.From}, {"to", q.To}} {
		if kv[1] != "" {
			v = append(v, kv[0]+"="+urlQueryEscape(kv[1]))
		}
	}
	return strings.Join(v, "&")
}

// auditView is the audit page's data.
type auditView struct {
	Query   auditQuery
	Entries []store.AuditEntry
	CSV     template.URL // the export of this filter
	Newest  template.URL // the newest page of this filter, when this is not it
	Older   template.URL // the next (older) page, when there is one
}

// withQuery returns path with the query q (and more, each "k=v"), as a
// URL the templates keep as it is.
func withQuery(path, q string, more ...string) template.URL {
	parts := append([]string{}, more...)
	if q != "" {
		parts = append([]string{q}, parts...)
	}
	if len(parts) == 0 {
		return template.URL(path)
	}
	return template.URL(path + "?" + strings.Join(parts, "&"))
}

// auditPage is the audit page's length.
const auditPage = 50

func (c *Console) audit(w http.ResponseWriter, r *http.Request) {
	f, aq, err := auditFilter(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	f.Limit = auditPage + 1
	es, err := c.svc.AuditLog(r.Context(), actor(r).Operator, f)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	v := auditView{Query: aq, Entries: es, CSV: withQuery("/console/audit.csv", aq.encode())}
	if f.Before > 0 {
		v.Newest = withQuery("/console/audit", aq.encode())
	}
	if len(es) > auditPage {
		v.Entries = es[:auditPage]
		v.Older = withQuery("/console/audit", aq.encode(), "before="+strconv.FormatInt(es[auditPage-1].ID, 10))
	}
	c.render(w, r, http.StatusOK, "audit", "Audit log", "audit", v)
}

// auditCSV exports every entry that matches the page's filter as CSV,
// newest first, reading the log a page at a time (no fixed row cap).
// A cell that a spreadsheet would take for a formula is prefixed with '.
func (c *Console) auditCSV(w http.ResponseWriter, r *http.Request) {
	f, _, err := auditFilter(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	f.Limit = store.MaxAuditLimit
	first, err := c.svc.AuditLog(r.Context(), actor(r).Operator, f)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	secureHeaders(w)
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="audit-`+time.Now().UTC().Format("20060102-150405")+`.csv"`)
	w.Header().Set("Cache-Control", "no-store")
	cw := csv.NewWriter(w)
	cw.Write([]string{"id", "at", "operator", "account", "email", "role", "action", "target", "before", "after", "ip"})
	page := first
	for {
		for _, e := range page {
			cw.Write(csvSafe(strconv.FormatInt(e.ID, 10), e.At.UTC().Format(time.RFC3339Nano), e.Operator, e.Account, e.Email, e.Role,
				e.Action, e.Target, string(e.Before), string(e.After), e.IP))
		}
		if len(page) < f.Limit {
			break
		}
		f.Before = page[len(page)-1].ID
		if page, err = c.svc.AuditLog(r.Context(), actor(r).Operator, f); err != nil {
			// The header is out: end the file with a line that says so
			// rather than pass off a cut export as whole.
			c.log.Error("console: audit export", "err", err)
			cw.Write([]string{"error", "the export stopped early: " + vend.CodeOf(err)})
			break
		}
	}
	cw.Flush()
}

// csvSafe returns the cells with any that starts like a spreadsheet
// formula (=, +, -, @, tab, CR) prefixed with ', so that opening the
// export cannot run one.
func csvSafe(cells ...string) []string {
	for i, s := range cells {
		if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
			cells[i] = "'" + s
		}
	}
	return cells
}
