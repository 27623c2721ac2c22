package store_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"onair/store"
)

// TestWelcome is shaped like mercure's history tests: publish 10, resume
// from 8, expect 9 and 10; and every way a position can be out of reach.
func TestWelcome(t *testing.T) {
	forEachEngine(t, func(t *testing.T, open opener) {
		const user = "alice"
		setup := func(t *testing.T) (*store.Store, string) {
			st := open(t, store.Options{})
			for i := range 10 {
				MustAccept(t, st, started(user, uuidN(i), t0.Add(time.Duration(i)*time.Minute)))
			}
			return st, MustWelcome(t, st, user, nil, 100).Epoch
		}

		t.Run("Snapshot", func(t *testing.T) {
			st, epoch := setup(t)
			w := MustWelcome(t, st, user, nil, 100)
			if w.Resumed || w.Seq != 10 || w.Epoch != epoch || len(w.Entries) != 0 {
				t.Fatalf("welcome: got resumed %v at %s/%d with %d entries, want a snapshot at %s/10", w.Resumed, w.Epoch, w.Seq, len(w.Entries), epoch)
			}
			if got, want := len(w.Meetings), 10; got != want {
				t.Fatalf("snapshot meetings: got %d, want %d", got, want)
			}
			if got, want := w.Meetings[0].UUID, uuidN(9); got != want {
				t.Fatalf("newest meeting first: got %s, want %s", got, want)
			}
		})

		t.Run("ResumeFrom8", func(t *testing.T) {
			st, epoch := setup(t)
			w := MustWelcome(t, st, user, &store.Position{Epoch: epoch, Seq: 8}, 100)
			if !w.Resumed {
				t.Fatal("resume from 8: not resumed")
			}
			if got, want := w.Seq, int64(8); got != want {
				t.Fatalf("welcome seq: got %d, want the client's own %d", got, want)
			}
			if got, want := seqs(w.Entries), []int64{9, 10}; !slices.Equal(got, want) {
				t.Fatalf("replayed: got %v, want %v", got, want)
			}
			for i, e := range w.Entries {
				if got, want := meetingOf(t, e).UUID, uuidN(8+i); got != want || e.Type != "meeting.started" || e.Epoch != epoch || e.User != user {
					t.Fatalf("replayed %d: got %s %s of %s in %s, want meeting.started %s", e.Seq, e.Type, got, e.User, e.Epoch, want)
				}
			}
		})

		t.Run("ResumeAtNewest", func(t *testing.T) {
			st, epoch := setup(t)
			w := MustWelcome(t, st, user, &store.Position{Epoch: epoch, Seq: 10}, 100)
			if !w.Resumed || w.Seq != 10 || len(w.Entries) != 0 {
				t.Fatalf("resume at newest: got resumed %v at %d with %d entries, want resumed at 10 with none", w.Resumed, w.Seq, len(w.Entries))
			}
		})

		t.Run("ResumeFromZero", func(t *testing.T) {
			st, epoch := setup(t)
			w := MustWelcome(t, st, user, &store.Position{Epoch: epoch, Seq: 0}, 100)
			if got, want := seqs(w.Entries), upTo(10); !w.Resumed || !slices.Equal(got, want) {
				t.Fatalf("resume from 0: got resumed %v with %v, want %v", w.Resumed, got, want)
			}
		})

		for _, tc := range []struct {
			name      string
			since     func(epoch string) store.Position
			maxReplay int
		}{
			{"BeyondNewest", func(e string) store.Position { return store.Position{Epoch: e, Seq: 11} }, 100},
			{"Negative", func(e string) store.Position { return store.Position{Epoch: e, Seq: -1} }, 100},
			{"WrongEpoch", func(e string) store.Position { return store.Position{Epoch: e + "x", Seq: 8} }, 100},
			{"EmptyEpoch", func(e string) store.Position { return store.Position{Seq: 8} }, 100},
			{"MaxReplayExceeded", func(e string) store.Position { return store.Position{Epoch: e, Seq: 2} }, 7},
		} {
			t.Run(tc.name, func(t *testing.T) {
				st, epoch := setup(t)
				since := tc.since(epoch)
				w := MustWelcome(t, st, user, &since, tc.maxReplay)
				if w.Resumed || w.Seq != 10 || w.Epoch != epoch || len(w.Entries) != 0 || len(w.Meetings) != 10 {
					t.Fatalf("since %+v: got resumed %v at %d with %d entries and %d meetings, want a snapshot at 10",
						since, w.Resumed, w.Seq, len(w.Entries), len(w.Meetings))
				}
			})
		}

		t.Run("MaxReplayReached", func(t *testing.T) {
			st, epoch := setup(t)
			w := MustWelcome(t, st, user, &store.Position{Epoch: epoch, Seq: 2}, 8)
			if got, want := len(w.Entries), 8; !w.Resumed || got != want {
				t.Fatalf("replay of exactly maxReplay: got resumed %v with %d entries, want %d", w.Resumed, got, want)
			}
		})

		t.Run("OlderThanRetained", func(t *testing.T) {
			st, epoch := setup(t)
			if _, err := st.Sweep(context.Background(), store.Retention{Age: 24 * time.Hour, Events: 3}); err != nil {
				t.Fatalf("sweep: %v", err)
			}
			w := MustWelcome(t, st, user, &store.Position{Epoch: epoch, Seq: 5}, 100)
			if w.Resumed || w.Seq != 10 || len(w.Meetings) != 10 {
				t.Fatalf("since 5 with 8…10 retained: got resumed %v at %d, want a snapshot at 10", w.Resumed, w.Seq)
			}
			w = MustWelcome(t, st, user, &store.Position{Epoch: epoch, Seq: 7}, 100)
			if got, want := seqs(w.Entries), []int64{8, 9, 10}; !w.Resumed || !slices.Equal(got, want) {
				t.Fatalf("since 7 with 8…10 retained: got resumed %v with %v, want %v", w.Resumed, got, want)
			}
		})

		t.Run("UnknownUser", func(t *testing.T) {
			st, _ := setup(t)
			if _, err := st.Welcome(context.Background(), "bob", nil, 100); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("welcome of an unknown user: got %v, want ErrNotFound", err)
			}
		})

		t.Run("AdmittedUserWithoutEvents", func(t *testing.T) {
			st, _ := setup(t)
			MustAdmit(t, st, "bob")
			w := MustWelcome(t, st, "bob", nil, 100)
			if w.Resumed || w.Seq != 0 || len(w.Meetings) != 0 || w.Meetings == nil {
				t.Fatalf("welcome of a new user: got %+v, want an empty snapshot at 0", w)
			}
		})
	})
}
