package web

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"onair/hub"
)

// sockTimeRE is RFC 3339 in UTC with milliseconds, as every frame carries times.
var sockTimeRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)

// sockBody wraps a payload object into a Zoom-shaped delivery.
func sockBody(name string, ts int64, obj map[string]any) []byte {
	if ts == 0 {
		ts = time.Now().UnixMilli()
	}
	b, _ := json.Marshal(map[string]any{
		"event": name, "event_ts": ts,
		"payload": map[string]any{"account_id": "acc", "object": obj},
	})
	return b
}

// sockMeetingObj is a meeting object as Zoom sends it.
func sockMeetingObj(uuid, host, topic, start string) map[string]any {
	return map[string]any{
		"id": 85746065432, "uuid": uuid, "host_id": host, "topic": topic,
		"type": 2, "start_time": start, "timezone": "Europe/Berlin", "duration": 30,
	}
}

// sockDeauthBody is an app_deauthorized delivery shaped like Zoom's sample.
func sockDeauthBody(user string, at time.Time) []byte {
	b, _ := json.Marshal(map[string]any{
		"event": "app_deauthorized",
		"payload": map[string]any{
			"account_id":           "lAAAAAbbbbCCCCddDDeeeE",
			"user_id":              user,
			"signature":            "5c0b6f6e1d7a4c2f9a1e3b8d7c6f5e4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e",
			"deauthorization_time": at.UTC().Format("2006-01-02T15:04:05.000Z"),
			"client_id":            "AbCdEfGhIjKlMnOpQrSt",
			"event_ts":             at.UTC().Format("2006-01-02 15:04:05"),
		},
	})
	return b
}

// sockJWT signs claims with any method (or none).
func sockJWT(t testing.TB, m jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(m, claims).SignedString(key)
	if err != nil {
		t.Fatalf("sign token: %v", err)
	}
	return tok
}

// sockHello sends a hello with tok ("" leaves the token out).
func sockHello(c *wsClient, tok string) {
	c.t.Helper()
	hello := map[string]any{"type": "hello"}
	if tok != "" {
		hello["token"] = tok
	}
	c.sendJSON(hello)
}

// sockCloseQuietly requires that the server closes with want and that no
// data frame reaches the client before.
func sockCloseQuietly(c *wsClient, want websocket.StatusCode) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		_, b, err := c.conn.Read(ctx)
		if err != nil {
			if got := websocket.CloseStatus(err); got != want {
				c.t.Fatalf("close: got code %d (%v), want %d", got, err, want)
			}
			return
		}
		c.t.Fatalf("got frame %s before the close, want nothing", b)
	}
}

// sockWaitMetric polls /metrics until series has the value want.
func sockWaitMetric(e *testEnv, series string, want float64) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := e.metric(series)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: got %v, want %v", series, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sockRawFields decodes a JSON object into its raw fields.
func sockRawFields(t testing.TB, b []byte) map[string]json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return m
}

// sockKeys returns the sorted keys of a JSON object, comma-separated.
func sockKeys(m map[string]json.RawMessage) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := range keys {
		for j := i + 1; j < len(keys); j++ {
			if keys[j] < keys[i] {
				keys[i], keys[j] = keys[j], keys[i]
			}
		}
	}
	return strings.Join(keys, ",")
}

