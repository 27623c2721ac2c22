package web

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"net/http"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"onair/store"
	"onair/zoom"
)

// The order-independence property of CONTRACT §2: any interleaving,
// duplication or reordering of meetings' deliveries ends in the same state
// as the in-order sequence, and every user's frames on the way make sense.

const (
	ordSeed        = 20261204 // change to explore; failures print the case seed
	ordDirectCases = 300      // through Store.Ingest
	ordHTTPCases   = 30       // through the HTTP endpoint to real tabs
)

// ordDelivery is one generated webhook.
type ordDelivery struct {
	at   time.Time // event time; the in-order sequence sorts by it
	name string
	body []byte
}

// ordCase is one generated scenario: users (all made known beforehand),
// the in-order deliveries, a permutation with duplicates, and the final
// live meetings the contract implies.
type ordCase struct {
	seed     int64
	users    []string
	inOrder  []ordDelivery
	shuffled []ordDelivery
	// want: user → uuid → role, from a model of the contract.
	want   map[string]map[string]string
	lastID string
}

func (c *ordCase) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "case seed %d\nin order:\n", c.seed)
	for _, d := range c.inOrder {
		fmt.Fprintf(&b, "  %s\n", d.body)
	}
	b.WriteString("shuffled:\n")
	for _, d := range c.shuffled {
		var compact bytes.Buffer
		if json.Compact(&compact, d.body) == nil && compact.Len() != len(d.body) {
			fmt.Fprintf(&b, "  %s (re-serialised)\n", compact.Bytes())
			continue
		}
		fmt.Fprintf(&b, "  %s\n", d.body)
	}
	return b.String()
}

const ordB64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

func ordUUID(r *rand.Rand) string {
	b := make([]byte, 22)
	for i := range b {
		b[i] = ordB64[r.Intn(len(ordB64))]
	}
	if r.Intn(4) == 0 {
		b[0] = '/'
	}
	return string(b) + "=="
}

// ordGen makes case n of the seeded sequence. prefix keeps users and uuids
// of different cases apart so cases can share a store.
func ordGen(seed int64, prefix string) *ordCase {
	r := rand.New(rand.NewSource(seed))
	c := &ordCase{seed: seed, want: map[string]map[string]string{}}
	nUsers := 2 + r.Intn(3)
	for i := range nUsers {
		u := fmt.Sprintf("%s-u%d", prefix, i)
		c.users = append(c.users, u)
		c.want[u] = map[string]string{}
	}
	base := time.Date(2026, 12, 4, 14, 0, 0, 0, time.UTC).Add(time.Duration(r.Intn(1000)) * time.Hour)
	nMeetings := 1 + r.Intn(3)
	for range nMeetings {
		c.inOrder = append(c.inOrder, ordMeeting(r, c, base.Add(time.Duration(r.Intn(3600))*time.Second))...)
	}
	sort.SliceStable(c.inOrder, func(i, j int) bool { return c.inOrder[i].at.Before(c.inOrder[j].at) })

	// A permutation with duplicates; some duplicates are re-serialised (the
	// same delivery, other bytes).
	all := slices.Clone(c.inOrder)
	for _, d := range c.inOrder {
		for r.Intn(4) == 0 {
			dup := d
			if r.Intn(2) == 0 {
				var v any
				if err := json.Unmarshal(d.body, &v); err != nil {
					panic(err)
				}
				dup.body, _ = json.MarshalIndent(v, "", " ")
			}
			all = append(all, dup)
		}
	}
	r.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	c.shuffled = all
	return c
}

