package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// crashCopy copies the database at path as a process killed at this moment
// leaves it: the database and its WAL as the kernel has them (the -shm
// index is rebuilt from the WAL). It returns the copy's path.
func crashCopy(t *testing.T, path string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "onair.db")
	for _, suffix := range []string{"", "-wal"} {
		b, err := os.ReadFile(path + suffix)
		if errors.Is(err, os.ErrNotExist) && suffix != "" {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst+suffix, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// openCopy opens a crash copy as SQLite would after the crash, and checks
// that the file is sound.
func openCopy(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	var ok string
	if err := db.QueryRow(`PRAGMA integrity_check`).Scan(&ok); err != nil || ok != "ok" {
		t.Fatalf("integrity_check of the copy: %q, %v", ok, err)
	}
	return db
}

func countUsers(t *testing.T, db interface {
	QueryRow(string, ...any) *sql.Row
}, like string) int {
	t.Helper()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM users WHERE id LIKE ?`, like).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// The writer's WAL frames are gathered and written at once (walbatch.c):
// every commit the writer reports must be in the files the moment it is
// reported, as it was when SQLite wrote each frame itself. Batches of
// several writes, and a restart on a crash's files, whose WAL the next
// writer appends to without a log header.
func TestWALBatchWritesACommitBeforeItIsReported(t *testing.T) {
	path := filepath.Join(t.TempDir(), "onair.db")
	total := 0
	for life := range 2 {
		s, err := Open(context.Background(), Options{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		for round := range 30 {
			k := 1 + round%8
			var wg sync.WaitGroup
			for i := range k {
				wg.Go(func() {
					err := s.w.do(context.Background(), func(tx *Tx) error {
						return tx.createUser(fmt.Sprintf("u%d-%d-%d", life, round, i))
					})
					if err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			total += k
			db := openCopy(t, crashCopy(t, path))
			if got := countUsers(t, db, fmt.Sprintf("u%d-%d-%%", life, round)); got != k {
				t.Fatalf("life %d, round %d: %d of %d reported commits in the files", life, round, got, k)
			}
			if got := countUsers(t, db, "u%"); got != total {
				t.Fatalf("life %d, round %d: %d users in the files, want %d", life, round, got, total)
			}
			db.Close()
			if round%10 == 9 {
				time.Sleep(2 * checkpointEvery) // a checkpoint, and the log starting over
			}
		}
		// The next life starts on the files as a crash leaves them, WAL
		// and all.
		next := crashCopy(t, path)
		s.Close()
		path = next
	}
}

// Transactions bigger than the writer's page cache write frames before
// their commit and rewrite some of them; one is rolled back, and the next
// commit writes over its frames. Each commit must be in the files whole
// once reported, and nothing of the rolled-back one.
func TestWALBatchBigAndRolledBackTransactions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "onair.db")
	s, err := Open(context.Background(), Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	// 12,000 rows of 1,500 bytes: 18 MB, beyond the writer's 8 MiB cache and
	// the 4 MiB walbatch.c gathers.
	const insert = `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 12000)
		INSERT INTO walbatch_test (x, b) SELECT ? + i, randomblob(1500) FROM n`
	err = s.w.do(ctx, func(tx *Tx) error {
		if _, err := tx.exec(`CREATE TABLE walbatch_test (x INTEGER PRIMARY KEY, b BLOB NOT NULL)`); err != nil {
			return err
		}
		if _, err := tx.exec(insert, 0); err != nil {
			return err
		}
		// Pages already written to the WAL by this transaction, rewritten.
		_, err := tx.exec(`UPDATE walbatch_test SET b = randomblob(1500) WHERE x % 3 = 0`)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	checkSame(t, s, openCopy(t, crashCopy(t, path)))

	// Rolled back after writing frames: a few of them, or more than are
	// gathered at once.
	boom := errors.New("rolled back")
	for round, rows := range []int{5000, 6000, 7000, 8000, 12000} {
		err = s.w.do(ctx, func(tx *Tx) error {
			if _, err := tx.exec(strings.Replace(insert, "12000", fmt.Sprint(rows), 1), 100_000); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("got %v, want the write to fail", err)
		}
		err = s.w.do(ctx, func(tx *Tx) error {
			_, err := tx.exec(`INSERT INTO walbatch_test (x, b) VALUES (?, x'01')`, -1-round)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		db := openCopy(t, crashCopy(t, path))
		checkSame(t, s, db)
		var rolledBack, marks int
		if err := db.QueryRow(`SELECT count(*) FILTER (WHERE x > 100000), count(*) FILTER (WHERE x < 0) FROM walbatch_test`).
			Scan(&rolledBack, &marks); err != nil {
			t.Fatal(err)
		}
		if rolledBack != 0 || marks != round+1 {
			t.Fatalf("round %d: %d rolled-back rows and %d of %d committed ones in the files", round, rolledBack, marks, round+1)
		}
		if round%2 == 1 {
			time.Sleep(2 * checkpointEvery)
		}
	}
}

// checkSame fails unless the table reads the same in the copy as in s.
func checkSame(t *testing.T, s *Store, copied *sql.DB) {
	t.Helper()
	if live, got := tableSum(t, s.read.DB), tableSum(t, copied); live != got {
		t.Fatalf("the files hold %s, the store %s", got, live)
	}
}

func tableSum(t *testing.T, db *sql.DB) string {
	t.Helper()
	rows, err := db.Query(`SELECT x, b FROM walbatch_test ORDER BY x`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	h := sha256.New()
	n := 0
	for rows.Next() {
		var x int64
		var b []byte
		if err := rows.Scan(&x, &b); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(h, "%d:%x;", x, b)
		n++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d rows %x", n, h.Sum(nil)[:8])
}
