package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"onair/store"
)

func mustRequestBot(t *testing.T, st *store.Store, user, uuid string) (store.Bot, bool) {
	t.Helper()
	b, created, err := st.RequestBot(context.Background(), user, uuid)
	if err != nil {
		t.Fatalf("request bot of %s for %s: %v", user, uuid, err)
	}
	return b, created
}

func mustCancelBot(t *testing.T, st *store.Store, user, uuid string) (store.Bot, string) {
	t.Helper()
	b, prev, err := st.CancelBot(context.Background(), user, uuid)
	if err != nil {
		t.Fatalf("cancel bot of %s for %s: %v", user, uuid, err)
	}
	return b, prev
}

// botOf decodes a bot.updated entry's payload, checking its fields and
// their format on the way.
func botOf(t *testing.T, e store.Entry) store.Bot {
	t.Helper()
	if e.Type != store.TypeBotUpdated {
		t.Fatalf("entry %d of %s: got type %q, want %q", e.Seq, e.User, e.Type, store.TypeBotUpdated)
	}
	var fields map[string]any
	if err := json.Unmarshal(e.Data, &fields); err != nil {
		t.Fatalf("entry %d of %s: %v (%s)", e.Seq, e.User, err, e.Data)
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := []string{"meeting_uuid", "request_id", "state", "updated_at"}
	if _, ok := fields["detail"]; ok { // only when there is one
		want = []string{"detail", "meeting_uuid", "request_id", "state", "updated_at"}
	}
	if !slices.Equal(keys, want) {
		t.Fatalf("entry %d of %s: got fields %q, want %q (%s)", e.Seq, e.User, keys, want, e.Data)
	}
	var b store.Bot
	if err := json.Unmarshal(e.Data, &b); err != nil {
		t.Fatalf("entry %d of %s: %v (%s)", e.Seq, e.User, err, e.Data)
	}
	if got, want := fields["updated_at"], b.UpdatedAt.UTC().Format("2006-01-02T15:04:05.000Z"); got != want {
		t.Fatalf("entry %d of %s: got updated_at %v, want RFC 3339 in UTC with milliseconds %q", e.Seq, e.User, got, want)
	}
	return b
}

// sameBot compares two requests as the API shows them.
func sameBot(a, b store.Bot) bool {
	return a.RequestID == b.RequestID && a.MeetingUUID == b.MeetingUUID && a.State == b.State &&
		a.Detail == b.Detail && a.UpdatedAt.Equal(b.UpdatedAt.Time)
}

func TestBots(t *testing.T) {
	forEachEngine(t, func(t *testing.T, open opener) {
		const alice, bob = "alice", "bob"
		ctx := context.Background()
		// A clock in another zone, at a time with milliseconds.
		start := t0.Add(1234 * time.Millisecond).In(time.FixedZone("CET", 3600))
		setup := func(t *testing.T) (*store.Store, *recorder, *clock, string) {
			rec := &recorder{}
			clk := newClock(start)
			path := dbPath(t)
			return open(t, store.Options{Path: path, Now: clk.Now, OnCommit: rec.OnCommit}), rec, clk, path
		}

		t.Run("Request", func(t *testing.T) {
			st, rec, clk, path := setup(t)
			MustAccept(t, st, started(alice, uuidN(1), t0))
			clk.Add(5*time.Minute + 678*time.Millisecond)
			b, created := mustRequestBot(t, st, alice, uuidN(1))
			if !created || b.State != store.BotRequested || b.RequestID == "" || b.MeetingUUID != uuidN(1) || b.Detail != "" ||
				!b.UpdatedAt.Equal(clk.Now()) || !b.Active() {
				t.Fatalf("request: got %+v (created %v), want a new requested request for %s at %v", b, created, uuidN(1), clk.Now())
			}
			entries := rec.EntriesOf(alice)
			wantTypes(t, "alice", entries, store.TypeMeetingStarted, store.TypeBotUpdated)
			e := entries[1]
			if e.Seq != entries[0].Seq+1 || e.Epoch != entries[0].Epoch || !e.At.Equal(clk.Now()) {
				t.Fatalf("bot.updated entry: got seq %d in %s at %v, want %d in %s at %v",
					e.Seq, e.Epoch, e.At, entries[0].Seq+1, entries[0].Epoch, clk.Now())
			}
			if got := botOf(t, e); !sameBot(got, b) {
				t.Fatalf("bot.updated payload: got %+v, want %+v", got, b)
			}
			if got, want := string(e.Data), `"updated_at":"2026-03-02T09:05:01.912Z"`; !strings.Contains(got, want) {
				t.Fatalf("bot.updated payload: got %s, want it to contain %s", got, want)
			}
			if got, want := MustWelcome(t, st, alice, nil, 100).Seq, e.Seq; got != want {
				t.Fatalf("alice's seq: got %d, want %d", got, want)
			}

			// A repeat is the same request, and tells no one anything.
			n := len(rec.Entries())
			clk.Add(time.Second)
			again, created := mustRequestBot(t, st, alice, uuidN(1))
			if created || !sameBot(again, b) {
				t.Fatalf("repeat: got %+v (created %v), want %+v (not created)", again, created, b)
			}
			if got := rec.Entries()[n:]; len(got) != 0 {
				t.Fatalf("repeat: got entries %q, want none", types(got))
			}
			if got, want := countRows(t, rawDB(t, path), `SELECT COUNT(*) FROM bot_requests`), 1; got != want {
				t.Fatalf("bot requests: got %d rows, want %d", got, want)
			}
		})

		t.Run("NotLive", func(t *testing.T) {
			st, rec, clk, path := setup(t)
			MustAdmit(t, st, alice)
			MustAccept(t, st, started(alice, uuidN(1), t0))
			MustAccept(t, st, ended(alice, uuidN(1), t0.Add(time.Minute)))
			MustAccept(t, st, started(bob, uuidN(2), t0))
			MustAccept(t, st, joined(bob, uuidN(3), alice, t0)) // joined …
			MustAccept(t, st, left(bob, uuidN(3), alice, t0.Add(time.Minute)))
			n := len(rec.Entries())
			clk.Add(time.Hour)
			for what, c := range map[string]struct{ user, uuid string }{
				"unknown meeting":         {alice, "no-such-uuid"},
				"ended meeting":           {alice, uuidN(1)},
				"someone else's meeting":  {alice, uuidN(2)},
				"meeting they left":       {alice, uuidN(3)},
				"unknown user":            {"nobody", uuidN(2)},
				"no meeting":              {alice, ""},
				"host's meeting, no user": {"", uuidN(2)},
			} {
				if b, created, err := st.RequestBot(ctx, c.user, c.uuid); !errors.Is(err, store.ErrNotLive) || created {
					t.Fatalf("%s: got %+v (created %v), %v; want ErrNotLive", what, b, created, err)
				}
			}
			if got := rec.Entries()[n:]; len(got) != 0 {
				t.Fatalf("entries: got %q, want none", types(got))
			}
			if got, want := countRows(t, rawDB(t, path), `SELECT COUNT(*) FROM bot_requests`), 0; got != want {
				t.Fatalf("bot requests: got %d rows, want %d", got, want)
			}
			// An unknown user has no log to write to.
			wantUnknown(t, st, "nobody")
		})

		t.Run("Cancel", func(t *testing.T) {
			st, rec, clk, _ := setup(t)
			MustAccept(t, st, started(alice, uuidN(1), t0))
			clk.Add(time.Minute)
			first, _ := mustRequestBot(t, st, alice, uuidN(1))
			clk.Add(time.Minute + 5*time.Millisecond)
			cancelled, prev := mustCancelBot(t, st, alice, uuidN(1))
			if prev != store.BotRequested || cancelled.State != store.BotCancelled || cancelled.RequestID != first.RequestID ||
				cancelled.MeetingUUID != uuidN(1) || !cancelled.UpdatedAt.Equal(clk.Now()) || cancelled.Active() {
				t.Fatalf("cancel: got %+v (prev %q), want %s cancelled at %v (prev %q)", cancelled, prev, first.RequestID, clk.Now(), store.BotRequested)
			}
			entries := rec.EntriesOf(alice)
			wantTypes(t, "alice", entries, store.TypeMeetingStarted, store.TypeBotUpdated, store.TypeBotUpdated)
			if got := botOf(t, entries[2]); !sameBot(got, cancelled) || entries[2].Seq != entries[1].Seq+1 {
				t.Fatalf("cancel entry: got %+v at seq %d, want %+v at %d", got, entries[2].Seq, cancelled, entries[1].Seq+1)
			}

			// Nothing is left to cancel.
			n := len(rec.Entries())
			for what, uuid := range map[string]string{"again": uuidN(1), "never requested": uuidN(2), "unknown meeting": "nope"} {
				if b, prev, err := st.CancelBot(ctx, alice, uuid); !errors.Is(err, store.ErrNotFound) {
					t.Fatalf("cancel %s: got %+v (prev %q), %v; want ErrNotFound", what, b, prev, err)
				}
			}
			if got := rec.Entries()[n:]; len(got) != 0 {
				t.Fatalf("entries: got %q, want none", types(got))
			}

			// A new request is a new one.
			clk.Add(time.Minute)
			second, created := mustRequestBot(t, st, alice, uuidN(1))
			if !created || second.RequestID == first.RequestID || second.State != store.BotRequested {
				t.Fatalf("request after cancelling: got %+v (created %v), want a new request (not %s)", second, created, first.RequestID)
			}
			if got := botOf(t, rec.EntriesOf(alice)[3]); !sameBot(got, second) {
				t.Fatalf("request entry: got %+v, want %+v", got, second)
			}
			if got, prev := mustCancelBot(t, st, alice, uuidN(1)); got.RequestID != second.RequestID || prev != store.BotRequested {
				t.Fatalf("cancel the second: got %+v (prev %q), want %s", got, prev, second.RequestID)
			}
		})

		t.Run("Participant", func(t *testing.T) {
			st, rec, clk, _ := setup(t)
			mustSignIn(t, st, store.User{ID: bob, Email: "bob@example.com"}, "bob-session", start.Add(24*time.Hour), nil)
			MustAccept(t, st, started(alice, uuidN(1), t0))
			MustAccept(t, st, joined(alice, uuidN(1), bob, t0.Add(time.Minute)))
			clk.Add(2 * time.Minute)
			b, created := mustRequestBot(t, st, bob, uuidN(1))
			if !created || b.State != store.BotRequested || b.MeetingUUID != uuidN(1) {
				t.Fatalf("participant's request: got %+v (created %v)", b, created)
			}
			wantTypes(t, "bob", rec.EntriesOf(bob), store.TypeMeetingJoined, store.TypeBotUpdated)
			// The host's request is a request of their own.
			a, created := mustRequestBot(t, st, alice, uuidN(1))
			if !created || a.RequestID == b.RequestID {
				t.Fatalf("host's request: got %+v (created %v), want another than bob's %s", a, created, b.RequestID)
			}
			wantTypes(t, "alice", rec.EntriesOf(alice), store.TypeMeetingStarted, store.TypeBotUpdated)
			if got := MustWelcome(t, st, bob, nil, 100).Bots; len(got) != 1 || !sameBot(got[0], b) {
				t.Fatalf("bob's bots: got %+v, want only his own %+v", got, b)
			}
			// Once they have left, the meeting is not live for them, and
			// their request, never sent, is cancelled.
			MustAccept(t, st, left(alice, uuidN(1), bob, t0.Add(3*time.Minute)))
			bobs := rec.EntriesOf(bob)
			if gone := botOf(t, bobs[len(bobs)-1]); gone.RequestID != b.RequestID || gone.State != store.BotCancelled || gone.Detail == "" {
				t.Fatalf("bob's request after leaving: %+v, want cancelled with a reason", gone)
			}
			if _, _, err := st.CancelBot(ctx, bob, uuidN(1)); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("cancel after leaving: got %v, want ErrNotFound", err)
			}
			if _, _, err := st.RequestBot(ctx, bob, uuidN(1)); !errors.Is(err, store.ErrNotLive) {
				t.Fatalf("request after leaving: got %v, want ErrNotLive", err)
			}
			if got := MustWelcome(t, st, bob, nil, 100).Bots; len(got) != 0 {
				t.Fatalf("bob's bots after leaving: got %+v, want none", got)
			}
		})

		t.Run("Welcome", func(t *testing.T) {
			st, rec, clk, _ := setup(t)
			tick := func() { clk.Add(time.Second) }
			for i := 1; i <= 5; i++ {
				MustAccept(t, st, started(alice, uuidN(i), t0))
			}
			MustAccept(t, st, started(bob, uuidN(9), t0))
			epoch := MustWelcome(t, st, alice, nil, 100).Epoch
			if w := MustWelcome(t, st, alice, nil, 100); w.Bots == nil || len(w.Bots) != 0 {
				t.Fatalf("bots before any request: got %#v, want an empty list", w.Bots)
			}
			from := MustWelcome(t, st, alice, nil, 100).Seq

			tick()
			mustRequestBot(t, st, alice, uuidN(1)) // cancelled, then requested again
			tick()
			mustRequestBot(t, st, alice, uuidN(2)) // its meeting ends
			tick()
			three, _ := mustRequestBot(t, st, alice, uuidN(3)) // active
			tick()
			mustCancelBot(t, st, alice, uuidN(1))
			tick()
			one, _ := mustRequestBot(t, st, alice, uuidN(1))
			tick()
			mustRequestBot(t, st, alice, uuidN(4))
			tick()
			four, _ := mustCancelBot(t, st, alice, uuidN(4)) // the newest request, though cancelled
			tick()
			MustAccept(t, st, ended(alice, uuidN(2), clk.Now()))
			tick()
			mustRequestBot(t, st, bob, uuidN(9)) // bob's

			w := MustWelcome(t, st, alice, nil, 100)
			if w.Resumed {
				t.Fatal("welcome without a position: got a resume")
			}
			// Ordered by when they were requested.
			want := []store.Bot{three, one, four}
			if len(w.Bots) != len(want) {
				t.Fatalf("bots: got %+v, want %+v", w.Bots, want)
			}
			for i := range want {
				if !sameBot(w.Bots[i], want[i]) {
					t.Fatalf("bots: got %+v, want %+v", w.Bots, want)
				}
			}

			// A resume replays what happened, in order.
			r := MustWelcome(t, st, alice, &store.Position{Epoch: epoch, Seq: from}, 100)
			if !r.Resumed || len(r.Bots) != 0 || len(r.Meetings) != 0 {
				t.Fatalf("resume: got resumed %v with %d bots and %d meetings, want only entries", r.Resumed, len(r.Bots), len(r.Meetings))
			}
			recorded := rec.EntriesOf(alice)[from:]
			wantTypes(t, "replay", r.Entries, types(recorded)...)
			// The end cancels the ended meeting's request, which was never sent.
			wantTypes(t, "recorded", recorded, slices.Concat(slices.Repeat([]string{store.TypeBotUpdated}, 7), []string{store.TypeMeetingEnded, store.TypeBotUpdated})...)
			for i, e := range r.Entries {
				c := recorded[i]
				if e.Seq != c.Seq || e.Epoch != c.Epoch || !e.At.Equal(c.At) || string(e.Data) != string(c.Data) {
					t.Fatalf("replayed entry %d: got %d %s %v %s, want %d %s %v %s", i, e.Seq, e.Epoch, e.At, e.Data, c.Seq, c.Epoch, c.At, c.Data)
				}
			}
			if got, want := seqs(r.Entries), upTo(len(r.Entries) + int(from))[from:]; !slices.Equal(got, want) {
				t.Fatalf("replayed seqs: got %v, want %v", got, want)
			}
			var states []string
			for _, e := range r.Entries[:7] {
				states = append(states, botOf(t, e).State)
			}
			wantStates := []string{"requested", "requested", "requested", "cancelled", "requested", "requested", "cancelled"}
			if !slices.Equal(states, wantStates) {
				t.Fatalf("replayed states: got %q, want %q", states, wantStates)
			}
			if b := botOf(t, r.Entries[8]); b.MeetingUUID != uuidN(2) || b.State != store.BotCancelled || b.Detail == "" {
				t.Fatalf("after the end: %+v, want the ended meeting's request cancelled with a reason", b)
			}
		})

		// Two requests of one meeting made within the same millisecond (the
		// writer gives a whole batch one time): Welcome shows the newest.
		t.Run("WelcomeSameMillisecond", func(t *testing.T) {
			st, _, _, _ := setup(t)
			MustAccept(t, st, started(alice, uuidN(1), t0))
			first, _ := mustRequestBot(t, st, alice, uuidN(1))
			mustCancelBot(t, st, alice, uuidN(1))
			second, _ := mustRequestBot(t, st, alice, uuidN(1))
			if second.RequestID == first.RequestID {
				t.Fatalf("request after cancelling: got the cancelled %s again", first.RequestID)
			}
			w := MustWelcome(t, st, alice, nil, 100)
			if len(w.Bots) != 1 || !sameBot(w.Bots[0], second) {
				t.Fatalf("bots: got %+v, want only the newest %+v", w.Bots, second)
			}
		})
	})
}

