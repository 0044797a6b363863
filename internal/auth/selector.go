package auth

import (
	"maps"
	"slices"
	"strings"

	"github.com/bootpilot/bootpilot/internal/host"
)

// Selector is a conjunction of label equalities, "team=lab,site=dc1"; the
// empty Selector matches every host.
type Selector map[string]string

// ParseSelector reads "team=lab,site=dc1" ("" is the empty Selector); a bad
// one is a *host.ValidationError for "hosts".
func ParseSelector(s string) (Selector, error) {
	sel := Selector{}
	if strings.TrimSpace(s) == "" {
		return sel, nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return nil, host.Invalid("hosts", "%q is not key=value (a selector looks like team=lab,site=dc1)", host.CleanText(kv, 64))
		}
		if err := host.CheckLabelKey("hosts", k); err != nil {
			return nil, err
		}
		if err := host.CheckLabelValue("hosts", k, v); err != nil {
			return nil, err
		}
		if old, dup := sel[k]; dup && old != v {
			return nil, host.Invalid("hosts", "label %s selected twice with different values", k)
		}
		sel[k] = v
	}
	return sel, nil
}

// String renders sel canonically, keys sorted: "site=dc1,team=lab".
func (sel Selector) String() string {
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(sel)) {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k + "=" + sel[k])
	}
	return b.String()
}

// Matches reports whether a host with these labels is selected.
func (sel Selector) Matches(labels map[string]string) bool {
	for k, v := range sel {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// selectorMatches parses s and matches it; a malformed selector matches
// nothing (grants are checked when made, so this is defence in depth).
func selectorMatches(s string, labels map[string]string) bool {
	sel, err := ParseSelector(s)
	return err == nil && sel.Matches(labels)
}

// selectorWithin reports whether every host inner selects is also selected
// by outer: outer's equalities are a subset of inner's.
func selectorWithin(inner, outer string) bool {
	in, err1 := ParseSelector(inner)
	out, err2 := ParseSelector(outer)
	if err1 != nil || err2 != nil {
		return false
	}
	for k, v := range out {
		if in[k] != v {
			return false
		}
	}
	return true
}
