// Command cmdlineinit is the /init of the tiny initramfs the boot tests
// load: it prints the kernel command line to the serial console and powers
// the machine off.
package main

import (
	"os"
	"syscall"
)

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
		tty.Write([]byte("\nBOOTPILOT-CMDLINE: " + string(cmdline)))
		tty.Sync()
		tty.Close()
	}
	syscall.Sync()
	syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}
