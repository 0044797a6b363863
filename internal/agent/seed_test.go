package agent_test

import (
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/bootpilot/bootpilot/internal/agent"
	"github.com/bootpilot/bootpilot/internal/testenv"
)

func testNetwork(vlan int) agent.Network {
	mac, _ := net.ParseMAC("52:54:00:12:34:56")
	return agent.Network{
		Addr:        netip.MustParsePrefix("192.0.2.15/24"),
		Gateway:     netip.MustParseAddr("192.0.2.1"),
		Hostname:    "node01",
		Nameservers: []netip.Addr{netip.MustParseAddr("192.0.2.53"), netip.MustParseAddr("192.0.2.54")},
		MAC:         mac,
		VLAN:        vlan,
	}
}

type netcfg struct {
	Version   int `yaml:"version"`
	Ethernets map[string]struct {
		Match struct {
			MAC string `yaml:"macaddress"`
		} `yaml:"match"`
		Addresses []string `yaml:"addresses"`
	} `yaml:"ethernets"`
	Vlans map[string]struct {
		ID          int      `yaml:"id"`
		Link        string   `yaml:"link"`
		Addresses   []string `yaml:"addresses"`
		Routes      []struct{ To, Via string }
		Nameservers struct {
			Addresses []string `yaml:"addresses"`
		} `yaml:"nameservers"`
	} `yaml:"vlans"`
}

func TestNetworkConfig(t *testing.T) {
	var c netcfg
	if err := yaml.Unmarshal([]byte(agent.NetworkConfig(testNetwork(0))), &c); err != nil {
		t.Fatalf("untagged network-config is not YAML: %v", err)
	}
	e := c.Ethernets["nic0"]
	if c.Version != 2 || e.Match.MAC != "52:54:00:12:34:56" || len(e.Addresses) != 1 || e.Addresses[0] != "192.0.2.15/24" {
		t.Errorf("untagged network-config = %+v\n%s", c, agent.NetworkConfig(testNetwork(0)))
	}
	doc := agent.NetworkConfig(testNetwork(42))
	c = netcfg{}
	if err := yaml.Unmarshal([]byte(doc), &c); err != nil {
		t.Fatalf("VLAN network-config is not YAML: %v\n%s", err, doc)
	}
	v := c.Vlans["vlan42"]
	if v.ID != 42 || v.Link != "nic0" || v.Addresses[0] != "192.0.2.15/24" || len(v.Routes) != 1 || v.Routes[0].Via != "192.0.2.1" ||
		strings.Join(v.Nameservers.Addresses, ",") != "192.0.2.53,192.0.2.54" || len(c.Ethernets["nic0"].Addresses) != 0 {
		t.Errorf("VLAN network-config = %+v\n%s", c, doc)
	}
}

func TestWriteSeed(t *testing.T) {
	mtype := testenv.Tool(t, "mtype")
	minfo := testenv.Tool(t, "minfo")
	dev, path := mustDevice(t, 12<<20)
	writeGPT(t, path) // "cidata" at 5 MiB, 3 MiB long
	msg, err := agent.WriteSeed(dev, testNetwork(0), "bootpilot-abc-1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(msg, "NoCloud seed") {
		t.Errorf("WriteSeed = %q", msg)
	}
	img := path + "@@" + "5242880"
	out, err := exec.Command(mtype, "-i", img, "::network-config").CombinedOutput()
	if err != nil || string(out) != agent.NetworkConfig(testNetwork(0)) {
		t.Errorf("mtype network-config = %v\n%s", err, out)
	}
	out, err = exec.Command(mtype, "-i", img, "::meta-data").CombinedOutput()
	if err != nil || string(out) != "instance-id: bootpilot-abc-1\nlocal-hostname: node01\n" {
		t.Errorf("mtype meta-data = %v\n%s", err, out)
	}
	out, err = exec.Command(minfo, "-i", img).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "CIDATA") {
		t.Errorf("minfo: %v\n%s", err, out)
	}
}

func TestWriteSeedNoPartition(t *testing.T) {
	dev, path := mustDevice(t, 4<<20)
	msg, err := agent.WriteSeed(dev, testNetwork(0), "x")
	if err != nil || !strings.HasPrefix(msg, "no seed written") {
		t.Errorf("WriteSeed without cidata = %q, %v", msg, err)
	}
	_ = path
}
