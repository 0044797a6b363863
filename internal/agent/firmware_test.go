package agent_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bootpilot/bootpilot/internal/agent"
)

// efiVar is an efivarfs file: attributes NV+BS+RT (7), then data.
func efiVar(data ...byte) []byte { return append([]byte{7, 0, 0, 0}, data...) }

func TestParseEFIBool(t *testing.T) {
	for _, c := range []struct {
		name    string
		in      []byte
		want    string
		wantErr bool
	}{
		{"on", efiVar(1), agent.FirmwareEnabled, false},
		{"off", efiVar(0), agent.FirmwareDisabled, false},
		{"value 2", efiVar(2), agent.FirmwareUnknown, true},
		{"no data", efiVar(), agent.FirmwareUnknown, true},
		{"short", []byte{1}, agent.FirmwareUnknown, true},
		{"empty", nil, agent.FirmwareUnknown, true},
		{"two data bytes", efiVar(1, 0), agent.FirmwareUnknown, true},
		{"garbage", []byte("garbage\n"), agent.FirmwareUnknown, true},
	} {
		got, err := agent.ParseEFIBool(c.in)
		if got != c.want || (err != nil) != c.wantErr {
			t.Errorf("ParseEFIBool(%s %x) = %q, %v; want %q, error %v", c.name, c.in, got, err, c.want, c.wantErr)
		}
	}
}

const (
	secureBootFile = "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"
	setupModeFile  = "SetupMode-8be4df61-93ca-11d2-aa0d-00e098032b8c"
)

// efiDir makes a fake /sys/firmware/efi whose efivars holds files.
func efiDir(t *testing.T, files map[string][]byte) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "efi")
	if err := os.MkdirAll(filepath.Join(dir, "efivars"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, "efivars", name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestReadFirmware(t *testing.T) {
	var mounted []string
	mount := func(dir string) error { mounted = append(mounted, dir); return nil }
	for _, c := range []struct {
		name          string
		files         map[string][]byte
		secure, setup string
		wantErr       string
	}{
		{"enabled", map[string][]byte{secureBootFile: efiVar(1), setupModeFile: efiVar(0)}, agent.FirmwareEnabled, agent.FirmwareDisabled, ""},
		{"disabled", map[string][]byte{secureBootFile: efiVar(0), setupModeFile: efiVar(1)}, agent.FirmwareDisabled, agent.FirmwareEnabled, ""},
		{"garbage", map[string][]byte{secureBootFile: []byte("x"), setupModeFile: efiVar(0)}, agent.FirmwareUnknown, agent.FirmwareDisabled, "SecureBoot-"},
		{"missing", nil, agent.FirmwareUnknown, agent.FirmwareUnknown, "no such file"},
	} {
		mounted = nil
		dir := efiDir(t, c.files)
		fw := agent.ReadFirmware(dir, mount)
		if fw.SecureBoot != c.secure || fw.SetupMode != c.setup {
			t.Errorf("%s: ReadFirmware = %+v, want secure boot %q, setup mode %q", c.name, fw, c.secure, c.setup)
		}
		if (c.wantErr == "") != (fw.Err == nil) || (fw.Err != nil && !strings.Contains(fw.Err.Error(), c.wantErr)) {
			t.Errorf("%s: ReadFirmware error %v, want %q", c.name, fw.Err, c.wantErr)
		}
		if want := filepath.Join(dir, "efivars"); len(mounted) != 1 || mounted[0] != want {
			t.Errorf("%s: mounted %q, want [%s]", c.name, mounted, want)
		}
	}
}

func TestReadFirmwareNotUEFI(t *testing.T) {
	mount := func(dir string) error { t.Errorf("mounted %s on a BIOS machine", dir); return nil }
	fw := agent.ReadFirmware(filepath.Join(t.TempDir(), "efi"), mount)
	if fw.SecureBoot != agent.FirmwareNotUEFI || fw.SetupMode != agent.FirmwareNotUEFI || fw.Err != nil {
		t.Errorf("ReadFirmware without an efi directory = %+v, want not UEFI", fw)
	}
	if got, want := fw.String(), "firmware: not UEFI, no Secure Boot"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestReadFirmwareMountFails(t *testing.T) {
	dir := efiDir(t, map[string][]byte{secureBootFile: efiVar(1), setupModeFile: efiVar(0)})
	fw := agent.ReadFirmware(dir, func(string) error { return errors.New("mount efivarfs: no such device") })
	if fw.SecureBoot != agent.FirmwareUnknown || fw.SetupMode != agent.FirmwareUnknown || fw.Err == nil {
		t.Errorf("ReadFirmware when the mount fails = %+v, want unknown with the error", fw)
	}
	if got, want := fw.String(), "firmware: UEFI, Secure Boot unknown, setup mode unknown (mount efivarfs: no such device)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestFirmwareString(t *testing.T) {
	fw := agent.Firmware{SecureBoot: agent.FirmwareEnabled, SetupMode: agent.FirmwareDisabled}
	if got, want := fw.String(), "firmware: UEFI, Secure Boot enabled, setup mode disabled"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}
