package web

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"

	"onair/hub"
	"onair/store"
)

// Close codes of the WebSocket protocol (CONTRACT §4).
const (
	closeBadHello     websocket.StatusCode = 4400
	closeUnauthorized websocket.StatusCode = 4401
	closeHelloTimeout websocket.StatusCode = 4408
	closeTooManyTabs  websocket.StatusCode = 4429
)

// maxClientFrame is the largest frame a client may send.
const maxClientFrame = 4096

// tab is one open WebSocket. Its only long-lived goroutine is the one that
// reads; frames are written by a goroutine started when the tab has
// something to write and gone when it has written it all. Pings come from
// the shared tabSet ticker, and the reader records the pongs.
type tab struct {
	srv  *Server
	conn *websocket.Conn
	raw  net.Conn        // the hijacked connection under conn
	rc   syscall.RawConn // raw's socket, for pings; nil where there is none
	slot int
	pong *pongWait
	sub  *hub.Subscription
	user string
	// session is the signed-in browser the handshake came with, if any: a
	// hello without a token is that user, and the socket closes with it.
	session *session

	// flushing is true while a writer owns the connection: the welcome
	// sequence, a flush goroutine, or the ticker writing a ping. It is the
	// only way to start one.
	flushing atomic.Bool
	welcomed atomic.Bool
	last     int64 // seq of the last frame written; owned by whoever holds flushing

	closeOnce sync.Once   // the socket is closed, and its reason counted, once
	closing   atomic.Bool // closeOnce has run: the ticker leaves the tab alone

	// writeDeadline is when the write in progress times out (Unix ns; 0
	// when none is): once it has passed, the write fails and the tab is
	// closed as a slow consumer, not as a client that left.
	writeDeadline atomic.Int64
	// deadlineMu keeps a drop's abort from landing after the write it was
	// meant for has cleared its deadline.
	deadlineMu sync.Mutex
}

func (s *Server) handleWS(w http.ResponseWriter, r *http.Request) {
	if origin := r.Header.Get("Origin"); origin != "" && !s.originAllowed(origin) {
		writeError(w, http.StatusForbidden, "forbidden_origin", "origin not allowed")
		return
	}
	// A node that does not hear the other nodes' commits would leave the
	// tab silent: 503 before the upgrade, so a proxy tries another node.
	if err := s.store.Listening(); err != nil {
		writeError(w, http.StatusServiceUnavailable, "cluster", "this node is not hearing the other nodes; try again")
		return
	}
	// The session is read (and renewed: the cookie goes out with the 101)
	// before the request is handed over.
	var sess *session
	if ss, ok := s.sessionFrom(w, r); ok {
		sess = &ss
	}
	// The origin was checked above against the exact allowed list.
	hj := &leanHijacker{ResponseWriter: w}
	t := &tab{srv: s, session: sess, pong: &pongWait{}}
	conn, err := websocket.Accept(hj, r, &websocket.AcceptOptions{InsecureSkipVerify: true, OnPongReceived: t.pong.pong})
	if err != nil {
		return // Accept has answered the request
	}
	conn.SetReadLimit(maxClientFrame)
	t.conn, t.raw, t.rc = conn, hj.conn, rawConnOf(hj.conn)
	s.conns.Add(1)
	if !s.tabs.add(t) {
		t.close(websocket.StatusServiceRestart, "server restarting", "shutdown")
		s.conns.Done()
		return
	}
	if !t.handshake() {
		s.tabs.remove(t)
		s.conns.Done()
		return
	}
	// The hello and welcome ran here and grew this goroutine's stack; the
	// tab's long life runs on a fresh goroutine with a small stack, and
	// this handler returns so that net/http's request and buffers go too.
	go func() {
		defer s.conns.Done()
		defer s.tabs.remove(t)
		t.readLoop()
	}()
}

// socketBuffer is the size of a socket's read and write buffers. Clients
// send a hello and little else, and a frame is a few hundred bytes; larger
// reads and writes bypass the buffer.
const socketBuffer = 512

