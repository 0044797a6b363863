package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/bootpilot/bootpilot/imagebuilder"
	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/internal/client"
	"github.com/bootpilot/bootpilot/internal/config"
	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/pki"
	"github.com/bootpilot/bootpilot/internal/provision"
	"github.com/bootpilot/bootpilot/internal/store"
	"github.com/bootpilot/bootpilot/internal/token"
)

// isoFlags are the flags of `bootpilot iso build`.
type isoFlags struct {
	csv, out, serverURL, caCert string
	dbKey, dbCert               string
	unsigned                    bool
	jobs                        int
	arches                      string
	mode                        string
	scriptKey, scriptCert       string
	ipxeEFI, ipxeSNP            string
	shim, mokManager            string
	offline                     bool
	api, apiToken               string
	serverCert                  string
	hostName                    string
	fromDB, db                  string
}

func newISOCmd() *cobra.Command {
	iso := &cobra.Command{Use: "iso", Short: "Build per-host boot ISOs"}
	var f isoFlags
	auth := &clientFlags{} // --token, --token-file and their env twins, as for every client command
	build := &cobra.Command{
		Use:   "build",
		Short: "Build a signed iPXE ISO for every host in a CSV file",
		Long: `Build DIR/<name>.iso for every host in --csv, plus DIR/manifest.json.

Tokens come either from the server (--api URL: each host is registered or
updated, then its boot token rotated; the admin token is found as by every
client command: --token, BOOTPILOT_TOKEN, --token-file, BOOTPILOT_TOKEN_FILE,
./bootpilot-data/admin-token) or are made locally
(--offline), in which case DIR/hosts-import.json holds the hosts with the
tokens' hashes for "bootpilot host import". With --from-db DATA_DIR instead
of --csv, the hosts come from the server's database and each host's token
hash is replaced there once its ISO is built (the old token stops working);
--ca-cert then defaults to DATA_DIR/ca.pem. Nothing is written when any CSV
row is bad; every bad row is reported as FILE:LINE: column: reason. A CSV
field may hold at most 4096 bytes and a line at most 65536.
Each ISO carries its host's boot token and is written with mode 0600.
Timestamps inside the ISOs come from SOURCE_DATE_EPOCH when set.

With --shim FILE, BOOTX64.EFI is that Microsoft-signed shim and the signed
iPXE is grubx64.efi next to it (x86_64 only): for hosts whose firmware db
holds only Microsoft's keys and whose MokList holds --db-cert; kernels iPXE
loads then go through shim, so distribution-signed kernels boot unchanged. A
host whose db and MokList both lack --db-cert stops at shim's "Verification
failed" prompt instead of booting its disk.

The host of --server-url must be in the server's certificate, or every host
refuses the server's TLS and boots its disk: the build stops when it is not
(the certificate comes from --server-cert, else from the --api server's TLS
handshake, else from DATA_DIR/server.pem with --from-db).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.api != "" {
				tok, err := auth.adminToken()
				if err != nil {
					return fmt.Errorf("iso build: --api: %w", err)
				}
				f.apiToken = tok
			}
			return runISOBuild(cmd.Context(), f, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	auth.cmd = build
	fl := build.Flags()
	fl.StringVar(&f.csv, "csv", "", "hosts CSV file (required)")
	fl.StringVar(&f.out, "out", "", "output directory (required)")
	fl.StringVar(&f.serverURL, "server-url", "", "boot server the ISOs call, https://HOST[:PORT] (required)")
	fl.StringVar(&f.caCert, "ca-cert", "", "PEM CA certificate iPXE will trust; also pins --api TLS (required)")
	fl.StringVar(&f.dbKey, "db-key", "", "PEM Secure Boot db private key (RSA)")
	fl.StringVar(&f.dbCert, "db-cert", "", "PEM Secure Boot db certificate")
	fl.BoolVar(&f.unsigned, "unsigned", false, "build unsigned ISOs (no Secure Boot)")
	fl.IntVar(&f.jobs, "jobs", runtime.GOMAXPROCS(0), "parallel builds")
	fl.StringVar(&f.arches, "arch", "x86_64", "architectures, comma separated: x86_64, arm64")
	fl.StringVar(&f.mode, "mode", string(imagebuilder.ModeBinary), "binary (script in a per-host signed binary) or esp-script (sign once)")
	fl.StringVar(&f.scriptKey, "script-key", "", "PEM code-signing key for esp-script mode")
	fl.StringVar(&f.scriptCert, "script-cert", "", "PEM code-signing certificate (issued by --ca-cert) for esp-script mode")
	fl.StringVar(&f.ipxeEFI, "ipxe-efi", "", "use this unsigned x86_64 iPXE EFI binary instead of ipxedust's")
	fl.StringVar(&f.ipxeSNP, "ipxe-efi-arm64", "", "use this unsigned arm64 iPXE EFI binary instead of ipxedust's")
	fl.StringVar(&f.shim, "shim", "", shimHelp)
	fl.StringVar(&f.mokManager, "mok-manager", "", mokManagerHelp)
	fl.BoolVar(&f.offline, "offline", false, "make boot tokens locally and write DIR/hosts-import.json")
	fl.StringVar(&f.api, "api", "", "server API URL to register hosts and rotate their boot tokens")
	fl.StringVar(&auth.token, cliFlagToken, "", "admin API token for --api (env "+cliEnvToken+"; prefer the env or --token-file: flags show in ps)")
	fl.StringVar(&auth.tokenFile, cliFlagTokenFile, "", "file holding the admin API token for --api (env "+cliEnvTokenFile+"; default ./"+cliDataDir+"/"+cliTokenFile+" if present)")
	fl.StringVar(&f.serverCert, "server-cert", "", "the server's certificate (DATA_DIR/server.pem): check that it names --server-url's host")
	fl.StringVar(&f.hostName, "host", "", "build only this host (from the CSV or the database)")
	fl.StringVar(&f.fromDB, "from-db", "", "build for the hosts in this server data directory's database (rotates their boot tokens)")
	fl.StringVar(&f.db, "db", "", "with --from-db: database DSN instead of the data directory's SQLite (mysql://…)")
	iso.AddCommand(build)
	return iso
}

// manifestEntry is one line of DIR/manifest.json.
type manifestEntry struct {
	Host string `json:"host"`
	File string `json:"file"`
	imagebuilder.Artifact
}

func runISOBuild(ctx context.Context, f isoFlags, stdout, stderr io.Writer) error {
	if (f.csv == "") == (f.fromDB == "") {
		return errors.New("iso build: give exactly one of --csv or --from-db")
	}
	if f.fromDB != "" && f.caCert == "" {
		f.caCert = pki.FilesIn(f.fromDB).CACert
	}
	for name, v := range map[string]string{"--out": f.out, "--server-url": f.serverURL, "--ca-cert": f.caCert} {
		if v == "" {
			return fmt.Errorf("iso build: %s is required", name)
		}
	}
	if f.fromDB != "" && (f.offline || f.api != "") {
		return errors.New("iso build: --from-db takes its tokens from the database; drop --offline/--api")
	}
	if f.fromDB == "" && f.offline == (f.api != "") {
		return errors.New("iso build: give exactly one of --offline or --api")
	}
	if f.api != "" && f.apiToken == "" {
		return errors.New("iso build: --api needs an admin token (--token-file, " + cliEnvTokenFile + " or " + cliEnvToken + ")")
	}
	if f.jobs < 1 {
		f.jobs = 1
	}

	// 1. Read and check every row before anything is written. Rows are not
	// kept: a CSV file is read again for each later pass (and must not
	// change in between), so memory stays flat in the number of hosts.
	var (
		db      *store.DB
		core    *provision.Core // with db: where boot tokens change
		source  string
		eachRow func(fn func(imagebuilder.Row) error) error // rows to build, in source order
		names   []string                                    // of the rows to build, until sorted
	)
	keep := func(r imagebuilder.Row) bool { return f.hostName == "" || r.Host.Name == f.hostName }
	if f.fromDB != "" {
		cfg := config.Config{DataDir: f.fromDB, DB: f.db}
		var err error
		if db, err = store.Open(ctx, cfg.DSN()); err != nil {
			return fmt.Errorf("iso build: %w", err)
		}
		defer db.Close()
		if core, err = provision.New(provision.Options{Store: db}); err != nil {
			return fmt.Errorf("iso build: %w", err)
		}
		hosts, err := db.ListHosts(ctx, store.HostFilter{})
		if err != nil {
			return fmt.Errorf("iso build: %w", err)
		}
		source = "database"
		eachRow = func(fn func(imagebuilder.Row) error) error {
			for i, h := range hosts {
				if r := (imagebuilder.Row{Line: i + 1, Host: h}); keep(r) {
					if err := fn(r); err != nil {
						return err
					}
				}
			}
			return nil
		}
		if err := eachRow(func(r imagebuilder.Row) error { names = append(names, r.Host.Name); return nil }); err != nil {
			return fmt.Errorf("iso build: %w", err)
		}
	} else {
		source = filepath.Base(f.csv)
		sum, err := scanCSVFile(f.csv, source, imagebuilder.ScanCSV, func(r imagebuilder.Row) error {
			if keep(r) {
				names = append(names, r.Host.Name)
			}
			return nil
		})
		if err != nil {
			return reportRows(stderr, err)
		}
		eachRow = func(fn func(imagebuilder.Row) error) error {
			again, err := scanCSVFile(f.csv, source, imagebuilder.RescanCSV, func(r imagebuilder.Row) error {
				if keep(r) {
					return fn(r)
				}
				return nil
			})
			if err == nil && again != sum {
				err = fmt.Errorf("%s changed during the build", f.csv)
			}
			return err
		}
	}
	if f.hostName != "" && len(names) == 0 {
		return fmt.Errorf("iso build: host %q is not in %s: %w", f.hostName, source, host.ErrNotFound)
	}
	b, caCert, err := newBuilderFromFlags(f)
	if err != nil {
		return err
	}
	var rowErrs imagebuilder.RowErrors
	err = eachRow(func(r imagebuilder.Row) error {
		if e, bad := b.CheckRow(r, source); bad {
			rowErrs = append(rowErrs, e)
		}
		return nil
	})
	if err == nil && len(rowErrs) > 0 {
		err = rowErrs
	}
	if err != nil {
		return reportRows(stderr, err)
	}
	// rank[i] is the place of the i-th row's entry in manifest.json, which is
	// sorted by host name.
	rank := make([]int32, len(names))
	{
		order := make([]int32, len(names))
		for i := range order {
			order[i] = int32(i)
		}
		sort.Slice(order, func(x, y int) bool { return names[order[x]] < names[order[y]] })
		for pos, i := range order {
			rank[i] = int32(pos)
		}
	}
	total := len(names)
	names = nil
	certNote, err := checkServerURLCert(ctx, f, caCert)
	if err != nil {
		return err
	}

	var api *client.Client
	if f.api != "" {
		// --ca-cert pins the API's TLS too: the server presents our CA's chain.
		caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caCert.Raw})
		if api, err = client.New(f.api, f.apiToken, caPEM); err != nil {
			return fmt.Errorf("iso build: --api: %w", err)
		}
	}

	// 2. Build with f.jobs workers; each ISO is written to a temporary file
	// and renamed into place. Manifest entries are kept in a temporary file
	// as ISOs complete; the import file is written as tokens are made, in
	// row order. Both are renamed into place once every ISO is built.
	if err := os.MkdirAll(f.out, 0o755); err != nil {
		return fmt.Errorf("iso build: %w", err)
	}
	manifest, err := newManifestSpool(f.out, total)
	if err != nil {
		return fmt.Errorf("iso build: %w", err)
	}
	defer manifest.discard()
	var imports *jsonListFile
	if f.offline {
		if imports, err = newJSONListFile(filepath.Join(f.out, "hosts-import.json"), "hosts", true); err != nil {
			return fmt.Errorf("iso build: %w", err)
		}
		defer imports.discard()
	}
	type job struct {
		i     int
		row   imagebuilder.Row
		token string
	}
	prog := newProgress(stderr, total)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	next := make(chan job)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for w := 0; w < f.jobs; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range next {
				err := func() error {
					r, tok := j.row, j.token
					if api != nil {
						t, err := registerAndRotate(ctx, api, r.Host)
						if err != nil {
							return err
						}
						tok = t
					}
					var hash string
					if db != nil {
						tok, hash = token.New()
					}
					file := r.Host.Name + ".iso"
					path := filepath.Join(f.out, file)
					var a imagebuilder.Artifact
					err := writeAtomic(path, isoFileMode, func(w io.Writer) error {
						var err error
						if a, err = b.Build(w, r.Host, tok); err != nil || db == nil {
							return err
						}
						// The ISO is complete: only now replace the token
						// hash, so a failed build leaves the old ISO working.
						return rotateInDB(ctx, core, r.Host.Name, hash)
					})
					if err != nil {
						return fmt.Errorf("%s: %w", r.Host.Name, err)
					}
					if err := manifest.add(int(rank[j.i]), manifestEntry{Host: r.Host.Name, File: file, Artifact: a}); err != nil {
						return fmt.Errorf("%s: manifest: %w", r.Host.Name, err)
					}
					if isoBuiltHook != nil {
						isoBuiltHook(path)
					}
					prog.inc()
					return nil
				}()
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
						cancel()
					}
					mu.Unlock()
				}
			}
		}()
	}
	n := 0
	feedErr := eachRow(func(r imagebuilder.Row) error {
		if n >= total {
			return fmt.Errorf("%s has more hosts than when it was checked", source)
		}
		j := job{i: n, row: r}
		n++
		if f.offline {
			plain, hash := token.New()
			j.token = plain
			m, err := hostImport(r.Host, hash)
			if err != nil {
				return err
			}
			if err := imports.add(m); err != nil {
				return fmt.Errorf("write hosts-import.json: %w", err)
			}
		}
		select {
		case next <- j:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	close(next)
	wg.Wait()
	prog.done()
	if firstErr != nil {
		return fmt.Errorf("iso build: %w", firstErr)
	}
	if feedErr != nil {
		return fmt.Errorf("iso build: %w", feedErr)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("iso build: %w", err)
	}

	// 3. Manifest and import file.
	if err := manifest.commit(filepath.Join(f.out, "manifest.json")); err != nil {
		return fmt.Errorf("iso build: write manifest.json: %w", err)
	}
	if imports != nil {
		if err := imports.commit(); err != nil {
			return fmt.Errorf("iso build: write hosts-import.json: %w", err)
		}
	}
	fmt.Fprintln(stdout, isoSummary(total, f.out, b.Config().Signer))
	if f.shim != "" {
		fmt.Fprintf(stdout, "BOOTX64.EFI is %s (shim), iPXE is grubx64.efi: hosts boot them only with the db certificate in their MokList or db\n", term(f.shim))
	}
	if certNote != "" {
		fmt.Fprintln(stdout, certNote)
	}
	return nil
}

// isoBuiltHook, when set (by tests), is called with the path of every ISO
// once it is in place.
var isoBuiltHook func(path string)

// scanCSVFile runs scan (imagebuilder.ScanCSV or RescanCSV) over the file at
// path and returns the SHA-256 of its contents.
func scanCSVFile(path, source string, scan func(io.Reader, string, func(imagebuilder.Row) error) error, fn func(imagebuilder.Row) error) ([sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	file, err := os.Open(path)
	if err != nil {
		return sum, err
	}
	defer file.Close()
	h := sha256.New()
	// On success the CSV reader has read up to EOF, so h saw all of it.
	if err := scan(io.TeeReader(file, h), source, fn); err != nil {
		return sum, err
	}
	h.Sum(sum[:0])
	return sum, nil
}

// manifestSpool collects manifest.json's entries as ISOs complete, in a
// temporary file, and writes them sorted by host at the end: only each
// entry's place in that file is kept in memory.
type manifestSpool struct {
	mu   sync.Mutex
	tmp  *os.File
	size int64
	at   []spooled // by rank
}

// spooled is where one JSON entry sits in a spool file.
type spooled struct {
	off int64
	n   int32
}

func newManifestSpool(dir string, n int) (*manifestSpool, error) {
	tmp, err := os.CreateTemp(dir, ".manifest.json.entries.tmp-*")
	if err != nil {
		return nil, err
	}
	return &manifestSpool{tmp: tmp, at: make([]spooled, n)}, nil
}

// add stores e as the entry at place rank.
func (s *manifestSpool) add(rank int, e manifestEntry) error {
	b, err := json.MarshalIndent(e, listIndent, "  ")
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if rank < 0 || rank >= len(s.at) || s.at[rank].n != 0 {
		return fmt.Errorf("entry %d out of place", rank)
	}
	if _, err := s.tmp.WriteAt(b, s.size); err != nil {
		return err
	}
	s.at[rank] = spooled{off: s.size, n: int32(len(b))}
	s.size += int64(len(b))
	return nil
}

// commit writes every entry, in order, to path atomically.
func (s *manifestSpool) commit(path string) error {
	return writeAtomic(path, 0o644, func(w io.Writer) error {
		bw := bufio.NewWriter(w)
		l := jsonList{w: bw, key: "isos"}
		var buf []byte
		for rank, at := range s.at {
			if at.n == 0 {
				return fmt.Errorf("no entry %d", rank)
			}
			buf = slices.Grow(buf[:0], int(at.n))[:at.n]
			if _, err := s.tmp.ReadAt(buf, at.off); err != nil {
				return err
			}
			if err := l.add(buf); err != nil {
				return err
			}
		}
		if err := l.end(); err != nil {
			return err
		}
		return bw.Flush()
	})
}

// discard removes the spool file.
func (s *manifestSpool) discard() {
	s.tmp.Close()
	os.Remove(s.tmp.Name())
}

// listIndent is the indentation of the entries of a top-level list in the
// output JSON files, written as json.MarshalIndent(v, "", "  ") would.
const listIndent = "    "

// jsonList writes {"key": [entries…]} in json.MarshalIndent's format, one
// entry at a time.
type jsonList struct {
	w         io.Writer
	key       string
	nullEmpty bool // an empty list is null (a nil slice), not []
	n         int
}

// add writes one entry, already indented with listIndent.
func (l *jsonList) add(entry []byte) error {
	sep := ",\n"
	if l.n == 0 {
		k, _ := json.Marshal(l.key)
		sep = "{\n  " + string(k) + ": [\n"
	}
	l.n++
	if _, err := io.WriteString(l.w, sep+listIndent); err != nil {
		return err
	}
	_, err := l.w.Write(entry)
	return err
}

// end closes the list and the object.
func (l *jsonList) end() error {
	tail := "\n  ]\n}\n"
	if l.n == 0 {
		k, _ := json.Marshal(l.key)
		empty := "[]"
		if l.nullEmpty {
			empty = "null"
		}
		tail = "{\n  " + string(k) + ": " + empty + "\n}\n"
	}
	_, err := io.WriteString(l.w, tail)
	return err
}

// jsonListFile streams a jsonList to a temporary file next to path and
// renames it into place on commit.
type jsonListFile struct {
	path string
	tmp  *os.File
	bw   *bufio.Writer
	l    jsonList
}

func newJSONListFile(path, key string, nullEmpty bool) (*jsonListFile, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, err
	}
	f := &jsonListFile{path: path, tmp: tmp, bw: bufio.NewWriter(tmp)}
	f.l = jsonList{w: f.bw, key: key, nullEmpty: nullEmpty}
	return f, nil
}

// add appends v to the list.
func (f *jsonListFile) add(v any) error {
	b, err := json.MarshalIndent(v, listIndent, "  ")
	if err != nil {
		return err
	}
	return f.l.add(b)
}

// commit finishes the file and renames it into place.
func (f *jsonListFile) commit() error {
	if err := f.l.end(); err != nil {
		return err
	}
	if err := f.bw.Flush(); err != nil {
		return err
	}
	if err := f.tmp.Chmod(0o644); err != nil {
		return err
	}
	if err := f.tmp.Close(); err != nil {
		return err
	}
	return os.Rename(f.tmp.Name(), f.path)
}

// discard removes the temporary file unless it was committed.
func (f *jsonListFile) discard() {
	f.tmp.Close()
	os.Remove(f.tmp.Name()) // fails harmlessly after the rename
}

// rotateInDB stores a host's new boot token hash, through the core (the
// one place a boot token changes), audited as the OS user running the CLI.
func rotateInDB(ctx context.Context, core *provision.Core, name, hash string) error {
	cl := provision.Caller{Identity: auth.OSUser(osUser())}
	err := core.StoreBootToken(ctx, cl, name, hash, "ISO built by bootpilot iso build --from-db; the old boot token stops working")
	if err != nil {
		return fmt.Errorf("rotate boot token: %w", err)
	}
	return nil
}

// osUser names the login running the CLI, for audit records.
func osUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return os.Getenv("USER")
}

// reportRows prints every row error and returns a summary error.
func reportRows(stderr io.Writer, err error) error {
	var re imagebuilder.RowErrors
	if !errors.As(err, &re) {
		return fmt.Errorf("iso build: %w", err)
	}
	for _, e := range re {
		fmt.Fprintln(stderr, term(e.Error()))
	}
	return fmt.Errorf("iso build: %d bad rows in %s; nothing written", len(re), re[0].File)
}

func newBuilderFromFlags(f isoFlags) (*imagebuilder.Builder, *x509.Certificate, error) {
	caPEM, err := os.ReadFile(f.caCert)
	if err != nil {
		return nil, nil, fmt.Errorf("iso build: %w", err)
	}
	blk, _ := pem.Decode(caPEM)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, nil, fmt.Errorf("iso build: %s holds no PEM certificate", f.caCert)
	}
	ca, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("iso build: parse %s: %w", f.caCert, err)
	}
	c := imagebuilder.Config{ServerURL: f.serverURL, CACert: ca, Unsigned: f.unsigned, Mode: imagebuilder.Mode(f.mode)}
	for _, a := range strings.Split(f.arches, ",") {
		if a = strings.TrimSpace(a); a != "" {
			c.Arches = append(c.Arches, a)
		}
	}
	if f.unsigned && (f.dbKey != "" || f.dbCert != "") {
		return nil, nil, errors.New("iso build: --unsigned and --db-key/--db-cert exclude each other")
	}
	if !f.unsigned {
		if f.dbKey == "" || f.dbCert == "" {
			return nil, nil, errors.New("iso build: --db-key and --db-cert are required (or --unsigned)")
		}
		if c.Signer, err = loadSignerFiles(f.dbKey, f.dbCert); err != nil {
			return nil, nil, err
		}
	}
	if f.scriptKey != "" || f.scriptCert != "" {
		if c.ScriptSigner, err = loadSignerFiles(f.scriptKey, f.scriptCert); err != nil {
			return nil, nil, err
		}
	}
	for arch, p := range map[string]string{"x86_64": f.ipxeEFI, "arm64": f.ipxeSNP} {
		if p == "" {
			continue
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, nil, fmt.Errorf("iso build: %w", err)
		}
		if c.IPXE == nil {
			c.IPXE = map[string][]byte{}
		}
		c.IPXE[arch] = data
	}
	if c.Shim, c.MokManager, err = loadShim(f.shim, f.mokManager); err != nil {
		return nil, nil, fmt.Errorf("iso build: %w", err)
	}
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, nil, fmt.Errorf("iso build: SOURCE_DATE_EPOCH %q is not a number", s)
		}
		c.Epoch = time.Unix(n, 0).UTC()
	}
	b, err := imagebuilder.NewBuilder(c)
	if err != nil {
		return nil, nil, fmt.Errorf("iso build: %w", err)
	}
	return b, ca, nil
}

// Help of iso build's --shim and --mok-manager (serve's are in internal/config).
const (
	shimHelp = "Microsoft-signed shim (e.g. Debian's /usr/lib/shim/shimx64.efi.signed) to boot as EFI/BOOT/BOOTX64.EFI; " +
		"the signed iPXE becomes EFI/BOOT/grubx64.efi and must be trusted through MokList or db (x86_64 only)"
	mokManagerHelp = "shim's MokManager (e.g. /usr/lib/shim/mmx64.efi.signed) to put next to --shim as EFI/BOOT/mmx64.efi"
)

// loadShim reads the --shim and --mok-manager files ("" for none) and
// checks that each is a signed EFI binary for shim's architecture; errors
// name the flag and the file.
func loadShim(shimPath, mokPath string) (shim, mok []byte, err error) {
	if shimPath == "" {
		if mokPath != "" {
			return nil, nil, errors.New("--mok-manager needs --shim")
		}
		return nil, nil, nil
	}
	read := func(flag, path string) ([]byte, error) {
		if path == "" {
			return nil, nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("--%s: %w", flag, err)
		}
		if err := imagebuilder.CheckSignedEFI(b, imagebuilder.ShimArch); err != nil {
			return nil, fmt.Errorf("--%s %s: %w", flag, path, err)
		}
		return b, nil
	}
	if shim, err = read("shim", shimPath); err != nil {
		return nil, nil, err
	}
	if mok, err = read("mok-manager", mokPath); err != nil {
		return nil, nil, err
	}
	return shim, mok, nil
}

func loadSignerFiles(keyPath, certPath string) (*imagebuilder.Signer, error) {
	if keyPath == "" || certPath == "" {
		return nil, errors.New("iso build: a signing key needs both its key and certificate files")
	}
	k, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("iso build: %w", err)
	}
	c, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("iso build: %w", err)
	}
	s, err := imagebuilder.LoadSigner(k, c)
	if err != nil {
		return nil, fmt.Errorf("iso build: %s: %w", keyPath, err)
	}
	return s, nil
}

// hostImport is a host's JSON with its boot token's hash added.
func hostImport(h host.Host, hash string) (map[string]any, error) {
	b, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("iso build: %w", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("iso build: %w", err)
	}
	m["token_hash"] = hash
	return m, nil
}

// isoFileMode is the mode of every ISO the CLI writes: an ISO carries its
// host's boot token, so only its owner may read it. manifest.json and
// hosts-import.json hold only hashes and stay 0644.
const isoFileMode = 0o600

// writeAtomic writes path through a temporary file in the same directory
// and renames it into place with mode perm (whatever the umask), so readers
// never see a half-written file.
func writeAtomic(path string, perm os.FileMode, write func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if err := write(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// registerAndRotate creates h through the API (or updates its network
// settings when it exists) and returns a fresh boot token.
func registerAndRotate(ctx context.Context, c *client.Client, h host.Host) (string, error) {
	_, err := c.CreateHost(ctx, h)
	if errors.Is(err, host.ErrConflict) {
		_, err = c.PatchHost(ctx, h.Name, hostNetworkPatch(h))
	}
	if err != nil {
		return "", fmt.Errorf("register %s: %w", h.Name, err)
	}
	return c.RotateBootToken(ctx, h.Name)
}

// progress draws a progress bar on stderr when it is a terminal (and not
// in CI).
type progress struct {
	w     io.Writer
	total int
	mu    sync.Mutex
	n     int
	last  time.Time
	tty   bool
}

func newProgress(w io.Writer, total int) *progress {
	p := &progress{w: w, total: total}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 && os.Getenv("CI") == "" {
			p.tty = true
		}
	}
	return p
}

func (p *progress) inc() {
	if !p.tty {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n++
	if time.Since(p.last) < 100*time.Millisecond && p.n != p.total {
		return
	}
	p.last = time.Now()
	const width = 40
	fill := width * p.n / max(p.total, 1)
	fmt.Fprintf(p.w, "\r[%s%s] %d/%d ISOs", strings.Repeat("=", fill), strings.Repeat(" ", width-fill), p.n, p.total)
}

func (p *progress) done() {
	if p.tty && p.n > 0 {
		fmt.Fprintln(p.w)
	}
}
