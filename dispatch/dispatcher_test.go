package dispatch_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"onair/dispatch"
	"onair/internal/fakezoom"
	"onair/store"
	"onair/zoom"
)

var launcherSecret = []byte("launcher-secret")

// hit is one request the fake launcher received.
type hit struct {
	at     time.Time
	method string
	header http.Header
	body   []byte
}

// reply is how the fake launcher answers one request.
type reply struct {
	status     int    // 0: 200
	retryAfter string // Retry-After header, if any
	hang       bool   // answer nothing until the client gives up
}

// launcher is a fake bot launcher that records every request. It can be
// down (nothing listens on its address) and come up again.
type launcher struct {
	t    *testing.T
	addr string

	mu      sync.Mutex
	hits    []hit
	respond func(n int, h hit) reply // n counts from 0; nil: 200
	srv     *httptest.Server
	stop    chan struct{} // closed at the end: releases hanging handlers
}

// newLauncher starts a fake launcher that answers 200.
func newLauncher(t *testing.T) *launcher {
	l := newDownLauncher(t)
	l.up()
	return l
}

// launcherIPs hands each launcher its own loopback address (Linux routes
// all of 127/8 to lo): a port released while a launcher is down cannot then
// be taken by another test's launcher on the same address.
var launcherIPs atomic.Int32

// newDownLauncher reserves an address on which nothing listens yet.
func newDownLauncher(t *testing.T) *launcher {
	n := launcherIPs.Add(1)
	ip := fmt.Sprintf("127.0.%d.%d", 10+n/250, 1+n%250)
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	l := &launcher{t: t, addr: ln.Addr().String(), stop: make(chan struct{})}
	ln.Close()
	t.Cleanup(func() {
		close(l.stop)
		l.down()
	})
	return l
}

func (l *launcher) URL() string { return "http://" + l.addr + "/bot" }

// up starts listening on the launcher's address.
func (l *launcher) up() {
	l.t.Helper()
	var ln net.Listener
	var err error
	for range 50 { // the port was just released: retry a moment if it is not free yet
		if ln, err = net.Listen("tcp", l.addr); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		l.t.Fatalf("launcher up on %s: %v", l.addr, err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(l.serve))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	l.mu.Lock()
	l.srv = srv
	l.mu.Unlock()
}

// down stops listening: connections are refused.
func (l *launcher) down() {
	l.mu.Lock()
	srv := l.srv
	l.srv = nil
	l.mu.Unlock()
	if srv != nil {
		srv.CloseClientConnections()
		srv.Close()
	}
}

func (l *launcher) setRespond(f func(n int, h hit) reply) {
	l.mu.Lock()
	l.respond = f
	l.mu.Unlock()
}

func (l *launcher) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h := hit{at: time.Now(), method: r.Method, header: r.Header.Clone(), body: body}
	l.mu.Lock()
	n := len(l.hits)
	l.hits = append(l.hits, h)
	respond := l.respond
	l.mu.Unlock()
	rp := reply{}
	if respond != nil {
		rp = respond(n, h)
	}
	if rp.hang {
		select {
		case <-r.Context().Done():
		case <-l.stop:
		}
		return
	}
	if rp.retryAfter != "" {
		w.Header().Set("Retry-After", rp.retryAfter)
	}
	if rp.status == 0 {
		rp.status = http.StatusOK
	}
	w.WriteHeader(rp.status)
}

func (l *launcher) Hits() []hit {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.hits)
}

// hitsOf returns the hits of one type (the body's "type").
func (l *launcher) hitsOf(typ string) []hit {
	var out []hit
	for _, h := range l.Hits() {
		var b struct{ Type string }
		json.Unmarshal(h.body, &b)
		if b.Type == typ {
			out = append(out, h)
		}
	}
	return out
}

// recorder keeps what the store committed, and wakes the dispatcher as
// cmd/onair does.
type recorder struct {
	mu      sync.Mutex
	entries []store.Entry
	disp    atomic.Pointer[dispatch.Dispatcher]
}

func (r *recorder) OnCommit(c store.Committed) {
	r.mu.Lock()
	r.entries = append(r.entries, c.Entries...)
	r.mu.Unlock()
	if d := r.disp.Load(); c.Outbox && d != nil {
		d.Wake()
	}
}

// bots returns every bot.updated pushed for a request, in order.
func (r *recorder) bots(requestID string) []store.Bot {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []store.Bot
	for _, e := range r.entries {
		if e.Type != store.TypeBotUpdated {
			continue
		}
		var b store.Bot
		if err := json.Unmarshal(e.Data, &b); err != nil {
			panic(err)
		}
		if b.RequestID == requestID {
			out = append(out, b)
		}
	}
	return out
}

// botsOfUser returns every bot.updated pushed to a user.
func (r *recorder) botsOfUser(user string) []store.Bot {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []store.Bot
	for _, e := range r.entries {
		if e.Type == store.TypeBotUpdated && e.User == user {
			var b store.Bot
			json.Unmarshal(e.Data, &b)
			out = append(out, b)
		}
	}
	return out
}

// last is the last state pushed for a request ("" when none).
func (r *recorder) last(requestID string) store.Bot {
	bs := r.bots(requestID)
	if len(bs) == 0 {
		return store.Bot{}
	}
	return bs[len(bs)-1]
}

// env is a store with a launcher, a fake Zoom and a dispatcher to run.
type env struct {
	t    *testing.T
	path string
	st   *store.Store
	rec  *recorder
	fz   *fakezoom.Zoom
	l    *launcher
	keyN atomic.Int64
	cfg  dispatch.Config
}

func newEnv(t *testing.T, l *launcher) *env {
	t.Helper()
	fz := fakezoom.New(t)
	e := &env{t: t, path: filepath.Join(t.TempDir(), "onair.db"), fz: fz, l: l}
	e.open()
	e.cfg = dispatch.Config{
		URL:         l.URL(),
		Secrets:     [][]byte{launcherSecret},
		HTTP:        &http.Client{Timeout: 300 * time.Millisecond},
		Zoom:        &zoom.Client{ClientID: fz.ClientID, ClientSecret: fz.ClientSecret, OAuthURL: fz.OAuthURL(), APIURL: fz.APIURL()},
		Tokens:      storeTokens{e},
		MaxAttempts: 20,
		BaseDelay:   10 * time.Millisecond,
		MaxDelay:    100 * time.Millisecond,
	}
	return e
}

// open opens (or reopens) the store, with a fresh recorder.
func (e *env) open() {
	e.t.Helper()
	e.rec = &recorder{}
	st, err := store.Open(context.Background(), store.Options{Path: e.path, Launcher: true,
		SecretKey: bytes.Repeat([]byte{9}, 32), OnCommit: e.rec.OnCommit})
	if err != nil {
		e.t.Fatalf("open store: %v", err)
	}
	e.st = st
	e.t.Cleanup(func() { st.Close() })
}

