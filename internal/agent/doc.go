// Package agent is the logic of bootpilot-agent, the program that runs as
// /init of the agent ramdisk. It reads its orders from the kernel command
// line (see ParseCmdline), brings up a static network without DHCP, trusts
// only the CA whose SHA-256 fingerprint it was given, and then either streams
// a disk image onto the target disk (deploy) or wipes every non-removable
// disk (clean), reporting progress and the outcome to the server's callback
// URL before it reboots or powers off.
//
// All block-device I/O goes through the Device interface so that the deploy
// and clean logic runs in tests against regular files.
package agent
