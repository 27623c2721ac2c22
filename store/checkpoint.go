package store

import (
	"context"
	"database/sql"
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
			// 1 KiB pages (a new database only): a commit writes every page
			// it dirtied to the WAL, and a webhook dirties a handful of
			// leaves at random places; smaller pages make that 4x less.
			"PRAGMA page_size = 1024",
			"PRAGMA journal_mode = WAL", // after page_size, which WAL freezes
			"PRAGMA wal_autocheckpoint = 0",
		} {
			if _, err := c.Exec(pragma, nil); err != nil {
				return err
			}
		}
		return nil
	}})
}

// checkpointEvery is how often the WAL is copied back into the database.
const checkpointEvery = 500 * time.Millisecond

// checkpointer runs passive checkpoints on a connection of its own: they
// never block the writer or readers, and the WAL is reused from its start
// once a checkpoint has caught up.
func (s *Store) checkpointer(db *sql.DB, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(checkpointEvery)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			// The writer has stopped: leave an empty WAL behind.
			db.ExecContext(context.Background(), `PRAGMA wal_checkpoint(TRUNCATE)`)
			return
		case <-tick.C:
			db.ExecContext(context.Background(), `PRAGMA wal_checkpoint(PASSIVE)`)
		}
	}
}
