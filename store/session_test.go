package store_test

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"testing"
	"time"

	"onair/store"
)

// mustSignIn signs user in with a new session (and their Zoom grant, when tok is not nil).
func mustSignIn(t *testing.T, st *store.Store, user store.User, sessionID string, expires time.Time, tok *store.ZoomToken) {
	t.Helper()
	err := st.SignIn(context.Background(), store.SignIn{User: user, Token: tok, SessionID: sessionID, SessionExpires: expires})
	if err != nil {
		t.Fatalf("sign in %s with session %s: %v", user.ID, sessionID, err)
	}
}

func mustSession(t *testing.T, st *store.Store, id string) store.Session {
	t.Helper()
	sess, err := st.Session(context.Background(), id)
	if err != nil {
		t.Fatalf("session %s: %v", id, err)
	}
	return sess
}

func wantNoSession(t *testing.T, st *store.Store, id string) {
	t.Helper()
	if sess, err := st.Session(context.Background(), id); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("session %s: got %+v, %v; want ErrNotFound", id, sess, err)
	}
}

func mustUser(t *testing.T, st *store.Store, id string) store.User {
	t.Helper()
	u, err := st.User(context.Background(), id)
	if err != nil {
		t.Fatalf("user %s: %v", id, err)
	}
	return u
}

// countRows runs a SELECT COUNT(*) on the raw database.
func countRows(t *testing.T, db *sql.DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatalf("%s %v: %v", query, args, err)
	}
	return n
}

