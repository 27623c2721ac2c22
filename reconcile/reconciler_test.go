package reconcile_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"onair/internal/fakezoom"
	"onair/reconcile"
	"onair/store"
	"onair/zoom"
)

// t0 is when every test's story begins: whole seconds, as Zoom's times are.
var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// clock is a settable clock, shared by the store and the reconciler.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Set(at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = at
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// recorder is an Options.OnCommit that keeps every entry it is handed.
type recorder struct {
	mu      sync.Mutex
	entries []store.Entry
}

func (r *recorder) OnCommit(c store.Committed) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.entries = append(r.entries, c.Entries...)
}

func (r *recorder) Entries() []store.Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.entries)
}

func (r *recorder) EntriesOf(user string) []store.Entry {
	var mine []store.Entry
	for _, e := range r.Entries() {
		if e.User == user {
			mine = append(mine, e)
		}
	}
	return mine
}

func types(entries []store.Entry) []string {
	var ts []string
	for _, e := range entries {
		ts = append(ts, e.Type)
	}
	return ts
}

func wantTypes(t *testing.T, what string, entries []store.Entry, want ...string) {
	t.Helper()
	if got := types(entries); !slices.Equal(got, want) {
		t.Fatalf("%s: got entries %q, want %q", what, got, want)
	}
}

func meetingOf(t *testing.T, e store.Entry) store.Meeting {
	t.Helper()
	var m store.Meeting
	if err := json.Unmarshal(e.Data, &m); err != nil {
		t.Fatalf("entry %d of %s: %v (%s)", e.Seq, e.User, err, e.Data)
	}
	return m
}

// storeTokens hands out the access token the store holds for a user.
type storeTokens struct{ st *store.Store }

func (s storeTokens) ZoomAccess(ctx context.Context, user string) (string, error) {
	t, err := s.st.ZoomToken(ctx, user)
	if err != nil {
		return "", err
	}
	return t.Access, nil
}

// env is a real store, the fake Zoom and a client pointed at it.
type env struct {
	t    *testing.T
	path string
	clk  *clock
	rec  *recorder
	st   *store.Store
	fz   *fakezoom.Zoom
	zc   *zoom.Client
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, path: filepath.Join(t.TempDir(), "onair.db"), clk: &clock{now: t0}, rec: &recorder{}}
	e.st = e.open()
	e.fz = fakezoom.New(t)
	e.zc = e.client(nil)
	return e
}

// open opens (again) the store on the environment's file.
func (e *env) open() *store.Store {
	e.t.Helper()
	st, err := store.Open(context.Background(), store.Options{
		Path: e.path, Now: e.clk.Now, OnCommit: e.rec.OnCommit, SecretKey: []byte(strings.Repeat("k", 32)),
	})
	if err != nil {
		e.t.Fatalf("open store: %v", err)
	}
	e.t.Cleanup(func() { st.Close() })
	return st
}

// client is a Zoom client for the fake, through rt when it is not nil.
func (e *env) client(rt http.RoundTripper) *zoom.Client {
	return &zoom.Client{
		ClientID: e.fz.ClientID, ClientSecret: e.fz.ClientSecret,
		OAuthURL: e.fz.OAuthURL(), APIURL: e.fz.APIURL(),
		HTTP: &http.Client{Timeout: 10 * time.Second, Transport: rt},
	}
}

// signIn makes user a Zoom user and signs them in to onair with a grant
// the fake Zoom issued.
func (e *env) signIn(user string) {
	e.t.Helper()
	u := e.fz.AddUser(fakezoom.User{ID: user})
	tok := e.fz.IssueTokens(user)
	err := e.st.SignIn(context.Background(), store.SignIn{
		User: store.User{ID: user, Email: u.Email, Name: u.DisplayName},
		Token: &store.ZoomToken{Access: tok.AccessToken, Refresh: tok.RefreshToken,
			Expiry: e.clk.Now().Add(time.Hour), Scope: tok.Scope},
		SessionID: "session-of-" + user, SessionExpires: e.clk.Now().Add(24 * time.Hour),
	})
	if err != nil {
		e.t.Fatalf("sign in %s: %v", user, err)
	}
}

// reconciler returns a reconciler on the environment: the fake Zoom (unless
// cfg.Zoom is set), the store's tokens, the clock, and no pause between users.
func (e *env) reconciler(cfg reconcile.Config) *reconcile.Reconciler {
	if cfg.Zoom == nil {
		cfg.Zoom = e.zc
	}
	cfg.Tokens = storeTokens{e.st}
	cfg.Now = e.clk.Now
	if cfg.Pace == 0 {
		cfg.Pace = time.Millisecond
	}
	return reconcile.New(cfg, e.st)
}

