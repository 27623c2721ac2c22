package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"onair/store"
)

func TestSeq(t *testing.T) {
	forEachEngine(t, func(t *testing.T, open opener) {
		t.Run("GapFreePerUser", func(t *testing.T) {
			var rec recorder
			st := open(t, store.Options{OnCommit: rec.OnCommit})
			// Interleave two hosts: each user's log counts on its own.
			for i := range 5 {
				MustAccept(t, st, started("alice", uuidN(i), t0.Add(time.Duration(i)*time.Minute)))
				if i%2 == 0 {
					MustAccept(t, st, started("bob", uuidN(100+i), t0.Add(time.Duration(i)*time.Minute)))
				}
			}
			MustAccept(t, st, ended("alice", uuidN(0), t0.Add(time.Hour)))
			if got, want := seqs(rec.EntriesOf("alice")), upTo(6); !slices.Equal(got, want) {
				t.Fatalf("alice's seqs: got %v, want %v", got, want)
			}
			if got, want := seqs(rec.EntriesOf("bob")), upTo(3); !slices.Equal(got, want) {
				t.Fatalf("bob's seqs: got %v, want %v", got, want)
			}
			if got, want := MustWelcome(t, st, "alice", nil, 100).Seq, int64(6); got != want {
				t.Fatalf("alice's welcome seq: got %d, want %d", got, want)
			}
		})

		t.Run("CommittedBeforeIngestReturns", func(t *testing.T) {
			var rec recorder
			st := open(t, store.Options{OnCommit: rec.OnCommit})
			for i := range 3 {
				MustAccept(t, st, started("alice", uuidN(i), t0))
				// OnCommit has run by the time the webhook would be answered.
				if got, want := len(rec.EntriesOf("alice")), i+1; got != want {
					t.Fatalf("after ingest %d: OnCommit saw %d entries, want %d", i, got, want)
				}
			}
		})

		t.Run("FailedWriteLeavesNoTrace", func(t *testing.T) {
			var rec recorder
			st := open(t, store.Options{OnCommit: rec.OnCommit})
			MustAccept(t, st, started("alice", uuidN(1), t0))
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if _, err := st.Ingest(ctx, started("alice", uuidN(2), t0)); !errors.Is(err, context.Canceled) {
				t.Fatalf("ingest with a cancelled context: got %v, want context.Canceled", err)
			}
			MustAccept(t, st, started("alice", uuidN(3), t0))
			if got, want := seqs(rec.EntriesOf("alice")), upTo(2); !slices.Equal(got, want) {
				t.Fatalf("seqs: got %v, want %v", got, want)
			}
		})
	})
}

// TestGroupCommit ingests 500 deliveries from 50 goroutines: every one
// commits, and OnCommit hands out each entry exactly once, in seq order per
// user, whatever batches the writer formed.
func TestGroupCommit(t *testing.T) {
	forEachEngine(t, func(t *testing.T, open opener) {
		var rec recorder
		st := open(t, store.Options{OnCommit: rec.OnCommit})
		const writers, each, hosts = 50, 10, 7
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				for i := range each {
					n := w*each + i
					d := started(fmt.Sprintf("host-%d", n%hosts), uuidN(n), t0.Add(time.Duration(n)*time.Second))
					out, err := st.Ingest(context.Background(), d)
					if err != nil {
						t.Errorf("ingest %d: %v", n, err)
						return
					}
					if out != store.OutcomeAccepted {
						t.Errorf("ingest %d: got %q, want accepted", n, out)
					}
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}

		entries := rec.Entries()
		if got, want := len(entries), writers*each; got != want {
			t.Fatalf("entries: got %d, want %d", got, want)
		}
		uuids := map[string]bool{}
		last := map[string]int64{}
		for _, e := range entries {
			if got, want := e.Seq, last[e.User]+1; got != want {
				t.Fatalf("%s: got seq %d after %d, want %d", e.User, got, last[e.User], want)
			}
			last[e.User] = e.Seq
			uuid := meetingOf(t, e).UUID
			if uuids[uuid] {
				t.Fatalf("meeting %s: started twice", uuid)
			}
			uuids[uuid] = true
		}
		rec.mu.Lock()
		commits := len(rec.commits)
		rec.mu.Unlock()
		t.Logf("%d deliveries in %d commits", len(entries), commits)

		// The log on disk is the sequence OnCommit saw.
		for user, n := range last {
			w := MustWelcome(t, st, user, &store.Position{Epoch: MustWelcome(t, st, user, nil, 0).Epoch}, 1000)
			if !w.Resumed {
				t.Fatalf("%s: replay from 0 not resumed", user)
			}
			got, want := w.Entries, rec.EntriesOf(user)
			if len(got) != int(n) || len(want) != int(n) {
				t.Fatalf("%s: got %d logged, %d committed, want %d", user, len(got), len(want), n)
			}
			for i := range got {
				if got[i].Seq != want[i].Seq || string(got[i].Data) != string(want[i].Data) {
					t.Fatalf("%s entry %d: logged %d %s, committed %d %s", user, i, got[i].Seq, got[i].Data, want[i].Seq, want[i].Data)
				}
			}
		}
	})
}

// TestWriteLocked holds the database's write lock from another connection
// (PostgreSQL: a lock on the table every ingest writes first): an
// ingest must give up in time (so the webhook answers 503) and leave
// nothing behind, and work again once the lock is gone.
func TestWriteLocked(t *testing.T) {
	forEachEngine(t, func(t *testing.T, open opener) {
		var rec recorder
		path := dbPath(t)
		st := open(t, store.Options{Path: path, OnCommit: rec.OnCommit})

		ctx := context.Background()
		conn, err := rawDB(t, path).Conn(ctx)
		if err != nil {
			t.Fatalf("second connection: %v", err)
		}
		defer conn.Close()
		lock := []string{`BEGIN IMMEDIATE`}
		if onPostgres(t) {
			lock = []string{`BEGIN`, `LOCK TABLE delivery_keys IN ACCESS EXCLUSIVE MODE`}
		}
		for _, q := range lock {
			if _, err := conn.ExecContext(ctx, q); err != nil {
				t.Fatalf("take the write lock: %v", err)
			}
		}

		d := started("alice", uuidN(1), t0)
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		begin := time.Now()
		_, err = st.Ingest(wctx, d)
		elapsed := time.Since(begin)
		if err == nil {
			t.Fatal("ingest while locked: got no error")
		}
		if elapsed > 3*time.Second {
			t.Fatalf("ingest while locked: gave up after %v, want within 3s", elapsed)
		}
		t.Logf("gave up after %v: %v", elapsed, err)

		if _, err := conn.ExecContext(ctx, `ROLLBACK`); err != nil {
			t.Fatalf("release the write lock: %v", err)
		}
		if got := rec.Entries(); len(got) != 0 {
			t.Fatalf("entries while locked: got %q, want none", types(got))
		}
		wantUnknown(t, st, "alice")
		// Zoom retries the 503: the same delivery is new, not a duplicate.
		MustAccept(t, st, d)
		wantTypes(t, "alice", rec.EntriesOf("alice"), "meeting.started")
	})
}

func TestClosed(t *testing.T) {
	forEachEngine(t, func(t *testing.T, open opener) {
		st := open(t, store.Options{})
		if err := st.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		if _, err := st.Ingest(context.Background(), started("alice", uuidN(1), t0)); !errors.Is(err, store.ErrClosed) {
			t.Fatalf("ingest after close: got %v, want ErrClosed", err)
		}
	})
}
