package console

import (
	"errors"
	"strings"

	"github.com/bootpilot/bootpilot/internal/host"
)

// init adds the template helpers of the import, profile, image, audit and
// admin pages to funcs (before New parses the templates).
func init() {
	funcs["add"] = func(a, b int) int { return a + b }
	funcs["join"] = strings.Join
	funcs["fieldErr"] = fieldErr
}

// formErrors are a form's problems by field ("" for the form as a whole).
type formErrors map[string]string

// formError turns err into formErrors when it is about the input (a
// *host.ValidationError, or a conflict naming its field); any other error
// is returned for the error page.
func formError(err error) (formErrors, error) {
	var ve *host.ValidationError
	var fe interface{ FieldName() string }
	switch {
	case errors.As(err, &ve):
		return formErrors{ve.Field: ve.Reason}, nil
	case errors.As(err, &fe):
		return formErrors{fe.FieldName(): err.Error()}, nil
	}
	return nil, err
}

// fieldErr returns the problem with field in errs ("" when none): a
// template helper, {{with fieldErr .Data.Errors "name"}}.
func fieldErr(errs formErrors, field string) string { return errs[field] }
