package ipxe_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/ipxe"
)

var update = flag.Bool("update", false, "rewrite golden files")

const testToken = "0123456789abcdef0123456789abcdef"

func TestStockScriptHash(t *testing.T) {
	sum := sha256.Sum256(ipxe.StockScript)
	if got := hex.EncodeToString(sum[:]); got != ipxe.StockScriptSHA256 || len(ipxe.StockScript) != ipxe.MaxScript {
		t.Fatalf("stock script sha256 %s, %d bytes; want %s, %d", got, len(ipxe.StockScript), ipxe.StockScriptSHA256, ipxe.MaxScript)
	}
}

func TestStockPatch(t *testing.T) {
	for _, arch := range ipxe.Arches {
		t.Run(arch, func(t *testing.T) {
			b, err := ipxe.Stock(arch)
			if err != nil {
				t.Fatal(err)
			}
			if b.ScriptSlot() != ipxe.MaxScript {
				t.Fatalf("slot %d, want %d", b.ScriptSlot(), ipxe.MaxScript)
			}
			fp := ipxe.Fingerprint([]byte("our CA"))
			script := []byte("#!ipxe\necho hello\n")
			out, err := b.Patch(script, fp)
			if err != nil {
				t.Fatal(err)
			}
			if len(out) != b.Size() {
				t.Fatalf("patched size %d, want %d", len(out), b.Size())
			}
			if bytes.Contains(out, ipxe.StockScript) || bytes.Contains(out, ipxe.StockRootFingerprint) {
				t.Error("patched binary still holds the stock script or root")
			}
			if bytes.Count(out, fp[:]) != 1 || !bytes.Contains(out, append(script, ' ')) {
				t.Error("patched binary lacks our fingerprint or script")
			}
			// The patched binary can be parsed again by marker? No: the stock
			// script is gone, so Parse must refuse it.
			if _, err := ipxe.Parse(out); err == nil {
				t.Error("Parse(patched) succeeded, want missing-slot error")
			}
			long := append([]byte("#!ipxe\n"), bytes.Repeat([]byte("x"), ipxe.MaxScript)...)
			_, err = b.Patch(long, fp)
			if err == nil || !strings.Contains(err.Error(), "script is 1720 bytes, 7 over the 1713-byte slot") {
				t.Errorf("Patch(too long) = %v", err)
			}
		})
	}
}

