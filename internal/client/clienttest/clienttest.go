// Package clienttest is an in-memory fake of bootpilot's admin REST API over
// HTTPS with its own private RSA CA, for testing the client and the CLI's
// wire behaviour. It follows the API contract (JSON shapes, bearer auth,
// status codes, {"error","field"} bodies) and validates with internal/host,
// but it is not the server: end-to-end tests belong against the real one.
package clienttest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/token"
)

// Request is one request the fake received.
type Request struct {
	Method string // "PATCH"
	Path   string // "/api/v1/hosts/node01"
	Query  string // "state=ready"
	Auth   string // the Authorization header as sent
	Body   []byte
}

// Server is the fake. Its fields are set by New and must not be changed.
type Server struct {
	URL   string // "https://127.0.0.1:PORT"
	CAPEM []byte // the CA that signed the server's certificate
	Token string // the admin token the fake accepts
	ISO   []byte // what GET /api/v1/hosts/{name}/iso answers

	mu        sync.Mutex
	hosts     map[string]host.Host
	hashes    map[string]string // host name → boot token hash
	profiles  map[string]host.Profile
	events    map[string][]host.Record
	requests  []Request
	nextEvent int64
}

// New starts a fake on 127.0.0.1 and stops it when tb ends.
func New(tb testing.TB) *Server {
	tb.Helper()
	caPEM, cert := MustCA(tb)
	s := &Server{
		CAPEM:    caPEM,
		Token:    "admin-" + strings.Repeat("7", 32),
		ISO:      []byte("CD001 fake iso image\x00\x01\x02"),
		hosts:    map[string]host.Host{},
		hashes:   map[string]string{},
		profiles: map[string]host.Profile{},
		events:   map[string][]host.Record{},
	}
	ts := httptest.NewUnstartedServer(s.handler())
	ts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	ts.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	ts.StartTLS()
	tb.Cleanup(ts.Close)
	s.URL = ts.URL
	return s
}

// Requests returns a copy of every request received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// LastRequest returns the most recent request.
func (s *Server) LastRequest() Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.requests) == 0 {
		return Request{}
	}
	return s.requests[len(s.requests)-1]
}

// Host returns the stored host and its boot-token hash.
func (s *Server) Host(name string) (h host.Host, tokenHash string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok = s.hosts[name]
	return h, s.hashes[name], ok
}

