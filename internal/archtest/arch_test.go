package archtest_test

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/bootpilot/bootpilot"

type pkg struct {
	ImportPath string
	Doc        string
	Name       string
	Deps       []string
	Imports    []string
	GoFiles    []string
}

func list(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", mod+"/...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var ps []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	if len(ps) < 5 {
		t.Fatalf("go list found only %d packages", len(ps))
	}
	return ps
}

func within(path, root string) bool {
	return path == mod+"/"+root || strings.HasPrefix(path, mod+"/"+root+"/")
}

// TestDependencyDirection enforces DESIGN §6 over the transitive imports.
func TestDependencyDirection(t *testing.T) {
	for _, p := range list(t) {
		for _, d := range p.Deps {
			if within(p.ImportPath, "internal/host") && strings.HasPrefix(d, mod+"/") {
				t.Errorf("%s imports %s: the domain imports nothing of ours", p.ImportPath, d)
			}
		}
		for _, imp := range p.Imports {
			if strings.HasPrefix(imp, "gorm.io/") && !within(p.ImportPath, "internal/store") {
				t.Errorf("%s imports %s: only internal/store may use gorm", p.ImportPath, imp)
			}
			if strings.HasPrefix(imp, "github.com/stmcginnis/gofish") && !within(p.ImportPath, "internal/redfish") {
				t.Errorf("%s imports %s: only internal/redfish may use gofish", p.ImportPath, imp)
			}
			if strings.HasPrefix(imp, "github.com/go-ldap/") && !within(p.ImportPath, "internal/auth") {
				t.Errorf("%s imports %s: only internal/auth may use go-ldap", p.ImportPath, imp)
			}
			if within(p.ImportPath, "internal/auth") && (imp == mod+"/internal/provision" || imp == mod+"/internal/store") {
				t.Errorf("%s imports %s: internal/auth knows no core and no database", p.ImportPath, imp)
			}
			if within(p.ImportPath, "internal") && (imp == mod+"/server" || strings.HasPrefix(imp, mod+"/cmd")) {
				t.Errorf("%s imports %s: dependencies point down (cmd → server → internal)", p.ImportPath, imp)
			}
			if within(p.ImportPath, "server") && strings.HasPrefix(imp, mod+"/cmd") {
				t.Errorf("%s imports %s", p.ImportPath, imp)
			}
		}
	}
}

// TestPackageDocs: every package has a package comment.
func TestPackageDocs(t *testing.T) {
	for _, p := range list(t) {
		if len(p.GoFiles) > 0 && strings.TrimSpace(p.Doc) == "" {
			t.Errorf("%s has no package comment", p.ImportPath)
		}
	}
}
