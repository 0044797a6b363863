package secretbox

// BMCPasswordContext is the context a BMC password is sealed under: it
// binds the sealed value to host name's BMC record, so it does not open when
// copied to another host's. Stored values depend on it: never change it.
func BMCPasswordContext(name string) string { return "bmc-password:" + name }
