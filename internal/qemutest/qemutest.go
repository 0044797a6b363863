// Package qemutest boots UEFI virtual machines under QEMU and OVMF (x86_64)
// or AAVMF (arm64) for the firmware tests: an ISO as CD-ROM, optional extra
// disks, a user-mode network with no way out (restrict=on) except one guestfwd rule that
// connects the guest's 10.0.2.100:8443 to a port on the host's loopback, and
// the serial console captured to a file that tests match against.
package qemutest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/internal/testenv"
)

// Firmware file locations (Debian's ovmf package).
const (
	OVMFCode       = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	OVMFVars       = "/usr/share/OVMF/OVMF_VARS_4M.fd"
	OVMFCodeSecure = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"
	OVMFVarsMS     = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"
)

// Arm64 firmware file locations (Debian's qemu-efi-aarch64 package). One
// AAVMF build serves both: it enforces Secure Boot once the VARS hold keys
// (AAVMF_VARS.ms.fd: Microsoft's KEK and db, Secure Boot on), with no SMM
// or secure pflash on the virt machine.
const (
	AAVMFCode   = "/usr/share/AAVMF/AAVMF_CODE.fd"
	AAVMFVars   = "/usr/share/AAVMF/AAVMF_VARS.fd"
	AAVMFVarsMS = "/usr/share/AAVMF/AAVMF_VARS.ms.fd"
)

// Guest network layout: the guest sets its address statically.
const (
	GuestIP     = "10.0.2.15/24"
	GuestGW     = "10.0.2.2"
	GuestDNS    = "10.0.2.3"
	ServerAddr  = "10.0.2.100"
	ServerPort  = 8443
	DefaultMAC  = "52:54:00:12:34:56"
	DefaultUUID = "8c7e2b1a-5d4f-4e3a-9b2c-1f0e9d8c7b6a"
)

// Machine is one QEMU VM. Fill the fields, then Start it.
type Machine struct {
	Dir        string   // work directory for VARS copy and serial log (required)
	Arch       string   // "x86_64" (default) or "arm64": the virt machine with AAVMF
	ISO        string   // CD-ROM image, may be empty; first in the boot order on arm64
	Disks      []string // extra raw disks, attached as virtio-blk
	ForwardTo  int      // host loopback port behind guest 10.0.2.100:8443; 0 for no network
	MAC        string   // NIC MAC; DefaultMAC when empty
	UUID       string   // SMBIOS system UUID (-uuid); DefaultUUID when empty
	Serial     string   // SMBIOS type 1 serial number; none when empty
	SecureBoot bool     // secure-boot firmware (SMM on x86_64) with VARS or OVMFVarsMS/AAVMFVarsMS
	Vars       []byte   // initial VARS content; the stock VARS file when nil
	MemoryMB   int      // 512 when 0
	Extra      []string // extra QEMU arguments

	// NICOutOfBootOrder leaves an arm64 machine's NIC out of QEMU's boot
	// order. AAVMF then connects no UEFI driver to it (it connects only the
	// boot-order devices when QEMU gives an order), so iPXE's snp.efi,
	// which drives only NICs with a UEFI driver, sees none.
	NICOutOfBootOrder bool

	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	waitErr error
	mu      sync.Mutex
}

// Require checks that QEMU, socat and OVMF are installed (skips, or fails
// in CI, otherwise).
func Require(tb testing.TB, secureBoot bool) {
	tb.Helper()
	testenv.Tool(tb, "qemu-system-x86_64")
	testenv.Tool(tb, "socat")
	if secureBoot {
		testenv.File(tb, OVMFCodeSecure)
		testenv.File(tb, OVMFVarsMS)
	} else {
		testenv.File(tb, OVMFCode)
		testenv.File(tb, OVMFVars)
	}
}

