package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"onair/web"
	"onair/zoom"
)

// userID names bench user i.
func userID(i int) string { return fmt.Sprintf("bench-user-%06d", i) }

func newUUID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// webhookBody is a Zoom-shaped meeting.started or meeting.ended. The topic
// carries the send time, so a tab can measure webhook-to-frame latency.
func webhookBody(event, uuid, host string, sent time.Time) []byte {
	obj := map[string]any{
		"id": "81234567890", "uuid": uuid, "host_id": host,
		"topic": "bench " + strconv.FormatInt(sent.UnixNano(), 10),
		"type":  1, "start_time": sent.UTC().Format(time.RFC3339), "timezone": "", "duration": 0,
	}
	if event == zoom.EventMeetingEnded {
		obj["end_time"] = sent.UTC().Format(time.RFC3339)
	}
	b, _ := json.Marshal(map[string]any{
		"event": event, "event_ts": sent.UnixMilli(),
		"payload": map[string]any{"account_id": "bench", "object": obj},
	})
	return b
}

// send posts a signed webhook and returns the status and how long it took.
func (b *bench) send(ctx context.Context, body []byte) (int, time.Duration, error) {
	return b.posters.post(ctx, b.webhookBase(), b.cfg.webhookSecret, body)
}

func (b *bench) token(user string) string {
	tok, err := web.MintToken([]byte(b.cfg.tokenSecret), user, 24*time.Hour, time.Now())
	if err != nil {
		panic(err)
	}
	return tok
}

// tab is one WebSocket client. It checks every frame's seq against the
// last one it saw and counts gaps and duplicates.
type tab struct {
	b     *bench
	node  int // which of the nodes it connects to
	user  string
	conn  *wsConn
	epoch string
	seq   int64

	frames    atomic.Int64
	gaps      atomic.Int64
	dups      atomic.Int64
	resumed   atomic.Int64 // welcomes with resumed=true after the first
	snapshots atomic.Int64 // welcomes with resumed=false after the first
	welcomes  atomic.Int64
	closed    chan struct{}
	closeCode int // the server's close code, or -1; read after closed
	latency   func(time.Duration)
	// tinyWindow gives the socket a 4 KiB receive buffer, as a client on a
	// poor network has: a tab that stops reading then backs up at once
	// instead of after the megabytes a loopback socket would absorb.
	tinyWindow bool
}

type benchFrame struct {
	Type    string `json:"type"`
	Seq     int64  `json:"seq"`
	Epoch   string `json:"epoch"`
	Resumed bool   `json:"resumed"`
	Meeting *struct {
		Topic string `json:"topic"`
	} `json:"meeting"`
}

// connect dials and says hello, resuming from the last position when it has one.
func (t *tab) connect(ctx context.Context) error {
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := dialWS(dctx, t.b.tabBase(t.node), "/ws", t.tinyWindow)
	if err != nil {
		return err
	}
	hello := map[string]any{"type": "hello", "token": t.b.token(t.user)}
	if t.epoch != "" {
		hello["since"] = map[string]any{"epoch": t.epoch, "seq": t.seq}
	}
	msg, _ := json.Marshal(hello)
	// The welcome must come within the dial's time.
	done := conn.within(dctx)
	err = conn.writeText(msg)
	var data []byte
	if err == nil {
		data, err = conn.read()
	}
	if err = cmp.Or(done(), err); err != nil { // a timeout after ctx ended is ctx's
		conn.closeNow()
		return err
	}
	var w benchFrame
	if err := json.Unmarshal(data, &w); err != nil || w.Type != "welcome" {
		conn.closeNow()
		return fmt.Errorf("first frame is not a welcome: %s", data)
	}
	if t.welcomes.Add(1) > 1 {
		if w.Resumed {
			t.resumed.Add(1)
		} else {
			t.snapshots.Add(1)
		}
	}
	t.epoch, t.seq = w.Epoch, w.Seq
	t.conn = conn
	t.closed = make(chan struct{})
	return nil
}

// read reads frames until the connection ends.
func (t *tab) read() {
	defer close(t.closed)
	for {
		data, err := t.conn.read()
		if err != nil {
			t.closeCode = closeCodeOf(err)
			return
		}
		now := time.Now()
		var f benchFrame
		if json.Unmarshal(data, &f) != nil {
			continue
		}
		switch {
		case f.Seq == t.seq+1:
			t.seq = f.Seq
		case f.Seq <= t.seq:
			t.dups.Add(1)
			continue
		default:
			t.gaps.Add(f.Seq - t.seq - 1)
			t.seq = f.Seq
		}
		t.frames.Add(1)
		// A started frame's topic is that webhook's; an ended frame keeps
		// the topic of the meeting's start.
		if t.latency != nil && f.Type == "meeting.started" && f.Meeting != nil {
			if ns, err := strconv.ParseInt(strings.TrimPrefix(f.Meeting.Topic, "bench "), 10, 64); err == nil {
				t.latency(now.Sub(time.Unix(0, ns)))
			}
		}
	}
}

// connectTabs opens n tabs over users (tab i belongs to user i % users),
// 64 at a time, and starts their readers.
func (b *bench) connectTabs(ctx context.Context, n, users int, latency func(time.Duration)) ([]*tab, error) {
	tabs := make([]*tab, n)
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for i := range tabs {
		tabs[i] = &tab{b: b, node: i, user: userID(i % users), latency: latency}
		wg.Add(1)
		sem <- struct{}{}
		go func(t *tab) {
			defer func() { <-sem; wg.Done() }()
			if err := t.connect(ctx); err != nil {
				firstErr.CompareAndSwap(nil, err)
				return
			}
			go t.read()
		}(tabs[i])
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return tabs, fmt.Errorf("connect tabs: %w", err)
	}
	return tabs, nil
}

func closeTabs(tabs []*tab) {
	for _, t := range tabs {
		if t.conn != nil {
			t.conn.closeNow()
		}
	}
}

// samples collects durations safely from many goroutines.
type samples struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *samples) add(d time.Duration) {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
}

// quantiles returns the p-quantiles in milliseconds, and the max.
func (s *samples) quantiles(ps ...float64) (out []float64, maxMS float64) {
	s.mu.Lock()
	d := append([]time.Duration(nil), s.d...)
	s.mu.Unlock()
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	for _, p := range ps {
		if len(d) == 0 {
			out = append(out, 0)
			continue
		}
		i := int(p * float64(len(d)-1))
		out = append(out, ms(d[i]))
	}
	if len(d) > 0 {
		maxMS = ms(d[len(d)-1])
	}
	return out, maxMS
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
