package store

import (
	"encoding/json"
	"time"

	"github.com/bootpilot/bootpilot/internal/host"
)

// The rows below are the tables' current shape. A new column needs a new
// migration in migrate.go as well: migrations never read these structs.

// hostRow is one row of hosts. Its MACs are stored twice, in the same
// transaction: as a JSON list here, so that reading a host is one query, and
// as host_macs rows, which make each MAC unique and findable.
type hostRow struct {
	Name             string `gorm:"primaryKey;size:63"`
	MACs             string `gorm:"column:macs;type:text;not null"`                    // JSON array, lower case
	IPv4             string `gorm:"column:ipv4;size:64;not null;index:idx_hosts_ipv4"` // index: v4
	Gateway          string `gorm:"size:64;not null"`
	DNS              string `gorm:"column:dns;size:1024;not null"`                     // JSON array
	IPv6             string `gorm:"column:ipv6;size:64;not null;index:idx_hosts_ipv6"` // index: v4
	Gateway6         string `gorm:"column:gateway6;size:64;not null"`
	VLAN             int    `gorm:"column:vlan;not null"`
	Hostname         string `gorm:"size:255;not null"`
	Domain           string `gorm:"size:255;not null"`
	Profile          string `gorm:"size:63;not null;index"`
	CleanThenInstall bool   `gorm:"not null"`

	State    string     `gorm:"size:16;not null;index:idx_hosts_state_deadline,priority:1"`
	Attempt  int        `gorm:"not null"`
	Deadline *time.Time `gorm:"precision:6;index:idx_hosts_state_deadline,priority:2"`
	Version  int64      `gorm:"not null"`

	InvMAC      string     `gorm:"column:inv_mac;size:17;not null"`
	InvUUID     string     `gorm:"column:inv_uuid;size:64;not null"`
	InvSerial   string     `gorm:"column:inv_serial;size:255;not null"`
	InvAsset    string     `gorm:"column:inv_asset;size:255;not null"`
	InvArch     string     `gorm:"column:inv_arch;size:32;not null"`
	InvPlatform string     `gorm:"column:inv_platform;size:32;not null"`
	InvSeenAt   *time.Time `gorm:"column:inv_seen_at;precision:6"`

	TokenHash    string `gorm:"size:64;not null"`
	CallbackHash string `gorm:"size:64;not null"`
	LastCallback string `gorm:"size:16;not null"`
	LastError    string `gorm:"size:1024;not null;default:''"` // v4
	Labels       string `gorm:"size:4096;not null;default:''"` // v5: JSON object; also in host_labels

	CreatedAt time.Time `gorm:"precision:6;not null"`
	UpdatedAt time.Time `gorm:"precision:6;not null;index:idx_hosts_updated_at"` // index: v6
}

func (hostRow) TableName() string { return "hosts" }

// hostMACRow is one row of host_macs: the primary key makes a MAC belong to
// at most one host.
type hostMACRow struct {
	MAC      string `gorm:"column:mac;primaryKey;size:17"`
	HostName string `gorm:"size:63;not null;index"`
	Position int    `gorm:"not null"` // order of the host's MACs
}

func (hostMACRow) TableName() string { return "host_macs" }

// profileRow is one row of profiles.
type profileRow struct {
	Name        string    `gorm:"primaryKey;size:63"`
	Kernel      string    `gorm:"size:2048;not null"`
	Initrds     string    `gorm:"type:text;not null"` // JSON array
	Cmdline     string    `gorm:"type:text;not null"`
	Installer   string    `gorm:"size:32;not null"`
	Config      string    `gorm:"type:mediumtext;not null"`
	FlipOnServe bool      `gorm:"not null"`
	Image       string    `gorm:"size:2048;not null"`
	ImageSHA256 string    `gorm:"column:image_sha256;size:64;not null"`
	TargetDisk  string    `gorm:"size:128;not null"`
	CleanMethod string    `gorm:"size:32;not null"`
	CreatedAt   time.Time `gorm:"precision:6;not null"`
	UpdatedAt   time.Time `gorm:"precision:6;not null"`
}

