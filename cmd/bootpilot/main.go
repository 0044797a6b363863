// Command bootpilot is the bootpilot server and toolchain: serve, iso build,
// host, profile, bmc and agent commands, and version.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/bootpilot/bootpilot/internal/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bootpilot:", termLines(err.Error())) // errors may quote a BMC or server
		os.Exit(1)
	}
}

// run executes the CLI with args; tests call it directly.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	return cliError(cmd, err)
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "bootpilot",
		Short:         "Decide on every boot what each bare-metal server does: install, local disk or clean",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version.Get().String(), // --version, as `bootpilot version` prints it
	}
	root.SetVersionTemplate("bootpilot {{.Version}}\n")
	root.AddCommand(newServeCmd(), newHostCmd(), newProfileCmd(), newISOCmd(),
		newAgentCmd(), newBMCCmd(), newSecretKeyCmd(), newImageCmd(), newVersionCmd(),
		newLoginCmd(), newLogoutCmd(), newWhoamiCmd(), newTokenCmd(), newUserCmd(), newAuditCmd())
	return root
}
