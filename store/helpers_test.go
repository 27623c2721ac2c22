package store_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"onair/internal/testpg"
	"onair/store"
)

// opener opens a store for one test; the store is closed when the test ends.
type opener = func(t *testing.T, opts store.Options) *store.Store

// forEachEngine runs fn once per database engine, as a subtest named for
// it: SQLite, and PostgreSQL on the test server (see internal/testpg).
// Within fn, a path from dbPath names one database of either engine:
// open, rawDB and where find the same one by it.
func forEachEngine(t *testing.T, fn func(t *testing.T, open opener)) {
	t.Helper()
	engines := []struct {
		name string
		open opener
	}{
		{"sqlite", openSQLite},
		{"postgres", openPostgres},
	}
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			if e.name == "postgres" {
				testpg.Need(t)
			}
			fn(t, e.open)
		})
	}
}

// pgSchemas maps a test's database path to the PostgreSQL schema standing
// in for it.
var pgSchemas sync.Map

// onPostgres says whether t runs under forEachEngine's postgres subtest.
func onPostgres(t *testing.T) bool {
	return strings.Contains(t.Name(), "/postgres")
}

// where is the store.Options locating the database named by path, in the
// engine t runs under.
func where(t *testing.T, path string) store.Options {
	t.Helper()
	if !onPostgres(t) {
		return store.Options{Path: path}
	}
	if u, ok := pgSchemas.Load(path); ok {
		return store.Options{DatabaseURL: u.(string)}
	}
	u := testpg.URL(t)
	pgSchemas.Store(path, u)
	return store.Options{DatabaseURL: u}
}

// openPostgres opens a store on the PostgreSQL schema standing in for
// opts.Path (a fresh one when it is empty).
func openPostgres(t *testing.T, opts store.Options) *store.Store {
	t.Helper()
	if opts.Path == "" {
		opts.Path = dbPath(t)
	}
	opts.DatabaseURL = where(t, opts.Path).DatabaseURL
	st, err := store.Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("open postgres: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// openSQLite opens a store on a real file: opts.Path, or a fresh file
// under t.TempDir() when it is empty.
func openSQLite(t *testing.T, opts store.Options) *store.Store {
	t.Helper()
	if opts.Path == "" {
		opts.Path = dbPath(t)
	}
	st, err := store.Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("open %s: %v", opts.Path, err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// dbPath is a database file that does not exist yet.
func dbPath(t *testing.T) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "onair.db")
}

// rawDB opens the database directly, beside the store, to look at or
// interfere with what the store keeps. Statements are written for SQLite
// (? placeholders); on PostgreSQL they are rebound.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	if onPostgres(t) {
		db := sql.OpenDB(rebindConnector{where(t, path).DatabaseURL})
		t.Cleanup(func() { db.Close() })
		return db
	}
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=5000")
	if err != nil {
		t.Fatalf("open raw %s: %v", path, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// t0 is when every test's story begins.
var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// clock is a settable Options.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock(at time.Time) *clock { return &clock{now: at} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// recorder is an Options.OnCommit that keeps everything it is handed.
type recorder struct {
	mu      sync.Mutex
	commits []store.Committed
}

func (r *recorder) OnCommit(c store.Committed) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.commits = append(r.commits, c)
}

// Entries returns every entry committed so far, in the order OnCommit got them.
func (r *recorder) Entries() []store.Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	var all []store.Entry
	for _, c := range r.commits {
		all = append(all, c.Entries...)
	}
	return all
}

// EntriesOf returns the entries of one user, in the order OnCommit got them.
func (r *recorder) EntriesOf(user string) []store.Entry {
	var mine []store.Entry
	for _, e := range r.Entries() {
		if e.User == user {
			mine = append(mine, e)
		}
	}
	return mine
}

func (r *recorder) Deauthorized() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var all []string
	for _, c := range r.commits {
		all = append(all, c.Deauthorized...)
	}
	return all
}

// types lists the entries' types, for comparing with what a test expects.
func types(entries []store.Entry) []string {
	var ts []string
	for _, e := range entries {
		ts = append(ts, e.Type)
	}
	return ts
}

func seqs(entries []store.Entry) []int64 {
	var ss []int64
	for _, e := range entries {
		ss = append(ss, e.Seq)
	}
	return ss
}

// upTo returns 1, 2, …, n.
func upTo(n int) []int64 {
	ss := make([]int64, n)
	for i := range ss {
		ss[i] = int64(i + 1)
	}
	return ss
}

func wantTypes(t *testing.T, what string, entries []store.Entry, want ...string) {
	t.Helper()
	if got := types(entries); !slices.Equal(got, want) {
		t.Fatalf("%s: got entries %q, want %q", what, got, want)
	}
}

// meetingOf decodes an entry's payload.
func meetingOf(t *testing.T, e store.Entry) store.Meeting {
	t.Helper()
	var m store.Meeting
	if err := json.Unmarshal(e.Data, &m); err != nil {
		t.Fatalf("entry %d of %s: %v (%s)", e.Seq, e.User, err, e.Data)
	}
	return m
}

func MustIngest(t *testing.T, st *store.Store, d store.Delivery) store.Outcome {
	t.Helper()
	out, err := st.Ingest(context.Background(), d)
	if err != nil {
		t.Fatalf("ingest %s %v: %v", d.Event, d.Key, err)
	}
	return out
}

// MustAccept ingests d and fails unless it was accepted.
func MustAccept(t *testing.T, st *store.Store, d store.Delivery) {
	t.Helper()
	if got, want := MustIngest(t, st, d), store.OutcomeAccepted; got != want {
		t.Fatalf("ingest %s %v: got %q, want %q", d.Event, d.Key, got, want)
	}
}

