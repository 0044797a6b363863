package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/text/unicode/norm"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/token"
)

// AuditFilter selects audit records for Service.Audit and the store's
// ListEvents. Zero fields match everything.
type AuditFilter struct {
	Actor  string    // only records by this actor: "ldap:alice"
	Host   string    // only records about this host: "node01"
	Action string    // only records of this kind (Record.Kind): "reimage", "login-failed"
	Since  time.Time // only records at or after Since
	Until  time.Time // only records before Until
	Before int64     // a page cursor: only records with ids below Before; 0: the newest
	Limit  int       // at most this many; 0: no limit (Service.Audit: 100)
}

// TokenFilter selects tokens for ListTokens.
type TokenFilter struct {
	Owner string      // with All false: only this owner's tokens ("" is the service tokens)
	All   bool        // every owner's tokens
	Kinds []TokenKind // only these kinds; empty: every kind
}

// Store is what the Service keeps: users, tokens and audit records
// (*store.DB). Record arguments are written in the same transaction as the
// change; a zero Record writes nothing.
type Store interface {
	// CreateUser returns host.ErrConflict when (Source, Name) is taken.
	CreateUser(ctx context.Context, u User, rec host.Record) error
	// GetUser returns host.ErrNotFound for an unknown user.
	GetUser(ctx context.Context, source Source, name string) (User, error)
	ListUsers(ctx context.Context) ([]User, error)
	// UpdateUser returns fn's error unchanged, host.ErrNotFound for an
	// unknown user. A rec with nil Fields gets the names of the changed
	// fields, and is not written when nothing changed.
	UpdateUser(ctx context.Context, source Source, name string, fn func(*User) error, rec host.Record) (User, error)
	// DeleteUser also revokes the user's tokens; host.ErrNotFound for an
	// unknown user.
	DeleteUser(ctx context.Context, source Source, name string, rec host.Record) error
	// UpsertDirectoryUser creates u or updates its grants, DN and CheckedAt,
	// keeping Disabled.
	UpsertDirectoryUser(ctx context.Context, u User) (User, error)

	// CreateToken returns host.ErrConflict when the owner has a token of that
	// name or the hash is taken.
	CreateToken(ctx context.Context, t Token, rec host.Record) (Token, error)
	// TokenByHash returns host.ErrNotFound for an unknown hash (revoked and
	// expired tokens are returned).
	TokenByHash(ctx context.Context, hash string) (Token, error)
	// GetToken returns host.ErrNotFound for an unknown id.
	GetToken(ctx context.Context, id int64) (Token, error)
	ListTokens(ctx context.Context, f TokenFilter) ([]Token, error)
	// RevokeToken is idempotent; host.ErrNotFound for an unknown id.
	RevokeToken(ctx context.Context, id int64, at time.Time, rec host.Record) error
	RevokeOwnerTokens(ctx context.Context, owner string, kinds []TokenKind, at time.Time, rec host.Record) (int, error)
	// TouchToken returns host.ErrNotFound for an unknown id.
	TouchToken(ctx context.Context, id int64, at time.Time) error

	AppendEvents(ctx context.Context, recs ...host.Record) error
	ListEvents(ctx context.Context, f AuditFilter) ([]host.Record, error)
}

// DirectoryService is what the Service asks a directory (*Directory). Both
// calls return ErrInvalidCredentials (wrapped) for any refusal, an unknown,
// disabled or locked user included, and ErrDirectoryDown (wrapped) when the
// directory cannot be asked.
type DirectoryService interface {
	Authenticate(ctx context.Context, username, password string) (DirectoryUser, error)
	Lookup(ctx context.Context, username string) (DirectoryUser, error)
}

var _ DirectoryService = (*Directory)(nil)

// Meta is what the transport knows about a call, for the audit log.
type Meta struct {
	ClientAddr string // "192.0.2.7"
	RequestID  string // X-Request-ID
}

