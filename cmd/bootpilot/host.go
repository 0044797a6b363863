package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/bootpilot/bootpilot/internal/client"
	"github.com/bootpilot/bootpilot/internal/host"
)

// hostShowEvents is how many recent events `host show` prints.
const hostShowEvents = 10

// newHostCmd is `bootpilot host …`: the admin API's host resource.
func newHostCmd() *cobra.Command {
	f := &clientFlags{}
	cmd := &cobra.Command{
		Use:   "host",
		Short: "Register hosts and flag them for reimage or cleaning",
		Long:  "Register hosts and flag them for reimage or cleaning, through the server's admin API.\n\n" + cliConnectionHelp,
	}
	f.register(cmd)
	cmd.AddCommand(
		newHostAddCmd(f), newHostListCmd(f), newHostShowCmd(f), newHostEditCmd(f),
		newHostDeleteCmd(f), newHostReimageCmd(f), newHostCleanCmd(f),
		newHostActionCmd(f, host.EventCancel, "Return a host to ready (from reimage, installing, clean, cleaning, failed or hold)"),
		newHostActionCmd(f, host.EventRetry, "Flag a failed host for another install"),
		newHostActionCmd(f, host.EventHold, "Park a host: its boots wait and ask again until released"),
		newHostActionCmd(f, host.EventRelease, "Return a held host to ready"),
		newHostActionCmd(f, host.EventAdopt, "Adopt a discovered host (discovered → ready)"),
		newHostTokenCmd(f), newHostEventsCmd(f), newHostImportCmd(f), newHostISOCmd(f),
		newHostMediaCmd(f), newHostPowerCmd(f), newHostPreviewCmd(f),
	)
	return cmd
}

// hostFields are the flags that set a host's configuration.
type hostFields struct {
	macs, dns                                            []string
	ipv4, gateway, ipv6, gateway6, profile, name, domain string
	vlan                                                 int
	label                                                []string // --label k=v, repeated
	labels                                               string   // --labels "k=v;k2=v2"
}

func (hf *hostFields) register(fs *pflag.FlagSet) {
	fs.StringSliceVar(&hf.macs, "mac", nil, "MAC address (repeat or comma-separate for several NICs)")
	fs.StringVar(&hf.ipv4, "ipv4", "", "static IPv4 address with prefix length, like 10.0.2.15/24")
	fs.StringVar(&hf.gateway, "gateway", "", "IPv4 gateway, like 10.0.2.2")
	fs.StringSliceVar(&hf.dns, "dns", nil, "DNS server(s), comma-separated")
	fs.StringVar(&hf.ipv6, "ipv6", "", "static IPv6 address with prefix length (optional)")
	fs.StringVar(&hf.gateway6, "gateway6", "", "IPv6 gateway (optional)")
	fs.IntVar(&hf.vlan, "vlan", 0, "VLAN id (0: untagged)")
	fs.StringVar(&hf.profile, "profile", "", "install profile, like rocky9")
	fs.StringVar(&hf.name, "hostname", "", "host name of the installed OS (default: the host's name)")
	fs.StringVar(&hf.domain, "domain", "", "DNS domain, like example.org")
	fs.StringArrayVar(&hf.label, "label", nil, "label key=value, like team=lab (repeatable; grants select hosts by labels)")
	fs.StringVar(&hf.labels, "labels", "", `labels as in the CSV column, like "team=lab;site=dc1" ("" with host edit: remove all)`)
}

// parseLabels returns the labels of --labels and every --label.
func (hf *hostFields) parseLabels() (host.Labels, error) {
	all := append([]string{hf.labels}, hf.label...)
	for _, l := range hf.label {
		if strings.Contains(l, ";") {
			return nil, host.Invalid("label", "%q: one key=value per --label (or use --labels \"a=b;c=d\")", host.CleanText(l, 64))
		}
	}
	var parts []string
	for _, s := range all {
		if strings.TrimSpace(s) != "" {
			parts = append(parts, s)
		}
	}
	return host.ParseLabels(strings.Join(parts, ";"))
}

// host returns the host the flags describe.
func (hf *hostFields) host(name string) (host.Host, error) {
	l, err := hf.parseLabels()
	if err != nil {
		return host.Host{}, err
	}
	if len(l) == 0 {
		l = nil
	}
	return host.Host{Name: name, MACs: hf.macs, IPv4: hf.ipv4, Gateway: hf.gateway, DNS: hf.dns,
		IPv6: hf.ipv6, Gateway6: hf.gateway6, VLAN: hf.vlan, Profile: hf.profile, Hostname: hf.name, Domain: hf.domain,
		Labels: l}, nil
}

