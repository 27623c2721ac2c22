// Package fakezoom is an in-process stand-in for Zoom's OAuth server and the
// parts of its REST API that onair uses, for tests on machines that cannot
// reach Zoom. One httptest server answers both: OAuthURL() is the base of
// /oauth/authorize and /oauth/token (ZOOM_OAUTH_URL), APIURL() the base of
// the REST API (ZOOM_API_URL, ending in /v2).
//
// Faithful to Zoom (from Zoom's documentation and error bodies reported in
// public issue trackers; see the comments at each answer):
//   - the code flow: /oauth/authorize redirects with code and state; codes are
//     single use and live 5 minutes; PKCE with S256 or plain;
//   - /oauth/token: form body, client authentication by HTTP Basic (or
//     client_id/client_secret in the body), answers
//     {"access_token","token_type":"bearer","refresh_token","expires_in":3599,"scope","api_url"};
//     errors are 400 with {"reason","error"}: invalid_client,
//     invalid_grant ("Invalid authorization code …", "Invalid Token!"),
//     unsupported_grant_type;
//   - refresh-token rotation: every refresh returns a new refresh token and
//     the old one is refused from then on; refresh tokens live 90 days;
//   - REST errors are {"code","message"}: 401 code 124 "Invalid access token."
//     or "Access token is expired.", 400 code 4711 for a missing scope,
//     404 code 3001 "Meeting does not exist: ID.", 429 with Retry-After;
//   - the user, meeting and meeting-list shapes (ids of meetings are JSON
//     numbers, times "2006-01-02T15:04:05Z"); type=live lists only started
//     scheduled meetings (instant meetings, type 1, are missing, as on Zoom);
//     pages of at most 300 with next_page_token;
//   - GET /users/{userId}/token?type=onbehalf[&meeting_id=…] (scope
//     user:read:token) answers {"token": …}.
//
// Simplified:
//   - one OAuth client (ClientID/ClientSecret); tokens are opaque random
//     strings, not JWTs; the consent screen is skipped: authorize signs in as
//     the user chosen with SignInAs (or the first user added) and consents at
//     once, unless Deny(true);
//   - scopes belong to the user (User.Scopes, SetScopes) and are checked live
//     on every call, granular names and the classic ones alike;
//   - a user sees only their own user object and meetings, or another user's
//     on the same account when holding the matching :admin scope; everything
//     else is "does not exist";
//   - an exchange refused for its code (wrong code_verifier or redirect_uri)
//     uses the code up, one refused for client authentication does not; an
//     access token stays valid after a refresh until it expires or is
//     revoked;
//   - texts Zoom does not document (authorize error pages, the Deny redirect's
//     error_description, "Redirect URI mismatch." as invalid_grant, bodies of
//     forced failures, invalid query parameters) are plausible inventions;
//   - one clock for everything, moved with Advance; no per-account rate
//     limits, only the RateLimit and FailAPI switches.
//
// Every method is safe for concurrent use, also while requests are served.
package fakezoom

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	mrand "math/rand/v2"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// Defaults of a new Zoom.
const (
	DefaultClientID     = "fakezoom-client-id"
	DefaultClientSecret = "fakezoom-client-secret"
	DefaultAccountID    = "fakezoom-account"

	// DefaultAccessTTL is the life of an access token; Zoom answers
	// "expires_in": 3599.
	DefaultAccessTTL = 3599 * time.Second
	// RefreshTTL is the life of a refresh token (Zoom: 90 days).
	RefreshTTL = 90 * 24 * time.Hour
	// CodeTTL is the life of an authorization code (Zoom: 5 minutes).
	CodeTTL = 5 * time.Minute
)

// Always makes FailToken and FailAPI fail every call until cleared.
const Always = -1

// DefaultScopes are the scopes of a user added without User.Scopes: enough
// for every endpoint the fake serves.
var DefaultScopes = []string{
	"user:read:user",
	"meeting:read:meeting",
	"meeting:read:list_meetings",
	"user:read:token",
	"user:read:zak",
}

// User is a Zoom user. Zero fields get defaults in AddUser.
type User struct {
	ID          string // required
	Email       string // default ID + "@example.com"
	FirstName   string
	LastName    string
	DisplayName string // default FirstName + " " + LastName, or ID
	AccountID   string // default DefaultAccountID
	Type        int    // 1 basic, 2 licensed (default)
	PMI         int64  // personal meeting id; default random
	Timezone    string
	Status      string // default "active"
	// Scopes granted to the app by this user; nil means DefaultScopes.
	Scopes []string
}

