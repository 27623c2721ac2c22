package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Under writes that never pause, a passive checkpoint never catches up with
// the last commit; the WAL must still start over now and then rather than
// grow for as long as the load lasts.
func TestWALStartsOverUnderSteadyWrites(t *testing.T) {
	const catchUpFrames = 256
	savedBytes, savedEvery := catchUpBytes, checkpointEvery
	catchUpBytes, checkpointEvery = catchUpFrames*2048, 20*time.Millisecond
	t.Cleanup(func() { catchUpBytes, checkpointEvery = savedBytes, savedEvery })
	path := filepath.Join(t.TempDir(), "onair.db")
	s, err := Open(context.Background(), Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var n atomic.Int64
	for range 16 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				err := s.w.do(context.Background(), func(tx *Tx) error {
					return tx.createUser(fmt.Sprintf("steady-%d", n.Add(1)))
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	defer func() { close(stop); wg.Wait() }()

	// The WAL's length in frames is what a checkpoint reports. Without help
	// it grows as long as the writes go on (tens of thousands of frames in
	// these 3 s); with it, it stays within a hundred times catchUpFrames (the writes of a
	// few ticks).
	var longest, frames int
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		var busy, copied int
		if err := s.read.QueryRow(`PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &frames, &copied); err != nil {
			t.Fatal(err)
		}
		longest = max(longest, frames)
	}
	t.Logf("%d writes, longest WAL %d frames", n.Load(), longest)
	if longest > 128*catchUpFrames {
		t.Fatalf("the WAL grew to %d frames under steady writes (%d writes)", longest, n.Load())
	}
}

// The first welcomes after a start come all at once (a reconnect storm):
// with more of them than read connections, none may wait for a connection
// it can only get from another of them.
func TestManyFirstWelcomesAtOnce(t *testing.T) { forBothEngines(t, testManyFirstWelcomesAtOnce) }

func testManyFirstWelcomesAtOnce(t *testing.T, opts Options) {
	s, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.w.do(context.Background(), func(tx *Tx) error { return tx.createUser("u") }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Go(func() {
			var since *Position
			if i%2 == 0 {
				since = &Position{Epoch: "x", Seq: 0}
			}
			if _, err := s.Welcome(ctx, "u", since, 100); err != nil {
				t.Errorf("welcome %d: %v", i, err)
			}
		})
	}
	wg.Wait()
}

// SQLite hands the number of a deleted last row out again: an outbox item
// is identified by its request and type too, so a worker finishing a gone
// item never touches the one that took its number.
func TestOutboxRowNumberReuse(t *testing.T) { forBothEngines(t, testOutboxRowNumberReuse) }

func testOutboxRowNumberReuse(t *testing.T, opts Options) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	opts.Launcher, opts.Now = true, func() time.Time { return now }
	s, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	d := Delivery{Event: "meeting.started", Key: []string{"k1"}, Kind: KindStart, At: now, Received: now,
		Meeting: MeetingInfo{UUID: "m1", ID: "1", HostID: "host", Rank: 2, StartRank: 2, StartTime: now}}
	if _, err := s.Ingest(ctx, d); err != nil {
		t.Fatal(err)
	}
	a, _, err := s.RequestBot(ctx, "host", "m1")
	if err != nil {
		t.Fatal(err)
	}
	due, _, _ := s.DueOutbox(ctx, 10)
	itemA := due[0]
	if _, _, err := s.CancelBot(ctx, "host", "m1"); err != nil {
		t.Fatal(err)
	}
	b, _, err := s.RequestBot(ctx, "host", "m1")
	if err != nil {
		t.Fatal(err)
	}
	due, _, _ = s.DueOutbox(ctx, 10)
	if len(due) != 1 || due[0].RequestID != b.RequestID {
		t.Fatalf("due %+v, want only B", due)
	}
	if due[0].N != itemA.N {
		t.Logf("the row number was not reused (%d, %d): the test shows less", itemA.N, due[0].N)
	}
	// A's worker comes back late: it must neither send B's row as A's nor remove it.
	if err := s.ReadyToSend(ctx, itemA, `{"request_id":"`+a.RequestID+`"}`, "", time.Now().Add(time.Minute)); err != ErrOutboxGone {
		t.Fatalf("ready to send a gone item: %v, want ErrOutboxGone", err)
	}
	if err := s.OutboxRetry(ctx, itemA, now.Add(time.Hour), "late"); err != nil {
		t.Fatal(err)
	}
	if err := s.OutboxGiveUp(ctx, itemA, "late"); err != nil {
		t.Fatal(err)
	}
	due, _, _ = s.DueOutbox(ctx, 10)
	if len(due) != 1 || due[0].RequestID != b.RequestID || due[0].Body != "" || due[0].Attempts != 0 {
		t.Fatalf("B's item after A's late worker: %+v", due)
	}
}

// The writer's cache of known users follows the rows: a user created in a
// write that failed is not cached, and a deauthorized one leaves the cache
// in the transaction that deletes them.
func TestWriterUserCache(t *testing.T) {
	s, err := Open(context.Background(), Options{Path: filepath.Join(t.TempDir(), "onair.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	boom := errors.New("boom")
	if err := s.w.do(ctx, func(tx *Tx) error {
		if err := tx.createUser("failed"); err != nil {
			return err
		}
		return boom
	}); err != boom {
		t.Fatalf("failing write: %v", err)
	}
	if err := s.w.do(ctx, func(tx *Tx) error { return tx.createUser("kept") }); err != nil {
		t.Fatal(err)
	}
	cached := func(id string) (ok bool) {
		s.w.do(ctx, func(*Tx) error { _, ok = s.w.users[id]; return nil }) // read on the writer's goroutine
		return ok
	}
	if cached("failed") || !cached("kept") {
		t.Fatalf("cache: failed %v, kept %v; want only kept", cached("failed"), cached("kept"))
	}
	now := time.Now()
	if _, err := s.Ingest(ctx, Delivery{Event: "app_deauthorized", Key: []string{"d", "kept"}, Kind: KindDeauth, At: now, Received: now, User: "kept"}); err != nil {
		t.Fatal(err)
	}
	if cached("kept") {
		t.Fatal("a deauthorized user is still cached")
	}
	var exists bool
	s.w.do(ctx, func(tx *Tx) error { exists, _ = tx.userExists("kept"); return nil })
	if exists {
		t.Fatal("a deauthorized user still exists for the writer")
	}
}
