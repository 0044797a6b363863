package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// sqliteMode is the mode of a SQLite database and its -wal and -shm files:
// rows hold token hashes and sealed BMC passwords, so only the owner reads
// them, whatever the umask.
const sqliteMode = 0o600

// sqlitePath returns the file path of a SQLite connection string made by
// sqliteDSN.
func sqlitePath(conn string) string {
	path, _, _ := strings.Cut(conn, "?")
	return path
}

// createSQLiteFile creates the database file at path with sqliteMode unless
// it exists. SQLite then creates the -wal and -shm files with the same mode.
func createSQLiteFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, sqliteMode)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("store: create %s: %w", path, err)
	}
	err = f.Chmod(sqliteMode) // the umask may have taken bits from the owner
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("store: create %s: %w", path, err)
	}
	return nil
}

// restrictSQLiteFiles sets sqliteMode on the database file at path and on
// its -wal and -shm files where any of them is open to the group or others
// (a database made before bootpilot set modes, or copied in).
func restrictSQLiteFiles(path string) error {
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("store: %w", err)
		}
		if fi.Mode().Perm()&0o077 == 0 {
			continue
		}
		if err := os.Chmod(p, sqliteMode); err != nil {
			return fmt.Errorf("store: %s is readable by others (mode %04o) and cannot be restricted: %w", p, fi.Mode().Perm(), err)
		}
	}
	return nil
}
