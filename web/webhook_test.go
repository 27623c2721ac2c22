package web

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"onair/hub"
	"onair/store"
	"onair/zoom"
)

// payloadDir holds Zoom's documented example deliveries; the repository and
// shared/ sit side by side.
const payloadDir = "../../shared/zoom/payloads"

// whNow is the current x-zm-request-timestamp.
func whNow() string { return strconv.FormatInt(time.Now().Unix(), 10) }

// whLive returns user's live meetings from GET /api/v1/meetings/live.
func whLive(e *testEnv, user string) []store.Meeting {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.http.URL+"/api/v1/meetings/live", nil)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e.token(user))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("live meetings: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("live meetings: got %d (%s), want 200", resp.StatusCode, b)
	}
	var out struct {
		Meetings []store.Meeting `json:"meetings"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		e.t.Fatalf("live meetings %s: %v", b, err)
	}
	return out.Meetings
}

// whLiveUUIDs is whLive reduced to the uuids.
func whLiveUUIDs(e *testEnv, user string) []string {
	e.t.Helper()
	var uuids []string
	for _, m := range whLive(e, user) {
		uuids = append(uuids, m.UUID)
	}
	return uuids
}

// whMetrics reads every series of /metrics: "name{labels}" → value.
func whMetrics(e *testEnv) map[string]float64 {
	e.t.Helper()
	resp, err := http.Get(e.http.URL + "/metrics")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			e.t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// whSum adds up the series of name whose labels contain every one of labels.
func whSum(m map[string]float64, name string, labels ...string) float64 {
	var sum float64
	for series, v := range m {
		if series != name && !strings.HasPrefix(series, name+"{") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(series, l)
		}
		if ok {
			sum += v
		}
	}
	return sum
}

// whWebhooks is onair_webhooks_total{event,outcome}.
func whWebhooks(event, outcome string) string {
	return fmt.Sprintf(`onair_webhooks_total{event=%q,outcome=%q}`, event, outcome)
}

// whDB opens a second, query-only connection pool on the env's database.
func whDB(t testing.TB, e *testEnv) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+e.dbPath+"?_busy_timeout=5000&_query_only=true")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// whRows counts what the database holds: deliveries, meetings, members, events.
func whRows(t testing.TB, db *sql.DB) string {
	t.Helper()
	var parts []string
	for _, table := range []string{"delivery_keys", "meetings", "meeting_members", "events", "users", "deauthorizations"} {
		var n int
		if err := db.QueryRow(`SELECT COUNT(*) FROM ` + table).Scan(&n); err != nil {
			t.Fatalf("count %s: %v", table, err)
		}
		parts = append(parts, fmt.Sprintf("%s=%d", table, n))
	}
	return strings.Join(parts, " ")
}

// whBodyOfSize is a meeting.started delivery of exactly n bytes (n ≥ 200).
func whBodyOfSize(n int, uuid, host string) []byte {
	head := fmt.Sprintf(`{"event":"meeting.started","event_ts":%d,"payload":{"object":{"uuid":%q,"host_id":%q,"id":"1","topic":"big"},"padding":"`,
		time.Now().UnixMilli(), uuid, host)
	tail := `"}}`
	return []byte(head + strings.Repeat("x", n-len(head)-len(tail)) + tail)
}

// whExpectFrame reads the next frame and requires its type, uuid and seq.
func whExpectFrame(t testing.TB, c *wsClient, typ, uuid string, seq int64) frame {
	t.Helper()
	f := c.read()
	if f.Type != typ || f.Meeting == nil || f.Meeting.UUID != uuid || f.Seq != seq {
		t.Fatalf("frame: got %s, want %s of %q with seq %d", f.Raw, typ, uuid, seq)
	}
	return f
}

// TestWebhookRejected covers every request that must be refused: each is
// refused with its status, stores nothing, pushes nothing, and does not
// spoil the same delivery sent correctly afterwards.
func TestWebhookRejected(t *testing.T) {
	e := newEnv(t)
	db := whDB(t, e)
	c, _ := e.connect("host1", nil)
	skew := 5 * time.Minute
	at := func(d time.Duration) string { return strconv.FormatInt(time.Now().Add(d).Unix(), 10) }
	sig := func(secret, ts string, body []byte) string { return zoom.Sign([]byte(secret), ts, body) }
	good := string(e.secret)

	type headers struct{ ts, sig string }
	cases := []struct {
		name    string
		status  int
		headers func(body []byte) headers
	}{
		{"bad signature", 401, func(b []byte) headers { return headers{whNow(), "v0=" + strings.Repeat("ab", 32)} }},
		{"missing signature", 401, func(b []byte) headers { return headers{whNow(), ""} }},
		{"wrong secret", 401, func(b []byte) headers { ts := whNow(); return headers{ts, sig("not-the-secret", ts, b)} }},
		{"signature of another body", 401, func(b []byte) headers { ts := whNow(); return headers{ts, sig(good, ts, append(b, ' '))} }},
		{"signature of another timestamp", 401, func(b []byte) headers { return headers{whNow(), sig(good, at(-time.Second), b)} }},
		{"uppercase scheme", 401, func(b []byte) headers {
			ts := whNow()
			return headers{ts, "V0=" + strings.TrimPrefix(sig(good, ts, b), "v0=")}
		}},
		{"uppercase hex", 401, func(b []byte) headers {
			ts := whNow()
			return headers{ts, "v0=" + strings.ToUpper(strings.TrimPrefix(sig(good, ts, b), "v0="))}
		}},
		{"missing timestamp", 401, func(b []byte) headers { return headers{"", sig(good, "", b)} }},
		{"malformed timestamp", 401, func(b []byte) headers { return headers{"soon", sig(good, "soon", b)} }},
		{"timestamp with a sign", 401, func(b []byte) headers { ts := "+" + whNow(); return headers{ts, sig(good, ts, b)} }},
		{"timestamp in milliseconds", 401, func(b []byte) headers {
			ts := strconv.FormatInt(time.Now().UnixMilli(), 10)
			return headers{ts, sig(good, ts, b)}
		}},
		{"stale timestamp", 401, func(b []byte) headers { ts := at(-skew - time.Minute); return headers{ts, sig(good, ts, b)} }},
		{"future timestamp", 401, func(b []byte) headers { ts := at(skew + time.Minute); return headers{ts, sig(good, ts, b)} }},
	}
	var seq int64
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			uuid := fmt.Sprintf("rej/%d+x==", i)
			body := event{Name: zoom.EventMeetingStarted, UUID: uuid, Host: "host1", Topic: tc.name}.body()
			before, rows := whMetrics(e), whRows(t, db)
			h := tc.headers(body)
			resp := e.postWith(body, h.ts, h.sig)
			if got, want := resp.StatusCode, tc.status; got != want {
				t.Fatalf("status: got %d, want %d", got, want)
			}
			if got, want := whRows(t, db), rows; got != want {
				t.Fatalf("rows after a rejected delivery: got %s, want %s", got, want)
			}
			if got := whLiveUUIDs(e, "host1"); slices.Contains(got, uuid) {
				t.Fatalf("live meetings after a rejected delivery: %q", got)
			}
			after := whMetrics(e)
			if got, want := after[whWebhooks("unverified", "rejected")]-before[whWebhooks("unverified", "rejected")], 1.0; got != want {
				t.Fatalf("unverified/rejected grew by %v, want %v", got, want)
			}
			if got, want := after["onair_webhook_last_received_timestamp_seconds"], before["onair_webhook_last_received_timestamp_seconds"]; got != want {
				t.Fatalf("last received moved from %v to %v on a rejected delivery", want, got)
			}
			// Had the rejected one been stored, its frame (or its
			// deduplication key) would show up now.
			e.mustPost(body, http.StatusOK)
			seq++
			whExpectFrame(t, c, "meeting.started", uuid, seq)
		})
	}
	t.Run("within the window", func(t *testing.T) {
		for i, d := range []time.Duration{-skew + 30*time.Second, skew - 30*time.Second} {
			uuid := fmt.Sprintf("window-%d", i)
			body := event{Name: zoom.EventMeetingStarted, UUID: uuid, Host: "host1"}.body()
			ts := at(d)
			if got, want := e.postWith(body, ts, zoom.Sign(e.secret, ts, body)).StatusCode, http.StatusOK; got != want {
				t.Fatalf("timestamp %v from now: got %d, want %d", d, got, want)
			}
			seq++
			whExpectFrame(t, c, "meeting.started", uuid, seq)
		}
	})
	// expectSilence ends the connection (a Read whose context expires closes it): last.
	c.expectSilence(300 * time.Millisecond)
}

