// Package bootscripts renders what a host runs after its embedded stage-0
// script has chained to the server: the stage-1 iPXE script for the host's
// boot action (install, clean, hold, localboot) and the installer configs the
// installers fetch (kickstart ks.cfg, Debian preseed.cfg, Ubuntu autoinstall
// user-data and meta-data).
//
// Templates are files under templates/, embedded and parsed once by New with
// missingkey=error, and fed typed structs (scriptView, ConfigData). iPXE has
// no quoting, so every value that reaches a script is re-checked here with
// host.CheckWord, host.CheckURL and host.CheckCmdline before rendering, even
// though the host and profile were validated when they were saved; any
// failure is an error, and the server then serves Localboot. Rendering goes
// to a buffer first, so a failed render never writes half a script. The
// rendered script is then checked positively (scriptcheck.go): parsed with
// iPXE's own rules (internal/ipxescript), it must equal the parse of the same
// template rendered with a placeholder word for every value, each value being
// exactly one plain token (the command line: its words).
//
// A profile's own installer config is a user template: it is rendered with
// a vetted function set under an operation, memory, output and time budget,
// a few at a time (budget.go), when the profile is saved and when the config
// is served, and its output must be text (no control, format or bidi
// characters but tab, newline and CR; valid UTF-8).
//
// Kernel command lines carry the host's static network configuration to the
// next stage (dracut ip=/ifname=/nameserver=, d-i netcfg/*, initramfs-tools
// ip= + BOOTIF=, bootpilot.* for the agent), so no hop uses DHCP.
//
// Golden files under testdata/ pin every template's output; refresh them
// with `go test ./bootscripts -run Golden -update`. FuzzScriptInjection shows
// no host or profile field can add an iPXE command, operator or kernel
// argument.
package bootscripts