// run starts r.Run until the test ends.
func (e *env) run(r *reconcile.Reconciler) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	e.t.Cleanup(func() { cancel(); <-done })
}

func (e *env) ingest(d store.Delivery) {
	e.t.Helper()
	out, err := e.st.Ingest(context.Background(), d)
	if err != nil || out != store.OutcomeAccepted {
		e.t.Fatalf("ingest %s %v: got %q, %v; want accepted", d.Event, d.Key, out, err)
	}
}

func (e *env) live(user string) []store.Meeting {
	e.t.Helper()
	ms, err := e.st.LiveMeetings(context.Background(), user)
	if err != nil {
		e.t.Fatalf("live meetings of %s: %v", user, err)
	}
	return ms
}

func (e *env) liveUUIDs(user string) []string {
	e.t.Helper()
	var uuids []string
	for _, m := range e.live(user) {
		uuids = append(uuids, m.UUID)
	}
	return uuids
}

// heldMeeting returns the meeting as user sees it live now.
func (e *env) heldMeeting(user, uuid string) store.Meeting {
	e.t.Helper()
	for _, m := range e.live(user) {
		if m.UUID == uuid {
			return m
		}
	}
	e.t.Fatalf("%s is not live for %s (live: %q)", uuid, user, e.liveUUIDs(user))
	return store.Meeting{}
}

func listPath(user string) string      { return "/users/" + user + "/meetings" }
func meetingPath(id int64) string      { return "/meetings/" + strconv.FormatInt(id, 10) }
func number(m fakezoom.Meeting) string { return strconv.FormatInt(m.ID, 10) }

// Deliveries shaped as web's webhook handler makes them from Zoom's events.

func webhookInfo(m fakezoom.Meeting) store.MeetingInfo {
	return store.MeetingInfo{
		UUID: m.UUID, ID: number(m), Topic: m.Topic, HostID: m.HostID, Type: m.Type,
		StartTime: m.StartTime.UTC(), Duration: m.Duration, Timezone: m.Timezone, Rank: 2, StartRank: 2,
	}
}

func webhookStarted(m fakezoom.Meeting, at time.Time) store.Delivery {
	return store.Delivery{
		Event: "meeting.started", Key: []string{"meeting.started", fmt.Sprint(at.UnixMilli()), m.UUID},
		Kind: store.KindStart, At: at, Received: at, Meeting: webhookInfo(m),
	}
}

func webhookEnded(m fakezoom.Meeting, at, end time.Time) store.Delivery {
	d := store.Delivery{
		Event: "meeting.ended", Key: []string{"meeting.ended", fmt.Sprint(at.UnixMilli()), m.UUID},
		Kind: store.KindEnd, At: at, Received: at, Meeting: webhookInfo(m),
	}
	d.Meeting.EndTime = end
	return d
}

// hostJoined is the host's own meeting.participant_joined, the first sign
// of an instant meeting whose meeting.started never came: it carries less
// (rank 1), and no start time at all when withStart is false.
func hostJoined(m fakezoom.Meeting, at time.Time, withStart bool) store.Delivery {
	info := store.MeetingInfo{UUID: m.UUID, ID: number(m), Topic: m.Topic, HostID: m.HostID, Type: m.Type,
		Duration: m.Duration, Timezone: m.Timezone, Rank: 1, StartRank: 1, StartTime: m.StartTime.UTC()}
	if !withStart {
		info.StartTime, info.StartRank = at, 0
	}
	return store.Delivery{
		Event: "meeting.participant_joined", Key: []string{"meeting.participant_joined", fmt.Sprint(at.UnixMilli()), m.UUID, m.HostID, "puuid"},
		Kind: store.KindJoin, At: at, Received: at, Meeting: info, Participant: m.HostID, ParticipantAt: at,
	}
}

func participantJoined(m fakezoom.Meeting, participant string, at time.Time) store.Delivery {
	d := hostJoined(m, at, true)
	d.Key = []string{"meeting.participant_joined", fmt.Sprint(at.UnixMilli()), m.UUID, participant, "puuid-" + participant}
	d.Participant = participant
	return d
}