// patch returns the JSON fields of the flags set on the command line.
// --label and --labels replace the host's labels.
func (hf *hostFields) patch(fs *pflag.FlagSet) (map[string]any, error) {
	p := map[string]any{}
	if fs.Changed("label") || fs.Changed("labels") {
		l, err := hf.parseLabels()
		if err != nil {
			return nil, err
		}
		p["labels"] = l
	}
	set := func(flag, field string, v any) {
		if fs.Changed(flag) {
			p[field] = v
		}
	}
	set("mac", "macs", hf.macs)
	set("ipv4", "ipv4", hf.ipv4)
	set("gateway", "gateway", hf.gateway)
	set("dns", "dns", hf.dns)
	set("ipv6", "ipv6", hf.ipv6)
	set("gateway6", "gateway6", hf.gateway6)
	set("vlan", "vlan", hf.vlan)
	set("profile", "profile", hf.profile)
	set("hostname", "hostname", hf.name)
	set("domain", "domain", hf.domain)
	return p, nil
}

func newHostAddCmd(f *clientFlags) *cobra.Command {
	var hf hostFields
	var printToken bool
	cmd := &cobra.Command{
		Use:   "add NAME --mac MAC --ipv4 CIDR --gateway IP --dns IP[,IP]",
		Short: "Register a host",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := hf.host(args[0])
			if err != nil {
				return fmt.Errorf("host add %s: %w", args[0], err)
			}
			check := h
			check.MACs, check.DNS = append([]string(nil), h.MACs...), append([]string(nil), h.DNS...)
			if err := check.Normalize(); err != nil {
				return fmt.Errorf("host add %s: %w", args[0], err)
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			got, err := c.CreateHost(cmd.Context(), h)
			if err != nil {
				return fmt.Errorf("host add %s: %w", args[0], err)
			}
			var tok string
			if printToken {
				if tok, err = c.RotateBootToken(cmd.Context(), got.Name); err != nil {
					return fmt.Errorf("host add %s: host created, but making its boot token failed: %w", got.Name, err)
				}
			}
			out := cmd.OutOrStdout()
			if asJSON, _ := f.json(); asJSON {
				if printToken {
					return cliJSON(out, map[string]any{"host": got, "token": tok})
				}
				return cliJSON(out, got)
			}
			cliPrintHost(out, got)
			if printToken {
				fmt.Fprintf(out, "\nBoot token (shown once, only its hash is stored):\n%s\n", tok)
			}
			return nil
		},
	}
	hf.register(cmd.Flags())
	cmd.Flags().BoolVar(&printToken, "print-token", false, "make a boot token for the host and print it once")
	for _, req := range []string{"mac", "ipv4", "gateway", "dns"} {
		_ = cmd.MarkFlagRequired(req)
	}
	return cmd
}

func newHostListCmd(f *clientFlags) *cobra.Command {
	var filter client.HostFilter
	var state string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List hosts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			filter.State = host.State(state)
			if state != "" && !filter.State.Valid() {
				return fmt.Errorf("host list: --state %q is not a state; valid states: %s", state, cliStates())
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			hosts, err := c.ListHosts(cmd.Context(), filter)
			if err != nil {
				return fmt.Errorf("host list: %w", err)
			}
			out := cmd.OutOrStdout()
			if asJSON, _ := f.json(); asJSON {
				if hosts == nil {
					hosts = []host.Host{}
				}
				return cliJSON(out, map[string]any{"hosts": hosts})
			}
			tw := cliTable(out)
			fmt.Fprintln(tw, "NAME\tSTATE\tATTEMPT\tPROFILE\tIPV4\tMACS\tLABELS\tUPDATED")
			for _, h := range hosts {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", cliCell(h.Name), cliCell(string(h.State)), h.Attempt, cliCell(h.Profile),
					cliCell(h.IPv4), cliCell(strings.Join(h.MACs, ",")), cliCell(host.FormatLabels(h.Labels)), cliTime(h.UpdatedAt))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&state, "state", "", "only hosts in this state: "+cliStates())
	cmd.Flags().StringVar(&filter.Profile, "profile", "", "only hosts with this profile")
	cmd.Flags().IntVar(&filter.Limit, "limit", 0, "at most this many hosts (0: the server's default)")
	cmd.Flags().StringVar(&filter.After, "after", "", "only hosts whose name sorts after this one (paging)")
	return cmd
}

