// Package host is bootpilot's domain: hosts, profiles, their validation, the
// host lifecycle as a pure state machine, and the error vocabulary shared by
// every layer. It imports only the standard library and never does I/O.
package host