// webhookFrames is what webhooks alone make of deliveries: the entries of
// a fresh store they are ingested into, on the same clock.
func webhookFrames(t *testing.T, clk *clock, ds ...store.Delivery) []store.Entry {
	t.Helper()
	rec := &recorder{}
	st, err := store.Open(context.Background(), store.Options{
		Path: filepath.Join(t.TempDir(), "webhooks.db"), Now: clk.Now, OnCommit: rec.OnCommit,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, d := range ds {
		if out, err := st.Ingest(context.Background(), d); err != nil || out != store.OutcomeAccepted {
			t.Fatalf("reference ingest %s: %q, %v", d.Event, out, err)
		}
	}
	return rec.Entries()
}

// sameFrame fails unless a repair's entry is the frame a webhook made.
func sameFrame(t *testing.T, what string, got, want store.Entry) {
	t.Helper()
	if got.User != want.User || got.Type != want.Type || string(got.Data) != string(want.Data) {
		t.Fatalf("%s: got %s %s %s\nwant the webhook's %s %s %s", what, got.User, got.Type, got.Data, want.User, want.Type, want.Data)
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

const host = "Host_U1"

func TestMissedScheduledMeetingStarts(t *testing.T) {
	e := newEnv(t)
	e.signIn(host)
	ctx := context.Background()
	sched := e.fz.AddMeeting(fakezoom.Meeting{UUID: "sch/+Ab1==", ID: 85012345678, HostID: host, Topic: "Planning",
		Type: 2, Status: "started", StartTime: t0.Add(-5 * time.Minute), Duration: 45, Timezone: "Europe/Berlin"})
	// Neither a waiting scheduled meeting nor an instant one (Zoom leaves it
	// out of the list) is started.
	e.fz.AddMeeting(fakezoom.Meeting{UUID: "wait-1", ID: 85012345679, HostID: host, Type: 2, Status: "waiting", StartTime: t0})
	e.fz.AddMeeting(fakezoom.Meeting{UUID: "inst-1", ID: 85012345680, HostID: host, Type: 1, Status: "started", StartTime: t0})

	runs := prometheus.NewCounter(prometheus.CounterOpts{Name: "runs"})
	repairs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "repairs"}, []string{"repair"})
	r := e.reconciler(reconcile.Config{Runs: runs, Repairs: repairs})
	r.User(ctx, host)

	entries := e.rec.EntriesOf(host)
	wantTypes(t, "after the run", entries, store.TypeMeetingStarted)
	ref := webhookFrames(t, e.clk, webhookStarted(sched, t0))
	sameFrame(t, "the repair's meeting.started", entries[0], ref[0])
	if got, want := e.liveUUIDs(host), []string{sched.UUID}; !slices.Equal(got, want) {
		t.Fatalf("live meetings: got %q, want %q", got, want)
	}
	if got := e.fz.APICalls(listPath(host)); got != 1 {
		t.Fatalf("%s calls: got %d, want 1", listPath(host), got)
	}
	if got := counterValue(t, runs); got != 1 {
		t.Fatalf("runs: got %v, want 1", got)
	}
	if got := counterValue(t, repairs.WithLabelValues("started")); got != 1 {
		t.Fatalf("started repairs: got %v, want 1", got)
	}

	// A second run finds nothing to repair.
	e.clk.Add(time.Minute)
	r.User(ctx, host)
	if got := e.rec.EntriesOf(host); len(got) != 1 {
		t.Fatalf("second run: got entries %q, want none new", types(got[1:]))
	}
	if got := e.fz.APICalls(meetingPath(sched.ID)); got != 1 {
		t.Fatalf("second run: %d calls of %s, want 1 (the live meeting is checked)", got, meetingPath(sched.ID))
	}
	if got := counterValue(t, repairs.WithLabelValues("started")) + counterValue(t, repairs.WithLabelValues("ended")); got != 1 {
		t.Fatalf("repairs after the second run: got %v, want 1", got)
	}
}

// heldLive sets up a meeting onair holds live for the host since t0 (by a
// webhook), which Zoom reports as z (nil: Zoom does not know it).
func heldLive(t *testing.T, e *env, z *fakezoom.Meeting) fakezoom.Meeting {
	t.Helper()
	m := fakezoom.Meeting{UUID: "held/+Xy9==", ID: 86099988877, HostID: host, Topic: "Daily", Type: 2,
		StartTime: t0, Duration: 30, Timezone: "Europe/Paris"}
	e.clk.Set(t0)
	e.ingest(webhookStarted(m, t0))
	if z != nil {
		zm := m
		if z.UUID != "" {
			zm.UUID = z.UUID
		}
		if !z.StartTime.IsZero() {
			zm.StartTime = z.StartTime
		}
		zm.Status = z.Status
		e.fz.AddMeeting(zm)
	}
	return m
}

func TestWaitingEndsAfterTwoMinutes(t *testing.T) {
	e := newEnv(t)
	e.signIn(host)
	ctx := context.Background()
	m := heldLive(t, e, &fakezoom.Meeting{Status: "waiting"})
	r := e.reconciler(reconcile.Config{})
	n := len(e.rec.EntriesOf(host))

	// Zoom's status lags a fresh start: kept.
	e.clk.Set(t0.Add(time.Minute + 59*time.Second))
	r.User(ctx, host)
	if got := e.fz.APICalls(meetingPath(m.ID)); got != 1 {
		t.Fatalf("calls of %s: got %d, want 1", meetingPath(m.ID), got)
	}
	if got := e.rec.EntriesOf(host)[n:]; len(got) != 0 {
		t.Fatalf("live for less than 2 minutes: got entries %q, want none", types(got))
	}
	if got := e.liveUUIDs(host); !slices.Equal(got, []string{m.UUID}) {
		t.Fatalf("live meetings: got %q, want %q", got, m.UUID)
	}

	// Past the 2 minutes: ended, with the frame meeting.ended would have made.
	end := t0.Add(2*time.Minute + time.Second)
	e.clk.Set(end)
	r.User(ctx, host)
	got := e.rec.EntriesOf(host)[n:]
	wantTypes(t, "live for more than 2 minutes", got, store.TypeMeetingEnded)
	ref := webhookFrames(t, e.clk, webhookStarted(m, t0), webhookEnded(m, end, end))
	sameFrame(t, "the repair's meeting.ended", got[0], ref[1])
	if got := e.liveUUIDs(host); len(got) != 0 {
		t.Fatalf("live meetings: got %q, want none", got)
	}
}

func TestAnotherUUIDEndsIt(t *testing.T) {
	e := newEnv(t)
	e.signIn(host)
	// The same number, live again as another occurrence, within a minute:
	// no grace for this one.
	next := t0.Add(40 * time.Second)
	m := heldLive(t, e, &fakezoom.Meeting{UUID: "next/+Occ==", Status: "started", StartTime: next})
	n := len(e.rec.EntriesOf(host))
	now := t0.Add(50 * time.Second)
	e.clk.Set(now)
	e.reconciler(reconcile.Config{}).User(context.Background(), host)

	var ended []store.Entry
	for _, en := range e.rec.EntriesOf(host)[n:] {
		if en.Type == store.TypeMeetingEnded {
			ended = append(ended, en)
		}
	}
	if len(ended) != 1 || meetingOf(t, ended[0]).UUID != m.UUID {
		t.Fatalf("got entries %q, want one meeting.ended of %s", types(e.rec.EntriesOf(host)[n:]), m.UUID)
	}
	ref := webhookFrames(t, e.clk, webhookStarted(m, t0), webhookEnded(m, now, now))
	sameFrame(t, "the repair's meeting.ended", ended[0], ref[1])
	// The new occurrence is a scheduled meeting Zoom lists as live: started.
	if got, want := e.liveUUIDs(host), []string{"next/+Occ=="}; !slices.Equal(got, want) {
		t.Fatalf("live meetings: got %q, want %q", got, want)
	}
}

func TestNotFoundEndsAfterTwoMinutes(t *testing.T) {
	e := newEnv(t)
	e.signIn(host)
	ctx := context.Background()
	m := heldLive(t, e, nil) // Zoom: 404 Meeting does not exist
	r := e.reconciler(reconcile.Config{})
	n := len(e.rec.EntriesOf(host))

	e.clk.Set(t0.Add(time.Minute))
	r.User(ctx, host)
	if got := e.fz.APICalls(meetingPath(m.ID)); got != 1 {
		t.Fatalf("calls of %s: got %d, want 1", meetingPath(m.ID), got)
	}
	if got := e.rec.EntriesOf(host)[n:]; len(got) != 0 {
		t.Fatalf("within 2 minutes: got entries %q, want none", types(got))
	}

	end := t0.Add(3 * time.Minute)
	e.clk.Set(end)
	r.User(ctx, host)
	got := e.rec.EntriesOf(host)[n:]
	wantTypes(t, "past 2 minutes", got, store.TypeMeetingEnded)
	ref := webhookFrames(t, e.clk, webhookStarted(m, t0), webhookEnded(m, end, end))
	sameFrame(t, "the repair's meeting.ended", got[0], ref[1])
	if got := e.liveUUIDs(host); len(got) != 0 {
		t.Fatalf("live meetings: got %q, want none", got)
	}
}

func TestStartedSameUUIDKept(t *testing.T) {
	e := newEnv(t)
	e.signIn(host)
	m := heldLive(t, e, &fakezoom.Meeting{Status: "started"})
	n := len(e.rec.EntriesOf(host))
	e.clk.Set(t0.Add(3 * time.Hour))
	r := e.reconciler(reconcile.Config{})
	r.User(context.Background(), host)
	r.User(context.Background(), host)
	if got := e.fz.APICalls(meetingPath(m.ID)); got != 2 {
		t.Fatalf("calls of %s: got %d, want 2", meetingPath(m.ID), got)
	}
	if got := e.rec.EntriesOf(host)[n:]; len(got) != 0 {
		t.Fatalf("got entries %q, want none", types(got))
	}
	if got := e.liveUUIDs(host); !slices.Equal(got, []string{m.UUID}) {
		t.Fatalf("live meetings: got %q, want %q", got, m.UUID)
	}
}

// An instant meeting whose meeting.started never came is live by its host's
// own participant_joined, which tells less (no rank-2 fields). When Zoom no
// longer knows it, or has its number live again, the meeting.ended frame
// still describes the meeting onair held: its number, type and start time,
// as a webhook's meeting.ended about it would.
func TestEndedFrameKeepsWhatOnairKnew(t *testing.T) {
	for _, tc := range []struct {
		name   string
		inZoom *fakezoom.Meeting
	}{
		{"NotFound", nil},
		{"AnotherUUID", &fakezoom.Meeting{UUID: "next/+Occ==", Status: "started", StartTime: t0.Add(4 * time.Minute)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.signIn(host)
			m := fakezoom.Meeting{UUID: "inst/+Ab==", ID: 87011122233, HostID: host, Topic: "Quick call", Type: 1,
				StartTime: t0, Timezone: "Europe/Paris"}
			e.clk.Set(t0)
			e.ingest(hostJoined(m, t0, true))
			held := e.heldMeeting(host, m.UUID)
			if tc.inZoom != nil {
				zm := m
				zm.UUID, zm.Status, zm.StartTime = tc.inZoom.UUID, tc.inZoom.Status, tc.inZoom.StartTime
				e.fz.AddMeeting(zm)
			}
			n := len(e.rec.EntriesOf(host))
			e.clk.Set(t0.Add(5 * time.Minute))
			e.reconciler(reconcile.Config{}).User(context.Background(), host)
			var got *store.Meeting
			for _, en := range e.rec.EntriesOf(host)[n:] {
				if en.Type == store.TypeMeetingEnded {
					mt := meetingOf(t, en)
					got = &mt
				}
			}
			if got == nil {
				t.Fatalf("got entries %q, want a meeting.ended", types(e.rec.EntriesOf(host)[n:]))
			}
			if got.UUID != held.UUID || got.ID != held.ID || got.Type != held.Type || got.Topic != held.Topic ||
				!got.StartTime.Equal(held.StartTime.Time) || got.HostID != held.HostID || got.Timezone != held.Timezone {
				t.Fatalf("meeting.ended describes\n%+v\nwant the meeting onair held\n%+v", *got, held)
			}
		})
	}
}

// retryAfter rewrites Zoom's Retry-After on a 429 (the fake always says 1).
type retryAfter struct {
	secs string
	next http.RoundTripper
}

func (rt retryAfter) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := rt.next.RoundTrip(req)
	if err == nil && resp.StatusCode == http.StatusTooManyRequests {
		resp.Header.Set("Retry-After", rt.secs)
	}
	return resp, err
}

func TestRateLimitHonoured(t *testing.T) {
	e := newEnv(t)
	e.signIn(host)
	e.signIn("Other_U2")
	m := heldLive(t, e, &fakezoom.Meeting{Status: "waiting"})
	e.clk.Set(t0.Add(10 * time.Minute))
	r := e.reconciler(reconcile.Config{Zoom: e.client(retryAfter{"30", http.DefaultTransport})})
	e.fz.RateLimit(1)
	first, cancelFirst := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancelFirst()
	r.User(first, host)
	if got := e.fz.APICalls(""); got != 1 {
		t.Fatalf("calls after a 429: got %d, want 1 (the run stops)", got)
	}
	if got := e.fz.APICalls(meetingPath(m.ID)); got != 0 {
		t.Fatalf("calls of %s after a 429: got %d, want 0", meetingPath(m.ID), got)
	}

	// Before Retry-After passed, no call at all, for this user or another
	// of the account (Zoom's limits are per account).
	for _, d := range []time.Duration{0, 10 * time.Second, 29 * time.Second} {
		e.clk.Set(t0.Add(10*time.Minute + d))
		for _, u := range []string{host, "Other_U2"} {
			ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
			r.User(ctx, u)
			cancel()
			if got := e.fz.APICalls(""); got != 1 {
				t.Fatalf("%v after the 429, reconciling %s: %d calls, want none new", d, u, got-1)
			}
		}
	}
	if got := e.rec.EntriesOf(host)[1:]; len(got) != 0 {
		t.Fatalf("got entries %q, want none before Retry-After passed", types(got))
	}

	// Once it passed, the run goes on and repairs.
	e.clk.Set(t0.Add(10*time.Minute + 31*time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	r.User(ctx, host)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the run after Retry-After passed took %v", d)
	}
	if got := e.fz.APICalls(meetingPath(m.ID)); got != 1 {
		t.Fatalf("calls of %s after Retry-After: got %d, want 1", meetingPath(m.ID), got)
	}
	wantTypes(t, "after Retry-After", e.rec.EntriesOf(host)[1:], store.TypeMeetingEnded)
}

func TestRateLimitStopsTheRun(t *testing.T) {
	e := newEnv(t)
	e.signIn(host)
	a := fakezoom.Meeting{UUID: "a==", ID: 81000000001, HostID: host, Type: 2, StartTime: t0, Status: "waiting"}
	b := fakezoom.Meeting{UUID: "b==", ID: 81000000002, HostID: host, Type: 2, StartTime: t0.Add(time.Second), Status: "waiting"}
	e.ingest(webhookStarted(a, t0))
	e.ingest(webhookStarted(b, t0))
	e.fz.AddMeeting(a)
	e.fz.AddMeeting(b)
	// The newest is checked first.
	e.fz.FailAPI(meetingPath(b.ID), http.StatusTooManyRequests, 1)
	e.clk.Set(t0.Add(time.Hour))
	r := e.reconciler(reconcile.Config{})
	r.User(context.Background(), host)
	if got := [2]int{e.fz.APICalls(meetingPath(a.ID)), e.fz.APICalls(meetingPath(b.ID))}; got != [2]int{0, 1} {
		t.Fatalf("calls of a and b: got %v, want [0 1] (a 429 stops the run)", got)
	}
	if got := e.liveUUIDs(host); len(got) != 2 {
		t.Fatalf("live meetings: got %q, want both", got)
	}
}

func TestNoTokenNoCall(t *testing.T) {
	e := newEnv(t)
	// Known (they hosted a meeting), but onair holds no token for them.
	m := heldLive(t, e, nil)
	e.fz.AddUser(fakezoom.User{ID: host})
	e.fz.AddMeeting(fakezoom.Meeting{UUID: "sched==", ID: 82000000001, HostID: host, Status: "started", StartTime: t0})
	e.clk.Set(t0.Add(time.Hour))
	r := e.reconciler(reconcile.Config{})
	r.User(context.Background(), host)
	r.User(context.Background(), "Unknown_U9")
	if got := e.fz.APICalls(""); got != 0 {
		t.Fatalf("Zoom calls: got %d, want none", got)
	}
	if got := e.liveUUIDs(host); !slices.Equal(got, []string{m.UUID}) {
		t.Fatalf("live meetings: got %q, want %q", got, m.UUID)
	}
}

func TestKickThrottled(t *testing.T) {
	e := newEnv(t)
	e.signIn(host)
	for _, s := range []string{"S1", "S2", "S3", "S4"} {
		e.signIn(s)
	}
	calls := func(u string) int { return e.fz.APICalls(listPath(u)) }
	// kickAndSettle kicks user, then a sentinel whose run proves the kick of
	// user has been served (kicks are served in order).
	kickAndSettle := func(r *reconcile.Reconciler, user, sentinel string) {
		t.Helper()
		r.Kick(user)
		r.Kick(sentinel)
		waitFor(t, "the sentinel's reconciliation", func() bool { return calls(sentinel) == 1 })
	}

	r := e.reconciler(reconcile.Config{Interval: time.Hour})
	e.run(r)
	r.Kick(host)
	waitFor(t, "the first kick's reconciliation", func() bool { return calls(host) == 1 })

	e.clk.Add(30 * time.Second)
	kickAndSettle(r, host, "S1")
	if got := calls(host); got != 1 {
		t.Fatalf("a second kick within the minute: %d runs, want 1", got)
	}

	// The throttle is in the database: another reconciler, on the store
	// opened again (a restart), does not run it within the minute either.
	e.clk.Add(20 * time.Second)
	e.st.Close()
	e.st = e.open()
	r2 := e.reconciler(reconcile.Config{Interval: time.Hour})
	e.run(r2)
	kickAndSettle(r2, host, "S2")
	if got := calls(host); got != 1 {
		t.Fatalf("a kick after a restart within the minute: %d runs, want 1", got)
	}

	// After the minute, a kick runs it.
	e.clk.Add(11 * time.Second)
	r2.Kick(host)
	waitFor(t, "a kick after the minute", func() bool { return calls(host) == 2 })
	kickAndSettle(r2, host, "S3")
	if got := calls(host); got != 2 {
		t.Fatalf("a kick right after: %d runs, want 2", got)
	}
}

// gate holds Zoom's answers to the meeting lists until released.
type gate struct {
	next    http.RoundTripper
	entered chan string
	release chan struct{}
}

func (g *gate) RoundTrip(req *http.Request) (*http.Response, error) {
	if strings.HasSuffix(req.URL.Path, "/meetings") {
		g.entered <- req.URL.Path
		<-g.release
	}
	return g.next.RoundTrip(req)
}

func TestNeverTwoAtOnce(t *testing.T) {
	e := newEnv(t)
	e.signIn(host)
	e.signIn("Other_U2")
	g := &gate{next: http.DefaultTransport, entered: make(chan string, 100), release: make(chan struct{})}
	r := e.reconciler(reconcile.Config{Zoom: e.client(g)})
	ctx := context.Background()

	for batch := 1; batch <= 2; batch++ {
		first := make(chan struct{})
		go func() { defer close(first); r.User(ctx, host) }()
		select {
		case <-g.entered:
		case <-time.After(5 * time.Second):
			t.Fatal("the first reconciliation made no call")
		}
		// Others for the same user, meanwhile, return at once.
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() { r.User(ctx, host) })
		}
		returned := make(chan struct{})
		go func() { wg.Wait(); close(returned) }()
		select {
		case <-returned:
		case <-time.After(5 * time.Second):
			close(g.release)
			t.Fatal("a second reconciliation of the same user did not return while one was running")
		}
		// Another user's reconciliation is not held up by this one.
		other := make(chan struct{})
		go func() { defer close(other); r.User(ctx, "Other_U2") }()
		select {
		case p := <-g.entered:
			if p != "/v2"+listPath("Other_U2") {
				close(g.release)
				t.Fatalf("while %s's run waits, got a call of %s", host, p)
			}
		case <-time.After(5 * time.Second):
			close(g.release)
			t.Fatal("another user's reconciliation made no call while one was running")
		}
		g.release <- struct{}{}
		g.release <- struct{}{}
		<-first
		<-other
		if got := e.fz.APICalls(listPath(host)); got != batch {
			t.Fatalf("batch %d: %d calls of %s, want %d", batch, got, listPath(host), batch)
		}
	}
}

