package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/bootpilot/bootpilot/internal/host"
)

// newProfileCmd is `bootpilot profile …`: what "install" means for hosts.
func newProfileCmd() *cobra.Command {
	f := &clientFlags{}
	cmd := &cobra.Command{
		Use:   "profile",
		Short: "Manage install profiles (kernel, initrds, cmdline, installer config)",
		Long:  "Manage install profiles through the server's admin API.\n\n" + cliConnectionHelp,
	}
	f.register(cmd)
	cmd.AddCommand(newProfileAddCmd(f), newProfileEditCmd(f), newProfileListCmd(f), newProfileShowCmd(f), newProfileDeleteCmd(f))
	return cmd
}

// profileFields are the flags that set a profile's fields.
type profileFields struct {
	p                     host.Profile
	installer, configFile string
}

func (pf *profileFields) register(fs *pflag.FlagSet) {
	fs.StringVar(&pf.p.Kernel, "kernel", "", "kernel URL (http or https)")
	fs.StringArrayVar(&pf.p.Initrds, "initrd", nil, "initrd URL (repeat for several, in order)")
	fs.StringVar(&pf.p.Cmdline, "cmdline", "", "kernel command line")
	fs.StringVar(&pf.installer, "installer", "", "kickstart, preseed, autoinstall, image or none")
	fs.StringVar(&pf.configFile, "config-file", "", "installer config template (Go text/template) replacing the built-in one")
	fs.BoolVar(&pf.p.FlipOnServe, "flip-on-serve", false, "mark the install done when it is served (installers that cannot call back)")
	fs.StringVar(&pf.p.Image, "image", "", "disk image URL or OCI reference (installer image)")
	fs.StringVar(&pf.p.ImageSHA256, "image-sha256", "", "SHA-256 (hex) of the image as served")
	fs.StringVar(&pf.p.TargetDisk, "target-disk", "", "target disk hint: serial=…, size>=100G or /dev/vda")
	fs.StringVar(&pf.p.CleanMethod, "clean-method", "", "zero, discard or metadata (when used as the clean profile)")
}

// patch returns the JSON fields of the flags set on the command line.
func (pf *profileFields) patch(fs *pflag.FlagSet) (map[string]any, error) {
	m := map[string]any{}
	set := func(flag, field string, v any) {
		if fs.Changed(flag) {
			m[field] = v
		}
	}
	set("kernel", "kernel", pf.p.Kernel)
	set("initrd", "initrds", pf.p.Initrds)
	set("cmdline", "cmdline", pf.p.Cmdline)
	set("installer", "installer", pf.installer)
	set("flip-on-serve", "flip_on_serve", pf.p.FlipOnServe)
	set("image", "image", pf.p.Image)
	set("image-sha256", "image_sha256", pf.p.ImageSHA256)
	set("target-disk", "target_disk", pf.p.TargetDisk)
	set("clean-method", "clean_method", pf.p.CleanMethod)
	if fs.Changed("config-file") {
		m["config"] = ""
		if pf.configFile != "" {
			b, err := os.ReadFile(pf.configFile)
			if err != nil {
				return nil, err
			}
			m["config"] = string(b)
		}
	}
	return m, nil
}

// apply sets the fields of the flags given on the command line in p.
func (pf *profileFields) apply(fs *pflag.FlagSet, p *host.Profile) error {
	m, err := pf.patch(fs)
	if err != nil {
		return err
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, p)
}

func newProfileAddCmd(f *clientFlags) *cobra.Command {
	var pf profileFields
	var file string
	cmd := &cobra.Command{
		Use: "add NAME --kernel URL --initrd URL… [--cmdline S] --installer KIND [--config-file F]\n" +
			"  bootpilot profile add [NAME] --file profile.json",
		Short: "Create a profile from flags or from a JSON file",
		Long: "Create a profile from flags or from a JSON file (the API's profile JSON). With --file, the\n" +
			"flags given on the command line override the file's fields and NAME, if given, its name.",
		Args: cobra.RangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			fs := cmd.Flags()
			var out host.Profile
			if file != "" {
				b, err := os.ReadFile(file)
				if err != nil {
					return fmt.Errorf("profile add: %w", err)
				}
				dec := json.NewDecoder(bytes.NewReader(b))
				dec.DisallowUnknownFields()
				if err := dec.Decode(&out); err != nil {
					return fmt.Errorf("profile add: %s: %w", file, err)
				}
			}
			if len(args) == 1 {
				out.Name = args[0]
			}
			if out.Name == "" {
				return fmt.Errorf("profile add: a NAME is required (as argument or in --file)")
			}
			if file == "" {
				for _, req := range []string{"kernel", "installer"} {
					if !fs.Changed(req) {
						return fmt.Errorf("profile add %s: --%s is required (or use --file)", out.Name, req)
					}
				}
			}
			if err := pf.apply(fs, &out); err != nil {
				return fmt.Errorf("profile add %s: %w", out.Name, err)
			}
			check := out
			check.Initrds = append([]string(nil), out.Initrds...)
			if err := check.Normalize(); err != nil {
				return fmt.Errorf("profile add %s: %w", out.Name, err)
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			got, err := c.CreateProfile(cmd.Context(), out)
			if err != nil {
				return fmt.Errorf("profile add %s: %w", out.Name, err)
			}
			return cliPrintProfileResult(f, cmd.OutOrStdout(), got)
		},
	}
	pf.register(cmd.Flags())
	cmd.Flags().StringVar(&file, "file", "", "read the profile from this JSON file")
	return cmd
}

