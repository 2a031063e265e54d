package phoneapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"beaconvend/app-protocol/vend"
)

// Errors of this package. Validation errors of request and response types
// match ErrField (errors.Is) and name the field in their message; the ids they
// check also match the vend sentinel (vend.ErrDeviceID, ...).
var (
	ErrField            = vend.E(vend.Invalid, "request.field", "phoneapi: invalid field")
	ErrProximityID      = vend.E(vend.Invalid, "id.proximity", "phoneapi: invalid proximity id")
	ErrIdempotencyKey   = vend.E(vend.Invalid, "request.idempotency_key", "phoneapi: invalid idempotency key")
	ErrBaseURL          = vend.E(vend.Invalid, "client.base_url", "phoneapi: invalid base url")
	ErrResponse         = vend.E(vend.Internal, "response.decode", "phoneapi: malformed response")
	ErrResponseTooLarge = vend.E(vend.Internal, "response.too_large", "phoneapi: response too large")
	ErrTransport        = vend.E(vend.Transient, "transport", "phoneapi: request failed")
	ErrSSELineTooLong   = vend.E(vend.Invalid, "sse.line_too_long", "phoneapi: sse line too long")
	ErrSSEEventTooLarge = vend.E(vend.Invalid, "sse.event_too_large", "phoneapi: sse event too large")
	ErrSSEStall         = vend.E(vend.Transient, "sse.no_progress", "phoneapi: sse reader made no progress")
	ErrEventStream      = vend.E(vend.Internal, "sse.content_type", "phoneapi: not an event stream")
)

// statusOfKind is the one table from error kind to HTTP status. The cloud's
// HTTP layer and this client both use it (through HTTPStatus and
// KindForStatus).
var statusOfKind = map[vend.Kind]int{
	vend.Invalid:      http.StatusBadRequest,          // 400
	vend.Unauthorized: http.StatusUnauthorized,        // 401
	vend.NotFound:     http.StatusNotFound,            // 404
	vend.Conflict:     http.StatusConflict,            // 409
	vend.Internal:     http.StatusInternalServerError, // 500
	vend.Transient:    http.StatusServiceUnavailable,  // 503
}

