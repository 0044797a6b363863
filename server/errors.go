package server

import (
	"context"
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/bootpilot/bootpilot/bootscripts"
	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/provision"
	"github.com/bootpilot/bootpilot/internal/redfish"
)

// errorBody is every error answer of the admin API.
type errorBody struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

// status maps an error to its HTTP status: the one table.
func status(err error) int {
	var ve *host.ValidationError
	switch {
	case errors.As(err, &ve):
		return http.StatusBadRequest
	case errors.Is(err, host.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, host.ErrConflict), errors.Is(err, host.ErrInvalidTransition):
		return http.StatusConflict
	case errors.Is(err, host.ErrUnauthorized), errors.Is(err, auth.ErrInvalidCredentials):
		return http.StatusUnauthorized
	case errors.Is(err, auth.ErrThrottled):
		return http.StatusTooManyRequests
	case errors.Is(err, auth.ErrDirectoryDown), errors.Is(err, provision.ErrUnavailable):
		return http.StatusServiceUnavailable
	case errors.Is(err, host.ErrForbidden), errors.Is(err, host.ErrStaleToken):
		return http.StatusForbidden
	case errors.As(err, new(provision.ErrNotConfigured)):
		return http.StatusNotImplemented
	case errors.As(err, new(provision.ErrBMCUnsupported)):
		return http.StatusConflict // the BMC lacks what the call needs; the message names it and the manual way
	case errors.Is(err, bootscripts.ErrBusy):
		return http.StatusServiceUnavailable // every user-template render slot is taken; retry
	case errors.As(err, new(*redfish.Error)), errors.Is(err, context.DeadlineExceeded):
		return http.StatusBadGateway // the BMC failed; its answer is in the message
	default:
		return http.StatusInternalServerError
	}
}

// fail renders err as JSON; a 500 is logged with details and sent without.
func (s *Server) fail(c *gin.Context, err error) {
	code := status(err)
	body := errorBody{Error: err.Error()}
	var ve *host.ValidationError
	var fe interface{ FieldName() string } // *host.ConflictError, *host.ProfileError
	switch {
	case errors.As(err, &ve):
		body = errorBody{Error: ve.Reason, Field: ve.Field}
	case errors.As(err, &fe):
		body.Field = fe.FieldName()
	}
	switch {
	case errors.Is(err, auth.ErrInvalidCredentials):
		body = errorBody{Error: "invalid credentials"} // the same for every reason
	case errors.Is(err, auth.ErrDirectoryDown):
		s.log.Warn("login: directory unavailable", "request_id", requestID(c), "err", err)
		body = errorBody{Error: "the directory cannot be reached; try again later (existing sessions and tokens keep working)"}
	}
	if code == http.StatusInternalServerError {
		s.log.Error("request failed", "method", c.Request.Method, "route", c.FullPath(),
			"request_id", requestID(c), "err", err)
		body = errorBody{Error: "internal error (request id " + requestID(c) + ")"}
	}
	if c.GetBool("html") {
		c.Abort()
		s.console.RenderError(c, code, body.Error)
		return
	}
	c.AbortWithStatusJSON(code, body)
}
