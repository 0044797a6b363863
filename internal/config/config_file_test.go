package config_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/bootpilot/bootpilot/internal/config"
)

// serveFlags is serve's flag set: the config's flags and --config.
func serveFlags(t *testing.T) (*config.Config, *pflag.FlagSet) {
	t.Helper()
	c := config.Default()
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	c.Bind(fs)
	fs.String(config.FlagConfig, "", "config file")
	return &c, fs
}

// MustWriteFile writes a config file and returns its path.
func MustWriteFile(tb testing.TB, text string) string {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), "bootpilot.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

// TestLoadPrecedence: flag > env > file > default, for every kind of flag.
func TestLoadPrecedence(t *testing.T) {
	path := MustWriteFile(t, `# bootpilot serve
external-url: https://boot.example.org:8443
max-connections: 100
log-level: debug
hold-seconds: 60
install-timeout: 3h
iso-unsigned: true
image-origin:
  - https://mirror.example.com
  - registry.example.com
image-max-size: 512MiB
`)
	c, fs := serveFlags(t)
	t.Setenv("BOOTPILOT_LOG_LEVEL", "warn")
	if err := fs.Parse([]string{"--config", path, "--hold-seconds", "30"}); err != nil {
		t.Fatal(err)
	}
	f, err := config.Load(fs)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if f == nil || f.Path != path {
		t.Errorf("Load = %+v, want the file %s", f, path)
	}
	for _, tc := range []struct {
		what      string
		got, want any
	}{
		{"external-url (file)", c.ExternalURL, "https://boot.example.org:8443"},
		{"max-connections (file)", c.MaxConnections, 100},
		{"log-level (env over file)", c.LogLevel, "warn"},
		{"hold-seconds (flag over file)", c.HoldSeconds, 30},
		{"install-timeout (file)", c.InstallTimeout.String(), "3h0m0s"},
		{"iso-unsigned (file)", c.ISOUnsigned, true},
		{"image-origin (file list)", strings.Join(c.ImageOrigins, " "), "https://mirror.example.com registry.example.com"},
		{"image-max-size (file)", c.ImageMaxSize, int64(512 << 20)},
		{"max-attempts (default)", c.MaxAttempts, config.Default().MaxAttempts},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %v, want %v", tc.what, tc.got, tc.want)
		}
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

// TestLoadEnvPath: BOOTPILOT_CONFIG names the file when --config is not
// given; no file at all is no error.
func TestLoadEnvPath(t *testing.T) {
	c, fs := serveFlags(t)
	if f, err := config.Load(fs); err != nil || f != nil {
		t.Fatalf("Load without a file = %v, %v; want nil, nil", f, err)
	}
	t.Setenv("BOOTPILOT_CONFIG", MustWriteFile(t, "max-connections: 200\n"))
	c, fs = serveFlags(t)
	if _, err := config.Load(fs); err != nil {
		t.Fatal(err)
	}
	if c.MaxConnections != 200 {
		t.Errorf("max-connections = %d, want 200 from $BOOTPILOT_CONFIG", c.MaxConnections)
	}
}

// TestLoadRefuses: a bad file fails with FILE:LINE and the reason, even
// when a flag overrides the bad setting.
func TestLoadRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		args       []string
		line       int
		reason     string
	}{
		{"unknown key", "listen: :8443\nexternal-uri: https://x:8443\n", nil, 2, `unknown key "external-uri"`},
		{"underscore", "external_url: https://x:8443\n", nil, 1, `did you mean "external-url"?`},
		{"flag spelling", "--listen: :8443\n", nil, 1, `did you mean "listen"?`},
		{"bad int", "hold-seconds: 30\nmax-connections: lots\n", nil, 2, "max-connections: "},
		{"bad duration", "install-timeout: 2 hours\n", nil, 1, "install-timeout: "},
		{"bad bool", "iso-unsigned: maybe\n", nil, 1, "iso-unsigned: "},
		{"bad size", "image-max-size: huge\n", nil, 1, "image-max-size: "},
		{"overridden bad value", "max-connections: lots\n", []string{"--max-connections", "100"}, 1, "max-connections: "},
		{"twice", "listen: :8443\nlisten: :9443\n", nil, 2, "listen given twice (first on line 1)"},
		{"list for one value", "listen:\n  - :8443\n", nil, 1, "takes one value, not a list"},
		{"mapping", "listen:\n  port: 8443\n", nil, 1, "not a mapping"},
		{"no value", "listen:\n", nil, 1, "listen: no value"},
		{"config in config", "config: other.yaml\n", nil, 1, "cannot name another"},
		{"not a mapping", "- listen\n", nil, 1, `want "key: value" lines`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := MustWriteFile(t, tc.text)
			_, fs := serveFlags(t)
			if err := fs.Parse(append([]string{"--config", path}, tc.args...)); err != nil {
				t.Fatal(err)
			}
			_, err := config.Load(fs)
			if err == nil {
				t.Fatalf("Load accepted %q", tc.text)
			}
			prefix := path + ":" + string(rune('0'+tc.line)) + ": "
			if !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("Load(%q) = %q, want %q…%q", tc.text, err, prefix, tc.reason)
			}
		})
	}
	_, fs := serveFlags(t)
	path := MustWriteFile(t, "listen: [unclosed\n")
	if err := fs.Parse([]string{"--config", path}); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(fs); err == nil || !strings.HasPrefix(err.Error(), path+": ") || !strings.Contains(err.Error(), "line") {
		t.Errorf("Load(bad YAML) = %v, want the file and the parser's line", err)
	}
}

