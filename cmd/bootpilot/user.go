package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/bootpilot/bootpilot/internal/auth"
)

// newUserCmd is `bootpilot user …`: local users and their grants (admins).
func newUserCmd() *cobra.Command {
	f := &clientFlags{}
	cmd := &cobra.Command{
		Use:   "user",
		Short: "Manage users and their grants (admins)",
		Long: "Manage local users (break-glass, small sites) and their grants, and disable or enable\n" +
			"directory users. NAME is a local user; ldap:NAME is a directory user (list, disable, enable).\n\n" +
			cliConnectionHelp,
	}
	f.register(cmd)
	cmd.AddCommand(newUserAddCmd(f), newUserListCmd(f), newUserPasswdCmd(f),
		newUserDisableCmd(f, true), newUserDisableCmd(f, false), newUserDeleteCmd(f), newUserGrantCmd(f))
	return cmd
}

// cliUserRef splits "ldap:alice" / "local:bob" / "bob" into source and name.
func cliUserRef(ref string) (auth.Source, string, error) {
	src, name, ok := strings.Cut(ref, ":")
	if !ok {
		return auth.SourceLocal, ref, nil
	}
	switch s := auth.Source(src); s {
	case auth.SourceLocal, auth.SourceLDAP:
		if name == "" {
			return "", "", fmt.Errorf("%q has no name after %s:", ref, src)
		}
		return s, name, nil
	}
	return "", "", fmt.Errorf("%q: a user is NAME (local) or ldap:NAME (directory)", ref)
}

// userGrantFlags are --role/--hosts and repeated --grant.
type userGrantFlags struct {
	role, hosts string
	grants      []string
}

func (g *userGrantFlags) register(cmd *cobra.Command, withRole bool) {
	if withRole {
		cmd.Flags().StringVar(&g.role, "role", "", "role: "+cliRoles())
		cmd.Flags().StringVar(&g.hosts, "hosts", "", "with --role: only hosts with these labels, like team=lab (default: all)")
	}
	cmd.Flags().StringArrayVar(&g.grants, "grant", nil, "grant ROLE[@SELECTOR], like operator@team=lab (repeatable)")
}

// list returns the grants the flags give; at least one.
func (g *userGrantFlags) list() ([]auth.Grant, error) {
	var vals []string
	if g.role != "" {
		v := g.role
		if g.hosts != "" {
			v += "@" + g.hosts
		}
		vals = append(vals, v)
	} else if g.hosts != "" {
		return nil, errors.New("--hosts needs --role")
	}
	gs, err := cliParseGrants("--grant", append(vals, g.grants...))
	if err != nil {
		return nil, err
	}
	if len(gs) == 0 {
		return nil, errors.New("no grant: pass --role ROLE [--hosts SELECTOR] or --grant ROLE[@SELECTOR]")
	}
	return gs, nil
}

// cliRoles lists the roles: "viewer, operator, …".
func cliRoles() string {
	s := make([]string, len(auth.Roles))
	for i, r := range auth.Roles {
		s[i] = string(r)
	}
	return strings.Join(s, ", ")
}

func newUserAddCmd(f *clientFlags) *cobra.Command {
	var g userGrantFlags
	var passwordFile string
	cmd := &cobra.Command{
		Use:   "add NAME --role ROLE [--hosts SELECTOR] --password-file F",
		Short: "Make a local user",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			src, name, err := cliUserRef(args[0])
			if err != nil {
				return fmt.Errorf("user add: %w", err)
			}
			if src != auth.SourceLocal {
				return fmt.Errorf("user add %s: only local users are made here; directory users log in with their directory password", args[0])
			}
			gs, err := g.list()
			if err != nil {
				return fmt.Errorf("user add %s: %w", name, err)
			}
			pass, err := cliReadPassword(cmd, passwordFile)
			if err != nil {
				return fmt.Errorf("user add %s: %w", name, err)
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			u, err := c.CreateUser(cmd.Context(), auth.NewUser{Name: name, Password: pass, Grants: gs})
			if err != nil {
				return fmt.Errorf("user add %s: %w", name, err)
			}
			return cliPrintUser(f, cmd, u, "added")
		},
	}
	g.register(cmd, true)
	cmd.Flags().StringVar(&passwordFile, "password-file", "", "file holding the password (- for stdin)")
	_ = cmd.MarkFlagRequired("password-file")
	return cmd
}

