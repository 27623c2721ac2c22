package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// runInProcess calls run() with only env visible. A case that wrongly
// starts the server is stopped after a while, so it fails rather than hangs.
func runInProcess(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	code = run(ctx, args, mapEnv(env), &out, &errOut)
	return out.String(), errOut.String(), code
}

func TestHelp(t *testing.T) {
	names := []string{""}
	for name := range subcommands {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		for _, help := range []string{"--help", "-h"} {
			args := []string{help}
			if name != "" {
				args = []string{name, help}
			}
			t.Run(strings.Join(args, "_"), func(t *testing.T) {
				stdout, stderr, code := runInProcess(t, nil, args...)
				if got, want := code, 0; got != want {
					t.Fatalf("exit code: got %d, want %d (stderr %q)", got, want, stderr)
				}
				if got, want := stderr, ""; got != want {
					t.Fatalf("stderr: got %q, want %q", got, want)
				}
				if !strings.Contains(stdout, "Options") {
					t.Fatalf("stdout has no usage:\n%s", stdout)
				}
			})
		}
	}
	t.Run("serve lists every setting and the subcommands", func(t *testing.T) {
		stdout, _, _ := runInProcess(t, nil, "--help")
		for _, want := range []string{"--addr", "ONAIR_ADDR", "--metrics-addr", "ONAIR_METRICS_ADDR", "--db", "ONAIR_DB",
			"--database-url", "ONAIR_DATABASE_URL", "--public-url", "ONAIR_PUBLIC_URL", "--allowed-origins",
			"ONAIR_ALLOWED_ORIGINS", "--zoom-webhook-secret", "ZOOM_WEBHOOK_SECRET_TOKEN", "--token-secret",
			"ONAIR_TOKEN_SECRET", "--secret-key", "ONAIR_SECRET_KEY", "--zoom-client-id", "ZOOM_CLIENT_ID",
			"--zoom-client-secret", "ZOOM_CLIENT_SECRET", "--zoom-oauth-url", "ZOOM_OAUTH_URL", "--zoom-api-url",
			"ZOOM_API_URL", "--bot-webhook-url", "ONAIR_BOT_WEBHOOK_URL", "--bot-webhook-secret",
			"ONAIR_BOT_WEBHOOK_SECRET", "--db-sync", "ONAIR_DB_SYNC", "--max-tabs-per-user", "ONAIR_MAX_TABS_PER_USER",
			"--shutdown-drain", "ONAIR_SHUTDOWN_DRAIN", "--webhook-max-skew", "ONAIR_WEBHOOK_MAX_SKEW",
			"--reconcile-interval", "ONAIR_RECONCILE_INTERVAL", "--dev", "ONAIR_DEV", "--gc-burst-mib", "ONAIR_GC_BURST_MIB",
			"simulate", "token", "backup", "version"} {
			if !strings.Contains(stdout, want) {
				t.Errorf("usage lacks %q", want)
			}
		}
	})
	t.Run("simulate event --help", func(t *testing.T) {
		stdout, stderr, code := runInProcess(t, nil, "simulate", "started", "--help")
		if got, want := code, 0; got != want {
			t.Fatalf("exit code: got %d, want %d (stderr %q)", got, want, stderr)
		}
		if !strings.Contains(stdout, "--user") {
			t.Fatalf("stdout has no usage:\n%s", stdout)
		}
	})
}