// storeTokens hands out the stored access token, as web.Server does
// (without refreshing).
type storeTokens struct{ e *env }

func (s storeTokens) ZoomAccess(ctx context.Context, user string) (string, error) {
	t, err := s.e.st.ZoomToken(ctx, user)
	return t.Access, err
}

// run starts a dispatcher; the returned stop ends it and waits for it.
func (e *env) run() (stop func()) {
	e.t.Helper()
	d := dispatch.New(e.cfg, e.st)
	e.rec.disp.Store(d)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				e.t.Errorf("dispatcher did not stop within 5s")
			}
			e.rec.disp.CompareAndSwap(d, nil)
		})
	}
	e.t.Cleanup(stop)
	return stop
}

// signIn makes a known user with an email, holding Zoom tokens when
// tokens is set (the user must exist on the fake Zoom).
func (e *env) signIn(id string, tokens bool) {
	e.t.Helper()
	in := store.SignIn{User: store.User{ID: id, Email: id + "@example.com", Name: "User " + id},
		SessionID: "sess-" + id, SessionExpires: time.Now().Add(time.Hour)}
	if tokens {
		tok := e.fz.IssueTokens(id)
		in.Token = &store.ZoomToken{Access: tok.AccessToken, Refresh: tok.RefreshToken,
			Expiry: time.Now().Add(time.Duration(tok.ExpiresIn) * time.Second), Scope: tok.Scope}
	}
	if err := e.st.SignIn(context.Background(), in); err != nil {
		e.t.Fatalf("sign in %s: %v", id, err)
	}
}

// zoomUser adds the user to the fake Zoom and signs them in with tokens.
func (e *env) zoomUser(id string) {
	e.fz.AddUser(fakezoom.User{ID: id})
	e.signIn(id, true)
}

func (e *env) ingest(d store.Delivery) {
	e.t.Helper()
	d.Key = append(d.Key, strconv.FormatInt(e.keyN.Add(1), 10))
	if _, err := e.st.Ingest(context.Background(), d); err != nil {
		e.t.Fatalf("ingest %s: %v", d.Event, err)
	}
}

func meetingInfo(host, uuid, number string) store.MeetingInfo {
	return store.MeetingInfo{UUID: uuid, ID: number, Topic: "Standup", HostID: host, Type: 2,
		StartTime: time.Now().Add(-time.Minute).UTC().Truncate(time.Second), Duration: 30, Timezone: "Europe/Berlin",
		Rank: 2, StartRank: 2}
}

func (e *env) started(host, uuid, number string) {
	e.t.Helper()
	now := time.Now()
	e.ingest(store.Delivery{Event: "meeting.started", Key: []string{"meeting.started", uuid}, Kind: store.KindStart,
		At: now, Received: now, Meeting: meetingInfo(host, uuid, number)})
}

func (e *env) ended(host, uuid, number string) {
	e.t.Helper()
	now := time.Now()
	m := meetingInfo(host, uuid, number)
	m.EndTime = now.UTC()
	e.ingest(store.Delivery{Event: "meeting.ended", Key: []string{"meeting.ended", uuid}, Kind: store.KindEnd,
		At: now, Received: now, Meeting: m})
}

func (e *env) participant(kind store.Kind, host, uuid, number, user string) {
	e.t.Helper()
	now := time.Now()
	m := meetingInfo(host, uuid, number)
	m.Rank, m.StartRank, m.Topic = 1, 0, ""
	ev := "meeting.participant_joined"
	if kind == store.KindLeave {
		ev = "meeting.participant_left"
	}
	e.ingest(store.Delivery{Event: ev, Key: []string{ev, uuid, user}, Kind: kind, At: now, Received: now,
		Meeting: m, Participant: user, ParticipantAt: now})
}

// meeting adds a meeting hosted by host to the fake Zoom and returns its number.
func (e *env) meeting(host string) (number string, m fakezoom.Meeting) {
	m = e.fz.AddMeeting(fakezoom.Meeting{HostID: host, Password: "s3cret", Status: "started"})
	return strconv.FormatInt(m.ID, 10), m
}

func (e *env) requestBot(user, uuid string) store.Bot {
	e.t.Helper()
	b, created, err := e.st.RequestBot(context.Background(), user, uuid)
	if err != nil || !created {
		e.t.Fatalf("request bot of %s for %s: created %v, %v", user, uuid, created, err)
	}
	return b
}

// waitFor polls cond until it holds, or fails after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitState waits until the request's last pushed state is state.
func (e *env) waitState(id, state string) store.Bot {
	e.t.Helper()
	waitFor(e.t, 5*time.Second, "request "+id+" to be "+state+" (pushed: "+fmt.Sprint(e.rec.bots(id))+")",
		func() bool { return e.rec.last(id).State == state })
	return e.rec.last(id)
}

// outboxEmpty says nothing is left in the outbox, due or not.
func (e *env) outboxEmpty() bool {
	items, next, err := e.st.DueOutbox(context.Background(), 100)
	if err != nil {
		e.t.Fatal(err)
	}
	return len(items) == 0 && next.IsZero()
}

// checkSigned verifies a hit's timestamp and signature independently of onair's code.
func checkSigned(t *testing.T, h hit) {
	t.Helper()
	if h.method != http.MethodPost {
		t.Errorf("method %s, want POST", h.method)
	}
	ts := h.header.Get("X-Onair-Request-Timestamp")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || !regexp.MustCompile(`^\d{10}$`).MatchString(ts) {
		t.Fatalf("X-Onair-Request-Timestamp %q: want Unix seconds", ts)
	}
	if d := h.at.Sub(time.Unix(sec, 0)); d < -2*time.Second || d > 2*time.Second {
		t.Errorf("X-Onair-Request-Timestamp %s is %v away from when it was sent", ts, d)
	}
	mac := hmac.New(sha256.New, launcherSecret)
	mac.Write([]byte("v0:" + ts + ":"))
	mac.Write(h.body)
	if got, want := h.header.Get("X-Onair-Signature"), "v0="+hex.EncodeToString(mac.Sum(nil)); got != want {
		t.Fatalf("X-Onair-Signature %q, want %q", got, want)
	}
	if ct := h.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
}

var msTime = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)

func keysOf(m map[string]json.RawMessage) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func decode(t *testing.T, b []byte) map[string]json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("body %s: %v", b, err)
	}
	return m
}

func str(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatalf("%s: want a string: %v", raw, err)
	}
	return s
}

