package main

import (
	"fmt"
	"io"
	"slices"

	"github.com/spf13/cobra"

	"github.com/bootpilot/bootpilot/internal/host"
)

// newHostPreviewCmd is `bootpilot host preview NAME`.
func newHostPreviewCmd(f *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "preview NAME",
		Short: "Show the script and installer configs the host's next boot would get (changes nothing)",
		Long: "Show what the host's next boot would be served: the action, the attempt, the stage-1 iPXE\n" +
			"script and, for an install, the installer configs. Nothing changes: no attempt is counted and\n" +
			"no token rotated; the one-time callback token shows as " + host.PreviewCallbackToken + ".\n" +
			"When the boot cannot be rendered, the reason is shown and the command fails.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			p, err := c.Preview(cmd.Context(), args[0])
			if err != nil {
				return fmt.Errorf("host preview %s: %w", args[0], err)
			}
			if asJSON, _ := f.json(); asJSON {
				err = cliJSON(cmd.OutOrStdout(), p)
			} else {
				err = cliPrintPreview(cmd.OutOrStdout(), p)
			}
			if err == nil && p.Error != "" {
				err = fmt.Errorf("host preview %s: the next boot cannot be rendered", args[0])
			}
			return err
		},
	}
}

// cliPrintPreview prints a preview: a header, the error if any, then the
// script and each config under a "--- name ---" line.
func cliPrintPreview(out io.Writer, p host.Preview) error {
	w := cliTable(out)
	fmt.Fprintf(w, "host:\t%s\n", term(p.Host))
	fmt.Fprintf(w, "state:\t%s\n", term(string(p.State)))
	fmt.Fprintf(w, "action:\t%s\n", term(string(p.Action)))
	fmt.Fprintf(w, "attempt:\t%d\n", p.Attempt)
	if p.Error != "" {
		fmt.Fprintf(w, "error:\t%s\n", term(p.Error))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if p.Script != "" {
		fmt.Fprintf(out, "--- script ---\n%s", termLines(p.Script))
	}
	names := make([]string, 0, len(p.Configs))
	for n := range p.Configs {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(out, "--- %s ---\n%s", term(n), termLines(p.Configs[n]))
	}
	return nil
}
