// Package replica holds the replica fault tests: several real `bootpilot
// serve` processes on one MariaDB or PostgreSQL database, driven by
// iPXE-like clients through a boot storm while one replica is killed with
// SIGKILL and the database connection is cut, then checked through the API
// and the audit trail (every host ready once, no attempt served twice, no
// callback lost, no install script for a host that was not flagged).
//
// The package has no code of its own: everything is in its tests.
//
//	go test -count=1 -v ./replica/
//
// BOOTPILOT_FAULT_HOSTS sets the number of flagged hosts (default 1,000
// with CI=true, 200 otherwise). A missing database skips the test outside
// CI and fails it with CI=true.
package replica
