// Package bmcsim is a stateful Redfish service for tests: one computer
// system behind a BMC, with power, a UEFI boot override, Secure Boot state
// and key databases, virtual media and task monitors, written from the DMTF
// Redfish schemas (ServiceRoot, SessionService, ComputerSystem, Manager,
// VirtualMedia, TaskService, SecureBoot, SecureBootDatabase, Certificate). It is an http.Handler, so httptest.NewTLSServer(bmc) gives a
// BMC with its own CA.
//
// Quirks mimic known vendor differences: virtual media only under the system
// (MediaUnderSystems), no InsertMedia/EjectMedia actions so clients must
// PATCH Image (NoInsertAction), a mandatory TransferProtocolType
// (RequireTransferProtocol), asynchronous actions answered with 202 and a task
// monitor (AsyncTasks), a number of initial 503 answers (Flaky5xx), a
// SecureBoot resource without SecureBootDatabases as on older BMCs
// (NoSecureBootDatabases: no link, 404 below it), and certificates listed
// by fingerprint only (NoCertificateString).
//
// Secure Boot: SecureBootDatabases holds PK, KEK, db, dbx and their
// read-only *Default copies, each with a Certificates collection (GET, POST
// {"CertificateString": PEM, "CertificateType": "PEM"}, DELETE of a member)
// and a ResetKeys action; db starts with Config.SecureBootDB. PATCHing
// SecureBootEnable and changing db are pending, as on real hardware, until
// the next power cycle (power on from off, or a restart of a system that is
// on): then OnSecureBoot gets the change before the power or reset hook
// runs, and SecureBootCurrentBoot follows. When OnSecureBoot fails the
// change stays pending (State().SecureBootError says why).
//
// Hooks let a test drive a real machine: OnInsert gets the image URL (see
// FetchISO to read it in small ranges as a BMC does, and QMP to put it into
// a QEMU VM's CD drive), OnReset a restart of a running system and OnPower a
// power transition, OnSecureBoot the Secure Boot change a power cycle applies.
// Machine wires all hooks to a QEMU VM through QMP (and, with
// Machine.ApplySecureBoot, restarts the VM on changed UEFI variables).
package bmcsim

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Quirks select vendor behaviours. The zero value is a BMC that follows the
// schemas closely, with virtual media under Managers/1.
type Quirks struct {
	// MediaUnderSystems puts VirtualMedia under Systems/1 only (no
	// Managers/1/VirtualMedia link).
	MediaUnderSystems bool
	// MediaInBoth lists the same slots under both Managers/1 and Systems/1.
	MediaInBoth bool
	// NoInsertAction removes the InsertMedia/EjectMedia actions; media is
	// inserted and ejected by PATCHing Image and Inserted.
	NoInsertAction bool
	// RequireTransferProtocol refuses an insert without TransferProtocolType.
	RequireTransferProtocol bool
	// AsyncTasks answers media and reset requests with 202 Accepted and a
	// Location task monitor. A task completes once its work is done and its
	// monitor has been polled TaskPolls times (default 1), so a client that
	// does not follow the monitor sees no change.
	AsyncTasks bool
	// TaskPolls is how many monitor polls answer 202 before completion.
	TaskPolls int
	// Flaky5xx answers the first N requests with 503 Service Unavailable.
	Flaky5xx int
	// FlakyStatus is the status of the flaky answers: 503 (default), 500,
	// 502, 504 or 429 (with Retry-After: 0).
	FlakyStatus int
	// FlakyPath limits Flaky5xx to requests whose path contains it (e.g.
	// "InsertMedia"); empty means every request.
	FlakyPath string
	// RejectWriteProtected refuses inserts that send WriteProtected, as
	// some BMCs refuse parameters they do not implement.
	RejectWriteProtected bool
	// FixedBootMode refuses PATCHes of BootSourceOverrideMode (the firmware
	// is UEFI-only and the property read-only).
	FixedBootMode bool
	// NoSessions leaves out the SessionService: basic auth only.
	NoSessions bool
	// NoSecureBootDatabases leaves out SecureBootDatabases (SecureBoot
	// v1.0, as older BMCs have): no link, 404 on its paths.
	NoSecureBootDatabases bool
	// NoCertificateString lists Secure Boot certificates without
	// CertificateString: Fingerprint, Subject and Issuer only.
	NoCertificateString bool
}

