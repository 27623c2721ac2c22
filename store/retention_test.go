package store_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"onair/store"
)

func TestSweep(t *testing.T) {
	forEachEngine(t, func(t *testing.T, open opener) {
		const host = "alice"
		day := 24 * time.Hour
		setup := func(t *testing.T) (*store.Store, *clock, string) {
			clk := newClock(t0)
			path := dbPath(t)
			return open(t, store.Options{Path: path, Now: clk.Now}), clk, path
		}
		sweep := func(t *testing.T, st *store.Store, r store.Retention) int64 {
			t.Helper()
			n, err := st.Sweep(context.Background(), r)
			if err != nil {
				t.Fatalf("sweep: %v", err)
			}
			return n
		}
		meetings := func(t *testing.T, path string) []string {
			t.Helper()
			rows, err := rawDB(t, path).Query(`SELECT uuid FROM meetings ORDER BY uuid`)
			if err != nil {
				t.Fatalf("meetings: %v", err)
			}
			defer rows.Close()
			var uuids []string
			for rows.Next() {
				var u string
				if err := rows.Scan(&u); err != nil {
					t.Fatalf("meetings: %v", err)
				}
				uuids = append(uuids, u)
			}
			return uuids
		}

		t.Run("ByAge", func(t *testing.T) {
			st, clk, path := setup(t)
			// Two days ago: one meeting ended, one still live, a delivery ignored.
			MustAccept(t, st, started(host, uuidN(1), clk.Now()))
			MustAccept(t, st, ended(host, uuidN(1), clk.Now()))
			MustAccept(t, st, started(host, uuidN(2), clk.Now()))
			oldOther := other("meeting.sharing_started", clk.Now())
			MustIngest(t, st, oldOther)
			clk.Add(2 * day)
			// Now: a meeting that ended, one that is live, another ignored delivery.
			MustAccept(t, st, started(host, uuidN(3), clk.Now()))
			MustAccept(t, st, ended(host, uuidN(3), clk.Now()))
			MustAccept(t, st, started(host, uuidN(4), clk.Now()))
			newOther := other("meeting.sharing_started", clk.Now())
			MustIngest(t, st, newOther)
			epoch := MustWelcome(t, st, host, nil, 100).Epoch

			if n := sweep(t, st, store.Retention{Age: day, Events: 100}); n == 0 {
				t.Fatal("sweep: deleted nothing")
			}
			if got, want := meetings(t, path), []string{uuidN(2), uuidN(3), uuidN(4)}; !slices.Equal(got, want) {
				t.Fatalf("meetings kept: got %q, want %q", got, want)
			}
			if got, want := liveUUIDs(t, st, host), []string{uuidN(4), uuidN(2)}; !slices.Equal(got, want) {
				t.Fatalf("live meetings: got %q, want %q", got, want)
			}
			// Events 1…3 are older than a day, 4…6 are not.
			if w := MustWelcome(t, st, host, &store.Position{Epoch: epoch, Seq: 2}, 100); w.Resumed {
				t.Fatalf("resume from 2: got %v, want a snapshot", seqs(w.Entries))
			}
			w := MustWelcome(t, st, host, &store.Position{Epoch: epoch, Seq: 3}, 100)
			if got, want := seqs(w.Entries), []int64{4, 5, 6}; !w.Resumed || !slices.Equal(got, want) {
				t.Fatalf("resume from 3: got resumed %v with %v, want %v", w.Resumed, got, want)
			}
			if n := sweep(t, st, store.Retention{Age: day, Events: 100}); n != 0 {
				t.Fatalf("second sweep: deleted %d, want 0", n)
			}
			// The old deduplication key is gone, the new one is not.
			if got, want := MustIngest(t, st, oldOther), store.OutcomeIgnored; got != want {
				t.Fatalf("old delivery again: got %q, want %q (its key swept)", got, want)
			}
			if got, want := MustIngest(t, st, newOther), store.OutcomeDuplicate; got != want {
				t.Fatalf("new delivery again: got %q, want %q", got, want)
			}
		})

		// A key stays until its arrival is past the cutoff, and then goes
		// once its event time is past it too or still ahead of the clock:
		// a retry that came long after its event, and a bogus event_ts.
		for _, c := range []struct {
			name     string
			delivery func(clk *clock) store.Delivery
		}{
			{"LateRetry", func(clk *clock) store.Delivery {
				d := other("meeting.sharing_started", clk.Now())
				clk.Add(2 * day)
				d.Received = clk.Now()
				return d
			}},
			{"EventTimeAhead", func(clk *clock) store.Delivery {
				d := other("meeting.sharing_started", clk.Now())
				d.KeyTime = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
				return d
			}},
		} {
			t.Run(c.name, func(t *testing.T) {
				st, clk, _ := setup(t)
				d := c.delivery(clk)
				MustIngest(t, st, d)
				clk.Add(day / 2)
				sweep(t, st, store.Retention{Age: day, Events: 100})
				if got, want := MustIngest(t, st, d), store.OutcomeDuplicate; got != want {
					t.Fatalf("again, half a day on: got %q, want %q", got, want)
				}
				clk.Add(day)
				sweep(t, st, store.Retention{Age: day, Events: 100})
				if got, want := MustIngest(t, st, d), store.OutcomeIgnored; got != want {
					t.Fatalf("again, a day and a half on: got %q, want %q (its key swept)", got, want)
				}
			})
		}

		t.Run("ByCount", func(t *testing.T) {
			st, _, _ := setup(t)
			for i := range 10 {
				MustAccept(t, st, started(host, uuidN(i), t0))
			}
			MustAccept(t, st, started("bob", uuidN(100), t0))
			epoch := MustWelcome(t, st, host, nil, 100).Epoch
			if got, want := sweep(t, st, store.Retention{Age: day, Events: 3}), int64(7); got != want {
				t.Fatalf("sweep: deleted %d, want %d", got, want)
			}
			w := MustWelcome(t, st, host, &store.Position{Epoch: epoch, Seq: 7}, 100)
			if got, want := seqs(w.Entries), []int64{8, 9, 10}; !w.Resumed || !slices.Equal(got, want) {
				t.Fatalf("resume from 7: got resumed %v with %v, want %v", w.Resumed, got, want)
			}
			if w := MustWelcome(t, st, host, &store.Position{Epoch: epoch, Seq: 6}, 100); w.Resumed {
				t.Fatalf("resume from 6: got %v, want a snapshot", seqs(w.Entries))
			}
			bob := MustWelcome(t, st, "bob", nil, 100)
			w = MustWelcome(t, st, "bob", &store.Position{Epoch: bob.Epoch, Seq: 0}, 100)
			if got, want := seqs(w.Entries), []int64{1}; !w.Resumed || !slices.Equal(got, want) {
				t.Fatalf("bob's log: got resumed %v with %v, want %v", w.Resumed, got, want)
			}
			// The meetings are all still live: retention trims logs, not state.
			if got, want := len(MustLive(t, st, host)), 10; got != want {
				t.Fatalf("live meetings: got %d, want %d", got, want)
			}
			// Seq goes on from where it was.
			MustAccept(t, st, started(host, uuidN(10), t0))
			if got, want := MustWelcome(t, st, host, nil, 100).Seq, int64(11); got != want {
				t.Fatalf("seq after sweep: got %d, want %d", got, want)
			}
		})

		t.Run("InChunks", func(t *testing.T) {
			st, clk, _ := setup(t)
			for i := range 1500 {
				MustIngest(t, st, other("meeting.sharing_started", t0.Add(time.Duration(i)*time.Millisecond)))
			}
			clk.Add(2 * day)
			if got, want := sweep(t, st, store.Retention{Age: day, Events: 100}), int64(1500); got != want {
				t.Fatalf("sweep: deleted %d, want %d", got, want)
			}
		})
	})
}