func TestSessions(t *testing.T) {
	forEachEngine(t, func(t *testing.T, open opener) {
		// Raw ids that no hash or random value can contain by chance.
		const idA, idB, idBob = "SessRawIdA_Qz9-xK", "SessRawIdB_Qz9-xK", "SessRawIdBob_Qz9-xK"
		alice := store.User{ID: "alice", Email: "alice@example.com", Name: "Alice Liddell"}
		bob := store.User{ID: "bob", Email: "bob@example.com", Name: "Bob"}
		// Expiries carry milliseconds, and a zone other than UTC.
		cet := time.FixedZone("CET", 3600)
		expA := t0.Add(24*time.Hour + 123*time.Millisecond + 456*time.Microsecond).In(cet)
		setup := func(t *testing.T) (*store.Store, *clock, string) {
			clk := newClock(t0)
			path := dbPath(t)
			return open(t, store.Options{Path: path, Now: clk.Now}), clk, path
		}
		ctx := context.Background()

		t.Run("SignIn", func(t *testing.T) {
			st, _, _ := setup(t)
			if _, err := st.User(ctx, alice.ID); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("user before signing in: got %v, want ErrNotFound", err)
			}
			mustSignIn(t, st, alice, idA, expA, nil)
			if got, want := mustUser(t, st, alice.ID), alice; got != want {
				t.Fatalf("user: got %+v, want %+v", got, want)
			}
			if w := MustWelcome(t, st, alice.ID, nil, 100); w.Seq != 0 || len(w.Meetings) != 0 || len(w.Bots) != 0 {
				t.Fatalf("welcome of a new user: got %+v, want an empty log", w)
			}
			sess := mustSession(t, st, idA)
			if got, want := sess.User, alice.ID; got != want {
				t.Fatalf("session user: got %q, want %q", got, want)
			}
			if got, want := sess.Expires, expA.Truncate(time.Millisecond); !got.Equal(want) || got.Location() != time.UTC {
				t.Fatalf("session expires: got %v, want %v in UTC", got, want)
			}
			wantNoSession(t, st, "no-such-session")
			wantNoSession(t, st, "")

			// Signing in again updates the profile and keeps the settings.
			if _, err := st.SetAutoSendBot(ctx, alice.ID, true); err != nil {
				t.Fatalf("set auto-send: %v", err)
			}
			renamed := store.User{ID: alice.ID, Email: "alice@wonderland.example", Name: "Alice"}
			mustSignIn(t, st, renamed, idB, expA, nil)
			want := renamed
			want.AutoSendBot = true
			if got := mustUser(t, st, alice.ID); got != want {
				t.Fatalf("user after signing in again: got %+v, want %+v", got, want)
			}
			// Both sessions are alice's.
			for _, id := range []string{idA, idB} {
				if got := mustSession(t, st, id).User; got != alice.ID {
					t.Fatalf("session %s: got user %q, want %q", id, got, alice.ID)
				}
			}
		})

		t.Run("Expiry", func(t *testing.T) {
			st, clk, _ := setup(t)
			mustSignIn(t, st, alice, idA, t0.Add(time.Hour), nil)
			clk.Add(time.Hour - time.Millisecond)
			mustSession(t, st, idA)
			clk.Add(time.Millisecond) // the moment it expires
			wantNoSession(t, st, idA)
			clk.Add(time.Hour)
			wantNoSession(t, st, idA)
		})

		t.Run("Renew", func(t *testing.T) {
			st, clk, path := setup(t)
			mustSignIn(t, st, alice, idA, t0.Add(time.Hour), nil)
			clk.Add(30 * time.Minute)
			renewed := t0.Add(48*time.Hour + 7*time.Millisecond)
			if err := st.RenewSession(ctx, idA, renewed); err != nil {
				t.Fatalf("renew: %v", err)
			}
			if got := mustSession(t, st, idA).Expires; !got.Equal(renewed) {
				t.Fatalf("expires after renewal: got %v, want %v", got, renewed)
			}
			clk.Add(24 * time.Hour) // past the first expiry, before the renewed one
			mustSession(t, st, idA)

			// An expired session stays expired: renewing it does nothing.
			mustSignIn(t, st, alice, idB, clk.Now().Add(time.Minute), nil)
			clk.Add(2 * time.Minute)
			wantNoSession(t, st, idB)
			if err := st.RenewSession(ctx, idB, clk.Now().Add(24*time.Hour)); err != nil {
				t.Fatalf("renew an expired session: %v", err)
			}
			wantNoSession(t, st, idB)
			db := rawDB(t, path)
			if got, want := countRows(t, db, `SELECT COUNT(*) FROM sessions WHERE id_hash = ? AND expires_at = ?`,
				st.SessionKey(idB), clk.Now().Add(-time.Minute).UnixMilli()), 1; got != want {
				t.Fatalf("expired session's row after a renewal: got %d with the old expiry, want %d", got, want)
			}
			// Renewing an unknown session is no error and creates nothing.
			if err := st.RenewSession(ctx, "no-such-session", clk.Now().Add(time.Hour)); err != nil {
				t.Fatalf("renew an unknown session: %v", err)
			}
			wantNoSession(t, st, "no-such-session")
			if got, want := countRows(t, db, `SELECT COUNT(*) FROM sessions`), 2; got != want {
				t.Fatalf("sessions: got %d, want %d", got, want)
			}
		})

		t.Run("EndSession", func(t *testing.T) {
			st, _, _ := setup(t)
			mustSignIn(t, st, alice, idA, expA, nil)
			mustSignIn(t, st, alice, idB, expA, nil)
			mustSignIn(t, st, bob, idBob, expA, nil)
			if err := st.EndSession(ctx, idA); err != nil {
				t.Fatalf("end session: %v", err)
			}
			wantNoSession(t, st, idA)
			mustSession(t, st, idB)
			mustSession(t, st, idBob)
			mustUser(t, st, alice.ID) // signing out forgets no one
			for _, id := range []string{idA, "no-such-session"} {
				if err := st.EndSession(ctx, id); err != nil {
					t.Fatalf("end session %s that is gone: %v", id, err)
				}
			}
		})

		t.Run("RevokeZoomGrantEndsSessions", func(t *testing.T) {
			st, _, path := setup(t)
			mustSignIn(t, st, alice, idA, expA, nil)
			mustSignIn(t, st, alice, idB, expA, nil)
			mustSignIn(t, st, bob, idBob, expA, nil)
			if err := st.RevokeZoomGrant(ctx, alice.ID); err != nil {
				t.Fatalf("revoke: %v", err)
			}
			wantNoSession(t, st, idA)
			wantNoSession(t, st, idB)
			mustSession(t, st, idBob)
			mustUser(t, st, alice.ID)
			if got, want := countRows(t, rawDB(t, path), `SELECT COUNT(*) FROM sessions WHERE user_id = ?`, alice.ID), 0; got != want {
				t.Fatalf("alice's sessions: got %d rows, want %d", got, want)
			}
			if err := st.RevokeZoomGrant(ctx, "nobody"); err != nil {
				t.Fatalf("revoke an unknown user's grant: %v", err)
			}
		})

		t.Run("OnlyAHashIsKept", func(t *testing.T) {
			st, _, path := setup(t)
			mustSignIn(t, st, alice, idA, expA, nil)
			mustSignIn(t, st, bob, idBob, expA, nil)
			db := rawDB(t, path)
			for _, id := range []string{idA, idBob} {
				if found := rowsContaining(t, db, id); len(found) != 0 {
					t.Fatalf("the raw session id %s is stored:\n%q", id, found)
				}
				if got, want := countRows(t, db, `SELECT COUNT(*) FROM sessions WHERE id_hash = ?`, st.SessionKey(id)), 1; got != want {
					t.Fatalf("rows under the key of %s: got %d, want %d", id, got, want)
				}
			}
		})

		t.Run("SessionKey", func(t *testing.T) {
			st, _, path := setup(t)
			k := st.SessionKey(idA)
			if k == "" || k == idA || st.SessionKey(idA) != k {
				t.Fatalf("session key of %s: got %q, then %q; want one stable hash", idA, k, st.SessionKey(idA))
			}
			if k == st.SessionKey(idB) {
				t.Fatalf("two ids share the key %q", k)
			}
			mustSignIn(t, st, alice, idA, expA, nil)
			// A restart keeps the key, so a cookie outlives it.
			st.Close()
			st2 := open(t, store.Options{Path: path, Now: newClock(t0).Now})
			if got := st2.SessionKey(idA); got != k {
				t.Fatalf("key after reopening: got %q, want %q", got, k)
			}
			if got := mustSession(t, st2, idA).User; got != alice.ID {
				t.Fatalf("session after reopening: got user %q, want %q", got, alice.ID)
			}
			// Another database has another key.
			if other := open(t, store.Options{}); other.SessionKey(idA) == k {
				t.Fatalf("two databases share the key of %s", idA)
			}
		})
	})
}

