package records

import (
	"errors"
	"fmt"
	"strings"
)

// Code classifies an Error. The HTTP layer maps each code to one status.
type Code string

// Error codes.
const (
	Invalid          Code = "invalid"            // the input is wrong: 400 or 422
	NotFound         Code = "not_found"          // absent, or outside the principal's scope: 404
	Conflict         Code = "conflict"           // state forbids it (precondition, still referenced): 409
	Unauthorized     Code = "unauthorized"       // no or bad credentials: 401
	Forbidden        Code = "forbidden"          // authenticated, but the scope or basis does not allow it: 403
	MethodNotAllowed Code = "method_not_allowed" // the path exists, not for this method: 405
	TooLarge         Code = "too_large"          // body or package over the limit: 413
	Unavailable      Code = "unavailable"        // a dependency is down; retry later: 503
	Internal         Code = "internal"           // a bug or an unexpected failure: 500, details only in the log
)

// Error is the one error type that crosses rooms. Message is safe to show to the
// caller: it never contains a sensitive value, SQL or another error's raw text.
type Error struct {
	Code      Code
	Message   string
	CodeMinor string // OneRoster imsx_codeMinorFieldValue, when one applies
	Field     string // the offending field or parameter, when one applies
	Details   []FieldError
	Err       error // the underlying cause, logged, never shown
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// FieldError is one problem with one field of an input.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (f FieldError) String() string { return f.Field + ": " + f.Message }

// Errorf builds an Error with a formatted, caller-safe message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// InvalidFields builds an Invalid error listing every field problem.
func InvalidFields(what string, errs []FieldError) *Error {
	parts := make([]string, len(errs))
	for i, fe := range errs {
		parts[i] = fe.String()
	}
	return &Error{Code: Invalid, CodeMinor: "invaliddata", Message: what + ": " + strings.Join(parts, "; "), Details: errs}
}

// ErrorCode returns err's Code, Internal for errors that are not *Error.
func ErrorCode(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Internal
}

// IsNotFound reports whether err says the record does not exist (or is not visible).
func IsNotFound(err error) bool { return ErrorCode(err) == NotFound }
