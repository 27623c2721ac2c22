package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"onair/hub"
	"onair/store"
	"onair/zoom"
)

var bsSecret = []byte("bot-launcher-secret")

// bsEnv is a server that verifies launcher callbacks with bsSecret (and,
// for rotation, a second secret).
func bsEnv(t *testing.T, secrets ...[]byte) *testEnv {
	t.Helper()
	if secrets == nil {
		secrets = [][]byte{bsSecret}
	}
	return newEnv(t, func(c *Config, _ *hub.Options) { c.BotSecrets = secrets })
}

// bsPost sends a launcher callback with the given timestamp and signature
// ("" leaves the header out).
func (e *testEnv) bsPost(requestID string, body []byte, ts, sig string) (int, []byte) {
	e.t.Helper()
	h := http.Header{"Content-Type": {"application/json"}}
	if ts != "" {
		h.Set("X-Onair-Request-Timestamp", ts)
	}
	if sig != "" {
		h.Set("X-Onair-Signature", sig)
	}
	resp, b := e.request(http.MethodPost, "/api/v1/bots/"+url.PathEscape(requestID)+"/status", body, h)
	return resp.StatusCode, b
}

// bsSigned sends a callback signed with secret, now.
func (e *testEnv) bsSigned(secret []byte, requestID string, body []byte) (int, []byte) {
	e.t.Helper()
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	return e.bsPost(requestID, body, ts, zoom.Sign(secret, ts, body))
}

// bsStatus sends {"state", "detail"} signed with bsSecret.
func (e *testEnv) bsStatus(requestID, state, detail string) (int, []byte) {
	e.t.Helper()
	b, _ := json.Marshal(map[string]string{"state": state, "detail": detail})
	return e.bsSigned(bsSecret, requestID, b)
}

// bsMust sends a status and requires the answer's code; 204 has no body,
// an error is CONTRACT §3's {"error": {"code", "message"}}.
func (e *testEnv) bsMust(requestID, state, detail string, want int) {
	e.t.Helper()
	got, b := e.bsStatus(requestID, state, detail)
	bsCheck(e.t, fmt.Sprintf("status %s for %s", state, requestID), got, b, want)
}

func bsCheck(t testing.TB, what string, got int, b []byte, want int) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: %d %s, want %d", what, got, b, want)
	}
	if want == http.StatusNoContent {
		if len(b) != 0 {
			t.Fatalf("%s: 204 with a body %q", what, b)
		}
		return
	}
	var e struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal(b, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
		t.Fatalf("%s: error body %s: want {\"error\": {\"code\", \"message\"}}", what, b)
	}
}

// bsTab is a tab that checks its frames come one seq after another, so a
// frame that should not have been pushed shows as the next one read.
// (Waiting for silence would close the socket: a read's context ending
// closes it.)
type bsTab struct {
	*wsClient
	seq int64
}

func (e *testEnv) bsConnect(user string) *bsTab {
	e.t.Helper()
	c, w := e.connect(user, nil)
	return &bsTab{c, w.Seq}
}

func (tab *bsTab) next() frame {
	tab.t.Helper()
	f := tab.read()
	if f.Seq != tab.seq+1 {
		tab.t.Fatalf("frame %s: seq %d after %d", f.Raw, f.Seq, tab.seq)
	}
	tab.seq = f.Seq
	return f
}

// bsRequest starts a meeting for host with uuid, opens a tab and makes a
// bot request; it returns the tab (past the request's frame) and the bot.
func (e *testEnv) bsRequest(host, uuid string) (*bsTab, store.Bot) {
	e.t.Helper()
	tab := e.bsConnect(host)
	e.mustPost(event{Name: "meeting.started", UUID: uuid, Host: host, Topic: "Sync"}.body(), 200)
	if f := tab.next(); f.Type != "meeting.started" {
		e.t.Fatalf("frame %s, want meeting.started", f.Raw)
	}
	return tab, e.bsNewRequest(tab, host, uuid)
}

func (e *testEnv) bsNewRequest(tab *bsTab, host, uuid string) store.Bot {
	e.t.Helper()
	resp, b := e.request(http.MethodPost, "/api/v1/meetings/"+url.PathEscape(uuid)+"/bot", nil,
		http.Header{"Authorization": {"Bearer " + e.token(host)}})
	if resp.StatusCode != http.StatusAccepted {
		e.t.Fatalf("POST bot for %q: %d %s, want 202", uuid, resp.StatusCode, b)
	}
	bot := botOf(e.t.(*testing.T), b)
	if f := tab.next(); f.Type != "bot.updated" || f.Bot == nil || f.Bot.State != store.BotRequested || f.Bot.RequestID != bot.RequestID {
		e.t.Fatalf("frame %s, want bot.updated requested", f.Raw)
	}
	return bot
}