// TestConfigErrors: unknown flags, malformed values and contradictory
// settings end the start with exactly one line on stderr and exit 2.
func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "onair.db")
	// Every case also gets a harmless address and database, so one that
	// wrongly starts does not take port 8080 (runInProcess then stops it).
	safe := []string{"--addr", "127.0.0.1:0", "--db", db}
	prod := map[string]string{"ZOOM_WEBHOOK_SECRET_TOKEN": "whsec", "ONAIR_TOKEN_SECRET": "toksec"}
	with := func(base map[string]string, kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	for _, tc := range []struct {
		name    string
		env     map[string]string
		args    []string
		mention string // a word the line must contain
	}{
		{"unknown flag", prod, []string{"--bogus"}, "bogus"},
		{"unknown flag value form", prod, []string{"--bogus=1"}, "bogus"},
		{"flag without its value", prod, []string{"--shutdown-drain"}, "shutdown-drain"},
		{"unexpected argument", prod, []string{"serve", "extra"}, "extra"},
		{"max tabs not a number", with(prod, "ONAIR_MAX_TABS_PER_USER", "abc"), nil, "ONAIR_MAX_TABS_PER_USER"},
		{"max tabs zero", with(prod, "ONAIR_MAX_TABS_PER_USER", "0"), nil, "ONAIR_MAX_TABS_PER_USER"},
		{"max tabs flag", prod, []string{"--max-tabs-per-user", "-3"}, "max-tabs-per-user"},
		{"shutdown drain flag", prod, []string{"--shutdown-drain=x"}, "shutdown-drain"},
		{"shutdown drain env", with(prod, "ONAIR_SHUTDOWN_DRAIN", "soon"), []string{}, "ONAIR_SHUTDOWN_DRAIN"},
		{"webhook skew", with(prod, "ONAIR_WEBHOOK_MAX_SKEW", "5"), nil, "ONAIR_WEBHOOK_MAX_SKEW"},
		{"webhook skew zero", with(prod, "ONAIR_WEBHOOK_MAX_SKEW", "0s"), nil, "ONAIR_WEBHOOK_MAX_SKEW"},
		{"reconcile interval", with(prod, "ONAIR_RECONCILE_INTERVAL", "often"), nil, "ONAIR_RECONCILE_INTERVAL"},
		{"db sync", with(prod, "ONAIR_DB_SYNC", "weird"), nil, "ONAIR_DB_SYNC"},
		{"gc burst negative", with(prod, "ONAIR_GC_BURST_MIB", "-1"), nil, "ONAIR_GC_BURST_MIB"},
		{"gc burst not a number", prod, []string{"--gc-burst-mib", "lots"}, "gc-burst-mib"},
		{"gc burst over 1 TiB", with(prod, "ONAIR_GC_BURST_MIB", "2000000"), nil, "ONAIR_GC_BURST_MIB"},
		{"dev not a boolean", with(prod, "ONAIR_DEV", "maybe"), nil, "ONAIR_DEV"},
		{"secret key not base64", with(prod, "ONAIR_SECRET_KEY", "not base64!"), nil, "ONAIR_SECRET_KEY"},
		{"secret key too short", with(prod, "ONAIR_SECRET_KEY", "c2hvcnQ="), nil, "ONAIR_SECRET_KEY"},
		{"zoom client id without secret", with(prod, "ZOOM_CLIENT_ID", "cid", "ONAIR_SECRET_KEY", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="), nil, "ZOOM_CLIENT_SECRET"},
		{"zoom client secret without id", with(prod, "ZOOM_CLIENT_SECRET", "csec"), nil, "ZOOM_CLIENT_ID"},
		{"zoom sign-in without secret key", with(prod, "ZOOM_CLIENT_ID", "cid", "ZOOM_CLIENT_SECRET", "csec"), nil, "ONAIR_SECRET_KEY"},
		{"zoom oauth url", with(prod, "ZOOM_OAUTH_URL", "zoom.us"), nil, "ZOOM_OAUTH_URL"},
		{"bot webhook url without secret", with(prod, "ONAIR_BOT_WEBHOOK_URL", "https://bots.example/launch"), nil, "ONAIR_BOT_WEBHOOK_SECRET"},
		{"bot webhook url malformed", with(prod, "ONAIR_BOT_WEBHOOK_URL", "bots", "ONAIR_BOT_WEBHOOK_SECRET", "b"), nil, "ONAIR_BOT_WEBHOOK_URL"},
		{"public url", with(prod, "ONAIR_PUBLIC_URL", "ftp://example.com"), nil, "ONAIR_PUBLIC_URL"},
		{"allowed origins", with(prod, "ONAIR_ALLOWED_ORIGINS", "https://ok.example,nonsense"), nil, "ONAIR_ALLOWED_ORIGINS"},
		{"metrics addr", with(prod, "ONAIR_METRICS_ADDR", "nonsense"), nil, "ONAIR_METRICS_ADDR"},
		{"db and database url env", with(prod, "ONAIR_DB", filepath.Join(dir, "other.db"), "ONAIR_DATABASE_URL", "postgres://onair@db/onair"), nil, "ONAIR_DATABASE_URL"},
		{"db and database url flags", prod, []string{"--database-url", "postgres://onair@db/onair"}, "ONAIR_DATABASE_URL"},
		{"dev mode refuses any address", nil, []string{"--addr", "0.0.0.0:0"}, "0.0.0.0:0"},
		{"dev mode refuses empty host", nil, []string{"--addr", ":0"}, ":0"},
		{"dev flag refuses any address", with(prod, "ONAIR_DEV", "true"), []string{"--addr", "0.0.0.0:0"}, "0.0.0.0:0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pre := safe
			if tc.env["ONAIR_DB"] != "" {
				pre = safe[:2] // the case is about ONAIR_DB itself
			}
			args := append(append([]string{}, pre...), tc.args...)
			if len(tc.args) > 0 && tc.args[0] == "serve" {
				args = append([]string{"serve"}, append(append([]string{}, pre...), tc.args[1:]...)...)
			}
			stdout, stderr, code := runInProcess(t, tc.env, args...)
			if got, want := code, 2; got != want {
				t.Fatalf("exit code: got %d, want %d (stderr %q)", got, want, stderr)
			}
			oneLine(t, "stderr", stderr)
			if !strings.Contains(stderr, tc.mention) {
				t.Fatalf("stderr %q does not mention %q", stderr, tc.mention)
			}
			if strings.Contains(stderr, "Options") || strings.Contains(stderr, "  --") {
				t.Fatalf("stderr holds a usage dump: %q", stderr)
			}
			if got, want := stdout, ""; got != want {
				t.Fatalf("stdout: got %q, want %q", got, want)
			}
			if _, err := os.Stat(db); err == nil {
				t.Fatalf("a refused start created the database")
			}
		})
	}
}

// TestSubcommandErrors: every subcommand reports bad usage the same way.
func TestSubcommandErrors(t *testing.T) {
	db := filepath.Join(t.TempDir(), "none.db")
	cases := []struct {
		name string
		env  map[string]string
		args []string
	}{
		{"simulate unknown event", nil, []string{"simulate", "exploded", "--user", "u1", "--db", db}},
		{"simulate no event", nil, []string{"simulate", "--user", "u1", "--db", db}},
		{"simulate no user", nil, []string{"simulate", "started", "--db", db}},
		{"simulate no secret anywhere", nil, []string{"simulate", "started", "--user", "u1", "--db", db}},
		{"simulate ended with nothing started", map[string]string{"ZOOM_WEBHOOK_SECRET_TOKEN": "s"}, []string{"simulate", "ended", "--user", "u1", "--db", db}},
		{"token no user", map[string]string{"ONAIR_TOKEN_SECRET": "s"}, []string{"token"}},
		{"token bad ttl", map[string]string{"ONAIR_TOKEN_SECRET": "s"}, []string{"token", "--user", "u1", "--ttl", "forever"}},
		{"token zero ttl", map[string]string{"ONAIR_TOKEN_SECRET": "s"}, []string{"token", "--user", "u1", "--ttl", "0s"}},
		{"token no secret anywhere", nil, []string{"token", "--user", "u1", "--db", db}},
		{"backup no destination", nil, []string{"backup", "--db", db}},
		{"backup on postgres", map[string]string{"ONAIR_DATABASE_URL": "postgres://onair@db/onair"}, []string{"backup", "--to", db + ".bak"}},
		{"version extra argument", nil, []string{"version", "now"}},
	}
	names := make([]string, 0, len(subcommands))
	for name := range subcommands {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		cases = append(cases, struct {
			name string
			env  map[string]string
			args []string
		}{name + " unknown flag", nil, []string{name, "--no-such-flag"}})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := runInProcess(t, tc.env, tc.args...)
			if got, want := code, 2; got != want {
				t.Fatalf("exit code: got %d, want %d (stdout %q, stderr %q)", got, want, stdout, stderr)
			}
			oneLine(t, "stderr", stderr)
			if strings.Contains(stderr, "Options") {
				t.Fatalf("stderr holds a usage dump: %q", stderr)
			}
			if got, want := stdout, ""; got != want {
				t.Fatalf("stdout: got %q, want %q", got, want)
			}
		})
	}
}

