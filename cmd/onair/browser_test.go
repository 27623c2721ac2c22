package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"onair/internal/fakezoom"
	"onair/zoom"
)

// The browser tests drive Debian's headless Chromium against the real
// binary and the fake Zoom. Outside CI a machine without Chromium skips
// them (saying so); under CI (CI=true) that is a failure.

// chromiumPath finds the browser.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed (apt-get install chromium): the browser tests cannot run")
	}
	t.Skip("chromium is not installed (apt-get install chromium): skipping the browser tests")
	return ""
}

// newBrowser starts a headless Chromium with a fresh profile that reaches
// only loopback, and returns the context of its first tab.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1200, 900),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// sameSession starts another browser signed in with from's session: a
// second tab of the same signed-in browser, as far as onair can tell.
// (chromedp cannot evaluate scripts in a second tab of one browser here:
// Runtime.evaluate never answers, so each tab gets its own browser.)
func sameSession(t *testing.T, from context.Context, base string) context.Context {
	t.Helper()
	var session *network.Cookie
	err := chromedp.Do(from, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		r, err := cdp.Call(ctx, tg, network.GetCookies, network.GetCookiesParams{URLs: []string{base + "/"}})
		if err != nil {
			return err
		}
		for _, c := range r.Cookies {
			if c.Name == "onair_session" {
				session = c
			}
		}
		return nil
	}))
	if err != nil || session == nil {
		t.Fatalf("read the session cookie: %v", err)
	}
	other := newBrowser(t)
	err = chromedp.Do(other, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, network.SetCookie, network.SetCookieParams{
			Name: session.Name, Value: session.Value, URL: base + "/", HTTPOnly: ptr(true), SameSite: network.CookieSameSiteLax,
		})
		return err
	}))
	if err != nil {
		t.Fatalf("set the session cookie: %v", err)
	}
	return other
}

func ptr[T any](v T) *T { return &v }

// setOnline turns the browser's network state (navigator.onLine and its
// events) off or on.
func setOnline(t *testing.T, ctx context.Context, online bool) {
	t.Helper()
	err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		if _, err := cdp.Call(ctx, tg, network.Enable, network.EnableParams{}); err != nil {
			return err
		}
		_, err := cdp.Call(ctx, tg, network.OverrideNetworkState, network.OverrideNetworkStateParams{
			Offline: !online, DownloadThroughput: -1, UploadThroughput: -1,
		})
		return err
	}))
	if err != nil {
		t.Fatalf("set online %v: %v", online, err)
	}
}

