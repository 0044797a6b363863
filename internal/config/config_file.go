package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

// FlagConfig is the flag naming the config file; BOOTPILOT_CONFIG is its
// environment twin.
const FlagConfig = "config"

// maxFileSize bounds a config file: it holds a few dozen settings.
const maxFileSize = 1 << 20

// File is a loaded config file: where each setting it gave came from, so
// that an error found later (Validate) can point at its line.
type File struct {
	Path  string
	lines map[string]int // flag name → line of its key, for the settings applied
}

// Load sets every flag of fs that was not given on the command line: from
// its environment twin (EnvOverlay), else from the config file named by
// --config or BOOTPILOT_CONFIG, else it keeps its default. The file is YAML,
// one "key: value" per flag, the keys being the flag names without "--"
// (external-url: https://boot.example.org:8443); a list flag takes a YAML
// list or a comma-separated string. An unknown key, a key given twice or a
// value its flag refuses fails with FILE:LINE and the reason, even when a
// flag or the environment overrides it. Load returns nil without a file.
func Load(fs *pflag.FlagSet) (*File, error) {
	path := os.Getenv(EnvName(FlagConfig))
	if f := fs.Lookup(FlagConfig); f != nil && f.Changed {
		path = f.Value.String()
	}
	var file *File
	if path != "" {
		var err error
		if file, err = applyFile(fs, path); err != nil {
			return nil, err
		}
	}
	if err := EnvOverlay(fs); err != nil {
		return nil, err
	}
	return file, nil
}

// setting is one key of a config file.
type setting struct {
	name   string
	line   int
	values []string
}

// applyFile reads the config file at path and sets from it the flags of fs
// given neither on the command line nor in the environment.
func applyFile(fs *pflag.FlagSet, path string) (*File, error) {
	settings, err := readFile(fs, path)
	if err != nil {
		return nil, err
	}
	file := &File{Path: path, lines: map[string]int{}}
	for _, s := range settings {
		f := fs.Lookup(s.name)
		// Check the value even when a flag or the environment wins.
		probe := *f
		if err := setValues(&probe, s.values, true); err != nil {
			return nil, fmt.Errorf("%s:%d: %s: %w", path, s.line, s.name, err)
		}
		if _, env := os.LookupEnv(EnvName(s.name)); f.Changed || env {
			continue
		}
		if err := setValues(f, s.values, false); err != nil {
			return nil, fmt.Errorf("%s:%d: %s: %w", path, s.line, s.name, err)
		}
		file.lines[s.name] = s.line
	}
	return file, nil
}

// readFile parses the config file into settings, checking every key
// against fs.
func readFile(fs *pflag.FlagSet, path string) ([]setting, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--%s: %w", FlagConfig, err)
	}
	defer fh.Close()
	raw, err := io.ReadAll(io.LimitReader(fh, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("--%s: %w", FlagConfig, err)
	}
	if len(raw) > maxFileSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxFileSize)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("%s: %s", path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if len(doc.Content) == 0 {
		return nil, nil // empty file
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s:%d: want \"key: value\" lines, the keys being serve's flag names without --", path, root.Line)
	}
	seen := map[string]int{}
	var out []setting
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		s, err := parseSetting(fs, k, v, seen)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, k.Line, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// parseSetting checks one key and its value.
func parseSetting(fs *pflag.FlagSet, k, v *yaml.Node, seen map[string]int) (setting, error) {
	if k.Kind != yaml.ScalarNode {
		return setting{}, errors.New("a key must be a flag name")
	}
	name := k.Value
	if name == FlagConfig {
		return setting{}, errors.New("config: a config file cannot name another")
	}
	if f := fs.Lookup(name); f == nil || f.Hidden {
		hint := ""
		if alt := strings.ReplaceAll(strings.TrimPrefix(name, "--"), "_", "-"); alt != name && fs.Lookup(alt) != nil {
			hint = fmt.Sprintf("; did you mean %q?", alt)
		}
		return setting{}, fmt.Errorf("unknown key %q (the keys are the flags of bootpilot serve, without --)%s", name, hint)
	}
	if line, dup := seen[name]; dup {
		return setting{}, fmt.Errorf("%s given twice (first on line %d)", name, line)
	}
	seen[name] = k.Line
	s := setting{name: name, line: k.Line}
	switch {
	case v.Kind == yaml.ScalarNode && v.Tag == "!!null":
		return setting{}, fmt.Errorf("%s: no value", name)
	case v.Kind == yaml.ScalarNode:
		s.values = []string{v.Value}
	case v.Kind == yaml.SequenceNode:
		if _, list := fs.Lookup(name).Value.(pflag.SliceValue); !list {
			return setting{}, fmt.Errorf("%s: takes one value, not a list", name)
		}
		s.values = []string{}
		for _, item := range v.Content {
			if item.Kind != yaml.ScalarNode {
				return setting{}, fmt.Errorf("%s: a list of plain values, line %d is not one", name, item.Line)
			}
			s.values = append(s.values, item.Value)
		}
	default:
		return setting{}, fmt.Errorf("%s: want a value, not a mapping", name)
	}
	return s, nil
}

// setValues sets f from a config file's values. With probe, f is a copy
// whose Value is replaced by a fresh one of the same type first, so only
// the parsing is checked.
func setValues(f *pflag.Flag, values []string, probe bool) error {
	if probe {
		fresh, ok := freshValue(f.Value)
		if !ok {
			return nil // an unknown Value type: checked when set
		}
		f.Value = fresh
	}
	if sv, ok := f.Value.(pflag.SliceValue); ok && len(values) != 1 {
		return sv.Replace(values)
	}
	if len(values) != 1 {
		return errors.New("takes one value")
	}
	return f.Value.Set(values[0])
}

// freshValue returns an unset pflag.Value of v's type, for the types
// serve's flags use.
func freshValue(v pflag.Value) (pflag.Value, bool) {
	fs := pflag.NewFlagSet("probe", pflag.ContinueOnError)
	switch v.Type() {
	case "int":
		fs.Int("v", 0, "")
	case "int64":
		fs.Int64("v", 0, "")
	case "bool":
		fs.Bool("v", false, "")
	case "duration":
		fs.Duration("v", 0, "")
	case "stringSlice":
		fs.StringSlice("v", nil, "")
	case "size":
		return new(byteSize), true
	default:
		return nil, false
	}
	return fs.Lookup("v").Value, true
}

// Explain prefixes err with FILE:LINE when it is about a setting that came
// from the file (Validate names flags as "--max-connections …" or
// "external-url: …"). A nil File or err is returned as is.
func (f *File) Explain(err error) error {
	if f == nil || err == nil {
		return err
	}
	names := make([]string, 0, len(f.lines))
	for n := range f.lines {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return f.lines[names[i]] < f.lines[names[j]] })
	msg := err.Error()
	for _, n := range names {
		if mentions(msg, n) {
			return fmt.Errorf("%s:%d: %w", f.Path, f.lines[n], err)
		}
	}
	return err
}

// mentions reports whether msg names flag as "--flag" or starts with
// "flag:", not as the prefix of a longer flag name.
func mentions(msg, flag string) bool {
	if strings.HasPrefix(msg, flag+":") {
		return true
	}
	for rest := msg; ; {
		i := strings.Index(rest, "--"+flag)
		if i < 0 {
			return false
		}
		rest = rest[i+2+len(flag):]
		if rest == "" || !(rest[0] == '-' || rest[0] >= 'a' && rest[0] <= 'z' || rest[0] >= '0' && rest[0] <= '9') {
			return true
		}
	}
}