func TestWSWelcome(t *testing.T) {
	t.Run("new user gets an empty snapshot", func(t *testing.T) {
		e := newEnv(t)
		c, w := e.connect("welcome-empty", nil)
		if got, want := w.Type, "welcome"; got != want {
			t.Fatalf("type: got %q, want %q", got, want)
		}
		if got, want := w.User, "welcome-empty"; got != want {
			t.Fatalf("user: got %q, want %q", got, want)
		}
		if w.Epoch == "" {
			t.Fatalf("epoch is empty: %s", w.Raw)
		}
		if got, want := w.Seq, int64(0); got != want {
			t.Fatalf("seq: got %d, want %d", got, want)
		}
		raw := sockRawFields(t, w.Raw)
		if got, want := string(raw["resumed"]), "false"; got != want {
			t.Fatalf("resumed: got %s, want %s", got, want)
		}
		for _, k := range []string{"meetings", "bots"} {
			if got, want := string(raw[k]), "[]"; got != want {
				t.Fatalf("%s: got %s, want %s (an array even when empty)", k, got, want)
			}
		}
		if got, want := string(raw["seq"]), "0"; got != want {
			t.Fatalf("seq: got %s, want a JSON integer %s", got, want)
		}
		// A second tab of the same user sees the same position.
		_, w2 := e.connect("welcome-empty", nil)
		if got, want := w2.Epoch, w.Epoch; got != want {
			t.Fatalf("second tab epoch: got %q, want %q", got, want)
		}
		c.expectSilence(100 * time.Millisecond)
	})

	t.Run("snapshot holds the live meetings at connect", func(t *testing.T) {
		e := newEnv(t)
		user := "welcome-live"
		e.mustPost(sockBody("meeting.started", 0, sockMeetingObj("older==", user, "Older", "2026-12-04T13:00:00Z")), http.StatusOK)
		e.mustPost(sockBody("meeting.started", 0, sockMeetingObj("newer/+", user, "Newer", "2026-12-04T15:00:00+01:00")), http.StatusOK)
		e.mustPost(sockBody("meeting.started", 0, sockMeetingObj("gone", user, "Gone", "2026-12-04T12:00:00Z")), http.StatusOK)
		e.mustPost(sockBody("meeting.ended", 0, sockMeetingObj("gone", user, "Gone", "2026-12-04T12:00:00Z")), http.StatusOK)
		e.mustPost(sockBody("meeting.started", 0, sockMeetingObj("other-user", "someone-else", "X", "2026-12-04T16:00:00Z")), http.StatusOK)

		c, w := e.connect(user, nil)
		if got, want := w.Seq, int64(4); got != want {
			t.Fatalf("seq: got %d, want %d (3 starts and 1 end)", got, want)
		}
		if w.Resumed {
			t.Fatalf("resumed without since: %s", w.Raw)
		}
		if got, want := len(w.Meetings), 2; got != want {
			t.Fatalf("meetings: got %d, want %d: %s", got, want, w.Raw)
		}
		// Newest start first; 15:00+01:00 is 14:00Z, after 13:00Z.
		if got, want := w.Meetings[0].UUID, "newer/+"; got != want {
			t.Fatalf("first meeting: got %q, want %q", got, want)
		}
		if got, want := w.Meetings[1].UUID, "older=="; got != want {
			t.Fatalf("second meeting: got %q, want %q", got, want)
		}
		var snap struct {
			Meetings []json.RawMessage `json:"meetings"`
		}
		if err := json.Unmarshal(w.Raw, &snap); err != nil {
			t.Fatal(err)
		}
		m := sockRawFields(t, snap.Meetings[0])
		if got, want := sockKeys(m), "duration,host_id,id,live,role,start_time,timezone,topic,type,uuid"; got != want {
			t.Fatalf("meeting keys: got %s, want %s", got, want)
		}
		for k, want := range map[string]string{
			"uuid": `"newer/+"`, "id": `"85746065432"`, "topic": `"Newer"`, "host_id": `"` + user + `"`,
			"type": "2", "start_time": `"2026-12-04T14:00:00.000Z"`, "duration": "30",
			"timezone": `"Europe/Berlin"`, "role": `"host"`, "live": "true",
		} {
			if got := string(m[k]); got != want {
				t.Fatalf("meeting %s: got %s, want %s", k, got, want)
			}
		}
		// The next live frame follows the snapshot's position.
		e.mustPost(sockBody("meeting.started", 0, sockMeetingObj("next", user, "Next", "2026-12-04T17:00:00Z")), http.StatusOK)
		f := c.read()
		if got, want := f.Seq, int64(5); got != want {
			t.Fatalf("next frame seq: got %d, want %d", got, want)
		}
	})

	t.Run("frame shape and time format", func(t *testing.T) {
		e := newEnv(t)
		user := "welcome-shape"
		c, w := e.connect(user, nil)
		at := time.Date(2026, 12, 4, 14, 0, 0, 123e6, time.UTC)
		e.mustPost(sockBody("meeting.started", at.UnixMilli(), sockMeetingObj("shape-1", user, "Shape", "2026-12-04T14:00:00Z")), http.StatusOK)
		f := c.read()
		raw := sockRawFields(t, f.Raw)
		if got, want := sockKeys(raw), "at,epoch,meeting,seq,type"; got != want {
			t.Fatalf("frame keys: got %s, want %s", got, want)
		}
		if got, want := f.Type, "meeting.started"; got != want {
			t.Fatalf("type: got %q, want %q", got, want)
		}
		if got, want := f.Epoch, w.Epoch; got != want {
			t.Fatalf("epoch: got %q, want %q", got, want)
		}
		if got, want := f.Seq, int64(1); got != want {
			t.Fatalf("seq: got %d, want %d", got, want)
		}
		if got, want := f.At, "2026-12-04T14:00:00.123Z"; got != want {
			t.Fatalf("at: got %q, want %q", got, want)
		}
		m := sockRawFields(t, raw["meeting"])
		if got, want := string(m["start_time"]), `"2026-12-04T14:00:00.000Z"`; got != want {
			t.Fatalf("start_time: got %s, want %s", got, want)
		}
		if _, ok := m["end_time"]; ok {
			t.Fatalf("live meeting has end_time: %s", raw["meeting"])
		}

		end := sockMeetingObj("shape-1", user, "Shape", "2026-12-04T14:00:00Z")
		end["end_time"] = "2026-12-04T15:30:00+01:00"
		e.mustPost(sockBody("meeting.ended", 0, end), http.StatusOK)
		f = c.read()
		if got, want := f.Type, "meeting.ended"; got != want {
			t.Fatalf("type: got %q, want %q", got, want)
		}
		if got, want := f.Seq, int64(2); got != want {
			t.Fatalf("seq: got %d, want %d", got, want)
		}
		if !sockTimeRE.MatchString(f.At) {
			t.Fatalf("at: got %q, want RFC 3339 UTC with milliseconds", f.At)
		}
		m = sockRawFields(t, sockRawFields(t, f.Raw)["meeting"])
		if got, want := string(m["end_time"]), `"2026-12-04T14:30:00.000Z"`; got != want {
			t.Fatalf("end_time: got %s, want %s", got, want)
		}
		if got, want := string(m["live"]), "false"; got != want {
			t.Fatalf("live: got %s, want %s", got, want)
		}
	})
}