func (profileRow) TableName() string { return "profiles" }

// eventRow is one row of events, the audit log. Events outlive their host.
type eventRow struct {
	ID         int64     `gorm:"primaryKey;autoIncrement"`
	HostName   string    `gorm:"size:63;not null;index:idx_events_host,priority:1"`
	Actor      string    `gorm:"size:255;not null;index:idx_events_actor"` // v5: 255 (MySQL), index
	Event      string    `gorm:"size:16;not null"`
	Action     string    `gorm:"size:32;not null"`
	FromState  string    `gorm:"size:16;not null"`
	ToState    string    `gorm:"size:16;not null"`
	Attempt    int       `gorm:"not null"`
	Fields     string    `gorm:"size:1024;not null;default:''"` // v4: JSON array of field names
	Reason     string    `gorm:"type:text;not null"`
	RequestID  string    `gorm:"size:128;not null"`
	ClientAddr string    `gorm:"size:64;not null;default:''"`  // v5
	Subject    string    `gorm:"size:255;not null;default:''"` // v5
	Time       time.Time `gorm:"precision:6;not null;index"`
}

func (eventRow) TableName() string { return "events" }

// hostLabelRow is one row of host_labels: a host's label, kept beside the
// JSON copy in hosts.labels so that lists can be filtered in SQL.
type hostLabelRow struct {
	HostName   string `gorm:"primaryKey;size:63"`
	LabelKey   string `gorm:"primaryKey;size:63;index:idx_host_labels_kv,priority:1"`
	LabelValue string `gorm:"size:63;not null;index:idx_host_labels_kv,priority:2"`
}

func (hostLabelRow) TableName() string { return "host_labels" }

// userRow is one row of users (v5).
type userRow struct {
	ID           int64      `gorm:"primaryKey;autoIncrement"`
	Source       string     `gorm:"size:16;not null;uniqueIndex:idx_users_source_name,priority:1"`
	Name         string     `gorm:"size:255;not null;uniqueIndex:idx_users_source_name,priority:2"`
	Grants       string     `gorm:"type:text;not null"` // JSON array of auth.Grant
	Disabled     bool       `gorm:"not null"`
	DN           string     `gorm:"column:dn;size:1024;not null"`
	PasswordHash string     `gorm:"size:255;not null"`
	CheckedAt    *time.Time `gorm:"precision:6"`
	CreatedAt    time.Time  `gorm:"precision:6;not null"`
	UpdatedAt    time.Time  `gorm:"precision:6;not null"`
}

func (userRow) TableName() string { return "users" }

// tokenRow is one row of api_tokens (v5 shape): service, personal and
// session tokens.
type tokenRow struct {
	ID         int64      `gorm:"primaryKey;autoIncrement"`
	Name       string     `gorm:"size:63;not null;uniqueIndex:idx_tokens_owner_name,priority:2"`
	Kind       string     `gorm:"size:16;not null"`
	Owner      string     `gorm:"size:255;not null;uniqueIndex:idx_tokens_owner_name,priority:1"` // "" for service tokens
	Grants     string     `gorm:"type:text;not null"`                                             // JSON array of auth.Grant
	ExpiresAt  *time.Time `gorm:"precision:6"`
	LastUsedAt *time.Time `gorm:"precision:6"`
	RevokedAt  *time.Time `gorm:"precision:6"`
	CreatedBy  string     `gorm:"size:255;not null"`
	CreatedAt  time.Time  `gorm:"precision:6;not null"`
	Hash       string     `gorm:"size:64;not null;uniqueIndex:idx_tokens_hash"`
}

func (tokenRow) TableName() string { return "api_tokens" }

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := utc(t)
	return &u
}

