package qemutest

// ShimLockGUID is the vendor GUID of shim's variables (MokList, MokSBState,
// …), 605dab50-e046-4300-abb6-3dd810dd8b23.
var ShimLockGUID = guid("605dab50-e046-4300-abb6-3dd810dd8b23")

// EFI variable attributes (UEFI spec, GetVariable).
const (
	attrNonVolatile    = 0x1
	attrBootserviceAcc = 0x2
)

// EnrollMOK returns a copy of an OVMF VARS file whose MokList also holds
// certDER, as `mokutil --import` followed by MokManager's enrolment would
// leave it: shim then trusts binaries signed by that certificate. MokList
// is written non-volatile and boot-service only (no runtime access: shim
// deletes a MokList that the OS could have written), holding one
// EFI_SIGNATURE_LIST of type EFI_CERT_X509 after any lists already there.
func EnrollMOK(vars, certDER []byte) ([]byte, error) {
	return appendX509(vars, "MokList", ShimLockGUID, attrNonVolatile|attrBootserviceAcc, certDER)
}
