package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"onair/internal/testpg"
	"onair/web"
	"onair/zoom"
)

// The tests of this file run several onair processes on one PostgreSQL
// database (CONTRACT §1 ONAIR_DATABASE_URL): webhooks go to any node, tabs
// sit on any node, nodes die, PostgreSQL goes away, and every tab must
// still see exactly its user's frames, in order.

// cluster is the nodes of one test, all on one database.
type cluster struct {
	t      *testing.T
	dir    string
	dbURL  string
	env    []string
	secret []byte // the Zoom webhook secret
	tokKey []byte // the connection-token secret

	mu    sync.Mutex
	nodes []*onairProc // a killed node's entry is nil
}

func newCluster(t *testing.T, dbURL string, extraEnv ...string) *cluster {
	c := &cluster{t: t, dir: t.TempDir(), dbURL: dbURL,
		secret: []byte("cluster-webhook-secret"), tokKey: []byte("cluster-token-secret")}
	c.env = cleanEnv(append([]string{"ZOOM_WEBHOOK_SECRET_TOKEN=" + string(c.secret),
		"ONAIR_TOKEN_SECRET=" + string(c.tokKey)}, extraEnv...)...)
	return c
}

// launch starts n more nodes at the same moment and waits until all listen.
func (c *cluster) launch(n int, env ...[]string) []*onairProc {
	c.t.Helper()
	var ps []*onairProc
	for i := range n {
		e := c.env
		if i < len(env) {
			e = env[i]
		}
		ps = append(ps, c.launchOnly(e))
	}
	for _, p := range ps {
		if err := p.waitListening(60 * time.Second); err != nil {
			c.t.Fatalf("node: %v\nstderr:\n%s", err, tail(p.stderr.String()))
		}
	}
	c.mu.Lock()
	c.nodes = append(c.nodes, ps...)
	c.mu.Unlock()
	return ps
}

// launchOnly starts a node with env and does not wait for it (nor add it
// to the cluster).
func (c *cluster) launchOnly(env []string) *onairProc {
	return launchOnair(c.t, c.dir, env, "serve", "--addr", "127.0.0.1:0", "--database-url", c.dbURL, "--shutdown-drain", "0s")
}

// kill takes node i out of the rotation, then SIGKILLs it: requests in
// flight to it fail as they would on a real crash.
func (c *cluster) kill(i int) {
	c.mu.Lock()
	p := c.nodes[i]
	c.nodes[i] = nil
	c.mu.Unlock()
	p.kill()
}

// pause takes node i out of the rotation without stopping it; resume
// puts it back.
func (c *cluster) pause(i int) *onairProc {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.nodes[i]
	c.nodes[i] = nil
	return p
}

func (c *cluster) resume(i int, p *onairProc) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nodes[i] = p
}

// liveFrom returns the first live node at index i or after (cyclically).
func (c *cluster) liveFrom(i int) (*onairProc, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range len(c.nodes) {
		j := (i + k) % len(c.nodes)
		if c.nodes[j] != nil {
			return c.nodes[j], j
		}
	}
	return nil, -1
}

func (c *cluster) node(i int) *onairProc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

func (c *cluster) token(user string) string {
	c.t.Helper()
	tok, err := web.MintToken(c.tokKey, user, time.Hour, time.Now())
	if err != nil {
		c.t.Fatal(err)
	}
	return tok
}

