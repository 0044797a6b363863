package main

import (
	"errors"
	"regexp"
	"strings"

	"github.com/spf13/cobra"

	"github.com/bootpilot/bootpilot/internal/client"
	"github.com/bootpilot/bootpilot/internal/host"
)

// cliError puts an error in the terms of the command that got it: the
// API's field names become the command's flags ("profile" → "--profile"),
// JSON bodies in a server's hints become flags, and API routes become the
// bootpilot commands that call them. The error chain is kept (errors.Is and
// errors.As see the same errors); only the message changes. A refused
// credential (401) or a missing grant (403) gets the next step.
func cliError(cmd *cobra.Command, err error) error {
	if cmd == nil || err == nil {
		return err
	}
	return cliAuthHint(cmd, cliRename(cmd, err))
}

// cliAuthHint adds the next step to a 401 or 403 answer: log in again when
// the stored session was refused, check the token when a token was, ask an
// admin when the caller's grants do not allow the command. Errors a command
// explained itself (login) are left alone.
func cliAuthHint(cmd *cobra.Command, err error) error {
	var ce *client.Error
	if !errors.As(err, &ce) || cmd.Name() == "login" {
		return err
	}
	var hint string
	switch ce.Status {
	case 401:
		if cmd.Root().Annotations[cliCredentialKey] == cliCredentialSession {
			hint = "your login session has expired or was ended (logout, revoked, user disabled): log in again with `bootpilot login`"
		} else {
			hint = "the server refused the API token (unknown, revoked or expired): check --token, --token-file or " +
				cliEnvToken + ", or log in with `bootpilot login`"
		}
	case 403:
		hint = "your grants do not allow `" + cmd.CommandPath() + "`" + cliForbiddenOn(cmd) +
			": ask an admin for a role that does (`bootpilot whoami` shows your grants)"
	default:
		return err
	}
	return &cliRenamedError{msg: err.Error() + "\n" + hint, err: err}
}

// cliForbiddenOn names the command's argument (a host) in a 403 hint.
func cliForbiddenOn(cmd *cobra.Command) string {
	if args := cmd.Flags().Args(); len(args) > 0 && cmd.Parent() != nil && cmd.Parent().Name() == "host" {
		return " on host " + term(args[0])
	}
	return ""
}

// cliRename is cliError's renaming of fields and routes.
func cliRename(cmd *cobra.Command, err error) error {
	var old, repl string
	var ce *client.Error
	var ve *host.ValidationError
	switch {
	case errors.As(err, &ce):
		if ce.Status < 400 || ce.Status >= 500 {
			return err
		}
		renamed := *ce
		if renamed.Field != "" {
			renamed.Flag = cliFlagFor(cmd, renamed.Field)
		}
		renamed.Message = cliAPITerms(cmd, renamed.Message)
		old, repl = ce.Error(), renamed.Error()
	case errors.As(err, &ve) && ve.Field != "":
		old, repl = ve.Error(), cliFlagFor(cmd, ve.Field)+": "+ve.Reason
	default:
		return err
	}
	msg := err.Error()
	if old == repl || !strings.Contains(msg, old) {
		return err
	}
	return &cliRenamedError{msg: strings.Replace(msg, old, repl, 1), err: err}
}

// cliRenamedError is an error with its message put in CLI terms.
type cliRenamedError struct {
	msg string
	err error
}

func (e *cliRenamedError) Error() string { return e.msg }
func (e *cliRenamedError) Unwrap() error { return e.err }

// cliFieldAliases names the flags whose name is not derived from their API
// field (see cliFlagFor).
var cliFieldAliases = map[string]string{
	"password": "password-file",
	"ca_pem":   "bmc-ca-cert",
}

