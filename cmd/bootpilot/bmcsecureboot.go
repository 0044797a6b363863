package main

import (
	"fmt"
	"io"
	"slices"

	"github.com/spf13/cobra"

	"github.com/bootpilot/bootpilot/internal/client"
	"github.com/bootpilot/bootpilot/internal/host"
)

// secureBootActions are the last argument of `bootpilot bmc secure-boot`.
var secureBootActions = []string{"status", "enroll", "enable", "disable"}

// newBMCSecureBootCmd is `bootpilot bmc secure-boot NAME… status|enroll|enable|disable`.
func newBMCSecureBootCmd(f *clientFlags) *cobra.Command {
	var r client.SecureBootRequest
	var all, wait bool
	var profile, state string
	cmd := &cobra.Command{
		Use: "secure-boot NAME status|enroll|enable|disable [--enable] [--reason R] | " +
			"secure-boot NAME… enroll | secure-boot --all --profile P [--state S] enroll [--wait]",
		Short: "Show Secure Boot through a host's BMC, enrol the server's db certificate, enable or disable it",
		Long: `Show a host's Secure Boot state as its BMC reports it (enabled, this boot, mode, whether the
BMC can enrol db certificates, whether db holds the server's db certificate: the one its ISOs
are signed with), or change it through the BMC:

  enroll    add the server's db certificate to db when it is missing (--enable: then enable
            Secure Boot); several hosts or --all start a bulk job
  enable    enable Secure Boot
  disable   disable Secure Boot (--reason is required: a security downgrade, audited)

Changes take effect at the host's next restart (bootpilot host power NAME restart, or the next
host reimage NAME --via redfish, which can enrol as a step: --enroll-db). A BMC without Redfish
SecureBootDatabases cannot enrol: enrol the certificate in the UEFI setup, or boot through shim
and enrol it with mokutil (see README: Secure Boot on a factory-keyed fleet).`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 || !slices.Contains(secureBootActions, args[len(args)-1]) {
				return fmt.Errorf("end with the action: status, enroll, enable or disable")
			}
			names := args[:len(args)-1]
			bulk := all || len(names) > 1
			switch {
			case all && len(names) > 0:
				return fmt.Errorf("give host names or --all, not both")
			case !all && len(names) == 0:
				return fmt.Errorf("give a host name (or several, or --all --profile P, to enroll)")
			case all && profile == "":
				return fmt.Errorf("--all needs --profile (and optionally --state)")
			case bulk && args[len(args)-1] != "enroll":
				return fmt.Errorf("several hosts at once only enroll (a bulk job)")
			case r.Enable && args[len(args)-1] != "enroll":
				return fmt.Errorf("--enable goes with enroll (enable alone: secure-boot NAME enable)")
			case args[len(args)-1] == "disable" && r.Reason == "":
				return fmt.Errorf("disable needs --reason: turning Secure Boot off is a security downgrade, recorded in the audit log")
			case !bulk && wait:
				return fmt.Errorf("--wait is for bulk jobs (several hosts or --all)")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			action, names := args[len(args)-1], args[:len(args)-1]
			if all || len(names) > 1 {
				sel := client.Selector{Names: names}
				if all {
					sel = client.Selector{Profile: profile, State: host.State(state)}
				}
				j, err := c.BulkSecureBoot(cmd.Context(), client.BulkSecureBootRequest{Selector: sel, Enable: r.Enable, Reason: r.Reason})
				if err != nil {
					return fmt.Errorf("bmc secure-boot enroll: %w", err)
				}
				if wait {
					if j, err = cliWaitJob(cmd.Context(), c, j.ID, true); err != nil {
						return err
					}
				}
				return cliPrintJob(f, cmd.OutOrStdout(), j)
			}
			name := names[0]
			st, err := cliBMCWait(cmd.ErrOrStderr(), func() (client.SecureBootStatus, error) {
				if action == "status" {
					return c.SecureBoot(cmd.Context(), name)
				}
				r.Action = action
				return c.ChangeSecureBoot(cmd.Context(), name, r)
			})
			if err != nil {
				return fmt.Errorf("bmc secure-boot %s %s: %w", name, action, err)
			}
			return cliPrintSecureBoot(f, cmd.OutOrStdout(), st)
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&r.Enable, "enable", false, "enroll: then enable Secure Boot")
	fl.StringVar(&r.Reason, "reason", "", "reason, recorded in the audit log (required to disable)")
	fl.BoolVar(&all, "all", false, "enroll: every host with --profile (and --state) that you may edit (bulk job)")
	fl.StringVar(&profile, "profile", "", "with --all: hosts with this profile")
	fl.StringVar(&state, "state", "", "with --all: only hosts in this state")
	fl.BoolVar(&wait, "wait", false, "bulk: wait for the job to finish")
	return cmd
}

// cliPrintSecureBoot prints a Secure Boot state as a table (or JSON).
func cliPrintSecureBoot(f *clientFlags, out io.Writer, st client.SecureBootStatus) error {
	if asJSON, _ := f.json(); asJSON {
		return cliJSON(out, st)
	}
	yes := map[bool]string{true: "yes", false: "no"}
	w := cliTable(out)
	fmt.Fprintf(w, "host:\t%s\n", st.Host)
	fmt.Fprintf(w, "bmc:\t%s\n", term(st.BMC))
	// What the BMC said, terminal escapes removed.
	sb := map[bool]string{true: "enabled", false: "disabled"}[st.Enabled]
	if st.CurrentBoot != "" && st.Enabled != (st.CurrentBoot == "Enabled") {
		sb += " from the next boot"
	}
	fmt.Fprintf(w, "secure boot:\t%s\n", sb)
	fmt.Fprintf(w, "current boot:\t%s\n", cliCell(term(st.CurrentBoot)))
	fmt.Fprintf(w, "mode:\t%s\n", cliCell(term(st.Mode)))
	dbs := yes[st.Databases]
	if !st.Databases {
		dbs = "no — enrol by hand (UEFI setup, or shim + mokutil; see README: Secure Boot on a factory-keyed fleet)"
	}
	fmt.Fprintf(w, "databases:\t%s\n", dbs)
	switch {
	case st.DBCert == nil:
		fmt.Fprintf(w, "org db cert:\tnone — the server signs no ISOs (--iso-unsigned)\n")
	default:
		fmt.Fprintf(w, "org db cert:\tSHA256:%s %s\n", st.DBCert.SHA256, term(st.DBCert.Subject))
		fmt.Fprintf(w, "org cert in db:\t%s\n", yes[st.DBCert.InDB])
	}
	fmt.Fprintf(w, "db certificates:\t%d\n", len(st.DB))
	for _, ch := range st.Changes {
		fmt.Fprintf(w, "changed:\t%s\n", term(ch))
	}
	pending := yes[st.PendingRestart]
	if st.PendingRestart {
		pending = "yes — " + st.Message + " (bootpilot host power " + st.Host + " restart)"
	}
	fmt.Fprintf(w, "pending restart:\t%s\n", pending)
	return w.Flush()
}
