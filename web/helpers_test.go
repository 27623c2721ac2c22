package web

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"onair/hub"
	"onair/store"
	"onair/zoom"
)

// testEnv is a real onair web server on loopback over a real SQLite file.
type testEnv struct {
	t      testing.TB
	srv    *Server
	store  *store.Store
	hub    *hub.Hub
	http   *httptest.Server
	reg    *prometheus.Registry
	dbPath string
	secret []byte // webhook secret
	tokKey []byte // token secret
	cancel context.CancelFunc
	origin string // an allowed origin
}

// newEnv starts a server; opts adjust the web config and hub options before start.
func newEnv(t testing.TB, opts ...func(*Config, *hub.Options)) *testEnv {
	t.Helper()
	return newEnvOn(t, "", opts...)
}

// newEnvOn is newEnv with its store on the PostgreSQL database at
// databaseURL ("" for SQLite): several envs on one database are nodes.
func newEnvOn(t testing.TB, databaseURL string, opts ...func(*Config, *hub.Options)) *testEnv {
	t.Helper()
	e := &testEnv{t: t, secret: []byte("webhook-secret"), tokKey: []byte("token-secret"), origin: "http://app.example"}
	e.dbPath = filepath.Join(t.TempDir(), "onair.db")
	// The listener comes first: its address is the public URL (OAuth redirects).
	e.http = httptest.NewUnstartedServer(nil)
	public, _ := url.Parse("http://" + e.http.Listener.Addr().String())
	cfg := Config{
		WebhookSecrets: [][]byte{e.secret},
		TokenSecrets:   [][]byte{e.tokKey},
		AllowedOrigins: []string{e.origin},
		PublicURL:      public,
	}
	hopts := hub.Options{}
	for _, o := range opts {
		o(&cfg, &hopts)
	}
	e.hub = hub.New(hopts)
	e.reg = prometheus.NewRegistry()
	m := NewMetrics(e.reg, func() float64 {
		n, _ := e.store.CountLive(context.Background())
		return float64(n)
	})
	st, err := store.Open(context.Background(), store.Options{Path: e.dbPath, DatabaseURL: databaseURL, OnCommit: Publish(e.hub, m),
		SecretKey: bytes.Repeat([]byte{7}, 32), Now: cfg.Now})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	e.store = st
	cfg.MetricsHandler = promhttp.HandlerFor(e.reg, promhttp.HandlerOpts{})
	e.srv = New(cfg, st, e.hub, m)
	e.srv.SetReady()
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	go e.srv.Run(ctx)
	e.http.Config.Handler = e.srv
	e.http.Start()
	t.Cleanup(e.close)
	return e
}

func (e *testEnv) close() {
	e.http.CloseClientConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e.srv.Close(ctx)
	e.http.Close()
	e.cancel()
	e.store.Close()
}

// post sends body to /webhooks/zoom signed with the env's secret, now.
func (e *testEnv) post(body []byte) *http.Response {
	e.t.Helper()
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	return e.postWith(body, ts, zoom.Sign(e.secret, ts, body))
}