func TestSignInAfterDeauthorization(t *testing.T) {
	forEachEngine(t, func(t *testing.T, open opener) {
		const gone = "Gone_UserQzX-9"
		user := store.User{ID: gone, Email: "gone@example.com", Name: "Gone"}
		deauthAt := t0.Add(time.Hour)
		ctx := context.Background()

		t.Run("Returns", func(t *testing.T) {
			rec := &recorder{}
			clk := newClock(t0)
			path := dbPath(t)
			st := open(t, store.Options{Path: path, Now: clk.Now, OnCommit: rec.OnCommit})
			mustSignIn(t, st, user, "first-session", t0.Add(48*time.Hour), nil)
			MustAccept(t, st, started(gone, uuidN(1), t0))
			before := MustWelcome(t, st, gone, nil, 100).Epoch
			deauth := deauthorized(gone, deauthAt)
			MustAccept(t, st, deauth)
			wantUnknown(t, st, gone)
			wantNoSession(t, st, "first-session")
			MustIngest(t, st, started(gone, uuidN(2), deauthAt.Add(time.Minute))) // ignored: they are gone
			wantUnknown(t, st, gone)

			clk.Add(2 * time.Hour) // they come back after the deauthorization
			mustSignIn(t, st, user, "second-session", clk.Now().Add(24*time.Hour), nil)
			if got := mustUser(t, st, gone); got != user {
				t.Fatalf("user after returning: got %+v, want %+v", got, user)
			}
			if got := mustSession(t, st, "second-session").User; got != gone {
				t.Fatalf("session after returning: got user %q, want %q", got, gone)
			}
			w := MustWelcome(t, st, gone, nil, 100)
			if w.Seq != 0 || len(w.Meetings) != 0 || w.Epoch == before {
				t.Fatalf("welcome after returning: got %s/%d with %d meetings, want a fresh log (not %s)", w.Epoch, w.Seq, len(w.Meetings), before)
			}
			db := rawDB(t, path)
			if got, want := countRows(t, db, `SELECT COUNT(*) FROM deauthorizations WHERE returned_at = ? AND deauthorized_at = ?`,
				clk.Now().UnixMilli(), deauthAt.UnixMilli()), 1; got != want {
				t.Fatalf("the return is not marked: got %d matching deauthorization rows, want %d", got, want)
			}
			// A connection token issued since the deauthorization admits
			// them; one issued before stays refused.
			if err := st.Admit(ctx, gone, deauthAt.Add(time.Minute)); err != nil {
				t.Fatalf("admit with a token issued after the deauthorization: %v", err)
			}
			if err := st.Admit(ctx, gone, deauthAt.Add(-time.Minute)); !errors.Is(err, store.ErrDeauthorized) {
				t.Fatalf("admit with a token issued before the deauthorization: got %v, want ErrDeauthorized", err)
			}

			// Their events take effect again.
			n := len(rec.EntriesOf(gone))
			MustAccept(t, st, started(gone, uuidN(3), clk.Now()))
			entries := rec.EntriesOf(gone)[n:]
			wantTypes(t, "after returning", entries, store.TypeMeetingStarted)
			if entries[0].Seq != 1 || entries[0].Epoch != w.Epoch {
				t.Fatalf("after returning: got seq %d in %s, want 1 in %s", entries[0].Seq, entries[0].Epoch, w.Epoch)
			}

			// The deauthorization again, and an older one, change nothing.
			if got, want := MustIngest(t, st, deauth), store.OutcomeDuplicate; got != want {
				t.Fatalf("redelivered deauthorization: got %q, want %q", got, want)
			}
			swept := deauth
			swept.Key = append(slices.Clone(deauth.Key), "key swept by retention") // the same deauthorization, its key forgotten
			if got, want := MustIngest(t, st, swept), store.OutcomeIgnored; got != want {
				t.Fatalf("the deauthorization, its key swept: got %q, want %q", got, want)
			}
			if got, want := MustIngest(t, st, deauthorized(gone, deauthAt.Add(-time.Minute))), store.OutcomeIgnored; got != want {
				t.Fatalf("an older deauthorization: got %q, want %q", got, want)
			}
			if got, want := rec.Deauthorized(), []string{gone}; !slices.Equal(got, want) {
				t.Fatalf("deauthorized: got %q, want %q", got, want)
			}
			mustUser(t, st, gone)
			mustSession(t, st, "second-session")
			if got, want := liveUUIDs(t, st, gone), []string{uuidN(3)}; !slices.Equal(got, want) {
				t.Fatalf("live meetings: got %q, want %q", got, want)
			}
		})

		// Zoom may deliver (or retry) an app_deauthorized hours late: one
		// from before a sign-in must not undo it, even when it is the first
		// onair hears of it. The new grant postdates the deauthorization.
		t.Run("LateDeauthorizationFromBeforeSignIn", func(t *testing.T) {
			clk := newClock(deauthAt.Add(time.Hour))
			path := dbPath(t)
			st := open(t, store.Options{Path: path, Now: clk.Now, SecretKey: testSecretKey(1)})
			tok := &store.ZoomToken{Access: "access", Refresh: "refresh", Expiry: clk.Now().Add(time.Hour)}
			mustSignIn(t, st, user, "new-session", clk.Now().Add(24*time.Hour), tok)
			clk.Add(time.Minute)
			MustIngest(t, st, deauthorized(gone, deauthAt)) // from before the sign-in
			mustUser(t, st, gone)
			mustSession(t, st, "new-session")
			if _, err := st.ZoomToken(ctx, gone); err != nil {
				t.Fatalf("zoom token granted after the deauthorization: %v", err)
			}
		})
	})
}

