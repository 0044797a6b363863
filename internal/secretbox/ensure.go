package secretbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// EnsureKeyFile loads the key file at path, or writes a fresh key there
// (mode 0600) when it does not exist and reports created. Processes sharing
// the directory do not race: the key is written to a temporary file that is
// then hard-linked to path, which fails if another process published first;
// the loser loads the winner's key, and nobody reads a half-written file.
func EnsureKeyFile(path string) (key *Key, created bool, err error) {
	key, err = LoadKeyFile(path)
	if !errors.Is(err, os.ErrNotExist) {
		return key, false, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-key-*")
	if err != nil {
		return nil, false, fmt.Errorf("secretbox: write key file: %w", err)
	}
	defer os.Remove(tmp.Name())
	err = tmp.Chmod(0o600)
	if err == nil {
		_, err = tmp.WriteString(GenerateKey() + "\n")
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Link(tmp.Name(), path)
		created = err == nil
		if errors.Is(err, os.ErrExist) {
			err = nil // another process made it first: use that one
		}
	}
	if err != nil {
		return nil, false, fmt.Errorf("secretbox: write key file: %w", err)
	}
	key, err = LoadKeyFile(path)
	return key, created, err
}