// Config configures a BMC.
type Config struct {
	Username, Password string // "admin", "s3cret"
	Quirks
	// PoweredOn is the initial power state.
	PoweredOn bool
	// SecureBoot is the initial Secure Boot state (SecureBootEnable and
	// SecureBootCurrentBoot).
	SecureBoot bool
	// SecureBootDB is the initial content of db and dbDefault: DER
	// certificates, as the firmware has them.
	SecureBootDB [][]byte
	// OnInsert is called with the image URL when media is inserted. An
	// error fails the insert as a BMC that cannot read the image would.
	OnInsert func(imageURL string) error
	// OnEject is called when media is ejected.
	OnEject func()
	// OnReset is called for a restart (GracefulRestart, ForceRestart,
	// PowerCycle) of a system that is on.
	OnReset func(kind string)
	// OnPower is called when the power state changes.
	OnPower func(on bool)
	// OnSecureBoot is called at a power cycle with pending Secure Boot
	// changes, before OnPower or OnReset. An error leaves them pending.
	OnSecureBoot func(SecureBootChange) error
}

// Media is the state of one virtual media slot.
type Media struct {
	ID               string   // "CD1"
	MediaTypes       []string // ["CD", "DVD"]
	Image            string   // "" when empty
	Inserted         bool
	WriteProtected   bool
	TransferProtocol string // "HTTP", "HTTPS" or ""
}

// State is a snapshot of the simulated system.
type State struct {
	PowerOn      bool
	BootTarget   string // BootSourceOverrideTarget: "None", "Cd", "Hdd", …
	BootEnabled  string // BootSourceOverrideEnabled: "Disabled", "Once", "Continuous"
	BootMode     string // BootSourceOverrideMode: "UEFI" or "Legacy"
	BootedFrom   []string
	Resets       []string // every accepted ResetType, in order
	Media        []Media
	Sessions     int   // open sessions
	Requests     int64 // requests seen, including failed ones
	Failed5xx    int64 // requests answered by Flaky5xx
	BasicAuthOK  int64 // requests authenticated by basic auth
	SessionAuth  int64 // requests authenticated by X-Auth-Token
	MediaPatches int64 // PATCHes of a VirtualMedia resource
	Actions      int64 // media action POSTs

	SecureBootEnable  bool     // SecureBootEnable: what the next power cycle applies
	SecureBootCurrent bool     // SecureBootCurrentBoot is Enabled
	SecureBootDB      [][]byte // db as listed (DER), pending changes included
	SecureBootApplied [][]byte // db as the firmware has it since the last power cycle
	SecureBootError   string   // the last OnSecureBoot error; "" after a success
}

// BMC is a simulated Redfish service. Use New; its methods are safe for
// concurrent use.
type BMC struct {
	cfg Config

	requests atomic.Int64
	flaky    atomic.Int64
	failed   atomic.Int64
	basicOK  atomic.Int64
	tokenOK  atomic.Int64
	patches  atomic.Int64
	actions  atomic.Int64

	mu       sync.Mutex
	power    bool
	boot     [3]string // target, enabled, mode
	booted   []string
	resets   []string
	media    []*Media
	sessions map[string]string // id → token
	nextID   int
	tasks    map[string]*task
	sb       secureBoot
}

// task is one asynchronous operation.
type task struct {
	id       string
	polls    int
	done     bool // work finished (hook ran)
	applied  bool
	applying bool
	work     func() error     // runs without the lock (hooks)
	apply    func() *apiError // runs under the lock once work is done
	workErr  error
	result   *apiError // nil: success
}

// New returns a BMC with two virtual media slots (Floppy1 first, then CD1),
// Boot override disabled and UEFI mode.
func New(cfg Config) *BMC {
	if cfg.TaskPolls <= 0 {
		cfg.TaskPolls = 1
	}
	return &BMC{
		cfg:   cfg,
		power: cfg.PoweredOn,
		boot:  [3]string{"None", "Disabled", "UEFI"},
		media: []*Media{
			{ID: "Floppy1", MediaTypes: []string{"Floppy", "USBStick"}, WriteProtected: true},
			{ID: "CD1", MediaTypes: []string{"CD", "DVD"}, WriteProtected: true},
		},
		sessions: map[string]string{},
		tasks:    map[string]*task{},
		sb:       newSecureBoot(cfg),
	}
}

// State returns a snapshot of the system.
func (b *BMC) State() State {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := State{
		PowerOn: b.power, BootTarget: b.boot[0], BootEnabled: b.boot[1], BootMode: b.boot[2],
		BootedFrom: slices.Clone(b.booted), Resets: slices.Clone(b.resets), Sessions: len(b.sessions),
		Requests: b.requests.Load(), Failed5xx: b.failed.Load(), BasicAuthOK: b.basicOK.Load(),
		SessionAuth: b.tokenOK.Load(), MediaPatches: b.patches.Load(), Actions: b.actions.Load(),
		SecureBootEnable: b.sb.enable, SecureBootCurrent: b.sb.current,
		SecureBootDB: b.sb.dbs["db"].ders(), SecureBootApplied: slices.Clone(b.sb.applied), SecureBootError: b.sb.applyErr,
	}
	for _, m := range b.media {
		c := *m
		c.MediaTypes = slices.Clone(m.MediaTypes)
		s.Media = append(s.Media, c)
	}
	return s
}

