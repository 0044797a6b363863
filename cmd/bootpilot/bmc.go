package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/bootpilot/bootpilot/internal/client"
	"github.com/bootpilot/bootpilot/internal/config"
	"github.com/bootpilot/bootpilot/internal/secretbox"
	"github.com/bootpilot/bootpilot/internal/store"
)

// newBMCCmd is `bootpilot bmc …`: hosts' BMC endpoints and credentials,
// bulk jobs, and the offline key rotation.
func newBMCCmd() *cobra.Command {
	f := &clientFlags{}
	cmd := &cobra.Command{
		Use:   "bmc",
		Short: "Set and test hosts' BMCs (Redfish virtual media, boot override, power)",
		Long: "Set and test hosts' BMCs, through the server's admin API. The server stores BMC passwords\n" +
			"encrypted with its secret key (--secret-key-file; default secret.key in its data dir) and never\n" +
			"shows them again.\n\n" + cliConnectionHelp,
	}
	f.register(cmd)
	cmd.AddCommand(newBMCSetCmd(f), newBMCShowCmd(f), newBMCTestCmd(f), newBMCDeleteCmd(f), newBMCJobCmd(f), newBMCSecureBootCmd(f),
		newBMCRotateKeyCmd())
	return cmd
}

func newBMCSetCmd(f *clientFlags) *cobra.Command {
	var s client.BMCSettings
	var pwFile, caFile string
	cmd := &cobra.Command{
		Use:   "set NAME --url URL --username U --password-file F [--bmc-ca-cert F | --insecure | --insecure-plaintext] [--session]",
		Short: "Set a host's BMC endpoint and credentials",
		Long: "Set a host's BMC endpoint and credentials. The URL must be https://; an http:// URL sends the BMC\n" +
			"credentials in clear on every request and is refused unless --insecure-plaintext is given (audited).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if caFile != "" && s.Insecure {
				return fmt.Errorf("--bmc-ca-cert and --insecure exclude each other")
			}
			if pwFile != "" {
				b, err := os.ReadFile(pwFile)
				if err != nil {
					return fmt.Errorf("--password-file: %w", err)
				}
				s.Password = strings.TrimRight(string(b), "\r\n")
				if s.Password == "" {
					return fmt.Errorf("--password-file %s is empty", pwFile)
				}
			}
			if caFile != "" {
				b, err := os.ReadFile(caFile)
				if err != nil {
					return fmt.Errorf("--bmc-ca-cert: %w", err)
				}
				s.CAPEM = string(b)
			}
			if err := s.Validate(); err != nil { // the server checks the same
				return fmt.Errorf("bmc set %s: %w", args[0], err)
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			b, err := c.SetBMC(cmd.Context(), args[0], s)
			if err != nil {
				return fmt.Errorf("bmc set %s: %w", args[0], err)
			}
			return cliPrintBMC(f, cmd.OutOrStdout(), b)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&s.URL, "url", "", "BMC URL, like https://10.0.0.10")
	fl.StringVar(&s.Username, "username", "", "BMC user")
	fl.StringVar(&pwFile, "password-file", "", "file holding the BMC password (required for a new BMC; omit to keep the stored one)")
	fl.StringVar(&caFile, "bmc-ca-cert", "", "PEM CA certificate(s) that sign the BMC's certificate")
	fl.BoolVar(&s.Insecure, "insecure", false, "do not verify the BMC's TLS certificate (recorded in the audit log)")
	fl.BoolVar(&s.Session, "session", false, "use a Redfish session (X-Auth-Token) instead of basic auth")
	fl.BoolVar(&s.InsecurePlaintext, "insecure-plaintext", false,
		"allow an http:// URL: the BMC credentials travel in clear (recorded in the audit log)")
	cmd.MarkFlagRequired("url")
	cmd.MarkFlagRequired("username")
	return cmd
}

func cliPrintBMC(f *clientFlags, out io.Writer, b client.BMC) error {
	if asJSON, _ := f.json(); asJSON {
		return cliJSON(out, b)
	}
	tls := cliBMCTLS(b)
	media := "none"
	if b.MediaInserted {
		media = "inserted since " + cliTime(b.MediaSince)
	}
	w := cliTable(out)
	fmt.Fprintf(w, "host:\t%s\n", b.Host)
	fmt.Fprintf(w, "url:\t%s\n", term(b.URL))
	fmt.Fprintf(w, "username:\t%s\n", term(b.Username))
	fmt.Fprintf(w, "password:\t%s\n", map[bool]string{true: "set (encrypted)", false: "none"}[b.HasPassword])
	fmt.Fprintf(w, "tls:\t%s\n", tls)
	fmt.Fprintf(w, "session:\t%v\n", b.Session)
	fmt.Fprintf(w, "media:\t%s\n", media)
	fmt.Fprintf(w, "updated:\t%s\n", cliTime(b.UpdatedAt))
	return w.Flush()
}