func newProfileEditCmd(f *clientFlags) *cobra.Command {
	var pf profileFields
	cmd := &cobra.Command{
		Use:   "edit NAME [--kernel URL] [--cmdline S]…",
		Short: "Change a profile (only the flags given change; --config-file \"\" drops a custom config)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			patch, err := pf.patch(cmd.Flags())
			if err != nil {
				return fmt.Errorf("profile edit %s: %w", args[0], err)
			}
			if len(patch) == 0 {
				return fmt.Errorf("profile edit %s: no field flags given; nothing to change", args[0])
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			got, err := c.PatchProfile(cmd.Context(), args[0], patch)
			if err != nil {
				return fmt.Errorf("profile edit %s: %w", args[0], err)
			}
			return cliPrintProfileResult(f, cmd.OutOrStdout(), got)
		},
	}
	pf.register(cmd.Flags())
	return cmd
}

// cliPrintProfileResult prints a profile as JSON or as details.
func cliPrintProfileResult(f *clientFlags, out io.Writer, p host.Profile) error {
	if asJSON, _ := f.json(); asJSON {
		return cliJSON(out, p)
	}
	return cliPrintProfile(out, p)
}

// cliPrintProfile prints p as aligned "Key: value" lines, then its config.
func cliPrintProfile(w io.Writer, p host.Profile) error {
	tw := cliTable(w)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, term(v))
		}
	}
	row("Name", p.Name)
	row("Installer", string(p.Installer))
	row("Kernel", p.Kernel)
	for i, u := range p.Initrds {
		row(fmt.Sprintf("Initrd %d", i+1), u)
	}
	row("Cmdline", p.Cmdline)
	if p.FlipOnServe {
		row("Flip on serve", "yes")
	}
	row("Image", p.Image)
	row("Image SHA-256", p.ImageSHA256)
	row("Target disk", p.TargetDisk)
	row("Clean method", p.CleanMethod)
	if !p.CreatedAt.IsZero() {
		row("Created", cliTime(p.CreatedAt))
	}
	if !p.UpdatedAt.IsZero() {
		row("Updated", cliTime(p.UpdatedAt))
	}
	if p.Config != "" {
		row("Config", "custom template below")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if p.Config != "" {
		_, err := fmt.Fprintf(w, "\n%s", termLines(strings.TrimRight(p.Config, "\n"))+"\n")
		return err
	}
	return nil
}

func newProfileListCmd(f *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List profiles",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			ps, err := c.ListProfiles(cmd.Context())
			if err != nil {
				return fmt.Errorf("profile list: %w", err)
			}
			out := cmd.OutOrStdout()
			if asJSON, _ := f.json(); asJSON {
				if ps == nil {
					ps = []host.Profile{}
				}
				return cliJSON(out, map[string]any{"profiles": ps})
			}
			tw := cliTable(out)
			fmt.Fprintln(tw, "NAME\tINSTALLER\tKERNEL\tINITRDS\tUPDATED")
			for _, p := range ps {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", p.Name, cliCell(string(p.Installer)), cliCell(p.Kernel),
					len(p.Initrds), cliTime(p.UpdatedAt))
			}
			return tw.Flush()
		},
	}
}

func newProfileShowCmd(f *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "show NAME",
		Short: "Show a profile",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			p, err := c.GetProfile(cmd.Context(), args[0])
			if err != nil {
				return fmt.Errorf("profile show %s: %w", args[0], err)
			}
			return cliPrintProfileResult(f, cmd.OutOrStdout(), p)
		},
	}
}

func newProfileDeleteCmd(f *clientFlags) *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "delete NAME --yes",
		Short: "Delete a profile",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !yes {
				return fmt.Errorf("profile delete %s: refusing without --yes", args[0])
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			if err := c.DeleteProfile(cmd.Context(), args[0]); err != nil {
				return fmt.Errorf("profile delete %s: %w", args[0], err)
			}
			if asJSON, _ := f.json(); asJSON {
				return cliJSON(cmd.OutOrStdout(), map[string]any{"name": args[0], "deleted": true})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted profile %s\n", args[0])
			return nil
		},
	}
	cmd.Flags().BoolVar(&yes, "yes", false, "confirm the deletion")
	return cmd
}