// bsFrame reads the tab's next frame and requires a bot.updated of the
// request in state with detail.
func bsFrame(t *testing.T, tab *bsTab, bot store.Bot, state, detail string) frame {
	t.Helper()
	f := tab.next()
	if f.Type != "bot.updated" || f.Bot == nil || f.Bot.RequestID != bot.RequestID || f.Bot.MeetingUUID != bot.MeetingUUID ||
		f.Bot.State != state || f.Bot.Detail != detail {
		t.Fatalf("frame %s, want bot.updated of %s (%s) in %s with detail %q", f.Raw, bot.RequestID, bot.MeetingUUID, state, detail)
	}
	return f
}

func TestBotStatusSignature(t *testing.T) {
	e := bsEnv(t)
	tab, bot := e.bsRequest("host1", "m1")
	body := []byte(`{"state":"joining"}`)
	now := time.Now()
	ts := strconv.FormatInt(now.Unix(), 10)
	stale := strconv.FormatInt(now.Add(-6*time.Minute).Unix(), 10)
	future := strconv.FormatInt(now.Add(6*time.Minute).Unix(), 10)
	good := zoom.Sign(bsSecret, ts, body)
	for _, tc := range []struct {
		name    string
		ts, sig string
		body    []byte
	}{
		{"no headers", "", "", body},
		{"no signature", ts, "", body},
		{"no timestamp", "", good, body},
		{"wrong secret", ts, zoom.Sign([]byte("not-the-secret"), ts, body), body},
		{"the webhook secret", ts, zoom.Sign(e.secret, ts, body), body},
		{"another body", ts, good, []byte(`{"state":"joined"}`)},
		{"another timestamp", strconv.FormatInt(now.Unix()-1, 10), good, body},
		{"uppercase hex", ts, "v0=" + strings.ToUpper(strings.TrimPrefix(good, "v0=")), body},
		{"no v0 prefix", ts, strings.TrimPrefix(good, "v0="), body},
		{"stale timestamp", stale, zoom.Sign(bsSecret, stale, body), body},
		{"future timestamp", future, zoom.Sign(bsSecret, future, body), body},
		{"milliseconds timestamp", strconv.FormatInt(now.UnixMilli(), 10), zoom.Sign(bsSecret, strconv.FormatInt(now.UnixMilli(), 10), body), body},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, b := e.bsPost(bot.RequestID, tc.body, tc.ts, tc.sig)
			bsCheck(t, tc.name, got, b, http.StatusUnauthorized)
		})
	}
	// Nothing was applied: the next frame is the good callback's.
	// Within the window (4 minutes old) it is accepted.
	old := strconv.FormatInt(now.Add(-4*time.Minute).Unix(), 10)
	got, b := e.bsPost(bot.RequestID, body, old, zoom.Sign(bsSecret, old, body))
	bsCheck(t, "signed 4 minutes ago", got, b, http.StatusNoContent)
	bsFrame(t, tab, bot, store.BotJoining, "")
	// A bad signature is refused before the request is looked up.
	got, b = e.bsPost("br_unknown", body, ts, "v0="+strings.Repeat("0", 64))
	bsCheck(t, "bad signature for an unknown request", got, b, http.StatusUnauthorized)
}

func TestBotStatusSecretRotation(t *testing.T) {
	old, next := []byte("old-launcher-secret"), []byte("new-launcher-secret")
	e := bsEnv(t, next, old)
	tab, bot := e.bsRequest("host1", "m1")
	got, b := e.bsSigned(old, bot.RequestID, []byte(`{"state":"joining"}`))
	bsCheck(t, "signed with the old secret", got, b, http.StatusNoContent)
	bsFrame(t, tab, bot, store.BotJoining, "")
	got, b = e.bsSigned(next, bot.RequestID, []byte(`{"state":"joined"}`))
	bsCheck(t, "signed with the new secret", got, b, http.StatusNoContent)
	bsFrame(t, tab, bot, store.BotJoined, "")
}