// ServiceOptions tune a Service; zero fields take the defaults.
type ServiceOptions struct {
	SessionTTL   time.Duration    // how long a session lasts: DefaultSessionTTL (8h)
	PreferLocal  bool             // a name that is local and in the directory logs in as the local user
	RecheckEvery time.Duration    // how often a directory user's groups are re-read for their tokens: 15m
	Now          func() time.Time // the clock: time.Now
	Logger       *slog.Logger     // slog.Default()
}

// Session is a successful login.
type Session struct {
	Token     string    // the bearer secret, shown once
	ExpiresAt time.Time // when it stops working
	User      User      // who logged in (no password hash)
}

// ThrottledError is a login refused before checking the password because
// the user name or the client address failed too often. It is an
// ErrThrottled (errors.Is).
type ThrottledError struct {
	Wait time.Duration // how long to wait before trying again
}

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("%v (retry in %s)", ErrThrottled, e.Wait.Round(time.Second))
}

// Unwrap makes a *ThrottledError an ErrThrottled.
func (e *ThrottledError) Unwrap() error { return ErrThrottled }

// TokenRequest asks for a personal token or, with Service, a service token.
type TokenRequest struct {
	Name      string    // "laptop", "ci-builder"
	Grants    []Grant   // personal: empty means all of the caller's grants now; service: required
	ExpiresAt time.Time // zero: never
	Service   bool      // a service token (admins only), owned by no user
}

// NewUser is a local user to create.
type NewUser struct {
	Name     string  `json:"name"`     // "bob"
	Password string  `json:"password"` // at least MinPasswordLen characters
	Grants   []Grant `json:"grants"`   // [{"role":"operator","hosts":"team=lab"}]
}

// UserUpdate changes a user; nil fields stay as they are.
type UserUpdate struct {
	Password *string  `json:"password,omitempty"` // local users only
	Disabled *bool    `json:"disabled,omitempty"` // a disabled user cannot log in; their sessions and tokens stop working
	Grants   *[]Grant `json:"grants,omitempty"`   // local users only (directory users get theirs from groups)
}

// Service is the operator side of auth: login, sessions and tokens, users
// and grants, and the global audit log. It holds no HTTP and no database:
// the transport calls it, the Store keeps its rows. Safe for concurrent use.
//
// Login rules. A user name is looked up locally and, when a directory is
// configured, in the directory; the directory wins a name both have unless
// PreferLocal. A local user whose name the directory refuses is checked
// locally only when a Lookup says the directory does not have that name;
// when the directory is down, a local user is checked locally only if no
// directory user of that name has ever logged in here (otherwise the login
// fails with ErrDirectoryDown): a local password never stands in for a
// directory account. Wrong passwords, unknown and disabled users and users
// without grants all get ErrInvalidCredentials; the audit log records the
// true reason.
type Service struct {
	st        Store
	dir       DirectoryService
	o         ServiceOptions
	users     *Throttle // per user name
	addrs     *Throttle // per client address
	touchGap  time.Duration
	maxAudit  int
	minSecret int
}

