package host

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every layer wraps these; the server maps them to HTTP
// status codes through one table.
var (
	// ErrNotFound means the named host, profile or token does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict means the object already exists or was changed concurrently
	// (a lost compare-and-set).
	ErrConflict = errors.New("conflict")
	// ErrInvalidTransition means the event is not allowed in the current state.
	ErrInvalidTransition = errors.New("invalid state transition")
	// ErrUnauthorized means credentials are missing or wrong.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrForbidden means the credentials are valid but not allowed to do this.
	ErrForbidden = errors.New("forbidden")
	// ErrStaleToken means a callback token belongs to an attempt that is over.
	ErrStaleToken = errors.New("stale token")
)

// ValidationError reports one bad input field.
type ValidationError struct {
	Field  string // "ipv4"
	Reason string // "not a CIDR address"
}

func (e *ValidationError) Error() string {
	if e.Field == "" {
		return e.Reason
	}
	return fmt.Sprintf("%s: %s", e.Field, e.Reason)
}

// Invalid returns a *ValidationError for field.
func Invalid(field, format string, args ...any) error {
	return &ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)}
}
