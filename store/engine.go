package store

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
	"sync"
	"time"
)

// engine is what differs between the two databases onair keeps its state
// in: SQLite (one process, the default) and PostgreSQL (several nodes on
// one database). Everything else (the statements, the group-committing
// writer, the rules for deliveries, sessions and bots) is shared, so both
// behave the same; the store's tests run against both.
type engine interface {
	// rebind turns a statement written with ? placeholders into the
	// engine's own.
	rebind(query string) string
	// args converts arguments the engine's driver does not take as they
	// are (in place).
	args(args []any) []any
	// skipLocked ends a SELECT of rows to claim: rows another transaction
	// holds are passed over, not waited for.
	skipLocked() string
	// readTx is how a read that must see one snapshot begins.
	readTx() *sql.TxOptions
	// prepare prepares one of the writer's statements to keep for the
	// store's life (see rawstmt.go); nil when the engine's driver keeps its
	// statements prepared itself (PostgreSQL).
	prepare(ctx context.Context, query string) (*rawStmt, error)
	// begin starts the write transaction tx runs in.
	begin(tx *Tx) error
	// rollback ends it without committing (harmless after a failed commit).
	rollback(tx *Tx)
	// commit commits the transaction and hands what it committed to
	// OnCommit, in commit order, before returning.
	commit(tx *Tx) error
	// appendEvent takes the user's next seq and stores the event under it,
	// returning the seq, the log's gen and the user's auto_send_bot.
	appendEvent(tx *Tx, user, typ string, at time.Time, data []byte) (seq int64, gen string, autoSend bool, err error)
	// shared says other processes write the same database.
	shared() bool
	// ping reports whether the database takes writes.
	ping(ctx context.Context) error
	// idle runs on the writer's goroutine between transactions.
	idle()
	// once runs fn unless the same work is already running, in this
	// process or (PostgreSQL) on another node; ran says whether it did.
	once(ctx context.Context, name string, fn func(context.Context) error) (ran bool, err error)
	// ready reports whether the engine can do all of its work now, beyond
	// taking writes (PostgreSQL: hearing the other nodes' commits).
	ready() error
	close() error
}

// processOnce is once for a single process: a try-lock per name.
type processOnce struct {
	mu      sync.Mutex
	running map[string]bool
}

func (p *processOnce) once(ctx context.Context, name string, fn func(context.Context) error) (bool, error) {
	p.mu.Lock()
	if p.running == nil {
		p.running = map[string]bool{}
	}
	if p.running[name] {
		p.mu.Unlock()
		return false, nil
	}
	p.running[name] = true
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.running, name)
		p.mu.Unlock()
	}()
	return true, fn(ctx)
}

// dollarParams rewrites ? placeholders as $1, $2, … (PostgreSQL's),
// leaving string literals alone. Results are cached: the same few dozen
// statements run over and over.
type dollarParams struct{ cache sync.Map }

func (d *dollarParams) rebind(query string) string {
	if q, ok := d.cache.Load(query); ok {
		return q.(string)
	}
	var b strings.Builder
	n, quoted := 0, false
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case c == '\'':
			quoted = !quoted
		case c == '?' && !quoted:
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(c)
	}
	q := b.String()
	d.cache.Store(query, q)
	return q
}

// Once runs fn unless the same named work is already running in this
// process or, on PostgreSQL, on another node sharing the database (then
// ran is false and fn is not called). Work that must not run twice at a
// time (reconciliation, retention) goes through it.
func (s *Store) Once(ctx context.Context, name string, fn func(context.Context) error) (ran bool, err error) {
	return s.eng.once(ctx, name, fn)
}

// Listening reports, on PostgreSQL, whether this node hears the other
// nodes' commits now (always nil on SQLite).
func (s *Store) Listening() error { return s.eng.ready() }
