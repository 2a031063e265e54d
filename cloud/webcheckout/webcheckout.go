package webcheckout

import (
	"bytes"
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/service"
)

// Backend is what the pages need of the service; *service.Service
// implements it.
type Backend interface {
	MachineOffer(ctx context.Context, device, machine string) (service.MachineOffer, error)
	Checkout(ctx context.Context, p service.Payer, idemKey string, req phoneapi.CheckoutRequest) (phoneapi.Checkout, error)
	GetCheckout(ctx context.Context, id string, a service.CheckoutAccess) (phoneapi.Checkout, error)
	StopCheckout(ctx context.Context, id string, a service.CheckoutAccess) (phoneapi.Checkout, error)
	WatchCheckout(ctx context.Context, id string, a service.CheckoutAccess) (<-chan phoneapi.Checkout, error)
	CheckoutReceipt(ctx context.Context, receiptToken string) (phoneapi.Checkout, error)
}

var _ Backend = (*service.Service)(nil)

// Options configure a Handler.
type Options struct {
	Backend Backend
	// Key signs the forms' anti-forgery tokens (at least 16 bytes). Every
	// instance behind one address needs the same key; a random one is
	// made when nil, which suits a single instance.
	Key []byte
	// SecureCookies marks the cookies Secure. Set it when the pages are
	// served over HTTPS (directly or behind a proxy); cookies are also
	// Secure for any request that arrived over TLS.
	SecureCookies bool
	// ClientIP returns the payer's address for the service's limits and
	// audit; the request's remote host when nil.
	ClientIP func(*http.Request) string
	// Limit takes one guest checkout from the payer's budget before a
	// checkout is opened: 0, or how long to wait (the form is answered
	// 429 then). cloud/server shares the phone API's per-address budget
	// (httpapi's TakeGuestCheckout); nil means no limit here.
	Limit func(*http.Request) time.Duration
	// KeepAlive is the interval of comments on an idle events stream;
	// DefaultKeepAlive when 0.
	KeepAlive time.Duration
	// MaxStreams bounds the events streams open at once for one checkout
	// on this instance (a page open in a few tabs); DefaultMaxStreams
	// when 0. One more is answered 429.
	MaxStreams int
	// Logger receives internal errors only; discard when nil.
	Logger *slog.Logger
}

// Defaults of Options.
const (
	DefaultKeepAlive  = 15 * time.Second
	DefaultMaxStreams = 4
)

// Handler serves the web checkout's routes. It is an http.Handler.
type Handler struct {
	opts Options
	be   Backend
	log  *slog.Logger
	tpl  map[string]*template.Template
	mux  *http.ServeMux

	mu      sync.Mutex
	streams map[string]int // open events streams per checkout
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// New returns a Handler, or an error naming a missing option.
func New(opts Options) (*Handler, error) {
	if opts.Backend == nil {
		return nil, errors.New("webcheckout: Backend is required")
	}
	if opts.Key == nil {
		opts.Key = make([]byte, 32)
		rand.Read(opts.Key)
	}
	if len(opts.Key) < 16 {
		return nil, fmt.Errorf("webcheckout: Key has %d bytes, want at least 16", len(opts.Key))
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
	h := &Handler{opts: opts, be: opts.Backend, log: opts.Logger, tpl: map[string]*template.Template{}, mux: http.NewServeMux(),
		streams: map[string]int{}}
	for _, page := range []string{"machine", "checkout", "receipt", "message"} {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+page+".html")
		if err != nil {
			return nil, fmt.Errorf("webcheckout: template %s: %w", page, err)
		}
		h.tpl[page] = t
	}
	h.Register(h.mux)
	return h, nil
}

// Register mounts the routes on mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /m/{device}/{machine}", h.machine)
	mux.HandleFunc("GET /m/{device}/{machine}/state", h.machineState)
	mux.HandleFunc("POST /m/{device}/{machine}/checkout", h.checkout)
	mux.HandleFunc("GET /m/c/{id}", h.progress)
	mux.HandleFunc("GET /m/c/{id}/events", h.events)
	mux.HandleFunc("POST /m/c/{id}/stop", h.stop)
	mux.HandleFunc("GET /r/{token}", h.receipt)
	static, _ := fs.Sub(staticFS, "static")
	files := http.StripPrefix("/m/static/", http.FileServerFS(static))
	mux.Handle("GET /m/static/{file}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		secureHeaders(w)
		w.Header().Set("Cache-Control", "public, max-age=3600")
		files.ServeHTTP(w, r)
	}))
}

// ServeHTTP implements http.Handler for the routes alone (404 otherwise).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// Mount returns a handler serving the web checkout's paths (/m/ and /r/)
// from h and everything else from next (the phone API).
func Mount(h *Handler, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/m/") || strings.HasPrefix(r.URL.Path, "/r/") {
			h.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// csp allows nothing from another origin, no inline script or style,
// no plug-ins, no framing, and forms that post only here.
const csp = "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"

func secureHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer") // the checkout's and the receipt's URLs stay here
	h.Set("X-Frame-Options", "DENY")
}

