package store

import (
	"context"
	"database/sql"
	"fmt"
)

// readQueries are the queries of a tab's handshake and welcome, prepared
// once on the read pool when the store opens: 15,000 tabs reconnecting after
// a restart would otherwise prepare each of them 15,000 times. They must be prepared before
// any read transaction runs: preparing on the pool takes a connection of its
// own, and a transaction waiting for one while every connection is held by
// such transactions waits forever (a storm test deadlocked exactly so).
var readQueries = []string{qAdmit, qSession, qPosition, qEntriesAfter, qLiveMeetings, qLiveBots}

// useReads makes db the store's read pool (8 connections) and prepares the
// reads on it.
func (s *Store) useReads(ctx context.Context, db *sql.DB) error {
	s.read = readPool{db, s.eng}
	s.read.SetMaxOpenConns(8)
	s.read.SetMaxIdleConns(8)
	s.readStmts = make(map[string]*sql.Stmt, len(readQueries))
	for _, q := range readQueries {
		st, err := s.read.PrepareContext(ctx, s.eng.rebind(q))
		if err != nil {
			return fmt.Errorf("prepare: %w", err)
		}
		s.readStmts[q] = st
	}
	return nil
}

// reader runs queries in a read transaction, with the statements prepared
// at open (tx.StmtContext prepares them on the transaction's own
// connection the first time it is used).
type reader struct {
	s  *Store
	tx *sql.Tx
}

func (s *Store) reader(tx *sql.Tx) reader { return reader{s, tx} }

func (r reader) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st, ok := r.s.readStmts[query]; ok {
		return r.tx.StmtContext(ctx, st).QueryContext(ctx, args...)
	}
	return r.tx.QueryContext(ctx, r.s.eng.rebind(query), r.s.eng.args(args)...)
}

func (r reader) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st, ok := r.s.readStmts[query]; ok {
		return r.tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
	}
	return r.tx.QueryRowContext(ctx, r.s.eng.rebind(query), r.s.eng.args(args)...)
}

// readPool is the pool of read connections, speaking the statements as
// they are written (with ? placeholders) to either engine.
type readPool struct {
	*sql.DB
	eng engine
}

func (p readPool) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return p.DB.QueryContext(ctx, p.eng.rebind(query), p.eng.args(args)...)
}

func (p readPool) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return p.DB.QueryRowContext(ctx, p.eng.rebind(query), p.eng.args(args)...)
}
