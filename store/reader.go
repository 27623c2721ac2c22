package store

import (
	"context"
	"database/sql"
	"sync"
)

// readStmts are the read pool's statements, prepared once: a welcome runs
// three or four queries, and 15,000 tabs reconnecting after a restart would
// otherwise prepare each of them 15,000 times (BenchmarkWelcome/snapshot:
// 112-130 µs before, 101-121 µs after, within this machine's noise).
type readStmts struct {
	mu    sync.Mutex
	stmts map[string]*sql.Stmt
}

// reader runs queries in tx with statements prepared once on the read pool.
type reader struct {
	s  *Store
	tx *sql.Tx
}

func (s *Store) reader(tx *sql.Tx) reader { return reader{s, tx} }

func (r reader) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	rs := &r.s.readStmts
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if st, ok := rs.stmts[query]; ok {
		return st, nil
	}
	st, err := r.s.read.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if rs.stmts == nil {
		rs.stmts = map[string]*sql.Stmt{}
	}
	rs.stmts[query] = st
	return st, nil
}

func (r reader) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := r.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return r.tx.StmtContext(ctx, st).QueryContext(ctx, args...)
}

func (r reader) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	st, err := r.stmt(ctx, query)
	if err != nil {
		return r.tx.QueryRowContext(ctx, query, args...) // a Row that reports the error
	}
	return r.tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
}
