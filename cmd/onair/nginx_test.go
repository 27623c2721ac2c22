package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"onair/internal/testpg"
	"onair/web"
	"onair/zoom"
)

// The nginx test runs Debian's nginx with docs/nginx.conf, the file as it
// stands but for the example values its header names, in front of two
// onair nodes on one PostgreSQL database. Outside CI a machine without
// nginx skips it (saying so); under CI (CI=true) that is a failure.

// nginxDocsConf is the example configuration the test runs.
const nginxDocsConf = "../../docs/nginx.conf"

// nginxPath finds the nginx binary (Debian puts it in /usr/sbin, which a
// user's PATH may lack).
func nginxPath(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	if fi, err := os.Stat("/usr/sbin/nginx"); err == nil && !fi.IsDir() {
		return "/usr/sbin/nginx"
	}
	if os.Getenv("CI") != "" {
		t.Fatal("nginx is not installed (apt-get install nginx): the nginx test cannot run")
	}
	t.Skip("nginx is not installed (apt-get install nginx): skipping the nginx test")
	return ""
}

// TestNginx: docs/nginx.conf in front of two nodes passes webhooks with
// their bodies and signature headers untouched (up to onair's 1 MiB limit),
// upgrades sockets and keeps them open across onair's pings, spreads tabs
// over the nodes, and hands request URIs over unchanged, so a meeting uuid
// with "/" (sent as %2F) reaches onair whole, in the bot API and in frames.
// Then a node restarts and another dies while Zoom delivers: every
// delivery is answered 200 and every tab ends with every frame, once.
func TestNginx(t *testing.T) {
	bin := nginxPath(t)
	dbURL := testpg.URL(t)
	secret, tokenSecret := []byte("nginx-webhook-secret"), []byte("nginx-token-secret")
	env := cleanEnv("ZOOM_WEBHOOK_SECRET_TOKEN="+string(secret), "ONAIR_TOKEN_SECRET="+string(tokenSecret),
		"ONAIR_DATABASE_URL="+dbURL)
	// Fixed ports, so a node restarts where nginx expects it; pings every
	// second, so a few seconds of socket cross several of them.
	nodeArgs := func(port int) []string {
		return []string{"--addr", fmt.Sprintf("127.0.0.1:%d", port), "--ping-interval", "1s", "--shutdown-drain", "1s"}
	}
	ports := []int{freePort(t), freePort(t)}
	var nodes []*onairProc
	for _, port := range ports { // started together: they also migrate the new schema together
		nodes = append(nodes, launchOnair(t, t.TempDir(), env, nodeArgs(port)...))
	}
	var addrs []string
	for i, n := range nodes {
		if err := n.waitListening(60 * time.Second); err != nil {
			t.Fatalf("node %d: %v\nstderr:\n%s", i+1, err, tail(n.stderr.String()))
		}
		addrs = append(addrs, n.Addr)
	}
	docs, err := os.ReadFile(nginxDocsConf)
	if err != nil {
		t.Fatal(err)
	}
	px := startNginx(t, bin, string(docs), addrs)
	parent := t // for what outlives a subtest

	token := func(t *testing.T, user string) string {
		t.Helper()
		tok, err := web.MintToken(tokenSecret, user, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	webhook := func(t *testing.T, event, uuid, host string) {
		t.Helper()
		if code, _ := px.postWebhook(t, secret, meetingBody(event, uuid, host, time.Now())); code != http.StatusOK {
			t.Fatalf("webhook %s %q through nginx: got %d, want 200", event, uuid, code)
		}
	}

	t.Run("WebhooksAndTabsOnBothNodes", func(t *testing.T) {
		// Two tabs through nginx, nothing else open: one lands on each node.
		user := "nginx-user"
		tabs := []*proxiedTab{px.openTab(t, token(t, user)), px.openTab(t, token(t, user))}
		for _, tab := range tabs {
			if w := tab.mustNext(t, "welcome"); w.User != user {
				t.Fatalf("welcome through nginx: got user %q, want %q", w.User, user)
			}
		}
		for i, n := range nodes {
			if got := metric(t, n, "onair_ws_connections"); got != 1 {
				t.Errorf("node %d holds %v sockets, want 1: nginx should spread two tabs over two nodes", i+1, got)
			}
		}

		// Zoom's URL validation: onair's answer comes back unchanged.
		plain := "nginx-plain-token"
		body, _ := json.Marshal(map[string]any{"event": "endpoint.url_validation", "event_ts": time.Now().UnixMilli(),
			"payload": map[string]any{"plainToken": plain}})
		code, answer := px.postWebhook(t, secret, body)
		var v struct{ PlainToken, EncryptedToken string }
		if err := json.Unmarshal([]byte(answer), &v); code != http.StatusOK || err != nil ||
			v.PlainToken != plain || v.EncryptedToken != zoom.EncryptToken(secret, plain) {
			t.Fatalf("url validation through nginx: got %d %s, want 200 with the token encrypted with the secret", code, answer)
		}
		// A signature onair does not accept is still refused: onair, not
		// nginx, judges the headers and the body.
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		if code, _ := px.post(t, "/webhooks/zoom", ts, zoom.Sign([]byte("another secret"), ts, body), body); code != http.StatusUnauthorized {
			t.Fatalf("webhook with a wrong signature through nginx: got %d, want 401", code)
		}

		// A meeting's frames reach both tabs, whichever node took the webhook.
		webhook(t, zoom.EventMeetingStarted, "nginx-meeting", user)
		for _, tab := range tabs {
			if f := tab.mustNext(t, "meeting.started"); f.Meeting == nil || f.Meeting.UUID != "nginx-meeting" {
				t.Fatalf("frame through nginx: got %s, want meeting.started of nginx-meeting", f.raw)
			}
		}
		webhook(t, zoom.EventMeetingEnded, "nginx-meeting", user)
		for _, tab := range tabs {
			tab.mustNext(t, "meeting.ended")
		}
	})

	// Sockets held open for several seconds while the other subtests run:
	// one through docs/nginx.conf, one through the same configuration with
	// the sockets' proxy_read_timeout cut to 3 s, shorter than the hold:
	// only onair's pings, each restarting nginx's timer, keep it open.
	holdUser := "nginx-hold-user"
	short := strings.Replace(string(docs), "proxy_read_timeout 90s;", "proxy_read_timeout 3s;", 1)
	if short == string(docs) {
		t.Fatalf("%s no longer has %q (the sockets' read timeout the test shortens)", nginxDocsConf, "proxy_read_timeout 90s;")
	}
	pxShort := startNginx(t, bin, short, addrs)
	held := []*proxiedTab{px.openTab(t, token(t, holdUser)), pxShort.openTab(t, token(t, holdUser))}
	for _, tab := range held {
		tab.mustNext(t, "welcome")
	}
	heldSince := time.Now()

	t.Run("WebhookBodyLimit", func(t *testing.T) {
		// Exactly 1 MiB passes nginx and onair; one byte more is 413.
		for _, c := range []struct {
			size int
			want int
		}{{1 << 20, http.StatusOK}, {1<<20 + 1, http.StatusRequestEntityTooLarge}} {
			body := paddedWebhook(t, c.size, "nginx-big-"+strconv.Itoa(c.size), "nginx-big-host")
			if code, answer := px.postWebhook(t, secret, body); code != c.want {
				t.Errorf("webhook of %d bytes through nginx: got %d %.200s, want %d", c.size, code, answer, c.want)
			}
		}
	})

	t.Run("SlashInMeetingUUID", func(t *testing.T) {
		// Zoom's uuids are base64: "/" and "+" and "=" occur, "//" too.
		user, uuid := "nginx-slash-user", "/nginx+uuid//with/slashes=="
		tab := px.openTab(t, token(t, user))
		tab.mustNext(t, "welcome")
		webhook(t, zoom.EventMeetingStarted, uuid, user)
		if f := tab.mustNext(t, "meeting.started"); f.Meeting == nil || f.Meeting.UUID != uuid {
			t.Fatalf("meeting.started through nginx: got %s, want uuid %q", f.raw, uuid)
		}

		path := "/api/v1/meetings/" + url.PathEscape(uuid) + "/bot"
		if want := "/api/v1/meetings/%2Fnginx+uuid%2F%2Fwith%2Fslashes==/bot"; path != want {
			t.Fatalf("escaped path: got %s, want %s", path, want)
		}
		code, answer := px.api(t, http.MethodPost, path, token(t, user))
		var got struct{ Bot botJSON }
		if err := json.Unmarshal([]byte(answer), &got); code != http.StatusAccepted || err != nil || got.Bot.MeetingUUID != uuid {
			t.Fatalf("POST %s through nginx: got %d %s, want 202 with meeting_uuid %q", path, code, answer, uuid)
		}
		if f := tab.mustNext(t, "bot.updated"); f.Bot == nil || f.Bot.MeetingUUID != uuid || f.Bot.State != "requested" {
			t.Fatalf("bot.updated through nginx: got %s, want a requested bot for %q", f.raw, uuid)
		}
		code, answer = px.api(t, http.MethodDelete, path, token(t, user))
		if err := json.Unmarshal([]byte(answer), &got); code != http.StatusOK || err != nil ||
			got.Bot.MeetingUUID != uuid || got.Bot.State != "cancelled" {
			t.Fatalf("DELETE %s through nginx: got %d %s, want 200 cancelled for %q", path, code, answer, uuid)
		}
		if f := tab.mustNext(t, "bot.updated"); f.Bot == nil || f.Bot.MeetingUUID != uuid || f.Bot.State != "cancelled" {
			t.Fatalf("bot.updated through nginx: got %s, want a cancelled bot for %q", f.raw, uuid)
		}

		webhook(t, zoom.EventMeetingEnded, uuid, user)
		if f := tab.mustNext(t, "meeting.ended"); f.Meeting == nil || f.Meeting.UUID != uuid {
			t.Fatalf("meeting.ended through nginx: got %s, want uuid %q", f.raw, uuid)
		}
	})

	t.Run("SocketsOutliveOnairsPings", func(t *testing.T) {
		const hold = 5 * time.Second
		time.Sleep(time.Until(heldSince.Add(hold)))
		for i, tab := range held {
			if err := tab.closed(); err != nil {
				t.Fatalf("socket %d through nginx closed within %v: %v", i+1, hold, err)
			}
			// At an interval of 1 s, at least 3 of onair's pings came
			// through (its ticker spreads them; a margin for a slow start).
			if n := tab.pings.Load(); n < 3 {
				t.Errorf("socket %d: %d pings of onair came through nginx in %v, want at least 3", i+1, n, hold)
			}
			// And a ping of the client's gets its pong back.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := tab.conn.Ping(ctx)
			cancel()
			if err != nil {
				t.Fatalf("socket %d: a client ping through nginx: %v", i+1, err)
			}
		}
		webhook(t, zoom.EventMeetingStarted, "nginx-held-meeting", holdUser)
		for i, tab := range held {
			if f := tab.mustNext(t, "meeting.started"); f.Meeting == nil || f.Meeting.UUID != "nginx-held-meeting" {
				t.Fatalf("socket %d after %v: got %s, want meeting.started", i+1, time.Since(heldSince), f.raw)
			}
		}
		for i, n := range nodes {
			if got := metric(t, n, `onair_ws_disconnects_total{reason="ping_timeout"}`); got != 0 {
				t.Errorf("node %d closed %v sockets for a missing pong, want 0", i+1, got)
			}
		}
		for _, tab := range held {
			tab.conn.CloseNow()
		}
	})

	t.Run("NodeRestartsBehindNginx", func(t *testing.T) {
		// A deploy's step (docs/DEPLOY.md): node 1 gets SIGTERM and comes
		// back on the same address, while Zoom keeps delivering through
		// nginx. Every delivery is answered 200 (nginx sends what node 1
		// refuses or answers 503 to node 2), and every tab, closed with
		// 1012 or not, ends with all the frames, once each, in order.
		user := "nginx-restart-user"
		var tabs []*proxiedTab
		var pos []position
		for range 4 { // spread over both nodes
			tab := px.openTab(t, token(t, user))
			w := tab.mustNext(t, "welcome")
			tabs, pos = append(tabs, tab), append(pos, position{w.Epoch, w.Seq})
		}
		if got := metric(t, nodes[0], "onair_ws_connections"); got < 1 {
			t.Fatalf("node 1 holds %v sockets before its restart, want at least 1 of the 4 tabs", got)
		}

		var (
			sent   []string // uuids answered 200, in order
			failed []string
			stop   = make(chan struct{})
			done   = make(chan struct{})
		)
		go func() {
			defer close(done)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(25 * time.Millisecond):
				}
				uuid := fmt.Sprintf("nginx-restart-%03d", i)
				if err := px.deliver(secret, meetingBody(zoom.EventMeetingStarted, uuid, user, time.Now())); err != nil {
					failed = append(failed, uuid+": "+err.Error())
					continue
				}
				sent = append(sent, uuid)
			}
		}()

		time.Sleep(300 * time.Millisecond)
		nodes[0].signal(syscall.SIGTERM)
		if code := nodes[0].wait(30 * time.Second); code != 0 {
			t.Fatalf("node 1 after SIGTERM: exit code %d, want 0", code)
		}
		// The parent's, not this subtest's: it serves the next subtest too.
		restarted := launchOnair(parent, t.TempDir(), env, nodeArgs(ports[0])...)
		if err := restarted.waitListening(60 * time.Second); err != nil {
			t.Fatalf("node 1 again: %v", err)
		}
		nodes[0] = restarted
		waitReady(t, restarted, 30*time.Second)
		time.Sleep(300 * time.Millisecond)
		close(stop)
		<-done
		if len(failed) > 0 {
			t.Fatalf("%d of %d webhooks through nginx were not answered 200 while node 1 restarted:\n%s",
				len(failed), len(failed)+len(sent), strings.Join(failed, "\n"))
		}

		resumed := 0
		for i, tab := range tabs {
			var got []string
			for len(got) < len(sent) {
				f, err := tab.next(15 * time.Second)
				if err != nil {
					if code := websocket.CloseStatus(err); code != websocket.StatusServiceRestart {
						t.Fatalf("tab %d after %d of %d frames: %v, want a 1012 close or more frames", i+1, len(got), len(sent), err)
					}
					// As onair.js does: reconnect (through nginx, to any
					// node) and resume from the last frame.
					resumed++
					tab = px.openTabSince(t, token(t, user), &pos[i])
					if w := tab.mustNext(t, "welcome"); !w.Resumed || w.Seq != pos[i].Seq {
						t.Fatalf("tab %d reconnected through nginx: got %s, want resumed at seq %d", i+1, w.raw, pos[i].Seq)
					}
					continue
				}
				if f.Type != "meeting.started" || f.Meeting == nil || f.Seq != pos[i].Seq+1 {
					t.Fatalf("tab %d at seq %d: got %s, want meeting.started with the next seq", i+1, pos[i].Seq, f.raw)
				}
				pos[i].Seq = f.Seq
				got = append(got, f.Meeting.UUID)
			}
			if strings.Join(got, " ") != strings.Join(sent, " ") {
				t.Fatalf("tab %d got the meetings\n%v\nwant\n%v", i+1, got, sent)
			}
		}
		if resumed == 0 {
			t.Fatalf("no tab was closed with 1012 by node 1's restart")
		}
		t.Logf("%d webhooks answered 200 across the restart; %d of %d tabs resumed through nginx", len(sent), resumed, len(tabs))
	})

	t.Run("NodeKilledBehindNginx", func(t *testing.T) {
		// Node 2 dies (SIGKILL) while webhooks are in flight to it: nginx
		// sends each of them again to node 1 (non_idempotent: deliveries
		// are deduplicated), so Zoom sees no error.
		user := "nginx-kill-user"
		// A tab on node 1 itself, which survives: every delivery answered
		// 200 reaches it once, whichever node committed it.
		tab := dialReadingTab(t, "ws://"+nodes[0].Addr+"/ws", nil, token(t, user), nil)
		w := tab.mustNext(t, "welcome")
		var (
			mu     sync.Mutex
			ok     []string
			failed []string
			stop   = make(chan struct{})
			wg     sync.WaitGroup
		)
		for sender := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					uuid := fmt.Sprintf("nginx-kill-%d-%03d", sender, i)
					err := px.deliver(secret, meetingBody(zoom.EventMeetingStarted, uuid, user, time.Now()))
					mu.Lock()
					if err != nil {
						failed = append(failed, uuid+": "+err.Error())
					} else {
						ok = append(ok, uuid)
					}
					mu.Unlock()
				}
			}()
		}
		time.Sleep(500 * time.Millisecond)
		nodes[1].kill()
		time.Sleep(500 * time.Millisecond)
		close(stop)
		wg.Wait()
		if len(failed) > 0 {
			t.Fatalf("%d of %d webhooks through nginx were not answered 200 when node 2 was killed:\n%s",
				len(failed), len(failed)+len(ok), strings.Join(failed, "\n"))
		}
		want := map[string]bool{}
		for _, uuid := range ok {
			want[uuid] = true
		}
		seq := w.Seq
		for len(want) > 0 {
			f := tab.mustNext(t, "meeting.started")
			if f.Seq != seq+1 || f.Meeting == nil || !want[f.Meeting.UUID] {
				t.Fatalf("after seq %d: got %s, want the next seq of a meeting not seen yet (%d left)", seq, f.raw, len(want))
			}
			seq = f.Seq
			delete(want, f.Meeting.UUID)
		}
		if f, err := tab.next(200 * time.Millisecond); err == nil {
			t.Fatalf("a frame beyond the %d deliveries: %s", len(ok), f.raw)
		}
		t.Logf("%d webhooks answered 200 across the kill, each one frame", len(ok))
	})
}

