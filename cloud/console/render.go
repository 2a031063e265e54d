package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/service"
)

// View is what every page and part template receives: the page's title,
// which navigation entry is current, the signed-in actor, the form token
// and the page's own data.
type View struct {
	Title string
	Nav   string        // the current navigation entry: fleet, alerts, sessions, revenue, ops, users, audit
	Actor service.Actor // the signed-in account; zero on the log-in page
	CSRF  string        // the anti-forgery token of the session: put it in every form as field "csrf"
	Data  any
}

// Can reports whether the signed-in actor has permission p (its name,
// "price", "users", … as service.Perm), so a page shows only what its
// reader may do: {{if .Can "price"}}…{{end}}.
func (v View) Can(p string) bool { return v.Actor.Role.Can(service.Perm(p)) }

// funcs are the helpers every template may call.
var funcs = template.FuncMap{
	// money formats an amount of minor units: "12.50 EUR".
	"money": func(a vend.Amount) string { return formatMinor(a.Minor, string(a.Currency)) },
	// minor formats minor units with a currency code: minor 1250 "EUR".
	"minor": func(m int64, cur any) string { return formatMinor(m, fmt.Sprint(cur)) },
	// when formats a time in UTC, "" for the zero time.
	"when": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	// iso formats a time as RFC 3339 for <time datetime>.
	"iso": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	// since formats how long ago t was, to the second: "3m20s".
	"since": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return time.Since(t).Truncate(time.Second).String()
	},
	// json encodes v as indented JSON text (escaped by the template).
	"json": func(v any) string {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return fmt.Sprintf("%v", v)
		}
		return string(b)
	},
	"add": func(a, b int) int { return a + b },
}

// formatMinor writes minor units with two decimals (every wallet currency
// here has two) and the currency code.
func formatMinor(m int64, cur string) string {
	sign := ""
	if m < 0 {
		sign, m = "-", -m
	}
	return fmt.Sprintf("%s%d.%02d %s", sign, m/100, m%100, cur)
}

// parsePages builds one template set per page. Files in templates/:
// layout*.html are the layout, in every set; <feature>_parts.html (and
// any other name ending in _parts.html) holds part templates shared by
// the pages whose names begin with <feature>; every other file is a page
// of that name (fleet.html → "fleet", fleet_device.html →
// "fleet_device") that defines "main" (and may define "head").
func parsePages() (map[string]*template.Template, error) {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	var layout, parts, pages []string
	for _, n := range names {
		base := strings.TrimSuffix(path.Base(n), ".html")
		switch {
		case strings.HasPrefix(base, "layout"):
			layout = append(layout, n)
		case strings.HasSuffix(base, "_parts"):
			parts = append(parts, n)
		default:
			pages = append(pages, n)
		}
	}
	out := map[string]*template.Template{}
	for _, p := range pages {
		name := strings.TrimSuffix(path.Base(p), ".html")
		feature, _, _ := strings.Cut(name, "_")
		files := append([]string{}, layout...)
		for _, q := range parts {
			if f, _, _ := strings.Cut(strings.TrimSuffix(path.Base(q), ".html"), "_"); f == feature {
				files = append(files, q)
			}
		}
		files = append(files, p)
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, files...)
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
}

// csp allows nothing from another origin, no inline script or style,
// no plug-ins, no framing, and forms that post only here.
const csp = "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"

func secureHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
}

// view returns the View of r for a page titled title: the actor and the
// form token of the request's session (zero when not signed in).
func (c *Console) view(r *http.Request, title, nav string, data any) View {
	v := View{Title: title, Nav: nav, Data: data}
	if a, ok := service.ActorFrom(r.Context()); ok {
		v.Actor = a
		v.CSRF = c.csrfToken(r)
	}
	return v
}

// render writes page (templates/<page>.html inside the layout) with
// status; title is the page's heading and <title>, nav its navigation
// entry (the page's feature, e.g. "fleet"), data the page's own data
// (as .Data). The page is rendered in full first, so a template error is
// a plain 500, never half a page.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, page, title, nav string, data any) {
	c.execute(w, r, status, page, "layout.html", c.view(r, title, nav, data))
}

// renderPart writes the template named name of page's set alone (no
// layout), for an htmx swap or an SSE message, with the same View as
// render (data as .Data).
func (c *Console) renderPart(w http.ResponseWriter, r *http.Request, status int, page, name string, data any) {
	c.execute(w, r, status, page, name, c.view(r, "", "", data))
}

// part renders the template named name of page's set with data as .Data
// into a string, for an SSE message; the error names the template.
func (c *Console) part(r *http.Request, page, name string, data any) (string, error) {
	t, ok := c.tpl[page]
	if !ok {
		return "", fmt.Errorf("console: no page %q", page)
	}
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, name, c.view(r, "", "", data)); err != nil {
		return "", fmt.Errorf("console: render %s/%s: %w", page, name, err)
	}
	return b.String(), nil
}

func (c *Console) execute(w http.ResponseWriter, r *http.Request, status int, page, name string, v View) {
	secureHeaders(w)
	t, ok := c.tpl[page]
	var b bytes.Buffer
	var err error
	if !ok {
		err = fmt.Errorf("no page %q", page)
	} else {
		err = t.ExecuteTemplate(&b, name, v)
	}
	if err != nil {
		c.log.Error("console: render", "page", page, "template", name, "err", err)
		http.Error(w, "console: internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

// message is the data of the error page: what happened, in words, and
// the error's stable code for support.
type message struct {
	Text string
	Code string
	Back string // a link back, or ""
}

// message renders the error page with status, a title and text.
func (c *Console) message(w http.ResponseWriter, r *http.Request, status int, title, text string) {
	c.render(w, r, status, "error", title, "", message{Text: text})
}

// fail renders the error page for err with the status its kind and code
// map to (one table, describe); internal errors are logged, not shown.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, title, text := describe(err)
	if status == http.StatusInternalServerError {
		c.log.Error("console: internal", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	if r.Header.Get("HX-Request") == "true" {
		// htmx swaps only 2xx answers by default: retarget the error
		// into the page's status region so that it is seen and announced.
		w.Header().Set("HX-Retarget", "#flash")
		w.Header().Set("HX-Reswap", "innerHTML")
		c.renderPart(w, r, status, "error", "flash", message{Text: title + ": " + text, Code: vend.CodeOf(err)})
		return
	}
	c.render(w, r, status, "error", title, "", message{Text: text, Code: vend.CodeOf(err)})
}

// describe maps an error to a status and words for an operator: one table.
func describe(err error) (status int, title, text string) {
	switch vend.CodeOf(err) {
	case "auth.forbidden":
		return http.StatusForbidden, "Not allowed", "Your account's role does not allow this. " + err.Error()
	case "web.csrf":
		return http.StatusForbidden, "Form expired", err.Error()
	case "rate.limited", "auth.locked", "stream.limit":
		return http.StatusTooManyRequests, "Too many attempts", err.Error()
	}
	switch vend.KindOf(err) {
	case vend.Invalid:
		return http.StatusBadRequest, "That did not work", err.Error()
	case vend.NotFound:
		return http.StatusNotFound, "Not found", err.Error()
	case vend.Conflict:
		return http.StatusConflict, "Not possible now", err.Error()
	case vend.Unauthorized:
		return http.StatusForbidden, "Not allowed", err.Error()
	case vend.Transient:
		return http.StatusServiceUnavailable, "Try again in a moment", err.Error()
	}
	return http.StatusInternalServerError, "Something went wrong", "The console failed to do this. Reload the page to see what was saved, then try again."
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }
