package web

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"onair/hub"
)

func dev(c *Config, _ *hub.Options) { c.Dev = true }

// request sends a request with the given headers (and body, when not nil)
// and returns the response with its body read.
func (e *testEnv) request(method, path string, body []byte, header http.Header) (*http.Response, []byte) {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, e.http.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// withCookie is a header carrying the session cookie (and Origin, if given).
func withCookie(session, origin string) http.Header {
	h := http.Header{"Cookie": {sessionCookie + "=" + session}}
	if origin != "" {
		h.Set("Origin", origin)
	}
	return h
}

// sessionCookieOf returns the session cookie a response set, or nil.
func sessionCookieOf(resp *http.Response) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == sessionCookie {
			return c
		}
	}
	return nil
}

// demoSignIn signs in as the demo user and returns the session id.
func (e *testEnv) demoSignIn() string {
	e.t.Helper()
	resp, _ := e.request(http.MethodPost, "/auth/demo", nil, http.Header{"Origin": {e.origin}})
	c := sessionCookieOf(resp)
	if resp.StatusCode != http.StatusSeeOther || c == nil {
		e.t.Fatalf("demo sign-in: %d, cookie %v", resp.StatusCode, c)
	}
	return c.Value
}

// connectCookie opens /ws with the session cookie and says hello without a token.
func (e *testEnv) connectCookie(session string) (*wsClient, frame) {
	e.t.Helper()
	c := e.dial(withCookie(session, e.origin))
	c.sendJSON(map[string]any{"type": "hello"})
	w := c.read()
	if w.Type != "welcome" {
		e.t.Fatalf("first frame: got %q, want welcome", w.Type)
	}
	return c, w
}

