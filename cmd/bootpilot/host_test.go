package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/token"
)

var node01Args = []string{"host", "add", "node01", "--mac", "52:54:00:12:34:56", "--mac", "52-54-00-12-34-57",
	"--ipv4", "10.0.2.15/24", "--gateway", "10.0.2.2", "--dns", "10.0.2.3,10.0.2.4"}

func TestHostAdd(t *testing.T) {
	s, _ := cliFake(t)
	out := cliMustRun(t, append(node01Args, "--vlan", "12", "--domain", "example.org")...)
	for _, want := range []string{
		"Name:      node01\n",
		"State:     ready\n",
		"MACs:      52:54:00:12:34:56, 52:54:00:12:34:57\n",
		"IPv4:      10.0.2.15/24\n",
		"DNS:       10.0.2.3, 10.0.2.4\n",
		"VLAN:      12\n",
		"Hostname:  node01.example.org\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("host add output lacks %q:\n%s", want, out)
		}
	}
	var sent map[string]any
	if err := json.Unmarshal(s.LastRequest().Body, &sent); err != nil {
		t.Fatal(err)
	}
	if got, want := sent["macs"], []any{"52:54:00:12:34:56", "52-54-00-12-34-57"}; !reflect.DeepEqual(got, want) {
		t.Errorf("sent macs = %v, want %v", got, want)
	}
	if strings.Contains(out, "token") {
		t.Errorf("host add without --print-token printed a token:\n%s", out)
	}

	out = cliMustRun(t, "host", "add", "node02", "--mac", "52:54:00:00:00:02", "--ipv4", "10.0.2.16/24",
		"--gateway", "10.0.2.2", "--dns", "10.0.2.3", "--print-token", "-o", "json")
	var got struct {
		Host  host.Host `json:"host"`
		Token string    `json:"token"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("host add -o json --print-token: %v\n%s", err, out)
	}
	if _, hash, _ := s.Host("node02"); got.Host.Name != "node02" || !token.Match(hash, got.Token) {
		t.Errorf("host add --print-token = %+v; token matches stored hash: %v", got, token.Match(hash, got.Token))
	}

	if _, _, err := cliRun(t, node01Args...); !errors.Is(err, host.ErrConflict) {
		t.Errorf("host add twice: err = %v, want ErrConflict", err)
	}
}

// TestHostAddValidates checks that bad input is refused before any request,
// with the field named, and that required flags are required.
func TestHostAddValidates(t *testing.T) {
	s, _ := cliFake(t)
	tests := []struct {
		args  []string
		field string
	}{
		{[]string{"--ipv4", "10.0.2.15"}, "ipv4"},
		{[]string{"--gateway", "10.9.9.9"}, "gateway"},
		{[]string{"--mac", "zz"}, "macs"},
		{[]string{"--domain", "bad domain"}, "domain"},
	}
	for _, tt := range tests {
		args := append(append([]string{}, node01Args...), tt.args...)
		_, _, err := cliRun(t, args...)
		var ve *host.ValidationError
		if !errors.As(err, &ve) || ve.Field != tt.field {
			t.Errorf("host add %v: err = %v, want ValidationError on %s", tt.args, err, tt.field)
		}
	}
	if _, _, err := cliRun(t, "host", "add", "node01", "--mac", "52:54:00:12:34:56"); err == nil ||
		!strings.Contains(err.Error(), "required") {
		t.Errorf("host add without --ipv4: err = %v, want a required-flag error", err)
	}
	if n := len(s.Requests()); n != 0 {
		t.Errorf("server saw %d requests, want 0", n)
	}
}

func TestHostListAndShow(t *testing.T) {
	s, _ := cliFake(t)
	cliMustRun(t, node01Args...)
	cliMustRun(t, "host", "add", "node02", "--mac", "52:54:00:00:00:02", "--ipv4", "10.0.2.16/24",
		"--gateway", "10.0.2.2", "--dns", "10.0.2.3")
	cliMustRun(t, "host", "reimage", "node02", "--reason", "ticket 7")

	out := cliMustRun(t, "host", "list")
	want := "" +
		"NAME    STATE    ATTEMPT  PROFILE  IPV4          MACS                                 LABELS  UPDATED\n" +
		"node01  ready    0        -        10.0.2.15/24  52:54:00:12:34:56,52:54:00:12:34:57  -       2026-11-22T09:00:00Z\n" +
		"node02  reimage  0        -        10.0.2.16/24  52:54:00:00:00:02                    -       2026-11-22T09:00:00Z\n"
	if out != want {
		t.Errorf("host list =\n%s\nwant\n%s", out, want)
	}

	out = cliMustRun(t, "host", "list", "--state", "reimage", "-o", "json")
	if q := s.LastRequest().Query; q != "state=reimage" {
		t.Errorf("host list --state query = %q", q)
	}
	var list struct {
		Hosts []host.Host `json:"hosts"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list.Hosts) != 1 || list.Hosts[0].Name != "node02" {
		t.Errorf("host list --state reimage -o json = %s (%v)", out, err)
	}
	out = cliMustRun(t, "host", "list", "--profile", "none", "-o", "json")
	if strings.TrimSpace(out) != "{\n  \"hosts\": []\n}" {
		t.Errorf("empty host list -o json = %q, want an empty array", out)
	}

	out = cliMustRun(t, "host", "show", "node02")
	for _, want := range []string{"State:     reimage\n", "TIME  ", "admin  reimage  ready  reimage  -        ticket 7\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("host show lacks %q:\n%s", want, out)
		}
	}
	for i := 0; i < 6; i++ {
		cliMustRun(t, "host", "cancel", "node02")
		cliMustRun(t, "host", "reimage", "node02")
	}
	out = cliMustRun(t, "host", "show", "node02", "-o", "json")
	var shown struct {
		Host   host.Host     `json:"host"`
		Events []host.Record `json:"events"`
	}
	if err := json.Unmarshal([]byte(out), &shown); err != nil {
		t.Fatal(err)
	}
	if len(shown.Events) != 10 || shown.Events[0].Event != host.EventReimage || shown.Events[0].ID != 15 {
		t.Errorf("host show -o json events = %d, first %+v; want the 10 newest, starting with reimage #15", len(shown.Events), shown.Events[0])
	}
	if q := s.LastRequest().Query; q != "limit=10" {
		t.Errorf("host show asked events with %q, want limit=10", q)
	}
	out = cliMustRun(t, "host", "events", "node02")
	if n := strings.Count(out, "\n"); n != 15 {
		t.Errorf("host events printed %d lines, want header + 14 events:\n%s", n, out)
	}
	out = cliMustRun(t, "host", "events", "node02", "--limit", "3")
	if n := strings.Count(out, "\n"); n != 4 {
		t.Errorf("host events --limit 3 printed %d lines, want header + 3 events:\n%s", n, out)
	}
	if _, _, err := cliRun(t, "host", "show", "nope"); !errors.Is(err, host.ErrNotFound) {
		t.Errorf("host show nope: err = %v, want ErrNotFound", err)
	}
}