// cliPrintHost prints h as aligned "Key: value" lines; every value goes
// through term (the inventory is what the host said about itself).
func cliPrintHost(w io.Writer, h host.Host) {
	tw := cliTable(w)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, term(v))
		}
	}
	row("Name", h.Name)
	state := string(h.State)
	if h.Attempt > 0 {
		state += fmt.Sprintf(" (attempt %d)", h.Attempt)
	}
	if h.CleanThenInstall {
		state += ", then install"
	}
	row("State", state)
	if !h.Deadline.IsZero() {
		row("Deadline", cliTime(h.Deadline))
	}
	row("Profile", cliCell(h.Profile))
	row("MACs", strings.Join(h.MACs, ", "))
	row("IPv4", h.IPv4)
	row("Gateway", h.Gateway)
	row("DNS", strings.Join(h.DNS, ", "))
	row("IPv6", h.IPv6)
	row("Gateway6", h.Gateway6)
	if h.VLAN != 0 {
		row("VLAN", strconv.Itoa(h.VLAN))
	}
	fqdn := h.Hostname
	if h.Domain != "" {
		fqdn += "." + h.Domain
	}
	row("Hostname", fqdn)
	row("Labels", host.FormatLabels(h.Labels))
	if inv := h.Inventory; inv != (host.Inventory{}) {
		var parts []string
		for _, kv := range [][2]string{{"mac", inv.MAC}, {"uuid", inv.UUID}, {"serial", inv.Serial},
			{"asset", inv.Asset}, {"arch", inv.Arch}, {"platform", inv.Platform}} {
			if kv[1] != "" {
				parts = append(parts, kv[0]+"="+cliOneLine(kv[1]))
			}
		}
		if !inv.SeenAt.IsZero() {
			parts = append(parts, "seen "+cliTime(inv.SeenAt))
		}
		row("Inventory", strings.Join(parts, " "))
	}
	row("Version", strconv.FormatInt(h.Version, 10))
	if !h.CreatedAt.IsZero() {
		row("Created", cliTime(h.CreatedAt))
	}
	if !h.UpdatedAt.IsZero() {
		row("Updated", cliTime(h.UpdatedAt))
	}
	_ = tw.Flush()
}

// cliPrintEvents prints audit records as a table.
func cliPrintEvents(w io.Writer, evs []host.Record) error {
	tw := cliTable(w)
	fmt.Fprintln(tw, "TIME\tACTOR\tEVENT\tFROM\tTO\tATTEMPT\tREASON")
	for _, e := range evs {
		what := string(e.Event)
		if what == "" {
			what = e.Action
		}
		attempt := "-"
		if e.Attempt > 0 {
			attempt = strconv.Itoa(e.Attempt)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", cliTime(e.Time), cliCell(e.Actor), cliCell(what),
			cliCell(string(e.From)), cliCell(string(e.To)), attempt, cliCell(cliOneLine(e.Reason)))
	}
	return tw.Flush()
}

// cliOneLine keeps a free-text field on one table row.
func cliOneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func newHostShowCmd(f *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "show NAME",
		Short: fmt.Sprintf("Show a host and its last %d events (newest first)", hostShowEvents),
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			h, err := c.GetHost(cmd.Context(), args[0])
			if err != nil {
				return fmt.Errorf("host show %s: %w", args[0], err)
			}
			evs, err := c.Events(cmd.Context(), args[0], hostShowEvents)
			if err != nil {
				return fmt.Errorf("host show %s: events: %w", args[0], err)
			}
			if evs == nil {
				evs = []host.Record{}
			}
			out := cmd.OutOrStdout()
			if asJSON, _ := f.json(); asJSON {
				return cliJSON(out, map[string]any{"host": h, "events": evs})
			}
			cliPrintHost(out, h)
			fmt.Fprintln(out)
			return cliPrintEvents(out, evs)
		},
	}
}

func newHostEditCmd(f *clientFlags) *cobra.Command {
	var hf hostFields
	cmd := &cobra.Command{
		Use:   "edit NAME [--ipv4 CIDR] [--mac MAC]… ",
		Short: "Change a host's configuration (only the flags given change)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			patch, err := hf.patch(cmd.Flags())
			if err != nil {
				return fmt.Errorf("host edit %s: %w", args[0], err)
			}
			if len(patch) == 0 {
				return errors.New("host edit: no field flags given; nothing to change")
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			h, err := c.PatchHost(cmd.Context(), args[0], patch)
			if err != nil {
				return fmt.Errorf("host edit %s: %w", args[0], err)
			}
			return cliPrintHostResult(f, cmd.OutOrStdout(), h)
		},
	}
	hf.register(cmd.Flags())
	return cmd
}

