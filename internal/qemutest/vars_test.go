package qemutest_test

import (
	"bytes"
	"os"
	"testing"

	"github.com/bootpilot/bootpilot/internal/qemutest"
	"github.com/bootpilot/bootpilot/internal/testenv"
)

func liveDB(t *testing.T, vars []byte) (n int, types [][16]byte, sigs [][]byte) {
	t.Helper()
	list, _, err := qemutest.Variables(vars)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range list {
		if v.Name == "db" && v.GUID == qemutest.ImageSecurityDatabaseGUID && v.State == 0x3F {
			n++
			if types, sigs, err = qemutest.SignatureLists(v.Data); err != nil {
				t.Fatal(err)
			}
		}
	}
	return n, types, sigs
}

// TestEnrollDB runs on OVMF's and AAVMF's VARS files: both are the same
// edk2 authenticated variable store (AAVMF's in a 64 MiB pflash image).
func TestEnrollDB(t *testing.T) {
	for _, c := range []struct{ name, ms, plain string }{
		{"OVMF", qemutest.OVMFVarsMS, qemutest.OVMFVars},
		{"AAVMF", qemutest.AAVMFVarsMS, qemutest.AAVMFVars},
	} {
		t.Run(c.name, func(t *testing.T) { testEnrollDB(t, c.ms, c.plain) })
	}
}

func testEnrollDB(t *testing.T, msVars, plainVars string) {
	vars, err := os.ReadFile(testenv.File(t, msVars))
	if err != nil {
		t.Fatal(err)
	}
	n, oldTypes, oldSigs := liveDB(t, vars)
	if n != 1 || len(oldSigs) == 0 {
		t.Fatalf("stock VARS: %d live db records with %d signatures", n, len(oldSigs))
	}
	cert := []byte("\x30\x82 a DER certificate stand-in")
	out, err := qemutest.EnrollDB(vars, cert)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(vars) {
		t.Fatalf("size %d, want %d", len(out), len(vars))
	}
	n, types, sigs := liveDB(t, out)
	if n != 1 {
		t.Fatalf("%d live db records after EnrollDB, want 1", n)
	}
	if len(sigs) != len(oldSigs)+1 {
		t.Fatalf("%d signatures, want %d", len(sigs), len(oldSigs)+1)
	}
	for i := range oldSigs {
		if !bytes.Equal(sigs[i], oldSigs[i]) || types[i] != oldTypes[i] {
			t.Errorf("signature %d changed", i)
		}
	}
	if last := len(sigs) - 1; !bytes.Equal(sigs[last], cert) || types[last] != qemutest.CertX509GUID {
		t.Error("our certificate is not the last X509 signature")
	}
	// Every other variable is untouched and still live.
	before, _, _ := qemutest.Variables(vars)
	after, _, _ := qemutest.Variables(out)
	if len(after) != len(before)+1 {
		t.Errorf("%d records, want %d", len(after), len(before)+1)
	}
	if _, err := qemutest.EnrollDB(make([]byte, 4096), cert); err == nil {
		t.Error("EnrollDB accepted a file with no firmware volume")
	}
	plain, err := os.ReadFile(testenv.File(t, plainVars))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := qemutest.EnrollDB(plain, cert); err == nil {
		t.Error("EnrollDB accepted a VARS file without db")
	}
}

// live returns the live records of name (vendor GUID vendor).
func live(t *testing.T, vars []byte, name string, vendor [16]byte) []qemutest.Variable {
	t.Helper()
	list, _, err := qemutest.Variables(vars)
	if err != nil {
		t.Fatal(err)
	}
	var out []qemutest.Variable
	for _, v := range list {
		if v.Name == name && v.GUID == vendor && v.State == 0x3F {
			out = append(out, v)
		}
	}
	return out
}

func TestEnrollMOK(t *testing.T) {
	vars, err := os.ReadFile(testenv.File(t, qemutest.OVMFVarsMS))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(live(t, vars, "MokList", qemutest.ShimLockGUID)); n != 0 {
		t.Fatalf("stock VARS: %d MokList records", n)
	}
	_, _, dbSigs := liveDB(t, vars)
	certs := [][]byte{[]byte("\x30\x82 one DER certificate stand-in"), []byte("\x30\x82 another")}
	out := vars
	for i, cert := range certs {
		if out, err = qemutest.EnrollMOK(out, cert); err != nil {
			t.Fatal(err)
		}
		mok := live(t, out, "MokList", qemutest.ShimLockGUID)
		if len(mok) != 1 {
			t.Fatalf("%d live MokList records, want 1", len(mok))
		}
		if mok[0].Attr != 0x3 {
			t.Errorf("MokList attributes %#x, want NV|BS (0x3): shim deletes a MokList with runtime access", mok[0].Attr)
		}
		types, sigs, err := qemutest.SignatureLists(mok[0].Data)
		if err != nil {
			t.Fatal(err)
		}
		if len(sigs) != i+1 {
			t.Fatalf("MokList holds %d certificates, want %d", len(sigs), i+1)
		}
		for j := range sigs {
			if !bytes.Equal(sigs[j], certs[j]) || types[j] != qemutest.CertX509GUID {
				t.Errorf("MokList entry %d is not X509 certificate %d", j, j)
			}
		}
	}
	if len(out) != len(vars) {
		t.Fatalf("size %d, want %d", len(out), len(vars))
	}
	if _, _, sigs := liveDB(t, out); len(sigs) != len(dbSigs) {
		t.Errorf("db holds %d signatures after EnrollMOK, want %d (untouched)", len(sigs), len(dbSigs))
	}
	if _, err := qemutest.EnrollMOK(make([]byte, 4096), certs[0]); err == nil {
		t.Error("EnrollMOK accepted a file with no firmware volume")
	}
}