// socketSendBuffer caps the kernel's send buffer of a socket. Left to
// autotuning it grows to megabytes, so a tab that stops reading would
// swallow thousands of frames, in kernel memory, before a write blocked and
// its queue could overflow; frames are small and few, and this is plenty.
const socketSendBuffer = 64 << 10

// leanHijacker hands the WebSocket library small buffers instead of
// net/http's two 4 KiB ones: at 15,000 idle tabs that is 100 MiB. It keeps
// the hijacked connection, which closes a socket the library cannot.
type leanHijacker struct {
	http.ResponseWriter
	conn net.Conn
}

func (h *leanHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, rw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	h.conn = conn
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetWriteBuffer(socketSendBuffer)
	}
	// net/http has flushed the 101 response; what the client sent behind
	// its handshake must stay buffered, first in line.
	pending, _ := rw.Reader.Peek(rw.Reader.Buffered())
	br := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(pending)), conn), max(socketBuffer, len(pending)))
	if len(pending) > 0 {
		br.Peek(len(pending))
	}
	return conn, bufio.NewReadWriter(br, bufio.NewWriterSize(conn, socketBuffer)), nil
}

// handshake reads the hello and writes the welcome; false when the tab
// was closed instead. It must not use the request's context: the
// connection is hijacked.
func (t *tab) handshake() bool {
	s := t.srv
	ctx := context.Background()
	timer := time.AfterFunc(s.cfg.HelloTimeout, func() {
		t.close(closeHelloTimeout, "no hello within 10 s", "hello_timeout")
	})
	data, ok := t.readText(ctx)
	if !timer.Stop() || !ok {
		return false
	}
	var hello helloFrame
	if err := json.Unmarshal(data, &hello); err != nil || hello.Type != "hello" {
		t.close(closeBadHello, "first frame must be a hello", "protocol")
		return false
	}
	var since *store.Position
	if hello.Since != nil {
		if hello.Since.Seq == nil {
			t.close(closeBadHello, "since needs epoch and seq", "protocol")
			return false
		}
		since = &store.Position{Epoch: hello.Since.Epoch, Seq: *hello.Since.Seq}
	}
	if hello.Token == "" {
		if t.session == nil {
			t.close(closeUnauthorized, "missing token", "auth")
			return false
		}
		t.user = t.session.user
		return t.welcome(ctx, since)
	}
	t.session = nil // a token, when given, decides alone
	claims, err := s.verifyToken(hello.Token)
	if err != nil {
		t.close(closeUnauthorized, "invalid or expired token", "auth")
		return false
	}
	if err := s.store.Admit(ctx, claims.user, claims.issuedAt); err != nil {
		if errors.Is(err, store.ErrDeauthorized) {
			t.close(closeUnauthorized, "token issued before the app was deauthorized", "auth")
			return false
		}
		s.log.Error("admit user", "err", err)
		t.close(websocket.StatusTryAgainLater, "temporarily unavailable", "shutdown")
		return false
	}
	t.user = claims.user
	return t.welcome(ctx, since)
}

// readLoop reads until the socket closes: pongs and close frames are
// handled by the library while it reads.
func (t *tab) readLoop() {
	defer t.sub.Cancel()
	t.srv.metrics.wsConnections.Inc()
	defer t.srv.metrics.wsConnections.Dec()
	for {
		// Text frames after the hello carry nothing onair acts on.
		if _, ok := t.readText(context.Background()); !ok {
			return
		}
	}
}

// readText reads the next frame; false when the tab is over: the read
// failed, or the frame was binary (closed with 1003).
func (t *tab) readText(ctx context.Context) ([]byte, bool) {
	typ, data, err := t.conn.Read(ctx)
	if err != nil {
		t.readFailed(err)
		return nil, false
	}
	if typ != websocket.MessageText {
		t.close(websocket.StatusUnsupportedData, "binary frames are not supported", "protocol")
		return nil, false
	}
	return data, true
}

