package store_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"onair/store"
)

// TestBackup copies the database while a writer keeps ingesting.
func TestBackup(t *testing.T) {
	ctx := context.Background()
	t.Run("WhileIngesting", func(t *testing.T) {
		src := dbPath(t)
		st := openSQLite(t, store.Options{Path: src})
		const before = 20
		for i := range before {
			MustAccept(t, st, started("alice", uuidN(i), t0.Add(time.Duration(i)*time.Second)))
		}
		srcEpoch := MustWelcome(t, st, "alice", nil, 100).Epoch

		stop, busy := make(chan struct{}), make(chan struct{})
		var wg sync.WaitGroup
		var during int
		wg.Go(func() {
			defer close(busy)
			for i := before; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := st.Ingest(ctx, started("bob", uuidN(i), t0)); err != nil {
					t.Errorf("ingest during backup: %v", err)
					return
				}
				if during++; during == 10 {
					busy <- struct{}{} // the writer is well under way
				}
			}
		})
		<-busy
		dst := filepath.Join(t.TempDir(), "backup", "onair.db")
		if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
			t.Fatal(err)
		}
		err := store.Backup(ctx, src, dst)
		close(stop)
		wg.Wait()
		if err != nil {
			t.Fatalf("backup: %v", err)
		}
		t.Logf("%d deliveries ingested while backing up", during)

		cp := openSQLite(t, store.Options{Path: dst})
		if cp.Epoch() == st.Epoch() {
			t.Fatalf("copy's epoch: got %q, the original's; want a new one", cp.Epoch())
		}
		w := MustWelcome(t, cp, "alice", nil, 100)
		if got, want := w.Seq, int64(before); got != want {
			t.Fatalf("copy's seq: got %d, want %d", got, want)
		}
		if got, want := len(w.Meetings), before; got != want {
			t.Fatalf("copy's live meetings: got %d, want %d", got, want)
		}
		if w.Epoch == srcEpoch {
			t.Fatalf("copy's log epoch: got the original's %q", w.Epoch)
		}
		// A client resuming against the copy gets a snapshot, not a wrong replay.
		if w := MustWelcome(t, cp, "alice", &store.Position{Epoch: srcEpoch, Seq: 10}, 100); w.Resumed {
			t.Fatal("resume with the original's epoch against the copy: resumed")
		}
		// The copy knows what it has seen.
		if got, want := MustIngest(t, cp, started("alice", uuidN(0), t0)), store.OutcomeDuplicate; got != want {
			t.Fatalf("redelivery to the copy: got %q, want %q", got, want)
		}
		// bob's deliveries are in up to some point, and his log is whole up to it.
		bob := MustWelcome(t, cp, "bob", nil, 1000)
		if bob.Seq < 10 || int(bob.Seq) > during {
			t.Fatalf("bob in the copy: at seq %d, want 10 (committed before the backup) to %d", bob.Seq, during)
		}
		if got, want := len(bob.Meetings), int(bob.Seq); got != want {
			t.Fatalf("bob in the copy: %d live meetings at seq %d", got, want)
		}
	})

	t.Run("ExistingDestination", func(t *testing.T) {
		src := dbPath(t)
		openSQLite(t, store.Options{Path: src})
		dst := filepath.Join(t.TempDir(), "taken.db")
		if err := os.WriteFile(dst, []byte("precious"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := store.Backup(ctx, src, dst); err == nil {
			t.Fatal("backup over an existing file: got no error")
		}
		if b, _ := os.ReadFile(dst); string(b) != "precious" {
			t.Fatalf("existing file: got %q, want it untouched", b)
		}
	})

	t.Run("MissingSource", func(t *testing.T) {
		dir := t.TempDir()
		if err := store.Backup(ctx, filepath.Join(dir, "none.db"), filepath.Join(dir, "copy.db")); err == nil {
			t.Fatal("backup of a missing database: got no error")
		}
		if _, err := os.Stat(filepath.Join(dir, "copy.db")); err == nil {
			t.Fatal("backup of a missing database: created a copy")
		}
	})
}