// checkMeeting checks a body's meeting against CONTRACT §3's Meeting.
func checkMeeting(t *testing.T, raw json.RawMessage, uuid, number, host, role string, live bool) {
	t.Helper()
	m := decode(t, raw)
	want := []string{"duration", "host_id", "id", "live", "role", "start_time", "timezone", "topic", "type", "uuid"}
	if _, ok := m["end_time"]; ok {
		want = append(want, "end_time")
		slices.Sort(want)
		if !msTime.MatchString(str(t, m["end_time"])) {
			t.Errorf("meeting end_time %s: want RFC 3339 UTC with milliseconds", m["end_time"])
		}
	}
	if got := keysOf(m); !slices.Equal(got, want) {
		t.Fatalf("meeting fields %q, want %q: %s", got, want, raw)
	}
	var mt store.Meeting
	json.Unmarshal(raw, &mt)
	if mt.UUID != uuid || mt.ID != number || mt.HostID != host || mt.Role != role || mt.Live != live {
		t.Fatalf("meeting %s: want uuid %q id %q host %q role %q live %v", raw, uuid, number, host, role, live)
	}
	if !msTime.MatchString(str(t, m["start_time"])) {
		t.Errorf("meeting start_time %s: want RFC 3339 UTC with milliseconds", m["start_time"])
	}
}

// joinOf decodes a bot.requested body's join.
func joinOf(t *testing.T, h hit) map[string]string {
	t.Helper()
	var b struct {
		Join map[string]string `json:"join"`
	}
	if err := json.Unmarshal(h.body, &b); err != nil || b.Join == nil {
		t.Fatalf("no join object in %s (%v)", h.body, err)
	}
	return b.Join
}

func TestRequestDelivered(t *testing.T) {
	t.Parallel()
	l := newLauncher(t)
	e := newEnv(t, l)
	e.zoomUser("host1")
	number, zm := e.meeting("host1")
	const uuid = "/Ab+c//d=="
	e.started("host1", uuid, number)
	b := e.requestBot("host1", uuid)
	if b.State != store.BotRequested {
		t.Fatalf("new request %+v", b)
	}
	e.run()
	d := e.waitState(b.RequestID, store.BotDispatched)
	if d.Detail != "" {
		t.Errorf("dispatched with everything, detail %q: want none", d.Detail)
	}
	waitFor(t, 2*time.Second, "an empty outbox", e.outboxEmpty)

	hits := l.Hits()
	if len(hits) != 1 {
		t.Fatalf("launcher got %d requests, want 1", len(hits))
	}
	h := hits[0]
	checkSigned(t, h)
	if got := h.header.Get("Idempotency-Key"); got != b.RequestID {
		t.Errorf("Idempotency-Key %q, want the request id %q", got, b.RequestID)
	}
	body := decode(t, h.body)
	if got, want := keysOf(body), []string{"join", "meeting", "request_id", "requested_at", "requested_by", "type"}; !slices.Equal(got, want) {
		t.Fatalf("body fields %q, want %q: %s", got, want, h.body)
	}
	if got := str(t, body["type"]); got != "bot.requested" {
		t.Errorf("type %q", got)
	}
	if got := str(t, body["request_id"]); got != b.RequestID {
		t.Errorf("request_id %q, want %q", got, b.RequestID)
	}
	checkMeeting(t, body["meeting"], uuid, number, "host1", store.RoleHost, true)
	by := decode(t, body["requested_by"])
	if got := keysOf(by); !slices.Equal(got, []string{"email", "id"}) {
		t.Fatalf("requested_by fields %q: %s", got, body["requested_by"])
	}
	if str(t, by["id"]) != "host1" || str(t, by["email"]) != "host1@example.com" {
		t.Errorf("requested_by %s", body["requested_by"])
	}
	at := str(t, body["requested_at"])
	if !msTime.MatchString(at) || at != b.UpdatedAt.UTC().Format("2006-01-02T15:04:05.000Z") {
		t.Errorf("requested_at %q, want the request's creation %v in RFC 3339 UTC with milliseconds", at, b.UpdatedAt)
	}
	j := joinOf(t, h)
	if got := keysOf(decode(t, body["join"])); !slices.Equal(got, []string{"join_url", "meeting_number", "obf_token", "passcode"}) {
		t.Fatalf("join fields %q: %s", got, body["join"])
	}
	if j["join_url"] != zm.JoinURL || j["passcode"] != "s3cret" || j["meeting_number"] != number {
		t.Errorf("join %v: want join_url %q, passcode s3cret, meeting_number %q", j, zm.JoinURL, number)
	}
	if raw := string(decode(t, body["join"])["meeting_number"]); !strings.HasPrefix(raw, `"`) {
		t.Errorf("meeting_number %s: want a string", raw)
	}
	if u, mid, ok := e.fz.OBFToken(j["obf_token"]); !ok || u != "host1" || mid != zm.ID {
		t.Errorf("obf_token %q: Zoom says user %q meeting %d (%v), want host1 for %d", j["obf_token"], u, mid, ok, zm.ID)
	}
	// The pushed states: requested, then dispatched; nothing else.
	var states []string
	for _, x := range e.rec.bots(b.RequestID) {
		states = append(states, x.State)
	}
	if !slices.Equal(states, []string{"requested", "dispatched"}) {
		t.Errorf("pushed states %q, want [requested dispatched]", states)
	}
}

// sameRequest checks that every hit carries one body and one key: the
// request is never sent under two ids.
func sameRequest(t *testing.T, hits []hit, requestID string) {
	t.Helper()
	for i, h := range hits {
		checkSigned(t, h)
		if got := h.header.Get("Idempotency-Key"); got != requestID {
			t.Errorf("attempt %d: Idempotency-Key %q, want %q", i+1, got, requestID)
		}
		if !bytes.Equal(h.body, hits[0].body) {
			t.Errorf("attempt %d: body differs from the first:\n%s\n%s", i+1, h.body, hits[0].body)
		}
		if got := str(t, decode(t, h.body)["request_id"]); got != requestID {
			t.Errorf("attempt %d: request_id %q, want %q", i+1, got, requestID)
		}
	}
}

func TestRetriedWithTheSameRequest(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		fail reply
	}{
		{"500", reply{status: http.StatusInternalServerError}},
		{"503", reply{status: http.StatusServiceUnavailable}},
		{"hang past the timeout", reply{hang: true}},
		{"400", reply{status: http.StatusBadRequest}}, // any non-2xx is retried
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := newLauncher(t)
			l.setRespond(func(n int, _ hit) reply {
				if n < 2 {
					return tc.fail
				}
				return reply{status: http.StatusAccepted} // any 2xx
			})
			e := newEnv(t, l)
			e.zoomUser("host1")
			number, _ := e.meeting("host1")
			e.started("host1", "m1", number)
			b := e.requestBot("host1", "m1")
			e.run()
			e.waitState(b.RequestID, store.BotDispatched)
			time.Sleep(100 * time.Millisecond) // nothing more is sent
			hits := l.Hits()
			if len(hits) != 3 {
				t.Fatalf("launcher got %d requests, want 3 (2 failed, 1 accepted)", len(hits))
			}
			sameRequest(t, hits, b.RequestID)
			if j := joinOf(t, hits[0]); j["join_url"] == "" || j["obf_token"] == "" {
				t.Errorf("join %v: want the join data", j)
			}
			if !e.outboxEmpty() {
				t.Errorf("outbox not empty after delivery")
			}
		})
	}
}

