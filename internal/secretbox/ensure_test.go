package secretbox_test

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/bootpilot/bootpilot/internal/secretbox"
)

// TestEnsureKeyFile: processes starting together on one directory end up
// with one key file (0600): exactly one makes it, all load it, and a later
// call loads it again.
func TestEnsureKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secret.key")
	const n = 8
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		ids     [n]string
		created [n]bool
		errs    [n]error
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			k, c, err := secretbox.EnsureKeyFile(path)
			if err == nil {
				ids[i] = k.ID()
			}
			created[i], errs[i] = c, err
		}()
	}
	close(start)
	wg.Wait()
	makers := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("process %d: %v", i, errs[i])
		}
		if created[i] {
			makers++
		}
		if ids[i] != ids[0] {
			t.Errorf("process %d loaded key %s, process 0 key %s", i, ids[i], ids[0])
		}
	}
	if makers != 1 {
		t.Errorf("%d processes report making the key, want exactly 1", makers)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v %v, want mode 0600", fi.Mode(), err)
	}
	k, c, err := secretbox.EnsureKeyFile(path)
	if err != nil || c || k.ID() != ids[0] {
		t.Errorf("EnsureKeyFile again = %v created %v err %v, want key %s, not created", k, c, err, ids[0])
	}
}