// TestSweepBotsAndSessions: retention deletes ended bot requests past the
// age and expired sessions, and keeps active requests and live sessions.
func TestSweepBotsAndSessions(t *testing.T) {
	forEachEngine(t, func(t *testing.T, open opener) {
		const alice = "alice"
		day := 24 * time.Hour
		clk := newClock(t0)
		path := dbPath(t)
		st := open(t, store.Options{Path: path, Now: clk.Now})
		user := store.User{ID: alice, Email: "alice@example.com"}
		mustSignIn(t, st, user, "expired", t0.Add(time.Hour), nil)
		mustSignIn(t, st, user, "long", t0.Add(3*day), nil)
		mustSignIn(t, st, user, "renewed", t0.Add(time.Hour), nil)
		for i := 1; i <= 4; i++ {
			MustAccept(t, st, started(alice, uuidN(i), t0))
		}
		oldCancelled, _ := mustRequestBot(t, st, alice, uuidN(1))
		mustCancelBot(t, st, alice, uuidN(1))
		clk.Add(time.Second)
		oldActive, _ := mustRequestBot(t, st, alice, uuidN(2))
		clk.Add(time.Second)
		// Requested long ago, cancelled lately: its end is what counts.
		lateCancelled, _ := mustRequestBot(t, st, alice, uuidN(3))
		clk.Add(30 * time.Minute)
		if err := st.RenewSession(context.Background(), "renewed", clk.Now().Add(3*day)); err != nil {
			t.Fatalf("renew: %v", err)
		}

		clk.Add(2 * day)
		mustCancelBot(t, st, alice, uuidN(3))
		newCancelled, _ := mustRequestBot(t, st, alice, uuidN(4))
		mustCancelBot(t, st, alice, uuidN(4))

		db := rawDB(t, path)
		requests := func() []string {
			t.Helper()
			rows, err := db.Query(`SELECT id FROM bot_requests ORDER BY id`)
			if err != nil {
				t.Fatalf("bot requests: %v", err)
			}
			defer rows.Close()
			var ids []string
			for rows.Next() {
				var id string
				if err := rows.Scan(&id); err != nil {
					t.Fatalf("bot requests: %v", err)
				}
				ids = append(ids, id)
			}
			return ids
		}
		sorted := func(ids ...string) []string { slices.Sort(ids); return ids }
		if got, want := requests(), sorted(oldCancelled.RequestID, oldActive.RequestID, lateCancelled.RequestID, newCancelled.RequestID); !slices.Equal(got, want) {
			t.Fatalf("bot requests before: got %q, want %q", got, want)
		}
		if n, err := st.Sweep(context.Background(), store.Retention{Age: day, Events: 100}); err != nil || n == 0 {
			t.Fatalf("sweep: deleted %d, %v", n, err)
		}
		if got, want := requests(), sorted(oldActive.RequestID, lateCancelled.RequestID, newCancelled.RequestID); !slices.Equal(got, want) {
			t.Fatalf("bot requests after: got %q, want %q", got, want)
		}
		if got, want := countRows(t, db, `SELECT COUNT(*) FROM sessions WHERE id_hash = ?`, st.SessionKey("expired")), 0; got != want {
			t.Fatalf("the expired session: got %d rows, want %d", got, want)
		}
		for _, id := range []string{"long", "renewed"} {
			if got := mustSession(t, st, id).User; got != alice {
				t.Fatalf("session %s after the sweep: got user %q, want %q", id, got, alice)
			}
		}
		if got, want := countRows(t, db, `SELECT COUNT(*) FROM sessions`), 2; got != want {
			t.Fatalf("sessions: got %d, want %d", got, want)
		}
		// The active request is still the one a repeat finds.
		if b, created := mustRequestBot(t, st, alice, uuidN(2)); created || b.RequestID != oldActive.RequestID {
			t.Fatalf("request after the sweep: got %+v (created %v), want %s", b, created, oldActive.RequestID)
		}
		// The request that stays in the welcome of a live meeting.
		w := MustWelcome(t, st, alice, nil, 100)
		var ids []string
		for _, b := range w.Bots {
			ids = append(ids, b.RequestID)
		}
		if want := []string{oldActive.RequestID, lateCancelled.RequestID, newCancelled.RequestID}; !slices.Equal(ids, want) {
			t.Fatalf("bots after the sweep: got %q, want %q", ids, want)
		}
	})
}
