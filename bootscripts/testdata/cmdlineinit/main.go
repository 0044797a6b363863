// Command cmdlineinit is the /init of the tiny initramfs the boot tests
// load: it prints the first line of each file iPXE may have added to the
// initramfs, then the kernel command line, to the serial console and powers
// the machine off.
package main

import (
	"os"
	"strings"
	"syscall"
)

// files are the paths bootscripts asks iPXE to put into the initramfs.
var files = []string{"/ks.cfg", "/preseed.cfg", "/bootpilot-ca.pem"}

func main() {
	_ = os.MkdirAll("/proc", 0o755)
	_ = os.MkdirAll("/dev", 0o755)
	_ = syscall.Mount("proc", "/proc", "proc", 0, "")
	_ = syscall.Mount("devtmpfs", "/dev", "devtmpfs", 0, "")
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		cmdline = []byte("error: " + err.Error() + "\n")
	}
	if tty, err := os.OpenFile("/dev/ttyS0", os.O_WRONLY, 0); err == nil {
		for _, f := range files {
			if b, err := os.ReadFile(f); err == nil {
				first, _, _ := strings.Cut(string(b), "\n")
				tty.Write([]byte("\nBOOTPILOT-FILE " + f + ": " + first))
			}
		}
		tty.Write([]byte("\nBOOTPILOT-CMDLINE: " + string(cmdline)))
		tty.Sync()
		tty.Close()
	}
	syscall.Sync()
	syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}