// TestHostEdit checks that edit sends exactly the flags given.
func TestHostEdit(t *testing.T) {
	s, _ := cliFake(t)
	cliMustRun(t, node01Args...)
	tests := []struct {
		args []string
		body string
	}{
		{[]string{"--ipv4", "10.0.2.20/24"}, `{"ipv4":"10.0.2.20/24"}`},
		{[]string{"--vlan", "0", "--ipv6", ""}, `{"ipv6":"","vlan":0}`},
		{[]string{"--mac", "52:54:00:00:00:09", "--dns", "1.1.1.1,9.9.9.9"}, `{"dns":["1.1.1.1","9.9.9.9"],"macs":["52:54:00:00:00:09"]}`},
	}
	for _, tt := range tests {
		cliMustRun(t, append([]string{"host", "edit", "node01"}, tt.args...)...)
		r := s.LastRequest()
		if r.Method != "PATCH" || string(r.Body) != tt.body {
			t.Errorf("host edit %v sent %s %s, want PATCH %s", tt.args, r.Method, r.Body, tt.body)
		}
	}
	h, _, _ := s.Host("node01")
	if h.IPv4 != "10.0.2.20/24" || h.MACs[0] != "52:54:00:00:00:09" || h.Gateway != "10.0.2.2" {
		t.Errorf("host after edits = %+v", h)
	}
	if _, _, err := cliRun(t, "host", "edit", "node01"); err == nil || !strings.Contains(err.Error(), "nothing to change") {
		t.Errorf("host edit without flags: err = %v", err)
	}
	var ve *host.ValidationError
	if _, _, err := cliRun(t, "host", "edit", "node01", "--gateway", "192.168.0.1"); !errors.As(err, &ve) || ve.Field != "gateway" {
		t.Errorf("host edit with a gateway outside the subnet: err = %v, want ValidationError on gateway", err)
	}
}