// Meeting is a Zoom meeting (one occurrence: UUID) under its number (ID).
// Zero fields get defaults in AddMeeting.
type Meeting struct {
	UUID              string // default random, base64 like Zoom's
	ID                int64  // meeting number; default random 11 digits
	HostID            string // required
	HostEmail         string // default the host's email when the host is a known user
	Topic             string
	Type              int    // 1 instant, 2 scheduled (default), 3, 4 personal room, 8 recurring
	Status            string // "waiting" (default) or "started"
	StartTime         time.Time
	Duration          int // scheduled minutes
	Timezone          string
	Agenda            string
	Password          string
	EncryptedPassword string // default random when Password is set
	JoinURL           string // default https://zoom.us/j/ID[?pwd=EncryptedPassword]
	CreatedAt         time.Time
}

// Token is the answer of the token endpoint.
type Token struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	RefreshToken string `json:"refresh_token"`
	ExpiresIn    int    `json:"expires_in"`
	Scope        string `json:"scope"`
	APIURL       string `json:"api_url"`
}

// Option configures New.
type Option func(*Zoom)

// WithClient sets the OAuth client credentials (default DefaultClientID,
// DefaultClientSecret).
func WithClient(id, secret string) Option {
	return func(z *Zoom) { z.ClientID, z.ClientSecret = id, secret }
}

// WithRedirectURIs restricts the redirect_uri accepted by /oauth/authorize
// to these exact values, like the app's registered redirect URLs and allow
// list. Without it any absolute http(s) URL is accepted.
func WithRedirectURIs(uris ...string) Option {
	return func(z *Zoom) {
		z.redirectURIs = map[string]bool{}
		for _, u := range uris {
			z.redirectURIs[u] = true
		}
	}
}

// Zoom is the fake. Create it with New.
type Zoom struct {
	// ClientID and ClientSecret are the registered OAuth client. Set them
	// with WithClient; do not change them after New.
	ClientID     string
	ClientSecret string

	srv          *httptest.Server
	closeOnce    sync.Once
	redirectURIs map[string]bool

	mu        sync.Mutex
	offset    time.Duration // the fake clock: time.Now() + offset
	accessTTL time.Duration
	users     map[string]*User
	current   string // the signed-in user of /oauth/authorize
	deny      bool
	codes     map[string]*authCode
	access    map[string]*grant
	refresh   map[string]*grant
	meetings  map[int64]*Meeting
	obf       map[string]obfGrant

	tokenFail failure
	apiFail   map[string]*failure
	rateLimit int

	tokenCalls map[string]int
	apiCalls   map[string]int
}

type authCode struct {
	userID, redirectURI, challenge, method string
	expires                                time.Time
}

type grant struct {
	userID  string
	expires time.Time
}

type obfGrant struct {
	userID    string
	meetingID int64
}

type failure struct {
	status int
	left   int // < 0: always
}

// take reports whether this call must fail, using one of the remaining
// failures.
func (f *failure) take() (int, bool) {
	if f == nil || f.status == 0 || f.left == 0 {
		return 0, false
	}
	if f.left > 0 {
		f.left--
	}
	return f.status, true
}

// New starts a fake Zoom. With a non-nil tb it is closed when the test ends;
// otherwise call Close.
func New(tb testing.TB, opts ...Option) *Zoom {
	z := &Zoom{
		ClientID:     DefaultClientID,
		ClientSecret: DefaultClientSecret,
		accessTTL:    DefaultAccessTTL,
		users:        map[string]*User{},
		codes:        map[string]*authCode{},
		access:       map[string]*grant{},
		refresh:      map[string]*grant{},
		meetings:     map[int64]*Meeting{},
		obf:          map[string]obfGrant{},
		apiFail:      map[string]*failure{},
		tokenCalls:   map[string]int{},
		apiCalls:     map[string]int{},
	}
	for _, o := range opts {
		o(z)
	}
	z.srv = httptest.NewServer(z.routes())
	if tb != nil {
		tb.Cleanup(z.Close)
	}
	return z
}

// Close stops the server. It may be called more than once.
func (z *Zoom) Close() { z.closeOnce.Do(z.srv.Close) }

// OAuthURL is the base of /oauth/authorize and /oauth/token (ZOOM_OAUTH_URL).
func (z *Zoom) OAuthURL() string { return z.srv.URL }

// APIURL is the base of the REST API, ending in /v2 (ZOOM_API_URL).
func (z *Zoom) APIURL() string { return z.srv.URL + "/v2" }