// cliBMCTLS describes how the CLI's BMC talks to its BMC. It never claims
// TLS for an http:// URL.
func cliBMCTLS(b client.BMC) string {
	switch {
	case cliPlaintext(b.URL) && b.InsecurePlaintext:
		return cliPlaintextTLS
	case cliPlaintext(b.URL):
		return "none — http:// without --insecure-plaintext: refused, set the BMC again"
	case b.Insecure:
		return "NOT verified (--insecure)"
	case b.HasCA:
		return "verified (pinned CA)"
	}
	return "verified (system roots)"
}

// cliPlaintextTLS is the tls line of a BMC reached over http://.
const cliPlaintextTLS = "none — credentials sent in clear (--insecure-plaintext)"

// cliPlaintext reports whether a BMC URL is plain http.
func cliPlaintext(u string) bool {
	return strings.HasPrefix(strings.ToLower(u), "http://")
}

func newBMCShowCmd(f *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "show NAME",
		Short: "Show a host's BMC (never its password)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			b, err := c.GetBMC(cmd.Context(), args[0])
			if err != nil {
				return fmt.Errorf("bmc show %s: %w", args[0], err)
			}
			return cliPrintBMC(f, cmd.OutOrStdout(), b)
		},
	}
}

func newBMCTestCmd(f *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "test NAME",
		Short: "Connect to a host's BMC and show power, boot override, Secure Boot and virtual media",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			r, err := cliBMCWait(cmd.ErrOrStderr(), func() (client.BMCTest, error) { return c.TestBMC(cmd.Context(), args[0]) })
			if err != nil {
				return fmt.Errorf("bmc test %s: %w", args[0], err)
			}
			out := cmd.OutOrStdout()
			if asJSON, _ := f.json(); asJSON {
				return cliJSON(out, r)
			}
			sb := "unknown"
			if r.SecureBoot != nil {
				sb = map[bool]string{true: "enabled", false: "disabled"}[*r.SecureBoot]
			}
			w := cliTable(out)
			fmt.Fprintf(w, "bmc:\t%s\n", r.BMC)
			if cliPlaintext(r.BMC) {
				fmt.Fprintf(w, "tls:\t%s\n", cliPlaintextTLS)
			}
			fmt.Fprintf(w, "power:\t%s\n", r.PowerState)
			fmt.Fprintf(w, "secure boot:\t%s\n", sb)
			fmt.Fprintf(w, "boot override:\t%s %s %s\n", r.Boot.Target, r.Boot.Enabled, r.Boot.Mode)
			if r.Media != nil {
				fmt.Fprintf(w, "virtual media:\t%s %v inserted=%v %s\n", r.Media.Slot, r.Media.MediaTypes, r.Media.Inserted, r.Media.Image)
			} else {
				fmt.Fprintf(w, "virtual media:\tno CD/DVD slot\n")
			}
			return w.Flush()
		},
	}
}

func newBMCDeleteCmd(f *clientFlags) *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "delete NAME --yes",
		Short: "Forget a host's BMC",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !yes {
				return fmt.Errorf("bmc delete %s: pass --yes to confirm", args[0])
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			if err := c.DeleteBMC(cmd.Context(), args[0]); err != nil {
				return fmt.Errorf("bmc delete %s: %w", args[0], err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: BMC forgotten\n", args[0])
			return nil
		},
	}
	cmd.Flags().BoolVar(&yes, "yes", false, "confirm")
	return cmd
}

