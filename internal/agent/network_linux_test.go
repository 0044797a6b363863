package agent_test

import (
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bootpilot/bootpilot/internal/agent"
	"github.com/bootpilot/bootpilot/internal/testenv"
)

// TestConfigureNetworkNetns runs ConfigureNetwork in fresh network and UTS
// namespaces on a veth pair and checks the result with ip(8).
func TestConfigureNetworkNetns(t *testing.T) {
	ipBin := testenv.Tool(t, "ip")
	if os.Getuid() != 0 {
		testenv.Missing(t, "root (for network namespaces)")
	}
	root := t.TempDir()
	type result struct {
		name, addrs, routes, host string
		err                       error
	}
	done := make(chan result, 1)
	go func() {
		// This thread enters new namespaces and is never unlocked, so Go
		// discards it when the goroutine ends.
		runtime.LockOSThread()
		var r result
		defer func() { done <- r }()
		if r.err = unix.Unshare(unix.CLONE_NEWNET | unix.CLONE_NEWUTS); r.err != nil {
			return
		}
		run := func(args ...string) string {
			out, err := exec.Command(ipBin, args...).CombinedOutput()
			if err != nil && r.err == nil {
				r.err = err
			}
			return string(out)
		}
		run("link", "add", "v0", "address", "52:54:00:aa:bb:cc", "type", "veth", "peer", "name", "v1")
		run("link", "set", "v1", "up")
		if r.err != nil {
			return
		}
		mac, _ := net.ParseMAC("52:54:00:aa:bb:cc")
		n := agent.Network{
			Addr:        netip.MustParsePrefix("192.0.2.15/24"),
			Gateway:     netip.MustParseAddr("192.0.2.1"),
			Hostname:    "nstest",
			Nameservers: []netip.Addr{netip.MustParseAddr("192.0.2.53")},
			MAC:         mac,
		}
		r.name, r.err = agent.ConfigureNetwork(n, root, 5*time.Second, slog.Default())
		r.addrs = run("-4", "addr", "show", "dev", "v0")
		r.routes = run("-4", "route", "show")
		var u unix.Utsname
		unix.Uname(&u)
		r.host = unix.ByteSliceToString(u.Nodename[:])
	}()
	r := <-done
	if r.err != nil {
		t.Fatalf("ConfigureNetwork in a netns: %v", r.err)
	}
	if r.name != "v0" {
		t.Errorf("interface = %q, want v0 (found by MAC)", r.name)
	}
	if !strings.Contains(r.addrs, "inet 192.0.2.15/24") || !strings.Contains(r.addrs, "UP") {
		t.Errorf("ip addr show v0:\n%s", r.addrs)
	}
	if !strings.Contains(r.routes, "default via 192.0.2.1 dev v0") {
		t.Errorf("ip route:\n%s", r.routes)
	}
	if r.host != "nstest" {
		t.Errorf("hostname in the UTS namespace = %q, want nstest", r.host)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc", "resolv.conf")); string(b) != "nameserver 192.0.2.53\n" {
		t.Errorf("resolv.conf = %q", b)
	}
	if h, _ := os.Hostname(); h == "nstest" {
		t.Error("the test changed the machine's host name")
	}
}