func TestBotStatusWithoutSecret(t *testing.T) {
	e := newEnv(t)
	_, bot := e.bsRequest("host1", "m1")
	got, b := e.bsStatus(bot.RequestID, store.BotJoining, "")
	bsCheck(t, "no launcher secret configured", got, b, http.StatusUnauthorized)
}

func TestBotStatusUnknownRequest(t *testing.T) {
	e := bsEnv(t)
	e.bsRequest("host1", "m1")
	e.bsMust("br_000000000000000000000000", store.BotJoining, "", http.StatusNotFound)
	e.bsMust("nope", store.BotFailed, "x", http.StatusNotFound)
}

func TestBotStatusLegalChain(t *testing.T) {
	e := bsEnv(t)
	tab, bot := e.bsRequest("host1", "m1")
	other, _ := e.connect("host2", nil)
	second := e.bsConnect("host1") // every tab of the user hears it

	for _, st := range []struct{ state, detail string }{
		{store.BotJoining, "waiting room"},
		{store.BotJoined, ""},
		{store.BotLeft, "meeting ended"},
	} {
		e.bsMust(bot.RequestID, st.state, st.detail, http.StatusNoContent)
		bsFrame(t, tab, bot, st.state, st.detail)
		bsFrame(t, second, bot, st.state, st.detail)
		// A launcher's retry of the same state is a no-op: 204, no frame
		// (the next frame read is the next state's, one seq on).
		e.bsMust(bot.RequestID, st.state, st.detail, http.StatusNoContent)
		e.bsMust(bot.RequestID, st.state, "another detail", http.StatusNoContent)
	}
	other.expectSilence(50 * time.Millisecond)

	// From left nothing moves.
	for _, s := range []string{store.BotJoining, store.BotJoined, store.BotFailed} {
		e.bsMust(bot.RequestID, s, "", http.StatusConflict)
	}

	// The request has ended: a new one is a new request.
	next := e.bsNewRequest(tab, "host1", "m1")
	if next.RequestID == bot.RequestID {
		t.Fatalf("new request after left has the old id")
	}
	// The old one is still closed, the new one moves.
	e.bsMust(bot.RequestID, store.BotJoining, "", http.StatusConflict)
	e.bsMust(next.RequestID, store.BotJoining, "", http.StatusNoContent)
	bsFrame(t, tab, next, store.BotJoining, "")
}

func TestBotStatusJoiningMaySkip(t *testing.T) {
	e := bsEnv(t)
	tab, bot := e.bsRequest("host1", "m1")
	e.bsMust(bot.RequestID, store.BotJoined, "", http.StatusNoContent)
	bsFrame(t, tab, bot, store.BotJoined, "")
	// Back to joining is not a move.
	e.bsMust(bot.RequestID, store.BotJoining, "", http.StatusConflict)
	tab.expectSilence(50 * time.Millisecond)
}

