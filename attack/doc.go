// Package attack is the outside attack run against bootpilot, kept as a
// test suite: it builds ./cmd/bootpilot once, starts `bootpilot serve` as a
// subprocess on loopback with a fresh data directory, and attacks it the way
// an outsider (or a careless admin) would — plain net/http and crypto/tls
// clients, raw TLS sockets for slow bodies, and the CLI binary for what
// reaches a terminal. Nothing in it imports the server: it sees only what
// the binary answers, logs and writes to disk.
//
// It covers the findings of the hardening issue: local-path and SSRF image
// fetches and digest disclosure, iPXE command injection through profiles,
// template DoS, plain-HTTP BMCs, slow and oversized request bodies, callback
// and boot-side checks, terminal escapes reaching the CLI, CSV memory, file
// modes, TLS suites and security headers, and a table of hostile values ×
// every field that reaches a script, config, log line or terminal.
//
// Run it against any build, for example an older release, by pointing
// BOOTPILOT_ATTACK_BIN at that binary (used for the server and the CLI):
//
//	go build -o /tmp/bootpilot-old ./cmd/bootpilot   # in a checkout of the old commit
//	BOOTPILOT_ATTACK_BIN=/tmp/bootpilot-old go test -count=1 ./attack/
//
// Every test names the finding it covers; each one fails on the code before
// the hardening fixes (c40d6ce). Only 127.0.0.0/8 is used.
package attack
