package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/bootpilot/bootpilot/internal/initramfs"
)

// newAgentCmd returns "bootpilot agent", which builds the agent ramdisk.
func newAgentCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Build the agent ramdisk that deploys images and cleans disks",
	}
	cmd.AddCommand(newAgentInitramfsCmd())
	return cmd
}

func newAgentInitramfsCmd() *cobra.Command {
	var kernel, modules, out, agentPath string
	var mods []string
	cmd := &cobra.Command{
		Use:   "initramfs --kernel /boot/vmlinuz-X --modules /lib/modules/X --out agent.cpio.gz [--agent PATH]",
		Short: "Pack bootpilot-agent and the kernel's network/storage modules into a gzip'd cpio",
		Long: `Pack bootpilot-agent as /init plus the network and storage drivers (and their
dependencies from modules.dep) of one kernel into a reproducible gzip'd newc cpio.

--agent defaults to a bootpilot-agent file next to this executable (make agent
builds bin/bootpilot-agent beside bin/bootpilot with CGO_ENABLED=0). --kernel is
checked against --modules: the bzImage's version string must match the module
directory's name, so a ramdisk never carries modules of another kernel.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if modules == "" || out == "" {
				return errors.New("agent initramfs: --modules and --out are required")
			}
			if agentPath == "" {
				exe, err := os.Executable()
				if err != nil {
					return fmt.Errorf("agent initramfs: --agent not given: %w", err)
				}
				agentPath = filepath.Join(filepath.Dir(exe), "bootpilot-agent")
			}
			agent, err := os.ReadFile(agentPath)
			if err != nil {
				return fmt.Errorf("agent initramfs: agent binary (build it with make agent or pass --agent): %w", err)
			}
			ver := filepath.Base(filepath.Clean(modules))
			if kernel != "" {
				kv, err := initramfs.KernelVersion(kernel)
				if err != nil {
					return err
				}
				if kv != ver {
					return fmt.Errorf("agent initramfs: kernel %s is version %s but modules are for %s", kernel, kv, ver)
				}
			}
			var buf bytes.Buffer
			err = initramfs.Build(&buf, initramfs.Options{Agent: agent, ModulesDir: modules, Modules: mods, KernelVersion: ver})
			if err != nil {
				return err
			}
			tmp := out + ".tmp"
			if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
				return fmt.Errorf("agent initramfs: %w", err)
			}
			if err := os.Rename(tmp, out); err != nil {
				return fmt.Errorf("agent initramfs: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (%d bytes, kernel %s, modules: %s)\n",
				out, buf.Len(), ver, strings.Join(orDefault(mods), ","))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&kernel, "kernel", "", "x86 kernel image (bzImage) the ramdisk is for; its version must match --modules (omit for other architectures)")
	f.StringVar(&modules, "modules", "", "module tree of that kernel, /lib/modules/<version>")
	f.StringVar(&out, "out", "", "output file, e.g. agent.cpio.gz")
	f.StringVar(&agentPath, "agent", "", "bootpilot-agent binary (default: bootpilot-agent next to this executable)")
	f.StringSliceVar(&mods, "module", nil, "module to include with its dependencies (repeatable; default: the built-in list)")
	return cmd
}

func orDefault(m []string) []string {
	if len(m) == 0 {
		return initramfs.DefaultModules
	}
	return m
}
