// Package phoneapi is the phone API of beaconvend in Go: the request and
// response types, a client, and a Server-Sent Events reader. The contract
// itself is app-protocol/openapi.yaml (OpenAPI 3.1), which the Kotlin and
// Swift apps and the cloud implement; this package is its Go mirror, and its
// tests fail when the two drift apart.
//
// # The API
//
// A phone hears a BLE advertisement with a rotating 8-byte proximity ID and
// calls [Client.Resolve]; the cloud answers with the device, the rotation
// window the ID matched and the machines with their prices. [Client.StartSession]
// holds a cap on a payment source (the wallet, a card, ...) and makes the cloud
// send the board a grant bound to that window. [Client.SessionEvents] streams
// progress; [Client.StopSession] stops early; once the board's signed usage
// report has arrived, the cloud captures exactly units × price (rounded down,
// never above the hold), releases the rest and [Client.GetReceipt] returns the
// receipt. [Client.GetWallet], [Client.TopUp] and [Client.ListPaymentSources]
// manage the money; [Client.SignUp], [Client.LogIn] and [Client.LogOut] the
// bearer token, which the client keeps.
//
// Every schema of the spec's components/schemas is a Go type of the same name
// here (listed by [Schemas]); money is [vend.Amount] and [vend.Price], integer
// minor units. Every operationId is the name of a Client method; the
// operation methods are exactly the Client methods whose first parameter is a
// context.Context.
//
// # Errors
//
// Every non-2xx answer is {"error":{"kind","code","message"}}. The client
// returns it as an [*APIError], which unwraps to a [vend.Error], so
// vend.KindOf and vend.CodeOf work on it and apps branch on the code
// ("machine.busy", "funds.insufficient", "proximity.expired",
// "idempotency.key_reused", ...; the full table is in the spec's description).
// The kind fixes the HTTP status, in one table: [HTTPStatus] and
// [KindForStatus]; four codes have their own ([ErrorStatus]): the limits
// "rate.limited", "auth.locked", "stream.limit" and "step_up.locked" are
// 429 (kind transient; wait [APIError].RetryAfter), "request.content_type"
// is 415 (kind invalid), and the step-up refusals "step_up.required",
// "step_up.invalid", "step_up.pin_required" and "step_up.wrong_pin" are 403
// (kind unauthorized: the bearer token is fine, the call needs a step-up). Request types have Validate methods, which the client runs
// before sending; their errors are of kind invalid with code "request.field"
// (errors.Is [ErrField]) and name the field, such as
// "phoneapi: invalid field: cap: want exactly one of units, amount".
//
// # Step-up
//
// A payer's PIN ([Client.SetPIN]) guards large caps, top-ups and
// withdrawals ([Client.SetStepUpThresholds], [Client.GetStepUpSettings]).
// A call above a threshold is refused with 403 "step_up.required" (not
// stored under its Idempotency-Key); [Client.StepUp] trades the PIN for a
// short-lived, one-use token, and the same call made with a context from
// [WithStepUpToken] sends it as the X-Step-Up-Token header.
//
// # Idempotency
//
// The POSTs that move money (StartSession, StopSession, TopUp) take an
// Idempotency-Key, 8 to 128 visible ASCII characters: the key parameter of
// those methods. Make one with [NewIdempotencyKey] per user action and reuse
// it, with the same request, for every retry of that action (a timeout, a
// dropped connection, a transient error). The server replays the first
// answer for a repeated key and request (the parsed request: JSON spacing
// and key order do not matter), answers conflict
// "idempotency.key_reused" for the same key with another request, and
// transient "idempotency.in_flight" while the first request still runs.
//
// # Session events
//
// SessionEvents is a text/event-stream. Events are "progress" (a
// [ProgressEvent] with running totals), "state" (the [Session] after a
// change; also the first event of every connection) and "ended" (the final
// Session; then the server closes the stream). Each event has a decimal,
// increasing id. On a dropped connection, reconnect after
// [EventStream.Retry] with [EventStream.LastEventID] as lastEventID: the
// server resends what it still has after that id, or starts with a "state"
// snapshot; since progress values are totals, nothing is lost either way.
// Comment lines are keepalives, sent at least every 15 s.
//
// [SSEReader] is the parser: it follows the WHATWG HTML "event stream
// interpretation" (CRLF, LF or CR line ends, comments, multi-line data, ids,
// retry, a leading BOM) and bounds memory, refusing lines over
// [DefaultMaxSSELine] bytes with [ErrSSELineTooLong] and events over
// [DefaultMaxSSEEvent] bytes of data with [ErrSSEEventTooLarge].
//
// # How the spec is checked
//
// The tests load openapi.yaml with kin-openapi (github.com/getkin/kin-openapi
// v0.152.0), which supports OpenAPI 3.1: (*openapi3.T).Validate sees
// "openapi: 3.1.0" and validates the document with JSON Schema 2020-12
// semantics, including the `example`/`examples` of parameters, request
// bodies and responses. It does not check the 3.1 `examples` array of a
// schema, so the tests validate each of those against its schema with
// openapi3.EnableJSONSchema2020 themselves. They also walk the document and
// check, both ways, that operationIds and Client methods match, that schemas
// and Schemas() match, that every example decodes into its Go type with
// unknown fields disallowed and passes its Validate method, that Go field
// names equal the schema's property names and Go's omitempty fields are
// exactly the optional ones, and that the event-stream example parses.
package phoneapi
