package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bootpilot/bootpilot/internal/agent/agenttest"
)

func TestAgentInitramfsCommand(t *testing.T) {
	vmlinuz, modules := agenttest.Kernel(t)
	agentBin := agenttest.BuildAgent(t)
	out := filepath.Join(t.TempDir(), "agent.cpio.gz")
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"agent", "initramfs", "--kernel", vmlinuz, "--modules", modules,
		"--out", out, "--agent", agentBin}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("agent initramfs: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), "wrote "+out) {
		t.Errorf("stdout = %q", stdout.String())
	}
	b, err := os.ReadFile(out)
	if err != nil || len(b) < 1<<20 || b[0] != 0x1f || b[1] != 0x8b {
		t.Errorf("output is not a gzip'd ramdisk: %d bytes, %v", len(b), err)
	}
	// Same inputs, same bytes.
	out2 := out + ".2"
	if err := run(context.Background(), []string{"agent", "initramfs", "--kernel", vmlinuz, "--modules", modules,
		"--out", out2, "--agent", agentBin}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if b2, _ := os.ReadFile(out2); !bytes.Equal(b, b2) {
		t.Error("two runs produced different ramdisks")
	}
}

func TestAgentInitramfsRefusals(t *testing.T) {
	vmlinuz, modules := agenttest.Kernel(t)
	dir := t.TempDir()
	notELF := filepath.Join(dir, "agent.sh")
	os.WriteFile(notELF, []byte("#!/bin/sh\n"), 0o755)
	otherMods := filepath.Join(dir, "9.9.9-other")
	os.MkdirAll(otherMods, 0o755)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no out", []string{"--modules", modules}, "required"},
		{"missing agent", []string{"--modules", modules, "--out", filepath.Join(dir, "x"), "--agent", filepath.Join(dir, "nope")}, "agent binary"},
		{"not ELF", []string{"--modules", modules, "--out", filepath.Join(dir, "x"), "--agent", notELF}, "not an ELF"},
		{"kernel/modules mismatch", []string{"--kernel", vmlinuz, "--modules", otherMods, "--out", filepath.Join(dir, "x"), "--agent", notELF}, "modules are for 9.9.9-other"},
		{"unknown module", []string{"--modules", modules, "--out", filepath.Join(dir, "x"), "--agent", "/proc/self/exe", "--module", "no_such_driver"}, "no_such_driver not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var o, e bytes.Buffer
			err := run(context.Background(), append([]string{"agent", "initramfs"}, tt.args...), &o, &e)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("agent initramfs %v: %v, want an error containing %q", tt.args, err, tt.want)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "x")); err == nil {
		t.Error("a failed run left an output file")
	}
}
