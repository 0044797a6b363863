package main

import (
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/internal/host"
)

// cliOutputCSV is audit's third output format: the server's export.
const cliOutputCSV = "csv"

func newAuditCmd() *cobra.Command {
	f := &clientFlags{}
	var filt auth.AuditFilter
	var since, until string
	cmd := &cobra.Command{
		Use:   "audit [--actor A] [--host H] [--action X] [--since T] [--until T] [--limit N] [-o table|json|csv]",
		Short: "Read the global audit log, newest first (auditors and admins)",
		Long: "Read the global audit log, newest first. --since and --until take an RFC 3339 time\n" +
			"(2026-12-01T00:00:00Z) or a duration back from now (24h). -o csv streams the server's export\n" +
			"(up to 100000 rows, or --limit). When more events match, the command to read the next page\n" +
			"is printed on stderr.\n\n" + cliConnectionHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			now := time.Now()
			var err error
			if filt.Since, err = cliWhen("--since", since, now); err != nil {
				return fmt.Errorf("audit: %w", err)
			}
			if filt.Until, err = cliWhen("--until", until, now); err != nil {
				return fmt.Errorf("audit: %w", err)
			}
			if filt.Limit < 0 || filt.Before < 0 {
				return fmt.Errorf("audit: --limit and --after must be positive")
			}
			asCSV := f.output == cliOutputCSV
			if asCSV {
				f.output = cliOutputTable // the shared flags know table and json only
			}
			if _, err := f.json(); err != nil {
				return fmt.Errorf("audit: --output %q: want table, json or csv", f.output)
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			var next int64
			if asCSV {
				if next, err = c.AuditCSV(cmd.Context(), filt, out); err != nil {
					return fmt.Errorf("audit: %w", err)
				}
			} else {
				page, err := c.Audit(cmd.Context(), filt)
				if err != nil {
					return fmt.Errorf("audit: %w", err)
				}
				next = page.Next
				if asJSON, _ := f.json(); asJSON {
					if page.Events == nil {
						page.Events = []host.Record{}
					}
					if err := cliJSON(out, map[string]any{"events": page.Events, "next": page.Next}); err != nil {
						return err
					}
				} else if err := cliPrintAudit(cmd, page.Events); err != nil {
					return err
				}
			}
			if next > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "more events: add --after %d for the next page\n", next)
			}
			return nil
		},
	}
	f.register(cmd)
	cmd.PersistentFlags().Lookup(cliFlagOutput).Usage = "output format: table, json or csv (the server's export)"
	fl := cmd.Flags()
	fl.StringVar(&filt.Actor, "actor", "", "only events by this actor, like ldap:alice or local:bob")
	fl.StringVar(&filt.Host, "host", "", "only events about this host")
	fl.StringVar(&filt.Action, "action", "", "only events of this kind, like reimage or login-failed")
	fl.StringVar(&since, "since", "", "only events at or after this time (RFC 3339, or a duration back like 24h)")
	fl.StringVar(&until, "until", "", "only events before this time (RFC 3339, or a duration back like 1h)")
	fl.IntVar(&filt.Limit, "limit", 0, "at most this many events (default: the server's, 100; csv 100000)")
	fl.Int64Var(&filt.Before, "after", 0, "the page after this event id (the cursor printed by the previous page)")
	return cmd
}

// cliWhen reads an RFC 3339 time or a duration back from now ("" is zero).
func cliWhen(flag, v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%s %q: want an RFC 3339 time like 2026-12-01T00:00:00Z or a duration like 24h", flag, v)
}

// cliPrintAudit prints audit records as a table, every cell escaped.
func cliPrintAudit(cmd *cobra.Command, evs []host.Record) error {
	tw := cliTable(cmd.OutOrStdout())
	fmt.Fprintln(tw, "ID\tTIME\tACTOR\tCLIENT\tHOST\tEVENT\tFROM\tTO\tREASON")
	for _, e := range evs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", strconv.FormatInt(e.ID, 10), cliTime(e.Time), cliCell(e.Actor),
			cliCell(e.ClientAddr), cliCell(e.Host), cliCell(e.Kind()), cliCell(string(e.From)), cliCell(string(e.To)),
			cliCell(cliOneLine(e.Reason)))
	}
	return tw.Flush()
}
