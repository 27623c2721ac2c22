package store

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"

	"onair/internal/testpg"
)

// forBothEngines runs fn with the options of a fresh database, once per
// engine (PostgreSQL on the test server: see internal/testpg).
func forBothEngines(t *testing.T, fn func(t *testing.T, opts Options)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, Options{Path: filepath.Join(t.TempDir(), "onair.db")}) })
	t.Run("postgres", func(t *testing.T) { fn(t, Options{DatabaseURL: testpg.URL(t)}) })
}

// A write that fails must not sink the writes batched with it: the batch
// is rolled back and each write is committed alone.
func TestWriterIsolatesFailedWrite(t *testing.T) { forBothEngines(t, testWriterIsolatesFailedWrite) }

func testWriterIsolatesFailedWrite(t *testing.T, opts Options) {
	var mu sync.Mutex
	var committed []Entry
	opts.OnCommit = func(c Committed) {
		mu.Lock()
		committed = append(committed, c.Entries...)
		mu.Unlock()
	}
	s, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	boom := errors.New("boom")
	const n = 40
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.w.do(context.Background(), func(tx *Tx) error {
				user := "u" + string(rune('A'+i%26)) + string(rune('a'+i/26))
				if err := tx.createUser(user); err != nil {
					return err
				}
				if i%10 == 3 {
					return boom // after writing: its user must not be committed
				}
				return tx.emit(user, TypeMeetingStarted, Meeting{UUID: user}, Delivery{})
			})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if want := i%10 == 3; (err != nil) != want || (want && !errors.Is(err, boom)) {
			t.Errorf("write %d: got %v, want failure %v", i, err, want)
		}
	}
	var users int
	if err := s.read.QueryRow(`SELECT COUNT(*) FROM users`).Scan(&users); err != nil {
		t.Fatal(err)
	}
	if got, want := users, n-n/10; got != want {
		t.Errorf("users committed: got %d, want %d", got, want)
	}
	mu.Lock()
	defer mu.Unlock()
	if got, want := len(committed), n-n/10; got != want {
		t.Errorf("entries published: got %d, want %d", got, want)
	}
}

// A statement error aborts a PostgreSQL transaction, and COMMIT then ends it
// with a rollback and no error: a write that swallowed such an error must
// fail, not look committed.
func TestPostgresCommitOfAnAbortedTransactionFails(t *testing.T) {
	s, err := Open(context.Background(), Options{DatabaseURL: testpg.URL(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.w.do(context.Background(), func(tx *Tx) error {
		if err := tx.createUser("u"); err != nil {
			return err
		}
		tx.exec(`SELECT 1/0`) // the error is dropped on purpose
		return nil
	})
	if err == nil {
		t.Fatal("a write whose transaction was aborted reported success")
	}
	var n int
	if err := s.read.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM users`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("users after the aborted write: %d, %v; want 0", n, err)
	}
}
