package httpapi

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/store"
)

// Defaults of Limits.
const (
	DefaultReadHeaderTimeout = 10 * time.Second  // request line and headers
	DefaultReadTimeout       = 30 * time.Second  // whole request, body included (not event streams)
	DefaultWriteTimeout      = 30 * time.Second  // a response; on event streams, each write
	DefaultIdleTimeout       = 120 * time.Second // a keep-alive connection between requests
	DefaultMaxHeaderBytes    = 32 << 10          // request line and headers, bytes
	DefaultMaxLimiters       = 100_000           // limiter entries per table before eviction
	DefaultLockoutAfter      = 5                 // consecutive log-in failures before the first lock
	DefaultLockoutBase       = time.Minute       // the first lock; each further failure doubles it
	DefaultLockoutMax        = time.Hour         // the longest lock
	DefaultStreamsPerUser    = 4                 // concurrent event streams of one phone user
	DefaultStreams           = 10_000            // concurrent event streams of one instance
)

// Errors of the limits. Each is answered with 429 (415 for the content
// type) and, for 429, a Retry-After header in whole seconds.
var (
	ErrRateLimited = vend.E(vend.Transient, "rate.limited", "httpapi: too many requests")
	ErrLocked      = vend.E(vend.Transient, "auth.locked", "auth: too many failed log-ins; account locked for a while")
	ErrStreamLimit = vend.E(vend.Transient, "stream.limit", "httpapi: too many open event streams")
	ErrContentType = vend.E(vend.Invalid, "request.content_type", "httpapi: request body must be application/json")
)

// RateLimit is a token bucket: Burst requests at once, then one per Per.
// A zero Per takes the default; a negative Per disables the limit.
type RateLimit struct {
	Per   time.Duration
	Burst int
}

// Limits bound connections and abuse. Zero fields take the defaults
// (DefaultReadTimeout, ...); a negative duration or count disables that
// bound.
type Limits struct {
	ReadHeaderTimeout time.Duration // DefaultReadHeaderTimeout
	ReadTimeout       time.Duration // DefaultReadTimeout; event streams clear it
	WriteTimeout      time.Duration // DefaultWriteTimeout; event streams renew it per write
	IdleTimeout       time.Duration // DefaultIdleTimeout
	MaxHeaderBytes    int           // DefaultMaxHeaderBytes

	// Per client address (see TrustedProxies): sign-ups and log-ins
	// (phone and operator share one budget). Generous, because carrier
	// NAT puts many phones behind one address; the per-account limit and
	// the lock-out stop password guessing. Defaults: 20 sign-ups then one
	// per 10 s; 50 log-ins then one per second.
	SignUpPerIP RateLimit
	LogInPerIP  RateLimit
	// Per account (the email of a sign-up or log-in), on every instance
	// separately: 5 then one per 12 s.
	PerAccount RateLimit
	// MaxLimiters bounds each table of limiters (DefaultMaxLimiters);
	// beyond it, idle entries are evicted first, then arbitrary ones.
	MaxLimiters int

	// The lock-out, kept in the store so that it holds across instances
	// and restarts: after LockoutAfter consecutive failed log-ins of one
	// account, the account is locked for LockoutBase, doubled by each
	// further failure up to LockoutMax (at most store.ThrottleReset). A
	// successful log-in clears it.
	LockoutAfter int
	LockoutBase  time.Duration
	LockoutMax   time.Duration

	// TrustedProxies are the peers whose X-Forwarded-For is believed:
	// the client is the right-most address in it that is not itself a
	// trusted proxy. Empty (the default): the peer address is the client.
	TrustedProxies []netip.Prefix

	MaxStreamsPerUser int // DefaultStreamsPerUser
	MaxStreams        int // DefaultStreams
}

func (l Limits) withDefaults() Limits {
	dur := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		} else if *d < 0 {
			*d = 0
		}
	}
	num := func(n *int, v int) {
		if *n == 0 {
			*n = v
		} else if *n < 0 {
			*n = 0
		}
	}
	rl := func(r *RateLimit, per time.Duration, burst int) {
		if r.Per == 0 {
			r.Per = per
		}
		if r.Burst <= 0 {
			r.Burst = burst
		}
	}
	dur(&l.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	dur(&l.ReadTimeout, DefaultReadTimeout)
	dur(&l.WriteTimeout, DefaultWriteTimeout)
	dur(&l.IdleTimeout, DefaultIdleTimeout)
	num(&l.MaxHeaderBytes, DefaultMaxHeaderBytes)
	rl(&l.SignUpPerIP, 10*time.Second, 20)
	rl(&l.LogInPerIP, time.Second, 50)
	rl(&l.PerAccount, 12*time.Second, 5)
	num(&l.MaxLimiters, DefaultMaxLimiters)
	num(&l.LockoutAfter, DefaultLockoutAfter)
	dur(&l.LockoutBase, DefaultLockoutBase)
	dur(&l.LockoutMax, DefaultLockoutMax)
	l.LockoutMax = min(l.LockoutMax, store.ThrottleReset) // the store forgets failures after that
	num(&l.MaxStreamsPerUser, DefaultStreamsPerUser)
	num(&l.MaxStreams, DefaultStreams)
	return l
}