// ExpireSessions ends every session, as a session timeout or a BMC
// restart does.
func (b *BMC) ExpireSessions() {
	b.mu.Lock()
	defer b.mu.Unlock()
	clear(b.sessions)
}

// CD returns the state of the CD slot.
func (b *BMC) CD() Media {
	for _, m := range b.State().Media {
		if m.ID == "CD1" {
			return m
		}
	}
	panic("bmcsim: no CD1")
}

// apiError is a Redfish error answer.
type apiError struct {
	status int
	id     string // "Base.1.8.ActionParameterMissing"
	msg    string
}

func errf(status int, id, format string, args ...any) *apiError {
	return &apiError{status: status, id: id, msg: fmt.Sprintf(format, args...)}
}

func (e *apiError) write(w http.ResponseWriter) {
	writeJSON(w, e.status, map[string]any{"error": map[string]any{
		"code":    e.id,
		"message": e.msg,
		"@Message.ExtendedInfo": []any{map[string]any{
			"@odata.type": "#Message.v1_1_1.Message", "MessageId": e.id, "Message": e.msg, "Severity": "Warning",
		}},
	}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("OData-Version", "4.0")
	w.WriteHeader(status)
	if v != nil {
		json.NewEncoder(w).Encode(v)
	}
}

const root = "/redfish/v1"

// ServeHTTP implements the Redfish service.
func (b *BMC) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.requests.Add(1)
	if b.cfg.Flaky5xx > 0 && strings.Contains(r.URL.Path, b.cfg.FlakyPath) && b.flaky.Add(1) <= int64(b.cfg.Flaky5xx) {
		b.failed.Add(1)
		status := b.cfg.FlakyStatus
		if status == 0 {
			status = http.StatusServiceUnavailable
		}
		if status == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "0")
		}
		errf(status, "Base.1.8.ServiceTemporarilyUnavailable", "the service is busy, retry later").write(w)
		return
	}
	p := strings.TrimSuffix(r.URL.Path, "/")
	if p == "/redfish" {
		writeJSON(w, 200, map[string]any{"v1": root + "/"})
		return
	}
	if p == root {
		b.serviceRoot(w)
		return
	}
	if p == root+"/SessionService/Sessions" && r.Method == http.MethodPost && !b.cfg.NoSessions {
		b.createSession(w, r)
		return
	}
	if !b.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Basic realm="bmcsim"`)
		errf(http.StatusUnauthorized, "Base.1.8.NoValidSession", "no valid session or credentials").write(w)
		return
	}
	if e := b.route(w, r, p); e != nil {
		e.write(w)
	}
}

func (b *BMC) authorized(r *http.Request) bool {
	if tok := r.Header.Get("X-Auth-Token"); tok != "" {
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, t := range b.sessions {
			if subtle.ConstantTimeCompare([]byte(t), []byte(tok)) == 1 {
				b.tokenOK.Add(1)
				return true
			}
		}
		return false
	}
	u, p, ok := r.BasicAuth()
	if ok && b.credentialsOK(u, p) {
		b.basicOK.Add(1)
		return true
	}
	return false
}

func (b *BMC) credentialsOK(u, p string) bool {
	return subtle.ConstantTimeCompare([]byte(u), []byte(b.cfg.Username)) == 1 &&
		subtle.ConstantTimeCompare([]byte(p), []byte(b.cfg.Password)) == 1
}

func odata(id, typ string) map[string]any {
	return map[string]any{"@odata.id": id, "@odata.type": typ}
}

func link(id string) map[string]any { return map[string]any{"@odata.id": id} }

func collection(id, typ string, members ...string) map[string]any {
	m := odata(id, typ)
	var ls []any
	for _, x := range members {
		ls = append(ls, link(x))
	}
	m["Members"] = ls
	m["Members@odata.count"] = len(ls)
	m["Name"] = "Collection"
	return m
}

func (b *BMC) serviceRoot(w http.ResponseWriter) {
	m := odata(root, "#ServiceRoot.v1_15_0.ServiceRoot")
	m["Id"] = "RootService"
	m["Name"] = "bmcsim Redfish service"
	m["RedfishVersion"] = "1.17.0"
	m["UUID"] = "92384634-2938-2342-8820-489239905423"
	m["Systems"] = link(root + "/Systems")
	m["Managers"] = link(root + "/Managers")
	m["TaskService"] = link(root + "/TaskService")
	if !b.cfg.NoSessions {
		m["SessionService"] = link(root + "/SessionService")
		m["Links"] = map[string]any{"Sessions": link(root + "/SessionService/Sessions")}
	}
	writeJSON(w, 200, m)
}

func newToken() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (b *BMC) createSession(w http.ResponseWriter, r *http.Request) {
	var in struct{ UserName, Password string }
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.UserName == "" {
		errf(400, "Base.1.8.MalformedJSON", "body must hold UserName and Password").write(w)
		return
	}
	if !b.credentialsOK(in.UserName, in.Password) {
		errf(401, "Base.1.8.InsufficientPrivilege", "invalid credentials").write(w)
		return
	}
	b.mu.Lock()
	b.nextID++
	id := fmt.Sprint(b.nextID)
	tok := newToken()
	b.sessions[id] = tok
	b.mu.Unlock()
	loc := root + "/SessionService/Sessions/" + id
	w.Header().Set("Location", loc)
	w.Header().Set("X-Auth-Token", tok)
	m := odata(loc, "#Session.v1_6_0.Session")
	m["Id"], m["Name"], m["UserName"] = id, "User Session", in.UserName
	writeJSON(w, http.StatusCreated, m)
}

// route dispatches an authenticated request.
func (b *BMC) route(w http.ResponseWriter, r *http.Request, p string) *apiError {
	get := r.Method == http.MethodGet || r.Method == http.MethodHead
	switch {
	case p == root+"/SessionService" && get && !b.cfg.NoSessions:
		m := odata(p, "#SessionService.v1_1_8.SessionService")
		m["Id"], m["Name"], m["ServiceEnabled"], m["SessionTimeout"] = "SessionService", "Session Service", true, 1800
		m["Sessions"] = link(p + "/Sessions")
		writeJSON(w, 200, m)
		return nil
	case p == root+"/SessionService/Sessions" && get && !b.cfg.NoSessions:
		b.mu.Lock()
		var ids []string
		for id := range b.sessions {
			ids = append(ids, p+"/"+id)
		}
		b.mu.Unlock()
		slices.Sort(ids)
		writeJSON(w, 200, collection(p, "#SessionCollection.SessionCollection", ids...))
		return nil
	case strings.HasPrefix(p, root+"/SessionService/Sessions/") && !b.cfg.NoSessions:
		id := strings.TrimPrefix(p, root+"/SessionService/Sessions/")
		b.mu.Lock()
		_, ok := b.sessions[id]
		if ok && r.Method == http.MethodDelete {
			delete(b.sessions, id)
		}
		b.mu.Unlock()
		if !ok {
			return errf(404, "Base.1.8.ResourceMissingAtURI", "no session %s", id)
		}
		if r.Method == http.MethodDelete {
			w.WriteHeader(http.StatusNoContent)
			return nil
		}
		m := odata(p, "#Session.v1_6_0.Session")
		m["Id"], m["UserName"] = id, b.cfg.Username
		writeJSON(w, 200, m)
		return nil
	case p == root+"/Systems" && get:
		writeJSON(w, 200, collection(p, "#ComputerSystemCollection.ComputerSystemCollection", p+"/1"))
		return nil
	case p == root+"/Systems/1":
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			writeJSON(w, 200, b.system())
			return nil
		case http.MethodPatch:
			return b.patchSystem(w, r)
		}
	case p == root+"/Systems/1/Actions/ComputerSystem.Reset" && r.Method == http.MethodPost:
		return b.reset(w, r)
	case strings.HasPrefix(p, root+"/Systems/1/SecureBoot"):
		if e, ok := b.routeSecureBoot(w, r, p); ok {
			return e
		}
	case p == root+"/Managers" && get:
		writeJSON(w, 200, collection(p, "#ManagerCollection.ManagerCollection", p+"/1"))
		return nil
	case p == root+"/Managers/1" && get:
		m := odata(p, "#Manager.v1_17_0.Manager")
		m["Id"], m["Name"], m["ManagerType"] = "1", "BMC", "BMC"
		m["Status"] = map[string]any{"State": "Enabled", "Health": "OK"}
		if b.mediaUnder("Managers") {
			m["VirtualMedia"] = link(p + "/VirtualMedia")
		}
		m["Links"] = map[string]any{"ManagerForServers": []any{link(root + "/Systems/1")}}
		writeJSON(w, 200, m)
		return nil
	case p == root+"/TaskService" && get:
		m := odata(p, "#TaskService.v1_2_0.TaskService")
		m["Id"], m["Name"], m["ServiceEnabled"] = "TaskService", "Task Service", true
		m["Tasks"] = link(p + "/Tasks")
		writeJSON(w, 200, m)
		return nil
	case p == root+"/TaskService/Tasks" && get:
		b.mu.Lock()
		var ids []string
		for id := range b.tasks {
			ids = append(ids, p+"/"+id)
		}
		b.mu.Unlock()
		slices.Sort(ids)
		writeJSON(w, 200, collection(p, "#TaskCollection.TaskCollection", ids...))
		return nil
	case strings.HasPrefix(p, root+"/TaskService/Tasks/") && get:
		return b.getTask(w, strings.TrimPrefix(p, root+"/TaskService/Tasks/"))
	case strings.HasPrefix(p, root+"/TaskService/TaskMonitors/") && get:
		return b.pollTask(w, strings.TrimPrefix(p, root+"/TaskService/TaskMonitors/"))
	}
	for _, parent := range []string{"Managers", "Systems"} {
		base := root + "/" + parent + "/1/VirtualMedia"
		if !strings.HasPrefix(p, base) || !b.mediaUnder(parent) {
			continue
		}
		rest := strings.TrimPrefix(strings.TrimPrefix(p, base), "/")
		if rest == "" && get {
			var ids []string
			for _, m := range b.media {
				ids = append(ids, base+"/"+m.ID)
			}
			writeJSON(w, 200, collection(base, "#VirtualMediaCollection.VirtualMediaCollection", ids...))
			return nil
		}
		id, action, _ := strings.Cut(rest, "/Actions/")
		m := b.slot(id)
		if m == nil {
			break
		}
		switch {
		case action == "" && get:
			writeJSON(w, 200, b.mediaJSON(base+"/"+id, m))
			return nil
		case action == "" && r.Method == http.MethodPatch:
			return b.patchMedia(w, r, m)
		case action == "VirtualMedia.InsertMedia" && r.Method == http.MethodPost && !b.cfg.NoInsertAction:
			return b.insertAction(w, r, m)
		case action == "VirtualMedia.EjectMedia" && r.Method == http.MethodPost && !b.cfg.NoInsertAction:
			b.actions.Add(1)
			return b.run(w, nil, func() *apiError { return b.eject(m) })
		}
	}
	if r.Method != http.MethodGet {
		return errf(http.StatusMethodNotAllowed, "Base.1.8.OperationNotAllowed", "%s not allowed on %s", r.Method, p)
	}
	return errf(http.StatusNotFound, "Base.1.8.ResourceMissingAtURI", "no resource at %s", p)
}

func (b *BMC) mediaUnder(parent string) bool {
	if b.cfg.MediaInBoth {
		return true
	}
	return (parent == "Systems") == b.cfg.MediaUnderSystems
}

func (b *BMC) slot(id string) *Media {
	for _, m := range b.media {
		if m.ID == id {
			return m
		}
	}
	return nil
}

func (b *BMC) system() map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := root + "/Systems/1"
	m := odata(p, "#ComputerSystem.v1_20_0.ComputerSystem")
	m["Id"], m["Name"], m["SystemType"] = "1", "bmcsim host", "Physical"
	m["PowerState"] = map[bool]string{true: "On", false: "Off"}[b.power]
	m["Status"] = map[string]any{"State": "Enabled", "Health": "OK"}
	m["Boot"] = map[string]any{
		"BootSourceOverrideTarget":                         b.boot[0],
		"BootSourceOverrideEnabled":                        b.boot[1],
		"BootSourceOverrideMode":                           b.boot[2],
		"BootSourceOverrideTarget@Redfish.AllowableValues": bootTargets,
	}
	m["SecureBoot"] = link(p + "/SecureBoot")
	if b.mediaUnder("Systems") {
		m["VirtualMedia"] = link(p + "/VirtualMedia")
	}
	m["Actions"] = map[string]any{"#ComputerSystem.Reset": map[string]any{
		"target":                            p + "/Actions/ComputerSystem.Reset",
		"ResetType@Redfish.AllowableValues": resetTypes,
	}}
	m["Links"] = map[string]any{"ManagedBy": []any{link(root + "/Managers/1")}}
	return m
}

var (
	bootTargets  = []string{"None", "Pxe", "Cd", "Usb", "Hdd", "BiosSetup", "UefiShell", "UefiHttp"}
	bootEnabled  = []string{"Disabled", "Once", "Continuous"}
	bootModes    = []string{"Legacy", "UEFI"}
	resetTypes   = []string{"On", "ForceOff", "GracefulShutdown", "GracefulRestart", "ForceRestart", "PowerCycle"}
	transferProt = []string{"HTTP", "HTTPS"}
)

func (b *BMC) patchSystem(w http.ResponseWriter, r *http.Request) *apiError {
	var in struct {
		Boot *struct {
			BootSourceOverrideTarget  *string
			BootSourceOverrideEnabled *string
			BootSourceOverrideMode    *string
		}
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.Boot == nil {
		return errf(400, "Base.1.8.MalformedJSON", "body must be a JSON object with Boot")
	}
	check := func(name string, v *string, allowed []string) *apiError {
		if v != nil && !slices.Contains(allowed, *v) {
			return errf(400, "Base.1.8.PropertyValueNotInList", "the value %q for %s is not in the list of acceptable values", *v, name)
		}
		return nil
	}
	if e := check("BootSourceOverrideTarget", in.Boot.BootSourceOverrideTarget, bootTargets); e != nil {
		return e
	}
	if e := check("BootSourceOverrideEnabled", in.Boot.BootSourceOverrideEnabled, bootEnabled); e != nil {
		return e
	}
	if e := check("BootSourceOverrideMode", in.Boot.BootSourceOverrideMode, bootModes); e != nil {
		return e
	}
	if in.Boot.BootSourceOverrideMode != nil && b.cfg.FixedBootMode {
		return errf(400, "Base.1.8.PropertyNotWritable", "the property BootSourceOverrideMode is read-only")
	}
	b.mu.Lock()
	for i, v := range []*string{in.Boot.BootSourceOverrideTarget, in.Boot.BootSourceOverrideEnabled, in.Boot.BootSourceOverrideMode} {
		if v != nil {
			b.boot[i] = *v
		}
	}
	b.mu.Unlock()
	writeJSON(w, 200, b.system())
	return nil
}

// bootLocked records what the system boots from at power-on or restart and
// consumes a Once override. b.mu must be held.
func (b *BMC) bootLocked() {
	from := "Hdd"
	if b.boot[1] != "Disabled" && b.boot[0] != "None" {
		from = b.boot[0]
	}
	if b.boot[1] == "Once" {
		b.boot[1] = "Disabled"
		b.boot[0] = "None"
	}
	b.booted = append(b.booted, from)
}

func (b *BMC) reset(w http.ResponseWriter, r *http.Request) *apiError {
	var in struct{ ResetType string }
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		return errf(400, "Base.1.8.MalformedJSON", "body must be a JSON object")
	}
	if in.ResetType == "" {
		return errf(400, "Base.1.8.ActionParameterMissing", "the action ComputerSystem.Reset requires the parameter ResetType")
	}
	if !slices.Contains(resetTypes, in.ResetType) {
		return errf(400, "Base.1.8.ActionParameterValueNotInList", "the value %q for ResetType is not in the list of acceptable values", in.ResetType)
	}
	kind := in.ResetType
	var power *bool
	var restart bool
	var sbc *SecureBootChange
	apply := func() *apiError {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.resets = append(b.resets, kind)
		switch kind {
		case "On":
			if !b.power {
				b.power = true
				on := true
				power = &on
				b.bootLocked()
				sbc = b.secureBootChangeLocked(false)
			}
		case "ForceOff", "GracefulShutdown":
			if b.power {
				b.power = false
				off := false
				power = &off
			}
		default: // restarts
			sbc = b.secureBootChangeLocked(b.power)
			if b.power {
				restart = true
			} else {
				b.power = true
				on := true
				power = &on
			}
			b.bootLocked()
		}
		return nil
	}
	hooks := func() {
		b.applySecureBoot(sbc)
		if power != nil && b.cfg.OnPower != nil {
			b.cfg.OnPower(*power)
		}
		if restart && b.cfg.OnReset != nil {
			b.cfg.OnReset(kind)
		}
	}
	if b.cfg.AsyncTasks {
		return b.run(w, nil, func() *apiError { apply(); hooks(); return nil })
	}
	apply()
	hooks()
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (b *BMC) mediaJSON(p string, m *Media) map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	o := odata(p, "#VirtualMedia.v1_6_0.VirtualMedia")
	o["Id"], o["Name"] = m.ID, "Virtual "+m.MediaTypes[0]
	o["MediaTypes"] = m.MediaTypes
	o["Inserted"] = m.Inserted
	o["WriteProtected"] = m.WriteProtected
	o["TransferMethod"] = "Stream"
	if m.Image == "" {
		o["Image"], o["ImageName"], o["ConnectedVia"], o["TransferProtocolType"] = nil, "", "NotConnected", nil
	} else {
		u, _ := url.Parse(m.Image)
		o["Image"], o["ConnectedVia"] = m.Image, "URI"
		o["ImageName"] = u.Path[strings.LastIndex(u.Path, "/")+1:]
		if m.TransferProtocol != "" {
			o["TransferProtocolType"] = m.TransferProtocol
		}
	}
	if !b.cfg.NoInsertAction {
		insert := map[string]any{"target": p + "/Actions/VirtualMedia.InsertMedia"}
		if !b.cfg.RequireTransferProtocol {
			// Vendors that demand the parameter tend not to advertise it.
			insert["TransferProtocolType@Redfish.AllowableValues"] = transferProt
		}
		o["Actions"] = map[string]any{
			"#VirtualMedia.InsertMedia": insert,
			"#VirtualMedia.EjectMedia":  map[string]any{"target": p + "/Actions/VirtualMedia.EjectMedia"},
		}
	}
	return o
}

// insertParams are InsertMedia's parameters (also PATCHable properties).
type insertParams struct {
	Image                *string `json:"Image"`
	Inserted             *bool
	WriteProtected       *bool
	TransferProtocolType *string
	TransferMethod       *string
	UserName, Password   *string
}

// checkInsert validates an insert request for slot m.
func (b *BMC) checkInsert(m *Media, in *insertParams) *apiError {
	u, err := url.Parse(*in.Image)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errf(400, "Base.1.8.ActionParameterValueFormatError", "the value %q for Image is not an http or https URI", *in.Image)
	}
	if in.TransferProtocolType == nil && b.cfg.RequireTransferProtocol {
		return errf(400, "Base.1.8.ActionParameterMissing", "the action VirtualMedia.InsertMedia requires the parameter TransferProtocolType")
	}
	if in.TransferProtocolType != nil {
		if !slices.Contains(transferProt, *in.TransferProtocolType) {
			return errf(400, "Base.1.8.ActionParameterValueNotInList", "the value %q for TransferProtocolType is not in the list of acceptable values", *in.TransferProtocolType)
		}
		if !strings.EqualFold(*in.TransferProtocolType, u.Scheme) {
			return errf(400, "Base.1.8.ActionParameterValueConflict", "TransferProtocolType %s conflicts with the Image URI scheme %s", *in.TransferProtocolType, u.Scheme)
		}
	}
	if in.WriteProtected != nil && b.cfg.RejectWriteProtected {
		return errf(400, "Base.1.8.ActionParameterNotSupported", "the parameter WriteProtected is not supported")
	}
	if in.TransferMethod != nil && *in.TransferMethod != "Stream" {
		return errf(400, "Base.1.8.ActionParameterNotSupported", "TransferMethod %s is not supported", *in.TransferMethod)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if m.Image != "" {
		return errf(409, "Base.1.8.ResourceInUse", "virtual media %s already holds %s; eject it first", m.ID, m.Image)
	}
	return nil
}

// insertWork returns the hook and state change of an insert.
func (b *BMC) insertWork(m *Media, in insertParams) (work func() error, apply func() *apiError) {
	work = func() error {
		if b.cfg.OnInsert != nil {
			return b.cfg.OnInsert(*in.Image)
		}
		return nil
	}
	apply = func() *apiError {
		b.mu.Lock()
		defer b.mu.Unlock()
		m.Image = *in.Image
		m.Inserted = in.Inserted == nil || *in.Inserted
		m.WriteProtected = in.WriteProtected == nil || *in.WriteProtected
		m.TransferProtocol = ""
		if in.TransferProtocolType != nil {
			m.TransferProtocol = *in.TransferProtocolType
		}
		return nil
	}
	return work, apply
}

func (b *BMC) insertAction(w http.ResponseWriter, r *http.Request, m *Media) *apiError {
	b.actions.Add(1)
	var in insertParams
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		return errf(400, "Base.1.8.MalformedJSON", "body must be a JSON object")
	}
	if in.Image == nil || *in.Image == "" {
		return errf(400, "Base.1.8.ActionParameterMissing", "the action VirtualMedia.InsertMedia requires the parameter Image")
	}
	if e := b.checkInsert(m, &in); e != nil {
		return e
	}
	work, apply := b.insertWork(m, in)
	return b.run(w, work, apply)
}

func (b *BMC) eject(m *Media) *apiError {
	b.mu.Lock()
	had := m.Image != ""
	m.Image, m.Inserted, m.TransferProtocol = "", false, ""
	b.mu.Unlock()
	if had && b.cfg.OnEject != nil {
		b.cfg.OnEject()
	}
	return nil
}

// patchMedia handles PATCH of a VirtualMedia resource: the only way to
// insert with NoInsertAction, refused otherwise (as most BMCs with the
// action do).
func (b *BMC) patchMedia(w http.ResponseWriter, r *http.Request, m *Media) *apiError {
	b.patches.Add(1)
	if !b.cfg.NoInsertAction {
		return errf(400, "Base.1.8.PropertyNotWritable", "the property Image is read-only; use the InsertMedia action")
	}
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		return errf(400, "Base.1.8.MalformedJSON", "unreadable body")
	}
	var in insertParams
	var probe map[string]json.RawMessage
	if json.Unmarshal(raw, &in) != nil || json.Unmarshal(raw, &probe) != nil {
		return errf(400, "Base.1.8.MalformedJSON", "body must be a JSON object")
	}
	_, hasImage := probe["Image"]
	ejecting := (hasImage && (in.Image == nil || *in.Image == "")) || (!hasImage && in.Inserted != nil && !*in.Inserted)
	if ejecting {
		return b.run(w, nil, func() *apiError { return b.eject(m) })
	}
	if in.Image == nil {
		return errf(400, "Base.1.8.PropertyMissing", "PATCH must set Image (or Image null / Inserted false to eject)")
	}
	if e := b.checkInsert(m, &in); e != nil {
		return e
	}
	work, apply := b.insertWork(m, in)
	return b.run(w, work, apply)
}

// run performs an operation synchronously (204) or, with AsyncTasks, as a
// task answered by 202 and a task monitor.
func (b *BMC) run(w http.ResponseWriter, work func() error, apply func() *apiError) *apiError {
	if !b.cfg.AsyncTasks {
		if work != nil {
			if err := work(); err != nil {
				return errf(400, "Base.1.8.ResourceCannotBeCreated", "cannot access the image: %v", err)
			}
		}
		if e := apply(); e != nil {
			return e
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	b.mu.Lock()
	b.nextID++
	t := &task{id: fmt.Sprint(b.nextID), work: work, apply: apply}
	b.tasks[t.id] = t
	b.mu.Unlock()
	go func() {
		var err error
		if t.work != nil {
			err = t.work()
		}
		b.mu.Lock()
		t.workErr, t.done = err, true
		b.mu.Unlock()
	}()
	w.Header().Set("Location", root+"/TaskService/TaskMonitors/"+t.id)
	w.Header().Set("Retry-After", "0")
	writeJSON(w, http.StatusAccepted, b.taskJSON(t, "Running"))
	return nil
}

func (b *BMC) taskJSON(t *task, state string) map[string]any {
	m := odata(root+"/TaskService/Tasks/"+t.id, "#Task.v1_7_0.Task")
	m["Id"], m["Name"], m["TaskState"] = t.id, "Task "+t.id, state
	m["TaskMonitor"] = root + "/TaskService/TaskMonitors/" + t.id
	status, msgs := "OK", []any{}
	if t.result != nil {
		status = "Critical"
		msgs = append(msgs, map[string]any{"MessageId": t.result.id, "Message": t.result.msg, "Severity": "Critical"})
	}
	m["TaskStatus"], m["Messages"] = status, msgs
	return m
}

func (b *BMC) taskState(t *task) string {
	switch {
	case !t.applied:
		return "Running"
	case t.result != nil:
		return "Exception"
	default:
		return "Completed"
	}
}

func (b *BMC) getTask(w http.ResponseWriter, id string) *apiError {
	b.mu.Lock()
	t, ok := b.tasks[id]
	var m map[string]any
	if ok {
		m = b.taskJSON(t, b.taskState(t))
	}
	b.mu.Unlock()
	if !ok {
		return errf(404, "Base.1.8.ResourceMissingAtURI", "no task %s", id)
	}
	writeJSON(w, 200, m)
	return nil
}

// pollTask answers a task monitor: 202 with the task while it runs, then
// the operation's own answer (204, or its error).
func (b *BMC) pollTask(w http.ResponseWriter, id string) *apiError {
	b.mu.Lock()
	t, ok := b.tasks[id]
	if !ok {
		b.mu.Unlock()
		return errf(404, "Base.1.8.ResourceMissingAtURI", "no task monitor %s", id)
	}
	t.polls++
	ready := t.done && t.polls > b.cfg.TaskPolls && !t.applying
	if !ready || t.applied {
		m := b.taskJSON(t, b.taskState(t))
		applied, result := t.applied, t.result
		b.mu.Unlock()
		if !applied {
			w.Header().Set("Location", root+"/TaskService/TaskMonitors/"+t.id)
			w.Header().Set("Retry-After", "0")
			writeJSON(w, http.StatusAccepted, m)
			return nil
		}
		if result != nil {
			return result
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	t.applying = true
	b.mu.Unlock()
	// Complete the task: apply the state change unless the work failed.
	var result *apiError
	if t.workErr != nil {
		result = errf(400, "Base.1.8.ResourceCannotBeCreated", "cannot access the image: %v", t.workErr)
	} else {
		result = t.apply()
	}
	b.mu.Lock()
	t.applied, t.result = true, result
	b.mu.Unlock()
	if result != nil {
		return result
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
