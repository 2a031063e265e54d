// Package httpapi is the cloud's HTTP front: the phone API exactly as
// app-protocol/openapi.yaml specifies it (every operation, with net/http's
// method-and-path patterns), the operator API under /v1/operator/, and
// /healthz (the process answers) and /readyz (the store answers and the
// MQTT client is connected). Prometheus metrics, health detail and
// profiles are not here: cloud/server serves them on its admin listener,
// apart from the public API. The money flow itself is cloud/service.
//
// # Errors
//
// Every error is {"error":{"kind","code","message"}} with the status of its
// kind (phoneapi.ErrorStatus: invalid 400, unauthorized 401 with
// WWW-Authenticate, not_found 404, conflict 409, internal 500, transient 503
// with Retry-After; the limit codes rate.limited, auth.locked,
// stream.limit and step_up.locked are 429 with Retry-After,
// request.content_type 415, the step-up refusals step_up.required,
// step_up.invalid, step_up.pin_required and step_up.wrong_pin 403). Store codes
// are renamed to the spec's where they differ (idempotency.conflict →
// idempotency.key_reused, email.taken → auth.email_taken, malformed ids →
// request.field, slot.not_found → machine.not_found). Only internal errors
// are logged, and their text is replaced by "internal error".
//
// # Requests
//
// Bodies are limited to Options.MaxBody (64 KiB), must not be declared as
// anything but application/json (415 request.content_type; no
// Content-Type is read as JSON) and are decoded strictly: unknown fields
// and mistyped ones are request.field naming the field, bad JSON is
// request.json; then the phoneapi request type's Validate runs.
//
// GET /v1/devices/{device} answers machines, prices and states only with
// a proximity_id of that device from the accepted windows; without one,
// the device's public fields. GET /v1/sessions lists the user's sessions,
// newest first, a page at a time (cursor "<created ms>.<session id>").
//
// TopUp answers 201 with the order (a Payment) the payer acts on; GET
// /v1/payments/{order} follows it (a pending order whose notification is
// late is asked of its channel), GET /v1/payments lists them (cursor
// "<created ms>.<order>"), POST /v1/wallet/withdrawals returns wallet money
// to the channels it came through. Providers POST their notifications to
// /v1/channels/{channel}/notify without a bearer token: the channel
// verifies each one and the answer is in the provider's own protocol. An
// operator refunds a session with POST
// /v1/operator/sessions/{session}/refund {amount, reason} and an
// Idempotency-Key.
//
// POST /v1/checkouts pays one session through a channel; the bearer is
// optional (none: a guest, limited per client address like a sign-up).
// The service is idempotent by the Idempotency-Key itself (scoped by the
// user, or the key alone for a guest), so the route does not store
// responses: a retry gets the same checkout and its token. GET
// /v1/checkouts/{id} and POST /v1/checkouts/{id}/stop take the owner's
// bearer or the checkout's token in X-Checkout-Token; GET
// /v1/receipts/{token} needs neither. An operator turns a machine's web
// checkout on or off with PUT
// /v1/operator/devices/{device}/machines/{machine}/web-checkout {on}
// (manager or owner; audited as machine.web_checkout).
//
// # Step-up
//
// PUT /v1/me/pin, GET and PUT /v1/me/step-up and POST /v1/auth/step-up
// are the step-up PIN (stepup.go; the rules are cloud/service's). Every
// request's X-Step-Up-Token header goes into its context
// (service.WithStepUpToken), where the service spends it on the call that
// needs it. A step-up refusal (403 step_up.*, 429 step_up.locked) is not
// stored under the Idempotency-Key: the client sends the same request
// again with a token.
//
// # Idempotency
//
// StartSession, StopSession, TopUp and Withdraw need an Idempotency-Key. The key is
// scoped to the user and the operation and the request hash covers method,
// path and the parsed request (re-encoded, so JSON spacing and key order do
// not matter): the same key and request replay the stored response with
// Idempotent-Replayed: true, another request is 409 idempotency.key_reused, and
// a second request while the first still runs on this instance is 503
// idempotency.in_flight (across instances the store's unique keys make the
// money move once; the loser replays the winner's stored response). Final
// responses (2xx, 4xx) are stored; 5xx are not, so a retry runs again.
//
// # Authentication
//
// Phone users: bearer tokens issued by the store (SignUp, LogIn), revoked by
// LogOut. Passwords longer than bcrypt's 72 bytes are pre-hashed (SHA-256,
// base64) at sign-up and log-in alike. Operators: server-side console
// sessions (store.StartConsoleSession): an opaque 256-bit bearer token
// whose SHA-256 the store keeps, checked against the database on every
// request (no cache, so a revocation holds from the next request on every
// instance); it ends after Options.OperatorSessionTTL (12 h) from log-in,
// after Options.OperatorIdleTimeout (1 h) without a request, at
// POST /v1/operator/auth/logout, when the account's password is changed
// from another session (POST /v1/operator/auth/password keeps the session
// that made the change and revokes the others), and when the account is
// disabled (`cloud operator disable`). No signing key is involved.
//
// # Connections and limits
//
// NewHTTPServer returns the http.Server to serve with: ReadHeaderTimeout,
// ReadTimeout, WriteTimeout, IdleTimeout and MaxHeaderBytes from
// Options.Limits, so a client that trickles its request or idles on a
// keep-alive connection is cut off. Sign-up, log-in and operator log-in
// are rate limited per client address (the peer, or the X-Forwarded-For
// hop after Limits.TrustedProxies) and per account (the email) with
// golang.org/x/time/rate token buckets, in memory per instance, in tables
// of bounded size; after Limits.LockoutAfter consecutive failed log-ins an
// account is locked for a time that doubles with each further failure.
// The failure count and the lock live in the store (store.LoginThrottle),
// so they hold on every instance and across restarts. Event streams are
// capped per user and per instance. Every refusal counts in
// beaconvend_http_limited_total{code} on the service's registry.
//
// # Session events
//
// GET /v1/sessions/{session}/events is a text/event-stream: "retry: 2000",
// a state snapshot (or, with Last-Event-ID, the events after it that this
// instance's hub still holds), then progress/state events, and ended
// followed by the end of the stream; ": keepalive" comments every 15 s. The
// store is polled every PollInterval (2 s), so a session handled by another
// instance's ingest still reaches ended. A stream clears the connection's
// read deadline and renews its write deadline before each write
// (http.ResponseController), so it outlives ReadTimeout and WriteTimeout
// while a client that stops reading is still cut off.
package httpapi