// do runs steps with a deadline, failing the test with what was being done.
func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// waitFor waits until js is truthy in the page. It evaluates js again and
// again rather than querying nodes, so a navigation meanwhile (a form post
// and its redirect) cannot leave it watching the old document.
func waitFor(t *testing.T, ctx context.Context, what, js string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		ectx, cancel := context.WithTimeout(ctx, time.Second)
		var ok bool
		ok, err = chromedp.Run(ectx, chromedp.Evaluate[bool](`(() => { try { return !!(`+js+`); } catch (e) { return false; } })()`))
		cancel()
		if err == nil && ok {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: not true within 15 s (last error: %v)", what, err)
}

func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// screenshot saves the tab as docs/screenshots/name.png when
// ONAIR_SCREENSHOTS names that folder (how the README's pictures are made).
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("ONAIR_SCREENSHOTS")
	if dir == "" {
		return
	}
	chromedp.Do(ctx, chromedp.Sleep(time.Second)) // let transitions finish
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// browserServer is the real binary with Zoom sign-in against the fake Zoom.
type browserServer struct {
	t      *testing.T
	dir    string
	base   string // http://127.0.0.1:PORT
	env    []string
	args   []string
	secret []byte
	proc   *onairProc
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func startBrowserServer(t *testing.T, fz *fakezoom.Zoom) *browserServer {
	t.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	s := &browserServer{t: t, dir: t.TempDir(), secret: []byte("browser-webhook-secret")}
	port := freePort(t)
	s.base = fmt.Sprintf("http://127.0.0.1:%d", port)
	s.env = cleanEnv(
		"ZOOM_WEBHOOK_SECRET_TOKEN="+string(s.secret),
		"ONAIR_TOKEN_SECRET=browser-token-secret",
		"ONAIR_SECRET_KEY="+base64.StdEncoding.EncodeToString(key),
		"ZOOM_CLIENT_ID="+fz.ClientID, "ZOOM_CLIENT_SECRET="+fz.ClientSecret,
		"ZOOM_OAUTH_URL="+fz.OAuthURL(), "ZOOM_API_URL="+fz.APIURL(),
		"ONAIR_PUBLIC_URL="+s.base,
	)
	s.args = []string{"serve", "--addr", fmt.Sprintf("127.0.0.1:%d", port), "--db", filepath.Join(s.dir, "onair.db"), "--shutdown-drain", "0s"}
	s.start()
	return s
}

func (s *browserServer) start() { s.proc = startOnair(s.t, s.dir, s.env, s.args...) }

// webhook sends a signed meeting event as Zoom would.
func (s *browserServer) webhook(event, uuid, host, topic string) {
	s.t.Helper()
	body := meetingBody(event, uuid, host, time.Now())
	if topic != "" {
		body = []byte(strings.Replace(string(body), `"topic":"Crash test `+uuid+`"`, `"topic":`+strconv.Quote(topic), 1))
	}
	status, _, err := postWebhook(context.Background(), http.DefaultClient, s.base+"/webhooks/zoom", s.secret, body)
	if err != nil || status != http.StatusOK {
		s.t.Fatalf("webhook %s %s: %d %v", event, uuid, status, err)
	}
}

// signIn signs the browser in through the fake Zoom as user.
func signIn(t *testing.T, ctx context.Context, s *browserServer, fz *fakezoom.Zoom, user string) {
	t.Helper()
	fz.SignInAs(user)
	do(t, ctx, "sign in as "+user,
		chromedp.Navigate(s.base+"/"),
		chromedp.WaitVisible(`a[href="/auth/zoom/login"]`),
		chromedp.Click(`a[href="/auth/zoom/login"]`),
	)
	waitFor(t, ctx, "signed in as "+user, `document.querySelector('#connection').dataset.state === 'connected'`)
}

func openPage(t *testing.T, ctx context.Context, s *browserServer) {
	t.Helper()
	do(t, ctx, "open the page", chromedp.Navigate(s.base+"/"), chromedp.WaitVisible(`#connection[data-state="connected"]`))
}

func promptSel(uuid string) string { return `#prompt .prompt[data-uuid=` + strconv.Quote(uuid) + `]` }

// watchPrompts records, in the page, when each prompt first appeared
// (wall-clock ms), so the webhook-to-prompt delay is measured without
// the test's polling in it.
const watchPrompts = `(() => {
	window.__promptSeen = window.__promptSeen || {};
	const note = () => { for (const el of document.querySelectorAll('#prompt .prompt[data-uuid]')) {
		if (!(el.dataset.uuid in window.__promptSeen)) window.__promptSeen[el.dataset.uuid] = Date.now(); } };
	new MutationObserver(note).observe(document.getElementById('prompt'), {childList: true, subtree: true});
	return true;
})()`

// promptDelay waits up to 5 s for uuid's prompt and returns the delay
// from sent to its appearance.
func promptDelay(t *testing.T, ctx context.Context, uuid string, sent time.Time) time.Duration {
	t.Helper()
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	seen, err := chromedp.Run(pctx, chromedp.Poll[float64](`window.__promptSeen && window.__promptSeen[`+strconv.Quote(uuid)+`]`,
		chromedp.WithPollingInterval(10*time.Millisecond)))
	if err != nil {
		t.Fatalf("the prompt for %s did not appear within 5 s: %v", uuid, err)
	}
	return time.UnixMilli(int64(seen)).Sub(sent)
}

func TestBrowserLivePage(t *testing.T) {
	fz := fakezoom.New(t)
	fz.AddUser(fakezoom.User{ID: "zu-alice", Email: "alice@example.com", DisplayName: "Alice Example"})
	fz.AddUser(fakezoom.User{ID: "zu-bob", Email: "bob@example.com", DisplayName: "Bob Example"})
	s := startBrowserServer(t, fz)

	alice := newBrowser(t)
	do(t, alice, "open the signed-out page", chromedp.Navigate(s.base+"/"), chromedp.WaitVisible(`a[href="/auth/zoom/login"]`))
	screenshot(t, alice, "signed-out")
	signIn(t, alice, s, fz, "zu-alice")
	if name := eval[string](t, alice, `document.querySelector('.who-name').textContent`); name != "Alice Example" {
		t.Fatalf("signed in as %q", name)
	}
	alice2 := sameSession(t, alice, s.base)
	openPage(t, alice2, s)
	bob := newBrowser(t)
	signIn(t, bob, s, fz, "zu-bob")

	// The webhook-to-prompt delay, 20 times: logged, not asserted.
	eval[bool](t, alice, watchPrompts)
	var delays []time.Duration
	for i := range 20 {
		uuid := fmt.Sprintf("e2e-%d/Qj+w==", i)
		sent := time.Now()
		s.webhook(zoom.EventMeetingStarted, uuid, "zu-alice", fmt.Sprintf("Run %d", i))
		delays = append(delays, promptDelay(t, alice, uuid, sent))
		s.webhook(zoom.EventMeetingEnded, uuid, "zu-alice", "")
		do(t, alice, "the prompt leaves on meeting.ended", chromedp.WaitNotPresent(promptSel(uuid)))
	}
	slices.Sort(delays)
	t.Logf("webhook-to-prompt delay over %d runs: min %v, median %v, p90 %v, max %v",
		len(delays), delays[0], delays[len(delays)/2], delays[len(delays)*9/10], delays[len(delays)-1])

	// Both of Alice's tabs show the prompt; Bob's does not.
	const live = "live-1/Zk9x=="
	s.webhook(zoom.EventMeetingStarted, live, "zu-alice", "Weekly planning")
	for i, tab := range []context.Context{alice, alice2} {
		waitFor(t, tab, fmt.Sprintf("the prompt appears in tab %d", i+1), `document.querySelector(`+strconv.Quote(promptSel(live))+`) !== null`)
	}
	waitFor(t, alice, "focus moves to the prompt", `document.activeElement !== null && document.activeElement.closest('.prompt') !== null`)
	if n := eval[int](t, bob, `document.querySelectorAll('#prompt .prompt, #meetings li').length`); n != 0 {
		t.Fatalf("Bob's page shows %d of Alice's prompts or meetings", n)
	}
	screenshot(t, alice, "prompt")

	// "Send bot" shows the bot's state, in both tabs.
	do(t, alice, "send the bot", chromedp.Click(promptSel(live)+` [data-action="send-bot"]`))
	botState := `#meetings li[data-uuid=` + strconv.Quote(live) + `] .bot-state[data-state="requested"]`
	for _, tab := range []context.Context{alice, alice2} {
		do(t, tab, "the bot state shows", chromedp.WaitVisible(botState))
	}
	screenshot(t, alice, "bot-state")

	// The server dies, and the first tab is offline while a meeting starts:
	// it shows the meeting once it is back, from the resume.
	s.proc.kill()
	do(t, alice, "the page notices", chromedp.WaitVisible(`#connection[data-state="reconnecting"]`))
	setOnline(t, alice, false)
	waitFor(t, alice, "the page knows it is offline", `document.querySelector('#connection').dataset.state === 'offline'`)
	s.start()
	const whileDown = "while-down/Pq1=="
	s.webhook(zoom.EventMeetingStarted, whileDown, "zu-alice", "Started while the page was away")
	waitFor(t, alice2, "the other tab reconnects and shows it", `document.querySelector('#connection').dataset.state === 'connected' && document.querySelector(`+strconv.Quote(promptSel(whileDown))+`) !== null`)
	if n := eval[int](t, alice, `document.querySelectorAll(`+strconv.Quote(promptSel(whileDown))+`).length`); n != 0 {
		t.Fatal("the offline tab shows the meeting before it reconnected")
	}
	setOnline(t, alice, true)
	waitFor(t, alice, "back online, the tab resumes and shows it", `document.querySelector('#connection').dataset.state === 'connected' && document.querySelector(`+strconv.Quote(promptSel(whileDown))+`) !== null`)
	do(t, alice, "the bot state survives", chromedp.WaitVisible(botState))

	// Logout ends the session: both tabs' sockets close.
	do(t, alice, "sign out", chromedp.Click(`form[action="/auth/logout"] button`))
	waitFor(t, alice, "signed out", `document.querySelector('a[href="/auth/zoom/login"]') !== null`)
	waitFor(t, alice2, "the other tab's socket closes", `document.querySelector('#connection').dataset.state === 'closed'`)
	// Both of the session's sockets were closed by the logout.
	if status, body := httpGet(t, s.base+"/metrics"); !strings.Contains(body, `onair_ws_disconnects_total{reason="logout"} 2`) {
		t.Fatalf("logout disconnects (%d):\n%s", status, grepLines(body, "onair_ws_disconnects_total"))
	}
	// Bob is unaffected.
	do(t, bob, "Bob stays connected", chromedp.WaitVisible(`#connection[data-state="connected"]`))
}

func TestBrowserSignInErrorShowsOnThePage(t *testing.T) {
	fz := fakezoom.New(t)
	fz.AddUser(fakezoom.User{ID: "zu-carol"})
	s := startBrowserServer(t, fz)
	b := newBrowser(t)
	fz.Deny(true)
	do(t, b, "sign in and deny", chromedp.Navigate(s.base+"/"), chromedp.Click(`a[href="/auth/zoom/login"]`))
	waitFor(t, b, "the error shows", `document.querySelector('.error-banner[role="alert"]') !== null`)
	if msg := eval[string](t, b, `document.querySelector('.error-banner').textContent`); !strings.Contains(msg, "cancelled") {
		t.Fatalf("error on the page: %q", msg)
	}
	if n := eval[int](t, b, `document.querySelectorAll('#connection').length`); n != 0 {
		t.Fatal("a denied sign-in shows the signed-in page")
	}
}

func TestBrowserDevModeDemo(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	startOnair(t, dir, cleanEnv(), "serve", "--addr", fmt.Sprintf("127.0.0.1:%d", port), "--db", filepath.Join(dir, "onair.db"))
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	b := newBrowser(t)
	do(t, b, "sign in as the demo user", chromedp.Navigate(base+"/"), chromedp.Click(`form[action="/auth/demo"] button`))
	waitFor(t, b, "the signed-in page", `document.querySelector('#simulate') !== null && document.querySelector('#connection').dataset.state === 'connected'`)
	do(t, b, "simulate a meeting",
		chromedp.SetValue(`#simulate-topic`, "Demo standup"),
		chromedp.Click(`[data-action="simulate-start"]`),
		chromedp.WaitVisible(`#prompt .prompt`),
	)
	if topic := eval[string](t, b, `document.querySelector('#prompt .prompt').textContent`); !strings.Contains(topic, "Demo standup") {
		t.Fatalf("prompt: %q", topic)
	}
	do(t, b, "send the bot and end the meeting",
		chromedp.Click(`#prompt .prompt [data-action="send-bot"]`),
		chromedp.WaitVisible(`#meetings .bot-state[data-state="requested"]`),
		chromedp.Click(`#meetings [data-action="simulate-end"]`),
		chromedp.WaitNotPresent(`#meetings li`),
	)
	if _, body := httpGet(t, base+"/metrics"); !strings.Contains(body, `onair_webhooks_total{event="meeting.started",outcome="accepted"} 1`) {
		t.Fatal("the simulated meeting did not go through the webhook endpoint")
	}
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