func MustAdmit(t *testing.T, st *store.Store, user string) {
	t.Helper()
	if err := st.Admit(context.Background(), user, time.Now()); err != nil {
		t.Fatalf("admit %s: %v", user, err)
	}
}

func MustLive(t *testing.T, st *store.Store, user string) []store.Meeting {
	t.Helper()
	ms, err := st.LiveMeetings(context.Background(), user)
	if err != nil {
		t.Fatalf("live meetings of %s: %v", user, err)
	}
	return ms
}

// liveUUIDs lists the uuids of the user's live meetings, newest first.
func liveUUIDs(t *testing.T, st *store.Store, user string) []string {
	t.Helper()
	var uuids []string
	for _, m := range MustLive(t, st, user) {
		uuids = append(uuids, m.UUID)
	}
	return uuids
}

func MustWelcome(t *testing.T, st *store.Store, user string, since *store.Position, maxReplay int) store.Welcome {
	t.Helper()
	w, err := st.Welcome(context.Background(), user, since, maxReplay)
	if err != nil {
		t.Fatalf("welcome %s since %v: %v", user, since, err)
	}
	return w
}

// wantUnknown fails unless the store does not know user.
func wantUnknown(t *testing.T, st *store.Store, user string) {
	t.Helper()
	if _, err := st.Welcome(context.Background(), user, nil, 100); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("welcome %s: got %v, want ErrNotFound", user, err)
	}
}

// Deliveries, shaped as web.delivery makes them from Zoom's webhooks.

const meetingNumber = "85012345678"

func started(host, uuid string, at time.Time) store.Delivery {
	return store.Delivery{
		Event: "meeting.started", Key: []string{"meeting.started", ts(at), uuid}, KeyTime: at,
		Kind: store.KindStart, At: at, Received: at,
		Meeting: store.MeetingInfo{
			UUID: uuid, ID: meetingNumber, Topic: "Standup " + uuid, HostID: host, Type: 1,
			StartTime: at, Timezone: "Europe/Berlin", Rank: 2, StartRank: 2,
		},
	}
}

func ended(host, uuid string, at time.Time) store.Delivery {
	d := started(host, uuid, at)
	d.Event, d.Key, d.Kind = "meeting.ended", []string{"meeting.ended", ts(at), uuid}, store.KindEnd
	d.Meeting.StartTime, d.Meeting.StartRank = at, 0 // only the end time is known here
	d.Meeting.EndTime = at
	return d
}

// joined is a participant event: it carries less about the meeting (no
// topic, no start time) than a start does.
func joined(host, uuid, participant string, at time.Time) store.Delivery {
	return store.Delivery{
		Event: "meeting.participant_joined", Key: []string{"meeting.participant_joined", ts(at), uuid, participant},
		KeyTime: at, Kind: store.KindJoin, At: at, Received: at,
		Meeting: store.MeetingInfo{
			UUID: uuid, ID: meetingNumber, HostID: host, Type: 1, StartTime: at, Rank: 1, StartRank: 0,
		},
		Participant: participant, ParticipantAt: at,
	}
}

func left(host, uuid, participant string, at time.Time) store.Delivery {
	d := joined(host, uuid, participant, at)
	d.Event, d.Key, d.Kind = "meeting.participant_left", []string{"meeting.participant_left", ts(at), uuid, participant}, store.KindLeave
	return d
}

func deauthorized(user string, at time.Time) store.Delivery {
	return store.Delivery{
		Event: "app_deauthorized", Key: []string{"app_deauthorized", user, at.Format(time.DateTime)},
		KeyTime: at, Kind: store.KindDeauth, At: at, Received: at, User: user,
	}
}

// other is a verified event onair does not act on.
func other(name string, at time.Time) store.Delivery {
	return store.Delivery{Event: name, Key: []string{name, ts(at)}, KeyTime: at, Kind: store.KindIgnore, At: at, Received: at}
}

func ts(at time.Time) string { return fmt.Sprint(at.UnixMilli()) }

// uuidN names the n-th meeting of a test: Zoom's uuids are base64-like.
func uuidN(n int) string { return fmt.Sprintf("uU%03d/+aBc==", n) }

// rowsContaining lists every row of every table that holds s in any column.
func rowsContaining(t *testing.T, db *sql.DB, s string) []string {
	t.Helper()
	ctx := context.Background()
	tables, err := db.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table'`)
	if isPostgres(db) {
		tables, err = db.QueryContext(ctx, `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()`)
	}
	if err != nil {
		t.Fatalf("list tables: %v", err)
	}
	var names []string
	for tables.Next() {
		var n string
		if err := tables.Scan(&n); err != nil {
			t.Fatalf("list tables: %v", err)
		}
		names = append(names, n)
	}
	tables.Close()
	if len(names) < 7 {
		t.Fatalf("tables: got %q, want the whole schema", names)
	}
	var found []string
	for _, table := range names {
		rows, err := db.QueryContext(ctx, `SELECT * FROM "`+table+`"`)
		if err != nil {
			t.Fatalf("read %s: %v", table, err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatalf("read %s: %v", table, err)
			}
			for i, v := range vals {
				var text string
				switch v := v.(type) {
				case string:
					text = v
				case []byte:
					text = string(v)
				default:
					text = fmt.Sprint(v)
				}
				if strings.Contains(text, s) {
					found = append(found, fmt.Sprintf("%s.%s = %q", table, cols[i], text))
				}
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("read %s: %v", table, err)
		}
		rows.Close()
	}
	return found
}
