// Package store is bootpilot's persistence layer: hosts with their MACs,
// profiles, audit events and admin API tokens, kept in SQLite (the embedded
// default, pure Go), MySQL/MariaDB or PostgreSQL (shared by replicas)
// through gorm. SQL Server is wired and its generated T-SQL checked against
// golden files (testdata/sqlserver), but not run against a server.
//
// Rows are unexported structs converted to the domain types of
// internal/host at the boundary; gorm errors are translated to the domain's
// sentinels (host.ErrNotFound, host.ErrConflict) and no gorm type escapes
// the package. The schema is created by explicit, versioned migrations
// recorded in schema_migrations and serialized between replicas (MySQL:
// GET_LOCK; PostgreSQL: pg_advisory_xact_lock; SQL Server: sp_getapplock;
// SQLite: the database's write lock).
//
// Every change to a host goes through [DB.UpdateHost], which reads the row
// locked, lets the caller change a copy, and writes it back with a
// compare-and-set on the version, together with its audit records, in one
// transaction. Concurrent boots and callbacks on different replicas therefore
// never double-flip a host.
package store