// welcome subscribes, then reads the snapshot or the missed events, and
// writes them before any live frame: live frames queue meanwhile, and those
// already covered by the snapshot are skipped by seq. No gap, no duplicate.
func (t *tab) welcome(ctx context.Context, since *store.Position) bool {
	s := t.srv
	t.flushing.Store(true) // hold live frames until the welcome is written
	tag := ""
	if t.session != nil {
		tag = t.session.key
	}
	sub, err := s.hub.Subscribe(t.user, tag, t.wake)
	switch {
	case errors.Is(err, hub.ErrTooManyTabs):
		t.close(closeTooManyTabs, "too many open tabs", "too_many_tabs")
		return false
	case err != nil:
		t.close(websocket.StatusServiceRestart, "server restarting", "shutdown")
		return false
	}
	t.sub = sub
	if t.session != nil {
		// A logout between the handshake and this subscription dropped no
		// socket of this tab: look again now that a logout would.
		if _, err := s.store.Session(ctx, t.session.id); err != nil {
			sub.Cancel()
			t.close(closeUnauthorized, "session ended", "logout")
			return false
		}
	}
	w, err := s.store.Welcome(ctx, t.user, since, s.cfg.MaxReplay)
	if err != nil {
		sub.Cancel()
		if errors.Is(err, store.ErrNotFound) { // deauthorized between admit and now
			t.close(closeUnauthorized, "deauthorized", "deauthorized")
			return false
		}
		s.log.Error("welcome", "err", err)
		t.close(websocket.StatusTryAgainLater, "temporarily unavailable", "shutdown")
		return false
	}
	if !t.write(encodeWelcome(t.user, w), "welcome") {
		sub.Cancel()
		return false
	}
	t.last = w.Seq
	for _, e := range w.Entries {
		if !t.write(encodeEntry(e), e.Type) {
			sub.Cancel()
			return false
		}
		t.last = e.Seq
	}
	t.welcomed.Store(true)
	t.flushing.Store(false)
	if sub.Pending() {
		t.wake(hub.ReasonNone)
	}
	if s.cfg.OnFirstTab != nil && sub.First() {
		s.cfg.OnFirstTab(t.user)
	}
	return true
}

// dropGrace is how long a dropped tab's writer may go on before its write
// is aborted: long enough to finish a write and send the close frame to a
// client that reads, short enough not to hold a stuck one.
const dropGrace = time.Second

// wake starts a flush goroutine unless a writer is active. A drop closes
// the tab at once: the active writer may be blocked on a client that
// stopped reading, and would otherwise hold it until its write times out.
func (t *tab) wake(r hub.Reason) {
	if t.flushing.CompareAndSwap(false, true) {
		go t.flush()
	} else if r != hub.ReasonNone {
		t.closeFor(r)
		time.AfterFunc(dropGrace, func() {
			t.deadlineMu.Lock()
			defer t.deadlineMu.Unlock()
			if t.writeDeadline.Load() != 0 {
				t.raw.SetWriteDeadline(time.Now()) // abort the write in progress
			}
		})
	}
}

// flush writes everything queued, then exits. A drop ends the tab with the
// close code of its reason.
func (t *tab) flush() {
	for {
		msgs, reason := t.sub.Next()
		if reason == hub.ReasonShutdown {
			t.stop()
			return
		}
		if reason != hub.ReasonNone {
			t.closeFor(reason)
			return // flushing stays true: this tab writes no more
		}
		if len(msgs) == 0 {
			t.flushing.Store(false)
			if !t.sub.Pending() || !t.flushing.CompareAndSwap(false, true) {
				return
			}
			continue
		}
		for _, m := range msgs {
			if m.Seq <= t.last {
				continue // already in the welcome snapshot or replay
			}
			if !t.write(m.Frame, m.Type) {
				return
			}
			t.last = m.Seq
			if !m.Received.IsZero() {
				t.srv.metrics.pushLatency.Observe(time.Since(m.Received).Seconds())
			}
		}
	}
}

// write writes one frame under the write timeout; on failure the connection
// is gone (a slow consumer's reason wins over "client").
func (t *tab) write(frame []byte, typ string) bool {
	// A deadline on the socket rather than a context on the write: a
	// context would cost an allocation and a timer per frame.
	deadline := time.Now().Add(t.srv.cfg.WriteTimeout)
	t.deadlineMu.Lock()
	t.writeDeadline.Store(deadline.UnixNano())
	t.raw.SetWriteDeadline(deadline)
	t.deadlineMu.Unlock()
	err := t.conn.Write(context.Background(), websocket.MessageText, frame)
	if err != nil {
		if !t.closeDropped() {
			t.close(websocket.StatusGoingAway, "write failed", "client")
		}
		return false
	}
	t.deadlineMu.Lock()
	t.writeDeadline.Store(0)
	t.raw.SetWriteDeadline(time.Time{}) // the library's own frames (pongs, close) have theirs
	t.deadlineMu.Unlock()
	t.srv.metrics.wsSent.WithLabelValues(typ).Inc()
	return true
}

