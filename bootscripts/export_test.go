package bootscripts

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
