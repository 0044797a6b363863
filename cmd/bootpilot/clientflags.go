package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/bootpilot/bootpilot/internal/client"
)

// Defaults of the client commands. The data directory is the one
// `bootpilot serve` creates by default, so the CLI works next to a fresh
// server with no flags.
const (
	cliDefaultServer  = "https://localhost:8443"
	cliDataDir        = "bootpilot-data"
	cliTokenFile      = "admin-token"
	cliCAFile         = "ca.pem"
	cliOutputTable    = "table"
	cliOutputJSON     = "json"
	cliEnvServer      = "BOOTPILOT_SERVER"
	cliEnvToken       = "BOOTPILOT_TOKEN"
	cliEnvTokenFile   = "BOOTPILOT_TOKEN_FILE"
	cliEnvCACert      = "BOOTPILOT_CA_CERT"
	cliEnvDataDir     = "BOOTPILOT_DATA_DIR" // the server's --data-dir twin
	cliFlagServer     = "server"
	cliFlagToken      = "token"
	cliFlagTokenFile  = "token-file"
	cliFlagCACert     = "ca-cert"
	cliFlagOutput     = "output"
	cliConnectionHelp = "Connection: --server (" + cliEnvServer + "), --token (" + cliEnvToken + ") or --token-file (" +
		cliEnvTokenFile + "), --ca-cert (" + cliEnvCACert + "); defaults: " + cliDefaultServer + ", ./" + cliDataDir +
		"/" + cliTokenFile + " and ./" + cliDataDir + "/" + cliCAFile + " when present."
)

// clientFlags are the connection and output flags shared by the commands
// that talk to a server (host, profile).
type clientFlags struct {
	server, token, tokenFile, caCert string
	output                           string
	cmd                              *cobra.Command // where the flags are registered
}

// register adds the flags to cmd as persistent flags.
func (f *clientFlags) register(cmd *cobra.Command) {
	f.cmd = cmd
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.server, cliFlagServer, cliDefaultServer, "server URL (https only; env "+cliEnvServer+")")
	pf.StringVar(&f.token, cliFlagToken, "", "admin API token (env "+cliEnvToken+"; prefer the env or --token-file: flags show in ps)")
	pf.StringVar(&f.tokenFile, cliFlagTokenFile, "", "file holding the admin API token (env "+cliEnvTokenFile+"; default ./"+cliDataDir+"/"+cliTokenFile+" if present)")
	pf.StringVar(&f.caCert, cliFlagCACert, "", "PEM CA certificate to trust (env "+cliEnvCACert+"; default ./"+cliDataDir+"/"+cliCAFile+" if present, else the system roots)")
	pf.StringVarP(&f.output, cliFlagOutput, "o", cliOutputTable, "output format: table or json")
}

// value returns the flag's value if it was set on the command line, else the
// environment variable's, else def.
func (f *clientFlags) value(name, env, cur, def string) string {
	fl := f.cmd.PersistentFlags().Lookup(name)
	if fl == nil {
		fl = f.cmd.Flags().Lookup(name) // iso build's own --token and --token-file
	}
	if fl != nil && fl.Changed {
		return cur
	}
	if v, ok := os.LookupEnv(env); ok && v != "" {
		return v
	}
	return def
}

// json reports whether JSON output was asked for; it rejects unknown formats.
func (f *clientFlags) json() (bool, error) {
	switch f.output {
	case cliOutputTable, "":
		return false, nil
	case cliOutputJSON:
		return true, nil
	}
	return false, fmt.Errorf("--output %q: want table or json", f.output)
}

// client builds an API client from flags, environment and defaults:
// flag, then env, then the stored login session (bootpilot login), then the
// files in ./bootpilot-data. An explicit token (--token, --token-file or
// their env) wins over the session.
func (f *clientFlags) client() (*client.Client, error) {
	if _, err := f.json(); err != nil {
		return nil, err
	}
	sess, err := loadSession()
	if err != nil {
		return nil, err
	}
	server := f.serverURL(sess)
	tok, err := f.explicitToken()
	if err != nil {
		return nil, err
	}
	if tok == "" && sess.usable(server) {
		tok = sess.Token
		cliMarkCredential(f.cmd, cliCredentialSession)
	}
	if tok == "" {
		if tok, err = f.adminToken(); err != nil {
			return nil, err
		}
	}
	return f.connect(server, tok, sess)
}

// serverURL is --server, $BOOTPILOT_SERVER, the stored session's server, or
// the default.
func (f *clientFlags) serverURL(sess *cliSession) string {
	def := cliDefaultServer
	if sess != nil {
		def = sess.Server
	}
	return f.value(cliFlagServer, cliEnvServer, f.server, def)
}

// connect builds a client for server with tok (may be empty: login), with
// the CA of --ca-cert or its env, else the session's, else the data dir's.
func (f *clientFlags) connect(server, tok string, sess *cliSession) (*client.Client, error) {
	var caPEM []byte
	ca := f.value(cliFlagCACert, cliEnvCACert, f.caCert, "")
	if ca == "" && sess.usable(server) {
		ca = sess.CACert
	}
	if ca == "" {
		ca = cliDataFile(cliCAFile)
	}
	if ca != "" {
		b, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("read CA certificate: %w", err)
		}
		caPEM = b
	}
	c, err := client.New(server, tok, caPEM)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// explicitToken returns --token or $BOOTPILOT_TOKEN, else the file of
// --token-file or $BOOTPILOT_TOKEN_FILE, else "".
func (f *clientFlags) explicitToken() (string, error) {
	if tok := f.value(cliFlagToken, cliEnvToken, f.token, ""); tok != "" {
		return tok, nil
	}
	if file := f.value(cliFlagTokenFile, cliEnvTokenFile, f.tokenFile, ""); file != "" {
		return cliReadToken(file)
	}
	return "", nil
}

// adminToken returns the explicit token (explicitToken), else the server's
// data directory's admin-token.
func (f *clientFlags) adminToken() (string, error) {
	tok, err := f.explicitToken()
	if err != nil || tok != "" {
		return tok, err
	}
	if file := cliDataFile(cliTokenFile); file != "" {
		return cliReadToken(file)
	}
	return "", errors.New("not logged in and no admin token: log in with `bootpilot login`, pass --token-file, set " + cliEnvToken + ", or run next to ./" + cliDataDir)
}

// cliReadToken reads a token file.
func cliReadToken(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("read token file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("token file %s is empty", file)
	}
	return tok, nil
}

// cliDataFile returns name inside the server's data directory
// ($BOOTPILOT_DATA_DIR, else ./bootpilot-data) if that file exists, else "".
func cliDataFile(name string) string {
	dir := os.Getenv(cliEnvDataDir)
	if dir == "" {
		dir = cliDataDir
	}
	p := filepath.Join(dir, name)
	if !cliExists(p) {
		return ""
	}
	return p
}

func cliExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// cliJSON prints v as indented JSON, with no raw terminal controls (termJSON).
func cliJSON(w io.Writer, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return err
	}
	_, err := w.Write(termJSON(buf.Bytes()))
	return err
}

// cliTable returns a tabwriter for aligned columns; call Flush when done.
func cliTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// cliCell renders an empty value as "-" so columns stay aligned, and any
// other through term.
func cliCell(s string) string {
	if s == "" {
		return "-"
	}
	return term(s)
}

// cliTime renders a time in UTC to the second, or "-".
func cliTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
