package main

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"onair/store"
	"onair/web"
	"onair/zoom"
)

// TestMetricsListener (CONTRACT §6): with --metrics-addr, /metrics is served
// there and is 404 on the public server; without it, on the public server.
func TestMetricsListener(t *testing.T) {
	dir := t.TempDir()
	secret := []byte("metrics-webhook-secret")
	env := cleanEnv("ZOOM_WEBHOOK_SECRET_TOKEN="+string(secret), "ONAIR_TOKEN_SECRET=metrics-token-secret")
	t.Run("separate listener", func(t *testing.T) {
		srv := startOnair(t, dir, env, "--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0",
			"--db", filepath.Join(dir, "a.db"), "--shutdown-drain", "0s")
		if srv.MetricsAddr == "" || srv.MetricsAddr == srv.Addr || strings.HasSuffix(srv.MetricsAddr, ":0") {
			t.Fatalf("metrics_addr in the listening line: got %q, want the bound address of its own listener", srv.MetricsAddr)
		}
		for _, path := range []string{"/metrics", "/debug/pprof/"} {
			if code, _ := httpGet(t, srv.url(path)); code != http.StatusNotFound {
				t.Errorf("public %s: got %d, want 404", path, code)
			}
		}
		code, body := httpGet(t, "http://"+srv.MetricsAddr+"/metrics")
		if code != http.StatusOK {
			t.Fatalf("metrics listener /metrics: got %d, want 200", code)
		}
		// Every documented label value is there from start-up, at 0.
		var want []string
		for _, e := range append(append([]string{}, zoom.KnownEvents...), "other", "unverified") {
			for _, o := range []string{"accepted", "duplicate", "ignored", "rejected", "failed"} {
				want = append(want, `onair_webhooks_total{event="`+e+`",outcome="`+o+`"} 0`)
			}
		}
		for _, r := range []string{"client", "slow_consumer", "auth", "hello_timeout", "protocol", "ping_timeout",
			"too_many_tabs", "deauthorized", "logout", "shutdown"} {
			want = append(want, `onair_ws_disconnects_total{reason="`+r+`"} 0`)
		}
		for _, o := range []string{"dispatched", "retried", "failed", "cancelled"} {
			want = append(want, `onair_bot_requests_total{outcome="`+o+`"} 0`)
		}
		for _, typ := range []string{"meeting.started", "meeting.ended", "meeting.joined", "meeting.left", "bot.updated"} {
			want = append(want, `onair_ws_messages_sent_total{type="`+typ+`"} 0`)
		}
		want = append(want, "onair_webhook_duration_seconds_count 0", "onair_webhook_last_received_timestamp_seconds 0",
			"onair_push_latency_seconds_count 0", "onair_ws_connections 0", "onair_live_meetings 0",
			"go_goroutines ", "process_start_time_seconds ")
		for _, w := range want {
			if !strings.Contains(body, "\n"+w) {
				t.Errorf("/metrics at start-up lacks %q", w)
			}
		}
		if code, _ := httpGet(t, "http://"+srv.MetricsAddr+"/debug/pprof/"); code != http.StatusOK {
			t.Errorf("metrics listener /debug/pprof/: got %d, want 200", code)
		}

		// What happens on the public server shows on the metrics listener.
		status, _, err := postWebhook(context.Background(), http.DefaultClient, srv.url("/webhooks/zoom"), secret,
			meetingBody(zoom.EventMeetingStarted, "metrics-meeting", "metrics-host", time.Now()))
		if err != nil || status != http.StatusOK {
			t.Fatalf("webhook: got %d %v, want 200", status, err)
		}
		_, body = httpGet(t, "http://"+srv.MetricsAddr+"/metrics")
		for _, w := range []string{`onair_webhooks_total{event="meeting.started",outcome="accepted"} 1`, "onair_live_meetings 1"} {
			if !strings.Contains(body, "\n"+w+"\n") {
				t.Errorf("/metrics after a webhook lacks %q", w)
			}
		}
		srv.signal(syscall.SIGTERM)
		if got, want := srv.wait(30*time.Second), 0; got != want {
			t.Fatalf("exit code: got %d, want %d", got, want)
		}
	})
	t.Run("public server", func(t *testing.T) {
		srv := startOnair(t, dir, env, "--addr", "127.0.0.1:0", "--db", filepath.Join(dir, "b.db"), "--shutdown-drain", "0s")
		if got, want := srv.MetricsAddr, ""; got != want {
			t.Fatalf("metrics_addr: got %q, want %q", got, want)
		}
		if code, body := httpGet(t, srv.url("/metrics")); code != http.StatusOK || !strings.Contains(body, "onair_webhooks_total") {
			t.Fatalf("public /metrics: got %d, want 200 with onair_webhooks_total", code)
		}
		if code, _ := httpGet(t, srv.url("/debug/pprof/")); code != http.StatusNotFound {
			t.Fatalf("public /debug/pprof/: got %d, want 404", code)
		}
	})
}

// TestNoSecretsInLogs (CONTRACT §1): no secret, token or signature is ever
// logged, whatever requests come in; in production nothing secret is printed.
func TestNoSecretsInLogs(t *testing.T) {
	dir := t.TempDir()
	secrets := map[string]string{
		"ZOOM_WEBHOOK_SECRET_TOKEN": "whsec-Alpha-7f3a,whsec-Beta-19c2",
		"ONAIR_TOKEN_SECRET":        "toksec-Gamma-55d1,toksec-Delta-0b7e",
		"ONAIR_SECRET_KEY":          "a2V5LWZvci10aGUtbm8tc2VjcmV0cy10ZXN0LTMyYiE=",
		"ZOOM_CLIENT_SECRET":        "zcsec-Epsilon-a4e8",
		"ONAIR_BOT_WEBHOOK_SECRET":  "botsec-Zeta-6d90",
	}
	env := cleanEnv("ZOOM_CLIENT_ID=client-id", "ONAIR_BOT_WEBHOOK_URL=http://127.0.0.1:1/bots")
	var forbidden []string // what must never appear in stdout or stderr
	for k, v := range secrets {
		env = append(env, k+"="+v)
		forbidden = append(forbidden, strings.Split(v, ",")...)
	}
	srv := startOnair(t, dir, env, "--addr", "127.0.0.1:0", "--db", filepath.Join(dir, "onair.db"),
		"--shutdown-drain", "0s", "--log-level", "debug")
	webhookURL := srv.url("/webhooks/zoom")
	client := &http.Client{Timeout: 10 * time.Second}
	ctx := context.Background()
	post := func(name string, ts, sig string, body []byte, want int) {
		t.Helper()
		forbidden = append(forbidden, sig)
		if len(sig) > 3 {
			forbidden = append(forbidden, sig[3:])
		}
		status, err := postWithSignature(ctx, client, webhookURL, ts, sig, body)
		if err != nil || status != want {
			t.Fatalf("%s: got %d %v, want %d", name, status, err, want)
		}
	}
	now := strconv.FormatInt(time.Now().Unix(), 10)
	stale := strconv.FormatInt(time.Now().Add(-time.Hour).Unix(), 10)
	started := meetingBody(zoom.EventMeetingStarted, "logs-meeting", "logs-host", time.Now())
	for _, s := range strings.Split(secrets["ZOOM_WEBHOOK_SECRET_TOKEN"], ",") {
		post("signed with "+s, now, zoom.Sign([]byte(s), now, started), started, http.StatusOK)
	}
	post("signed with a wrong secret", now, zoom.Sign([]byte("not-the-secret"), now, started), started, http.StatusUnauthorized)
	post("garbage signature", now, "v0=deadbeef", started, http.StatusUnauthorized)
	post("stale timestamp", stale, zoom.Sign([]byte("whsec-Alpha-7f3a"), stale, started), started, http.StatusUnauthorized)
	notJSON := []byte("not json")
	post("signed garbage", now, zoom.Sign([]byte("whsec-Beta-19c2"), now, notJSON), notJSON, http.StatusBadRequest)
	validation := []byte(`{"event":"endpoint.url_validation","event_ts":1,"payload":{"plainToken":"plain-Eta-31"}}`)
	sig := zoom.Sign([]byte("whsec-Beta-19c2"), now, validation)
	forbidden = append(forbidden, sig, zoom.EncryptToken([]byte("whsec-Beta-19c2"), "plain-Eta-31"))
	if status, err := postWithSignature(ctx, client, webhookURL, now, sig, validation); err != nil || status != http.StatusOK {
		t.Fatalf("url validation: got %d %v, want 200", status, err)
	}

	// Tokens: good ones (both secrets verify), and bad ones of every kind.
	mint := func(key string, user string, ttl time.Duration) string {
		tok, err := web.MintToken([]byte(key), user, ttl, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		forbidden = append(forbidden, tok)
		return tok
	}
	good := mint("toksec-Gamma-55d1", "logs-host", time.Hour)
	good2 := mint("toksec-Delta-0b7e", "logs-host", time.Hour)
	badKey := mint("wrong-token-secret", "logs-host", time.Hour)
	expired := mint("toksec-Gamma-55d1", "logs-host", -time.Minute)
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "logs-host", "exp": time.Now().Add(time.Hour).Unix()}).
		SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	forbidden = append(forbidden, none, "garbage-token-Theta-88")
	for _, tok := range []string{good, good2} {
		tab := openTab(t, srv.Addr, tok, nil)
		if w := tab.mustNext("welcome"); len(w.Meetings) != 1 {
			t.Fatalf("welcome: got %+v, want the live meeting", w)
		}
		tab.conn.Close(websocket.StatusNormalClosure, "")
		if code, _ := httpGet(t, srv.url("/api/v1/me"), "Authorization", "Bearer "+tok); code != http.StatusOK {
			t.Fatalf("/api/v1/me with a good token: got %d, want 200", code)
		}
	}
	for _, tok := range []string{badKey, expired, none, "garbage-token-Theta-88"} {
		tab := openTab(t, srv.Addr, tok, nil)
		if got, want := tab.closeCode(10*time.Second), websocket.StatusCode(4401); got != want {
			t.Fatalf("bad token: close code %d, want %d", got, want)
		}
		if code, _ := httpGet(t, srv.url("/api/v1/me"), "Authorization", "Bearer "+tok); code != http.StatusUnauthorized {
			t.Fatalf("/api/v1/me with a bad token: got %d, want 401", code)
		}
	}
	// A malformed hello that carries a token.
	tab := openTab(t, srv.Addr, good, nil)
	tab.mustNext("welcome")
	tab.conn.Close(websocket.StatusNormalClosure, "")
	raw, err := dialTab("", srv.Addr, `{"type":"helo","token":"`+good+`"}`)
	if err != nil {
		t.Fatalf("malformed hello: %v", err)
	}
	raw.t = t
	defer raw.conn.CloseNow()
	if got, want := raw.closeCode(10*time.Second), websocket.StatusCode(4400); got != want {
		t.Fatalf("malformed hello: close code %d, want %d", got, want)
	}

	srv.signal(syscall.SIGTERM)
	if got, want := srv.wait(30*time.Second), 0; got != want {
		t.Fatalf("exit code: got %d, want %d", got, want)
	}
	stdout, stderr := srv.stdout.String(), srv.stderr.String()
	if got, want := stdout, ""; got != want {
		t.Fatalf("production stdout: got %q, want nothing", got)
	}
	for _, f := range forbidden {
		if strings.Contains(stderr, f) {
			t.Errorf("the logs hold %q", f)
		}
	}
	for _, l := range lines(stderr) {
		if !json.Valid([]byte(l)) {
			t.Errorf("log line is not JSON: %q", l)
		}
	}
}