func TestHostActions(t *testing.T) {
	s, _ := cliFake(t)
	cliMustRun(t, node01Args...)
	if _, _, err := cliRun(t, "profile", "add", "rocky9", "--kernel", "https://m.example/vmlinuz",
		"--initrd", "https://m.example/initrd.img", "--installer", "kickstart"); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		args []string
		out  string
		body string
	}{
		{[]string{"reimage", "node01", "--profile", "rocky9", "--reason", "r1"}, "node01: reimage (profile rocky9)\n", `{"profile":"rocky9","reason":"r1"}`},
		{[]string{"cancel", "node01"}, "node01: ready (profile rocky9)\n", ""},
		{[]string{"clean", "node01", "--then-install"}, "node01: clean (profile rocky9), then install\n", `{"then_install":true}`},
		{[]string{"cancel", "node01", "--reason", "wrong rack"}, "node01: ready (profile rocky9)\n", `{"reason":"wrong rack"}`},
	}
	for _, st := range steps {
		out := cliMustRun(t, append([]string{"host"}, st.args...)...)
		if out != st.out {
			t.Errorf("host %v = %q, want %q", st.args, out, st.out)
		}
		r := s.LastRequest()
		if want := "/api/v1/hosts/node01/" + st.args[0]; r.Method != "POST" || r.Path != want || string(r.Body) != st.body {
			t.Errorf("host %v sent %s %s %s, want POST %s %s", st.args, r.Method, r.Path, r.Body, want, st.body)
		}
	}
	_, _, err := cliRun(t, "host", "retry", "node01")
	if !errors.Is(err, host.ErrConflict) || !strings.Contains(err.Error(), "host retry node01:") {
		t.Errorf("host retry from ready: err = %v, want a conflict naming the command", err)
	}
	out := cliMustRun(t, "host", "reimage", "node01", "-o", "json")
	var h host.Host
	if err := json.Unmarshal([]byte(out), &h); err != nil || h.State != host.StateReimage {
		t.Errorf("host reimage -o json = %s (%v)", out, err)
	}

	tok := strings.TrimSpace(cliMustRun(t, "host", "token", "node01"))
	if _, hash, _ := s.Host("node01"); !token.Match(hash, tok) {
		t.Errorf("host token printed %q, which does not match the stored hash", tok)
	}

	if _, _, err := cliRun(t, "host", "delete", "node01"); err == nil || !strings.Contains(err.Error(), "--yes") {
		t.Errorf("host delete without --yes: err = %v", err)
	}
	if _, _, ok := s.Host("node01"); !ok {
		t.Errorf("host delete without --yes deleted the host")
	}
	if out := cliMustRun(t, "host", "delete", "node01", "--yes"); out != "deleted host node01\n" {
		t.Errorf("host delete --yes = %q", out)
	}
	if _, _, ok := s.Host("node01"); ok {
		t.Errorf("host delete --yes left the host")
	}
}

