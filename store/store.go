// Package store keeps onair's state: users, live meetings, the per-user event
// log and deduplication keys, in SQLite or PostgreSQL (engine.go). Every
// write of a process goes through one group-committing writer; the events
// committed reach OnCommit in commit order.
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
	"hash"
	"os"
	"sync"
	"time"
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

	// DatabaseURL (postgres://…) selects PostgreSQL, shared by every node
	// of a cluster; Path and Sync are then unused. OnCommit then hears
	// every node's commits, in commit order.
	DatabaseURL string
	// OnMissed (PostgreSQL) says this node may have missed commits: its
	// connection for hearing them was lost (lost), or is back after that
	// (!lost). Either way, whatever was pushed since must be repaired from
	// the log.
	OnMissed func(lost bool)
	// OnNotified (PostgreSQL) receives how long each commit took to be
	// heard, from its commit to its OnCommit here.
	OnNotified func(lag time.Duration)
}

// Store is onair's state: on one SQLite file, or in a PostgreSQL database
// that several nodes share.
type Store struct {
	opts    Options
	eng     engine
	db      *sql.DB  // the single writer connection
	read    readPool // a pool of read connections
	epoch   string
	hashKey []byte
	hashers sync.Pool // of *hasher keyed with hashKey: two hashes per webhook
	// legacyKeys says the deliveries table (before delivery_keys) still
	// holds keys that a redelivery must find. Set at open; after that only
	// the writer reads it, and a sweep that empties the table clears it.
	legacyKeys bool
	w          *writer
	aead       cipher.AEAD          // seals Zoom tokens; nil without a SecretKey
	readStmts  map[string]*sql.Stmt // see reader.go; read only after Open
	closeOnce  sync.Once
	closeErr   error
}

// Open opens (creating if needed) the database, migrates it and starts the
// writer: PostgreSQL when opts.DatabaseURL is set, else SQLite at opts.Path.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.DatabaseURL == "" && opts.Path == "" {
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
	if opts.OnMissed == nil {
		opts.OnMissed = func(bool) {}
	}
	if opts.OnNotified == nil {
		opts.OnNotified = func(time.Duration) {}
	}
	s := &Store{opts: opts}
	if opts.SecretKey != nil {
		var err error
		if s.aead, err = newAEAD(opts.SecretKey); err != nil {
			return nil, err
		}
	}
	var err error
	if opts.DatabaseURL != "" {
		err = openPostgres(ctx, s)
	} else {
		err = openSQLite(ctx, s)
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

// init reads this database's epoch and hashing key, creating them on
// first use; the engines call it once migrated, before the writer starts.
func (s *Store) init(ctx context.Context) error {
	epoch, err := s.metaOrCreate(ctx, s.db, "epoch", 12)
	if err != nil {
		return err
	}
	key, err := s.metaOrCreate(ctx, s.db, "hash_key", 32)
	if err != nil {
		return err
	}
	s.epoch = epoch
	s.hashKey, _ = hex.DecodeString(key)
	if err := s.db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM deliveries)`).Scan(&s.legacyKeys); err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	return nil
}

// execer is a database, or one of its connections.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// metaOrCreate returns a meta value, creating it as n random bytes in hex
// when absent. The insert cannot overwrite a value another process set.
func (s *Store) metaOrCreate(ctx context.Context, q execer, key string, n int) (string, error) {
	if _, err := q.ExecContext(ctx, s.eng.rebind(`INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING`),
		key, randomHex(n)); err != nil {
		return "", fmt.Errorf("meta %s: %w", key, err)
	}
	var v string
	if err := q.QueryRowContext(ctx, s.eng.rebind(`SELECT value FROM meta WHERE key = ?`), key).Scan(&v); err != nil {
		return "", fmt.Errorf("meta %s: %w", key, err)
	}
	return v, nil
}

// Secret returns the named generated secret (dev mode keeps its webhook and
// token secrets here), creating it as 32 random bytes in hex when absent.
// It goes through the writer, which holds SQLite's one writer connection.
func (s *Store) Secret(ctx context.Context, name string) (v string, err error) {
	err = s.w.do(ctx, func(tx *Tx) error {
		v, err = s.metaOrCreate(tx.ctx, tx.conn, "secret:"+name, 32)
		return err
	})
	return v, err
}

// LookupSecret returns a generated secret without creating it: ErrNotFound
// when there is none. opts says where the database is (DatabaseURL, else
// Path).
func LookupSecret(ctx context.Context, opts Options, name string) (string, error) {
	var db *sql.DB
	var err error
	query := `SELECT value FROM meta WHERE key = ?`
	if opts.DatabaseURL != "" {
		if db, err = openPostgresPool(opts.DatabaseURL); err != nil {
			return "", err
		}
		query = (&dollarParams{}).rebind(query)
	} else {
		if _, err := os.Stat(opts.Path); err != nil {
			return "", ErrNotFound
		}
		if db, err = sql.Open("sqlite3", dsn(opts.Path, Options{Sync: SyncNormal, BusyTimeout: time.Second}, true)); err != nil {
			return "", err
		}
	}
	defer db.Close()
	var v string
	if err := db.QueryRowContext(ctx, query, "secret:"+name).Scan(&v); err != nil {
		if opts.DatabaseURL != "" && !errors.Is(err, sql.ErrNoRows) && !isUndefinedTable(err) {
			return "", fmt.Errorf("read secret: %w", err)
		}
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
		s.closeErr = errors.Join(s.eng.close(), s.read.Close(), s.db.Close())
	})
	return s.closeErr
}

// Ping reports whether the database takes a write now.
func (s *Store) Ping(ctx context.Context) error { return s.eng.ping(ctx) }

// hash is the keyed hash under which onair remembers what it must not keep
// in the clear (a deauthorized user's id) and deduplication keys.
func (s *Store) hash(parts ...string) string {
	var sum [sha256.Size]byte
	s.sum(&sum, parts...)
	return hex.EncodeToString(sum[:])
}

// sum writes the keyed hash of parts to dst.
func (s *Store) sum(dst *[sha256.Size]byte, parts ...string) {
	h, _ := s.hashers.Get().(*hasher)
	if h == nil {
		h = &hasher{mac: hmac.New(sha256.New, s.hashKey)}
	}
	defer s.hashers.Put(h)
	h.buf = h.buf[:0]
	for _, p := range parts {
		h.buf = append(append(h.buf, p...), 0)
	}
	h.mac.Reset()
	h.mac.Write(h.buf)
	h.mac.Sum(dst[:0])
}

// hasher is a keyed HMAC with room for its input, reused.
type hasher struct {
	mac hash.Hash
	buf []byte
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return hex.EncodeToString(b)
}
