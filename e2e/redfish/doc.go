// Package redfish is the firmware-suite scenario for Redfish virtual media:
// `bootpilot host reimage node01 --via redfish` against a simulated BMC
// (internal/redfish/bmcsim) that drives a QEMU VM (OVMF, TCG) over QMP.
//
// The VM starts powered off with an empty CD drive (boot index 1) and a
// virtio disk (boot index 2) whose EFI system partition holds marker A. The
// real server runs as a subprocess with --secret-key-file and a plain-HTTP
// media listener. The reimage call makes the server build node01's ISO,
// publish it on a signed media URL, insert it (the BMC fetches it in 64 KiB
// ranges and changes the VM's CD medium), set a one-time UEFI boot
// override to the CD and power the host on. OVMF boots the ISO, iPXE fetches
// the install script over HTTPS, the bootpilot agent writes image B to the
// disk and reports installed; the host is ready, and the server ejects the
// media and clears the override. The agent powers off; `bootpilot host power
// node01 on` starts the machine again, and it boots the disk: marker B, with
// no stage 0 on the console.
//
// TestSecureBootFactoryKeys runs a host whose Secure Boot firmware has only
// Microsoft's keys (OVMF_VARS_4M.ms.fd) and whose disk boots Debian's
// Microsoft-signed shim, behind a BMC with SecureBootDatabases seeded from
// that VARS file. The server signs its ISOs with its own db key: the
// firmware refuses them until the db certificate is enrolled through the
// BMC; the enrolment takes effect at the next power cycle, when the
// simulated BMC writes it into the VM's variables and starts QEMU again.
//
// Components missing locally skip; with CI=true they fail.
package redfish