// postWith sends body with the given timestamp and signature headers ("" leaves one out).
func (e *testEnv) postWith(body []byte, ts, sig string) *http.Response {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.http.URL+"/webhooks/zoom", bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if ts != "" {
		req.Header.Set(zoom.HeaderTimestamp, ts)
	}
	if sig != "" {
		req.Header.Set(zoom.HeaderSignature, sig)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("post webhook: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return resp
}

// mustPost posts and requires the status.
func (e *testEnv) mustPost(body []byte, want int) {
	e.t.Helper()
	resp := e.post(body)
	if resp.StatusCode != want {
		b, _ := io.ReadAll(resp.Body)
		e.t.Fatalf("webhook: got %d (%s), want %d", resp.StatusCode, b, want)
	}
}

// token mints a connection token for user, valid for an hour.
func (e *testEnv) token(user string) string {
	e.t.Helper()
	tok, err := MintToken(e.tokKey, user, time.Hour, time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// wsURL is the WebSocket endpoint.
func (e *testEnv) wsURL() string { return "ws" + strings.TrimPrefix(e.http.URL, "http") + "/ws" }

// wsClient is a real WebSocket client over loopback.
type wsClient struct {
	t    testing.TB
	conn *websocket.Conn
}

// dial opens /ws without sending anything.
func (e *testEnv) dial(header http.Header) *wsClient {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, e.wsURL(), &websocket.DialOptions{HTTPHeader: header})
	if err != nil {
		e.t.Fatalf("dial: %v", err)
	}
	c.SetReadLimit(1 << 20)
	cl := &wsClient{t: e.t, conn: c}
	e.t.Cleanup(func() { c.CloseNow() })
	return cl
}

// connect dials, says hello with a token for user (and since, if given),
// and returns the client with its welcome frame.
func (e *testEnv) connect(user string, since *store.Position) (*wsClient, frame) {
	e.t.Helper()
	c := e.dial(nil)
	hello := map[string]any{"type": "hello", "token": e.token(user)}
	if since != nil {
		hello["since"] = map[string]any{"epoch": since.Epoch, "seq": since.Seq}
	}
	c.sendJSON(hello)
	w := c.read()
	if w.Type != "welcome" {
		e.t.Fatalf("first frame: got %q, want welcome", w.Type)
	}
	return c, w
}

func (c *wsClient) sendJSON(v any) {
	c.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	c.send(websocket.MessageText, b)
}

func (c *wsClient) send(typ websocket.MessageType, b []byte) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.conn.Write(ctx, typ, b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// frame is any server frame, decoded.
type frame struct {
	Type     string          `json:"type"`
	User     string          `json:"user"`
	Seq      int64           `json:"seq"`
	Epoch    string          `json:"epoch"`
	At       string          `json:"at"`
	Resumed  bool            `json:"resumed"`
	Meetings []store.Meeting `json:"meetings"`
	Bots     []store.Bot     `json:"bots"`
	Meeting  *store.Meeting  `json:"meeting"`
	Bot      *store.Bot      `json:"bot"`
	Raw      json.RawMessage `json:"-"`
}

// read reads the next frame within 5 s.
func (c *wsClient) read() frame {
	c.t.Helper()
	f, err := c.tryRead(5 * time.Second)
	if err != nil {
		c.t.Fatalf("read frame: %v", err)
	}
	return f
}

func (c *wsClient) tryRead(timeout time.Duration) (frame, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, b, err := c.conn.Read(ctx)
	if err != nil {
		return frame{}, err
	}
	var f frame
	if err := json.Unmarshal(b, &f); err != nil {
		return frame{}, fmt.Errorf("decode %s: %w", b, err)
	}
	f.Raw = b
	return f, nil
}

// expectClose reads until the server closes and requires the close code.
func (c *wsClient) expectClose(want websocket.StatusCode) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for {
		_, b, err := c.conn.Read(ctx)
		if err != nil {
			if got := websocket.CloseStatus(err); got != want {
				c.t.Fatalf("close: got code %d (%v), want %d", got, err, want)
			}
			return
		}
		_ = b
	}
}

// expectSilence requires that no frame arrives within d.
func (c *wsClient) expectSilence(d time.Duration) {
	c.t.Helper()
	if f, err := c.tryRead(d); err == nil {
		c.t.Fatalf("unexpected frame %s", f.Raw)
	}
}

// event builds a Zoom-shaped delivery body.
type event struct {
	Name        string
	TS          int64 // event_ts in ms; 0: now
	UUID        string
	Host        string
	Topic       string
	Participant string // participant.id
	PartTime    string // join_time / leave_time
}

func (ev event) body() []byte {
	ts := ev.TS
	if ts == 0 {
		ts = time.Now().UnixMilli()
	}
	obj := map[string]any{
		"id": "85746065432", "uuid": ev.UUID, "host_id": ev.Host, "topic": ev.Topic,
		"type": 2, "start_time": "2026-12-04T14:00:00Z", "timezone": "Europe/Berlin", "duration": 30,
	}
	if strings.HasSuffix(ev.Name, "ended") {
		obj["end_time"] = "2026-12-04T14:30:00Z"
	}
	if ev.Participant != "" {
		p := map[string]any{"user_id": "16778240", "user_name": "P", "id": ev.Participant,
			"participant_uuid": "PU-" + ev.Participant, "email": ev.Participant + "@example.com"}
		key := "join_time"
		if strings.HasSuffix(ev.Name, "left") {
			key = "leave_time"
		}
		if ev.PartTime != "" {
			p[key] = ev.PartTime
		}
		obj["participant"] = p
	}
	b, _ := json.Marshal(map[string]any{
		"event": ev.Name, "event_ts": ts,
		"payload": map[string]any{"account_id": "acc", "object": obj},
	})
	return b
}

// metric returns the value of one series from /metrics ("" name{labels}).
func (e *testEnv) metric(series string) float64 {
	e.t.Helper()
	resp, err := http.Get(e.http.URL + "/metrics")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	e.t.Fatalf("metric %s not found", series)
	return 0
}

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}
