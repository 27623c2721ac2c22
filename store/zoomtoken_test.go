package store_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"onair/store"
)

// testSecretKey is a 32-byte key, different for each n.
func testSecretKey(n byte) []byte {
	return bytes.Repeat([]byte{n}, 32)
}

func mustZoomToken(t *testing.T, st *store.Store, user string) store.ZoomToken {
	t.Helper()
	tok, err := st.ZoomToken(context.Background(), user)
	if err != nil {
		t.Fatalf("zoom token of %s: %v", user, err)
	}
	return tok
}

func wantZoomToken(t *testing.T, st *store.Store, user string, want store.ZoomToken) {
	t.Helper()
	got := mustZoomToken(t, st, user)
	wantExp := want.Expiry.Truncate(time.Millisecond)
	if got.Access != want.Access || got.Refresh != want.Refresh || got.Scope != want.Scope ||
		!got.Expiry.Equal(wantExp) || got.Expiry.Location() != time.UTC {
		t.Fatalf("zoom token of %s: got %+v, want %+v (expiry %v in UTC)", user, got, want, wantExp)
	}
}

func TestZoomTokens(t *testing.T) {
	forEachEngine(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		alice := store.User{ID: "alice", Email: "alice@example.com", Name: "Alice"}
		bob := store.User{ID: "bob", Email: "bob@example.com", Name: "Bob"}
		exp := t0.Add(24 * time.Hour)
		// Plaintexts that no ciphertext, hash or random value can contain by chance.
		tokA := store.ZoomToken{
			Access:  "AccessPlain_Alice_Qz9xK.eyJhbGciOi",
			Refresh: "RefreshPlain_Alice_Qz9xK.eyJhbGciOi",
			Expiry:  t0.Add(time.Hour + 456*time.Millisecond + 789*time.Microsecond).In(time.FixedZone("PST", -8*3600)),
			Scope:   "meeting:read user:read",
		}
		tokB := store.ZoomToken{Access: "AccessPlain_Bob_Qz9xK", Refresh: "RefreshPlain_Bob_Qz9xK", Expiry: t0.Add(time.Hour), Scope: "user:read"}
		setup := func(t *testing.T) (*store.Store, string) {
			path := dbPath(t)
			return open(t, store.Options{Path: path, Now: newClock(t0).Now, SecretKey: testSecretKey(1)}), path
		}

		t.Run("RoundTrip", func(t *testing.T) {
			st, _ := setup(t)
			mustSignIn(t, st, alice, "sess-a", exp, &tokA)
			wantZoomToken(t, st, alice.ID, tokA)
			if _, err := st.ZoomToken(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("zoom token of an unknown user: got %v, want ErrNotFound", err)
			}
			// A sign-in without a grant (the demo user) keeps the one there is.
			mustSignIn(t, st, alice, "sess-b", exp, nil)
			wantZoomToken(t, st, alice.ID, tokA)
			// One with a grant replaces it.
			mustSignIn(t, st, alice, "sess-c", exp, &tokB)
			wantZoomToken(t, st, alice.ID, tokB)
		})

		t.Run("SealedAtRest", func(t *testing.T) {
			st, path := setup(t)
			mustSignIn(t, st, alice, "sess-a", exp, &tokA)
			mustSignIn(t, st, bob, "sess-b", exp, &tokB)
			db := rawDB(t, path)
			for _, s := range []string{tokA.Access, tokA.Refresh, tokB.Access, tokB.Refresh} {
				if found := rowsContaining(t, db, s); len(found) != 0 {
					t.Fatalf("the token %q is stored in the clear:\n%q", s, found)
				}
			}
			// And not merely elsewhere: the sealed values are there, and differ.
			var access, refresh []byte
			if err := db.QueryRow(`SELECT access, refresh FROM zoom_tokens WHERE user_id = ?`, alice.ID).Scan(&access, &refresh); err != nil {
				t.Fatalf("raw token: %v", err)
			}
			for name, v := range map[string][]byte{"access": access, "refresh": refresh} {
				if len(v) < 12+16 || bytes.Contains(v, []byte(tokA.Access)) || bytes.Contains(v, []byte(tokA.Refresh)) {
					t.Fatalf("sealed %s: got %x, want nonce, ciphertext and tag", name, v)
				}
			}
			if bytes.Equal(access, refresh) {
				t.Fatal("both tokens sealed to the same bytes")
			}
			// The same token sealed twice does not give the same bytes (a fresh nonce).
			mustSignIn(t, st, bob, "sess-b2", exp, &tokA)
			var bobAccess []byte
			if err := db.QueryRow(`SELECT access FROM zoom_tokens WHERE user_id = ?`, bob.ID).Scan(&bobAccess); err != nil {
				t.Fatalf("raw token: %v", err)
			}
			if bytes.Equal(access, bobAccess) {
				t.Fatal("one token sealed twice gave the same bytes")
			}
		})

		t.Run("Rotation", func(t *testing.T) {
			st, path := setup(t)
			mustSignIn(t, st, alice, "sess-a", exp, &tokA)
			rotated := store.ZoomToken{Access: "AccessRotated_Qz9xK", Refresh: "RefreshRotated_Qz9xK", Expiry: t0.Add(2 * time.Hour), Scope: "meeting:read"}
			if err := st.SaveZoomToken(ctx, alice.ID, rotated); err != nil {
				t.Fatalf("save zoom token: %v", err)
			}
			wantZoomToken(t, st, alice.ID, rotated)
			db := rawDB(t, path)
			if got, want := countRows(t, db, `SELECT COUNT(*) FROM zoom_tokens`), 1; got != want {
				t.Fatalf("zoom tokens: got %d rows, want %d", got, want)
			}
			for _, s := range []string{rotated.Access, rotated.Refresh} {
				if found := rowsContaining(t, db, s); len(found) != 0 {
					t.Fatalf("the rotated token %q is stored in the clear:\n%q", s, found)
				}
			}
			// A user known without a grant (signed in as the demo user) gets one.
			mustSignIn(t, st, bob, "sess-b", exp, nil)
			if _, err := st.ZoomToken(ctx, bob.ID); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("zoom token before any: got %v, want ErrNotFound", err)
			}
			if err := st.SaveZoomToken(ctx, bob.ID, tokB); err != nil {
				t.Fatalf("save bob's zoom token: %v", err)
			}
			wantZoomToken(t, st, bob.ID, tokB)
			wantZoomToken(t, st, alice.ID, rotated)
		})

		t.Run("UnknownUser", func(t *testing.T) {
			st, path := setup(t)
			if err := st.SaveZoomToken(ctx, "nobody", tokA); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("save zoom token of an unknown user: got %v, want ErrNotFound", err)
			}
			if got, want := countRows(t, rawDB(t, path), `SELECT COUNT(*) FROM zoom_tokens`), 0; got != want {
				t.Fatalf("zoom tokens: got %d rows, want %d", got, want)
			}
			wantUnknown(t, st, "nobody")
		})

		t.Run("Revoke", func(t *testing.T) {
			st, _ := setup(t)
			mustSignIn(t, st, alice, "sess-a", exp, &tokA)
			mustSignIn(t, st, bob, "sess-b", exp, &tokB)
			if err := st.RevokeZoomGrant(ctx, alice.ID); err != nil {
				t.Fatalf("revoke: %v", err)
			}
			if _, err := st.ZoomToken(ctx, alice.ID); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("zoom token after revoking it: got %v, want ErrNotFound", err)
			}
			wantZoomToken(t, st, bob.ID, tokB)
			mustUser(t, st, alice.ID) // the user stays known, signed out
			mustSession(t, st, "sess-b")
			for _, u := range []string{alice.ID, "nobody"} {
				if err := st.RevokeZoomGrant(ctx, u); err != nil {
					t.Fatalf("revoke a grant that is gone (%s): %v", u, err)
				}
			}
		})

		t.Run("NoSecretKey", func(t *testing.T) {
			path := dbPath(t)
			st := open(t, store.Options{Path: path, Now: newClock(t0).Now})
			err := st.SignIn(ctx, store.SignIn{User: alice, Token: &tokA, SessionID: "sess-a", SessionExpires: exp})
			if !errors.Is(err, store.ErrNoSecretKey) {
				t.Fatalf("sign in with a grant: got %v, want ErrNoSecretKey", err)
			}
			// Nothing of the failed sign-in is kept.
			wantUnknown(t, st, alice.ID)
			wantNoSession(t, st, "sess-a")
			if _, err := st.ZoomToken(ctx, alice.ID); !errors.Is(err, store.ErrNoSecretKey) {
				t.Fatalf("zoom token: got %v, want ErrNoSecretKey", err)
			}
			// Signing in without a grant (the demo user) needs no key.
			mustSignIn(t, st, alice, "sess-a", exp, nil)
			mustSession(t, st, "sess-a")
			if err := st.SaveZoomToken(ctx, alice.ID, tokA); !errors.Is(err, store.ErrNoSecretKey) {
				t.Fatalf("save zoom token: got %v, want ErrNoSecretKey", err)
			}
			if got, want := countRows(t, rawDB(t, path), `SELECT COUNT(*) FROM zoom_tokens`), 0; got != want {
				t.Fatalf("zoom tokens: got %d rows, want %d", got, want)
			}
			// A key given later (dev mode keeps a generated one) is used.
			if err := st.UseSecretKey([]byte("short")); err == nil {
				t.Fatal("use a 5-byte secret key: got no error")
			}
			if err := st.UseSecretKey(testSecretKey(1)); err != nil {
				t.Fatalf("use secret key: %v", err)
			}
			if err := st.SaveZoomToken(ctx, alice.ID, tokA); err != nil {
				t.Fatalf("save zoom token with a key: %v", err)
			}
			wantZoomToken(t, st, alice.ID, tokA)
		})

		t.Run("BadKey", func(t *testing.T) {
			for _, key := range [][]byte{{}, []byte("short"), bytes.Repeat([]byte{1}, 33)} {
				st, err := store.Open(ctx, store.Options{Path: dbPath(t), SecretKey: key})
				if err == nil {
					st.Close()
					t.Fatalf("open with a %d-byte key: got no error", len(key))
				}
			}
		})

		t.Run("OtherKey", func(t *testing.T) {
			st, path := setup(t)
			mustSignIn(t, st, alice, "sess-a", exp, &tokA)
			st.Close()
			other := open(t, store.Options{Path: path, Now: newClock(t0).Now, SecretKey: testSecretKey(2)})
			got, err := other.ZoomToken(ctx, alice.ID)
			if err == nil || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrNoSecretKey) {
				t.Fatalf("zoom token under another key: got %+v, %v; want an error opening it", got, err)
			}
			if got != (store.ZoomToken{}) {
				t.Fatalf("zoom token under another key: got %+v with the error, want nothing", got)
			}
			mustSession(t, other, "sess-a") // the rest of the database is fine
			other.Close()
			// The right key opens it again.
			wantZoomToken(t, open(t, store.Options{Path: path, Now: newClock(t0).Now, SecretKey: testSecretKey(1)}), alice.ID, tokA)
		})

		t.Run("BoundToRowAndField", func(t *testing.T) {
			st, path := setup(t)
			mustSignIn(t, st, alice, "sess-a", exp, &tokA)
			mustSignIn(t, st, bob, "sess-b", exp, &tokB)
			db := rawDB(t, path)
			exec := func(q string, args ...any) {
				t.Helper()
				if _, err := db.Exec(q, args...); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			wantUnopenable := func(what, user string) {
				t.Helper()
				got, err := st.ZoomToken(ctx, user)
				if err == nil || errors.Is(err, store.ErrNotFound) {
					t.Fatalf("%s: got %+v, %v; want an error opening it", what, got, err)
				}
				if got.Access == tokA.Access || got.Refresh == tokA.Refresh {
					t.Fatalf("%s: alice's token opened as %s's: %+v", what, user, got)
				}
			}
			// Alice's sealed tokens copied into bob's row.
			exec(`UPDATE zoom_tokens SET access = (SELECT access FROM zoom_tokens WHERE user_id = ?),
				refresh = (SELECT refresh FROM zoom_tokens WHERE user_id = ?) WHERE user_id = ?`, alice.ID, alice.ID, bob.ID)
			wantUnopenable("alice's tokens in bob's row", bob.ID)
			// Only the refresh token moved.
			mustSignIn(t, st, bob, "sess-b2", exp, &tokB)
			wantZoomToken(t, st, bob.ID, tokB)
			exec(`UPDATE zoom_tokens SET refresh = (SELECT refresh FROM zoom_tokens WHERE user_id = ?) WHERE user_id = ?`, alice.ID, bob.ID)
			wantUnopenable("alice's refresh token in bob's row", bob.ID)
			// Within alice's row, the access token in the refresh field.
			exec(`UPDATE zoom_tokens SET refresh = access WHERE user_id = ?`, alice.ID)
			wantUnopenable("the access token as the refresh token", alice.ID)
			// Truncated and flipped values are refused too.
			mustSignIn(t, st, alice, "sess-a2", exp, &tokA)
			exec(`UPDATE zoom_tokens SET access = substr(access, 1, 5) WHERE user_id = ?`, alice.ID)
			wantUnopenable("a truncated access token", alice.ID)
			mustSignIn(t, st, alice, "sess-a3", exp, &tokA)
			var access []byte
			if err := db.QueryRow(`SELECT access FROM zoom_tokens WHERE user_id = ?`, alice.ID).Scan(&access); err != nil {
				t.Fatalf("raw token: %v", err)
			}
			access[len(access)-1] ^= 1
			exec(`UPDATE zoom_tokens SET access = ? WHERE user_id = ?`, access, alice.ID)
			wantUnopenable("a flipped bit", alice.ID)
		})
	})
}
