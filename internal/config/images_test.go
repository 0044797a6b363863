package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/bootpilot/bootpilot/internal/config"
	"github.com/bootpilot/bootpilot/internal/images"
)

func TestImageDefaults(t *testing.T) {
	c := config.Default()
	if c.ImageMaxSize != images.DefaultMaxSize || len(c.ImageOrigins) != 0 || len(c.ImageImportDirs) != 0 || c.ImageAllowPrivate {
		t.Errorf("image defaults: max %d origins %v import %v private %v; want 64 GiB and nothing allowed",
			c.ImageMaxSize, c.ImageOrigins, c.ImageImportDirs, c.ImageAllowPrivate)
	}
}

func TestImageFlags(t *testing.T) {
	c := config.Default()
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	c.Bind(fs)
	t.Setenv("BOOTPILOT_IMAGE_IMPORT_DIR", "/srv/a,/srv/b")
	t.Setenv("BOOTPILOT_IMAGE_MAX_SIZE", "512MiB")
	err := fs.Parse([]string{"--image-origin", "https://mirror.example.com", "--image-origin", "registry.example.com:5000,http://10.0.0.9",
		"--image-allow-private"})
	if err != nil {
		t.Fatal(err)
	}
	if err := config.EnvOverlay(fs); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(c.ImageOrigins, " "), "https://mirror.example.com registry.example.com:5000 http://10.0.0.9"; got != want {
		t.Errorf("--image-origin = %q, want %q", got, want)
	}
	if got, want := strings.Join(c.ImageImportDirs, " "), "/srv/a /srv/b"; got != want {
		t.Errorf("BOOTPILOT_IMAGE_IMPORT_DIR = %q, want %q", got, want)
	}
	if c.ImageMaxSize != 512<<20 || !c.ImageAllowPrivate {
		t.Errorf("max size %d private %v, want %d true", c.ImageMaxSize, c.ImageAllowPrivate, 512<<20)
	}
	for in, want := range map[string]int64{"64GiB": 64 << 30, "1k": 1024, "100": 100, "2 TiB": 2 << 40, "10b": 10} {
		if err := fs.Set("image-max-size", in); err != nil || c.ImageMaxSize != want {
			t.Errorf("--image-max-size %s = %d, %v; want %d", in, c.ImageMaxSize, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1.5G", "64GB", "lots", "99999999999TiB"} {
		if err := fs.Set("image-max-size", in); err == nil {
			t.Errorf("--image-max-size %q accepted", in)
		}
	}
	if got := fs.Lookup("image-max-size").DefValue; got != "64GiB" {
		t.Errorf("--image-max-size default shown as %q, want 64GiB", got)
	}
}

func TestValidateImageImportDir(t *testing.T) {
	root := t.TempDir()
	data := filepath.Join(root, "data")
	other := filepath.Join(root, "import")
	for _, d := range []string{filepath.Join(data, "images"), other} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			t.Fatal(err)
		}
	}
	key := filepath.Join(root, "keys", "secret.key")
	os.MkdirAll(filepath.Dir(key), 0o700)
	os.WriteFile(key, []byte("k"), 0o600)
	file := filepath.Join(root, "file")
	os.WriteFile(file, nil, 0o600)
	link := filepath.Join(root, "link-to-data")
	if err := os.Symlink(data, link); err != nil {
		t.Fatal(err)
	}
	valid := func(dirs ...string) error {
		c := config.Default()
		c.DataDir, c.SecretKeyFile, c.ImageImportDirs = data, key, dirs
		return c.Validate()
	}
	if err := valid(other); err != nil {
		t.Errorf("import dir %s: %v", other, err)
	}
	for name, dir := range map[string]string{
		"the data dir":         data,
		"inside the data dir":  filepath.Join(data, "images"),
		"holding the data dir": root,
		"a link to it":         link,
		"unclean into it":      other + "/../data",
		"holding the key":      filepath.Dir(key),
		"relative":             "import",
		"missing":              filepath.Join(root, "missing"),
		"a file":               file,
		"the root":             "/",
	} {
		err := valid(dir)
		if err == nil || !strings.HasPrefix(err.Error(), "--image-import-dir: ") {
			t.Errorf("import dir %s (%s): Validate = %v, want an error on --image-import-dir", name, dir, err)
		}
	}
	// A relative data dir is compared as an absolute one.
	t.Chdir(root)
	c := config.Default()
	c.DataDir, c.ImageImportDirs = "data", []string{data}
	if err := c.Validate(); err == nil {
		t.Error("import dir = the relative data dir: Validate accepted it")
	}
}

func TestValidateImageOrigins(t *testing.T) {
	for _, o := range []string{"ftp://x", "https://u:p@x", "https://x/path", "https://x?sig=1", "https://x:0"} {
		c := config.Default()
		c.ImageOrigins = []string{o}
		err := c.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), "--image-origin: ") {
			t.Errorf("--image-origin %q: Validate = %v, want an error on --image-origin", o, err)
		}
		if err != nil && strings.Contains(err.Error(), "u:p@") {
			t.Errorf("error %q repeats the credentials", err)
		}
	}
	c := config.Default()
	c.ImageMaxSize = 0
	if err := c.Validate(); err == nil {
		t.Error("--image-max-size 0 accepted")
	}
}
