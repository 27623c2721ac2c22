package store_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"onair/store"
)

func TestMigrations(t *testing.T) {
	forEachEngine(t, func(t *testing.T, open opener) {
		t.Run("FreshOpen", func(t *testing.T) {
			st := open(t, store.Options{})
			if st.Epoch() == "" {
				t.Fatal("epoch: got empty, want an identifier")
			}
			if got, want := len(MustLive(t, st, "nobody")), 0; got != want {
				t.Fatalf("live meetings on a fresh database: got %d, want %d", got, want)
			}
		})

		t.Run("ReopenKeepsEpochAndData", func(t *testing.T) {
			path := dbPath(t)
			st := open(t, store.Options{Path: path})
			MustAccept(t, st, started("host-1", uuidN(1), t0))
			epoch := st.Epoch()
			if err := st.Close(); err != nil {
				t.Fatalf("close: %v", err)
			}
			versions := func() int {
				var n int
				if err := rawDB(t, path).QueryRow(`SELECT COUNT(*) FROM schema_migrations`).Scan(&n); err != nil {
					t.Fatalf("schema_migrations: %v", err)
				}
				return n
			}
			before := versions()

			st = open(t, store.Options{Path: path})
			if got, want := st.Epoch(), epoch; got != want {
				t.Fatalf("epoch after reopen: got %q, want %q", got, want)
			}
			if got, want := versions(), before; got != want {
				t.Fatalf("migrations recorded after reopen: got %d, want %d", got, want)
			}
			if got, want := liveUUIDs(t, st, "host-1"), []string{uuidN(1)}; !slices.Equal(got, want) {
				t.Fatalf("live meetings after reopen: got %q, want %q", got, want)
			}
			if got, want := MustIngest(t, st, started("host-1", uuidN(1), t0)), store.OutcomeDuplicate; got != want {
				t.Fatalf("redelivery after reopen: got %q, want %q", got, want)
			}
		})

		t.Run("NewerSchemaRefused", func(t *testing.T) {
			path := dbPath(t)
			st := open(t, store.Options{Path: path})
			st.Close()
			if _, err := rawDB(t, path).Exec(`INSERT INTO schema_migrations (version, applied_at) VALUES (9999, 0)`); err != nil {
				t.Fatalf("pretend a newer onair migrated: %v", err)
			}
			st, err := store.Open(context.Background(), where(t, path))
			if err == nil {
				st.Close()
				t.Fatal("open of a newer schema: got no error")
			}
			if !strings.Contains(err.Error(), "newer") {
				t.Fatalf("open of a newer schema: got %q, want it to say the database is newer", err)
			}
		})
	})
}

func TestOptions(t *testing.T) {
	forEachEngine(t, func(t *testing.T, open opener) {
		t.Run("SyncFull", func(t *testing.T) {
			st := open(t, store.Options{Sync: store.SyncFull})
			MustAccept(t, st, started("host-1", uuidN(1), t0))
			if err := st.Ping(context.Background()); err != nil {
				t.Fatalf("ping: %v", err)
			}
		})
		t.Run("BadSync", func(t *testing.T) {
			st, err := store.Open(context.Background(), store.Options{Path: dbPath(t), Sync: "sometimes"})
			if err == nil {
				st.Close()
				t.Fatal("open with sync \"sometimes\": got no error")
			}
		})
		t.Run("NoPath", func(t *testing.T) {
			if _, err := store.Open(context.Background(), store.Options{}); err == nil {
				t.Fatal("open without a path: got no error")
			}
		})
		t.Run("FolderCreated", func(t *testing.T) {
			st := open(t, store.Options{Path: filepath.Join(t.TempDir(), "data", "deeper", "onair.db")})
			if err := st.Ping(context.Background()); err != nil {
				t.Fatalf("ping: %v", err)
			}
		})
	})
}

func TestSecret(t *testing.T) {
	forEachEngine(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		path := dbPath(t)
		if _, err := store.LookupSecret(ctx, where(t, path), "webhook"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("lookup without a database: got %v, want ErrNotFound", err)
		}
		st := open(t, store.Options{Path: path})
		if _, err := store.LookupSecret(ctx, where(t, path), "webhook"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("lookup before it was made: got %v, want ErrNotFound", err)
		}
		s1, err := st.Secret(ctx, "webhook")
		if err != nil {
			t.Fatalf("secret: %v", err)
		}
		if got, want := len(s1), 64; got != want {
			t.Fatalf("secret length: got %d, want %d hex digits", got, want)
		}
		s2, err := st.Secret(ctx, "webhook")
		if err != nil || s2 != s1 {
			t.Fatalf("secret again: got %q, %v; want the same %q", s2, err, s1)
		}
		other, err := st.Secret(ctx, "token")
		if err != nil || other == s1 {
			t.Fatalf("another secret: got %q, %v; want a different one", other, err)
		}
		got, err := store.LookupSecret(ctx, where(t, path), "webhook")
		if err != nil || got != s1 {
			t.Fatalf("lookup beside the running store: got %q, %v; want %q", got, err, s1)
		}
	})
}

// Closing a store lets go of its database: the writer's statements are
// prepared on a connection it holds, and SQLite keeps a connection (its
// files) open while any of its statements is.
func TestCloseReleasesTheDatabase(t *testing.T) {
	ctx := context.Background()
	path := dbPath(t)
	openFiles := func() int {
		n := 0
		fds, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skipf("no /proc/self/fd: %v", err)
		}
		for _, fd := range fds {
			if target, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil && strings.HasPrefix(target, path) {
				n++
			}
		}
		return n
	}
	for i := range 3 {
		st, err := store.Open(ctx, store.Options{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		MustAccept(t, st, started("alice", uuidN(i), t0.Add(time.Duration(i)*time.Second)))
		if _, err := st.Secret(ctx, "webhook"); err != nil {
			t.Fatal(err)
		}
		if err := st.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		if got := openFiles(); got != 0 {
			t.Fatalf("after close %d: %d files of the database still open", i+1, got)
		}
	}
}
