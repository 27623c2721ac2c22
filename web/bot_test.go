package web

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"testing"
	"time"

	"onair/store"
)

func botOf(t *testing.T, b []byte) store.Bot {
	t.Helper()
	var out struct{ Bot store.Bot }
	if err := json.Unmarshal(b, &out); err != nil || out.Bot.RequestID == "" {
		t.Fatalf("no bot in %s (%v)", b, err)
	}
	return out.Bot
}

func TestBotRequestLifecycle(t *testing.T) {
	e := newEnv(t)
	const uuid = "a/b+c==" // a real uuid's '/' travels as %2F
	path := "/api/v1/meetings/" + url.PathEscape(uuid) + "/bot"
	auth := http.Header{"Authorization": {"Bearer " + e.token("host1")}}
	tab, _ := e.connect("host1", nil)
	other, _ := e.connect("host2", nil)

	if resp, b := e.request(http.MethodPost, path, nil, auth); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("bot for a meeting not live: %d %s, want 404", resp.StatusCode, b)
	}
	e.mustPost(event{Name: "meeting.started", UUID: uuid, Host: "host1", Topic: "Sync"}.body(), 200)
	tab.read() // meeting.started

	resp, b := e.request(http.MethodPost, path, nil, auth)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST bot: %d %s, want 202", resp.StatusCode, b)
	}
	bot := botOf(t, b)
	if bot.MeetingUUID != uuid || bot.State != store.BotRequested {
		t.Fatalf("bot %+v", bot)
	}
	f := tab.read()
	if f.Type != "bot.updated" || f.Bot == nil || f.Bot.RequestID != bot.RequestID || f.Bot.State != "requested" || f.Seq != 2 {
		t.Fatalf("frame %s", f.Raw)
	}
	if !regexp.MustCompile(`"updated_at":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"`).Match(f.Raw) {
		t.Fatalf("updated_at must be RFC 3339 UTC with milliseconds: %s", f.Raw)
	}

	// A repeat while active returns the same request and pushes nothing:
	// the tab's next frame is the cancel's, seq 3.
	resp, b = e.request(http.MethodPost, path, nil, auth)
	if resp.StatusCode != http.StatusOK || botOf(t, b).RequestID != bot.RequestID {
		t.Fatalf("repeat POST: %d %s, want 200 with the same request", resp.StatusCode, b)
	}

	// A new tab's snapshot carries the request.
	_, w := e.connect("host1", nil)
	if len(w.Bots) != 1 || w.Bots[0].RequestID != bot.RequestID {
		t.Fatalf("welcome bots %s", w.Raw)
	}

	// Another user can neither see nor cancel it.
	if resp, _ := e.request(http.MethodDelete, path, nil, http.Header{"Authorization": {"Bearer " + e.token("host2")}}); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("DELETE by another user: %d, want 404", resp.StatusCode)
	}

	resp, b = e.request(http.MethodDelete, path, nil, auth)
	if resp.StatusCode != http.StatusOK || botOf(t, b).State != store.BotCancelled {
		t.Fatalf("DELETE: %d %s, want 200 cancelled", resp.StatusCode, b)
	}
	if f := tab.read(); f.Type != "bot.updated" || f.Bot.State != "cancelled" || f.Seq != 3 {
		t.Fatalf("frame %s", f.Raw)
	}
	if resp, _ := e.request(http.MethodDelete, path, nil, auth); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("DELETE again: %d, want 404", resp.StatusCode)
	}
	if got := e.metric(`onair_bot_requests_total{outcome="cancelled"}`); got != 1 {
		t.Fatalf("cancelled requests: %v", got)
	}

	// After it ended, a new request is a new one.
	resp, b = e.request(http.MethodPost, path, nil, auth)
	if resp.StatusCode != http.StatusAccepted || botOf(t, b).RequestID == bot.RequestID {
		t.Fatalf("POST after cancel: %d %s, want 202 with a new request", resp.StatusCode, b)
	}
	if f := tab.read(); f.Type != "bot.updated" || f.Bot.State != "requested" {
		t.Fatalf("frame %s", f.Raw)
	}

	// The end cancels the request never sent, and no more can be made.
	e.mustPost(event{Name: "meeting.ended", UUID: uuid, Host: "host1"}.body(), 200)
	if f := tab.read(); f.Type != "meeting.ended" {
		t.Fatalf("frame %s", f.Raw)
	}
	if f := tab.read(); f.Type != "bot.updated" || f.Bot.State != "cancelled" || f.Bot.Detail == "" {
		t.Fatalf("frame %s, want the unsent request cancelled with a reason", f.Raw)
	}
	if got := e.metric(`onair_bot_requests_total{outcome="cancelled"}`); got != 2 {
		t.Fatalf("cancelled requests: %v, want 2 (the DELETE and the end)", got)
	}
	if resp, _ := e.request(http.MethodPost, "/api/v1/meetings/"+url.PathEscape(uuid)+"/bot", nil, auth); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("bot for an ended meeting: %d, want 404", resp.StatusCode)
	}
	other.expectSilence(50 * time.Millisecond) // no frame of host1's ever reached host2
}

func TestBotRequestByCookieNeedsOrigin(t *testing.T) {
	e := newEnv(t, dev)
	sess := e.demoSignIn()
	e.mustPost(event{Name: "meeting.started", UUID: "m1", Host: "demo-user"}.body(), 200)
	if resp, _ := e.request(http.MethodPost, "/api/v1/meetings/m1/bot", nil, withCookie(sess, "http://evil.example")); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("POST bot by cookie from a foreign origin: %d, want 403", resp.StatusCode)
	}
	if resp, b := e.request(http.MethodPost, "/api/v1/meetings/m1/bot", nil, withCookie(sess, e.origin)); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST bot by cookie: %d %s, want 202", resp.StatusCode, b)
	}
}
