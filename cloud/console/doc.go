// Package console is the operator console: the browser pages an
// operator's staff run the business from — the live fleet, alerts,
// sessions and money, refunds, remote operations, inventory, users and
// roles, and the audit log — served by the cloud under /console/.
//
// Pages are html/template files embedded in the binary (templates/),
// rendered in full on the server; htmx 2 (vendored under static/, with
// its SHA-256 in static/SHA256SUMS) swaps parts of a page and follows
// Server-Sent Events, and every page works as plain links and forms
// without it. The content security policy is default-src 'self': no
// inline script or style, nothing from another origin.
//
// # Sessions and forgery
//
// Log-in (/console/login) checks an operator account's email and password
// under the operator API's log-in throttle and starts a store console
// session (revocable: log-out, a password change or a disabled account
// ends it at once on every instance). Its token is the HttpOnly,
// SameSite=Strict cookie bv_console on Path=/console/, Secure when the
// request came over TLS (or a trusted proxy says so). Every request but
// GET and HEAD must carry the session's anti-forgery token (an HMAC of
// the session token's SHA-256 under a key derived from the cloud key) in
// the form field "csrf" or the X-CSRF-Token header (the layout sets it
// for htmx); without it the request is refused with a 403 page.
//
// # Roles
//
// Each handler is wrapped by allow(perm, h): a signed-in account whose
// role (service.Role: owner > manager > technician > viewer) has perm,
// with the account as service.Actor in the request's context. The service
// methods that change things check the same permission
// (service.Authorize) and write the audit log (service.Audit), so the
// console and the JSON operator API are authorized and audited alike.
//
// # Adding a page
//
// A feature registers its routes in its own xxxRoutes(m) with full paths
// ("GET /console/fleet", "POST /console/ops/price"), each wrapped by
// allow(perm, h); a POST's form is parsed already (r.PostForm) and its
// token checked. It renders with render(w, r, status, page, title, nav,
// data): page is templates/<page>.html (it defines "main", and may define
// "head"), inside templates/layout*.html, with data as .Data, the actor as
// .Actor, .Can "perm" for what to show, and .CSRF; <feature>_parts.html
// holds part templates shared by that feature's pages, rendered alone for
// an htmx swap by renderPart or into a string by part. Forms carry
// {{template "csrf" .}}. Errors go through fail(w, r, err): one table maps
// kinds and codes to statuses and words; for htmx requests it swaps the
// message into the page's #flash live region. Navigation entries (in
// layout.html): /console/fleet, /console/alerts, /console/sessions,
// /console/revenue, /console/ops, /console/users, /console/audit.
//
// # Live updates
//
// stream(w, r) opens a Server-Sent Events answer for htmx-ext-sse
// (bounded per instance by Options.MaxStreams; 429 beyond), whose Send
// writes an event carrying an HTML fragment and KeepAlive a comment.
package console
