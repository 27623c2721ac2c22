package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// listener is a PostgreSQL node's ear: one connection LISTENing on the
// schema's channel, publishing every node's commits (its own included) to
// OnCommit in the order they committed, which PostgreSQL guarantees for
// notifications. Publishing its own commits from here rather than from the
// writer is what keeps that order: a commit of another node can be heard
// before the writer of this one would have published its own earlier one.
type listener struct {
	e    *pgEngine
	node string // this process, in the notices it sends
	// batch numbers this node's notices; the writer waits for its own
	// last notice of a transaction to be heard (expect, await).
	batch   atomic.Uint64
	mu      sync.Mutex
	waiting uint64
	heard   chan struct{}
	up      atomic.Bool
	probe   chan struct{}         // a write's notice was not heard in time: check the connection now
	err     atomic.Pointer[error] // why it is down
	cancel  context.CancelFunc
	done    chan struct{}
}

// notice is one NOTIFY payload: part of what a transaction committed.
type notice struct {
	Node  string `json:"n"`
	Batch uint64 `json:"b"`
	Last  bool   `json:"l,omitempty"` // the transaction's last notice
	At    int64  `json:"t"`           // commit time, Unix microseconds
	// Entries of the log; one too large for a notice is sent without its
	// data (Ref), and read from the log by whoever hears it.
	Entries      []noticeEntry `json:"e,omitempty"`
	Deauthorized []string      `json:"x,omitempty"`
	Logouts      []Logout      `json:"o,omitempty"`
	Outbox       bool          `json:"w,omitempty"`
}

type noticeEntry struct {
	User     string          `json:"u"`
	Seq      int64           `json:"s"`
	Epoch    string          `json:"p"`
	Type     string          `json:"y"`
	At       int64           `json:"a"` // Unix milliseconds
	Data     json.RawMessage `json:"d,omitempty"`
	Ref      bool            `json:"r,omitempty"`
	Received int64           `json:"v,omitempty"` // Unix microseconds
}

// maxNotice keeps a payload under PostgreSQL's limit (8000 bytes).
const maxNotice = 7000

func startListener(ctx context.Context, e *pgEngine) (*listener, error) {
	l := &listener{e: e, node: randomHex(8), done: make(chan struct{}), probe: make(chan struct{}, 1)}
	conn, err := l.connect(ctx)
	if err != nil {
		return nil, err
	}
	l.up.Store(true)
	runCtx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	go l.run(runCtx, conn)
	return l, nil
}

func (l *listener) connect(ctx context.Context) (*pgx.Conn, error) {
	cfg, err := pgConfig(l.e.url)
	if err != nil {
		return nil, err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{l.e.channel}.Sanitize()); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("listen: %w", err)
	}
	return conn, nil
}

