package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"
)

// Committed is what one transaction changed that the rest of onair must
// hear about, in the order it happened.
type Committed struct {
	Entries      []Entry  // new event-log entries, to be pushed to their users
	Deauthorized []string // users whose open sockets must be closed
	Logouts      []Logout // sessions that ended: their sockets must be closed
	Outbox       bool     // something entered the bot outbox
	// Local says this process committed it (on PostgreSQL, OnCommit also
	// hears the other nodes): count what happened once, where it happened.
	Local bool
}

// Logout is a user's session (by SessionKey) that ended; an empty Session
// is all of the user's sessions.
type Logout struct {
	User    string `json:"u"`
	Session string `json:"s,omitempty"`
}

// Tx is a write transaction shared by a batch of writes.
type Tx struct {
	s *Store
	// conn is the connection the transaction runs on; the engine sends its
	// BEGIN and COMMIT (PostgreSQL: each together with what goes with it,
	// in one round trip).
	conn *sql.Conn
	ctx  context.Context
	now  time.Time
	out  Committed
	// known caches which users exist, for this transaction only.
	known map[string]bool
	// autoSend holds users' auto_send_bot as their last entry read it.
	autoSend map[string]bool
}

// stmt returns query prepared on the writer's connection, where it stays:
// preparing costs as much as running, and a lone webhook's transaction
// would pay it for each of its statements. Nil on PostgreSQL, whose driver
// keeps its statements prepared itself.
func (tx *Tx) stmt(query string) (*rawStmt, error) {
	if st, ok := tx.s.w.stmts[query]; ok {
		return st, nil
	}
	st, err := tx.s.eng.prepare(tx.ctx, query)
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	if st != nil {
		tx.s.w.stmts[query] = st
	}
	return st, nil
}

func (tx *Tx) exec(query string, args ...any) (sql.Result, error) {
	st, err := tx.stmt(query)
	switch {
	case err != nil:
		return nil, err
	case st == nil:
		return tx.conn.ExecContext(tx.ctx, tx.s.eng.rebind(query), tx.s.eng.args(args)...)
	}
	return st.exec(tx.ctx, args)
}

func (tx *Tx) queryRow(query string, args ...any) interface{ Scan(...any) error } {
	st, err := tx.stmt(query)
	switch {
	case err != nil:
		return rawRow{err: err}
	case st == nil:
		return tx.conn.QueryRowContext(tx.ctx, tx.s.eng.rebind(query), tx.s.eng.args(args)...)
	}
	rows, err := st.query(tx.ctx, args)
	return rawRow{rows: rows, err: err}
}

func (tx *Tx) query(query string, args ...any) (rows, error) {
	st, err := tx.stmt(query)
	switch {
	case err != nil:
		return nil, err
	case st == nil:
		return tx.conn.QueryContext(tx.ctx, tx.s.eng.rebind(query), tx.s.eng.args(args)...)
	}
	return st.query(tx.ctx, args)
}

// writer is the group committer: one goroutine takes every pending write,
// applies them all in one transaction and commits once. Under load, a commit
// serves hundreds of webhooks; when idle, a write commits at once.
type writer struct {
	s *Store
	// stmts are the statements kept prepared on the writer's connection
	// (SQLite; nil on PostgreSQL); only the writer goroutine uses them.
	stmts map[string]*rawStmt
	// users caches users known to exist as of the last commit (only the
	// writer deletes users, and it drops them here first), saving every
	// webhook the lookup of its host; capped, and emptied when full. Nil
	// on PostgreSQL, where another node's writer may delete a user.
	users map[string]struct{}
	ops   chan *op
	quit  chan struct{}
	done  chan struct{}
	once  sync.Once
}

type op struct {
	ctx context.Context
	fn  func(*Tx) error
	err chan error
}

func newWriter(s *Store) *writer {
	w := &writer{s: s, ops: make(chan *op, s.opts.MaxBatch), quit: make(chan struct{}), done: make(chan struct{})}
	if !s.eng.shared() {
		w.users = map[string]struct{}{}
		w.stmts = map[string]*rawStmt{}
	}
	go w.run()
	return w
}

