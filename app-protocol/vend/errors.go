package vend

import (
	"errors"
	"fmt"
)

// Kind says what a caller can do about an error.
type Kind string

// The error kinds. Map them to transport codes in one table (the phone API
// does so in cloud/httpapi); log only [Internal] ones.
const (
	Invalid      Kind = "invalid"      // the input is malformed or breaks a rule; do not retry as is
	NotFound     Kind = "not_found"    // the named thing does not exist (or is not yours to see)
	Conflict     Kind = "conflict"     // the state forbids it now (busy machine, replayed session)
	Unauthorized Kind = "unauthorized" // credentials or signature missing or wrong
	Transient    Kind = "transient"    // try again later (link down, timeout)
	Internal     Kind = "internal"     // a bug or an unexpected failure of a dependency
)

// Error is an error with a kind and a stable code. Packages declare their
// sentinel errors as *Error values and wrap them with fmt.Errorf("%w: ...")
// to add detail.
type Error struct {
	Kind Kind   // what the caller can do about it
	Code string // stable dotted code, e.g. "frame.truncated"; test vectors and the phone API use it
	Msg  string // lowercase, begins with the package name
}

// E returns a new *Error. It is meant for package-level sentinel blocks.
func E(kind Kind, code, msg string) *Error { return &Error{Kind: kind, Code: code, Msg: msg} }

// Error returns the message.
func (e *Error) Error() string { return e.Msg }

// Errorf wraps the sentinel err with a formatted detail:
// Errorf(ErrTruncated, "at offset %d", 3) reads "beacon: truncated AD structure: at offset 3".
func Errorf(err *Error, format string, args ...any) error {
	return fmt.Errorf("%w: %s", err, fmt.Sprintf(format, args...))
}

// KindOf returns the kind of the first *Error in err's chain, or Internal
// when err is non-nil and carries none, or "" for a nil err.
func KindOf(err error) Kind {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Internal
}

// CodeOf returns the code of the first *Error in err's chain, "internal" when
// err carries none, or "" for a nil err.
func CodeOf(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return "internal"
}
