package host

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
)

// Labels are a host's key=value tags, {"team":"lab","site":"dc1"}: grants
// select hosts by them. Keys and values use a small alphabet so that the CSV
// form (team=lab;site=dc1) and the selector form (team=lab,site=dc1) need no
// quoting and no value can carry a metacharacter anywhere.
type Labels = map[string]string

// MaxLabels bounds the labels of one host.
const MaxLabels = 32

var (
	labelKeyRE   = regexp.MustCompile(`^[a-z0-9]([a-z0-9._/-]{0,61}[a-z0-9])?$`)
	labelValueRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$`)
)

// CheckLabelKey validates one label key ("team", "example.org/site").
func CheckLabelKey(field, k string) error {
	if !labelKeyRE.MatchString(k) {
		return Invalid(field, "label key %q: 1-63 of a-z 0-9 . _ / -, starting and ending with a letter or digit", CleanText(k, 64))
	}
	return nil
}

// CheckLabelValue validates one label value ("lab", "DC-1").
func CheckLabelValue(field, k, v string) error {
	if !labelValueRE.MatchString(v) {
		return Invalid(field, "label %s: value %q: 1-63 of A-Z a-z 0-9 . _ -, starting and ending with a letter or digit", k, CleanText(v, 64))
	}
	return nil
}

// CheckLabels validates a host's labels.
func CheckLabels(l Labels) error {
	if len(l) > MaxLabels {
		return Invalid("labels", "%d labels; at most %d", len(l), MaxLabels)
	}
	for _, k := range slices.Sorted(maps.Keys(l)) {
		if err := CheckLabelKey("labels", k); err != nil {
			return err
		}
		if err := CheckLabelValue("labels", k, l[k]); err != nil {
			return err
		}
	}
	return nil
}

// ParseLabels reads the CSV form "team=lab;site=dc1" ("" is no labels).
func ParseLabels(s string) (Labels, error) {
	l := Labels{}
	if strings.TrimSpace(s) == "" {
		return l, nil
	}
	for _, kv := range strings.Split(s, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return nil, Invalid("labels", "%q is not key=value (labels look like team=lab;site=dc1)", CleanText(kv, 64))
		}
		if _, dup := l[k]; dup {
			return nil, Invalid("labels", "label %s given twice", CleanText(k, 64))
		}
		l[k] = v
	}
	if err := CheckLabels(l); err != nil {
		return nil, err
	}
	return l, nil
}

// FormatLabels renders l in the CSV form, keys sorted: "site=dc1;team=lab".
func FormatLabels(l Labels) string {
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(l)) {
		if i > 0 {
			b.WriteByte(';')
		}
		fmt.Fprintf(&b, "%s=%s", k, l[k])
	}
	return b.String()
}
