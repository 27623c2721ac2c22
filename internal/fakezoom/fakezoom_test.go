package fakezoom_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"onair/internal/fakezoom"
)

const redirectURI = "http://onair.test/auth/zoom/callback"

// noRedirect is a client that returns redirects instead of following them.
var noRedirect = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Timeout:       5 * time.Second,
}

func newZoom(t *testing.T, opts ...fakezoom.Option) *fakezoom.Zoom {
	t.Helper()
	z := fakezoom.New(t, opts...)
	z.AddUser(fakezoom.User{ID: "u1", Email: "ada@example.com", FirstName: "Ada", LastName: "Lovelace"})
	return z
}

func pkce(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

const verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"

// authorize runs GET /oauth/authorize and returns the answer.
func authorize(t *testing.T, z *fakezoom.Zoom, q url.Values) (*http.Response, string) {
	t.Helper()
	resp, err := noRedirect.Get(z.OAuthURL() + "/oauth/authorize?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

func authorizeParams(z *fakezoom.Zoom) url.Values {
	return url.Values{
		"response_type":         {"code"},
		"client_id":             {z.ClientID},
		"redirect_uri":          {redirectURI},
		"state":                 {"st4te"},
		"code_challenge":        {pkce(verifier)},
		"code_challenge_method": {"S256"},
	}
}

// mustCode runs the authorize step and returns the code from the redirect.
func mustCode(t *testing.T, z *fakezoom.Zoom) string {
	t.Helper()
	resp, body := authorize(t, z, authorizeParams(z))
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: got %d %s, want 302", resp.StatusCode, body)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := loc.Scheme+"://"+loc.Host+loc.Path, redirectURI; got != want {
		t.Fatalf("redirect to %q, want %q", got, want)
	}
	if got := loc.Query().Get("state"); got != "st4te" {
		t.Fatalf("state: got %q, want st4te", got)
	}
	code := loc.Query().Get("code")
	if code == "" {
		t.Fatalf("no code in %s", loc)
	}
	return code
}

// answer is a status and a body without its trailing newline.
type answer struct {
	status int
	body   string
	header http.Header
}

// postToken calls /oauth/token with Basic client authentication (skipped
// when id is empty).
func postToken(t *testing.T, z *fakezoom.Zoom, id, secret string, form url.Values) answer {
	t.Helper()
	req, _ := http.NewRequest("POST", z.OAuthURL()+"/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if id != "" {
		req.SetBasicAuth(id, secret)
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, strings.TrimSpace(string(body)), resp.Header}
}

func token(t *testing.T, z *fakezoom.Zoom, form url.Values) answer {
	t.Helper()
	return postToken(t, z, z.ClientID, z.ClientSecret, form)
}

func exchange(code, verifier string) url.Values {
	return url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {redirectURI}, "code_verifier": {verifier}}
}

func refresh(rt string) url.Values {
	return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
}

func mustTokens(t *testing.T, a answer) fakezoom.Token {
	t.Helper()
	if a.status != http.StatusOK {
		t.Fatalf("token: got %d %s, want 200", a.status, a.body)
	}
	var tok fakezoom.Token
	if err := json.Unmarshal([]byte(a.body), &tok); err != nil {
		t.Fatal(err)
	}
	if tok.AccessToken == "" || tok.RefreshToken == "" || tok.TokenType != "bearer" || tok.ExpiresIn != 3599 {
		t.Fatalf("token answer %s", a.body)
	}
	return tok
}

func wantBody(t *testing.T, what string, a answer, status int, body string) {
	t.Helper()
	if a.status != status || a.body != body {
		t.Fatalf("%s: got %d %s, want %d %s", what, a.status, a.body, status, body)
	}
}

// get calls the REST API with a Bearer token.
func get(t *testing.T, z *fakezoom.Zoom, path, accessToken string) answer {
	t.Helper()
	req, _ := http.NewRequest("GET", z.APIURL()+path, nil)
	if accessToken != "" {
		req.Header.Set("Authorization", "Bearer "+accessToken)
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, strings.TrimSpace(string(body)), resp.Header}
}

func getJSON(t *testing.T, z *fakezoom.Zoom, path, accessToken string, v any) {
	t.Helper()
	a := get(t, z, path, accessToken)
	if a.status != http.StatusOK {
		t.Fatalf("GET %s: got %d %s, want 200", path, a.status, a.body)
	}
	if err := json.Unmarshal([]byte(a.body), v); err != nil {
		t.Fatal(err)
	}
}

const (
	invalidToken = `{"code":124,"message":"Invalid access token."}`
	expiredToken = `{"code":124,"message":"Access token is expired."}`
	invalidGrant = `{"reason":"Invalid Token!","error":"invalid_grant"}`
)

func TestCodeFlowWithPKCE(t *testing.T) {
	z := newZoom(t)
	code := mustCode(t, z)
	tok := mustTokens(t, token(t, z, exchange(code, verifier)))
	if tok.APIURL != z.OAuthURL() || !strings.Contains(tok.Scope, "user:read:user") {
		t.Fatalf("api_url %q scope %q", tok.APIURL, tok.Scope)
	}

	var me map[string]any
	getJSON(t, z, "/users/me", tok.AccessToken, &me)
	for k, want := range map[string]any{"id": "u1", "email": "ada@example.com", "first_name": "Ada",
		"last_name": "Lovelace", "display_name": "Ada Lovelace", "account_id": fakezoom.DefaultAccountID,
		"type": 2.0, "status": "active"} {
		if me[k] != want {
			t.Errorf("users/me %s: got %v, want %v", k, me[k], want)
		}
	}

	t.Run("CodeSingleUse", func(t *testing.T) {
		wantBody(t, "second exchange", token(t, z, exchange(code, verifier)), 400,
			`{"reason":"Invalid authorization code `+code+`","error":"invalid_grant"}`)
	})
	t.Run("WrongVerifier", func(t *testing.T) {
		code := mustCode(t, z)
		wantBody(t, "wrong verifier", token(t, z, exchange(code, verifier+"x")), 400,
			`{"reason":"Invalid authorization code `+code+`","error":"invalid_grant"}`)
		// The failed attempt used the code up.
		if a := token(t, z, exchange(code, verifier)); a.status != 400 {
			t.Fatalf("code after a failed exchange: got %d, want 400", a.status)
		}
	})
	t.Run("MissingVerifier", func(t *testing.T) {
		f := exchange(mustCode(t, z), "")
		if a := token(t, z, f); a.status != 400 || !strings.Contains(a.body, "invalid_grant") {
			t.Fatalf("got %d %s", a.status, a.body)
		}
	})
	t.Run("RedirectMismatch", func(t *testing.T) {
		f := exchange(mustCode(t, z), verifier)
		f.Set("redirect_uri", redirectURI+"/other")
		wantBody(t, "redirect mismatch", token(t, z, f), 400, `{"reason":"Redirect URI mismatch.","error":"invalid_grant"}`)
	})
	t.Run("CodeExpires", func(t *testing.T) {
		code := mustCode(t, z)
		z.Advance(fakezoom.CodeTTL + time.Second)
		if a := token(t, z, exchange(code, verifier)); a.status != 400 || !strings.Contains(a.body, "invalid_grant") {
			t.Fatalf("expired code: got %d %s", a.status, a.body)
		}
	})
	t.Run("PlainChallenge", func(t *testing.T) {
		q := authorizeParams(z)
		q.Set("code_challenge", "plain-verifier-plain-verifier-plain-verifier")
		q.Del("code_challenge_method")
		resp, _ := authorize(t, z, q)
		loc, _ := url.Parse(resp.Header.Get("Location"))
		mustTokens(t, token(t, z, exchange(loc.Query().Get("code"), "plain-verifier-plain-verifier-plain-verifier")))
	})
	if got, want := z.TokenCalls("authorization_code"), 8; got != want {
		t.Errorf("TokenCalls(authorization_code): got %d, want %d", got, want)
	}
}

func TestSignInAs(t *testing.T) {
	z := newZoom(t)
	z.AddUser(fakezoom.User{ID: "u2"})
	z.SignInAs("u2")
	tok := mustTokens(t, token(t, z, exchange(mustCode(t, z), verifier)))
	var me struct{ ID, Email, DisplayName string }
	getJSON(t, z, "/users/me", tok.AccessToken, &me)
	if me.ID != "u2" || me.Email != "u2@example.com" {
		t.Fatalf("users/me: %+v", me)
	}
}

func TestAuthorizeRefusesBadRequests(t *testing.T) {
	z := newZoom(t, fakezoom.WithRedirectURIs(redirectURI))
	for name, change := range map[string]func(url.Values){
		"UnknownClient":        func(q url.Values) { q.Set("client_id", "nope") },
		"NoResponseType":       func(q url.Values) { q.Del("response_type") },
		"NoRedirectURI":        func(q url.Values) { q.Del("redirect_uri") },
		"UnregisteredRedirect": func(q url.Values) { q.Set("redirect_uri", "http://evil.test/cb") },
		"BadChallengeMethod":   func(q url.Values) { q.Set("code_challenge_method", "S512") },
	} {
		t.Run(name, func(t *testing.T) {
			q := authorizeParams(z)
			change(q)
			resp, body := authorize(t, z, q)
			if resp.StatusCode != 400 || !strings.Contains(body, "Invalid") {
				t.Fatalf("got %d %q, want 400 with a reason", resp.StatusCode, body)
			}
		})
	}
}

func TestDeny(t *testing.T) {
	z := newZoom(t)
	z.Deny(true)
	resp, _ := authorize(t, z, authorizeParams(z))
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("got %d, want 302", resp.StatusCode)
	}
	loc, _ := url.Parse(resp.Header.Get("Location"))
	q := loc.Query()
	if q.Get("error") != "access_denied" || q.Get("error_description") == "" || q.Get("state") != "st4te" || q.Has("code") {
		t.Fatalf("deny redirect %s", loc)
	}
	z.Deny(false)
	mustCode(t, z)
}