// nginxProc is a running nginx in front of the nodes.
type nginxProc struct {
	base   string // https://127.0.0.1:PORT
	client *http.Client
	ws     *http.Client // for the WebSocket handshakes: no overall timeout
	stderr *lockedBuffer
}

// nginxConfig fills the example values of the docs' configuration in,
// failing when one of them is no longer in the file.
func nginxConfig(t *testing.T, conf, dir, listen string, nodes []string) string {
	t.Helper()
	replace := func(old, new string) {
		t.Helper()
		if n := strings.Count(conf, old); n != 1 {
			t.Fatalf("%s has %q %d times, want once: the test substitutes it", nginxDocsConf, old, n)
		}
		conf = strings.Replace(conf, old, new, 1)
	}
	replace("listen 443 ssl;", "listen "+listen+" ssl;")
	replace("/etc/nginx/tls/onair.example.com.crt", filepath.Join(dir, "tls.crt"))
	replace("/etc/nginx/tls/onair.example.com.key", filepath.Join(dir, "tls.key"))
	replace("/var/log/nginx/onair.access.log", filepath.Join(dir, "access.log"))
	// The example nodes, 10.0.0.11, .12, …: the first ones become the
	// test's nodes, keeping their parameters (and the backup lines); lines
	// of the others go.
	servers := regexp.MustCompile(`(?m)^([ \t]*server )10\.0\.0\.1(\d):8080((?: [^;\n]*)?;)[ \t]*\n`)
	seen := map[int]bool{}
	conf = servers.ReplaceAllStringFunc(conf, func(line string) string {
		m := servers.FindStringSubmatch(line)
		i, _ := strconv.Atoi(m[2])
		seen[i] = true
		if i < 1 || i > len(nodes) {
			return ""
		}
		return m[1] + nodes[i-1] + m[3] + "\n"
	})
	for i := 1; i <= len(nodes); i++ {
		if !seen[i] {
			t.Fatalf("%s has no example node 10.0.0.1%d:8080 (server lines), want at least %d nodes", nginxDocsConf, i, len(nodes))
		}
	}
	// Temporary files in the test's folder (nginx's are under /var/lib/nginx).
	var temp strings.Builder
	for _, name := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		fmt.Fprintf(&temp, "    %s_temp_path %s;\n", name, filepath.Join(dir, name+"_temp"))
	}
	replace("\nhttp {\n", "\nhttp {\n"+temp.String())
	return conf
}