// staleRun runs the periodic pass (every 10ms) until watched, a user with
// a token, has been reconciled twice more: every pass before that one has
// looked at every stale meeting.
func staleRun(t *testing.T, e *env, cfg reconcile.Config, watched string) {
	t.Helper()
	cfg.Interval = 10 * time.Millisecond
	r := e.reconciler(cfg)
	before := e.fz.APICalls(listPath(watched))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	waitFor(t, "two periodic passes", func() bool { return e.fz.APICalls(listPath(watched)) >= before+2 })
	cancel()
	<-done
}

func TestStaleEnded(t *testing.T) {
	e := newEnv(t)
	const withToken, noToken, young = "Tok_Host", "NoTok_Host", "Young_Host"
	e.signIn(withToken)
	old := fakezoom.Meeting{UUID: "stale/+1==", ID: 83000000001, HostID: noToken, Topic: "Forgotten", Type: 2, StartTime: t0, Timezone: "UTC"}
	kept := fakezoom.Meeting{UUID: "tok/+2==", ID: 83000000002, HostID: withToken, Topic: "Asked", Type: 2, StartTime: t0, Status: "started"}
	fresh := fakezoom.Meeting{UUID: "young/+3==", ID: 83000000003, HostID: young, Topic: "Recent", Type: 2, StartTime: t0.Add(90 * time.Minute)}
	e.ingest(webhookStarted(old, t0))
	e.ingest(webhookStarted(kept, t0))
	e.fz.AddMeeting(kept)
	e.clk.Set(fresh.StartTime)
	e.ingest(webhookStarted(fresh, fresh.StartTime))

	now := t0.Add(2 * time.Hour)
	e.clk.Set(now)
	repairs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "repairs"}, []string{"repair"})
	staleRun(t, e, reconcile.Config{StaleAfter: time.Hour, Repairs: repairs}, withToken)

	got := e.rec.EntriesOf(noToken)
	wantTypes(t, "the stale meeting's host", got, store.TypeMeetingStarted, store.TypeMeetingEnded)
	ref := webhookFrames(t, e.clk, webhookStarted(old, t0), webhookEnded(old, now, now))
	sameFrame(t, "the stale meeting's meeting.ended", got[1], ref[1])
	if got := e.liveUUIDs(noToken); len(got) != 0 {
		t.Fatalf("%s's live meetings: got %q, want none", noToken, got)
	}
	if got := counterValue(t, repairs.WithLabelValues("stale")); got != 1 {
		t.Fatalf("stale repairs: got %v, want 1", got)
	}
	for _, u := range []string{withToken, young} {
		wantTypes(t, u, e.rec.EntriesOf(u), store.TypeMeetingStarted)
	}
	if got := e.liveUUIDs(withToken); !slices.Equal(got, []string{kept.UUID}) {
		t.Fatalf("%s's live meetings: got %q, want %q", withToken, got, kept.UUID)
	}
	if got := e.liveUUIDs(young); !slices.Equal(got, []string{fresh.UUID}) {
		t.Fatalf("%s's live meetings: got %q, want %q", young, got, fresh.UUID)
	}
}

