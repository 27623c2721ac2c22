package web

import (
	"context"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// pingTick is how often the shared ping ticker visits its next slot of
// tabs. Coarser bursts delay the frames queued behind them (10,000 tabs in
// 25 bursts: milliseconds); finer ones wake the scheduler more often than
// the pings are worth (every 20 ms: 4% of a core for 10,000 idle tabs,
// against 1.9% every 100 ms).
const pingTick = 100 * time.Millisecond

// tabSet holds every open tab, in slots for pinging: no tab has a timer
// of its own.
type tabSet struct {
	srv    *Server
	tick   time.Duration
	mu     sync.Mutex
	slots  []map[*tab]struct{}
	next   int
	closed bool
}

func newTabSet(s *Server, interval time.Duration) *tabSet {
	n := max(1, int(interval/pingTick))
	ts := &tabSet{srv: s, tick: interval / time.Duration(n), slots: make([]map[*tab]struct{}, n)}
	for i := range ts.slots {
		ts.slots[i] = make(map[*tab]struct{})
	}
	return ts
}

// add registers t; false once the server is closing.
func (ts *tabSet) add(t *tab) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.closed {
		return false
	}
	t.slot = ts.next
	ts.next = (ts.next + 1) % len(ts.slots)
	ts.slots[t.slot][t] = struct{}{}
	return true
}

func (ts *tabSet) remove(t *tab) {
	ts.mu.Lock()
	delete(ts.slots[t.slot], t)
	ts.mu.Unlock()
}

// run pings one slot per tick until ctx ends: every tab once per interval.
func (ts *tabSet) run(ctx context.Context) {
	tick := time.NewTicker(ts.tick)
	defer tick.Stop()
	for slot := 0; ; slot = (slot + 1) % len(ts.slots) {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		ts.mu.Lock()
		tabs := make([]*tab, 0, len(ts.slots[slot]))
		for t := range ts.slots[slot] {
			if t.welcomed.Load() {
				tabs = append(tabs, t)
			}
		}
		ts.mu.Unlock()
		now := ts.srv.cfg.Now()
		for _, t := range tabs {
			if t.session != nil && now.After(t.session.expires) {
				// A signed-in browser's socket lasts no longer than its session.
				t.close(closeUnauthorized, "session expired", "auth")
				continue
			}
			go t.ping()
		}
	}
}

// ping sends a ping and closes the tab when no pong comes back in time.
func (t *tab) ping() {
	ctx, cancel := context.WithTimeout(context.Background(), t.srv.cfg.PingTimeout)
	defer cancel()
	if err := t.conn.Ping(ctx); err != nil {
		if ctx.Err() != nil {
			t.closeOnce.Do(func() {
				t.srv.metrics.wsDisconnects.WithLabelValues("ping_timeout").Inc()
				t.conn.CloseNow() // it stopped answering: no handshake to wait for
			})
		}
	}
}

// closeAll closes every tab with 1012 and refuses new ones.
func (ts *tabSet) closeAll() {
	ts.mu.Lock()
	ts.closed = true
	var all []*tab
	for _, slot := range ts.slots {
		for t := range slot {
			all = append(all, t)
		}
	}
	ts.mu.Unlock()
	for _, t := range all {
		t.close(websocket.StatusServiceRestart, "server restarting", "shutdown")
	}
}