// startNginx runs nginx with conf (docs/nginx.conf or a variant) in front
// of nodes, on a free loopback port with a self-signed certificate.
func startNginx(t *testing.T, bin, conf string, nodes []string) *nginxProc {
	t.Helper()
	// Its own folder, readable by the workers' user (nginx, started as
	// root, runs them as www-data and gives them the temp folders it makes).
	dir, err := os.MkdirTemp("", "onair-nginx-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	pool := writeTestCert(t, dir)
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(nginxConfig(t, conf, dir, listen, nodes)), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-p", dir, "-c", confPath, "-e", "stderr", "-g", "daemon off; pid " + filepath.Join(dir, "nginx.pid") + ";"}
	if out, err := exec.Command(bin, append([]string{"-t"}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t with %s: %v\n%s", nginxDocsConf, err, out)
	}

	px := &nginxProc{base: "https://" + listen, stderr: &lockedBuffer{}}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = px.stderr, px.stderr
	// Its own process group, so the workers go with the master; and the
	// master goes when the test process dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM) // fast shutdown: master and workers
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			access, _ := os.ReadFile(filepath.Join(dir, "access.log"))
			t.Logf("nginx stderr:\n%s\naccess log:\n%s", tail(px.stderr.String()), tail(string(access)))
		}
	})

	tlsConfig := &tls.Config{RootCAs: pool}
	px.client = &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConfig}}
	px.ws = &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig}}
	t.Cleanup(px.client.CloseIdleConnections)
	deadline := time.Now().Add(15 * time.Second)
	for {
		conn, err := tls.Dial("tcp", listen, tlsConfig)
		if err == nil {
			conn.Close()
			return px
		}
		select {
		case <-done:
			t.Fatalf("nginx exited: %s", px.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx does not answer on %s: %v\n%s", listen, err, px.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// writeTestCert writes a self-signed certificate for 127.0.0.1 and its key
// to dir/tls.crt and dir/tls.key, and returns a pool that trusts it.
func writeTestCert(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "onair.example.com"},
		DNSNames:     []string{"onair.example.com"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool
}

// post sends a webhook-shaped POST through nginx and returns the status
// and the answer's body.
func (px *nginxProc) post(t *testing.T, path, ts, sig string, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, px.base+path, strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(zoom.HeaderTimestamp, ts)
	req.Header.Set(zoom.HeaderSignature, sig)
	return px.do(t, req)
}

// deliver is Zoom delivering body through nginx, from any goroutine: an
// error unless the answer is 200.
func (px *nginxProc) deliver(secret, body []byte) error {
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req, err := http.NewRequest(http.MethodPost, px.base+"/webhooks/zoom", strings.NewReader(string(body)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(zoom.HeaderTimestamp, ts)
	req.Header.Set(zoom.HeaderSignature, zoom.Sign(secret, ts, body))
	resp, err := px.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%d %s", resp.StatusCode, answer)
	}
	return nil
}

// postWebhook signs body as Zoom does and posts it to /webhooks/zoom.
func (px *nginxProc) postWebhook(t *testing.T, secret, body []byte) (int, string) {
	t.Helper()
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	return px.post(t, "/webhooks/zoom", ts, zoom.Sign(secret, ts, body), body)
}

// api calls the HTTP API through nginx with a bearer token. path is sent
// exactly as given (escaped).
func (px *nginxProc) api(t *testing.T, method, path, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, px.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := req.URL.EscapedPath(); got != path {
		t.Fatalf("the request would go out as %s, not %s", got, path)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	return px.do(t, req)
}

func (px *nginxProc) do(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	resp, err := px.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s through nginx: %v", req.Method, req.URL.EscapedPath(), err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// paddedWebhook is a meeting.started delivery of exactly size bytes.
func paddedWebhook(t *testing.T, size int, uuid, host string) []byte {
	t.Helper()
	base := meetingBody(zoom.EventMeetingStarted, uuid, host, time.Now())
	const field = `,"padding":""}`
	n := size - (len(base) - 1 + len(field))
	if n < 0 {
		t.Fatalf("a body of %d bytes cannot hold the delivery", size)
	}
	body := string(base[:len(base)-1]) + `,"padding":"` + strings.Repeat("x", n) + `"}`
	if len(body) != size {
		t.Fatalf("padded body: %d bytes, want %d", len(body), size)
	}
	return []byte(body)
}

// botJSON is the API's and the frames' Bot.
type botJSON struct {
	RequestID   string `json:"request_id"`
	MeetingUUID string `json:"meeting_uuid"`
	State       string `json:"state"`
}

// proxiedFrame is a server frame read through nginx, with its bytes.
type proxiedFrame struct {
	Type    string   `json:"type"`
	User    string   `json:"user"`
	Epoch   string   `json:"epoch"`
	Seq     int64    `json:"seq"`
	Resumed bool     `json:"resumed"`
	Meeting *meeting `json:"meeting"`
	Bot     *botJSON `json:"bot"`
	raw     []byte
}

// proxiedTab is a WebSocket client connected through nginx. A goroutine
// reads all the time, so that pings are answered (and counted) while the
// test does something else.
type proxiedTab struct {
	conn   *websocket.Conn
	frames chan []byte
	pings  atomic.Int64
	done   chan struct{} // closed when reading fails; err says why
	err    error
}

// openTab dials wss://…/ws through nginx and says hello with token.
func (px *nginxProc) openTab(t *testing.T, token string) *proxiedTab {
	t.Helper()
	return px.openTabSince(t, token, nil)
}

// openTabSince is openTab resuming from since (nil: a fresh snapshot).
func (px *nginxProc) openTabSince(t *testing.T, token string, since *position) *proxiedTab {
	t.Helper()
	return dialReadingTab(t, strings.Replace(px.base, "https://", "wss://", 1)+"/ws", px.ws, token, since)
}

// dialReadingTab dials the socket at url (wss: through nginx; ws: a node
// itself) with client (nil: the default) and says hello.
func dialReadingTab(t *testing.T, url string, client *http.Client, token string, since *position) *proxiedTab {
	t.Helper()
	// Room for every frame a subtest sends: the reader never blocks.
	tab := &proxiedTab{frames: make(chan []byte, 4096), done: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{
		HTTPClient: client,
		OnPingReceived: func(context.Context, []byte) bool {
			tab.pings.Add(1)
			return true // and answer it
		},
	})
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	tab.conn = conn
	t.Cleanup(func() { conn.CloseNow() })
	msg := map[string]any{"type": "hello", "token": token}
	if since != nil {
		msg["since"] = since
	}
	hello, _ := json.Marshal(msg)
	if err := conn.Write(ctx, websocket.MessageText, hello); err != nil {
		t.Fatalf("hello on %s: %v", url, err)
	}
	go func() {
		defer close(tab.done)
		for {
			_, b, err := conn.Read(context.Background())
			if err != nil {
				tab.err = err
				return
			}
			tab.frames <- b
		}
	}()
	return tab
}

// next reads the next frame; an error when the socket closed first (all
// frames read before the close come first) or none came within timeout.
func (tab *proxiedTab) next(timeout time.Duration) (proxiedFrame, error) {
	var b []byte
	select {
	case b = <-tab.frames:
	case <-tab.done:
		select {
		case b = <-tab.frames:
		default:
			return proxiedFrame{}, fmt.Errorf("socket closed: %w", tab.err)
		}
	case <-time.After(timeout):
		return proxiedFrame{}, fmt.Errorf("no frame in %v", timeout)
	}
	f := proxiedFrame{raw: b}
	if err := json.Unmarshal(b, &f); err != nil {
		return proxiedFrame{}, fmt.Errorf("frame %s: %w", b, err)
	}
	return f, nil
}

// mustNext reads the next frame, which must be of type typ; t is the
// (sub)test calling.
func (tab *proxiedTab) mustNext(t *testing.T, typ string) proxiedFrame {
	t.Helper()
	f, err := tab.next(15 * time.Second)
	if err != nil {
		t.Fatalf("waiting for %s: %v", typ, err)
	}
	if f.Type != typ {
		t.Fatalf("frame type: got %q, want %q (%s)", f.Type, typ, f.raw)
	}
	return f
}

// closed is nil while the socket is open, else why it closed.
func (tab *proxiedTab) closed() error {
	select {
	case <-tab.done:
		if tab.err == nil {
			return fmt.Errorf("closed")
		}
		return tab.err
	default:
		return nil
	}
}