// RequireArm64 checks that QEMU for aarch64, socat and AAVMF (with the
// Secure Boot VARS when secureBoot) are installed (skips, or fails in CI,
// otherwise).
func RequireArm64(tb testing.TB, secureBoot bool) {
	tb.Helper()
	testenv.Tool(tb, "qemu-system-aarch64")
	testenv.Tool(tb, "socat")
	testenv.File(tb, AAVMFCode)
	if secureBoot {
		testenv.File(tb, AAVMFVarsMS)
	} else {
		testenv.File(tb, AAVMFVars)
	}
}

// Args returns the QEMU command line for m (after Start prepared the files).
func (m *Machine) args(varsPath string) []string {
	if m.Arch == "arm64" {
		return m.arm64Args(varsPath)
	}
	machine := "q35,accel=tcg"
	code := OVMFCode
	if m.SecureBoot {
		machine += ",smm=on"
		code = OVMFCodeSecure
	}
	mem := m.MemoryMB
	if mem == 0 {
		mem = 512
	}
	a := []string{
		"-machine", machine, "-m", strconv.Itoa(mem), "-smp", "1",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + code,
		"-drive", "if=pflash,format=raw,unit=1,file=" + varsPath,
		"-serial", "file:" + m.logPath, "-display", "none", "-monitor", "none", "-no-reboot",
		"-uuid", def(m.UUID, DefaultUUID),
	}
	if m.SecureBoot {
		a = append(a, "-global", "driver=cfi.pflash01,property=secure,value=on")
	}
	if m.Serial != "" {
		a = append(a, "-smbios", "type=1,serial="+m.Serial)
	}
	if m.ISO != "" {
		a = append(a, "-drive", "file="+m.ISO+",media=cdrom,readonly=on")
	}
	for i, d := range m.Disks {
		a = append(a, "-drive", fmt.Sprintf("file=%s,format=raw,if=none,id=disk%d", d, i),
			"-device", fmt.Sprintf("virtio-blk-pci,drive=disk%d,bootindex=%d", i, i+2))
	}
	if m.ForwardTo > 0 {
		a = append(a, "-netdev", m.netdev(), "-device", "virtio-net-pci,netdev=n0,romfile=,mac="+def(m.MAC, DefaultMAC))
	} else {
		a = append(a, "-nic", "none")
	}
	return append(a, m.Extra...)
}

// arm64Args is args for the arm64 virt machine (TCG, Cortex-A57, AAVMF).
// It has no IDE: the CD is on virtio-scsi. Boot order: CD, disks, NIC.
func (m *Machine) arm64Args(varsPath string) []string {
	mem := m.MemoryMB
	if mem == 0 {
		mem = 512
	}
	a := []string{
		"-machine", "virt,accel=tcg", "-cpu", "cortex-a57", "-m", strconv.Itoa(mem), "-smp", "1",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + AAVMFCode,
		"-drive", "if=pflash,format=raw,unit=1,file=" + varsPath,
		"-serial", "file:" + m.logPath, "-display", "none", "-monitor", "none", "-no-reboot",
		"-uuid", def(m.UUID, DefaultUUID),
	}
	if m.Serial != "" {
		a = append(a, "-smbios", "type=1,serial="+m.Serial)
	}
	if m.ISO != "" {
		a = append(a, "-device", "virtio-scsi-pci,id=scsi0",
			"-drive", "file="+m.ISO+",if=none,id=cd0,media=cdrom,readonly=on",
			"-device", "scsi-cd,bus=scsi0.0,drive=cd0,bootindex=1")
	}
	for i, d := range m.Disks {
		a = append(a, "-drive", fmt.Sprintf("file=%s,format=raw,if=none,id=disk%d", d, i),
			"-device", fmt.Sprintf("virtio-blk-pci,drive=disk%d,bootindex=%d", i, i+2))
	}
	if m.ForwardTo > 0 {
		nic := "virtio-net-pci,netdev=n0,romfile=,mac=" + def(m.MAC, DefaultMAC)
		if !m.NICOutOfBootOrder {
			nic += fmt.Sprintf(",bootindex=%d", len(m.Disks)+2)
		}
		a = append(a, "-netdev", m.netdev(), "-device", nic)
	} else {
		a = append(a, "-nic", "none")
	}
	return append(a, m.Extra...)
}

