package images

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/bootpilot/bootpilot/internal/host"
)

// importDir is one of Cache.ImportDirs: as configured (cleaned) and with
// its symbolic links resolved.
type importDir struct {
	dir  string // "/srv/images"
	real string // "/mnt/images" when /srv/images links there
}

// CheckImportDirs checks dirs as Cache.ImportDirs wants them: absolute,
// existing directories. None may be, hold or lie inside a protected path
// (the data directory, key files): a file that can be imported by path can
// be read back by anyone through /images/v1.
func CheckImportDirs(dirs []string, protected ...string) error {
	_, err := resolveImportDirs(dirs, protected...)
	return err
}

// resolveImportDirs is CheckImportDirs that also returns the resolved dirs.
func resolveImportDirs(dirs []string, protected ...string) ([]importDir, error) {
	var guard []string
	for _, p := range protected {
		if p == "" {
			continue
		}
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, fmt.Errorf("images: %s: %w", p, err)
		}
		guard = append(guard, abs)
		if real, err := filepath.EvalSymlinks(abs); err == nil {
			guard = append(guard, real)
		}
	}
	var out []importDir
	for _, d := range dirs {
		if !filepath.IsAbs(d) {
			return nil, host.Invalid("image-import-dir", "%q must be an absolute path", d)
		}
		d = filepath.Clean(d)
		real, err := filepath.EvalSymlinks(d)
		if err != nil {
			return nil, host.Invalid("image-import-dir", "%s does not exist or cannot be resolved", d)
		}
		if fi, err := os.Stat(real); err != nil || !fi.IsDir() {
			return nil, host.Invalid("image-import-dir", "%s is not a directory", d)
		}
		for _, g := range guard {
			for _, x := range []string{d, real} {
				if x == g || within(x, g) || within(g, x) {
					return nil, host.Invalid("image-import-dir", "%s overlaps %s, which must never be served", d, g)
				}
			}
		}
		out = append(out, importDir{dir: d, real: real})
	}
	return out, nil
}

// within reports whether path p lies strictly below dir; both must be clean
// and absolute.
func within(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

// localFile is a file source: the import directory it is in and its path
// relative to that directory's resolved form.
type localFile struct {
	path string // as named, cleaned: "/srv/images/disk.raw"
	root string // resolved import dir: "/mnt/images"
	rel  string // "disk.raw"
}

// localSource turns a "/abs/path" or "file:///abs/path" ref into a file
// below one of the import directories. Anything else is refused before the
// file system is looked at, so the answer tells nothing about files
// outside the import directories.
func (c *Cache) localSource(ref string) (localFile, error) {
	p := ref
	if strings.HasPrefix(ref, "file://") {
		u, err := url.Parse(ref)
		if err != nil || (u.Host != "" && u.Host != "localhost") || u.RawQuery != "" || u.Fragment != "" {
			return localFile{}, host.Invalid("ref", "want file:///absolute/path")
		}
		p = u.Path
	}
	if !filepath.IsAbs(p) {
		return localFile{}, host.Invalid("ref", "file path must be absolute")
	}
	if len(c.importDirs) == 0 {
		return localFile{}, host.Invalid("ref", "local paths are not accepted: this server has no import directory "+
			"(serve --image-import-dir DIR); upload the file instead (bootpilot image add FILE)")
	}
	p = filepath.Clean(p)
	if !c.inImportDir(p) {
		return localFile{}, host.Invalid("ref", "%s is not below an import directory (serve --image-import-dir)", p)
	}
	real, err := filepath.EvalSymlinks(p)
	if errors.Is(err, fs.ErrNotExist) {
		return localFile{}, host.Invalid("ref", "%s: no such file", p)
	}
	if err != nil {
		return localFile{}, host.Invalid("ref", "%s: cannot resolve the path", p)
	}
	for _, d := range c.importDirs {
		if within(real, d.real) {
			rel, _ := filepath.Rel(d.real, real)
			return localFile{path: p, root: d.real, rel: rel}, nil
		}
	}
	return localFile{}, host.Invalid("ref", "%s leads out of the import directories (symbolic link)", p)
}

// inImportDir reports whether clean absolute path p lies below an import
// directory, as configured or as resolved.
func (c *Cache) inImportDir(p string) bool {
	for _, d := range c.importDirs {
		if within(p, d.dir) || within(p, d.real) {
			return true
		}
	}
	return false
}

// open opens f through an os.Root on its import directory, so a link
// swapped in after the check still cannot lead out of it, and refuses
// anything but a regular file (checked before opening, so a FIFO cannot
// block, and again on the open file).
func (f localFile) open() (*os.File, fs.FileInfo, error) {
	root, err := os.OpenRoot(f.root)
	if err != nil {
		return nil, nil, fmt.Errorf("open import directory: %w", err)
	}
	defer root.Close()
	if fi, err := root.Stat(f.rel); err != nil || !fi.Mode().IsRegular() {
		return nil, nil, host.Invalid("ref", "%s is not a regular file", f.path)
	}
	fh, err := root.Open(f.rel)
	if err != nil {
		return nil, nil, host.Invalid("ref", "%s cannot be opened below its import directory", f.path)
	}
	fi, err := fh.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		fh.Close()
		return nil, nil, host.Invalid("ref", "%s is not a regular file", f.path)
	}
	return fh, fi, nil
}
