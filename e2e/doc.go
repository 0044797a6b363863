// Package e2e is bootpilot's firmware suite: it proves the whole product on
// real UEFI firmware. Each scenario starts the real server binary
// (`bootpilot serve`) on loopback with its own data directory, drives it
// with the real CLI (`bootpilot host|profile|image …`), downloads a host's
// ISO from the server and boots it in QEMU (TCG) + OVMF with a virtio disk;
// the guest reaches the server only through QEMU's restricted user network
// (restrict=on, one guestfwd to socat). The ISO's iPXE fetches its script
// over HTTPS, and for deploys and cleans boots the Debian kernel with the
// bootpilot-agent ramdisk built from this tree.
//
// The disks are GPT images built in Go whose EFI system partition holds a
// "marker" program at EFI/BOOT/BOOTX64.EFI: the stock iPXE binary whose
// embedded script only prints BOOTPILOT-DISK-MARKER-<X> and powers off.
// Seeing a marker on the serial console proves the firmware booted that
// disk; seeing the deployed image's marker proves the image landed.
//
// Scenarios (each asserts on the serial log and on the database through
// `bootpilot host show -o json` and `bootpilot host events`):
//
//  1. ready host → localboot → the disk's marker boots.
//  2. reimage with an image profile → the agent writes the image →
//     installed → ready → the next boot runs the deployed disk's marker.
//  3. clean (zero, metadata) → the disk file is zeroed where the method says
//     → cleaned → ready.
//  4. server stopped → stage 0 gives up within its bound → the disk boots.
//  5. a server certificate from another CA → iPXE refuses it → the disk
//     boots; no state change.
//  6. deploys interrupted twice with --max-attempts 2 → attempt 2 is served,
//     then failed → localboot, never a loop.
//  7. Secure Boot with our db certificate enrolled: unsigned and other-key
//     ISOs are refused; the signed ISO boots, Debian's kernel as Debian
//     signed it is refused, and the deploy works through the same kernel
//     re-signed by our key.
//  8. the real Debian 12 installer (preseed profile): iPXE puts preseed.cfg
//     and the CA into the initramfs; d-i installs unattended up to the
//     mirror the preseed names (a second guestfwd to the test's HTTP
//     server), after its early_command reported "installer started"
//     pinning the CA; a config token made stale mid-boot exits to the disk.
//  9. arm64: the server's arm64 ISO (`bootpilot iso build --arch arm64`,
//     iPXE snp.efi) on QEMU's virt machine + AAVMF, marker disks with
//     EFI/BOOT/BOOTAA64.EFI: localboot; server stopped → give up → disk; a
//     NIC the firmware did not connect → stage 0 says so → disk; a deploy
//     by the agent built for arm64 on Debian's arm64 kernel, unpacked into
//     /opt/bootpilot-e2e/linux-arm64 (or E2E_ARM64_KERNEL_ROOT) by dpkg -x
//     and depmod -b; Secure Boot as in 7 (AAVMF_VARS.ms.fd plus our db
//     certificate): unsigned and other-key arm64 ISOs are refused, the
//     signed one boots, and so does the deploy with the arm64 kernel
//     re-signed by our key.
//  10. the shim layout (`serve --shim`): Microsoft-only db, our db
//     certificate in MokList only → Debian's shim → our iPXE → Debian's
//     kernel as Debian signed it → the agent deploys; without the MOK, shim
//     stops at "Verification failed" and iPXE never runs.
//
// Every deploy under Secure Boot also checks the agent's own report of the
// firmware's state (`msg=firmware secure_boot=enabled`).
//
// Run with `go test ./e2e/` (or `make e2e`); components missing locally
// skip, with CI=true they fail. Two scenarios run at a time. TestMain builds
// cmd/bootpilot and cmd/bootpilot-agent (CGO_ENABLED=0) from this tree;
// E2E_BIN_DIR=dir uses prebuilt ones (dir/bootpilot, dir/bootpilot-agent)
// instead. Debian packages: qemu-system-x86, ovmf, socat, sbsigntool,
// linux-image-amd64, debian-installer-12-netboot-amd64, qemu-system-arm,
// qemu-efi-aarch64, shim-signed, shim-helpers-amd64-signed (and
// linux-image-<ver>-arm64, unpacked, not installed).
package e2e