// A stale meeting started by its host's own participant_joined, which
// carried no start time, keeps the start time onair showed for it.
func TestStaleEndKeepsStartTime(t *testing.T) {
	e := newEnv(t)
	const noToken, watched = "NoTok_Host", "Tok_Host"
	e.signIn(watched)
	m := fakezoom.Meeting{UUID: "inst/+9==", ID: 84000000001, HostID: noToken, Type: 1, StartTime: t0}
	e.ingest(hostJoined(m, t0, false))
	held := e.heldMeeting(noToken, m.UUID)
	e.clk.Set(t0.Add(2 * time.Hour))
	staleRun(t, e, reconcile.Config{StaleAfter: time.Hour}, watched)
	got := e.rec.EntriesOf(noToken)
	wantTypes(t, "the host", got, store.TypeMeetingStarted, store.TypeMeetingEnded)
	if ended := meetingOf(t, got[1]); !ended.StartTime.Equal(held.StartTime.Time) || ended.ID != held.ID {
		t.Fatalf("meeting.ended: start_time %v, id %q; want %v, %q as onair showed it (%s)",
			ended.StartTime, ended.ID, held.StartTime, held.ID, got[1].Data)
	}
}

// A participant's token cannot ask Zoom about another host's meeting (and
// the reconciler asks only about meetings its user hosts): a meeting whose
// host holds no token is ended as stale even when a participant holds one,
// or it stays live forever once its meeting.ended was lost.
func TestStaleWhenOnlyAParticipantHoldsAToken(t *testing.T) {
	e := newEnv(t)
	const noToken, participant = "NoTok_Host", "Tok_Participant"
	e.signIn(participant)
	m := fakezoom.Meeting{UUID: "shared/+7==", ID: 84000000002, HostID: noToken, Topic: "Shared", Type: 2, StartTime: t0}
	e.ingest(webhookStarted(m, t0))
	e.ingest(participantJoined(m, participant, t0.Add(time.Minute)))
	e.clk.Set(t0.Add(3 * time.Hour))
	staleRun(t, e, reconcile.Config{StaleAfter: time.Hour}, participant)
	for _, u := range []string{noToken, participant} {
		if got := e.liveUUIDs(u); len(got) != 0 {
			t.Errorf("%s's live meetings 3 hours after the last event, nobody able to ask Zoom: got %q, want none", u, got)
		}
	}
}

