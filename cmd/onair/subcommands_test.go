package main

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
)

// TestReadmeWalkthrough is "Try it in two minutes" of the README, as a user
// types it: onair with no configuration at all in an empty folder, a token,
// a tab in a browser page on the server's origin, then simulate started and
// ended. Only the port differs (:0, and so simulate needs --url).
func TestReadmeWalkthrough(t *testing.T) {
	dir := t.TempDir()
	env := cleanEnv()
	srv := startOnair(t, dir, env, "--addr", "127.0.0.1:0")
	db := filepath.Join(dir, "data", "onair.db")
	if _, err := os.Stat(db); err != nil {
		t.Fatalf("dev mode did not create ./data/onair.db: %v", err)
	}
	m := regexp.MustCompile(`^onair dev mode: webhook secret (\S+)\n$`).FindStringSubmatch(srv.stdout.String())
	if m == nil {
		t.Fatalf("stdout: got %q, want \"onair dev mode: webhook secret SECRET\"", srv.stdout.String())
	}
	secret := m[1]
	if strings.Contains(srv.stderr.String(), secret) {
		t.Fatalf("the webhook secret is in the logs")
	}

	stdout, stderr, code := runOnair(t, dir, env, "token", "--user", "u1")
	if got, want := code, 0; got != want {
		t.Fatalf("onair token: exit %d, want %d (stderr %q)", got, want, stderr)
	}
	oneLine(t, "onair token stdout", stdout)
	token := strings.TrimSpace(stdout)
	if stdout2, _, _ := runOnair(t, dir, env, "token", "--user", "u1", "--db", db); !strings.HasPrefix(stdout2, "eyJ") {
		t.Fatalf("onair token --db: got %q, want a token", stdout2)
	}

	// The page at http://localhost:PORT/healthz opens ws://localhost:PORT/ws.
	_, port, _ := net.SplitHostPort(srv.Addr)
	page := "localhost:" + port
	if code, _ := httpGet(t, "http://"+page+"/healthz"); code != 200 {
		t.Fatalf("http://%s/healthz: got %d, want 200", page, code)
	}
	tab := openTabFrom(t, "http://"+page, page, token, nil)
	welcome := tab.mustNext("welcome")
	if got, want := welcome.User, "u1"; got != want {
		t.Fatalf("welcome user: got %q, want %q", got, want)
	}
	if welcome.Resumed || welcome.Seq != 0 || welcome.Epoch == "" || welcome.Meetings == nil || len(welcome.Meetings) != 0 ||
		welcome.Bots == nil || len(welcome.Bots) != 0 {
		t.Fatalf("welcome: got %+v, want seq 0, an epoch, resumed false, meetings [] and bots []", welcome)
	}

	// Dev mode also allows the page on http://127.0.0.1:PORT; other origins are refused.
	if other, err := tryOpenTabFrom("http://127.0.0.1:"+port, srv.Addr, token, nil); err != nil {
		t.Fatalf("tab from http://127.0.0.1:%s: %v", port, err)
	} else {
		other.conn.CloseNow()
	}
	if other, err := tryOpenTabFrom("http://evil.example", srv.Addr, token, nil); err == nil {
		other.conn.CloseNow()
		t.Fatalf("a tab from http://evil.example was accepted")
	}

	url := "http://" + srv.Addr + "/webhooks/zoom"
	stdout, stderr, code = runOnair(t, dir, env, "simulate", "started", "--user", "u1", "--url", url)
	if got, want := code, 0; got != want {
		t.Fatalf("simulate started: exit %d, want %d (stdout %q, stderr %q)", got, want, stdout, stderr)
	}
	out := lines(stdout)
	if len(out) != 2 || !strings.HasPrefix(out[0], "meeting ") || out[1] != "200 OK" {
		t.Fatalf("simulate started printed %q, want \"meeting UUID\" and \"200 OK\"", stdout)
	}
	uuid := strings.TrimPrefix(out[0], "meeting ")

	started := tab.mustNext("meeting.started")
	if got, want := started.Seq, int64(1); got != want {
		t.Fatalf("meeting.started seq: got %d, want %d", got, want)
	}
	if got, want := started.Epoch, welcome.Epoch; got != want {
		t.Fatalf("meeting.started epoch: got %q, want %q", got, want)
	}
	if mt := started.Meeting; mt == nil || mt.UUID != uuid || mt.HostID != "u1" || mt.Role != "host" || !mt.Live ||
		mt.Topic != "Simulated meeting" || mt.ID == "" {
		t.Fatalf("meeting.started: got %+v, want uuid %q live for host u1", started.Meeting, uuid)
	}
	if code, body := httpGet(t, srv.url("/api/v1/meetings/live"), "Authorization", "Bearer "+token); code != 200 || !strings.Contains(body, jsonString(uuid)) {
		t.Fatalf("/api/v1/meetings/live: got %d %s, want the meeting", code, body)
	}

	stdout, stderr, code = runOnair(t, dir, env, "simulate", "ended", "--user", "u1", "--url", url)
	if got, want := code, 0; got != want {
		t.Fatalf("simulate ended: exit %d, want %d (stdout %q, stderr %q)", got, want, stdout, stderr)
	}
	if got, want := lines(stdout), []string{"200 OK"}; len(got) != 1 || got[0] != want[0] {
		t.Fatalf("simulate ended printed %q, want %q", got, want)
	}
	ended := tab.mustNext("meeting.ended")
	if got, want := ended.Seq, started.Seq+1; got != want {
		t.Fatalf("meeting.ended seq: got %d, want %d", got, want)
	}
	if ended.Meeting == nil || ended.Meeting.UUID != uuid || ended.Meeting.Live {
		t.Fatalf("meeting.ended: got %+v, want uuid %q not live", ended.Meeting, uuid)
	}
	if code, body := httpGet(t, srv.url("/api/v1/meetings/live"), "Authorization", "Bearer "+token); code != 200 || strings.Contains(body, jsonString(uuid)) {
		t.Fatalf("/api/v1/meetings/live after the end: got %d %s, want no meeting", code, body)
	}

	// A restart keeps the dev secrets: the same secret is printed, the old
	// token still works. (SIGINT, as Ctrl-C in the terminal; the default 5s drain.)
	tab.conn.Close(websocket.StatusNormalClosure, "")
	srv.signal(os.Interrupt)
	if got, want := srv.wait(30*time.Second), 0; got != want {
		t.Fatalf("exit code after SIGINT: got %d, want %d", got, want)
	}
	again := startOnair(t, dir, env, "--addr", "127.0.0.1:0", "--shutdown-drain", "0s")
	if !strings.Contains(again.stdout.String(), "webhook secret "+secret) {
		t.Fatalf("restart printed %q, want the same webhook secret", again.stdout.String())
	}
	tab2 := openTab(t, again.Addr, token, &position{welcome.Epoch, welcome.Seq})
	if w := tab2.mustNext("welcome"); !w.Resumed || w.Epoch != welcome.Epoch {
		t.Fatalf("welcome after restart: got %+v, want resumed in epoch %q", w, welcome.Epoch)
	}
	if f := tab2.mustNext("meeting.started"); f.Seq != started.Seq {
		t.Fatalf("replayed seq: got %d, want %d", f.Seq, started.Seq)
	}
	if f := tab2.mustNext("meeting.ended"); f.Seq != ended.Seq {
		t.Fatalf("replayed seq: got %d, want %d", f.Seq, ended.Seq)
	}
}

