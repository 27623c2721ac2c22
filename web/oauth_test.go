package web

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"onair/hub"
	"onair/internal/fakezoom"
	"onair/internal/testpg"
	"onair/store"
	"onair/zoom"
)

// zoomEnv is onair with Zoom sign-in against the fake Zoom.
func zoomEnv(t *testing.T, fz *fakezoom.Zoom, opts ...func(*Config, *hub.Options)) *testEnv {
	t.Helper()
	withZoom := func(c *Config, _ *hub.Options) {
		c.Zoom = &zoom.Client{ClientID: fz.ClientID, ClientSecret: fz.ClientSecret, OAuthURL: fz.OAuthURL(), APIURL: fz.APIURL(), Now: c.Now}
	}
	return newEnv(t, append(opts, withZoom)...)
}

// signInStep is where a browser went: its status, Location and cookies.
type signInStep struct {
	status   int
	location string
	cookies  []*http.Cookie
	body     string
}

func get(t *testing.T, rawURL string, cookies ...*http.Cookie) signInStep {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, rawURL, nil)
	for _, c := range cookies {
		req.AddCookie(c)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return signInStep{resp.StatusCode, resp.Header.Get("Location"), resp.Cookies(), b.String()}
}

func cookieNamed(cs []*http.Cookie, name string) *http.Cookie {
	for _, c := range cs {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// zoomSignIn runs the browser's part of the code flow up to the callback
// and returns the callback's answer.
func (e *testEnv) zoomSignIn(t *testing.T) signInStep {
	t.Helper()
	login := get(t, e.http.URL+"/auth/zoom/login")
	oc := cookieNamed(login.cookies, oauthCookie)
	if login.status != http.StatusFound || oc == nil {
		t.Fatalf("login: %d, oauth cookie %v", login.status, oc)
	}
	authorize := get(t, login.location)
	if authorize.status != http.StatusFound {
		t.Fatalf("fake authorize: %d %s", authorize.status, authorize.body)
	}
	return get(t, authorize.location, oc)
}

func TestZoomSignIn(t *testing.T) {
	fz := fakezoom.New(t)
	fz.AddUser(fakezoom.User{ID: "zu-ada", Email: "ada@example.com", FirstName: "Ada", LastName: "Lovelace", DisplayName: "Ada L."})
	e := zoomEnv(t, fz)

	login := get(t, e.http.URL+"/auth/zoom/login")
	u, err := url.Parse(login.location)
	if err != nil || !strings.HasPrefix(login.location, fz.OAuthURL()+"/oauth/authorize?") {
		t.Fatalf("login redirects to %q", login.location)
	}
	q := u.Query()
	if q.Get("response_type") != "code" || q.Get("client_id") != fz.ClientID || q.Get("redirect_uri") != e.http.URL+"/auth/zoom/callback" ||
		q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43 || len(q.Get("state")) < 22 {
		t.Fatalf("authorize parameters %v", q)
	}
	oc := cookieNamed(login.cookies, oauthCookie)
	if oc == nil || !oc.HttpOnly || oc.SameSite != http.SameSiteLaxMode || oc.MaxAge <= 0 || oc.MaxAge > 900 {
		t.Fatalf("oauth cookie %+v: want a short-lived HttpOnly, SameSite=Lax cookie", oc)
	}

	cb := e.zoomSignIn(t)
	sess := cookieNamed(cb.cookies, sessionCookie)
	if cb.status != http.StatusFound || cb.location != "/" || sess == nil {
		t.Fatalf("callback: %d to %q, session cookie %v: %s", cb.status, cb.location, sess, cb.body)
	}
	resp, b := e.request(http.MethodGet, "/api/v1/me", nil, withCookie(sess.Value, ""))
	if resp.StatusCode != 200 || string(b) != `{"user":{"id":"zu-ada","email":"ada@example.com","name":"Ada L.","auto_send_bot":false}}`+"\n" {
		t.Fatalf("/me after sign-in: %d %s", resp.StatusCode, b)
	}
	tok, err := e.store.ZoomToken(t.Context(), "zu-ada")
	if err != nil || tok.Access == "" || tok.Refresh == "" || time.Until(tok.Expiry) < 50*time.Minute {
		t.Fatalf("stored Zoom token %+v, %v", tok, err)
	}
	if fz.TokenCalls("authorization_code") != 1 || fz.APICalls("/users/me") != 1 {
		t.Fatalf("calls to Zoom: %d exchanges, %d /users/me", fz.TokenCalls("authorization_code"), fz.APICalls("/users/me"))
	}
	// The state is single use: replaying the callback fails.
	if again := get(t, e.http.URL+"/auth/zoom/callback?code=x&state=y"); again.status != http.StatusBadRequest {
		t.Fatalf("callback without the oauth cookie: %d", again.status)
	}
}

// Every failure of the sign-in lands on the page with a reason and creates
// no session.
func TestZoomSignInFailures(t *testing.T) {
	cases := []struct {
		name   string
		setup  func(*fakezoom.Zoom)
		status int
		says   string
	}{
		{"user denies", func(fz *fakezoom.Zoom) { fz.Deny(true) }, http.StatusForbidden, "cancelled"},
		{"token endpoint 500", func(fz *fakezoom.Zoom) { fz.FailToken(http.StatusInternalServerError, 1) }, http.StatusBadGateway, "server error"},
		{"users/me 401", func(fz *fakezoom.Zoom) { fz.FailAPI("/users/me", http.StatusUnauthorized, 1) }, http.StatusBadGateway, "rejected the access token"},
		{"wrong client secret", func(fz *fakezoom.Zoom) { fz.ClientSecret = "wrong" }, http.StatusBadGateway, "did not complete the sign-in"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fz := fakezoom.New(t)
			fz.AddUser(fakezoom.User{ID: "zu-1", Email: "one@example.com"})
			e := zoomEnv(t, fz)
			tc.setup(fz)
			cb := e.zoomSignIn(t)
			if cb.status != tc.status || !strings.Contains(cb.body, tc.says) || cookieNamed(cb.cookies, sessionCookie) != nil {
				t.Fatalf("callback: %d, want %d with %q and no session; body:\n%s", cb.status, tc.status, tc.says, cb.body)
			}
			wantNoSession(t, e)
		})
	}
}

func TestZoomCallbackChecksState(t *testing.T) {
	fz := fakezoom.New(t)
	fz.AddUser(fakezoom.User{ID: "zu-1"})
	e := zoomEnv(t, fz)
	login := get(t, e.http.URL+"/auth/zoom/login")
	oc := cookieNamed(login.cookies, oauthCookie)
	authorize := get(t, login.location)
	u, _ := url.Parse(authorize.location)
	q := u.Query()
	code := q.Get("code")

	// A state that is not this browser's (login CSRF), and no oauth cookie at all.
	forged := get(t, e.http.URL+"/auth/zoom/callback?code="+url.QueryEscape(code)+"&state=forged", oc)
	if forged.status != http.StatusBadRequest || !strings.Contains(forged.body, "does not match") || cookieNamed(forged.cookies, sessionCookie) != nil {
		t.Fatalf("forged state: %d\n%s", forged.status, forged.body)
	}
	bare := get(t, authorize.location)
	if bare.status != http.StatusBadRequest || !strings.Contains(bare.body, "expired") {
		t.Fatalf("no oauth cookie: %d\n%s", bare.status, bare.body)
	}
	if fz.TokenCalls("authorization_code") != 0 {
		t.Fatal("a callback with a bad state must not exchange the code")
	}
	// The error parameter is anyone's to write: it never reaches the page.
	for _, v := range []string{"%3Cscript%3Ealert(1)%3C/script%3E", "Call+us+at+555-0100"} {
		got := get(t, e.http.URL+"/auth/zoom/callback?error="+v+"&state=x", oc)
		if got.status != http.StatusForbidden || strings.Contains(got.body, "alert(1)") || strings.Contains(got.body, "555-0100") {
			t.Fatalf("error=%s: %d, and the page repeats it", v, got.status)
		}
	}
	wantNoSession(t, e)
}

func wantNoSession(t *testing.T, e *testEnv) {
	t.Helper()
	var n int
	if err := whDB(t, e).QueryRow(`SELECT COUNT(*) FROM sessions`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("sessions: %d (%v), want none", n, err)
	}
}

func TestZoomTokenRefreshIsSingleFlightAndRotates(t *testing.T) {
	fz := fakezoom.New(t)
	fz.AddUser(fakezoom.User{ID: "zu-1"})
	clock := &fakeClock{now: time.Now()}
	e := zoomEnv(t, fz, func(c *Config, _ *hub.Options) { c.Now = clock.Now })
	e.zoomSignIn(t)
	first, _ := e.store.ZoomToken(t.Context(), "zu-1")

	// Valid: no refresh.
	if got, err := e.srv.ZoomAccess(t.Context(), "zu-1"); err != nil || got != first.Access {
		t.Fatalf("ZoomAccess: %q, %v", got, err)
	}
	for round := 1; round <= 2; round++ {
		clock.Add(2 * time.Hour)
		fz.Advance(2 * time.Hour)
		var wg sync.WaitGroup
		got := make([]string, 20)
		errs := make([]error, 20)
		for i := range got {
			wg.Go(func() { got[i], errs[i] = e.srv.ZoomAccess(context.Background(), "zu-1") })
		}
		wg.Wait()
		for i := range got {
			if errs[i] != nil || got[i] != got[0] || got[i] == first.Access {
				t.Fatalf("round %d caller %d: %q, %v (all %q, first %q)", round, i, got[i], errs[i], got, first.Access)
			}
		}
		if n := fz.TokenCalls("refresh_token"); n != round {
			t.Fatalf("round %d: %d refreshes, want one per expiry whatever the callers", round, n)
		}
		// The rotated refresh token was saved: the next round's refresh
		// only works with it (the fake refuses a used one).
		saved, _ := e.store.ZoomToken(t.Context(), "zu-1")
		if saved.Access != got[0] || saved.Refresh == first.Refresh {
			t.Fatalf("round %d: saved token %+v", round, saved)
		}
		first = saved
	}
}

// Two nodes refreshing one user's expired grant at once: Zoom kills a
// refresh token when it hands out the next, so a second refresh with the
// old one would fail and sign the user out. One refresh per expiry, across
// the nodes.
func TestZoomTokenRefreshIsOnceAcrossNodes(t *testing.T) {
	url := testpg.URL(t)
	fz := fakezoom.New(t)
	fz.AddUser(fakezoom.User{ID: "zu-1"})
	clock := &fakeClock{now: time.Now()}
	withZoom := func(c *Config, _ *hub.Options) {
		c.Now = clock.Now
		c.Zoom = &zoom.Client{ClientID: fz.ClientID, ClientSecret: fz.ClientSecret, OAuthURL: fz.OAuthURL(), APIURL: fz.APIURL(), Now: c.Now}
	}
	a, b := newEnvOn(t, url, withZoom), newEnvOn(t, url, withZoom)
	a.zoomSignIn(t)
	for round := 1; round <= 2; round++ {
		clock.Add(2 * time.Hour)
		fz.Advance(2 * time.Hour)
		var wg sync.WaitGroup
		got := make([]string, 20)
		errs := make([]error, 20)
		for i := range got {
			node := a
			if i%2 == 1 {
				node = b
			}
			wg.Go(func() { got[i], errs[i] = node.srv.ZoomAccess(context.Background(), "zu-1") })
		}
		wg.Wait()
		for i := range got {
			if errs[i] != nil || got[i] != got[0] {
				t.Fatalf("round %d caller %d: %q, %v (all %q)", round, i, got[i], errs[i], got)
			}
		}
		if n := fz.TokenCalls("refresh_token"); n != round {
			t.Fatalf("round %d: %d refreshes, want one per expiry across the nodes", round, n)
		}
	}
}

func TestRevokedGrantSendsTheUserBackToSignIn(t *testing.T) {
	fz := fakezoom.New(t)
	fz.AddUser(fakezoom.User{ID: "zu-1"})
	clock := &fakeClock{now: time.Now()}
	e := zoomEnv(t, fz, func(c *Config, _ *hub.Options) { c.Now = clock.Now })
	sess := cookieNamed(e.zoomSignIn(t).cookies, sessionCookie)
	tab, _ := e.connectCookie(sess.Value)
	hostApp, _ := e.connect("zu-1", nil)

	fz.Revoke("zu-1")
	clock.Add(2 * time.Hour)
	if _, err := e.srv.ZoomAccess(t.Context(), "zu-1"); !errors.Is(err, ErrSignInAgain) {
		t.Fatalf("ZoomAccess with a revoked grant: %v, want ErrSignInAgain", err)
	}
	tab.expectClose(closeUnauthorized)
	if resp, _ := e.request(http.MethodGet, "/api/v1/me", nil, withCookie(sess.Value, "")); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("session after invalid_grant: %d, want 401", resp.StatusCode)
	}
	if _, err := e.store.ZoomToken(t.Context(), "zu-1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the dead grant is kept: %v", err)
	}
	// A host app's token connection is not the Zoom grant's.
	body := event{Name: "meeting.started", UUID: "m1", Host: "zu-1"}.body()
	ts := strconv.FormatInt(clock.Now().Unix(), 10)
	if resp := e.postWith(body, ts, zoom.Sign(e.secret, ts, body)); resp.StatusCode != 200 {
		t.Fatalf("webhook: %d", resp.StatusCode)
	}
	if f := hostApp.read(); f.Type != "meeting.started" {
		t.Fatalf("host app frame %s", f.Raw)
	}
}