// run hears notifications until closed. When its connection fails, it
// connects again (backing off up to 2 s) and reports that commits may
// have been missed meanwhile (OnMissed): never guessed, always repaired.
func (l *listener) run(ctx context.Context, conn *pgx.Conn) {
	defer close(l.done)
	backoff := 50 * time.Millisecond
	for {
		if conn != nil {
			err := l.hear(ctx, conn)
			conn.Close(context.Background())
			conn = nil
			if ctx.Err() != nil {
				return
			}
			l.down(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		c, err := l.connect(ctx)
		if err != nil {
			l.err.Store(&err)
			backoff = min(backoff*2, 2*time.Second)
			continue
		}
		conn, backoff = c, 50*time.Millisecond
		l.err.Store(nil)
		l.up.Store(true)
		slog.Info("listening to the other nodes again; repairing what was pushed meanwhile")
		l.e.s.opts.OnMissed(false)
	}
}

// down marks the listener deaf. Its tabs would now miss commits (this
// node's own included, logouts too): they are dropped at once (OnMissed),
// and /ws refuses new ones until it hears again (Listening).
func (l *listener) down(err error) {
	l.err.Store(&err)
	if l.up.Swap(false) {
		slog.Warn("lost the connection that hears the other nodes' commits", "err", err)
		l.e.s.opts.OnMissed(true)
	}
	l.release()
}

// hear publishes notifications until the connection fails. A connection
// that is silent for pollListen is asked a question, so one that died
// quietly is noticed.
func (l *listener) hear(ctx context.Context, conn *pgx.Conn) error {
	// A write whose notice is late (await) asks for the check at once.
	var waiting atomic.Pointer[context.CancelFunc]
	heard := make(chan struct{})
	defer close(heard)
	go func() {
		for {
			select {
			case <-heard:
				return
			case <-l.probe:
				if cancel := waiting.Load(); cancel != nil {
					(*cancel)()
				}
			}
		}
	}()
	for {
		wait, cancel := context.WithTimeout(ctx, pollListen)
		waiting.Store(&cancel)
		n, err := conn.WaitForNotification(wait)
		waiting.Store(nil)
		cancel()
		if errors.Is(err, context.Canceled) && ctx.Err() == nil {
			err = context.DeadlineExceeded // probed early: same as a quiet spell
		}
		if err != nil {
			if ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
				return err
			}
			ping, cancel := context.WithTimeout(ctx, 3*time.Second)
			_, err = conn.Exec(ping, "SELECT 1")
			cancel()
			if err != nil {
				return err
			}
			continue
		}
		var nt notice
		if err := json.Unmarshal([]byte(n.Payload), &nt); err != nil {
			return fmt.Errorf("unreadable notification: %w", err) // missed: repaired like a lost connection
		}
		c, err := l.committed(ctx, nt)
		if err != nil {
			return err // the entry was not read: treat as missed
		}
		c.Local = nt.Node == l.node
		l.e.s.opts.OnCommit(c)
		l.e.s.opts.OnNotified(time.Since(time.UnixMicro(nt.At)))
		if nt.Node == l.node && nt.Last {
			l.heardBatch(nt.Batch)
		}
	}
}

// committed turns a notice back into what was committed, reading from the
// log the entries it carries only by reference.
func (l *listener) committed(ctx context.Context, nt notice) (Committed, error) {
	c := Committed{Deauthorized: nt.Deauthorized, Logouts: nt.Logouts, Outbox: nt.Outbox}
	for _, ne := range nt.Entries {
		e := Entry{User: ne.User, Seq: ne.Seq, Epoch: ne.Epoch, Type: ne.Type, At: time.UnixMilli(ne.At).UTC(), Data: ne.Data}
		if ne.Received != 0 {
			e.Received = time.UnixMicro(ne.Received)
		}
		if ne.Ref {
			read, err := entriesAfter(ctx, l.e.s.read, ne.User, ne.Epoch, ne.Seq-1, ne.Seq)
			if err != nil {
				return Committed{}, err
			}
			if len(read) != 1 {
				// Gone already (swept, or the user's log started over): the
				// tabs must not see a hole, so the node repairs.
				return Committed{}, fmt.Errorf("entry %d of a user's log is gone before it was heard", ne.Seq)
			}
			e.Data = read[0].Data
		}
		c.Entries = append(c.Entries, e)
	}
	return c, nil
}

// notices encodes what a transaction committed as NOTIFY payloads, in
// order; none when it committed nothing anyone must hear.
func (l *listener) notices(c Committed) []string {
	if len(c.Entries) == 0 && len(c.Deauthorized) == 0 && len(c.Logouts) == 0 && !c.Outbox {
		return nil
	}
	batch := l.batch.Add(1)
	at := time.Now().UnixMicro()
	var out []string
	cur := notice{Node: l.node, Batch: batch, At: at}
	size := 0
	flush := func() {
		b, _ := json.Marshal(cur)
		out = append(out, string(b))
		cur = notice{Node: l.node, Batch: batch, At: at}
		size = 0
	}
	add := func(n int) {
		if size > 0 && size+n > maxNotice-200 {
			flush()
		}
		size += n
	}
	for _, e := range c.Entries {
		ne := noticeEntry{User: e.User, Seq: e.Seq, Epoch: e.Epoch, Type: e.Type, At: e.At.UnixMilli(), Data: e.Data}
		if !e.Received.IsZero() {
			ne.Received = e.Received.UnixMicro()
		}
		n := len(ne.Data) + len(ne.User) + len(ne.Epoch) + len(ne.Type) + 80
		if n > maxNotice-200 {
			ne.Data, ne.Ref = nil, true
			n = len(ne.User) + len(ne.Epoch) + len(ne.Type) + 80
		}
		add(n)
		cur.Entries = append(cur.Entries, ne)
	}
	for _, u := range c.Deauthorized {
		add(len(u) + 4)
		cur.Deauthorized = append(cur.Deauthorized, u)
	}
	for _, lo := range c.Logouts {
		add(len(lo.User) + len(lo.Session) + 16)
		cur.Logouts = append(cur.Logouts, lo)
	}
	cur.Outbox, cur.Last = c.Outbox, true
	flush()
	return out
}

// expect registers the batch just encoded as the one the writer waits
// for; the returned channel closes when it is heard (or the listener is
// down).
func (l *listener) expect() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	heard := make(chan struct{})
	if !l.up.Load() {
		close(heard)
		return heard
	}
	l.waiting, l.heard = l.batch.Load(), heard
	return heard
}

func (l *listener) heardBatch(b uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.heard != nil && b >= l.waiting {
		close(l.heard)
		l.heard = nil
	}
}

// release ends the writer's wait: its transaction did not commit, or the
// listener is down.
func (l *listener) release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.heard != nil {
		close(l.heard)
		l.heard = nil
	}
}

// await waits until the batch is heard, or at most a second: a listener
// that is slow, not down, must not stall every write of this node.
func (l *listener) await(heard <-chan struct{}) {
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-heard:
	case <-t.C:
		select {
		case l.probe <- struct{}{}:
		default:
		}
	}
}

// ready is nil while the listener hears the other nodes.
func (l *listener) ready() error {
	if l.up.Load() {
		return nil
	}
	if err := l.err.Load(); err != nil && *err != nil {
		return fmt.Errorf("not hearing the other nodes: %w", *err)
	}
	return errors.New("not hearing the other nodes")
}

func (l *listener) close() {
	l.cancel()
	<-l.done
}

// Node names this process among the nodes sharing a PostgreSQL database
// (empty on SQLite).
func (s *Store) Node() string {
	if e, ok := s.eng.(*pgEngine); ok {
		return e.l.node
	}
	return ""
}