// cliPrintUser prints a user after a change.
func cliPrintUser(f *clientFlags, cmd *cobra.Command, u auth.User, what string) error {
	out := cmd.OutOrStdout()
	if asJSON, _ := f.json(); asJSON {
		return cliJSON(out, u)
	}
	state := ""
	if u.Disabled {
		state = ", disabled"
	}
	_, err := fmt.Fprintf(out, "%s user %s:%s (grants %s%s)\n", what, term(string(u.Source)), term(u.Name), cliCell(cliGrants(u.Grants)), state)
	return err
}

func newUserListCmd(f *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List local and directory users",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			us, err := c.ListUsers(cmd.Context())
			if err != nil {
				return fmt.Errorf("user list: %w", err)
			}
			out := cmd.OutOrStdout()
			if asJSON, _ := f.json(); asJSON {
				if us == nil {
					us = []auth.User{}
				}
				return cliJSON(out, map[string]any{"users": us})
			}
			tw := cliTable(out)
			fmt.Fprintln(tw, "USER\tGRANTS\tDISABLED\tCREATED\tCHECKED")
			for _, u := range us {
				fmt.Fprintf(tw, "%s:%s\t%s\t%t\t%s\t%s\n", term(string(u.Source)), cliCell(u.Name), cliCell(cliGrants(u.Grants)),
					u.Disabled, cliTime(u.CreatedAt), cliTime(u.CheckedAt))
			}
			return tw.Flush()
		},
	}
}

// userUpdate runs one PATCH of a user named by ref.
func userUpdate(f *clientFlags, cmd *cobra.Command, verb, ref string, up auth.UserUpdate, what string) error {
	src, name, err := cliUserRef(ref)
	if err != nil {
		return fmt.Errorf("user %s: %w", verb, err)
	}
	c, err := f.client()
	if err != nil {
		return err
	}
	u, err := c.UpdateUser(cmd.Context(), src, name, up)
	if err != nil {
		return fmt.Errorf("user %s %s: %w", verb, ref, err)
	}
	return cliPrintUser(f, cmd, u, what)
}

func newUserPasswdCmd(f *clientFlags) *cobra.Command {
	var passwordFile string
	cmd := &cobra.Command{
		Use:   "passwd NAME --password-file F",
		Short: "Set a local user's password",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pass, err := cliReadPassword(cmd, passwordFile)
			if err != nil {
				return fmt.Errorf("user passwd %s: %w", args[0], err)
			}
			return userUpdate(f, cmd, "passwd", args[0], auth.UserUpdate{Password: &pass}, "changed the password of")
		},
	}
	cmd.Flags().StringVar(&passwordFile, "password-file", "", "file holding the new password (- for stdin)")
	_ = cmd.MarkFlagRequired("password-file")
	return cmd
}

// newUserDisableCmd is `user disable` (disable) or `user enable`.
func newUserDisableCmd(f *clientFlags, disable bool) *cobra.Command {
	verb, short := "enable", "Let a disabled user log in again"
	if disable {
		verb, short = "disable", "Stop a user: no logins, their sessions and tokens stop working"
	}
	return &cobra.Command{
		Use:   verb + " NAME|ldap:NAME",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d := disable
			return userUpdate(f, cmd, verb, args[0], auth.UserUpdate{Disabled: &d}, verb+"d")
		},
	}
}

func newUserGrantCmd(f *clientFlags) *cobra.Command {
	var g userGrantFlags
	cmd := &cobra.Command{
		Use:   "grant NAME --grant ROLE[@SELECTOR]...",
		Short: "Replace a local user's grants",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			gs, err := g.list()
			if err != nil {
				return fmt.Errorf("user grant %s: %w", args[0], err)
			}
			return userUpdate(f, cmd, "grant", args[0], auth.UserUpdate{Grants: &gs}, "changed the grants of")
		},
	}
	g.register(cmd, true)
	return cmd
}

func newUserDeleteCmd(f *clientFlags) *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "delete NAME --yes",
		Short: "Delete a user and revoke their tokens",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !yes {
				return fmt.Errorf("user delete %s: refusing without --yes (to only stop the user, use `bootpilot user disable %s`)", args[0], args[0])
			}
			src, name, err := cliUserRef(args[0])
			if err != nil {
				return fmt.Errorf("user delete: %w", err)
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			if err := c.DeleteUser(cmd.Context(), src, name); err != nil {
				return fmt.Errorf("user delete %s: %w", args[0], err)
			}
			if asJSON, _ := f.json(); asJSON {
				return cliJSON(cmd.OutOrStdout(), map[string]any{"source": src, "name": name, "deleted": true})
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "deleted user %s:%s\n", src, term(name))
			return err
		},
	}
	cmd.Flags().BoolVar(&yes, "yes", false, "confirm the deletion")
	return cmd
}
