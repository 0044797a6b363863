package bootscripts_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/bootscripts"
	"github.com/bootpilot/bootpilot/internal/host"
)

// hostile are user templates that would keep the server busy or make it
// allocate without bound; want is what the refusal says.
var hostile = []struct {
	name, src, want string
}{
	{"nested int ranges", `{{range 10000}}{{range 10000}}{{end}}{{end}}`, "render budget"},
	{"nested int ranges under the literal cap", `{{range 1000}}{{range 1000}}{{range 1000}}{{end}}{{end}}{{end}}`, "render budget"},
	{"nested ranges over data", `{{range .VLAN}}{{range $.VLAN}}{{range $.VLAN}}{{end}}{{end}}{{end}}`, "render budget"},
	{"ranges nested too deep", `{{range .DNS}}{{range .DNS}}{{range .DNS}}{{range .DNS}}{{range .DNS}}{{end}}{{end}}{{end}}{{end}}{{end}}`, "render budget"},
	{"printf doubling", `{{$x := "0123456789abcdef"}}{{range 22}}{{$x = printf "%s%s" $x $x}}{{end}}{{len $x}}`, "render budget"},
	{"print doubling", `{{$x := "0123456789abcdef"}}{{range 22}}{{$x = print $x $x}}{{end}}{{len $x}}`, "render budget"},
	{"json nesting", `{{$x := "\\"}}{{range 22}}{{$x = json $x}}{{end}}{{len $x}}`, "render budget"},
	{"printf star width", `{{len (printf "%*d" 1000000 1)}}`, "render budget"},
	{"printf wide", `{{len (printf "%999999d%999999d" 1 2)}}`, "render budget"},
	{"recursion", `{{define "a"}}{{template "a" .}}{{end}}{{template "a" .}}`, "render budget"},
	{"mutual recursion", `{{define "a"}}{{template "b" .}}{{end}}{{define "b"}}{{template "a" .}}{{end}}{{template "a" .}}`, "render budget"},
	{"exponential calls", exponentialCalls(30), "render budget"},
	{"html", `{{html .Name}}`, "not available"},
	{"call", `{{call .Name}}`, "not available"},
	{"internal function", `{{_bootpilot_enter -100000}}`, "not available"},
}

// exponentialCalls defines t0…tn where each calls the one before twice:
// no recursion, 2^n calls.
func exponentialCalls(n int) string {
	var b strings.Builder
	b.WriteString(`{{define "t0"}}x{{end}}`)
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, `{{define "t%d"}}{{template "t%d"}}{{template "t%d"}}{{end}}`, i, i-1, i-1)
	}
	fmt.Fprintf(&b, `{{template "t%d"}}`, n)
	return b.String()
}

// within runs f on a goroutine and fails the test if it has not returned
// after a generous deadline: the unbounded code it guards against spins for
// hours. The deadline is a safety net for waiting, not an assertion.
func within(t *testing.T, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(2 * time.Minute):
		t.Fatal("still rendering after 2 minutes")
		return nil
	}
}

// TestCheckConfigTemplateBounds: a profile with a hostile config is refused
// when it is saved.
func TestCheckConfigTemplateBounds(t *testing.T) {
	for _, tt := range hostile {
		t.Run(tt.name, func(t *testing.T) {
			err := within(t, func() error { return bootscripts.CheckConfigTemplate(tt.src) })
			var ve *host.ValidationError
			if !errors.As(err, &ve) || ve.Field != "config" || !strings.Contains(ve.Reason, tt.want) {
				t.Errorf("CheckConfigTemplate(%q) = %v, want a *host.ValidationError for field config saying %q", tt.src, err, tt.want)
			}
		})
	}
}