// ordMeeting generates one meeting's deliveries and records its expected
// final state in c.want.
func ordMeeting(r *rand.Rand, c *ordCase, t0 time.Time) []ordDelivery {
	uuid := ordUUID(r)
	host := c.users[r.Intn(len(c.users))]
	webinar := r.Intn(5) == 0
	prefix := "meeting."
	if webinar {
		prefix = "webinar."
	}
	// Personal rooms and recurring meetings reuse the number: only the uuid tells them apart.
	id := fmt.Sprintf("8%010d", r.Int63n(1e10))
	if c.lastID != "" && r.Intn(3) == 0 {
		id = c.lastID
	}
	c.lastID = id
	numericID := r.Intn(3) == 0
	topic := fmt.Sprintf("Topic %d", r.Intn(100))
	startTime := t0

	// Events are seconds apart, or sometimes within one second (a
	// reconnect, a quick join and leave), where only event_ts's
	// milliseconds (sub) tell their order.
	t, sub := t0, 0
	tick := func() time.Time {
		if r.Intn(6) == 0 && sub < 900 {
			sub += 1 + r.Intn(50)
		} else {
			t, sub = t.Add(time.Duration(1+r.Intn(120))*time.Second), r.Intn(500)
		}
		return t
	}
	var out []ordDelivery
	object := func(full bool) map[string]any {
		o := map[string]any{"uuid": uuid, "host_id": host, "type": 2}
		if numericID {
			o["id"] = json.Number(id)
		} else {
			o["id"] = id
		}
		// Participant events may leave out the meeting's details.
		if full || r.Intn(2) == 0 {
			o["topic"] = topic
			o["start_time"] = startTime.Format(time.RFC3339)
			o["duration"] = 30
			o["timezone"] = "Europe/Berlin"
		}
		return o
	}
	add := func(name string, at time.Time, obj map[string]any) {
		// join_time, leave_time, end_time have whole seconds; event_ts, in
		// the same second, has milliseconds.
		ts := at.Add(time.Duration(sub) * time.Millisecond)
		b, err := json.Marshal(map[string]any{
			"event": name, "event_ts": ts.UnixMilli(),
			"payload": map[string]any{"account_id": "acc", "object": obj},
		})
		if err != nil {
			panic(err)
		}
		out = append(out, ordDelivery{at: ts, name: name, body: b})
	}
	participant := func(name, user string, at time.Time) {
		o := object(false)
		p := map[string]any{"user_id": fmt.Sprint(r.Intn(1e8)), "id": user, "user_name": "P",
			"participant_uuid": "PU-" + user, "email": user + "@example.com"}
		// Without join_time/leave_time, event_ts orders them.
		withTime := r.Intn(6) != 0
		if strings.HasSuffix(name, "left") {
			p["leave_reason"] = "left the meeting"
			if withTime {
				p["leave_time"] = at.Format(time.RFC3339)
			}
		} else if withTime {
			p["join_time"] = at.Format(time.RFC3339)
		}
		o["participant"] = p
		add(name, at, o)
	}

	hasStart := r.Intn(5) != 0
	live := false
	if hasStart {
		add(prefix+"started", tick(), object(true))
		live = true
	}
	// Participants: known users other than the host, a stranger (unknown to
	// onair) and someone not signed in (participant.id "").
	var people []string
	for _, u := range c.users {
		if u != host && r.Intn(2) == 0 {
			people = append(people, u)
		}
	}
	if r.Intn(4) == 0 {
		people = append(people, c.users[0]+"-stranger")
	}
	if r.Intn(4) == 0 {
		people = append(people, "")
	}
	sessions := map[string]int{}
	in := map[string]bool{}
	stays := map[string]bool{} // their last leave is never sent
	for _, p := range people {
		sessions[p] = 1 + r.Intn(2)
	}
	// The host's own participant events: a join (which may be the only
	// sign of the start), sometimes a leave and a rejoin; none of them
	// changes anything for the host once the meeting is live.
	hostEvents := 0
	if r.Intn(3) == 0 {
		hostEvents = 1 + r.Intn(3)
	}
	hostIn := false
	for {
		type step struct {
			who  string
			join bool
		}
		var steps []step
		for _, p := range people {
			switch {
			case stays[p]:
			case in[p]:
				steps = append(steps, step{p, false})
			case sessions[p] > 0:
				steps = append(steps, step{p, true})
			}
		}
		if hostEvents > 0 {
			steps = append(steps, step{host, !hostIn})
		}
		if len(steps) == 0 {
			break
		}
		s := steps[r.Intn(len(steps))]
		at := tick()
		if s.who == host {
			hostEvents--
			if s.join {
				participant(prefix+"participant_joined", host, at)
				live = true
			} else {
				participant(prefix+"participant_left", host, at)
			}
			hostIn = s.join
			continue
		}
		if s.join {
			sessions[s.who]--
			participant(prefix+"participant_joined", s.who, at)
			in[s.who] = true
			live = true
			continue
		}
		// The last leave is sometimes never sent (the meeting ends first).
		if sessions[s.who] == 0 && r.Intn(4) == 0 {
			stays[s.who] = true
			continue
		}
		participant(prefix+"participant_left", s.who, at)
		in[s.who] = false
	}
	ended := r.Intn(5) < 3
	if ended {
		end := tick()
		o := object(true)
		name := prefix + "ended"
		if !webinar && r.Intn(3) == 0 {
			name = "meeting.deleted"
		} else {
			o["end_time"] = end.Format(time.RFC3339)
		}
		add(name, end, o)
	}

	// The contract's answer: live when started or joined and not ended;
	// for its host, and for each known participant whose last word was a join.
	if live && !ended {
		c.want[host][uuid] = store.RoleHost
		for _, p := range people {
			if _, known := c.want[p]; known && in[p] {
				c.want[p][uuid] = store.RoleParticipant
			}
		}
	}
	return out
}

