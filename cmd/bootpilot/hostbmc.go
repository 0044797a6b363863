package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/bootpilot/bootpilot/internal/client"
	"github.com/bootpilot/bootpilot/internal/host"
)

// newHostMediaCmd is `bootpilot host media insert|eject NAME`.
func newHostMediaCmd(f *clientFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "media", Short: "Insert or eject the host's ISO as BMC virtual media (Redfish)"}
	var reason string
	insert := &cobra.Command{
		Use:   "insert NAME",
		Short: "Build the host's ISO (new boot token) and insert it as virtual media; no reboot",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			r, err := cliBMCWait(cmd.ErrOrStderr(), func() (client.MediaResult, error) { return c.InsertMedia(cmd.Context(), args[0], reason) })
			if err != nil {
				return fmt.Errorf("host media insert %s: %w", args[0], err)
			}
			return cliPrintMedia(f, cmd.OutOrStdout(), r)
		},
	}
	eject := &cobra.Command{
		Use:   "eject NAME",
		Short: "Eject the host's virtual media",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			_, err = cliBMCWait(cmd.ErrOrStderr(), func() (struct{}, error) { return struct{}{}, c.EjectMedia(cmd.Context(), args[0], reason) })
			if err != nil {
				return fmt.Errorf("host media eject %s: %w", args[0], err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: media ejected\n", args[0])
			return nil
		},
	}
	for _, c := range []*cobra.Command{insert, eject} {
		c.Flags().StringVar(&reason, "reason", "", "reason, recorded in the audit log")
	}
	cmd.AddCommand(insert, eject)
	return cmd
}

func cliPrintMedia(f *clientFlags, out io.Writer, r client.MediaResult) error {
	if asJSON, _ := f.json(); asJSON {
		return cliJSON(out, r)
	}
	slot := "-"
	if r.Media != nil {
		slot = r.Media.Slot
	}
	// The slot and the power state are what the BMC said.
	fmt.Fprintf(out, "%s: ISO inserted in %s (media URL valid until %s)", r.Host, cliCell(slot), cliTime(r.Expires))
	if r.EnrollDB != "" {
		fmt.Fprintf(out, ", db certificate %s", r.EnrollDB)
	}
	if r.PowerState != "" {
		fmt.Fprintf(out, ", boot override Cd once, restarted (power %s)", term(r.PowerState))
	}
	_, err := fmt.Fprintln(out)
	return err
}

// newHostPowerCmd is `bootpilot host power NAME on|off|restart|status`.
func newHostPowerCmd(f *clientFlags) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:       "power NAME on|off|restart|status",
		Short:     "Power the host on or off, restart it, or show its power state, through its BMC",
		Args:      cobra.ExactArgs(2),
		ValidArgs: []string{"on", "off", "restart", "status"},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			st, err := cliBMCWait(cmd.ErrOrStderr(), func() (string, error) { return c.Power(cmd.Context(), args[0], args[1], reason) })
			if err != nil {
				return fmt.Errorf("host power %s %s: %w", args[0], args[1], err)
			}
			if asJSON, _ := f.json(); asJSON {
				return cliJSON(cmd.OutOrStdout(), map[string]string{"host": args[0], "power_state": st})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: power %s\n", args[0], term(st)) // as the BMC said
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "reason, recorded in the audit log")
	return cmd
}

// viaFlags are the reimage/clean flags for delivery through the BMC and bulk.
type viaFlags struct {
	via      string
	all      bool
	state    string
	wait     bool
	enrollDB bool // reimage only (registerEnrollDB)
}

func (v *viaFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&v.via, "via", "", "redfish: insert the ISO through the host's BMC, boot it once and restart now")
	cmd.Flags().BoolVar(&v.all, "all", false, "every host matching --profile and --state (bulk job; needs --via redfish)")
	cmd.Flags().StringVar(&v.state, "state", "", "with --all: only hosts in this state (default ready)")
	cmd.Flags().BoolVar(&v.wait, "wait", false, "bulk: wait for the job to finish")
}

// registerEnrollDB adds --enroll-db (reimage via redfish).
func (v *viaFlags) registerEnrollDB(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&v.enrollDB, "enroll-db", false, "with --via redfish: first enrol the server's db certificate "+
		"in the host's Secure Boot db through its BMC (when missing), so the restart applies it")
}

// args checks the positional arguments against the flags.
func (v *viaFlags) args(cmd *cobra.Command, args []string) error {
	switch {
	case v.all && len(args) > 0:
		return fmt.Errorf("give host names or --all, not both")
	case !v.all && len(args) == 0:
		return fmt.Errorf("give a host name (or --all --via redfish)")
	case (v.all || len(args) > 1) && v.via == "":
		return fmt.Errorf("several hosts at once need --via redfish (a bulk job)")
	case v.via != "" && v.via != "redfish":
		return fmt.Errorf("--via %q: only redfish is supported", v.via)
	case v.enrollDB && v.via == "":
		return fmt.Errorf("--enroll-db needs --via redfish (the BMC enrols the certificate)")
	}
	return nil
}

// bulk starts a bulk job for action over args or --all and prints it.
func (v *viaFlags) bulk(cmd *cobra.Command, f *clientFlags, c *client.Client, action string, args []string, profile, reason string) error {
	sel := client.Selector{Names: args}
	if v.all {
		sel = client.Selector{Profile: profile, State: host.State(v.state)}
		if sel.State == "" {
			sel.State = host.StateReady
		}
	}
	j, err := c.BulkJob(cmd.Context(), action, client.BulkRequest{Selector: sel, Via: v.via, Reason: reason, EnrollDB: v.enrollDB})
	if err != nil {
		return fmt.Errorf("bulk %s: %w", action, err)
	}
	if v.wait {
		if j, err = cliWaitJob(cmd.Context(), c, j.ID, true); err != nil {
			return err
		}
	}
	return cliPrintJob(f, cmd.OutOrStdout(), j)
}