// MustCA makes a fresh RSA CA and a server certificate for 127.0.0.1 and
// localhost signed by it, and returns the CA as PEM and the server's chain
// (leaf and CA).
func MustCA(tb testing.TB) (caPEM []byte, cert tls.Certificate) {
	tb.Helper()
	caKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "clienttest CA"},
		NotBefore:             now.Add(-24 * time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leafKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    now.Add(-24 * time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	return caPEM, tls.Certificate{Certificate: [][]byte{leafDER, caDER}, PrivateKey: leafKey}
}

// apiError is an answer with a status and {"error","field"}.
type apiError struct {
	status int
	msg    string
	field  string
}

func (e *apiError) Error() string { return e.msg }

func errStatus(status int, format string, args ...any) error {
	return &apiError{status: status, msg: fmt.Sprintf(format, args...)}
}

// writeError maps err through one table, as the real server does.
func writeError(w http.ResponseWriter, err error) {
	status, body := http.StatusInternalServerError, map[string]string{"error": "internal error"}
	var ae *apiError
	var ve *host.ValidationError
	switch {
	case errors.As(err, &ae):
		status, body["error"] = ae.status, ae.msg
	case errors.As(err, &ve):
		status, body["error"], body["field"] = http.StatusBadRequest, ve.Error(), ve.Field
	case errors.Is(err, host.ErrNotFound):
		status, body["error"] = http.StatusNotFound, err.Error()
	case errors.Is(err, host.ErrConflict), errors.Is(err, host.ErrInvalidTransition):
		status, body["error"] = http.StatusConflict, err.Error()
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

type handlerFunc func(w http.ResponseWriter, r *http.Request, body []byte) error

func (s *Server) handler() http.Handler {
	mux := http.NewServeMux()
	route := func(pattern string, f handlerFunc) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			s.mu.Lock()
			s.requests = append(s.requests, Request{Method: r.Method, Path: r.URL.Path,
				Query: r.URL.RawQuery, Auth: r.Header.Get("Authorization"), Body: body})
			s.mu.Unlock()
			if r.Header.Get("Authorization") != "Bearer "+s.Token {
				writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing or bad admin token"})
				return
			}
			if len(body) > 0 && !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
				writeError(w, errStatus(http.StatusUnsupportedMediaType, "body must be JSON"))
				return
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			if err := f(w, r, body); err != nil {
				writeError(w, err)
			}
		})
	}
	route("GET /api/v1/version", func(w http.ResponseWriter, _ *http.Request, _ []byte) error {
		writeJSON(w, http.StatusOK, map[string]string{"version": "v9.9.9-fake", "commit": "abc123"})
		return nil
	})
	route("POST /api/v1/hosts", s.createHost)
	route("GET /api/v1/hosts", s.listHosts)
	route("GET /api/v1/hosts/{name}", func(w http.ResponseWriter, r *http.Request, _ []byte) error {
		h, err := s.find(r.PathValue("name"))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, h)
		return nil
	})
	route("PATCH /api/v1/hosts/{name}", s.patchHost)
	route("DELETE /api/v1/hosts/{name}", func(w http.ResponseWriter, r *http.Request, _ []byte) error {
		name := r.PathValue("name")
		if _, err := s.find(name); err != nil {
			return err
		}
		delete(s.hosts, name)
		delete(s.hashes, name)
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
	for _, ev := range []host.Event{host.EventReimage, host.EventClean, host.EventCancel, host.EventRetry} {
		route("POST /api/v1/hosts/{name}/"+string(ev), func(w http.ResponseWriter, r *http.Request, body []byte) error {
			return s.transition(w, r.PathValue("name"), ev, body)
		})
	}
	route("POST /api/v1/hosts/{name}/boot-token", func(w http.ResponseWriter, r *http.Request, _ []byte) error {
		name := r.PathValue("name")
		if _, err := s.find(name); err != nil {
			return err
		}
		plain, hash := token.New()
		s.hashes[name] = hash
		s.record(name, host.Record{Actor: "admin", Action: "token-rotate"})
		writeJSON(w, http.StatusOK, map[string]string{"token": plain})
		return nil
	})
	route("GET /api/v1/hosts/{name}/events", func(w http.ResponseWriter, r *http.Request, _ []byte) error {
		name := r.PathValue("name")
		if _, err := s.find(name); err != nil {
			return err
		}
		limit := 100
		if l := r.URL.Query().Get("limit"); l != "" {
			n, err := strconv.Atoi(l)
			if err != nil || n < 1 {
				return host.Invalid("limit", "%q is not a positive number", l)
			}
			limit = n
		}
		evs := []host.Record{} // newest first, like the server
		for i := len(s.events[name]) - 1; i >= 0 && len(evs) < limit; i-- {
			evs = append(evs, s.events[name][i])
		}
		writeJSON(w, http.StatusOK, map[string]any{"events": evs})
		return nil
	})
	route("GET /api/v1/hosts/{name}/iso", func(w http.ResponseWriter, r *http.Request, _ []byte) error {
		name := r.PathValue("name")
		if _, err := s.find(name); err != nil {
			return err
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", `attachment; filename="`+name+`.iso"`)
		w.Header().Set("Content-Length", strconv.Itoa(len(s.ISO)))
		_, _ = w.Write(s.ISO)
		return nil
	})
	route("POST /api/v1/profiles", s.createProfile)
	route("GET /api/v1/profiles", func(w http.ResponseWriter, _ *http.Request, _ []byte) error {
		out := []host.Profile{}
		for _, name := range sortedKeys(s.profiles) {
			out = append(out, s.profiles[name])
		}
		writeJSON(w, http.StatusOK, map[string]any{"profiles": out})
		return nil
	})
	route("GET /api/v1/profiles/{name}", func(w http.ResponseWriter, r *http.Request, _ []byte) error {
		p, ok := s.profiles[r.PathValue("name")]
		if !ok {
			return fmt.Errorf("profile %s: %w", r.PathValue("name"), host.ErrNotFound)
		}
		writeJSON(w, http.StatusOK, p)
		return nil
	})
	route("PATCH /api/v1/profiles/{name}", s.patchProfile)
	route("DELETE /api/v1/profiles/{name}", func(w http.ResponseWriter, r *http.Request, _ []byte) error {
		name := r.PathValue("name")
		if _, ok := s.profiles[name]; !ok {
			return fmt.Errorf("profile %s: %w", name, host.ErrNotFound)
		}
		for _, h := range s.hosts {
			if h.Profile == name {
				return fmt.Errorf("profile %s is used by host %s: %w", name, h.Name, host.ErrConflict)
			}
		}
		delete(s.profiles, name)
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
	return mux
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func (s *Server) find(name string) (host.Host, error) {
	h, ok := s.hosts[name]
	if !ok {
		return host.Host{}, fmt.Errorf("host %s: %w", name, host.ErrNotFound)
	}
	return h, nil
}

func (s *Server) record(name string, r host.Record) {
	s.nextEvent++
	r.ID, r.Host, r.Time = s.nextEvent, name, time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC).Add(time.Duration(s.nextEvent)*time.Minute)
	s.events[name] = append(s.events[name], r)
}

var hexRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// decodeStrict decodes body into v, refusing unknown fields.
func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errStatus(http.StatusBadRequest, "bad JSON: %v", err)
	}
	return nil
}

// checkMACs refuses MACs another host already has.
func (s *Server) checkMACs(h host.Host) error {
	for _, o := range s.hosts {
		if o.Name == h.Name {
			continue
		}
		for _, m := range h.MACs {
			if slices.Contains(o.MACs, m) {
				return fmt.Errorf("mac %s belongs to host %s: %w", m, o.Name, host.ErrConflict)
			}
		}
	}
	return nil
}

// readOnly are host fields only the server sets; create and patch refuse them.
var readOnly = []string{"attempt", "version", "deadline", "inventory", "created_at", "updated_at", "last_callback"}

func (s *Server) createHost(w http.ResponseWriter, _ *http.Request, body []byte) error {
	var in struct {
		host.Host
		TokenHash string `json:"token_hash"`
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(body, &keys); err != nil {
		return errStatus(http.StatusBadRequest, "bad JSON: %v", err)
	}
	for _, k := range readOnly {
		if _, ok := keys[k]; ok {
			return host.Invalid(k, "unknown or read-only field")
		}
	}
	if err := decodeStrict(body, &in); err != nil {
		return err
	}
	if in.State != "" && in.State != host.StateReady && in.State != host.StateDiscovered {
		return host.Invalid("state", "a new host starts ready or discovered")
	}
	h := in.Host
	if err := h.Normalize(); err != nil {
		return err
	}
	if in.TokenHash != "" && !hexRE.MatchString(in.TokenHash) {
		return host.Invalid("token_hash", "must be 64 lower-case hex digits")
	}
	if _, ok := s.hosts[h.Name]; ok {
		return fmt.Errorf("host %s exists: %w", h.Name, host.ErrConflict)
	}
	if err := s.checkMACs(h); err != nil {
		return err
	}
	h.Attempt, h.Version = 0, 1
	h.CreatedAt = time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	h.UpdatedAt = h.CreatedAt
	s.hosts[h.Name] = h
	s.hashes[h.Name] = in.TokenHash
	s.record(h.Name, host.Record{Actor: "admin", Action: "create", To: h.State})
	writeJSON(w, http.StatusCreated, h)
	return nil
}

func (s *Server) listHosts(w http.ResponseWriter, r *http.Request, _ []byte) error {
	q := r.URL.Query()
	limit := 0
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 {
			return host.Invalid("limit", "%q is not a positive number", l)
		}
		limit = n
	}
	out := []host.Host{}
	for _, name := range sortedKeys(s.hosts) {
		h := s.hosts[name]
		if (q.Get("state") != "" && string(h.State) != q.Get("state")) ||
			(q.Get("profile") != "" && h.Profile != q.Get("profile")) ||
			(q.Get("after") != "" && name <= q.Get("after")) {
			continue
		}
		if limit > 0 && len(out) == limit {
			break
		}
		out = append(out, h)
	}
	writeJSON(w, http.StatusOK, map[string]any{"hosts": out})
	return nil
}

// merge overlays patch onto cur's JSON form, refusing keys in fixed.
func merge(cur any, body []byte, fixed []string, out any) error {
	var patch map[string]json.RawMessage
	if err := json.Unmarshal(body, &patch); err != nil {
		return errStatus(http.StatusBadRequest, "bad JSON: %v", err)
	}
	for _, k := range fixed {
		if _, ok := patch[k]; ok {
			return host.Invalid(k, "cannot be changed")
		}
	}
	b, _ := json.Marshal(cur)
	var m map[string]json.RawMessage
	_ = json.Unmarshal(b, &m)
	for k, v := range patch {
		m[k] = v
	}
	b, _ = json.Marshal(m)
	return decodeStrict(b, out)
}

func (s *Server) patchHost(w http.ResponseWriter, r *http.Request, body []byte) error {
	cur, err := s.find(r.PathValue("name"))
	if err != nil {
		return err
	}
	var next struct {
		host.Host
		TokenHash string `json:"token_hash"`
	}
	next.TokenHash = s.hashes[cur.Name]
	if err := merge(cur, body, append([]string{"name", "state"}, readOnly...), &next); err != nil {
		return err
	}
	h := next.Host
	if err := h.Normalize(); err != nil {
		return err
	}
	if next.TokenHash != "" && !hexRE.MatchString(next.TokenHash) {
		return host.Invalid("token_hash", "must be 64 lower-case hex digits")
	}
	if err := s.checkMACs(h); err != nil {
		return err
	}
	h.Version++
	s.hosts[h.Name] = h
	s.hashes[h.Name] = next.TokenHash
	s.record(h.Name, host.Record{Actor: "admin", Action: "update"})
	writeJSON(w, http.StatusOK, h)
	return nil
}

func (s *Server) transition(w http.ResponseWriter, name string, ev host.Event, body []byte) error {
	h, err := s.find(name)
	if err != nil {
		return err
	}
	var in struct {
		Profile     string `json:"profile"`
		ThenInstall bool   `json:"then_install"`
		Reason      string `json:"reason"`
	}
	if len(body) > 0 {
		if err := decodeStrict(body, &in); err != nil {
			return err
		}
	}
	if in.Profile != "" {
		if _, ok := s.profiles[in.Profile]; !ok {
			return fmt.Errorf("profile %s: %w", in.Profile, host.ErrNotFound)
		}
	}
	to, err := host.Next(h.State, ev)
	if err != nil {
		return err
	}
	s.record(name, host.Record{Actor: "admin", Event: ev, From: h.State, To: to, Reason: in.Reason})
	h.State, h.Attempt, h.Version = to, 0, h.Version+1
	if in.Profile != "" {
		h.Profile = in.Profile
	}
	if ev == host.EventClean {
		h.CleanThenInstall = in.ThenInstall
	}
	s.hosts[name] = h
	writeJSON(w, http.StatusOK, h)
	return nil
}

func (s *Server) createProfile(w http.ResponseWriter, _ *http.Request, body []byte) error {
	var p host.Profile
	if err := decodeStrict(body, &p); err != nil {
		return err
	}
	if err := p.Normalize(); err != nil {
		return err
	}
	if _, ok := s.profiles[p.Name]; ok {
		return fmt.Errorf("profile %s exists: %w", p.Name, host.ErrConflict)
	}
	p.CreatedAt = time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	p.UpdatedAt = p.CreatedAt
	s.profiles[p.Name] = p
	writeJSON(w, http.StatusCreated, p)
	return nil
}

func (s *Server) patchProfile(w http.ResponseWriter, r *http.Request, body []byte) error {
	cur, ok := s.profiles[r.PathValue("name")]
	if !ok {
		return fmt.Errorf("profile %s: %w", r.PathValue("name"), host.ErrNotFound)
	}
	var p host.Profile
	if err := merge(cur, body, []string{"name", "created_at", "updated_at"}, &p); err != nil {
		return err
	}
	if err := p.Normalize(); err != nil {
		return err
	}
	s.profiles[p.Name] = p
	writeJSON(w, http.StatusOK, p)
	return nil
}
