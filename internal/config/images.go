package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/images"
)

// bindImages registers the image cache's source policy flags.
func (c *Config) bindImages(fs *pflag.FlagSet) {
	fs.StringSliceVar(&c.ImageOrigins, "image-origin", c.ImageOrigins,
		"where remote images may be fetched from: https://HOST[:PORT], http://HOST[:PORT] or a registry HOST[:PORT] (repeat or comma-separate; default none: remote fetches are refused)")
	fs.BoolVar(&c.ImageAllowPrivate, "image-allow-private", c.ImageAllowPrivate,
		"let image fetches connect to loopback, private, link-local, CGNAT and ULA addresses (checked on the address actually dialled)")
	fs.StringSliceVar(&c.ImageImportDirs, "image-import-dir", c.ImageImportDirs,
		"directory whose files the API may import by path (/abs/path or file://); never the data dir (repeat or comma-separate; default none)")
	fs.Var((*byteSize)(&c.ImageMaxSize), "image-max-size", "largest image blob fetched or uploaded, e.g. 64GiB, 512MiB or bytes")
}

// validateImages checks the --image-* flags. An import directory must not
// be, hold or lie inside the data directory or a key file: whatever can be
// imported by path can be read back by anyone through /images/v1.
func (c *Config) validateImages() error {
	if c.ImageMaxSize < 1 {
		return fmt.Errorf("--image-max-size must be at least 1 byte")
	}
	if err := images.CheckOrigins(c.ImageOrigins); err != nil {
		return flagError("image-origin", err)
	}
	protected := []string{c.DataDir, c.SecretKeyFile, c.DBKey}
	if p, ok := strings.CutPrefix(c.DB, "sqlite:"); ok {
		p, _, _ = strings.Cut(p, "?")
		protected = append(protected, p)
	}
	if err := images.CheckImportDirs(c.ImageImportDirs, protected...); err != nil {
		return flagError("image-import-dir", err)
	}
	return nil
}

// flagError names flag in err: "--image-origin: …".
func flagError(flag string, err error) error {
	var ve *host.ValidationError
	if errors.As(err, &ve) {
		return fmt.Errorf("--%s: %s", flag, ve.Reason)
	}
	return fmt.Errorf("--%s: %w", flag, err)
}

// byteSize is an int64 flag that takes a binary unit: "64GiB", "512MiB",
// "1048576".
type byteSize int64

var byteUnits = []struct {
	suffix string
	shift  uint
}{
	{"tib", 40}, {"gib", 30}, {"mib", 20}, {"kib", 10},
	{"t", 40}, {"g", 30}, {"m", 20}, {"k", 10}, {"b", 0},
}

func (b *byteSize) Set(s string) error {
	t := strings.ToLower(strings.TrimSpace(s))
	var shift uint
	for _, u := range byteUnits {
		if num, ok := strings.CutSuffix(t, u.suffix); ok {
			t, shift = strings.TrimSpace(num), u.shift
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)>>shift {
		return fmt.Errorf("%q is not a size (want e.g. 64GiB, 512MiB or a number of bytes)", s)
	}
	*b = byteSize(n << shift)
	return nil
}

func (b *byteSize) String() string {
	n := int64(*b)
	for _, u := range byteUnits[:4] {
		if n != 0 && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + strings.ToUpper(u.suffix[:1]) + "iB"
		}
	}
	return strconv.FormatInt(n, 10)
}

func (b *byteSize) Type() string { return "size" }