// TestHostImport checks hosts-import.json: new hosts are created with their
// token hash, existing ones patched (with the hash), bad ones reported, and
// the exit status is an error when any failed.
func TestHostImport(t *testing.T) {
	s, _ := cliFake(t)
	cliMustRun(t, node01Args...)
	tok1, hash1 := token.New()
	tok2, hash2 := token.New()
	file := filepath.Join(t.TempDir(), "hosts-import.json")
	write := func(body string) {
		if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(`{"hosts":[
	 {"name":"node01","macs":["52:54:00:12:34:56"],"ipv4":"10.0.2.30/24","gateway":"10.0.2.2","dns":["10.0.2.3"],"state":"ready","token_hash":"` + hash1 + `"},
	 {"name":"node03","macs":["52:54:00:00:00:03"],"ipv4":"10.0.2.31/24","gateway":"10.0.2.2","dns":["10.0.2.3"],"profile":"","token_hash":"` + hash2 + `"}
	]}`)
	out := cliMustRun(t, "host", "import", file)
	want := "NAME    RESULT   ERROR\nnode01  updated  -\nnode03  created  -\n"
	if out != want {
		t.Errorf("host import =\n%s\nwant\n%s", out, want)
	}
	h1, got1, _ := s.Host("node01")
	if !token.Match(got1, tok1) || h1.IPv4 != "10.0.2.30/24" || len(h1.MACs) != 1 {
		t.Errorf("node01 after import: %+v, hash matches: %v", h1, token.Match(got1, tok1))
	}
	if _, got2, ok := s.Host("node03"); !ok || !token.Match(got2, tok2) {
		t.Errorf("node03 after import: exists %v, hash matches %v", ok, token.Match(got2, tok2))
	}

	// A MAC conflict with another host, a missing hash and a bad address fail;
	// the good host still goes in.
	_, hash4 := token.New()
	write(`{"hosts":[
	 {"name":"node04","macs":["52:54:00:00:00:03"],"ipv4":"10.0.2.32/24","gateway":"10.0.2.2","dns":["10.0.2.3"],"token_hash":"` + hash4 + `"},
	 {"name":"node05","macs":["52:54:00:00:00:05"],"ipv4":"10.0.2.33/24","gateway":"10.0.2.2","dns":["10.0.2.3"]},
	 {"name":"node06","macs":["52:54:00:00:00:06"],"ipv4":"10.0.2.34","gateway":"10.0.2.2","dns":["10.0.2.3"],"token_hash":"` + hash4 + `"},
	 {"name":"node07","macs":["52:54:00:00:00:07"],"ipv4":"10.0.2.35/24","gateway":"10.0.2.2","dns":["10.0.2.3"],"token_hash":"` + hash4 + `"}
	]}`)
	out, _, err := cliRun(t, "host", "import", file, "-o", "json")
	if err == nil || !strings.Contains(err.Error(), "3 of 4 hosts failed") {
		t.Errorf("host import with failures: err = %v, want '3 of 4 hosts failed'", err)
	}
	var res struct {
		Results []hostImportResult `json:"results"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("host import -o json: %v\n%s", err, out)
	}
	var got []string
	for _, r := range res.Results {
		got = append(got, r.Name+"="+r.Result)
	}
	if want := []string{"node04=failed", "node05=failed", "node06=failed", "node07=created"}; !reflect.DeepEqual(got, want) {
		t.Errorf("host import results = %v, want %v", got, want)
	}
	if e := res.Results[0].Error; !strings.Contains(e, "belongs to host node03") {
		t.Errorf("node04 error = %q, want the MAC conflict", e)
	}
	if e := res.Results[1].Error; !strings.Contains(e, "token_hash") {
		t.Errorf("node05 error = %q, want the missing token_hash", e)
	}
	if _, _, ok := s.Host("node04"); ok {
		t.Errorf("node04 was created despite its MAC conflict")
	}
}

func TestHostISO(t *testing.T) {
	s, _ := cliFake(t)
	cliMustRun(t, node01Args...)
	if out := cliMustRun(t, "host", "iso", "node01"); out != fmt.Sprintf("wrote node01.iso (%d bytes)\n", len(s.ISO)) {
		t.Errorf("host iso = %q", out)
	}
	got, err := os.ReadFile("node01.iso")
	if err != nil || !bytes.Equal(got, s.ISO) {
		t.Errorf("node01.iso = %q, %v; want %q", got, err, s.ISO)
	}
	if r := s.LastRequest(); r.Path != "/api/v1/hosts/node01/iso" {
		t.Errorf("host iso asked %s", r.Path)
	}
	if _, _, err := cliRun(t, "host", "iso", "nope", "-f", "nope.iso"); !errors.Is(err, host.ErrNotFound) {
		t.Errorf("host iso nope: err = %v, want ErrNotFound", err)
	}
	entries, _ := os.ReadDir(".")
	for _, e := range entries {
		if e.Name() != "node01.iso" && e.Name() != "fake-ca.pem" {
			t.Errorf("host iso left %s behind", e.Name())
		}
	}
}
