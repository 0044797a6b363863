package agent

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
)

// EFIDir is where Linux shows the UEFI firmware; it exists only when the
// kernel was booted by UEFI. The agent mounts efivarfs on its efivars
// directory.
const EFIDir = "/sys/firmware/efi"

// The UEFI global variables that say whether the firmware enforces Secure
// Boot (UEFI 2.10 §3.3, Globally Defined Variables). Each efivarfs file
// holds the variable's attributes (efiVarAttrLen bytes), then its data: for
// these two, one byte, 1 for on and 0 for off.
const (
	efiGlobalVariable = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
	secureBootVar     = "SecureBoot-" + efiGlobalVariable
	setupModeVar      = "SetupMode-" + efiGlobalVariable
	efiVarAttrLen     = 4
)

// The values of Firmware's fields.
const (
	FirmwareEnabled  = "enabled"
	FirmwareDisabled = "disabled"
	FirmwareUnknown  = "unknown"  // UEFI, but the variable is missing or unreadable
	FirmwareNotUEFI  = "not UEFI" // booted by BIOS (or a kernel without EFI support)
)

// Firmware is the Secure Boot state of the firmware that booted the agent.
type Firmware struct {
	SecureBoot string // enabled: the firmware verified what it booted
	SetupMode  string // enabled: no platform key, anyone may enrol keys
	Err        error  // why a value is unknown
}

// ReadFirmware reads the Secure Boot state below efiDir (EFIDir), after
// mount has mounted efivarfs on efiDir/efivars. It never fails: a value it
// cannot read is FirmwareUnknown, with the reason in Err.
func ReadFirmware(efiDir string, mount func(dir string) error) Firmware {
	if _, err := os.Stat(efiDir); err != nil {
		return Firmware{SecureBoot: FirmwareNotUEFI, SetupMode: FirmwareNotUEFI}
	}
	vars := filepath.Join(efiDir, "efivars")
	if err := mount(vars); err != nil {
		return Firmware{SecureBoot: FirmwareUnknown, SetupMode: FirmwareUnknown, Err: err}
	}
	var fw Firmware
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(vars, name))
		if err != nil {
			fw.Err = cmp.Or(fw.Err, fmt.Errorf("agent: firmware: %w", err))
			return FirmwareUnknown
		}
		v, err := ParseEFIBool(b)
		if err != nil {
			fw.Err = cmp.Or(fw.Err, fmt.Errorf("agent: firmware: %s: %w", name, err))
		}
		return v
	}
	fw.SecureBoot = read(secureBootVar)
	fw.SetupMode = read(setupModeVar)
	return fw
}

// ParseEFIBool reads an efivarfs file holding a one-byte boolean variable
// (SecureBoot, SetupMode): FirmwareEnabled, FirmwareDisabled, or
// FirmwareUnknown with an error (which does not name the variable) for
// anything else.
func ParseEFIBool(b []byte) (string, error) {
	if len(b) != efiVarAttrLen+1 {
		return FirmwareUnknown, fmt.Errorf("%d bytes, want %d (attributes and one byte)", len(b), efiVarAttrLen+1)
	}
	switch b[efiVarAttrLen] {
	case 0:
		return FirmwareDisabled, nil
	case 1:
		return FirmwareEnabled, nil
	}
	return FirmwareUnknown, fmt.Errorf("value %d, want 0 or 1", b[efiVarAttrLen])
}

// String is the progress line the agent reports, e.g. "firmware: UEFI,
// Secure Boot enabled, setup mode disabled".
func (f Firmware) String() string {
	if f.SecureBoot == FirmwareNotUEFI {
		return "firmware: not UEFI, no Secure Boot"
	}
	s := fmt.Sprintf("firmware: UEFI, Secure Boot %s, setup mode %s", f.SecureBoot, f.SetupMode)
	if f.Err != nil {
		s += " (" + f.Err.Error() + ")"
	}
	return s
}

// logAttrs are the attributes of the agent's "firmware" log line:
// secure_boot=enabled setup_mode=disabled.
func (f Firmware) logAttrs() []any {
	attrs := []any{"secure_boot", f.SecureBoot, "setup_mode", f.SetupMode}
	if f.Err != nil {
		attrs = append(attrs, "err", f.Err)
	}
	return attrs
}
