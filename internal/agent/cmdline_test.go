package agent_test

import (
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"

	"github.com/bootpilot/bootpilot/internal/agent"
)

const (
	fp   = "9faf717b7f8ca2f93c256c79f8ac5591895d66d1ff3bee6397a70d29c65eed1a"
	base = "console=ttyS0 ip=10.0.2.15::10.0.2.2:255.255.255.0:node01::none nameserver=10.0.2.3 nameserver=10.0.2.4 " +
		"bootpilot.mac=52:54:00:12:34:56 bootpilot.callback=https://10.0.2.100:8443/boot/v1/callback/node01/TOKEN bootpilot.ca=" + fp
)

func TestParseCmdlineClean(t *testing.T) {
	c, err := agent.ParseCmdline(base + " bootpilot.task=clean bootpilot.clean=discard bootpilot.after=poweroff\n")
	if err != nil {
		t.Fatal(err)
	}
	n := c.Network
	if got, want := n.Addr, netip.MustParsePrefix("10.0.2.15/24"); got != want {
		t.Errorf("Addr = %v, want %v", got, want)
	}
	if got, want := n.Gateway, netip.MustParseAddr("10.0.2.2"); got != want {
		t.Errorf("Gateway = %v, want %v", got, want)
	}
	if n.Hostname != "node01" || n.Interface != "" || n.MAC.String() != "52:54:00:12:34:56" || n.VLAN != 0 {
		t.Errorf("Network = %+v", n)
	}
	if len(n.Nameservers) != 2 || n.Nameservers[1].String() != "10.0.2.4" {
		t.Errorf("Nameservers = %v", n.Nameservers)
	}
	if c.Task != agent.TaskClean || c.CleanMethod != "discard" || c.After != "poweroff" {
		t.Errorf("Config = %+v", c)
	}
	if hex.EncodeToString(c.CAFingerprint) != fp || !strings.HasSuffix(c.Callback, "/TOKEN") {
		t.Errorf("CA/Callback = %x %s", c.CAFingerprint, c.Callback)
	}
}

func TestParseCmdlineDeploy(t *testing.T) {
	c, err := agent.ParseCmdline("ip=[2001:db8::5]::[2001:db8::1]:64:h::none bootpilot.mac=aa:bb:cc:dd:ee:ff bootpilot.vlan=100 " +
		"bootpilot.callback=https://s/cb bootpilot.ca=" + strings.ToUpper(fp) + " bootpilot.task=deploy " +
		"bootpilot.image=https://s/img.zst bootpilot.sha256=" + fp + " bootpilot.disk=size>=100G")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Network.Addr.String(); got != "2001:db8::5/64" {
		t.Errorf("Addr = %s", got)
	}
	if c.Network.VLAN != 100 || c.After != "reboot" || c.Image != "https://s/img.zst" || c.SHA256 != fp || c.DiskHint != "size>=100G" {
		t.Errorf("Config = %+v", c)
	}
}

func TestParseCmdlineInterfaceAndPrefix(t *testing.T) {
	c, err := agent.ParseCmdline("ip=192.0.2.9::192.0.2.1:26:h:eno1:off bootpilot.callback=https://s/cb bootpilot.ca=" + fp +
		" bootpilot.task=clean bootpilot.clean=zero")
	if err != nil {
		t.Fatal(err)
	}
	if c.Network.Interface != "eno1" || c.Network.Addr.Bits() != 26 {
		t.Errorf("Network = %+v", c.Network)
	}
}