func TestParseSlots(t *testing.T) {
	stock, _ := ipxe.Stock("x86_64")
	_ = stock
	root := ipxe.StockRootFingerprint
	pad := bytes.Repeat([]byte{1}, 100)
	marker := append(append([]byte("#!ipxe\necho user build\n"), ipxe.SlotMarker...), '\n')
	cases := []struct {
		name string
		data []byte
		want string // error substring, "" for success
		slot int
	}{
		{"stock", cat(pad, ipxe.StockScript, pad, root, pad), "", ipxe.MaxScript},
		{"marker", cat(pad, marker, pad, root, pad), "", len(marker)},
		{"no script", cat(pad, root, pad), "no embedded-script slot", 0},
		{"two scripts", cat(pad, ipxe.StockScript, pad, ipxe.StockScript, root), "occurs 2 times", 0},
		{"two markers", cat(pad, marker, pad, marker, root), "marker occurs 2 times", 0},
		{"no root", cat(pad, ipxe.StockScript, pad), "no trusted-root slot", 0},
		{"two roots", cat(pad, ipxe.StockScript, root, pad, root), "fingerprint occurs 2 times", 0},
	}
	for _, c := range cases {
		b, err := ipxe.Parse(c.data)
		if c.want == "" {
			if err != nil || b.ScriptSlot() != c.slot {
				t.Errorf("%s: Parse = %v, slot %v; want slot %d", c.name, err, b, c.slot)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Parse error %v, want %q", c.name, err, c.want)
		}
	}
}

// TestPatchMarkerKeepsNeighbours patches a user binary found by the marker
// and checks the bytes right after the slot are left alone.
func TestPatchMarkerKeepsNeighbours(t *testing.T) {
	marker := append(append([]byte("#!ipxe\necho user build\n"), ipxe.SlotMarker...), '\n')
	after := []byte{0x80, 0xc3, 0xf7, 0xff, 0x92}
	data := cat([]byte("MZ"), marker, after, ipxe.StockRootFingerprint, []byte("end"))
	b, err := ipxe.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	out, err := b.Patch([]byte("#!ipxe\nexit 1\n"), [32]byte{1})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out[2+len(marker):2+len(marker)+len(after)], after) {
		t.Error("Patch overwrote the bytes after the marker slot")
	}
	if !bytes.HasPrefix(out[2:], []byte("#!ipxe\nexit 1\n   ")) {
		t.Errorf("slot = %q", out[2:2+len(marker)])
	}
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func goldenHost() host.Host {
	return host.Host{Name: "node01", MACs: []string{"52:54:00:12:34:56"}, IPv4: "10.0.2.15/24", Gateway: "10.0.2.2", DNS: []string{"10.0.2.3"}}
}

func TestStage0Golden(t *testing.T) {
	multi := goldenHost()
	multi.MACs = []string{"52-54-00-12-34-56", "52:54:00:AB:CD:EF"}
	multi.VLAN = 100
	multi.IPv6, multi.Gateway6 = "2001:db8::15/64", "2001:db8::1"
	multi.DNS = []string{"2001:db8::53", "192.0.2.53"}
	cases := map[string]ipxe.Stage0Config{
		"basic":     {Host: goldenHost(), Token: testToken, ServerURL: "https://10.0.2.100:8443"},
		"multi-nic": {Host: multi, Token: testToken, ServerURL: "https://boot.example.org", Tries: 6, Sleep: 3, TimeoutMS: 10000},
	}
	for name, c := range cases {
		got, err := ipxe.Stage0(c)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(got) > ipxe.MaxScript {
			t.Errorf("%s: %d bytes, over %d", name, len(got), ipxe.MaxScript)
		}
		path := filepath.Join("testdata", "stage0-"+name+".ipxe")
		if *update {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: Stage0 differs from %s (run with -update and review):\n%s", name, path, got)
		}
	}
}

func TestStage0Invariants(t *testing.T) {
	got, err := ipxe.Stage0(ipxe.Stage0Config{Host: goldenHost(), Token: testToken, ServerURL: "https://10.0.2.100:8443"})
	if err != nil {
		t.Fatal(err)
	}
	s := string(got)
	for _, want := range []string{
		"set bootpilot/url https://node01:" + testToken + "@10.0.2.100:8443/boot/v1/script?mac=${${nic}/mac:hexhyp}&uuid=${uuid}&serial=${serial:uristring}",
		"chain --timeout 20000 --replace --autofree ${bootpilot/url} ||",
		"set ${nic}/ip 10.0.2.15 ", "set ${nic}/netmask 255.255.255.0 ", "set ${nic}/gateway 10.0.2.2 ", "set dns 10.0.2.3 ",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("script lacks %q", want)
		}
	}
	if strings.Contains(s, "dhcp") || strings.Contains(s, "autoboot") {
		t.Error("stage 0 must never use DHCP")
	}
	// Every exit is "exit 1": plain exit stops in the firmware menu.
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, "exit") && strings.TrimSpace(line) != "exit 1" && !strings.HasPrefix(line, "echo") {
			t.Errorf("line %q: every exit must be exit 1", line)
		}
	}
	if !strings.HasSuffix(s, "exit 1\n") {
		t.Error("script does not end in exit 1")
	}
}

func TestStage0Rejects(t *testing.T) {
	bad := func(mut func(*ipxe.Stage0Config)) ipxe.Stage0Config {
		c := ipxe.Stage0Config{Host: goldenHost(), Token: testToken, ServerURL: "https://10.0.2.100:8443"}
		mut(&c)
		return c
	}
	cases := map[string]ipxe.Stage0Config{
		"token not hex":      bad(func(c *ipxe.Stage0Config) { c.Token = "abc${x}" }),
		"token empty":        bad(func(c *ipxe.Stage0Config) { c.Token = "" }),
		"url http":           bad(func(c *ipxe.Stage0Config) { c.ServerURL = "http://10.0.2.100" }),
		"url path":           bad(func(c *ipxe.Stage0Config) { c.ServerURL = "https://10.0.2.100/x" }),
		"url user":           bad(func(c *ipxe.Stage0Config) { c.ServerURL = "https://a:b@10.0.2.100" }),
		"url injection":      bad(func(c *ipxe.Stage0Config) { c.ServerURL = "https://a${x}b" }),
		"name injection":     bad(func(c *ipxe.Stage0Config) { c.Host.Name = "n||shell" }),
		"mac injection":      bad(func(c *ipxe.Stage0Config) { c.Host.MACs = []string{"52:54:00:12:34:56 && shell"} }),
		"only ipv6 dns":      bad(func(c *ipxe.Stage0Config) { c.Host.DNS = []string{"2001:db8::53"} }),
		"gateway off subnet": bad(func(c *ipxe.Stage0Config) { c.Host.Gateway = "10.0.3.1" }),
	}
	for name, c := range cases {
		_, err := ipxe.Stage0(c)
		var ve *host.ValidationError
		if !errors.As(err, &ve) {
			t.Errorf("%s: Stage0 error = %v, want a *host.ValidationError", name, err)
		}
	}
	many := goldenHost()
	many.MACs = nil
	for i := 0; i < 40; i++ {
		many.MACs = append(many.MACs, "52:54:00:12:34:"+hex.EncodeToString([]byte{byte(i)}))
	}
	_, err := ipxe.Stage0(ipxe.Stage0Config{Host: many, Token: testToken, ServerURL: "https://10.0.2.100:8443"})
	if err == nil || !strings.Contains(err.Error(), "over the 1713-byte slot") {
		t.Errorf("40 MACs: err = %v, want script too long", err)
	}
}