// jsonString is s as a JSON string, as it appears in a response body.
func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func TestTokenSubcommand(t *testing.T) {
	dir := t.TempDir()
	t.Run("no secret anywhere", func(t *testing.T) {
		stdout, stderr, code := runOnair(t, dir, cleanEnv(), "token", "--user", "u1", "--db", filepath.Join(dir, "missing.db"))
		if got, want := code, 2; got != want {
			t.Fatalf("exit code: got %d, want %d", got, want)
		}
		oneLine(t, "stderr", stderr)
		if got, want := stdout, ""; got != want {
			t.Fatalf("stdout: got %q, want %q", got, want)
		}
		if _, err := os.Stat(filepath.Join(dir, "missing.db")); err == nil {
			t.Fatalf("onair token created the database")
		}
	})
	t.Run("no secret in the default database", func(t *testing.T) {
		_, stderr, code := runOnair(t, dir, cleanEnv(), "token", "--user", "u1")
		if got, want := code, 2; got != want {
			t.Fatalf("exit code: got %d, want %d (stderr %q)", got, want, stderr)
		}
		if _, err := os.Stat(filepath.Join(dir, "data")); err == nil {
			t.Fatalf("onair token created ./data")
		}
	})
	t.Run("ONAIR_TOKEN_SECRET", func(t *testing.T) {
		before := time.Now().Add(-time.Second)
		stdout, stderr, code := runOnair(t, dir, cleanEnv("ONAIR_TOKEN_SECRET=first,second"), "token", "--user", "u1", "--ttl", "10m")
		if got, want := code, 0; got != want {
			t.Fatalf("exit code: got %d, want %d (stderr %q)", got, want, stderr)
		}
		var claims jwt.RegisteredClaims
		_, err := jwt.NewParser(jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired()).
			ParseWithClaims(strings.TrimSpace(stdout), &claims, func(*jwt.Token) (any, error) { return []byte("first"), nil })
		if err != nil {
			t.Fatalf("token %q does not verify with the first secret: %v", stdout, err)
		}
		if got, want := claims.Subject, "u1"; got != want {
			t.Fatalf("sub: got %q, want %q", got, want)
		}
		if claims.IssuedAt == nil || claims.IssuedAt.Before(before) {
			t.Fatalf("iat: got %v, want about now", claims.IssuedAt)
		}
		if claims.ExpiresAt == nil || claims.ExpiresAt.Sub(claims.IssuedAt.Time) != 10*time.Minute {
			t.Fatalf("exp: got %v, want iat + 10m", claims.ExpiresAt)
		}
	})
}

