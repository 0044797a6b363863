package store

import (
	"encoding/json"

	"github.com/bootpilot/bootpilot/internal/auth"
)

// encodeGrants renders grants as a JSON array ("[]" for none).
func encodeGrants(g []auth.Grant) string {
	if len(g) == 0 {
		return "[]"
	}
	b, _ := json.Marshal(g) // strings only: always marshals
	return string(b)
}

// decodeGrants reads what encodeGrants wrote; none read back as nil.
func decodeGrants(s string) []auth.Grant {
	var g []auth.Grant
	if s == "" || json.Unmarshal([]byte(s), &g) != nil || len(g) == 0 {
		return nil
	}
	return g
}