// FuzzStage0 checks that no host field can add a line or a command to the
// script: whatever the input, a rendered script has exactly the template's
// command lines, and values never contain iPXE syntax.
func FuzzStage0(f *testing.F) {
	f.Add("node01", "52:54:00:12:34:56", "10.0.2.15/24", "10.0.2.2", "10.0.2.3", "https://10.0.2.100:8443")
	f.Add("n\nshell", "52:54:00:12:34:56", "10.0.2.15/24 || shell", "10.0.2.2", "10.0.2.3#", "https://x${a}")
	ref, err := ipxe.Stage0(ipxe.Stage0Config{Host: goldenHost(), Token: testToken, ServerURL: "https://10.0.2.100:8443"})
	if err != nil {
		f.Fatal(err)
	}
	refLines := strings.Count(string(ref), "\n")
	f.Fuzz(func(t *testing.T, name, mac, ip, gw, dns, srv string) {
		h := host.Host{Name: name, MACs: []string{mac}, IPv4: ip, Gateway: gw, DNS: []string{dns}}
		got, err := ipxe.Stage0(ipxe.Stage0Config{Host: h, Token: testToken, ServerURL: srv})
		if err != nil {
			return
		}
		if n := strings.Count(string(got), "\n"); n != refLines {
			t.Fatalf("script has %d lines, want %d:\n%s", n, refLines, got)
		}
		if c := strings.Count(string(got), "#"); c != strings.Count(string(ref), "#") {
			t.Fatalf("script has %d '#', want %d", c, strings.Count(string(ref), "#"))
		}
		if c := strings.Count(string(got), "${"); c != strings.Count(string(ref), "${") {
			t.Fatalf("script has %d '${', want %d", c, strings.Count(string(ref), "${"))
		}
	})
}

// TestStage0Fits: a host with a VLAN and IPv6 with a gateway, behind a
// long server name, fits the stock slot with four MACs and a 24-byte name,
// or three MACs and the longest name (63 bytes).
func TestStage0Fits(t *testing.T) {
	macs := []string{"52:54:00:12:34:56", "52:54:00:12:34:57", "52:54:00:12:34:58", "52:54:00:12:34:59"}
	for _, c := range []struct {
		name string
		macs int
	}{{"rack12-chassis04-node07x", 4}, {strings.Repeat("n", 63), 3}} {
		h := goldenHost()
		h.Name, h.MACs, h.VLAN = c.name, macs[:c.macs], 4094
		h.IPv4, h.Gateway, h.DNS = "192.168.100.115/24", "192.168.100.254", []string{"192.168.100.253"}
		h.IPv6, h.Gateway6 = "2001:db8:ffff:ffff:ffff:ffff:ffff:115/64", "2001:db8:ffff:ffff:ffff:ffff:ffff:1"
		got, err := ipxe.Stage0(ipxe.Stage0Config{Host: h, Token: strings.Repeat("f", 32), // token.New's length
			ServerURL: "https://boot-server.datacenter-01.example.org:65535", Tries: 10, Sleep: 10, TimeoutMS: 120000, NICs: 16})
		if err != nil {
			t.Fatalf("%d-byte name, %d MACs: %v", len(c.name), c.macs, err)
		}
		t.Logf("%d-byte name, %d MACs: %d of %d bytes", len(c.name), c.macs, len(got), ipxe.MaxScript)
	}
}