// Zoom failing for one meeting (5xx) does not keep the others unchecked.
func TestOneFailureDoesNotStopTheRun(t *testing.T) {
	e := newEnv(t)
	e.signIn(host)
	a := fakezoom.Meeting{UUID: "a==", ID: 81000000001, HostID: host, Type: 2, StartTime: t0, Status: "waiting"}
	b := fakezoom.Meeting{UUID: "b==", ID: 81000000002, HostID: host, Type: 2, StartTime: t0.Add(time.Second), Status: "waiting"}
	e.ingest(webhookStarted(a, t0))
	e.ingest(webhookStarted(b, t0))
	e.fz.AddMeeting(a)
	e.fz.AddMeeting(b)
	e.fz.FailAPI(meetingPath(b.ID), http.StatusInternalServerError, 1) // the newest, checked first
	e.clk.Set(t0.Add(time.Hour))
	e.reconciler(reconcile.Config{}).User(context.Background(), host)
	if got := e.fz.APICalls(meetingPath(a.ID)); got != 1 {
		t.Errorf("calls of %s after a 500 for %s: got %d, want 1", meetingPath(a.ID), meetingPath(b.ID), got)
	}
	if got, want := e.liveUUIDs(host), []string{b.UUID}; !slices.Equal(got, want) {
		t.Errorf("live meetings: got %q, want %q (a ended, b unknown for now)", got, want)
	}
}