// NewService returns a Service over st; dir may be nil (no directory).
func NewService(st Store, dir DirectoryService, o ServiceOptions) *Service {
	if o.SessionTTL <= 0 {
		o.SessionTTL = DefaultSessionTTL
	}
	if o.RecheckEvery <= 0 {
		o.RecheckEvery = 15 * time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	s := &Service{st: st, o: o, users: NewThrottle(30 * time.Second), addrs: NewThrottle(5 * time.Minute),
		touchGap: time.Minute, maxAudit: 1000, minSecret: 32}
	if dir != nil && !isNilDirectory(dir) {
		s.dir = dir
	}
	s.users.Now, s.addrs.Now = o.Now, o.Now
	return s
}

// isNilDirectory catches a typed nil *Directory passed as the interface.
func isNilDirectory(d DirectoryService) bool {
	p, ok := d.(*Directory)
	return ok && p == nil
}

func (s *Service) now() time.Time { return s.o.Now().UTC() }

// rec starts an audit record of caller's op.
func rec(actor, action, subject string, m Meta) host.Record {
	return host.Record{Actor: actor, Action: action, Subject: subject, ClientAddr: m.ClientAddr, RequestID: m.RequestID}
}

// loginKey is the throttle key of a user name. Directories match many
// spellings of one account (LDAP folds case and compatibility forms such as
// fullwidth letters and ignores surrounding and repeated spaces; AD also
// takes the user principal name alice@example.test), so every spelling
// counts as one name: variants must not multiply the free attempts.
func loginKey(username string) string {
	k := strings.Join(strings.Fields(strings.ToLower(norm.NFKC.String(username))), " ")
	if i := strings.LastIndexByte(k, '@'); i > 0 {
		k = k[:i]
	}
	return k
}

// unknownActor names an unknown user in the audit log: "unknown:" and the
// name, cleaned of anything that is not printable and bounded.
func unknownActor(username string) string { return "unknown:" + host.CleanText(username, 64) }

// Login checks username and password and returns a new session. See
// Service for which user a name means. It returns ErrInvalidCredentials for
// any refusal, ErrDirectoryDown when the directory must be asked and cannot
// be, and a *ThrottledError while the name or the address must wait.
func (s *Service) Login(ctx context.Context, username, password string, m Meta) (Session, error) {
	actor := unknownActor(username)
	fail := func(reason string, err error) (Session, error) {
		s.users.Fail(loginKey(username))
		if m.ClientAddr != "" {
			s.addrs.Fail(m.ClientAddr)
		}
		r := rec(actor, "login-failed", actor, m)
		r.Reason = reason
		if aerr := s.st.AppendEvents(ctx, r); aerr != nil {
			s.o.Logger.Error("audit login failure", "err", aerr, "request_id", m.RequestID)
		}
		return Session{}, err
	}
	wait, err := s.users.Check(loginKey(username))
	if m.ClientAddr != "" {
		if w, aerr := s.addrs.Check(m.ClientAddr); aerr != nil && w > wait {
			wait, err = w, aerr
		}
	}
	if err != nil {
		r := rec(actor, "login-failed", actor, m)
		r.Reason = "throttled"
		if aerr := s.st.AppendEvents(ctx, r); aerr != nil {
			s.o.Logger.Error("audit login failure", "err", aerr, "request_id", m.RequestID)
		}
		return Session{}, &ThrottledError{Wait: wait}
	}
	if CheckUsername(username) != nil || len(password) > MaxPasswordLen {
		BurnPasswordCheck(password)
		return fail("malformed user name or password", ErrInvalidCredentials)
	}
	u, reason, err := s.verify(ctx, username, password)
	if u.Name != "" {
		actor = u.Actor()
	}
	if err != nil {
		if !errors.Is(err, ErrInvalidCredentials) && !errors.Is(err, ErrDirectoryDown) {
			return Session{}, err // the store failed: not the user's fault
		}
		if errors.Is(err, ErrDirectoryDown) {
			// Not the user's fault either: audit, but do not count it.
			r := rec(actor, "login-failed", actor, m)
			r.Reason = reason
			if aerr := s.st.AppendEvents(ctx, r); aerr != nil {
				s.o.Logger.Error("audit login failure", "err", aerr, "request_id", m.RequestID)
			}
			return Session{}, ErrDirectoryDown
		}
		return fail(reason, ErrInvalidCredentials)
	}
	s.users.Succeed(loginKey(username))
	if m.ClientAddr != "" {
		s.addrs.Succeed(m.ClientAddr)
	}
	plain, hash := token.NewN(s.minSecret)
	at := s.now()
	t := Token{Name: "session-" + hash[:12], Kind: TokenSession, Owner: u.Actor(), Grants: u.Grants,
		ExpiresAt: at.Add(s.o.SessionTTL), CreatedBy: u.Actor(), CreatedAt: at, Hash: hash}
	r := rec(u.Actor(), RuleFor(OpLogin).Audit, u.Actor(), m)
	r.Time = at
	if _, err := s.st.CreateToken(ctx, t, r); err != nil {
		return Session{}, fmt.Errorf("auth: login %s: %w", u.Actor(), err)
	}
	u.PasswordHash = ""
	return Session{Token: plain, ExpiresAt: t.ExpiresAt, User: u}, nil
}

// verify finds who username and password are. Its error is
// ErrInvalidCredentials or ErrDirectoryDown with reason saying why (for
// the audit log only), or a store error.
func (s *Service) verify(ctx context.Context, username, password string) (User, string, error) {
	local, err := s.st.GetUser(ctx, SourceLocal, username)
	hasLocal := err == nil
	if err != nil && !errors.Is(err, host.ErrNotFound) {
		return User{}, "", err
	}
	if s.dir == nil || (hasLocal && s.o.PreferLocal) {
		return s.checkLocal(local, hasLocal, password)
	}
	du, err := s.dir.Authenticate(ctx, username, password)
	switch {
	case err == nil:
		at := s.now()
		u, err := s.st.UpsertDirectoryUser(ctx, User{Name: du.Name, Source: SourceLDAP, Grants: du.Grants, DN: du.DN, CheckedAt: at})
		if err != nil {
			return User{}, "", err
		}
		return checkUsable(u)
	case errors.Is(err, ErrDirectoryDown):
		if !hasLocal {
			return User{}, "directory down: " + err.Error(), ErrDirectoryDown
		}
		if _, err := s.st.GetUser(ctx, SourceLDAP, username); err == nil {
			return User{Name: username, Source: SourceLDAP}, "directory down; the name is a directory user's", ErrDirectoryDown
		} else if !errors.Is(err, host.ErrNotFound) {
			return User{}, "", err
		}
		return s.checkLocal(local, true, password)
	case errors.Is(err, ErrInvalidCredentials):
		if !hasLocal {
			return User{}, "directory refused: " + err.Error(), ErrInvalidCredentials
		}
		// Does the directory have this name at all? Then it wins.
		_, lerr := s.dir.Lookup(ctx, username)
		switch {
		case lerr == nil:
			return User{Name: username, Source: SourceLDAP}, "directory refused the password of a name it has: " + err.Error(), ErrInvalidCredentials
		case errors.Is(lerr, ErrDirectoryDown):
			return User{Name: username, Source: SourceLDAP}, "directory down during lookup: " + lerr.Error(), ErrDirectoryDown
		}
		return s.checkLocal(local, true, password)
	}
	return User{}, "", err
}

// checkLocal checks a local user's password (or burns the same time for
// none) and that the user may log in.
func (s *Service) checkLocal(u User, ok bool, password string) (User, string, error) {
	if !ok {
		BurnPasswordCheck(password)
		return User{}, "unknown user", ErrInvalidCredentials
	}
	if !CheckPassword(u.PasswordHash, password) {
		return u, "wrong password", ErrInvalidCredentials
	}
	return checkUsable(u)
}

// checkUsable refuses disabled users and users without grants.
func checkUsable(u User) (User, string, error) {
	switch {
	case u.Disabled:
		return u, "user disabled", ErrInvalidCredentials
	case len(u.Grants) == 0:
		return u, "user has no grants", ErrInvalidCredentials
	}
	return u, "", nil
}

// Authenticate returns the caller a bearer secret stands for. Unknown,
// expired and revoked tokens, tokens of disabled or deleted users, of users
// left without grants, and personal tokens none of whose grants their owner
// still holds are host.ErrUnauthorized. A directory user's groups are
// re-read (Lookup) when older than RecheckEvery; while the directory is
// down the last known grants stay in force.
func (s *Service) Authenticate(ctx context.Context, bearer string) (Identity, error) {
	if bearer == "" || len(bearer) > 256 {
		return Identity{}, host.ErrUnauthorized
	}
	t, err := s.st.TokenByHash(ctx, token.Hash(bearer))
	if errors.Is(err, host.ErrNotFound) {
		return Identity{}, host.ErrUnauthorized
	}
	if err != nil {
		return Identity{}, fmt.Errorf("auth: authenticate: %w", err)
	}
	at := s.now()
	if !t.Active(at) {
		return Identity{}, host.ErrUnauthorized
	}
	var id Identity
	switch t.Kind {
	case TokenService:
		id = Identity{Name: t.Name, Source: SourceToken, Grants: t.Grants, Token: t.Name}
	case TokenSession, TokenPersonal:
		owner, err := s.owner(ctx, t.Owner)
		if err != nil {
			return Identity{}, err
		}
		id = Identity{Name: owner.Name, Source: owner.Source, Grants: owner.Grants}
		if t.Kind == TokenPersonal {
			id.Grants, id.Token = Intersect(t.Grants, owner.Grants), t.Name
		}
		if len(id.Grants) == 0 {
			return Identity{}, host.ErrUnauthorized
		}
	default:
		return Identity{}, host.ErrUnauthorized
	}
	id.Expires = t.ExpiresAt
	if at.Sub(t.LastUsedAt) >= s.touchGap {
		if err := s.st.TouchToken(ctx, t.ID, at); err != nil {
			s.o.Logger.Warn("token last use not recorded", "token", t.ID, "err", err)
		}
	}
	return id, nil
}

// owner loads a token's owner, re-reading a directory user's groups when
// they are older than RecheckEvery.
func (s *Service) owner(ctx context.Context, actor string) (User, error) {
	src, name, ok := strings.Cut(actor, ":")
	if !ok || (Source(src) != SourceLocal && Source(src) != SourceLDAP) {
		return User{}, host.ErrUnauthorized
	}
	u, err := s.st.GetUser(ctx, Source(src), name)
	if errors.Is(err, host.ErrNotFound) {
		return User{}, host.ErrUnauthorized
	}
	if err != nil {
		return User{}, fmt.Errorf("auth: authenticate: %w", err)
	}
	if u.Disabled {
		return User{}, host.ErrUnauthorized
	}
	if u.Source != SourceLDAP || s.dir == nil || s.now().Sub(u.CheckedAt) < s.o.RecheckEvery {
		return u, nil
	}
	du, err := s.dir.Lookup(ctx, u.Name)
	switch {
	case errors.Is(err, ErrDirectoryDown):
		s.o.Logger.Warn("directory down: keeping last known grants", "user", u.Actor(), "err", err)
		return u, nil
	case errors.Is(err, ErrInvalidCredentials):
		// Gone, disabled or locked in the directory: no grants until the
		// directory says otherwise (the row stays: it owns the tokens).
		du = DirectoryUser{Name: u.Name, DN: u.DN}
	case err != nil:
		return User{}, fmt.Errorf("auth: re-check %s: %w", u.Actor(), err)
	}
	nu, err := s.st.UpsertDirectoryUser(ctx, User{Name: u.Name, Source: SourceLDAP, Grants: du.Grants, DN: du.DN, CheckedAt: s.now()})
	if err != nil {
		return User{}, fmt.Errorf("auth: re-check %s: %w", u.Actor(), err)
	}
	if nu.Disabled {
		return User{}, host.ErrUnauthorized
	}
	return nu, nil
}

// Logout ends the session bearer stands for. A bearer that is not an
// active session is host.ErrUnauthorized (API tokens are revoked with
// RevokeToken).
func (s *Service) Logout(ctx context.Context, bearer string, m Meta) error {
	if bearer == "" || len(bearer) > 256 {
		return host.ErrUnauthorized
	}
	t, err := s.st.TokenByHash(ctx, token.Hash(bearer))
	if errors.Is(err, host.ErrNotFound) {
		return host.ErrUnauthorized
	}
	if err != nil {
		return fmt.Errorf("auth: logout: %w", err)
	}
	at := s.now()
	if !t.Active(at) {
		return host.ErrUnauthorized
	}
	if t.Kind != TokenSession {
		return host.Invalid("token", "this is an API token, not a session: nothing to log out of (revoke it with bootpilot token revoke, DELETE /api/v1/tokens/%d)", t.ID)
	}
	r := rec(t.Owner, RuleFor(OpLogout).Audit, t.Owner, m)
	if err := s.st.RevokeToken(ctx, t.ID, at, r); err != nil {
		return fmt.Errorf("auth: logout: %w", err)
	}
	return nil
}

var tokenNameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$`)

// tokenSubject names a token in the audit log: "token:ci-builder",
// "token:ldap:alice/laptop".
func tokenSubject(t Token) string {
	if t.Owner == "" {
		return "token:" + t.Name
	}
	return "token:" + t.Owner + "/" + t.Name
}

// CreateToken makes a token and returns its secret (shown once). A
// personal token belongs to the calling user and carries at most the
// caller's grants: empty r.Grants means all of them as they are now (a
// snapshot: the token does not grow when its owner later gains grants,
// and it shrinks when the owner loses some). A service token (r.Service)
// needs admin and explicit grants. It returns host.ErrForbidden for grants
// the caller does not hold, a *host.ValidationError for a bad name, grant
// or expiry, and host.ErrConflict for a name the owner already uses.
func (s *Service) CreateToken(ctx context.Context, caller Identity, r TokenRequest, m Meta) (string, Token, error) {
	op := OpTokenCreate
	if r.Service {
		op = OpServiceMake
	}
	if err := caller.Authorize(op, nil); err != nil {
		return "", Token{}, err
	}
	if !tokenNameRE.MatchString(r.Name) || strings.HasPrefix(r.Name, "session-") {
		return "", Token{}, host.Invalid("name", "%q: 1-63 of A-Z a-z 0-9 . _ -, starting and ending with a letter or digit, not session-…", host.CleanText(r.Name, 64))
	}
	at := s.now()
	if !r.ExpiresAt.IsZero() && !r.ExpiresAt.After(at) {
		return "", Token{}, host.Invalid("expires_at", "%s is not in the future", r.ExpiresAt.UTC().Format(time.RFC3339))
	}
	grants := slices.Clone(r.Grants)
	for i, g := range grants {
		if err := g.Check(); err != nil {
			return "", Token{}, err
		}
		sel, _ := ParseSelector(g.Hosts)
		grants[i].Hosts = sel.String()
	}
	t := Token{Name: r.Name, Kind: TokenService, Grants: grants, ExpiresAt: r.ExpiresAt, CreatedBy: caller.Actor(), CreatedAt: at}
	if r.Service {
		if len(grants) == 0 {
			return "", Token{}, host.Invalid("grants", "a service token needs at least one grant")
		}
	} else {
		if caller.Source != SourceLocal && caller.Source != SourceLDAP {
			// Personal tokens belong to users; a service account has its one token.
			return "", Token{}, host.Invalid("service", "a service token cannot make personal tokens; an admin makes service tokens with \"service\": true")
		}
		if len(grants) == 0 {
			grants = slices.Clone(caller.Grants)
		}
		if len(grants) == 0 {
			return "", Token{}, host.Invalid("grants", "you hold no grants to give a token")
		}
		t.Kind, t.Owner, t.Grants = TokenPersonal, caller.Actor(), grants
	}
	if !caller.Covers(t.Grants) {
		return "", Token{}, host.ErrForbidden
	}
	plain, hash := token.NewN(s.minSecret)
	t.Hash = hash
	r2 := rec(caller.Actor(), RuleFor(op).Audit, tokenSubject(t), m)
	r2.Time = at
	out, err := s.st.CreateToken(ctx, t, r2)
	if err != nil {
		return "", Token{}, fmt.Errorf("auth: create token %s: %w", r.Name, err)
	}
	return plain, out, nil
}

// ListTokens returns the caller's own personal tokens or, with all (admin
// only), every service and personal token. Sessions are not listed.
func (s *Service) ListTokens(ctx context.Context, caller Identity, all bool) ([]Token, error) {
	f := TokenFilter{Owner: caller.Actor(), Kinds: []TokenKind{TokenPersonal}}
	if all {
		if err := caller.Authorize(OpTokenAll, nil); err != nil {
			return nil, err
		}
		f = TokenFilter{All: true, Kinds: []TokenKind{TokenService, TokenPersonal}}
	} else if err := caller.Authorize(OpTokenList, nil); err != nil {
		return nil, err
	}
	return s.st.ListTokens(ctx, f)
}

// RevokeToken revokes token id: the caller's own, or anyone's for an
// admin. A token the caller may not revoke is host.ErrNotFound, like an
// unknown one, so ids cannot be probed.
func (s *Service) RevokeToken(ctx context.Context, caller Identity, id int64, m Meta) error {
	t, err := s.st.GetToken(ctx, id)
	if err != nil {
		return fmt.Errorf("auth: revoke token %d: %w", id, err)
	}
	op := OpTokenRevoke
	own := t.Owner != "" && t.Owner == caller.Actor() && (caller.Source == SourceLocal || caller.Source == SourceLDAP)
	if !own {
		op = OpTokenOther
		if caller.Authorize(op, nil) != nil {
			return fmt.Errorf("auth: revoke token %d: %w", id, host.ErrNotFound)
		}
	}
	r := rec(caller.Actor(), RuleFor(op).Audit, tokenSubject(t), m)
	if err := s.st.RevokeToken(ctx, id, s.now(), r); err != nil {
		return fmt.Errorf("auth: revoke token %d: %w", id, err)
	}
	return nil
}

var localNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$`)