// cliFlagFor returns "--flag" for an API field name when cmd has a flag for
// it: the field itself, with '_' as '-', or singular ("macs" → "--mac");
// "NAME" for the name every command takes as its argument; else the field.
func cliFlagFor(cmd *cobra.Command, field string) string {
	base := field
	if i := strings.IndexAny(base, "[."); i > 0 { // "macs[1]", "dns.0"
		base = base[:i]
	}
	dashed := strings.ReplaceAll(base, "_", "-")
	for _, name := range []string{cliFieldAliases[base], base, dashed, strings.TrimSuffix(dashed, "s")} {
		if name != "" && cmd.Flags().Lookup(name) != nil {
			return "--" + name
		}
	}
	if base == "name" && cmd.Args != nil {
		return "NAME"
	}
	return field
}

// cliJSONHint matches a JSON body quoted in a server hint:
// `pass {"profile": …}`.
var cliJSONHint = regexp.MustCompile(`\{"([a-z_]+)":\s*[^{}]*\}`)

// cliRoutes maps API routes quoted in server messages to the commands that
// call them, most specific first. NAME is the route's {name}.
var cliRoutes = []struct {
	re   *regexp.Regexp
	repl string
}{
	{regexp.MustCompile(`PUT /api/v1/hosts/([^/\s()]+)/bmc\b`), "bootpilot bmc set $1"},
	{regexp.MustCompile(`DELETE /api/v1/hosts/([^/\s()]+)/bmc\b`), "bootpilot bmc delete $1"},
	{regexp.MustCompile(`POST /api/v1/hosts/([^/\s()]+)/bmc/test\b`), "bootpilot bmc test $1"},
	{regexp.MustCompile(`(?:GET )?/api/v1/hosts/([^/\s()]+)/bmc\b`), "bootpilot bmc show $1"},
	{regexp.MustCompile(`POST /api/v1/hosts/([^/\s()]+)/media/(insert|eject)\b`), "bootpilot host media $2 $1"},
	{regexp.MustCompile(`POST /api/v1/hosts/([^/\s()]+)/power\b`), "bootpilot host power $1"},
	{regexp.MustCompile(`POST /api/v1/hosts/([^/\s()]+)/boot-token\b`), "bootpilot host token $1"},
	{regexp.MustCompile(`POST /api/v1/hosts/([^/\s()]+)/(reimage|clean|cancel|retry|hold|release|adopt)\b`), "bootpilot host $2 $1"},
	{regexp.MustCompile(`GET /api/v1/hosts/([^/\s()]+)/iso\b`), "bootpilot host iso $1"},
	{regexp.MustCompile(`GET /api/v1/hosts/([^/\s()]+)/events\b`), "bootpilot host events $1"},
	{regexp.MustCompile(`PATCH /api/v1/hosts/([^/\s()]+)`), "bootpilot host edit $1"},
	{regexp.MustCompile(`DELETE /api/v1/hosts/([^/\s()]+)`), "bootpilot host delete $1"},
	{regexp.MustCompile(`POST /api/v1/hosts\b`), "bootpilot host add"},
	{regexp.MustCompile(`POST /api/v1/profiles\b`), "bootpilot profile add"},
	{regexp.MustCompile(`PATCH /api/v1/profiles/([^/\s()]+)`), "bootpilot profile edit $1"},
	{regexp.MustCompile(`DELETE /api/v1/profiles/([^/\s()]+)`), "bootpilot profile delete $1"},
}

// cliAPITerms rewrites API routes and JSON bodies in a server message.
func cliAPITerms(cmd *cobra.Command, msg string) string {
	for _, r := range cliRoutes {
		msg = r.re.ReplaceAllString(msg, r.repl)
	}
	return cliJSONHint.ReplaceAllStringFunc(msg, func(m string) string {
		field := cliJSONHint.FindStringSubmatch(m)[1]
		if f := cliFlagFor(cmd, field); strings.HasPrefix(f, "--") {
			return f
		}
		return m
	})
}

// cliStates lists the host states, in lifecycle order: "ready, reimage, …".
func cliStates() string {
	names := make([]string, len(host.States))
	for i, s := range host.States {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

// cliValidationReason is the reason of a *host.ValidationError in err, or "".
func cliValidationReason(err error) string {
	var ve *host.ValidationError
	if errors.As(err, &ve) {
		return ve.Reason
	}
	return ""
}
