package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
)

// rawStmt is a statement prepared on the SQLite writer's connection and run
// through the driver itself. database/sql's Stmt checked the connection
// out, converted every argument and tracked the statement's dependencies
// on each run: a quarter of what a webhook allocated, and 8% of the
// writer's CPU. Only the writer goroutine uses it, one run at a time.
type rawStmt struct {
	st   driver.Stmt
	args []driver.NamedValue // reused: the driver copies what it binds
	rows rawRows             // reused: a query's rows are closed before the next
}

func (r *rawStmt) bind(args []any) ([]driver.NamedValue, error) {
	// The driver binds what it is given and leaves the rest NULL.
	if n := r.st.NumInput(); n >= 0 && n != len(args) {
		return nil, fmt.Errorf("sql: expected %d arguments, got %d", n, len(args))
	}
	r.args = r.args[:0]
	for i, a := range args {
		switch v := a.(type) {
		case int:
			a = int64(v)
		case nil, int64, bool, string, []byte, float64:
		default:
			return nil, fmt.Errorf("argument %d: unsupported type %T", i+1, a)
		}
		r.args = append(r.args, driver.NamedValue{Ordinal: i + 1, Value: a})
	}
	return r.args, nil
}

func (r *rawStmt) exec(ctx context.Context, args []any) (sql.Result, error) {
	nv, err := r.bind(args)
	if err != nil {
		return nil, err
	}
	return r.st.(driver.StmtExecContext).ExecContext(ctx, nv)
}

func (r *rawStmt) query(ctx context.Context, args []any) (*rawRows, error) {
	// The rows reader is reused, so rows are valid until the statement's
	// next query; rows left open (a row never scanned) are closed first,
	// which resets the statement and ends the driver's watch of their
	// context.
	r.rows.Close()
	nv, err := r.bind(args)
	if err != nil {
		return nil, err
	}
	rows, err := r.st.(driver.StmtQueryContext).QueryContext(ctx, nv)
	if err != nil {
		return nil, err
	}
	vals := r.rows.vals[:0]
	if n := len(rows.Columns()); cap(vals) >= n {
		vals = vals[:n]
		clear(vals)
	} else {
		vals = make([]driver.Value, n)
	}
	r.rows = rawRows{rows: rows, vals: vals}
	return &r.rows, nil
}

// rows reads a query's rows: *sql.Rows, or rawRows on the SQLite writer.
type rows interface {
	Next() bool
	Scan(dest ...any) error
	Close() error
	Err() error
}

// rawRows reads a rawStmt's rows as *sql.Rows does.
type rawRows struct {
	rows driver.Rows
	vals []driver.Value
	err  error
	done bool
}

func (r *rawRows) Next() bool {
	if r.done {
		return false
	}
	if err := r.rows.Next(r.vals); err != nil {
		if err != io.EOF {
			r.err = err
		}
		r.Close()
		return false
	}
	return true
}

func (r *rawRows) Scan(dest ...any) error {
	if r.done {
		return errors.New("sql: Rows are closed")
	}
	if len(dest) != len(r.vals) {
		return fmt.Errorf("sql: expected %d destination arguments in Scan, not %d", len(r.vals), len(dest))
	}
	for i, d := range dest {
		if err := assign(d, r.vals[i]); err != nil {
			return fmt.Errorf("sql: Scan error on column index %d: %w", i, err)
		}
	}
	return nil
}

func (r *rawRows) Close() error {
	if r.done || r.rows == nil {
		return nil
	}
	r.done = true
	return r.rows.Close()
}

func (r *rawRows) Err() error { return r.err }

// rawRow is the first row of a rawStmt's query, read as *sql.Row does.
type rawRow struct {
	rows *rawRows
	err  error
}

func (r rawRow) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	if !r.rows.Next() {
		if err := r.rows.Err(); err != nil {
			return err
		}
		return sql.ErrNoRows
	}
	err := r.rows.Scan(dest...)
	// Closing resets the statement, which reports what failed after the
	// first row (a constraint checked at the statement's end).
	if cerr := r.rows.Close(); err == nil {
		err = cerr
	}
	return err
}

// assign stores a driver's value in dest with database/sql's conversions
// (sql.Null's Scan makes them), refusing NULL as database/sql does.
func assign(dest any, v driver.Value) error {
	switch d := dest.(type) {
	case sql.Scanner:
		return d.Scan(v)
	case *string:
		return into(d, v)
	case *int64:
		return into(d, v)
	case *int:
		return into(d, v)
	case *bool:
		return into(d, v)
	case *[]byte:
		return into(d, v)
	}
	return fmt.Errorf("unsupported destination %T", dest)
}

func into[T any](dest *T, v driver.Value) error {
	if v == nil {
		return fmt.Errorf("converting NULL to %T is unsupported", *dest)
	}
	var n sql.Null[T]
	if err := n.Scan(v); err != nil {
		return err
	}
	*dest = n.V
	return nil
}