// checkGrants validates grants and renders their selectors canonically.
func checkGrants(gs []Grant) ([]Grant, error) {
	out := slices.Clone(gs)
	for i, g := range out {
		if err := g.Check(); err != nil {
			return nil, err
		}
		sel, _ := ParseSelector(g.Hosts)
		out[i].Hosts = sel.String()
	}
	return out, nil
}

// public strips what callers never see.
func public(u User) User {
	u.PasswordHash = ""
	return u
}

// CreateUser makes a local user (admins only). It returns a
// *host.ValidationError for a bad name, password or grant and
// host.ErrConflict for a taken name.
func (s *Service) CreateUser(ctx context.Context, caller Identity, nu NewUser, m Meta) (User, error) {
	if err := caller.Authorize(OpUserCreate, nil); err != nil {
		return User{}, err
	}
	if !localNameRE.MatchString(nu.Name) {
		return User{}, host.Invalid("name", "%q: 1-64 of a-z 0-9 . _ -, starting and ending with a letter or digit", host.CleanText(nu.Name, 64))
	}
	grants, err := checkGrants(nu.Grants)
	if err != nil {
		return User{}, err
	}
	hash, err := HashPassword(nu.Password)
	if err != nil {
		return User{}, err
	}
	u := User{Name: nu.Name, Source: SourceLocal, Grants: grants, PasswordHash: hash}
	r := rec(caller.Actor(), RuleFor(OpUserCreate).Audit, u.Actor(), m)
	r.Fields = []string{"password"}
	if len(grants) > 0 {
		r.Fields = []string{"grants", "password"}
	}
	if err := s.st.CreateUser(ctx, u, r); err != nil {
		return User{}, fmt.Errorf("auth: create user %s: %w", u.Actor(), err)
	}
	got, err := s.st.GetUser(ctx, SourceLocal, nu.Name)
	if err != nil {
		return User{}, fmt.Errorf("auth: create user %s: %w", u.Actor(), err)
	}
	return public(got), nil
}