// TestListenAddressInUse: a busy port ends the start with one line, exit 1.
func TestListenAddressInUse(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"public", []string{"--addr", busy.Addr().String()}},
		{"metrics", []string{"--addr", "127.0.0.1:0", "--metrics-addr", busy.Addr().String()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := filepath.Join(t.TempDir(), "onair.db")
			stdout, stderr, code := runInProcess(t, nil, append(tc.args, "--db", db, "--shutdown-drain", "0s")...)
			if got, want := code, 1; got != want {
				t.Fatalf("exit code: got %d, want %d (stderr %q)", got, want, stderr)
			}
			oneLine(t, "stderr", stderr)
			if !strings.Contains(stderr, "address already in use") || !strings.Contains(stderr, busy.Addr().String()) {
				t.Fatalf("stderr %q does not say which address is in use", stderr)
			}
			if got, want := stdout, ""; got != want {
				t.Fatalf("stdout: got %q, want %q", got, want)
			}
		})
	}
}

// serveInProcess runs run() as serve until the returned stop is called; it
// waits for the listening line and returns it.
func serveInProcess(t *testing.T, env map[string]string, args ...string) (l logLine, stdout *lockedBuffer, stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stdout, stderr := &lockedBuffer{}, &lockedBuffer{}
	var code int
	done := make(chan struct{})
	go func() {
		defer close(done)
		code = run(ctx, args, mapEnv(env), stdout, stderr)
	}()
	stop = func() int {
		cancel()
		<-done
		return code
	}
	t.Cleanup(func() { stop() })
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		if l, ok := listening(stderr.String()); ok {
			return l, stdout, stop
		}
		select {
		case <-done:
			t.Fatalf("run ended with exit code %d before listening; stderr:\n%s", code, stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("no listening line; stderr:\n%s", stderr.String())
	return
}

// TestFlagWinsOverEnv starts the server in process with settings in both
// places: the flags' values are the ones that take effect.
func TestFlagWinsOverEnv(t *testing.T) {
	dir := t.TempDir()
	envDB, flagDB := filepath.Join(dir, "env", "onair.db"), filepath.Join(dir, "flag", "onair.db")
	env := map[string]string{
		"ONAIR_ADDR":           "0.0.0.0:0", // refused in dev mode: only the flag makes the start possible
		"ONAIR_DB":             envDB,
		"ONAIR_SHUTDOWN_DRAIN": "1h", // the flag's 0s lets the stop below return at once
		"ONAIR_DB_SYNC":        "weird",
	}
	l, stdout, stop := serveInProcess(t, env, "--addr", "127.0.0.1:0", "--db", flagDB, "--shutdown-drain", "0s", "--db-sync", "full")
	if host, _, err := net.SplitHostPort(l.Addr); err != nil || host != "127.0.0.1" {
		t.Fatalf("listening on %q, want 127.0.0.1:PORT", l.Addr)
	}
	if _, port, _ := net.SplitHostPort(l.Addr); l.PublicURL != "http://localhost:"+port {
		t.Fatalf("public_url: got %q, want http://localhost:%s (the default, from the bound port)", l.PublicURL, port)
	}
	if got, want := l.DB, flagDB; got != want {
		t.Fatalf("db in the listening line: got %q, want %q", got, want)
	}
	if _, err := os.Stat(flagDB); err != nil {
		t.Fatalf("the --db database was not created: %v", err)
	}
	if _, err := os.Stat(envDB); err == nil {
		t.Fatalf("the ONAIR_DB database was created though --db was given")
	}
	if code, body := httpGet(t, "http://"+l.Addr+"/readyz"); code != 200 {
		t.Fatalf("/readyz: got %d %s, want 200", code, body)
	}
	if !strings.Contains(stdout.String(), "webhook secret") {
		t.Fatalf("dev mode did not print its webhook secret: %q", stdout.String())
	}
	done := make(chan int, 1)
	go func() { done <- stop() }()
	select {
	case code := <-done:
		if got, want := code, 0; got != want {
			t.Fatalf("exit code: got %d, want %d", got, want)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("serve did not stop: the env's 1h drain won over --shutdown-drain 0s")
	}
}

// TestEnvApplies: without flags, the environment configures the server.
func TestEnvApplies(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "sub", "onair.db")
	env := map[string]string{
		"ONAIR_ADDR":                "127.0.0.1:0",
		"ONAIR_METRICS_ADDR":        "127.0.0.1:0",
		"ONAIR_DB":                  db,
		"ONAIR_SHUTDOWN_DRAIN":      "0s",
		"ZOOM_WEBHOOK_SECRET_TOKEN": "whsec",
		"ONAIR_TOKEN_SECRET":        "toksec",
		"ONAIR_PUBLIC_URL":          "https://onair.example/",
	}
	l, stdout, stop := serveInProcess(t, env)
	if got, want := l.PublicURL, "https://onair.example"; got != want {
		t.Fatalf("public_url: got %q, want %q", got, want)
	}
	if l.Dev {
		t.Fatalf("dev mode on with ZOOM_WEBHOOK_SECRET_TOKEN set")
	}
	if _, err := os.Stat(db); err != nil {
		t.Fatalf("ONAIR_DB was not created (with its folder): %v", err)
	}
	if l.MetricsAddr == "" || l.MetricsAddr == l.Addr {
		t.Fatalf("metrics_addr: got %q, want a listener of its own", l.MetricsAddr)
	}
	if code, _ := httpGet(t, "http://"+l.MetricsAddr+"/metrics"); code != 200 {
		t.Fatalf("metrics listener /metrics: got %d, want 200", code)
	}
	if got, want := stdout.String(), ""; got != want {
		t.Fatalf("production start printed %q on stdout, want nothing", got)
	}
	if got, want := stop(), 0; got != want {
		t.Fatalf("exit code: got %d, want %d", got, want)
	}
}

// TestFlagWinsOverEnvBoolean: --dev=false beats ONAIR_DEV=true.
func TestFlagWinsOverEnvBoolean(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"ONAIR_DEV": "true", "ZOOM_WEBHOOK_SECRET_TOKEN": "whsec", "ONAIR_TOKEN_SECRET": "toksec"}
	l, stdout, stop := serveInProcess(t, env, "--dev=false", "--addr", "127.0.0.1:0", "--db", filepath.Join(dir, "onair.db"), "--shutdown-drain", "0s")
	if l.Dev {
		t.Fatalf("dev mode on: ONAIR_DEV won over --dev=false")
	}
	if got, want := stdout.String(), ""; got != want {
		t.Fatalf("stdout: got %q, want %q", got, want)
	}
	if got, want := stop(), 0; got != want {
		t.Fatalf("exit code: got %d, want %d", got, want)
	}
	l, _, stop = serveInProcess(t, env, "--addr", "127.0.0.1:0", "--db", filepath.Join(dir, "onair.db"), "--shutdown-drain", "0s")
	if !l.Dev {
		t.Fatalf("dev mode off: ONAIR_DEV=true was ignored")
	}
	if got, want := stop(), 0; got != want {
		t.Fatalf("exit code: got %d, want %d", got, want)
	}
}

func TestParseOriginDropsDefaultPorts(t *testing.T) {
	for in, want := range map[string]string{
		"https://App.Example:443":  "https://app.example",
		"http://app.example:80/x":  "http://app.example",
		"https://app.example:8443": "https://app.example:8443",
		"http://localhost:8080/":   "http://localhost:8080",
		"HTTP://127.0.0.1:80/page": "http://127.0.0.1",
	} {
		got, err := parseOrigin(in)
		if err != nil || got != want {
			t.Errorf("parseOrigin(%q): got %q, %v; want %q", in, got, err, want)
		}
	}
}