func TestRetriedWhileLauncherDown(t *testing.T) {
	t.Parallel()
	l := newDownLauncher(t)
	e := newEnv(t, l)
	e.zoomUser("host1")
	number, _ := e.meeting("host1")
	e.started("host1", "m1", number)
	b := e.requestBot("host1", "m1")
	e.run()
	// Some attempts fail against the closed port before it comes up.
	time.Sleep(250 * time.Millisecond)
	if got := e.rec.last(b.RequestID).State; got != store.BotRequested {
		t.Fatalf("while the launcher is down: state %q, want requested", got)
	}
	l.up()
	e.waitState(b.RequestID, store.BotDispatched)
	time.Sleep(100 * time.Millisecond)
	hits := l.Hits()
	if len(hits) != 1 {
		t.Fatalf("launcher got %d requests once up, want 1", len(hits))
	}
	sameRequest(t, hits, b.RequestID)
}

func TestRetryAfterHonoured(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		after func() (string, time.Time) // the header, and the earliest next attempt
	}{
		{"seconds", func() (string, time.Time) { return "1", time.Now().Add(time.Second) }},
		{"http date", func() (string, time.Time) {
			at := time.Now().Add(2 * time.Second).Truncate(time.Second)
			return at.UTC().Format(http.TimeFormat), at
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := newLauncher(t)
			var mu sync.Mutex
			var earliest time.Time
			l.setRespond(func(n int, _ hit) reply {
				if n == 0 {
					h, at := tc.after()
					mu.Lock()
					earliest = at
					mu.Unlock()
					return reply{status: http.StatusTooManyRequests, retryAfter: h}
				}
				return reply{}
			})
			e := newEnv(t, l)
			e.cfg.MaxDelay = 5 * time.Second // the cap on waits must not hide Retry-After
			e.zoomUser("host1")
			number, _ := e.meeting("host1")
			e.started("host1", "m1", number)
			b := e.requestBot("host1", "m1")
			e.run()
			e.waitState(b.RequestID, store.BotDispatched)
			hits := l.Hits()
			if len(hits) != 2 {
				t.Fatalf("launcher got %d requests, want 2", len(hits))
			}
			sameRequest(t, hits, b.RequestID)
			mu.Lock()
			defer mu.Unlock()
			if hits[1].at.Before(earliest.Add(-10 * time.Millisecond)) {
				t.Fatalf("second attempt at %v, before Retry-After allowed (%v): %v early",
					hits[1].at.Format(time.StampMilli), earliest.Format(time.StampMilli), earliest.Sub(hits[1].at))
			}
		})
	}
}

func TestGivesUpAfterMaxAttempts(t *testing.T) {
	t.Parallel()
	l := newLauncher(t)
	l.setRespond(func(int, hit) reply { return reply{status: http.StatusInternalServerError} })
	e := newEnv(t, l)
	e.cfg.MaxAttempts = 3
	e.zoomUser("host1")
	number, _ := e.meeting("host1")
	e.started("host1", "m1", number)
	b := e.requestBot("host1", "m1")
	e.run()
	f := e.waitState(b.RequestID, store.BotFailed)
	if !strings.Contains(f.Detail, "500") {
		t.Errorf("failed with detail %q: want the reason (the launcher's 500)", f.Detail)
	}
	time.Sleep(200 * time.Millisecond)
	hits := l.Hits()
	if len(hits) != 3 {
		t.Fatalf("launcher got %d requests, want MaxAttempts = 3", len(hits))
	}
	sameRequest(t, hits, b.RequestID)
	if !e.outboxEmpty() {
		t.Errorf("outbox not empty after giving up")
	}
	// The request has ended: a new one can be made.
	if _, created, err := e.st.RequestBot(context.Background(), "host1", "m1"); err != nil || !created {
		t.Errorf("a new request after failed: created %v, %v", created, err)
	}
}

func TestGivesUpWhenLauncherStaysDown(t *testing.T) {
	t.Parallel()
	l := newDownLauncher(t)
	e := newEnv(t, l)
	e.cfg.MaxAttempts = 3
	e.zoomUser("host1")
	number, _ := e.meeting("host1")
	e.started("host1", "m1", number)
	b := e.requestBot("host1", "m1")
	e.run()
	f := e.waitState(b.RequestID, store.BotFailed)
	if f.Detail == "" {
		t.Errorf("failed without a reason")
	}
	t.Logf("detail: %s", f.Detail)
}

func TestCancelledBeforeDispatchIsNeverSent(t *testing.T) {
	t.Parallel()
	t.Run("before the dispatcher runs", func(t *testing.T) {
		t.Parallel()
		l := newLauncher(t)
		e := newEnv(t, l)
		e.zoomUser("host1")
		number, _ := e.meeting("host1")
		e.started("host1", "m1", number)
		b := e.requestBot("host1", "m1")
		if _, _, err := e.st.CancelBot(context.Background(), "host1", "m1"); err != nil {
			t.Fatal(err)
		}
		e.run()
		time.Sleep(200 * time.Millisecond)
		if hits := l.Hits(); len(hits) != 0 {
			t.Fatalf("launcher got %d requests for a request cancelled before dispatch: %s", len(hits), hits[0].body)
		}
		if got := e.rec.last(b.RequestID).State; got != store.BotCancelled {
			t.Errorf("state %q, want cancelled", got)
		}
		if !e.outboxEmpty() {
			t.Errorf("outbox not empty")
		}
	})
	t.Run("while retrying", func(t *testing.T) {
		t.Parallel()
		l := newDownLauncher(t)
		e := newEnv(t, l)
		e.zoomUser("host1")
		number, _ := e.meeting("host1")
		e.started("host1", "m1", number)
		b := e.requestBot("host1", "m1")
		e.run()
		time.Sleep(150 * time.Millisecond) // a few refused attempts
		if _, _, err := e.st.CancelBot(context.Background(), "host1", "m1"); err != nil {
			t.Fatal(err)
		}
		l.up()
		time.Sleep(300 * time.Millisecond)
		if hits := l.Hits(); len(hits) != 0 {
			t.Fatalf("launcher got %d requests for a request cancelled before it could be sent: %s", len(hits), hits[0].body)
		}
		if got := e.rec.last(b.RequestID).State; got != store.BotCancelled {
			t.Errorf("state %q, want cancelled", got)
		}
	})
}

