package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"time"
)

// Backup writes a consistent copy of the database at src to dst while
// onair may be running, and gives the copy a new epoch: clients resuming
// against a restored copy get a fresh snapshot instead of a wrong replay.
func Backup(ctx context.Context, src, dst string) error {
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if _, err := os.Stat(dst); err == nil {
		return fmt.Errorf("backup: %s already exists", dst)
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("backup: %w", err)
	}
	opts := Options{Sync: SyncNormal, BusyTimeout: 5 * time.Second}
	// Not a query-only connection: VACUUM INTO writes the copy through it.
	db, err := sql.Open("sqlite3", dsn(src, opts, false))
	if err != nil {
		return err
	}
	defer db.Close()
	// VACUUM INTO reads one snapshot: concurrent commits are either wholly in or out.
	if _, err := db.ExecContext(ctx, `VACUUM INTO ?`, dst); err != nil {
		os.Remove(dst)
		return fmt.Errorf("backup: %w", err)
	}
	cp, err := sql.Open("sqlite3", dsn(dst, opts, false))
	if err != nil {
		return err
	}
	defer cp.Close()
	if _, err := cp.ExecContext(ctx, `UPDATE meta SET value = ? WHERE key = 'epoch'`, randomHex(12)); err != nil {
		cp.Close()
		os.Remove(dst) // a copy with the old epoch would replay wrongly after a restore
		return fmt.Errorf("backup: new epoch: %w", err)
	}
	return nil
}