// TestFileExplain: a value that parses but that Validate refuses is
// pointed at its line; errors about other settings are left alone.
func TestFileExplain(t *testing.T) {
	path := MustWriteFile(t, "listen: 127.0.0.1:9443\nmax-connections: 5\nexternal-url: http://boot.example.org\n")
	c, fs := serveFlags(t)
	if err := fs.Parse([]string{"--config", path}); err != nil {
		t.Fatal(err)
	}
	f, err := config.Load(fs)
	if err != nil {
		t.Fatal(err)
	}
	err = f.Explain(c.Validate())
	if err == nil || !strings.HasPrefix(err.Error(), path+":3: --external-url") {
		t.Errorf("Validate = %v, want %s:3: --external-url …", err, path)
	}
	c.ExternalURL = "https://boot.example.org"
	err = f.Explain(c.Validate())
	if err == nil || !strings.HasPrefix(err.Error(), path+":2: --max-connections 5") {
		t.Errorf("Validate = %v, want %s:2: --max-connections 5 …", err, path)
	}
	c.MaxConnections, c.MaxAttempts = 100, 0
	err = f.Explain(c.Validate())
	if err == nil || strings.HasPrefix(err.Error(), path) {
		t.Errorf("Validate = %v, want an error about --max-attempts without the file's name", err)
	}
	if got := (*config.File)(nil).Explain(os.ErrClosed); got != os.ErrClosed {
		t.Errorf("nil File: Explain = %v", got)
	}
}

// TestFileKeysAreFlags: every flag of serve is a key of the file (one list
// of keys), and the file accepts each flag's default as a value.
func TestFileKeysAreFlags(t *testing.T) {
	_, fs := serveFlags(t)
	var text strings.Builder
	var names []string
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Name == config.FlagConfig {
			return
		}
		names = append(names, f.Name)
		v := f.DefValue
		if v == "[]" {
			v = "[]"
		} else {
			v = `"` + strings.ReplaceAll(v, `"`, `\"`) + `"`
		}
		text.WriteString(f.Name + ": " + v + "\n")
	})
	if !slices.Contains(names, "external-url") || !slices.Contains(names, "max-connections") || len(names) < 20 {
		t.Fatalf("serve's flags: %v", names)
	}
	path := MustWriteFile(t, text.String())
	_, fs = serveFlags(t)
	if err := fs.Parse([]string{"--config", path}); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(fs); err != nil {
		t.Errorf("a file of every flag with its default: %v\n%s", err, text.String())
	}
}
