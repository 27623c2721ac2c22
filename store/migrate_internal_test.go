package store

import (
	"context"
	"database/sql"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// A database from before schema 8 keeps its members, keyed by their
// meeting's number from then on: who is in which live meeting, the end of a
// meeting for everyone in it, and the cascade from a swept meeting all hold,
// and meetings created after the upgrade are numbered after the old ones.
func TestMembersByMeetingNumber(t *testing.T) { forBothEngines(t, testMembersByMeetingNumber) }

func testMembersByMeetingNumber(t *testing.T, opts Options) {
	ctx := context.Background()
	t0 := time.Date(2026, 12, 4, 14, 0, 0, 0, time.UTC)
	opts.Now = func() time.Time { return t0 }
	var mu sync.Mutex
	var entries []string
	opts.OnCommit = func(c Committed) {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range c.Entries {
			entries = append(entries, e.User+" "+e.Type)
		}
	}

	engine, rebind := "sqlite", func(q string) string { return q }
	var raw *sql.DB
	var err error
	if opts.DatabaseURL != "" {
		engine, rebind = "postgres", new(dollarParams).rebind
		raw, err = openPostgresPool(opts.DatabaseURL)
	} else {
		raw, err = sql.Open("sqlite3", "file:"+opts.Path+"?_foreign_keys=on&_journal_mode=WAL")
	}
	if err != nil {
		t.Fatal(err)
	}
	ms, err := loadMigrations(engine)
	if err != nil {
		t.Fatal(err)
	}
	old := slices.DeleteFunc(ms, func(m migration) bool { return m.version >= 8 })
	if err := applyMigrations(ctx, raw, old, rebind); err != nil {
		t.Fatalf("migrate to schema 7: %v", err)
	}
	// alice hosts a live meeting bob is in; carol's meeting ended long ago.
	long := t0.Add(-30 * 24 * time.Hour).UnixMilli()
	for _, q := range []string{
		`INSERT INTO users (id, gen, created_at) VALUES ('alice', 'g', 0), ('bob', 'g', 0), ('carol', 'g', 0)`,
		`INSERT INTO meetings (uuid, topic, host_id, start_time, live, ended, updated_at)
			VALUES ('uuid-live', 'Standup', 'alice', 1000, 1, 0, 0)`,
		`INSERT INTO meetings (uuid, topic, host_id, start_time, end_time, live, ended, updated_at)
			VALUES ('uuid-ended', 'Retro', 'carol', 500, 600, 0, 1, ` + strconv.FormatInt(long, 10) + `)`,
		`INSERT INTO meeting_members (meeting_uuid, user_id, role, in_meeting) VALUES
			('uuid-live', 'alice', 'host', 1), ('uuid-live', 'bob', 'participant', 1), ('uuid-ended', 'carol', 'host', 0)`,
	} {
		if _, err := raw.ExecContext(ctx, q); err != nil {
			t.Fatalf("schema 7 rows: %v", err)
		}
	}
	raw.Close()

	s, err := Open(ctx, opts)
	if err != nil {
		t.Fatalf("open (migrate to schema 8): %v", err)
	}
	defer s.Close()
	live := func(user string) []string {
		t.Helper()
		ms, err := s.LiveMeetings(ctx, user)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, m := range ms {
			got = append(got, m.UUID+" "+m.Role+" "+m.Topic)
		}
		return got
	}
	if got, want := live("alice"), []string{"uuid-live host Standup"}; !slices.Equal(got, want) {
		t.Fatalf("alice's live meetings: got %q, want %q", got, want)
	}
	if got, want := live("bob"), []string{"uuid-live participant Standup"}; !slices.Equal(got, want) {
		t.Fatalf("bob's live meetings: got %q, want %q", got, want)
	}

	// The end reaches both members, found by the meeting's number.
	end := Delivery{Event: "meeting.ended", Key: []string{"meeting.ended", "1", "uuid-live"}, KeyTime: t0,
		Kind: KindEnd, At: t0, Received: t0, Meeting: MeetingInfo{UUID: "uuid-live", HostID: "alice", Rank: 2}}
	if out, err := s.Ingest(ctx, end); err != nil || out != OutcomeAccepted {
		t.Fatalf("end: %q, %v", out, err)
	}
	mu.Lock()
	ended := slices.Sorted(slices.Values(entries))
	mu.Unlock()
	if want := []string{"alice meeting.ended", "bob meeting.ended"}; !slices.Equal(ended, want) {
		t.Fatalf("entries of the end: got %q, want %q", ended, want)
	}
	if got := live("bob"); len(got) != 0 {
		t.Fatalf("bob's live meetings after the end: %q", got)
	}

	// A new meeting is numbered after the old ones.
	start := Delivery{Event: "meeting.started", Key: []string{"meeting.started", "2", "uuid-new"}, KeyTime: t0,
		Kind: KindStart, At: t0, Received: t0,
		Meeting: MeetingInfo{UUID: "uuid-new", HostID: "carol", StartTime: t0, Rank: 2, StartRank: 2}}
	if out, err := s.Ingest(ctx, start); err != nil || out != OutcomeAccepted {
		t.Fatalf("start: %q, %v", out, err)
	}
	var nNew, nMax int64
	if err := s.read.QueryRowContext(ctx, `SELECT n FROM meetings WHERE uuid = 'uuid-new'`).Scan(&nNew); err != nil {
		t.Fatal(err)
	}
	if err := s.read.QueryRowContext(ctx, `SELECT MAX(n) FROM meetings WHERE uuid <> 'uuid-new'`).Scan(&nMax); err != nil {
		t.Fatal(err)
	}
	if nNew <= nMax {
		t.Fatalf("new meeting's number %d, want above the old ones' %d", nNew, nMax)
	}
	if got, want := live("carol"), []string{"uuid-new host "}; !slices.Equal(got, want) {
		t.Fatalf("carol's live meetings: got %q, want %q", got, want)
	}

	// The sweep of carol's old meeting takes its member row along.
	if _, err := s.Sweep(ctx, Retention{Age: 7 * 24 * time.Hour, Events: 100}); err != nil {
		t.Fatal(err)
	}
	var members int
	if err := s.read.QueryRowContext(ctx, `SELECT COUNT(*) FROM meeting_members mm JOIN meetings m ON m.n = mm.meeting_n
		WHERE m.uuid = 'uuid-ended'`).Scan(&members); err != nil {
		t.Fatal(err)
	}
	var orphans int
	if err := s.read.QueryRowContext(ctx, `SELECT COUNT(*) FROM meeting_members mm
		WHERE NOT EXISTS (SELECT 1 FROM meetings m WHERE m.n = mm.meeting_n)`).Scan(&orphans); err != nil {
		t.Fatal(err)
	}
	var swept int
	if err := s.read.QueryRowContext(ctx, `SELECT COUNT(*) FROM meetings WHERE uuid = 'uuid-ended'`).Scan(&swept); err != nil {
		t.Fatal(err)
	}
	if swept != 0 || members != 0 || orphans != 0 {
		t.Fatalf("after the sweep: %d old meetings, %d of its members, %d members without a meeting; want 0", swept, members, orphans)
	}
}
