package web

import (
	"context"
	"sync"
	"time"
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
// Each tick also closes the tabs of the slot pinged PingTimeout ago whose
// pong has not come; when PingTimeout is longer than the interval, that is
// checked at each visit of the slot, which pings no tab still waiting.
func (ts *tabSet) run(ctx context.Context) {
	tick := time.NewTicker(ts.tick)
	defer tick.Stop()
	n := int64(len(ts.slots))
	// Ticks a pong may take: one more than the timeout's worth, as a tick
	// the loop was too busy to take arrives at once after it.
	wait := int64((ts.srv.cfg.PingTimeout+ts.tick-1)/ts.tick) + 1
	lag := min(n, wait) // ticks from a ping to its check
	p := newPinger()
	var ping, overdue []*tab // reused: a slot's worth each
	for i := n; ; i++ {      // from n: i-lag is never negative
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		ping, overdue = ping[:0], overdue[:0]
		ts.mu.Lock()
		for t := range ts.slots[(i-lag)%n] {
			if due := t.pong.due.Load(); due != 0 && due <= i && !t.closing.Load() {
				overdue = append(overdue, t)
			}
		}
		for t := range ts.slots[i%n] {
			// A closing tab may have a close frame stuck in its socket: a
			// ping would wait for it.
			if t.welcomed.Load() && !t.closing.Load() {
				ping = append(ping, t)
			}
		}
		ts.mu.Unlock()
		for _, t := range overdue {
			t.abort("ping_timeout")
		}
		now := ts.srv.cfg.Now()
		for _, t := range ping {
			if t.session != nil && now.After(t.session.expires) {
				// A signed-in browser's socket lasts no longer than its session.
				t.close(closeUnauthorized, "session expired", "auth")
				continue
			}
			if t.pong.due.Load() == 0 { // else the last ping is still waiting
				p.ping(t, i+wait)
			}
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
		if t.flushing.CompareAndSwap(false, true) {
			t.stop()
			continue
		}
		// A writer has the socket: a flush stops the tab when it sees the
		// hub closed, a welcome fails to subscribe. One blocked on a
		// client that does not read is cut off with the rest.
		time.AfterFunc(closeGrace, func() {
			t.raw.Close()
			t.conn.CloseNow()
		})
	}
}
