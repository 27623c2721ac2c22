// Package store keeps onair's state: users, live meetings, the per-user event
// log and deduplication keys. Every write goes through one group-committing
// writer, which hands the events it committed, in commit order, to OnCommit.
package store

import (
	"context"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "github.com/mattn/go-sqlite3" // registers "sqlite3"; checkpoint.go registers the writer's
)

// Errors with a meaning callers act on.
var (
	ErrNotFound     = errors.New("not found")
	ErrDeauthorized = errors.New("user deauthorized the app after this token was issued")
	ErrClosed       = errors.New("store closed")
)

// Sync says what a committed write survives.
type Sync string

const (
	SyncNormal Sync = "normal" // a crash or kill of onair (WAL, synchronous=NORMAL)
	SyncFull   Sync = "full"   // also a power cut (an fsync per commit)
)

// Options configure Open. Zero values take the defaults noted.
type Options struct {
	Path string // SQLite file; its folder is created
	Sync Sync   // default SyncNormal
	// BusyTimeout bounds how long a commit waits for another process's
	// write lock (default 1s): a webhook must be answered within 2 s.
	BusyTimeout time.Duration
	// MaxBatch caps how many writes share one transaction (default 512).
	MaxBatch int
	// OnCommit receives what each transaction committed, in commit order,
	// before the writers are told their write is durable.
	OnCommit func(Committed)
	// Now is the clock (default time.Now).
	Now func() time.Time
	// SecretKey (32 bytes) seals Zoom OAuth tokens at rest; without it
	// they cannot be kept (ErrNoSecretKey).
	SecretKey []byte
	// Launcher says bot requests go to a bot launcher: they and the notices
	// that follow them enter the outbox. Without it they are only recorded.
	Launcher bool
}

// Store is onair's state on one SQLite file.
type Store struct {
	opts    Options
	db      *sql.DB // the single writer connection
	read    *sql.DB // a pool of query-only connections
	epoch   string
	hashKey []byte
	w       *writer
	// ckpt is the checkpointer's connection (see checkpoint.go).
	ckpt               *sql.DB
	ckptStop, ckptDone chan struct{}
	catchUp            atomic.Bool          // the checkpointer asks the writer to help
	aead               cipher.AEAD          // seals Zoom tokens; nil without a SecretKey
	readStmts          map[string]*sql.Stmt // see reader.go; read only after Open
	closeOnce          sync.Once
	closeErr           error
}

// Open opens (creating if needed) the database, migrates it and starts the writer.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Path == "" {
		return nil, errors.New("store: no database path")
	}
	if opts.Sync == "" {
		opts.Sync = SyncNormal
	}
	if opts.Sync != SyncNormal && opts.Sync != SyncFull {
		return nil, fmt.Errorf("store: sync must be normal or full, not %q", opts.Sync)
	}
	if opts.BusyTimeout <= 0 {
		opts.BusyTimeout = time.Second
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 512
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.OnCommit == nil {
		opts.OnCommit = func(Committed) {}
	}
	if dir := filepath.Dir(opts.Path); dir != "" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("create database folder: %w", err)
		}
	}
	// The writer's journal mode is set by its driver, after the page size.
	db, err := sql.Open(writerDriver, strings.Replace(dsn(opts.Path, opts, false), "_journal_mode=WAL&", "", 1))
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	s := &Store{opts: opts, db: db}
	if opts.SecretKey != nil {
		if s.aead, err = newAEAD(opts.SecretKey); err != nil {
			db.Close()
			return nil, err
		}
	}
	if err := s.init(ctx); err != nil {
		db.Close()
		return nil, err
	}
	s.read, err = sql.Open("sqlite3", dsn(opts.Path, opts, true))
	if err != nil {
		db.Close()
		return nil, err
	}
	s.read.SetMaxOpenConns(8)
	s.read.SetMaxIdleConns(8)
	if err := s.prepareReads(ctx); err != nil {
		s.read.Close()
		db.Close()
		return nil, err
	}
	s.ckpt, err = sql.Open("sqlite3", dsn(opts.Path, opts, false))
	if err != nil {
		s.read.Close()
		db.Close()
		return nil, err
	}
	s.ckpt.SetMaxOpenConns(1)
	s.w = newWriter(s)
	s.ckptStop, s.ckptDone = make(chan struct{}), make(chan struct{})
	go s.checkpointer(s.ckpt, s.ckptStop, s.ckptDone)
	return s, nil
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

func (s *Store) init(ctx context.Context) error {
	var mode string
	if err := s.db.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	if mode != "wal" {
		return fmt.Errorf("open database: journal_mode is %q, want wal", mode)
	}
	if err := migrate(ctx, s.db, "sqlite"); err != nil {
		return err
	}
	var err error
	if s.epoch, err = s.metaOrCreate(ctx, "epoch", 12); err != nil {
		return err
	}
	key, err := s.metaOrCreate(ctx, "hash_key", 32)
	if err != nil {
		return err
	}
	s.hashKey, _ = hex.DecodeString(key)
	return nil
}

// metaOrCreate returns a meta value, creating it as n random bytes in hex
// when absent. The insert cannot overwrite a value another process set.
func (s *Store) metaOrCreate(ctx context.Context, key string, n int) (string, error) {
	if _, err := s.db.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING`,
		key, randomHex(n)); err != nil {
		return "", fmt.Errorf("meta %s: %w", key, err)
	}
	var v string
	if err := s.db.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&v); err != nil {
		return "", fmt.Errorf("meta %s: %w", key, err)
	}
	return v, nil
}

// Secret returns the named generated secret (dev mode keeps its webhook and
// token secrets here), creating it as 32 random bytes in hex when absent.
func (s *Store) Secret(ctx context.Context, name string) (string, error) {
	return s.metaOrCreate(ctx, "secret:"+name, 32)
}

// LookupSecret returns a generated secret without creating it: ErrNotFound
// when there is none.
func LookupSecret(ctx context.Context, path, name string) (string, error) {
	if _, err := os.Stat(path); err != nil {
		return "", ErrNotFound
	}
	db, err := sql.Open("sqlite3", dsn(path, Options{Sync: SyncNormal, BusyTimeout: time.Second}, true))
	if err != nil {
		return "", err
	}
	defer db.Close()
	var v string
	err = db.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, "secret:"+name).Scan(&v)
	if err != nil {
		return "", ErrNotFound
	}
	return v, nil
}

// Epoch identifies this database's event log; a copy made by Backup gets a new one.
func (s *Store) Epoch() string { return s.epoch }

// Close stops the writer (pending writes fail with ErrClosed) and closes the database.
// Closing twice is harmless.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.w.close()
		close(s.ckptStop)
		<-s.ckptDone
		s.ckpt.Close()
		s.closeErr = errors.Join(s.read.Close(), s.db.Close())
	})
	return s.closeErr
}

// Ping reports whether the database takes a write now.
func (s *Store) Ping(ctx context.Context) error {
	return s.w.do(ctx, func(tx *Tx) error {
		_, err := tx.exec(`UPDATE meta SET value = value WHERE key = 'epoch'`)
		return err
	})
}

// hash is the keyed hash under which onair remembers what it must not keep
// in the clear (a deauthorized user's id) and deduplication keys.
func (s *Store) hash(parts ...string) string {
	m := hmac.New(sha256.New, s.hashKey)
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	return hex.EncodeToString(m.Sum(nil))
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return hex.EncodeToString(b)
}