// HTTPStatus returns the HTTP status for an error kind: invalid 400,
// unauthorized 401, not_found 404, conflict 409, internal 500, transient 503.
// An unknown kind is internal (500).
func HTTPStatus(k vend.Kind) int {
	if s, ok := statusOfKind[k]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// statusOfCode lists the codes whose status is not their kind's: the limits
// (429 with Retry-After, kind transient), the content type (415, kind
// invalid) and the step-up refusals (403, kind unauthorized: the bearer
// token is fine, the call needs more). KindForStatus maps these statuses
// back to the same kinds.
var statusOfCode = map[string]int{
	"rate.limited":         http.StatusTooManyRequests,      // 429
	"auth.locked":          http.StatusTooManyRequests,      // 429
	"stream.limit":         http.StatusTooManyRequests,      // 429
	"request.content_type": http.StatusUnsupportedMediaType, // 415
	"step_up.locked":       http.StatusTooManyRequests,      // 429
	"step_up.required":     http.StatusForbidden,            // 403
	"step_up.invalid":      http.StatusForbidden,            // 403
	"step_up.pin_required": http.StatusForbidden,            // 403
	"step_up.wrong_pin":    http.StatusForbidden,            // 403
	"auth.forbidden":       http.StatusForbidden,            // 403: the operator account's role lacks the permission
}

// ErrorStatus returns the HTTP status of an error: 429 for the limit codes
// rate.limited, auth.locked, stream.limit and step_up.locked, 415 for
// request.content_type, 403 for step_up.required, step_up.invalid,
// step_up.pin_required, step_up.wrong_pin and auth.forbidden, otherwise HTTPStatus(k).
func ErrorStatus(k vend.Kind, code string) int {
	if s, ok := statusOfCode[code]; ok && KindForStatus(s) == k {
		return s
	}
	return HTTPStatus(k)
}

// KindForStatus returns the error kind of an HTTP status, for answers that
// lack a valid error body (a proxy's 502 page). It inverts HTTPStatus and
// maps the other statuses by class: 403 is unauthorized, 410 not_found, 412
// conflict, 408, 429, 502 and 504 transient, other 4xx invalid, other 5xx
// internal. 2xx and 3xx give internal: they are not errors the server meant.
func KindForStatus(status int) vend.Kind {
	switch status {
	case 400, 413, 414, 415, 422:
		return vend.Invalid
	case 401, 403:
		return vend.Unauthorized
	case 404, 410:
		return vend.NotFound
	case 409, 412:
		return vend.Conflict
	case 408, 429, 502, 503, 504:
		return vend.Transient
	}
	if status >= 400 && status < 500 {
		return vend.Invalid
	}
	return vend.Internal
}

// APIError is a non-2xx answer of the API. It unwraps to a *vend.Error of the
// same Kind and Code, so vend.KindOf and vend.CodeOf work on it.
type APIError struct {
	Status     int           // HTTP status
	Kind       vend.Kind     // from the body, or KindForStatus when the body has none
	Code       string        // stable dotted code, e.g. "machine.busy"; "http.<status>" when the body has none
	Message    string        // the server's message, for logs
	RetryAfter time.Duration // from a Retry-After header in seconds, or 0
	// Session is the pending session of a device.no_reply answer (see
	// ErrorBody.Session), when the body carried a valid one.
	Session *Session
	// Price is the current price of a price.changed answer, when valid.
	Price *Price
	// Alternatives are the payment sources a source.limit answer names
	// as fitting the amount (ErrorBody.Alternatives).
	Alternatives []string
}

// Error returns "phoneapi: <status> <kind> <code>: <message>".
func (e *APIError) Error() string {
	return fmt.Sprintf("phoneapi: %d %s %s: %s", e.Status, e.Kind, e.Code, e.Message)
}

// Unwrap returns the error as a *vend.Error.
func (e *APIError) Unwrap() error { return &vend.Error{Kind: e.Kind, Code: e.Code, Msg: e.Error()} }

// maxErrorMessage bounds the message kept from an error body, in bytes.
const maxErrorMessage = 1024

// DecodeError turns a non-2xx status and its body into an *APIError. It never
// fails: a body that is not the error JSON yields Kind KindForStatus(status)
// and Code "http.<status>", and an unknown kind in the body is replaced the
// same way. Codes that are not dotted lower-case words are replaced by
// "http.<status>" too; messages are cut to 1 KiB of valid UTF-8.
func DecodeError(status int, body []byte) *APIError {
	e := &APIError{Status: status, Kind: KindForStatus(status), Code: "http." + strconv.Itoa(status)}
	var r ErrorResponse
	if err := json.Unmarshal(body, &r); err == nil {
		if _, ok := statusOfKind[r.Error.Kind]; ok {
			e.Kind = r.Error.Kind
		}
		if validCode(r.Error.Code) {
			e.Code = r.Error.Code
		}
		e.Message = r.Error.Message
		if ss := r.Error.Session; ss != nil && ss.Validate() == nil {
			e.Session = ss
		}
		if p := r.Error.Price; p != nil && p.Validate() == nil {
			e.Price = p
		}
		e.Alternatives = r.Error.Alternatives
	} else {
		e.Message = string(body)
	}
	e.Message = clipMessage(e.Message)
	return e
}

// clipMessage makes m valid UTF-8, then cuts it at a rune boundary to at
// most maxErrorMessage bytes.
func clipMessage(m string) string {
	if len(m) > 4*maxErrorMessage {
		m = m[:4*maxErrorMessage] // bound the work; the cut below is the real one
	}
	m = strings.ToValidUTF8(m, "\uFFFD")
	if len(m) > maxErrorMessage {
		i := maxErrorMessage
		for i > 0 && !utf8.RuneStart(m[i]) {
			i--
		}
		m = m[:i]
	}
	return strings.TrimSpace(m)
}

// validCode reports whether c is dotted lower-case words of a-z 0-9 _, at most 128 bytes.
func validCode(c string) bool {
	if len(c) == 0 || len(c) > 128 || c[0] == '.' || c[len(c)-1] == '.' {
		return false
	}
	for i := 0; i < len(c); i++ {
		switch b := c[i]; {
		case b >= 'a' && b <= 'z', b >= '0' && b <= '9', b == '_':
		case b == '.' && c[i-1] != '.':
		default:
			return false
		}
	}
	return true
}

// fieldError is a validation error that names the field (a dotted path).
type fieldError struct {
	path  string
	cause error
}

func (e *fieldError) Error() string {
	return ErrField.Msg + ": " + e.path + ": " + e.cause.Error()
}

// Unwrap returns ErrField first, so vend.KindOf and vend.CodeOf report
// invalid / "request.field", and then the cause.
func (e *fieldError) Unwrap() []error { return []error{ErrField, e.cause} }

func fieldErr(path, format string, args ...any) error {
	return &fieldError{path: path, cause: fmt.Errorf(format, args...)}
}

// prefix names the field of err, or prepends path to the field it names.
func prefix(path string, err error) error {
	if err == nil {
		return nil
	}
	if fe, ok := err.(*fieldError); ok {
		return &fieldError{path: path + "." + fe.path, cause: fe.cause}
	}
	return &fieldError{path: path, cause: err}
}

func clip(s string) string {
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return s
}

func itoa(i int) string { return strconv.Itoa(i) }

// ValidateIdempotencyKey returns ErrIdempotencyKey unless k is 8 to 128
// visible ASCII characters (0x21-0x7e).
func ValidateIdempotencyKey(k string) error {
	if len(k) < MinIdempotencyLen || len(k) > MaxIdempotencyLen {
		return vend.Errorf(ErrIdempotencyKey, "want %d-%d characters, have %d", MinIdempotencyLen, MaxIdempotencyLen, len(k))
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return vend.Errorf(ErrIdempotencyKey, "byte %d is not visible ascii", i)
		}
	}
	return nil
}
