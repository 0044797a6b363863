package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/provision"
)

// BMCSettings is what SetBMC sends (the domain's wire type).
type BMCSettings = host.BMCSettings

// BMC is what the server shows of a host's BMC: never the password.
type BMC = host.BMCInfo

// BMCMedia is the state of a BMC's CD/DVD virtual media slot (the server's
// wire type).
type BMCMedia = provision.MediaState

// BMCTest is the answer of TestBMC (the server's wire type).
type BMCTest = provision.BMCTest

// MediaResult is the answer of InsertMedia and of the Redfish part of
// reimage/clean via redfish (the server's wire type).
type MediaResult = provision.MediaResult

// SetBMC sets host name's BMC endpoint and credentials.
func (c *Client) SetBMC(ctx context.Context, name string, s BMCSettings) (BMC, error) {
	var out BMC
	err := c.do(ctx, http.MethodPut, hostPath(name, "bmc"), nil, s, &out)
	return out, err
}

// GetBMC returns host name's BMC; host.ErrNotFound when it has none.
func (c *Client) GetBMC(ctx context.Context, name string) (BMC, error) {
	var out BMC
	err := c.do(ctx, http.MethodGet, hostPath(name, "bmc"), nil, nil, &out)
	return out, err
}

// DeleteBMC forgets host name's BMC.
func (c *Client) DeleteBMC(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, hostPath(name, "bmc"), nil, nil, nil)
}

// TestBMC connects to host name's BMC and reads power, boot, Secure Boot
// and virtual media state.
func (c *Client) TestBMC(ctx context.Context, name string) (BMCTest, error) {
	var out BMCTest
	err := c.do(ctx, http.MethodPost, hostPath(name, "bmc", "test"), nil, nil, &out)
	return out, err
}

// InsertMedia builds host name's ISO (rotating its boot token) and inserts
// it as virtual media.
func (c *Client) InsertMedia(ctx context.Context, name, reason string) (MediaResult, error) {
	var out MediaResult
	err := c.do(ctx, http.MethodPost, hostPath(name, "media", "insert"), nil, map[string]string{"reason": reason}, &out)
	return out, err
}

// EjectMedia ejects host name's virtual media.
func (c *Client) EjectMedia(ctx context.Context, name, reason string) error {
	return c.do(ctx, http.MethodPost, hostPath(name, "media", "eject"), nil, map[string]string{"reason": reason}, nil)
}

// Power runs a power action ("on", "off", "restart" or "status") through
// host name's BMC and returns the power state after it.
func (c *Client) Power(ctx context.Context, name, action, reason string) (string, error) {
	var out provision.PowerResult
	err := c.do(ctx, http.MethodPost, hostPath(name, "power"), nil, provision.PowerRequest{Action: action, Reason: reason}, &out)
	return out.PowerState, err
}

// ViaResult is the answer of a reimage or clean via redfish.
type ViaResult struct {
	Host    host.Host   `json:"host"`
	Redfish MediaResult `json:"redfish"`
}

// ReimageVia flags host name for reimage and, via "redfish", inserts its ISO,
// sets a one-time UEFI boot override to the CD and restarts it.
func (c *Client) ReimageVia(ctx context.Context, name, via string, o ReimageOptions) (ViaResult, error) {
	var out ViaResult
	o.Via = via
	err := c.do(ctx, http.MethodPost, hostPath(name, "reimage"), nil, o, &out)
	return out, err
}

// CleanVia is ReimageVia for a clean.
func (c *Client) CleanVia(ctx context.Context, name, via string, o CleanOptions) (ViaResult, error) {
	var out ViaResult
	o.Via = via
	err := c.do(ctx, http.MethodPost, hostPath(name, "clean"), nil, o, &out)
	return out, err
}

// Selector picks hosts for a bulk job: Names, or Profile and/or State (the
// server's wire type).
type Selector = provision.BulkSelector

// Job is a bulk job and its hosts' progress (the server's wire type).
type Job = provision.Job

// JobHost is one host of a Job: queued, running, done or failed.
type JobHost = provision.JobHost

// BulkRequest is a bulk job to start (the server's wire type).
type BulkRequest = provision.BulkRequest

// Bulk starts a bulk "reimage" or "clean" via "redfish" of the hosts sel
// picks; the server queues it (one operation per BMC, a global limit).
func (c *Client) Bulk(ctx context.Context, action, via string, sel Selector, reason string) (Job, error) {
	return c.BulkJob(ctx, action, BulkRequest{Selector: sel, Via: via, Reason: reason})
}

// BulkJob is Bulk with every option of the request (EnrollDB).
func (c *Client) BulkJob(ctx context.Context, action string, r BulkRequest) (Job, error) {
	var out Job
	err := c.do(ctx, http.MethodPost, "/api/v1/bulk/"+url.PathEscape(action), nil, r, &out)
	return out, err
}

// SecureBootStatus is a host's Secure Boot state as its BMC reports it,
// and whether its db holds the server's db certificate (the server's wire
// type).
type SecureBootStatus = provision.SecureBootStatus

// SecureBootRequest is a Secure Boot change (the server's wire type).
type SecureBootRequest = provision.SecureBootRequest

// SecureBoot reads host name's Secure Boot state through its BMC.
func (c *Client) SecureBoot(ctx context.Context, name string) (SecureBootStatus, error) {
	var out SecureBootStatus
	err := c.do(ctx, http.MethodGet, hostPath(name, "secure-boot"), nil, nil, &out)
	return out, err
}

// ChangeSecureBoot enrols the server's db certificate in host name's db
// ("enroll", then with Enable enables Secure Boot), or enables or disables
// Secure Boot ("disable" needs a Reason), through its BMC; the answer is
// the state after.
func (c *Client) ChangeSecureBoot(ctx context.Context, name string, r SecureBootRequest) (SecureBootStatus, error) {
	var out SecureBootStatus
	err := c.do(ctx, http.MethodPost, hostPath(name, "secure-boot"), nil, r, &out)
	return out, err
}

// BulkSecureBootRequest is a bulk enrolment (the server's wire type).
type BulkSecureBootRequest = provision.BulkSecureBootRequest

// BulkSecureBoot starts a job enrolling the server's db certificate
// through the BMCs of the hosts r selects.
func (c *Client) BulkSecureBoot(ctx context.Context, r BulkSecureBootRequest) (Job, error) {
	var out Job
	err := c.do(ctx, http.MethodPost, "/api/v1/bulk/secure-boot-enroll", nil, r, &out)
	return out, err
}

// Job returns a bulk job's progress.
func (c *Client) Job(ctx context.Context, id string) (Job, error) {
	var out Job
	err := c.do(ctx, http.MethodGet, "/api/v1/jobs/"+url.PathEscape(id), nil, nil, &out)
	return out, err
}
