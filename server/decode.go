package server

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/bootpilot/bootpilot/internal/host"
)

// decodeBody decodes a JSON object body (at most 1 MiB; an empty body is
// {}) into v, refusing unknown fields. Errors name the field: an unknown or
// read-only field, or a value of the wrong type.
func decodeBody(c *gin.Context, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(c.Writer, c.Request.Body, 1<<20))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	var te *json.UnmarshalTypeError
	switch {
	case err == nil, errors.Is(err, io.EOF):
		return nil
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			return host.Invalid("body", "not a JSON object")
		}
		return host.Invalid(field, "wrong type: want %s", te.Type)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return host.Invalid(field, "unknown or read-only field")
	default:
		return host.Invalid("body", "not a JSON object: %v", err)
	}
}