// ListUsers returns every user (admins only).
func (s *Service) ListUsers(ctx context.Context, caller Identity) ([]User, error) {
	if err := caller.Authorize(OpUserList, nil); err != nil {
		return nil, err
	}
	us, err := s.st.ListUsers(ctx)
	if err != nil {
		return nil, fmt.Errorf("auth: list users: %w", err)
	}
	for i := range us {
		us[i] = public(us[i])
	}
	return us, nil
}

// GetUser returns one user (admins only), or host.ErrNotFound.
func (s *Service) GetUser(ctx context.Context, caller Identity, source Source, name string) (User, error) {
	if err := caller.Authorize(OpUserGet, nil); err != nil {
		return User{}, err
	}
	u, err := s.st.GetUser(ctx, source, name)
	if err != nil {
		return User{}, fmt.Errorf("auth: get user %s:%s: %w", source, name, err)
	}
	return public(u), nil
}

// UpdateUser changes a user (admins only): a local user's password and
// grants, anyone's disabled flag. A new password or disabling ends the
// user's sessions. The audit record names the changed fields, never their
// values. It returns host.ErrNotFound for an unknown user and a
// *host.ValidationError for a bad value or a change a directory user cannot
// take.
func (s *Service) UpdateUser(ctx context.Context, caller Identity, source Source, name string, up UserUpdate, m Meta) (User, error) {
	if err := caller.Authorize(OpUserUpdate, nil); err != nil {
		return User{}, err
	}
	if source != SourceLocal && (up.Password != nil || up.Grants != nil) {
		return User{}, host.Invalid("source", "a %s user's password and grants come from the directory", source)
	}
	var hash string
	if up.Password != nil {
		h, err := HashPassword(*up.Password)
		if err != nil {
			return User{}, err
		}
		hash = h
	}
	var grants []Grant
	if up.Grants != nil {
		g, err := checkGrants(*up.Grants)
		if err != nil {
			return User{}, err
		}
		grants = g
	}
	// The store names the changed fields in r (and writes no record when
	// nothing changed).
	r := rec(caller.Actor(), RuleFor(OpUserUpdate).Audit, string(source)+":"+name, m)
	u, err := s.st.UpdateUser(ctx, source, name, func(u *User) error {
		if up.Disabled != nil {
			u.Disabled = *up.Disabled
		}
		if up.Grants != nil {
			u.Grants = grants
		}
		if up.Password != nil {
			u.PasswordHash = hash
		}
		return nil
	}, r)
	if err != nil {
		return User{}, fmt.Errorf("auth: update user %s:%s: %w", source, name, err)
	}
	if up.Password != nil || (up.Disabled != nil && *up.Disabled) {
		if _, err := s.st.RevokeOwnerTokens(ctx, u.Actor(), []TokenKind{TokenSession}, s.now(), host.Record{}); err != nil {
			return User{}, fmt.Errorf("auth: update user %s: end sessions: %w", u.Actor(), err)
		}
	}
	return public(u), nil
}