// TestConfigBounds: a hostile config that reached the database anyway is
// refused when it is served, with a *BudgetError, within a memory bound.
func TestConfigBounds(t *testing.T) {
	const maxGrowth = 64 << 20 // generous: the budget is 4 MiB of function results + 1 MiB of output
	r := MustRenderer(t)
	h := testHost(t, func(h *host.Host) { h.VLAN = 4094 })
	for _, tt := range hostile {
		t.Run(tt.name, func(t *testing.T) {
			d := testData(t, host.ActionInstall, h, testProfile(t, host.InstallerKickstart, func(p *host.Profile) { p.Config = tt.src }))
			var out bytes.Buffer
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			err := within(t, func() error { return r.Config(&out, "ks.cfg", d) })
			runtime.ReadMemStats(&after)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Config(%q) = %v, want an error saying %q", tt.src, err, tt.want)
			}
			var be *bootscripts.BudgetError
			if tt.want == "render budget" && !errors.As(err, &be) {
				t.Errorf("Config(%q) = %v, want a *bootscripts.BudgetError", tt.src, err)
			}
			if out.Len() != 0 {
				t.Errorf("Config(%q) failed but wrote %d bytes", tt.src, out.Len())
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew > maxGrowth {
				t.Errorf("Config(%q) allocated %d MiB, want at most %d MiB", tt.src, grew>>20, maxGrowth>>20)
			}
		})
	}
}

// TestConfigErrorsHideValues: a refusal names types and bounds, never the
// value (here the callback token).
func TestConfigErrorsHideValues(t *testing.T) {
	r := MustRenderer(t)
	for _, src := range []string{`{{range .CallbackURL}}{{end}}`, `{{range .Attempt}}{{range 999}}{{range 999}}{{end}}{{end}}{{end}}`} {
		d := testData(t, host.ActionInstall, testHost(t, nil), testProfile(t, host.InstallerKickstart, func(p *host.Profile) { p.Config = src }))
		err := r.Config(new(bytes.Buffer), "ks.cfg", d)
		if err == nil || strings.Contains(err.Error(), "cb0123456789abcdef") {
			t.Errorf("Config(%q) = %v, want an error without the callback token", src, err)
		}
	}
}

// TestConfigUserFuncs: ranges over data, small integer ranges, sub-templates
// and the bounded functions still work in a user template.
func TestConfigUserFuncs(t *testing.T) {
	r := MustRenderer(t)
	src := `{{range $i, $d := .DNS}}{{$i}}={{$d}} {{end}}|{{range 3}}{{.}}{{end}}|{{range .DNS}}{{break}}{{else}}none{{end}}` +
		`|{{len (lines .CAPEM)}}|{{join .DNS ","}}|{{json .DNS}}|{{printf "%s/%d %5s" .IPv4 .Prefix "x"}}|{{print .Name 1}}|{{println .Name}}` +
		`|{{define "t"}}<{{.}}>{{end}}{{template "t" .Name}}{{block "b" .MAC}}[{{.}}]{{end}}`
	d := testData(t, host.ActionInstall, testHost(t, nil), testProfile(t, host.InstallerKickstart, func(p *host.Profile) { p.Config = src }))
	if err := bootscripts.CheckConfigTemplate(src); err != nil {
		t.Fatalf("CheckConfigTemplate = %v, want nil", err)
	}
	var out bytes.Buffer
	if err := r.Config(&out, "ks.cfg", d); err != nil {
		t.Fatalf("Config = %v", err)
	}
	ca, _ := testCA(t)
	want := fmt.Sprintf(`0=10.0.2.3 1=10.0.2.4 |012||%d|10.0.2.3,10.0.2.4|["10.0.2.3","10.0.2.4"]|10.0.2.15/24     x|node011|node01
|<node01>[52:54:00:12:34:56]`, len(strings.Split(strings.TrimRight(ca, "\n"), "\n")))
	if out.String() != want {
		t.Errorf("Config =\n%s\nwant\n%s", out.String(), want)
	}
}

