package main

import (
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/internal/client"
)

// newTokenCmd is `bootpilot token …`: personal and service API tokens.
func newTokenCmd() *cobra.Command {
	f := &clientFlags{}
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Make, list and revoke API tokens (for scripts and CI)",
		Long: "Make, list and revoke API tokens. A personal token carries at most your grants;\n" +
			"admins can make service tokens (--service) that belong to no user.\n\n" + cliConnectionHelp,
	}
	f.register(cmd)
	cmd.AddCommand(newTokenCreateCmd(f), newTokenListCmd(f), newTokenRevokeCmd(f))
	return cmd
}

// cliParseGrants reads repeated --grant ROLE[@SELECTOR] values.
func cliParseGrants(flag string, vals []string) ([]auth.Grant, error) {
	var gs []auth.Grant
	for _, v := range vals {
		g, err := auth.ParseGrant(v)
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w (a grant looks like operator or operator@team=lab)", flag, v, cliReason(err))
		}
		gs = append(gs, g)
	}
	return gs, nil
}

// cliReason is a validation error's reason without its field name.
func cliReason(err error) error {
	if r := cliValidationReason(err); r != "" {
		return fmt.Errorf("%s", r)
	}
	return err
}

func newTokenCreateCmd(f *clientFlags) *cobra.Command {
	var grants []string
	var r client.TokenRequest
	cmd := &cobra.Command{
		Use:   "create NAME [--grant ROLE[@SELECTOR]]... [--expires-in 720h] [--service]",
		Short: "Make an API token and print its secret once",
		Long: "Make an API token and print its secret once, on stdout (only its hash is kept).\n" +
			"Without --grant the token gets your grants; with it, at most yours.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			gs, err := cliParseGrants("--grant", grants)
			if err != nil {
				return fmt.Errorf("token create: %w", err)
			}
			if r.ExpiresIn < 0 {
				return fmt.Errorf("token create: --expires-in %s: want a positive duration like 720h", r.ExpiresIn)
			}
			r.Name, r.Grants = args[0], gs
			c, err := f.client()
			if err != nil {
				return err
			}
			secret, t, err := c.CreateToken(cmd.Context(), r)
			if err != nil {
				return fmt.Errorf("token create %s: %w", args[0], err)
			}
			out := cmd.OutOrStdout()
			exp := "never expires"
			if !t.ExpiresAt.IsZero() {
				exp = "expires " + cliTime(t.ExpiresAt)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "Token %d %q (%s; %s) made. Its secret is printed once, below: store it now,\n"+
				"only its hash is kept. Revoke it with `bootpilot token revoke %d`.\n",
				t.ID, term(t.Name), cliCell(cliGrants(t.Grants)), exp, t.ID)
			if asJSON, _ := f.json(); asJSON {
				return cliJSON(out, map[string]any{"token": secret, "info": t})
			}
			_, err = fmt.Fprintln(out, secret)
			return err
		},
	}
	cmd.Flags().StringArrayVar(&grants, "grant", nil, "grant ROLE[@SELECTOR], like operator@team=lab (repeatable; default: your grants)")
	cmd.Flags().DurationVar(&r.ExpiresIn, "expires-in", 0, "lifetime, like 720h (default: never expires)")
	cmd.Flags().BoolVar(&r.Service, "service", false, "a service account's token, owned by no user (admins)")
	return cmd
}

func newTokenListCmd(f *clientFlags) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "list [--all]",
		Short: "List your API tokens (admins: --all for everyone's)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			ts, err := c.ListTokens(cmd.Context(), all)
			if err != nil {
				return fmt.Errorf("token list: %w", err)
			}
			out := cmd.OutOrStdout()
			if asJSON, _ := f.json(); asJSON {
				if ts == nil {
					ts = []auth.Token{}
				}
				return cliJSON(out, map[string]any{"tokens": ts})
			}
			tw := cliTable(out)
			fmt.Fprintln(tw, "ID\tNAME\tKIND\tOWNER\tGRANTS\tEXPIRES\tLAST USED\tSTATUS")
			now := time.Now()
			for _, t := range ts {
				status := "valid"
				switch {
				case !t.RevokedAt.IsZero():
					status = "revoked " + cliTime(t.RevokedAt)
				case !t.ExpiresAt.IsZero() && now.After(t.ExpiresAt):
					status = "expired"
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, cliCell(t.Name), cliCell(string(t.Kind)), cliCell(t.Owner),
					cliCell(cliGrants(t.Grants)), cliTime(t.ExpiresAt), cliTime(t.LastUsedAt), status)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "everyone's tokens, service tokens included (admins)")
	return cmd
}

func newTokenRevokeCmd(f *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke an API token (yours; admins: anyone's); it stops working at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil || id < 1 {
				return fmt.Errorf("token revoke: %q is not a token id: see the ID column of `bootpilot token list`", args[0])
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			if err := c.RevokeToken(cmd.Context(), id); err != nil {
				return fmt.Errorf("token revoke %d: %w", id, err)
			}
			if asJSON, _ := f.json(); asJSON {
				return cliJSON(cmd.OutOrStdout(), map[string]any{"id": id, "revoked": true})
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "revoked token %d\n", id)
			return err
		},
	}
}
