package web

import (
	"context"
	"encoding/binary"
	"sync/atomic"
	"syscall"

	"onair/hub"
)

// pinger writes pings straight to the tabs' sockets, for the ticker's
// goroutine alone. coder/websocket's Conn.Ping waits for the pong, so each
// ping held a goroutine, a context, a timer and a channel until it came;
// here the ping is written and forgotten, the library reports the pong
// (OnPongReceived), and the ticker closes the tabs whose pong is overdue.
type pinger struct {
	frame [10]byte // FIN, opcode 0x9, unmasked, 8 bytes of payload: the due tick
	n     int
	err   error
	fn    func(fd uintptr) bool // p.write, bound once
}

func newPinger() *pinger {
	p := &pinger{frame: [10]byte{0x89, 8}}
	p.fn = p.write
	return p
}

// write makes one attempt: a socket with no room for the ping belongs to a
// client that stopped reading, and waiting for it would stall the ticker.
func (p *pinger) write(fd uintptr) bool {
	for {
		p.n, p.err = writeFd(fd, p.frame[:])
		if p.err != syscall.EINTR {
			return true
		}
	}
}

// ping sends t a ping that must be answered by the tick due, unless a
// writer holds the socket: the tab is then pinged on a later visit. Holding
// flushing keeps the ping from landing inside a frame onair writes; the
// frames the library writes itself (pongs, close) take one write each.
func (p *pinger) ping(t *tab, due int64) {
	if !t.flushing.CompareAndSwap(false, true) {
		return
	}
	// Armed before the write: the pong may come back before the write returns.
	t.pong.due.Store(due)
	binary.BigEndian.PutUint64(p.frame[2:], uint64(due))
	switch {
	case t.rc == nil: // no raw socket on this system: the library pings
		go func() {
			if t.conn.Ping(context.Background()) == nil { // at the pong, or the close
				t.pong.due.CompareAndSwap(due, 0)
			}
		}()
	case t.rc.Write(p.fn) != nil:
		// The socket is closed (its reader ends the tab), or its write
		// deadline has passed (a slow consumer, being closed).
	case p.err == nil && p.n < len(p.frame):
		t.abort("slow_consumer") // part of a frame on the wire: the stream is broken
	}
	// After EAGAIN the ping stays armed: a client that stopped reading is
	// closed when its pong is overdue.
	t.flushing.Store(false)
	if t.sub.Pending() {
		t.wake(hub.ReasonNone)
	}
}

// pongWait is what the ticker and the reader share about a tab's last
// ping: the tick by which it must be answered, 0 once it has been. It is
// apart from the tab so that the library's callback does not hold the tab:
// the tab holds the connection, which has a finalizer, and a cycle through
// it would never be collected if the library was never closed.
type pongWait struct{ due atomic.Int64 }

// pong is the library's OnPongReceived: only the answer to the last ping
// counts, as with Conn.Ping, so unsolicited pongs keep no dead tab open.
func (w *pongWait) pong(_ context.Context, payload []byte) {
	if len(payload) == 8 {
		w.due.CompareAndSwap(int64(binary.BigEndian.Uint64(payload)), 0)
	}
}

// abort closes a tab at once, with no handshake to wait for: its client
// stopped answering, or its stream is broken.
func (t *tab) abort(reason string) {
	t.closeOnce.Do(func() {
		t.closing.Store(true)
		t.srv.metrics.wsDisconnects.WithLabelValues(reason).Inc()
		go t.conn.CloseNow() // closes the socket at once, then waits for the library's goroutines
	})
}