// TestConfigDeadline: a render stops when its clock passes the deadline,
// checked in every range iteration and write.
func TestConfigDeadline(t *testing.T) {
	r := MustRenderer(t)
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	bootscripts.SetClock(r, func() time.Time { // every reading is a minute later
		mu.Lock()
		defer mu.Unlock()
		now = now.Add(time.Minute)
		return now
	})
	d := testData(t, host.ActionInstall, testHost(t, nil), testProfile(t, host.InstallerKickstart, func(p *host.Profile) {
		p.Config = "{{range .DNS}}nameserver {{.}}\n{{end}}"
	}))
	err := r.Config(new(bytes.Buffer), "ks.cfg", d)
	var be *bootscripts.BudgetError
	if !errors.As(err, &be) || !strings.Contains(be.Reason, "longer than") {
		t.Errorf("Config with a clock past the deadline = %v, want a *BudgetError about time", err)
	}
	if err := MustRenderer(t).Config(new(bytes.Buffer), "ks.cfg", d); err != nil {
		t.Errorf("Config with the real clock = %v, want nil", err)
	}
}

// TestConfigContextCanceled: a render for a client that left stops with the
// context's error, not a budget error.
func TestConfigContextCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	d := testData(t, host.ActionInstall, testHost(t, nil), testProfile(t, host.InstallerKickstart, func(p *host.Profile) {
		p.Config = "{{range .DNS}}nameserver {{.}}\n{{end}}"
	}))
	err := MustRenderer(t).ConfigContext(ctx, new(bytes.Buffer), "ks.cfg", d)
	var be *bootscripts.BudgetError
	if !errors.Is(err, context.Canceled) || errors.As(err, &be) {
		t.Errorf("ConfigContext(canceled) = %v, want context.Canceled", err)
	}
}

// TestRenderSlots: with every render slot taken, user templates are refused
// with ErrBusy (at save and at serve) while built-in configs still render.
func TestRenderSlots(t *testing.T) {
	r := MustRenderer(t)
	h := testHost(t, nil)
	own := testData(t, host.ActionInstall, h, testProfile(t, host.InstallerKickstart, func(p *host.Profile) { p.Config = "ns {{index .DNS 0}}\n" }))
	builtin := testData(t, host.ActionInstall, h, testProfile(t, host.InstallerKickstart, nil))

	release := bootscripts.HoldRenderSlots()
	errServe := r.Config(new(bytes.Buffer), "ks.cfg", own)
	errSave := bootscripts.CheckConfigTemplate(own.Profile.Config)
	errBuiltin := r.Config(new(bytes.Buffer), "ks.cfg", builtin)
	release()

	if !errors.Is(errServe, bootscripts.ErrBusy) {
		t.Errorf("Config(own template, no slot) = %v, want ErrBusy", errServe)
	}
	if !errors.Is(errSave, bootscripts.ErrBusy) {
		t.Errorf("CheckConfigTemplate(no slot) = %v, want ErrBusy", errSave)
	}
	if errBuiltin != nil {
		t.Errorf("Config(built-in, no slot) = %v, want nil", errBuiltin)
	}
	var out bytes.Buffer
	if err := r.Config(&out, "ks.cfg", own); err != nil || out.String() != "ns 10.0.2.3\n" {
		t.Errorf("Config after the slots are free = %q, %v, want \"ns 10.0.2.3\\n\"", out.String(), err)
	}
}

// TestCheckProfileConfig renders only a profile's own config.
func TestCheckProfileConfig(t *testing.T) {
	r := MustRenderer(t)
	h := testHost(t, nil)
	for _, tt := range []struct {
		name   string
		i      host.Installer
		config string
		budget bool // want a *BudgetError
	}{
		{"built-in", host.InstallerKickstart, "", false},
		{"own", host.InstallerKickstart, "{{range .DNS}}{{.}}{{end}}", false},
		{"own autoinstall", host.InstallerAutoinstall, "#cloud-config\n", false},
		{"hostile", host.InstallerPreseed, hostile[0].src, true},
		{"hostile autoinstall", host.InstallerAutoinstall, hostile[3].src, true},
	} {
		d := testData(t, host.ActionInstall, h, testProfile(t, tt.i, func(p *host.Profile) { p.Config = tt.config }))
		err := within(t, func() error { return r.CheckProfileConfig(context.Background(), d) })
		var be *bootscripts.BudgetError
		if got := errors.As(err, &be); got != tt.budget || (!tt.budget && err != nil) {
			t.Errorf("%s: CheckProfileConfig = %v, want budget error %v", tt.name, err, tt.budget)
		}
	}
}
