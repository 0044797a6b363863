package main

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/internal/config"
	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/pki"
	"github.com/bootpilot/bootpilot/internal/redfish/bmcsim"
)

// TestBMCSecureBootCLI drives Secure Boot through the real server (its db
// certificate: the one in the data dir, which signs its ISOs) and CLI:
// status, enroll (twice: one copy), disable needs --reason, enable, a BMC
// without SecureBootDatabases, reimage --via redfish --enroll-db and a
// bulk enrolment.
func TestBMCSecureBootCLI(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "secret.key")
	cli(t, "secret-key", "init", keyFile)
	_, dataDir := realServer(t, "sqlite", func(c *config.Config) { c.SecretKeyFile = keyFile })
	db, _, err := pki.EnsureDB(pki.DBFilesIn(dataDir), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	fp := pki.Fingerprint(db.Cert)
	holds := func(b *bmcsim.BMC) int {
		n := 0
		for _, der := range b.State().SecureBootDB {
			if bytes.Equal(der, db.Cert.Raw) {
				n++
			}
		}
		return n
	}

	pwFile := filepath.Join(dir, "bmc-pw")
	os.WriteFile(pwFile, []byte(cliBMCPass+"\n"), 0o600)
	cli(t, "profile", "add", "rocky9", "--installer", "kickstart",
		"--kernel", "https://mirror.example/rocky9/vmlinuz", "--initrd", "https://mirror.example/rocky9/initrd.img")
	// addHost adds host i with its own simulated BMC (Secure Boot off).
	addHost := func(i int, q bmcsim.Quirks) *bmcsim.BMC {
		b := bmcsim.New(bmcsim.Config{Username: "root", Password: cliBMCPass, PoweredOn: true, Quirks: q})
		srv := httptest.NewTLSServer(b)
		srv.Config.ErrorLog = log.New(io.Discard, "", 0)
		t.Cleanup(srv.Close)
		ca := filepath.Join(dir, fmt.Sprintf("ca-%d.pem", i))
		os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)
		name := fmt.Sprintf("node%02d", i)
		cli(t, "host", "add", name, "--mac", fmt.Sprintf("52:54:00:12:35:%02x", i), "--ipv4", fmt.Sprintf("10.0.2.%d/24", 20+i),
			"--gateway", "10.0.2.2", "--dns", "10.0.2.3", "--profile", "rocky9")
		cli(t, "bmc", "set", name, "--url", srv.URL, "--username", "root", "--password-file", pwFile, "--bmc-ca-cert", ca)
		return b
	}
	b1 := addHost(1, bmcsim.Quirks{})

	out := cli(t, "bmc", "secure-boot", "node01", "status")
	for _, want := range []string{"secure boot:", "disabled", "databases:", "SHA256:" + fp, "org cert in db:", "no", "pending restart:"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	out = cli(t, "bmc", "secure-boot", "node01", "enroll", "--enable", "--reason", "fleet key")
	if !regexpLine(out, "org cert in db:", "yes") {
		t.Errorf("enroll --enable:\n%s", out)
	}
	if !strings.Contains(out, "takes effect at the next restart") || !strings.Contains(out, "enabled") {
		t.Errorf("enroll --enable does not say it waits for a restart:\n%s", out)
	}
	var st map[string]any
	json.Unmarshal([]byte(cli(t, "bmc", "secure-boot", "node01", "enroll", "-o", "json")), &st)
	if st["changes"] != nil || st["pending_restart"] != true { // still pending: the enable
		t.Errorf("second enroll = %v, want no change, the enable still pending", st)
	}
	if n := holds(b1); n != 1 || !b1.State().SecureBootEnable {
		t.Errorf("BMC: cert %d times, SecureBootEnable %v; want once, true", n, b1.State().SecureBootEnable)
	}
	if msg, _ := cliFail(t, "bmc", "secure-boot", "node01", "disable"); !strings.Contains(msg, "--reason") {
		t.Errorf("disable without --reason: %s", msg)
	}
	cli(t, "bmc", "secure-boot", "node01", "disable", "--reason", "driver test")
	if b1.State().SecureBootEnable {
		t.Error("disable left Secure Boot enabled")
	}
	out = cli(t, "host", "events", "node01")
	for _, want := range []string{"bmc-secure-boot-enroll", "bmc-secure-boot-enable", "bmc-secure-boot-disable", "driver test"} {
		if !strings.Contains(out, want) {
			t.Errorf("events lack %s:\n%s", want, out)
		}
	}

	addHost(2, bmcsim.Quirks{NoSecureBootDatabases: true})
	msg, _ := cliFail(t, "bmc", "secure-boot", "node02", "enroll")
	if !strings.Contains(msg, "SecureBootDatabases") || !strings.Contains(msg, "README: Secure Boot on a factory-keyed fleet") {
		t.Errorf("enroll through a BMC without SecureBootDatabases: %s", msg)
	}

	b3 := addHost(3, bmcsim.Quirks{})
	out = cli(t, "host", "reimage", "node03", "--via", "redfish", "--enroll-db")
	if !strings.Contains(out, "db certificate added") || holds(b3) != 1 {
		t.Errorf("reimage --enroll-db (BMC holds the cert %d times):\n%s", holds(b3), out)
	}
	if st := b3.State(); len(st.SecureBootApplied) == 0 || len(st.Resets) == 0 {
		t.Errorf("the restart did not apply the db change: %+v", st)
	}

	b4, b5 := addHost(4, bmcsim.Quirks{}), addHost(5, bmcsim.Quirks{})
	out = cli(t, "bmc", "secure-boot", "node04", "node05", "enroll", "--wait")
	if !strings.Contains(out, "secure-boot-enroll") || !strings.Contains(out, "done 2") || holds(b4) != 1 || holds(b5) != 1 {
		t.Errorf("bulk enroll:\n%s", out)
	}
	if h := hostState(t, "node04"); h.State != host.StateReady {
		t.Errorf("a bulk enrolment changed node04's state to %s", h.State)
	}
}

// regexpLine reports whether out has a line starting with label whose
// value is want (tabwriter pads).
func regexpLine(out, label, want string) bool {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, label) && strings.TrimSpace(strings.TrimPrefix(l, label)) == want {
			return true
		}
	}
	return false
}