func TestMeetingEndedBeforeDispatchCancels(t *testing.T) {
	t.Parallel()
	t.Run("before the dispatcher runs", func(t *testing.T) {
		t.Parallel()
		l := newLauncher(t)
		e := newEnv(t, l)
		e.zoomUser("host1")
		number, _ := e.meeting("host1")
		e.started("host1", "m1", number)
		b := e.requestBot("host1", "m1")
		e.ended("host1", "m1", number)
		e.run()
		c := e.waitState(b.RequestID, store.BotCancelled)
		if !strings.Contains(c.Detail, "ended") {
			t.Errorf("cancelled with detail %q: want the reason", c.Detail)
		}
		time.Sleep(200 * time.Millisecond)
		if hits := l.Hits(); len(hits) != 0 {
			t.Fatalf("launcher got %d requests for a meeting that ended before dispatch: %s", len(hits), hits[0].body)
		}
		if !e.outboxEmpty() {
			t.Errorf("outbox not empty")
		}
	})
	t.Run("while retrying", func(t *testing.T) {
		t.Parallel()
		l := newDownLauncher(t)
		e := newEnv(t, l)
		e.zoomUser("host1")
		number, _ := e.meeting("host1")
		e.started("host1", "m1", number)
		b := e.requestBot("host1", "m1")
		e.run()
		time.Sleep(150 * time.Millisecond)
		e.ended("host1", "m1", number)
		l.up()
		e.waitState(b.RequestID, store.BotCancelled)
		time.Sleep(300 * time.Millisecond)
		if hits := l.Hits(); len(hits) != 0 {
			t.Fatalf("launcher got %d requests, late, for a meeting that ended: %s", len(hits), hits[0].body)
		}
	})
	t.Run("participant left before dispatch", func(t *testing.T) {
		t.Parallel()
		l := newLauncher(t)
		e := newEnv(t, l)
		e.zoomUser("host1")
		e.signIn("p1", false)
		number, _ := e.meeting("host1")
		e.started("host1", "m1", number)
		e.participant(store.KindJoin, "host1", "m1", number, "p1")
		b := e.requestBot("p1", "m1")
		e.participant(store.KindLeave, "host1", "m1", number, "p1")
		e.run()
		e.waitState(b.RequestID, store.BotCancelled)
		time.Sleep(200 * time.Millisecond)
		if hits := l.Hits(); len(hits) != 0 {
			t.Fatalf("launcher got %d requests for a requester who had left: %s", len(hits), hits[0].body)
		}
	})
}

// checkNotice checks one notice of CONTRACT §3 and returns its body.
func checkNotice(t *testing.T, h hit, typ, requestID string) map[string]json.RawMessage {
	t.Helper()
	checkSigned(t, h)
	if got, want := h.header.Get("Idempotency-Key"), requestID+":"+typ; got != want {
		t.Errorf("Idempotency-Key %q, want %q", got, want)
	}
	body := decode(t, h.body)
	if got, want := keysOf(body), []string{"at", "meeting", "request_id", "type"}; !slices.Equal(got, want) {
		t.Fatalf("notice fields %q, want %q: %s", got, want, h.body)
	}
	if str(t, body["type"]) != typ || str(t, body["request_id"]) != requestID {
		t.Errorf("notice %s: want type %s for %s", h.body, typ, requestID)
	}
	if at := str(t, body["at"]); !msTime.MatchString(at) {
		t.Errorf("at %q: want RFC 3339 UTC with milliseconds", at)
	}
	return body
}

func TestNoticesAfterDispatch(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		requester string
		role      string
		notice    string
		live      bool
		then      func(e *env, number string)
		state     string // the request's state after the notice, before any status
	}{
		{"cancelled", "host1", store.RoleHost, store.OutboxCancelled, true,
			func(e *env, _ string) {
				if _, _, err := e.st.CancelBot(context.Background(), "host1", "m1"); err != nil {
					e.t.Fatal(err)
				}
			}, store.BotCancelled},
		{"meeting ended", "host1", store.RoleHost, store.OutboxMeetingEnded, false,
			func(e *env, number string) { e.ended("host1", "m1", number) }, store.BotDispatched},
		{"host left", "host1", store.RoleHost, store.OutboxOwnerLeft, true,
			func(e *env, number string) { e.participant(store.KindLeave, "host1", "m1", number, "host1") }, store.BotDispatched},
		{"participant left", "p1", store.RoleParticipant, store.OutboxOwnerLeft, true,
			func(e *env, number string) { e.participant(store.KindLeave, "host1", "m1", number, "p1") }, store.BotDispatched},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := newLauncher(t)
			e := newEnv(t, l)
			e.zoomUser("host1")
			e.signIn("p1", false)
			number, _ := e.meeting("host1")
			e.started("host1", "m1", number)
			e.participant(store.KindJoin, "host1", "m1", number, "p1")
			b := e.requestBot(tc.requester, "m1")
			e.run()
			e.waitState(b.RequestID, store.BotDispatched)
			time.Sleep(5 * time.Millisecond) // the leave's time must be after the request's
			tc.then(e, number)
			waitFor(t, 5*time.Second, "a "+tc.notice+" notice", func() bool { return len(l.hitsOf(tc.notice)) > 0 })
			waitFor(t, 2*time.Second, "an empty outbox", e.outboxEmpty)
			time.Sleep(100 * time.Millisecond)
			if n := len(l.hitsOf("bot.requested")); n != 1 {
				t.Errorf("bot.requested sent %d times, want 1", n)
			}
			notices := l.hitsOf(tc.notice)
			if len(notices) != 1 {
				t.Fatalf("%s sent %d times, want 1", tc.notice, len(notices))
			}
			if n := len(l.Hits()); n != 2 {
				t.Errorf("launcher got %d requests, want the request and one notice", n)
			}
			body := checkNotice(t, notices[0], tc.notice, b.RequestID)
			checkMeeting(t, body["meeting"], "m1", number, "host1", tc.role, tc.live)
			if got := e.rec.last(b.RequestID).State; got != tc.state {
				t.Errorf("state after %s: %q, want %q", tc.notice, got, tc.state)
			}
		})
	}
}