// TestBackupWhileServing: a copy taken while the server runs is served by a
// second server, and clients resuming with the old epoch get a fresh snapshot.
func TestBackupWhileServing(t *testing.T) {
	dir := t.TempDir()
	env := cleanEnv()
	db, copyDB := filepath.Join(dir, "live.db"), filepath.Join(dir, "copy.db")
	srv := startOnair(t, dir, env, "--addr", "127.0.0.1:0", "--db", db)
	stdout, stderr, code := runOnair(t, dir, env, "token", "--user", "u1", "--db", db)
	if code != 0 {
		t.Fatalf("onair token: exit %d (stderr %q)", code, stderr)
	}
	token := strings.TrimSpace(stdout)
	tab := openTab(t, srv.Addr, token, nil)
	welcome := tab.mustNext("welcome")
	stdout, stderr, code = runOnair(t, dir, env, "simulate", "started", "--user", "u1", "--url", srv.url("/webhooks/zoom"), "--db", db)
	if code != 0 {
		t.Fatalf("simulate started: exit %d (stdout %q, stderr %q)", code, stdout, stderr)
	}
	uuid := strings.TrimPrefix(lines(stdout)[0], "meeting ")
	started := tab.mustNext("meeting.started")

	stdout, stderr, code = runOnair(t, dir, env, "backup", "--to", copyDB, "--db", db)
	if got, want := code, 0; got != want {
		t.Fatalf("onair backup: exit %d, want %d (stdout %q, stderr %q)", got, want, stdout, stderr)
	}
	t.Run("existing destination", func(t *testing.T) {
		_, stderr, code := runOnair(t, dir, env, "backup", "--to", copyDB, "--db", db)
		if code == 0 {
			t.Fatalf("backup over an existing file: exit 0, want an error")
		}
		oneLine(t, "stderr", stderr)
	})
	t.Run("postgres", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			env  []string
			args []string
		}{
			{"env", cleanEnv("ONAIR_DATABASE_URL=postgres://onair@db/onair"), []string{"backup", "--to", filepath.Join(dir, "pg.db")}},
			{"flag", env, []string{"backup", "--to", filepath.Join(dir, "pg.db"), "--database-url", "postgres://onair@db/onair"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, stderr, code := runOnair(t, dir, tc.env, tc.args...)
				if got, want := code, 2; got != want {
					t.Fatalf("exit code: got %d, want %d (stderr %q)", got, want, stderr)
				}
				oneLine(t, "stderr", stderr)
				if !strings.Contains(stderr, "pg_dump") {
					t.Fatalf("stderr %q does not point to pg_dump", stderr)
				}
			})
		}
	})

	// The original still resumes: what follows is only due to the copy.
	orig := openTab(t, srv.Addr, token, &position{started.Epoch, started.Seq})
	if w := orig.mustNext("welcome"); !w.Resumed {
		t.Fatalf("resume against the original: got %+v, want resumed", w)
	}

	restored := startOnair(t, dir, env, "--addr", "127.0.0.1:0", "--db", copyDB, "--shutdown-drain", "0s")
	tab2 := openTab(t, restored.Addr, token, &position{started.Epoch, started.Seq})
	w := tab2.mustNext("welcome")
	if w.Resumed {
		t.Fatalf("resume against the restored copy: got resumed=true, want a fresh snapshot")
	}
	if w.Epoch == welcome.Epoch {
		t.Fatalf("the copy kept the epoch %q", w.Epoch)
	}
	if len(w.Meetings) != 1 || w.Meetings[0].UUID != uuid || !w.Meetings[0].Live {
		t.Fatalf("snapshot of the copy: got %+v, want the live meeting %q", w.Meetings, uuid)
	}
	// The copy serves webhooks too (its dev secret came along).
	stdout, stderr, code = runOnair(t, dir, env, "simulate", "ended", "--user", "u1", "--url", restored.url("/webhooks/zoom"), "--db", copyDB, "--meeting", uuid)
	if code != 0 {
		t.Fatalf("simulate ended against the copy: exit %d (stdout %q, stderr %q)", code, stdout, stderr)
	}
	if f := tab2.mustNext("meeting.ended"); f.Seq != w.Seq+1 || f.Epoch != w.Epoch {
		t.Fatalf("meeting.ended from the copy: got seq %d epoch %q, want %d %q", f.Seq, f.Epoch, w.Seq+1, w.Epoch)
	}
}