// NewHTTPServer returns an http.Server serving s with the connection bounds
// of Options.Limits: header and request read timeouts (a trickling client
// is cut off), a write timeout, an idle timeout for keep-alive connections
// and a header size limit. Event streams clear the read deadline and renew
// the write deadline before each write (http.ResponseController), so they
// live as long as the session. The caller sets Addr or calls Serve, and
// TLSConfig when it serves TLS.
func (s *Server) NewHTTPServer() *http.Server {
	l := s.opts.Limits
	return &http.Server{
		Handler:           s,
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		ReadTimeout:       l.ReadTimeout,
		WriteTimeout:      l.WriteTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    l.MaxHeaderBytes,
		ErrorLog:          slogErrorLog(s.log),
	}
}

// ---- limiter tables ----

// limiterTable holds one token bucket per key, at most max of them.
type limiterTable struct {
	lim RateLimit
	max int
	mu  sync.Mutex
	m   map[string]*rate.Limiter
}

func newLimiterTable(l RateLimit, max int) *limiterTable {
	return &limiterTable{lim: l, max: max, m: map[string]*rate.Limiter{}}
}

// take takes a token for key at now; it returns 0, or how long to wait
// when the bucket is empty (nothing is taken then).
func (t *limiterTable) take(key string, now time.Time) time.Duration {
	if t.lim.Per <= 0 {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	l, ok := t.m[key]
	if !ok {
		if t.max > 0 && len(t.m) >= t.max {
			t.evict(now)
		}
		l = rate.NewLimiter(rate.Every(t.lim.Per), t.lim.Burst)
		t.m[key] = l
	}
	r := l.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d
	}
	return 0
}

// evict drops the entries whose bucket has refilled (forgetting them
// changes nothing); when that frees no room, it drops the eighth of the
// table whose buckets are fullest, so memory stays bounded under a flood
// of keys and the keys being throttled are the last to be forgotten.
// Called with mu held.
func (t *limiterTable) evict(now time.Time) {
	for k, l := range t.m {
		if l.TokensAt(now) >= float64(t.lim.Burst) {
			delete(t.m, k)
		}
	}
	if len(t.m) < t.max {
		return
	}
	type entry struct {
		key    string
		tokens float64
	}
	all := make([]entry, 0, len(t.m))
	for k, l := range t.m {
		all = append(all, entry{k, l.TokensAt(now)})
	}
	slices.SortFunc(all, func(a, b entry) int { return cmp.Compare(b.tokens, a.tokens) })
	for _, e := range all[:len(all)-t.max+1+t.max/8] {
		delete(t.m, e.key)
	}
}

// len returns the number of entries.
func (t *limiterTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// guard holds the in-memory limits of one Server.
type guard struct {
	l       Limits
	now     func() time.Time
	refused *prometheus.CounterVec // by code
	signUp  *limiterTable          // per client address
	logIn   *limiterTable          // per client address, phone and operator
	account *limiterTable          // per scope + account

	mu      sync.Mutex
	streams map[string]int // open event streams per user
	total   int
}

func newGuard(l Limits, now func() time.Time, reg prometheus.Registerer) *guard {
	g := &guard{l: l, now: now,
		signUp: newLimiterTable(l.SignUpPerIP, l.MaxLimiters), logIn: newLimiterTable(l.LogInPerIP, l.MaxLimiters),
		account: newLimiterTable(l.PerAccount, l.MaxLimiters), streams: map[string]int{}}
	g.refused = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "beaconvend_http_limited_total",
		Help: "Requests refused by a limit, by code (rate.limited, auth.locked, stream.limit)."}, []string{"code"})
	if reg != nil {
		if err := reg.Register(g.refused); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				g.refused = are.ExistingCollector.(*prometheus.CounterVec) // another Server on the same service
			}
		}
	}
	return g
}

// openStream counts an event stream of user; it returns the release
// function, or stream.limit when the user or the instance has too many.
func (g *guard) openStream(user string) (func(), error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.l.MaxStreams > 0 && g.total >= g.l.MaxStreams {
		return nil, vend.Errorf(ErrStreamLimit, "this server has %d open streams", g.total)
	}
	if g.l.MaxStreamsPerUser > 0 && g.streams[user] >= g.l.MaxStreamsPerUser {
		return nil, vend.Errorf(ErrStreamLimit, "at most %d open streams per user; close one", g.l.MaxStreamsPerUser)
	}
	g.streams[user]++
	g.total++
	var once sync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			defer g.mu.Unlock()
			g.total--
			if g.streams[user]--; g.streams[user] <= 0 {
				delete(g.streams, user)
			}
		})
	}, nil
}

// ---- client address ----

