package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/bootpilot/bootpilot/internal/version"
)

// newVersionCmd is `bootpilot version`: the build's version and commit, and
// with --remote the server's too.
func newVersionCmd() *cobra.Command {
	f := &clientFlags{}
	var remote bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version and commit of this binary (and with --remote, of the server)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			asJSON, err := f.json()
			if err != nil {
				return err
			}
			info := version.Get()
			out := cmd.OutOrStdout()
			if !remote {
				if asJSON {
					return cliJSON(out, info)
				}
				_, err := fmt.Fprintf(out, "bootpilot %s\n", info)
				return err
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			sv, err := c.Version(cmd.Context())
			if err != nil {
				return fmt.Errorf("version: server: %w", err)
			}
			if asJSON {
				return cliJSON(out, map[string]any{"client": info, "server": sv})
			}
			server := sv.Version
			if sv.Commit != "" {
				server += " (commit " + sv.Commit + ")"
			}
			_, err = fmt.Fprintf(out, "client: bootpilot %s\nserver: bootpilot %s at %s\n", info, server, c.Server())
			return err
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&remote, "remote", false, "also ask the server for its version (GET /api/v1/version)")
	return cmd
}