func TestBotStatusIllegalMoves(t *testing.T) {
	e := bsEnv(t)
	tab, bot := e.bsRequest("host1", "m1")
	// requested → left skips joined.
	e.bsMust(bot.RequestID, store.BotLeft, "", http.StatusConflict)

	// A cancelled request stays cancelled: the launcher cannot bring it back.
	resp, b := e.request(http.MethodDelete, "/api/v1/meetings/m1/bot", nil, http.Header{"Authorization": {"Bearer " + e.token("host1")}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE: %d %s", resp.StatusCode, b)
	}
	bsFrame(t, tab, bot, store.BotCancelled, "")
	for _, s := range []string{store.BotJoining, store.BotJoined, store.BotLeft} {
		e.bsMust(bot.RequestID, s, "", http.StatusConflict)
	}
	tab.expectSilence(50 * time.Millisecond)
}

func TestBotStatusFailed(t *testing.T) {
	e := bsEnv(t)
	tab, bot := e.bsRequest("host1", "m1")
	e.bsMust(bot.RequestID, store.BotJoined, "", http.StatusNoContent)
	bsFrame(t, tab, bot, store.BotJoined, "")
	e.bsMust(bot.RequestID, store.BotFailed, "bot crashed: out of memory", http.StatusNoContent)
	f := bsFrame(t, tab, bot, store.BotFailed, "bot crashed: out of memory")
	if !strings.Contains(string(f.Raw), `"detail":"bot crashed: out of memory"`) {
		t.Fatalf("frame %s: want the detail shown", f.Raw)
	}
	// failed is final but for a repeat.
	e.bsMust(bot.RequestID, store.BotFailed, "again", http.StatusNoContent)
	e.bsMust(bot.RequestID, store.BotJoined, "", http.StatusConflict)
	e.bsMust(bot.RequestID, store.BotLeft, "", http.StatusConflict)

	// From requested and from joining too.
	next := e.bsNewRequest(tab, "host1", "m1")
	e.bsMust(next.RequestID, store.BotFailed, "no capacity", http.StatusNoContent)
	bsFrame(t, tab, next, store.BotFailed, "no capacity")
	third := e.bsNewRequest(tab, "host1", "m1")
	e.bsMust(third.RequestID, store.BotJoining, "", http.StatusNoContent)
	bsFrame(t, tab, third, store.BotJoining, "")
	e.bsMust(third.RequestID, store.BotFailed, "", http.StatusNoContent)
	bsFrame(t, tab, third, store.BotFailed, "")
}

func TestBotStatusBadBodies(t *testing.T) {
	e := bsEnv(t)
	tab, bot := e.bsRequest("host1", "m1")
	for _, tc := range []struct {
		name string
		body string
	}{
		{"empty", ``},
		{"not JSON", `state=joined`},
		{"truncated", `{"state":"joined"`},
		{"array", `["joined"]`},
		{"state a number", `{"state":5}`},
		{"detail a number", `{"state":"joined","detail":5}`},
		{"no state", `{"detail":"x"}`},
		{"empty state", `{"state":""}`},
		{"unknown state", `{"state":"flying"}`},
		{"requested", `{"state":"requested"}`},
		{"dispatched", `{"state":"dispatched"}`},
		{"cancelled", `{"state":"cancelled"}`},
		{"upper case", `{"state":"JOINED"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, b := e.bsSigned(bsSecret, bot.RequestID, []byte(tc.body))
			bsCheck(t, tc.name, got, b, http.StatusBadRequest)
		})
	}
	// Unknown fields are ignored.
	got, b := e.bsSigned(bsSecret, bot.RequestID, []byte(`{"state":"joining","bot_id":"b-17"}`))
	bsCheck(t, "unknown field", got, b, http.StatusNoContent)
	bsFrame(t, tab, bot, store.BotJoining, "")
}

func TestBotStatusBodyTooLarge(t *testing.T) {
	e := bsEnv(t)
	tab, bot := e.bsRequest("host1", "m1")
	big, _ := json.Marshal(map[string]string{"state": "failed", "detail": strings.Repeat("x", 64<<10)})
	got, b := e.bsSigned(bsSecret, bot.RequestID, big)
	bsCheck(t, "a body over 64 KiB", got, b, http.StatusRequestEntityTooLarge)
	// Just under the limit it is taken.
	fits, _ := json.Marshal(map[string]string{"state": "failed", "detail": ""})
	detail := strings.Repeat("y", 64<<10-len(fits))
	fits, _ = json.Marshal(map[string]string{"state": "failed", "detail": detail})
	if len(fits) != 64<<10 {
		t.Fatalf("body of %d bytes", len(fits))
	}
	got, b = e.bsSigned(bsSecret, bot.RequestID, fits)
	bsCheck(t, "a body of exactly 64 KiB", got, b, http.StatusNoContent)
	bsFrame(t, tab, bot, store.BotFailed, detail)
}

func TestBotStatusSlashInMeetingUUID(t *testing.T) {
	for _, uuid := range []string{"a/b+c==", "/Xy7+ab//cd=="} {
		t.Run(uuid, func(t *testing.T) {
			e := bsEnv(t)
			tab, bot := e.bsRequest("host1", uuid)
			if bot.MeetingUUID != uuid {
				t.Fatalf("bot %+v for %q", bot, uuid)
			}
			e.bsMust(bot.RequestID, store.BotJoining, "", http.StatusNoContent)
			bsFrame(t, tab, bot, store.BotJoining, "")
			e.bsMust(bot.RequestID, store.BotJoined, "in the meeting", http.StatusNoContent)
			bsFrame(t, tab, bot, store.BotJoined, "in the meeting")
			// A new tab's snapshot shows it, under the exact uuid.
			_, w := e.connect("host1", nil)
			if len(w.Bots) != 1 || w.Bots[0].MeetingUUID != uuid || w.Bots[0].State != store.BotJoined {
				t.Fatalf("welcome %s", w.Raw)
			}
		})
	}
}
