package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	_ "github.com/mattn/go-sqlite3" // registers "sqlite3"; checkpoint.go registers the writer's
)

// sqliteEngine keeps the state in one file, for one process: one writer
// connection, a pool of query-only readers, and a checkpointer beside them.
type sqliteEngine struct {
	processOnce
	s *Store
	// conn is the writer's connection, held for the store's life: its
	// statements stay prepared on it, and the engine sends BEGIN and COMMIT
	// itself. A sql.Tx would wrap every statement again in each
	// transaction, and watch each query's context with a goroutine.
	conn *sql.Conn
	// raw is conn's driver connection, on which the writer's statements run
	// (see rawstmt.go). database/sql lends it only inside Conn.Raw, against
	// another user of the connection; conn has no other user until Close.
	raw                driver.ConnPrepareContext
	ckpt               *sql.DB // the checkpointer's connection (see checkpoint.go)
	ckptStop, ckptDone chan struct{}
	catchUp            atomic.Bool // the checkpointer asks the writer to help
}

func openSQLite(ctx context.Context, s *Store) (err error) {
	opts := s.opts
	if dir := filepath.Dir(opts.Path); dir != "" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return fmt.Errorf("create database folder: %w", err)
		}
	}
	e := &sqliteEngine{s: s}
	s.eng = e
	// The writer's journal mode is set by its driver, after the page size;
	// it writes its WAL through walbatch.c.
	if err := registerWalBatch(); err != nil {
		return err
	}
	writerDSN := strings.Replace(dsn(opts.Path, opts, false), "_journal_mode=WAL&", "", 1) + "&vfs=" + walBatchVFS
	if s.db, err = sql.Open(writerDriver, writerDSN); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			closeAll(e.ckpt, s.read.DB, s.db)
		}
	}()
	s.db.SetMaxOpenConns(1)
	s.db.SetMaxIdleConns(1)
	s.db.SetConnMaxLifetime(0)
	var mode string
	if err := s.db.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	if mode != "wal" {
		return fmt.Errorf("open database: journal_mode is %q, want wal", mode)
	}
	if err := migrate(ctx, s.db, "sqlite", e.rebind); err != nil {
		return err
	}
	if err := s.init(ctx); err != nil {
		return err
	}
	read, err := sql.Open("sqlite3", dsn(opts.Path, opts, true))
	if err != nil {
		return err
	}
	if err := s.useReads(ctx, read); err != nil {
		return err
	}
	if e.ckpt, err = sql.Open("sqlite3", dsn(opts.Path, opts, false)); err != nil {
		return err
	}
	e.ckpt.SetMaxOpenConns(1)
	if e.conn, err = s.db.Conn(ctx); err != nil {
		return err
	}
	if err := e.conn.Raw(func(dc any) error {
		e.raw = dc.(driver.ConnPrepareContext)
		return nil
	}); err != nil {
		return err
	}
	s.w = newWriter(s)
	e.ckptStop, e.ckptDone = make(chan struct{}), make(chan struct{})
	go e.checkpointer(e.ckpt, e.ckptStop, e.ckptDone)
	return nil
}

// closeAll closes what was opened of dbs (nil ones are skipped).
func closeAll(dbs ...*sql.DB) {
	for _, db := range dbs {
		if db != nil {
			db.Close()
		}
	}
}

// dsn puts every per-connection setting in the connection string, so each
// pooled connection gets it (a one-off PRAGMA reaches only one connection).
func dsn(path string, opts Options, readOnly bool) string {
	v := url.Values{}
	v.Set("_journal_mode", "WAL")
	v.Set("_foreign_keys", "on")
	v.Set("_synchronous", strings.ToUpper(string(opts.Sync)))
	v.Set("_busy_timeout", fmt.Sprint(opts.BusyTimeout.Milliseconds()))
	if readOnly {
		v.Set("_query_only", "true")
		v.Set("_txlock", "deferred")
	} else {
		// A deferred read-then-write transaction can fail with SQLITE_BUSY
		// without waiting; immediate takes the write lock up front.
		v.Set("_txlock", "immediate")
	}
	return "file:" + path + "?" + v.Encode()
}

// prepare prepares a statement of the writer on its driver connection.
func (e *sqliteEngine) prepare(ctx context.Context, query string) (*rawStmt, error) {
	st, err := e.raw.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	return &rawStmt{st: st}, nil
}

func (e *sqliteEngine) rebind(query string) string { return query }
func (e *sqliteEngine) args(args []any) []any      { return args }

// skipLocked: one writer at a time, so nothing is ever held.
func (e *sqliteEngine) skipLocked() string { return "" }

// readTx: a SQLite read transaction sees one snapshot from its first read.
func (e *sqliteEngine) readTx() *sql.TxOptions { return nil }

// begin takes the write lock up front: a deferred read-then-write
// transaction can fail with SQLITE_BUSY without waiting.
func (e *sqliteEngine) begin(tx *Tx) error {
	tx.conn = e.conn
	_, err := tx.exec(`BEGIN IMMEDIATE`)
	return err
}

// rollback fails only when there is no transaction left: SQLite rolls
// back by itself after some errors.
func (e *sqliteEngine) rollback(tx *Tx) { tx.exec(`ROLLBACK`) }

// commit: the writer is the only one, so commit order is its order.
func (e *sqliteEngine) commit(tx *Tx) error {
	if _, err := tx.exec(`COMMIT`); err != nil {
		return err
	}
	tx.out.Local = true
	e.s.opts.OnCommit(tx.out)
	return nil
}

func (e *sqliteEngine) idle() { e.catchUpCheckpoint() }

func (e *sqliteEngine) appendEvent(tx *Tx, user, typ string, at time.Time, data []byte) (seq int64, gen string, autoSend bool, err error) {
	if err = tx.queryRow(`UPDATE users SET seq = seq + 1 WHERE id = ? RETURNING seq, gen, auto_send_bot`, user).
		Scan(&seq, &gen, &autoSend); err != nil {
		return 0, "", false, fmt.Errorf("next seq: %w", err)
	}
	_, err = tx.exec(`INSERT INTO events (user_id, seq, type, at, data, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
		user, seq, typ, ms(at), string(data), ms(tx.now))
	return seq, gen, autoSend, err
}

func (e *sqliteEngine) shared() bool { return false }

// ping: a write, through the writer, is what proves the file writable.
func (e *sqliteEngine) ping(ctx context.Context) error {
	return e.s.w.do(ctx, func(tx *Tx) error {
		_, err := tx.exec(`UPDATE meta SET value = value WHERE key = 'epoch'`)
		return err
	})
}

func (e *sqliteEngine) ready() error { return nil }

func (e *sqliteEngine) close() error {
	close(e.ckptStop)
	<-e.ckptDone
	// Statements prepared on a held connection are not the pool's to close,
	// and SQLite keeps a connection open while any statement is.
	for _, st := range e.s.w.stmts {
		st.st.Close()
	}
	return errors.Join(e.conn.Close(), e.ckpt.Close())
}
