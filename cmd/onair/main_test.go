package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"onair/internal/testbin"
	"onair/zoom"
)

// onairBin is the real binary, built once by TestMain (with -race when the
// tests run with -race, so the server's own races are caught too).
var onairBin string

func TestMain(m *testing.M) {
	bin, cleanup, err := testbin.Build(".")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	onairBin = bin
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// cleanEnv is the test process's environment without any onair or Zoom
// setting, plus extra ("NAME=value").
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "ONAIR_") || strings.HasPrefix(kv, "ZOOM_") || strings.HasPrefix(kv, "GORACE=") {
			continue
		}
		env = append(env, kv)
	}
	// A -race binary otherwise sleeps 1s at exit; the subcommands run often.
	env = append(env, "GORACE=atexit_sleep_ms=0")
	return append(env, extra...)
}

// mapEnv is a getenv for run() that sees only m.
func mapEnv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// lockedBuffer is a bytes.Buffer safe for a writer and concurrent readers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// onairProc is a running `onair serve` process.
type onairProc struct {
	t              testing.TB
	cmd            *exec.Cmd
	stdout, stderr *lockedBuffer
	done           chan struct{}
	waitErr        error // Wait's result, once done is closed
	Addr           string
	MetricsAddr    string
}

// launchOnair starts the binary in dir without waiting for it to listen.
func launchOnair(t testing.TB, dir string, env []string, args ...string) *onairProc {
	t.Helper()
	p := &onairProc{t: t, stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(onairBin, args...)
	p.cmd.Dir, p.cmd.Env = dir, env
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start onair: %v", err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if s := p.stderr.String(); strings.Contains(s, "WARNING: DATA RACE") {
			t.Errorf("onair %s reported a data race:\n%s", strings.Join(args, " "), s)
		} else if t.Failed() {
			t.Logf("onair %s stdout:\n%s\nstderr:\n%s", strings.Join(args, " "), tail(p.stdout.String()), tail(s))
		}
	})
	return p
}

// startOnair starts the binary and waits until it logs "onair listening".
func startOnair(t testing.TB, dir string, env []string, args ...string) *onairProc {
	t.Helper()
	p := launchOnair(t, dir, env, args...)
	if err := p.waitListening(30 * time.Second); err != nil {
		t.Fatalf("onair %s: %v\nstderr:\n%s", strings.Join(args, " "), err, tail(p.stderr.String()))
	}
	return p
}

// logLine is the part of a JSON log line the tests read.
type logLine struct {
	Msg         string `json:"msg"`
	Addr        string `json:"addr"`
	MetricsAddr string `json:"metrics_addr"`
	PublicURL   string `json:"public_url"`
	DB          string `json:"db"`
	Dev         bool   `json:"dev"`
}

// listening finds the "onair listening" line in the logs.
func listening(logs string) (logLine, bool) {
	for _, line := range strings.Split(logs, "\n") {
		var l logLine
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "onair listening" {
			return l, true
		}
	}
	return logLine{}, false
}

// waitListening parses the "onair listening" line for the bound addresses.
func (p *onairProc) waitListening(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if l, ok := listening(p.stderr.String()); ok {
			p.Addr, p.MetricsAddr = l.Addr, l.MetricsAddr
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("exited before listening: %v", p.waitErr)
		default:
		}
		if time.Now().After(deadline) {
			return errors.New("no \"onair listening\" line in time")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// url is http://ADDR + path.
func (p *onairProc) url(path string) string { return "http://" + p.Addr + path }

func (p *onairProc) signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %v: %v", sig, err)
	}
}

// kill ends the process at once (SIGKILL) and waits for it.
func (p *onairProc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// wait waits for the process to exit and returns its exit code.
func (p *onairProc) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.t.Fatalf("onair did not exit within %v", timeout)
	}
	return exitCode(p.waitErr)
}

func exitCode(err error) int {
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exitErr):
		return exitErr.ExitCode()
	default:
		return -1
	}
}

// runOnair runs a short-lived subcommand of the binary.
func runOnair(t testing.TB, dir string, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, onairBin, args...)
	cmd.Dir, cmd.Env = dir, env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("onair %s did not finish", strings.Join(args, " "))
	}
	if strings.Contains(errOut.String(), "WARNING: DATA RACE") {
		t.Errorf("onair %s reported a data race:\n%s", strings.Join(args, " "), errOut.String())
	}
	return out.String(), errOut.String(), exitCode(err)
}

func tail(s string) string {
	const max = 6000
	if len(s) > max {
		return "…" + s[len(s)-max:]
	}
	return s
}

// oneLine checks that s is exactly one line, ending in a newline.
func oneLine(t testing.TB, what, s string) {
	t.Helper()
	if got, want := strings.Count(s, "\n"), 1; got != want || !strings.HasSuffix(s, "\n") {
		t.Fatalf("%s: got %d lines, want exactly %d:\n%s", what, got, want, s)
	}
}

