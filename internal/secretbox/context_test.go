package secretbox_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/bootpilot/bootpilot/internal/secretbox"
)

// TestBMCPasswordContext: passwords sealed under the context string used
// before BMCPasswordContext existed still open, and a password sealed for
// one host does not open as another's.
func TestBMCPasswordContext(t *testing.T) {
	k, err := secretbox.NewKey(bytes.Repeat([]byte{3}, secretbox.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	ring := secretbox.NewKeyring(k)
	stored := ring.Seal([]byte("hunter2"), "bmc-password:node01") // as earlier releases sealed it
	got, err := ring.Open(stored, secretbox.BMCPasswordContext("node01"))
	if err != nil || string(got) != "hunter2" {
		t.Errorf("Open(stored, BMCPasswordContext(node01)) = %q, %v, want hunter2", got, err)
	}
	if _, err := ring.Open(stored, secretbox.BMCPasswordContext("node02")); !errors.Is(err, secretbox.ErrDecrypt) {
		t.Errorf("Open(node01's password, BMCPasswordContext(node02)) error = %v, want ErrDecrypt", err)
	}
}
