package console

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

// sessionCookie holds the console session's bearer token (a store console
// session, revocable): HttpOnly, SameSite=Strict, Path=/console/, Secure
// when the request came over TLS.
const sessionCookie = "bv_console"

// setSession sets (tok != "") or clears the session cookie.
func (c *Console) setSession(w http.ResponseWriter, r *http.Request, tok string, cs store.ConsoleSession) {
	ck := &http.Cookie{Name: sessionCookie, Value: tok, Path: "/console/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: c.opts.Secure(r)}
	if tok == "" {
		ck.MaxAge = -1
	} else {
		ck.Expires = cs.Expires
	}
	http.SetCookie(w, ck)
}

// session returns the live console session of r's cookie with its token.
// Errors: store.ErrToken (no cookie, or a session that ended).
func (c *Console) session(r *http.Request) (store.ConsoleSession, string, error) {
	ck, err := r.Cookie(sessionCookie)
	if err != nil || ck.Value == "" {
		return store.ConsoleSession{}, "", vend.Errorf(store.ErrToken, "not signed in")
	}
	cs, err := c.st.ConsoleSessionByToken(r.Context(), ck.Value)
	return cs, ck.Value, err
}

// actorOf is the service actor of a console session's account.
func (c *Console) actorOf(r *http.Request, a store.OperatorAccount) service.Actor {
	return service.Actor{Operator: a.OperatorID, Account: a.ID, Email: a.Email, Role: service.Role(a.Role), IP: c.opts.ClientIP(r)}
}

// allow wraps a console handler: the request needs a live session (else a
// GET is sent to the log-in page and anything else gets 401), whose
// account's role has permission p (else the 403 page naming it), and, on
// any method but GET and HEAD, the session's anti-forgery token (else the
// 403 page). The handler runs with the account's service.Actor in the
// context, so the service authorizes and audits it; read it with
// service.ActorFrom(r.Context()).
func (c *Console) allow(p service.Perm, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		cs, _, err := c.session(r)
		if err != nil {
			if vend.KindOf(err) != vend.Unauthorized {
				c.fail(w, r, err)
				return
			}
			c.signIn(w, r)
			return
		}
		a := c.actorOf(r, cs.Account)
		r = r.WithContext(service.WithActor(r.Context(), a))
		if r.Method != http.MethodGet && r.Method != http.MethodHead && !c.checkCSRF(w, r) {
			c.fail(w, r, ErrCSRF)
			return
		}
		if err := service.Allowed(a, p); err != nil {
			c.fail(w, r, err)
			return
		}
		h(w, r)
	}
}

// signedIn wraps a handler that serves anyone (the not-found page): with
// a live session it runs with the account's actor, so the page keeps its
// navigation; without one it runs as it is.
func (c *Console) signedIn(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if cs, _, err := c.session(r); err == nil {
			r = r.WithContext(service.WithActor(r.Context(), c.actorOf(r, cs.Account)))
		}
		h(w, r)
	}
}

// signIn answers a request without a live session: a page GET goes to the
// log-in page (back here afterwards); an htmx request is told to load the
// log-in page; anything else is 401.
func (c *Console) signIn(w http.ResponseWriter, r *http.Request) {
	login := "/console/login?next=" + url.QueryEscape(r.URL.RequestURI())
	switch {
	case r.Header.Get("HX-Request") == "true":
		w.Header().Set("HX-Redirect", login)
		w.WriteHeader(http.StatusUnauthorized)
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		http.Redirect(w, r, login, http.StatusSeeOther)
	default:
		c.message(w, r, http.StatusUnauthorized, "Signed out", "Your console session has ended. Log in again; nothing was changed.")
	}
}

// loginView is the log-in page's data.
type loginView struct {
	Email string
	Next  string
	Error string // why the last attempt failed, or ""
}

// safeNext returns next when it is a console path, else the console's
// first page: a log-in never sends anyone off-site.
func safeNext(next string) string {
	if strings.HasPrefix(next, "/console/") && !strings.HasPrefix(next, "/console//") && !strings.ContainsAny(next, "\\\r\n") {
		return next
	}
	return "/console/"
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	if _, _, err := c.session(r); err == nil {
		http.Redirect(w, r, safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	c.render(w, r, http.StatusOK, "login", "Log in", "", loginView{Next: safeNext(r.URL.Query().Get("next"))})
}

// login checks the form's email and password (store.AuthenticateOperator,
// under the operator API's log-in throttle) and starts a console session.
// A cross-site post is refused: its Origin, when the browser sends one,
// must be this host.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	if o := r.Header.Get("Origin"); o != "" && !sameOrigin(o, r) {
		c.fail(w, r, ErrCSRF)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	if err := r.ParseForm(); err != nil {
		c.render(w, r, http.StatusBadRequest, "login", "Log in", "", loginView{Error: "The form could not be read; try again."})
		return
	}
	email, password := strings.TrimSpace(r.PostForm.Get("email")), r.PostForm.Get("password")
	v := loginView{Email: email, Next: safeNext(r.PostForm.Get("next"))}
	if email == "" || password == "" {
		v.Error = "Enter your email and password."
		c.render(w, r, http.StatusBadRequest, "login", "Log in", "", v)
		return
	}
	var acc store.OperatorAccount
	try := func() error {
		var err error
		acc, err = c.st.AuthenticateOperator(r.Context(), email, password)
		return err
	}
	var err error
	if c.opts.LogInThrottle != nil {
		err = c.opts.LogInThrottle(r, email, try)
	} else {
		err = try()
	}
	var tok string
	var cs store.ConsoleSession
	if err == nil {
		tok, cs, err = c.st.StartConsoleSession(r.Context(), acc.ID, c.opts.Session)
	}
	if err != nil {
		status := http.StatusUnauthorized
		switch {
		case vend.CodeOf(err) == "rate.limited" || vend.CodeOf(err) == "auth.locked":
			status = http.StatusTooManyRequests
			v.Error = "Too many log-in attempts. " + sentence(err)
		case errors.Is(err, store.ErrAccountDisabled):
			v.Error = "This account is disabled. Ask your operator's owner to enable it."
		case errors.Is(err, store.ErrCredentials):
			v.Error = "Wrong email or password."
		default:
			c.fail(w, r, err)
			return
		}
		c.render(w, r, status, "login", "Log in", "", v)
		return
	}
	c.setSession(w, r, tok, cs)
	http.Redirect(w, r, v.Next, http.StatusSeeOther)
}

// sentence is the detail of a throttle error after its code's message:
// "try again in 12 s".
func sentence(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	if s == "" {
		return ""
	}
	return strings.ToUpper(s[:1]) + s[1:] + "."
}

// logout ends the session in the store (every instance refuses its token
// from the next request on) and clears the cookie.
func (c *Console) logout(w http.ResponseWriter, r *http.Request) {
	ck, err := r.Cookie(sessionCookie)
	if err == nil {
		if err := c.st.EndConsoleSession(r.Context(), ck.Value); err != nil {
			c.fail(w, r, err)
			return
		}
	}
	c.setSession(w, r, "", store.ConsoleSession{})
	http.Redirect(w, r, "/console/login", http.StatusSeeOther)
}
