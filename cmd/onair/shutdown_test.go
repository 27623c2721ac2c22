package main

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"onair/web"
	"onair/zoom"
)

// TestGracefulShutdown (CONTRACT §6): on SIGTERM /readyz turns 503 at once
// while health checks, webhooks and new sockets are still served for the
// drain; then the sockets are closed with 1012 and the process exits 0.
func TestGracefulShutdown(t *testing.T) {
	dir := t.TempDir()
	secret, tokenSecret := []byte("shutdown-webhook-secret"), []byte("shutdown-token-secret")
	env := cleanEnv("ZOOM_WEBHOOK_SECRET_TOKEN="+string(secret), "ONAIR_TOKEN_SECRET="+string(tokenSecret))
	srv := startOnair(t, dir, env, "--addr", "127.0.0.1:0", "--db", dir+"/onair.db", "--shutdown-drain", "1s")
	token, err := web.MintToken(tokenSecret, "host1", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if code, body := httpGet(t, srv.url("/readyz")); code != http.StatusOK {
		t.Fatalf("/readyz before SIGTERM: got %d %s, want 200", code, body)
	}
	old := openTab(t, srv.Addr, token, nil)
	welcome := old.mustNext("welcome")
	// A keep-alive client, as Zoom's: its connection is open before the signal.
	client := &http.Client{Timeout: 5 * time.Second}
	if code, _, err := postWebhook(context.Background(), client, srv.url("/webhooks/zoom"), secret,
		meetingBody(zoom.EventMeetingStarted, "before-term", "host1", time.Now())); err != nil || code != http.StatusOK {
		t.Fatalf("webhook before SIGTERM: got %d %v, want 200", code, err)
	}
	old.mustNext("meeting.started")

	// A webhook in flight when the drain ends: its headers and half its body
	// arrive now, the rest only after the sockets were closed.
	inflight := meetingBody(zoom.EventMeetingStarted, "in-flight", "host1", time.Now())
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	pr, pw := io.Pipe()
	req, err := http.NewRequest(http.MethodPost, srv.url("/webhooks/zoom"), pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(zoom.HeaderTimestamp, ts)
	req.Header.Set(zoom.HeaderSignature, zoom.Sign(secret, ts, inflight))
	inflightStatus := make(chan string, 1)
	go func() {
		resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
		if err != nil {
			inflightStatus <- err.Error()
			return
		}
		resp.Body.Close()
		inflightStatus <- resp.Status
	}()
	if _, err := pw.Write(inflight[:len(inflight)/2]); err != nil {
		t.Fatal(err)
	}

	srv.signal(syscall.SIGTERM)
	termAt := time.Now()

	// /readyz turns 503 at once: well before the drain is over.
	for {
		code, _ := httpGet(t, srv.url("/readyz"))
		if code == http.StatusServiceUnavailable {
			break
		}
		if time.Since(termAt) > time.Second {
			t.Fatalf("/readyz still %d %v after SIGTERM, want 503 at once", code, time.Since(termAt))
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Everything else is still served during the drain.
	if code, body := httpGet(t, srv.url("/healthz")); code != http.StatusOK {
		t.Fatalf("/healthz while draining: got %d %s, want 200", code, body)
	}
	if code, _, err := postWebhook(context.Background(), client, srv.url("/webhooks/zoom"), secret,
		meetingBody(zoom.EventMeetingStarted, "while-draining", "host1", time.Now())); err != nil || code != http.StatusOK {
		t.Fatalf("webhook while draining: got %d %v, want 200", code, err)
	}
	if f := old.mustNext("meeting.started"); f.Meeting == nil || f.Meeting.UUID != "while-draining" {
		t.Fatalf("frame while draining: got %+v, want meeting.started while-draining", f)
	}
	fresh := openTab(t, srv.Addr, token, &position{welcome.Epoch, welcome.Seq})
	if w := fresh.mustNext("welcome"); !w.Resumed {
		t.Fatalf("new socket while draining: got %+v, want a resumed welcome", w)
	}
	fresh.mustNext("meeting.started")
	fresh.mustNext("meeting.started")

	// After the drain: 1012 for every socket, then exit 0.
	for name, tab := range map[string]*wsTab{"socket opened before SIGTERM": old, "socket opened while draining": fresh} {
		if got, want := tab.closeCode(20*time.Second), websocket.StatusServiceRestart; got != want {
			t.Fatalf("%s: close code %d, want %d", name, got, want)
		}
	}
	if elapsed := time.Since(termAt); elapsed < time.Second {
		t.Fatalf("sockets closed %v after SIGTERM, before the 1s drain was over", elapsed)
	}
	// The request in flight finishes: answered, 200 (committed) or 503 (Zoom retries).
	if _, err := pw.Write(inflight[len(inflight)/2:]); err != nil {
		t.Fatalf("the rest of the webhook in flight: %v", err)
	}
	pw.Close()
	select {
	case status := <-inflightStatus:
		t.Logf("webhook in flight at the end of the drain: %s", status)
		if status != "200 OK" && status != "503 Service Unavailable" {
			t.Fatalf("webhook in flight at the end of the drain: got %q, want 200 or 503", status)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("webhook in flight at the end of the drain: no answer")
	}
	if got, want := srv.wait(30*time.Second), 0; got != want {
		t.Fatalf("exit code after SIGTERM: got %d, want %d", got, want)
	}
	if _, err := tryOpenTab(srv.Addr, token, nil); err == nil {
		t.Fatalf("a socket opened after the process exited")
	}
	for _, want := range []string{"shutting down: draining", "stopped"} {
		if !strings.Contains(srv.stderr.String(), want) {
			t.Errorf("logs lack %q", want)
		}
	}
}

// TestSignalDuringStartup: a SIGTERM that comes while onair is still
// starting (here: before run is even called) is a stop like any other:
// no error line, exit 0.
func TestSignalDuringStartup(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
	}{
		{"dev", nil},
		{"production", map[string]string{"ZOOM_WEBHOOK_SECRET_TOKEN": "whsec", "ONAIR_TOKEN_SECRET": "toksec"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			var stdout, stderr lockedBuffer
			code := run(ctx, []string{"--addr", "127.0.0.1:0", "--db", t.TempDir() + "/onair.db", "--shutdown-drain", "0s"},
				mapEnv(tc.env), &stdout, &stderr)
			if got, want := code, 0; got != want {
				t.Fatalf("exit code: got %d, want %d (stderr %q)", got, want, stderr.String())
			}
			for _, l := range lines(stderr.String()) {
				if !strings.HasPrefix(l, "{") {
					t.Fatalf("stderr holds a non-log line: %q", l)
				}
			}
		})
	}
}
