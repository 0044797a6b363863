package bootscripts

import (
	"fmt"
	"reflect"
	"strings"
)

// TemplatesFS exposes the embedded templates to the external tests.
var TemplatesFS = templatesFS

// TemplateFor returns the embedded template that renders file ("" for the
// script) for d, or "" when none does (localboot, a profile's own config).
func TemplateFor(d ScriptData, file string) string {
	if file == "" {
		n, _ := scriptTemplateFor(d.Action)
		return n
	}
	n, replaceable, _ := configTemplateFor(d.Profile.Installer, file)
	if replaceable && d.Profile.Config != "" {
		return ""
	}
	return n
}

// ScriptBypassingValidation renders d's script as Script does, but sets the
// view's field (a scriptView field name; "Initrds.URL" and "Initrds.Name" for
// the first initrd) to val after validation, as a value that got past the
// validators would reach the template. Only the positive check in render
// stands between val and the script.
func ScriptBypassingValidation(r *Renderer, d ScriptData, field, val string) (string, error) {
	name, err := scriptTemplateFor(d.Action)
	if err != nil {
		return "", err
	}
	v, err := newScriptView(d)
	if err != nil {
		return "", err
	}
	switch field {
	case "Initrds.URL":
		v.Initrds[0].URL = val
	case "Initrds.Name":
		v.Initrds[0].Name = val
	default:
		reflect.ValueOf(v).Elem().FieldByName(field).SetString(val)
	}
	b, err := r.render(name, v)
	return string(b), err
}

// PlaceholdersCoverEveryField fails unless placeholders replaces every
// string of a scriptView (nested ones included) by a placeholder word.
func PlaceholdersCoverEveryField() error {
	v := &scriptView{}
	var walk func(rv reflect.Value, path string, visit func(reflect.Value, string))
	walk = func(rv reflect.Value, path string, visit func(reflect.Value, string)) {
		switch rv.Kind() {
		case reflect.String:
			visit(rv, path)
		case reflect.Struct:
			for i := range rv.NumField() {
				walk(rv.Field(i), path+"."+rv.Type().Field(i).Name, visit)
			}
		case reflect.Slice:
			if rv.Len() == 0 && rv.CanSet() {
				rv.Set(reflect.MakeSlice(rv.Type(), 1, 1)) // every slice field gets an element to check
			}
			for i := range rv.Len() {
				walk(rv.Index(i), fmt.Sprintf("%s[%d]", path, i), visit)
			}
		}
	}
	walk(reflect.ValueOf(v).Elem(), "", func(s reflect.Value, path string) { s.SetString("value" + path) })
	pv, _ := placeholders(v)
	var missed []string
	walk(reflect.ValueOf(&pv).Elem(), "", func(s reflect.Value, path string) {
		if !strings.HasPrefix(s.String(), placeholderMark) {
			missed = append(missed, path)
		}
	})
	if missed != nil {
		return fmt.Errorf("placeholders leaves %v as they are", missed)
	}
	return nil
}