func newBMCJobCmd(f *clientFlags) *cobra.Command {
	var wait bool
	cmd := &cobra.Command{
		Use:   "job ID [--wait]",
		Short: "Show a bulk job's per-host progress",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			j, err := cliWaitJob(cmd.Context(), c, args[0], wait)
			if err != nil {
				return err
			}
			return cliPrintJob(f, cmd.OutOrStdout(), j)
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until every host is done or failed")
	return cmd
}

// cliWaitJob fetches job id, polling until it finishes when wait is set.
func cliWaitJob(ctx context.Context, c *client.Client, id string, wait bool) (client.Job, error) {
	for {
		j, err := c.Job(ctx, id)
		if err != nil {
			return j, fmt.Errorf("job %s: %w", id, err)
		}
		if !wait || !j.Finished.IsZero() {
			return j, nil
		}
		select {
		case <-ctx.Done():
			return j, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func cliPrintJob(f *clientFlags, out io.Writer, j client.Job) error {
	if asJSON, _ := f.json(); asJSON {
		return cliJSON(out, j)
	}
	state := "running"
	if !j.Finished.IsZero() {
		state = "finished " + cliTime(j.Finished)
	}
	fmt.Fprintf(out, "job %s: %s via %s, %s; queued %d, running %d, done %d, failed %d\n", j.ID, j.Action, j.Via, state,
		j.Counts["queued"], j.Counts["running"], j.Counts["done"], j.Counts["failed"])
	w := cliTable(out)
	fmt.Fprintln(w, "HOST\tBMC\tSTATUS\tERROR")
	for _, h := range j.Hosts {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", h.Host, cliCell(h.BMC), h.Status, cliCell(cliOneLine(h.Error)))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if !j.Finished.IsZero() && j.Counts["failed"] > 0 {
		return fmt.Errorf("job %s: %d of %d hosts failed", j.ID, j.Counts["failed"], len(j.Hosts))
	}
	return nil
}

// newBMCRotateKeyCmd re-encrypts every stored BMC password under a new key,
// offline, directly on the database.
func newBMCRotateKeyCmd() *cobra.Command {
	var oldFile, newFile, dataDir, db string
	cmd := &cobra.Command{
		Use:   "rotate-key --old OLD.key --new NEW.key [--data-dir D | --db DSN]",
		Short: "Re-encrypt every BMC password under a new secret key (offline, on the database)",
		Long: `Re-encrypt every stored BMC password under a new secret key, in one transaction.
Run it against the server's database (--data-dir for the default SQLite, or --db), then
restart the servers with --secret-key-file NEW.key. Values already under the new key are
left alone, so an interrupted rotation can be run again. Media URLs signed before the
restart stop working (their key is derived from the secret key).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			oldKey, err := secretbox.LoadKeyFile(oldFile)
			if err != nil {
				return fmt.Errorf("--old: %w", err)
			}
			newKey, err := secretbox.LoadKeyFile(newFile)
			if err != nil {
				return fmt.Errorf("--new: %w", err)
			}
			cfg := config.Config{DataDir: dataDir, DB: db}
			st, err := store.Open(cmd.Context(), cfg.DSN())
			if err != nil {
				return err
			}
			defer st.Close()
			n, err := st.RotateBMCPasswords(cmd.Context(), func(name, sealed string) (string, error) {
				return secretbox.Rotate(sealed, secretbox.BMCPasswordContext(name), oldKey, newKey)
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "re-encrypted %d BMC passwords under key %s; restart the servers with --secret-key-file %s\n",
				n, newKey.ID(), newFile)
			return nil
		},
	}
	cmd.Flags().StringVar(&oldFile, "old", "", "the current key file")
	cmd.Flags().StringVar(&newFile, "new", "", "the new key file (bootpilot secret-key init NEW.key)")
	cmd.Flags().StringVar(&dataDir, "data-dir", "./bootpilot-data", "the server's data directory (its SQLite database)")
	cmd.Flags().StringVar(&db, "db", "", "database DSN instead of the SQLite in --data-dir (env "+config.EnvName("db")+")")
	cmd.MarkFlagRequired("old")
	cmd.MarkFlagRequired("new")
	return cmd
}

// newSecretKeyCmd is `bootpilot secret-key init FILE`.
func newSecretKeyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "secret-key", Short: "Make the key that encrypts BMC passwords (--secret-key-file)"}
	cmd.AddCommand(&cobra.Command{
		Use:   "init FILE",
		Short: "Write a fresh random key to FILE (mode 0600; refuses to overwrite)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := cliWriteSecretKey(args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote key %s to %s; start the server with --secret-key-file %s and back the file up: without it, stored BMC passwords cannot be read\n",
				k.ID(), args[0], args[0])
			return nil
		},
	})
	return cmd
}

// cliWriteSecretKey writes a fresh key to path, making its directory (0700)
// when missing, and never replaces an existing key.
func cliWriteSecretKey(path string) (*secretbox.Key, error) {
	exists := fmt.Errorf("%s already exists; keep it (it seals the BMC passwords) or remove it first", path)
	if _, err := os.Lstat(path); err == nil {
		return nil, exists
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("secret-key init: %w", err)
	}
	k, err := secretbox.WriteKeyFile(path)
	if errors.Is(err, fs.ErrExist) {
		return nil, exists
	}
	return k, err
}