// cliPrintHostResult prints a host after a change: JSON, or its details.
func cliPrintHostResult(f *clientFlags, out io.Writer, h host.Host) error {
	if asJSON, _ := f.json(); asJSON {
		return cliJSON(out, h)
	}
	cliPrintHost(out, h)
	return nil
}

func newHostDeleteCmd(f *clientFlags) *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "delete NAME --yes",
		Short: "Delete a host and its boot token",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !yes {
				return fmt.Errorf("host delete %s: refusing without --yes", args[0])
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			if err := c.DeleteHost(cmd.Context(), args[0]); err != nil {
				return fmt.Errorf("host delete %s: %w", args[0], err)
			}
			if asJSON, _ := f.json(); asJSON {
				return cliJSON(cmd.OutOrStdout(), map[string]any{"name": args[0], "deleted": true})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted host %s\n", args[0])
			return nil
		},
	}
	cmd.Flags().BoolVar(&yes, "yes", false, "confirm the deletion")
	return cmd
}

// cliPrintTransition prints the host's new state after an action.
func cliPrintTransition(f *clientFlags, out io.Writer, h host.Host) error {
	if asJSON, _ := f.json(); asJSON {
		return cliJSON(out, h)
	}
	extra := ""
	if h.Profile != "" {
		extra = " (profile " + h.Profile + ")"
	}
	if h.CleanThenInstall && h.State == host.StateClean {
		extra += ", then install"
	}
	_, err := fmt.Fprintf(out, "%s: %s%s\n", h.Name, h.State, extra)
	return err
}

// hostActionRun runs a single-host reimage or clean: flag only, or the whole
// sequence through the host's BMC with --via.
func hostActionRun(cmd *cobra.Command, f *clientFlags, v viaFlags, verb, name string,
	flag func() (host.Host, error), via func() (client.ViaResult, error)) error {
	out := cmd.OutOrStdout()
	if v.via != "" {
		r, err := cliBMCWait(cmd.ErrOrStderr(), via)
		if err != nil {
			return fmt.Errorf("host %s %s: %w", verb, name, err)
		}
		if err := cliPrintTransition(f, out, r.Host); err != nil {
			return err
		}
		return cliPrintMedia(f, out, r.Redfish)
	}
	h, err := flag()
	if err != nil {
		return fmt.Errorf("host %s %s: %w", verb, name, err)
	}
	return cliPrintTransition(f, out, h)
}

func newHostReimageCmd(f *clientFlags) *cobra.Command {
	var o client.ReimageOptions
	var v viaFlags
	cmd := &cobra.Command{
		Use:   "reimage NAME… [--profile P] [--reason R] [--via redfish [--enroll-db]] | --all --profile P --via redfish [--enroll-db]",
		Short: "Install the host's profile on its next boot (now, with --via redfish)",
		Args:  v.args,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			if v.all || len(args) > 1 {
				return v.bulk(cmd, f, c, "reimage", args, o.Profile, o.Reason)
			}
			return hostActionRun(cmd, f, v, "reimage", args[0],
				func() (host.Host, error) { return c.Reimage(cmd.Context(), args[0], o) },
				func() (client.ViaResult, error) {
					o.EnrollDB = v.enrollDB
					return c.ReimageVia(cmd.Context(), args[0], v.via, o)
				})
		},
	}
	cmd.Flags().StringVar(&o.Profile, "profile", "", "install this profile (and make it the host's profile); with --all: hosts with this profile")
	cmd.Flags().StringVar(&o.Reason, "reason", "", "reason, recorded in the audit log")
	v.register(cmd)
	v.registerEnrollDB(cmd)
	return cmd
}

func newHostCleanCmd(f *clientFlags) *cobra.Command {
	var o client.CleanOptions
	var v viaFlags
	cmd := &cobra.Command{
		Use:   "clean NAME… [--then-install] [--profile P] [--reason R] [--via redfish]",
		Short: "Wipe the host's disks on its next boot (now, with --via redfish)",
		Args:  v.args,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			if v.all || len(args) > 1 {
				if o.ThenInstall {
					return fmt.Errorf("host clean: --then-install is not available for bulk jobs")
				}
				return v.bulk(cmd, f, c, "clean", args, o.Profile, o.Reason)
			}
			return hostActionRun(cmd, f, v, "clean", args[0],
				func() (host.Host, error) { return c.Clean(cmd.Context(), args[0], o) },
				func() (client.ViaResult, error) { return c.CleanVia(cmd.Context(), args[0], v.via, o) })
		},
	}
	cmd.Flags().BoolVar(&o.ThenInstall, "then-install", false, "install the host's profile after a successful clean")
	cmd.Flags().StringVar(&o.Profile, "profile", "", "profile to install afterwards (with --then-install); with --all: hosts with this profile")
	cmd.Flags().StringVar(&o.Reason, "reason", "", "reason, recorded in the audit log")
	v.register(cmd)
	return cmd
}

