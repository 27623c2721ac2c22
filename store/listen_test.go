package store_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"onair/internal/testpg"
	"onair/store"
)

// Two stores on one PostgreSQL database are two nodes: each hears every
// commit, its own and the other's, in commit order, before its write
// returns.
func TestNodesHearEachOther(t *testing.T) {
	url := testpg.URL(t)
	open := func(rec *recorder) *store.Store {
		st, err := store.Open(context.Background(), store.Options{DatabaseURL: url, OnCommit: rec.OnCommit})
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	var recA, recB recorder
	a, b := open(&recA), open(&recB)
	if a.Node() == b.Node() || a.Epoch() != b.Epoch() {
		t.Fatalf("nodes %q and %q, epochs %q and %q: want two nodes of one database", a.Node(), b.Node(), a.Epoch(), b.Epoch())
	}

	// Writes on both nodes at once, for the same users.
	const users, perUser = 4, 30
	var wg sync.WaitGroup
	for u := range users {
		for i := range perUser {
			st := a
			if i%2 == 1 {
				st = b
			}
			wg.Go(func() {
				at := t0.Add(time.Duration(i) * time.Minute)
				MustAccept(t, st, started(fmt.Sprintf("host-%d", u), uuidN(u*100+i), at))
			})
		}
	}
	wg.Wait()
	// A write returns once its own node has published it; the other node
	// hears it a moment later.
	deadline := time.Now().Add(5 * time.Second)
	for len(recA.Entries()) < users*perUser || len(recB.Entries()) < users*perUser {
		if time.Now().After(deadline) {
			t.Fatalf("heard %d and %d entries, want %d each", len(recA.Entries()), len(recB.Entries()), users*perUser)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for u := range users {
		user := fmt.Sprintf("host-%d", u)
		for name, rec := range map[string]*recorder{"A": &recA, "B": &recB} {
			if got := seqs(rec.EntriesOf(user)); !slices.Equal(got, upTo(perUser)) {
				t.Errorf("node %s heard %s's seqs %v, want 1..%d in order", name, user, got, perUser)
			}
		}
	}
	// A redelivery to the other node is a duplicate.
	if got := MustIngest(t, b, started("host-0", uuidN(0), t0)); got != store.OutcomeDuplicate {
		t.Fatalf("redelivery to the other node: got %q, want duplicate", got)
	}
}

// An entry too large for one notification still reaches OnCommit whole,
// and a transaction of many entries reaches it in order.
func TestLargeAndManyEntries(t *testing.T) {
	forEachEngine(t, func(t *testing.T, open opener) {
		var rec recorder
		st := open(t, store.Options{OnCommit: rec.OnCommit})
		d := started("alice", uuidN(1), t0)
		d.Meeting.Topic = strings.Repeat("long topic ", 1500) // 16 KB: over PostgreSQL's 8000-byte payload
		MustAccept(t, st, d)
		got := rec.EntriesOf("alice")
		if len(got) != 1 || meetingOf(t, got[0]).Topic != d.Meeting.Topic {
			t.Fatalf("large entry: got %d entries, want one with the whole topic", len(got))
		}

		// Many writes at once share transactions: hundreds of entries each.
		const n = 400
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { MustAccept(t, st, started("bob", uuidN(1000+i), t0.Add(time.Duration(i)*time.Second))) })
		}
		wg.Wait()
		if got := seqs(rec.EntriesOf("bob")); !slices.Equal(got, upTo(n)) {
			t.Fatalf("bob's seqs: got %d entries %v…, want 1..%d in order", len(got), got[:min(len(got), 10)], n)
		}
	})
}

// A node whose listening connection is cut reports at once that its tabs
// may miss commits and that it is not ready, gets the connection back by
// itself, and reports again (tabs opened meanwhile resume too).
func TestListenerLost(t *testing.T) {
	url := testpg.URL(t)
	var missed atomic.Int32
	var rec recorder
	st, err := store.Open(context.Background(), store.Options{DatabaseURL: url, OnCommit: rec.OnCommit,
		OnMissed: func(bool) { missed.Add(1) }})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer st.Close()
	if err := st.Listening(); err != nil {
		t.Fatalf("listening at start: %v", err)
	}
	admin := testpg.Open(t, testpg.Server())
	var cut int
	// testpg names every connection of the test's schema after it.
	if err := admin.QueryRow(`SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = $1 AND query LIKE 'LISTEN %'`, schemaOf(t, url)).Scan(&cut); err != nil || cut != 1 {
		t.Fatalf("cut the listening connection: %d cut, %v", cut, err)
	}
	// Deaf meanwhile: a commit made now may go unheard, which the repairs
	// cover (one when it went deaf, one when it hears again).
	MustAccept(t, st, started("alice", uuidN(1), t0))
	deadline := time.Now().Add(10 * time.Second)
	for missed.Load() < 2 || st.Listening() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("the listener did not come back (%v) and report the repairs (%d)", st.Listening(), missed.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Heard again from now on.
	MustAccept(t, st, started("alice", uuidN(2), t0.Add(time.Minute)))
	if got := rec.EntriesOf("alice"); len(got) == 0 || got[len(got)-1].Seq != 2 {
		t.Fatalf("after the repair: heard %v, want seq 2 last", seqs(got))
	}
	if got := missed.Load(); got != 2 {
		t.Fatalf("repairs reported: got %d, want 2 (deaf, then back)", got)
	}
}

// schemaOf is the schema a testpg URL uses.
func schemaOf(t *testing.T, url string) string {
	t.Helper()
	_, q, _ := strings.Cut(url, "search_path=")
	schema, _, _ := strings.Cut(q, "&")
	if schema == "" {
		t.Fatalf("no schema in %s", url)
	}
	return schema
}

// Work under Once runs on one node at a time: another node (or another
// caller in the same process) skips it while it runs, runs it afterwards,
// and takes it over when the node running it dies (its connection, and
// with it the lock, is gone).
func TestOnceAcrossNodes(t *testing.T) {
	url := testpg.URL(t)
	open := func() *store.Store {
		st, err := store.Open(context.Background(), store.Options{DatabaseURL: url})
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	a, b := open(), open()
	ctx := context.Background()
	running, release := make(chan struct{}), make(chan struct{})
	done := make(chan bool)
	go func() {
		ran, err := a.Once(ctx, "sweep", func(context.Context) error {
			close(running)
			<-release
			return nil
		})
		if err != nil {
			t.Errorf("node A: %v", err)
		}
		done <- ran
	}()
	<-running
	for name, st := range map[string]*store.Store{"the same node": a, "another node": b} {
		ran, err := st.Once(ctx, "sweep", func(context.Context) error { return nil })
		if err != nil || ran {
			t.Fatalf("%s while A runs it: ran %v, %v; want skipped", name, ran, err)
		}
		if ran, err := st.Once(ctx, "other work", func(context.Context) error { return nil }); err != nil || !ran {
			t.Fatalf("%s, other work: ran %v, %v; want run", name, ran, err)
		}
	}
	close(release)
	if !<-done {
		t.Fatal("node A's run did not run")
	}
	if ran, err := b.Once(ctx, "sweep", func(context.Context) error { return nil }); err != nil || !ran {
		t.Fatalf("another node after A finished: ran %v, %v; want run", ran, err)
	}

	// A node that dies mid-work: its backend ends, and so does its lock.
	running = make(chan struct{})
	stuck := make(chan struct{})
	go func() {
		a.Once(ctx, "sweep", func(context.Context) error { close(running); <-stuck; return nil })
	}()
	<-running
	defer close(stuck)
	admin := testpg.Open(t, testpg.Server())
	if _, err := admin.Exec(`SELECT pg_terminate_backend(l.pid) FROM pg_locks l JOIN pg_stat_activity s ON s.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.granted AND s.application_name = $1`, schemaOf(t, url)); err != nil {
		t.Fatalf("end the backend holding the lock: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		ran, err := b.Once(ctx, "sweep", func(context.Context) error { return nil })
		if err == nil && ran {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the dead node's work was not taken over: ran %v, %v", ran, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