func (t *tab) closeFor(r hub.Reason) {
	switch r {
	case hub.ReasonSlow:
		t.close(websocket.StatusPolicyViolation, "slow consumer", "slow_consumer")
	case hub.ReasonDeauthorized:
		t.close(closeUnauthorized, "deauthorized", "deauthorized")
	case hub.ReasonLogout:
		t.close(closeUnauthorized, "logged out", "logout")
	case hub.ReasonResync:
		t.close(websocket.StatusServiceRestart, "resume from the log", "resync")
	default:
		t.close(websocket.StatusServiceRestart, "server restarting", "shutdown")
	}
}

// closeDropped closes the tab for the reason it was dropped by the hub, or
// as a slow consumer when a write timed out; false when neither happened.
// Both the writer and the reader see the connection fail then, and whichever
// notices first must record the same reason.
func (t *tab) closeDropped() bool {
	if t.sub != nil {
		if r := t.sub.Reason(); r != hub.ReasonNone {
			t.closeFor(r)
			return true
		}
	}
	if d := t.writeDeadline.Load(); d != 0 && time.Now().UnixNano() >= d {
		t.closeFor(hub.ReasonSlow)
		return true
	}
	return false
}

// readFailed classifies why reading ended: a drop or a write timeout closed
// the connection; a frame over the limit was closed with 1009 by the
// library; anything else means the client went away.
func (t *tab) readFailed(err error) {
	if t.closeDropped() {
		return
	}
	reason := "client"
	if errors.Is(err, websocket.ErrMessageTooBig) {
		reason = "protocol"
	}
	t.close(websocket.StatusNormalClosure, "", reason)
}

// stop ends the tab for a server stop; the caller holds flushing. The 1012
// is written and the sending side shut at once, and the client's reply ends
// the reader: a close handshake per tab, through the library, made a stop
// with 15,000 tabs take two seconds.
func (t *tab) stop() {
	t.closeOnce.Do(func() {
		t.closing.Store(true)
		t.srv.metrics.wsDisconnects.WithLabelValues("shutdown").Inc()
		tc, ok := t.raw.(*net.TCPConn)
		if t.rc == nil || !ok {
			go t.conn.Close(websocket.StatusServiceRestart, "server restarting")
		} else {
			t.rc.Write(func(fd uintptr) bool {
				writeFd(fd, closeFrameRestart) // a socket with no room: the client is stuck
				return true
			})
			tc.CloseWrite()
		}
		time.AfterFunc(closeGrace, func() {
			t.raw.Close()
			t.conn.CloseNow() // the library, which saw no close frame, lets go too
		})
	})
}

// closeFrameRestart is a close frame with 1012 "server restarting", as a
// server sends it.
var closeFrameRestart = append([]byte{0x88, 2 + byte(len("server restarting")), 0x03, 0xf4}, "server restarting"...)

// closeGrace bounds a close handshake. The library waits up to 5 s to write
// the close frame and 5 s more for the client's reply, and cannot be cut
// short meanwhile; a client that stopped reading gives neither, and its
// socket would stay open (and count as a tab) for 10 s after it was dropped.
const closeGrace = 2 * time.Second

// close closes the socket once, recording why; after closeGrace the
// connection is closed whatever the handshake's state.
func (t *tab) close(code websocket.StatusCode, text, reason string) {
	t.closeOnce.Do(func() {
		t.closing.Store(true)
		t.srv.metrics.wsDisconnects.WithLabelValues(reason).Inc()
		go t.conn.Close(code, text) // the close handshake may take seconds
		time.AfterFunc(closeGrace, func() { t.raw.Close() })
	})
}