// TestWebhookMaxSkew: the window follows the configuration.
func TestWebhookMaxSkew(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *hub.Options) { c.MaxSkew = 10 * time.Second })
	c, _ := e.connect("host1", nil)
	var seq int64
	for _, tc := range []struct {
		name   string
		offset time.Duration
		status int
	}{
		{"30 s old", -30 * time.Second, 401},
		{"30 s ahead", 30 * time.Second, 401},
		{"3 s old", -3 * time.Second, 200},
		{"3 s ahead", 3 * time.Second, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			uuid := "skew " + tc.name
			body := event{Name: zoom.EventMeetingStarted, UUID: uuid, Host: "host1"}.body()
			ts := strconv.FormatInt(time.Now().Add(tc.offset).Unix(), 10)
			if got, want := e.postWith(body, ts, zoom.Sign(e.secret, ts, body)).StatusCode, tc.status; got != want {
				t.Fatalf("status: got %d, want %d", got, want)
			}
			if tc.status == 200 {
				seq++
				whExpectFrame(t, c, "meeting.started", uuid, seq)
			} else if got := whLiveUUIDs(e, "host1"); slices.Contains(got, uuid) {
				t.Fatalf("live after a stale delivery: %q", got)
			}
		})
	}
	c.expectSilence(300 * time.Millisecond)
}