func TestWSFanout(t *testing.T) {
	t.Run("every tab gets every frame in order", func(t *testing.T) {
		e := newEnv(t)
		user := "fan-a"
		var tabs []*wsClient
		for range 3 {
			c, _ := e.connect(user, nil)
			tabs = append(tabs, c)
		}
		const n = 6
		for i := range n {
			e.mustPost(event{Name: "meeting.started", UUID: fmt.Sprintf("fan-%d", i), Host: user, Topic: "T"}.body(), http.StatusOK)
		}
		for ti, c := range tabs {
			for i := range n {
				f := c.read()
				if got, want := f.Seq, int64(i+1); got != want {
					t.Fatalf("tab %d frame %d: seq %d, want %d", ti, i, got, want)
				}
				if got, want := f.Meeting.UUID, fmt.Sprintf("fan-%d", i); got != want {
					t.Fatalf("tab %d frame %d: uuid %q, want %q", ti, i, got, want)
				}
			}
		}
		// Counted once written: the client may read a frame just before.
		sockWaitMetric(e, `onair_ws_messages_sent_total{type="meeting.started"}`, 3*n)
	})

	t.Run("no frame of one user reaches another", func(t *testing.T) {
		e := newEnv(t)
		host, guest, stranger := "iso-host", "iso-guest", "iso-stranger"
		hostTab, _ := e.connect(host, nil)
		guestTab, _ := e.connect(guest, nil)
		strangerTab, _ := e.connect(stranger, nil)

		e.mustPost(event{Name: "meeting.started", UUID: "iso-m1", Host: host, Topic: "Shared"}.body(), http.StatusOK)
		e.mustPost(event{Name: "meeting.started", UUID: "iso-m2", Host: host, Topic: "Private"}.body(), http.StatusOK)
		e.mustPost(event{Name: "meeting.participant_joined", UUID: "iso-m1", Host: host, Topic: "Shared", Participant: guest}.body(), http.StatusOK)
		e.mustPost(event{Name: "meeting.ended", UUID: "iso-m1", Host: host, Topic: "Shared"}.body(), http.StatusOK)
		e.mustPost(event{Name: "meeting.started", UUID: "iso-mark", Host: stranger, Topic: "Mark"}.body(), http.StatusOK)

		type want struct {
			typ, uuid, role string
			seq             int64
		}
		check := func(name string, c *wsClient, user string, wants []want) {
			t.Helper()
			for i, w := range wants {
				f := c.read()
				if f.Type != w.typ || f.Meeting.UUID != w.uuid || f.Meeting.Role != w.role || f.Seq != w.seq {
					t.Fatalf("%s frame %d: got %s, want %s %s role %s seq %d", name, i, f.Raw, w.typ, w.uuid, w.role, w.seq)
				}
			}
		}
		check("host", hostTab, host, []want{
			{"meeting.started", "iso-m1", "host", 1},
			{"meeting.started", "iso-m2", "host", 2},
			{"meeting.ended", "iso-m1", "host", 3},
		})
		check("guest", guestTab, guest, []want{
			{"meeting.joined", "iso-m1", "participant", 1},
			{"meeting.ended", "iso-m1", "participant", 2},
		})
		// The stranger's own marker is its first frame: nothing of the others came before.
		check("stranger", strangerTab, stranger, []want{{"meeting.started", "iso-mark", "host", 1}})

		// Markers for host and guest prove nothing else was queued for them.
		e.mustPost(event{Name: "meeting.started", UUID: "iso-mark-host", Host: host, Topic: "Mark"}.body(), http.StatusOK)
		e.mustPost(event{Name: "meeting.started", UUID: "iso-mark-guest", Host: guest, Topic: "Mark"}.body(), http.StatusOK)
		check("host", hostTab, host, []want{{"meeting.started", "iso-mark-host", "host", 4}})
		check("guest", guestTab, guest, []want{{"meeting.started", "iso-mark-guest", "host", 3}})
		strangerTab.expectSilence(100 * time.Millisecond)
	})
}

// sockFailEnv is shared by the failure cases: a short hello timeout.
func sockFailEnv(t *testing.T) *testEnv {
	return newEnv(t, func(c *Config, h *hub.Options) { c.HelloTimeout = 300 * time.Millisecond })
}

