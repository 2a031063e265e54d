package phoneapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"beaconvend/app-protocol/vend"
)

// MaxResponseBytes bounds a JSON response body the client reads.
const MaxResponseBytes = 1 << 20

// DefaultUserAgent is sent when Opts.UserAgent is empty.
const DefaultUserAgent = "beaconvend-phoneapi-go/1"

// Opts configures a Client. The zero value (or nil) works.
type Opts struct {
	HTTPClient *http.Client // nil means http.DefaultClient; set its Timeout, but not for SessionEvents
	Token      string       // bearer token, e.g. from an earlier LogIn
	UserAgent  string       // empty means DefaultUserAgent
}

// Client calls the phone API. Its operation methods, those taking a
// context.Context first, are named as the operationIds of openapi.yaml.
// A Client is safe for concurrent use.
type Client struct {
	base  *url.URL
	err   error // from parsing the base URL; returned by every call
	hc    *http.Client
	ua    string
	mu    sync.Mutex
	token string
}

// New returns a client of the API at baseURL, such as
// "https://api.beaconvend.example" (the /v1 paths are appended). An invalid
// baseURL makes every call fail with ErrBaseURL.
func New(baseURL string, opts *Opts) *Client {
	if opts == nil {
		opts = &Opts{}
	}
	c := &Client{hc: opts.HTTPClient, ua: opts.UserAgent, token: opts.Token}
	if c.hc == nil {
		c.hc = http.DefaultClient
	}
	if c.ua == "" {
		c.ua = DefaultUserAgent
	}
	u, err := url.Parse(baseURL)
	switch {
	case err != nil:
		c.err = vend.Errorf(ErrBaseURL, "%q: %v", clip(baseURL), err)
	case u.Scheme != "http" && u.Scheme != "https", u.Host == "":
		c.err = vend.Errorf(ErrBaseURL, "%q: want http(s)://host", clip(baseURL))
	default:
		u.Path = strings.TrimSuffix(u.Path, "/")
		u.RawPath, u.RawQuery, u.Fragment = "", "", ""
		c.base = u
	}
	return c
}

// SetToken sets the bearer token sent with later requests; "" sends none.
func (c *Client) SetToken(t string) { c.mu.Lock(); c.token = t; c.mu.Unlock() }

// Token returns the bearer token the client sends.
func (c *Client) Token() string { c.mu.Lock(); defer c.mu.Unlock(); return c.token }

// NewIdempotencyKey returns a fresh Idempotency-Key: 26 random base-32
// characters (130 bits). Make one per user action and reuse it for every
// retry of that action.
func NewIdempotencyKey() string { return rand.Text() }

// Health reports whether the API answers. It needs no token.
func (c *Client) Health(ctx context.Context) (*HealthStatus, error) {
	var out HealthStatus
	return &out, c.do(ctx, http.MethodGet, "/v1/health", "", nil, &out)
}

// SignUp creates an account and logs in: the client keeps the returned token
// for later calls. Errors: invalid (request.field), conflict
// (auth.email_taken), transient.
func (c *Client) SignUp(ctx context.Context, req *SignUpRequest) (*AuthToken, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	var out AuthToken
	if err := c.do(ctx, http.MethodPost, "/v1/auth/signup", "", req, &out); err != nil {
		return nil, err
	}
	c.SetToken(out.Token)
	return &out, nil
}

// LogIn exchanges email and password for a token, which the client keeps for
// later calls. Errors: invalid, unauthorized (auth.credentials), transient.
func (c *Client) LogIn(ctx context.Context, req *LogInRequest) (*AuthToken, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	var out AuthToken
	if err := c.do(ctx, http.MethodPost, "/v1/auth/login", "", req, &out); err != nil {
		return nil, err
	}
	c.SetToken(out.Token)
	return &out, nil
}

// LogOut revokes the client's token on the server and forgets it, also when
// the server already considers it invalid (unauthorized).
func (c *Client) LogOut(ctx context.Context) error {
	err := c.do(ctx, http.MethodPost, "/v1/auth/logout", "", nil, nil)
	if err == nil || vend.KindOf(err) == vend.Unauthorized {
		c.SetToken("")
	}
	return err
}