// TestWebhookBodyLengths: a body is read whole however its length is
// given: chunked, declared and small (read into a buffer of that size),
// declared and large (grown as it comes); a body shorter than declared is
// 400 and changes nothing.
func TestWebhookBodyLengths(t *testing.T) {
	e := newEnv(t)
	db := whDB(t, e)
	c, _ := e.connect("host1", nil)
	post := func(body []byte, chunked bool) int {
		t.Helper()
		var r io.Reader = bytes.NewReader(body)
		if chunked {
			r = struct{ io.Reader }{r} // no length known: Transfer-Encoding: chunked
		}
		req, err := http.NewRequest(http.MethodPost, e.http.URL+"/webhooks/zoom", r)
		if err != nil {
			t.Fatal(err)
		}
		ts := whNow()
		req.Header.Set(zoom.HeaderTimestamp, ts)
		req.Header.Set(zoom.HeaderSignature, zoom.Sign(e.secret, ts, body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for i, tc := range []struct {
		name    string
		size    int
		chunked bool
	}{
		{"chunked", 2 << 10, true},
		{"declared, small", 2 << 10, false},
		{"declared, over 16 KiB", 20 << 10, false},
	} {
		uuid := "len " + tc.name
		if got := post(whBodyOfSize(tc.size, uuid, "host1"), tc.chunked); got != 200 {
			t.Fatalf("%s: status %d, want 200", tc.name, got)
		}
		whExpectFrame(t, c, "meeting.started", uuid, int64(i+1))
	}

	// Declared 1,000 bytes, sent 300, then the sending side shut.
	rows := whRows(t, db)
	body := whBodyOfSize(1000, "short", "host1")
	ts := whNow()
	conn, err := net.Dial("tcp", e.http.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /webhooks/zoom HTTP/1.1\r\nHost: onair\r\nContent-Type: application/json\r\n%s: %s\r\n%s: %s\r\nContent-Length: %d\r\n\r\n%s",
		zoom.HeaderTimestamp, ts, zoom.HeaderSignature, zoom.Sign(e.secret, ts, body), len(body), body[:300])
	conn.(*net.TCPConn).CloseWrite()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a short body: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("short body: status %d, want 400", resp.StatusCode)
	}
	if got := whRows(t, db); got != rows {
		t.Fatalf("rows after a short body: got %s, want %s", got, rows)
	}
	c.expectSilence(300 * time.Millisecond)
}

// TestWebhookBodyTooLarge: over 1 MiB is 413 before anything else.
func TestWebhookBodyTooLarge(t *testing.T) {
	e := newEnv(t)
	db := whDB(t, e)
	c, _ := e.connect("host1", nil)
	const mib = 1 << 20
	for _, tc := range []struct {
		name   string
		size   int
		signed bool
		status int
	}{
		{"1 MiB + 1, bad signature", mib + 1, false, 413},
		{"1 MiB + 1, signed", mib + 1, true, 413},
		{"2 MiB, bad signature", 2 * mib, false, 413},
		{"exactly 1 MiB, bad signature", mib, false, 401},
		{"exactly 1 MiB, signed", mib, true, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			uuid := "big " + tc.name
			body := whBodyOfSize(tc.size, uuid, "host1")
			if got, want := len(body), tc.size; got != want {
				t.Fatalf("body size: got %d, want %d", got, want)
			}
			rows := whRows(t, db)
			ts, sig := whNow(), "v0="+strings.Repeat("00", 32)
			if tc.signed {
				sig = zoom.Sign(e.secret, ts, body)
			}
			resp := e.postWith(body, ts, sig)
			if got, want := resp.StatusCode, tc.status; got != want {
				t.Fatalf("status: got %d, want %d", got, want)
			}
			if tc.status != 200 {
				if got, want := whRows(t, db), rows; got != want {
					t.Fatalf("rows: got %s, want %s", got, want)
				}
				return
			}
			whExpectFrame(t, c, "meeting.started", uuid, 1)
		})
	}
	c.expectSilence(300 * time.Millisecond)
	if got, want := e.metric(whWebhooks("unverified", "rejected")), 4.0; got != want {
		t.Fatalf("unverified/rejected: got %v, want %v", got, want)
	}
}

// TestWebhookMalformed: verified but not a Zoom event → 400, nothing stored.
func TestWebhookMalformed(t *testing.T) {
	e := newEnv(t)
	db := whDB(t, e)
	c, _ := e.connect("host1", nil)
	for _, tc := range []struct{ name, body string }{
		{"empty", ``},
		{"not JSON", `meeting.started`},
		{"truncated JSON", `{"event":"meeting.started","payload":{"object":{"uuid":"m1","host_id":"host1"}}`},
		{"array", `[{"event":"meeting.started","payload":{"object":{"uuid":"m1","host_id":"host1"}}}]`},
		{"null", `null`},
		{"no event", `{"event_ts":1,"payload":{"object":{"uuid":"m1","host_id":"host1"}}}`},
		{"empty event", `{"event":"","payload":{"object":{"uuid":"m1","host_id":"host1"}}}`},
		{"event not a string", `{"event":{"name":"meeting.started"},"payload":{"object":{"uuid":"m1","host_id":"host1"}}}`},
		{"trailing garbage", `{"event":"meeting.started","payload":{"object":{"uuid":"m1","host_id":"host1"}}}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, rows := whMetrics(e), whRows(t, db)
			resp := e.post([]byte(tc.body))
			if got, want := resp.StatusCode, http.StatusBadRequest; got != want {
				t.Fatalf("status: got %d, want %d", got, want)
			}
			var errBody struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&errBody); err != nil || errBody.Error.Code == "" {
				t.Fatalf("error body: %v %+v", err, errBody)
			}
			if got, want := whRows(t, db), rows; got != want {
				t.Fatalf("rows: got %s, want %s", got, want)
			}
			after := whMetrics(e)
			if got, want := whSum(after, "onair_webhooks_total", `outcome="rejected"`)-whSum(before, "onair_webhooks_total", `outcome="rejected"`), 1.0; got != want {
				t.Fatalf("rejected grew by %v, want %v", got, want)
			}
		})
	}
	c.expectSilence(300 * time.Millisecond)
	if got := whLive(e, "host1"); len(got) != 0 {
		t.Fatalf("live meetings: %+v", got)
	}
}

// TestWebhookURLValidation: the answer uses the secret that verified it.
func TestWebhookURLValidation(t *testing.T) {
	second := []byte("second-secret")
	e := newEnv(t, func(c *Config, _ *hub.Options) { c.WebhookSecrets = append(c.WebhookSecrets, second) })
	db := whDB(t, e)
	payload, err := os.ReadFile(filepath.Join(payloadDir, "endpoint.url_validation.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		secret []byte
		body   []byte
		plain  string
	}{
		{"signed by the second secret", second, payload, "qgg8vlvZRS6UYooatFL8Aw"},
		{"signed by the first secret", e.secret, payload, "qgg8vlvZRS6UYooatFL8Aw"},
		{"other token", second, []byte(`{"payload":{"plainToken":"a/b+c=="},"event_ts":1764856000001,"event":"endpoint.url_validation"}`), "a/b+c=="},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rows := whRows(t, db)
			ts := whNow()
			resp := e.postWith(tc.body, ts, zoom.Sign(tc.secret, ts, tc.body))
			if got, want := resp.StatusCode, http.StatusOK; got != want {
				t.Fatalf("status: got %d, want %d", got, want)
			}
			var got map[string]any
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
				t.Fatal(err)
			}
			want := map[string]any{"plainToken": tc.plain, "encryptedToken": zoom.EncryptToken(tc.secret, tc.plain)}
			if len(got) != len(want) || got["plainToken"] != want["plainToken"] || got["encryptedToken"] != want["encryptedToken"] {
				t.Fatalf("answer: got %v, want %v", got, want)
			}
			if got, want := whRows(t, db), rows; got != want {
				t.Fatalf("rows: got %s, want %s", got, want)
			}
		})
	}
	t.Run("known vector", func(t *testing.T) {
		ts := whNow()
		resp := e.postWith(payload, ts, zoom.Sign(e.secret, ts, payload))
		var got struct{ EncryptedToken string }
		if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
			t.Fatal(err)
		}
		// openssl dgst -sha256 -hmac webhook-secret <<< qgg8vlvZRS6UYooatFL8Aw (no newline)
		if want := "6888178e55e7626f94e88a56224baefbb707ceaa8ec37ce09efc6bbf66b89ea8"; got.EncryptedToken != want {
			t.Fatalf("encryptedToken: got %s, want %s", got.EncryptedToken, want)
		}
	})
	t.Run("badly signed", func(t *testing.T) {
		ts := whNow()
		resp := e.postWith(payload, ts, zoom.Sign([]byte("third"), ts, payload))
		if got, want := resp.StatusCode, http.StatusUnauthorized; got != want {
			t.Fatalf("status: got %d, want %d", got, want)
		}
		if b, _ := io.ReadAll(resp.Body); bytes.Contains(b, []byte("encryptedToken")) {
			t.Fatalf("answer to a badly signed validation: %s", b)
		}
	})
	if got, want := e.metric(whWebhooks(zoom.EventURLValidation, "accepted")), 4.0; got != want {
		t.Fatalf("url_validation/accepted: got %v, want %v", got, want)
	}
}

// TestWebhookSecretRotation: every configured secret verifies.
func TestWebhookSecretRotation(t *testing.T) {
	secrets := [][]byte{[]byte("old-secret"), []byte("new-secret"), []byte("other-app")}
	e := newEnv(t, func(c *Config, _ *hub.Options) { c.WebhookSecrets = secrets })
	c, _ := e.connect("host1", nil)
	for i, secret := range secrets {
		t.Run(string(secret), func(t *testing.T) {
			uuid := "rot-" + string(secret)
			body := event{Name: zoom.EventMeetingStarted, UUID: uuid, Host: "host1"}.body()
			ts := whNow()
			if got, want := e.postWith(body, ts, zoom.Sign(secret, ts, body)).StatusCode, http.StatusOK; got != want {
				t.Fatalf("status: got %d, want %d", got, want)
			}
			whExpectFrame(t, c, "meeting.started", uuid, int64(i+1))
		})
	}
	t.Run("unconfigured secret", func(t *testing.T) {
		body := event{Name: zoom.EventMeetingStarted, UUID: "rot-none", Host: "host1"}.body()
		ts := whNow()
		if got, want := e.postWith(body, ts, zoom.Sign([]byte("webhook-secret"), ts, body)).StatusCode, http.StatusUnauthorized; got != want {
			t.Fatalf("status: got %d, want %d", got, want)
		}
		c.expectSilence(300 * time.Millisecond)
	})
}

// TestWebhookIgnored: verified deliveries onair cannot act on are answered
// 200 (so Zoom does not retry) and recorded as ignored, with no effect.
func TestWebhookIgnored(t *testing.T) {
	e := newEnv(t)
	c, _ := e.connect("host1", nil)
	p, _ := e.connect("part1", nil)
	for _, tc := range []struct{ name, label, body string }{
		{"unknown event", "other", `{"event":"recording.completed","event_ts":1764856800123,"payload":{"object":{"uuid":"ign-1","host_id":"host1"}}}`},
		{"unknown event without payload", "other", `{"event":"meeting.sharing_started"}`},
		{"event name that is a number", "other", `{"event":42,"payload":{"object":{"uuid":"ign-2","host_id":"host1"}}}`},
		{"started without uuid", "meeting.started", `{"event":"meeting.started","event_ts":1764856800123,"payload":{"object":{"id":"1","host_id":"host1"}}}`},
		{"started with empty uuid", "meeting.started", `{"event":"meeting.started","event_ts":1764856800124,"payload":{"object":{"uuid":"","host_id":"host1"}}}`},
		{"started without host_id", "meeting.started", `{"event":"meeting.started","event_ts":1764856800125,"payload":{"object":{"uuid":"ign-3"}}}`},
		{"started without object", "meeting.started", `{"event":"meeting.started","event_ts":1764856800126,"payload":{}}`},
		{"webinar started without host_id", "webinar.started", `{"event":"webinar.started","event_ts":1764856800127,"payload":{"object":{"uuid":"ign-4"}}}`},
		{"joined without host_id", "meeting.participant_joined", `{"event":"meeting.participant_joined","event_ts":1764856800128,"payload":{"object":{"uuid":"ign-5","participant":{"id":"part1","join_time":"2026-12-04T14:01:40Z"}}}}`},
		{"joined without uuid", "meeting.participant_joined", `{"event":"meeting.participant_joined","event_ts":1764856800129,"payload":{"object":{"host_id":"host1","participant":{"id":"part1","join_time":"2026-12-04T14:01:40Z"}}}}`},
		{"left without uuid", "meeting.participant_left", `{"event":"meeting.participant_left","event_ts":1764856800130,"payload":{"object":{"host_id":"host1","participant":{"id":"part1","leave_time":"2026-12-04T14:01:40Z"}}}}`},
		{"ended without uuid", "meeting.ended", `{"event":"meeting.ended","event_ts":1764856800131,"payload":{"object":{"host_id":"host1"}}}`},
		{"deleted without uuid", "meeting.deleted", `{"event":"meeting.deleted","event_ts":1764856800132,"payload":{"object":{"id":81234567890,"host_id":"host1"}}}`},
		{"deauthorized without user_id", "app_deauthorized", `{"event":"app_deauthorized","payload":{"deauthorization_time":"2026-12-04T16:00:00.000Z"}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			series := whWebhooks(tc.label, "ignored")
			before := e.metric(series)
			e.mustPost([]byte(tc.body), http.StatusOK)
			if got, want := e.metric(series)-before, 1.0; got != want {
				t.Fatalf("%s grew by %v, want %v", series, got, want)
			}
		})
	}
	for _, u := range []string{"host1", "part1"} {
		if got := whLive(e, u); len(got) != 0 {
			t.Fatalf("live meetings of %s: %+v", u, got)
		}
	}
	// Nothing was pushed: the next frame of each is the one of a real start.
	e.mustPost(event{Name: zoom.EventParticipantJoined, UUID: "ign-ok", Host: "host1", Participant: "part1", PartTime: "2026-12-04T14:01:40Z"}.body(), http.StatusOK)
	whExpectFrame(t, c, "meeting.started", "ign-ok", 1)
	whExpectFrame(t, p, "meeting.joined", "ign-ok", 1)
	c.expectSilence(300 * time.Millisecond)
	p.expectSilence(10 * time.Millisecond)
}

// TestWebhookDuplicate: a redelivery is answered 200 and has no second effect.
func TestWebhookDuplicate(t *testing.T) {
	e := newEnv(t)
	h, _ := e.connect("host1", nil)
	p, _ := e.connect("part1", nil)
	ts := time.Now().UnixMilli()
	started := event{Name: zoom.EventMeetingStarted, TS: ts, UUID: "dup/1+==", Host: "host1"}.body()
	joined := event{Name: zoom.EventParticipantJoined, TS: ts + 1, UUID: "dup/1+==", Host: "host1", Participant: "part1", PartTime: "2026-12-04T14:01:40Z"}.body()
	left := event{Name: zoom.EventParticipantLeft, TS: ts + 2, UUID: "dup/1+==", Host: "host1", Participant: "part1", PartTime: "2026-12-04T14:05:00Z"}.body()

	retries := 0
	dupes := func(event string) float64 { return e.metric(whWebhooks(event, "duplicate")) }
	resend := func(t *testing.T, body []byte, event string) {
		t.Helper()
		before := dupes(event)
		// A retry may carry another request timestamp: it is still the same delivery.
		retries++
		ts := strconv.FormatInt(time.Now().Add(-time.Duration(retries)*time.Second).Unix(), 10)
		if got, want := e.postWith(body, ts, zoom.Sign(e.secret, ts, body)).StatusCode, http.StatusOK; got != want {
			t.Fatalf("redelivery: got %d, want %d", got, want)
		}
		if got, want := dupes(event)-before, 1.0; got != want {
			t.Fatalf("%s duplicates grew by %v, want %v", event, got, want)
		}
	}

	t.Run("started", func(t *testing.T) {
		e.mustPost(started, http.StatusOK)
		whExpectFrame(t, h, "meeting.started", "dup/1+==", 1)
		resend(t, started, zoom.EventMeetingStarted)
	})
	t.Run("joined", func(t *testing.T) {
		e.mustPost(joined, http.StatusOK)
		whExpectFrame(t, p, "meeting.joined", "dup/1+==", 1)
		e.mustPost(left, http.StatusOK)
		whExpectFrame(t, p, "meeting.left", "dup/1+==", 2)
		// The join again after the leave must not rejoin the participant.
		resend(t, joined, zoom.EventParticipantJoined)
		resend(t, left, zoom.EventParticipantLeft)
	})
	t.Run("same delivery re-serialised", func(t *testing.T) {
		var v map[string]any
		if err := json.Unmarshal(joined, &v); err != nil {
			t.Fatal(err)
		}
		v["extra"] = "ignored"
		body, _ := json.MarshalIndent(v, "", "  ")
		resend(t, body, zoom.EventParticipantJoined)
	})
	h.expectSilence(300 * time.Millisecond)
	p.expectSilence(10 * time.Millisecond)
	if got, want := whLiveUUIDs(e, "host1"), []string{"dup/1+=="}; !slices.Equal(got, want) {
		t.Fatalf("host live: got %q, want %q", got, want)
	}
	if got := whLive(e, "part1"); len(got) != 0 {
		t.Fatalf("participant live: %+v", got)
	}
	t.Run("unknown event", func(t *testing.T) {
		body := []byte(`{"event":"recording.completed","event_ts":1764856800123,"payload":{"object":{"uuid":"r1"}}}`)
		e.mustPost(body, http.StatusOK)
		resend(t, body, "other")
	})
	t.Run("deauthorized", func(t *testing.T) {
		body := []byte(`{"event":"app_deauthorized","payload":{"user_id":"gone","deauthorization_time":"2026-12-04T16:00:00.000Z","event_ts":"2026-12-04 16:00:00"}}`)
		e.mustPost(body, http.StatusOK)
		resend(t, body, zoom.EventAppDeauthorized)
	})
}

// TestWebhookMeetingIDAsNumber: payload.object.id is exposed as a string
// whether Zoom sent a number or a string.
func TestWebhookMeetingIDAsNumber(t *testing.T) {
	e := newEnv(t)
	h, _ := e.connect("host1", nil)
	p, _ := e.connect("part1", nil)
	uuid := "/num+id//x=="
	joined := fmt.Sprintf(`{"event":"meeting.participant_joined","event_ts":%d,"payload":{"account_id":"a","object":{
		"id":81234567890123,"uuid":%q,"host_id":"host1","topic":"Numbers","type":2,
		"participant":{"user_id":"1","id":"part1","participant_uuid":"pu","join_time":"2026-12-04T14:01:40Z"}}}}`,
		time.Now().UnixMilli(), uuid)
	e.mustPost([]byte(joined), http.StatusOK)
	for _, tc := range []struct {
		name string
		c    *wsClient
		typ  string
	}{{"host", h, "meeting.started"}, {"participant", p, "meeting.joined"}} {
		t.Run(tc.name, func(t *testing.T) {
			f := whExpectFrame(t, tc.c, tc.typ, uuid, 1)
			if !bytes.Contains(f.Raw, []byte(`"id":"81234567890123"`)) {
				t.Fatalf("frame without the id as a string: %s", f.Raw)
			}
		})
	}
	if got := whLive(e, "part1"); len(got) != 1 || got[0].ID != "81234567890123" || got[0].Role != "participant" {
		t.Fatalf("participant live: %+v", got)
	}
	deleted := fmt.Sprintf(`{"event":"meeting.deleted","event_ts":%d,"payload":{"object":{"id":81234567890123,"uuid":%q,"host_id":"host1"}}}`,
		time.Now().UnixMilli(), uuid)
	e.mustPost([]byte(deleted), http.StatusOK)
	for _, c := range []*wsClient{h, p} {
		f := whExpectFrame(t, c, "meeting.ended", uuid, 2)
		if f.Meeting.ID != "81234567890123" || f.Meeting.Live {
			t.Fatalf("ended frame: %s", f.Raw)
		}
	}
}

// TestWebhookUUIDs: uuids are base64-like and kept exactly as Zoom sent them.
func TestWebhookUUIDs(t *testing.T) {
	e := newEnv(t)
	h, _ := e.connect("host1", nil)
	uuids := []string{"4s5Dq2X+Qj2wZ0x7YyVh/g==", "/leading/slash==", "double//slash+", "+/=", "a%2Fb", "ünï côdé"}
	for i, uuid := range uuids {
		e.mustPost(event{Name: zoom.EventMeetingStarted, UUID: uuid, Host: "host1", Topic: uuid}.body(), http.StatusOK)
		f := whExpectFrame(t, h, "meeting.started", uuid, int64(i+1))
		if f.Meeting.Topic != uuid || f.Meeting.HostID != "host1" || f.Meeting.Role != "host" || !f.Meeting.Live {
			t.Fatalf("frame: %s", f.Raw)
		}
	}
	got := whLiveUUIDs(e, "host1")
	slices.Sort(got)
	want := slices.Clone(uuids)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("live: got %q, want %q", got, want)
	}
	for i, uuid := range uuids {
		e.mustPost(event{Name: zoom.EventMeetingEnded, UUID: uuid, Host: "host1"}.body(), http.StatusOK)
		whExpectFrame(t, h, "meeting.ended", uuid, int64(len(uuids)+i+1))
	}
	if got := whLive(e, "host1"); len(got) != 0 {
		t.Fatalf("live after the ends: %+v", got)
	}
}

