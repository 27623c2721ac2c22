package store_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"onair/store"
)

func TestDeauthorization(t *testing.T) {
	forEachEngine(t, func(t *testing.T, open opener) {
		// gone is a Zoom user id that no hash or random value can contain by chance.
		const gone, bob = "Gone_UserQzX-9", "bob"
		deauthAt := t0.Add(time.Hour)
		setup := func(t *testing.T) (*store.Store, *recorder, string) {
			rec := &recorder{}
			path := dbPath(t)
			st := open(t, store.Options{Path: path, OnCommit: rec.OnCommit})
			MustAdmit(t, st, bob)
			return st, rec, path
		}
		wantForgotten := func(t *testing.T, path string) {
			t.Helper()
			if found := rowsContaining(t, rawDB(t, path), gone); len(found) != 0 {
				t.Fatalf("the deauthorized id is still stored:\n%q", found)
			}
		}

		t.Run("ForgetsEverything", func(t *testing.T) {
			st, rec, path := setup(t)
			MustAccept(t, st, started(gone, uuidN(1), t0))                             // their own meeting
			MustAccept(t, st, started(gone, uuidN(2), t0))                             // ended since
			MustAccept(t, st, ended(gone, uuidN(2), t0.Add(time.Minute)))              //
			MustAccept(t, st, started(bob, uuidN(3), t0))                              // bob's meeting …
			MustAccept(t, st, joined(bob, uuidN(3), gone, t0.Add(2*time.Minute)))      // … they joined
			MustAccept(t, st, joined(gone, uuidN(4), gone, t0.Add(3*time.Minute)))     // started by their own join
			MustAccept(t, st, left(gone, uuidN(4), "stranger", t0.Add(4*time.Minute))) // an unknown participant
			if got := rowsContaining(t, rawDB(t, path), gone); len(got) == 0 {
				t.Fatal("the id is nowhere before the deauthorization: the check proves nothing")
			}

			MustAccept(t, st, deauthorized(gone, deauthAt))
			if got, want := rec.Deauthorized(), []string{gone}; !slices.Equal(got, want) {
				t.Fatalf("OnCommit deauthorized: got %q, want %q", got, want)
			}
			wantForgotten(t, path)
			wantUnknown(t, st, gone)
			if got := liveUUIDs(t, st, gone); len(got) != 0 {
				t.Fatalf("their live meetings: got %q, want none", got)
			}
			if got, want := liveUUIDs(t, st, bob), []string{uuidN(3)}; !slices.Equal(got, want) {
				t.Fatalf("bob's live meetings: got %q, want %q", got, want)
			}
			if got, want := MustIngest(t, st, deauthorized(gone, deauthAt)), store.OutcomeDuplicate; got != want {
				t.Fatalf("redelivered deauthorization: got %q, want %q", got, want)
			}
		})

		t.Run("SharedMeeting", func(t *testing.T) {
			st, rec, path := setup(t)
			MustAccept(t, st, started(gone, uuidN(1), t0))
			MustAccept(t, st, joined(gone, uuidN(1), bob, t0.Add(time.Minute)))
			MustAccept(t, st, deauthorized(gone, deauthAt))
			wantForgotten(t, path)
			// The meeting goes on for bob, and ends for him.
			if got, want := liveUUIDs(t, st, bob), []string{uuidN(1)}; !slices.Equal(got, want) {
				t.Fatalf("bob's live meetings: got %q, want %q", got, want)
			}
			MustAccept(t, st, ended(gone, uuidN(1), deauthAt.Add(time.Minute)))
			wantTypes(t, "bob", rec.EntriesOf(bob), "meeting.joined", "meeting.ended")
			if got := liveUUIDs(t, st, bob); len(got) != 0 {
				t.Fatalf("bob's live meetings after the end: got %q, want none", got)
			}
			wantForgotten(t, path)
		})

		t.Run("LaterEventsIgnored", func(t *testing.T) {
			st, rec, path := setup(t)
			MustAccept(t, st, started(gone, uuidN(1), t0))
			MustAccept(t, st, deauthorized(gone, deauthAt))
			n, mine := len(rec.Entries()), len(rec.EntriesOf(gone))
			later := deauthAt.Add(time.Minute)
			MustIngest(t, st, started(gone, uuidN(2), later))
			MustIngest(t, st, joined(gone, uuidN(3), gone, later))
			MustIngest(t, st, ended(gone, uuidN(1), later))
			MustAccept(t, st, started(bob, uuidN(4), later))
			MustIngest(t, st, joined(bob, uuidN(4), gone, later))
			// bob joins a meeting of theirs whose start onair never saw.
			MustAccept(t, st, joined(gone, uuidN(5), bob, later))
			if got := rec.EntriesOf(gone)[mine:]; len(got) != 0 {
				t.Fatalf("their entries: got %q, want none", types(got))
			}
			wantTypes(t, "bob", rec.EntriesOf(bob), "meeting.started", "meeting.joined")
			if got, want := len(rec.Entries()), n+2; got != want {
				t.Fatalf("entries: got %d, want %d (bob's only)", got, want)
			}
			bobs := MustLive(t, st, bob)
			i := slices.IndexFunc(bobs, func(m store.Meeting) bool { return m.UUID == uuidN(5) })
			if len(bobs) != 2 || i < 0 || bobs[i].Role != store.RoleParticipant || bobs[i].HostID != "" {
				t.Fatalf("bob's live meetings: got %+v, want %s among them as participant without a host", bobs, uuidN(5))
			}
			wantUnknown(t, st, gone)
			wantUnknown(t, st, "")
			wantForgotten(t, path)
			live, err := st.CountLive(context.Background())
			if err != nil {
				t.Fatalf("count live: %v", err)
			}
			if got, want := live, 2; got != want {
				t.Fatalf("live meetings: got %d, want %d (bob's)", got, want)
			}
		})

		t.Run("Admit", func(t *testing.T) {
			st, rec, _ := setup(t)
			MustAccept(t, st, started(gone, uuidN(1), t0))
			before := MustWelcome(t, st, gone, nil, 100).Epoch
			MustAccept(t, st, deauthorized(gone, deauthAt))
			ctx := context.Background()
			for name, issued := range map[string]time.Time{
				"IssuedBefore": deauthAt.Add(-time.Minute),
				"NoIssueTime":  {},
			} {
				if err := st.Admit(ctx, gone, issued); !errors.Is(err, store.ErrDeauthorized) {
					t.Fatalf("%s: got %v, want ErrDeauthorized", name, err)
				}
				wantUnknown(t, st, gone)
			}
			MustIngest(t, st, started(gone, uuidN(2), deauthAt.Add(time.Minute)))
			wantUnknown(t, st, gone)

			if err := st.Admit(ctx, gone, deauthAt.Add(time.Minute)); err != nil {
				t.Fatalf("admit with a token issued after: %v", err)
			}
			w := MustWelcome(t, st, gone, nil, 100)
			if w.Seq != 0 || len(w.Meetings) != 0 || w.Epoch == before {
				t.Fatalf("welcome after returning: got %s/%d with %d meetings, want a fresh log (not %s)", w.Epoch, w.Seq, len(w.Meetings), before)
			}
			MustAccept(t, st, started(gone, uuidN(3), deauthAt.Add(2*time.Minute)))
			entries := rec.EntriesOf(gone)
			if got, want := types(entries[1:]), []string{"meeting.started"}; !slices.Equal(got, want) || entries[1].Seq != 1 || entries[1].Epoch != w.Epoch {
				t.Fatalf("after returning: got %q (seq %d, epoch %s), want one meeting.started at 1 in %s", got, entries[1].Seq, entries[1].Epoch, w.Epoch)
			}
			// A token issued before the deauthorization stays refused.
			if err := st.Admit(ctx, gone, deauthAt.Add(-time.Minute)); !errors.Is(err, store.ErrDeauthorized) {
				t.Fatalf("old token after returning: got %v, want ErrDeauthorized", err)
			}
		})

		t.Run("OlderDeauthorizationIgnored", func(t *testing.T) {
			st, rec, _ := setup(t)
			MustAccept(t, st, deauthorized(gone, deauthAt))
			if err := st.Admit(context.Background(), gone, deauthAt.Add(time.Minute)); err != nil {
				t.Fatalf("admit: %v", err)
			}
			MustAccept(t, st, started(gone, uuidN(1), deauthAt.Add(2*time.Minute)))
			// A late retry of an earlier deauthorization must not undo the return.
			if got, want := MustIngest(t, st, deauthorized(gone, deauthAt.Add(-time.Hour))), store.OutcomeIgnored; got != want {
				t.Fatalf("older deauthorization: got %q, want %q", got, want)
			}
			if got, want := liveUUIDs(t, st, gone), []string{uuidN(1)}; !slices.Equal(got, want) {
				t.Fatalf("live meetings: got %q, want %q", got, want)
			}
			if got, want := rec.Deauthorized(), []string{gone}; !slices.Equal(got, want) {
				t.Fatalf("deauthorized: got %q, want %q", got, want)
			}
		})
	})
}
