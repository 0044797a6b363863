package main

import (
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/bootpilot/bootpilot/internal/config"
	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

// composeFile is the part of a compose file the test reads.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image       string            `yaml:"image"`
	Build       string            `yaml:"build"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Volumes     []string          `yaml:"volumes"`
	Ports       []string          `yaml:"ports"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
}

// composeVariants are the compose files in the repository root, with the
// database image each must run and the URL scheme bootpilot must use for it.
var composeVariants = []struct {
	file, image, scheme, user, password, database string
}{
	{"docker-compose.yml", "mariadb:", "mysql", "MARIADB_USER", "MARIADB_PASSWORD", "MARIADB_DATABASE"},
	{"docker-compose.postgres.yml", "postgres:", "postgres", "POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"},
}

// TestComposeFiles checks the compose files against the real CLI (no Docker
// engine runs here): every bootpilot service is built from the Dockerfile,
// whose entrypoint is `bootpilot serve` with flags serve has; every
// BOOTPILOT_* variable is the twin of a serve flag and parses; --db points
// at the compose database with its user, password and name; the data
// directory is a declared volume.
func TestComposeFiles(t *testing.T) {
	root := filepath.Join("..", "..")
	entry := dockerEntrypoint(t, filepath.Join(root, "Dockerfile"))
	if len(entry) < 2 || entry[0] != "bootpilot" || entry[1] != "serve" {
		t.Fatalf("Dockerfile ENTRYPOINT = %q, want bootpilot serve …", entry)
	}
	dataDir := parseServeFlags(t, "Dockerfile ENTRYPOINT", entry[2:], nil).Lookup("data-dir").Value.String()
	for _, v := range composeVariants {
		t.Run(v.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(root, v.file))
			if err != nil {
				t.Fatal(err)
			}
			var cf composeFile
			if err := yaml.Unmarshal(b, &cf); err != nil {
				t.Fatalf("parse: %v", err)
			}
			db, ok := cf.Services["db"]
			if !ok || !strings.HasPrefix(db.Image, v.image) || db.Healthcheck == nil {
				t.Fatalf("service db = %+v, want image %s… with a healthcheck", db, v.image)
			}
			var apps int
			for name, s := range cf.Services {
				if name == "db" {
					continue
				}
				apps++
				if s.Build != "." {
					t.Errorf("service %s: build %q, want . (the Dockerfile)", name, s.Build)
				}
				if s.DependsOn["db"].Condition != "service_healthy" {
					t.Errorf("service %s: does not wait for a healthy db", name)
				}
				env := map[string]string{}
				for k, val := range s.Environment {
					env[k] = expandDefault(val)
				}
				fs := parseServeFlags(t, name, append(slices.Clone(entry[2:]), s.Command...), env)
				dsn := fs.Lookup("db").Value.String()
				u, err := url.Parse(dsn)
				if err != nil || u.Scheme != v.scheme || u.Hostname() != "db" || u.User == nil ||
					u.User.Username() != db.Environment[v.user] || strings.TrimPrefix(u.Path, "/") != db.Environment[v.database] {
					t.Errorf("service %s: --db %q does not name service db's user %q and database", name, dsn, db.Environment[v.user])
				} else if p, _ := u.User.Password(); p != db.Environment[v.password] {
					t.Errorf("service %s: --db password differs from db's %s", name, v.password)
				}
				mounted := false
				for _, vol := range s.Volumes {
					src, dst, _ := strings.Cut(vol, ":")
					if _, ok := cf.Volumes[src]; !ok {
						t.Errorf("service %s: volume %s is not declared", name, src)
					}
					mounted = mounted || dst == dataDir
				}
				if !mounted {
					t.Errorf("service %s: no volume on --data-dir %s", name, dataDir)
				}
			}
			if apps < 2 {
				t.Errorf("%d bootpilot services, want 2 replicas on one database", apps)
			}
		})
	}
}

// parseServeFlags parses args and env as `bootpilot serve` would (flags,
// then BOOTPILOT_* twins), failing the test on an unknown flag or variable.
func parseServeFlags(t *testing.T, where string, args []string, env map[string]string) *pflag.FlagSet {
	t.Helper()
	cmd := newServeCmd()
	fs := cmd.Flags()
	if err := fs.Parse(args); err != nil {
		t.Fatalf("%s: serve %q: %v", where, args, err)
	}
	twins := map[string]string{}
	fs.VisitAll(func(f *pflag.Flag) { twins[config.EnvName(f.Name)] = f.Name })
	for k, v := range env {
		name, ok := twins[k]
		if !ok {
			if strings.HasPrefix(k, "BOOTPILOT_") {
				t.Errorf("%s: %s is no serve flag's twin", where, k)
			}
			continue
		}
		if !fs.Changed(name) {
			if err := fs.Set(name, v); err != nil {
				t.Errorf("%s: %s=%q: %v", where, k, v, err)
			}
		}
	}
	return fs
}

// expandDefault resolves compose's ${VAR:-default} to its default.
func expandDefault(s string) string {
	return regexp.MustCompile(`\$\{[A-Z_]+:-([^}]*)\}`).ReplaceAllString(s, "$1")
}

// dockerEntrypoint returns the exec-form ENTRYPOINT of a Dockerfile.
func dockerEntrypoint(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var entry []string
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "ENTRYPOINT "); ok {
			if err := json.Unmarshal([]byte(rest), &entry); err != nil {
				t.Fatalf("ENTRYPOINT %s: not exec form: %v", rest, err)
			}
		}
	}
	return entry
}
