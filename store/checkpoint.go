package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/mattn/go-sqlite3"
)

// writerDriver is mattn's SQLite driver with the writer's settings that a
// DSN cannot carry: commits never checkpoint the WAL themselves. A commit
// that checkpoints copies pages into the database file and syncs it, all
// while every webhook of the next batch waits; the checkpointer goroutine
// does that work beside the writer instead.
const writerDriver = "sqlite3-onair-writer"

func init() {
	sql.Register(writerDriver, &sqlite3.SQLiteDriver{ConnectHook: func(c *sqlite3.SQLiteConn) error {
		for _, pragma := range []string{
			// 2 KiB pages (a new database only): a commit writes every page
			// it dirtied to the WAL, and a webhook dirties a handful of
			// leaves at random places, so small pages write less; below
			// 2 KiB, B-trees split so often that the commits grow again
			// (measured: 1 KiB ingests ~8% fewer webhooks, 4 KiB ~10%).
			"PRAGMA page_size = 2048",
			"PRAGMA journal_mode = WAL", // after page_size, which WAL freezes
			"PRAGMA wal_autocheckpoint = 0",
			// Once a checkpoint has caught up and the WAL starts over, a
			// file grown past this size is cut back to it. Above the
			// catch-up length, so that under steady load commits write
			// over the file's blocks rather than allocate new ones (~5%
			// more webhooks/s than a 64 MiB limit).
			fmt.Sprintf("PRAGMA journal_size_limit = %d", catchUpBytes+64<<20),
			// 8 MiB of pages for the writer (SQLite's default is 2 MiB):
			// every webhook reaches leaves at random places in several
			// indexes, which a small cache reads again from the file.
			// Larger caches measured no better: the scan of the cache at
			// the end of each transaction grows with it.
			"PRAGMA cache_size = -8192",
		} {
			if _, err := c.Exec(pragma, nil); err != nil {
				return err
			}
		}
		return nil
	}})
}

// checkpointEvery is how often the WAL is copied back into the database.
// Often, so that each checkpoint is short: it copies and syncs every page
// written since the last one, and commits meanwhile wait for the cores and
// the disk. Every 500 ms, a checkpoint took ~10 ms during a push run at
// 1,000 webhooks/s, and half of the frames that took the server over 1 ms
// were sent within one; every 150 ms, the push p99 fell by ~0.5 ms and
// ingest gained 2–11% (measured in pairs). An idle database has nothing
// to copy, and a checkpoint with nothing to copy does not sync.
var checkpointEvery = 150 * time.Millisecond // a variable so that a test can shorten it

// catchUpBytes is the WAL length (256 MiB) past which the writer helps.
// Under a steady stream of commits a passive checkpoint beside the writer
// never catches up with the last commit, so the WAL never starts over and
// grows for as long as the load lasts (700 MB in a 10-second ingest run
// before this). Past this length the writer runs one passive checkpoint
// itself between two batches, over the pages written since the
// checkpointer's, and its next commit starts the WAL over. That holds the
// writer for tens of milliseconds (mostly the database file's fsync), so it
// should be rare: at 9,000 webhooks/s, once every few seconds.
var catchUpBytes = 256 << 20 // a variable so that a test can lower it

// checkpointer runs passive checkpoints on a connection of its own: they
// never block the writer or readers. It asks the writer to catch up when
// the WAL has grown past catchUpBytes.
func (e *sqliteEngine) checkpointer(db *sql.DB, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(checkpointEvery)
	defer tick.Stop()
	ctx := context.Background()
	pageSize := 2048 // as created; databases from before have 1 KiB pages
	db.QueryRowContext(ctx, `PRAGMA page_size`).Scan(&pageSize)
	for {
		select {
		case <-stop:
			// The writer has stopped: leave an empty WAL behind.
			db.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`)
			return
		case <-tick.C:
			var busy, frames, copied int
			err := db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &frames, &copied)
			if err == nil && frames*pageSize >= catchUpBytes {
				e.catchUp.Store(true)
			}
		}
	}
}

// catchUpCheckpoint runs on the writer's goroutine between transactions
// when the checkpointer asked for it.
func (e *sqliteEngine) catchUpCheckpoint() {
	if e.catchUp.Swap(false) {
		e.conn.ExecContext(context.Background(), `PRAGMA wal_checkpoint(PASSIVE)`)
	}
}