// do runs fn in a write transaction and returns once it is committed (nil)
// or has failed. A ctx that ends first returns ctx.Err(); the write may then
// still commit.
func (w *writer) do(ctx context.Context, fn func(*Tx) error) error {
	o := &op{ctx: ctx, fn: fn, err: make(chan error, 1)}
	select {
	case w.ops <- o:
	case <-ctx.Done():
		return ctx.Err()
	case <-w.quit:
		return ErrClosed
	}
	select {
	case err := <-o.err:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-w.done:
		select {
		case err := <-o.err:
			return err
		default:
			return ErrClosed
		}
	}
}

func (w *writer) close() {
	w.once.Do(func() { close(w.quit) })
	<-w.done
}

func (w *writer) run() {
	defer close(w.done)
	batch := make([]*op, 0, w.s.opts.MaxBatch)
	for {
		select {
		case o := <-w.ops:
			batch = append(batch[:0], o)
		case <-w.quit:
			for {
				select {
				case o := <-w.ops:
					o.err <- ErrClosed
				default:
					return
				}
			}
		}
	fill:
		for len(batch) < cap(batch) {
			select {
			case o := <-w.ops:
				batch = append(batch, o)
			default:
				break fill
			}
		}
		w.commit(batch)
		// Let the goroutines this commit made runnable run first: the
		// callers it answered and the tab writers OnCommit woke wait in
		// this P's run queue. If the writer went straight on to its next
		// batch, SQLite's cgo calls would keep the P, and they would wait
		// for another thread to steal them or for the runtime's monitor
		// to take the P back (it polls every 20 µs to 10 ms). Measured on
		// SQLite: push p99 2.2–3.0 → 1.5–2.1 ms, ingest unchanged. On
		// PostgreSQL the writer blocks on the network, which frees the P
		// anyway; yielding costs a pass through the scheduler.
		runtime.Gosched()
		w.s.eng.idle()
	}
}

func (w *writer) commit(batch []*op) {
	live := batch[:0:0]
	for _, o := range batch {
		if err := o.ctx.Err(); err != nil {
			o.err <- err // the caller gave up before the write began
			continue
		}
		live = append(live, o)
	}
	if len(live) == 0 {
		return
	}
	errs, err := w.apply(live, len(live) > 1)
	if err == errIsolate {
		// One write failed: the batch was rolled back, and each write now
		// commits (or fails) alone, so one bad write never sinks the others.
		for _, o := range live {
			if err := o.ctx.Err(); err != nil {
				o.err <- err // the caller gave up meanwhile: not begun again
				continue
			}
			errs, err := w.apply([]*op{o}, false)
			if err == nil {
				err = errs[0]
			}
			o.err <- err
		}
		return
	}
	for i, o := range live {
		if err != nil {
			o.err <- err
		} else {
			o.err <- errs[i]
		}
	}
}

// maxCachedUsers bounds the writer's cache of known users (about 100 bytes
// each).
const maxCachedUsers = 100_000

// errIsolate says a write of a batch failed and the batch was rolled back.
var errIsolate = errors.New("a write of the batch failed")

// apply runs the writes in one transaction and commits it, then hands what
// it committed to OnCommit. Writes share the transaction without
// savepoints (a savepoint per write costs as much as the write): when one
// fails and isolate is set, apply rolls back and returns errIsolate.
func (w *writer) apply(ops []*op, isolate bool) ([]error, error) {
	ctx := context.Background() // one caller's deadline must not abort the others' writes
	tx := &Tx{s: w.s, ctx: ctx, now: w.s.opts.Now(), known: map[string]bool{}, autoSend: map[string]bool{}}
	if err := w.s.eng.begin(tx); err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	errs := make([]error, len(ops))
	for i, o := range ops {
		if errs[i] = o.fn(tx); errs[i] != nil {
			w.s.eng.rollback(tx)
			if isolate {
				return nil, errIsolate
			}
			return errs, nil
		}
	}
	// Publish (in commit) before answering: a client told "200" may
	// already be listening.
	if err := w.s.eng.commit(tx); err != nil {
		w.s.eng.rollback(tx)
		return nil, fmt.Errorf("commit: %w", err)
	}
	if w.users != nil {
		for id, exists := range tx.known {
			if exists {
				if len(w.users) >= maxCachedUsers {
					clear(w.users)
				}
				w.users[id] = struct{}{}
			}
		}
	}
	return errs, nil
}