func TestVersion(t *testing.T) {
	stdout, stderr, code := runOnair(t, t.TempDir(), cleanEnv(), "version")
	if got, want := code, 0; got != want {
		t.Fatalf("exit code: got %d, want %d (stderr %q)", got, want, stderr)
	}
	oneLine(t, "stdout", stdout)
	if !strings.HasPrefix(stdout, "onair ") {
		t.Fatalf("stdout: got %q, want \"onair VERSION\"", stdout)
	}
}

// TestSimulateEvents drives every event of `onair simulate` against a
// production server, signing with ZOOM_WEBHOOK_SECRET_TOKEN.
func TestSimulateEvents(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "onair.db")
	env := cleanEnv("ZOOM_WEBHOOK_SECRET_TOKEN=sim-secret", "ONAIR_TOKEN_SECRET=sim-token-secret")
	srv := startOnair(t, dir, env, "--addr", "127.0.0.1:0", "--db", db, "--shutdown-drain", "0s")
	url := srv.url("/webhooks/zoom")
	simulate := func(env []string, args ...string) (string, int) {
		t.Helper()
		stdout, stderr, code := runOnair(t, dir, env, append(append([]string{"simulate"}, args...), "--url", url, "--db", db)...)
		if code != 0 && code != 1 {
			t.Fatalf("simulate %s: exit %d (stderr %q)", strings.Join(args, " "), code, stderr)
		}
		return stdout, code
	}
	tabs := map[string]*wsTab{}
	for _, u := range []string{"host-u1", "guest-u2"} {
		stdout, stderr, code := runOnair(t, dir, env, "token", "--user", u)
		if code != 0 {
			t.Fatalf("onair token: exit %d (stderr %q)", code, stderr)
		}
		tabs[u] = openTab(t, srv.Addr, strings.TrimSpace(stdout), nil)
		tabs[u].mustNext("welcome")
	}

	stdout, code := simulate(env, "started", "--user", "host-u1", "--topic", "Standup")
	if code != 0 || len(lines(stdout)) != 2 {
		t.Fatalf("simulate started: exit %d, printed %q", code, stdout)
	}
	uuid := strings.TrimPrefix(lines(stdout)[0], "meeting ")
	if f := tabs["host-u1"].mustNext("meeting.started"); f.Meeting.UUID != uuid || f.Meeting.Topic != "Standup" {
		t.Fatalf("meeting.started: got %+v, want %q with topic Standup", f.Meeting, uuid)
	}
	for _, step := range []struct {
		args  []string
		user  string
		frame string
		role  string
	}{
		{[]string{"joined", "--user", "guest-u2", "--meeting", uuid}, "guest-u2", "meeting.joined", "participant"},
		{[]string{"left", "--user", "guest-u2", "--meeting", uuid}, "guest-u2", "meeting.left", "participant"},
		{[]string{"ended", "--user", "host-u1"}, "host-u1", "meeting.ended", "host"},
	} {
		t.Run(step.args[0], func(t *testing.T) {
			stdout, code := simulate(env, step.args...)
			if got, want := code, 0; got != want || strings.TrimSpace(stdout) != "200 OK" {
				t.Fatalf("exit %d printing %q, want %d and 200 OK", got, stdout, want)
			}
			f := tabs[step.user].mustNext(step.frame)
			if f.Meeting.UUID != uuid || f.Meeting.Role != step.role || f.Meeting.HostID != "host-u1" {
				t.Fatalf("%s: got %+v, want meeting %q as %s", step.frame, f.Meeting, uuid, step.role)
			}
		})
	}
	t.Run("deauthorized", func(t *testing.T) {
		stdout, code := simulate(env, "deauthorized", "--user", "host-u1")
		if code != 0 || strings.TrimSpace(stdout) != "200 OK" {
			t.Fatalf("exit %d printing %q, want 0 and 200 OK", code, stdout)
		}
		if got, want := tabs["host-u1"].closeCode(10*time.Second), websocket.StatusCode(4401); got != want {
			t.Fatalf("host's tab: close code %d, want %d", got, want)
		}
	})
	t.Run("signs with the first secret", func(t *testing.T) {
		// The server knows only sim-secret: a signature with "other" is refused.
		stdout, code := simulate(cleanEnv("ZOOM_WEBHOOK_SECRET_TOKEN=other,sim-secret"), "started", "--user", "guest-u2")
		if got, want := code, 1; got != want {
			t.Fatalf("exit code: got %d, want %d", got, want)
		}
		if !strings.Contains(stdout, "401 Unauthorized") {
			t.Fatalf("stdout: got %q, want the status 401 Unauthorized", stdout)
		}
		// A refused start is not remembered as the user's last meeting.
		_, stderr, code := runOnair(t, dir, env, "simulate", "ended", "--user", "guest-u2", "--url", url, "--db", db)
		if got, want := code, 2; got != want {
			t.Fatalf("simulate ended after a refused start: exit %d, want %d (stderr %q)", got, want, stderr)
		}
	})
	t.Run("server unreachable", func(t *testing.T) {
		_, stderr, code := runOnair(t, dir, env, "simulate", "started", "--user", "guest-u2", "--url", "http://127.0.0.1:1/webhooks/zoom", "--db", db)
		if got, want := code, 1; got != want {
			t.Fatalf("exit code: got %d, want %d", got, want)
		}
		oneLine(t, "stderr", stderr)
	})
}

// TestHealthcheck: the container image's HEALTHCHECK command.
func TestHealthcheck(t *testing.T) {
	dir := t.TempDir()
	env := cleanEnv("ZOOM_WEBHOOK_SECRET_TOKEN=hc-secret")
	srv := startOnair(t, dir, env, "--addr", "127.0.0.1:0", "--db", filepath.Join(dir, "onair.db"), "--shutdown-drain", "0s")
	for _, tc := range []struct {
		name string
		url  string
		want int
	}{
		{"healthy", srv.url("/healthz"), 0},
		{"ready", srv.url("/readyz"), 0},
		{"not 2xx", srv.url("/no-such-page"), 1},
		{"unreachable", "http://127.0.0.1:1/healthz", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code := runOnair(t, dir, env, "healthcheck", "--url", tc.url)
			if got, want := code, tc.want; got != want {
				t.Fatalf("exit code: got %d, want %d (stderr %q)", got, want, stderr)
			}
			if code != 0 {
				oneLine(t, "stderr", stderr)
			}
		})
	}
}
