// Command bootpilot-agent is /init of the bootpilot agent ramdisk: it
// deploys a disk image or cleans the disks as the kernel command line says,
// reports to the server and reboots or powers off. Build it static:
// CGO_ENABLED=0 go build ./cmd/bootpilot-agent. The logic lives in
// internal/agent.
package main

import "github.com/bootpilot/bootpilot/internal/agent"

func main() { agent.Main() }