// TestDevModeSecrets: dev mode prints its webhook secret on stdout, once,
// and nothing else secret anywhere; the subcommands find the secrets.
func TestDevModeSecrets(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "onair.db")
	env := cleanEnv()
	srv := startOnair(t, dir, env, "--addr", "127.0.0.1:0", "--db", db, "--shutdown-drain", "0s", "--log-level", "debug")
	webhookSecret, err := store.LookupSecret(context.Background(), store.Options{Path: db}, "webhook")
	if err != nil {
		t.Fatalf("dev webhook secret: %v", err)
	}
	tokenSecret, err := store.LookupSecret(context.Background(), store.Options{Path: db}, "token")
	if err != nil {
		t.Fatalf("dev token secret: %v", err)
	}
	if got, want := strings.Count(srv.stdout.String(), webhookSecret), 1; got != want {
		t.Fatalf("stdout shows the webhook secret %d times, want %d: %q", got, want, srv.stdout.String())
	}
	out, _, code := runOnair(t, dir, env, "token", "--user", "dev-user", "--db", db)
	if code != 0 {
		t.Fatalf("onair token: exit %d", code)
	}
	token := strings.TrimSpace(out)
	tab := openTab(t, srv.Addr, token, nil)
	tab.mustNext("welcome")
	if out, errOut, code := runOnair(t, dir, env, "simulate", "started", "--user", "dev-user", "--url", srv.url("/webhooks/zoom"), "--db", db); code != 0 {
		t.Fatalf("simulate: exit %d (%q %q)", code, out, errOut)
	}
	tab.mustNext("meeting.started")
	// A request signed with the dev secret by hand: its signature must not be logged either.
	body := meetingBody(zoom.EventMeetingEnded, "dev-meeting", "dev-user", time.Now())
	status, sig, err := postWebhook(context.Background(), http.DefaultClient, srv.url("/webhooks/zoom"), []byte(webhookSecret), body)
	if err != nil || status != http.StatusOK {
		t.Fatalf("webhook signed with the dev secret: got %d %v", status, err)
	}
	tab.conn.Close(websocket.StatusNormalClosure, "")
	srv.signal(syscall.SIGTERM)
	if got, want := srv.wait(30*time.Second), 0; got != want {
		t.Fatalf("exit code: got %d, want %d", got, want)
	}
	stdout, stderr := srv.stdout.String(), srv.stderr.String()
	for _, f := range []string{webhookSecret, tokenSecret, token, sig, sig[3:]} {
		if strings.Contains(stderr, f) {
			t.Errorf("the logs hold %q", f)
		}
	}
	for _, f := range []string{tokenSecret, token, sig, sig[3:]} {
		if strings.Contains(stdout, f) {
			t.Errorf("stdout holds %q", f)
		}
	}
	if got, want := strings.Count(stdout, webhookSecret), 1; got != want {
		t.Errorf("stdout shows the webhook secret %d times after the run, want %d", got, want)
	}
}