// render writes page with status. The page is rendered in full first,
// so a template error is a plain 500, never half a page.
func (h *Handler) render(w http.ResponseWriter, status int, page string, data any) {
	secureHeaders(w)
	var b bytes.Buffer
	if err := h.tpl[page].Execute(&b, data); err != nil {
		h.log.Error("webcheckout: render", "page", page, "err", err)
		http.Error(w, "webcheckout: internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

// message is the data of the message page: an error or a notice.
type message struct {
	Title string
	Text  string
	Back  string // a link back, or ""
	Code  string // the error's stable code, for support
}

// fail renders the message page for err, with the status its kind maps to.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error, back string) {
	status, title, text := describe(err)
	if status == http.StatusInternalServerError {
		h.log.Error("webcheckout: internal", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	h.render(w, status, "message", message{Title: title, Text: text, Back: back, Code: vend.CodeOf(err)})
}

// describe maps an error to a status and words for a payer: one table.
func describe(err error) (status int, title, text string) {
	switch vend.CodeOf(err) {
	case "checkout.web_off":
		return http.StatusForbidden, "Web checkout is off for this machine", "This machine does not take payments from its printed code right now. Pay with the beaconvend app at the machine, or ask the operator."
	case "price.changed":
		return http.StatusConflict, "The price has changed", "The machine's price changed while you were choosing. Nothing was charged. Go back to see the new price."
	}
	switch vend.KindOf(err) {
	case vend.Invalid:
		return http.StatusBadRequest, "That did not work", "The request was not valid: " + err.Error()
	case vend.NotFound:
		return http.StatusNotFound, "Not found", "There is no such machine or checkout here."
	case vend.Conflict:
		return http.StatusConflict, "Not possible now", err.Error()
	case vend.Unauthorized:
		return http.StatusForbidden, "Not yours to see", "This checkout can only be opened on the phone that started it."
	case vend.Transient:
		return http.StatusServiceUnavailable, "Try again in a moment", err.Error()
	}
	return http.StatusInternalServerError, "Something went wrong", "The payment service failed. Nothing was charged twice; try again in a moment."
}

// Errors of the pages' own checks.
var (
	ErrForm    = vend.E(vend.Invalid, "web.form", "webcheckout: invalid form")
	ErrExpired = vend.E(vend.Invalid, "web.form_expired", "webcheckout: the form has expired or came from another page; reload it and try again")
)

// ---- the machine page ----

func (h *Handler) machine(w http.ResponseWriter, r *http.Request) {
	device, machine := r.PathValue("device"), r.PathValue("machine")
	offer, err := h.be.MachineOffer(r.Context(), device, machine)
	if err != nil {
		h.fail(w, r, err, "")
		return
	}
	if !offer.WebCheckout {
		h.render(w, http.StatusForbidden, "message", message{
			Title: "Web checkout is off for " + offer.Name,
			Text:  "This machine does not take payments from its printed code right now. Pay with the beaconvend app at the machine, or ask the operator.",
			Code:  "checkout.web_off",
		})
		return
	}
	sess := h.session(w, r)
	formID := randHex(16)
	h.render(w, http.StatusOK, "machine", newMachineView(offer, formID, h.sign(sess, "checkout", formID)))
}

// machineState answers the machine page's script: the machine's state now
// as JSON {"key","label","shape"}, so the page shows it live.
func (h *Handler) machineState(w http.ResponseWriter, r *http.Request) {
	offer, err := h.be.MachineOffer(r.Context(), r.PathValue("device"), r.PathValue("machine"))
	if err != nil {
		status, _, _ := describe(err)
		http.Error(w, vend.CodeOf(err), status)
		return
	}
	secureHeaders(w)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(machineState(offer))
}

// checkout opens the checkout the machine form asks for.
func (h *Handler) checkout(w http.ResponseWriter, r *http.Request) {
	device, machine := r.PathValue("device"), r.PathValue("machine")
	back := "/m/" + device + "/" + machine
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	if err := r.ParseForm(); err != nil {
		h.fail(w, r, vend.Errorf(ErrForm, "%v", err), back)
		return
	}
	formID := r.PostForm.Get("form")
	if !h.verify(r, "checkout", formID, r.PostForm.Get("csrf")) {
		h.fail(w, r, ErrExpired, back)
		return
	}
	offer, err := h.be.MachineOffer(r.Context(), device, machine)
	if err != nil {
		h.fail(w, r, err, back)
		return
	}
	req, err := parseCheckoutForm(offer, r.PostForm)
	if err != nil {
		h.fail(w, r, err, back)
		return
	}
	if h.opts.Limit != nil {
		if wait := h.opts.Limit(r); wait > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(wait/time.Second)+1))
			h.render(w, http.StatusTooManyRequests, "message", message{Title: "Too many checkouts",
				Text: fmt.Sprintf("Too many checkouts were opened from this network just now. Try again in %d seconds.", int(wait/time.Second)+1),
				Back: back, Code: "rate.limited"})
			return
		}
	}
	co, err := h.be.Checkout(r.Context(), service.Payer{ClientIP: h.opts.ClientIP(r)}, "web:"+formID, req)
	if err != nil {
		h.fail(w, r, err, back)
		return
	}
	if co.Token != "" {
		http.SetCookie(w, &http.Cookie{
			Name: tokenCookie, Value: co.Token, Path: "/m/c/" + co.ID,
			HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: h.secure(r),
			MaxAge: int((30 * 24 * time.Hour).Seconds()),
		})
	}
	http.Redirect(w, r, "/m/c/"+co.ID, http.StatusSeeOther)
}

// ---- the checkout page ----

const tokenCookie = "wc_token"

func (h *Handler) access(r *http.Request) service.CheckoutAccess {
	c, err := r.Cookie(tokenCookie)
	if err != nil {
		return service.CheckoutAccess{}
	}
	return service.CheckoutAccess{Token: c.Value}
}

func (h *Handler) progress(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	co, err := h.be.GetCheckout(r.Context(), id, h.access(r))
	if vend.KindOf(err) == vend.NotFound || vend.KindOf(err) == vend.Unauthorized {
		// The service does not tell a missing checkout from one opened
		// in another browser (whose cookie holds its token).
		h.render(w, http.StatusNotFound, "message", message{Title: "Checkout not found here",
			Text: "A checkout can be followed only in the browser that opened it. Your receipt link works anywhere.", Code: vend.CodeOf(err)})
		return
	}
	if err != nil {
		h.fail(w, r, err, "")
		return
	}
	sess := h.session(w, r)
	offer, _ := h.be.MachineOffer(r.Context(), string(co.Device), string(co.Machine)) // without it the page still shows the checkout
	v := newCheckoutView(co, offer, h.sign(sess, "stop", co.ID))
	h.render(w, http.StatusOK, "checkout", v)
}

func (h *Handler) stop(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	back := "/m/c/" + id
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if err := r.ParseForm(); err != nil {
		h.fail(w, r, vend.Errorf(ErrForm, "%v", err), back)
		return
	}
	if !h.verify(r, "stop", id, r.PostForm.Get("csrf")) {
		h.fail(w, r, ErrExpired, back)
		return
	}
	if _, err := h.be.StopCheckout(r.Context(), id, h.access(r)); err != nil {
		h.fail(w, r, err, back)
		return
	}
	http.Redirect(w, r, back, http.StatusSeeOther)
}

// events streams the checkout: event "checkout" with the checkout as JSON
// at each change, comments to keep the connection, and the end of the
// stream at a final state.
func (h *Handler) events(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	h.mu.Lock()
	if h.streams[id] >= h.opts.MaxStreams {
		h.mu.Unlock()
		w.Header().Set("Retry-After", "10")
		http.Error(w, "too many event streams for this checkout", http.StatusTooManyRequests)
		return
	}
	h.streams[id]++
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		if h.streams[id]--; h.streams[id] <= 0 {
			delete(h.streams, id)
		}
		h.mu.Unlock()
	}()
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	ch, err := h.be.WatchCheckout(ctx, id, h.access(r))
	if k := vend.KindOf(err); k == vend.NotFound || k == vend.Unauthorized {
		http.Error(w, "checkout not found here", http.StatusNotFound) // as the page: missing or another browser's
		return
	}
	if err != nil {
		status, _, _ := describe(err)
		http.Error(w, vend.CodeOf(err), status)
		return
	}
	var offer service.MachineOffer
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	writeBy := func() { _ = rc.SetWriteDeadline(time.Now().Add(h.opts.KeepAlive + 10*time.Second)) }
	secureHeaders(w)
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Accel-Buffering", "no")
	writeBy()
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, "retry: 2000\n\n")
	if rc.Flush() != nil {
		return
	}
	tick := time.NewTicker(h.opts.KeepAlive)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			writeBy()
			if _, err := fmt.Fprint(w, ": keepalive\n\n"); err != nil || rc.Flush() != nil {
				return
			}
		case co, ok := <-ch:
			if !ok {
				return
			}
			if offer.Device == "" {
				offer, _ = h.be.MachineOffer(ctx, string(co.Device), string(co.Machine))
			}
			b, err := json.Marshal(eventView(co, offer))
			if err != nil {
				h.log.Error("webcheckout: event", "err", err)
				return
			}
			writeBy()
			if _, err := fmt.Fprintf(w, "event: checkout\ndata: %s\n\n", b); err != nil || rc.Flush() != nil {
				return
			}
		}
	}
}

// ---- the receipt page ----

func (h *Handler) receipt(w http.ResponseWriter, r *http.Request) {
	co, err := h.be.CheckoutReceipt(r.Context(), r.PathValue("token"))
	if err != nil {
		h.fail(w, r, err, "")
		return
	}
	offer, _ := h.be.MachineOffer(r.Context(), string(co.Device), string(co.Machine))
	h.render(w, http.StatusOK, "receipt", newCheckoutView(co, offer, ""))
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