func TestDeauthorizationForgetsSignIn(t *testing.T) {
	forEachEngine(t, func(t *testing.T, open opener) {
		const gone = "Gone_UserQzX-9"
		user := store.User{ID: gone, Email: "gone_mail_Qz9@example.com", Name: "Gone_Name_Qz9"}
		bob := store.User{ID: "bob", Email: "bob@example.com", Name: "Bob"}
		ctx := context.Background()
		clk := newClock(t0)
		rec := &recorder{}
		path := dbPath(t)
		st := open(t, store.Options{Path: path, Now: clk.Now, OnCommit: rec.OnCommit, SecretKey: testSecretKey(1)})
		exp := t0.Add(24 * time.Hour)
		tok := store.ZoomToken{Access: "GoneAccess_Qz9", Refresh: "GoneRefresh_Qz9", Expiry: t0.Add(time.Hour), Scope: "meeting:read"}
		mustSignIn(t, st, user, "gone-1", exp, &tok)
		mustSignIn(t, st, user, "gone-2", exp, &tok)
		mustSignIn(t, st, bob, "bob-1", exp, &tok)
		MustAccept(t, st, started(gone, uuidN(1), t0))
		MustAccept(t, st, started(bob.ID, uuidN(2), t0))
		for _, u := range []string{gone, bob.ID} {
			for _, uuid := range []string{uuidN(1), uuidN(2)} {
				if _, _, err := st.RequestBot(ctx, u, uuid); err != nil && !errors.Is(err, store.ErrNotLive) {
					t.Fatalf("request bot of %s for %s: %v", u, uuid, err)
				}
			}
		}
		if _, _, err := st.CancelBot(ctx, gone, uuidN(1)); err != nil {
			t.Fatalf("cancel: %v", err)
		}
		if _, _, err := st.RequestBot(ctx, gone, uuidN(1)); err != nil {
			t.Fatalf("request again: %v", err)
		}
		db := rawDB(t, path)
		counts := func(user string) [3]int {
			return [3]int{
				countRows(t, db, `SELECT COUNT(*) FROM sessions WHERE user_id = ?`, user),
				countRows(t, db, `SELECT COUNT(*) FROM zoom_tokens WHERE user_id = ?`, user),
				countRows(t, db, `SELECT COUNT(*) FROM bot_requests WHERE user_id = ?`, user),
			}
		}
		if got, want := counts(gone), [3]int{2, 1, 2}; got != want {
			t.Fatalf("before: got %v sessions, tokens, bot requests; want %v", got, want)
		}

		clk.Add(time.Minute)
		MustAccept(t, st, deauthorized(gone, clk.Now()))
		if got, want := counts(gone), [3]int{0, 0, 0}; got != want {
			t.Fatalf("after the deauthorization: got %v sessions, tokens, bot requests; want %v", got, want)
		}
		wantNoSession(t, st, "gone-1")
		wantNoSession(t, st, "gone-2")
		if _, err := st.ZoomToken(ctx, gone); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("zoom token: got %v, want ErrNotFound", err)
		}
		if _, err := st.User(ctx, gone); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("user: got %v, want ErrNotFound", err)
		}
		for _, s := range []string{gone, user.Email, user.Name, tok.Access, tok.Refresh} {
			if found := rowsContaining(t, db, s); len(found) != 0 {
				t.Fatalf("%q is still stored:\n%q", s, found)
			}
		}
		// A token refreshed meanwhile is not saved for them.
		if err := st.SaveZoomToken(ctx, gone, tok); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("save zoom token after the deauthorization: got %v, want ErrNotFound", err)
		}
		// Nor can they ask for the bot.
		if _, _, err := st.RequestBot(ctx, gone, uuidN(1)); !errors.Is(err, store.ErrNotLive) {
			t.Fatalf("request bot after the deauthorization: got %v, want ErrNotLive", err)
		}
		// Bob keeps everything.
		if got, want := counts(bob.ID), [3]int{1, 1, 1}; got != want {
			t.Fatalf("bob: got %v sessions, tokens, bot requests; want %v", got, want)
		}
		mustSession(t, st, "bob-1")
		if _, err := st.ZoomToken(ctx, bob.ID); err != nil {
			t.Fatalf("bob's zoom token: %v", err)
		}
	})
}

func TestAutoSendBot(t *testing.T) {
	forEachEngine(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		st := open(t, store.Options{})
		alice := store.User{ID: "alice", Email: "alice@example.com", Name: "Alice"}
		mustSignIn(t, st, alice, "sess", time.Now().Add(24*time.Hour), nil)
		for _, on := range []bool{true, true, false, false, true} {
			u, err := st.SetAutoSendBot(ctx, alice.ID, on)
			if err != nil {
				t.Fatalf("set auto-send %v: %v", on, err)
			}
			want := alice
			want.AutoSendBot = on
			if u != want {
				t.Fatalf("set auto-send %v: got %+v, want %+v", on, u, want)
			}
			if got := mustUser(t, st, alice.ID); got != want {
				t.Fatalf("user after setting auto-send %v: got %+v, want %+v", on, got, want)
			}
		}
		if u, err := st.SetAutoSendBot(ctx, "nobody", true); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("set auto-send of an unknown user: got %+v, %v; want ErrNotFound", u, err)
		}
		wantUnknown(t, st, "nobody")
	})
}