// TestWebhookPayloadFiles: Zoom's documented deliveries take effect.
func TestWebhookPayloadFiles(t *testing.T) {
	e := newEnv(t)
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(payloadDir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	host, ada := "z8yBXksqT6GLlIS9ZfQbbw", "Qm9ZrVvXS0ix1n3bY2kP4w"
	h, _ := e.connect(host, nil)
	p, _ := e.connect(ada, nil)
	const weekly = "4s5Dq2X+Qj2wZ0x7YyVh/g=="
	e.mustPost(read("meeting.started.json"), http.StatusOK)
	f := whExpectFrame(t, h, "meeting.started", weekly, 1)
	if got, want := f.Meeting.StartTime.UTC().Format(time.RFC3339), "2026-12-04T14:00:00Z"; got != want {
		t.Fatalf("start_time: got %s, want %s", got, want)
	}
	if !strings.Contains(string(f.Raw), `"start_time":"2026-12-04T14:00:00.000Z"`) {
		t.Fatalf("start_time not RFC 3339 with milliseconds: %s", f.Raw)
	}
	e.mustPost(read("meeting.participant_joined.json"), http.StatusOK)
	whExpectFrame(t, p, "meeting.joined", weekly, 1)
	e.mustPost(read("webinar.started.json"), http.StatusOK)
	whExpectFrame(t, h, "meeting.started", "bq1x7mZXQPy2Jq0sA8Vd1Q==", 2)
	e.mustPost(read("meeting.participant_left.json"), http.StatusOK)
	whExpectFrame(t, p, "meeting.left", weekly, 2)
	e.mustPost(read("meeting.ended.json"), http.StatusOK)
	f = whExpectFrame(t, h, "meeting.ended", weekly, 3)
	if f.Meeting.EndTime == nil || f.Meeting.EndTime.UTC().Format(time.RFC3339) != "2026-12-04T14:30:00Z" {
		t.Fatalf("ended frame: %s", f.Raw)
	}
	if got, want := whLiveUUIDs(e, host), []string{"bq1x7mZXQPy2Jq0sA8Vd1Q=="}; !slices.Equal(got, want) {
		t.Fatalf("host live: got %q, want %q", got, want)
	}
	// meeting.deleted of a meeting never started: no frame, nothing live.
	e.mustPost(read("meeting.deleted.json"), http.StatusOK)
	e.mustPost(read("endpoint.url_validation.json"), http.StatusOK)
	e.mustPost(read("app_deauthorized.json"), http.StatusOK)
	h.expectClose(4401)
	p.expectSilence(300 * time.Millisecond)
	for _, ev := range []string{zoom.EventMeetingStarted, zoom.EventParticipantJoined, zoom.EventWebinarStarted,
		zoom.EventParticipantLeft, zoom.EventMeetingEnded, zoom.EventMeetingDeleted, zoom.EventURLValidation, zoom.EventAppDeauthorized} {
		if got, want := e.metric(whWebhooks(ev, "accepted")), 1.0; got != want {
			t.Fatalf("%s accepted: got %v, want %v", ev, got, want)
		}
	}
}

// TestWebhookStoreBusy: a delivery that cannot be committed answers 503
// well within Zoom's 3 s, stores nothing and pushes nothing; its retry
// takes effect once.
func TestWebhookStoreBusy(t *testing.T) {
	e := newEnv(t)
	h, _ := e.connect("host1", nil)
	db, err := sql.Open("sqlite3", "file:"+e.dbPath+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		t.Fatalf("take the write lock: %v", err)
	}
	locked := true
	unlock := func() {
		if locked {
			locked = false
			if _, err := conn.ExecContext(ctx, `ROLLBACK`); err != nil {
				t.Fatalf("release the write lock: %v", err)
			}
		}
	}
	defer unlock()

	body := event{Name: zoom.EventMeetingStarted, UUID: "busy/1+=", Host: "host1"}.body()
	start := time.Now()
	resp := e.post(body)
	elapsed := time.Since(start)
	if got, want := resp.StatusCode, http.StatusServiceUnavailable; got != want {
		t.Fatalf("status while the database is locked: got %d, want %d", got, want)
	}
	// Zoom gives up after 3 s: the 503 must come before that, so it retries.
	if elapsed >= 3*time.Second {
		t.Fatalf("503 after %v, want under 3 s", elapsed)
	}
	if got, want := e.metric(whWebhooks(zoom.EventMeetingStarted, "failed")), 1.0; got != want {
		t.Fatalf("failed: got %v, want %v", got, want)
	}
	if got := whLive(e, "host1"); len(got) != 0 {
		t.Fatalf("live while locked: %+v", got)
	}
	// The tab heard nothing while locked: its first frame is the retry's, seq 1.
	time.Sleep(300 * time.Millisecond)

	unlock()
	e.mustPost(body, http.StatusOK)
	whExpectFrame(t, h, "meeting.started", "busy/1+=", 1)
	e.mustPost(body, http.StatusOK) // a second retry: a duplicate
	h.expectSilence(300 * time.Millisecond)
	if got, want := whLiveUUIDs(e, "host1"), []string{"busy/1+="}; !slices.Equal(got, want) {
		t.Fatalf("live: got %q, want %q", got, want)
	}
	if got, want := e.metric(whWebhooks(zoom.EventMeetingStarted, "accepted")), 1.0; got != want {
		t.Fatalf("accepted: got %v, want %v", got, want)
	}
	if got, want := e.metric(whWebhooks(zoom.EventMeetingStarted, "duplicate")), 1.0; got != want {
		t.Fatalf("duplicate: got %v, want %v", got, want)
	}
}

// TestWebhookAfterClose: once the server is past its drain, webhooks answer
// 503 (Zoom retries them) and change nothing.
func TestWebhookAfterClose(t *testing.T) {
	e := newEnv(t)
	h, _ := e.connect("host1", nil)
	// During the drain period webhooks are served normally.
	e.srv.Drain()
	e.mustPost(event{Name: zoom.EventMeetingStarted, UUID: "m1", Host: "host1"}.body(), http.StatusOK)
	whExpectFrame(t, h, "meeting.started", "m1", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// The tab must be reading to answer the closing handshake, as browsers do.
	closed := make(chan error, 1)
	go func() {
		_, _, err := h.conn.Read(ctx)
		closed <- err
	}()
	if err := e.srv.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
	if got, want := websocket.CloseStatus(<-closed), websocket.StatusServiceRestart; got != want {
		t.Fatalf("tab closed with %d, want %d", got, want)
	}
	for _, ev := range []event{
		{Name: zoom.EventMeetingEnded, UUID: "m1", Host: "host1"},
		{Name: zoom.EventMeetingStarted, UUID: "m2", Host: "host1"},
	} {
		if got, want := e.post(ev.body()).StatusCode, http.StatusServiceUnavailable; got != want {
			t.Fatalf("%s after close: got %d, want %d", ev.Name, got, want)
		}
	}
	got, err := e.store.LiveMeetings(ctx, "host1")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].UUID != "m1" || !got[0].Live {
		t.Fatalf("live after close: %+v", got)
	}
	if got, want := e.metric(whWebhooks(zoom.EventMeetingEnded, "failed"))+e.metric(whWebhooks("unverified", "failed")), 1.0; got < want {
		t.Fatalf("failed deliveries after close: got %v, want at least %v", got, want)
	}
}

// TestWebhookMetricsAtStartup: every label value of CONTRACT §6 is exposed
// at 0 from the start.
func TestWebhookMetricsAtStartup(t *testing.T) {
	e := newEnv(t)
	m := whMetrics(e)
	events := []string{"meeting.started", "webinar.started", "meeting.ended", "webinar.ended", "meeting.deleted",
		"meeting.participant_joined", "meeting.participant_left", "webinar.participant_joined", "webinar.participant_left",
		"app_deauthorized", "endpoint.url_validation", "other", "unverified"}
	for _, ev := range zoom.KnownEvents {
		if !slices.Contains(events, ev) {
			events = append(events, ev)
		}
	}
	var series []string
	for _, ev := range events {
		for _, o := range []string{"accepted", "duplicate", "ignored", "rejected", "failed"} {
			series = append(series, whWebhooks(ev, o))
		}
	}
	for _, r := range []string{"client", "slow_consumer", "auth", "hello_timeout", "protocol", "ping_timeout",
		"too_many_tabs", "deauthorized", "logout", "shutdown"} {
		series = append(series, fmt.Sprintf(`onair_ws_disconnects_total{reason=%q}`, r))
	}
	for _, o := range []string{"dispatched", "retried", "failed", "cancelled"} {
		series = append(series, fmt.Sprintf(`onair_bot_requests_total{outcome=%q}`, o))
	}
	for _, c := range []string{"2xx", "4xx", "429", "5xx", "error"} {
		series = append(series, fmt.Sprintf(`onair_zoom_api_calls_total{status=%q}`, c))
	}
	for _, r := range []string{"started", "ended", "stale"} {
		series = append(series, fmt.Sprintf(`onair_live_repairs_total{repair=%q}`, r))
	}
	series = append(series, "onair_webhook_last_received_timestamp_seconds", "onair_webhook_duration_seconds_count",
		"onair_push_latency_seconds_count", "onair_ws_connections", "onair_live_meetings",
		"onair_bot_dispatch_latency_seconds_count", "onair_reconcile_runs_total")
	for _, s := range series {
		t.Run(s, func(t *testing.T) {
			v, ok := m[s]
			if !ok {
				t.Fatalf("series %s missing at start-up", s)
			}
			if v != 0 {
				t.Fatalf("series %s: got %v at start-up, want 0", s, v)
			}
		})
	}
}

// TestWebhookLastReceived: the gauge moves on verified deliveries only.
func TestWebhookLastReceived(t *testing.T) {
	e := newEnv(t)
	const gauge = "onair_webhook_last_received_timestamp_seconds"
	body := event{Name: zoom.EventMeetingStarted, UUID: "lr", Host: "host1"}.body()
	if got, want := e.postWith(body, whNow(), "v0="+strings.Repeat("00", 32)).StatusCode, http.StatusUnauthorized; got != want {
		t.Fatalf("status: got %d, want %d", got, want)
	}
	if got := e.metric(gauge); got != 0 {
		t.Fatalf("%s after a rejected delivery: got %v, want 0", gauge, got)
	}
	before := float64(time.Now().UnixMilli()) / 1000
	e.mustPost(body, http.StatusOK)
	after := float64(time.Now().UnixMilli()) / 1000
	got := e.metric(gauge)
	if got < math.Floor(before) || got > after+0.001 {
		t.Fatalf("%s: got %v, want between %v and %v", gauge, got, before, after)
	}
	time.Sleep(20 * time.Millisecond)
	ts := strconv.FormatInt(time.Now().Add(-time.Hour).Unix(), 10)
	e.postWith(body, ts, zoom.Sign(e.secret, ts, body))
	e.postWith(body, whNow(), "")
	if got2 := e.metric(gauge); got2 != got {
		t.Fatalf("%s moved on rejected deliveries: %v → %v", gauge, got, got2)
	}
}

// TestWebhookEventTime: a frame's "at" is the event's time (RFC 3339, UTC,
// milliseconds), or the time of arrival when event_ts is missing or absurd.
func TestWebhookEventTime(t *testing.T) {
	e := newEnv(t)
	h, _ := e.connect("host1", nil)
	for i, tc := range []struct {
		name, ts string
		want     string // "" for about now
	}{
		{"milliseconds", `1764856800123`, "2025-12-04T14:00:00.123Z"},
		{"milliseconds as text", `"1764856800123"`, "2025-12-04T14:00:00.123Z"},
		{"missing", ``, ""},
		{"not a time", `"soon"`, ""},
		{"NaN", `"NaN"`, ""},
		{"infinite", `"-Infinity"`, ""},
		{"year 33658", `1000000000000000`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			uuid := fmt.Sprintf("at-%d", i)
			ts := ""
			if tc.ts != "" {
				ts = `"event_ts":` + tc.ts + `,`
			}
			body := fmt.Sprintf(`{"event":"meeting.started",%s"payload":{"object":{"uuid":%q,"host_id":"host1","start_time":"2026-12-04T14:00:00Z"}}}`, ts, uuid)
			before := time.Now().Add(-time.Second)
			e.mustPost([]byte(body), http.StatusOK)
			f := whExpectFrame(t, h, "meeting.started", uuid, int64(i+1))
			if tc.want != "" {
				if got, want := f.At, tc.want; got != want {
					t.Fatalf("at: got %q, want %q", got, want)
				}
				return
			}
			at, err := time.Parse("2006-01-02T15:04:05.000Z", f.At)
			if err != nil {
				t.Fatalf("at %q is not RFC 3339 UTC with milliseconds: %v", f.At, err)
			}
			if at.Before(before) || at.After(time.Now().Add(time.Second)) {
				t.Fatalf("at: got %s, want about now", f.At)
			}
		})
	}
}
