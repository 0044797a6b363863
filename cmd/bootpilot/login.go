package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	xterm "golang.org/x/term"

	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/internal/client"
	"github.com/bootpilot/bootpilot/internal/host"
)

// The stored login session: os.UserConfigDir()/bootpilot/session, in a
// directory only its owner can enter, readable only by its owner.
const (
	cliSessionDir      = "bootpilot"
	cliSessionFile     = "session"
	cliSessionDirMode  = 0o700
	cliSessionFileMode = 0o600
)

// cliSession is what `bootpilot login` stores: the session token and the
// server it belongs to. The token is sent to that server only.
type cliSession struct {
	Server    string    `json:"server"`            // "https://boot.example.org:8443"
	CACert    string    `json:"ca_cert,omitempty"` // absolute path of the CA the login trusted
	Token     string    `json:"token"`
	User      string    `json:"user"`   // "alice"
	Source    string    `json:"source"` // "local", "ldap"
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

// usable reports whether s is a session for server (nil is none).
func (s *cliSession) usable(server string) bool {
	return s != nil && s.Token != "" && strings.TrimRight(s.Server, "/") == strings.TrimRight(strings.TrimSpace(server), "/")
}

// cliSessionPath is where the session is stored.
func cliSessionPath() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("session: %w (set $HOME or $XDG_CONFIG_HOME)", err)
	}
	return filepath.Join(dir, cliSessionDir, cliSessionFile), nil
}

// loadSession reads the stored session; nil, nil when there is none. A file
// others can read is refused, like ssh refuses such a key.
func loadSession() (*cliSession, error) {
	p, err := cliSessionPath()
	if err != nil {
		return nil, nil // no config dir: no session
	}
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("session %s: %w", p, err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("session %s has mode %v, others may read it: run `chmod 600 %s` (or delete it and log in again with `bootpilot login`)", p, fi.Mode().Perm(), p)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("session %s: %w", p, err)
	}
	var s cliSession
	if err := json.Unmarshal(b, &s); err != nil || s.Server == "" || s.Token == "" {
		return nil, fmt.Errorf("session %s is damaged: delete it and log in again with `bootpilot login`", p)
	}
	return &s, nil
}

