package store

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The writer's statements run on the driver (rawstmt.go): they must fail
// where database/sql would, and read what it would.
func TestRawStatements(t *testing.T) {
	s, err := Open(context.Background(), Options{Path: filepath.Join(t.TempDir(), "onair.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	in := func(fn func(tx *Tx) error) error { return s.w.do(context.Background(), fn) }

	cases := []struct {
		name string
		fn   func(tx *Tx) error
		want string // in the error; "" for none
	}{
		{"too few arguments", func(tx *Tx) error {
			_, err := tx.exec(`INSERT INTO meta (key, value) VALUES (?, ?)`, "k")
			return err
		}, "expected 2 arguments, got 1"},
		{"an argument of no driver type", func(tx *Tx) error {
			_, err := tx.exec(`INSERT INTO meta (key, value) VALUES (?, ?)`, "k", time.Second)
			return err
		}, "unsupported type time.Duration"},
		{"NULL into a string", func(tx *Tx) error {
			var v string
			return tx.queryRow(`SELECT NULL`).Scan(&v)
		}, "converting NULL to string is unsupported"},
		{"too few destinations", func(tx *Tx) error {
			var a int
			return tx.queryRow(`SELECT 1, 2`).Scan(&a)
		}, "expected 2 destination arguments in Scan, not 1"},
		{"no row", func(tx *Tx) error {
			var v string
			return tx.queryRow(`SELECT value FROM meta WHERE key = ?`, "absent").Scan(&v)
		}, sql.ErrNoRows.Error()},
		{"a syntax error", func(tx *Tx) error {
			_, err := tx.exec(`INSERT INTO nowhere VALUES (?)`, 1)
			return err
		}, "no such table"},
		{"values converted as database/sql does", func(tx *Tx) error {
			var n int
			var b bool
			var str string
			var blob []byte
			var null sql.NullInt64
			if err := tx.queryRow(`SELECT ?, ?, ?, ?, NULL`, 7, true, "text", []byte{1, 2}).
				Scan(&n, &b, &str, &blob, &null); err != nil {
				return err
			}
			if n != 7 || !b || str != "text" || len(blob) != 2 || blob[1] != 2 || null.Valid {
				t.Errorf("read %d %v %q %v %v", n, b, str, blob, null)
			}
			return nil
		}, ""},
		{"a constraint failing in a statement that returns rows", func(tx *Tx) error {
			var u string
			return tx.queryRow(`INSERT INTO meeting_members (meeting_n, user_id, role) VALUES (?, ?, ?)
				RETURNING user_id`, 424242, "u", RoleHost).Scan(&u)
		}, "FOREIGN KEY constraint failed"},
		{"rows left open, then the statement again", func(tx *Tx) error {
			const q = `SELECT key FROM meta WHERE key <> ? ORDER BY key`
			first, err := tx.query(q, "")
			if err != nil || !first.Next() {
				return fmt.Errorf("first run: %v", err)
			}
			// The first rows are never closed: the second run closes them
			// and reads all of its own.
			second, err := tx.query(q, "")
			if err != nil {
				return err
			}
			defer second.Close()
			n := 0
			for second.Next() {
				n++
			}
			var all int
			if err := tx.queryRow(`SELECT count(*) FROM meta`).Scan(&all); err != nil || n != all {
				t.Errorf("second run read %d rows of %d (%v)", n, all, err)
			}
			return second.Err()
		}, ""},
		{"rows read and closed", func(tx *Tx) error {
			rows, err := tx.query(`SELECT key FROM meta ORDER BY key`)
			if err != nil {
				return err
			}
			n := 0
			for rows.Next() {
				var k string
				if err := rows.Scan(&k); err != nil {
					return err
				}
				n++
			}
			if err := rows.Close(); err != nil || rows.Err() != nil || n == 0 {
				t.Errorf("meta: %d keys, %v, %v", n, err, rows.Err())
			}
			return nil
		}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := in(c.fn)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("got %v, want no error", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("got %v, want an error with %q", err, c.want)
			}
		})
	}
	// Each failure rolled back only its own write: the writer goes on.
	if err := in(func(tx *Tx) error {
		_, err := tx.exec(`INSERT INTO meta (key, value) VALUES (?, ?)`, "after", "ok")
		return err
	}); err != nil {
		t.Fatalf("a write after the failures: %v", err)
	}
}