func TestClientAuthentication(t *testing.T) {
	z := newZoom(t)
	code := mustCode(t, z)
	wantBody(t, "wrong secret", postToken(t, z, z.ClientID, "wrong", exchange(code, verifier)), 400, `{"reason":"Invalid client_id or client_secret","error":"invalid_client"}`)
	if a := postToken(t, z, "", "", exchange(code, verifier)); a.status != 400 || !strings.Contains(a.body, `"error":"invalid_client"`) {
		t.Fatalf("no client auth: got %d %s", a.status, a.body)
	}
	// Credentials in the body are accepted too; the code was not spent by
	// the refused calls.
	f := exchange(code, verifier)
	f.Set("client_id", z.ClientID)
	f.Set("client_secret", z.ClientSecret)
	mustTokens(t, postToken(t, z, "", "", f))

	wantBody(t, "unsupported grant", token(t, z, url.Values{"grant_type": {"password"}}), 400, `{"reason":"unsupported grant type","error":"unsupported_grant_type"}`)
}

func TestRefreshRotation(t *testing.T) {
	z := newZoom(t)
	first := z.IssueTokens("u1")
	second := mustTokens(t, token(t, z, refresh(first.RefreshToken)))
	if second.RefreshToken == first.RefreshToken || second.AccessToken == first.AccessToken {
		t.Fatal("refresh returned the same tokens")
	}
	wantBody(t, "reused refresh token", token(t, z, refresh(first.RefreshToken)), 400, invalidGrant)
	third := mustTokens(t, token(t, z, refresh(second.RefreshToken)))
	var me struct{ ID string }
	getJSON(t, z, "/users/me", third.AccessToken, &me)

	wantBody(t, "unknown refresh token", token(t, z, refresh("unknown")), 400, invalidGrant)
	if got := z.TokenCalls("refresh_token"); got != 4 {
		t.Errorf("TokenCalls(refresh_token): got %d, want 4", got)
	}

	t.Run("Expires", func(t *testing.T) {
		tok := z.IssueTokens("u1")
		z.Advance(fakezoom.RefreshTTL)
		wantBody(t, "expired refresh token", token(t, z, refresh(tok.RefreshToken)), 400, invalidGrant)
	})
}

