package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// pgEngine keeps the state in a PostgreSQL database that several onair
// nodes share. Each node still writes through one group-committing writer;
// every write transaction takes one cluster-wide advisory lock first, so
// writes are serialized as on SQLite (per-user seq is gap-free, and no
// two batches deadlock on each other's rows), while reads and everything
// else run in parallel. A committing transaction also NOTIFYs what it
// committed, and every node (the committing one included) publishes it
// from its listener, in commit order (listen.go).
type pgEngine struct {
	dollarParams
	s      *Store
	url    string
	schema string
	// channel is the NOTIFY channel, one per schema, so that separate
	// deployments (or tests) sharing a database do not hear each other.
	channel   string  // at most 63 bytes, PostgreSQL's identifier limit
	writeLock int64   // the advisory lock key of write transactions
	quoteTag  string  // dollar-quote tag of the literals commit sends
	locks     *sql.DB // connections that hold Once's session locks
	l         *listener
}

func openPostgres(ctx context.Context, s *Store) (err error) {
	e := &pgEngine{s: s, url: s.opts.DatabaseURL}
	s.eng = e
	if s.db, err = openPostgresPool(e.url); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			if e.l != nil {
				e.l.close()
			}
			closeAll(e.locks, s.read.DB, s.db)
		}
	}()
	s.db.SetMaxOpenConns(1)
	s.db.SetMaxIdleConns(1)
	var schema sql.NullString
	if err := s.db.QueryRowContext(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	if !schema.Valid {
		return errors.New("open database: no schema of the search_path exists: create it first")
	}
	e.schema = schema.String
	e.channel = "onair." + e.schema
	if len(e.channel) > 63 {
		e.channel = fmt.Sprintf("onair.%x", e.lockKey("channel"))
	}
	e.writeLock = e.lockKey("write")
	e.quoteTag = "$n" + randomHex(6) + "$"
	if e.locks, err = openPostgresPool(e.url); err != nil {
		return err
	}
	// Once holds a connection for as long as its work runs (a reconcile
	// pass, a Zoom grant refresh): bounded, so a burst of them waits here
	// rather than taking the shared database's connections.
	e.locks.SetMaxOpenConns(8)
	e.locks.SetMaxIdleConns(1)
	if err := e.migrate(ctx); err != nil {
		return err
	}
	if err := s.init(ctx); err != nil {
		return err
	}
	read, err := openPostgresPool(e.url)
	if err != nil {
		return err
	}
	if err := s.useReads(ctx, read); err != nil {
		return err
	}
	// Listening before the first write: no commit of this node goes unheard.
	if e.l, err = startListener(ctx, e); err != nil {
		return err
	}
	s.w = newWriter(s)
	return nil
}

// openPostgresPool opens a pool on the database at url.
func openPostgresPool(url string) (*sql.DB, error) {
	cfg, err := pgConfig(url)
	if err != nil {
		return nil, err
	}
	return stdlib.OpenDB(*cfg), nil
}

// pgConfig is every connection's configuration, with defaults the URL may
// override: a statement waiting for a lock gives up after lock_timeout (a
// webhook must be answered within 2 s); a node whose host died holding the
// write lock in a transaction loses it after
// idle_in_transaction_session_timeout, and its session locks (Once) once
// the server's keepalives find it gone; this side notices a dead server
// by keepalives too.
func pgConfig(url string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("database url: %w", err)
	}
	for k, v := range map[string]string{
		"lock_timeout":                        "1500ms",
		"idle_in_transaction_session_timeout": "10s",
		"tcp_keepalives_idle":                 "10",
		"tcp_keepalives_interval":             "5",
		"tcp_keepalives_count":                "3",
	} {
		if _, set := cfg.RuntimeParams[k]; !set {
			cfg.RuntimeParams[k] = v
		}
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 5 * time.Second
	}
	// A server that vanished (a failover that moved its address) must not
	// hold the writer for the kernel's 15 minutes: unacknowledged data
	// gives up after 10 s, an idle connection is probed after 5 s.
	cfg.DialFunc = (&net.Dialer{
		Timeout:         cfg.ConnectTimeout,
		KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 5 * time.Second, Interval: 2 * time.Second, Count: 3},
		Control:         userTimeout(10 * time.Second),
	}).DialContext
	return cfg, nil
}

// lockKey is the advisory lock key of a named piece of work in this
// schema.
func (e *pgEngine) lockKey(name string) int64 {
	h := fnv.New64a()
	h.Write([]byte("onair\x00" + e.schema + "\x00" + name))
	return int64(h.Sum64())
}

// migrate runs the migrations under a session lock, so nodes starting
// together (a rolling deploy) migrate once: the others wait, then find
// nothing left to do.
func (e *pgEngine) migrate(ctx context.Context) error {
	conn, err := e.locks.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer conn.Close()
	key := e.lockKey("migrate")
	if _, err := conn.ExecContext(ctx, `SET lock_timeout = 0`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, key); err != nil {
		return fmt.Errorf("migrate: take the migration lock: %w", err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, key)
	defer conn.ExecContext(context.WithoutCancel(ctx), `RESET lock_timeout`)
	return migrate(ctx, conn, "postgres", e.rebind)
}

// prepare: pgx keeps the statements it runs prepared on each connection.
func (e *pgEngine) prepare(context.Context, string) (*rawStmt, error) { return nil, nil }

// args: the schema keeps flags as 0/1 integers, as SQLite does; pgx does
// not turn a bool into one.
func (e *pgEngine) args(args []any) []any {
	for i, a := range args {
		if b, ok := a.(bool); ok {
			if b {
				args[i] = int64(1)
			} else {
				args[i] = int64(0)
			}
		}
	}
	return args
}

func (e *pgEngine) skipLocked() string { return " FOR UPDATE SKIP LOCKED" }

// readTx: each statement of a READ COMMITTED transaction sees its own
// snapshot; a welcome must see one.
func (e *pgEngine) readTx() *sql.TxOptions {
	return &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true}
}