// waitReady polls /readyz until it answers 200.
func waitReady(t *testing.T, p *onairProc, timeout time.Duration) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(timeout)
	var last string
	for {
		resp, err := client.Get(p.url("/readyz"))
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, b)
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz of %s not 200 within %v: last %s", p.Addr, timeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// readyz returns /readyz's status and body.
func readyz(p *onairProc) (int, string, error) {
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(p.url("/readyz"))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// metric reads one unlabelled series from a node's /metrics.
func metric(t *testing.T, p *onairProc, name string) float64 {
	t.Helper()
	code, body := httpGet(t, p.url("/metrics"))
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("/metrics has no %s", name)
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// waitMetric polls a node's metric until it reaches at least min.
func waitMetric(t *testing.T, p *onairProc, name string, min float64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		v := metric(t, p, name)
		if v >= min {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s of %s: %v after %v, want at least %v", name, p.Addr, v, timeout, min)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// resyncs is each node's onair_cluster_resyncs_total.
func resyncs(t *testing.T, nodes []*onairProc) []float64 {
	t.Helper()
	var v []float64
	for _, p := range nodes {
		v = append(v, metric(t, p, "onair_cluster_resyncs_total"))
	}
	return v
}

// recovered waits until each node noticed that it stopped hearing the
// others (it counted a resync since before) and hears again (/readyz 200).
func recovered(t *testing.T, nodes []*onairProc, before []float64) {
	t.Helper()
	for i, p := range nodes {
		waitMetric(t, p, "onair_cluster_resyncs_total", before[i]+1, 30*time.Second)
		waitReady(t, p, 30*time.Second)
	}
}

// postZoom signs body with secret as Zoom does, posts it, and returns the
// status and the outcome onair answered with.
func postZoom(ctx context.Context, client *http.Client, url string, secret, body []byte) (int, string, error) {
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(zoom.HeaderTimestamp, ts)
	req.Header.Set(zoom.HeaderSignature, zoom.Sign(secret, ts, body))
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var out struct {
		Outcome string `json:"outcome"`
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, "", err
	}
	json.Unmarshal(b, &out)
	return resp.StatusCode, out.Outcome, nil
}

// participantBody is a Zoom-shaped participant_joined / participant_left
// of a signed-in participant (payload.object.participant.id is their user id).
func participantBody(event, uuid, host, who string, at time.Time) []byte {
	p := map[string]any{"id": who, "user_id": "16778240", "user_name": who, "participant_uuid": "PU-" + who, "email": ""}
	if event == zoom.EventParticipantLeft {
		p["leave_time"], p["leave_reason"] = at.UTC().Format(time.RFC3339), "left the meeting"
	} else {
		p["join_time"] = at.UTC().Format(time.RFC3339)
	}
	b, _ := json.Marshal(map[string]any{
		"event": event, "event_ts": at.UnixMilli() + 7,
		"payload": map[string]any{"account_id": "acc", "object": map[string]any{
			"uuid": uuid, "id": 81234567890, "host_id": host, "topic": "Cluster test " + uuid,
			"type": 2, "start_time": at.UTC().Format(time.RFC3339), "timezone": "UTC", "duration": 30,
			"participant": p,
		}},
	})
	return b
}

// plannedMeeting is one meeting as Zoom tells it: started, a participant
// (another user of the test) joins and leaves, ended; each step sent once
// the previous one was acknowledged.
type plannedMeeting struct {
	uuid, host, guest string
	steps             [][]byte
}

// clusterPlan is the meetings of a test and the frames they must cause.
type clusterPlan struct {
	users    []string
	meetings []plannedMeeting
}

func newPlan(prefix string, users, perUser int) *clusterPlan {
	p := &clusterPlan{}
	for i := range users {
		p.users = append(p.users, fmt.Sprintf("%s-user-%d", prefix, i))
	}
	base := time.Now().Truncate(time.Second)
	for k := range perUser {
		for i, host := range p.users {
			guest := p.users[(i+1)%users]
			uuid := fmt.Sprintf("%s/%d+%d==", prefix, i, k) // shaped like Zoom's, with '/', '+' and '='
			at := base.Add(time.Duration(len(p.meetings)) * time.Millisecond)
			p.meetings = append(p.meetings, plannedMeeting{uuid: uuid, host: host, guest: guest, steps: [][]byte{
				meetingBody(zoom.EventMeetingStarted, uuid, host, at),
				participantBody(zoom.EventParticipantJoined, uuid, host, guest, at.Add(time.Second)),
				participantBody(zoom.EventParticipantLeft, uuid, host, guest, at.Add(2*time.Second)),
				meetingBody(zoom.EventMeetingEnded, uuid, host, at.Add(3*time.Second)),
			}})
		}
	}
	return p
}

// want is what each user's tabs must see: per meeting, the frame types in
// order (the host: started, ended; the guest: joined, left).
func (p *clusterPlan) want() map[string]map[string][]string {
	w := map[string]map[string][]string{}
	for _, u := range p.users {
		w[u] = map[string][]string{}
	}
	for _, m := range p.meetings {
		w[m.host][m.uuid] = []string{"meeting.started", "meeting.ended"}
		w[m.guest][m.uuid] = []string{"meeting.joined", "meeting.left"}
	}
	return w
}

// frames is how many frames each user must get.
func (p *clusterPlan) frames(user string) int { return frameCount(p.want()[user]) }

// zoomSender delivers webhooks as Zoom does: to any node (round-robin over
// the live ones), and again, elsewhere, when a node answers 503 or dies
// before answering.
type zoomSender struct {
	c      *cluster
	client *http.Client
	rr     atomic.Int64

	acked       atomic.Int64 // deliveries answered 200
	retries     atomic.Int64 // attempts that failed and were made again
	unavailable atomic.Int64 // of which answered 503
	mu          sync.Mutex
	ackedBy     map[int]int // node → deliveries it answered 200
}

func newZoomSender(c *cluster) *zoomSender {
	z := &zoomSender{c: c, ackedBy: map[int]int{},
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}}
	c.t.Cleanup(z.client.CloseIdleConnections)
	return z
}

// deliver sends body until a node other than avoid (-1: any) answers 200;
// it returns that node and the outcome.
func (z *zoomSender) deliver(ctx context.Context, body []byte, avoid int) (int, string, error) {
	for {
		p, i := z.c.liveFrom(int(z.rr.Add(1)))
		if p == nil {
			return -1, "", fmt.Errorf("no live node")
		}
		if i == avoid {
			if p, i = z.c.liveFrom(i + 1); i == avoid {
				return -1, "", fmt.Errorf("no live node but %d", avoid)
			}
		}
		status, outcome, err := postZoom(ctx, z.client, p.url("/webhooks/zoom"), z.c.secret, body)
		if err == nil && status == http.StatusOK {
			z.acked.Add(1)
			z.mu.Lock()
			z.ackedBy[i]++
			z.mu.Unlock()
			return i, outcome, nil
		}
		if err == nil && status != http.StatusServiceUnavailable {
			return i, "", fmt.Errorf("node %d answered %d, want 200 or 503", i, status)
		}
		if ctx.Err() != nil {
			return i, "", fmt.Errorf("not acknowledged in time: last %d %v", status, err)
		}
		// 503, or the node died mid-request: Zoom retries later, this
		// test at once (a duplicate when it committed after all).
		z.retries.Add(1)
		if status == http.StatusServiceUnavailable {
			z.unavailable.Add(1)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// run delivers every meeting of the plan with workers goroutines (the
// steps of one meeting in order). With dupEvery > 0, every dupEvery-th
// meeting's start is delivered again, to another node than the one that
// took it, and must be a duplicate.
func (z *zoomSender) run(ctx context.Context, plan *clusterPlan, workers, dupEvery int) {
	t := z.c.t
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for k := range next {
				m := plan.meetings[k]
				for s, body := range m.steps {
					node, outcome, err := z.deliver(ctx, body, -1)
					if err != nil {
						t.Errorf("meeting %s step %d: %v", m.uuid, s, err)
						return
					}
					if outcome != "accepted" && outcome != "duplicate" { // duplicate: an earlier attempt committed
						t.Errorf("meeting %s step %d: outcome %q, want accepted", m.uuid, s, outcome)
					}
					if s == 0 && dupEvery > 0 && k%dupEvery == 0 {
						other, outcome, err := z.deliver(ctx, body, node)
						if err != nil || outcome != "duplicate" {
							t.Errorf("meeting %s: the start again on node %d (first on %d): outcome %q %v, want 200 duplicate",
								m.uuid, other, node, outcome, err)
						}
					}
				}
			}
		})
	}
	for k := range plan.meetings {
		next <- k
	}
	close(next)
	wg.Wait()
}

// flow delivers the plan in the background (see run); the channel closes
// when it is done.
func (z *zoomSender) flow(ctx context.Context, plan *clusterPlan, workers int) <-chan struct{} {
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		z.run(ctx, plan, workers, 0)
	}()
	return sent
}

// waitAcked waits until n deliveries were acknowledged; it fails the test
// when the flow ended first (what comes next would not be under load).
func (z *zoomSender) waitAcked(t *testing.T, n int64, sent <-chan struct{}) {
	t.Helper()
	for z.acked.Load() < n {
		select {
		case <-sent:
			t.Fatalf("the flow ended at %d deliveries, before %d: the test exercised too little", z.acked.Load(), n)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// follower is a browser tab that behaves as onair.js does: it keeps the
// last epoch and seq and, whenever its socket ends, connects again (here:
// to the next live node, as a load balancer would send it) and resumes
// from them. It records every frame and every breach of the protocol.
type follower struct {
	c        *cluster
	user     string
	token    string
	ctx      context.Context
	cancel   context.CancelFunc
	done     chan struct{}
	welcomed chan struct{} // closed at the first welcome

	mu       sync.Mutex
	node     int // the node it is on, or was last on
	epoch    string
	seq      int64
	frames   []frame
	problems []string
	closes   []string // why each socket that had its welcome ended
	codes    []websocket.StatusCode
}

// follow opens a tab for user on node and keeps it following.
func (c *cluster) follow(user string, node int) *follower {
	ctx, cancel := context.WithCancel(context.Background())
	f := &follower{c: c, user: user, token: c.token(user), ctx: ctx, cancel: cancel,
		done: make(chan struct{}), welcomed: make(chan struct{}), node: node}
	c.t.Cleanup(f.stop)
	go f.run()
	return f
}

func (f *follower) stop() {
	f.cancel()
	<-f.done
}

func (f *follower) problem(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.problems = append(f.problems, fmt.Sprintf(format, args...))
}

func (f *follower) run() {
	defer close(f.done)
	first := true
	for f.ctx.Err() == nil {
		f.mu.Lock()
		node := f.node
		var since *position
		if !first {
			since = &position{Epoch: f.epoch, Seq: f.seq}
		}
		f.mu.Unlock()
		p, i := f.c.liveFrom(node)
		if p == nil {
			return
		}
		welcomed, err := f.session(p, i, since)
		if f.ctx.Err() != nil {
			return
		}
		if welcomed {
			first = false
			f.mu.Lock()
			f.closes = append(f.closes, fmt.Sprintf("node %d: %v", i, err))
			f.codes = append(f.codes, websocket.CloseStatus(err))
			f.mu.Unlock()
		}
		// As onair.js: another try after a short wait, here on the next node.
		f.mu.Lock()
		f.node = i + 1
		f.mu.Unlock()
		select {
		case <-f.ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// session is one socket: the hello, the welcome, then frames until it
// ends. welcomed says whether it got as far as the welcome.
func (f *follower) session(p *onairProc, node int, since *position) (welcomed bool, err error) {
	tab, err := tryOpenTab(p.Addr, f.token, since)
	if err != nil {
		return false, err
	}
	defer tab.conn.CloseNow()
	wctx, cancel := context.WithTimeout(f.ctx, 30*time.Second)
	w, err := readFrame(wctx, tab.conn)
	cancel()
	if err != nil {
		return false, err // closed before the welcome (1013 while the database is away, …): try again
	}
	if w.Type != "welcome" || w.User != f.user {
		f.problem("node %d: first frame %+v, want the welcome of %s", node, w, f.user)
		return false, fmt.Errorf("no welcome")
	}
	f.mu.Lock()
	switch {
	case since == nil && (w.Resumed || w.Seq != 0):
		f.problems = append(f.problems, fmt.Sprintf("node %d: first welcome at seq %d resumed %v, want a new user at 0", node, w.Seq, w.Resumed))
		f.epoch, f.seq = w.Epoch, w.Seq
	case since == nil:
		f.epoch, f.seq = w.Epoch, 0
	case !w.Resumed || w.Epoch != since.Epoch || w.Seq != since.Seq:
		f.problems = append(f.problems, fmt.Sprintf("node %d: resuming from %+v got epoch %q seq %d resumed %v: the frames in between are lost",
			node, *since, w.Epoch, w.Seq, w.Resumed))
		f.epoch, f.seq = w.Epoch, w.Seq
	}
	f.node = node
	f.mu.Unlock()
	if since == nil {
		select {
		case <-f.welcomed:
		default:
			close(f.welcomed)
		}
	}
	for {
		fr, err := readFrame(f.ctx, tab.conn)
		if err != nil {
			return true, err
		}
		f.mu.Lock()
		if fr.Seq != f.seq+1 || fr.Epoch != f.epoch {
			f.problems = append(f.problems, fmt.Sprintf("node %d: after seq %d got %s seq %d epoch %q (a gap or a duplicate)",
				node, f.seq, fr.Type, fr.Seq, fr.Epoch))
		}
		if fr.Seq > f.seq {
			f.seq = fr.Seq
		}
		f.frames = append(f.frames, fr)
		f.mu.Unlock()
	}
}

// at is the node the follower is on, or was last on.
func (f *follower) at() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.node
}

func (f *follower) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.frames)
}

func (f *follower) closeCodes() []websocket.StatusCode {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]websocket.StatusCode(nil), f.codes...)
}

// waitWelcomed waits until every follower had its first welcome: its user
// is known from then on (a participant's frames need that).
func waitWelcomed(t *testing.T, fs []*follower) {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for _, f := range fs {
		select {
		case <-f.welcomed:
		case <-deadline:
			f.mu.Lock()
			t.Fatalf("tab of %s never welcomed: %v", f.user, f.problems)
		}
	}
}

// waitFrames waits until every follower has the number of frames its user
// must get (or more).
func waitFrames(t *testing.T, fs []*follower, want func(user string) int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for _, f := range fs {
		for f.count() < want(f.user) {
			if time.Now().After(deadline) {
				f.mu.Lock()
				t.Errorf("tab of %s: %d frames after %v, want %d; problems %v; sockets ended: %v",
					f.user, len(f.frames), timeout, want(f.user), f.problems, f.closes)
				f.mu.Unlock()
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// checkFollowers stops the followers and checks that every tab got exactly
// its user's frames: seq 1..n once each, per meeting the types in order,
// nothing of another user, and that the users' logs hold no more than that
// (db: the newest seq of each user).
func checkFollowers(t *testing.T, fs []*follower, want map[string]map[string][]string, db *sql.DB) {
	t.Helper()
	for _, f := range fs {
		f.stop()
	}
	for _, f := range fs {
		for _, p := range f.problems {
			t.Errorf("tab of %s: %s", f.user, p)
		}
		got := map[string][]string{}
		for i, fr := range f.frames {
			if fr.Seq != int64(i+1) {
				t.Errorf("tab of %s: frame %d has seq %d", f.user, i+1, fr.Seq)
				break
			}
			if fr.Meeting == nil {
				t.Errorf("tab of %s: frame %d is %s without a meeting", f.user, i+1, fr.Type)
				continue
			}
			got[fr.Meeting.UUID] = append(got[fr.Meeting.UUID], fr.Type)
		}
		if !reflect.DeepEqual(got, want[f.user]) {
			var diff []string
			for uuid, types := range want[f.user] {
				if !reflect.DeepEqual(got[uuid], types) {
					diff = append(diff, fmt.Sprintf("%s: got %v want %v", uuid, got[uuid], types))
				}
			}
			for uuid, types := range got {
				if _, ok := want[f.user][uuid]; !ok {
					diff = append(diff, fmt.Sprintf("%s (not the user's): got %v", uuid, types))
				}
			}
			sort.Strings(diff)
			t.Errorf("tab of %s: %d frames, not its user's %d:\n%s", f.user, len(f.frames), frameCount(want[f.user]), strings.Join(diff[:min(len(diff), 10)], "\n"))
		}
	}
	rows, err := db.Query(`SELECT id, seq FROM users`)
	if err != nil {
		t.Fatalf("read users: %v", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var seq int
		rows.Scan(&id, &seq)
		if _, ok := want[id]; ok && seq != frameCount(want[id]) {
			t.Errorf("user %s: the log ends at seq %d, want %d", id, seq, frameCount(want[id]))
		}
	}
}

// frameCount is how many frames a user's want holds.
func frameCount(meetings map[string][]string) int {
	n := 0
	for _, types := range meetings {
		n += len(types)
	}
	return n
}

// schemaOf is the schema (and application_name) of a testpg.URL.
func schemaOf(t *testing.T, dbURL string) string {
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query().Get("application_name")
}

// TestClusterMigratesOnce: three nodes started at the same moment on an
// empty database (a rolling deploy) all become ready, the migrations ran
// once, and the nodes share one database identity (epoch); a fourth node
// joining later finds nothing left to do.
func TestClusterMigratesOnce(t *testing.T) {
	dbURL := testpg.URL(t)
	c := newCluster(t, dbURL)
	nodes := c.launch(3)
	for _, p := range nodes {
		waitReady(t, p, 30*time.Second)
	}
	nodes = append(nodes, c.launch(1)...)
	waitReady(t, nodes[3], 30*time.Second)

	files, err := os.ReadDir("../../store/migrations/postgres")
	if err != nil {
		t.Fatal(err)
	}
	var want []int
	for _, f := range files {
		if !strings.HasSuffix(f.Name(), ".sql") {
			continue
		}
		v, err := strconv.Atoi(strings.SplitN(f.Name(), "_", 2)[0])
		if err != nil {
			t.Fatalf("migration %s: %v", f.Name(), err)
		}
		want = append(want, v)
	}
	db := testpg.Open(t, dbURL)
	rows, err := db.Query(`SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for rows.Next() {
		var v int
		rows.Scan(&v)
		got = append(got, v)
	}
	rows.Close()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("schema_migrations: got versions %v, want %v, once each", got, want)
	}
	var epochs int
	if err := db.QueryRow(`SELECT COUNT(*) FROM meta WHERE key = 'epoch'`).Scan(&epochs); err != nil || epochs != 1 {
		t.Fatalf("meta epoch rows: %d %v, want 1", epochs, err)
	}
	token := c.token("migrate-user")
	var epoch string
	for i, p := range nodes {
		tab := openTab(t, p.Addr, token, nil)
		w := tab.mustNext("welcome")
		if i > 0 && w.Epoch != epoch {
			t.Fatalf("node %d: epoch %q, node 0: %q (one database, one history)", i, w.Epoch, epoch)
		}
		epoch = w.Epoch
		tab.conn.CloseNow()
	}

	// A binary refuses to start on a schema newer than it knows (a
	// rollback past a migration); the nodes running go on.
	if _, err := db.Exec(`INSERT INTO schema_migrations (version, applied_at) VALUES (999999, 0)`); err != nil {
		t.Fatal(err)
	}
	old := c.launchOnly(c.env)
	if code := old.wait(60 * time.Second); code == 0 || !strings.Contains(old.stderr.String(), "newer than this onair") {
		t.Fatalf("a node on a newer schema: exit %d, stderr %q; want a refusal", code, tail(old.stderr.String()))
	}
	for _, p := range nodes {
		waitReady(t, p, 10*time.Second)
	}
}

// TestClusterFanOut: three nodes; every user has tabs on two or three of
// them; webhooks go round-robin to the nodes, many at once. Every tab gets
// exactly its user's frames in seq order, and a redelivery to another node
// than the one that took the original is a 200 that changes nothing.
func TestClusterFanOut(t *testing.T) {
	dbURL := testpg.URL(t)
	c := newCluster(t, dbURL)
	c.launch(3)
	plan := newPlan("fan", 20, 3)
	var fs []*follower
	for i, u := range plan.users {
		for k := range 2 + i%2 {
			fs = append(fs, c.follow(u, (i+k)%3))
		}
	}
	waitWelcomed(t, fs)

	z := newZoomSender(c)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	z.run(ctx, plan, 8, 4)
	waitFrames(t, fs, plan.frames, 30*time.Second)
	t.Logf("%d deliveries acknowledged (by node: %v; %d retried) in %v; %d tabs",
		z.acked.Load(), z.ackedBy, z.retries.Load(), time.Since(start).Round(time.Millisecond), len(fs))
	checkFollowers(t, fs, plan.want(), testpg.Open(t, dbURL))
	for _, f := range fs {
		if len(f.closes) > 0 {
			t.Errorf("tab of %s was closed with nothing going wrong: %v", f.user, f.closes)
		}
	}

	// A deauthorization delivered to one node closes the user's tabs on
	// every node (CONTRACT §4: 4401).
	gone := plan.users[0]
	token := c.token(gone)
	var tabs []*wsTab
	for i := range 3 {
		tab := openTab(t, c.node(i).Addr, token, nil)
		tab.mustNext("welcome")
		tabs = append(tabs, tab)
	}
	if _, outcome, err := z.deliver(ctx, deauthBody(gone, time.Now()), -1); err != nil || outcome != "accepted" {
		t.Fatalf("app_deauthorized: %q %v", outcome, err)
	}
	for i, tab := range tabs {
		if got, want := tab.closeCode(15*time.Second), websocket.StatusCode(4401); got != want {
			t.Errorf("tab on node %d after the deauthorization: close %d, want %d", i, got, want)
		}
	}
}

// deauthBody is an app_deauthorized delivery shaped like Zoom's.
func deauthBody(user string, at time.Time) []byte {
	b, _ := json.Marshal(map[string]any{
		"event": zoom.EventAppDeauthorized,
		"payload": map[string]any{
			"account_id": "acc", "user_id": user, "signature": "sig", "client_id": "client",
			"deauthorization_time": at.UTC().Format("2006-01-02T15:04:05.000Z"),
			"event_ts":             at.UTC().Format("2006-01-02 15:04:05"),
		},
	})
	return b
}

// TestClusterLargeCommits: what a node hears of another's commit must not
// depend on its size. A meeting whose topic is too large for a
// notification reaches the tabs on every node whole, and a meeting ending
// for 40 participants at once (one commit, many notifications) reaches
// every participant's tab, wherever it is.
func TestClusterLargeCommits(t *testing.T) {
	dbURL := testpg.URL(t)
	c := newCluster(t, dbURL)
	c.launch(2)
	const host = "large-host"
	var users []string
	var fs []*follower
	for i := range 40 {
		u := fmt.Sprintf("large-guest-%d", i)
		users = append(users, u)
		fs = append(fs, c.follow(u, i%2))
	}
	hostTabs := []*follower{c.follow(host, 0), c.follow(host, 1)}
	fs = append(fs, hostTabs...)
	waitWelcomed(t, fs)
	z := newZoomSender(c)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	topic := strings.Repeat("Quarterly planning & review <all hands> ", 500) // 20 kB, with characters JSON escapes
	at := time.Now().Truncate(time.Second)
	big, _ := json.Marshal(map[string]any{"event": zoom.EventMeetingStarted, "event_ts": at.UnixMilli(),
		"payload": map[string]any{"account_id": "acc", "object": map[string]any{
			"uuid": "large/topic==", "id": 81234567891, "host_id": host, "topic": topic,
			"type": 2, "start_time": at.UTC().Format(time.RFC3339), "timezone": "UTC", "duration": 30}}})
	if _, _, err := z.deliver(ctx, big, -1); err != nil {
		t.Fatal(err)
	}
	const uuid = "large/crowd=="
	if _, _, err := z.deliver(ctx, meetingBody(zoom.EventMeetingStarted, uuid, host, at), -1); err != nil {
		t.Fatal(err)
	}
	for i, u := range users {
		if _, _, err := z.deliver(ctx, participantBody(zoom.EventParticipantJoined, uuid, host, u, at.Add(time.Duration(i)*time.Millisecond)), -1); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := z.deliver(ctx, meetingBody(zoom.EventMeetingEnded, uuid, host, at.Add(3*time.Second)), -1); err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string][]string{host: {"large/topic==": {"meeting.started"}, uuid: {"meeting.started", "meeting.ended"}}}
	for _, u := range users {
		want[u] = map[string][]string{uuid: {"meeting.joined", "meeting.ended"}}
	}
	waitFrames(t, fs, func(u string) int { return len(want[u][uuid]) + len(want[u]["large/topic=="]) }, 30*time.Second)
	for _, f := range hostTabs {
		f.mu.Lock()
		if len(f.frames) == 0 || f.frames[0].Meeting == nil || f.frames[0].Meeting.Topic != topic {
			t.Errorf("tab of the host on node %d: the first frame is not the meeting with its whole topic", f.node)
		}
		f.mu.Unlock()
	}
	checkFollowers(t, fs, want, testpg.Open(t, dbURL))
}

// TestClusterNodeKilled: webhooks flow round-robin to three nodes and the
// tabs sit on all of them; one node is SIGKILLed mid-flow, a new node
// joins, and another node is SIGKILLed (holding its own tabs and those it
// took over). The tabs reconnect to the live nodes and resume with no gap;
// every delivery any node acknowledged, the killed ones' included, reached
// its user's tabs once.
func TestClusterNodeKilled(t *testing.T) {
	dbURL := testpg.URL(t)
	c := newCluster(t, dbURL)
	c.launch(3)
	plan := newPlan("kill", 12, 8)
	var fs []*follower
	for i, u := range plan.users {
		for k := range 2 + i%2 {
			fs = append(fs, c.follow(u, (i+k)%3))
		}
	}
	waitWelcomed(t, fs)
	onNode := func(i int) []*follower {
		var on []*follower
		for _, f := range fs {
			if f.at() == i {
				on = append(on, f)
			}
		}
		return on
	}

	z := newZoomSender(c)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sent := z.flow(ctx, plan, 6)
	total := int64(len(plan.meetings) * 4)
	killed := map[int][]*follower{}
	kill := func(i int) {
		killed[i] = onNode(i)
		c.kill(i)
		t.Logf("node %d killed with %d tabs, %d deliveries acknowledged so far", i, len(killed[i]), z.acked.Load())
	}
	// Kills at a third and two thirds of the deliveries: under load.
	z.waitAcked(t, total/3, sent)
	kill(0)
	c.launch(1) // node 3: takes webhooks (and the tabs of node 2, should it die)
	z.waitAcked(t, 2*total/3, sent)
	kill(1)
	<-sent
	waitFrames(t, fs, plan.frames, 30*time.Second)
	z.mu.Lock()
	t.Logf("%d deliveries acknowledged (by node: %v; %d retried)", z.acked.Load(), z.ackedBy, z.retries.Load())
	for _, i := range []int{0, 1, 3} {
		if z.ackedBy[i] == 0 {
			t.Errorf("node %d acknowledged nothing: the test exercised too little", i)
		}
	}
	z.mu.Unlock()
	checkFollowers(t, fs, plan.want(), testpg.Open(t, dbURL))
	for i, on := range killed {
		for _, f := range on {
			if len(f.closes) == 0 || f.node == 0 || f.node == 1 {
				t.Errorf("tab of %s on the killed node %d: sockets ended %v, now on node %d; want it moved", f.user, i, f.closes, f.node)
			}
		}
	}
	if len(killed[1]) <= len(fs)/3 {
		t.Errorf("node 1 had %d tabs when killed, want its own and node 0's", len(killed[1]))
	}
}

// fakeLauncher is the operator's bot launcher, shared by the nodes: each
// node posts to its own path (/bot/NODE) so the test knows who sent what.
type fakeLauncher struct {
	srv   *httptest.Server
	hold  atomic.Bool // hold the next request open, unanswered, until its sender is gone
	posts chan launcherPost

	mu  sync.Mutex
	all []launcherPost
}

type launcherPost struct {
	node      string
	key       string // Idempotency-Key
	requestID string
	typ       string
	body      []byte
}

func newFakeLauncher(t *testing.T, secret []byte) *fakeLauncher {
	l := &fakeLauncher{posts: make(chan launcherPost, 100)}
	l.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if got, want := r.Header.Get("X-Onair-Signature"), zoom.Sign(secret, r.Header.Get("X-Onair-Request-Timestamp"), body); got != want {
			t.Errorf("launcher: signature %q, want %q", got, want)
		}
		var b struct {
			Type      string `json:"type"`
			RequestID string `json:"request_id"`
		}
		json.Unmarshal(body, &b)
		p := launcherPost{node: strings.TrimPrefix(r.URL.Path, "/bot/"), key: r.Header.Get("Idempotency-Key"),
			requestID: b.RequestID, typ: b.Type, body: body}
		l.mu.Lock()
		l.all = append(l.all, p)
		l.mu.Unlock()
		l.posts <- p
		if l.hold.CompareAndSwap(true, false) {
			select {
			case <-r.Context().Done(): // the node died
			case <-time.After(2 * time.Minute):
			}
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(l.srv.Close)
	return l
}

// requestBot is POST /api/v1/meetings/{uuid}/bot with a connection token.
func requestBot(t *testing.T, p *onairProc, token, uuid string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, p.url("/api/v1/meetings/"+url.PathEscape(uuid)+"/bot"), nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("request the bot: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("request the bot: %d %s, want 202", resp.StatusCode, b)
	}
}

// launcherStatus is the launcher's callback (CONTRACT §3
// POST /api/v1/bots/{request_id}/status), signed with the bot secret.
func launcherStatus(t *testing.T, p *onairProc, secret []byte, requestID, state string) {
	t.Helper()
	body := []byte(`{"state":"` + state + `"}`)
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req, _ := http.NewRequest(http.MethodPost, p.url("/api/v1/bots/"+url.PathEscape(requestID)+"/status"), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Onair-Request-Timestamp", ts)
	req.Header.Set("X-Onair-Signature", zoom.Sign(secret, ts, body))
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("bot status %s: %v", state, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("bot status %s: %d %s, want 204", state, resp.StatusCode, b)
	}
}

// cancelBot is DELETE /api/v1/meetings/{uuid}/bot with a connection token.
func cancelBot(t *testing.T, p *onairProc, token, uuid string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodDelete, p.url("/api/v1/meetings/"+url.PathEscape(uuid)+"/bot"), nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("cancel the bot: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("cancel the bot: %d %s, want 200", resp.StatusCode, b)
	}
}

// botStates is the bot states a follower saw, by request id.
func (f *follower) botStates() map[string][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string][]string{}
	for _, fr := range f.frames {
		if fr.Type == "bot.updated" && fr.Bot != nil {
			out[fr.Bot.RequestID] = append(out[fr.Bot.RequestID], fr.Bot.State)
		}
	}
	return out
}

// waitBotState waits until the follower saw a request reach state.
func waitBotState(t *testing.T, f *follower, requestID, state string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(strings.Join(f.botStates()[requestID], " "), state) {
		if time.Now().After(deadline) {
			states := f.botStates()
			f.mu.Lock()
			defer f.mu.Unlock()
			t.Fatalf("tab of %s: request %s never %s in %v (states %v; problems %v)", f.user, requestID, state, timeout, states, f.problems)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestClusterBotDispatch (CONTRACT §3, several nodes): with two nodes,
// every bot request, and the notice of a cancel made through the other
// node, is POSTed to the launcher by exactly one of them; the launcher's
// callbacks go to either node. Then the node sending a request is
// SIGKILLed while the launcher holds the POST open: after the claim's
// lease (up to 40 s) the other node sends the same request, with the
// same Idempotency-Key and body, and the user's tabs see it dispatched.
func TestClusterBotDispatch(t *testing.T) {
	dbURL := testpg.URL(t)
	botSecret := []byte("cluster-bot-secret")
	launcher := newFakeLauncher(t, botSecret)
	c := newCluster(t, dbURL, "ONAIR_BOT_WEBHOOK_SECRET="+string(botSecret))
	var envs [][]string
	for i := range 2 {
		envs = append(envs, append(append([]string{}, c.env...), fmt.Sprintf("ONAIR_BOT_WEBHOOK_URL=%s/bot/%d", launcher.srv.URL, i)))
	}
	nodes := c.launch(2, envs...)
	const host = "bot-host"
	token := c.token(host)
	tabs := []*follower{c.follow(host, 0), c.follow(host, 1)}
	waitWelcomed(t, tabs)
	z := newZoomSender(c)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	start := func(uuid string) {
		t.Helper()
		if _, _, err := z.deliver(ctx, meetingBody(zoom.EventMeetingStarted, uuid, host, time.Now()), -1); err != nil {
			t.Fatal(err)
		}
	}
	// waitRequest returns the id of the n-th request the tab saw requested.
	waitRequest := func(f *follower, n int) string {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			f.mu.Lock()
			var ids []string
			for _, fr := range f.frames {
				if fr.Type == "bot.updated" && fr.Bot != nil && fr.Bot.State == "requested" {
					ids = append(ids, fr.Bot.RequestID)
				}
			}
			f.mu.Unlock()
			if len(ids) >= n {
				return ids[n-1]
			}
			if time.Now().After(deadline) {
				t.Fatalf("no bot.updated requested #%d", n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	t.Run("each request sent once", func(t *testing.T) {
		const n = 6
		var ids []string
		for k := range n {
			uuid := fmt.Sprintf("bot/once/%d==", k)
			start(uuid)
			requestBot(t, nodes[k%2], token, uuid)
			ids = append(ids, waitRequest(tabs[0], k+1))
		}
		for _, id := range ids {
			for _, f := range tabs {
				waitBotState(t, f, id, "dispatched", 30*time.Second)
			}
		}
		// The launcher reports to one node, then the other; the user
		// cancels another request through the node that did not send it.
		launcherStatus(t, nodes[1], botSecret, ids[0], "joining")
		launcherStatus(t, nodes[0], botSecret, ids[0], "joined")
		for _, f := range tabs {
			waitBotState(t, f, ids[0], "joined", 30*time.Second)
		}
		cancelBot(t, nodes[1], token, "bot/once/1==")
		for _, f := range tabs {
			waitBotState(t, f, ids[1], "cancelled", 30*time.Second)
		}
		// Every item is delivered once the outbox is empty.
		db := testpg.Open(t, dbURL)
		deadline := time.Now().Add(30 * time.Second)
		for {
			var left int
			if err := db.QueryRow(`SELECT COUNT(*) FROM bot_outbox`).Scan(&left); err != nil {
				t.Fatal(err)
			}
			if left == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("bot_outbox: %d items left after 30 s, want none", left)
			}
			time.Sleep(20 * time.Millisecond)
		}
		launcher.mu.Lock()
		defer launcher.mu.Unlock()
		byKey, byNode := map[string]int{}, map[string]int{}
		for _, p := range launcher.all {
			byKey[p.key]++
			byNode[p.node]++
		}
		want := map[string]int{ids[1] + ":bot.cancelled": 1}
		for _, id := range ids {
			want[id] = 1
		}
		if !reflect.DeepEqual(byKey, want) {
			t.Errorf("POSTs by Idempotency-Key: got %v, want each request and the cancel notice once: %v", byKey, want)
		}
		t.Logf("POSTs by node: %v", byNode)
		for len(launcher.posts) > 0 {
			<-launcher.posts
		}
	})
	if t.Failed() {
		return
	}

	t.Run("sender killed mid-send", func(t *testing.T) {
		const uuid = "bot/killed=="
		start(uuid)
		launcher.hold.Store(true)
		requested := time.Now()
		requestBot(t, nodes[0], token, uuid)
		id := waitRequest(tabs[0], 7)
		var first launcherPost
		select {
		case first = <-launcher.posts:
		case <-time.After(30 * time.Second):
			t.Fatal("the request never reached the launcher")
		}
		if first.key != id || first.requestID != id || first.typ != "bot.requested" {
			t.Fatalf("first POST: key %q request %q type %q, want %s bot.requested", first.key, first.requestID, first.typ, id)
		}
		victim, _ := strconv.Atoi(first.node)
		c.kill(victim)
		survivor := 1 - victim
		var second launcherPost
		select {
		case second = <-launcher.posts:
		case <-time.After(100 * time.Second):
			t.Fatalf("node %d was killed sending request %s; no other node sent it within 100 s", victim, id)
		}
		t.Logf("node %d killed mid-send; node %s sent it again %v after the request", victim, second.node, time.Since(requested).Round(time.Second))
		if second.node != strconv.Itoa(survivor) || second.key != first.key || !bytes.Equal(second.body, first.body) {
			t.Fatalf("second POST: node %s key %q, want node %d with key %q and the same body (got %s, first %s)",
				second.node, second.key, survivor, first.key, second.body, first.body)
		}
		for _, f := range tabs {
			waitBotState(t, f, id, "dispatched", 30*time.Second)
		}
		if got := tabs[0].botStates()[id]; !reflect.DeepEqual(got, []string{"requested", "dispatched"}) {
			t.Errorf("bot states in the tab: %v, want requested, dispatched", got)
		}
		select {
		case p := <-launcher.posts:
			t.Errorf("a third POST: node %s key %s", p.node, p.key)
		case <-time.After(500 * time.Millisecond):
		}
		for _, f := range tabs {
			f.stop()
			for _, p := range f.problems {
				t.Errorf("tab of %s: %s", f.user, p)
			}
		}
	})
}

// TestClusterListenerCut: the connections the nodes hear each other's
// commits on are terminated while webhooks flow, then every connection of
// the nodes. They recover by themselves (/readyz back to 200), close their
// tabs with 1012 so they resume from the log, and no tab ends with a gap.
func TestClusterListenerCut(t *testing.T) {
	dbURL := testpg.URL(t)
	schema := schemaOf(t, dbURL)
	admin := testpg.Open(t, testpg.Server()) // not the nodes' application_name: it must survive
	c := newCluster(t, dbURL)
	nodes := c.launch(2)
	plan := newPlan("cut", 10, 8)
	var fs []*follower
	for _, u := range plan.users {
		fs = append(fs, c.follow(u, 0), c.follow(u, 1))
	}
	waitWelcomed(t, fs)

	z := newZoomSender(c)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sent := z.flow(ctx, plan, 4)
	total := int64(len(plan.meetings) * 4)
	terminate := func(what string, where string) {
		res, err := admin.Exec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE pid <> pg_backend_pid() AND application_name = $1 AND `+where, schema)
		if err != nil {
			t.Fatalf("terminate %s: %v", what, err)
		}
		n, _ := res.RowsAffected()
		t.Logf("terminated %d backends (%s)", n, what)
		if n < 2 {
			t.Fatalf("terminated %d backends (%s), want at least the 2 listeners", n, what)
		}
	}

	z.waitAcked(t, total/3, sent)
	before := resyncs(t, nodes)
	// The listener's last statement is its LISTEN, or the SELECT 1 that
	// checks a quiet connection.
	terminate("the listeners", `(query LIKE 'LISTEN%' OR query = 'SELECT 1')`)
	recovered(t, nodes, before)
	z.waitAcked(t, 2*total/3, sent)
	before = resyncs(t, nodes)
	terminate("every connection", `TRUE`)
	recovered(t, nodes, before)
	<-sent
	waitFrames(t, fs, plan.frames, 30*time.Second)
	t.Logf("%d deliveries acknowledged (by node %v; %d retried, %d of them 503)",
		z.acked.Load(), z.ackedBy, z.retries.Load(), z.unavailable.Load())
	for _, f := range fs {
		// The first cut drops every tab of both nodes (the second may find
		// some mid-reconnect).
		if codes := f.closeCodes(); !slices.Contains(codes, websocket.StatusServiceRestart) {
			t.Errorf("tab of %s: sockets closed with %v, want a 1012 to resume from the log", f.user, codes)
		}
	}
	checkFollowers(t, fs, plan.want(), testpg.Open(t, dbURL))
}

// TestClusterPostgresRestart: PostgreSQL itself restarts while webhooks
// flow, then stays down a moment. Meanwhile the nodes answer webhooks 503
// (Zoom retries them; so does the test) and /readyz 503; afterwards they
// recover by themselves and no tab ends with a gap.
func TestClusterPostgresRestart(t *testing.T) {
	pg := testpg.StartServer(t)
	c := newCluster(t, pg.URL)
	nodes := c.launch(2)
	plan := newPlan("restart", 8, 8)
	var fs []*follower
	for _, u := range plan.users {
		fs = append(fs, c.follow(u, 0), c.follow(u, 1))
	}
	waitWelcomed(t, fs)

	z := newZoomSender(c)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	sent := z.flow(ctx, plan, 4)
	total := int64(len(plan.meetings) * 4)

	z.waitAcked(t, total/3, sent)
	before := resyncs(t, nodes)
	pg.Restart()
	recovered(t, nodes, before)

	z.waitAcked(t, 2*total/3, sent)
	before = resyncs(t, nodes)
	pg.Stop()
	probe := meetingBody(zoom.EventMeetingStarted, "restart/probe==", "probe-host", time.Now())
	for i, p := range nodes {
		pctx, pcancel := context.WithTimeout(ctx, 15*time.Second)
		status, _, err := postZoom(pctx, z.client, p.url("/webhooks/zoom"), c.secret, probe)
		pcancel()
		if err != nil || status != http.StatusServiceUnavailable {
			t.Errorf("node %d: a webhook with PostgreSQL down: %d %v, want 503", i, status, err)
		}
		if code, body, err := readyz(p); err != nil || code != http.StatusServiceUnavailable {
			t.Errorf("node %d: /readyz with PostgreSQL down: %d %s %v, want 503", i, code, body, err)
		}
		// docs/DEPLOY.md: a node that does not hear the others answers /ws
		// with 503 (once it noticed), so that a proxy tries another node.
		deadline := time.Now().Add(10 * time.Second)
		for status := wsStatus(p); status != http.StatusServiceUnavailable; status = wsStatus(p) {
			if time.Now().After(deadline) {
				t.Errorf("node %d: /ws with PostgreSQL down: %d, want 503", i, status)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	time.Sleep(time.Second) // down a little longer: the flow meets it too
	pg.Start()
	if _, outcome, err := z.deliver(ctx, probe, -1); err != nil || outcome != "accepted" {
		t.Errorf("the webhook refused while PostgreSQL was down, again: %q %v, want accepted", outcome, err)
	}
	recovered(t, nodes, before)
	<-sent
	waitFrames(t, fs, plan.frames, 30*time.Second)
	t.Logf("%d deliveries acknowledged (by node %v; %d retried, %d of them 503)",
		z.acked.Load(), z.ackedBy, z.retries.Load(), z.unavailable.Load())
	if z.unavailable.Load() == 0 {
		t.Errorf("no webhook of the flow was answered 503: the outage was not exercised")
	}
	checkFollowers(t, fs, plan.want(), testpg.Open(t, pg.URL))
}

// wsStatus is the HTTP status of a WebSocket handshake on p (101 when it
// opened).
func wsStatus(p *onairProc) int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, "ws://"+p.Addr+"/ws", nil)
	if err == nil {
		conn.CloseNow()
	}
	if resp == nil {
		return 0
	}
	return resp.StatusCode
}

// TestClusterDevSecrets (README "Try it in two minutes", on PostgreSQL):
// two dev-mode nodes on one database share the secrets kept there, and
// `onair token` and `onair simulate` find them with --database-url.
func TestClusterDevSecrets(t *testing.T) {
	dbURL := testpg.URL(t)
	dir := t.TempDir()
	env := cleanEnv()
	// Before any node ran, there is no dev secret to find: a clear refusal.
	_, stderr, code := runOnair(t, dir, env, "token", "--user", "u1", "--database-url", dbURL)
	if code != 2 || !strings.Contains(stderr, "PostgreSQL") {
		t.Fatalf("onair token on an empty database: exit %d %q, want 2 and a line naming PostgreSQL", code, stderr)
	}
	var nodes []*onairProc
	for range 2 {
		nodes = append(nodes, startOnair(t, dir, env, "--addr", "127.0.0.1:0", "--database-url", dbURL, "--shutdown-drain", "0s"))
	}
	secrets := map[string]bool{}
	for i, p := range nodes {
		m := regexp.MustCompile(`(?m)^onair dev mode: webhook secret (\S+)$`).FindStringSubmatch(p.stdout.String())
		if m == nil {
			t.Fatalf("node %d stdout: %q, want the dev-mode webhook secret", i, p.stdout.String())
		}
		secrets[m[1]] = true
	}
	if len(secrets) != 1 {
		t.Fatalf("the nodes printed different webhook secrets %v: one database, one secret", secrets)
	}

	stdout, stderr, code := runOnair(t, dir, env, "token", "--user", "u1", "--database-url", dbURL)
	if code != 0 {
		t.Fatalf("onair token --database-url: exit %d %q", code, stderr)
	}
	token := strings.TrimSpace(stdout)
	tabs := []*wsTab{openTab(t, nodes[0].Addr, token, nil), openTab(t, nodes[1].Addr, token, nil)}
	for _, tab := range tabs {
		tab.mustNext("welcome")
	}
	// Sent to node 1, heard on both.
	stdout, stderr, code = runOnair(t, dir, env, "simulate", "started", "--user", "u1", "--database-url", dbURL, "--url", nodes[1].url("/webhooks/zoom"))
	if code != 0 {
		t.Fatalf("onair simulate started --database-url: exit %d %q %q", code, stdout, stderr)
	}
	uuid := strings.TrimPrefix(lines(stdout)[0], "meeting ")
	for _, tab := range tabs {
		if f := tab.mustNext("meeting.started"); f.Meeting == nil || f.Meeting.UUID != uuid {
			t.Fatalf("meeting.started: %+v, want %s", f.Meeting, uuid)
		}
	}
}

// TestClusterSimulateEnded (README: "`./onair simulate ended --user u1`
// ends it (`simulate` remembers the user's last meeting beside the
// database)"), with --database-url: started, then ended without --meeting.
func TestClusterSimulateEnded(t *testing.T) {
	dbURL := testpg.URL(t)
	dir := t.TempDir()
	env := cleanEnv()
	srv := startOnair(t, dir, env, "--addr", "127.0.0.1:0", "--database-url", dbURL, "--shutdown-drain", "0s")
	stdout, stderr, code := runOnair(t, dir, env, "token", "--user", "u1", "--database-url", dbURL)
	if code != 0 {
		t.Fatalf("onair token --database-url: exit %d %q", code, stderr)
	}
	tab := openTab(t, srv.Addr, strings.TrimSpace(stdout), nil)
	tab.mustNext("welcome")
	webhooks := srv.url("/webhooks/zoom")
	stdout, startedErr, code := runOnair(t, dir, env, "simulate", "started", "--user", "u1", "--database-url", dbURL, "--url", webhooks)
	if code != 0 {
		t.Fatalf("onair simulate started --database-url: exit %d %q %q", code, stdout, startedErr)
	}
	uuid := strings.TrimPrefix(lines(stdout)[0], "meeting ")
	tab.mustNext("meeting.started")
	stdout, stderr, code = runOnair(t, dir, env, "simulate", "ended", "--user", "u1", "--database-url", dbURL, "--url", webhooks)
	if code != 0 {
		t.Fatalf("onair simulate ended --database-url after simulate started: exit %d %q %q (simulate started said %q)",
			code, stdout, stderr, startedErr)
	}
	if f := tab.mustNext("meeting.ended"); f.Meeting == nil || f.Meeting.UUID != uuid {
		t.Fatalf("meeting.ended: %+v, want %s", f.Meeting, uuid)
	}
}

// TestClusterLogout: a session signed in on one node opens a socket on
// another; the logout, on the first node, closes it (CONTRACT §5: the
// sockets opened with that session close with 4401).
func TestClusterLogout(t *testing.T) {
	dbURL := testpg.URL(t)
	dir := t.TempDir()
	env := cleanEnv()
	var nodes []*onairProc
	for range 2 {
		nodes = append(nodes, startOnair(t, dir, env, "--addr", "127.0.0.1:0", "--database-url", dbURL, "--shutdown-drain", "0s"))
	}
	client := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	post := func(p *onairProc, path string, cookie *http.Cookie) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, p.url(path), nil)
		req.Header.Set("Origin", "http://"+p.Addr)
		if cookie != nil {
			req.AddCookie(cookie)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		resp.Body.Close()
		return resp
	}
	resp := post(nodes[0], "/auth/demo", nil)
	var session *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == "onair_session" {
			session = ck
		}
	}
	if resp.StatusCode != http.StatusSeeOther || session == nil {
		t.Fatalf("demo sign-in on node 0: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws://"+nodes[1].Addr+"/ws", &websocket.DialOptions{
		HTTPHeader: http.Header{"Cookie": {session.Name + "=" + session.Value}}})
	if err != nil {
		t.Fatalf("socket on node 1 with the session of node 0: %v", err)
	}
	defer conn.CloseNow()
	tab := &wsTab{t: t, conn: conn}
	if err := conn.Write(ctx, websocket.MessageText, []byte(`{"type":"hello"}`)); err != nil {
		t.Fatal(err)
	}
	if w := tab.mustNext("welcome"); w.User != "demo-user" {
		t.Fatalf("welcome on node 1: user %q, want demo-user", w.User)
	}
	if resp := post(nodes[0], "/auth/logout", session); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout on node 0: %d, want 303", resp.StatusCode)
	}
	if got, want := tab.closeCode(15*time.Second), websocket.StatusCode(4401); got != want {
		t.Fatalf("the session's socket on node 1 after the logout on node 0: close %d, want %d", got, want)
	}
}

// TestClusterLongSchemaName: PostgreSQL takes schema names up to 63 bytes,
// and onair must work in any of them (README: search_path in the URL).
func TestClusterLongSchemaName(t *testing.T) {
	b := make([]byte, 6)
	rand.Read(b)
	schema := "t_" + hex.EncodeToString(b) + "_tenant_acme_corporation_production_eu_west_1"
	schema += strings.Repeat("x", 63-len(schema))
	dbURL := testpg.SchemaURL(t, schema)
	c := newCluster(t, dbURL)
	nodes := c.launch(2)
	for _, p := range nodes {
		waitReady(t, p, 30*time.Second)
	}
	fs := []*follower{c.follow("long-user", 0), c.follow("long-user", 1)}
	waitWelcomed(t, fs)
	z := newZoomSender(c)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const uuid = "long/schema=="
	if _, outcome, err := z.deliver(ctx, meetingBody(zoom.EventMeetingStarted, uuid, "long-user", time.Now()), -1); err != nil {
		t.Fatalf("meeting.started in schema %q (%d bytes): %v (%q; %d attempts answered 503)", schema, len(schema), err, outcome, z.unavailable.Load())
	}
	want := map[string]map[string][]string{"long-user": {uuid: {"meeting.started"}}}
	waitFrames(t, fs, func(string) int { return 1 }, 30*time.Second)
	checkFollowers(t, fs, want, testpg.Open(t, dbURL))
}

// TestClusterNodeFrozen: a node that stops dead (SIGSTOP: a VM paused, a
// process swapped out) in the middle of a write transaction holds the
// cluster-wide write lock. The other nodes must not stop with it: once
// PostgreSQL ends the stuck transaction they take webhooks again (503
// meanwhile, which Zoom retries). When the frozen node comes back, its
// tabs catch up with no gap.
func TestClusterNodeFrozen(t *testing.T) {
	dbURL := testpg.URL(t)
	schema := schemaOf(t, dbURL)
	admin := testpg.Open(t, testpg.Server())
	c := newCluster(t, dbURL)
	c.launch(3)
	plan := newPlan("frozen", 16, 12)
	var fs []*follower
	for i, u := range plan.users {
		fs = append(fs, c.follow(u, i%3), c.follow(u, (i+1)%3))
	}
	waitWelcomed(t, fs)
	z := newZoomSender(c)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	sent := z.flow(ctx, plan, 4)
	z.waitAcked(t, 20, sent)

	// Stop node 0 until it is caught holding the write lock in a
	// transaction (it spends only part of its time in one); between tries
	// it goes on taking webhooks.
	holder := func() int {
		var pid int
		admin.QueryRow(`SELECT a.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
			WHERE l.locktype = 'advisory' AND l.granted AND a.application_name = $1
				AND a.state = 'idle in transaction' AND now() - a.state_change > interval '200 ms'`, schema).Scan(&pid)
		return pid
	}
	frozen := c.node(0)
	caught := false
	for attempt := 0; attempt < 100 && !caught; attempt++ {
		select {
		case <-sent:
			t.Fatalf("the flow ended before node 0 was caught mid-transaction (%d attempts)", attempt)
		default:
		}
		frozen.signal(syscall.SIGSTOP)
		time.Sleep(250 * time.Millisecond)
		if caught = holder() != 0; !caught {
			frozen.signal(syscall.SIGCONT)
			time.Sleep(time.Duration(20+attempt*7%50) * time.Millisecond)
		}
	}
	if !caught {
		t.Fatalf("node 0 was never caught holding the write lock")
	}
	c.pause(0) // the load balancer's health check takes it out
	stopped := time.Now()
	before := z.acked.Load()
	t.Logf("node 0 frozen holding the write lock, %d deliveries acknowledged so far", before)
	// The others go on: the flow ends while node 0 is still frozen.
	select {
	case <-sent:
	case <-time.After(60 * time.Second):
		t.Fatalf("with node 0 frozen, the other nodes did not take the flow's deliveries within 60 s (%d more acknowledged)", z.acked.Load()-before)
	}
	t.Logf("the other nodes took the remaining %d deliveries in %v (%d attempts answered 503)",
		z.acked.Load()-before, time.Since(stopped).Round(100*time.Millisecond), z.unavailable.Load())
	frozen.signal(syscall.SIGCONT)
	c.resume(0, frozen)
	waitReady(t, frozen, 30*time.Second)
	waitFrames(t, fs, plan.frames, 30*time.Second)
	checkFollowers(t, fs, plan.want(), testpg.Open(t, dbURL))
}

// TestClusterResyncCounted (README: onair_cluster_resyncs_total counts the
// times a node lost the connection that hears the other nodes and had its
// tabs resume): one lost connection is one resync.
func TestClusterResyncCounted(t *testing.T) {
	dbURL := testpg.URL(t)
	admin := testpg.Open(t, testpg.Server())
	c := newCluster(t, dbURL)
	nodes := c.launch(2)
	fs := []*follower{c.follow("resync-user", 0), c.follow("resync-user", 1)}
	waitWelcomed(t, fs)
	before := resyncs(t, nodes)
	res, err := admin.Exec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE application_name = $1 AND (query LIKE 'LISTEN%' OR query = 'SELECT 1')`, schemaOf(t, dbURL))
	if n, _ := res.RowsAffected(); err != nil || n != 2 {
		t.Fatalf("terminate the listeners: %d %v, want 2", n, err)
	}
	recovered(t, nodes, before)
	for i, p := range nodes {
		if got, want := metric(t, p, "onair_cluster_resyncs_total"), before[i]+1; got != want {
			t.Errorf("node %d: onair_cluster_resyncs_total %v after one lost connection, want %v", i, got, want)
		}
	}
}
