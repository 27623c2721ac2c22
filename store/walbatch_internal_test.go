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
	return crashCopyTo(t, path, t.TempDir())
}

// crashCopyTo is crashCopy into dir, over any copy there.
func crashCopyTo(t *testing.T, path, dir string) string {
	t.Helper()
	dst := filepath.Join(dir, "onair.db")
	os.Remove(dst + "-shm")
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

// openWALTest opens a store on a fresh file with an empty walbatch_test
// table, and returns it with the file's path and a way to run one
// statement in a write transaction of its own.
func openWALTest(t *testing.T) (*Store, string, func(query string, args ...any) error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "onair.db")
	s, err := Open(context.Background(), Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	exec := func(query string, args ...any) error {
		return s.w.do(context.Background(), func(tx *Tx) error {
			_, err := tx.exec(query, args...)
			return err
		})
	}
	if err := exec(`CREATE TABLE walbatch_test (x INTEGER PRIMARY KEY, b BLOB NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	return s, path, exec
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
	before := walGathered()
	// The second life also syncs each commit, as ONAIR_DB_SYNC=full does.
	for life, mode := range []Sync{SyncNormal, SyncFull} {
		s, err := Open(context.Background(), Options{Path: path, Sync: mode})
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
	// Gathered, not passed through: at least a frame of each commit.
	if got := walGathered() - before; got < uint64(total)*2048 {
		t.Fatalf("%d bytes gathered for %d commits", got, total)
	}
}

// With synchronous=FULL and no power-safe overwrite, SQLite repeats a
// commit's frame up to the next sector and may split one of them anywhere,
// even inside its header: each commit must still be written before it is
// reported.
func TestWALBatchPaddedCommits(t *testing.T) {
	if err := registerWalBatch(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "padded.db")
	db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL&_synchronous=FULL&psow=0&vfs="+walBatchVFS)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	// One log all along, so that its frames fall at every place of a sector.
	if _, err := db.Exec(`PRAGMA wal_autocheckpoint = 0`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE walbatch_test (x INTEGER PRIMARY KEY, b BLOB NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	// A reader of its own, as SQLite reads a log: the newest copy of a page
	// is the one it reads, a padding frame's.
	reader, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL&_query_only=true")
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	reader.SetMaxOpenConns(1)
	dir := t.TempDir()
	for i := range 300 {
		size := 100 + i*397%9000
		if _, err := db.Exec(`INSERT INTO walbatch_test (x, b) VALUES (?, randomblob(?))`, i, size); err != nil {
			t.Fatal(err)
		}
		var n, last int
		if err := reader.QueryRow(`SELECT count(*), (SELECT length(b) FROM walbatch_test WHERE x = ?) FROM walbatch_test`, i).
			Scan(&n, &last); err != nil {
			t.Fatalf("commit %d, read by another connection: %v", i, err)
		}
		if n != i+1 || last != size {
			t.Fatalf("commit %d, read by another connection: %d rows, the last %d bytes long (want %d)", i, n, last, size)
		}
		copied := openCopy(t, crashCopyTo(t, path, dir))
		if err := copied.QueryRow(`SELECT count(*) FROM walbatch_test`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		copied.Close()
		if n != i+1 {
			t.Fatalf("commit %d: %d rows in the files", i, n)
		}
	}
}

// Transactions bigger than the writer's page cache write frames before
// their commit and rewrite some of them; one is rolled back, and the next
// commit writes over its frames. Each commit must be in the files whole
// once reported, and nothing of the rolled-back one.
func TestWALBatchBigAndRolledBackTransactions(t *testing.T) {
	s, path, exec := openWALTest(t)
	ctx := context.Background()
	// 12,000 rows of 1,500 bytes: 18 MB, beyond the writer's 8 MiB cache and
	// the 4 MiB walbatch.c gathers.
	const insert = `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 12000)
		INSERT INTO walbatch_test (x, b) SELECT ? + i, randomblob(1500) FROM n`
	err := s.w.do(ctx, func(tx *Tx) error {
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
		if err := exec(`INSERT INTO walbatch_test (x, b) VALUES (?, x'01')`, -1-round); err != nil {
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

// A transaction rolled back after SQLite spilled pages of it may leave
// frames gathered. Another connection may write the log as soon as the
// writer lets go of its write lock, and must find the log as SQLite left
// it: nothing of the dead transaction may be written over its commit later.
func TestWALBatchAnotherWriterAfterARollback(t *testing.T) {
	s, path, exec := openWALTest(t)
	ctx := context.Background()
	other, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL&_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	boom := errors.New("rolled back")
	for round, rows := range []int{4500, 5000, 5500, 6000, 7000, 9000} {
		err := s.w.do(ctx, func(tx *Tx) error {
			if _, err := tx.exec(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
				INSERT INTO walbatch_test (x, b) SELECT 100000 + i, randomblob(1500) FROM n`, rows); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("got %v, want the write to fail", err)
		}
		if _, err := other.Exec(`INSERT INTO walbatch_test (x, b) VALUES (?, randomblob(3000))`, -1000-round); err != nil {
			t.Fatal(err)
		}
		if err := exec(`INSERT INTO walbatch_test (x, b) VALUES (?, x'01')`, -1-round); err != nil {
			t.Fatal(err)
		}
		db := openCopy(t, crashCopy(t, path))
		checkSame(t, s, db)
		var marks int
		if err := db.QueryRow(`SELECT count(*) FROM walbatch_test WHERE x < 0`).Scan(&marks); err != nil {
			t.Fatal(err)
		}
		if marks != 2*(round+1) {
			t.Fatalf("round %d: %d of %d committed rows in the files", round, marks, 2*(round+1))
		}
	}
}

// A write of gathered frames that fails fails the transaction, and nothing
// of it may reach the files later: not a commit whose frame failed to go
// out (a crash would bring back a transaction reported failed), nor frames
// kept from a failed write in a transaction that then rolled back.
func TestWALBatchFailedWrites(t *testing.T) {
	s, path, exec := openWALTest(t)
	defer walFailWrites(0)
	for round, failed := range []string{
		// The commit's own write.
		`INSERT INTO walbatch_test (x, b) VALUES (-1000, randomblob(500))`,
		// A write of frames gathered beyond 4 MiB, within the transaction.
		`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 12000)
			INSERT INTO walbatch_test (x, b) SELECT 100000 + i, randomblob(1500) FROM n`,
	} {
		check := func(when string, want int) {
			t.Helper()
			for _, db := range []*sql.DB{s.read.DB, openCopy(t, crashCopy(t, path))} {
				var failedRows, marks int
				if err := db.QueryRow(`SELECT count(*) FILTER (WHERE x <= -1000 OR x > 100000), count(*) FILTER (WHERE x < 0 AND x > -1000)
					FROM walbatch_test`).Scan(&failedRows, &marks); err != nil {
					t.Fatal(err)
				}
				if failedRows != 0 || marks != want {
					t.Fatalf("round %d, %s: %d rows of failed transactions and %d of %d committed ones", round, when, failedRows, marks, want)
				}
			}
		}
		walFailWrites(1)
		if err := exec(failed); err == nil {
			t.Fatalf("round %d: the transaction committed though its write failed", round)
		}
		walFailWrites(0)
		check("after the failure", round)
		if err := exec(`INSERT INTO walbatch_test (x, b) VALUES (?, x'01')`, -1-round); err != nil {
			t.Fatalf("round %d: the next transaction: %v", round, err)
		}
		check("after the next commit", round+1)
	}
}
