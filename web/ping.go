package web

import (
	"context"
	"syscall"

	"onair/hub"
)

// pingFrame is a WebSocket ping as a server sends it: FIN, opcode 0x9,
// unmasked, no payload.
var pingFrame = []byte{0x89, 0x00}

// pinger writes pings straight to the tabs' sockets, for the ticker's
// goroutine alone. coder/websocket's Conn.Ping waits for the pong, so each
// ping held a goroutine, a context, a timer and a channel until it came;
// here the ping is written and forgotten, the library reports the pong
// (OnPongReceived), and the ticker closes the tabs whose pong is overdue.
type pinger struct {
	n   int
	err error
	fn  func(fd uintptr) bool // p.write, bound once
}

func newPinger() *pinger {
	p := &pinger{}
	p.fn = p.write
	return p
}

// write makes one attempt: a socket with no room for two bytes belongs to
// a client that stopped reading, and waiting for it would stall the ticker.
func (p *pinger) write(fd uintptr) bool {
	for {
		p.n, p.err = writeFd(fd, pingFrame)
		if p.err != syscall.EINTR {
			return true
		}
	}
}

// ping sends t a ping that must be answered by the tick due, unless a
// writer holds the socket: the tab is then pinged on a later visit. Holding
// flushing keeps the two bytes from landing inside a frame onair writes; the
// frames the library writes itself (pongs, close) take one write each.
func (p *pinger) ping(t *tab, due int64) {
	if !t.flushing.CompareAndSwap(false, true) {
		return
	}
	// Armed before the write: the pong may come back before the write returns.
	t.pongDue.Store(due)
	switch {
	case t.rc == nil: // no raw socket on this system
		go t.conn.Ping(context.Background()) // ends at the pong or the close
	case t.rc.Write(p.fn) != nil:
		// The socket is closed: its reader ends the tab.
	case p.err == nil && p.n < len(pingFrame):
		t.raw.Close() // half a frame on the wire: the stream is broken
	}
	// After EAGAIN the ping stays armed: a client that stopped reading is
	// closed when its pong is overdue.
	t.flushing.Store(false)
	if t.sub.Pending() {
		t.wake(hub.ReasonNone)
	}
}

// pong records that the client answered; any pong will do.
func (t *tab) pong(context.Context, []byte) { t.pongDue.Store(0) }

// pingTimedOut closes a tab whose client stopped answering: there is no
// handshake to wait for.
func (t *tab) pingTimedOut() {
	t.closeOnce.Do(func() {
		t.srv.metrics.wsDisconnects.WithLabelValues("ping_timeout").Inc()
		go t.conn.CloseNow() // closes the socket at once, then waits for the reader
	})
}