func TestParseCmdlineErrors(t *testing.T) {
	tests := []struct {
		name, cmdline, want string
	}{
		{"dhcp refused", strings.Replace(base, "::none", "::dhcp", 1) + " bootpilot.task=clean bootpilot.clean=zero", "only static"},
		{"bad mask", strings.Replace(base, "255.255.255.0", "255.0.255.0", 1) + " bootpilot.task=clean bootpilot.clean=zero", "not contiguous"},
		{"http callback", strings.Replace(base, "https://10.0.2.100", "http://10.0.2.100", 1) + " bootpilot.task=clean bootpilot.clean=zero", "https"},
		{"short ca", strings.Replace(base, fp, fp[:62], 1) + " bootpilot.task=clean bootpilot.clean=zero", "64 hex"},
		{"no task", base, "bootpilot.task missing"},
		{"bad task", base + " bootpilot.task=format", "deploy or clean"},
		{"clean without method", base + " bootpilot.task=clean", "bootpilot.clean missing"},
		{"bad method", base + " bootpilot.task=clean bootpilot.clean=shred", "zero, discard or metadata"},
		{"deploy without image", base + " bootpilot.task=deploy bootpilot.sha256=" + fp, "bootpilot.image missing"},
		{"deploy without sha", base + " bootpilot.task=deploy bootpilot.image=https://s/i", "bootpilot.sha256 missing"},
		{"bad disk hint", base + " bootpilot.task=deploy bootpilot.image=https://s/i bootpilot.sha256=" + fp + " bootpilot.disk=sda", "disk hint"},
		{"bad vlan", base + " bootpilot.vlan=5000 bootpilot.task=clean bootpilot.clean=zero", "1-4094"},
		{"bad after", base + " bootpilot.after=halt bootpilot.task=clean bootpilot.clean=zero", "reboot or poweroff"},
		{"twice", base + " bootpilot.task=clean bootpilot.task=deploy bootpilot.clean=zero", "given twice"},
		{"no ip", "bootpilot.mac=52:54:00:12:34:56 bootpilot.task=clean bootpilot.clean=zero bootpilot.callback=https://s/ bootpilot.ca=" + fp, "ip= missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := agent.ParseCmdline(tt.cmdline)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseCmdline(%q) error = %v, want one containing %q", tt.cmdline, err, tt.want)
			}
		})
	}
}

func TestParseCmdlineHidesToken(t *testing.T) {
	_, err := agent.ParseCmdline(strings.Replace(base, "https://10.0.2.100", "http://10.0.2.100", 1) + " bootpilot.task=clean bootpilot.clean=zero")
	if err == nil || strings.Contains(err.Error(), "TOKEN") {
		t.Errorf("error = %v; want an error that does not echo the callback token", err)
	}
}

func TestParseCmdlineKeepsReportableFields(t *testing.T) {
	c, err := agent.ParseCmdline(base + " bootpilot.task=clean bootpilot.clean=shred bootpilot.after=poweroff")
	if err == nil {
		t.Fatal("want an error for bootpilot.clean=shred")
	}
	if c.Callback == "" || len(c.CAFingerprint) != 32 || !c.Network.Addr.IsValid() || c.After != "poweroff" {
		t.Errorf("Config after error = %+v; the agent needs network, callback and CA to report the error", c)
	}
}

func TestCmdlineRoundTrip(t *testing.T) {
	for _, s := range []string{
		base + " bootpilot.task=clean bootpilot.clean=metadata bootpilot.after=poweroff",
		base + " bootpilot.vlan=7 bootpilot.task=deploy bootpilot.image=https://s:8443/i.zst bootpilot.sha256=" + fp + " bootpilot.disk=serial=S1",
		"ip=[2001:db8::5]::[2001:db8::1]:64:h:eno1:none bootpilot.callback=https://s/cb bootpilot.ca=" + fp + " bootpilot.task=clean bootpilot.clean=zero",
	} {
		c, err := agent.ParseCmdline(s)
		if err != nil {
			t.Fatalf("ParseCmdline(%q): %v", s, err)
		}
		again, err := agent.ParseCmdline(c.Cmdline())
		if err != nil {
			t.Fatalf("ParseCmdline(Cmdline()) = %v for %q", err, c.Cmdline())
		}
		if again.Cmdline() != c.Cmdline() || again.Network.Addr != c.Network.Addr || again.Network.MAC.String() != c.Network.MAC.String() {
			t.Errorf("round trip changed the config:\n%s\n%s", c.Cmdline(), again.Cmdline())
		}
	}
	c, _ := agent.ParseCmdline(base + " bootpilot.task=clean bootpilot.clean=zero")
	want := "ip=10.0.2.15::10.0.2.2:255.255.255.0:node01::none nameserver=10.0.2.3 nameserver=10.0.2.4 bootpilot.mac=52:54:00:12:34:56 " +
		"bootpilot.task=clean bootpilot.callback=https://10.0.2.100:8443/boot/v1/callback/node01/TOKEN bootpilot.ca=" + fp +
		" bootpilot.after=reboot bootpilot.clean=zero"
	if got := c.Cmdline(); got != want {
		t.Errorf("Cmdline() =\n%s\nwant\n%s", got, want)
	}
}