// now is the fake clock. Callers hold z.mu.
func (z *Zoom) now() time.Time { return time.Now().Add(z.offset) }

// Advance moves the fake's clock forward: codes, access and refresh tokens
// expire as if d had passed.
func (z *Zoom) Advance(d time.Duration) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.offset += d
}

// AddUser adds or replaces a user and returns it with its defaults filled
// in. The first user added is signed in (see SignInAs).
func (z *Zoom) AddUser(u User) User {
	if u.ID == "" {
		panic("fakezoom: AddUser without ID")
	}
	if u.Email == "" {
		u.Email = u.ID + "@example.com"
	}
	if u.DisplayName == "" {
		u.DisplayName = strings.TrimSpace(u.FirstName + " " + u.LastName)
		if u.DisplayName == "" {
			u.DisplayName = u.ID
		}
	}
	if u.AccountID == "" {
		u.AccountID = DefaultAccountID
	}
	if u.Type == 0 {
		u.Type = 2
	}
	if u.PMI == 0 {
		u.PMI = randomMeetingNumber(10)
	}
	if u.Status == "" {
		u.Status = "active"
	}
	if u.Scopes == nil {
		u.Scopes = DefaultScopes
	}
	u.Scopes = append([]string(nil), u.Scopes...)
	z.mu.Lock()
	defer z.mu.Unlock()
	z.users[u.ID] = &u
	if z.current == "" {
		z.current = u.ID
	}
	return u
}

// SignInAs chooses the user that /oauth/authorize signs in as.
func (z *Zoom) SignInAs(userID string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.users[userID] == nil {
		panic("fakezoom: SignInAs unknown user " + userID)
	}
	z.current = userID
}

// SetScopes replaces the scopes a user granted the app. It takes effect at
// once, for tokens already issued too.
func (z *Zoom) SetScopes(userID string, scopes ...string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	u := z.users[userID]
	if u == nil {
		panic("fakezoom: SetScopes unknown user " + userID)
	}
	u.Scopes = append([]string{}, scopes...)
}

// Deny makes /oauth/authorize answer as if the user pressed Deny: a redirect
// with error=access_denied instead of a code.
func (z *Zoom) Deny(deny bool) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.deny = deny
}

// IssueTokens grants tokens to a user directly, as a completed code flow
// would (it is not counted as a token call).
func (z *Zoom) IssueTokens(userID string) Token {
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.users[userID] == nil {
		panic("fakezoom: IssueTokens unknown user " + userID)
	}
	return z.issue(userID)
}

// Revoke invalidates every code, access token and refresh token of a user,
// as when the user removes the app.
func (z *Zoom) Revoke(userID string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	for k, c := range z.codes {
		if c.userID == userID {
			delete(z.codes, k)
		}
	}
	for _, m := range []map[string]*grant{z.access, z.refresh} {
		for k, g := range m {
			if g.userID == userID {
				delete(m, k)
			}
		}
	}
}

// SetAccessTTL sets the life of access tokens issued from now on
// (default DefaultAccessTTL); expires_in says it in whole seconds.
func (z *Zoom) SetAccessTTL(d time.Duration) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.accessTTL = d
}

// ExpireAccessTokens makes every access token issued so far expired.
func (z *Zoom) ExpireAccessTokens() {
	z.mu.Lock()
	defer z.mu.Unlock()
	now := z.now()
	for _, g := range z.access {
		if g.expires.After(now) {
			g.expires = now
		}
	}
}

// FailToken makes the next n calls of /oauth/token (n == Always: every call
// until FailToken(0, 0)) answer status with a Zoom-shaped {"reason","error"}
// body, before any check; 429 carries Retry-After: 1. Status 0 clears.
func (z *Zoom) FailToken(status, n int) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.tokenFail = failure{status: status, left: n}
}

// FailAPI makes the next n REST calls of path (n == Always: every call until
// FailAPI(path, 0, 0)) answer status with a Zoom-shaped {"code","message"}
// body, before the access token is checked. path is relative to APIURL
// ("/users/me"; a leading "/v2" is ignored). 401 says "Invalid access
// token.", 429 carries Retry-After: 1. Status 0 clears.
func (z *Zoom) FailAPI(path string, status, n int) {
	z.mu.Lock()
	defer z.mu.Unlock()
	p := apiPath(path)
	if status == 0 {
		delete(z.apiFail, p)
		return
	}
	z.apiFail[p] = &failure{status: status, left: n}
}