// Resolve asks which device sent a heard proximity ID. Errors: not_found
// with code proximity.unknown or proximity.expired (scan again), invalid,
// unauthorized, transient.
func (c *Client) Resolve(ctx context.Context, req *ResolveRequest) (*ResolveResponse, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	var out ResolveResponse
	if err := c.do(ctx, http.MethodPost, "/v1/resolve", "", req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetDevice returns a device. With a proximity ID heard from it (at most
// one) the answer has its machines, prices and states; without one, only
// the device's public fields (id, name, state) and no machines. Errors:
// invalid id, not_found (device.not_found; proximity.unknown or
// proximity.expired for the proximity ID), unauthorized, transient.
func (c *Client) GetDevice(ctx context.Context, id DeviceID, proximity ...ProximityID) (*DeviceResponse, error) {
	if err := id.Validate(); err != nil {
		return nil, prefix("device", err)
	}
	q := url.Values{}
	switch len(proximity) {
	case 0:
	case 1:
		if err := proximity[0].Validate(); err != nil {
			return nil, prefix("proximity_id", err)
		}
		q.Set("proximity_id", string(proximity[0]))
	default:
		return nil, fieldErr("proximity_id", "at most one")
	}
	var out DeviceResponse
	if err := c.doQuery(ctx, "/v1/devices/"+url.PathEscape(string(id)), q, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListSessions returns the user's sessions, newest first, a page of at
// most p.Limit (DefaultSessionPage when 0, at most MaxSessionPage); pass
// the answer's Next as p.Cursor for the next page. p may be nil. Errors:
// invalid (a bad limit or cursor), unauthorized, transient.
func (c *Client) ListSessions(ctx context.Context, p *ListSessionsParams) (*SessionList, error) {
	q := url.Values{}
	if p != nil {
		if err := p.Validate(); err != nil {
			return nil, err
		}
		if p.Limit > 0 {
			q.Set("limit", strconv.Itoa(p.Limit))
		}
		if p.Cursor != "" {
			q.Set("cursor", p.Cursor)
		}
	}
	var out SessionList
	if err := c.doQuery(ctx, "/v1/sessions", q, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// doQuery is a GET of path with query q.
func (c *Client) doQuery(ctx context.Context, path string, q url.Values, out any) error {
	if len(q) == 0 {
		return c.do(ctx, http.MethodGet, path, "", nil, out)
	}
	return c.do(ctx, http.MethodGet, path+"?"+q.Encode(), "", nil, out)
}

// StartSession holds the cap and authorizes the machine. key is the
// Idempotency-Key (see NewIdempotencyKey): retry with the same key, and the
// same req, after a timeout or a transient error. Errors: conflict
// (machine.busy, funds.insufficient, idempotency.key_reused, ...),
// not_found (proximity.expired, machine.not_found, ...), invalid,
// unauthorized, transient (idempotency.in_flight: retry later).
func (c *Client) StartSession(ctx context.Context, key string, req *StartSessionRequest) (*Session, error) {
	if err := ValidateIdempotencyKey(key); err != nil {
		return nil, err
	}
	if err := req.Validate(); err != nil {
		return nil, err
	}
	var out Session
	if err := c.do(ctx, http.MethodPost, "/v1/sessions", key, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetSession returns a session as it is now. Errors: not_found
// (session.not_found), unauthorized, transient.
func (c *Client) GetSession(ctx context.Context, id SessionID) (*Session, error) {
	var out Session
	if err := c.do(ctx, http.MethodGet, "/v1/sessions/"+id.String(), "", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// UploadUsage uploads the signed usage report the phone read from the
// board after a relayed session (POST /v1/sessions/{id}/usage). The cloud
// settles it once however often it arrives. Errors: usage.* (invalid,
// refused reports), session.not_found, and the transport's.
func (c *Client) UploadUsage(ctx context.Context, key string, id SessionID, report []byte) (*UsageAccepted, error) {
	if err := ValidateIdempotencyKey(key); err != nil {
		return nil, err
	}
	req := &UsageUpload{Report: report}
	if err := req.Validate(); err != nil {
		return nil, err
	}
	var out UsageAccepted
	if err := c.do(ctx, http.MethodPost, "/v1/sessions/"+id.String()+"/usage", key, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// StopSession asks the board to stop the session now; key is the
// Idempotency-Key. Stopping an ended session returns it unchanged. Errors:
// not_found, conflict, unauthorized, transient.
func (c *Client) StopSession(ctx context.Context, key string, id SessionID) (*Session, error) {
	if err := ValidateIdempotencyKey(key); err != nil {
		return nil, err
	}
	var out Session
	if err := c.do(ctx, http.MethodPost, "/v1/sessions/"+id.String()+"/stop", key, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetReceipt returns the receipt of a settled session. Errors: conflict
// (session.not_settled: wait for the "ended" event), not_found,
// unauthorized, transient.
func (c *Client) GetReceipt(ctx context.Context, id SessionID) (*Receipt, error) {
	var out Receipt
	if err := c.do(ctx, http.MethodGet, "/v1/sessions/"+id.String()+"/receipt", "", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetWallet returns the wallet's available and held balances. Errors:
// unauthorized, transient.
func (c *Client) GetWallet(ctx context.Context) (*Wallet, error) {
	var out Wallet
	if err := c.do(ctx, http.MethodGet, "/v1/wallet", "", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// TopUp opens a top-up order on a payment source and returns it: the
// payer acts on its CodeURL (or ClientSecret), and the wallet is credited
// once the order is paid (follow it with GetPayment). Source "auto" lets
// the cloud pick by the operator's priority. key is the Idempotency-Key.
// Errors: conflict (source.limit, naming the sources that would fit;
// idempotency.key_reused; channel.refused), not_found (source.not_found),
// invalid, unauthorized, transient (channel.unavailable,
// channel.unhealthy).
func (c *Client) TopUp(ctx context.Context, key string, req *TopUpRequest) (*Payment, error) {
	if err := ValidateIdempotencyKey(key); err != nil {
		return nil, err
	}
	if err := req.Validate(); err != nil {
		return nil, err
	}
	var out Payment
	if err := c.do(ctx, http.MethodPost, "/v1/wallet/topups", key, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListPaymentSources returns the sources the user can pay or top up from.
// Errors: unauthorized, transient.
func (c *Client) ListPaymentSources(ctx context.Context) (*PaymentSourceList, error) {
	var out PaymentSourceList
	if err := c.do(ctx, http.MethodGet, "/v1/payment-sources", "", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SessionEvents opens the event stream of a session. lastEventID is "" on
// the first connection and EventStream.LastEventID of the previous stream
// when reconnecting. The stream lives as long as ctx or until Close; do not
// give the client's http.Client a Timeout shorter than the session. Errors
// opening the stream are those of GetSession.
func (c *Client) SessionEvents(ctx context.Context, id SessionID, lastEventID string) (*EventStream, error) {
	req, err := c.newRequest(ctx, http.MethodGet, "/v1/sessions/"+id.String()+"/events", "", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTransport, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, c.apiError(resp)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "text/event-stream" {
		resp.Body.Close()
		return nil, vend.Errorf(ErrEventStream, "content type %q", clip(resp.Header.Get("Content-Type")))
	}
	return &EventStream{body: resp.Body, r: NewSSEReader(resp.Body, 0, 0)}, nil
}

// The session event types.
const (
	EventProgress = "progress" // Event.Progress is set
	EventState    = "state"    // Event.Session is set
	EventEnded    = "ended"    // Event.Session is set to the final session; the stream ends
)

// Event is one event of a session's stream.
type Event struct {
	Type     string         // EventProgress, EventState or EventEnded
	ID       string         // the stream's last event id
	Progress *ProgressEvent // for EventProgress
	Session  *Session       // for EventState and EventEnded
}

// EventStream reads a session's events. It is not safe for concurrent use.
type EventStream struct {
	body  io.ReadCloser
	r     *SSEReader
	ended bool
}

// Next returns the next event, skipping event types it does not know. After
// EventEnded it returns io.EOF. A connection that drops before that returns
// io.EOF, io.ErrUnexpectedEOF or the transport's error: reconnect with
// LastEventID after Retry. An event whose data does not decode returns
// ErrResponse; the stream can still be read after it.
func (s *EventStream) Next() (Event, error) {
	if s.ended {
		return Event{}, io.EOF
	}
	for {
		ev, err := s.r.Next()
		if err != nil {
			return Event{}, err
		}
		out := Event{Type: ev.Type, ID: ev.ID}
		var v interface{ Validate() error }
		switch ev.Type {
		case EventProgress:
			out.Progress = new(ProgressEvent)
			v = out.Progress
		case EventState, EventEnded:
			out.Session = new(Session)
			v = out.Session
		default:
			continue
		}
		if err := json.Unmarshal([]byte(ev.Data), v); err != nil {
			return Event{}, vend.Errorf(ErrResponse, "%s event %s: %v", ev.Type, clip(ev.ID), err)
		}
		if ev.Type == EventEnded {
			s.ended = true
		}
		return out, nil
	}
}

// LastEventID returns the id to send as Last-Event-ID when reconnecting.
func (s *EventStream) LastEventID() string { return s.r.LastEventID() }

// Retry returns the reconnection delay the server asked for, or 0.
func (s *EventStream) Retry() time.Duration { return s.r.Retry() }

// Close closes the connection.
func (s *EventStream) Close() error { return s.body.Close() }

func (c *Client) newRequest(ctx context.Context, method, path, key string, in any) (*http.Request, error) {
	if c.err != nil {
		return nil, c.err
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("phoneapi: encode %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	u := *c.base
	path, query, _ := strings.Cut(path, "?")
	u.Path += path
	u.RawQuery = query
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("phoneapi: %s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.ua)
	if t := c.Token(); t != "" {
		req.Header.Set("Authorization", "Bearer "+t)
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	if t := stepUpTokenOf(ctx); t != "" {
		req.Header.Set(StepUpHeader, t)
	}
	return req, nil
}

// do sends in as JSON (when non-nil) and decodes a 2xx answer into out (when non-nil).
func (c *Client) do(ctx context.Context, method, path, key string, in, out any) error {
	req, err := c.newRequest(ctx, method, path, key, in)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %s %s: %w", ErrTransport, method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return c.apiError(resp)
	}
	b, err := readLimited(resp.Body)
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return vend.Errorf(ErrResponse, "%s %s: %v", method, path, err)
	}
	return nil
}

func readLimited(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading body: %w", ErrTransport, err)
	}
	if len(b) > MaxResponseBytes {
		return nil, vend.Errorf(ErrResponseTooLarge, "over %d bytes", MaxResponseBytes)
	}
	return b, nil
}

func (c *Client) apiError(resp *http.Response) error {
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes))
	if err != nil {
		b = nil
	}
	e := DecodeError(resp.StatusCode, b)
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 && s < 86400 {
		e.RetryAfter = time.Duration(s) * time.Second
	}
	return e
}
