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
// kind (phoneapi.HTTPStatus: invalid 400, unauthorized 401, not_found 404,
// conflict 409, internal 500, transient 503 with Retry-After). Store codes
// are renamed to the spec's where they differ (idempotency.conflict →
// idempotency.key_reused, email.taken → auth.email_taken, malformed ids →
// request.field, slot.not_found → machine.not_found). Only internal errors
// are logged, and their text is replaced by "internal error".
//
// # Requests
//
// Bodies are limited to Options.MaxBody (64 KiB) and decoded strictly:
// unknown fields and mistyped ones are request.field naming the field, bad
// JSON is request.json; then the phoneapi request type's Validate runs.
//
// # Idempotency
//
// StartSession, StopSession and TopUp need an Idempotency-Key. The key is
// scoped to the user and the operation and the request hash covers method,
// path and body: the same key and body replay the stored response with
// Idempotent-Replayed: true, another body is 409 idempotency.key_reused, and
// a second request while the first still runs on this instance is 503
// idempotency.in_flight (across instances the store's unique keys make the
// money move once; the loser replays the winner's stored response). Final
// responses (2xx, 4xx) are stored; 5xx are not, so a retry runs again.
//
// # Authentication
//
// Phone users: bearer tokens issued by the store (SignUp, LogIn), revoked by
// LogOut. Passwords longer than bcrypt's 72 bytes are pre-hashed (SHA-256,
// base64) at sign-up and log-in alike. Operators: stateless HMAC tokens (see
// Options.OperatorKey), because the store keeps only phone-user tokens.
//
// # Session events
//
// GET /v1/sessions/{session}/events is a text/event-stream: "retry: 2000",
// a state snapshot (or, with Last-Event-ID, the events after it that this
// instance's hub still holds), then progress/state events, and ended
// followed by the end of the stream; ": keepalive" comments every 15 s. The
// store is polled every PollInterval (2 s), so a session handled by another
// instance's ingest still reaches ended.
package httpapi