func TestNoticeRetried(t *testing.T) {
	t.Parallel()
	l := newLauncher(t)
	var fails atomic.Int32
	l.setRespond(func(_ int, h hit) reply {
		if strings.Contains(string(h.body), `"type":"bot.cancelled"`) && fails.Add(1) <= 2 {
			return reply{status: http.StatusBadGateway}
		}
		return reply{}
	})
	e := newEnv(t, l)
	e.zoomUser("host1")
	number, _ := e.meeting("host1")
	e.started("host1", "m1", number)
	b := e.requestBot("host1", "m1")
	e.run()
	e.waitState(b.RequestID, store.BotDispatched)
	if _, _, err := e.st.CancelBot(context.Background(), "host1", "m1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "an empty outbox", func() bool { return len(l.hitsOf("bot.cancelled")) == 3 && e.outboxEmpty() })
	ns := l.hitsOf("bot.cancelled")
	for _, h := range ns {
		checkNotice(t, h, "bot.cancelled", b.RequestID)
		if !bytes.Equal(h.body, ns[0].body) {
			t.Errorf("notice retried with another body:\n%s\n%s", h.body, ns[0].body)
		}
	}
	if got := e.rec.last(b.RequestID).State; got != store.BotCancelled {
		t.Errorf("state %q, want cancelled", got)
	}
}

func TestRestartMidRetries(t *testing.T) {
	t.Parallel()
	l := newLauncher(t)
	var ok atomic.Bool
	l.setRespond(func(int, hit) reply {
		if ok.Load() {
			return reply{}
		}
		return reply{status: http.StatusInternalServerError}
	})
	e := newEnv(t, l)
	e.zoomUser("host1")
	number, _ := e.meeting("host1")
	e.started("host1", "m1", number)
	b := e.requestBot("host1", "m1")
	stop := e.run()
	waitFor(t, 5*time.Second, "two failed attempts", func() bool { return len(l.Hits()) >= 2 })
	stop()
	before := len(l.Hits())
	if err := e.st.Close(); err != nil {
		t.Fatal(err)
	}
	// A restart: the same database, a new store and a new dispatcher.
	e.open()
	ok.Store(true)
	e.run()
	waitFor(t, 5*time.Second, "the request dispatched after the restart", func() bool {
		return e.rec.last(b.RequestID).State == store.BotDispatched
	})
	time.Sleep(100 * time.Millisecond)
	hits := l.Hits()
	if len(hits) <= before {
		t.Fatalf("no attempt after the restart")
	}
	sameRequest(t, hits, b.RequestID)
	if !e.outboxEmpty() {
		t.Errorf("outbox not empty")
	}
	if zoomCalls := e.fz.APICalls("/meetings/" + number); zoomCalls != 1 {
		t.Errorf("GET /meetings/%s called %d times: the body is built once, kept across the restart", number, zoomCalls)
	}
}

func TestJoinDataLeftOutWithReason(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		setup   func(e *env, zm fakezoom.Meeting)
		tokens  bool
		present []string
		detail  []string // what the detail must name
	}{
		{"no on-behalf-of scope", func(e *env, _ fakezoom.Meeting) {
			e.fz.SetScopes("host1", "user:read:user", "meeting:read:meeting")
		}, true, []string{"join_url", "meeting_number", "passcode"}, []string{"obf_token", "user:read:token"}},
		{"no meeting scope", func(e *env, _ fakezoom.Meeting) {
			e.fz.SetScopes("host1", "user:read:user", "user:read:token")
		}, true, []string{"meeting_number", "obf_token"}, []string{"join_url", "passcode"}},
		{"meeting not found", func(e *env, zm fakezoom.Meeting) {
			e.fz.DeleteMeeting(zm.ID)
		}, true, []string{"meeting_number"}, []string{"join_url", "obf_token", "404"}},
		{"no token held", nil, false, []string{"meeting_number"}, []string{"token"}},
		{"grant revoked", func(e *env, _ fakezoom.Meeting) { e.fz.Revoke("host1") }, true,
			[]string{"meeting_number"}, []string{"join_url"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := newLauncher(t)
			e := newEnv(t, l)
			e.fz.AddUser(fakezoom.User{ID: "host1"})
			e.signIn("host1", tc.tokens)
			number, zm := e.meeting("host1")
			if tc.setup != nil {
				tc.setup(e, zm)
			}
			e.started("host1", "m1", number)
			b := e.requestBot("host1", "m1")
			e.run()
			d := e.waitState(b.RequestID, store.BotDispatched)
			hits := l.Hits()
			if len(hits) != 1 {
				t.Fatalf("launcher got %d requests, want 1", len(hits))
			}
			j := joinOf(t, hits[0])
			var got []string
			for k, v := range j {
				if v == "" {
					t.Errorf("join %s present but empty: want it left out", k)
				}
				got = append(got, k)
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.present) {
				t.Errorf("join fields %q, want %q", got, tc.present)
			}
			for _, w := range tc.detail {
				if !strings.Contains(d.Detail, w) {
					t.Errorf("dispatched with detail %q: want it to name %q", d.Detail, w)
				}
			}
			t.Logf("detail: %s", d.Detail)
		})
	}
}

func TestZoomFailuresRetried(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		setup func(e *env, number string)
	}{
		{"429 on every call", func(e *env, _ string) { e.fz.RateLimit(2) }},
		{"500 on the meeting", func(e *env, number string) { e.fz.FailAPI("/meetings/"+number, 500, 2) }},
		{"503 on the token", func(e *env, _ string) { e.fz.FailAPI("/users/host1/token", 503, 1) }},
		{"429 on the token", func(e *env, _ string) { e.fz.FailAPI("/users/host1/token", 429, 1) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := newLauncher(t)
			e := newEnv(t, l)
			e.zoomUser("host1")
			number, zm := e.meeting("host1")
			e.started("host1", "m1", number)
			tc.setup(e, number)
			b := e.requestBot("host1", "m1")
			e.run()
			d := e.waitState(b.RequestID, store.BotDispatched)
			if d.Detail != "" {
				t.Errorf("dispatched with detail %q: a retried Zoom failure must leave nothing out", d.Detail)
			}
			hits := l.Hits()
			if len(hits) != 1 {
				t.Fatalf("launcher got %d requests, want 1", len(hits))
			}
			j := joinOf(t, hits[0])
			if j["join_url"] != zm.JoinURL || j["passcode"] != "s3cret" || j["obf_token"] == "" {
				t.Errorf("join %v: sent without the data Zoom gave on a retry", j)
			}
			if calls := e.fz.APICalls(""); calls < 3 {
				t.Errorf("%d Zoom calls: want the failed one retried", calls)
			}
		})
	}
}

// Zoom failing for good does not hold the bot back for ever: after three
// attempts the launcher gets the request with what there is, and the detail
// says what is missing and why.
func TestZoomFailuresExhausted(t *testing.T) {
	t.Parallel()
	l := newLauncher(t)
	e := newEnv(t, l)
	e.cfg.MaxAttempts = 8
	e.zoomUser("host1")
	number, _ := e.meeting("host1")
	e.started("host1", "m1", number)
	e.fz.FailAPI("/meetings/"+number, 500, fakezoom.Always)
	b := e.requestBot("host1", "m1")
	e.run()
	f := e.waitState(b.RequestID, store.BotDispatched)
	if !strings.Contains(f.Detail, "Zoom did not answer") {
		t.Errorf("detail %q, want it to say Zoom did not answer", f.Detail)
	}
	hits := l.Hits()
	if len(hits) != 1 || strings.Contains(string(hits[0].body), `"join_url"`) {
		t.Fatalf("launcher got %d requests; want one, without join_url", len(hits))
	}
	if calls := e.fz.APICalls("/meetings/" + number); calls != 3 {
		t.Errorf("GET /meetings/%s called %d times, want 3 (the attempts spent on Zoom)", number, calls)
	}
}

