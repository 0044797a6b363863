package agent

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// LoadOrderFile lists, one absolute path a line, the kernel modules packed
// into the ramdisk in the order they must be loaded (dependencies first).
// internal/initramfs writes it.
const LoadOrderFile = "/lib/modules/load-order"

// LoadModules loads the modules listed in orderFile with finit_module, in
// order. Modules already loaded or built in are fine; a module that fails
// to load (say, for hardware that is absent) is logged and skipped. It
// returns the number of modules loaded.
func LoadModules(orderFile string, log *slog.Logger) (int, error) {
	f, err := os.Open(orderFile)
	if err != nil {
		return 0, fmt.Errorf("agent: modules: %w", err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		p := strings.TrimSpace(sc.Text())
		if p == "" || strings.HasPrefix(p, "#") {
			continue
		}
		if err := loadModule(p); err != nil {
			log.Warn("module not loaded", "module", filepath.Base(p), "err", err)
			continue
		}
		n++
	}
	return n, sc.Err()
}

func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	err = unix.FinitModule(int(f.Fd()), "", 0)
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	return err
}

// mountBase mounts /proc, /sys, /dev (devtmpfs), /tmp and /run, and points
// stdin, stdout and stderr at /dev/console.
func mountBase() error {
	for _, m := range []struct{ src, dir, fstype string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
		{"tmpfs", "/tmp", "tmpfs"},
		{"tmpfs", "/run", "tmpfs"},
	} {
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			return fmt.Errorf("agent: mkdir %s: %w", m.dir, err)
		}
		if err := unix.Mount(m.src, m.dir, m.fstype, unix.MS_NOSUID, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("agent: mount %s: %w", m.dir, err)
		}
	}
	if c, err := os.OpenFile("/dev/console", os.O_RDWR, 0); err == nil {
		for fd := 0; fd < 3; fd++ {
			_ = unix.Dup2(int(c.Fd()), fd)
		}
		c.Close()
	}
	return nil
}

// mountEFIVars mounts efivarfs on dir, read-only: the agent never writes
// UEFI variables. Already mounted (EBUSY) is fine.
func mountEFIVars(dir string) error {
	err := unix.Mount("efivarfs", dir, "efivarfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
	if err != nil && !errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("agent: mount efivarfs on %s: %w", dir, err)
	}
	return nil
}

// ConfigureNetwork brings up the NIC with n.MAC (or n.Interface), optionally
// a VLAN on it, the static address, the default route, the host name and
// /etc/resolv.conf under root. It waits up to wait for the NIC to appear and
// for its carrier.
func ConfigureNetwork(n Network, root string, wait time.Duration, log *slog.Logger) (string, error) {
	if lo, err := net.InterfaceByName("lo"); err == nil {
		if err := linkUp(lo.Index); err != nil {
			log.Warn("loopback", "err", err)
		}
	}
	deadline := time.Now().Add(wait)
	var nic *net.Interface
	for {
		nic = findNIC(n)
		if nic != nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if nic == nil {
		names := []string{}
		ifs, _ := net.Interfaces()
		for _, i := range ifs {
			names = append(names, i.Name+"="+i.HardwareAddr.String())
		}
		return "", fmt.Errorf("agent: no interface with MAC %s / name %q (have %v)", n.MAC, n.Interface, names)
	}
	if err := linkUp(nic.Index); err != nil {
		return "", err
	}
	index, name := nic.Index, nic.Name
	if n.VLAN > 0 {
		name = fmt.Sprintf("vlan%d", n.VLAN)
		if err := addVLAN(nic.Index, name, n.VLAN); err != nil {
			return "", err
		}
		v, err := net.InterfaceByName(name)
		if err != nil {
			return "", fmt.Errorf("agent: vlan %s: %w", name, err)
		}
		index = v.Index
		if err := linkUp(index); err != nil {
			return "", err
		}
	}
	for time.Now().Before(deadline) && !running(nic.Index) {
		time.Sleep(200 * time.Millisecond)
	}
	if err := addAddr(index, n.Addr); err != nil {
		return "", err
	}
	if n.Gateway.IsValid() {
		if err := addDefaultRoute(index, n.Gateway); err != nil {
			return "", err
		}
	}
	if n.Hostname != "" {
		if err := unix.Sethostname([]byte(n.Hostname)); err != nil {
			log.Warn("sethostname", "err", err)
		}
	}
	if err := WriteResolvConf(filepath.Join(root, "etc", "resolv.conf"), n.Nameservers); err != nil {
		return "", err
	}
	return name, nil
}

// running reports whether the link has carrier (IFF_RUNNING).
func running(index int) bool {
	i, err := net.InterfaceByIndex(index)
	return err == nil && i.Flags&net.FlagRunning != 0
}

func findNIC(n Network) *net.Interface {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	for i := range ifs {
		if n.Interface != "" && ifs[i].Name == n.Interface {
			return &ifs[i]
		}
		if n.Interface == "" && n.MAC != nil && ifs[i].HardwareAddr.String() == n.MAC.String() {
			return &ifs[i]
		}
	}
	return nil
}

// WriteResolvConf writes a resolv.conf listing the name servers.
func WriteResolvConf(path string, servers []netip.Addr) error {
	var b strings.Builder
	for _, s := range servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("agent: resolv.conf: %w", err)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("agent: resolv.conf: %w", err)
	}
	return nil
}

// finish syncs and reboots or powers off. As PID 1 it never returns;
// otherwise (tests, a mistaken run on a live system) it exits.
func finish(after string, log *slog.Logger) {
	unix.Sync()
	if os.Getpid() != 1 {
		log.Info("not PID 1: exiting instead of " + after)
		os.Exit(0)
	}
	cmd := unix.LINUX_REBOOT_CMD_RESTART
	if after == AfterPoweroff {
		cmd = unix.LINUX_REBOOT_CMD_POWER_OFF
	}
	log.Info("agent done", "after", after)
	err := unix.Reboot(cmd)
	log.Error("reboot failed", "err", err)
	for {
		time.Sleep(time.Hour)
	}
}
