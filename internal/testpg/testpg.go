// Package testpg gives tests a fresh PostgreSQL schema of their own on the
// throwaway server that .ci/postgres starts (ONAIR_TEST_DATABASE_URL).
package testpg

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
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
	b := make([]byte, 6)
	rand.Read(b)
	return SchemaURL(t, "t_"+hex.EncodeToString(b))
}

// SchemaURL is URL with a schema name of the test's choosing (unique to
// it: the schema must not exist yet).
func SchemaURL(t testing.TB, schema string) string {
	t.Helper()
	server := Need(t)
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

// Instance is a private PostgreSQL server that one test starts, stops and
// restarts at will (StartServer), unlike the shared test server.
type Instance struct {
	URL  string // the postgres database on it, as superuser
	t    testing.TB
	bin  string   // the folder of initdb, pg_ctl
	dir  string   // holds the data folder, the log and the socket
	as   []string // runs a command as the postgres user when we are root
	opts string   // the server's options (pg_ctl -o)
}

// StartServer starts a throwaway PostgreSQL server of the test's own on a
// free port of 127.0.0.1, stopped (immediately) and removed when the test
// ends. Like Need, it fails under CI and skips elsewhere when PostgreSQL is
// not there. It takes a few seconds: use it only to take a server down.
func StartServer(t testing.TB) *Instance {
	t.Helper()
	Need(t)
	bin := os.Getenv("ONAIR_TEST_PG_BIN")
	if bin == "" {
		found, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
		sort.Strings(found) // (one version in practice: .ci/postgres installs Debian's)
		if len(found) > 0 {
			bin = found[len(found)-1]
		}
	}
	if _, err := os.Stat(filepath.Join(bin, "pg_ctl")); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("no PostgreSQL binaries to start a private server (ONAIR_TEST_PG_BIN=%q)", bin)
		}
		t.Skipf("no PostgreSQL binaries to start a private server: set ONAIR_TEST_PG_BIN")
	}
	// Not t.TempDir: its parents are private to root, and PostgreSQL
	// refuses to run as root.
	dir, err := os.MkdirTemp("", "onair-pg-")
	if err != nil {
		t.Fatal(err)
	}
	s := &Instance{t: t, bin: bin, dir: dir}
	if os.Getuid() == 0 {
		pg, err := user.Lookup("postgres")
		if err != nil {
			os.RemoveAll(dir)
			t.Fatalf("running as root, and no postgres user to run PostgreSQL as: %v", err)
		}
		uid, _ := strconv.Atoi(pg.Uid)
		gid, _ := strconv.Atoi(pg.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			t.Fatal(err)
		}
		s.as = []string{"runuser", "-u", "postgres", "--"}
	}
	t.Cleanup(func() {
		s.pgctl("stop", "-m", "immediate")
		os.RemoveAll(dir)
	})
	if out, err := s.run(filepath.Join(bin, "initdb"), "-D", s.data(), "-U", "postgres", "-A", "trust", "--no-sync"); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	port := freePort(t)
	// A throwaway server: no fsync; its socket in our folder.
	s.opts = fmt.Sprintf("-h 127.0.0.1 -p %d -k %s -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200", port, dir)
	s.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	s.Start()
	return s
}

// Stop stops the server the way an operator's restart begins: every
// connection is closed at once (fast shutdown).
func (s *Instance) Stop() {
	s.t.Helper()
	if out, err := s.pgctl("stop", "-m", "fast"); err != nil {
		s.t.Fatalf("pg_ctl stop: %v\n%s", err, out)
	}
}

// Start starts the stopped server again, on the same port.
func (s *Instance) Start() {
	s.t.Helper()
	if out, err := s.pgctl("start"); err != nil {
		s.t.Fatalf("pg_ctl start: %v\n%s\n%s", err, out, s.log())
	}
}

// Restart is pg_ctl restart -m fast.
func (s *Instance) Restart() {
	s.t.Helper()
	if out, err := s.pgctl("restart", "-m", "fast"); err != nil {
		s.t.Fatalf("pg_ctl restart: %v\n%s\n%s", err, out, s.log())
	}
}

func (s *Instance) data() string { return filepath.Join(s.dir, "data") }

func (s *Instance) log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "server.log"))
	return string(b)
}

// pgctl runs pg_ctl on the server, waiting (-w) for the action to finish.
// The server's output goes to the log file, never to our pipes: the server
// outlives pg_ctl and would hold them open.
func (s *Instance) pgctl(action string, args ...string) ([]byte, error) {
	args = append([]string{action, "-D", s.data(), "-w", "-t", "60"}, args...)
	if action == "start" || action == "restart" {
		args = append(args, "-l", filepath.Join(s.dir, "server.log"), "-o", s.opts)
	}
	return s.run(filepath.Join(s.bin, "pg_ctl"), args...)
}

func (s *Instance) run(name string, args ...string) ([]byte, error) {
	argv := append(append(append([]string{}, s.as...), name), args...)
	return exec.Command(argv[0], argv[1:]...).CombinedOutput()
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