func TestAutoSend(t *testing.T) {
	t.Parallel()
	l := newLauncher(t)
	e := newEnv(t, l)
	e.zoomUser("host1")
	if _, err := e.st.SetAutoSendBot(context.Background(), "host1", true); err != nil {
		t.Fatal(err)
	}
	e.zoomUser("host2") // auto-send off
	number, zm := e.meeting("host1")
	number2, _ := e.meeting("host2")
	e.run()
	e.started("host1", "m1", number)
	e.started("host2", "m2", number2)
	waitFor(t, 5*time.Second, "an auto-sent request", func() bool { return len(l.hitsOf("bot.requested")) == 1 })
	bots := e.rec.botsOfUser("host1")
	if len(bots) == 0 || bots[0].State != store.BotRequested || bots[0].MeetingUUID != "m1" {
		t.Fatalf("pushed to host1: %+v, want a requested bot for m1", bots)
	}
	id := bots[0].RequestID
	e.waitState(id, store.BotDispatched)
	h := l.hitsOf("bot.requested")[0]
	sameRequest(t, []hit{h}, id)
	body := decode(t, h.body)
	checkMeeting(t, body["meeting"], "m1", number, "host1", store.RoleHost, true)
	if j := joinOf(t, h); j["join_url"] != zm.JoinURL {
		t.Errorf("join %v", j)
	}
	time.Sleep(100 * time.Millisecond)
	if n := len(l.Hits()); n != 1 {
		t.Errorf("launcher got %d requests, want 1 (host2 has auto-send off)", n)
	}
	if bs := e.rec.botsOfUser("host2"); len(bs) != 0 {
		t.Errorf("host2 got bot frames %+v without asking", bs)
	}
	// A redelivered meeting.started makes no second request.
	now := time.Now()
	if out, err := e.st.Ingest(context.Background(), store.Delivery{Event: "meeting.started", Key: []string{"meeting.started", "m1", "1"},
		Kind: store.KindStart, At: now, Received: now, Meeting: meetingInfo("host1", "m1", number)}); err != nil {
		t.Fatal(err)
	} else if out != store.OutcomeDuplicate {
		t.Logf("redelivery outcome %s", out)
	}
	time.Sleep(100 * time.Millisecond)
	if n := len(l.hitsOf("bot.requested")); n != 1 {
		t.Errorf("bot.requested sent %d times, want 1", n)
	}
}

// The launcher reports the bot joining while its answer to the request is
// lost (it hangs past onair's timeout, as a slow launcher does). The
// launcher has the request; when the meeting ends later it must be told,
// and the request must not be shown as "cancelled before the bot was sent".
func TestLauncherReportsBeforeItsAnswerIsLost(t *testing.T) {
	t.Parallel()
	l := newLauncher(t)
	var e *env
	l.setRespond(func(n int, h hit) reply {
		if n == 0 {
			id := str(t, decode(t, h.body)["request_id"])
			if _, _, err := e.st.BotStatus(context.Background(), id, store.BotJoining, ""); err != nil {
				t.Errorf("status joining: %v", err)
			}
			return reply{hang: true}
		}
		return reply{}
	})
	e = newEnv(t, l)
	e.zoomUser("host1")
	number, _ := e.meeting("host1")
	e.started("host1", "m1", number)
	b := e.requestBot("host1", "m1")
	e.run()
	e.waitState(b.RequestID, store.BotJoining)
	// Past the timeout, and a retry's worth.
	waitFor(t, 5*time.Second, "the request to leave the outbox", e.outboxEmpty)
	if _, _, err := e.st.BotStatus(context.Background(), b.RequestID, store.BotJoined, ""); err != nil {
		t.Fatal(err)
	}
	e.ended("host1", "m1", number)
	time.Sleep(300 * time.Millisecond)
	last := e.rec.last(b.RequestID)
	if last.State != store.BotJoined {
		t.Errorf("after the meeting ended: state %q (%q), want joined until the launcher reports left", last.State, last.Detail)
	}
	if n := len(l.hitsOf("meeting.ended")); n != 1 {
		t.Errorf("meeting.ended sent %d times to the launcher whose bot joined, want 1", n)
	}
}

func TestStopWithItemInFlight(t *testing.T) {
	t.Parallel()
	l := newLauncher(t)
	l.setRespond(func(n int, _ hit) reply {
		if n == 0 {
			return reply{hang: true}
		}
		return reply{}
	})
	e := newEnv(t, l)
	e.cfg.HTTP = &http.Client{Timeout: 10 * time.Second} // the hang outlasts the stop
	e.zoomUser("host1")
	number, _ := e.meeting("host1")
	e.started("host1", "m1", number)
	b := e.requestBot("host1", "m1")
	stop := e.run()
	waitFor(t, 5*time.Second, "the first attempt", func() bool { return len(l.Hits()) == 1 })
	start := time.Now()
	stop()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("stop took %v with a request in flight", d)
	}
	if got := e.rec.last(b.RequestID).State; got != store.BotRequested {
		t.Errorf("state after stop %q, want requested", got)
	}
	e.run()
	e.waitState(b.RequestID, store.BotDispatched)
	sameRequest(t, l.Hits(), b.RequestID)
}