func TestWSHelloFailures(t *testing.T) {
	e := sockFailEnv(t)
	now := time.Now()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	valid := jwt.MapClaims{"sub": "fail-user", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	expired, err := MintToken(e.tokKey, "fail-user", time.Hour, now.Add(-2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	forged, err := MintToken([]byte("not-the-token-secret"), "fail-user", time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	hello := func(tok string) []byte {
		b, _ := json.Marshal(map[string]any{"type": "hello", "token": tok})
		return b
	}
	// oversize is a valid hello padded to n bytes.
	oversize := func(n int) []byte {
		b := hello(e.token("fail-user"))
		pad := n - len(b) - len(`,"pad":""`)
		return append(append(b[:len(b)-1:len(b)-1], `,"pad":"`+strings.Repeat("x", pad)+`"`...), '}')
	}
	if got, want := len(oversize(4096)), 4096; got != want {
		t.Fatalf("padding helper: got %d bytes, want %d", got, want)
	}

	cases := []struct {
		name   string
		frames []any // []byte: text; binary: binary frame; nothing: send nothing
		code   websocket.StatusCode
		reason string
	}{
		{"no hello within the timeout", nil, closeHelloTimeout, "hello_timeout"},
		{"first frame not a hello", []any{[]byte(`{"type":"subscribe","token":"x"}`)}, closeBadHello, "protocol"},
		{"malformed json", []any{[]byte(`{"type":"hello",`)}, closeBadHello, "protocol"},
		{"json that is not an object", []any{[]byte(`["hello"]`)}, closeBadHello, "protocol"},
		{"since without seq", []any{[]byte(`{"type":"hello","token":"` + e.token("fail-user") + `","since":{"epoch":"x"}}`)}, closeBadHello, "protocol"},
		{"binary frame before the hello", []any{sockBinary(hello(e.token("fail-user")))}, websocket.StatusUnsupportedData, "protocol"},
		{"frame over 4 KiB before the hello", []any{oversize(4097)}, websocket.StatusMessageTooBig, "protocol"},
		{"missing token", []any{[]byte(`{"type":"hello"}`)}, closeUnauthorized, "auth"},
		{"empty token", []any{hello("")}, closeUnauthorized, "auth"},
		{"garbage token", []any{hello("not.a.jwt")}, closeUnauthorized, "auth"},
		{"expired token", []any{hello(expired)}, closeUnauthorized, "auth"},
		{"forged token", []any{hello(forged)}, closeUnauthorized, "auth"},
		{"alg none", []any{hello(sockJWT(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, valid))}, closeUnauthorized, "auth"},
		{"HS512 with the right secret", []any{hello(sockJWT(t, jwt.SigningMethodHS512, e.tokKey, valid))}, closeUnauthorized, "auth"},
		{"RS256", []any{hello(sockJWT(t, jwt.SigningMethodRS256, rsaKey, valid))}, closeUnauthorized, "auth"},
		{"no exp", []any{hello(sockJWT(t, jwt.SigningMethodHS256, e.tokKey, jwt.MapClaims{"sub": "fail-user", "iat": now.Unix()}))}, closeUnauthorized, "auth"},
		{"no sub", []any{hello(sockJWT(t, jwt.SigningMethodHS256, e.tokKey, jwt.MapClaims{"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}))}, closeUnauthorized, "auth"},
		{"not yet valid", []any{hello(sockJWT(t, jwt.SigningMethodHS256, e.tokKey, jwt.MapClaims{"sub": "fail-user", "nbf": now.Add(time.Hour).Unix(), "exp": now.Add(2 * time.Hour).Unix()}))}, closeUnauthorized, "auth"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := e.metric(`onair_ws_disconnects_total{reason="` + tc.reason + `"}`)
			c := e.dial(nil)
			for _, f := range tc.frames {
				switch f := f.(type) {
				case sockBinary:
					c.send(websocket.MessageBinary, f)
				case []byte:
					c.send(websocket.MessageText, f)
				}
			}
			sockCloseQuietly(c, tc.code)
			sockWaitMetric(e, `onair_ws_disconnects_total{reason="`+tc.reason+`"}`, before+1)
		})
	}

	t.Run("binary frame after the hello", func(t *testing.T) {
		c, _ := e.connect("fail-binary", nil)
		c.send(websocket.MessageBinary, []byte("{}"))
		sockCloseQuietly(c, websocket.StatusUnsupportedData)
	})
	t.Run("frame over 4 KiB after the hello", func(t *testing.T) {
		c, _ := e.connect("fail-big", nil)
		c.send(websocket.MessageText, oversize(4097))
		sockCloseQuietly(c, websocket.StatusMessageTooBig)
	})
	t.Run("frame of exactly 4 KiB is accepted", func(t *testing.T) {
		c := e.dial(nil)
		c.send(websocket.MessageText, oversize(4096))
		w := c.read()
		if got, want := w.Type, "welcome"; got != want {
			t.Fatalf("first frame: got %q, want %q", got, want)
		}
		c.send(websocket.MessageText, bytes.Repeat([]byte(" "), 4096))
		e.mustPost(event{Name: "meeting.started", UUID: "fail-4k", Host: "fail-user", Topic: "T"}.body(), http.StatusOK)
		if got, want := c.read().Type, "meeting.started"; got != want {
			t.Fatalf("after a 4096-byte frame: got %q, want %q", got, want)
		}
	})
	t.Run("text frames after the hello are ignored", func(t *testing.T) {
		c, _ := e.connect("fail-chatty", nil)
		c.sendJSON(map[string]any{"type": "hello", "token": "nonsense"})
		c.send(websocket.MessageText, []byte("not json"))
		e.mustPost(event{Name: "meeting.started", UUID: "fail-chatty-1", Host: "fail-chatty", Topic: "T"}.body(), http.StatusOK)
		if got, want := c.read().Type, "meeting.started"; got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	})
}

// sockBinary marks a frame to send as binary.
type sockBinary []byte

func TestWSOrigin(t *testing.T) {
	e := newEnv(t)
	dial := func(origin string) (*websocket.Conn, *http.Response, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h := http.Header{}
		if origin != "" {
			h.Set("Origin", origin)
		}
		c, resp, err := websocket.Dial(ctx, e.wsURL(), &websocket.DialOptions{HTTPHeader: h})
		if c != nil {
			t.Cleanup(func() { c.CloseNow() })
		}
		return c, resp, err
	}
	for _, origin := range []string{"http://evil.example", "http://app.example.evil.example", "https://app.example", "http://app.example:8080", "null"} {
		t.Run("foreign origin "+origin+" is refused", func(t *testing.T) {
			_, resp, err := dial(origin)
			if err == nil {
				t.Fatalf("dial succeeded, want 403")
			}
			if resp == nil {
				t.Fatalf("no response: %v", err)
			}
			if got, want := resp.StatusCode, http.StatusForbidden; got != want {
				t.Fatalf("status: got %d, want %d", got, want)
			}
		})
	}
	for _, origin := range []string{e.origin, ""} {
		name := "allowed origin"
		if origin == "" {
			name = "no origin"
		}
		t.Run(name, func(t *testing.T) {
			c, resp, err := dial(origin)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			if got, want := resp.StatusCode, http.StatusSwitchingProtocols; got != want {
				t.Fatalf("status: got %d, want %d", got, want)
			}
			cl := &wsClient{t: t, conn: c}
			sockHello(cl, e.token("origin-user"))
			if got, want := cl.read().Type, "welcome"; got != want {
				t.Fatalf("first frame: got %q, want %q", got, want)
			}
		})
	}
}

func TestWSTooManyTabs(t *testing.T) {
	e := newEnv(t, func(c *Config, h *hub.Options) { h.MaxTabs = 2 })
	user := "tabs-user"
	first, _ := e.connect(user, nil)
	second, _ := e.connect(user, nil)

	third := e.dial(nil)
	sockHello(third, e.token(user))
	sockCloseQuietly(third, closeTooManyTabs)
	sockWaitMetric(e, `onair_ws_disconnects_total{reason="too_many_tabs"}`, 1)

	// Another user is not affected.
	other, _ := e.connect("tabs-other", nil)

	// The open tabs still work.
	e.mustPost(event{Name: "meeting.started", UUID: "tabs-1", Host: user, Topic: "T"}.body(), http.StatusOK)
	for _, c := range []*wsClient{first, second} {
		if got, want := c.read().Meeting.UUID, "tabs-1"; got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}

	// Closing a tab frees its place.
	first.conn.Close(websocket.StatusNormalClosure, "")
	deadline := time.Now().Add(5 * time.Second)
	for e.hub.Tabs(user) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("tabs after a close: got %d, want 1", e.hub.Tabs(user))
		}
		time.Sleep(10 * time.Millisecond)
	}
	again, w := e.connect(user, nil)
	if got, want := w.Seq, int64(1); got != want {
		t.Fatalf("seq: got %d, want %d", got, want)
	}
	_ = again
	_ = other
}

func TestWSDeauthorized(t *testing.T) {
	e := newEnv(t)
	user := "deauth-user"
	other := "deauth-other"
	deauthAt := time.Now().Add(-30 * time.Second).Truncate(time.Millisecond)
	oldTok, err := MintToken(e.tokKey, user, time.Hour, deauthAt.Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}

	tabs := []*wsClient{}
	var firstEpoch string
	for range 2 {
		c := e.dial(nil)
		sockHello(c, oldTok)
		w := c.read()
		if got, want := w.Type, "welcome"; got != want {
			t.Fatalf("first frame: got %q, want %q", got, want)
		}
		firstEpoch = w.Epoch
		tabs = append(tabs, c)
	}
	otherTab, _ := e.connect(other, nil)
	e.mustPost(event{Name: "meeting.started", UUID: "deauth-m", Host: user, Topic: "T"}.body(), http.StatusOK)
	for _, c := range tabs {
		c.read()
	}

	e.mustPost(sockDeauthBody(user, deauthAt), http.StatusOK)
	t.Run("open tabs close with 4401", func(t *testing.T) {
		for _, c := range tabs {
			sockCloseQuietly(c, closeUnauthorized)
		}
		sockWaitMetric(e, `onair_ws_disconnects_total{reason="deauthorized"}`, 2)
	})
	t.Run("another user's tab stays open", func(t *testing.T) {
		e.mustPost(event{Name: "meeting.started", UUID: "deauth-other-m", Host: other, Topic: "T"}.body(), http.StatusOK)
		if got, want := otherTab.read().Meeting.UUID, "deauth-other-m"; got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	})
	t.Run("a token issued before is refused", func(t *testing.T) {
		c := e.dial(nil)
		sockHello(c, oldTok)
		sockCloseQuietly(c, closeUnauthorized)
		req, _ := http.NewRequest(http.MethodGet, e.http.URL+"/api/v1/me", nil)
		req.Header.Set("Authorization", "Bearer "+oldTok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got, want := resp.StatusCode, http.StatusUnauthorized; got != want {
			t.Fatalf("API with the old token: got %d, want %d", got, want)
		}
	})
	t.Run("a token without iat is refused", func(t *testing.T) {
		c := e.dial(nil)
		sockHello(c, sockJWT(t, jwt.SigningMethodHS256, e.tokKey, jwt.MapClaims{"sub": user, "exp": time.Now().Add(time.Hour).Unix()}))
		sockCloseQuietly(c, closeUnauthorized)
	})
	t.Run("a token issued after works", func(t *testing.T) {
		newTok, err := MintToken(e.tokKey, user, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		c := e.dial(nil)
		sockHello(c, newTok)
		w := c.read()
		if got, want := w.Type, "welcome"; got != want {
			t.Fatalf("first frame: got %q, want %q", got, want)
		}
		if w.Epoch == firstEpoch {
			t.Fatalf("epoch after returning: got the old %q, want a new one", w.Epoch)
		}
		if got, want := len(w.Meetings), 0; got != want {
			t.Fatalf("meetings after returning: got %d, want %d", got, want)
		}
		e.mustPost(event{Name: "meeting.started", UUID: "deauth-back", Host: user, Topic: "T"}.body(), http.StatusOK)
		f := c.read()
		if got, want := f.Meeting.UUID, "deauth-back"; got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
		if got, want := f.Seq, w.Seq+1; got != want {
			t.Fatalf("seq: got %d, want %d", got, want)
		}
		// The old token is still refused once the user is back.
		old := e.dial(nil)
		sockHello(old, oldTok)
		sockCloseQuietly(old, closeUnauthorized)
	})
}

// sockBigFrame is a frame of about size bytes for the flood.
func sockBigFrame(seq int64, size int) []byte {
	b, _ := json.Marshal(map[string]any{"type": "meeting.started", "seq": seq, "epoch": "flood", "pad": strings.Repeat("x", size)})
	return b
}

func TestWSSlowConsumer(t *testing.T) {
	e := newEnv(t, func(c *Config, h *hub.Options) {
		c.WriteTimeout = time.Second
		h.MaxQueue = 16
	})
	user, other := "slow-user", "slow-other"
	stuck, _ := e.connect(user, nil)
	healthy := []*wsClient{}
	for range 2 {
		c, _ := e.connect(user, nil)
		healthy = append(healthy, c)
	}
	otherTab, _ := e.connect(other, nil)

	const size = 64 << 10
	var seq int64
	dropped := false
	for seq < 400 {
		seq++
		e.hub.Publish(user, hub.Message{Seq: seq, Type: "meeting.started", Frame: sockBigFrame(seq, size)})
		if seq%10 == 0 {
			e.hub.Publish(other, hub.Message{Seq: seq / 10, Type: "meeting.started", Frame: sockBigFrame(seq/10, 16)})
			if got, want := otherTab.read().Seq, seq/10; got != want {
				t.Fatalf("other user's tab: seq %d, want %d", got, want)
			}
		}
		for i, c := range healthy {
			if got, want := c.read().Seq, seq; got != want {
				t.Fatalf("healthy tab %d: seq %d, want %d", i, got, want)
			}
		}
		if seq%16 == 0 && e.metric(`onair_ws_disconnects_total{reason="slow_consumer"}`) == 1 {
			dropped = true
			break
		}
	}
	if !dropped {
		sockWaitMetric(e, `onair_ws_disconnects_total{reason="slow_consumer"}`, 1)
	}
	// Healthy tabs go on receiving everything.
	for range 5 {
		seq++
		e.hub.Publish(user, hub.Message{Seq: seq, Type: "meeting.started", Frame: sockBigFrame(seq, 16)})
		for i, c := range healthy {
			if got, want := c.read().Seq, seq; got != want {
				t.Fatalf("healthy tab %d after the drop: seq %d, want %d", i, got, want)
			}
		}
	}
	if got, want := e.hub.Tabs(user), 2; got != want {
		// The stuck tab leaves the hub once its socket is gone.
		deadline := time.Now().Add(5 * time.Second)
		for e.hub.Tabs(user) != want && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if got = e.hub.Tabs(user); got != want {
			t.Fatalf("tabs of the slow user: got %d, want %d", got, want)
		}
	}

	// The stuck client reads again: frames in order, then the end.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var last int64
	for {
		_, b, err := stuck.conn.Read(ctx)
		if err != nil {
			code := websocket.CloseStatus(err)
			if code != websocket.StatusPolicyViolation && code != -1 {
				t.Fatalf("stuck client: close code %d (%v), want %d or a dropped connection", code, err, websocket.StatusPolicyViolation)
			}
			if code == -1 && ctx.Err() != nil {
				t.Fatalf("stuck client: connection still open after the drop")
			}
			t.Logf("stuck client: read %d frames, then %v", last, err)
			break
		}
		var f frame
		if err := json.Unmarshal(b, &f); err != nil {
			t.Fatal(err)
		}
		if f.Seq != last+1 {
			t.Fatalf("stuck client: seq %d after %d", f.Seq, last)
		}
		last = f.Seq
	}
	if got, want := e.metric(`onair_ws_disconnects_total{reason="slow_consumer"}`), 1.0; got != want {
		t.Fatalf("slow_consumer disconnects: got %v, want %v", got, want)
	}
	if got, want := e.metric(`onair_ws_disconnects_total{reason="client"}`), 0.0; got != want {
		t.Fatalf("client disconnects: got %v, want %v", got, want)
	}
	sockWaitMetric(e, "onair_ws_connections", 3)
}

func TestWSSlowConsumerBurst(t *testing.T) {
	// A burst far beyond the queue overflows it before the tab can write:
	// the frames already taken are written, then the close.
	e := newEnv(t, func(c *Config, h *hub.Options) { h.MaxQueue = 4 })
	user := "burst-user"
	c, _ := e.connect(user, nil)
	other, _ := e.connect("burst-other", nil)
	for seq := int64(1); seq <= 1000; seq++ {
		e.hub.Publish(user, hub.Message{Seq: seq, Type: "meeting.started", Frame: sockBigFrame(seq, 16)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var last int64
	for {
		_, b, err := c.conn.Read(ctx)
		if err != nil {
			if got, want := websocket.CloseStatus(err), websocket.StatusPolicyViolation; got != want {
				t.Fatalf("close: got code %d (%v), want %d", got, err, want)
			}
			var ce websocket.CloseError
			if errors.As(err, &ce) && ce.Reason != "slow consumer" {
				t.Fatalf("close reason: got %q, want %q", ce.Reason, "slow consumer")
			}
			break
		}
		var f frame
		if err := json.Unmarshal(b, &f); err != nil {
			t.Fatal(err)
		}
		if f.Seq != last+1 {
			t.Fatalf("seq %d after %d", f.Seq, last)
		}
		last = f.Seq
	}
	if last >= 1000 {
		t.Fatalf("all %d frames written: the queue never overflowed", last)
	}
	sockWaitMetric(e, `onair_ws_disconnects_total{reason="slow_consumer"}`, 1)
	// The other user's tab is untouched.
	e.mustPost(event{Name: "meeting.started", UUID: "burst-other-1", Host: "burst-other", Topic: "T"}.body(), http.StatusOK)
	if got, want := other.read().Meeting.UUID, "burst-other-1"; got != want {
		t.Fatalf("other user: got %q, want %q", got, want)
	}
}

func TestWSWriteTimeout(t *testing.T) {
	// A tab whose frame cannot be written within WriteTimeout cannot keep up,
	// even while its queue has room: it counts as a slow consumer.
	e := newEnv(t, func(c *Config, h *hub.Options) {
		c.WriteTimeout = 500 * time.Millisecond
		h.MaxQueueBytes = 64 << 20
	})
	user := "wto-user"
	stuck, _ := e.connect(user, nil)
	// 240 frames of 64 KiB: far more than loopback buffers hold, fewer than the queue's 256.
	for seq := int64(1); seq <= 240; seq++ {
		e.hub.Publish(user, hub.Message{Seq: seq, Type: "meeting.started", Frame: sockBigFrame(seq, 64<<10)})
	}
	sockWaitMetric(e, `onair_ws_disconnects_total{reason="slow_consumer"}`, 1)
	sockWaitMetric(e, "onair_ws_connections", 0)
	if got, want := e.metric(`onair_ws_disconnects_total{reason="client"}`), 0.0; got != want {
		t.Fatalf("client disconnects: got %v, want %v", got, want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		if _, _, err := stuck.conn.Read(ctx); err != nil {
			if code := websocket.CloseStatus(err); code != websocket.StatusPolicyViolation && code != -1 {
				t.Fatalf("close: got code %d (%v), want %d or a dropped connection", code, err, websocket.StatusPolicyViolation)
			}
			if ctx.Err() != nil {
				t.Fatalf("connection still open after the write timeout")
			}
			break
		}
	}
}

// sockTap records what a client connection reads, to count the server's pings.
type sockTap struct {
	net.Conn
	mu  sync.Mutex
	buf bytes.Buffer
}

func (c *sockTap) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.buf.Write(p[:n])
	c.mu.Unlock()
	return n, err
}

// pings counts the ping frames received after the handshake.
func (c *sockTap) pings() int {
	c.mu.Lock()
	b := bytes.Clone(c.buf.Bytes())
	c.mu.Unlock()
	i := bytes.Index(b, []byte("\r\n\r\n"))
	if i < 0 {
		return 0
	}
	b = b[i+4:]
	n := 0
	for len(b) >= 2 {
		op, l, hdr := b[0]&0x0f, int(b[1]&0x7f), 2
		switch l {
		case 126:
			if len(b) < 4 {
				return n
			}
			l, hdr = int(b[2])<<8|int(b[3]), 4
		case 127:
			if len(b) < 10 {
				return n
			}
			l = 0
			for _, x := range b[2:10] {
				l = l<<8 | int(x)
			}
			hdr = 10
		}
		if b[1]&0x80 != 0 {
			hdr += 4
		}
		if len(b) < hdr+l {
			return n
		}
		if op == 0x9 {
			n++
		}
		b = b[hdr+l:]
	}
	return n
}

// dialTapped opens a socket whose received bytes are kept, to count pings.
func dialTapped(t *testing.T, e *testEnv) (*websocket.Conn, *sockTap) {
	t.Helper()
	var tap *sockTap
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		tap = &sockTap{Conn: c}
		return tap, nil
	}}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, e.wsURL(), &websocket.DialOptions{HTTPClient: client})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.CloseNow() })
	return conn, tap
}

func TestWSPing(t *testing.T) {
	t.Run("a client that answers stays connected", func(t *testing.T) {
		e := newEnv(t, func(c *Config, h *hub.Options) {
			c.PingInterval = 250 * time.Millisecond
			c.PingTimeout = 300 * time.Millisecond
		})
		conn, tap := dialTapped(t, e)
		c := &wsClient{t: t, conn: conn}
		sockHello(c, e.token("ping-ok"))
		if got, want := c.read().Type, "welcome"; got != want {
			t.Fatalf("first frame: got %q, want %q", got, want)
		}
		// Keep reading (which answers pings) in the background.
		frames := make(chan []byte, 4)
		readCtx, stopReading := context.WithCancel(context.Background())
		defer stopReading()
		go func() {
			defer close(frames)
			for {
				_, b, err := conn.Read(readCtx)
				if err != nil {
					return
				}
				frames <- b
			}
		}()
		time.Sleep(2 * time.Second)
		if got := tap.pings(); got < 2 {
			t.Fatalf("pings in 2 s at a 250 ms interval: got %d, want at least 2", got)
		}
		if got, want := e.metric(`onair_ws_disconnects_total{reason="ping_timeout"}`), 0.0; got != want {
			t.Fatalf("ping_timeout disconnects: got %v, want %v", got, want)
		}
		if got, want := e.metric("onair_ws_connections"), 1.0; got != want {
			t.Fatalf("connections: got %v, want %v", got, want)
		}
		e.mustPost(event{Name: "meeting.started", UUID: "ping-1", Host: "ping-ok", Topic: "T"}.body(), http.StatusOK)
		select {
		case b, ok := <-frames:
			if !ok {
				t.Fatalf("connection closed, want a frame")
			}
			if !bytes.Contains(b, []byte(`"ping-1"`)) {
				t.Fatalf("got %s, want the ping-1 start", b)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no frame after 2 s of pings")
		}
	})

	t.Run("a client that stops answering is closed", func(t *testing.T) {
		e := newEnv(t, func(c *Config, h *hub.Options) {
			c.PingInterval = 250 * time.Millisecond
			c.PingTimeout = 300 * time.Millisecond
		})
		c, _ := e.connect("ping-dead", nil)
		healthy, _ := e.connect("ping-alive", nil)
		go func() { // the healthy tab answers pings
			for {
				if _, _, err := healthy.conn.Read(context.Background()); err != nil {
					return
				}
			}
		}()
		// c never reads again, so it never answers a ping.
		sockWaitMetric(e, `onair_ws_disconnects_total{reason="ping_timeout"}`, 1)
		sockWaitMetric(e, "onair_ws_connections", 1)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for {
			if _, _, err := c.conn.Read(ctx); err != nil {
				if ctx.Err() != nil {
					t.Fatalf("connection still open after the ping timeout")
				}
				break
			}
		}
		if got, want := e.metric(`onair_ws_disconnects_total{reason="ping_timeout"}`), 1.0; got != want {
			t.Fatalf("ping_timeout disconnects: got %v, want %v", got, want)
		}
	})
	t.Run("pongs that answer no ping keep no tab open", func(t *testing.T) {
		e := newEnv(t, func(c *Config, h *hub.Options) {
			c.PingInterval = 250 * time.Millisecond
			c.PingTimeout = 300 * time.Millisecond
		})
		conn, err := net.Dial("tcp", strings.TrimPrefix(e.http.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		hello, _ := json.Marshal(map[string]string{"type": "hello", "token": e.token("ping-liar")})
		req := "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
		if _, err := conn.Write(append([]byte(req), maskedTextFrame(hello)...)); err != nil {
			t.Fatal(err)
		}
		sockWaitMetric(e, "onair_ws_connections", 1)
		// It never reads, so it never sees a ping; it sends pongs of its own.
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			pong := append([]byte{0x8a, 0x80 | 8, 0, 0, 0, 0}, "12345678"...)
			for {
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
				if _, err := conn.Write(pong); err != nil {
					return
				}
			}
		}()
		sockWaitMetric(e, `onair_ws_disconnects_total{reason="ping_timeout"}`, 1)
		sockWaitMetric(e, "onair_ws_connections", 0)
	})
}

// Pings are written straight to the socket, beside the frames onair and
// the library write: a ping must never land inside a frame. Large frames
// (several writes each), pings every tick and the client's own pings (the
// library answers them) go on at once; the client reads every frame whole.
func TestWSPingBetweenFrames(t *testing.T) {
	e := newEnv(t, func(c *Config, h *hub.Options) {
		c.PingInterval = 5 * time.Millisecond
		c.PingTimeout = 2 * time.Second
	})
	conn, tap := dialTapped(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn.SetReadLimit(1 << 20)
	c := &wsClient{t: t, conn: conn}
	sockHello(c, e.token("ping-busy"))
	if got, want := c.read().Type, "welcome"; got != want {
		t.Fatalf("first frame: got %q, want %q", got, want)
	}

	const events = 300
	frames := make(chan frame, events)
	readErr := make(chan error, 1)
	go func() {
		for {
			_, b, err := conn.Read(ctx)
			if err != nil {
				readErr <- err
				return
			}
			var f frame
			if err := json.Unmarshal(b, &f); err != nil {
				readErr <- fmt.Errorf("frame %.40q: %w", b, err)
				return
			}
			frames <- f
		}
	}()
	clientPings := make(chan int, 1)
	go func() {
		n := 0
		for ctx.Err() == nil && conn.Ping(ctx) == nil {
			n++
		}
		clientPings <- n
	}()
	topic := strings.Repeat("a long meeting topic ", 400) // ~8 KB: a frame takes several writes
	go func() {
		for i := range events {
			e.mustPost(event{Name: "meeting.started", UUID: fmt.Sprintf("busy-%d", i), Host: "ping-busy", Topic: topic}.body(), http.StatusOK)
		}
	}()
	var last int64
	for range events {
		select {
		case f := <-frames:
			if f.Seq != last+1 {
				t.Fatalf("seq %d after %d", f.Seq, last)
			}
			last = f.Seq
		case err := <-readErr:
			t.Fatalf("after seq %d: %v", last, err)
		case <-ctx.Done():
			t.Fatalf("after seq %d: timed out", last)
		}
	}
	if got := tap.pings(); got < 10 {
		t.Fatalf("server pings: got %d, want at least 10", got)
	}
	if got, want := e.metric("onair_ws_connections"), 1.0; got != want {
		t.Fatalf("connections: got %v, want %v", got, want)
	}
	cancel()
	if got := <-clientPings; got < 10 {
		t.Fatalf("client pings answered: got %d, want at least 10", got)
	}
}

func TestWSShutdown(t *testing.T) {
	e := newEnv(t)
	a, _ := e.connect("shut-a", nil)
	b1, _ := e.connect("shut-b", nil)
	b2, _ := e.connect("shut-b", nil)
	pending := e.dial(nil) // no hello yet
	// A client that does not read during the stop never answers the close:
	// the stop does not wait for it beyond the close grace.
	silent, _ := e.connect("shut-silent", nil)
	sockWaitMetric(e, "onair_ws_connections", 4)

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- e.srv.Close(ctx)
	}()
	for _, c := range []*wsClient{a, b1, b2, pending} {
		sockCloseQuietly(c, websocket.StatusServiceRestart)
	}
	if err := <-done; err != nil {
		t.Fatalf("Close: %v", err)
	}
	sockCloseQuietly(silent, websocket.StatusServiceRestart) // the 1012 waited in its buffer
	if got, want := e.metric("onair_ws_connections"), 0.0; got != want {
		t.Fatalf("connections: got %v, want %v", got, want)
	}
	if got, want := e.metric(`onair_ws_disconnects_total{reason="shutdown"}`), 5.0; got != want {
		t.Fatalf("shutdown disconnects: got %v, want %v", got, want)
	}
	t.Run("a socket opened after the close gets 1012", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, _, err := websocket.Dial(ctx, e.wsURL(), nil)
		if err != nil {
			return // refusing the handshake is fine too
		}
		defer conn.CloseNow()
		c := &wsClient{t: t, conn: conn}
		if err := conn.Write(ctx, websocket.MessageText, []byte(`{"type":"hello","token":"`+e.token("shut-late")+`"}`)); err != nil && !errors.Is(err, io.EOF) {
			t.Logf("write hello: %v", err)
		}
		sockCloseQuietly(c, websocket.StatusServiceRestart)
	})
}

func TestWSMetrics(t *testing.T) {
	e := newEnv(t)
	if got, want := e.metric("onair_ws_connections"), 0.0; got != want {
		t.Fatalf("connections at start: got %v, want %v", got, want)
	}
	if got, want := e.metric("onair_push_latency_seconds_count"), 0.0; got != want {
		t.Fatalf("push latency count at start: got %v, want %v", got, want)
	}
	a, _ := e.connect("metric-a", nil)
	b, _ := e.connect("metric-a", nil)
	sockWaitMetric(e, "onair_ws_connections", 2)
	if got, want := e.metric(`onair_ws_messages_sent_total{type="welcome"}`), 2.0; got != want {
		t.Fatalf("welcome frames: got %v, want %v", got, want)
	}

	e.mustPost(event{Name: "meeting.started", UUID: "metric-1", Host: "metric-a", Topic: "T"}.body(), http.StatusOK)
	a.read()
	b.read()
	sockWaitMetric(e, `onair_ws_messages_sent_total{type="meeting.started"}`, 2)
	sockWaitMetric(e, "onair_push_latency_seconds_count", 2)
	e.mustPost(event{Name: "meeting.ended", UUID: "metric-1", Host: "metric-a", Topic: "T"}.body(), http.StatusOK)
	a.read()
	b.read()
	sockWaitMetric(e, `onair_ws_messages_sent_total{type="meeting.ended"}`, 2)
	sockWaitMetric(e, "onair_push_latency_seconds_count", 4)

	a.conn.Close(websocket.StatusNormalClosure, "")
	sockWaitMetric(e, "onair_ws_connections", 1)
	sockWaitMetric(e, `onair_ws_disconnects_total{reason="client"}`, 1)
	b.conn.CloseNow()
	sockWaitMetric(e, "onair_ws_connections", 0)
	sockWaitMetric(e, `onair_ws_disconnects_total{reason="client"}`, 2)

	// A socket refused at the hello never counts as a connection.
	c := e.dial(nil)
	sockHello(c, "bad")
	sockCloseQuietly(c, closeUnauthorized)
	if got, want := e.metric("onair_ws_connections"), 0.0; got != want {
		t.Fatalf("connections after a refused hello: got %v, want %v", got, want)
	}
}