func TestDemoSignInSetsSessionCookie(t *testing.T) {
	e := newEnv(t, dev)
	resp, _ := e.request(http.MethodPost, "/auth/demo", nil, http.Header{"Origin": {e.origin}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("got %d to %q, want 303 to /", resp.StatusCode, resp.Header.Get("Location"))
	}
	c := sessionCookieOf(resp)
	if c == nil || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Secure || c.Path != "/" {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Lax, not Secure over http, Path /", c)
	}
	if len(c.Value) < 43 { // 256 bits in base64
		t.Fatalf("session id %d characters: too short for 256 bits", len(c.Value))
	}
	resp, b := e.request(http.MethodGet, "/api/v1/me", nil, withCookie(c.Value, ""))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"id":"demo-user"`) {
		t.Fatalf("/me with the cookie: %d %s", resp.StatusCode, b)
	}
	resp, b = e.request(http.MethodGet, "/", nil, withCookie(c.Value, ""))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "Demo User") {
		t.Fatalf("page with the cookie: %d, want the signed-in view naming Demo User", resp.StatusCode)
	}
	resp, b = e.request(http.MethodGet, "/", nil, nil)
	if resp.StatusCode != http.StatusOK || strings.Contains(string(b), "Demo User") || !strings.Contains(string(b), "/auth/demo") {
		t.Fatalf("page without a cookie: %d, want the signed-out view offering the demo user", resp.StatusCode)
	}
}

func TestSecureCookieOverHTTPS(t *testing.T) {
	e := newEnv(t, dev, func(c *Config, _ *hub.Options) { c.PublicURL, _ = url.Parse("https://onair.example") })
	resp, _ := e.request(http.MethodPost, "/auth/demo", nil, http.Header{"Origin": {e.origin}})
	if c := sessionCookieOf(resp); c == nil || !c.Secure {
		t.Fatalf("session cookie %+v: want Secure when the public URL is https", c)
	}
}

func TestDemoSignInOnlyInDevModeAndFromAllowedOrigin(t *testing.T) {
	prod := newEnv(t)
	if resp, _ := prod.request(http.MethodPost, "/auth/demo", nil, http.Header{"Origin": {prod.origin}}); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("demo sign-in outside dev mode: %d, want 404", resp.StatusCode)
	}
	e := newEnv(t, dev)
	for _, origin := range []string{"", "http://evil.example"} {
		h := http.Header{}
		if origin != "" {
			h.Set("Origin", origin)
		}
		resp, _ := e.request(http.MethodPost, "/auth/demo", nil, h)
		if resp.StatusCode != http.StatusForbidden || sessionCookieOf(resp) != nil {
			t.Fatalf("demo sign-in with Origin %q: %d, want 403 and no cookie", origin, resp.StatusCode)
		}
	}
}

func TestCookieWritesNeedAnAllowedOrigin(t *testing.T) {
	e := newEnv(t, dev)
	sess := e.demoSignIn()
	body := []byte(`{"auto_send_bot": true}`)
	for _, origin := range []string{"", "http://evil.example"} {
		resp, b := e.request(http.MethodPut, "/api/v1/me/settings", body, withCookie(sess, origin))
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("PUT settings by cookie with Origin %q: %d %s, want 403", origin, resp.StatusCode, b)
		}
	}
	if u, _ := e.store.User(t.Context(), "demo-user"); u.AutoSendBot {
		t.Fatal("a refused request changed the setting")
	}
	resp, b := e.request(http.MethodPut, "/api/v1/me/settings", body, withCookie(sess, e.origin))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"auto_send_bot":true`) {
		t.Fatalf("PUT settings from an allowed origin: %d %s", resp.StatusCode, b)
	}
	// Reads by cookie need no Origin; bearer writes are bound to no origin.
	if resp, _ := e.request(http.MethodGet, "/api/v1/me", nil, withCookie(sess, "")); resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /me by cookie without Origin: %d", resp.StatusCode)
	}
	resp, b = e.request(http.MethodPut, "/api/v1/me/settings", []byte(`{"auto_send_bot": false}`),
		http.Header{"Authorization": {"Bearer " + e.token("demo-user")}})
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"auto_send_bot":false`) {
		t.Fatalf("PUT settings by bearer: %d %s", resp.StatusCode, b)
	}
}

func TestSettingsRejectsBadBodies(t *testing.T) {
	e := newEnv(t)
	auth := http.Header{"Authorization": {"Bearer " + e.token("u1")}}
	for _, body := range []string{`{`, `{"auto_send_bot": "yes"}`, `[]`, ``, `null`, `{"auto_send_bot": null}`,
		`{"auto_send_bot": true} garbage`, `{"auto_send_bot": false}{"auto_send_bot": 1}`, `{"auto_send_bot": 1}`} {
		resp, b := e.request(http.MethodPut, "/api/v1/me/settings", []byte(body), auth)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), `"code"`) {
			t.Fatalf("body %q: %d %s, want 400 with an error", body, resp.StatusCode, b)
		}
	}
	if u, _ := e.store.User(t.Context(), "u1"); u.AutoSendBot {
		t.Fatal("a bad body changed the setting")
	}
	// JSON keys are case-sensitive: a differently cased key is an unknown
	// field, ignored whatever its type.
	for _, body := range []string{`{"Auto_Send_Bot": true}`, `{"AUTO_SEND_BOT": "x"}`, `{}`} {
		resp, b := e.request(http.MethodPut, "/api/v1/me/settings", []byte(body), auth)
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"auto_send_bot":false`) {
			t.Fatalf("body %s: %d %s, want 200 and no change", body, resp.StatusCode, b)
		}
	}
	resp, b := e.request(http.MethodPut, "/api/v1/me/settings", []byte(`{"auto_send_bot": true, "theme": "dark"}`), auth)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"auto_send_bot":true`) {
		t.Fatalf("unknown fields are ignored: %d %s", resp.StatusCode, b)
	}
	if resp, _ := e.request(http.MethodPut, "/api/v1/me/settings", []byte(`{"auto_send_bot": true}`), nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no credentials: %d, want 401", resp.StatusCode)
	}
}

func TestSocketBySessionCookie(t *testing.T) {
	e := newEnv(t, dev)
	sess := e.demoSignIn()
	c, w := e.connectCookie(sess)
	if w.User != "demo-user" || w.Resumed || w.Meetings == nil || w.Bots == nil {
		t.Fatalf("welcome %s", w.Raw)
	}
	e.mustPost(event{Name: "meeting.started", UUID: "m/1==", Host: "demo-user", Topic: "Standup"}.body(), 200)
	if f := c.read(); f.Type != "meeting.started" || f.Meeting.UUID != "m/1==" {
		t.Fatalf("frame %s", f.Raw)
	}

	// A token, when given, decides alone: a bad one fails whatever the cookie.
	bad := e.dial(withCookie(sess, e.origin))
	bad.sendJSON(map[string]any{"type": "hello", "token": "not-a-token"})
	bad.expectClose(closeUnauthorized)
	// No cookie and no token.
	none := e.dial(nil)
	none.sendJSON(map[string]any{"type": "hello"})
	none.expectClose(closeUnauthorized)
	// A cookie of an ended or unknown session.
	unknown := e.dial(withCookie("bm90LWEtc2Vzc2lvbg", e.origin))
	unknown.sendJSON(map[string]any{"type": "hello"})
	unknown.expectClose(closeUnauthorized)
}

func TestLogoutEndsThatSessionAndClosesItsSockets(t *testing.T) {
	e := newEnv(t, dev)
	a, b := e.demoSignIn(), e.demoSignIn()
	sockA, _ := e.connectCookie(a)
	sockB, _ := e.connectCookie(b)
	sockTok, _ := e.connect("demo-user", nil)

	// Logout is state-changing: a foreign origin changes nothing.
	if resp, _ := e.request(http.MethodPost, "/auth/logout", nil, withCookie(a, "http://evil.example")); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("logout from a foreign origin: %d, want 403", resp.StatusCode)
	}
	resp, _ := e.request(http.MethodPost, "/auth/logout", nil, withCookie(a, e.origin))
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("logout: %d to %q, want 303 to /", resp.StatusCode, resp.Header.Get("Location"))
	}
	if c := sessionCookieOf(resp); c == nil || c.MaxAge >= 0 {
		t.Fatalf("logout must clear the cookie, got %+v", c)
	}
	sockA.expectClose(closeUnauthorized)
	if resp, _ := e.request(http.MethodGet, "/api/v1/me", nil, withCookie(a, "")); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the ended session still works: %d", resp.StatusCode)
	}
	// The other session and the token socket stay.
	e.mustPost(event{Name: "meeting.started", UUID: "after-logout", Host: "demo-user"}.body(), 200)
	for _, c := range []*wsClient{sockB, sockTok} {
		if f := c.read(); f.Type != "meeting.started" {
			t.Fatalf("frame %s", f.Raw)
		}
	}
	if resp, _ := e.request(http.MethodGet, "/api/v1/me", nil, withCookie(b, "")); resp.StatusCode != http.StatusOK {
		t.Fatalf("the other session: %d", resp.StatusCode)
	}
	if got := e.metric(`onair_ws_disconnects_total{reason="logout"}`); got != 1 {
		t.Fatalf("logout disconnects: %v, want 1", got)
	}
}

func TestSessionExpiresAndSlides(t *testing.T) {
	clock := &fakeClock{now: time.Now()}
	e := newEnv(t, dev, func(c *Config, _ *hub.Options) { c.Now, c.SessionTTL = clock.Now, 4*time.Hour })
	sess := e.demoSignIn()
	// Within the first hour a use does not renew (no write per request).
	clock.Add(30 * time.Minute)
	if resp, _ := e.request(http.MethodGet, "/api/v1/me", nil, withCookie(sess, "")); resp.StatusCode != 200 || sessionCookieOf(resp) != nil {
		t.Fatalf("early use: %d, cookie %v; want 200 and no renewal", resp.StatusCode, sessionCookieOf(resp))
	}
	// Later, a use renews: the session outlives its first expiry.
	clock.Add(3 * time.Hour)
	resp, _ := e.request(http.MethodGet, "/api/v1/me", nil, withCookie(sess, ""))
	if resp.StatusCode != 200 || sessionCookieOf(resp) == nil {
		t.Fatalf("later use: %d, want 200 and a renewed cookie", resp.StatusCode)
	}
	clock.Add(2 * time.Hour) // past the first expiry, within the renewed one
	if resp, _ := e.request(http.MethodGet, "/api/v1/me", nil, withCookie(sess, "")); resp.StatusCode != 200 {
		t.Fatalf("after renewal: %d, want 200", resp.StatusCode)
	}
	clock.Add(5 * time.Hour) // unused for longer than its lifetime
	if resp, _ := e.request(http.MethodGet, "/api/v1/me", nil, withCookie(sess, "")); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("expired session: %d, want 401", resp.StatusCode)
	}
}

func TestPageAndAssets(t *testing.T) {
	e := newEnv(t)
	resp, b := e.request(http.MethodGet, "/", nil, nil)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || resp.Header.Get("Content-Security-Policy") == "" {
		t.Fatalf("page: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if strings.Contains(string(b), "/auth/demo") || strings.Contains(string(b), "/auth/zoom/login") {
		t.Fatal("without dev mode or Zoom sign-in, the page must offer neither")
	}
	for path, ctype := range map[string]string{"/onair.js": "javascript", "/app.js": "javascript", "/style.css": "text/css", "/onair.d.ts": "typescript"} {
		resp, b := e.request(http.MethodGet, path, nil, nil)
		if resp.StatusCode != 200 || len(b) == 0 || !strings.Contains(resp.Header.Get("Content-Type"), ctype) {
			t.Fatalf("%s: %d %q (%d bytes)", path, resp.StatusCode, resp.Header.Get("Content-Type"), len(b))
		}
	}
	if resp, _ := e.request(http.MethodGet, "/auth/zoom/login", nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("/auth/zoom/login without Zoom sign-in configured: %d, want 404", resp.StatusCode)
	}
	for _, path := range []string{"/nope.js", "/index.html", "/static/index.html"} {
		if resp, _ := e.request(http.MethodGet, path, nil, nil); resp.StatusCode != http.StatusNotFound {
			t.Fatalf("%s: %d, want 404 (the template source is not served)", path, resp.StatusCode)
		}
	}
}

func TestSimulateGoesThroughTheWebhookPath(t *testing.T) {
	e := newEnv(t, dev)
	sess := e.demoSignIn()
	c, _ := e.connectCookie(sess)
	before := e.metric(`onair_webhooks_total{event="meeting.started",outcome="accepted"}`)
	resp, b := e.request(http.MethodPost, "/api/v1/dev/simulate", []byte(`{"event":"started","topic":"Planning"}`), withCookie(sess, e.origin))
	var out struct{ Outcome, Meeting string }
	json.Unmarshal(b, &out)
	if resp.StatusCode != 200 || out.Outcome != "accepted" || out.Meeting == "" {
		t.Fatalf("simulate started: %d %s", resp.StatusCode, b)
	}
	if got := e.metric(`onair_webhooks_total{event="meeting.started",outcome="accepted"}`); got != before+1 {
		t.Fatalf("the simulated start was not a verified webhook: accepted %v -> %v", before, got)
	}
	if f := c.read(); f.Type != "meeting.started" || f.Meeting.UUID != out.Meeting || f.Meeting.Topic != "Planning" {
		t.Fatalf("frame %s", f.Raw)
	}
	resp, b = e.request(http.MethodPost, "/api/v1/dev/simulate", []byte(`{"event":"ended","meeting":"`+out.Meeting+`"}`), withCookie(sess, e.origin))
	if resp.StatusCode != 200 {
		t.Fatalf("simulate ended: %d %s", resp.StatusCode, b)
	}
	if f := c.read(); f.Type != "meeting.ended" || f.Meeting.UUID != out.Meeting {
		t.Fatalf("frame %s", f.Raw)
	}
	for body, want := range map[string]int{
		`{"event":"ended","meeting":"not-live"}`: http.StatusNotFound,
		`{"event":"exploded"}`:                   http.StatusBadRequest,
		`{`:                                      http.StatusBadRequest,
	} {
		if resp, b := e.request(http.MethodPost, "/api/v1/dev/simulate", []byte(body), withCookie(sess, e.origin)); resp.StatusCode != want {
			t.Fatalf("simulate %s: %d %s, want %d", body, resp.StatusCode, b, want)
		}
	}
	if resp, _ := newEnv(t).request(http.MethodPost, "/api/v1/dev/simulate", []byte(`{"event":"started"}`), nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("simulate outside dev mode: %d, want 404", resp.StatusCode)
	}
}

// A logout between a socket's handshake and its hello leaves no socket of
// that session behind.
func TestLogoutBeforeHelloClosesTheSocket(t *testing.T) {
	e := newEnv(t, dev)
	sess := e.demoSignIn()
	c := e.dial(withCookie(sess, e.origin)) // the handshake has seen the session
	if resp, _ := e.request(http.MethodPost, "/auth/logout", nil, withCookie(sess, e.origin)); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	c.sendJSON(map[string]any{"type": "hello"})
	c.expectClose(closeUnauthorized)
}

// A socket renews its session like any request, and lasts no longer than it.
func TestSocketRenewsAndEndsWithItsSession(t *testing.T) {
	clock := &fakeClock{now: time.Now()}
	e := newEnv(t, dev, func(c *Config, _ *hub.Options) {
		c.Now, c.SessionTTL, c.PingInterval = clock.Now, 4*time.Hour, time.Second
	})
	sess := e.demoSignIn()
	clock.Add(2 * time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, e.wsURL(), &websocket.DialOptions{HTTPHeader: withCookie(sess, e.origin)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	if c := sessionCookieOf(resp); c == nil || c.Value != sess {
		t.Fatalf("the 101 carries no renewed session cookie: %v", resp.Header["Set-Cookie"])
	}
	c := &wsClient{t: t, conn: conn}
	c.sendJSON(map[string]any{"type": "hello"})
	if w := c.read(); w.Type != "welcome" {
		t.Fatalf("first frame %s", w.Raw)
	}
	clock.Add(5 * time.Hour) // past the renewed expiry
	c.expectClose(closeUnauthorized)
}

// Signing in again in the same browser ends the session it had.
func TestSignInAgainEndsThePreviousSession(t *testing.T) {
	e := newEnv(t, dev)
	first := e.demoSignIn()
	sock, _ := e.connectCookie(first)
	h := withCookie(first, e.origin)
	resp, _ := e.request(http.MethodPost, "/auth/demo", nil, h)
	second := sessionCookieOf(resp)
	if second == nil || second.Value == first {
		t.Fatalf("second sign-in: %d, cookie %v", resp.StatusCode, second)
	}
	sock.expectClose(closeUnauthorized)
	if resp, _ := e.request(http.MethodGet, "/api/v1/me", nil, withCookie(first, "")); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the first session after signing in again: %d, want 401", resp.StatusCode)
	}
}

// The reconciler hears of a user's first tab once, whatever the number of
// tabs that connect together, and after the welcome.
func TestOnFirstTab(t *testing.T) {
	var mu sync.Mutex
	var calls []string
	e := newEnv(t, func(c *Config, _ *hub.Options) {
		c.OnFirstTab = func(user string) { mu.Lock(); calls = append(calls, user); mu.Unlock() }
	})
	var wg sync.WaitGroup
	tabs := make([]*wsClient, 8)
	for i := range tabs {
		wg.Go(func() { tabs[i], _ = e.connect("u1", nil) })
	}
	wg.Wait()
	e.connect("u2", nil)
	// The hook runs after the welcome is written: the client may read the
	// welcome first.
	var got []string
	for deadline := time.Now().Add(2 * time.Second); ; {
		mu.Lock()
		got = slices.Clone(calls)
		mu.Unlock()
		if len(got) >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // and no third call comes late
	mu.Lock()
	got = slices.Clone(calls)
	mu.Unlock()
	slices.Sort(got)
	if !slices.Equal(got, []string{"u1", "u2"}) {
		t.Fatalf("first-tab calls %v, want one for u1 and one for u2", got)
	}
}
