package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"onair/web"
	"onair/zoom"
)

// The README's example launcher, built and run as an operator would, with
// the real binary sending it a bot request: first while the launcher is
// down, across a SIGKILL and restart of onair, then up. The request arrives
// once the launcher is up, with the one request id it always had, and the
// launcher's signature check accepts it.
func TestReadmeLauncherAcrossARestart(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)A launcher that verifies the signature.*?```go\n(.*?)```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README: no example launcher")
	}
	launcherPort := freePort(t)
	src := strings.Replace(string(m[1]), "127.0.0.1:9000", fmt.Sprintf("127.0.0.1:%d", launcherPort), 1)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644)
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module launcher\n\ngo 1.26\n"), 0o644)
	build := exec.Command("go", "build", "-o", "launcher", ".")
	build.Dir = dir
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("the README's launcher does not build: %v\n%s", err, out)
	}

	secret, tokenSecret := "launcher-secret", []byte("launcher-token-secret")
	port := freePort(t)
	env := cleanEnv("ZOOM_WEBHOOK_SECRET_TOKEN=wh-secret", "ONAIR_TOKEN_SECRET="+string(tokenSecret),
		"ONAIR_BOT_WEBHOOK_URL="+fmt.Sprintf("http://127.0.0.1:%d/bot", launcherPort), "ONAIR_BOT_WEBHOOK_SECRET="+secret)
	args := []string{"serve", "--addr", fmt.Sprintf("127.0.0.1:%d", port), "--db", filepath.Join(dir, "onair.db"), "--shutdown-drain", "0s"}
	srv := startOnair(t, dir, env, args...)
	base := "http://" + srv.Addr

	token, _ := web.MintToken(tokenSecret, "host1", time.Hour, time.Now())
	tab := openTab(t, srv.Addr, token, nil)
	tab.mustNext("welcome")
	const uuid = "launch/Er+=="
	if status, _, err := postWebhook(context.Background(), http.DefaultClient, base+"/webhooks/zoom", []byte("wh-secret"),
		meetingBody(zoom.EventMeetingStarted, uuid, "host1", time.Now())); err != nil || status != 200 {
		t.Fatalf("webhook: %d %v", status, err)
	}
	tab.mustNext("meeting.started")
	req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/meetings/"+url.PathEscape(uuid)+"/bot", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("request the bot: %v %v", resp.Status, err)
	}
	resp.Body.Close()
	requested := tab.mustNext("bot.updated")
	if requested.Bot == nil || requested.Bot.State != "requested" {
		t.Fatalf("bot.updated %+v", requested.Bot)
	}

	// The launcher is down: onair tries and fails, then is killed mid-retries.
	time.Sleep(1500 * time.Millisecond)
	srv.kill()
	srv = startOnair(t, dir, env, args...)

	launcher := exec.Command(filepath.Join(dir, "launcher"))
	launcher.Env = append(os.Environ(), "ONAIR_BOT_WEBHOOK_SECRET="+secret)
	stderr, _ := launcher.StderrPipe()
	if err := launcher.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { launcher.Process.Kill(); launcher.Wait() })
	got := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			got <- sc.Text()
		}
	}()
	select {
	case line := <-got:
		if !strings.HasSuffix(line, " "+requested.Bot.RequestID) {
			t.Fatalf("the launcher logged %q, want the request %s", line, requested.Bot.RequestID)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the request never reached the launcher after the restart")
	}
	// Reconnected, the tab sees it dispatched.
	tab = openTab(t, srv.Addr, token, nil)
	deadline := time.Now().Add(10 * time.Second)
	for {
		w := tab.mustNext("welcome")
		if strings.Contains(fmt.Sprint(w.Bots), "dispatched") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bots after the delivery: %v", w.Bots)
		}
		tab.conn.CloseNow()
		time.Sleep(100 * time.Millisecond)
		tab = openTab(t, srv.Addr, token, nil)
	}
	select {
	case line := <-got:
		t.Fatalf("the launcher got a second request: %s", line)
	case <-time.After(500 * time.Millisecond):
	}
}