func TestConcurrentRefreshOnlyOneWins(t *testing.T) {
	z := newZoom(t)
	rt := z.IssueTokens("u1").RefreshToken
	var wg sync.WaitGroup
	var ok atomic.Int32
	for range 8 {
		wg.Go(func() {
			req, _ := http.NewRequest("POST", z.OAuthURL()+"/oauth/token", strings.NewReader(refresh(rt).Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth(z.ClientID, z.ClientSecret)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode == 200 {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	if n := ok.Load(); n != 1 {
		t.Fatalf("%d refreshes succeeded with one refresh token, want 1", n)
	}
}

func TestRevoke(t *testing.T) {
	z := newZoom(t)
	tok := z.IssueTokens("u1")
	z.Revoke("u1")
	wantBody(t, "revoked access token", get(t, z, "/users/me", tok.AccessToken), 401, invalidToken)
	wantBody(t, "revoked refresh token", token(t, z, refresh(tok.RefreshToken)), 400, invalidGrant)
}

func TestAccessTokens(t *testing.T) {
	z := newZoom(t)
	wantBody(t, "no token", get(t, z, "/users/me", ""), 401, invalidToken)
	wantBody(t, "unknown token", get(t, z, "/users/me", "garbage"), 401, invalidToken)

	tok := z.IssueTokens("u1")
	z.ExpireAccessTokens()
	wantBody(t, "expired token", get(t, z, "/users/me", tok.AccessToken), 401, expiredToken)

	fresh := mustTokens(t, token(t, z, refresh(tok.RefreshToken)))
	var me struct{ ID string }
	getJSON(t, z, "/users/me", fresh.AccessToken, &me)

	z.SetAccessTTL(time.Minute)
	short := z.IssueTokens("u1")
	if short.ExpiresIn != 60 {
		t.Fatalf("expires_in: got %d, want 60", short.ExpiresIn)
	}
	z.Advance(time.Minute)
	wantBody(t, "token after its TTL", get(t, z, "/users/me", short.AccessToken), 401, expiredToken)
}

func TestFailToken(t *testing.T) {
	z := newZoom(t)
	rt := z.IssueTokens("u1").RefreshToken
	z.FailToken(500, 1)
	if a := token(t, z, refresh(rt)); a.status != 500 || !strings.Contains(a.body, `"error":"server_error"`) {
		t.Fatalf("forced failure: got %d %s", a.status, a.body)
	}
	// The forced failure did not spend the refresh token.
	rt = mustTokens(t, token(t, z, refresh(rt))).RefreshToken

	z.FailToken(503, fakezoom.Always)
	for range 3 {
		if a := token(t, z, refresh(rt)); a.status != 503 {
			t.Fatalf("Always: got %d, want 503", a.status)
		}
	}
	z.FailToken(0, 0)
	mustTokens(t, token(t, z, refresh(rt)))
}

func TestFailAPI(t *testing.T) {
	z := newZoom(t)
	at := z.IssueTokens("u1").AccessToken
	z.FailAPI("/users/me", 429, 1)
	if a := get(t, z, "/users/me", at); a.status != 429 || a.header.Get("Retry-After") != "1" || !strings.Contains(a.body, `"code":429`) {
		t.Fatalf("forced 429: got %d %q %s", a.status, a.header.Get("Retry-After"), a.body)
	}
	var me struct{ ID string }
	getJSON(t, z, "/users/me", at, &me)

	z.FailAPI("/v2/users/me", 401, fakezoom.Always)
	for range 2 {
		wantBody(t, "forced 401", get(t, z, "/users/me", at), 401, invalidToken)
	}
	z.FailAPI("/users/me", 500, fakezoom.Always)
	if a := get(t, z, "/users/me", at); a.status != 500 {
		t.Fatalf("forced 500: got %d", a.status)
	}
	z.FailAPI("/users/me", 0, 0)
	getJSON(t, z, "/users/me", at, &me)
	if got := z.APICalls("/users/me"); got != 6 {
		t.Errorf("APICalls(/users/me): got %d, want 6", got)
	}
}

func TestRateLimit(t *testing.T) {
	z := newZoom(t)
	at := z.IssueTokens("u1").AccessToken
	z.RateLimit(2)
	for _, path := range []string{"/users/me", "/users/me/meetings?type=live"} {
		if a := get(t, z, path, at); a.status != 429 || a.header.Get("Retry-After") != "1" {
			t.Fatalf("%s: got %d %s, want 429 with Retry-After: 1", path, a.status, a.body)
		}
	}
	var me struct{ ID string }
	getJSON(t, z, "/users/me", at, &me)
	if got := z.APICalls("/users/me"); got != 2 {
		t.Errorf("APICalls(/users/me): got %d, want 2", got)
	}
	if got := z.APICalls(""); got != 3 {
		t.Errorf("APICalls(): got %d, want 3", got)
	}
}

func TestScopes(t *testing.T) {
	z := newZoom(t)
	at := z.IssueTokens("u1").AccessToken
	z.SetScopes("u1", "meeting:read:meeting")
	wantBody(t, "users/me without scope", get(t, z, "/users/me", at), 400,
		`{"code":4711,"message":"Invalid access token, does not contain scopes:[user:read:user, user:read:user:admin]."}`)
	wantBody(t, "OBF without scope", get(t, z, "/users/me/token?type=onbehalf", at), 400,
		`{"code":4711,"message":"Invalid access token, does not contain scopes:[user:read:token, user:read:token:admin]."}`)
	z.SetScopes("u1", "user:read") // a classic scope works as well
	var me struct{ ID string }
	getJSON(t, z, "/users/me", at, &me)
}

func TestMeetings(t *testing.T) {
	z := newZoom(t)
	z.AddUser(fakezoom.User{ID: "u2", AccountID: "other-account"})
	at := z.IssueTokens("u1").AccessToken
	start := time.Date(2026, 3, 2, 15, 0, 0, 0, time.UTC)

	live := z.AddMeeting(fakezoom.Meeting{UUID: "/ab+cd==", ID: 98765432101, HostID: "u1", Topic: "Standup",
		Status: "started", StartTime: start, Duration: 30, Timezone: "Europe/Paris", Password: "123456"})
	z.AddMeeting(fakezoom.Meeting{HostID: "u1", Type: 1, Status: "started", StartTime: start}) // instant: never listed
	waiting := z.AddMeeting(fakezoom.Meeting{HostID: "u1", Topic: "Later", StartTime: start.Add(time.Hour)})
	other := z.AddMeeting(fakezoom.Meeting{HostID: "u2", Status: "started"})

	var m map[string]any
	getJSON(t, z, "/meetings/98765432101", at, &m)
	for k, want := range map[string]any{"uuid": "/ab+cd==", "id": 98765432101.0, "host_id": "u1",
		"host_email": "ada@example.com", "topic": "Standup", "type": 2.0, "status": "started",
		"start_time": "2026-03-02T15:00:00Z", "duration": 30.0, "timezone": "Europe/Paris",
		"password": "123456", "encrypted_password": live.EncryptedPassword,
		"join_url": "https://zoom.us/j/98765432101?pwd=" + live.EncryptedPassword} {
		if m[k] != want {
			t.Errorf("meeting %s: got %v, want %v", k, m[k], want)
		}
	}

	wantBody(t, "unknown meeting", get(t, z, "/meetings/123", at), 404, `{"code":3001,"message":"Meeting does not exist: 123."}`)
	id := strconv.FormatInt(other.ID, 10)
	wantBody(t, "another account's meeting", get(t, z, "/meetings/"+id, at), 404, `{"code":3001,"message":"Meeting does not exist: `+id+`."}`)

	type list struct {
		PageSize      int    `json:"page_size"`
		TotalRecords  int    `json:"total_records"`
		NextPageToken string `json:"next_page_token"`
		Meetings      []struct {
			UUID string
			ID   int64
		}
	}
	var l list
	getJSON(t, z, "/users/me/meetings?type=live", at, &l)
	if l.TotalRecords != 1 || len(l.Meetings) != 1 || l.Meetings[0].UUID != live.UUID || l.Meetings[0].ID != live.ID || l.NextPageToken != "" || l.PageSize != 30 {
		t.Fatalf("live meetings: %+v", l)
	}

	z.SetMeetingStatus(waiting.ID, "started")
	getJSON(t, z, "/users/u1/meetings?type=live&page_size=1", at, &l)
	if l.TotalRecords != 2 || len(l.Meetings) != 1 || l.Meetings[0].ID != live.ID || l.NextPageToken == "" {
		t.Fatalf("page 1: %+v", l)
	}
	getJSON(t, z, "/users/me/meetings?type=live&page_size=1&next_page_token="+l.NextPageToken, at, &l)
	if len(l.Meetings) != 1 || l.Meetings[0].ID != waiting.ID || l.NextPageToken != "" {
		t.Fatalf("page 2: %+v", l)
	}

	// A new occurrence under the same number replaces the old one.
	again := z.AddMeeting(fakezoom.Meeting{ID: live.ID, HostID: "u1", Status: "started"})
	getJSON(t, z, "/meetings/98765432101", at, &m)
	if m["uuid"] != again.UUID || again.UUID == live.UUID {
		t.Fatalf("new occurrence: uuid %v, want %s", m["uuid"], again.UUID)
	}
	z.DeleteMeeting(live.ID)
	if a := get(t, z, "/meetings/98765432101", at); a.status != 404 {
		t.Fatalf("deleted meeting: got %d, want 404", a.status)
	}

	wantBody(t, "another user's meetings", get(t, z, "/users/u2/meetings?type=live", at), 404, `{"code":1001,"message":"User does not exist: u2."}`)
}

func TestOnBehalfToken(t *testing.T) {
	z := newZoom(t)
	at := z.IssueTokens("u1").AccessToken
	m := z.AddMeeting(fakezoom.Meeting{HostID: "someone-elsewhere", Status: "started"})
	var got struct{ Token string }
	getJSON(t, z, "/users/me/token?type=onbehalf&meeting_id="+strconv.FormatInt(m.ID, 10), at, &got)
	user, meeting, ok := z.OBFToken(got.Token)
	if !ok || user != "u1" || meeting != m.ID {
		t.Fatalf("OBFToken(%q) = %q, %d, %v", got.Token, user, meeting, ok)
	}
	wantBody(t, "OBF for an unknown meeting", get(t, z, "/users/me/token?type=onbehalf&meeting_id=42", at), 404, `{"code":3001,"message":"Meeting does not exist: 42."}`)
	if _, _, ok := z.OBFToken("fzobf_made_up"); ok {
		t.Fatal("OBFToken accepted a token it never minted")
	}
}