// clientAddr returns the client's address: the peer's, or, when the peer
// is a trusted proxy, the right-most X-Forwarded-For address that is not
// a trusted proxy. IPv6 clients are keyed by their /64 (one subscriber's
// network), so that rotating addresses within it gains nothing.
func (s *Server) clientAddr(r *http.Request) string {
	ip := peerIP(r.RemoteAddr)
	if ip.IsValid() && s.trusted(ip) {
		hops := r.Header.Values("X-Forwarded-For")
		var all []string
		for _, h := range hops {
			all = append(all, strings.Split(h, ",")...)
		}
		for i := len(all) - 1; i >= 0; i-- {
			a, err := netip.ParseAddr(strings.TrimSpace(all[i]))
			if err != nil {
				break // a malformed hop: stop at the last trusted one
			}
			ip = a.Unmap()
			if !s.trusted(ip) {
				break
			}
		}
	}
	if !ip.IsValid() {
		return r.RemoteAddr
	}
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

func (s *Server) trusted(ip netip.Addr) bool {
	for _, p := range s.opts.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func peerIP(remote string) netip.Addr {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return ip.Unmap()
}

// ---- throttled log-in and sign-up ----

// Scopes of the throttle: which accounts an email names.
const (
	scopeUser     = "user"
	scopeOperator = "operator"
)

// limited answers a 429 for err with Retry-After of wait (at least 1 s).
func (s *Server) limited(w http.ResponseWriter, r *http.Request, err error, wait time.Duration) {
	s.guard.refused.WithLabelValues(vend.CodeOf(err)).Inc()
	w.Header().Set("Retry-After", strconv.FormatInt(retrySeconds(wait), 10))
	s.fail(w, r, err)
}

func retrySeconds(d time.Duration) int64 {
	sec := int64((d + time.Second - 1) / time.Second)
	return max(sec, 1)
}

// accountKey names an account in the limiter tables and the store's
// throttle table: a digest of the scope and the normalised email, so that
// guessed addresses are not kept in clear.
func accountKey(scope, email string) string {
	sum := sha256.Sum256([]byte(scope + "\x00" + strings.ToLower(strings.TrimSpace(email))))
	return hex.EncodeToString(sum[:16])
}

// statusWriter remembers the status a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// throttle wraps a sign-up (perIP = the sign-up table, lockout false) or a
// log-in handler (the log-in table, lockout true): it applies the
// per-address and per-account rate limits (429 rate.limited), refuses a
// locked account (429 auth.locked) before the password is checked, and
// after the handler counts a 401 as a failed log-in (which may lock the
// account) and a 2xx as a success (which clears the count). The account
// is the body's "email"; the handler still decodes the body itself.
func (s *Server) throttle(scope string, perIP *limiterTable, lockout bool, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		now := s.now()
		if wait := perIP.take(s.clientAddr(r), now); wait > 0 {
			s.limited(w, r, vend.Errorf(ErrRateLimited, "too many attempts from this address"), wait)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, s.opts.MaxBody+1))
		if err != nil {
			s.fail(w, r, vend.Errorf(ErrJSON, "read body: %v", err))
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		var who struct {
			Email string `json:"email"`
		}
		_ = json.Unmarshal(body, &who) // a bad body is the handler's to report
		if who.Email == "" {
			h(w, r)
			return
		}
		acct := accountKey(scope, who.Email)
		if wait := s.guard.account.take(scope+"|"+acct, now); wait > 0 {
			s.limited(w, r, vend.Errorf(ErrRateLimited, "too many attempts for this account"), wait)
			return
		}
		if !lockout || s.opts.LockoutAfter <= 0 {
			h(w, r)
			return
		}
		th, err := s.st.LoginThrottle(r.Context(), scope, acct)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if wait := th.LockedUntil.Sub(now); wait > 0 {
			s.limited(w, r, vend.Errorf(ErrLocked, "after %d failed log-ins; try again in %d s", th.Failures, retrySeconds(wait)), wait)
			return
		}
		sw := &statusWriter{ResponseWriter: w}
		h(sw, r)
		// Counted even when the client has gone: hanging up early must
		// not save a guess from the count.
		ctx := context.WithoutCancel(r.Context())
		switch {
		case sw.status == http.StatusUnauthorized:
			if _, err := s.st.RecordLoginFailure(ctx, scope, acct, s.lockFor); err != nil {
				s.log.Error("httpapi: record failed log-in", "err", err)
			}
		case sw.status >= 200 && sw.status < 300 && th.Failures > 0:
			if err := s.st.ClearLoginFailures(ctx, scope, acct); err != nil {
				s.log.Error("httpapi: clear failed log-ins", "err", err)
			}
		}
	}
}

// lockFor is the lock after the n-th consecutive failure: none before
// LockoutAfter, then LockoutBase doubled per further failure, at most
// LockoutMax.
func (s *Server) lockFor(n int) time.Duration {
	l := s.opts.Limits
	if n < l.LockoutAfter {
		return 0
	}
	d := l.LockoutBase
	for i := l.LockoutAfter; i < n && d < l.LockoutMax; i++ {
		d *= 2
	}
	if l.LockoutMax > 0 && d > l.LockoutMax {
		d = l.LockoutMax
	}
	return d
}

// slogErrorLog routes the http.Server's own messages (TLS handshake
// errors, panics in handlers) to the logger at warning level.
func slogErrorLog(l *slog.Logger) *log.Logger { return slog.NewLogLogger(l.Handler(), slog.LevelWarn) }
