// Package testpg gives tests a fresh PostgreSQL schema of their own on the
// throwaway server that .ci/postgres starts (ONAIR_TEST_DATABASE_URL).
package testpg

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// Env names the variable holding the test server's URL.
const Env = "ONAIR_TEST_DATABASE_URL"

// Server is the test server's URL; empty when there is none.
func Server() string { return os.Getenv(Env) }

// Need fails the test under CI when there is no test server (CI starts
// one), and skips it elsewhere, saying how to get one.
func Need(t testing.TB) string {
	t.Helper()
	u := Server()
	if u == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not set: .ci/run starts a PostgreSQL server for the tests", Env)
		}
		t.Skipf("no PostgreSQL test server: run eval \"$(bash .ci/postgres)\" first (%s)", Env)
	}
	return u
}

// URL creates an empty schema for the test, dropped when it ends, and
// returns a URL whose connections use it (search_path).
func URL(t testing.TB) string {
	t.Helper()
	server := Need(t)
	b := make([]byte, 6)
	rand.Read(b)
	schema := "t_" + hex.EncodeToString(b)
	db := open(t, server)
	defer db.Close()
	if _, err := db.Exec(`CREATE SCHEMA ` + pgx.Identifier{schema}.Sanitize()); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		db := open(t, server)
		defer db.Close()
		// Nodes of the test may still hold connections: end them first.
		db.Exec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE pid <> pg_backend_pid() AND query NOT LIKE '%pg_stat_activity%' AND
			datname = current_database() AND application_name = $1`, schema)
		if _, err := db.Exec(`DROP SCHEMA ` + pgx.Identifier{schema}.Sanitize() + ` CASCADE`); err != nil {
			t.Logf("drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(server)
	if err != nil {
		t.Fatalf("%s: %v", Env, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	q.Set("application_name", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

func open(t testing.TB, u string) *sql.DB {
	t.Helper()
	cfg, err := pgx.ParseConfig(u)
	if err != nil {
		t.Fatalf("%s: %v", Env, err)
	}
	return stdlib.OpenDB(*cfg)
}

// Open opens a pool on the database at u, for a test to look at or
// interfere with what onair keeps.
func Open(t testing.TB, u string) *sql.DB {
	t.Helper()
	db := open(t, u)
	t.Cleanup(func() { db.Close() })
	return db
}
