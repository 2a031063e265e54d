package console

import (
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

// userRoutes registers the users page (owner only: accounts, roles,
// disable and enable, each change confirmed first and audited) and every
// account's own password page.
func (c *Console) userRoutes(m *http.ServeMux) {
	m.HandleFunc("GET /console/users", c.allow(service.PermUsers, c.users))
	m.HandleFunc("POST /console/users", c.allow(service.PermUsers, c.addUser))
	m.HandleFunc("POST /console/users/{account}/role", c.allow(service.PermUsers, c.userRole))
	m.HandleFunc("POST /console/users/{account}/disable", c.allow(service.PermUsers, c.userDisable(true)))
	m.HandleFunc("POST /console/users/{account}/enable", c.allow(service.PermUsers, c.userDisable(false)))
	m.HandleFunc("GET /console/password", c.allow(service.PermView, c.passwordPage))
	m.HandleFunc("POST /console/password", c.allow(service.PermView, c.changePassword))
}

// actor is the signed-in account of a request that allow let through.
func actor(r *http.Request) service.Actor {
	a, _ := service.ActorFrom(r.Context())
	return a
}

// usersView is the users page's data.
type usersView struct {
	Accounts []store.OperatorAccount
	Roles    []service.Role
	Notice   string // what the last change did, or ""
	Me       string // the signed-in account's ID
}

func (c *Console) users(w http.ResponseWriter, r *http.Request) {
	a := actor(r)
	as, err := c.svc.OperatorAccounts(r.Context(), a.Operator)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	notice := ""
	if q := r.URL.Query(); q.Get("done") != "" {
		notice = doneText(q.Get("done"), q.Get("email"))
	}
	c.render(w, r, http.StatusOK, "users", "Users", "users", usersView{Accounts: as, Roles: service.Roles, Notice: notice, Me: a.Account})
}

// doneText is the notice after a change, by a fixed code: a link cannot
// make the page say anything else.
func doneText(code, email string) string {
	switch code {
	case "role":
		return "Role changed for " + email + "."
	case "disable":
		return email + " is disabled; its sessions have ended."
	case "enable":
		return email + " is enabled again; it must log in."
	}
	return ""
}

// confirmView is the confirm step of a change: what will happen, and the
// form that does it (the same fields and confirm=yes).
type confirmView struct {
	Question string
	Action   string // where the form posts
	Fields   map[string]string
	Button   string
	Danger   bool
}

// confirmed reports whether the form is the confirm step's answer; if
// not, it renders the confirm step and returns false.
func (c *Console) confirmed(w http.ResponseWriter, r *http.Request, v confirmView) bool {
	if r.PostForm.Get("confirm") == "yes" {
		return true
	}
	c.render(w, r, http.StatusOK, "users_confirm", "Confirm", "users", v)
	return false
}

func (c *Console) account(r *http.Request) (store.OperatorAccount, error) {
	return c.st.OperatorAccountByID(r.Context(), actor(r).Operator, r.PathValue("account"))
}

func (c *Console) userRole(w http.ResponseWriter, r *http.Request) {
	acc, err := c.account(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	role, err := service.ParseRole(r.PostForm.Get("role"))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if role == service.Role(acc.Role) {
		http.Redirect(w, r, "/console/users", http.StatusSeeOther)
		return
	}
	if !c.confirmed(w, r, confirmView{
		Question: "Change the role of " + acc.Email + " from " + acc.Role + " to " + string(role) + "? It applies from the account's next request.",
		Action:   "/console/users/" + url.PathEscape(acc.ID) + "/role", Fields: map[string]string{"role": string(role)},
		Button: "Change role", Danger: role.AtLeast(service.RoleManager) || acc.Role == string(service.RoleOwner),
	}) {
		return
	}
	if _, err := c.svc.SetAccountRole(r.Context(), actor(r).Operator, acc.ID, role); err != nil {
		c.fail(w, r, err)
		return
	}
	http.Redirect(w, r, "/console/users?done=role&email="+url.QueryEscape(acc.Email), http.StatusSeeOther)
}

func (c *Console) userDisable(disabled bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		acc, err := c.account(r)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		verb, q := "enable", "Enable "+acc.Email+"? It can log in again; its old sessions stay ended."
		if disabled {
			verb, q = "disable", "Disable "+acc.Email+"? Every session of the account ends at once and it cannot log in until enabled."
		}
		if !c.confirmed(w, r, confirmView{Question: q, Action: "/console/users/" + url.PathEscape(acc.ID) + "/" + verb,
			Button: strings.ToUpper(verb[:1]) + verb[1:] + " account", Danger: disabled}) {
			return
		}
		if _, _, err := c.svc.SetAccountDisabled(r.Context(), actor(r).Operator, acc.ID, disabled); err != nil {
			c.fail(w, r, err)
			return
		}
		http.Redirect(w, r, "/console/users?done="+verb+"&email="+url.QueryEscape(acc.Email), http.StatusSeeOther)
	}
}

// addedView is the page after an account was added: its initial
// password, shown this once when the console made it.
type addedView struct {
	Account  store.OperatorAccount
	Password string // "" when the owner typed it
}

// addUser adds an account with a role. The owner types an initial
// password (8-72 bytes) and tells its user, or leaves it empty: the
// console then makes a random one and shows it once. Either way the user
// should change it (the password page) after the first log-in.
func (c *Console) addUser(w http.ResponseWriter, r *http.Request) {
	email, password := strings.TrimSpace(r.PostForm.Get("email")), r.PostForm.Get("password")
	role, err := service.ParseRole(r.PostForm.Get("role"))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	made := ""
	if password == "" {
		var b [15]byte
		rand.Read(b[:])
		password = base64.RawURLEncoding.EncodeToString(b[:])
		made = password
	}
	acc, err := c.svc.AddOperatorAccount(r.Context(), actor(r).Operator, email, password, role)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, http.StatusCreated, "users_added", "Account added", "users", addedView{Account: acc, Password: made})
}

// passwordView is the password page's data.
type passwordView struct {
	Error string
	Done  int // sessions ended by the change, when it was made
	Saved bool
}

func (c *Console) passwordPage(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, http.StatusOK, "users_password", "Change your password", "", passwordView{})
}

// changePassword changes the signed-in account's password after checking
// the current one; every other session of the account ends, this one
// stays (store.ChangeOperatorPassword).
func (c *Console) changePassword(w http.ResponseWriter, r *http.Request) {
	_, tok, err := c.session(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	next := r.PostForm.Get("new")
	if next != r.PostForm.Get("repeat") {
		c.render(w, r, http.StatusBadRequest, "users_password", "Change your password", "", passwordView{Error: "The new password and its repetition differ."})
		return
	}
	n, err := c.st.ChangeOperatorPassword(r.Context(), tok, r.PostForm.Get("current"), next)
	if err != nil {
		if vend.KindOf(err) == vend.Invalid {
			c.render(w, r, http.StatusBadRequest, "users_password", "Change your password", "", passwordView{Error: err.Error()})
			return
		}
		c.fail(w, r, err)
		return
	}
	if err := c.svc.AuditFor(r.Context(), actor(r).Operator, "account.password", actor(r).Email, nil, map[string]int{"revoked_sessions": n}); err != nil {
		c.log.Error("console: audit password change", "err", err)
	}
	c.render(w, r, http.StatusOK, "users_password", "Change your password", "", passwordView{Saved: true, Done: n})
}