// RateLimit makes the next n REST calls, whatever their path, answer 429
// with Retry-After: 1.
func (z *Zoom) RateLimit(n int) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.rateLimit = n
}

// AddMeeting adds a meeting, replacing any meeting with the same number (a
// new occurrence of a personal room or recurring meeting), and returns it
// with its defaults filled in.
func (z *Zoom) AddMeeting(m Meeting) Meeting {
	if m.HostID == "" {
		panic("fakezoom: AddMeeting without HostID")
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	now := z.now().UTC().Truncate(time.Second)
	if m.UUID == "" {
		m.UUID = base64.StdEncoding.EncodeToString(randomBytes(16))
	}
	if m.ID == 0 {
		m.ID = randomMeetingNumber(11)
	}
	if m.HostEmail == "" && z.users[m.HostID] != nil {
		m.HostEmail = z.users[m.HostID].Email
	}
	if m.Type == 0 {
		m.Type = 2
	}
	if m.Status == "" {
		m.Status = "waiting"
	}
	if m.StartTime.IsZero() {
		m.StartTime = now
	}
	if m.CreatedAt.IsZero() {
		m.CreatedAt = now
	}
	if m.Password != "" && m.EncryptedPassword == "" {
		m.EncryptedPassword = rand.Text()
	}
	if m.JoinURL == "" {
		m.JoinURL = fmt.Sprintf("https://zoom.us/j/%d", m.ID)
		if m.EncryptedPassword != "" {
			m.JoinURL += "?pwd=" + m.EncryptedPassword
		}
	}
	z.meetings[m.ID] = &m
	return m
}

// SetMeetingStatus sets a meeting's status: "waiting" or "started".
func (z *Zoom) SetMeetingStatus(id int64, status string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	m := z.meetings[id]
	if m == nil {
		panic(fmt.Sprintf("fakezoom: SetMeetingStatus unknown meeting %d", id))
	}
	m.Status = status
}

// DeleteMeeting removes a meeting: it no longer exists for the REST API.
func (z *Zoom) DeleteMeeting(id int64) {
	z.mu.Lock()
	defer z.mu.Unlock()
	delete(z.meetings, id)
}

// OBFToken tells whose on-behalf-of token token is, and for which meeting
// (0 when none was named), if the fake minted it.
func (z *Zoom) OBFToken(token string) (userID string, meetingID int64, ok bool) {
	z.mu.Lock()
	defer z.mu.Unlock()
	g, ok := z.obf[token]
	return g.userID, g.meetingID, ok
}

// TokenCalls counts calls of /oauth/token with this grant_type
// ("authorization_code", "refresh_token"); "" counts all calls.
func (z *Zoom) TokenCalls(grantType string) int {
	z.mu.Lock()
	defer z.mu.Unlock()
	if grantType == "" {
		n := 0
		for _, c := range z.tokenCalls {
			n += c
		}
		return n
	}
	return z.tokenCalls[grantType]
}

// APICalls counts REST calls of path, relative to APIURL ("/users/me",
// "/meetings/123"; a leading "/v2" is ignored), whatever their answer; ""
// counts all REST calls.
func (z *Zoom) APICalls(path string) int {
	z.mu.Lock()
	defer z.mu.Unlock()
	if path == "" {
		n := 0
		for _, c := range z.apiCalls {
			n += c
		}
		return n
	}
	return z.apiCalls[apiPath(path)]
}

// issue creates an access and a refresh token for a user. Callers hold z.mu.
func (z *Zoom) issue(userID string) Token {
	now := z.now()
	at, rt := "fzat_"+rand.Text(), "fzrt_"+rand.Text()
	z.access[at] = &grant{userID: userID, expires: now.Add(z.accessTTL)}
	z.refresh[rt] = &grant{userID: userID, expires: now.Add(RefreshTTL)}
	return Token{
		AccessToken:  at,
		TokenType:    "bearer",
		RefreshToken: rt,
		ExpiresIn:    int(z.accessTTL / time.Second),
		Scope:        strings.Join(z.users[userID].Scopes, " "),
		APIURL:       z.srv.URL,
	}
}

// apiPath is a REST path relative to the API base.
func apiPath(p string) string {
	p = strings.TrimPrefix(p, "/v2")
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	return p
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// randomMeetingNumber returns a random number of the given count of digits.
func randomMeetingNumber(digits int) int64 {
	lo := int64(1)
	for range digits - 1 {
		lo *= 10
	}
	return lo + mrand.Int64N(9*lo)
}