// In dev mode the page may be open on 127.0.0.1 while the public URL says
// localhost: the sign-in moves to the public host before the state cookie
// is set, because that is where Zoom sends the browser back.
func TestZoomLoginMovesToThePublicHostInDevMode(t *testing.T) {
	fz := fakezoom.New(t)
	e := zoomEnv(t, fz, dev)
	other := strings.Replace(e.http.URL, "127.0.0.1", "localhost", 1)
	step := get(t, other+"/auth/zoom/login")
	if step.status != http.StatusFound || step.location != e.http.URL+"/auth/zoom/login" || cookieNamed(step.cookies, oauthCookie) != nil {
		t.Fatalf("login on another host: %d to %q (cookies %v), want 302 to the public URL and no cookie", step.status, step.location, step.cookies)
	}
	if step := get(t, e.http.URL+"/auth/zoom/login"); step.status != http.StatusFound || !strings.HasPrefix(step.location, fz.OAuthURL()) {
		t.Fatalf("login on the public host: %d to %q", step.status, step.location)
	}
}

// Zoom's refusal of a code quotes the code: the log keeps only the status
// and the error code, and the page says what happened in its own words.
func TestSignInFailureLogsNoCode(t *testing.T) {
	fz := fakezoom.New(t)
	fz.AddUser(fakezoom.User{ID: "zu-1"})
	var logs bytes.Buffer
	var mu sync.Mutex
	e := zoomEnv(t, fz, func(c *Config, _ *hub.Options) {
		c.Logger = slog.New(slog.NewJSONHandler(lockedWriter{&mu, &logs}, nil))
	})
	login := get(t, e.http.URL+"/auth/zoom/login")
	oc := cookieNamed(login.cookies, oauthCookie)
	authorize := get(t, login.location)
	u, _ := url.Parse(authorize.location)
	code := u.Query().Get("code")
	if first := get(t, authorize.location, oc); first.status != http.StatusFound {
		t.Fatalf("first callback: %d", first.status)
	}
	// The same code again, with the same browser state: Zoom refuses it.
	again := get(t, authorize.location, oc)
	if again.status != http.StatusBadGateway || strings.Contains(again.body, code) {
		t.Fatalf("replayed code: %d, body has the code: %v", again.status, strings.Contains(again.body, code))
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), `"zoom_error":"invalid_grant"`) || strings.Contains(logs.String(), code) {
		t.Fatalf("logs must name the error and not the code:\n%s", logs.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Every call to Zoom through the metrics' transport is counted by status class.
func TestZoomCallsAreCounted(t *testing.T) {
	fz := fakezoom.New(t)
	fz.AddUser(fakezoom.User{ID: "zu-1"})
	var m *Metrics
	e := zoomEnv(t, fz)
	m = e.srv.metrics
	e.srv.cfg.Zoom.HTTP = &http.Client{Transport: m.ZoomTransport(nil)}
	fz.FailAPI("/users/me", http.StatusTooManyRequests, 1)
	e.zoomSignIn(t) // token 2xx, /users/me 429
	e.zoomSignIn(t) // token 2xx, /users/me 2xx
	for series, want := range map[string]float64{
		`onair_zoom_api_calls_total{status="2xx"}`: 3,
		`onair_zoom_api_calls_total{status="429"}`: 1,
		`onair_zoom_api_calls_total{status="5xx"}`: 0,
	} {
		if got := e.metric(series); got != want {
			t.Fatalf("%s: %v, want %v", series, got, want)
		}
	}
}