// Without a launcher, requests are only recorded: nothing enters the outbox.
func TestNoDispatchWithoutLauncher(t *testing.T) {
	t.Parallel()
	st, err := store.Open(context.Background(), store.Options{Path: filepath.Join(t.TempDir(), "x.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	if _, err := st.Ingest(context.Background(), store.Delivery{Event: "meeting.started", Key: []string{"k"}, Kind: store.KindStart,
		At: now, Received: now, Meeting: meetingInfo("host1", "m1", "123")}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.RequestBot(context.Background(), "host1", "m1"); err != nil {
		t.Fatal(err)
	}
	items, next, err := st.DueOutbox(context.Background(), 10)
	if err != nil || len(items) != 0 || !next.IsZero() {
		t.Fatalf("without a launcher the outbox holds %d items (next %v, %v), want none", len(items), next, err)
	}
}

func TestOutcomesCounted(t *testing.T) {
	t.Parallel()
	l := newLauncher(t)
	l.setRespond(func(n int, h hit) reply {
		if strings.Contains(string(h.body), `"request_id":"`) && n < 2 {
			return reply{status: http.StatusInternalServerError}
		}
		return reply{}
	})
	e := newEnv(t, l)
	outcomes := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "outcomes"}, []string{"outcome"})
	latency := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "latency"})
	reg := prometheus.NewRegistry()
	reg.MustRegister(outcomes, latency)
	e.cfg.Outcomes, e.cfg.Latency = outcomes, latency
	// value reads a counter by outcome, or (outcome "") the latency count.
	value := func(outcome string) float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				switch {
				case outcome == "" && mf.GetName() == "latency":
					return float64(m.GetHistogram().GetSampleCount())
				case outcome != "" && mf.GetName() == "outcomes" && len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == outcome:
					return m.GetCounter().GetValue()
				}
			}
		}
		return 0
	}
	e.zoomUser("host1")
	number, _ := e.meeting("host1")
	e.started("host1", "m1", number)
	b := e.requestBot("host1", "m1")
	e.run()
	e.waitState(b.RequestID, store.BotDispatched)
	waitFor(t, 2*time.Second, "the dispatched count", func() bool {
		return value("dispatched") == 1
	})
	if got := value("retried"); got != 2 {
		t.Errorf("retried %v, want 2", got)
	}
	if got := value(""); got != 1 {
		t.Errorf("latency observed %v times, want 1", got)
	}
	// A notice is not a request: it counts nothing.
	if _, _, err := e.st.CancelBot(context.Background(), "host1", "m1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "the notice", func() bool { return len(l.hitsOf("bot.cancelled")) == 1 })
	time.Sleep(50 * time.Millisecond)
	if got := value("dispatched"); got != 1 {
		t.Errorf("dispatched %v after a notice, want 1", got)
	}
}

// A cancel while the request is on its way: the launcher's 2xx makes it
// sent, so it is told at once that the request is cancelled.
func TestCancelledWhileInFlight(t *testing.T) {
	t.Parallel()
	l := newLauncher(t)
	var e *env
	l.setRespond(func(n int, h hit) reply {
		if n == 0 {
			if _, _, err := e.st.CancelBot(context.Background(), "host1", "m1"); err != nil {
				t.Errorf("cancel: %v", err)
			}
		}
		return reply{}
	})
	e = newEnv(t, l)
	e.zoomUser("host1")
	number, _ := e.meeting("host1")
	e.started("host1", "m1", number)
	b := e.requestBot("host1", "m1")
	e.run()
	waitFor(t, 5*time.Second, "bot.cancelled", func() bool { return len(l.hitsOf("bot.cancelled")) == 1 })
	waitFor(t, 2*time.Second, "an empty outbox", e.outboxEmpty)
	time.Sleep(50 * time.Millisecond)
	if n := len(l.Hits()); n != 2 {
		t.Errorf("launcher got %d requests, want the request and bot.cancelled", n)
	}
	checkNotice(t, l.hitsOf("bot.cancelled")[0], "bot.cancelled", b.RequestID)
	var states []string
	for _, x := range e.rec.bots(b.RequestID) {
		states = append(states, x.State)
	}
	if !slices.Equal(states, []string{"requested", "cancelled"}) {
		t.Errorf("pushed states %q, want [requested cancelled]: a cancelled request stays cancelled", states)
	}
}

// Two users' requests for one meeting are two requests, each with its own
// id, requester and view of the meeting.
func TestTwoRequestersOneMeeting(t *testing.T) {
	t.Parallel()
	l := newLauncher(t)
	e := newEnv(t, l)
	e.zoomUser("host1")
	e.signIn("p1", false)
	number, _ := e.meeting("host1")
	e.started("host1", "m1", number)
	e.participant(store.KindJoin, "host1", "m1", number, "p1")
	bh := e.requestBot("host1", "m1")
	bp := e.requestBot("p1", "m1")
	e.run()
	e.waitState(bh.RequestID, store.BotDispatched)
	e.waitState(bp.RequestID, store.BotDispatched)
	hits := l.hitsOf("bot.requested")
	if len(hits) != 2 {
		t.Fatalf("launcher got %d requests, want 2", len(hits))
	}
	seen := map[string]bool{}
	for _, h := range hits {
		body := decode(t, h.body)
		id := str(t, body["request_id"])
		if h.header.Get("Idempotency-Key") != id {
			t.Errorf("Idempotency-Key %q for %s", h.header.Get("Idempotency-Key"), id)
		}
		seen[id] = true
		by := str(t, decode(t, body["requested_by"])["id"])
		switch id {
		case bh.RequestID:
			if by != "host1" {
				t.Errorf("host's request requested_by %s", by)
			}
			checkMeeting(t, body["meeting"], "m1", number, "host1", store.RoleHost, true)
		case bp.RequestID:
			if by != "p1" {
				t.Errorf("participant's request requested_by %s", by)
			}
			checkMeeting(t, body["meeting"], "m1", number, "host1", store.RoleParticipant, true)
			// p1 holds no Zoom token: no join data but the number.
			if j := joinOf(t, h); len(j) != 1 || j["meeting_number"] != number {
				t.Errorf("participant's join %v", j)
			}
		}
	}
	if !seen[bh.RequestID] || !seen[bp.RequestID] {
		t.Errorf("requests sent %v, want %s and %s", seen, bh.RequestID, bp.RequestID)
	}
}

// A launcher that cannot be reached fails the request with a reason that
// does not repeat its URL (a URL may carry a secret, and the reason is
// shown to the user).
func TestFailureReasonHidesTheURL(t *testing.T) {
	t.Parallel()
	l := newDownLauncher(t)
	e := newEnv(t, l)
	e.cfg.MaxAttempts = 2
	e.zoomUser("host1")
	number, _ := e.meeting("host1")
	e.started("host1", "m1", number)
	b := e.requestBot("host1", "m1")
	e.run()
	f := e.waitState(b.RequestID, store.BotFailed)
	if f.Detail == "" || strings.Contains(f.Detail, l.addr) || strings.Contains(f.Detail, "http") {
		t.Fatalf("detail %q: want a reason without the launcher's URL", f.Detail)
	}
}

// A redirect is an answer, not a delivery: a 303 would turn the signed POST
// into a GET whose 2xx looked like one.
func TestRedirectIsNotFollowed(t *testing.T) {
	t.Parallel()
	l := newLauncher(t)
	l.setRespond(func(n int, h hit) reply {
		if n < 2 {
			return reply{status: http.StatusSeeOther}
		}
		return reply{}
	})
	e := newEnv(t, l)
	e.zoomUser("host1")
	number, _ := e.meeting("host1")
	e.started("host1", "m1", number)
	b := e.requestBot("host1", "m1")
	e.run()
	e.waitState(b.RequestID, store.BotDispatched)
	for i, h := range l.Hits() {
		if h.method != http.MethodPost {
			t.Fatalf("request %d was a %s: a redirect was followed", i, h.method)
		}
	}
	if n := len(l.Hits()); n != 3 {
		t.Fatalf("launcher got %d requests, want 3 (two 303s retried, then 200)", n)
	}
}