// DeleteUser deletes a user and revokes their tokens (admins only). It
// returns host.ErrNotFound for an unknown user.
func (s *Service) DeleteUser(ctx context.Context, caller Identity, source Source, name string, m Meta) error {
	if err := caller.Authorize(OpUserDelete, nil); err != nil {
		return err
	}
	r := rec(caller.Actor(), RuleFor(OpUserDelete).Audit, string(source)+":"+name, m)
	if err := s.st.DeleteUser(ctx, source, name, r); err != nil {
		return fmt.Errorf("auth: delete user %s:%s: %w", source, name, err)
	}
	return nil
}

// Audit returns global audit records (auditors and admins), newest first:
// at most f.Limit, 100 when 0, never more than 1000 at once (page with
// f.Before).
func (s *Service) Audit(ctx context.Context, caller Identity, f AuditFilter) ([]host.Record, error) {
	if err := caller.Authorize(OpAuditRead, nil); err != nil {
		return nil, err
	}
	if f.Limit <= 0 {
		f.Limit = 100
	}
	f.Limit = min(f.Limit, s.maxAudit)
	return s.st.ListEvents(ctx, f)
}

// SessionTTL is how long a session lasts (for the console cookie).
func (s *Service) SessionTTL() time.Duration { return s.o.SessionTTL }