// newHostActionCmd makes a command for an action without options.
func newHostActionCmd(f *clientFlags, e host.Event, short string) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   string(e) + " NAME [--reason R]",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			h, err := c.Action(cmd.Context(), args[0], e, reason)
			if err != nil {
				return fmt.Errorf("host %s %s: %w", e, args[0], err)
			}
			return cliPrintTransition(f, cmd.OutOrStdout(), h)
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "reason, recorded in the audit log")
	return cmd
}

func newHostTokenCmd(f *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "token NAME",
		Short: "Make a new boot token for a host and print it once (the old one stops working)",
		Long: "Make a new boot token for a host and print it once. The old token stops working, so ISOs\n" +
			"built with it must be rebuilt. Only the token's hash is stored on the server.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			tok, err := c.RotateBootToken(cmd.Context(), args[0])
			if err != nil {
				return fmt.Errorf("host token %s: %w", args[0], err)
			}
			if asJSON, _ := f.json(); asJSON {
				return cliJSON(cmd.OutOrStdout(), map[string]string{"name": args[0], "token": tok})
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), tok)
			return err
		},
	}
}

func newHostEventsCmd(f *clientFlags) *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "events NAME [--limit N]",
		Short: "Show a host's audit events, newest first",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			evs, err := c.Events(cmd.Context(), args[0], limit)
			if err != nil {
				return fmt.Errorf("host events %s: %w", args[0], err)
			}
			if asJSON, _ := f.json(); asJSON {
				if evs == nil {
					evs = []host.Record{}
				}
				return cliJSON(cmd.OutOrStdout(), map[string]any{"events": evs})
			}
			return cliPrintEvents(cmd.OutOrStdout(), evs)
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 0, "at most this many events (0: the server's default, 100)")
	return cmd
}

// hostImportEntry is one host of hosts-import.json: the host plus the hash of
// the boot token baked into its offline-built ISO.
type hostImportEntry struct {
	host.Host
	TokenHash string `json:"token_hash"`
}

// hostImportResult reports what `host import` did with one host.
type hostImportResult struct {
	Name   string `json:"name"`
	Result string `json:"result"` // "created", "updated" or "failed"
	Error  string `json:"error,omitempty"`
}

// hostImportPatch is the update for a host that exists already: the network
// settings baked into the ISO (always, so stale ones are cleared), the token
// hash, and hostname, domain and profile when the file sets them.
func hostImportPatch(e hostImportEntry) map[string]any {
	p := hostNetworkPatch(e.Host)
	p["token_hash"] = e.TokenHash
	return p
}

// hostNetworkPatch updates an existing host to h's network settings (always,
// so stale ones are cleared), and hostname, domain, profile and labels when
// h sets them.
func hostNetworkPatch(e host.Host) map[string]any {
	p := map[string]any{
		"macs": e.MACs, "ipv4": e.IPv4, "gateway": e.Gateway, "dns": e.DNS,
		"ipv6": e.IPv6, "gateway6": e.Gateway6, "vlan": e.VLAN,
	}
	if e.Hostname != "" {
		p["hostname"] = e.Hostname
	}
	if e.Domain != "" {
		p["domain"] = e.Domain
	}
	if e.Profile != "" {
		p["profile"] = e.Profile
	}
	if len(e.Labels) > 0 {
		p["labels"] = e.Labels
	}
	return p
}