func timeVal(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

func encodeList(l []string) string {
	if len(l) == 0 {
		return "[]"
	}
	b, _ := json.Marshal(l) // []string always marshals
	return string(b)
}

func decodeList(s string) []string {
	var l []string
	if s == "" || json.Unmarshal([]byte(s), &l) != nil || len(l) == 0 {
		return nil
	}
	return l
}

// encodeLabels renders l as a JSON object ("" for no labels).
func encodeLabels(l host.Labels) string {
	if len(l) == 0 {
		return ""
	}
	b, _ := json.Marshal(l) // map[string]string always marshals, keys sorted
	return string(b)
}

// decodeLabels reads what encodeLabels wrote; no labels read back as nil.
func decodeLabels(s string) host.Labels {
	var l host.Labels
	if s == "" || json.Unmarshal([]byte(s), &l) != nil || len(l) == 0 {
		return nil
	}
	return l
}

func toHostRow(h host.Host) hostRow {
	return hostRow{
		Name:             h.Name,
		MACs:             encodeList(h.MACs),
		IPv4:             h.IPv4,
		Gateway:          h.Gateway,
		DNS:              encodeList(h.DNS),
		IPv6:             h.IPv6,
		Gateway6:         h.Gateway6,
		VLAN:             h.VLAN,
		Hostname:         h.Hostname,
		Domain:           h.Domain,
		Profile:          h.Profile,
		CleanThenInstall: h.CleanThenInstall,
		State:            string(h.State),
		Attempt:          h.Attempt,
		Deadline:         timePtr(h.Deadline),
		Version:          h.Version,
		InvMAC:           h.Inventory.MAC,
		InvUUID:          h.Inventory.UUID,
		InvSerial:        h.Inventory.Serial,
		InvAsset:         h.Inventory.Asset,
		InvArch:          h.Inventory.Arch,
		InvPlatform:      h.Inventory.Platform,
		InvSeenAt:        timePtr(h.Inventory.SeenAt),
		TokenHash:        h.TokenHash,
		CallbackHash:     h.CallbackHash,
		LastCallback:     string(h.LastCallback),
		LastError:        h.LastError,
		Labels:           encodeLabels(h.Labels),
		CreatedAt:        utc(h.CreatedAt),
		UpdatedAt:        utc(h.UpdatedAt),
	}
}

// columns returns every column of r but the key, for an UPDATE that writes
// all of them (zero values included).
func (r hostRow) columns() map[string]any {
	return map[string]any{
		"macs":               r.MACs,
		"ipv4":               r.IPv4,
		"gateway":            r.Gateway,
		"dns":                r.DNS,
		"ipv6":               r.IPv6,
		"gateway6":           r.Gateway6,
		"vlan":               r.VLAN,
		"hostname":           r.Hostname,
		"domain":             r.Domain,
		"profile":            r.Profile,
		"clean_then_install": r.CleanThenInstall,
		"state":              r.State,
		"attempt":            r.Attempt,
		"deadline":           r.Deadline,
		"version":            r.Version,
		"inv_mac":            r.InvMAC,
		"inv_uuid":           r.InvUUID,
		"inv_serial":         r.InvSerial,
		"inv_asset":          r.InvAsset,
		"inv_arch":           r.InvArch,
		"inv_platform":       r.InvPlatform,
		"inv_seen_at":        r.InvSeenAt,
		"token_hash":         r.TokenHash,
		"callback_hash":      r.CallbackHash,
		"last_callback":      r.LastCallback,
		"last_error":         r.LastError,
		"labels":             r.Labels,
		"updated_at":         r.UpdatedAt,
	}
}

func (r hostRow) toHost() host.Host {
	return host.Host{
		Name:             r.Name,
		MACs:             decodeList(r.MACs),
		IPv4:             r.IPv4,
		Gateway:          r.Gateway,
		DNS:              decodeList(r.DNS),
		IPv6:             r.IPv6,
		Gateway6:         r.Gateway6,
		VLAN:             r.VLAN,
		Hostname:         r.Hostname,
		Domain:           r.Domain,
		Profile:          r.Profile,
		CleanThenInstall: r.CleanThenInstall,
		State:            host.State(r.State),
		Attempt:          r.Attempt,
		Deadline:         timeVal(r.Deadline),
		Version:          r.Version,
		Inventory: host.Inventory{
			MAC:      r.InvMAC,
			UUID:     r.InvUUID,
			Serial:   r.InvSerial,
			Asset:    r.InvAsset,
			Arch:     r.InvArch,
			Platform: r.InvPlatform,
			SeenAt:   timeVal(r.InvSeenAt),
		},
		CreatedAt:    r.CreatedAt.UTC(),
		UpdatedAt:    r.UpdatedAt.UTC(),
		TokenHash:    r.TokenHash,
		CallbackHash: r.CallbackHash,
		LastCallback: host.Event(r.LastCallback),
		LastError:    r.LastError,
		Labels:       decodeLabels(r.Labels),
	}
}

// toEventRow stores a lifecycle event in the event column and any other
// record in action, as rows always have; a record's fields go to fields.
func toEventRow(r host.Record) eventRow {
	fields := ""
	if len(r.Fields) > 0 {
		fields = encodeList(r.Fields)
	}
	return eventRow{
		HostName:   r.Host,
		Actor:      r.Actor,
		Event:      string(r.Event),
		Action:     r.Action,
		Fields:     fields,
		FromState:  string(r.From),
		ToState:    string(r.To),
		Attempt:    r.Attempt,
		Reason:     r.Reason,
		RequestID:  r.RequestID,
		ClientAddr: r.ClientAddr,
		Subject:    r.Subject,
		Time:       utc(r.Time),
	}
}

func (r eventRow) toRecord() host.Record {
	return host.Record{
		ID:         r.ID,
		Host:       r.HostName,
		Actor:      r.Actor,
		Event:      host.Event(r.Event),
		Action:     r.Action,
		From:       host.State(r.FromState),
		To:         host.State(r.ToState),
		Attempt:    r.Attempt,
		Fields:     decodeList(r.Fields),
		Reason:     r.Reason,
		RequestID:  r.RequestID,
		ClientAddr: r.ClientAddr,
		Subject:    r.Subject,
		Time:       r.Time.UTC(),
	}
}

func toProfileRow(p host.Profile) profileRow {
	return profileRow{
		Name:        p.Name,
		Kernel:      p.Kernel,
		Initrds:     encodeList(p.Initrds),
		Cmdline:     p.Cmdline,
		Installer:   string(p.Installer),
		Config:      p.Config,
		FlipOnServe: p.FlipOnServe,
		Image:       p.Image,
		ImageSHA256: p.ImageSHA256,
		TargetDisk:  p.TargetDisk,
		CleanMethod: p.CleanMethod,
		CreatedAt:   utc(p.CreatedAt),
		UpdatedAt:   utc(p.UpdatedAt),
	}
}

// columns returns every column of r but the key and the creation time.
func (r profileRow) columns() map[string]any {
	return map[string]any{
		"kernel":        r.Kernel,
		"initrds":       r.Initrds,
		"cmdline":       r.Cmdline,
		"installer":     r.Installer,
		"config":        r.Config,
		"flip_on_serve": r.FlipOnServe,
		"image":         r.Image,
		"image_sha256":  r.ImageSHA256,
		"target_disk":   r.TargetDisk,
		"clean_method":  r.CleanMethod,
		"updated_at":    r.UpdatedAt,
	}
}

func (r profileRow) toProfile() host.Profile {
	return host.Profile{
		Name:        r.Name,
		Kernel:      r.Kernel,
		Initrds:     decodeList(r.Initrds),
		Cmdline:     r.Cmdline,
		Installer:   host.Installer(r.Installer),
		Config:      r.Config,
		FlipOnServe: r.FlipOnServe,
		Image:       r.Image,
		ImageSHA256: r.ImageSHA256,
		TargetDisk:  r.TargetDisk,
		CleanMethod: r.CleanMethod,
		CreatedAt:   r.CreatedAt.UTC(),
		UpdatedAt:   r.UpdatedAt.UTC(),
	}
}