// saveSession writes s with mode 0600 in a 0700 directory, replacing the
// previous session atomically.
func saveSession(s cliSession) (string, error) {
	p, err := cliSessionPath()
	if err != nil {
		return "", err
	}
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, cliSessionDirMode); err != nil {
		return "", fmt.Errorf("session: %w", err)
	}
	if err := os.Chmod(dir, cliSessionDirMode); err != nil { // MkdirAll keeps an existing directory's mode
		return "", fmt.Errorf("session: %w", err)
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, ".session-*")
	if err != nil {
		return "", fmt.Errorf("session: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(cliSessionFileMode); err != nil {
		tmp.Close()
		return "", fmt.Errorf("session: %w", err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return "", fmt.Errorf("session: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("session: %w", err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return "", fmt.Errorf("session: %w", err)
	}
	return p, nil
}

// Which credential a command used, for error hints (cliAuthHint).
const (
	cliCredentialKey     = "bootpilot.credential"
	cliCredentialSession = "session"
)

// cliMarkCredential records on the root command that the stored session
// was used, so a 401 can say "log in again".
func cliMarkCredential(cmd *cobra.Command, what string) {
	if cmd == nil {
		return
	}
	root := cmd.Root()
	if root.Annotations == nil {
		root.Annotations = map[string]string{}
	}
	root.Annotations[cliCredentialKey] = what
}

func newLoginCmd() *cobra.Command {
	f := &clientFlags{}
	var username, passwordFile string
	cmd := &cobra.Command{
		Use:   "login [--username U] [--password-file F]",
		Short: "Log in and store the session for the other commands",
		Long: "Log in with a user name and password (a directory or local user) and store the session\n" +
			"token in " + filepath.Join("$XDG_CONFIG_HOME", cliSessionDir, cliSessionFile) + " (mode 0600), with the server it belongs to.\n" +
			"Commands then use it when no --token, --token-file or " + cliEnvToken + " is given.\n" +
			"On a terminal the user name is asked for and the password read without echo;\n" +
			"otherwise both are read from stdin, one per line.\n\n" + cliConnectionHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := f.json(); err != nil {
				return err
			}
			user, pass, err := cliCredentials(cmd, username, passwordFile)
			if err != nil {
				return fmt.Errorf("login: %w", err)
			}
			prev, err := loadSession() // a new login goes to the same server by default
			if err != nil {
				return err
			}
			c, err := f.connect(f.serverURL(prev), "", prev)
			if err != nil {
				return err
			}
			s, err := c.Login(cmd.Context(), user, pass)
			if err != nil {
				return cliLoginError(err)
			}
			ca := f.value(cliFlagCACert, cliEnvCACert, f.caCert, "")
			if ca == "" && prev.usable(c.Server()) {
				ca = prev.CACert
			}
			if ca == "" {
				ca = cliDataFile(cliCAFile)
			}
			if ca != "" {
				if abs, err := filepath.Abs(ca); err == nil {
					ca = abs
				}
			}
			p, err := saveSession(cliSession{Server: c.Server(), CACert: ca, Token: s.Token, User: s.User,
				Source: string(s.Source), ExpiresAt: s.ExpiresAt})
			if err != nil {
				return fmt.Errorf("login: logged in, but storing the session failed: %w", err)
			}
			s.Token = ""
			out := cmd.OutOrStdout()
			if asJSON, _ := f.json(); asJSON {
				return cliJSON(out, map[string]any{"session": s, "file": p, "server": c.Server()})
			}
			fmt.Fprintf(out, "Logged in to %s; session stored in %s\n", c.Server(), p)
			return cliPrintWhoami(out, s, "")
		},
	}
	f.register(cmd)
	cmd.Flags().StringVarP(&username, "username", "u", "", "user name (default: asked for; a directory user as in the directory)")
	cmd.Flags().StringVar(&passwordFile, "password-file", "", "file holding the password (- for stdin; default: asked for without echo)")
	return cmd
}

// cliLoginError puts a failed login in CLI terms, with the next step.
func cliLoginError(err error) error {
	var ce *client.Error
	if !errors.As(err, &ce) {
		return fmt.Errorf("login: %w", err)
	}
	switch ce.Status {
	case http.StatusUnauthorized:
		return &cliRenamedError{msg: "login: invalid credentials: check the user name and password (a disabled user cannot log in: ask an admin)", err: err}
	case http.StatusTooManyRequests:
		wait := int(ce.RetryAfter.Seconds())
		if wait < 1 {
			wait = 60
		}
		return &cliRenamedError{msg: fmt.Sprintf("login: too many failed logins; try again in %d s", wait), err: err}
	case http.StatusServiceUnavailable:
		return &cliRenamedError{msg: "login: " + ce.Message, err: err}
	}
	return fmt.Errorf("login: %w", err)
}

// cliCredentials returns the user name and password: the flags, else a
// prompt on a terminal (password without echo), else lines of stdin.
func cliCredentials(cmd *cobra.Command, username, passwordFile string) (string, string, error) {
	in := cmd.InOrStdin()
	stdin, isFile := in.(*os.File)
	tty := isFile && xterm.IsTerminal(int(stdin.Fd()))
	var lines *bufio.Reader
	readLine := func(prompt string) (string, error) {
		if tty {
			fmt.Fprint(cmd.ErrOrStderr(), prompt)
		}
		if lines == nil {
			lines = bufio.NewReader(in)
		}
		s, err := lines.ReadString('\n')
		if err != nil && (s == "" || !errors.Is(err, io.EOF)) {
			return "", fmt.Errorf("read %s from stdin: %w", strings.TrimSuffix(strings.ToLower(prompt), ": "), err)
		}
		return strings.TrimRight(s, "\r\n"), nil
	}
	if username == "" {
		u, err := readLine("Username: ")
		if err != nil {
			return "", "", err
		}
		username = strings.TrimSpace(u)
	}
	if username == "" {
		return "", "", errors.New("no user name: pass --username")
	}
	var pass string
	switch {
	case passwordFile != "":
		p, err := cliReadPassword(cmd, passwordFile)
		if err != nil {
			return "", "", err
		}
		pass = p
	case tty:
		fmt.Fprint(cmd.ErrOrStderr(), "Password: ")
		b, err := xterm.ReadPassword(int(stdin.Fd()))
		fmt.Fprintln(cmd.ErrOrStderr())
		if err != nil {
			return "", "", fmt.Errorf("read password: %w", err)
		}
		pass = string(b)
	default:
		p, err := readLine("Password: ")
		if err != nil {
			return "", "", err
		}
		pass = p
	}
	if pass == "" {
		return "", "", errors.New("empty password: pass --password-file or type it at the prompt")
	}
	return username, pass, nil
}

// cliReadPassword reads a password file ("-": stdin) without its final
// line break.
func cliReadPassword(cmd *cobra.Command, file string) (string, error) {
	var b []byte
	var err error
	if file == "-" {
		b, err = io.ReadAll(io.LimitReader(cmd.InOrStdin(), 64<<10))
	} else {
		b, err = os.ReadFile(file)
	}
	if err != nil {
		return "", fmt.Errorf("read password file: %w", err)
	}
	p := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if p == "" {
		return "", fmt.Errorf("password file %s is empty", file)
	}
	return p, nil
}

// cliPrintWhoami prints who the caller is, their grants and expiry.
func cliPrintWhoami(w io.Writer, s client.Session, via string) error {
	tw := cliTable(w)
	fmt.Fprintf(tw, "User:\t%s (%s)\n", term(s.User), term(string(s.Source)))
	if s.TokenName != "" {
		fmt.Fprintf(tw, "Token:\t%s\n", term(s.TokenName))
	}
	fmt.Fprintf(tw, "Grants:\t%s\n", cliCell(cliGrants(s.Grants)))
	exp := "never"
	if !s.ExpiresAt.IsZero() {
		exp = cliTime(s.ExpiresAt) + " (in " + time.Until(s.ExpiresAt).Round(time.Minute).String() + ")"
	}
	fmt.Fprintf(tw, "Expires:\t%s\n", exp)
	if via != "" {
		fmt.Fprintf(tw, "Credential:\t%s\n", via)
	}
	return tw.Flush()
}

// cliGrants renders grants as "operator@team=lab, viewer".
func cliGrants(gs []auth.Grant) string {
	s := make([]string, len(gs))
	for i, g := range gs {
		s[i] = g.String()
	}
	return strings.Join(s, ", ")
}

func newLogoutCmd() *cobra.Command {
	f := &clientFlags{}
	cmd := &cobra.Command{
		Use:   "logout",
		Short: "End the stored login session on the server and delete it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sess, err := loadSession()
			if err != nil {
				return err
			}
			if sess == nil {
				return errors.New("logout: not logged in (no stored session); log in with `bootpilot login`")
			}
			p, _ := cliSessionPath()
			c, err := f.connect(sess.Server, sess.Token, sess)
			if err != nil {
				return err
			}
			// A session the server no longer knows (expired, revoked) is gone
			// already: deleting the file finishes the logout.
			if err := c.Logout(cmd.Context()); err != nil && !errors.Is(err, host.ErrUnauthorized) {
				return fmt.Errorf("logout: %w (the session file %s was kept; delete it to forget the session)", err, p)
			}
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("logout: %w", err)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "Logged out of %s\n", term(sess.Server))
			return err
		},
	}
	f.register(cmd)
	return cmd
}

func newWhoamiCmd() *cobra.Command {
	f := &clientFlags{}
	cmd := &cobra.Command{
		Use:   "whoami",
		Short: "Show who the server sees: user, grants and when the credential expires",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			s, err := c.Whoami(cmd.Context())
			if err != nil {
				return fmt.Errorf("whoami: %w", err)
			}
			out := cmd.OutOrStdout()
			if asJSON, _ := f.json(); asJSON {
				return cliJSON(out, s)
			}
			via := "API token"
			if cmd.Root().Annotations[cliCredentialKey] == cliCredentialSession {
				p, _ := cliSessionPath()
				via = "login session (" + p + ")"
			}
			return cliPrintWhoami(out, s, via)
		},
	}
	f.register(cmd)
	return cmd
}