// meetingBody is a Zoom-shaped meeting.started / meeting.ended delivery.
func meetingBody(event, uuid, host string, eventTS time.Time) []byte {
	obj := map[string]any{
		"uuid": uuid, "id": 81234567890, "host_id": host, "topic": "Crash test " + uuid,
		"type": 2, "start_time": eventTS.UTC().Format(time.RFC3339), "timezone": "UTC", "duration": 30,
	}
	if event == zoom.EventMeetingEnded {
		obj["end_time"] = eventTS.UTC().Format(time.RFC3339)
	}
	b, _ := json.Marshal(map[string]any{
		"event": event, "event_ts": eventTS.UnixMilli(),
		"payload": map[string]any{"account_id": "acc", "object": obj},
	})
	return b
}

// postWebhook signs body with secret as Zoom does and posts it; it returns
// the status and the x-zm-signature it sent.
func postWebhook(ctx context.Context, client *http.Client, url string, secret, body []byte) (int, string, error) {
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	sig := zoom.Sign(secret, ts, body)
	status, err := postWithSignature(ctx, client, url, ts, sig, body)
	return status, sig, err
}

func postWithSignature(ctx context.Context, client *http.Client, url, ts, sig string, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(zoom.HeaderTimestamp, ts)
	req.Header.Set(zoom.HeaderSignature, sig)
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// httpGet returns the status and body of a GET.
func httpGet(t testing.TB, url string, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// frame is any server frame of CONTRACT §4.
type frame struct {
	Type     string    `json:"type"`
	User     string    `json:"user"`
	Epoch    string    `json:"epoch"`
	Seq      int64     `json:"seq"`
	Resumed  bool      `json:"resumed"`
	Meetings []meeting `json:"meetings"`
	Meeting  *meeting  `json:"meeting"`
	Bots     []any     `json:"bots"`
	Bot      *struct {
		RequestID string `json:"request_id"`
		State     string `json:"state"`
		Detail    string `json:"detail"`
	} `json:"bot"`
}

type meeting struct {
	UUID   string `json:"uuid"`
	ID     string `json:"id"`
	HostID string `json:"host_id"`
	Topic  string `json:"topic"`
	Role   string `json:"role"`
	Live   bool   `json:"live"`
}

type position struct {
	Epoch string `json:"epoch"`
	Seq   int64  `json:"seq"`
}

// wsTab is one WebSocket client ("tab").
type wsTab struct {
	t    testing.TB
	conn *websocket.Conn
}

// openTab dials /ws on addr and sends the hello; it does not read.
func openTab(t testing.TB, addr, token string, since *position) *wsTab {
	t.Helper()
	return openTabFrom(t, "", addr, token, since)
}

// openTabFrom is openTab from a browser page of origin ("" for none).
func openTabFrom(t testing.TB, origin, addr, token string, since *position) *wsTab {
	t.Helper()
	tab, err := tryOpenTabFrom(origin, addr, token, since)
	if err != nil {
		t.Fatalf("open tab: %v", err)
	}
	t.Cleanup(func() { tab.conn.CloseNow() })
	tab.t = t
	return tab
}

func tryOpenTab(addr, token string, since *position) (*wsTab, error) {
	return tryOpenTabFrom("", addr, token, since)
}

func tryOpenTabFrom(origin, addr, token string, since *position) (*wsTab, error) {
	hello := map[string]any{"type": "hello", "token": token}
	if since != nil {
		hello["since"] = since
	}
	b, _ := json.Marshal(hello)
	return dialTab(origin, addr, string(b))
}

// dialTab dials /ws on addr and sends first as the first frame.
func dialTab(origin, addr, first string) (*wsTab, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var opts *websocket.DialOptions
	if origin != "" {
		opts = &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {origin}}}
	}
	conn, _, err := websocket.Dial(ctx, "ws://"+addr+"/ws", opts)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	conn.SetReadLimit(1 << 20)
	if err := conn.Write(ctx, websocket.MessageText, []byte(first)); err != nil {
		conn.CloseNow()
		return nil, fmt.Errorf("first frame: %w", err)
	}
	return &wsTab{conn: conn}, nil
}

// readFrame reads one text frame as JSON.
func readFrame(ctx context.Context, conn *websocket.Conn) (frame, error) {
	typ, b, err := conn.Read(ctx)
	if err != nil {
		return frame{}, err
	}
	if typ != websocket.MessageText {
		return frame{}, fmt.Errorf("got a %v frame, want text", typ)
	}
	var f frame
	if err := json.Unmarshal(b, &f); err != nil {
		return frame{}, fmt.Errorf("frame %s: %w", b, err)
	}
	return f, nil
}

// next reads one frame.
func (w *wsTab) next(timeout time.Duration) (frame, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return readFrame(ctx, w.conn)
}

// mustNext reads one frame of the wanted type.
func (w *wsTab) mustNext(typ string) frame {
	w.t.Helper()
	f, err := w.next(15 * time.Second)
	if err != nil {
		w.t.Fatalf("waiting for %s: %v", typ, err)
	}
	if f.Type != typ {
		w.t.Fatalf("frame type: got %q, want %q (%+v)", f.Type, typ, f)
	}
	return f
}

// closeCode waits for the server to close the socket and returns the code.
func (w *wsTab) closeCode(timeout time.Duration) websocket.StatusCode {
	w.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		_, err := w.next(time.Until(deadline))
		if err != nil {
			return websocket.CloseStatus(err)
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("socket still open after %v", timeout)
		}
	}
}

// lines returns the non-empty lines of s.
func lines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out = append(out, l)
		}
	}
	return out
}