// begin starts the transaction and takes the cluster-wide write lock in one
// round trip (the simple protocol takes several statements at once). READ
// COMMITTED whatever the database's default: the lock serializes writers
// only if each statement sees what the previous holder committed.
func (e *pgEngine) begin(tx *Tx) error {
	conn, err := e.s.db.Conn(tx.ctx)
	if err != nil {
		return err
	}
	if _, err := conn.ExecContext(tx.ctx, fmt.Sprintf(
		`BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock(%d)`, e.writeLock)); err != nil {
		tx.conn = conn
		e.rollback(tx)
		return fmt.Errorf("take the write lock: %w", err)
	}
	tx.conn = conn
	return nil
}

// rollback ends the transaction and gives the connection back; one that
// cannot even roll back is discarded.
func (e *pgEngine) rollback(tx *Tx) {
	if tx.conn == nil {
		return
	}
	if _, err := tx.conn.ExecContext(context.WithoutCancel(tx.ctx), `ROLLBACK`); err != nil {
		tx.conn.Raw(func(any) error { return driver.ErrBadConn })
	}
	tx.conn.Close()
	tx.conn = nil
}

// commit NOTIFYs what the transaction committed, commits, and waits until
// this node's listener has published it (so OnCommit has run when a write
// returns, as on SQLite), unless the listener is down: then it is repaired
// when it is back.
func (e *pgEngine) commit(tx *Tx) error {
	notices := e.l.notices(tx.out)
	// The notices and the COMMIT go in one round trip, as literals in
	// dollar quotes with a tag of this process's that no payload contains.
	var b strings.Builder
	for _, n := range notices {
		if strings.Contains(n, e.quoteTag) || strings.Contains(e.channel, e.quoteTag) {
			if _, err := tx.exec(`SELECT pg_notify(?, ?)`, e.channel, n); err != nil {
				return fmt.Errorf("notify: %w", err)
			}
			continue
		}
		fmt.Fprintf(&b, "SELECT pg_notify(%[1]s%[2]s%[1]s, %[1]s%[3]s%[1]s); ", e.quoteTag, e.channel, n)
	}
	b.WriteString("COMMIT")
	var heard <-chan struct{}
	if len(notices) > 0 {
		heard = e.l.expect()
	}
	// The tag is checked: PostgreSQL ends a transaction a failed
	// statement aborted with "ROLLBACK", and no error.
	if err := tx.conn.Raw(func(dc any) error {
		tag, err := dc.(*stdlib.Conn).Conn().Exec(tx.ctx, b.String())
		if err == nil && tag.String() != "COMMIT" {
			err = fmt.Errorf("the transaction ended with %s, not COMMIT", tag)
		}
		return err
	}); err != nil {
		e.l.release()
		return err
	}
	tx.conn.Close()
	tx.conn = nil
	if heard != nil {
		e.l.await(heard)
	}
	return nil
}

func (e *pgEngine) idle() {}

// appendEvent: one statement, so one round trip instead of two (each is a
// wait for PostgreSQL).
func (e *pgEngine) appendEvent(tx *Tx, user, typ string, at time.Time, data []byte) (seq int64, gen string, autoSend bool, err error) {
	err = tx.queryRow(`WITH u AS (UPDATE users SET seq = seq + 1 WHERE id = ? RETURNING seq, gen, auto_send_bot)
		INSERT INTO events (user_id, seq, type, at, data, created_at)
			SELECT ?::text, seq, ?::text, ?::bigint, ?::text, ?::bigint FROM u
		RETURNING seq, (SELECT gen FROM u), (SELECT auto_send_bot FROM u)`,
		user, user, typ, ms(at), string(data), ms(tx.now)).Scan(&seq, &gen, &autoSend)
	return seq, gen, autoSend, err
}

func (e *pgEngine) shared() bool { return true }

// ping asks whether the database takes writes (a primary, not a standby)
// without a write: a write would take the cluster-wide write lock for
// every readiness probe of every node.
func (e *pgEngine) ping(ctx context.Context) error {
	var standby bool
	if err := e.s.read.QueryRowContext(ctx, `SELECT pg_is_in_recovery()`).Scan(&standby); err != nil {
		return err
	}
	if standby {
		return errors.New("the database is a standby: it takes no writes")
	}
	return nil
}

// once holds a session advisory lock for the length of fn: a node that
// dies mid-work loses its connection, and with it the lock.
func (e *pgEngine) once(ctx context.Context, name string, fn func(context.Context) error) (bool, error) {
	conn, err := e.locks.Conn(ctx)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	key := e.lockKey("once\x00" + name)
	var got bool
	if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&got); err != nil {
		return false, err
	}
	if !got {
		return false, nil
	}
	defer func() {
		if _, err := conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, key); err != nil {
			// A lock that could not be released must not stay with a
			// pooled connection: drop the connection, and the lock with it.
			conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}()
	return true, fn(ctx)
}

func (e *pgEngine) ready() error { return e.l.ready() }

func (e *pgEngine) close() error {
	e.l.close()
	return e.locks.Close()
}

// isUndefinedTable says a query failed because a table does not exist
// (a database onair never migrated).
func isUndefinedTable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "42P01"
}

// pollListen bounds how long the listener waits for a notification before
// it checks that its connection is still alive.
var pollListen = 5 * time.Second