// netdev is the restricted user network n0 whose only way out is
// ServerAddr:ServerPort to the host's 127.0.0.1:ForwardTo.
func (m *Machine) netdev() string {
	return fmt.Sprintf("user,id=n0,net=10.0.2.0/24,restrict=on,guestfwd=tcp:%s:%d-cmd:socat - TCP:127.0.0.1:%d", ServerAddr, ServerPort, m.ForwardTo)
}

func def(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// Start launches QEMU. The VM is killed when ctx ends.
func (m *Machine) Start(ctx context.Context) error {
	if m.Dir == "" {
		return errors.New("qemutest: Machine.Dir is required")
	}
	qemu := "qemu-system-x86_64"
	switch m.Arch {
	case "", "x86_64":
	case "arm64":
		qemu = "qemu-system-aarch64"
	default:
		return fmt.Errorf("qemutest: Machine.Arch %q: want x86_64 or arm64", m.Arch)
	}
	vars := m.Vars
	if vars == nil {
		src := OVMFVars
		switch {
		case m.Arch == "arm64" && m.SecureBoot:
			src = AAVMFVarsMS
		case m.Arch == "arm64":
			src = AAVMFVars
		case m.SecureBoot:
			src = OVMFVarsMS
		}
		var err error
		if vars, err = os.ReadFile(src); err != nil {
			return fmt.Errorf("qemutest: read VARS: %w", err)
		}
	}
	varsPath := filepath.Join(m.Dir, "OVMF_VARS.fd")
	if err := os.WriteFile(varsPath, vars, 0o644); err != nil {
		return fmt.Errorf("qemutest: write VARS copy: %w", err)
	}
	m.logPath = filepath.Join(m.Dir, "serial.log")
	if err := os.WriteFile(m.logPath, nil, 0o644); err != nil {
		return fmt.Errorf("qemutest: create serial log: %w", err)
	}
	m.cmd = exec.CommandContext(ctx, qemu, m.args(varsPath)...)
	var stderr bytes.Buffer
	m.cmd.Stderr = &stderr
	if err := m.cmd.Start(); err != nil {
		return fmt.Errorf("qemutest: start qemu: %w", err)
	}
	m.done = make(chan struct{})
	go func() {
		err := m.cmd.Wait()
		if err != nil && stderr.Len() > 0 {
			err = fmt.Errorf("%w: %s", err, bytes.TrimSpace(stderr.Bytes()))
		}
		m.mu.Lock()
		m.waitErr = err
		m.mu.Unlock()
		close(m.done)
	}()
	return nil
}

var ansiRE = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-Za-z]|\x1b[=>78]|\r`)

// Log returns the serial console output so far, without ANSI escapes and
// carriage returns.
func (m *Machine) Log() string {
	b, _ := os.ReadFile(m.logPath)
	return ansiRE.ReplaceAllString(string(b), "")
}

// WaitFor polls the serial log until re matches and returns the match. It
// fails when ctx ends or QEMU exits first.
func (m *Machine) WaitFor(ctx context.Context, re *regexp.Regexp) (string, error) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if s := re.FindString(m.Log()); s != "" {
			return s, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("qemutest: waiting for %q: %w", re, ctx.Err())
		case <-m.done:
			if s := re.FindString(m.Log()); s != "" {
				return s, nil
			}
			return "", fmt.Errorf("qemutest: qemu exited (%v) before %q appeared", m.exitErr(), re)
		case <-tick.C:
		}
	}
}

func (m *Machine) exitErr() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.waitErr
}

// Wait waits for QEMU to exit and returns its exit error (nil for status 0,
// what iPXE's poweroff gives).
func (m *Machine) Wait() error {
	<-m.done
	return m.exitErr()
}

// Exited reports whether QEMU has exited.
func (m *Machine) Exited() bool {
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}

// Kill stops QEMU if it still runs and waits for it.
func (m *Machine) Kill() {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	select {
	case <-m.done:
		return
	default:
	}
	_ = m.cmd.Process.Kill()
	<-m.done
}
