package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"onair/zoom"
)

// poster is one keep-alive connection that posts webhooks as Zoom does,
// HTTP/1.1 written by hand. net/http's client passes every request between
// three goroutines and costs the load tool, on the cores it shares with
// onair, about as much CPU as onair spends handling the webhook.
type poster struct {
	host string
	conn net.Conn
	br   *bufio.Reader
	req  []byte
}

// posters keeps idle posters per node.
type posters struct {
	mu   sync.Mutex
	idle map[string][]*poster // by base URL
}

// post sends a signed webhook to base on an idle connection (or a new
// one) and returns the status and how long the exchange took. As net/http's
// client does, it tries once more on a new connection when a reused one
// ends before any byte of an answer: the server may have closed it while
// idle, or restarted (storm). An answer with "Connection: close" (a server
// shutting down) counts; only its connection is not kept.
func (ps *posters) post(ctx context.Context, base, secret string, body []byte) (int, time.Duration, error) {
	start := time.Now()
	for retried := false; ; retried = true {
		p, reused, err := ps.get(ctx, base)
		if err != nil {
			return 0, time.Since(start), err
		}
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		p.req = fmt.Appendf(p.req[:0], "POST /webhooks/zoom HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"+
			"%s: %s\r\n%s: %s\r\nContent-Length: %d\r\n\r\n",
			p.host, zoom.HeaderTimestamp, ts, zoom.HeaderSignature, zoom.Sign([]byte(secret), ts, body), len(body))
		p.req = append(p.req, body...)
		deadline := time.Now().Add(10 * time.Second)
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		p.conn.SetDeadline(deadline)
		status, keep, answered, err := p.exchange()
		if err != nil {
			p.conn.Close()
			if reused && !answered && !retried && ctx.Err() == nil {
				continue
			}
			return 0, time.Since(start), err
		}
		if keep {
			ps.put(base, p)
		} else {
			p.conn.Close()
		}
		return status, time.Since(start), nil
	}
}

// exchange writes the request and reads the answer whole. answered says
// whether any byte of an answer came back.
func (p *poster) exchange() (status int, keep, answered bool, err error) {
	if _, err := p.conn.Write(p.req); err != nil {
		return 0, false, false, err
	}
	if _, err := p.br.Peek(1); err != nil {
		return 0, false, false, err
	}
	resp, err := http.ReadResponse(p.br, nil)
	if err != nil {
		return 0, false, true, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, !resp.Close, true, err
}

func (ps *posters) get(ctx context.Context, base string) (p *poster, reused bool, err error) {
	ps.mu.Lock()
	if idle := ps.idle[base]; len(idle) > 0 {
		p := idle[len(idle)-1]
		ps.idle[base] = idle[:len(idle)-1]
		ps.mu.Unlock()
		return p, true, nil
	}
	ps.mu.Unlock()
	conn, host, err := dialPlain(ctx, &net.Dialer{}, base, "webhooks")
	if err != nil {
		return nil, false, err
	}
	return &poster{host: host, conn: conn, br: bufio.NewReader(conn)}, false, nil
}

// dialPlain connects to base (http://host:port) for what the tool sends
// there, and returns the connection and the host to name in requests.
func dialPlain(ctx context.Context, d *net.Dialer, base, what string) (net.Conn, string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, "", err
	}
	if u.Scheme != "http" {
		return nil, "", fmt.Errorf("%s go over plain HTTP, not %s", what, u.Scheme)
	}
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	return conn, u.Host, err
}

func (ps *posters) put(base string, p *poster) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.idle == nil {
		ps.idle = map[string][]*poster{}
	}
	ps.idle[base] = append(ps.idle[base], p)
}

// closeIdle closes every idle connection.
func (ps *posters) closeIdle() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for base, idle := range ps.idle {
		for _, p := range idle {
			p.conn.Close()
		}
		delete(ps.idle, base)
	}
}