// ordRecorder keeps every committed entry by user.
type ordRecorder struct {
	mu      sync.Mutex
	entries map[string][]store.Entry
}

func (r *ordRecorder) onCommit(c store.Committed) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range c.Entries {
		r.entries[e.User] = append(r.entries[e.User], e)
	}
}

func (r *ordRecorder) of(user string) []store.Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.entries[user])
}

func ordOpen(t *testing.T, name string) (*store.Store, *ordRecorder) {
	t.Helper()
	rec := &ordRecorder{entries: map[string][]store.Entry{}}
	st, err := store.Open(context.Background(), store.Options{
		Path: filepath.Join(t.TempDir(), name+".db"), OnCommit: rec.onCommit,
	})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st, rec
}

// ordFrame is what the frame check needs of a frame.
type ordFrame struct {
	seq  int64
	typ  string
	uuid string
	role string
}

func ordFramesOf(entries []store.Entry) []ordFrame {
	var out []ordFrame
	for _, e := range entries {
		var m store.Meeting
		_ = json.Unmarshal(e.Data, &m)
		out = append(out, ordFrame{e.Seq, e.Type, m.UUID, m.Role})
	}
	return out
}

// ordCheckFrames checks one user's frames: seq 1, 2, 3…; per meeting a
// start or join before anything else, joined/left alternating, nothing after
// an end; and the meetings the frames leave open are the live ones.
func ordCheckFrames(frames []ordFrame, live []store.Meeting) error {
	const (
		out = iota
		in
		ended
	)
	state := map[string]int{}
	role := map[string]string{}
	for i, f := range frames {
		if f.seq != int64(i+1) {
			return fmt.Errorf("frame %d has seq %d, want %d", i, f.seq, i+1)
		}
		s := state[f.uuid]
		if s == ended {
			return fmt.Errorf("seq %d: %s of %q after its meeting.ended", f.seq, f.typ, f.uuid)
		}
		switch f.typ {
		case store.TypeMeetingStarted, store.TypeMeetingJoined:
			if s == in {
				return fmt.Errorf("seq %d: %s of %q while already in it", f.seq, f.typ, f.uuid)
			}
			want := store.RoleHost
			if f.typ == store.TypeMeetingJoined {
				want = store.RoleParticipant
			}
			if f.role != want {
				return fmt.Errorf("seq %d: %s of %q with role %q", f.seq, f.typ, f.uuid, f.role)
			}
			state[f.uuid], role[f.uuid] = in, f.role
		case store.TypeMeetingLeft:
			if s != in || role[f.uuid] != store.RoleParticipant {
				return fmt.Errorf("seq %d: meeting.left of %q without a join", f.seq, f.uuid)
			}
			state[f.uuid] = out
		case store.TypeMeetingEnded:
			if s != in {
				return fmt.Errorf("seq %d: meeting.ended of %q before its start or join", f.seq, f.uuid)
			}
			state[f.uuid] = ended
		default:
			return fmt.Errorf("seq %d: unexpected frame type %q", f.seq, f.typ)
		}
	}
	open := map[string]string{}
	for uuid, s := range state {
		if s == in {
			open[uuid] = role[uuid]
		}
	}
	got := map[string]string{}
	for _, m := range live {
		got[m.UUID] = m.Role
	}
	if !mapsEqual(open, got) {
		return fmt.Errorf("frames leave %v open, live meetings are %v", open, got)
	}
	return nil
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// ordIngest applies deliveries to st through the webhook's own reduction.
func ordIngest(t *testing.T, st *store.Store, ds []ordDelivery) {
	t.Helper()
	ctx := context.Background()
	for _, d := range ds {
		ev, err := zoom.Parse(d.body)
		if err != nil {
			t.Fatalf("parse %s: %v", d.body, err)
		}
		if _, err := st.Ingest(ctx, delivery(ev, d.body, time.Now())); err != nil {
			t.Fatalf("ingest %s: %v", d.body, err)
		}
	}
}

func ordAdmit(t *testing.T, st *store.Store, users []string) {
	t.Helper()
	for _, u := range users {
		if err := st.Admit(context.Background(), u, time.Now()); err != nil {
			t.Fatalf("admit %s: %v", u, err)
		}
	}
}

func ordLiveJSON(t *testing.T, st *store.Store, user string) ([]store.Meeting, string) {
	t.Helper()
	live, err := st.LiveMeetings(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(live)
	return live, string(b)
}

func ordRoles(live []store.Meeting) map[string]string {
	m := map[string]string{}
	for _, x := range live {
		m[x.UUID] = x.Role
		if !x.Live {
			m[x.UUID] += " (not live)"
		}
	}
	return m
}

// TestOrderIndependence feeds each case in order to one store and shuffled,
// with duplicates, to another (both shared by all cases: users and uuids of
// cases never meet), then compares every user's live meetings field by field
// and checks every user's frames.
func TestOrderIndependence(t *testing.T) {
	ref, refRec := ordOpen(t, "in-order")
	got, gotRec := ordOpen(t, "shuffled")
	for n := range ordDirectCases {
		c := ordGen(ordSeed+int64(n), fmt.Sprintf("c%d", n))
		ordAdmit(t, ref, c.users)
		ordAdmit(t, got, c.users)
		ordIngest(t, ref, c.inOrder)
		ordIngest(t, got, c.shuffled)
		for _, u := range c.users {
			refLive, refJSON := ordLiveJSON(t, ref, u)
			gotLive, gotJSON := ordLiveJSON(t, got, u)
			if w := ordRoles(refLive); !mapsEqual(w, c.want[u]) {
				t.Fatalf("user %s in order: live %v, the contract says %v\n%s", u, w, c.want[u], c)
			}
			if gotJSON != refJSON {
				t.Fatalf("user %s: shuffled ends in\n  %s\nin order in\n  %s\n%s", u, gotJSON, refJSON, c)
			}
			if err := ordCheckFrames(ordFramesOf(refRec.of(u)), refLive); err != nil {
				t.Fatalf("user %s, frames in order: %v\n%s", u, err, c)
			}
			if err := ordCheckFrames(ordFramesOf(gotRec.of(u)), gotLive); err != nil {
				t.Fatalf("user %s, frames shuffled: %v\n%s", u, err, c)
			}
		}
	}
}

// TestOrderIndependenceHTTP sends shuffled cases through the webhook
// endpoint, several at a time (so they share commits in any interleaving),
// to a server whose users have tabs open, and checks the tabs' frames and
// the API's live meetings against the in-order reference.
func TestOrderIndependenceHTTP(t *testing.T) {
	e := newEnv(t)
	ref, _ := ordOpen(t, "in-order")
	for n := range ordHTTPCases {
		c := ordGen(ordSeed+1_000_000+int64(n), fmt.Sprintf("h%d", n))
		ordAdmit(t, ref, c.users)
		ordIngest(t, ref, c.inOrder)
		tabs := map[string]*wsClient{}
		for _, u := range c.users {
			tabs[u], _ = e.connect(u, nil)
		}
		var wg sync.WaitGroup
		work := make(chan []byte)
		errs := make(chan error, len(c.shuffled))
		for range 4 {
			wg.Go(func() {
				for body := range work {
					if err := ordPost(e, body); err != nil {
						errs <- err
					}
				}
			})
		}
		for _, d := range c.shuffled {
			work <- d.body
		}
		close(work)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("%v\n%s", err, c)
		}
		for _, u := range c.users {
			refLive, refJSON := ordLiveJSON(t, ref, u)
			live := whLive(e, u)
			b, _ := json.Marshal(live)
			if string(b) != refJSON {
				t.Fatalf("user %s: shuffled over HTTP ends in\n  %s\nin order in\n  %s\n%s", u, b, refJSON, c)
			}
			if w := ordRoles(refLive); !mapsEqual(w, c.want[u]) {
				t.Fatalf("user %s in order: live %v, the contract says %v\n%s", u, w, c.want[u], c)
			}
			w, err := e.store.Welcome(context.Background(), u, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			var frames []ordFrame
			for int64(len(frames)) < w.Seq {
				f := tabs[u].read()
				if f.Meeting == nil {
					t.Fatalf("user %s: frame without a meeting: %s", u, f.Raw)
				}
				frames = append(frames, ordFrame{f.Seq, f.Type, f.Meeting.UUID, f.Meeting.Role})
			}
			if err := ordCheckFrames(frames, live); err != nil {
				t.Fatalf("user %s, frames over HTTP: %v\n%s", u, err, c)
			}
			tabs[u].conn.CloseNow()
		}
	}
}

// ordPost posts one signed delivery; it must be answered 200.
func ordPost(e *testEnv, body []byte) error {
	ts := fmt.Sprint(time.Now().Unix())
	req, err := http.NewRequest(http.MethodPost, e.http.URL+"/webhooks/zoom", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set(zoom.HeaderTimestamp, ts)
	req.Header.Set(zoom.HeaderSignature, zoom.Sign(e.secret, ts, body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("post %s: status %d", body, resp.StatusCode)
	}
	return nil
}

// TestOrderCheckFrames makes sure the frame check rejects what it must.
func TestOrderCheckFrames(t *testing.T) {
	h, p := store.RoleHost, store.RoleParticipant
	live := []store.Meeting{{UUID: "a", Role: h, Live: true}}
	for _, tc := range []struct {
		name   string
		frames []ordFrame
		live   []store.Meeting
		ok     bool
	}{
		{"valid", []ordFrame{{1, "meeting.started", "a", h}, {2, "meeting.joined", "b", p}, {3, "meeting.left", "b", p}}, live, true},
		{"gap", []ordFrame{{1, "meeting.started", "a", h}, {3, "meeting.joined", "b", p}}, live, false},
		{"starts at 2", []ordFrame{{2, "meeting.started", "a", h}}, live, false},
		{"ended first", []ordFrame{{1, "meeting.ended", "a", h}}, nil, false},
		{"started after ended", []ordFrame{{1, "meeting.started", "a", h}, {2, "meeting.ended", "a", h}, {3, "meeting.started", "a", h}}, live, false},
		{"joined twice", []ordFrame{{1, "meeting.joined", "b", p}, {2, "meeting.joined", "b", p}}, nil, false},
		{"left without join", []ordFrame{{1, "meeting.left", "b", p}}, nil, false},
		{"open but not live", []ordFrame{{1, "meeting.started", "a", h}, {2, "meeting.joined", "b", p}}, live, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, want := ordCheckFrames(tc.frames, tc.live) == nil, tc.ok; got != want {
				t.Fatalf("ordCheckFrames ok: got %v, want %v (%v)", got, want, ordCheckFrames(tc.frames, tc.live))
			}
		})
	}
}

// TestOrderRejoinWithinASecond: join_time and leave_time have whole
// seconds, so a participant who drops and rejoins (a reconnect) can leave
// and join within the same second; event_ts (milliseconds) then tells the
// order. Whatever the arrival order, they end up in the meeting, as they
// are (CONTRACT §3: live for them until they leave).
func TestOrderRejoinWithinASecond(t *testing.T) {
	st, rec := ordOpen(t, "rejoin")
	ordAdmit(t, st, []string{"host1", "part1"})
	body := func(name, uuid string, ts int64, partTime string) []byte {
		return event{Name: name, TS: ts, UUID: uuid, Host: "host1", Participant: "part1", PartTime: partTime}.body()
	}
	base := time.Date(2026, 12, 4, 14, 0, 0, 0, time.UTC)
	ms := func(d time.Duration) int64 { return base.Add(d).UnixMilli() }
	perms := [][]int{{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}}
	for i, perm := range perms {
		t.Run(fmt.Sprint(perm), func(t *testing.T) {
			uuid := fmt.Sprintf("rejoin-%d", i)
			ds := []ordDelivery{
				{body: body(zoom.EventParticipantJoined, uuid, ms(time.Minute+100*time.Millisecond), "2026-12-04T14:01:00Z")},
				{body: body(zoom.EventParticipantLeft, uuid, ms(5*time.Minute+200*time.Millisecond), "2026-12-04T14:05:00Z")},
				{body: body(zoom.EventParticipantJoined, uuid, ms(5*time.Minute+700*time.Millisecond), "2026-12-04T14:05:00Z")},
			}
			var shuffled []ordDelivery
			for _, j := range perm {
				shuffled = append(shuffled, ds[j])
			}
			ordIngest(t, st, shuffled)
			live, _ := ordLiveJSON(t, st, "part1")
			if got, want := ordRoles(live)[uuid], store.RoleParticipant; got != want {
				t.Fatalf("part1 in %s: got role %q, want %q", uuid, got, want)
			}
			if err := ordCheckFrames(ordFramesOf(rec.of("part1")), live); err != nil {
				t.Fatalf("frames: %v", err)
			}
		})
	}
}