func newHostImportCmd(f *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "import FILE",
		Short: "Register the hosts of an offline ISO build (hosts-import.json; - for stdin)",
		Long: "Register the hosts listed in the hosts-import.json written by `bootpilot iso build --offline`,\n" +
			"with the boot-token hashes baked into their ISOs. A host that exists already is updated\n" +
			"(network settings and token hash). Exits non-zero if any host failed.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var r io.Reader = cmd.InOrStdin()
			if args[0] != "-" {
				fh, err := os.Open(args[0])
				if err != nil {
					return fmt.Errorf("host import: %w", err)
				}
				defer fh.Close()
				r = fh
			}
			var file struct {
				Hosts []hostImportEntry `json:"hosts"`
			}
			if err := json.NewDecoder(r).Decode(&file); err != nil {
				return fmt.Errorf("host import %s: %w", args[0], err)
			}
			if len(file.Hosts) == 0 {
				return fmt.Errorf("host import %s: no hosts in the file", args[0])
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			results := make([]hostImportResult, 0, len(file.Hosts))
			failed := 0
			for _, e := range file.Hosts {
				res := hostImportResult{Name: e.Name, Result: "created"}
				err := hostImportOne(ctx, c, e, &res)
				if err != nil {
					failed++
					res.Result, res.Error = "failed", err.Error()
				}
				results = append(results, res)
			}
			out := cmd.OutOrStdout()
			if asJSON, _ := f.json(); asJSON {
				if err := cliJSON(out, map[string]any{"results": results}); err != nil {
					return err
				}
			} else {
				tw := cliTable(out)
				fmt.Fprintln(tw, "NAME\tRESULT\tERROR")
				for _, r := range results {
					fmt.Fprintf(tw, "%s\t%s\t%s\n", cliCell(r.Name), r.Result, cliCell(r.Error))
				}
				if err := tw.Flush(); err != nil {
					return err
				}
			}
			if failed > 0 {
				return fmt.Errorf("host import: %d of %d hosts failed", failed, len(results))
			}
			return nil
		},
	}
}

// hostImportOne creates the host, or updates it when it exists.
func hostImportOne(ctx context.Context, c *client.Client, e hostImportEntry, res *hostImportResult) error {
	if e.TokenHash == "" {
		return errors.New("no token_hash: the ISO's boot token would not be accepted")
	}
	if !cliValidHash(e.TokenHash) {
		return errors.New("token_hash is not 64 lower-case hex digits")
	}
	check := e.Host
	check.MACs, check.DNS = append([]string(nil), e.MACs...), append([]string(nil), e.DNS...)
	if err := check.Normalize(); err != nil {
		return err
	}
	_, err := c.ImportHost(ctx, e.Host, e.TokenHash)
	if !errors.Is(err, host.ErrConflict) {
		return err
	}
	if _, perr := c.PatchHost(ctx, e.Name, hostImportPatch(e)); perr != nil {
		if errors.Is(perr, host.ErrNotFound) {
			return err // the conflict was not the name (a MAC of another host)
		}
		return fmt.Errorf("exists; update: %w", perr)
	}
	res.Result = "updated"
	return nil
}

// cliValidHash reports whether s is a SHA-256 in lower-case hex.
func cliValidHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, r := range s {
		if (r < '0' || r > '9') && (r < 'a' || r > 'f') {
			return false
		}
	}
	return true
}

func newHostISOCmd(f *clientFlags) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "iso NAME [--file NAME.iso]",
		Short: "Download the host's boot ISO from the server (rotates its boot token)",
		Long: "Download the host's boot ISO from the server. The server bakes a new boot token into it,\n" +
			"so the host's previous token stops working: an ISO built or downloaded before stops booting.\n" +
			"The ISO carries that token; the file is written with mode 0600.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if file == "" {
				if err := host.ValidName("name", name); err != nil {
					return fmt.Errorf("host iso: %w", err)
				}
				file = name + ".iso"
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			// Write next to the target and rename, so a failed download
			// never leaves a truncated ISO under the final name.
			tmp, err := os.CreateTemp(filepath.Dir(file), ".bootpilot-iso-*")
			if err != nil {
				return fmt.Errorf("host iso %s: %w", name, err)
			}
			defer os.Remove(tmp.Name())
			n, err := c.DownloadISO(cmd.Context(), name, tmp)
			if cerr := tmp.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("host iso %s: %w", name, err)
			}
			// The ISO holds a boot token: owner only, whatever the umask.
			if err := os.Chmod(tmp.Name(), isoFileMode); err != nil {
				return fmt.Errorf("host iso %s: %w", name, err)
			}
			if err := os.Rename(tmp.Name(), file); err != nil {
				return fmt.Errorf("host iso %s: %w", name, err)
			}
			if asJSON, _ := f.json(); asJSON {
				return cliJSON(cmd.OutOrStdout(), map[string]any{"name": name, "file": file, "bytes": n})
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (%d bytes)\n", file, n)
			return err
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "where to write the ISO (default NAME.iso)")
	return cmd
}
