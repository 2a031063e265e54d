package console

import (
	"crypto/rand"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

// Options configure a Console. Store and Service are required.
type Options struct {
	Store   *store.Store
	Service *service.Service
	// Key derives the session-bound anti-forgery tokens (at least 16
	// bytes). Every instance behind one address needs the same key
	// (cloud/server derives it from the cloud key); a random one is made
	// when nil, which suits a single instance.
	Key []byte
	// Session bounds a console session (absolute and idle);
	// DefaultSession when zero.
	Session store.ConsoleLimits
	// Secure reports whether a request reached the cloud over TLS, itself
	// or through a trusted proxy that says so; the session cookie is then
	// Secure. Nil: only a request that arrived over TLS here.
	Secure func(*http.Request) bool
	// ClientIP returns the client's address for the audit log (trusted
	// proxies applied); the peer's host when nil.
	ClientIP func(*http.Request) string
	// LogInThrottle runs try (the password check) under the operator
	// log-in throttle of the operator API (per address, per account,
	// lock-out; httpapi's ThrottleOperatorLogIn) and returns its error,
	// or the throttle's refusal (rate.limited, auth.locked) without
	// calling try. Nil: no throttle.
	LogInThrottle func(r *http.Request, email string, try func() error) error
	// KeepAlive is the interval of comments on an idle event stream;
	// DefaultKeepAlive when 0.
	KeepAlive time.Duration
	// MaxStreams bounds the event streams open at once on this instance
	// (every tab of every operator); DefaultMaxStreams when 0. One more
	// is answered 429 and the browser retries.
	MaxStreams int
	// Logger receives internal errors only; discard when nil.
	Logger *slog.Logger
}

// Defaults of Options.
var (
	DefaultSession    = store.ConsoleLimits{TTL: 12 * time.Hour, Idle: 30 * time.Minute}
	DefaultKeepAlive  = 15 * time.Second
	DefaultMaxStreams = 512
)

// Console is the operator console: its pages, forms, event streams and
// static files, under /console/.
type Console struct {
	opts Options
	st   *store.Store
	svc  *service.Service
	log  *slog.Logger
	mux  *http.ServeMux
	tpl  map[string]*template.Template // page name → layout + page

	mu      sync.Mutex
	streams int // event streams open (stream)
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// New checks opts, parses every page and returns a Console. Errors name
// the missing option or the template that does not parse.
func New(opts Options) (*Console, error) {
	if opts.Store == nil || opts.Service == nil {
		return nil, errors.New("console: Store and Service are required")
	}
	if opts.Key == nil {
		opts.Key = make([]byte, 32)
		rand.Read(opts.Key)
	}
	if len(opts.Key) < 16 {
		return nil, fmt.Errorf("console: Key has %d bytes, want at least 16", len(opts.Key))
	}
	if opts.Session.TTL <= 0 || opts.Session.Idle <= 0 {
		opts.Session = DefaultSession
	}
	if opts.KeepAlive <= 0 {
		opts.KeepAlive = DefaultKeepAlive
	}
	if opts.MaxStreams <= 0 {
		opts.MaxStreams = DefaultMaxStreams
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ClientIP == nil {
		opts.ClientIP = remoteHost
	}
	if opts.Secure == nil {
		opts.Secure = func(r *http.Request) bool { return r.TLS != nil }
	}
	c := &Console{opts: opts, st: opts.Store, svc: opts.Service, log: opts.Logger, mux: http.NewServeMux()}
	tpl, err := parsePages()
	if err != nil {
		return nil, err
	}
	c.tpl = tpl
	c.routes(c.mux)
	return c, nil
}

// Handler returns the console's handler. It serves paths under /console/
// (and /console itself, redirected to the fleet) and answers 404 for any
// other path; cloud/server sends it every request under /console.
func (c *Console) Handler() http.Handler { return c.mux }

// Mount returns a handler that serves /console and everything under
// /console/ from c and every other path from next.
func Mount(c *Console, next http.Handler) http.Handler {
	h := c.Handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/console" || strings.HasPrefix(r.URL.Path, "/console/") {
			h.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// routes registers the core's routes and every feature's.
func (c *Console) routes(m *http.ServeMux) {
	m.HandleFunc("GET /console", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/console/", http.StatusSeeOther)
	})
	m.HandleFunc("GET /console/{$}", c.allow(service.PermView, c.home))
	m.HandleFunc("GET /console/login", c.loginPage)
	m.HandleFunc("POST /console/login", c.login)
	m.HandleFunc("POST /console/logout", c.allow(service.PermView, c.logout))
	static, _ := fs.Sub(staticFS, "static")
	files := http.StripPrefix("/console/static/", http.FileServerFS(static))
	m.Handle("GET /console/static/{file}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		secureHeaders(w)
		w.Header().Set("Cache-Control", "public, max-age=3600")
		files.ServeHTTP(w, r)
	}))
	m.HandleFunc("/console/", c.signedIn(func(w http.ResponseWriter, r *http.Request) {
		c.message(w, r, http.StatusNotFound, "Not found", "There is no such page in the console.")
	}))
	c.userRoutes(m)
	c.auditRoutes(m)
	c.fleetRoutes(m)
	c.alertRoutes(m)
	c.moneyRoutes(m)
	c.opsRoutes(m)
}

// home is /console/: the fleet, the console's first page.
func (c *Console) home(w http.ResponseWriter, r *http.Request) {
	http.Redirect(w, r, "/console/fleet", http.StatusSeeOther)
}

func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
